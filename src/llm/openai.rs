//! The OpenAI-compatible chat API: vLLM, TGI, llama.cpp, LM Studio, OpenAI,
//! OpenRouter. Tolerates what local servers really send: no usage (then it is
//! estimated and marked so), no `[DONE]` after a finish reason, extra fields.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Value, json};

use super::sse::SseParser;
use super::{
    Body, BoxFuture, ChatRequest, ChatResponse, Health, LlmClient, LlmError, Sink, StreamEvent,
    Timeouts, Usage, error_message,
};
use crate::registry::Provider;

/// A tool call as its stream chunks build it.
#[derive(Default)]
struct StreamedCall {
    id: String,
    name: String,
    arguments: String,
}

pub struct OpenAiClient {
    base: String,
    flavour: String,
    key_env: Option<String>,
    timeouts: Timeouts,
    http: reqwest::Client,
}

impl OpenAiClient {
    pub fn new(p: &Provider, http: reqwest::Client) -> OpenAiClient {
        OpenAiClient {
            base: p.base_url.clone(),
            flavour: p.flavour.clone().unwrap_or_default(),
            key_env: p.api_key_env.clone(),
            timeouts: Timeouts::of(p),
            http,
        }
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, LlmError> {
        match &self.key_env {
            None => Ok(rb),
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.trim().is_empty() => Ok(rb.bearer_auth(k.trim())),
                _ => Err(LlmError::MissingKey(var.clone())),
            },
        }
    }

