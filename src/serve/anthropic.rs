//! `POST /v1/messages`, for clients that speak only Anthropic's Messages
//! API: the same routing and records as the OpenAI side, answered (and
//! streamed, event by event) in Anthropic's shapes.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Client;
use super::chat::{self};
use super::openai::parse;
use super::{ApiError, Gateway};
use crate::app::types::CallOutcome;
use crate::app::types::{ChatRequest, Message};

#[derive(Debug, Deserialize)]
struct MessagesBody {
    model: String,
    messages: Vec<InMessage>,
    system: Option<Blocks>,
    /// Required by `/v1/messages`; `count_tokens` takes none.
    max_tokens: Option<u64>,
    temperature: Option<f32>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    tools: Vec<Tool>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    content: Blocks,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Blocks {
    Text(String),
    Many(Vec<Block>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
        cache_control: Option<Value>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
        cache_control: Option<Value>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<Blocks>,
        cache_control: Option<Value>,
    },
}

impl Block {
    fn cache_control(&self) -> Option<&Value> {
        match self {
            Block::Text { cache_control, .. }
            | Block::ToolUse { cache_control, .. }
            | Block::ToolResult { cache_control, .. } => cache_control.as_ref(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Tool {
    name: String,
    #[serde(default)]
    description: String,
    input_schema: Value,
    cache_control: Option<Value>,
}

fn text_of(b: &Blocks) -> String {
    match b {
        Blocks::Text(t) => t.clone(),
        Blocks::Many(v) => v
            .iter()
            .filter_map(|b| match b {
                Block::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(""),
    }
}

/// The last cache breakpoint among blocks: the caller's messages keep one
/// per turn, at its end.
fn cache_of(b: &Blocks) -> Option<Value> {
    match b {
        Blocks::Text(_) => None,
        Blocks::Many(v) => v.iter().rev().find_map(Block::cache_control).cloned(),
    }
}

/// Anthropic's conversation in the caller's (OpenAI-shaped) messages: a
/// `tool_use` block is an assistant tool call, a `tool_result` a tool turn.
fn to_request(b: &MessagesBody) -> Result<(ChatRequest, String), ApiError> {
    let mut messages = Vec::new();
    if let Some(s) = &b.system {
        messages.push(Message {
            cache_control: cache_of(s),
            ..Message::system(text_of(s))
        });
    }
    for m in &b.messages {
        if !matches!(m.role.as_str(), "user" | "assistant") {
            return Err(ApiError::invalid(format!(
                "message role {:?}: expected user or assistant",
                m.role
            ))
            .anthropic());
        }
        let blocks = match &m.content {
            Blocks::Text(t) => {
                messages.push(Message::plain(&m.role, t.clone()));
                continue;
            }
            Blocks::Many(v) => v,
        };
        let mut text = String::new();
        let mut calls = Vec::new();
        let mut cache = None;
        for block in blocks {
            match block {
                Block::Text {
                    text: t,
                    cache_control,
                } => {
                    text.push_str(t);
                    cache = cache_control.clone().or(cache);
                }
                Block::ToolUse {
                    id,
                    name,
                    input,
                    cache_control,
                } => {
                    calls.push(
                        json!({"id": id, "type": "function", "function": {"name": name, "arguments": input.to_string()}}),
                    );
                    cache = cache_control.clone().or(cache);
                }
                Block::ToolResult {
                    tool_use_id,
                    content,
                    cache_control,
                } => messages.push(Message {
                    tool_call_id: Some(tool_use_id.clone()),
                    cache_control: cache_control.clone(),
                    ..Message::plain("tool", content.as_ref().map(text_of).unwrap_or_default())
                }),
            }
        }
        if !text.is_empty() || !calls.is_empty() {
            messages.push(Message {
                tool_calls: (!calls.is_empty()).then(|| Value::Array(calls)),
                cache_control: cache,
                ..Message::plain(&m.role, text)
            });
        }
    }
    let prompt = chat::last_user_text(&messages);
    let tools = b
        .tools
        .iter()
        .map(|t| {
            let mut tool = json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.input_schema}});
            if let Some(c) = &t.cache_control {
                tool["cache_control"] = c.clone();
            }
            tool
        })
        .collect();
    Ok((
        ChatRequest {
            messages,
            temperature: b.temperature.unwrap_or(f32::NAN),
            max_tokens: b.max_tokens.unwrap_or(1).max(1),
            tools,
            ..Default::default()
        },
        prompt,
    ))
}

fn stop_reason(o: &CallOutcome) -> &'static str {
    if !o.response.tool_calls.is_empty() {
        "tool_use"
    } else if matches!(
        o.response.finish_reason.as_deref(),
        Some("length") | Some("max_tokens")
    ) {
        "max_tokens"
    } else {
        "end_turn"
    }
}

fn content(o: &CallOutcome) -> Vec<Value> {
    let mut out = Vec::new();
    if !o.response.text.is_empty() || o.response.tool_calls.is_empty() {
        out.push(json!({"type": "text", "text": o.response.text}));
    }
    for c in &o.response.tool_calls {
        out.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}));
    }
    out
}

