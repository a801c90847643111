//! Model clients: one module per protocol behind the `LlmClient` trait, one
//! place that turns every server's errors into `LlmError`, and the resilient
//! `caller` (retries, cooldowns, fallback along the router's chain).

pub mod anthropic;
pub mod caller;
pub mod ollama;
pub mod openai;
mod sse;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

use crate::registry::{Provider, ProviderKind};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
    /// An assistant turn's native tool calls, in OpenAI's wire form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    /// A `tool` turn: which call it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn system(text: impl Into<String>) -> Message {
        Message::plain("system", text)
    }

    pub fn user(text: impl Into<String>) -> Message {
        Message::plain("user", text)
    }

    pub fn assistant(text: impl Into<String>) -> Message {
        Message::plain("assistant", text)
    }

    fn plain(role: &str, text: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: text.into(),
            tool_calls: None,
            tool_call_id: None,
        }
    }

    /// The assistant's turn that asked for tools (native tool calling).
    pub fn tool_request(text: impl Into<String>, calls: &[ToolCall]) -> Message {
        let wire: Vec<serde_json::Value> = calls
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments.to_string()},
                })
            })
            .collect();
        Message {
            tool_calls: Some(serde_json::Value::Array(wire)),
            ..Message::plain("assistant", text)
        }
    }

    /// A tool's result, answering call `id`.
    pub fn tool_result(id: &str, text: impl Into<String>) -> Message {
        Message {
            tool_call_id: Some(id.to_string()),
            ..Message::plain("tool", text)
        }
    }
}

/// A tool the model asked for (native tool calling).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

impl Message {}

#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub temperature: f32,
    pub max_tokens: u64,
    /// Ask for JSON matching this schema (`response_format` / Ollama `format`).
    pub json_schema: Option<serde_json::Value>,
    /// Stream tokens to the sink as they arrive.
    pub stream: bool,
    /// Ollama: how long the model stays loaded after this call.
    pub keep_alive: Option<String>,
    /// Ollama: the context size to load the model with.
    pub num_ctx: Option<u64>,
    /// The role asking, for per-role settings (Ollama `keep_alive`).
    pub role: Option<String>,
    /// Tools offered for native tool calling (OpenAI's `tools` form).
    pub tools: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The server sent no usage; these are `router::estimate_tokens` figures.
    pub estimated: bool,
}

impl Usage {
    /// What a call that reported no usage is taken to have used: the
    /// router's tokenizer-free estimate of the request and the answer.
    pub fn estimate(req: &ChatRequest, answer: &str) -> Usage {
        Usage {
            prompt_tokens: req
                .messages
                .iter()
                .map(|m| crate::router::estimate_tokens(&m.content))
                .sum(),
            completion_tokens: crate::router::estimate_tokens(answer),
            estimated: true,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatResponse {
    pub text: String,
    /// Native tool calls the model asked for (non-streaming OpenAI-style).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub finish_reason: Option<String>,
    #[serde(rename = "latency_ms", serialize_with = "millis")]
    pub latency: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// What a streaming call reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    Token(&'a str),
    /// The model failed after sending some tokens; the next model starts over.
    Restart {
        failed_model: &'a str,
        next_model: &'a str,
    },
}

pub type Sink<'a> = &'a mut (dyn FnMut(StreamEvent<'_>) + Send);

/// Every provider's failures, in one shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("rate limited (429){}", .retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("server error {status}: {message}")]
    Server { status: u16, message: String },
    #[error("the prompt does not fit the model's context window: {0}")]
    ContextLength(String),
    #[error("authentication failed ({status}): {message}")]
    Auth { status: u16, message: String },
    #[error("request refused ({status}): {message}")]
    BadRequest { status: u16, message: String },
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    #[error("the stream broke after it started: {0}")]
    StreamBroken(String),
    #[error("the API key variable {0} is not set")]
    MissingKey(String),
}

impl LlmError {
    /// Worth trying the same model again after a pause.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            LlmError::Connect(_)
                | LlmError::Timeout(_)
                | LlmError::RateLimited { .. }
                | LlmError::Server { .. }
        )
    }

    /// The server is there but cannot take the request now: refused
    /// connections, overload (429, TGI's "Model is overloaded", Ollama's
    /// 503 "server busy"), a model still loading (llama.cpp's 503), a
    /// gateway in front of a restarting server. Waiting fixes these;
    /// nothing about the task does, so they never block a task.
    pub fn transient(&self) -> bool {
        match self {
            LlmError::Connect(_) | LlmError::RateLimited { .. } => true,
            LlmError::Server { status, message } => {
                let m = message.to_lowercase();
                matches!(status, 502..=504)
                    || [
                        "overloaded",
                        "server busy",
                        "loading model",
                        "too many requests",
                    ]
                    .iter()
                    .any(|w| m.contains(w))
            }
            _ => false,
        }
    }

    /// A short, stable name for records and JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::Connect(_) => "connect",
            LlmError::Timeout(_) => "timeout",
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Server { .. } => "server",
            LlmError::ContextLength(_) => "context_length",
            LlmError::Auth { .. } => "auth",
            LlmError::BadRequest { .. } => "bad_request",
            LlmError::InvalidResponse(_) => "invalid_response",
            LlmError::StreamBroken(_) => "stream_broken",
            LlmError::MissingKey(_) => "missing_key",
        }
    }
}

