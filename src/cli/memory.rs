//! `llmclis memory …`.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use serde_json::json;

use super::{Ctx, emit};
use crate::app::handles::{Caller, Memory, Store};
use crate::app::types::CompactPolicy;
use crate::error::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum MemoryCmd {
    /// Save a memory
    Store {
        #[command(flatten)]
        project: super::ProjectId,
        /// The task it is about
        #[arg(long = "task-id", visible_alias = "task_id", value_name = "T")]
        task_id: Option<i64>,
        /// The kind of memory
        #[arg(long = "type", value_name = "TYPE", default_value = "raw_interaction",
              value_parser = super::closed::closed::<super::closed::MemoryType>(&crate::app::types::KINDS))]
        kind: super::closed::MemoryType,
        /// What to remember; `-` reads it from stdin
        text: String,
    },
    /// Find memories by meaning
    Query {
        #[command(flatten)]
        project: super::ProjectId,
        /// Only this task's memories
        #[arg(long = "task-id", visible_alias = "task_id", value_name = "T")]
        task_id: Option<i64>,
        /// Only memories of this kind
        #[arg(long = "type", value_name = "TYPE",
              value_parser = super::closed::closed::<super::closed::MemoryType>(&crate::app::types::KINDS))]
        kind: Option<super::closed::MemoryType>,
        /// Only memories at this level of the memory tree
        #[arg(long, value_enum, value_name = "LEVEL")]
        level: Option<crate::app::types::Level>,
        /// How many to return
        #[arg(
            long = "top-k",
            visible_alias = "top_k",
            value_name = "K",
            default_value_t = 5
        )]
        top_k: usize,
        /// What to look for, in words
        text: String,
    },
    /// Summarize a task's raw interactions, or a project's task summaries
    Summarize {
        /// Summarize this task's raw interactions
        #[arg(
            long = "task-id",
            visible_alias = "task_id",
            value_name = "T",
            conflicts_with = "project_id",
            required_unless_present = "project_id"
        )]
        task_id: Option<i64>,
        /// Summarize this project's task summaries
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
    /// Roll long runs of raw interactions into task summaries
    Compact {
        /// Only this project [default: every project]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
    /// Rebuild the vector index from the database
    Reindex,
    /// The project's memory as a tree: project → stages → tasks, each
    /// with its newest summary's first line and what is compacted
    Tree {
        #[command(flatten)]
        project: super::ProjectId,
    },
    /// Counts by type, what is indexed, and with which model
    Stats {
        /// Only this project [default: every project]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
        /// Also open the index and check that it holds what the store says
        #[arg(long)]
        verify: bool,
    },
}

/// The memory layer with the index caught up with the database (rows a
/// killed or lock-less process saved), saying so when that takes a while.
fn open_caught_up(ctx: &Ctx, db: &mut Store, rt: &tokio::runtime::Runtime) -> Result<Memory> {
    let bar = super::progress::Bar::new(ctx.json, "indexing memories the index lacks", 0);
    let progress = |done: usize, all: usize| bar.set(done as u64, all as u64);
    let mem = rt.block_on(crate::app::memory::open_caught_up(ctx, db, &progress))?;
    bar.finish();
    Ok(mem)
}

fn summarizer(ctx: &Ctx) -> Result<Caller> {
    Ok(ctx.caller(Arc::new(ctx.registry()?), Duration::from_secs(30)))
}

