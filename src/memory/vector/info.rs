//! What an index was built with and how it fails: plain values with no
//! dependency on the rest of llmclis, so the crate's `Error` can hold an
//! `IndexError` without an import cycle.

use serde::{Deserialize, Serialize};

/// The payload layout this build writes. 1: no `level`/`parent` (before
/// the memory tree); an index of an older layout is rebuilt from the
/// vectors SQLite keeps, without embedding again (`Memory::relayout`).
pub const LAYOUT: u32 = 2;

fn first_layout() -> u32 {
    1
}

/// The model and dimension an index was built with, and its payload layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexInfo {
    pub model: String,
    pub dim: usize,
    #[serde(default = "first_layout")]
    pub layout: u32,
}

impl IndexInfo {
    /// `model`'s `dim`-dimensional vectors, in this build's layout.
    pub fn new(model: impl Into<String>, dim: usize) -> IndexInfo {
        IndexInfo {
            model: model.into(),
            dim,
            layout: LAYOUT,
        }
    }

    /// Built with the same model and dimension (whatever the layout).
    pub fn same_model(&self, other: &IndexInfo) -> bool {
        self.model == other.model && self.dim == other.dim
    }
}

/// How the vector index failed, as values a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Built with another embedding model or dimension.
    #[error(
        "the memory index at {at} was built with {} ({} dimensions), not {} ({} dimensions); run `llmclis memory reindex` to rebuild it from the database",
        found.model, found.dim, want.model, want.dim
    )]
    Mismatch {
        at: String,
        found: IndexInfo,
        want: IndexInfo,
    },
    /// The server refused vectors of this size.
    #[error(
        "{at} holds {expected}-dimensional vectors and was sent {got}-dimensional ones; run `llmclis memory reindex` to rebuild it with the configured model"
    )]
    Dimension {
        at: String,
        expected: usize,
        got: usize,
    },
    /// Not reachable: down, restarting, or too slow. Memories stay saved in
    /// the database and are indexed when it answers again.
    #[error(
        "{at} is not reachable ({reason}); memories stay saved in the database and are indexed when it answers again"
    )]
    Unavailable { at: String, reason: String },
    /// The API key was missing or refused.
    #[error(
        "{at} refused the API key ({reason}); set the variable named by [memory] qdrant_api_key_env"
    )]
    Unauthorized { at: String, reason: String },
    /// Rate-limited or out of resources.
    #[error("{at} is overloaded ({reason}){}", retry_after.map(|s| format!("; it asks to retry after {s} s")).unwrap_or_default())]
    Overloaded {
        at: String,
        reason: String,
        retry_after: Option<u64>,
    },
    /// Made by an older llmclis, whose points lack fields this one filters
    /// on; rebuilt from the database's vectors by the next catch-up.
    #[error(
        "the memory index at {at} was made by an older llmclis (payload layout {found}, now {LAYOUT}); the next `llmclis memory reindex` or catch-up rebuilds it"
    )]
    OldLayout { at: String, found: u32 },
    /// An interrupted `memory reindex` left it half built.
    #[error(
        "the memory index at {at} is incomplete (a rebuild was interrupted); run `llmclis memory reindex`"
    )]
    Incomplete { at: String },
    /// The collection is not there (created by the next `ensure`).
    #[error("{at}: {message}")]
    Missing { at: String, message: String },
    /// Any other refusal, in the server's words.
    #[error("{at}: {message}")]
    Server { at: String, message: String },
}

impl IndexError {
    /// The server may answer later: what was to be indexed stays in the
    /// database for the next command that reaches it.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            IndexError::Unavailable { .. } | IndexError::Overloaded { .. }
        )
    }

    /// A stable name for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            IndexError::Mismatch { .. } | IndexError::Dimension { .. } => "index_mismatch",
            IndexError::Unavailable { .. } => "index_unavailable",
            IndexError::Unauthorized { .. } => "index_unauthorized",
            IndexError::Overloaded { .. } => "index_overloaded",
            IndexError::Incomplete { .. } => "index_incomplete",
            IndexError::OldLayout { .. } => "index_old_layout",
            IndexError::Missing { .. } | IndexError::Server { .. } => "index",
        }
    }
}
