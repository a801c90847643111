//! `llmclis serve`: one more front end over the application layer. Other
//! agents on the machine or the network reach the same router, fallback
//! chains, budgets and call records as the orchestrator through an
//! OpenAI-compatible API (`openai.rs`, and the Responses API in
//! `responses.rs`), an Anthropic-compatible `/v1/messages` with token
//! counting (`anthropic.rs`), and the task queue over MCP on
//! Streamable HTTP (`/mcp`). Clients present keys made with `llmclis keys`
//! (`auth.rs`); `/metrics` (`metrics.rs`), `/health` and OTLP traces
//! (`trace.rs`) are for operators.

mod anthropic;
mod auth;
mod chat;
mod events;
mod metrics;
mod openai;
mod records;
mod responses;
mod trace;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::app::Context;
use crate::app::handles::{Caller, Embedder, Store};
use crate::app::types::Registry;
use crate::error::{Error, Result};

/// What `llmclis serve` is asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// Serve without keys; refused on an address other than loopback.
    pub no_auth: bool,
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
}

/// The MCP endpoint serve hosts at `/mcp`, made by the MCP front end (the
/// command line hands it over, so serve and MCP never import each other):
/// given the shutdown switch, the body limit, and whether the address is
/// public, the service to nest.
pub type McpMount = Box<dyn FnOnce(CancellationToken, usize, bool) -> Router + Send>;

/// Everything a request handler needs, shared by all of them.
pub(crate) struct Gateway {
    pub ctx: Context,
    pub registry: Arc<Registry>,
    pub caller: Caller,
    /// One connection for key checks; each use is short.
    db: Mutex<Store>,
    /// Call records go to a writer thread that commits them in batches:
    /// off the request's path, one transaction for many calls.
    records: Arc<records::Records>,
    pub auth: auth::Auth,
    pub metrics: metrics::Metrics,
    /// OTLP export of requests and model attempts, when asked for.
    pub trace: trace::Tracing,
    embedder: tokio::sync::OnceCell<Arc<dyn Embedder>>,
}

impl Gateway {
    /// The gateway's connection, for one short use.
    pub fn db(&self) -> std::sync::MutexGuard<'_, Store> {
        // A handler that panicked mid-use left no transaction open (every
        // write is one), so the connection is still good.
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a call record for the writer.
    pub fn record(&self, call: crate::app::types::ModelCall) {
        if !self.records.push(call) {
            tracing::error!("the call-record writer stopped; a gateway call was not recorded");
        }
    }

    /// Stops taking records; the writer commits what it has and ends.
    fn close_records(&self) {
        self.records.close();
    }

    /// The local embedder, built on first use (its model loads on the first
    /// embedding).
    pub async fn embedder(&self) -> Result<Arc<dyn Embedder>> {
        self.embedder
            .get_or_try_init(|| async { crate::app::memory::embedder(&self.ctx) })
            .await
            .cloned()
    }
}

/// An error as an API client expects it: a status and a body in the shape
/// of the API it called (OpenAI's or Anthropic's).
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    /// OpenAI's `type`: invalid_request_error, authentication_error, …
    pub kind: &'static str,
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    pub retry_after: Option<u64>,
    /// More headers for the answer (a rate limit's `x-ratelimit-*`).
    pub headers: Vec<(&'static str, String)>,
    pub anthropic: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            param: None,
            retry_after: None,
            headers: Vec::new(),
            anthropic: false,
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn with_param(mut self, param: impl Into<String>) -> ApiError {
        self.param = Some(param.into());
        self
    }

    pub fn anthropic(mut self) -> ApiError {
        self.anthropic = true;
        self
    }

    /// The error body alone, for an in-band SSE error event.
    pub fn body(&self) -> serde_json::Value {
        if self.anthropic {
            // Anthropic's names where OpenAI's differ.
            let kind = match self.kind {
                "insufficient_quota" => "rate_limit_error",
                "server_error" => "api_error",
                "not_found_error"
                | "permission_error"
                | "authentication_error"
                | "rate_limit_error"
                | "overloaded_error"
                | "api_error"
                | "invalid_request_error" => self.kind,
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": self.message}})
        } else {
            json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status.as_u16()}})
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = if e.exit_code() == crate::error::EXIT_USAGE {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        let kind = if status == StatusCode::BAD_REQUEST {
            "invalid_request_error"
        } else {
            "server_error"
        };
        ApiError::new(status, kind, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        for (k, v) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(v) {
                r.headers_mut().insert(*k, v);
            }
        }
        r
    }
}

/// The routes, on the gateway's state.
pub(crate) fn router(
    gw: Arc<Gateway>,
    mcp: Option<Router<Arc<Gateway>>>,
    opts: &Options,
) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::models))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses::get).delete(responses::delete),
        )
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            auth::require_key,
        ));
    let mut app = Router::new()
        .merge(api)
        .route("/health", get(health))
        .route("/metrics", get(metrics::render));
    if let Some(mcp) = mcp {
        app = app.merge(mcp);
    }
    let limit = opts.max_body;
    // The 413 shaping wraps the limit: a body known to be too big by its
    // Content-Length is refused before any handler runs.
    app.fallback(not_found)
        .layer(DefaultBodyLimit::max(opts.max_body))
        .layer(axum::middleware::from_fn(move |req, next| {
            too_large(req, next, limit)
        }))
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            metrics::access_log,
        ))
        .with_state(gw)
}

