//! The OpenAI-compatible API: `POST /v1/chat/completions` (streamed or not,
//! tools, `response_format`), `GET /v1/models`, `POST /v1/embeddings`.
//! Request and answer shapes follow OpenAI's API reference, which is what
//! the official clients parse.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Client;
use super::chat::{self};
use super::{ApiError, Gateway};
use crate::app::types::CallOutcome;
use crate::app::types::{ChatRequest, Message};

/// A request body parsed into `T`, or a 400 that names the field.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let m = e.to_string();
        let param = m
            .split('`')
            .nth(1)
            .filter(|_| m.contains("field"))
            .map(String::from);
        let mut err = ApiError::invalid(format!("the request body is not valid: {m}"));
        err.param = param;
        err
    })
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    temperature: Option<f32>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    tools: Vec<Value>,
    response_format: Option<ResponseFormat>,
    n: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: String,
    json_schema: Option<JsonSchemaFormat>,
}

#[derive(Debug, Deserialize)]
struct JsonSchemaFormat {
    schema: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    tool_calls: Option<Value>,
    tool_call_id: Option<String>,
}

/// A message's content: text, or parts of which the text ones are kept.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

impl Content {
    pub fn text(&self) -> Result<String, ApiError> {
        match self {
            Content::Text(t) => Ok(t.clone()),
            Content::Parts(parts) => {
                let mut out = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => out.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::invalid(format!(
                                "content part of type {kind:?} is not supported; send text"
                            ))
                            .with_param("messages"));
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

/// The OpenAI body as the caller's request, and the prompt's text for the
/// router.
fn to_request(b: &ChatBody) -> Result<(ChatRequest, String), ApiError> {
    if b.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n must be 1: one answer per request").with_param("n"));
    }
    if b.messages.is_empty() {
        return Err(ApiError::invalid("messages is empty").with_param("messages"));
    }
    let mut messages = Vec::new();
    for m in &b.messages {
        if !matches!(
            m.role.as_str(),
            "system" | "developer" | "user" | "assistant" | "tool"
        ) {
            return Err(ApiError::invalid(format!(
                "message role {:?}: expected system, user, assistant or tool",
                m.role
            ))
            .with_param("messages"));
        }
        let role = if m.role == "developer" {
            "system"
        } else {
            m.role.as_str()
        };
        let content = m
            .content
            .as_ref()
            .map(Content::text)
            .transpose()?
            .unwrap_or_default();
        messages.push(Message {
            tool_calls: m.tool_calls.clone(),
            tool_call_id: m.tool_call_id.clone(),
            ..Message::plain(role, content)
        });
    }
    let text = chat::last_user_text(&messages);
    let json_schema = match &b.response_format {
        None => None,
        Some(f) => match f.kind.as_str() {
            "text" => None,
            "json_object" => Some(json!({"type": "object"})),
            "json_schema" => Some(
                f.json_schema
                    .as_ref()
                    .and_then(|s| s.schema.clone())
                    .ok_or_else(|| {
                        ApiError::invalid("response_format json_schema needs json_schema.schema")
                            .with_param("response_format")
                    })?,
            ),
            other => {
                return Err(ApiError::invalid(format!(
                    "response_format type {other:?}: expected text, json_object or json_schema"
                ))
                .with_param("response_format"));
            }
        },
    };
    Ok((
        ChatRequest {
            messages,
            temperature: b.temperature.unwrap_or(f32::NAN),
            max_tokens: b
                .max_completion_tokens
                .or(b.max_tokens)
                .unwrap_or(1024)
                .max(1),
            json_schema,
            tools: b.tools.clone(),
            ..Default::default()
        },
        text,
    ))
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn call_id() -> String {
    format!("chatcmpl-{:016x}", fastrand::u64(..))
}

fn tool_calls(o: &CallOutcome) -> Value {
    Value::Array(
        o.response
            .tool_calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments.to_string()}})
            })
            .collect(),
    )
}

fn finish_reason(o: &CallOutcome) -> String {
    if !o.response.tool_calls.is_empty() {
        "tool_calls".into()
    } else {
        match o.response.finish_reason.as_deref() {
            Some("length") | Some("max_tokens") => "length".into(),
            _ => "stop".into(),
        }
    }
}

fn usage(o: &CallOutcome) -> Value {
    let u = o.response.usage;
    json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
           "total_tokens": u.prompt_tokens + u.completion_tokens,
           "prompt_tokens_details": {"cached_tokens": u.cached_tokens}})
}

