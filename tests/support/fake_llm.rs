//! A scripted OpenAI-compatible server for fault injection: each request to
//! `/v1/chat/completions` takes the next scripted reply (then a plain
//! success). It counts requests and keeps the last request's headers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;

#[derive(Debug, Clone)]
pub enum Reply {
    /// A normal answer with this text (non-streaming or streaming, as asked).
    Ok(&'static str),
    /// Any status with a JSON body and extra headers.
    Status(u16, &'static str, Vec<(&'static str, &'static str)>),
    /// A raw body with status 200 (invalid JSON, truncated streams, …).
    Raw(&'static str),
    /// Wait, then give the inner reply.
    Delay(Duration, Box<Reply>),
    /// A normal answer with owned text and this many completion tokens.
    Text(String, u64),
    /// A normal answer cut off at max_tokens (`finish_reason: length`).
    Cut(String, u64),
    /// A 200 stream of these words, one SSE chunk each, `gap` apart: a
    /// slow but healthy generation.
    Slow(&'static str, Duration),
    /// Headers, then silence for this long before the answer: a hung
    /// generation.
    Hang(Duration),
    /// A native tool call (id, name, arguments as JSON text); streamed as vLLM
    /// streams one when the request streams: the id and name first, the
    /// arguments in pieces, `finish_reason: tool_calls`.
    ToolCall(&'static str, &'static str, &'static str),
}

/// Requests whose messages contain `needle` take `replies` in order, then
/// `then` forever.
#[derive(Debug, Clone)]
pub struct Route {
    pub needle: &'static str,
    pub replies: Vec<Reply>,
    pub then: Reply,
}

impl Route {
    pub fn new(needle: &'static str, replies: Vec<Reply>, then: Reply) -> Route {
        Route {
            needle,
            replies,
            then,
        }
    }
}

#[derive(Default)]
struct Inner {
    script: Mutex<VecDeque<Reply>>,
    routes: RouteQueues,
    hits: AtomicUsize,
    /// Slow streams whose client hung up before the end.
    dropped: Arc<AtomicUsize>,
    last_auth: Mutex<Option<String>>,
    last_traceparent: Mutex<Option<String>>,
    requests: Mutex<Vec<serde_json::Value>>,
    /// Requests served at once; the rest wait (a server's batch size).
    slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Time per request, like a model reading the prompt.
    latency: Duration,
    /// And per completion token, like a model generating.
    per_token: Duration,
    /// The window the server runs with: reported on `/v1/models` (vLLM's
    /// `max_model_len`), `/info` (TGI) and `/props` (llama.cpp), and
    /// enforced on `max_tokens` with vLLM's 400.
    window: Option<u64>,
    /// Until then, llama.cpp's loading window: `/health` and chat answer
    /// 503 "Loading model", the model list answers.
    loading_until: Mutex<Option<std::time::Instant>>,
}

type RouteQueues = Mutex<Vec<(Route, VecDeque<Reply>)>>;

/// Each route with the queue of replies it has left.
fn queues(routes: Vec<Route>) -> RouteQueues {
    Mutex::new(
        routes
            .into_iter()
            .map(|r| {
                let q = r.replies.clone().into();
                (r, q)
            })
            .collect(),
    )
}

pub struct FakeLlm {
    pub url: String,
    inner: Arc<Inner>,
}

impl FakeLlm {
    /// Starts on a free loopback port, on the current tokio runtime.
    pub async fn start(script: Vec<Reply>) -> FakeLlm {
        let inner = Arc::new(Inner {
            script: Mutex::new(script.into()),
            ..Default::default()
        });
        Self::serve(inner).await
    }

    /// Starts a server that answers by what the prompt contains (the role's
    /// template), `slots` requests at a time, each taking `latency`.
    pub async fn routed(routes: Vec<Route>, slots: Option<usize>, latency: Duration) -> FakeLlm {
        Self::timed(routes, slots, latency, Duration::ZERO).await
    }

    /// `routed`, where a `Text`/`Cut` reply also takes `per_token` for each
    /// completion token it claims.
    pub async fn timed(
        routes: Vec<Route>,
        slots: Option<usize>,
        latency: Duration,
        per_token: Duration,
    ) -> FakeLlm {
        let inner = Arc::new(Inner {
            per_token,
            routes: queues(routes),
            slots: slots.map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
            latency,
            ..Default::default()
        });
        Self::serve(inner).await
    }

    /// A server that runs with a `window`-token context (see `Inner`).
    pub async fn with_window(script: Vec<Reply>, window: u64) -> FakeLlm {
        Self::serve(Arc::new(Inner {
            script: Mutex::new(script.into()),
            window: Some(window),
            ..Default::default()
        }))
        .await
    }

    /// `routed`, on a server that runs with a `window`-token context and
    /// refuses a prompt that does not fit it as vLLM does.
    pub async fn routed_with_window(routes: Vec<Route>, window: u64) -> FakeLlm {
        let inner = Arc::new(Inner {
            routes: queues(routes),
            window: Some(window),
            ..Default::default()
        });
        Self::serve(inner).await
    }

    /// A llama.cpp server still loading its model for `for_`.
    pub async fn loading(for_: Duration) -> FakeLlm {
        Self::serve(Arc::new(Inner {
            loading_until: Mutex::new(Some(std::time::Instant::now() + for_)),
            ..Default::default()
        }))
        .await
    }

    /// `start` on a given port (a server that comes back where one was).
    pub async fn start_at(port: u16, script: Vec<Reply>) -> FakeLlm {
        let inner = Arc::new(Inner {
            script: Mutex::new(script.into()),
            ..Default::default()
        });
        Self::serve_at(inner, port).await
    }

    async fn serve(inner: Arc<Inner>) -> FakeLlm {
        Self::serve_at(inner, 0).await
    }

    async fn serve_at(inner: Arc<Inner>, port: u16) -> FakeLlm {
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/api/chat", post(ollama_chat))
            .route("/v1/messages", post(anthropic_messages))
            .route("/v1/messages/count_tokens", post(anthropic_count_tokens))
            .route("/v1/models", get(models))
            .route("/health", get(health))
            .route("/info", get(info))
            .route("/props", get(props))
            .route("/v1/embeddings", post(embeddings))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeLlm { url, inner }
    }

    /// Every chat request's body, in arrival order.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// The prompts (all message contents joined) of requests containing `needle`.
    pub fn prompts_with(&self, needle: &str) -> Vec<String> {
        self.requests()
            .iter()
            .map(prompt_text)
            .filter(|p| p.contains(needle))
            .collect()
    }

    pub fn hits(&self) -> usize {
        self.inner.hits.load(Ordering::SeqCst)
    }

    /// Slow streams the client hung up on before the end.
    pub fn dropped(&self) -> usize {
        self.inner.dropped.load(Ordering::SeqCst)
    }

    pub fn last_auth(&self) -> Option<String> {
        self.inner.last_auth.lock().unwrap().clone()
    }

    /// The `traceparent` header of the last request, if it had one.
    pub fn last_traceparent(&self) -> Option<String> {
        self.inner.last_traceparent.lock().unwrap().clone()
    }
}

struct HangUp {
    finished: bool,
    dropped: Arc<AtomicUsize>,
}

impl Drop for HangUp {
    fn drop(&mut self) {
        if !self.finished {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// llama.cpp's answer to everything but its model list while it loads
/// (tools/server/server.cpp: ERROR_TYPE_UNAVAILABLE, "Loading model").
const LOADING: &str =
    r#"{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}"#;

fn loading(inner: &Inner) -> bool {
    inner
        .loading_until
        .lock()
        .unwrap()
        .is_some_and(|t| std::time::Instant::now() < t)
}

async fn models(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    let mut model = serde_json::json!({"id": "fake-model", "object": "model"});
    if let Some(w) = inner.window {
        model["max_model_len"] = w.into();
    }
    axum::Json(serde_json::json!({"object": "list", "data": [model]}))
}

async fn health(State(inner): State<Arc<Inner>>) -> Response {
    if loading(&inner) {
        return (StatusCode::SERVICE_UNAVAILABLE, LOADING).into_response();
    }
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn info(State(inner): State<Arc<Inner>>) -> Response {
    match inner.window {
        Some(w) => axum::Json(serde_json::json!({
            "model_id": "fake-model", "max_input_tokens": w - 1, "max_total_tokens": w
        }))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn props(State(inner): State<Arc<Inner>>) -> Response {
    match inner.window {
        Some(w) => axum::Json(serde_json::json!({
            "default_generation_settings": {"n_ctx": w}, "total_slots": 1
        }))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Deterministic vectors of 4 dimensions, not normalized, in reverse order
/// with their `index` (servers may reorder).
async fn embeddings(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    inner.hits.fetch_add(1, Ordering::SeqCst);
    let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let inputs: Vec<String> = req["input"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut data: Vec<serde_json::Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"index": i, "embedding": [t.len() as f64, 3.0, 0.0, 4.0]}))
        .collect();
    data.reverse();
    axum::Json(serde_json::json!({"data": data, "model": req["model"]})).into_response()
}

/// The protocol a request came in on: each answer is written in its form,
/// streamed or not as the request asks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Proto {
    OpenAi,
    Ollama,
    Anthropic,
}

/// Ollama's native `/api/chat`: answers as its JSON (streamed as NDJSON);
/// any other reply as scripted.
async fn ollama_chat(state: State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(state, Proto::Ollama, headers, body).await
}

/// Anthropic's `/v1/messages`, the same way (streamed as its events).
async fn anthropic_messages(state: State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(state, Proto::Anthropic, headers, body).await
}

/// Anthropic's `count_tokens`: a count the gateway cannot have made up.
pub const COUNTED_TOKENS: u64 = 4242;

async fn anthropic_count_tokens() -> Response {
    axum::Json(serde_json::json!({"input_tokens": COUNTED_TOKENS})).into_response()
}

async fn chat(state: State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(state, Proto::OpenAi, headers, body).await
}

/// One whole answer, before it is written in a protocol's form.
struct Answer {
    text: String,
    finish: &'static str,
    prompt_tokens: u64,
    completion_tokens: u64,
    tool: Option<(&'static str, &'static str, &'static str)>,
    /// Streams carry usage (vLLM with `include_usage`); a plain `Ok`
    /// streams without, as llama-cpp-python does.
    stream_usage: bool,
}

/// A string in two pieces, split on a character boundary.
fn halves(s: &str) -> (&str, &str) {
    let mut at = s.len() / 2;
    while !s.is_char_boundary(at) {
        at += 1;
    }
    s.split_at(at)
}

fn sse(events: impl IntoIterator<Item = String>) -> Response {
    let body: String = events.into_iter().collect();
    ([("content-type", "text/event-stream")], body).into_response()
}

/// Writes `a` as `proto` does, streamed when `stream`.
fn write_answer(proto: Proto, stream: bool, include_usage: bool, a: Answer) -> Response {
    use serde_json::json;
    let words: Vec<String> = a.text.split_inclusive(' ').map(String::from).collect();
    let usage = a.stream_usage && include_usage;
    match (proto, stream) {
        (Proto::OpenAi, false) => {
            let mut message = json!({"role": "assistant", "content": a.text});
            if let Some((id, name, args)) = a.tool {
                message["tool_calls"] = json!([{"id": id, "type": "function", "function": {"name": name, "arguments": args}}]);
            }
            axum::Json(json!({
                "choices": [{"index": 0, "message": message, "finish_reason": a.finish}],
                "usage": {"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens,
                          "total_tokens": a.prompt_tokens + a.completion_tokens}
            }))
            .into_response()
        }
        (Proto::OpenAi, true) => {
            let chunk = |delta: serde_json::Value, finish: Option<&str>| {
                format!(
                    "data: {}\n\n",
                    json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                )
            };
            let mut events: Vec<String> = words
                .iter()
                .map(|w| chunk(json!({"content": w}), None))
                .collect();
            if let Some((id, name, args)) = a.tool {
                // As vLLM streams one: id and name first, the arguments in pieces.
                let (x, y) = halves(args);
                events.push(chunk(json!({"role": "assistant", "tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}), None));
                for piece in [x, y] {
                    events.push(chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                        None,
                    ));
                }
            }
            events.push(chunk(json!({}), Some(a.finish)));
            if usage {
                events.push(format!(
                    "data: {}\n\n",
                    json!({"choices": [], "usage": {"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens, "total_tokens": a.prompt_tokens + a.completion_tokens}})
                ));
            }
            events.push("data: [DONE]\n\n".into());
            sse(events)
        }
        (Proto::Ollama, false) => axum::Json(json!({
            "model": "fake", "message": {"role": "assistant", "content": a.text},
            "done": true, "done_reason": a.finish,
            "prompt_eval_count": a.prompt_tokens, "eval_count": a.completion_tokens
        }))
        .into_response(),
        (Proto::Ollama, true) => {
            // NDJSON (server/routes.go `streamResponse`): a line per piece,
            // the last with `done` and the counts.
            let mut body: String = words
                .iter()
                .map(|w| {
                    format!(
                        "{}\n",
                        json!({"model": "fake", "message": {"role": "assistant", "content": w}, "done": false})
                    )
                })
                .collect();
            body.push_str(&format!(
                "{}\n",
                json!({"model": "fake", "message": {"role": "assistant", "content": ""}, "done": true,
                       "done_reason": a.finish, "prompt_eval_count": a.prompt_tokens, "eval_count": a.completion_tokens})
            ));
            ([("content-type", "application/x-ndjson")], body).into_response()
        }
        (Proto::Anthropic, false) => {
            let mut content = vec![json!({"type": "text", "text": a.text})];
            if let Some((id, name, args)) = a.tool {
                let input: serde_json::Value = serde_json::from_str(args).unwrap_or(json!({}));
                content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
            }
            let stop = match (a.tool, a.finish) {
                (Some(_), _) => "tool_use",
                (_, "length") => "max_tokens",
                _ => "end_turn",
            };
            axum::Json(json!({
                "type": "message", "role": "assistant", "content": content, "stop_reason": stop,
                "usage": {"input_tokens": a.prompt_tokens, "output_tokens": a.completion_tokens}
            }))
            .into_response()
        }
        (Proto::Anthropic, true) => {
            let event =
                |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
            let mut events = vec![
                event(
                    "message_start",
                    json!({"type": "message_start", "message": {"usage": {"input_tokens": a.prompt_tokens}}}),
                ),
                event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ),
            ];
            for w in &words {
                events.push(event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})));
            }
            events.push(event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ));
            if let Some((id, name, args)) = a.tool {
                let (x, y) = halves(args);
                events.push(event("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})));
                for piece in [x, y] {
                    events.push(event("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": piece}})));
                }
                events.push(event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 1}),
                ));
            }
            let stop = match (a.tool, a.finish) {
                (Some(_), _) => "tool_use",
                (_, "length") => "max_tokens",
                _ => "end_turn",
            };
            events.push(event("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": a.completion_tokens}})));
            events.push(event("message_stop", json!({"type": "message_stop"})));
            sse(events)
        }
    }
}

async fn respond(
    State(inner): State<Arc<Inner>>,
    proto: Proto,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    inner.hits.fetch_add(1, Ordering::SeqCst);
    *inner.last_traceparent.lock().unwrap() = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    *inner.last_auth.lock().unwrap() = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let stream = req["stream"].as_bool().unwrap_or(false);
    let include_usage =
        req.pointer("/stream_options/include_usage") == Some(&serde_json::json!(true));
    inner.requests.lock().unwrap().push(req.clone());
    if loading(&inner) {
        return (StatusCode::SERVICE_UNAVAILABLE, LOADING).into_response();
    }
    if let Some(window) = inner.window {
        // vLLM's check (entrypoints/openai serving_engine), with this
        // server's token count: a quarter of the prompt's characters.
        let input = (prompt_text(&req).len() as u64 / 4).max(1);
        let asked = req["max_tokens"].as_u64().unwrap_or(0);
        if input >= window {
            // vLLM's `_validate_input` (entrypoints/openai/serving_engine.py),
            // in its current error shape: `ErrorResponse { error: ErrorInfo }`.
            let message = format!(
                "This model's maximum context length is {window} tokens. However, your request has {input} input tokens. Please reduce the length of the input messages."
            );
            return (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": {"message": message, "type": "BadRequestError", "param": null, "code": 400}}).to_string(),
            )
                .into_response();
        }
        if input + asked > window {
            let message = format!(
                "'max_tokens' or 'max_completion_tokens' is too large: {asked}. This model's maximum context length is {window} tokens and your request has {input} input tokens ({asked} > {window} - {input})."
            );
            return (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": {"message": message, "type": "BadRequestError", "param": "max_tokens", "code": 400}}).to_string(),
            )
                .into_response();
        }
    }
    let _slot = match &inner.slots {
        Some(s) => Some(s.clone().acquire_owned().await.unwrap()),
        None => None,
    };
    let routed = {
        let text = prompt_text(&req);
        let mut routes = inner.routes.lock().unwrap();
        routes
            .iter_mut()
            .find(|(r, _)| text.contains(r.needle))
            .map(|(r, q)| q.pop_front().unwrap_or_else(|| r.then.clone()))
    };
    let mut reply = match routed {
        Some(r) => r,
        None => inner
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Reply::Ok("fine")),
    };
    let generated = match &reply {
        Reply::Text(_, n) | Reply::Cut(_, n) => inner.per_token * (*n as u32),
        _ => Duration::ZERO,
    };
    if !(inner.latency + generated).is_zero() {
        tokio::time::sleep(inner.latency + generated).await;
    }
    loop {
        match reply {
            Reply::Delay(d, inner_reply) => {
                tokio::time::sleep(d).await;
                reply = *inner_reply;
            }
            Reply::Ok(text) => {
                return write_answer(
                    proto,
                    stream,
                    include_usage,
                    Answer {
                        text: text.to_string(),
                        finish: "stop",
                        prompt_tokens: 11,
                        completion_tokens: 3,
                        tool: None,
                        stream_usage: false,
                    },
                );
            }
            Reply::Text(_, _) | Reply::Cut(_, _) => {
                let (text, n, finish) = match reply {
                    Reply::Text(t, n) => (t, n, "stop"),
                    Reply::Cut(t, n) => (t, n, "length"),
                    _ => unreachable!(),
                };
                return write_answer(
                    proto,
                    stream,
                    include_usage,
                    Answer {
                        text,
                        finish,
                        prompt_tokens: 50,
                        completion_tokens: n,
                        tool: None,
                        stream_usage: true,
                    },
                );
            }
            Reply::Status(code, body, extra) => {
                let mut resp =
                    (StatusCode::from_u16(code).unwrap(), body.to_string()).into_response();
                for (k, v) in extra {
                    resp.headers_mut().insert(k, v.parse().unwrap());
                }
                return resp;
            }
            Reply::Slow(text, gap) => {
                let chunks: Vec<String> = text
                    .split_inclusive(' ')
                    .map(|w| serde_json::json!({"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": null}]}).to_string())
                    .chain([serde_json::json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string()])
                    .collect();
                let events = futures_util::stream::iter(chunks).then(move |c| async move {
                    tokio::time::sleep(gap).await;
                    Ok::<_, std::convert::Infallible>(format!("data: {c}\n\n"))
                });
                // Counts a client that hangs up mid-stream: the body is
                // dropped before its last chunk.
                let watch = HangUp {
                    finished: false,
                    dropped: inner.dropped.clone(),
                };
                let done = futures_util::stream::once(async {
                    Ok::<_, std::convert::Infallible>("data: [DONE]\n\n".to_string())
                });
                let watched = events.chain(done).scan(watch, |w, c| {
                    if c.as_ref().is_ok_and(|c| c.contains("[DONE]")) {
                        w.finished = true;
                    }
                    futures_util::future::ready(Some(c))
                });
                return (
                    StatusCode::OK,
                    [("content-type", "text/event-stream")],
                    axum::body::Body::from_stream(watched),
                )
                    .into_response();
            }
            Reply::Hang(d) => {
                // Headers now (as vLLM's streaming response does), then
                // nothing until `d` has passed.
                let late = futures_util::stream::once(async move {
                    tokio::time::sleep(d).await;
                    Ok::<_, std::convert::Infallible>(String::new())
                });
                return (
                    StatusCode::OK,
                    [("content-type", "text/event-stream")],
                    axum::body::Body::from_stream(late),
                )
                    .into_response();
            }
            Reply::ToolCall(id, name, args) => {
                return write_answer(
                    proto,
                    stream,
                    include_usage,
                    Answer {
                        text: String::new(),
                        finish: "tool_calls",
                        prompt_tokens: 50,
                        completion_tokens: 10,
                        tool: Some((id, name, args)),
                        stream_usage: true,
                    },
                );
            }
            Reply::Raw(body) => {
                return (
                    StatusCode::OK,
                    [("content-type", "text/event-stream")],
                    body.to_string(),
                )
                    .into_response();
            }
        }
    }
}

fn prompt_text(req: &serde_json::Value) -> String {
    req["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}