/// A body over the limit, answered in the API's error shape (axum's own
/// 413 is plain text).
async fn too_large(
    req: axum::extract::Request,
    next: axum::middleware::Next,
    limit: usize,
) -> Response {
    let anthropic = req.uri().path().starts_with("/v1/messages");
    let r = next.run(req).await;
    let json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if r.status() != StatusCode::PAYLOAD_TOO_LARGE || json {
        return r;
    }
    let e = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        format!(
            "the request body is over the gateway's limit of {} MiB; send less, or start `llmclis serve` with a larger --max-body-mib",
            limit / (1024 * 1024)
        ),
    );
    if anthropic { e.anthropic() } else { e }.into_response()
}

async fn health(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let db_ok = gw.db().schema_version().is_ok();
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({
            "ok": db_ok,
            "version": env!("CARGO_PKG_VERSION"),
            "models": gw.registry.models.len(),
            "auth": gw.auth.required(),
        })),
    )
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found_error",
        format!(
            "no route {}; the API is /v1/chat/completions, /v1/responses, /v1/models, /v1/embeddings, /v1/messages, /v1/messages/count_tokens, /mcp, /health, /metrics",
            uri.path()
        ),
    )
}

/// Serves until SIGTERM or Ctrl-C, then lets requests in flight (streams
/// included) finish.
pub fn serve(ctx: &Context, opts: Options, mcp: Option<McpMount>) -> Result<()> {
    if opts.no_auth && !opts.listen.ip().is_loopback() {
        return Err(Error::InvalidInput(format!(
            "--no-auth is allowed only on a loopback address, not {}; make keys with `llmclis keys add NAME`",
            opts.listen
        )));
    }
    crate::logging::init(&ctx.paths);
    let db = ctx.store()?;
    let live_keys = db.keys()?.iter().filter(|k| k.revoked_at.is_none()).count();
    if !opts.no_auth && live_keys == 0 {
        return Err(Error::InvalidInput(
            "no client keys yet: make one with `llmclis keys add NAME` (or pass --no-auth on a loopback address)".into(),
        ));
    }
    let registry = Arc::new(ctx.registry()?);
    // Before the runtime: the exporter's HTTP client blocks (on its own
    // thread), which tokio forbids inside it.
    let trace = trace::Tracing::start(&ctx.config.serve)?;
    let caller = ctx.caller(registry.clone(), Duration::from_secs(30));
    // The router reads what is loaded where from the background watch; its
    // first look happens a moment after start, never on a request's path.
    caller.watch_resources(crate::app::models::watch(registry.clone()));
    let (records, writer) = records::Records::start(ctx.store()?);
    let gw = Arc::new(Gateway {
        ctx: ctx.clone(),
        registry,
        caller,
        db: Mutex::new(db),
        records,
        auth: auth::Auth::new(!opts.no_auth),
        metrics: metrics::Metrics::default(),
        trace,
        embedder: tokio::sync::OnceCell::new(),
    });
    // One thread serves every request: a request's server and upstream
    // connections then wake the same thread, not each other across two
    // (figures in research.md, "The Gateway"). What blocks for
    // long (embeddings, MCP tools) runs on tokio's blocking threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("<tokio runtime>", e))?;
    let stopped = gw.clone();
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|e| {
                Error::InvalidInput(format!(
                    "cannot listen on {}: {e}; pick another address with --listen",
                    opts.listen
                ))
            })?;
        let shutdown = CancellationToken::new();
        let mcp = mcp.map(|m| {
            let public = !opts.listen.ip().is_loopback();
            mcp_behind_keys(&gw, m(shutdown.clone(), opts.max_body, public))
        });
        let app = router(gw.clone(), mcp, &opts);
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("<listener>", e))?;
        // The one line a script waits for, with the address really bound
        // (port 0 picks a free one).
        eprintln!(
            "llmclis serve: listening on http://{addr} (OpenAI API at /v1, MCP at /mcp{})",
            if gw.auth.required() {
                ""
            } else {
                "; no keys asked"
            }
        );
        tracing::info!(%addr, auth = gw.auth.required(), "gateway listening");
        // No Nagle: an answer's headers and body, and each stream chunk,
        // leave at once.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                stop_signal().await;
                tracing::info!("gateway stopping: finishing requests in flight");
                shutdown.cancel();
            })
            .await
            .map_err(|e| Error::Internal(format!("the gateway stopped: {e}")))?;
        Ok(())
    });
    // Every call answered is on record before the process ends.
    drop(rt);
    stopped.close_records();
    stopped.trace.shutdown();
    drop(stopped);
    let _ = writer.join();
    served
}

/// The MCP endpoint at `/mcp`, behind the same keys as the API.
fn mcp_behind_keys(gw: &Arc<Gateway>, service: Router) -> Router<Arc<Gateway>> {
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            auth::require_key,
        ))
}

/// SIGTERM or Ctrl-C.
async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
