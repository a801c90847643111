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
    routes: Mutex<Vec<(Route, VecDeque<Reply>)>>,
    hits: AtomicUsize,
    last_auth: Mutex<Option<String>>,
    requests: Mutex<Vec<serde_json::Value>>,
    /// Requests served at once; the rest wait (a server's batch size).
    slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Time per request, like a model reading the prompt.
    latency: Duration,
    /// And per completion token, like a model generating.
    per_token: Duration,
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
            routes: Mutex::new(
                routes
                    .into_iter()
                    .map(|r| {
                        let q = r.replies.clone().into();
                        (r, q)
                    })
                    .collect(),
            ),
            slots: slots.map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
            latency,
            ..Default::default()
        });
        Self::serve(inner).await
    }

    async fn serve(inner: Arc<Inner>) -> FakeLlm {
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .route("/v1/embeddings", post(embeddings))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
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

    pub fn last_auth(&self) -> Option<String> {
        self.inner.last_auth.lock().unwrap().clone()
    }
}

async fn models() -> impl IntoResponse {
    axum::Json(
        serde_json::json!({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}),
    )
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

async fn chat(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    inner.hits.fetch_add(1, Ordering::SeqCst);
    *inner.last_auth.lock().unwrap() = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let stream = req["stream"].as_bool().unwrap_or(false);
    inner.requests.lock().unwrap().push(req.clone());
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
            Reply::Ok(text) if stream => {
                let mut body = String::new();
                for word in text.split_inclusive(' ') {
                    body.push_str(&format!(
                        "data: {}\n\n",
                        serde_json::json!({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": null}]})
                    ));
                }
                body.push_str(&format!(
                    "data: {}\n\ndata: [DONE]\n\n",
                    serde_json::json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                ));
                return ([("content-type", "text/event-stream")], body).into_response();
            }
            Reply::Text(_, _) | Reply::Cut(_, _) => {
                let (text, tokens, finish) = match reply {
                    Reply::Text(t, n) => (t, n, "stop"),
                    Reply::Cut(t, n) => (t, n, "length"),
                    _ => unreachable!(),
                };
                return axum::Json(serde_json::json!({
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                    "usage": {"prompt_tokens": 50, "completion_tokens": tokens, "total_tokens": 50 + tokens}
                }))
                .into_response();
            }
            Reply::Ok(text) => {
                return axum::Json(serde_json::json!({
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
                }))
                .into_response();
            }
            Reply::Status(code, body, extra) => {
                let mut resp =
                    (StatusCode::from_u16(code).unwrap(), body.to_string()).into_response();
                for (k, v) in extra {
                    resp.headers_mut().insert(k, v.parse().unwrap());
                }
                return resp;
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
