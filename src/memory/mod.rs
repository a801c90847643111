//! Hierarchical memory: raw interactions, task summaries, project summaries
//! and handoffs. SQLite holds every record (never deleted); a vector index
//! (Qdrant Edge or a Qdrant server) makes them searchable and can always be
//! rebuilt from SQLite. Summaries go through the router's summarizer role.

// The memories table is this module's own: its SQL writes are allowed
// here, in `Store::batch` transactions (clippy.toml).
#![allow(clippy::disallowed_methods)]

pub mod embed;
mod index;
mod level;
pub mod open;
pub mod rollup;
mod rows;
mod summaries;
pub mod vector;

pub use index::*;
pub use level::*;
pub use rows::*;
pub use summaries::*;

use std::fmt::Write as _;
use std::sync::Arc;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::llm::caller::Caller;
use crate::llm::{ChatRequest, Message};
use crate::registry::Mode;
use crate::role::Role;
use crate::router::{self, TaskInfo, estimate_tokens};
use crate::store::{Store, now};
use embed::Embedder;
use vector::{Filter, IndexInfo, PointMeta, VectorIndex};

pub const KINDS: [&str; 6] = [
    "raw_interaction",
    "task_summary",
    "project_summary",
    "handoff",
    "design_doc",
    "code_snippet",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryRecord {
    pub id: i64,
    pub project_id: i64,
    pub task_id: Option<i64>,
    #[serde(rename = "type")]
    pub kind: String,
    pub agent: String,
    pub text: String,
    pub tokens: u64,
    pub covers: Vec<i64>,
    pub compacted: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    #[serde(flatten)]
    pub record: MemoryRecord,
    pub score: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub project_id: Option<i64>,
    pub by_type: std::collections::BTreeMap<String, i64>,
    pub compacted: i64,
    /// Rows the store has marked as in the index (marked only after the
    /// index flushed them).
    pub indexed: i64,
    /// Rows (not compacted) the index does not have yet; the next process
    /// that opens the index adds them.
    pub unindexed: i64,
    /// Points the index itself counts; only when asked (`--verify`), since
    /// it means opening the index.
    pub index_points: Option<usize>,
    pub index: String,
    pub model: String,
    pub dim: usize,
}

/// The memory layer: an embedder and an index over the store's records.
pub struct Memory {
    pub embedder: Arc<dyn Embedder>,
    pub index: Arc<dyn VectorIndex>,
    /// Query vectors embedded ahead of need (the next tasks' context
    /// queries, by the run's indexer), each taken once.
    prefetched: std::sync::Mutex<std::collections::HashMap<String, Vec<f32>>>,
}

/// The query a task's memory context searches with.
pub fn context_query(task: &crate::store::Task) -> String {
    format!("{}\n{}", task.title, task.description)
}

impl Memory {
    pub fn new(embedder: Arc<dyn Embedder>, index: Arc<dyn VectorIndex>) -> Memory {
        Memory {
            embedder,
            index,
            prefetched: Default::default(),
        }
    }

    /// Embeds queries that will be asked soon, so asking them later costs
    /// no embedding (the orchestrator's indexer does this for the next
    /// tasks, off the steps' path).
    pub async fn prefetch(&self, texts: Vec<String>) -> Result<()> {
        let missing: Vec<String> = {
            let cache = self.prefetched.lock().expect("prefetch cache");
            texts
                .into_iter()
                .filter(|t| !cache.contains_key(t))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let vectors = self.embedder.embed(missing.clone()).await?;
        let mut cache = self.prefetched.lock().expect("prefetch cache");
        if cache.len() > 256 {
            cache.clear();
        }
        cache.extend(missing.into_iter().zip(vectors));
        Ok(())
    }

    async fn query_vector(&self, text: &str) -> Result<Vec<f32>> {
        if let Some(v) = self.prefetched.lock().expect("prefetch cache").remove(text) {
            return Ok(v);
        }
        Ok(self
            .embedder
            .embed(vec![text.to_string()])
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// Where the index is, in words.
    pub fn describe_index(&self) -> String {
        self.index.describe()
    }

    fn info(&self) -> IndexInfo {
        IndexInfo::new(self.embedder.model(), self.embedder.dim())
    }

    /// Saves a memory in SQLite and indexes it. If indexing fails the record
    /// is kept (SQLite is the authority) and the error says to reindex.
    pub async fn store_memory(
        &self,
        db: &mut Store,
        text: &str,
        project_id: i64,
        task_id: Option<i64>,
        kind: &str,
        agent: &str,
    ) -> Result<MemoryRecord> {
        self.store_with_covers(db, text, project_id, task_id, kind, agent, &[])
            .await
    }

    #[allow(clippy::too_many_arguments)] // the record's fields, as the seed names them
    async fn store_with_covers(
        &self,
        db: &mut Store,
        text: &str,
        project_id: i64,
        task_id: Option<i64>,
        kind: &str,
        agent: &str,
        covers: &[i64],
    ) -> Result<MemoryRecord> {
        // Checked before anything is embedded.
        check_new(text, kind)?;
        db.project(project_id)?;
        if let Some(t) = task_id {
            let task = db.task(t)?;
            if task.project_id != project_id {
                return Err(Error::InvalidInput(format!(
                    "task {t} is in project {}, not {project_id}",
                    task.project_id
                )));
            }
        }
        self.index.ensure(&self.info()).await?;
        // Embed before writing: a failing embedder leaves nothing behind.
        let vector = self
            .embedder
            .embed(vec![text.to_string()])
            .await?
            .pop()
            .unwrap_or_default();
        let record = insert(
            db,
            text,
            project_id,
            task_id,
            kind,
            agent,
            covers,
            Some(&vector),
        )?;
        match self.upsert(db, &record, vector).await {
            Ok(()) => {
                self.index.flush().await?;
                mark_indexed(db, &[record.id], true)?;
            }
            // The row is saved; the next command that reaches the index
            // indexes it (`is_indexed` says which happened).
            Err(Error::Index(e)) if e.is_transient() => {
                tracing::warn!(memory = record.id, error = %e, "saved, not indexed yet");
            }
            Err(e) => return Err(e),
        }
        Ok(record)
    }

    /// The `top_k` memories nearest to `text` in meaning within `scope`,
    /// best first.
    pub async fn query_memory(
        &self,
        db: &Store,
        text: &str,
        scope: &Scope,
        top_k: usize,
    ) -> Result<Vec<Hit>> {
        if let Some(k) = &scope.kind {
            check_kind(k)?;
        }
        if let Some(p) = scope.project_id {
            db.project(p)?;
        }
        self.index.ensure(&self.info()).await?;
        let v = self.query_vector(text).await?;
        let filter = Filter {
            project_id: scope.project_id,
            task_id: scope.task_id,
            kind: scope.kind.clone(),
            level: scope.level.map(|l| l.as_str().to_string()),
            skip_raw: scope.skip_raw,
        };
        let hits = self.index.search(v, filter, top_k.max(1), false).await?;
        let mut out = Vec::new();
        for (id, score) in hits {
            // SQLite decides: a stale index entry (another project's, or
            // compacted since) is never returned.
            if let Some(record) = get(db, id as i64)?
                && !record.compacted
                && scope.admits(db, &record)?
            {
                out.push(Hit { record, score });
            }
        }
        Ok(out)
    }

    /// What an agent working on a task should know, most useful first, cut
    /// to `budget` tokens: the tree (`rollup::tree_context`: the project
    /// summary, its stage's, its dependencies', its own), then the most
    /// relevant other memories.
    pub async fn context(
        &self,
        db: &Store,
        task_id: i64,
        budget: u64,
        top_k: usize,
    ) -> Result<Vec<MemoryRecord>> {
        let task = db.task(task_id)?;
        // The tree first (project, stage, dependencies, the task's own),
        // then what is nearest the task's text.
        let mut picked = rollup::tree_context(db, &task)?;
        let query = context_query(&task);
        for hit in self
            .query_memory(
                db,
                &query,
                &Scope {
                    project_id: Some(task.project_id),
                    // Raw interactions only through the memory_query tool.
                    skip_raw: true,
                    ..Default::default()
                },
                top_k + picked.len(),
            )
            .await?
        {
            if !picked.iter().any(|p| p.id == hit.record.id) {
                picked.push(hit.record);
            }
        }
        Ok(rollup::within(picked, budget))
    }
}
