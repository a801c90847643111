//! Anthropic's Messages API, streaming and not. System messages go to the
//! top-level `system` field; the key goes in `x-api-key`, never anywhere else.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::sse::SseParser;
use super::{
    Body, BoxFuture, ChatRequest, ChatResponse, Health, LlmClient, LlmError, Sink, StreamEvent,
    Timeouts, Usage,
};
use crate::registry::Provider;

const VERSION: &str = "2023-06-01";

/// The tool a structured answer is forced through: Anthropic honours a
/// JSON schema as a tool's `input_schema`, and `tool_choice` makes the
/// model call it, so its input is the answer.
const ANSWER_TOOL: &str = "answer";

pub struct AnthropicClient {
    base: String,
    key_env: Option<String>,
    timeouts: Timeouts,
    http: reqwest::Client,
}

impl AnthropicClient {
    pub fn new(p: &Provider, http: reqwest::Client) -> AnthropicClient {
        AnthropicClient {
            base: p.base_url.trim_end_matches("/v1").to_string(),
            key_env: p.api_key_env.clone(),
            timeouts: Timeouts::of(p),
            http,
        }
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, LlmError> {
        let var = self.key_env.as_deref().unwrap_or("ANTHROPIC_API_KEY");
        match std::env::var(var) {
            Ok(k) if !k.trim().is_empty() => Ok(rb
                .header("x-api-key", k.trim())
                .header("anthropic-version", VERSION)),
            _ => Err(LlmError::MissingKey(var.to_string())),
        }
    }

    fn body(model: &str, req: &ChatRequest) -> Value {
        let system: Vec<&super::Message> =
            req.messages.iter().filter(|m| m.role == "system").collect();
        let messages = messages(&req.messages);
        let mut body = json!({
            "model": model,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "messages": messages,
            "stream": req.stream,
        });
        if system.iter().any(|m| m.cache_control.is_some()) {
            // A cache breakpoint needs the system prompt as blocks.
            body["system"] = Value::Array(
                system
                    .iter()
                    .map(|m| with_cache(json!({"type": "text", "text": m.content}), m))
                    .collect(),
            );
        } else if !system.is_empty() {
            let text: Vec<&str> = system.iter().map(|m| m.content.as_str()).collect();
            body["system"] = json!(text.join("\n\n"));
        }
        if let (Some(schema), true) = (&req.json_schema, req.tools.is_empty()) {
            body["tools"] = json!([{
                "name": ANSWER_TOOL,
                "description": "Give your answer in exactly this form.",
                "input_schema": schema,
            }]);
            body["tool_choice"] = json!({"type": "tool", "name": ANSWER_TOOL});
        }
        if !req.tools.is_empty() {
            // OpenAI's {type: function, function: {name, description,
            // parameters}} as Anthropic's {name, description, input_schema}.
            body["tools"] = Value::Array(
                req.tools
                    .iter()
                    .filter_map(|t| {
                        let f = t.get("function")?;
                        let mut tool = json!({
                            "name": f.get("name")?,
                            "description": f.get("description").cloned().unwrap_or(json!("")),
                            "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object"})),
                        });
                        if let Some(c) = t.get("cache_control") {
                            tool["cache_control"] = c.clone();
                        }
                        Some(tool)
                    })
                    .collect(),
            );
        }
        body
    }

    async fn chat_impl(
        &self,
        model: &str,
        req: &ChatRequest,
        mut sink: Option<Sink<'_>>,
    ) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let rb = self
            .http
            .post(format!("{}/v1/messages", self.base))
            .json(&Self::body(model, req));
        let rb = super::traced(rb, req);
        let resp = super::send(self.authed(rb)?, self.timeouts.first_byte).await?;
        if !req.stream {
            let body = Body::text(resp, self.timeouts).await?;
            let v: Value = serde_json::from_str(&body)
                .map_err(|e| LlmError::InvalidResponse(format!("not JSON ({e})")))?;
            return Ok(parse_message(&v, req, started.elapsed()));
        }
        let mut stream = Body::stream(resp, self.timeouts);
        let mut parser = SseParser::default();
        let mut text = String::new();
        let (mut prompt, mut completion, mut stop) = (None, None, None);
        let mut done = false;
        // Tool calls by their block index, and their input JSON so far.
        let mut calls: Vec<(u64, super::ToolCall, String)> = Vec::new();
        'read: while let Some(chunk) = stream.next().await? {
            for ev in parser.push(&chunk) {
                let v: Value = serde_json::from_str(&ev.data)
                    .map_err(|e| LlmError::StreamBroken(format!("an event is not JSON ({e})")))?;
                match v
                    .get("type")
                    .and_then(Value::as_str)
                    .or(ev.event.as_deref())
                {
                    Some("message_start") => prompt = v.pointer("/message/usage").cloned(),
                    Some("content_block_start")
                        if req.json_schema.is_none()
                            && v.pointer("/content_block/type") == Some(&json!("tool_use")) =>
                    {
                        let block = &v["content_block"];
                        calls.push((
                            v["index"].as_u64().unwrap_or(0),
                            super::ToolCall {
                                id: block["id"].as_str().unwrap_or_default().to_string(),
                                name: block["name"].as_str().unwrap_or_default().to_string(),
                                arguments: Value::Null,
                            },
                            String::new(),
                        ));
                    }
                    Some("content_block_delta")
                        if req.json_schema.is_none()
                            && v.pointer("/delta/type") == Some(&json!("input_json_delta")) =>
                    {
                        // A tool call's input, a piece at a time.
                        let index = v["index"].as_u64().unwrap_or(0);
                        if let Some((_, _, input)) = calls.iter_mut().find(|c| c.0 == index) {
                            input.push_str(v["delta"]["partial_json"].as_str().unwrap_or(""));
                        }
                    }
                    Some("content_block_delta") => {
                        // A forced answer arrives as the tool's input JSON.
                        let piece = v
                            .pointer("/delta/text")
                            .or_else(|| {
                                v.pointer("/delta/partial_json")
                                    .filter(|_| req.json_schema.is_some())
                            })
                            .and_then(Value::as_str);
                        if let Some(t) = piece {
                            text.push_str(t);
                            if let Some(s) = sink.as_mut() {
                                s(StreamEvent::Token(t));
                            }
                        }
                    }
                    Some("message_delta") => {
                        completion = v.pointer("/usage/output_tokens").and_then(Value::as_u64);
                        stop = v
                            .pointer("/delta/stop_reason")
                            .and_then(Value::as_str)
                            .map(String::from);
                    }
                    Some("message_stop") => {
                        done = true;
                        break 'read;
                    }
                    // Anthropic's in-band error, overloaded_error above all.
                    Some("error") => return Err(super::in_band_error(&ev.data)),
                    _ => {}
                }
            }
        }
        if !done {
            return Err(LlmError::StreamBroken(
                "the stream ended before message_stop".into(),
            ));
        }
        let tool_calls = calls
            .into_iter()
            .map(|(_, mut call, input)| {
                call.arguments = if input.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&input).unwrap_or(Value::String(input))
                };
                call
            })
            .collect();
        Ok(ChatResponse {
            tool_calls,
            usage: prompt
                .as_ref()
                .and_then(|u| usage_of(u, completion?))
                .unwrap_or_else(|| Usage::estimate(req, &text)),
            text,
            finish_reason: stop,
            latency: started.elapsed(),
        })
    }

    async fn health_impl(&self) -> Health {
        let rb = self.authed(self.http.get(format!("{}/v1/models", self.base)));
        Health::from_list("/v1/models", super::list_models(rb, "data", "id").await)
    }
}

