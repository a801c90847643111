//! The gateway's client keys (migration 0010): made once and shown once,
//! kept only as a SHA-256, revoked by a timestamp; and what each client has
//! spent, from its recorded model calls.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use chrono::{DateTime, Datelike, Utc};

use super::{Store, format_time, now};
use crate::error::{Error, Result};

/// A client key as listed: never the key itself.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub budget_usd: Option<f64>,
    /// The budget resets each day or month (UTC); None: over the key's life.
    pub budget_period: Option<Period>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    /// The models it may use: ids, or globs with `*`; None: all.
    pub models: Option<Vec<String>>,
    pub expires_at: Option<String>,
    pub created_at: String,
    pub created_by: String,
    /// When it stopped (or, for a rotated key in its grace, stops) working.
    pub revoked_at: Option<String>,
}

/// How often a key's budget starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }

    /// The adjective a refusal uses: daily, monthly.
    pub fn adjective(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }

    /// The period `now` is in: its start and the moment it resets (UTC).
    pub fn window(self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let day = now.date_naive();
        let (start, next) = match self {
            Period::Day => (day, day + chrono::Days::new(1)),
            Period::Month => {
                let first = day.with_day(1).expect("day 1 exists");
                (first, first + chrono::Months::new(1))
            }
        };
        let at = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
        (at(start), at(next))
    }
}

impl std::str::FromStr for Period {
    type Err = Error;
    fn from_str(s: &str) -> Result<Period> {
        match s {
            "day" => Ok(Period::Day),
            "month" => Ok(Period::Month),
            other => Err(Error::InvalidInput(format!(
                "budget period {other:?}: expected day or month"
            ))),
        }
    }
}

/// Whether a key works at an instant, and if not since when.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyState {
    Live,
    /// Rotated: works until then.
    Retiring(String),
    /// Rotated, and its grace is over; or revoked.
    Revoked(String),
    Expired(String),
}

impl ApiKey {
    pub fn state(&self, now: DateTime<Utc>) -> KeyState {
        let passed = |t: &str| parse_time(t).is_some_and(|t| t <= now);
        match (&self.revoked_at, &self.expires_at) {
            (Some(r), _) if passed(r) => KeyState::Revoked(r.clone()),
            (_, Some(e)) if passed(e) => KeyState::Expired(e.clone()),
            (Some(r), _) => KeyState::Retiring(r.clone()),
            _ => KeyState::Live,
        }
    }

    /// Whether the key may use registry model `id` (or a model name a
    /// client sends).
    pub fn allows(&self, id: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|globs| globs.iter().any(|g| glob_match(g, id)))
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob_match(glob: &str, s: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The limits a key is made with (and keeps when rotated).
#[derive(Debug, Clone, Default)]
pub struct KeyLimits {
    pub budget_usd: Option<f64>,
    pub budget_period: Option<Period>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub models: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What `add_key` made: the key, shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct NewKey {
    #[serde(flatten)]
    pub key: ApiKey,
    pub secret: String,
}

/// A client's spend on one model on one day (UTC).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DaySpend {
    pub day: String,
    pub model: String,
    pub calls: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
}

const KEY_COLUMNS: &str =
    "id, name, prefix, budget_usd, requests_per_minute, created_at, created_by,
    revoked_at, budget_period, tokens_per_minute, models, expires_at";

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    let models: Option<String> = r.get(10)?;
    let period: Option<String> = r.get(8)?;
    Ok(ApiKey {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        budget_usd: r.get(3)?,
        requests_per_minute: r.get::<_, Option<i64>>(4)?.map(|v| v as u32),
        created_at: r.get(5)?,
        created_by: r.get(6)?,
        revoked_at: r.get(7)?,
        // The CHECK constraint admits only these two.
        budget_period: period.and_then(|p| p.parse().ok()),
        tokens_per_minute: r.get::<_, Option<i64>>(9)?.map(|v| v as u32),
        models: models.and_then(|m| serde_json::from_str(&m).ok()),
        expires_at: r.get(11)?,
    })
}

/// The stored form of a key.
pub fn key_hash(secret: &str) -> String {
    // On every gateway request: one allocation, not one per byte.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(secret.as_bytes()) {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// 32 random bytes (256 bits) from the operating system's CSPRNG, hex,
/// behind a prefix that says what it is. Not `fastrand`: its 64 bits of
/// state would let one leaked key tell of the others.
fn new_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        crate::Error::Internal(format!("the operating system gave no random bytes: {e}"))
    })?;
    let mut s = String::from("llmclis-");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    Ok(s)
}

