//! The gateway's client keys (`llmclis keys`): made and shown once, listed
//! without their secret, rotated with a grace period, revoked by name; and
//! what each client may do and has spent.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::store::{ApiKey, DaySpend, KeyLimits, KeyState, NewKey, Store};

/// A key to make for a client of `llmclis serve`.
#[derive(Debug, Clone)]
pub struct AddKey {
    pub name: String,
    pub limits: KeyLimits,
}

pub fn add(ctx: &super::Context, db: &mut Store, req: AddKey) -> Result<NewKey> {
    db.add_key(&req.name, &req.limits, &ctx.agent)
}

/// The new key of a rotation, and the old one with the end of its grace.
#[derive(Debug, serde::Serialize)]
pub struct Rotated {
    #[serde(flatten)]
    pub new: NewKey,
    pub old_works_until: String,
}

pub fn rotate(
    ctx: &super::Context,
    db: &mut Store,
    name: &str,
    grace: Duration,
) -> Result<Rotated> {
    let (new, old) = db.rotate_key(name, grace, &ctx.agent)?;
    Ok(Rotated {
        new,
        old_works_until: old.revoked_at.unwrap_or_default(),
    })
}

/// What a key's budget counts now: the spend, and when it starts again.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Spend {
    pub spent_usd: f64,
    /// None for a budget over the key's life (or none at all).
    pub resets_at: Option<String>,
}

/// The spend a key's budget is measured against at `now`.
pub fn spend(db: &Store, key: &ApiKey, now: DateTime<Utc>) -> Result<Spend> {
    let window = key.budget_period.map(|p| p.window(now));
    Ok(Spend {
        spent_usd: db.client_spend(&key.name, window.map(|w| w.0))?,
        resets_at: window.map(|w| crate::store::format_time(w.1)),
    })
}

/// A key with its state and what its client has spent so far.
#[derive(Debug, serde::Serialize)]
pub struct KeyRow {
    #[serde(flatten)]
    pub key: ApiKey,
    /// live, retiring, revoked or expired.
    pub state: &'static str,
    /// In the budget's period when it has one, else over the key's life.
    #[serde(flatten)]
    pub spend: Spend,
}

pub fn state_name(s: &KeyState) -> &'static str {
    match s {
        KeyState::Live => "live",
        KeyState::Retiring(_) => "retiring",
        KeyState::Revoked(_) => "revoked",
        KeyState::Expired(_) => "expired",
    }
}

fn row(db: &Store, key: ApiKey, now: DateTime<Utc>) -> Result<KeyRow> {
    Ok(KeyRow {
        state: state_name(&key.state(now)),
        spend: spend(db, &key, now)?,
        key,
    })
}

pub fn list(db: &Store) -> Result<Vec<KeyRow>> {
    let now = Utc::now();
    db.keys()?.into_iter().map(|k| row(db, k, now)).collect()
}

/// One client's keys (newest first) and its spend by day and model.
#[derive(Debug, serde::Serialize)]
pub struct KeyDetail {
    pub name: String,
    pub keys: Vec<KeyRow>,
    pub by_day: Vec<DaySpend>,
}

pub fn show(db: &Store, name: &str) -> Result<KeyDetail> {
    let now = Utc::now();
    let keys = db
        .keys_named(name)?
        .into_iter()
        .map(|k| row(db, k, now))
        .collect::<Result<Vec<_>>>()?;
    if keys.is_empty() {
        return Err(Error::InvalidInput(format!(
            "no key named {name:?}; `llmclis keys list` shows them"
        )));
    }
    Ok(KeyDetail {
        name: name.to_string(),
        keys,
        by_day: db.client_spend_by_day(name)?,
    })
}

pub fn revoke(db: &mut Store, name: &str) -> Result<ApiKey> {
    db.revoke_key(name)
}

/// The hash a key's secret is kept and looked up by (the secret itself is
/// never stored).
pub fn secret_hash(secret: &str) -> String {
    crate::store::key_hash(secret)
}

/// A span of time as people write it: `90s`, `45m`, `12h`, `30d`, `2w`.
pub fn parse_span(s: &str) -> Result<Duration> {
    let s = s.trim();
    let bad = || {
        Error::InvalidInput(format!(
            "{s:?} is not a span of time: write a number and s, m, h, d or w (30d, 12h, 0s)"
        ))
    };
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: u64 = s[..unit_at].parse().map_err(|_| bad())?;
    let secs = match &s[unit_at..] {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(bad)
}

/// When `--expires` means: a span from `now`, a date (its midnight UTC) or
/// an RFC 3339 time.
pub fn parse_expiry(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if let Ok(span) = parse_span(s) {
        return chrono::Duration::from_std(span)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| Error::InvalidInput(format!("--expires {s}: too far away")));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(Error::InvalidInput(format!(
        "--expires {s:?}: give a span (30d, 12h), a date (2027-01-31) or a time (2027-01-31T12:00:00Z)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_expiries_read_as_people_write_them() {
        assert_eq!(parse_span("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_span("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_span("2w").unwrap(), Duration::from_secs(14 * 86_400));
        for bad in ["", "d", "12", "1.5h", "3y", "-1d"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
        let now = DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_expiry("12h", now).unwrap().to_rfc3339(),
            "2026-12-04T22:00:00+00:00"
        );
        assert_eq!(
            parse_expiry("2027-01-31", now).unwrap().to_rfc3339(),
            "2027-01-31T00:00:00+00:00"
        );
        assert!(parse_expiry("soon", now).is_err());
    }
}