pub(crate) async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    Extension(client): Extension<Client>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: ChatBody = parse(&body)?;
    let (mut req, text) = to_request(&b)?;
    let route = chat::route(&gw, &client, &b.model, &mut req, &text)?;
    if !b.stream {
        let o = chat::complete(&gw, &client, &route, &req).await?;
        let message = if o.response.tool_calls.is_empty() {
            json!({"role": "assistant", "content": o.response.text})
        } else {
            json!({"role": "assistant", "content": Value::Null, "tool_calls": tool_calls(&o)})
        };
        let answer = json!({
            "id": call_id(),
            "object": "chat.completion",
            "created": now(),
            "model": o.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(&o), "logprobs": Value::Null}],
            "usage": usage(&o),
        });
        return Ok((chat::headers(&route, &o.model, &client), axum::Json(answer)).into_response());
    }
    let include_usage = b.stream_options.as_ref().is_some_and(|s| s.include_usage);
    let first = route.chain[0].clone();
    let h = chat::headers(&route, &first, &client);
    let (rx, guard) = chat::stream(gw, client, route, req);
    let id = call_id();
    let created = now();
    let chunk = move |model: &str, delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let opening = sse(&chunk(
        &first,
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    let token = {
        let chunk = chunk.clone();
        let first = first.clone();
        move |t: String| sse(&chunk(&first, json!({"content": t}), Value::Null))
    };
    let done = move |r: Result<CallOutcome, ApiError>| {
        let mut s = String::new();
        match r {
            Ok(o) => {
                if !o.response.tool_calls.is_empty() {
                    let calls: Vec<Value> = tool_calls(&o)
                        .as_array()
                        .into_iter()
                        .flatten()
                        .enumerate()
                        .map(|(i, c)| {
                            let mut c = c.clone();
                            c["index"] = json!(i);
                            c
                        })
                        .collect();
                    if !o.response.text.is_empty() {
                        s.push_str(&sse(&chunk(
                            &o.model,
                            json!({"content": o.response.text}),
                            Value::Null,
                        )));
                    }
                    s.push_str(&sse(&chunk(
                        &o.model,
                        json!({"tool_calls": calls}),
                        Value::Null,
                    )));
                }
                s.push_str(&sse(&chunk(&o.model, json!({}), json!(finish_reason(&o)))));
                if include_usage {
                    let mut u = chunk(&o.model, json!({}), Value::Null);
                    u["choices"] = json!([]);
                    u["usage"] = usage(&o);
                    s.push_str(&sse(&u));
                }
                s.push_str("data: [DONE]\n\n");
            }
            // In-band, after the 200: what OpenAI's own streams send, and
            // what its clients raise.
            Err(e) => s.push_str(&sse(&e.body())),
        }
        s
    };
    Ok(super::events::stream_response(
        h,
        opening,
        rx,
        guard,
        super::events::Framing { token, done },
    ))
}

pub(crate) fn sse(v: &Value) -> String {
    format!("data: {v}\n\n")
}

pub(crate) async fn models(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let mut data =
        vec![json!({"id": chat::AUTO, "object": "model", "created": 0, "owned_by": "llmclis"})];
    for r in crate::app::types::Role::ALL {
        data.push(json!({"id": format!("{}{r}", chat::ROLE_PREFIX), "object": "model", "created": 0, "owned_by": "llmclis"}));
    }
    for m in &gw.registry.models {
        // A replicated model by its own id too (its replicas balanced).
        if let Some(base) = &m.replica_of
            && !data.iter().any(|d| d["id"] == base.as_str())
        {
            data.push(
                json!({"id": base, "object": "model", "created": 0, "owned_by": "llmclis",
                             "context_window": m.context_window}),
            );
        }
        data.push(
            json!({"id": m.id, "object": "model", "created": 0, "owned_by": m.provider,
                         "context_window": m.context_window}),
        );
    }
    data.push(json!({"id": crate::app::types::MINILM, "object": "model", "created": 0, "owned_by": "llmclis"}));
    axum::Json(json!({"object": "list", "data": data}))
}

#[derive(Debug, Deserialize)]
struct EmbeddingsBody {
    model: String,
    input: Input,
    encoding_format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

pub(crate) async fn embeddings(
    State(gw): State<Arc<Gateway>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: EmbeddingsBody = parse(&body)?;
    let embedder = gw.embedder().await?;
    let name = embedder.model();
    if b.model != name && b.model != "llmclis/embed" {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!(
                "no embedding model {:?}; ask for {name} (or llmclis/embed)",
                b.model
            ),
        )
        .with_param("model"));
    }
    let texts = match b.input {
        Input::One(t) => vec![t],
        Input::Many(v) => v,
    };
    if texts.is_empty() || texts.len() > 2048 {
        return Err(ApiError::invalid("input must hold 1 to 2048 texts").with_param("input"));
    }
    let base64 = match b.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "encoding_format {other:?}: expected float or base64"
            ))
            .with_param("encoding_format"));
        }
    };
    let tokens: u64 = texts
        .iter()
        .map(|t| crate::app::types::estimate_tokens(t))
        .sum();
    // The model runs on the CPU for milliseconds (a second when it loads):
    // off the runtime's one thread, so other requests keep moving.
    let vectors = tokio::task::spawn_blocking(move || {
        tokio::runtime::Handle::current().block_on(embedder.embed(texts))
    })
    .await
    .map_err(|e| {
        ApiError::from(crate::error::Error::Internal(format!(
            "the embedder stopped: {e}"
        )))
    })??;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "model": name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response())
}
