//! The knowledge manager as an MCP server, so other agents (Claude Code,
//! Codex, Cursor) take work from the same queue: over stdio (`llmclis mcp`)
//! and over Streamable HTTP (`llmclis serve`, at `/mcp`).
//!
//! Each tool is an application-layer call (`tools.rs`); its JSON result is
//! the same as `llmclis --json` prints for that command. The memory layer
//! stays open between calls: only the first memory call loads the
//! embedding model and opens the index. The list is kept to one line per
//! tool, so it costs an agent little of its context window.

pub mod tools;

use std::sync::{Arc, Mutex, MutexGuard};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};

use crate::app::Agent;
use crate::app::Context;
use crate::app::handles::Store;
use crate::app::memory::Kept;
use crate::error::{Error, Result};

/// What a tool call runs with: the settings, the memory kept open, and the
/// runtime to wait on it from the blocking thread a call runs on.
pub struct Session {
    pub ctx: Context,
    memory: Arc<Kept>,
    db: Arc<Mutex<Option<Store>>>,
    rt: tokio::runtime::Handle,
}

/// The server's connection, held for one call.
pub struct Db<'a>(MutexGuard<'a, Option<Store>>);

impl std::ops::Deref for Db<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.0.as_ref().expect("opened before the guard is made")
    }
}

impl std::ops::DerefMut for Db<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        self.0.as_mut().expect("opened before the guard is made")
    }
}

impl Session {
    /// The server's one connection, opened on first use and kept: calls
    /// take turns on it (SQLite writes take turns anyway).
    fn store(&self) -> Result<Db<'_>> {
        // A call that panicked left the connection as SQLite left it:
        // every write is a transaction, so it is usable.
        let mut slot = self.db.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(self.ctx.store()?);
        }
        Ok(Db(slot))
    }
}

/// The MCP server: one per connection; the memory layer is shared.
#[derive(Clone)]
pub struct Server {
    ctx: Context,
    memory: Arc<Kept>,
    db: Arc<Mutex<Option<Store>>>,
    tools: Arc<Vec<tools::Tool>>,
}

impl Server {
    pub fn new(ctx: Context, memory: Arc<Kept>) -> Server {
        Server {
            ctx,
            memory,
            db: Arc::new(Mutex::new(None)),
            tools: Arc::new(tools::all()),
        }
    }

    /// The tools as MCP lists them.
    pub fn listed(&self) -> Vec<Tool> {
        self.tools
            .iter()
            .map(|t| Tool::new(t.name, t.description, (t.schema)()))
            .collect()
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("llmclis", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "llmclis's task queue: take work with task_next (it claims the task with a lease), report with task_note and task_status (done, or blocked with the reason). Results are JSON, as `llmclis --json` prints them.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.listed()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        let args = serde_json::Value::Object(request.arguments.unwrap_or_default());
        let mut ctx = self.ctx.clone();
        if let Some(Agent(agent)) = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Agent>())
        {
            ctx.agent = agent.clone();
        }
        let session = Session {
            ctx,
            memory: self.memory.clone(),
            db: self.db.clone(),
            rt: tokio::runtime::Handle::current(),
        };
        let tools = self.tools.clone();
        // The store and the files are synchronous (and the store is not
        // Sync): off the protocol's thread, memory calls included.
        let result =
            tokio::task::spawn_blocking(move || match tools.iter().find(|t| t.name == name) {
                Some(t) => (t.call)(&session, args),
                None => {
                    let names: Vec<&str> = tools.iter().map(|t| t.name).collect();
                    Err(Error::InvalidInput(format!(
                        "unknown tool {name:?}; the tools are {}",
                        names.join(", ")
                    )))
                }
            })
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(match result {
            // Compact: every byte is context an agent pays for.
            Ok(value) => CallToolResult::success(vec![ContentBlock::text(value.to_string())]),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        }
        .into())
    }
}

/// Serves over stdio until the client closes stdin. Logs go to the log
/// file: stdout belongs to the protocol.
pub fn serve_stdio(ctx: &Context) -> Result<()> {
    crate::logging::init(&ctx.paths);
    // The database must open before the client is told the server is up.
    ctx.store()?;
    let rt = crate::app::runtime()?;
    rt.block_on(async {
        let memory = Arc::new(Kept::new(ctx.clone()));
        let service = Server::new(ctx.clone(), memory)
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| Error::InvalidInput(format!("MCP handshake failed: {e}")))?;
        service
            .waiting()
            .await
            .map_err(|e| Error::Internal(format!("MCP server stopped: {e}")))?;
        Ok(())
    })
}

/// MCP over Streamable HTTP, for `llmclis serve` to host at `/mcp`: the
/// same tools as stdio, one memory layer for every session. `public` is an
/// address other than loopback, where keys guard the server and the Host
/// check (against DNS rebinding of loopback servers) is moot.
pub fn http(
    ctx: Context,
    shutdown: tokio_util::sync::CancellationToken,
    max_body: usize,
    public: bool,
) -> axum::Router {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let memory = Arc::new(Kept::new(ctx.clone()));
    let mut config = StreamableHttpServerConfig::default();
    config.cancellation_token = shutdown;
    config.max_request_body_bytes = max_body;
    if public {
        config = config.disable_allowed_hosts();
    }
    let service = StreamableHttpService::new(
        move || Ok(Server::new(ctx.clone(), memory.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new().fallback_service(service)
}