/// Turns an HTTP error status and body into an `LlmError`: the one place
/// that knows how vLLM, TGI, Ollama, llama.cpp, OpenAI and Anthropic say
/// "too long", "slow down" and "bad key".
pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> LlmError {
    let message = error_message(body);
    let lower = message.to_lowercase();
    let context = [
        "context length",
        "context_length",
        "maximum context",
        "context window",
        "too many tokens",
        "prompt is too long",
        "exceeds the model",
        "input is too long",
        "requested tokens",
        "context size",
        "exceed_context_size",
        "max_new_tokens",
    ];
    if context.iter().any(|c| lower.contains(c))
        && (status == 400 || status == 413 || status == 422 || status >= 500)
    {
        return LlmError::ContextLength(message);
    }
    match status {
        401 | 403 => LlmError::Auth { status, message },
        408 => LlmError::Timeout(Duration::ZERO),
        429 => LlmError::RateLimited { retry_after },
        500..=599 => LlmError::Server { status, message },
        _ => LlmError::BadRequest { status, message },
    }
}

/// The human message inside an error body: OpenAI `{"error":{"message"}}`,
/// Anthropic `{"error":{"message"}}`, TGI/Ollama `{"error":"…"}`, vLLM
/// `{"message"}`, or the body itself, cut to 300 characters.
/// An error event inside a stream that already answered 200, classified
/// like the HTTP status it stands for, so it is retried (or not) the same
/// way: TGI says what kind it is (`error_type`: `overloaded`, `validation`
/// for a prompt that does not fit), vLLM gives the status (`error.code`).
/// Anything else is a broken stream.
pub fn in_band_error(data: &str) -> LlmError {
    let v: Option<serde_json::Value> = serde_json::from_str(data).ok();
    let kind = v
        .as_ref()
        .and_then(|v| v.get("error_type").or_else(|| v.pointer("/error/type")))
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_lowercase();
    let code = v
        .as_ref()
        .and_then(|v| v.pointer("/error/code").or_else(|| v.get("code")))
        .and_then(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok()));
    let status = match (code, kind.as_str()) {
        (Some(c @ 400..=599), _) => c as u16,
        (_, "overloaded") => 503,
        (_, "validation") => 422,
        _ => return LlmError::StreamBroken(error_message(data)),
    };
    classify(status, data, None)
}

