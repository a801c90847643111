//! A scripted Qdrant gRPC endpoint for faults: each method answers with a
//! message or with the status the real server sends (codes from Qdrant's
//! `impl From<StorageError> for Status`, lib/storage/src/content_manager/
//! conversions.rs, messages from its error types). gRPC over h2c, framed by
//! hand: a 5-byte prefix, the message, `grpc-status` in trailers; a status
//! alone is a trailers-only answer, as tonic sends it. The real server runs
//! the conformance suite; this is only for what it cannot be made to do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use http_body_util::{BodyExt, StreamBody};
use prost::Message;

#[derive(Clone, Debug)]
pub enum Reply {
    /// A message, encoded.
    Ok(Vec<u8>),
    /// A status: code, message, and metadata (`retry-after`).
    Status(tonic::Code, String, Vec<(&'static str, String)>),
    /// Accepts the call and never answers.
    Hang,
}

impl Reply {
    pub fn ok(m: impl Message) -> Reply {
        Reply::Ok(m.encode_to_vec())
    }
    pub fn status(code: tonic::Code, message: &str) -> Reply {
        Reply::Status(code, message.to_string(), vec![])
    }
}

#[derive(Default)]
pub struct Script {
    /// Per method path (`/qdrant.Collections/Get`): answers in turn, the
    /// last one repeated.
    pub replies: HashMap<String, Vec<Reply>>,
    /// Every call: path, the `api-key` header, the request message's bytes.
    pub calls: Vec<(String, Option<String>, Vec<u8>)>,
}

#[derive(Clone)]
pub struct FakeQdrant {
    pub url: String,
    pub script: Arc<Mutex<Script>>,
}

impl FakeQdrant {
    pub async fn start(replies: &[(&str, Vec<Reply>)]) -> FakeQdrant {
        let script = Arc::new(Mutex::new(Script {
            replies: replies
                .iter()
                .map(|(p, r)| (format!("/qdrant.{p}"), r.clone()))
                .collect(),
            calls: vec![],
        }));
        let app = Router::new().fallback(answer).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeQdrant { url, script }
    }

    /// The request messages sent to `method` (`Collections/Create`).
    pub fn sent<M: Message + Default>(&self, method: &str) -> Vec<M> {
        let path = format!("/qdrant.{method}");
        self.script
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|(p, _, _)| *p == path)
            .map(|(_, _, b)| M::decode(b.get(5..).unwrap_or_default()).unwrap())
            .collect()
    }

    pub fn keys(&self) -> Vec<Option<String>> {
        let s = self.script.lock().unwrap();
        s.calls.iter().map(|(_, k, _)| k.clone()).collect()
    }
}

async fn answer(State(script): State<Arc<Mutex<Script>>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let key = req
        .headers()
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let reply = {
        let mut s = script.lock().unwrap();
        s.calls.push((path.clone(), key, body));
        match s.replies.get_mut(&path) {
            Some(list) if list.len() > 1 => Some(list.remove(0)),
            Some(list) => list.first().cloned(),
            None => None,
        }
    };
    let reply = reply.unwrap_or_else(|| {
        Reply::status(tonic::Code::Unimplemented, &format!("no script for {path}"))
    });
    let grpc = |b: Body| {
        let mut r = Response::new(b);
        *r.status_mut() = StatusCode::OK;
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        r
    };
    match reply {
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Reply::Status(code, message, meta) => {
            let mut r = grpc(Body::empty());
            let h = r.headers_mut();
            h.insert("grpc-status", HeaderValue::from(code as i32));
            h.insert("grpc-message", HeaderValue::from_str(&message).unwrap());
            for (k, v) in meta {
                h.insert(k, HeaderValue::from_str(&v).unwrap());
            }
            r
        }
        Reply::Ok(bytes) => {
            let mut framed = vec![0u8];
            framed.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            framed.extend_from_slice(&bytes);
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let frames = futures_util::stream::iter([
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(framed))),
                Ok(http_body::Frame::trailers(trailers)),
            ]);
            grpc(Body::new(StreamBody::new(frames)))
        }
    }
}
