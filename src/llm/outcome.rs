//! What a call along a chain came to: each attempt (model, outcome,
//! latency, error), the answer that came back, or why none did.

use serde::Serialize;

use super::{ChatResponse, LlmError};

/// One try of one model, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub model: String,
    pub provider: String,
    /// `ok`, `error` or `skipped`.
    pub outcome: &'static str,
    pub error_kind: Option<&'static str>,
    pub error: Option<String>,
    /// The error was the server's state (down, busy, loading), not the
    /// request's.
    pub transient: bool,
    pub latency_ms: u64,
    /// When it began (for a trace's span; records keep their own time).
    #[serde(skip)]
    pub started_at: std::time::SystemTime,
}

impl Attempt {
    /// An error of the server's, not of the request (see
    /// `LlmError::server_fault`).
    pub fn server_fault(&self) -> bool {
        self.outcome == "error"
            && !matches!(
                self.error_kind,
                Some("context_length" | "max_tokens" | "bad_request")
            )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CallOutcome {
    pub model: String,
    pub provider: String,
    pub response: ChatResponse,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("no model in the chain answered ({}); tried: {}", .last.as_ref().map(|e| e.to_string()).unwrap_or_else(|| "nothing was tried".into()), summary(.attempts))]
pub struct CallFailed {
    pub attempts: Vec<Attempt>,
    pub last: Option<LlmError>,
}

impl CallFailed {
    /// A server's fault stood in the way: some model failed for its
    /// server, or none could be asked at all (every one cooling down).
    /// Not the task's fault, so it never blocks one.
    pub fn server_fault(&self) -> bool {
        self.attempts.iter().any(Attempt::server_fault)
            || self.attempts.iter().all(|a| a.outcome == "skipped")
    }

    /// The last model a request went to.
    pub fn last_model(&self) -> Option<&str> {
        self.attempts
            .iter()
            .rev()
            .find(|a| a.outcome != "skipped")
            .map(|a| a.model.as_str())
    }
}

/// Each model tried, in order, with its last error and how many tries it
/// took: "a: server error 500: … (2 tries); b: skipped (cooling down)".
pub(super) fn summary(attempts: &[Attempt]) -> String {
    if attempts.is_empty() {
        return "none".into();
    }
    let mut models: Vec<(&str, usize, &Attempt)> = Vec::new();
    for a in attempts {
        match models.iter_mut().find(|m| m.0 == a.model) {
            Some(m) => {
                m.1 += usize::from(a.outcome != "skipped");
                m.2 = a;
            }
            None => models.push((&a.model, usize::from(a.outcome != "skipped"), a)),
        }
    }
    models
        .iter()
        .map(|(model, tries, last)| {
            let what = last
                .error
                .as_deref()
                .map(|e| crate::text::short(e, 160))
                .unwrap_or_else(|| last.outcome.to_string());
            match (last.outcome, tries) {
                ("skipped", _) => format!("{model}: skipped ({what})"),
                (_, 1) => format!("{model}: {what}"),
                (_, n) => format!("{model}: {what} ({n} tries)"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
