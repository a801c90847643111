//! A call's attempts as the rows the store keeps (`model_calls`): one per
//! attempt, the one that answered with its usage, cost and text.

use super::outcome::{Attempt, CallFailed, CallOutcome};
use super::{ChatRequest, Usage};
use crate::registry::Registry;

/// A call's attempts (skips aside) as records, in order, each with the
/// attempt it stands for: model, outcome, error, latency and the messages
/// sent; the one that answered also carries its usage, cost and text. The
/// caller says who asked (run, step, task or client) and records them.
pub fn call_records<'a>(
    result: &'a Result<CallOutcome, CallFailed>,
    req: &ChatRequest,
    registry: &Registry,
    role: &str,
    purpose: &str,
) -> Vec<(&'a Attempt, crate::store::ModelCall)> {
    let attempts = match result {
        Ok(o) => &o.attempts,
        Err(f) => &f.attempts,
    };
    let prompt = serde_json::to_string(&req.messages).expect("messages serialize");
    attempts
        .iter()
        .filter(|a| a.outcome != "skipped")
        .map(|a| {
            let mut call = crate::store::ModelCall {
                role: role.to_string(),
                purpose: Some(purpose.to_string()),
                provider: a.provider.clone(),
                model: a.model.clone(),
                latency_ms: Some(a.latency_ms),
                outcome: a.outcome.to_string(),
                error: a.error.clone(),
                prompt: Some(prompt.clone()),
                ..Default::default()
            };
            if let (Ok(o), "ok") = (result, a.outcome) {
                let u = o.response.usage;
                call.prompt_tokens = Some(u.prompt_tokens);
                call.completion_tokens = Some(u.completion_tokens);
                call.tokens_estimated = u.estimated;
                call.cached_tokens = (u.cached_tokens > 0).then_some(u.cached_tokens);
                call.cache_write_tokens =
                    (u.cache_write_tokens > 0).then_some(u.cache_write_tokens);
                call.cost_usd = registry.model(&o.model).map_or(0.0, |m| cost(m, &u));
                call.response = Some(o.response.text.clone());
            }
            (a, call)
        })
        .collect()
}

/// USD for a call's usage on `m`, its cached and cache-written input at
/// their own rates.
fn cost(m: &crate::registry::Model, u: &Usage) -> f64 {
    let cached = u.cached_tokens.min(u.prompt_tokens);
    let written = u.cache_write_tokens.min(u.prompt_tokens - cached);
    let fresh = u.prompt_tokens - cached - written;
    (fresh as f64 * m.cost_per_1m_input
        + cached as f64 * m.cost_per_1m_cached_input
        + written as f64 * m.cost_per_1m_cache_write
        + u.completion_tokens as f64 * m.cost_per_1m_output)
        / 1e6
}