impl LlmClient for AnthropicClient {
    fn chat<'a>(
        &'a self,
        model: &'a str,
        req: &'a ChatRequest,
        sink: Option<Sink<'a>>,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(self.chat_impl(model, req, sink))
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        Box::pin(self.health_impl())
    }

    fn count_tokens<'a>(
        &'a self,
        model: &'a str,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<Option<u64>, LlmError>> {
        Box::pin(async move {
            // The same body as the call, less what counting refuses.
            let mut body = Self::body(model, req);
            if let Some(o) = body.as_object_mut() {
                for k in ["max_tokens", "temperature", "stream"] {
                    o.remove(k);
                }
            }
            let rb = self
                .http
                .post(format!("{}/v1/messages/count_tokens", self.base))
                .json(&body);
            let resp = super::send(self.authed(rb)?, self.timeouts.first_byte).await?;
            let text = Body::text(resp, self.timeouts).await?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| LlmError::InvalidResponse(format!("not JSON ({e})")))?;
            Ok(v.get("input_tokens").and_then(Value::as_u64))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Message;

    #[test]
    fn system_goes_top_level() {
        let req = ChatRequest {
            messages: vec![Message::system("be brief"), Message::user("hi")],
            max_tokens: 10,
            ..Default::default()
        };
        let b = AnthropicClient::body("claude-sonnet-4-5", &req);
        assert_eq!(b["system"], "be brief");
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
    }
}

