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

use super::{ApiError, Gateway};

/// The client a request is recorded under: its key's name.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub name: String,
}

pub(crate) struct Auth {
    required: bool,
    /// Each key's requests in the last minute.
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
    /// What each client has spent: read from the store once, then kept up
    /// as calls are recorded, so a budget check is no query.
    spent: Mutex<HashMap<String, f64>>,
    /// Keys seen lately, by the secret's hash: a request within `KEY_TTL`
    /// of the last look-up skips the store; a revoke takes effect within it.
    seen: Mutex<HashMap<String, (crate::app::types::ApiKey, Instant)>>,
}

const KEY_TTL: Duration = Duration::from_secs(2);

impl Auth {
    pub fn new(required: bool) -> Auth {
        Auth {
            required,
            recent: Mutex::new(HashMap::new()),
            spent: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn required(&self) -> bool {
        self.required
    }

    /// The live key with this secret, from the store at most every
    /// `KEY_TTL`.
    fn key(
        &self,
        gw: &Gateway,
        secret: &str,
    ) -> crate::error::Result<Option<crate::app::types::ApiKey>> {
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
        let found = gw.db().key_by_secret(secret)?;
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

    /// What `client` has spent, from the store the first time.
    fn spent(&self, gw: &Gateway, client: &str) -> f64 {
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = spent.get(client) {
            return *s;
        }
        let s = gw.db().client_spend(client).unwrap_or(0.0);
        spent.insert(client.to_string(), s);
        s
    }

    /// A recorded call's cost, added to its client's spend.
    pub fn add_spent(&self, client: &str, usd: f64) {
        if usd > 0.0 {
            let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = spent.get_mut(client) {
                *s += usd;
            }
        }
    }

    /// Counts a request against a per-minute limit: the seconds to wait
    /// when over it.
    fn over_rate(&self, name: &str, per_minute: u32) -> Option<u64> {
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let q = recent.entry(name.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= minute) {
            q.pop_front();
        }
        if q.len() >= per_minute as usize {
            let oldest = *q.front().expect("over the limit means not empty");
            let wait = minute.saturating_sub(now.duration_since(oldest));
            return Some(wait.as_secs().max(1));
        }
        q.push_back(now);
        None
    }
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
    let anthropic = req.uri().path() == "/v1/messages";
    let shaped = |e: ApiError| if anthropic { e.anthropic() } else { e }.into_response();
    if !gw.auth.required() {
        req.extensions_mut().insert(Client {
            name: "local".into(),
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
                "this API key is unknown or revoked; `llmclis keys list` shows the live ones",
            ));
        }
        Err(e) => return shaped(ApiError::from(e)),
    };
    if let Some(rpm) = key.requests_per_minute
        && let Some(wait) = gw.auth.over_rate(&key.name, rpm)
    {
        gw.metrics.limited(&key.name);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!(
                "key {:?} is limited to {rpm} requests a minute; retry in {wait} s",
                key.name
            ),
        );
        e.retry_after = Some(wait);
        return shaped(e);
    }
    if let Some(budget) = key.budget_usd {
        let spent = gw.auth.spent(&gw, &key.name);
        if spent >= budget {
            gw.metrics.limited(&key.name);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                format!(
                    "key {:?} has spent ${spent:.4} of its ${budget:.2} budget; make a new key or raise it",
                    key.name
                ),
            );
            e.retry_after = Some(3600);
            return shaped(e);
        }
    }
    // MCP calls over HTTP claim and note as the client.
    req.extensions_mut()
        .insert(crate::app::Agent(key.name.clone()));
    req.extensions_mut().insert(Client { name: key.name });
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_counts_a_sliding_minute() {
        let a = Auth::new(true);
        assert_eq!(a.over_rate("k", 2), None);
        assert_eq!(a.over_rate("k", 2), None);
        let wait = a.over_rate("k", 2).expect("third in a minute is over");
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(a.over_rate("other", 2), None, "per key");
    }
}
