//! OpenAI's Responses API (`POST /v1/responses`, `GET` and `DELETE
//! /v1/responses/{id}`), what Codex CLI and the newer SDKs speak: input
//! items (messages, function calls and their outputs), `instructions`,
//! function tools, `previous_response_id` over answers kept in the store,
//! and the typed SSE events the official clients parse. Every upstream is
//! asked through the same caller as the other APIs, so servers that speak
//! only Chat Completions answer it translated.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Client;
use super::chat;
use super::openai::parse;
use super::{ApiError, Gateway};
use crate::app::types::{CallOutcome, ChatRequest, KeptResponse, Message, Usage};

#[derive(Debug, Deserialize)]
struct Body {
    model: String,
    input: Input,
    instructions: Option<String>,
    #[serde(default)]
    tools: Vec<Value>,
    tool_choice: Option<Value>,
    #[serde(default)]
    stream: bool,
    temperature: Option<f32>,
    max_output_tokens: Option<u64>,
    previous_response_id: Option<String>,
    store: Option<bool>,
    text: Option<TextConfig>,
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Items(Vec<Value>),
}

#[derive(Debug, Deserialize)]
struct TextConfig {
    format: Option<Format>,
}

#[derive(Debug, Deserialize)]
struct Format {
    #[serde(rename = "type")]
    kind: String,
    schema: Option<Value>,
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(message).with_param(param)
}

/// The input as items: a bare string is one user message.
fn items_of(input: Input) -> Vec<Value> {
    match input {
        Input::Text(t) => vec![json!({"type": "message", "role": "user", "content": t})],
        Input::Items(v) => v,
    }
}

/// A message item's text: a string, or its text parts.
fn content_text(content: &Value, at: usize) -> Result<String, ApiError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match (p["type"].as_str(), p["text"].as_str()) {
                    (Some("input_text" | "output_text" | "text"), Some(t)) => out.push_str(t),
                    (kind, _) => {
                        return Err(invalid(
                            &format!("input[{at}].content"),
                            format!(
                                "content part of type {:?} is not supported; send input_text",
                                kind.unwrap_or("?")
                            ),
                        ));
                    }
                }
            }
            Ok(out)
        }
        Value::Null => Ok(String::new()),
        _ => Err(invalid(
            &format!("input[{at}].content"),
            "content must be a string or a list of parts",
        )),
    }
}

/// Input items as the caller's (Chat Completions-shaped) messages:
/// function calls join the assistant turn before them, their outputs are
/// tool turns. Reasoning items carry nothing another model can use.
fn to_messages(items: &[Value]) -> Result<Vec<Message>, ApiError> {
    let mut out: Vec<Message> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let kind = item["type"]
            .as_str()
            .unwrap_or(if item.get("role").is_some() {
                "message"
            } else {
                ""
            });
        match kind {
            "message" => {
                let role = match item["role"].as_str() {
                    Some("developer" | "system") => "system",
                    Some(r @ ("user" | "assistant")) => r,
                    other => {
                        return Err(invalid(
                            &format!("input[{i}].role"),
                            format!(
                                "role {:?}: expected user, assistant, system or developer",
                                other.unwrap_or("")
                            ),
                        ));
                    }
                };
                out.push(Message::plain(role, content_text(&item["content"], i)?));
            }
            "function_call" => {
                let call = json!({
                    "id": item["call_id"],
                    "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"].as_str().unwrap_or("{}")},
                });
                match out.last_mut() {
                    Some(m) if m.role == "assistant" => {
                        let calls = m.tool_calls.get_or_insert_with(|| json!([]));
                        if let Some(a) = calls.as_array_mut() {
                            a.push(call);
                        }
                    }
                    _ => out.push(Message {
                        tool_calls: Some(json!([call])),
                        ..Message::assistant("")
                    }),
                }
            }
            "function_call_output" => {
                let output = match &item["output"] {
                    Value::String(s) => s.clone(),
                    v => content_text(v, i)?,
                };
                let id = item["call_id"].as_str().unwrap_or_default();
                out.push(Message::tool_result(id, output));
            }
            "reasoning" => {}
            other => {
                return Err(invalid(
                    &format!("input[{i}].type"),
                    format!(
                        "input item of type {other:?} is not supported; send message, function_call or function_call_output"
                    ),
                ));
            }
        }
    }
    if out.iter().all(|m| m.role == "system") {
        return Err(invalid("input", "input holds no message to answer"));
    }
    Ok(out)
}