/// The conversation in Anthropic's form: tool requests become `tool_use`
/// blocks of the assistant's turn, tool results `tool_result` blocks of one
/// user turn (consecutive results merge, as the API wants turns to alternate).
fn messages(all: &[super::Message]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for m in all.iter().filter(|m| m.role != "system") {
        if m.role == "tool" {
            let block = with_cache(
                json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                    "content": m.content,
                }),
                m,
            );
            if let Some(last) = out.last_mut()
                && last["role"] == "user"
                && let Some(blocks) = last["content"].as_array_mut()
            {
                blocks.push(block);
                continue;
            }
            out.push(json!({"role": "user", "content": [block]}));
            continue;
        }
        if let Some(calls) = m.tool_calls.as_ref().and_then(Value::as_array) {
            let mut blocks = Vec::new();
            if !m.content.trim().is_empty() {
                blocks.push(json!({"type": "text", "text": m.content}));
            }
            for c in calls {
                let args = c.pointer("/function/arguments");
                blocks.push(json!({
                    "type": "tool_use",
                    "id": c.get("id").cloned().unwrap_or(json!("")),
                    "name": c.pointer("/function/name").cloned().unwrap_or(json!("")),
                    "input": match args {
                        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(json!({})),
                        Some(v) => v.clone(),
                        None => json!({}),
                    },
                }));
            }
            if let Some(last) = blocks.pop() {
                blocks.push(with_cache(last, m));
            }
            out.push(json!({"role": "assistant", "content": blocks}));
            continue;
        }
        if m.cache_control.is_some() {
            let block = with_cache(json!({"type": "text", "text": m.content}), m);
            out.push(json!({"role": m.role, "content": [block]}));
            continue;
        }
        out.push(json!({"role": m.role, "content": m.content}));
    }
    out
}

/// A content block with the turn's cache breakpoint, when it has one.
fn with_cache(mut block: Value, m: &super::Message) -> Value {
    if let Some(c) = &m.cache_control {
        block["cache_control"] = c.clone();
    }
    block
}

/// A whole (non-streamed) answer: its text, or for a structured request the
/// input of the forced answer tool, as JSON text; the other tool calls.
fn parse_message(v: &Value, req: &ChatRequest, latency: Duration) -> ChatResponse {
    let blocks = v.get("content").and_then(Value::as_array);
    let forced = req.json_schema.as_ref().and_then(|_| {
        blocks?
            .iter()
            .find(|b| b["type"] == "tool_use" && b["name"] == ANSWER_TOOL)
            .and_then(|b| b.get("input"))
            .map(Value::to_string)
    });
    let text: String = forced.unwrap_or_else(|| {
        blocks
            .map(|blocks| {
                blocks
                    .iter()
                    .filter_map(|b| b.get("text")?.as_str())
                    .collect()
            })
            .unwrap_or_default()
    });
    let usage = v
        .get("usage")
        .and_then(|u| usage_of(u, u.get("output_tokens")?.as_u64()?))
        .unwrap_or_else(|| Usage::estimate(req, &text));
    ChatResponse {
        tool_calls: tool_uses(v)
            .into_iter()
            .filter(|c| req.json_schema.is_none() || c.name != ANSWER_TOOL)
            .collect(),
        text,
        usage,
        finish_reason: v
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(String::from),
        latency,
    }
}

