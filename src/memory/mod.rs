//! Hierarchical memory: raw interactions, task summaries, project summaries
//! and handoffs. SQLite holds every record (never deleted); a vector index
//! (Qdrant Edge or a Qdrant server) makes them searchable and can always be
//! rebuilt from SQLite. Summaries go through the router's summarizer role.

// The memories table is this module's own: its SQL writes are allowed
// here, in `Store::batch` transactions (clippy.toml).
#![allow(clippy::disallowed_methods)]

pub mod embed;
pub mod open;
pub mod rollup;
pub mod vector;

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

/// Counts from SQLite alone: by type, compacted, indexed and not. Opens
/// neither the index nor the model.
pub fn stats(
    db: &Store,
    project_id: Option<i64>,
    index: String,
    model: String,
    dim: usize,
) -> Result<Stats> {
    if let Some(p) = project_id {
        db.project(p)?;
    }
    let mut by_type = std::collections::BTreeMap::new();
    let mut stmt = db.conn().prepare(
        "SELECT type, count(*) FROM memories WHERE (?1 IS NULL OR project_id = ?1) GROUP BY type ORDER BY type",
    )?;
    for row in stmt.query_map([project_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })? {
        let (k, n) = row?;
        by_type.insert(k, n);
    }
    let (compacted, indexed, unindexed): (i64, i64, i64) = db.conn().query_row(
        "SELECT coalesce(sum(compacted = 1), 0), coalesce(sum(indexed = 1), 0),
                coalesce(sum(indexed = 0 AND compacted = 0), 0)
           FROM memories WHERE (?1 IS NULL OR project_id = ?1)",
        [project_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(Stats {
        project_id,
        by_type,
        compacted,
        indexed,
        unindexed,
        index_points: None,
        index,
        model,
        dim,
    })
}

/// When a task's raw interactions are rolled into a summary.
#[derive(Debug, Clone, Copy)]
pub struct CompactPolicy {
    pub max_raw: usize,
    pub max_tokens: u64,
}

impl Default for CompactPolicy {
    fn default() -> Self {
        CompactPolicy {
            max_raw: 20,
            max_tokens: 4_000,
        }
    }
}

const COLUMNS: &str =
    "id, project_id, task_id, type, agent, text, tokens, covers, compacted, created_at";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemoryRecord> {
    let covers: String = r.get(7)?;
    Ok(MemoryRecord {
        id: r.get(0)?,
        project_id: r.get(1)?,
        task_id: r.get(2)?,
        kind: r.get(3)?,
        agent: r.get(4)?,
        text: r.get(5)?,
        tokens: r.get::<_, i64>(6)? as u64,
        covers: serde_json::from_str(&covers).unwrap_or_default(),
        compacted: r.get::<_, i64>(8)? != 0,
        created_at: r.get(9)?,
    })
}

pub fn check_kind(kind: &str) -> Result<()> {
    if KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "unknown memory type {kind:?}: expected one of {}",
            KINDS.join(", ")
        )))
    }
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

    /// The index is there and of this model; one an older llmclis made
    /// is rebuilt first from the vectors the database keeps (`relayout`).
    async fn ready(&self, db: &mut Store) -> Result<()> {
        match self.index.ensure(&self.info()).await {
            Err(Error::Index(vector::IndexError::OldLayout { .. })) => self.relayout(db).await,
            r => r,
        }
    }

    /// Rebuilds the index in this build's payload layout: every indexed
    /// row again, with the vector SQLite keeps (embedded only where there
    /// is none). A kill part way leaves an index `ensure` refuses as
    /// incomplete, for `memory reindex`.
    async fn relayout(&self, db: &mut Store) -> Result<()> {
        self.index.reset(&self.info()).await?;
        db.batch(|s| {
            s.conn()
                .execute("UPDATE memories SET indexed = 0 WHERE indexed = 1", [])?;
            Ok(())
        })?;
        self.index_missing(db, usize::MAX, None).await?;
        self.index.optimize().await?;
        self.index.finish(&self.info()).await
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
        check_kind(kind)?;
        if text.trim().is_empty() {
            return Err(Error::InvalidInput("a memory needs some text".into()));
        }
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

    /// Brings the index up to the database: indexes every row it lacks
    /// (rows a killed process, or one without the index lock, left behind),
    /// re-embedding only rows saved without their vector, and drops rows
    /// compacted since. Flushes before marking, so a row marked indexed is
    /// in the index whatever happens next. `progress(done, total)` is
    /// called after each batch.
    pub async fn catch_up(
        &self,
        db: &mut Store,
        progress: Option<&(dyn Fn(usize, usize) + Send + Sync)>,
    ) -> Result<CaughtUp> {
        self.catch_up_at_most(db, usize::MAX, progress).await
    }

    /// `catch_up`, stopping after about `limit` rows (a batch is never
    /// split): a background indexer does a little at a time, so what waits
    /// for it (a query to embed) never waits long.
    pub async fn catch_up_at_most(
        &self,
        db: &mut Store,
        limit: usize,
        progress: Option<&(dyn Fn(usize, usize) + Send + Sync)>,
    ) -> Result<CaughtUp> {
        self.ready(db).await?;
        // Rows marked indexed in an index that has nothing (its directory
        // was deleted, another backend): all of them again.
        let marked: i64 =
            db.conn()
                .query_row("SELECT count(*) FROM memories WHERE indexed = 1", [], |r| {
                    r.get(0)
                })?;
        if marked > 0 && self.index.count(Filter::default()).await? == 0 {
            db.batch(|s| {
                s.conn()
                    .execute("UPDATE memories SET indexed = 0 WHERE indexed = 1", [])?;
                Ok(())
            })?;
        }
        self.index_missing(db, limit, progress).await
    }

    async fn index_missing(
        &self,
        db: &mut Store,
        limit: usize,
        progress: Option<&(dyn Fn(usize, usize) + Send + Sync)>,
    ) -> Result<CaughtUp> {
        let mut out = CaughtUp::default();
        let total: i64 = db.conn().query_row(
            "SELECT count(*) FROM memories WHERE indexed = 0 AND compacted = 0",
            [],
            |r| r.get(0),
        )?;
        let dim = self.embedder.dim();
        while out.indexed < limit {
            let batch: Vec<(MemoryRecord, Option<Vec<f32>>)> = {
                let mut stmt = db.conn().prepare_cached(&format!(
                    "SELECT {COLUMNS}, vector FROM memories WHERE indexed = 0 AND compacted = 0
                      ORDER BY id LIMIT ?1"
                ))?;
                stmt.query_map([limit.min(CATCH_UP_BATCH) as i64], |r| {
                    let blob: Option<Vec<u8>> = r.get(10)?;
                    Ok((from_row(r)?, blob.map(|b| decode_vector(&b))))
                })?
                .collect::<rusqlite::Result<_>>()?
            };
            if batch.is_empty() {
                break;
            }
            // Only rows saved without a vector (or with one of another
            // size, from another model) are embedded again.
            let need: Vec<usize> = (0..batch.len())
                .filter(|i| batch[*i].1.as_ref().is_none_or(|v| v.len() != dim))
                .collect();
            let mut vectors: Vec<Option<Vec<f32>>> = batch.iter().map(|(_, v)| v.clone()).collect();
            if !need.is_empty() {
                let made = self
                    .embedder
                    .embed(need.iter().map(|i| batch[*i].0.text.clone()).collect())
                    .await?;
                db.batch(|s| {
                    let mut stmt = s
                        .conn()
                        .prepare_cached("UPDATE memories SET vector = ?2 WHERE id = ?1")?;
                    for (i, v) in need.iter().zip(&made) {
                        stmt.execute(params![batch[*i].0.id, encode_vector(v)])?;
                    }
                    Ok(())
                })?;
                for (i, v) in need.iter().zip(made) {
                    vectors[*i] = Some(v);
                }
                out.embedded += need.len();
            }
            let ids: Vec<i64> = batch.iter().map(|(r, _)| r.id).collect();
            let points = batch
                .iter()
                .zip(vectors)
                .map(|((r, _), v)| Ok((r.id as u64, v.unwrap_or_default(), meta_of(db, r)?)))
                .collect::<Result<_>>()?;
            self.index.upsert(points).await?;
            self.index.flush().await?;
            mark_indexed(db, &ids, true)?;
            out.indexed += ids.len();
            if let Some(p) = progress {
                p(out.indexed, total.max(out.indexed as i64) as usize);
            }
        }
        // Compacted since they were indexed (a compaction whose index
        // update was cut short).
        let gone: Vec<i64> = {
            let mut stmt = db
                .conn()
                .prepare_cached("SELECT id FROM memories WHERE indexed = 1 AND compacted = 1")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        if !gone.is_empty() {
            self.index
                .delete(gone.iter().map(|i| *i as u64).collect())
                .await?;
            self.index.flush().await?;
            mark_indexed(db, &gone, false)?;
            out.dropped = gone.len();
        }
        Ok(out)
    }

    /// Indexes one saved record; a failure says the record is safe and
    /// that the next open indexes it.
    async fn upsert(&self, db: &Store, record: &MemoryRecord, vector: Vec<f32>) -> Result<()> {
        let meta = meta_of(db, record)?;
        self.index
            .upsert(vec![(record.id as u64, vector, meta)])
            .await
            .map_err(|e| match e {
                Error::Index(ie) if ie.is_transient() => Error::Index(ie),
                e => {
                Error::Memory(format!(
                    "memory {} is saved but not indexed yet ({e}); the next command that opens the index indexes it",
                    record.id
                ))
                }
            })
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

    /// Rebuilds the index from SQLite: every record that is not compacted,
    /// embedded again with the configured model (the kept vectors may be
    /// another model's).
    pub async fn reindex(
        &self,
        db: &mut Store,
        progress: Option<&(dyn Fn(usize, usize) + Send + Sync)>,
    ) -> Result<usize> {
        self.index.reset(&self.info()).await?;
        db.batch(|s| {
            s.conn().execute(
                "UPDATE memories SET indexed = 0, vector = NULL WHERE indexed = 1 OR vector IS NOT NULL",
                [],
            )?;
            Ok(())
        })?;
        let done = self.index_missing(db, usize::MAX, progress).await?;
        self.index.optimize().await?;
        self.index.finish(&self.info()).await?;
        Ok(done.indexed)
    }

    /// `stats` with the index's own count beside the store's: what
    /// `memory stats --verify` reports.
    pub async fn stats(&self, db: &Store, project_id: Option<i64>) -> Result<Stats> {
        let mut st = stats(
            db,
            project_id,
            self.index.describe(),
            self.embedder.model(),
            self.embedder.dim(),
        )?;
        st.index_points = Some(
            self.index
                .count(Filter {
                    project_id,
                    ..Default::default()
                })
                .await?,
        );
        Ok(st)
    }

    /// A task summary from the task's raw interactions and handoffs.
    pub async fn summarize_task(
        &self,
        db: &mut Store,
        caller: &Caller,
        mode: Mode,
        task_id: i64,
        agent: &str,
    ) -> Result<MemoryRecord> {
        let (project_id, text, covered) = task_summary_text(db, caller, mode, task_id).await?;
        let covers: Vec<i64> = covered.iter().map(|r| r.id).collect();
        self.store_with_covers(
            db,
            &text,
            project_id,
            Some(task_id),
            "task_summary",
            agent,
            &covers,
        )
        .await
    }

    /// A project summary from its task summaries.
    pub async fn summarize_project(
        &self,
        db: &mut Store,
        caller: &Caller,
        mode: Mode,
        project_id: i64,
        agent: &str,
    ) -> Result<MemoryRecord> {
        let project = db.project(project_id)?;
        let summaries = records(
            db,
            "project_id = ?1 AND type = 'task_summary' AND compacted = 0",
            project_id,
        )?;
        if summaries.is_empty() {
            return Err(Error::InvalidInput(format!(
                "project {project_id} has no task summaries yet; summarize its tasks first"
            )));
        }
        let items: Vec<String> = summaries.iter().map(|r| r.text.clone()).collect();
        let text = summarize(
            caller,
            mode,
            &format!("Project {}: {}", project.id, project.name),
            &items,
            None,
        )
        .await?;
        let covers: Vec<i64> = summaries.iter().map(|r| r.id).collect();
        self.store_with_covers(
            db,
            &text,
            project_id,
            None,
            "project_summary",
            agent,
            &covers,
        )
        .await
    }

    /// A handoff summary when work on a task moves between roles or models.
    pub async fn handoff(
        &self,
        db: &mut Store,
        caller: &Caller,
        mode: Mode,
        task_id: i64,
        (from, to): (&str, &str),
        tried: &[String],
    ) -> Result<MemoryRecord> {
        let task = db.task(task_id)?;
        let text = summarize(
            caller,
            mode,
            &format!("Task {}: {}", task.id, task.title),
            tried,
            Some((from, to)),
        )
        .await?;
        self.store_memory(db, &text, task.project_id, Some(task_id), "handoff", from)
            .await
    }

    /// Rolls each task's raw interactions into a summary once they pass the
    /// policy's count or token threshold; the raw records are marked
    /// compacted (kept in SQLite, dropped from the index). Returns the new
    /// summaries.
    pub async fn compact(
        &self,
        db: &mut Store,
        caller: &Caller,
        mode: Mode,
        project_id: Option<i64>,
        policy: CompactPolicy,
        agent: &str,
    ) -> Result<Vec<MemoryRecord>> {
        if let Some(p) = project_id {
            db.project(p)?;
        }
        let due: Vec<i64> = {
            let mut stmt = db.conn().prepare(
                "SELECT task_id FROM memories
                  WHERE type = 'raw_interaction' AND compacted = 0 AND task_id IS NOT NULL
                    AND (?1 IS NULL OR project_id = ?1)
                  GROUP BY task_id HAVING count(*) >= ?2 OR sum(tokens) >= ?3 ORDER BY task_id",
            )?;
            stmt.query_map(
                params![project_id, policy.max_raw as i64, policy.max_tokens as i64],
                |r| r.get(0),
            )?
            .collect::<rusqlite::Result<_>>()?
        };
        let mut made = Vec::new();
        for task in due {
            let (project, text, covered) = task_summary_text(db, caller, mode, task).await?;
            let vector = self
                .embedder
                .embed(vec![text.clone()])
                .await?
                .pop()
                .unwrap_or_default();
            let covers: Vec<i64> = covered.iter().map(|r| r.id).collect();
            let raw: Vec<i64> = covered
                .iter()
                .filter(|r| r.kind == "raw_interaction")
                .map(|r| r.id)
                .collect();
            // The summary and the compacted marks land together or not at all.
            let summary = db.batch(|s| {
                let summary = insert(
                    s,
                    &text,
                    project,
                    Some(task),
                    "task_summary",
                    agent,
                    &covers,
                    Some(&vector),
                )?;
                for id in &raw {
                    s.conn()
                        .execute("UPDATE memories SET compacted = 1 WHERE id = ?1", [id])?;
                }
                Ok(summary)
            })?;
            // The index follows; if it is cut short, queries still skip
            // compacted rows and the next catch-up finishes it.
            self.upsert(db, &summary, vector).await?;
            self.index
                .delete(raw.iter().map(|i| *i as u64).collect())
                .await?;
            self.index.flush().await?;
            mark_indexed(db, &[summary.id], true)?;
            mark_indexed(db, &raw, false)?;
            made.push(summary);
        }
        Ok(made)
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

/// The summary text of a task's uncompacted raw interactions and handoffs,
/// with the records it covers.
async fn task_summary_text(
    db: &Store,
    caller: &Caller,
    mode: Mode,
    task_id: i64,
) -> Result<(i64, String, Vec<MemoryRecord>)> {
    let task = db.task(task_id)?;
    let raw = records(
        db,
        "task_id = ?1 AND type IN ('raw_interaction', 'handoff') AND compacted = 0",
        task_id,
    )?;
    if raw.is_empty() {
        return Err(Error::InvalidInput(format!(
            "task {task_id} has no raw interactions to summarize"
        )));
    }
    let items: Vec<String> = raw
        .iter()
        .map(|r| format!("[{}] {}", r.agent, r.text))
        .collect();
    let text = summarize(
        caller,
        mode,
        &format!("Task {}: {}", task.id, task.title),
        &items,
        None,
    )
    .await?;
    Ok((task.project_id, text, raw))
}

#[allow(clippy::too_many_arguments)] // the record's fields
fn insert(
    db: &mut Store,
    text: &str,
    project_id: i64,
    task_id: Option<i64>,
    kind: &str,
    agent: &str,
    covers: &[i64],
    vector: Option<&[f32]>,
) -> Result<MemoryRecord> {
    let id = db.batch(|s| {
        s.conn().execute(
            "INSERT INTO memories (project_id, task_id, type, agent, text, tokens, covers, created_at, vector)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                project_id,
                task_id,
                kind,
                agent,
                text,
                estimate_tokens(text) as i64,
                serde_json::to_string(covers).expect("ids serialize"),
                now(),
                vector.map(encode_vector),
            ],
        )?;
        Ok(s.conn().last_insert_rowid())
    })?;
    Ok(get(db, id)?.expect("just inserted"))
}

/// Saves a memory in SQLite only, not yet indexed: the orchestrator's path
/// (its indexer, or the next process that opens the index, embeds and
/// indexes it off the step's path), and the path when no index can be
/// opened (another process holds the Edge store, the embedding assets are
/// missing).
pub fn save_unindexed(
    db: &mut Store,
    text: &str,
    project_id: i64,
    task_id: Option<i64>,
    kind: &str,
    agent: &str,
) -> Result<MemoryRecord> {
    save(db, text, project_id, task_id, kind, agent, &[], None)
}

/// Saves a memory whose vector is already known (embedded elsewhere, or
/// imported), not yet indexed: the next catch-up indexes it without
/// embedding it again.
#[allow(clippy::too_many_arguments)] // the record's fields, and its vector
pub fn save_embedded(
    db: &mut Store,
    text: &str,
    project_id: i64,
    task_id: Option<i64>,
    kind: &str,
    agent: &str,
    vector: &[f32],
) -> Result<MemoryRecord> {
    save(
        db,
        text,
        project_id,
        task_id,
        kind,
        agent,
        &[],
        Some(vector),
    )
}

#[allow(clippy::too_many_arguments)] // the record's fields, and its vector
fn save(
    db: &mut Store,
    text: &str,
    project_id: i64,
    task_id: Option<i64>,
    kind: &str,
    agent: &str,
    covers: &[i64],
    vector: Option<&[f32]>,
) -> Result<MemoryRecord> {
    check_kind(kind)?;
    if text.trim().is_empty() {
        return Err(Error::InvalidInput("a memory needs some text".into()));
    }
    insert(db, text, project_id, task_id, kind, agent, covers, vector)
}

/// Whether memory `id` is in the index (as far as the store knows).
pub fn is_indexed(db: &Store, id: i64) -> Result<bool> {
    Ok(db
        .conn()
        .query_row("SELECT indexed FROM memories WHERE id = ?1", [id], |r| {
            r.get::<_, bool>(0)
        })?)
}

/// Rows the index lacks, plus compacted rows it still has: what the next
/// catch-up will do.
pub fn index_backlog(db: &Store) -> Result<i64> {
    Ok(db.conn().query_row(
        "SELECT (SELECT count(*) FROM memories WHERE indexed = 0 AND compacted = 0)
              + (SELECT count(*) FROM memories WHERE indexed = 1 AND compacted = 1)",
        [],
        |r| r.get(0),
    )?)
}

/// What `Memory::catch_up` did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CaughtUp {
    /// Rows added to the index.
    pub indexed: usize,
    /// Of those, rows that had to be embedded (saved without a vector).
    pub embedded: usize,
    /// Compacted rows taken out of the index.
    pub dropped: usize,
}

/// Rows per catch-up batch: one embedding call, one upsert, one flush.
const CATCH_UP_BATCH: usize = 512;

/// Which memories a query may return; SQLite has the last word on each
/// hit (a stale index entry is never returned).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub project_id: Option<i64>,
    pub task_id: Option<i64>,
    pub kind: Option<String>,
    pub level: Option<Level>,
    /// Leave raw interactions out (a step's context: summaries only).
    pub skip_raw: bool,
}

impl Scope {
    /// One project's memories.
    pub fn project(project_id: i64) -> Scope {
        Scope {
            project_id: Some(project_id),
            ..Default::default()
        }
    }

    fn admits(&self, db: &Store, r: &MemoryRecord) -> Result<bool> {
        Ok(self.project_id.is_none_or(|p| r.project_id == p)
            && self.task_id.is_none_or(|t| r.task_id == Some(t))
            && self.kind.as_ref().is_none_or(|k| &r.kind == k)
            && !(self.skip_raw && r.kind == "raw_interaction")
            && match self.level {
                Some(l) => level_of(db, r)?.0 == l,
                None => true,
            })
    }
}

/// Where a memory sits in the project's memory tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A project summary (or a note on no task).
    Project,
    /// The summary or handoff of a task with subtasks: a stage's roll-up.
    Stage,
    /// The summary or handoff of a task without subtasks.
    Task,
    /// A raw interaction: a model's answer as it was.
    Raw,
}

