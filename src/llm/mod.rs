//! Model clients: one module per protocol behind the `LlmClient` trait, one
//! place that turns every server's errors into `LlmError`, and the resilient
//! `caller` (retries, cooldowns, fallback along the router's chain).

pub mod anthropic;
mod breakers;
pub mod caller;
pub mod ollama;
pub mod openai;
mod outcome;
mod records;
mod sse;
mod windows;

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::registry::{Provider, ProviderKind};

pub(crate) use crate::net::{BoxFuture, retry_after};

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
    /// A client's prompt-cache breakpoint at the end of this turn
    /// (Anthropic's `cache_control`), passed to Anthropic upstreams only:
    /// OpenAI-compatible servers cache prefixes by themselves.
    #[serde(skip)]
    pub cache_control: Option<serde_json::Value>,
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

    pub fn plain(role: &str, text: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: text.into(),
            tool_calls: None,
            tool_call_id: None,
            cache_control: None,
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
    pub role: Option<crate::role::Role>,
    /// Tools offered for native tool calling (OpenAI's `tools` form).
    pub tools: Vec<serde_json::Value>,
    /// A W3C `traceparent` sent with the request (the gateway's request
    /// span when it exports traces), so a server that traces (vLLM with
    /// `--otlp-traces-endpoint`) hangs its own span under it.
    pub traceparent: Option<String>,
}