/// Anthropic's `usage` as the whole input: its `input_tokens` count only
/// what was neither read from nor written to the prompt cache.
fn usage_of(u: &Value, completion: u64) -> Option<Usage> {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let fresh = u.get("input_tokens")?.as_u64()?;
    let (read, written) = (
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    );
    Some(Usage {
        prompt_tokens: fresh + read + written,
        completion_tokens: completion,
        estimated: false,
        cached_tokens: read,
        cache_write_tokens: written,
    })
}

fn tool_uses(v: &Value) -> Vec<super::ToolCall> {
    v.get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .filter_map(|b| {
                    Some(super::ToolCall {
                        id: b.get("id")?.as_str()?.to_string(),
                        name: b.get("name")?.as_str()?.to_string(),
                        arguments: b.get("input").cloned().unwrap_or(json!({})),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tool_tests {
    use super::*;
    use crate::llm::{Message, ToolCall};

    #[test]
    fn tool_turns_take_anthropics_shape() {
        let call = ToolCall {
            id: "toolu_1".into(),
            name: "read_file".into(),
            arguments: json!({"path": "a.rs"}),
        };
        let req = ChatRequest {
            messages: vec![
                Message::system("be brief"),
                Message::user("fix it"),
                Message::tool_request("", std::slice::from_ref(&call)),
                Message::tool_result("toolu_1", "1| fn a() {}"),
                Message::tool_result("toolu_2", "exit 0"),
            ],
            tools: vec![
                json!({"type": "function", "function": {"name": "read_file", "description": "Read", "parameters": {"type": "object"}}}),
            ],
            max_tokens: 100,
            ..Default::default()
        };
        let b = AnthropicClient::body("claude", &req);
        assert_eq!(b["system"], "be brief");
        assert_eq!(b["tools"][0]["input_schema"]["type"], "object");
        let m = b["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3, "{m:#?}");
        assert_eq!(m[1]["content"][0]["type"], "tool_use");
        assert_eq!(m[1]["content"][0]["input"]["path"], "a.rs");
        assert_eq!(
            m[2]["content"].as_array().unwrap().len(),
            2,
            "results merge into one turn"
        );
        let answer = json!({"content": [{"type": "text", "text": "reading"}, {"type": "tool_use", "id": "toolu_9", "name": "run_tests", "input": {}}]});
        assert_eq!(tool_uses(&answer)[0].name, "run_tests");
    }

    /// A structured request (the critic's verdict) forces a tool call whose
    /// input schema is the verdict's schema; the answer is that input, as
    /// JSON text, which the critic's parser reads like any other model's.
    #[test]
    fn a_schema_is_honoured_as_a_forced_tool_call() {
        let schema = json!({"type": "object", "required": ["verdict"], "properties": {"verdict": {"type": "string", "enum": ["approve", "revise"]}}});
        let req = ChatRequest {
            messages: vec![Message::user("review this")],
            json_schema: Some(schema.clone()),
            max_tokens: 100,
            ..Default::default()
        };
        let b = AnthropicClient::body("claude", &req);
        assert_eq!(b["tools"][0]["name"], ANSWER_TOOL);
        assert_eq!(b["tools"][0]["input_schema"], schema);
        assert_eq!(
            b["tool_choice"],
            json!({"type": "tool", "name": ANSWER_TOOL})
        );
        // Anthropic's answer to a forced tool call: a tool_use block.
        let answer = json!({
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "answer",
                         "input": {"verdict": "approve", "reasons": ["ok"], "risks": []}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 20, "output_tokens": 12}
        });
        let r = parse_message(&answer, &req, Duration::ZERO);
        let v: Value = serde_json::from_str(&r.text).unwrap();
        assert_eq!(v["verdict"], "approve");
        assert!(
            r.tool_calls.is_empty(),
            "the forced answer is not a tool call to run"
        );
        assert_eq!(r.usage.completion_tokens, 12);
        // Without a schema, nothing is forced.
        let plain = ChatRequest {
            messages: vec![Message::user("hi")],
            ..Default::default()
        };
        assert!(
            AnthropicClient::body("claude", &plain)
                .get("tool_choice")
                .is_none()
        );
    }
}