pub fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let found = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .and_then(|m| {
                m.as_str()
                    .map(str::to_string)
                    .or_else(|| Some(m.to_string()))
            })
    });
    let text = found.unwrap_or_else(|| body.trim().to_string());
    text.chars().take(300).collect()
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// Sends a request; a non-2xx answer becomes an `LlmError` through `classify`.
pub async fn send(
    rb: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<reqwest::Response, LlmError> {
    let resp = rb.send().await.map_err(|e| transport_error(e, timeout))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let ra = retry_after(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    Err(classify(status.as_u16(), &body, ra))
}

pub fn transport_error(e: reqwest::Error, timeout: Duration) -> LlmError {
    if e.is_timeout() {
        LlmError::Timeout(timeout)
    } else if e.is_connect() {
        LlmError::Connect(e.to_string())
    } else if e.is_body() || e.is_decode() {
        LlmError::StreamBroken(e.to_string())
    } else {
        LlmError::Connect(e.to_string())
    }
}

/// Liveness and what a server serves.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub ok: bool,
    /// The endpoint that answered (`/health`, `/v1/models`, `/api/tags`).
    pub checked: String,
    pub served: Vec<String>,
    pub error: Option<String>,
}

/// How long a health probe waits: a busy llama-cpp-python answers slowly
/// while it generates.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// The names a server lists: `GET` the request, then `[list_key][*][name_key]`
/// (`data`/`id` for OpenAI-style `/models`, `models`/`name` for Ollama).
/// Failures come back classified like any other call's.
pub async fn list_models(
    rb: Result<reqwest::RequestBuilder, LlmError>,
    list_key: &str,
    name_key: &str,
) -> Result<Vec<String>, LlmError> {
    let resp = send(rb?.timeout(HEALTH_TIMEOUT), HEALTH_TIMEOUT).await?;
    let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    Ok(v.get(list_key)
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get(name_key)?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

impl Health {
    /// A health report from a model-list probe at `checked`.
    pub fn from_list(checked: &str, listed: Result<Vec<String>, LlmError>) -> Health {
        match listed {
            Ok(served) => Health {
                ok: true,
                checked: checked.into(),
                served,
                error: None,
            },
            Err(e) => Health {
                ok: false,
                checked: checked.into(),
                served: vec![],
                error: Some(e.to_string()),
            },
        }
    }
}

/// One protocol. Implementations never log or return the API key.
pub trait LlmClient: Send + Sync {
    /// `model` is the served name.
    fn chat<'a>(
        &'a self,
        model: &'a str,
        req: &'a ChatRequest,
        sink: Option<Sink<'a>>,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>>;
    fn health(&self) -> BoxFuture<'_, Health>;
}

/// The client for a provider: Anthropic's Messages API, Ollama's native API
/// (it can set `num_ctx` and `keep_alive`, its `/v1` cannot), or the
/// OpenAI-compatible API for everything else.
pub fn client_for(provider: &Provider, http: reqwest::Client) -> Box<dyn LlmClient> {
    match provider.kind {
        ProviderKind::Anthropic => Box::new(anthropic::AnthropicClient::new(provider, http)),
        ProviderKind::OpenAiCompatible if provider.is_ollama() => {
            Box::new(ollama::OllamaClient::new(provider, http))
        }
        ProviderKind::OpenAiCompatible => Box::new(openai::OpenAiClient::new(provider, http)),
    }
}

/// One HTTP client for the process: rustls with the ring provider and the
/// platform's roots; timeouts are set per request.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("llmclis/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

/// Removes every known API key from a message before it is logged, stored
/// or printed.
pub fn redact(message: &str, keys: &[String]) -> String {
    let mut out = message.to_string();
    for k in keys.iter().filter(|k| k.len() >= 8) {
        out = out.replace(k.as_str(), "[redacted]");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_in_one_place() {
        assert!(matches!(
            classify(
                400,
                r#"{"error":{"message":"This model's maximum context length is 2048 tokens"}}"#,
                None
            ),
            LlmError::ContextLength(_)
        ));
        assert!(matches!(
            classify(429, "{}", Some(Duration::from_secs(2))),
            LlmError::RateLimited {
                retry_after: Some(_)
            }
        ));
        assert!(matches!(
            classify(503, r#"{"error":"overloaded"}"#, None),
            LlmError::Server { status: 503, .. }
        ));
        assert!(matches!(
            classify(401, r#"{"error":{"message":"bad key"}}"#, None),
            LlmError::Auth { .. }
        ));
        assert_eq!(
            error_message(r#"{"message":"vllm says no"}"#),
            "vllm says no"
        );
    }

    #[test]
    fn a_huge_retry_after_does_not_panic() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::RETRY_AFTER,
            "99999999999999999999".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
    }

    #[test]
    fn llama_cpp_and_tgi_context_errors_are_recognised() {
        let cpp = r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error"}}"#;
        assert!(matches!(
            classify(400, cpp, None),
            LlmError::ContextLength(_)
        ));
        let tgi = r#"{"error":"Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 512 `max_new_tokens`","error_type":"validation"}"#;
        assert!(matches!(
            classify(422, tgi, None),
            LlmError::ContextLength(_)
        ));
    }

    #[test]
    fn keys_are_redacted() {
        assert_eq!(
            redact("bad key sk-1234567890", &["sk-1234567890".into()]),
            "bad key [redacted]"
        );
    }
}
