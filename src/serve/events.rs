//! The streamed answer every chat API sends, whatever its framing: the
//! opening events, one event per token as the call produces them, then the
//! closing events (or an in-band error after the 200, as the real APIs
//! do). The call is cancelled when the client goes away: the guard goes
//! with the response.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::ApiError;
use super::chat::{CancelOnDrop, Piece};
use crate::app::types::CallOutcome;

/// How one API frames a stream: each token, and the end.
pub(crate) struct Framing<T, D> {
    pub token: T,
    pub done: D,
}

/// A `text/event-stream` response: `opening`, then each token framed, then
/// the end framed.
pub(crate) fn stream_response<T, D>(
    headers: HeaderMap,
    opening: String,
    rx: mpsc::UnboundedReceiver<Piece>,
    guard: CancelOnDrop,
    framing: Framing<T, D>,
) -> Response
where
    T: Fn(String) -> String + Send + 'static,
    D: FnOnce(Result<CallOutcome, ApiError>) -> String + Send + 'static,
{
    struct State<T, D> {
        rx: mpsc::UnboundedReceiver<Piece>,
        // Dropped with the stream, after its last event.
        _guard: CancelOnDrop,
        token: T,
        done: Option<D>,
    }
    let state = State {
        rx,
        _guard: guard,
        token: framing.token,
        done: Some(framing.done),
    };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        let done = st.done.take()?;
        let out = match st.rx.recv().await {
            Some(Piece::Token(t)) => {
                st.done = Some(done);
                (st.token)(t)
            }
            Some(Piece::Done(r)) => done(*r),
            None => return None,
        };
        Some((Ok::<_, Infallible>(Bytes::from(out)), st))
    });
    let body = Body::from_stream(futures_util::stream::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, Infallible>(Bytes::from(opening)) }),
        events,
    ));
    let mut r = (StatusCode::OK, headers, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
