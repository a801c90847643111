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
}

#[derive(Default)]
struct Inner {
    script: Mutex<VecDeque<Reply>>,
    hits: AtomicUsize,
    last_auth: Mutex<Option<String>>,
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
    let mut reply = inner
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Ok("fine"));
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
