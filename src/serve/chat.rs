//! What both chat APIs share: which chain a model name means (a registry
//! model, `llmclis/<role>`, or `llmclis/auto` routed by the rules), the
//! call through the orchestrator's own caller (retries, cooldowns,
//! fallback), streaming with cancellation, and one record per attempt.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::auth::Client;
use super::metrics::Observed;
use super::{ApiError, Gateway};
use crate::app::gateway::{self, Route, Unroutable};
pub(crate) use crate::app::gateway::{AUTO, ROLE_PREFIX};
use crate::app::types::ModelCall;
use crate::app::types::Role;
use crate::app::types::{CallFailed, CallOutcome};
use crate::app::types::{ChatRequest, StreamEvent};

/// What served a request: `x-llmclis-model`, `x-llmclis-route`,
/// `x-llmclis-client`.
pub(crate) fn headers(route: &Route, model: &str, client: &Client) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut put = |k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    put("x-llmclis-model", model);
    put("x-llmclis-route", &route.header());
    put("x-llmclis-client", &client.name);
    h
}

/// The last user turn's text: what `llmclis/auto`'s rules route on.
pub(crate) fn last_user_text(messages: &[crate::app::types::Message]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.clone())
        .unwrap_or_default()
}

/// Resolves the `model` a client sent for a call and sets what the route
/// decides on `req`: the route's temperature unless the client gave one,
/// its role, and the request's span as the upstream's `traceparent`.
pub(crate) fn route(
    gw: &Gateway,
    client: &Client,
    model: &str,
    req: &mut ChatRequest,
    text: &str,
) -> Result<Route, ApiError> {
    let route = resolve(gw, client, model, req, text)?;
    if req.temperature.is_nan() {
        req.temperature = route.temperature;
    }
    req.role = route.role;
    req.traceparent = client.trace.traceparent();
    Ok(route)
}

/// Resolves the `model` a client sent, as the client's API error when it
/// cannot be served. `text` is the prompt, for the rules of `llmclis/auto`.
pub(crate) fn resolve(
    gw: &Gateway,
    client: &Client,
    model: &str,
    req: &ChatRequest,
    text: &str,
) -> Result<Route, ApiError> {
    let route = gateway::resolve(&gw.registry, &gw.caller, gw.ctx.mode(), model, req, text)
        .map_err(unroutable)?;
    if client.allows(model) {
        return Ok(route);
    }
    // A router name the key does not list routes among the models it does.
    let router_name = model == AUTO || model.starts_with(ROLE_PREFIX);
    let allowed = gateway::only(&gw.registry, route, |id| client.allows(id));
    match allowed {
        Some(route) if router_name => Ok(route),
        _ => {
            gw.metrics.limited(&client.name, "model");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                format!(
                    "key {:?} may not use {model:?}; it may use: {}",
                    client.name,
                    client.allowed()
                ),
            )
            .with_param("model"))
        }
    }
}

/// Why a model name cannot be served, in the client's API's terms.
fn unroutable(e: Unroutable) -> ApiError {
    {
        let (status, kind, param) = match &e {
            Unroutable::NoSuchModel { .. } => (StatusCode::NOT_FOUND, "not_found_error", true),
            Unroutable::OfflineApiModel { .. } => (StatusCode::FORBIDDEN, "permission_error", true),
            Unroutable::AllCooling { .. } | Unroutable::NoneNow { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "overloaded_error", false)
            }
        };
        let mut err = ApiError::new(status, kind, e.to_string());
        if param {
            err = err.with_param("model");
        }
        err.retry_after = e.retry_after();
        err
    }
}

/// A failed chain as the client sees it: the servers' state is a 503 with
/// `retry-after`; a request the model refused is the client's 400.
pub(crate) fn failed(f: &CallFailed) -> ApiError {
    match &f.last {
        Some(e) if e.transient() => {
            let mut a = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded_error",
                format!("every model of the chain is unavailable: {f}"),
            );
            a.retry_after = Some(10);
            a
        }
        Some(
            e @ (crate::app::types::LlmError::ContextLength(_)
            | crate::app::types::LlmError::BadRequest { .. }
            | crate::app::types::LlmError::OutputTooLong { .. }),
        ) => ApiError::invalid(format!("the model refused the request: {e}")),
        _ => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            format!("the upstream failed: {f}"),
        ),
    }
}