fn check_limits(l: &KeyLimits) -> Result<()> {
    if l.budget_usd.is_some_and(|b| b.is_nan() || b < 0.0) {
        return Err(Error::InvalidInput("--budget-usd must be 0 or more".into()));
    }
    if l.budget_period.is_some() && l.budget_usd.is_none() {
        return Err(Error::InvalidInput(
            "--per needs --budget-usd: the budget that resets each period".into(),
        ));
    }
    if l.requests_per_minute == Some(0) {
        return Err(Error::InvalidInput("--rpm must be at least 1".into()));
    }
    if l.tokens_per_minute == Some(0) {
        return Err(Error::InvalidInput("--tpm must be at least 1".into()));
    }
    if let Some(m) = &l.models
        && (m.is_empty() || m.iter().any(|g| g.trim().is_empty()))
    {
        return Err(Error::InvalidInput(
            "--models: list model ids or globs, comma-separated (qwen-local,claude-*)".into(),
        ));
    }
    if let Some(e) = l.expires_at
        && e <= Utc::now()
    {
        return Err(Error::InvalidInput(format!(
            "--expires {}: that has passed; give a time to come (30d, 12h, or a date)",
            format_time(e)
        )));
    }
    Ok(())
}

/// Inserts a key row; the caller's transaction checks the name is free.
fn insert_key(
    tx: &rusqlite::Connection,
    name: &str,
    secret: &str,
    l: &KeyLimits,
    agent: &str,
    ts: &str,
) -> Result<ApiKey> {
    let prefix: String = secret.chars().take(12).collect();
    let models = l
        .models
        .as_ref()
        .map(|m| serde_json::to_string(m).expect("strings serialize"));
    let expires = l.expires_at.map(format_time);
    tx.prepare_cached(
        "INSERT INTO api_keys (name, key_hash, prefix, budget_usd, requests_per_minute,
                               created_at, created_by, budget_period, tokens_per_minute,
                               models, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        name,
        key_hash(secret),
        prefix,
        l.budget_usd,
        l.requests_per_minute.map(i64::from),
        ts,
        agent,
        l.budget_period.map(Period::as_str),
        l.tokens_per_minute.map(i64::from),
        models,
        expires
    ])?;
    Ok(ApiKey {
        id: tx.last_insert_rowid(),
        name: name.to_string(),
        prefix,
        budget_usd: l.budget_usd,
        budget_period: l.budget_period,
        requests_per_minute: l.requests_per_minute,
        tokens_per_minute: l.tokens_per_minute,
        models: l.models.clone(),
        expires_at: expires,
        created_at: ts.to_string(),
        created_by: agent.to_string(),
        revoked_at: None,
    })
}

fn live_by_name(tx: &rusqlite::Connection, name: &str) -> Result<Option<ApiKey>> {
    Ok(tx
        .query_row(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE name = ?1 AND revoked_at IS NULL"),
            [name],
            key_from_row,
        )
        .optional()?)
}

