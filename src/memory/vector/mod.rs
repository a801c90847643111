//! The vector index behind memory: one trait, two backends with the same
//! behaviour. `EdgeIndex` (embedded Qdrant Edge, the default, no server) and
//! `QdrantIndex` (a Qdrant server or cluster through `qdrant-client`, over
//! gRPC). SQLite holds the records; an index can always be rebuilt from it
//! (`memory reindex`).

mod edge;
pub mod info;
mod server;

pub use edge::EdgeIndex;
pub use info::{IndexError, IndexInfo, LAYOUT};
pub use server::{QdrantIndex, QdrantOptions, server_version};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::net::BoxFuture;

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