/// Responses function tools (`{type, name, description, parameters}`) in
/// the Chat Completions form the caller sends.
fn to_tools(tools: &[Value]) -> Result<Vec<Value>, ApiError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, t)| match t["type"].as_str() {
            Some("function") => Ok(json!({"type": "function", "function": {
                "name": t["name"], "description": t.get("description").cloned().unwrap_or(json!("")),
                "parameters": t.get("parameters").cloned().unwrap_or(json!({"type": "object"})),
            }})),
            other => Err(invalid(
                &format!("tools[{i}].type"),
                format!(
                    "tool type {:?} is not supported here; llmclis serves function tools",
                    other.unwrap_or("")
                ),
            )),
        })
        .collect()
}

/// What a request asks, ready for the caller.
struct Asked {
    req: ChatRequest,
    /// The whole conversation as items (a previous response's included),
    /// instructions aside: what a later `previous_response_id` continues.
    items: Vec<Value>,
    prompt: String,
}

fn to_request(gw: &Gateway, client: &Client, b: Body) -> Result<Asked, ApiError> {
    let mut items = Vec::new();
    if let Some(prev) = &b.previous_response_id {
        let kept = gw
            .db()
            .kept_response(&client.name, prev)?
            .ok_or_else(|| {
                invalid(
                    "previous_response_id",
                    format!("previous_response_id {prev:?} is not a response kept for this key (it was made with store: false, by another key, or deleted)"),
                )
            })?;
        for part in [&kept.input, &kept.output] {
            let v: Vec<Value> = serde_json::from_str(part).map_err(|e| {
                ApiError::from(crate::error::Error::Internal(format!(
                    "kept response {prev} is not readable: {e}"
                )))
            })?;
            items.extend(v);
        }
    }
    items.extend(items_of(b.input));
    let mut messages = to_messages(&items)?;
    if let Some(i) = b.instructions.as_deref().filter(|i| !i.is_empty()) {
        messages.insert(0, Message::system(i));
    }
    let mut tools = to_tools(&b.tools)?;
    match b.tool_choice.as_ref().map(|c| c.as_str()) {
        None | Some(Some("auto")) => {}
        Some(Some("none")) => tools.clear(),
        _ => {
            return Err(invalid(
                "tool_choice",
                "tool_choice must be auto or none here; the model chooses its tools",
            ));
        }
    }
    let json_schema = match b.text.and_then(|t| t.format) {
        None => None,
        Some(f) => match f.kind.as_str() {
            "text" => None,
            "json_object" => Some(json!({"type": "object"})),
            "json_schema" => Some(f.schema.ok_or_else(|| {
                invalid(
                    "text.format.schema",
                    "a json_schema format needs its schema",
                )
            })?),
            other => {
                return Err(invalid(
                    "text.format.type",
                    format!("format {other:?}: expected text, json_object or json_schema"),
                ));
            }
        },
    };
    let prompt = chat::last_user_text(&messages);
    Ok(Asked {
        req: ChatRequest {
            messages,
            temperature: b.temperature.unwrap_or(f32::NAN),
            max_tokens: b.max_output_tokens.unwrap_or(1024).max(1),
            json_schema,
            tools,
            ..Default::default()
        },
        items,
        prompt,
    })
}

/// What the answer echoes of the request.
#[derive(Clone)]
struct Echo {
    id: String,
    created_at: u64,
    instructions: Option<String>,
    tools: Vec<Value>,
    temperature: f32,
    max_output_tokens: Option<u64>,
    previous_response_id: Option<String>,
    store: bool,
    metadata: Value,
    format: Value,
}

impl Echo {
    fn response(
        &self,
        model: &str,
        status: &str,
        output: Vec<Value>,
        usage: Option<&Usage>,
    ) -> Value {
        json!({
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "error": Value::Null, "incomplete_details": Value::Null,
            "instructions": self.instructions, "max_output_tokens": self.max_output_tokens,
            "model": model, "output": output, "parallel_tool_calls": true,
            "previous_response_id": self.previous_response_id, "store": self.store,
            "temperature": self.temperature, "text": {"format": self.format},
            "tool_choice": "auto", "tools": self.tools, "top_p": 1.0, "truncation": "disabled",
            "usage": usage.map(usage_json), "metadata": self.metadata,
        })
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens},
           "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
           "total_tokens": u.prompt_tokens + u.completion_tokens})
}

