//! The vector index behind memory: one trait, two backends with the same
//! behaviour. `EdgeIndex` (embedded Qdrant Edge, the default, no server) and
//! `QdrantIndex` (a Qdrant server or cluster through `qdrant-client`, over
//! gRPC). SQLite holds the records; an index can always be rebuilt from it
//! (`memory reindex`).

mod edge;
mod server;

pub use edge::EdgeIndex;
pub use server::{QdrantIndex, QdrantOptions, server_version};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::llm::BoxFuture;

/// The named vector every backend stores a memory's embedding under.
const VECTOR: &str = "text";

/// What an indexed memory carries besides its vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointMeta {
    pub project_id: i64,
    pub task_id: Option<i64>,
    #[serde(rename = "type")]
    pub kind: String,
    pub agent: String,
    /// Where it sits in the memory tree: `project`, `stage`, `task` or
    /// `raw` (`memory::level_of`).
    pub level: String,
    /// The task of the tree node above it: a raw interaction's own task, a
    /// summary's parent task; none when that node is the project.
    pub parent: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub project_id: Option<i64>,
    pub task_id: Option<i64>,
    pub kind: Option<String>,
    pub level: Option<String>,
    /// Not raw interactions.
    pub skip_raw: bool,
}

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

pub trait VectorIndex: Send + Sync {
    /// Checks the index was built with `info` (creating it when empty); a
    /// different model or dimension is an error that points to `memory reindex`.
    fn ensure(&self, info: &IndexInfo) -> BoxFuture<'_, Result<()>>;
    fn upsert(&self, points: Vec<(u64, Vec<f32>, PointMeta)>) -> BoxFuture<'_, Result<()>>;
    /// Top `limit` ids by cosine similarity, best first; `exact` skips the ANN index.
    fn search(
        &self,
        vector: Vec<f32>,
        filter: Filter,
        limit: usize,
        exact: bool,
    ) -> BoxFuture<'_, Result<Vec<(u64, f32)>>>;
    fn delete(&self, ids: Vec<u64>) -> BoxFuture<'_, Result<()>>;
    fn count(&self, filter: Filter) -> BoxFuture<'_, Result<usize>>;
    /// Drops everything (for `memory reindex`).
    fn reset(&self, info: &IndexInfo) -> BoxFuture<'_, Result<()>>;
    /// Builds the ANN index and merges segments; a no-op for a server.
    fn optimize(&self) -> BoxFuture<'_, Result<()>>;
    /// Makes what was upserted and deleted so far durable, so a process
    /// killed after this loses none of it. A server's writes already are
    /// (they wait for the write-ahead log).
    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    /// Marks a rebuild (`reset`, then upserts) complete. Until then the
    /// index refuses to be used, so an interrupted reindex is never taken
    /// for a whole one.
    fn finish(&self, _info: &IndexInfo) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn describe(&self) -> String;
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

/// Qdrant's (and Edge's) "Vector dimension error: expected dim: 384, got 8"
/// (lib/segment/src/common/operation_error.rs).
pub(super) fn dimension_error(message: &str) -> Option<(usize, usize)> {
    let rest = message.split("expected dim: ").nth(1)?;
    let (expected, rest) = rest.split_once(", got ")?;
    let got: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((expected.trim().parse().ok()?, got.parse().ok()?))
}

fn mismatch(found: &IndexInfo, want: &IndexInfo, at: &str) -> crate::Error {
    IndexError::Mismatch {
        at: at.to_string(),
        found: found.clone(),
        want: want.clone(),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qdrant_s_dimension_message_gives_both_sizes() {
        assert_eq!(
            dimension_error("Wrong input: Vector dimension error: expected dim: 384, got 8"),
            Some((384, 8))
        );
        assert_eq!(dimension_error("Wrong input: bad filter"), None);
    }
}
