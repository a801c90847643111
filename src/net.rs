//! What everything that talks HTTP shares: the process's client (rustls,
//! llmclis's user agent), the boxed future trait objects return, and the
//! `Retry-After` a server sends. A leaf: the model clients, the memory
//! index, resource probing and server discovery all use it, and it uses
//! none of them.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One HTTP client for the process: rustls with the ring provider and the
/// platform's roots; timeouts are set per request.
pub fn http_client() -> reqwest::Client {
    http_builder()
        // Connecting is quick on any network worth using; a server that
        // does not accept within this is treated as down.
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .expect("the HTTP client builds")
}

/// A client builder with TLS set up (ring) and llmclis's user agent.
pub fn http_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().user_agent(concat!("llmclis/", env!("CARGO_PKG_VERSION")))
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