/// Records each attempt (skips aside) as a model call of `client`, and
/// counts it.
pub(crate) fn record(
    gw: &Gateway,
    client: &Client,
    route: &Route,
    req: &ChatRequest,
    result: &Result<CallOutcome, CallFailed>,
    cancelled: bool,
) {
    let role = route.role.map_or("direct", Role::as_str);
    let calls = gateway::records(result, req, &gw.registry, role);
    for (a, mut call) in calls {
        call.client = Some(client.name.clone());
        if let Ok(o) = result
            && a.outcome == "ok"
            && route.chain.first() != Some(&o.model)
        {
            gw.metrics.fallback(&o.model);
        }
        let (prompt, completion) = (
            call.prompt_tokens.unwrap_or(0),
            call.completion_tokens.unwrap_or(0),
        );
        gw.metrics.call(&Observed {
            client: &client.name,
            provider: &call.provider,
            model: &call.model,
            outcome: &call.outcome,
            latency_ms: a.latency_ms,
            prompt_tokens: prompt,
            cached_tokens: call.cached_tokens.unwrap_or(0),
            completion_tokens: completion,
            cost_usd: call.cost_usd,
        });
        gw.auth
            .add_use(&client.name, call.cost_usd, prompt + completion);
        gw.trace.attempt(&client.trace, a, &call);
        gw.record(call);
    }
    if cancelled {
        let call = ModelCall {
            role: role.to_string(),
            purpose: Some("gateway".into()),
            provider: String::new(),
            model: route.chain.first().cloned().unwrap_or_default(),
            outcome: "cancelled".into(),
            error: Some("the client went away mid-answer".into()),
            prompt: Some(serde_json::to_string(&req.messages).expect("messages serialize")),
            client: Some(client.name.clone()),
            ..Default::default()
        };
        gw.record(call);
    }
}

/// One call down the chain, recorded.
pub(crate) async fn complete(
    gw: &Gateway,
    client: &Client,
    route: &Route,
    req: &ChatRequest,
) -> Result<CallOutcome, ApiError> {
    let result = gw.caller.call(&route.chain, req, None).await;
    record(gw, client, route, req, &result, false);
    result.map_err(|f| failed(&f))
}

/// What a streamed call sends its response.
pub(crate) enum Piece {
    Token(String),
    /// The call ended: its outcome, or why the client gets an error.
    Done(Box<Result<CallOutcome, ApiError>>),
}

/// Cancels the call when the response is dropped: a client that goes away
/// mid-stream stops the upstream request (reqwest drops its connection).
pub(crate) struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Starts a streamed call: tokens as they come, then `Done`. A model that
/// fails after sending tokens ends the stream with an error rather than a
/// second answer spliced onto the first.
pub(crate) fn stream(
    gw: Arc<Gateway>,
    client: Client,
    route: Route,
    mut req: ChatRequest,
) -> (mpsc::UnboundedReceiver<Piece>, CancelOnDrop) {
    let (tx, rx) = mpsc::unbounded_channel();
    let token = CancellationToken::new();
    let cancel = token.clone();
    req.stream = req.tools.is_empty();
    tokio::spawn(async move {
        let mut sent = false;
        let mut cut: Option<String> = None;
        let sink_tx = tx.clone();
        let mut sink = |e: StreamEvent<'_>| match e {
            StreamEvent::Token(t) if cut.is_none() => {
                sent = true;
                let _ = sink_tx.send(Piece::Token(t.to_string()));
            }
            StreamEvent::Restart {
                failed_model,
                next_model,
            } if sent && cut.is_none() => {
                cut = Some(format!(
                    "{failed_model} failed mid-answer; {next_model} would start over, so the answer so far is incomplete"
                ));
            }
            _ => {}
        };
        let call = gw.caller.call(&route.chain, &req, Some(&mut sink));
        let result = tokio::select! {
            r = call => Some(r),
            _ = cancel.cancelled() => None,
        };
        match result {
            Some(result) => {
                record(&gw, &client, &route, &req, &result, false);
                let piece = match (result, cut) {
                    (_, Some(why)) => Err(ApiError::new(StatusCode::BAD_GATEWAY, "api_error", why)),
                    (Ok(o), None) => Ok(o),
                    (Err(f), None) => Err(failed(&f)),
                };
                let _ = tx.send(Piece::Done(Box::new(piece)));
            }
            None => {
                let none: Result<CallOutcome, CallFailed> = Err(CallFailed {
                    attempts: Vec::new(),
                    last: None,
                });
                record(&gw, &client, &route, &req, &none, true);
            }
        }
    });
    (rx, CancelOnDrop(token))
}