fn rand_id(prefix: &str) -> String {
    format!(
        "{prefix}_{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    )
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = if status == "in_progress" {
        json!([])
    } else {
        json!([text_part(text)])
    };
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

fn call_item(c: &crate::app::types::ToolCall, status: &str, arguments: &str) -> Value {
    json!({"id": format!("fc_{}", c.id.trim_start_matches("call_")), "type": "function_call", "status": status,
           "call_id": c.id, "name": c.name, "arguments": arguments})
}

/// The output items of an answer: its text as a message (when it has text
/// or nothing else), then each function call.
fn output_items(o: &CallOutcome, message_id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    if !o.response.text.is_empty() || o.response.tool_calls.is_empty() {
        out.push(message_item(message_id, &o.response.text, "completed"));
    }
    for c in &o.response.tool_calls {
        out.push(call_item(c, "completed", &c.arguments.to_string()));
    }
    out
}

/// The completed response, kept for `previous_response_id` when asked; a
/// failure to keep it is logged, not the client's error (the answer itself
/// is whole).
fn completed(
    gw: &Gateway,
    client: &Client,
    echo: &Echo,
    items: &[Value],
    output: Vec<Value>,
    o: &CallOutcome,
) -> Value {
    let kept_output = echo.store.then(|| Value::Array(output.clone()).to_string());
    let answer = echo.response(&o.model, "completed", output, Some(&o.response.usage));
    if let Some(output) = kept_output {
        let kept = KeptResponse {
            id: echo.id.clone(),
            model: o.model.clone(),
            input: Value::Array(items.to_vec()).to_string(),
            output,
            body: answer.to_string(),
        };
        if let Err(e) = gw.db().keep_response(&client.name, &kept) {
            tracing::error!(error = %e, id = kept.id, "could not keep a response");
        }
    }
    answer
}

pub(crate) async fn create(
    State(gw): State<Arc<Gateway>>,
    Extension(client): Extension<Client>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: Body = parse(&body)?;
    let model = b.model.clone();
    let stream = b.stream;
    let echo = Echo {
        id: rand_id("resp"),
        created_at: super::openai::now(),
        instructions: b.instructions.clone(),
        tools: b.tools.clone(),
        temperature: b.temperature.unwrap_or(1.0),
        max_output_tokens: b.max_output_tokens,
        previous_response_id: b.previous_response_id.clone(),
        store: b.store.unwrap_or(true),
        metadata: b.metadata.clone().unwrap_or_else(|| json!({})),
        format: b.text.as_ref().and_then(|t| t.format.as_ref()).map_or_else(
            || json!({"type": "text"}),
            |f| json!({"type": f.kind, "schema": f.schema}),
        ),
    };
    let Asked {
        mut req,
        items,
        prompt,
    } = to_request(&gw, &client, b)?;
    let route = chat::route(&gw, &client, &model, &mut req, &prompt)?;
    let message_id = rand_id("msg");
    if !stream {
        let o = chat::complete(&gw, &client, &route, &req).await?;
        let output = output_items(&o, &message_id);
        let answer = completed(&gw, &client, &echo, &items, output, &o);
        return Ok((chat::headers(&route, &o.model, &client), axum::Json(answer)).into_response());
    }
    let first = route.chain[0].clone();
    let headers = chat::headers(&route, &first, &client);
    // Text streams token by token into a message opened at once; a request
    // with tools is answered whole (as the other APIs do), so its items
    // come at the end.
    let streams_text = req.tools.is_empty();
    let (rx, guard) = chat::stream(gw.clone(), client.clone(), route, req);
    let seq = Arc::new(AtomicU64::new(0));
    let ev = {
        let seq = seq.clone();
        move |kind: &str, mut data: Value| {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(seq.fetch_add(1, Ordering::Relaxed));
            format!("event: {kind}\ndata: {data}\n\n")
        }
    };
    let mut opening = ev(
        "response.created",
        json!({"response": echo.response(&first, "in_progress", vec![], None)}),
    ) + &ev(
        "response.in_progress",
        json!({"response": echo.response(&first, "in_progress", vec![], None)}),
    );
    if streams_text {
        opening += &ev(
            "response.output_item.added",
            json!({"output_index": 0, "item": message_item(&message_id, "", "in_progress")}),
        );
        opening += &ev(
            "response.content_part.added",
            json!({"item_id": message_id, "output_index": 0, "content_index": 0, "part": text_part("")}),
        );
    }
    let token = {
        let ev = ev.clone();
        let id = message_id.clone();
        move |t: String| {
            ev(
                "response.output_text.delta",
                json!({"item_id": id, "output_index": 0, "content_index": 0, "delta": t, "logprobs": []}),
            )
        }
    };
    let done = move |r: Result<CallOutcome, ApiError>| {
        let o = match r {
            Ok(o) => o,
            // In-band after the 200, as OpenAI's own streams end a failed
            // response: an error event, then response.failed.
            Err(e) => {
                let mut failed = echo.response(&first, "failed", vec![], None);
                failed["error"] = json!({"code": e.kind, "message": e.message});
                return ev(
                    "error",
                    json!({"code": e.kind, "message": e.message, "param": e.param}),
                ) + &ev("response.failed", json!({"response": failed}));
            }
        };
        let output = output_items(&o, &message_id);
        let mut s = String::new();
        for (index, item) in output.iter().enumerate() {
            if item["type"] == "message" {
                let text = o.response.text.as_str();
                if !streams_text || index != 0 {
                    s += &ev(
                        "response.output_item.added",
                        json!({"output_index": index, "item": message_item(&message_id, "", "in_progress")}),
                    );
                    s += &ev(
                        "response.content_part.added",
                        json!({"item_id": message_id, "output_index": index, "content_index": 0, "part": text_part("")}),
                    );
                    if !text.is_empty() {
                        s += &ev(
                            "response.output_text.delta",
                            json!({"item_id": message_id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []}),
                        );
                    }
                }
                s += &ev(
                    "response.output_text.done",
                    json!({"item_id": message_id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                );
                s += &ev(
                    "response.content_part.done",
                    json!({"item_id": message_id, "output_index": index, "content_index": 0, "part": text_part(text)}),
                );
            } else {
                let id = item["id"].clone();
                let args = item["arguments"].as_str().unwrap_or("{}");
                let mut added = item.clone();
                added["status"] = json!("in_progress");
                added["arguments"] = json!("");
                s += &ev(
                    "response.output_item.added",
                    json!({"output_index": index, "item": added}),
                );
                s += &ev(
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": index, "delta": args}),
                );
                s += &ev(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": item["name"], "arguments": args}),
                );
            }
            s += &ev(
                "response.output_item.done",
                json!({"output_index": index, "item": item}),
            );
        }
        if streams_text && output.first().is_none_or(|i| i["type"] != "message") {
            // The opened message had no text: close it empty, last.
            let index = output.len();
            s += &ev(
                "response.output_text.done",
                json!({"item_id": message_id, "output_index": index, "content_index": 0, "text": "", "logprobs": []}),
            );
            s += &ev(
                "response.output_item.done",
                json!({"output_index": index, "item": message_item(&message_id, "", "completed")}),
            );
        }
        let answer = completed(&gw, &client, &echo, &items, output, &o);
        s + &ev("response.completed", json!({"response": answer}))
    };
    Ok(super::events::stream_response(
        headers,
        opening,
        rx,
        guard,
        super::events::Framing { token, done },
    ))
}

fn not_kept(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found_error",
        format!("no response {id:?} is kept for this key"),
    )
}

/// `GET /v1/responses/{id}`: a kept response, as it was answered.
pub(crate) async fn get(
    State(gw): State<Arc<Gateway>>,
    Extension(client): Extension<Client>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let kept = gw
        .db()
        .kept_response(&client.name, &id)?
        .ok_or_else(|| not_kept(&id))?;
    let body: Value = serde_json::from_str(&kept.body).map_err(|e| {
        ApiError::from(crate::error::Error::Internal(format!(
            "kept response {id} is not readable: {e}"
        )))
    })?;
    Ok(axum::Json(body).into_response())
}

/// `DELETE /v1/responses/{id}`.
pub(crate) async fn delete(
    State(gw): State<Arc<Gateway>>,
    Extension(client): Extension<Client>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !gw.db().forget_response(&client.name, &id)? {
        return Err(not_kept(&id));
    }
    Ok(axum::Json(json!({"id": id, "object": "response", "deleted": true})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_become_the_callers_messages() {
        let items = vec![
            json!({"role": "developer", "content": "be brief"}),
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]}),
            json!({"type": "reasoning", "id": "rs_1", "summary": []}),
            json!({"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}),
            json!({"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"}),
            json!({"type": "function_call_output", "call_id": "call_1", "output": "4 C"}),
            json!({"type": "function_call_output", "call_id": "call_2", "output": "noon"}),
        ];
        let m = to_messages(&items).unwrap();
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "tool"]);
        assert_eq!(m[1].content, "weather?");
        let calls = m[2].tool_calls.as_ref().unwrap().as_array().unwrap();
        assert_eq!(calls.len(), 2, "both calls in one assistant turn");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(m[3].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(m[4].content, "noon");
    }

    #[test]
    fn what_cannot_be_served_is_refused_by_name() {
        let e = to_messages(&[json!({"type": "input_image", "image_url": "x"})]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input[0].type"));
        let e = to_messages(&[json!({"role": "user", "content": [{"type": "input_image"}]})])
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input[0].content"));
        assert!(to_messages(&[json!({"role": "developer", "content": "x"})]).is_err());
        let e = to_tools(&[json!({"type": "web_search"})]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools[0].type"));
    }
}