/// Usage in Anthropic's terms: `input_tokens` is what the cache neither
/// served nor took.
fn usage(u: &crate::app::types::Usage) -> Value {
    let fresh = u
        .prompt_tokens
        .saturating_sub(u.cached_tokens + u.cache_write_tokens);
    json!({"input_tokens": fresh, "output_tokens": u.completion_tokens,
           "cache_read_input_tokens": u.cached_tokens,
           "cache_creation_input_tokens": u.cache_write_tokens})
}

/// `POST /v1/messages/count_tokens`: the input tokens a request would be
/// to the model it routes to, counted by that model's server when it can
/// (Anthropic's own count), else the router's estimate, which is what the
/// gateway itself fits requests by.
pub(crate) async fn count_tokens(
    State(gw): State<Arc<Gateway>>,
    Extension(client): Extension<Client>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: MessagesBody = parse(&body).map_err(ApiError::anthropic)?;
    let (req, text) = to_request(&b)?;
    let route = chat::resolve(&gw, &client, &b.model, &req, &text).map_err(ApiError::anthropic)?;
    let counted = gw.caller.count_tokens(&route.chain[0], &req).await;
    let n = counted.unwrap_or_else(|| crate::app::gateway::estimate_input(&req));
    Ok(axum::Json(json!({"input_tokens": n})).into_response())
}

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

pub(crate) async fn messages(
    State(gw): State<Arc<Gateway>>,
    Extension(client): Extension<Client>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: MessagesBody = parse(&body).map_err(ApiError::anthropic)?;
    if b.max_tokens.is_none() {
        return Err(ApiError::invalid("max_tokens: Field required")
            .with_param("max_tokens")
            .anthropic());
    }
    let (mut req, text) = to_request(&b)?;
    let route =
        chat::route(&gw, &client, &b.model, &mut req, &text).map_err(ApiError::anthropic)?;
    let id = format!("msg_{:016x}", fastrand::u64(..));
    if !b.stream {
        let o = chat::complete(&gw, &client, &route, &req)
            .await
            .map_err(ApiError::anthropic)?;
        let answer = json!({
            "id": id, "type": "message", "role": "assistant", "model": o.model,
            "content": content(&o), "stop_reason": stop_reason(&o), "stop_sequence": Value::Null,
            "usage": usage(&o.response.usage),
        });
        return Ok((chat::headers(&route, &o.model, &client), axum::Json(answer)).into_response());
    }
    let first = route.chain[0].clone();
    let served = chat::headers(&route, &first, &client);
    let (rx, guard) = chat::stream(gw, client, route, req);
    let opening = event(
        "message_start",
        &json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant", "model": first,
                "content": [], "stop_reason": Value::Null, "stop_sequence": Value::Null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
    ) + &event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    let token = |t: String| {
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}),
        )
    };
    let done = |r: Result<CallOutcome, ApiError>| match r {
        Ok(o) => {
            let mut s = String::new();
            // Tools are answered whole (no upstream stream), so the text
            // comes here rather than as deltas.
            if !o.response.tool_calls.is_empty() && !o.response.text.is_empty() {
                s.push_str(&event("content_block_delta", &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": o.response.text}})));
            }
            s.push_str(&event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            for (i, c) in o.response.tool_calls.iter().enumerate() {
                let index = i + 1;
                s.push_str(&event("content_block_start", &json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": c.id, "name": c.name, "input": {}}})));
                s.push_str(&event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": c.arguments.to_string()}})));
                s.push_str(&event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": index}),
                ));
            }
            s.push_str(&event("message_delta", &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(&o), "stop_sequence": Value::Null}, "usage": usage(&o.response.usage)})));
            s.push_str(&event("message_stop", &json!({"type": "message_stop"})));
            s
        }
        // In-band after the 200, as Anthropic's own API does.
        Err(e) => event("error", &e.anthropic().body()),
    };
    Ok(super::events::stream_response(
        served,
        opening,
        rx,
        guard,
        super::events::Framing { token, done },
    ))
}
