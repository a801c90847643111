//! Memory operations for every front end: store one and query by meaning,
//! with the index caught up first. `Kept` is the memory layer a long-lived
//! front end (the MCP server) opens once, on first use, and keeps, so a
//! call pays for a query, not for loading the embedding model.

use std::time::Duration;

use super::Context;
use crate::error::{Error, Result};
use crate::memory::{Hit, Memory, MemoryRecord};
use crate::store::Store;

/// A memory to save.
#[derive(Debug, Clone)]
pub struct StoreMemory {
    pub project_id: i64,
    pub task_id: Option<i64>,
    pub kind: String,
    pub text: String,
}

/// A search by meaning, best first.
#[derive(Debug, Clone)]
pub struct QueryMemory {
    pub project_id: i64,
    pub task_id: Option<i64>,
    pub kind: Option<String>,
    /// Only memories at this level of the tree.
    pub level: Option<crate::memory::Level>,
    pub top_k: usize,
    pub text: String,
}

/// A saved memory, and why it is not in the index yet when it is not.
#[derive(Debug, Clone)]
pub struct Stored {
    pub record: MemoryRecord,
    /// The index could not be reached or refused for now; the row is in
    /// the database and the next command that reaches the index indexes it.
    pub not_indexed: Option<String>,
}

/// Saves a memory. Without an index (another process holds it) the row
/// goes to SQLite and that process, or the next opener, indexes it; the
/// same when a Qdrant server is down or overloaded.
pub async fn store(
    memory: Option<&Memory>,
    db: &mut Store,
    req: &StoreMemory,
    agent: &str,
) -> Result<Stored> {
    let unindexed = |db: &mut Store, why: Option<String>| -> Result<Stored> {
        db.project(req.project_id)?;
        let record = crate::memory::save_unindexed(
            db,
            &req.text,
            req.project_id,
            req.task_id,
            &req.kind,
            agent,
        )?;
        Ok(Stored {
            record,
            not_indexed: why,
        })
    };
    let Some(mem) = memory else {
        return unindexed(db, None);
    };
    let tried = async {
        mem.catch_up(db, None).await?;
        mem.store_memory(db, &req.text, req.project_id, req.task_id, &req.kind, agent)
            .await
    }
    .await;
    match tried {
        Ok(record) => {
            let not_indexed = (!crate::memory::is_indexed(db, record.id)?)
                .then(|| format!("{} did not answer in time", mem.describe_index()));
            Ok(Stored {
                record,
                not_indexed,
            })
        }
        Err(Error::Index(e)) if e.is_transient() => unindexed(db, Some(e.to_string())),
        Err(e) => Err(e),
    }
}

/// Searches a project's memories, with the index caught up first so a
/// committed row is never missed.
pub async fn query(memory: &Memory, db: &mut Store, req: &QueryMemory) -> Result<Vec<Hit>> {
    memory.catch_up(db, None).await?;
    memory
        .query_memory(
            db,
            &req.text,
            &crate::memory::Scope {
                project_id: Some(req.project_id),
                task_id: req.task_id,
                kind: req.kind.clone(),
                level: req.level,
                skip_raw: false,
            },
            req.top_k,
        )
        .await
}

/// Counts from the store, without loading the model or opening the index;
/// with `verify`, the index (caught up first) counts its points too, and a
/// difference is an error that says how to fix it.
pub fn stats(
    ctx: &Context,
    db: &mut Store,
    project_id: Option<i64>,
    verify: bool,
) -> Result<crate::memory::Stats> {
    if verify {
        let mem = ctx.open_memory(db)?;
        let rt = super::runtime()?;
        rt.block_on(mem.catch_up(db, None))?;
        let st = rt.block_on(mem.stats(db, project_id))?;
        return match st.index_points {
            Some(n) if n as i64 != st.indexed => Err(crate::error::Error::Memory(format!(
                "{} has {n} points where the store marks {} memories indexed; run `llmclis memory reindex`",
                st.index, st.indexed
            ))),
            _ => Ok(st),
        };
    }
    let cfg = &ctx.config.memory;
    // The store's counts need no model: one that cannot be loaded (its
    // files not fetched yet) is said in its place, never an error.
    let (model, dim) =
        match crate::memory::open::embedder(&ctx.paths, cfg, ctx.mode(), || ctx.registry()) {
            Ok(e) => (e.model(), e.dim()),
            Err(e) => (format!("embedding model not available: {e}"), 0),
        };
    let index = crate::memory::open::describe_index(&ctx.paths, cfg, db)?;
    crate::memory::stats(db, project_id, index, model, dim)
}

/// The memory layer with the index caught up with the database (rows a
/// killed or lock-less process saved); `progress` hears (done, all).
pub async fn open_caught_up(
    ctx: &Context,
    db: &mut Store,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> Result<Memory> {
    let mem = ctx.open_memory(db)?;
    mem.catch_up(db, Some(progress)).await?;
    Ok(mem)
}

/// A memory layer opened once and kept: the embedder loads on the first
/// call that needs it, never for one that does not. A failed open is tried
/// again on the next call (another process may have let go of the index).
pub struct Kept {
    ctx: Context,
    memory: tokio::sync::Mutex<Option<std::sync::Arc<Memory>>>,
}

impl Kept {
    pub fn new(ctx: Context) -> Kept {
        Kept {
            ctx,
            memory: tokio::sync::Mutex::new(None),
        }
    }

    /// The memory layer, opened on first use without waiting for an Edge
    /// index another process holds (that is `Error::IndexBusy`).
    pub async fn get(&self, db: &Store) -> Result<std::sync::Arc<Memory>> {
        let mut slot = self.memory.lock().await;
        if let Some(m) = slot.as_ref() {
            return Ok(m.clone());
        }
        let m = std::sync::Arc::new(self.ctx.open_memory_waiting(db, Duration::ZERO)?);
        *slot = Some(m.clone());
        Ok(m)
    }
}

/// The project's memory as a tree (`memory tree`, the board's memory view).
pub fn tree(db: &Store, project_id: i64) -> Result<crate::memory::rollup::Tree> {
    crate::memory::rollup::tree(db, project_id)
}

/// Applies `[memory] compact` to one project or all: the raw interactions
/// of done tasks whose summaries are rolled up leave the index (they stay
/// in the database). Returns how many.
pub fn compact_rolled_up(
    db: &mut Store,
    project_id: Option<i64>,
    when: crate::memory::rollup::CompactWhen,
) -> Result<usize> {
    let projects = match project_id {
        Some(p) => vec![db.project(p)?.id],
        None => db.projects()?.into_iter().map(|p| p.id).collect(),
    };
    let mut n = 0;
    for p in projects {
        n += crate::memory::rollup::compact_rolled_up(db, p, when)?;
    }
    Ok(n)
}

/// A task's memories, oldest first (the board's detail view).
pub use crate::memory::for_task;

/// The local embedder the settings name (its model loads on the first
/// embedding).
pub fn embedder(ctx: &Context) -> Result<std::sync::Arc<dyn crate::memory::embed::Embedder>> {
    crate::memory::open::embedder(&ctx.paths, &ctx.config.memory, ctx.mode(), || {
        ctx.registry()
    })
}