pub fn memory(ctx: &Ctx, cmd: MemoryCmd, out: &mut impl Write) -> Result<()> {
    let mut db = ctx.store()?;
    let agent = ctx.agent.clone();
    let rt = crate::app::runtime()?;
    match cmd {
        MemoryCmd::Store {
            project,
            task_id,
            kind,
            text,
        } => {
            let project_id = project.choose(ctx, &db)?.project_id;
            let text = super::text_arg(text, "memory")?;
            // Another process holding the index (a run) does not make this
            // wait: the row goes to SQLite and that process indexes it.
            let mem = match ctx.open_memory_waiting(&db, Duration::ZERO) {
                Ok(mem) => Some(mem),
                Err(Error::IndexBusy(_)) => None,
                Err(e) => return Err(e),
            };
            let req = crate::app::memory::StoreMemory {
                project_id,
                task_id,
                kind: kind.0,
                text,
            };
            let stored = rt.block_on(crate::app::memory::store(
                mem.as_ref(),
                &mut db,
                &req,
                &agent,
            ))?;
            if let Some(why) = &stored.not_indexed {
                eprintln!(
                    "warning: memory {} is saved but not indexed yet: {why}",
                    stored.record.id
                );
            }
            let r = stored.record;
            emit(out, ctx.json, &r, || {
                format!(
                    "Stored memory {} ({}) in project {}.",
                    r.id, r.kind, r.project_id
                )
            })
        }
        MemoryCmd::Query {
            project,
            task_id,
            kind,
            level,
            top_k,
            text,
        } => {
            let project_id = project.choose(ctx, &db)?.project_id;
            let mem = open_caught_up(ctx, &mut db, &rt)?;
            let req = crate::app::memory::QueryMemory {
                project_id,
                task_id,
                kind: kind.map(|k| k.0),
                level,
                top_k,
                text,
            };
            let hits = rt.block_on(crate::app::memory::query(&mem, &mut db, &req))?;
            emit(out, ctx.json, &hits, || {
                if hits.is_empty() {
                    return "No memories match.".into();
                }
                let mut s = String::new();
                for h in &hits {
                    let task = h
                        .record
                        .task_id
                        .map(|t| format!(" task {t}"))
                        .unwrap_or_default();
                    let text: String = h.record.text.chars().take(160).collect();
                    let _ = writeln!(
                        s,
                        "{:.3}  #{} {}{task}  {}",
                        h.score,
                        h.record.id,
                        h.record.kind,
                        text.replace('\n', " ")
                    );
                }
                s.trim_end().to_string()
            })
        }
        MemoryCmd::Summarize {
            task_id,
            project_id,
        } => {
            let mem = open_caught_up(ctx, &mut db, &rt)?;
            let caller = summarizer(ctx)?;
            let mode = ctx.mode();
            let r = rt.block_on(async {
                match (task_id, project_id) {
                    (Some(t), _) => mem.summarize_task(&mut db, &caller, mode, t, &agent).await,
                    (None, Some(p)) => {
                        mem.summarize_project(&mut db, &caller, mode, p, &agent)
                            .await
                    }
                    (None, None) => {
                        Err(Error::InvalidInput("pass --task-id or --project-id".into()))
                    }
                }
            })?;
            emit(out, ctx.json, &r, || {
                format!(
                    "Stored {} {} (covers {} memories):\n{}",
                    r.kind,
                    r.id,
                    r.covers.len(),
                    r.text
                )
            })
        }
        MemoryCmd::Compact { project_id } => {
            let mem = open_caught_up(ctx, &mut db, &rt)?;
            let caller = summarizer(ctx)?;
            let policy = CompactPolicy {
                max_raw: ctx.config.memory.compact_after.max(1),
                max_tokens: ctx.config.memory.compact_tokens.max(1),
            };
            let made =
                rt.block_on(mem.compact(&mut db, &caller, ctx.mode(), project_id, policy, &agent))?;
            let rolled_up = crate::app::memory::compact_rolled_up(
                &mut db,
                project_id,
                ctx.config.memory.compact,
            )?;
            if rolled_up > 0 {
                rt.block_on(mem.catch_up(&mut db, None))?;
            }
            let value = json!({"summaries": made, "rolled_up": rolled_up});
            emit(out, ctx.json, &value, || {
                let mut lines = Vec::new();
                if !made.is_empty() {
                    let tasks: Vec<String> = made
                        .iter()
                        .filter_map(|m| m.task_id.map(|t| t.to_string()))
                        .collect();
                    lines.push(format!(
                        "Compacted {} task(s): {}",
                        made.len(),
                        tasks.join(", ")
                    ));
                }
                if rolled_up > 0 {
                    lines.push(format!(
                        "Took {rolled_up} rolled-up raw interaction(s) out of the index (kept in the database)."
                    ));
                }
                if lines.is_empty() {
                    "Nothing to compact.".into()
                } else {
                    lines.join("\n")
                }
            })
        }
        MemoryCmd::Reindex => {
            let mem = ctx.open_memory(&db)?;
            let bar = super::progress::Bar::new(ctx.json, "reindexing", 0);
            let progress = |done: usize, all: usize| bar.set(done as u64, all as u64);
            let n = rt.block_on(mem.reindex(&mut db, Some(&progress)))?;
            bar.finish();
            let value =
                json!({"indexed": n, "index": mem.index.describe(), "model": mem.embedder.model()});
            emit(out, ctx.json, &value, || {
                format!("Reindexed {n} memories into {}.", mem.index.describe())
            })
        }
        MemoryCmd::Tree { project } => {
            let project_id = project.choose(ctx, &db)?.project_id;
            let tree = crate::app::memory::tree(&db, project_id)?;
            emit(out, ctx.json, &tree, || super::render::memory_tree(&tree))
        }
        MemoryCmd::Stats { project_id, verify } => {
            let s = crate::app::memory::stats(ctx, &mut db, project_id, verify)?;
            emit(out, ctx.json, &s, || {
                let mut t = if s.dim == 0 {
                    format!("{} ({})\n", s.index, s.model)
                } else {
                    format!("{} ({}, {} dimensions)\n", s.index, s.model, s.dim)
                };
                for (k, n) in &s.by_type {
                    let _ = writeln!(t, "  {k:<16} {n}");
                }
                let _ = write!(
                    t,
                    "  compacted        {}\n  indexed          {}\n  not yet indexed  {}",
                    s.compacted, s.indexed, s.unindexed
                );
                if let Some(n) = s.index_points {
                    let _ = write!(t, "\n  index points     {n} (checked)");
                }
                t
            })
        }
    }
}
