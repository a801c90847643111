//! The summaries that roll up by themselves: a parent's (a stage, a split
//! task) from its subtasks' once they are all done, and the project's from
//! its stages' and the newer task summaries. What to summarize and where
//! it goes; the orchestrator asks the summarizer.

use rusqlite::params;

use super::{COLUMNS, MemoryRecord, from_row};
use crate::error::Result;
use crate::store::{Store, Task};

/// A parent's subtasks, each with its newest task summary when it has one.
pub fn child_summaries(db: &Store, parent_id: i64) -> Result<Vec<(Task, Option<MemoryRecord>)>> {
    let children: Vec<Task> = db
        .tasks(None, None)?
        .into_iter()
        .filter(|t| t.parent_id == Some(parent_id) && t.deleted_at.is_none())
        .collect();
    let mut out = Vec::with_capacity(children.len());
    for c in children {
        let summary = newest(db, c.id)?;
        out.push((c, summary));
    }
    Ok(out)
}

/// The newest memory matching `filter` (one `?1` parameter).
fn latest(db: &Store, filter: &str, arg: i64) -> Result<Option<MemoryRecord>> {
    let mut stmt = db.conn().prepare_cached(&format!(
        "SELECT {COLUMNS} FROM memories WHERE {filter} ORDER BY id DESC LIMIT 1"
    ))?;
    let mut rows = stmt.query_map([arg], from_row)?;
    Ok(rows.next().transpose()?)
}

/// A task's newest summary.
fn newest(db: &Store, task_id: i64) -> Result<Option<MemoryRecord>> {
    latest(db, "task_id = ?1 AND type = 'task_summary'", task_id)
}