/// The request with its `traceparent` header, when it has one.
pub(crate) fn traced(rb: reqwest::RequestBuilder, req: &ChatRequest) -> reqwest::RequestBuilder {
    match &req.traceparent {
        Some(tp) => rb.header("traceparent", tp),
        None => rb,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// The whole input, cached parts included (OpenAI's count; Anthropic's
    /// `input_tokens` plus its cache reads and writes).
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The server sent no usage; these are `router::estimate_tokens` figures.
    pub estimated: bool,
    /// Of `prompt_tokens`, read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Of `prompt_tokens`, written to the prompt cache (Anthropic bills
    /// these above the input rate).
    pub cache_write_tokens: u64,
}

impl Usage {
    /// What a call that reported no usage is taken to have used: the
    /// router's tokenizer-free estimate of the request and the answer.
    pub fn estimate(req: &ChatRequest, answer: &str) -> Usage {
        Usage {
            prompt_tokens: req
                .messages
                .iter()
                .map(|m| crate::tokens::estimate_tokens(&m.content))
                .sum(),
            completion_tokens: crate::tokens::estimate_tokens(answer),
            estimated: true,
            ..Usage::default()
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
    /// The server stayed silent too long: before its first byte (queue,
    /// prompt processing, or a whole non-streamed answer) or between two
    /// chunks of a stream. A long stream that keeps talking never is one.
    #[error("{}", timeout_text(what, *waited))]
    Timeout {
        what: &'static str,
        waited: Duration,
    },
    #[error("rate limited (429){}", .retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("server error {status}: {message}")]
    Server { status: u16, message: String },
    #[error("the prompt does not fit the model's context window: {0}")]
    ContextLength(String),
    /// The prompt fits but `max_tokens` asks for more than the server's
    /// window leaves (vLLM, TGI) or the model can write (OpenAI,
    /// Anthropic). `fits` is what the server says would fit, `window`
    /// the window it reports.
    #[error("max_tokens is more than the server allows: {message}")]
    OutputTooLong {
        message: String,
        fits: Option<u64>,
        window: Option<u64>,
    },
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

fn timeout_text(what: &str, waited: Duration) -> String {
    if waited.is_zero() {
        format!("no {what} within the time limit")
    } else {
        format!("timed out: no {what} within {}s", waited.as_secs_f64())
    }
}

impl LlmError {
    /// Worth trying the same model again after a pause.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            LlmError::Connect(_) | LlmError::RateLimited { .. } | LlmError::Server { .. }
        )
    }

    /// The server is there but cannot take the request now: refused
    /// connections, overload (429, TGI's "Model is overloaded", Ollama's
    /// 503 "server busy"), a model still loading (llama.cpp's 503), a
    /// gateway in front of a restarting server. Waiting fixes these;
    /// nothing about the task does, so they never block a task.
    pub fn transient(&self) -> bool {
        match self {
            LlmError::Connect(_) | LlmError::RateLimited { .. } | LlmError::Timeout { .. } => true,
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

    /// The server is there and will take the request later: overloaded or
    /// loading. Not a sign it is broken, so it does not cool down.
    pub fn busy(&self) -> bool {
        self.transient() && !matches!(self, LlmError::Connect(_) | LlmError::Timeout { .. })
    }

    /// The server's fault, not the request's: down, busy, hung, erroring,
    /// a cut or garbled stream, a refused key. Retrying later (or on
    /// another model) can fix it, so it never blocks a task. What is left
    /// is the request's own: too long for the window, or refused as wrong.
    pub fn server_fault(&self) -> bool {
        !matches!(
            self,
            LlmError::ContextLength(_)
                | LlmError::OutputTooLong { .. }
                | LlmError::BadRequest { .. }
        )
    }

    /// Silent before the answer began (its first byte or first token):
    /// the server is hung, and its other models with it.
    pub fn hung(&self) -> bool {
        matches!(self, LlmError::Timeout { what, .. } if *what != "next chunk")
    }

    /// llama.cpp's 503 "Loading model" (Ollama says "loading model" too).
    pub fn loading(&self) -> bool {
        matches!(self, LlmError::Server { message, .. } if message.to_lowercase().contains("loading model"))
    }

    /// A short, stable name for records and JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::Connect(_) => "connect",
            LlmError::Timeout { .. } => "timeout",
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Server { .. } => "server",
            LlmError::ContextLength(_) => "context_length",
            LlmError::OutputTooLong { .. } => "max_tokens",
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
    if matches!(status, 400 | 413 | 422)
        && let Some(e) = output_too_long(&message)
    {
        return e;
    }
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
        "`inputs` must have less than",
    ];
    if context.iter().any(|c| lower.contains(c))
        && (status == 400 || status == 413 || status == 422 || status >= 500)
    {
        return LlmError::ContextLength(message);
    }
    match status {
        401 | 403 => LlmError::Auth { status, message },
        408 => LlmError::Server { status, message },
        429 => LlmError::RateLimited { retry_after },
        500..=599 => LlmError::Server { status, message },
        _ => LlmError::BadRequest { status, message },
    }
}

/// A refusal of `max_tokens` itself, with what would fit, in each server's
/// words (from their sources): vLLM "'max_tokens' or
/// 'max_completion_tokens' is too large: A. This model's maximum context
/// length is W tokens and your request has N input tokens"; TGI "`inputs`
/// tokens + `max_new_tokens` must be <= W. Given: N `inputs` tokens and A
/// `max_new_tokens`"; OpenAI "max_tokens is too large: A. This model
/// supports at most L completion tokens"; Anthropic "max_tokens: A > L,
/// which is the maximum allowed number of output tokens". A prompt that
/// alone fills the window is a context-length error instead.
fn output_too_long(message: &str) -> Option<LlmError> {
    use std::sync::LazyLock;
    static PATTERNS: LazyLock<[regex::Regex; 4]> = LazyLock::new(|| {
        [
            // window, input
            r"(?i)max_(?:completion_)?tokens'?.{0,40}too large.*?maximum context length is (\d+) tokens and your request has (\d+) input",
            r"(?i)`inputs` tokens \+ `max_new_tokens` must be <= (\d+)\. Given: (\d+) `inputs` tokens",
            // limit only
            r"(?i)max_(?:completion_)?tokens.{0,40}too large.*?supports at most (\d+)",
            r"(?i)max_tokens: \d+ > (\d+), which is the maximum allowed",
        ]
        .map(|p| regex::Regex::new(p).expect("a valid pattern"))
    });
    let num = |c: &regex::Captures, i: usize| c.get(i)?.as_str().parse::<u64>().ok();
    let message = message.to_string();
    for (i, re) in PATTERNS.iter().enumerate() {
        let Some(c) = re.captures(&message) else {
            continue;
        };
        return Some(if i < 2 {
            let (window, input) = (num(&c, 1)?, num(&c, 2)?);
            if input >= window {
                LlmError::ContextLength(message)
            } else {
                LlmError::OutputTooLong {
                    fits: Some(window - input),
                    window: Some(window),
                    message,
                }
            }
        } else {
            LlmError::OutputTooLong {
                fits: num(&c, 1),
                window: None,
                message,
            }
        });
    }
    None
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
    // TGI's chat stream says every error as `{"error": {"message": …,
    // "http_status_code": 422}}` (`InferError::into_openai_event`): the
    // status is always 422, so its message says which error it is.
    if let Some(message) = v
        .as_ref()
        .filter(|v| v.pointer("/error/http_status_code").is_some())
        .and_then(|v| v.pointer("/error/message"))
        .and_then(|m| m.as_str())
    {
        return tgi_event_error(message, data);
    }
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
        // Anthropic's in-band error event.
        (_, "overloaded_error") => 529,
        (_, "validation") => 422,
        _ => return LlmError::StreamBroken(error_message(data)),
    };
    classify(status, data, None)
}

/// A TGI chat-stream error by its `InferError` message (router/src/infer).
fn tgi_event_error(message: &str, data: &str) -> LlmError {
    let status = if message.starts_with("Model is overloaded") {
        503
    } else if message.starts_with("Request failed during generation") {
        500
    } else if [
        "Input validation error",
        "Template error",
        "Missing template",
        "Tool error",
    ]
    .iter()
    .any(|p| message.starts_with(p))
    {
        422
    } else {
        // "Incomplete generation stream", a serialization error.
        return LlmError::StreamBroken(message.to_string());
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

/// How long a server may stay silent, from the provider's `timeout_secs`
/// (until the first byte) and `idle_timeout_secs` (between chunks). There
/// is no deadline for a whole answer: a slow stream that keeps talking is
/// never cut.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub first_byte: Duration,
    pub idle: Duration,
}

impl Timeouts {
    /// A probe's: health, model lists, server info.
    pub fn probe() -> Timeouts {
        Timeouts {
            first_byte: HEALTH_TIMEOUT,
            idle: HEALTH_TIMEOUT,
        }
    }

    pub fn of(p: &Provider) -> Timeouts {
        Timeouts {
            first_byte: p.timeout,
            idle: p.idle_timeout,
        }
    }
}

/// Sends a request and waits at most `first_byte` for the answer to start;
/// a non-2xx answer becomes an `LlmError` through `classify`.
pub async fn send(
    rb: reqwest::RequestBuilder,
    first_byte: Duration,
) -> Result<reqwest::Response, LlmError> {
    let resp = match tokio::time::timeout(first_byte, rb.send()).await {
        Ok(r) => r.map_err(transport_error)?,
        Err(_) => {
            return Err(LlmError::Timeout {
                what: "first byte",
                waited: first_byte,
            });
        }
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let ra = retry_after(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    Err(classify(status.as_u16(), &body, ra))
}

/// A response body read chunk by chunk, each within its own silence limit:
/// the first within `first`, every next within `idle`.
pub struct Body {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    wait: Duration,
    idle: Duration,
    what: &'static str,
}

impl Body {
    /// A stream's body: its first chunk may take the first-byte time (some
    /// servers send headers at once and the first token after the prompt).
    pub fn stream(resp: reqwest::Response, t: Timeouts) -> Body {
        Body {
            stream: Box::pin(resp.bytes_stream()),
            wait: t.first_byte,
            idle: t.idle,
            what: "first token",
        }
    }

    /// The next chunk; `None` at the end. A transport error here is a
    /// broken stream, said once.
    pub async fn next(&mut self) -> Result<Option<bytes::Bytes>, LlmError> {
        use futures_util::StreamExt;
        let next = tokio::time::timeout(self.wait, self.stream.next()).await;
        let waited = self.wait;
        let what = self.what;
        self.wait = self.idle;
        self.what = "next chunk";
        match next {
            Err(_) => Err(LlmError::Timeout { what, waited }),
            Ok(None) => Ok(None),
            Ok(Some(Ok(b))) => Ok(Some(b)),
            Ok(Some(Err(e))) => Err(match transport_error(e) {
                broken @ LlmError::StreamBroken(_) => broken,
                other => LlmError::StreamBroken(other.to_string()),
            }),
        }
    }

    /// A whole non-streamed body (its headers came after the answer was
    /// written, so each chunk gets the idle limit).
    pub async fn text(resp: reqwest::Response, t: Timeouts) -> Result<String, LlmError> {
        let mut body = Body {
            stream: Box::pin(resp.bytes_stream()),
            wait: t.idle,
            idle: t.idle,
            what: "body",
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await? {
            bytes.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

pub fn transport_error(e: reqwest::Error) -> LlmError {
    if e.is_timeout() {
        LlmError::Timeout {
            what: "answer",
            waited: Duration::ZERO,
        }
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
    let v = probe_json(rb?).await?;
    Ok(v.get(list_key)
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get(name_key)?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

/// A probe's answer as JSON (`Null` when the body is not JSON), within the
/// probe's time limits; a failed request is classified like any call's.
pub async fn probe_json(rb: reqwest::RequestBuilder) -> Result<serde_json::Value, LlmError> {
    let resp = send(rb, HEALTH_TIMEOUT).await?;
    let body = Body::text(resp, Timeouts::probe()).await?;
    Ok(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
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

    /// Ready to generate now. llama.cpp's `/health` answers 200 only once
    /// its model is loaded, while its model list answers before.
    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.health().await.ok })
    }

    /// The input tokens `req` would be to `model`, counted by the server
    /// (Anthropic's `count_tokens`); None when it has no way to say.
    fn count_tokens<'a>(
        &'a self,
        _model: &'a str,
        _req: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<Option<u64>, LlmError>> {
        Box::pin(async { Ok(None) })
    }

    /// The windows the server reports, by served name (`ANY_MODEL` when
    /// it serves one model whatever it is called). Empty when it says
    /// nothing.
    fn windows(&self) -> BoxFuture<'_, HashMap<String, u64>> {
        Box::pin(async { HashMap::new() })
    }
}

/// The key of a window that holds for every name a server answers to.
pub const ANY_MODEL: &str = "*";

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
        // TGI's prompt over its max_input_tokens.
        let tgi = r#"{"error":"Input validation error: `inputs` must have less than 4095 tokens. Given: 5000","error_type":"validation"}"#;
        assert!(matches!(
            classify(422, tgi, None),
            LlmError::ContextLength(_)
        ));
    }

    #[test]
    fn a_refused_max_tokens_says_what_would_fit() {
        let cases = [
            // vLLM's serving_engine, started with --max-model-len 4096.
            (
                400,
                r#"{"object":"error","message":"'max_tokens' or 'max_completion_tokens' is too large: 4096. This model's maximum context length is 4096 tokens and your request has 79 input tokens (4096 > 4096 - 79).","type":"BadRequestError","param":"max_tokens","code":400}"#,
                Some(4017),
                Some(4096),
            ),
            // TGI's validation (router/src/validation.rs).
            (
                422,
                r#"{"error":"Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 512 `max_new_tokens`","error_type":"validation"}"#,
                Some(96),
                Some(4096),
            ),
            (
                400,
                r#"{"error":{"message":"max_tokens is too large: 32000. This model supports at most 16384 completion tokens, whereas you provided 32000.","type":"invalid_request_error","param":"max_tokens","code":null}}"#,
                Some(16384),
                None,
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: 32000 > 8192, which is the maximum allowed number of output tokens for claude-3-5-haiku-20241022"}}"#,
                Some(8192),
                None,
            ),
        ];
        for (status, body, fits, window) in cases {
            match classify(status, body, None) {
                LlmError::OutputTooLong {
                    fits: f, window: w, ..
                } => assert_eq!((f, w), (fits, window), "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        // The prompt alone fills the window: no max_tokens helps.
        let full = r#"{"message":"'max_tokens' or 'max_completion_tokens' is too large: 10. This model's maximum context length is 4096 tokens and your request has 4096 input tokens (10 > 4096 - 4096)."}"#;
        assert!(matches!(
            classify(400, full, None),
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