impl Store {
    /// Makes a key for a client. A name in use by a live key is refused.
    pub fn add_key(&mut self, name: &str, limits: &KeyLimits, agent: &str) -> Result<NewKey> {
        let name = name.trim();
        if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Error::InvalidInput(format!(
                "key name {name:?}: use one word, like the client's name (continue, open-webui)"
            )));
        }
        check_limits(limits)?;
        let secret = new_secret()?;
        let ts = now();
        let key = self.write(|tx| {
            if live_by_name(tx, name)?.is_some() {
                return Err(Error::InvalidInput(format!(
                    "a key named {name:?} exists; rotate it (`llmclis keys rotate {name}`), revoke it first (`llmclis keys revoke {name}`) or pick another name"
                )));
            }
            insert_key(tx, name, &secret, limits, agent, &ts)
        })?;
        Ok(NewKey { key, secret })
    }

    /// A new secret for the live key `name`, with its limits; the old one
    /// keeps working for `grace`, then stops. Spend carries over: it is
    /// the client's, by name.
    pub fn rotate_key(
        &mut self,
        name: &str,
        grace: std::time::Duration,
        agent: &str,
    ) -> Result<(NewKey, ApiKey)> {
        let secret = new_secret()?;
        let now_t = Utc::now();
        let ts = format_time(now_t);
        let until =
            format_time(now_t + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX));
        self.write(|tx| {
            let Some(old) = live_by_name(tx, name)? else {
                return Err(Error::InvalidInput(format!(
                    "no live key named {name:?}; `llmclis keys list` shows them"
                )));
            };
            tx.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1",
                params![old.id, until],
            )?;
            let limits = KeyLimits {
                budget_usd: old.budget_usd,
                budget_period: old.budget_period,
                requests_per_minute: old.requests_per_minute,
                tokens_per_minute: old.tokens_per_minute,
                models: old.models.clone(),
                // An expiry to come is kept; one passed is not inherited
                // (rotating is how its owner renews it).
                expires_at: old
                    .expires_at
                    .as_deref()
                    .and_then(parse_time)
                    .filter(|e| *e > now_t),
            };
            let key = insert_key(tx, name, &secret, &limits, agent, &ts)?;
            Ok((
                NewKey { key, secret },
                ApiKey {
                    revoked_at: Some(until),
                    ..old
                },
            ))
        })
    }

    /// Every key, live ones first.
    pub fn keys(&self) -> Result<Vec<ApiKey>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY revoked_at IS NOT NULL, name, id"
        ))?;
        let rows = stmt.query_map([], key_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The key with this secret, whatever its state (`ApiKey::state`
    /// says whether it works), if any.
    pub fn key_by_secret(&self, secret: &str) -> Result<Option<ApiKey>> {
        self.key_by_hash(&key_hash(secret))
    }

    /// The key whose secret hashes to `hash` (`key_hash`), for a caller
    /// that already has it.
    pub fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1"
            ))?
            .query_row([hash], key_from_row)
            .optional()?)
    }

    /// Revokes the key of that name now: the live one, and a rotated one
    /// still in its grace.
    pub fn revoke_key(&mut self, name: &str) -> Result<ApiKey> {
        let ts = now();
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE api_keys SET revoked_at = ?2
                 WHERE name = ?1 AND (revoked_at IS NULL OR revoked_at > ?2)",
                params![name, ts],
            )?;
            if n == 0 {
                return Err(Error::InvalidInput(format!(
                    "no live key named {name:?}; `llmclis keys list` shows them"
                )));
            }
            Ok(tx.query_row(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE name = ?1 AND revoked_at = ?2
                     ORDER BY id DESC LIMIT 1"
                ),
                params![name, ts],
                key_from_row,
            )?)
        })
    }

    /// The keys named `name`, newest first.
    pub fn keys_named(&self, name: &str) -> Result<Vec<ApiKey>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE name = ?1 ORDER BY id DESC"
        ))?;
        let rows = stmt.query_map([name], key_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// What a gateway client's calls have cost, in USD: all of them, or
    /// those since a moment.
    pub fn client_spend(&self, client: &str, since: Option<DateTime<Utc>>) -> Result<f64> {
        let since = since.map_or_else(String::new, format_time);
        Ok(self.conn.prepare_cached(
            "SELECT coalesce(sum(cost_usd), 0) FROM model_calls WHERE client = ?1 AND created_at >= ?2",
        )?.query_row(params![client, since], |r| r.get(0))?)
    }

    /// A client's calls by day (UTC) and model, newest day first.
    pub fn client_spend_by_day(&self, client: &str) -> Result<Vec<DaySpend>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT substr(created_at, 1, 10) AS day, model, count(*),
                    coalesce(sum(prompt_tokens), 0), coalesce(sum(cached_tokens), 0),
                    coalesce(sum(completion_tokens), 0), coalesce(sum(cost_usd), 0)
             FROM model_calls WHERE client = ?1 AND outcome = 'ok'
             GROUP BY day, model ORDER BY day DESC, model",
        )?;
        let rows = stmt.query_map([client], |r| {
            Ok(DaySpend {
                day: r.get(0)?,
                model: r.get(1)?,
                calls: r.get::<_, i64>(2)? as u64,
                prompt_tokens: r.get::<_, i64>(3)? as u64,
                cached_tokens: r.get::<_, i64>(4)? as u64,
                completion_tokens: r.get::<_, i64>(5)? as u64,
                cost_usd: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The most recent gateway calls, newest first.
    pub fn gateway_calls(&self, limit: usize) -> Result<Vec<super::ModelCall>> {
        super::runs::recent_client_calls(&self.conn, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_hashes_to_its_sha256_in_lowercase_hex() {
        // Stored hashes were written in this form: it may not change.
        assert_eq!(
            key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn at(t: &str) -> DateTime<Utc> {
        parse_time(t).unwrap()
    }

    #[test]
    fn a_key_is_kept_hashed_found_by_its_secret_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("k.db")).unwrap();
        let limits = KeyLimits {
            budget_usd: Some(5.0),
            requests_per_minute: Some(60),
            ..Default::default()
        };
        let made = s.add_key("continue", &limits, "me").unwrap();
        assert!(made.secret.starts_with("llmclis-") && made.secret.len() > 60);
        let stored: String = s
            .conn
            .query_row("SELECT key_hash FROM api_keys", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, made.secret);
        assert_eq!(stored, key_hash(&made.secret));
        let found = s.key_by_secret(&made.secret).unwrap().unwrap();
        assert_eq!(found.name, "continue");
        assert_eq!(found.state(Utc::now()), KeyState::Live);
        assert!(s.key_by_secret("llmclis-wrong").unwrap().is_none());
        let e = s
            .add_key("continue", &KeyLimits::default(), "me")
            .unwrap_err();
        assert!(e.to_string().contains("revoke it first"), "{e}");
        assert!(s.revoke_key("continue").unwrap().revoked_at.is_some());
        let gone = s.key_by_secret(&made.secret).unwrap().unwrap();
        assert!(matches!(gone.state(Utc::now()), KeyState::Revoked(_)));
        // The name is free again; the old row stays for the record.
        s.add_key("continue", &KeyLimits::default(), "me").unwrap();
        assert_eq!(s.keys().unwrap().len(), 2);
        assert!(s.revoke_key("nobody").is_err());
        assert!(s.add_key("two words", &KeyLimits::default(), "me").is_err());
    }

    #[test]
    fn a_rotated_key_keeps_its_limits_and_the_old_one_works_until_its_grace_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("k.db")).unwrap();
        let limits = KeyLimits {
            budget_usd: Some(2.0),
            budget_period: Some(Period::Month),
            tokens_per_minute: Some(1000),
            models: Some(vec!["local-*".into()]),
            ..Default::default()
        };
        let old = s.add_key("ci", &limits, "me").unwrap();
        let (new, retiring) = s
            .rotate_key("ci", std::time::Duration::from_secs(3600), "me")
            .unwrap();
        assert_ne!(new.secret, old.secret);
        assert_eq!(new.key.models, limits.models);
        assert_eq!(new.key.tokens_per_minute, Some(1000));
        assert_eq!(new.key.budget_period, Some(Period::Month));
        let now = Utc::now();
        let o = s.key_by_secret(&old.secret).unwrap().unwrap();
        assert!(matches!(o.state(now), KeyState::Retiring(_)), "{o:?}");
        assert_eq!(o.revoked_at, retiring.revoked_at);
        let later = now + chrono::Duration::hours(2);
        assert!(matches!(o.state(later), KeyState::Revoked(_)));
        assert_eq!(
            s.key_by_secret(&new.secret).unwrap().unwrap().state(later),
            KeyState::Live
        );
        // A second rotation in the grace is fine; revoking stops them all.
        s.rotate_key("ci", std::time::Duration::from_secs(60), "me")
            .unwrap();
        s.revoke_key("ci").unwrap();
        for k in s.keys_named("ci").unwrap() {
            assert!(matches!(k.state(Utc::now()), KeyState::Revoked(_)), "{k:?}");
        }
        assert!(s.rotate_key("ci", std::time::Duration::ZERO, "me").is_err());
    }

    #[test]
    fn limits_that_cannot_work_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("k.db")).unwrap();
        let bad = [
            KeyLimits {
                budget_period: Some(Period::Day),
                ..Default::default()
            },
            KeyLimits {
                tokens_per_minute: Some(0),
                ..Default::default()
            },
            KeyLimits {
                models: Some(vec![]),
                ..Default::default()
            },
            KeyLimits {
                expires_at: Some(Utc::now() - chrono::Duration::seconds(1)),
                ..Default::default()
            },
        ];
        for l in bad {
            assert!(s.add_key("k", &l, "me").is_err(), "{l:?}");
        }
        assert!(s.keys().unwrap().is_empty());
    }

    #[test]
    fn an_expired_key_says_when() {
        let k = ApiKey {
            id: 1,
            name: "k".into(),
            prefix: "p".into(),
            budget_usd: None,
            budget_period: None,
            requests_per_minute: None,
            tokens_per_minute: None,
            models: None,
            expires_at: Some("2026-12-01T00:00:00.000Z".into()),
            created_at: "2026-11-01T00:00:00.000Z".into(),
            created_by: "me".into(),
            revoked_at: None,
        };
        assert_eq!(k.state(at("2026-11-30T23:59:59Z")), KeyState::Live);
        assert_eq!(
            k.state(at("2026-12-01T00:00:00Z")),
            KeyState::Expired("2026-12-01T00:00:00.000Z".into())
        );
    }

    #[test]
    fn periods_start_and_reset_at_utc_midnight_and_the_first_of_the_month() {
        let now = at("2026-12-31T23:30:00Z");
        assert_eq!(
            Period::Day.window(now),
            (at("2026-12-31T00:00:00Z"), at("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            Period::Month.window(now),
            (at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            Period::Month.window(at("2027-01-31T12:00:00Z")).1,
            at("2027-02-01T00:00:00Z")
        );
    }

    #[test]
    fn model_globs_match_ids() {
        for (g, s, want) in [
            ("qwen", "qwen", true),
            ("qwen", "qwen2", false),
            ("claude-*", "claude-sonnet", true),
            ("claude-*", "gpt", false),
            ("*-local", "qwen-local", true),
            ("llmclis/*", "llmclis/coder", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXcYYb", false),
            ("ab*ba", "aba", false),
            ("*", "anything", true),
        ] {
            assert_eq!(glob_match(g, s), want, "{g} vs {s}");
        }
    }

    #[test]
    fn spend_counts_a_period_and_groups_by_day_and_model() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("k.db")).unwrap();
        for (day, model, cost) in [
            ("2026-12-02", "a", 1.0),
            ("2026-12-03", "a", 0.25),
            ("2026-12-03", "b", 0.5),
        ] {
            s.conn
                .execute(
                    "INSERT INTO model_calls (role, provider, model, prompt_tokens, cached_tokens,
                         completion_tokens, cost_usd, outcome, created_at, client)
                     VALUES ('direct', 'p', ?1, 10, 4, 5, ?2, 'ok', ?3, 'c')",
                    params![model, cost, format!("{day}T12:00:00.000Z")],
                )
                .unwrap();
        }
        assert_eq!(s.client_spend("c", None).unwrap(), 1.75);
        let today = Period::Day.window(at("2026-12-03T18:00:00Z")).0;
        assert_eq!(s.client_spend("c", Some(today)).unwrap(), 0.75);
        let rows = s.client_spend_by_day("c").unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[0].day.as_str(), rows[0].model.as_str()),
            ("2026-12-03", "a")
        );
        assert_eq!(rows[2].cached_tokens, 4);
    }
}
