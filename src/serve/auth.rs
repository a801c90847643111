//! Who is asking: the client's key (`Authorization: Bearer …`, or
//! Anthropic's `x-api-key`), its request rate and its budget. A request
//! that passes carries a `Client` for the handlers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use chrono::{DateTime, Utc};

use super::{ApiError, Gateway};
use crate::app::types::{ApiKey, KeyState};

/// The client a request is recorded under: its key's name, and the models
/// the key may use.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub name: String,
    /// Ids or globs (`ApiKey::allows`); None: every model.
    pub key: Option<Arc<ApiKey>>,
    /// The request's span, for its model attempts' spans.
    pub trace: super::trace::Parent,
}

impl Client {
    pub fn allows(&self, model: &str) -> bool {
        self.key.as_ref().is_none_or(|k| k.allows(model))
    }

    /// The models the key may use, for a refusal.
    pub fn allowed(&self) -> String {
        self.key
            .as_ref()
            .and_then(|k| k.models.as_ref())
            .map_or_else(|| "every model".into(), |m| m.join(", "))
    }
}

/// Amounts in the last minute, per client: requests for `--rpm`, tokens
/// for `--tpm`. Instants are passed in, so tests move time themselves.
#[derive(Default)]
struct Minute {
    seen: Mutex<HashMap<String, VecDeque<(Instant, u64)>>>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Minute {
    /// The amount in the minute before `now`, and the seconds until it is
    /// under `limit` again when it is not.
    fn check(&self, name: &str, limit: u64, now: Instant) -> (u64, Option<u64>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = seen.get_mut(name) else {
            return (0, None);
        };
        while q
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= MINUTE)
        {
            q.pop_front();
        }
        let used: u64 = q.iter().map(|(_, n)| n).sum();
        if used < limit {
            return (used, None);
        }
        // Wait for the oldest entries whose leaving brings it under.
        let mut left = used;
        for (t, n) in q.iter() {
            left -= n;
            if left < limit {
                let wait = MINUTE.saturating_sub(now.duration_since(*t));
                return (used, Some(wait.as_secs().max(1)));
            }
        }
        (used, Some(60))
    }

    fn add(&self, name: &str, n: u64, now: Instant) {
        if n > 0 {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.entry(name.to_string())
                .or_default()
                .push_back((now, n));
        }
    }
}

pub(crate) struct Auth {
    required: bool,
    requests: Minute,
    tokens: Minute,
    /// What each client has spent in its budget's period (keyed by the
    /// period's start): read from the store once a period, then kept up as
    /// calls are recorded, so a budget check is no query.
    spent: Mutex<HashMap<String, (Option<String>, f64)>>,
    /// Keys seen lately, by the secret's hash: a request within `KEY_TTL`
    /// of the last look-up skips the store; a revoke takes effect within it.
    seen: Mutex<HashMap<String, (Arc<ApiKey>, Instant)>>,
}

const KEY_TTL: Duration = Duration::from_secs(2);

impl Auth {
    pub fn new(required: bool) -> Auth {
        Auth {
            required,
            requests: Minute::default(),
            tokens: Minute::default(),
            spent: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn required(&self) -> bool {
        self.required
    }

    /// The key with this secret, whatever its state, from the store at
    /// most every `KEY_TTL`.
    fn key(&self, gw: &Gateway, secret: &str) -> crate::error::Result<Option<Arc<ApiKey>>> {
        let hash = crate::app::keys::secret_hash(secret);
        if let Some((k, at)) = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            && at.elapsed() < KEY_TTL
        {
            return Ok(Some(k.clone()));
        }
        let found = gw.db().key_by_hash(&hash)?.map(Arc::new);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match &found {
            Some(k) => {
                seen.insert(hash, (k.clone(), Instant::now()));
            }
            None => {
                seen.remove(&hash);
            }
        }
        Ok(found)
    }

    /// What the key's client has spent in its budget's period, and when
    /// that period ends; from the store the first time in a period.
    fn spent(&self, gw: &Gateway, key: &ApiKey, now: DateTime<Utc>) -> (f64, Option<String>) {
        let window = key.budget_period.map(|p| p.window(now));
        let start = window.map(|w| crate::app::types::format_time(w.0));
        let resets = window.map(|w| crate::app::types::format_time(w.1));
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, usd)) = spent.get(&key.name)
            && *s == start
        {
            return (*usd, resets);
        }
        let usd = crate::app::keys::spend(&gw.db(), key, now).map_or(0.0, |s| s.spent_usd);
        spent.insert(key.name.clone(), (start, usd));
        (usd, resets)
    }