/// Done parents of a project with no summary of their own: the roll-ups a
/// killed run left, for the next run to write.
pub fn missing_rollups(db: &Store, project_id: i64) -> Result<Vec<i64>> {
    let mut stmt = db.conn().prepare_cached(
        "SELECT t.id FROM tasks t
          WHERE t.project_id = ?1 AND t.status = 'done' AND t.deleted_at IS NULL
            AND EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = t.id AND c.deleted_at IS NULL)
            AND NOT EXISTS (SELECT 1 FROM memories m WHERE m.task_id = t.id AND m.type = 'task_summary')
          ORDER BY t.id",
    )?;
    let ids = stmt
        .query_map([project_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// What a project summary is made from, at most `max` items: the newest
/// summary of each done top-level task (a stage's roll-up), then the
/// newest summaries of tasks no such roll-up covers yet, newest first. A
/// project of 500 tasks gives a handful of stage summaries and the recent
/// work, never 500 items.
pub fn project_material(db: &Store, project_id: i64, max: usize) -> Result<Vec<MemoryRecord>> {
    let mut stmt = db.conn().prepare_cached(&format!(
        "SELECT {COLUMNS} FROM memories m
          WHERE m.project_id = ?1 AND m.type = 'task_summary' AND m.compacted = 0
            AND m.id = (SELECT max(id) FROM memories n
                         WHERE n.task_id = m.task_id AND n.type = 'task_summary')
          ORDER BY m.id DESC"
    ))?;
    let newest: Vec<MemoryRecord> = stmt
        .query_map(params![project_id], from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let covered: std::collections::HashSet<i64> = newest
        .iter()
        .flat_map(|r| r.covers.iter().copied())
        .collect();
    let top: std::collections::HashSet<i64> = db
        .tasks(Some(project_id), None)?
        .into_iter()
        .filter(|t| t.parent_id.is_none())
        .map(|t| t.id)
        .collect();
    let (stages, rest): (Vec<MemoryRecord>, Vec<MemoryRecord>) = newest
        .into_iter()
        .filter(|r| !covered.contains(&r.id))
        .partition(|r| r.task_id.is_some_and(|t| top.contains(&t)));
    Ok(stages.into_iter().chain(rest).take(max).collect())
}

/// A step's memory from the tree, most general first: the newest project
/// summary, the summary of the task's nearest summarized ancestor (its
/// stage), each dependency's newest summary, then the task's own newest
/// summary or handoff. Read from SQLite alone, so a run without an index
/// has it too; the caller cuts it to its budget.
pub fn tree_context(db: &Store, task: &Task) -> Result<Vec<MemoryRecord>> {
    let latest = |filter: &str, arg: i64| latest(db, filter, arg);
    let mut picked: Vec<MemoryRecord> = Vec::new();
    let push = |r: Option<MemoryRecord>, picked: &mut Vec<MemoryRecord>| {
        if let Some(r) = r
            && !picked.iter().any(|p| p.id == r.id)
        {
            picked.push(r);
        }
    };
    push(
        latest(
            "project_id = ?1 AND type = 'project_summary'",
            task.project_id,
        )?,
        &mut picked,
    );
    let mut up = task.parent_id;
    while let Some(p) = up {
        if let Some(r) = newest(db, p)? {
            push(Some(r), &mut picked);
            break;
        }
        up = db.task(p)?.parent_id;
    }
    for dep in &task.depends_on {
        push(
            latest("task_id = ?1 AND type = 'task_summary'", *dep)?,
            &mut picked,
        );
    }
    push(
        latest(
            "task_id = ?1 AND type IN ('task_summary', 'handoff')",
            task.id,
        )?,
        &mut picked,
    );
    Ok(picked)
}

/// Cuts `records` to `budget` tokens, in order, skipping what does not fit.
pub fn within(records: Vec<MemoryRecord>, budget: u64) -> Vec<MemoryRecord> {
    let mut used = 0;
    records
        .into_iter()
        .filter(|r| {
            let fits = used + r.tokens <= budget;
            if fits {
                used += r.tokens;
            }
            fits
        })
        .collect()
}

/// Saves a summary that covers `covers`, in SQLite, not yet indexed (the
/// run's indexer indexes it).
pub fn save_summary(
    db: &mut Store,
    text: &str,
    project_id: i64,
    task_id: Option<i64>,
    kind: &str,
    agent: &str,
    covers: &[i64],
) -> Result<MemoryRecord> {
    super::save(db, text, project_id, task_id, kind, agent, covers, None)
}

/// One task in the memory tree: its newest summary's first line, how many
/// summaries, raw interactions and compacted rows it has, its subtasks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Node {
    pub task_id: i64,
    pub external_ref: Option<String>,
    pub title: String,
    pub status: String,
    /// The first line of its newest summary.
    pub summary: Option<String>,
    pub summaries: usize,
    pub raw: usize,
    pub compacted: usize,
    pub children: Vec<Node>,
}

/// The project's memory as a tree: its newest summary (and how many older
/// ones are kept), then its top-level tasks (stages) with their subtasks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tree {
    pub project_id: i64,
    pub project_summary: Option<String>,
    pub project_summaries: usize,
    pub tasks: Vec<Node>,
}

fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    crate::text::short(line, 100)
}

impl Tree {
    /// The tree as text, one node a line and each summary's first line
    /// under it: what `memory tree` prints and the board's memory view shows.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let t = self;
        fn node(s: &mut String, n: &Node, depth: usize) {
            let label = n
                .external_ref
                .clone()
                .unwrap_or_else(|| format!("#{}", n.task_id));
            let counts = match (n.summaries, n.raw, n.compacted) {
                (0, 0, _) => String::new(),
                (s, r, 0) => format!(" [{s} summary, {r} raw]"),
                (s, r, c) => format!(" [{s} summary, {r} raw, {c} compacted]"),
            };
            let _ = writeln!(
                s,
                "{}{label} {} ({}){counts}",
                "  ".repeat(depth + 1),
                n.title,
                n.status
            );
            if let Some(line) = &n.summary {
                let _ = writeln!(s, "{}  ↳ {line}", "  ".repeat(depth + 1));
            }
            for c in &n.children {
                node(s, c, depth + 1);
            }
        }
        let mut s = format!("Project {}", t.project_id);
        match &t.project_summary {
            Some(line) => {
                let _ = writeln!(
                    s,
                    " ({} summary, newest first line):\n  ↳ {line}",
                    t.project_summaries
                );
            }
            None => {
                s.push_str(" (no project summary yet: a run writes one when it finishes tasks)\n")
            }
        }
        for n in &t.tasks {
            node(&mut s, n, 0);
        }
        s.trim_end().to_string()
    }
}