/// The levels' names, as the index and the tools spell them.
pub const LEVELS: [&str; 4] = ["project", "stage", "task", "raw"];

impl std::str::FromStr for Level {
    type Err = Error;

    fn from_str(s: &str) -> Result<Level> {
        match s {
            "project" => Ok(Level::Project),
            "stage" => Ok(Level::Stage),
            "task" => Ok(Level::Task),
            "raw" => Ok(Level::Raw),
            other => Err(Error::InvalidInput(format!(
                "unknown memory level {other:?}: expected one of {}",
                LEVELS.join(", ")
            ))),
        }
    }
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Project => "project",
            Level::Stage => "stage",
            Level::Task => "task",
            Level::Raw => "raw",
        }
    }
}

/// A memory's level and the task of the tree node above it (see
/// `PointMeta::parent`), decided from the task tree as it is now.
pub fn level_of(db: &Store, r: &MemoryRecord) -> Result<(Level, Option<i64>)> {
    if r.kind == "project_summary" {
        return Ok((Level::Project, None));
    }
    if r.kind == "raw_interaction" {
        return Ok((Level::Raw, r.task_id));
    }
    let Some(task) = r.task_id else {
        return Ok((Level::Project, None));
    };
    let (parent, has_children): (Option<i64>, bool) = db.conn().query_row(
        "SELECT t.parent_id, EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = t.id AND c.deleted_at IS NULL)
           FROM tasks t WHERE t.id = ?1",
        [task],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let level = if has_children {
        Level::Stage
    } else {
        Level::Task
    };
    Ok((level, parent))
}

fn meta_of(db: &Store, r: &MemoryRecord) -> Result<PointMeta> {
    let (level, parent) = level_of(db, r)?;
    Ok(PointMeta {
        project_id: r.project_id,
        task_id: r.task_id,
        kind: r.kind.clone(),
        agent: r.agent.clone(),
        level: level.as_str().to_string(),
        parent,
    })
}

fn mark_indexed(db: &mut Store, ids: &[i64], indexed: bool) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    db.batch(|s| {
        let mut stmt = s
            .conn()
            .prepare_cached("UPDATE memories SET indexed = ?2 WHERE id = ?1")?;
        for id in ids {
            stmt.execute(params![id, indexed as i64])?;
        }
        Ok(())
    })
}