    /// A recorded call's cost and tokens, added to its client's.
    pub fn add_use(&self, client: &str, usd: f64, tokens: u64) {
        self.tokens.add(client, tokens, Instant::now());
        if usd > 0.0 {
            let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, s)) = spent.get_mut(client) {
                *s += usd;
            }
        }
    }

    /// Why `key` may not make a request now, if it may not: its state,
    /// then each limit, each refusal naming the limit and when it resets.
    fn refusal(&self, gw: &Gateway, key: &ApiKey) -> Option<(&'static str, ApiError)> {
        let now = Utc::now();
        let name = &key.name;
        let unauthorized =
            |m: String| ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", m);
        match key.state(now) {
            KeyState::Revoked(at) => {
                return Some((
                    "revoked",
                    unauthorized(format!(
                        "key {name:?} stopped working at {at} (revoked, or rotated and its grace is over); `llmclis keys show {name}` says which key is live"
                    )),
                ));
            }
            KeyState::Expired(at) => {
                return Some((
                    "expired",
                    unauthorized(format!(
                        "key {name:?} expired at {at}; its owner can renew it with `llmclis keys rotate {name}`"
                    )),
                ));
            }
            KeyState::Live | KeyState::Retiring(_) => {}
        }
        let limited = |kind: &'static str,
                       message: String,
                       wait: u64,
                       headers: Vec<(&'static str, String)>| {
            let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, kind, message);
            e.retry_after = Some(wait);
            e.headers = headers;
            e
        };
        let instant = Instant::now();
        if let Some(rpm) = key.requests_per_minute {
            let (_, wait) = self.requests.check(name, rpm.into(), instant);
            if let Some(wait) = wait {
                let message = format!(
                    "key {name:?} is limited to {rpm} requests a minute; the limit resets in {wait} s"
                );
                return Some((
                    "rpm",
                    limited(
                        "rate_limit_error",
                        message,
                        wait,
                        rate_headers("requests", rpm.into(), 0, wait),
                    ),
                ));
            }
        }
        if let Some(tpm) = key.tokens_per_minute {
            let (used, wait) = self.tokens.check(name, tpm.into(), instant);
            if let Some(wait) = wait {
                let message = format!(
                    "key {name:?} is limited to {tpm} tokens a minute and used {used}; the limit resets in {wait} s"
                );
                return Some((
                    "tpm",
                    limited(
                        "rate_limit_error",
                        message,
                        wait,
                        rate_headers("tokens", tpm.into(), 0, wait),
                    ),
                ));
            }
        }
        if let Some(budget) = key.budget_usd {
            let (spent, resets) = self.spent(gw, key, now);
            if spent >= budget {
                let (what, when, wait) = match (key.budget_period, &resets) {
                    (Some(p), Some(r)) => {
                        let wait = p
                            .window(now)
                            .1
                            .signed_duration_since(now)
                            .num_seconds()
                            .max(1) as u64;
                        (
                            format!("{} budget", p.adjective()),
                            format!("it resets at {r}"),
                            wait,
                        )
                    }
                    _ => (
                        "budget".to_string(),
                        "it does not reset: raise it with a new key (`llmclis keys add`)"
                            .to_string(),
                        3600,
                    ),
                };
                let message = format!(
                    "key {name:?} has spent ${spent:.4} of its ${budget:.2} {what}; {when}"
                );
                return Some((
                    "budget",
                    limited("insufficient_quota", message, wait, Vec::new()),
                ));
            }
        }
        if key.requests_per_minute.is_some() {
            self.requests.add(name, 1, instant);
        }
        None
    }
}

/// The rate-limit headers OpenAI's API sends (`x-ratelimit-*`), which
/// clients read to pace themselves.
fn rate_headers(what: &str, limit: u64, remaining: u64, reset: u64) -> Vec<(&'static str, String)> {
    let (l, r, s) = if what == "tokens" {
        (
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        )
    } else {
        (
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        )
    };
    vec![
        (l, limit.to_string()),
        (r, remaining.to_string()),
        (s, format!("{reset}s")),
    ]
}

/// The request's span, as the access log opened it.
fn parent(req: &Request) -> super::trace::Parent {
    req.extensions()
        .get::<super::trace::Parent>()
        .cloned()
        .unwrap_or_default()
}

/// The key a request presents.
fn presented(req: &Request) -> Option<String> {
    let h = req.headers();
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        return Some(v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string());
    }
    h.get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

/// Lets a request through with its `Client`, or answers 401 / 429 in the
/// shape of the API it called.
pub(crate) async fn require_key(
    State(gw): State<Arc<Gateway>>,
    mut req: Request,
    next: Next,
) -> Response {
    let anthropic = req.uri().path().starts_with("/v1/messages");
    let shaped = |e: ApiError| if anthropic { e.anthropic() } else { e }.into_response();
    if !gw.auth.required() {
        let trace = parent(&req);
        req.extensions_mut().insert(Client {
            name: "local".into(),
            key: None,
            trace,
        });
        return next.run(req).await;
    }
    let Some(secret) = presented(&req) else {
        return shaped(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "no API key: send `Authorization: Bearer <key>` (keys come from `llmclis keys add NAME`)",
        ));
    };
    let found = gw.auth.key(&gw, &secret);
    let key = match found {
        Ok(Some(k)) => k,
        Ok(None) => {
            return shaped(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "this API key is unknown; `llmclis keys list` shows the keys",
            ));
        }
        Err(e) => return shaped(ApiError::from(e)),
    };
    if let Some((limit, e)) = gw.auth.refusal(&gw, &key) {
        gw.metrics.limited(&key.name, limit);
        return shaped(e);
    }
    // MCP calls over HTTP claim and note as the client.
    req.extensions_mut()
        .insert(crate::app::Agent(key.name.clone()));
    let trace = parent(&req);
    req.extensions_mut().insert(Client {
        name: key.name.clone(),
        key: Some(key),
        trace,
    });
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_counts_what_is_in_it_and_says_when_it_is_under_again() {
        let m = Minute::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(m.check("k", 100, at(0)), (0, None));
        m.add("k", 60, at(0));
        m.add("k", 30, at(10));
        assert_eq!(m.check("k", 100, at(20)), (90, None), "under the limit");
        m.add("k", 30, at(20));
        // 120 of 100: under again once the first 60 leave, at 60 s.
        assert_eq!(m.check("k", 100, at(30)), (120, Some(30)));
        assert_eq!(m.check("k", 100, at(60)), (60, None), "the first has left");
        assert_eq!(m.check("other", 1, at(60)), (0, None), "per client");
    }
}