/// The memory tree of `project_id`, read from SQLite.
pub fn tree(db: &Store, project_id: i64) -> Result<Tree> {
    db.project(project_id)?;
    let mut stmt = db.conn().prepare_cached(&format!(
        "SELECT {COLUMNS} FROM memories WHERE project_id = ?1 ORDER BY id"
    ))?;
    let all: Vec<MemoryRecord> = stmt
        .query_map([project_id], from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let tasks = db.tasks(Some(project_id), None)?;
    fn node(t: &Task, tasks: &[Task], all: &[MemoryRecord]) -> Node {
        let mine: Vec<&MemoryRecord> = all.iter().filter(|m| m.task_id == Some(t.id)).collect();
        let summaries: Vec<&&MemoryRecord> =
            mine.iter().filter(|m| m.kind == "task_summary").collect();
        Node {
            task_id: t.id,
            external_ref: t.external_ref.clone(),
            title: t.title.clone(),
            status: t.status.as_str().to_string(),
            summary: summaries.last().map(|m| first_line(&m.text)),
            summaries: summaries.len(),
            raw: mine.iter().filter(|m| m.kind == "raw_interaction").count(),
            compacted: mine.iter().filter(|m| m.compacted).count(),
            children: tasks
                .iter()
                .filter(|c| c.parent_id == Some(t.id))
                .map(|c| node(c, tasks, all))
                .collect(),
        }
    }
    let projects: Vec<&MemoryRecord> = all.iter().filter(|m| m.kind == "project_summary").collect();
    Ok(Tree {
        project_id,
        project_summary: projects.last().map(|m| first_line(&m.text)),
        project_summaries: projects.len(),
        tasks: tasks
            .iter()
            .filter(|t| t.parent_id.is_none())
            .map(|t| node(t, &tasks, &all))
            .collect(),
    })
}

pub use crate::config::CompactWhen;

/// The raw interactions of `task_id` no compaction has taken yet: what its
/// summary covers.
pub fn uncompacted_raw(db: &Store, task_id: i64) -> Result<Vec<i64>> {
    let mut stmt = db.conn().prepare_cached(
        "SELECT id FROM memories
          WHERE task_id = ?1 AND type = 'raw_interaction' AND compacted = 0 ORDER BY id",
    )?;
    let ids = stmt
        .query_map([task_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// Marks compacted, in one transaction, the raw interactions of
/// `project_id`'s done tasks that `when` says are rolled up; the index
/// drops them on its next catch-up (rows marked compacted are never
/// returned meanwhile). Returns how many.
pub fn compact_rolled_up(db: &mut Store, project_id: i64, when: CompactWhen) -> Result<usize> {
    let two_levels = match when {
        CompactWhen::Off => return Ok(0),
        CompactWhen::Summarized => false,
        CompactWhen::RolledUp => true,
    };
    db.batch(|s| {
        Ok(s.conn().execute(
            "UPDATE memories SET compacted = 1 WHERE id IN (
               SELECT m.id FROM memories m JOIN tasks t ON t.id = m.task_id
                WHERE m.project_id = ?1 AND m.type = 'raw_interaction' AND m.compacted = 0
                  AND t.status = 'done'
                  AND EXISTS (
                    SELECT 1 FROM memories s, json_each(s.covers) j
                     WHERE s.task_id = m.task_id AND s.type = 'task_summary' AND j.value = m.id
                       AND (NOT ?2 OR EXISTS (
                         SELECT 1 FROM memories p, json_each(p.covers) k
                          WHERE p.project_id = ?1 AND p.id <> s.id
                            AND p.type IN ('task_summary', 'project_summary')
                            AND k.value = s.id))))",
            params![project_id, two_levels],
        )?)
    })
}