    fn body(&self, model: &str, req: &ChatRequest) -> Value {
        let mut body = json!({
            "model": model,
            "messages": req.messages,
            "temperature": req.temperature,
            "max_tokens": req.max_tokens,
            "stream": req.stream,
        });
        if req.stream
            && matches!(
                self.flavour.as_str(),
                "vllm" | "tgi" | "llamacpp" | "openai" | "openrouter" | "lmstudio"
            )
        {
            body["stream_options"] = json!({"include_usage": true});
        }
        if !req.tools.is_empty() {
            // An Anthropic client's cache breakpoints mean nothing here.
            body["tools"] = req
                .tools
                .iter()
                .map(|t| match t {
                    Value::Object(o) if o.contains_key("cache_control") => {
                        let mut o = o.clone();
                        o.remove("cache_control");
                        Value::Object(o)
                    }
                    t => t.clone(),
                })
                .collect();
            body["tool_choice"] = json!("auto");
        }
        if let Some(schema) = &req.json_schema {
            // Each server spells structured output its own way.
            body["response_format"] = match self.flavour.as_str() {
                "llamacpp" => json!({"type": "json_object", "schema": schema}),
                "tgi" => json!({"type": "json_object", "value": schema}),
                _ => json!({
                    "type": "json_schema",
                    // Not strict: OpenAI's strict mode refuses ordinary schemas
                    // (it wants additionalProperties: false everywhere).
                    "json_schema": {"name": "response", "schema": schema, "strict": false},
                }),
            };
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
            .post(format!("{}/chat/completions", self.base))
            .json(&self.body(model, req));
        let rb = super::traced(rb, req);
        let resp = super::send(self.authed(rb)?, self.timeouts.first_byte).await?;
        let status = resp.status();
        if !req.stream {
            let body = Body::text(resp, self.timeouts).await?;
            let v: Value = serde_json::from_str(&body).map_err(|e| {
                LlmError::InvalidResponse(format!("not JSON ({e}): {}", error_message(&body)))
            })?;
            if v.get("error").is_some() {
                return Err(LlmError::Server {
                    status: status.as_u16(),
                    message: error_message(&body),
                });
            }
            let choice = v
                .pointer("/choices/0")
                .ok_or_else(|| LlmError::InvalidResponse("no choices in the response".into()))?;
            let text = choice
                .pointer("/message/content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let usage = usage_of(&v).unwrap_or(Usage::estimate(req, &text));
            let tool_calls = choice
                .pointer("/message/tool_calls")
                .and_then(Value::as_array)
                .map(|calls| {
                    calls
                        .iter()
                        .enumerate()
                        .filter_map(|(i, c)| {
                            let f = c.get("function")?;
                            let args = f.get("arguments");
                            Some(super::ToolCall {
                                id: c
                                    .get("id")
                                    .and_then(Value::as_str)
                                    .map_or_else(|| format!("call_{i}"), String::from),
                                name: f.get("name")?.as_str()?.to_string(),
                                // Arguments arrive as a JSON string; some
                                // servers send the object itself.
                                arguments: match args {
                                    Some(Value::String(s)) => {
                                        serde_json::from_str(s).unwrap_or(Value::Null)
                                    }
                                    Some(v) => v.clone(),
                                    None => json!({}),
                                },
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            return Ok(ChatResponse {
                tool_calls,
                text,
                usage,
                finish_reason: choice
                    .get("finish_reason")
                    .and_then(Value::as_str)
                    .map(String::from),
                latency: started.elapsed(),
            });
        }
        let mut stream = Body::stream(resp, self.timeouts);
        let mut parser = SseParser::default();
        let mut text = String::new();
        let mut finish: Option<String> = None;
        let mut usage: Option<Usage> = None;
        // Tool calls arrive in pieces: an index, then its id and name, then
        // the arguments' JSON string a chunk at a time.
        let mut calls: Vec<StreamedCall> = Vec::new();
        // One event; true at `[DONE]`.
        let mut handle = |data: &str, text: &mut String| -> Result<bool, LlmError> {
            if data.trim() == "[DONE]" {
                return Ok(true);
            }
            let v: Value = serde_json::from_str(data)
                .map_err(|e| LlmError::StreamBroken(format!("a chunk is not JSON ({e})")))?;
            // An error after the 200: the server gave up half-way.
            if v.get("error").is_some() {
                return Err(super::in_band_error(data));
            }
            if let Some(u) = usage_of(&v) {
                usage = Some(u);
            }
            if let Some(choice) = v.pointer("/choices/0") {
                if let Some(t) = choice.pointer("/delta/content").and_then(Value::as_str)
                    && !t.is_empty()
                {
                    text.push_str(t);
                    if let Some(s) = sink.as_mut() {
                        s(StreamEvent::Token(t));
                    }
                }
                for d in choice
                    .pointer("/delta/tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let i = d
                        .get("index")
                        .and_then(Value::as_u64)
                        .unwrap_or(calls.len() as u64) as usize;
                    if calls.len() <= i {
                        calls.resize_with(i + 1, StreamedCall::default);
                    }
                    let c = &mut calls[i];
                    if let Some(id) = d.get("id").and_then(Value::as_str) {
                        c.id = id.to_string();
                    }
                    if let Some(n) = d.pointer("/function/name").and_then(Value::as_str) {
                        c.name.push_str(n);
                    }
                    match d.pointer("/function/arguments") {
                        Some(Value::String(a)) => c.arguments.push_str(a),
                        // Some servers send the object itself.
                        Some(v @ Value::Object(_)) => c.arguments = v.to_string(),
                        _ => {}
                    }
                }
                if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                    finish = Some(f.to_string());
                }
            }
            Ok(false)
        };
        let mut done = false;
        'read: while let Some(chunk) = stream.next().await? {
            for ev in parser.push(&chunk) {
                if handle(&ev.data, &mut text)? {
                    done = true;
                    break 'read;
                }
            }
        }
        // A last event some servers send without its closing blank line.
        if !done && let Some(ev) = parser.finish() {
            handle(&ev.data, &mut text)?;
        }
        // Every server this speaks to ends an answer with a finish reason; a
        // stream without one was cut short (llama-cpp-python, for one, sends
        // a bare `[DONE]` when a newer request interrupts it).
        if finish.is_none() {
            return Err(LlmError::StreamBroken(
                "the stream ended before the answer was finished".into(),
            ));
        }
        let tool_calls = calls
            .into_iter()
            .enumerate()
            .filter(|(_, c)| !c.name.is_empty())
            .map(|(i, c)| super::ToolCall {
                id: if c.id.is_empty() {
                    format!("call_{i}")
                } else {
                    c.id
                },
                name: c.name,
                arguments: if c.arguments.trim().is_empty() {
                    Value::Object(Default::default())
                } else {
                    serde_json::from_str(&c.arguments).unwrap_or(Value::Null)
                },
            })
            .collect();
        Ok(ChatResponse {
            tool_calls,
            usage: usage.unwrap_or(Usage::estimate(req, &text)),
            text,
            finish_reason: finish,
            latency: started.elapsed(),
        })
    }

    async fn health_impl(&self) -> Health {
        let listed = super::list_models(
            self.authed(self.http.get(format!("{}/models", self.base))),
            "data",
            "id",
        )
        .await;
        // llama.cpp's own server, vLLM and TGI answer /health beside /v1;
        // llama-cpp-python's server does not, so /v1/models decides then.
        if matches!(self.flavour.as_str(), "llamacpp" | "vllm" | "tgi") {
            let root = self.base.trim_end_matches("/v1");
            let probe = self
                .http
                .get(format!("{root}/health"))
                .timeout(super::HEALTH_TIMEOUT);
            if probe.send().await.is_ok_and(|r| r.status().is_success()) {
                return Health {
                    ok: true,
                    checked: "/health".into(),
                    served: listed.unwrap_or_default(),
                    error: None,
                };
            }
        }
        Health::from_list("/v1/models", listed)
    }
}

impl OpenAiClient {
    /// What each server says its window is: vLLM's `max_model_len` per
    /// model in `/v1/models`, TGI's `max_total_tokens` in `/info`, the C++
    /// llama.cpp server's `n_ctx` in `/props` (llama-cpp-python has no
    /// `/props`: nothing). API providers say nothing.
    async fn windows_impl(&self) -> HashMap<String, u64> {
        let root = self.base.trim_end_matches("/v1");
        let get = |url: String| async move {
            super::probe_json(self.authed(self.http.get(url)).ok()?)
                .await
                .ok()
        };
        let mut out = HashMap::new();
        match self.flavour.as_str() {
            "vllm" => {
                if let Some(v) = get(format!("{}/models", self.base)).await {
                    for m in v
                        .get("data")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let (Some(id), Some(w)) = (
                            m.get("id").and_then(Value::as_str),
                            m.get("max_model_len").and_then(Value::as_u64),
                        ) {
                            out.insert(id.to_string(), w);
                        }
                    }
                }
            }
            "tgi" => {
                if let Some(w) = get(format!("{root}/info"))
                    .await
                    .and_then(|v| v.get("max_total_tokens")?.as_u64())
                {
                    out.insert(super::ANY_MODEL.to_string(), w);
                }
            }
            "llamacpp" => {
                if let Some(w) = get(format!("{root}/props")).await.and_then(|v| {
                    v.pointer("/default_generation_settings/n_ctx")
                        .or_else(|| v.get("n_ctx"))?
                        .as_u64()
                }) {
                    out.insert(super::ANY_MODEL.to_string(), w);
                }
            }
            _ => {}
        }
        out
    }
}

/// `usage` when the server sent real numbers.
fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    Some(Usage {
        prompt_tokens: u.get("prompt_tokens")?.as_u64()?,
        completion_tokens: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        estimated: false,
        // OpenAI's count of the prompt served from its cache (vLLM and
        // llama.cpp send the same field when they track it).
        cached_tokens: u
            .pointer("/prompt_tokens_details/cached_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        cache_write_tokens: 0,
    })
}

impl LlmClient for OpenAiClient {
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

    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            if self.flavour == "llamacpp" {
                // llama.cpp answers its model list while it loads; /health
                // says 503 "Loading model" until it can generate.
                let root = self.base.trim_end_matches("/v1");
                return self
                    .http
                    .get(format!("{root}/health"))
                    .timeout(super::HEALTH_TIMEOUT)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
            }
            self.health_impl().await.ok
        })
    }

    fn windows(&self) -> BoxFuture<'_, HashMap<String, u64>> {
        Box::pin(self.windows_impl())
    }
}