/// A vector as stored with its row: little-endian f32s.
fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_vector(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A done task that lacks what its step should have left in memory (the
/// process was killed between the step's commit and its memories).
#[derive(Debug, Clone, Serialize)]
pub struct MissingMemory {
    pub task_id: i64,
    pub project_id: i64,
    /// The step that finished it (its answer is in the step's record).
    pub step_id: i64,
    pub raw_interaction: bool,
    pub task_summary: bool,
    /// A done parent whose roll-up summary (from its subtasks') is missing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rollup: bool,
}

/// Done tasks whose finishing step answered with a model but that have no
/// raw interaction or no task summary in memory.
pub fn missing_memories(db: &Store, project_id: Option<i64>) -> Result<Vec<MissingMemory>> {
    let mut stmt = db.conn().prepare_cached(
        "SELECT t.id, t.project_id, s.id,
                NOT EXISTS (SELECT 1 FROM memories m WHERE m.task_id = t.id AND m.type = 'raw_interaction'),
                NOT EXISTS (SELECT 1 FROM memories m WHERE m.task_id = t.id AND m.type = 'task_summary')
           FROM tasks t
           JOIN run_steps s ON s.id = (SELECT max(id) FROM run_steps
                                        WHERE task_id = t.id AND outcome = 'done')
          WHERE t.status = 'done' AND t.deleted_at IS NULL AND s.model IS NOT NULL
            AND (?1 IS NULL OR t.project_id = ?1)
            AND (NOT EXISTS (SELECT 1 FROM memories m WHERE m.task_id = t.id AND m.type = 'raw_interaction')
              OR NOT EXISTS (SELECT 1 FROM memories m WHERE m.task_id = t.id AND m.type = 'task_summary'))
          ORDER BY t.id",
    )?;
    let rows = stmt
        .query_map([project_id], |r| {
            Ok(MissingMemory {
                task_id: r.get(0)?,
                project_id: r.get(1)?,
                step_id: r.get(2)?,
                raw_interaction: r.get(3)?,
                task_summary: r.get(4)?,
                rollup: false,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub fn get(db: &Store, id: i64) -> Result<Option<MemoryRecord>> {
    Ok(db
        .conn()
        .query_row(
            &format!("SELECT {COLUMNS} FROM memories WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?)
}

/// A task's memories, oldest first.
pub fn for_task(db: &Store, task_id: i64) -> Result<Vec<MemoryRecord>> {
    records(db, "task_id = ?1", task_id)
}

fn records(db: &Store, filter: &str, arg: i64) -> Result<Vec<MemoryRecord>> {
    let mut stmt = db.conn().prepare(&format!(
        "SELECT {COLUMNS} FROM memories WHERE {filter} ORDER BY id"
    ))?;
    let rows = stmt
        .query_map([arg], from_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// One summary through the summarizer role's chain.
async fn summarize(
    caller: &Caller,
    mode: Mode,
    title: &str,
    items: &[String],
    handoff: Option<(&str, &str)>,
) -> Result<String> {
    let mut prompt = String::new();
    match handoff {
        Some((from, to)) => {
            let _ = writeln!(
                prompt,
                "Work on this task moves from {from} to {to}. Say what was tried, what worked, what did not, and what to do first. At most 150 words."
            );
        }
        None => {
            let _ = writeln!(
                prompt,
                "Summarize the notes below for the agents who work on this next: decisions, results, open questions and failures with their reasons. At most 200 words."
            );
        }
    }
    let _ = writeln!(prompt, "\n## {title}");
    for item in items {
        let _ = writeln!(prompt, "---\n{}", item.trim());
    }
    let registry = caller.registry();
    let info = TaskInfo {
        title,
        role_hint: Some(Role::Summarizer),
        prompt_tokens: estimate_tokens(&prompt),
        output_tokens: Some(400),
        ..Default::default()
    };
    let decision = router::route(registry, &info, mode, caller);
    // The summarizer role, whatever the rules say about the title.
    let chain: Vec<String> = if decision.role == Role::Summarizer {
        decision.chain
    } else {
        registry.roles[&Role::Summarizer].models.clone()
    };
    let req = ChatRequest {
        messages: vec![Message::user(prompt)],
        temperature: registry.roles[&Role::Summarizer].temperature,
        max_tokens: 400,
        role: Some(Role::Summarizer),
        // Streamed: the first-byte timeout then bounds the wait, not the answer.
        stream: true,
        ..Default::default()
    };
    let out = caller
        .call(&chain, &req, None)
        .await
        .map_err(|e| Error::Model(caller.redact(&e.to_string())))?;
    let text = out.response.text.trim().to_string();
    if text.is_empty() {
        return Err(Error::Model(format!(
            "{} returned an empty summary",
            out.model
        )));
    }
    Ok(text)
}
