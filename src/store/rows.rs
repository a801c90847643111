//! The row helpers every task write shares (columns, row decoding, input
//! cleaning, events, touches): below `tasks`, `deps` and `queue`, which
//! all build on them.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::{Status, Task};
use crate::error::{Error, Result};

/// What makes a task ready: pending, its dependencies done, no open
/// subtask, a parent not blocked.
pub(super) const READY_WHERE: &str = "status = 'pending' AND unmet_deps = 0 AND open_children = 0 \
     AND parent_status IS NOT 'blocked'";

pub(super) const TASK_COLUMNS: &str = "id, project_id, parent_id, external_ref, title, description, status, \
     priority, role, tags, created_at, created_by, updated_at, last_agent, last_updated_at, \
     claimed_by, lease_expires_at, attempts, deleted_at, checks, protected, \
     (SELECT passed FROM check_runs c WHERE c.task_id = tasks.id ORDER BY c.id DESC LIMIT 1)";

pub(super) fn status_col(s: String) -> rusqlite::Result<Status> {
    s.parse().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown status {s:?}").into(),
        )
    })
}

pub(super) fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    let tags: String = r.get(9)?;
    let status = status_col(r.get(6)?)?;
    let last_check: Option<bool> = r.get(21)?;
    Ok(Task {
        id: r.get(0)?,
        project_id: r.get(1)?,
        parent_id: r.get(2)?,
        external_ref: r.get(3)?,
        title: r.get(4)?,
        description: r.get(5)?,
        status,
        priority: r.get(7)?,
        // A role this version does not know reads as no hint.
        role: r.get::<_, Option<String>>(8)?.and_then(|s| s.parse().ok()),
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        depends_on: Vec::new(),
        created_at: r.get(10)?,
        created_by: r.get(11)?,
        updated_at: r.get(12)?,
        last_agent: r.get(13)?,
        last_updated_at: r.get(14)?,
        claimed_by: r.get(15)?,
        lease_expires_at: r.get(16)?,
        attempts: r.get(17)?,
        deleted_at: r.get(18)?,
        checks: serde_json::from_str(&r.get::<_, String>(19)?).unwrap_or_default(),
        protected: serde_json::from_str(&r.get::<_, String>(20)?).unwrap_or_default(),
        verified: (status == Status::Done).then_some(last_check == Some(true)),
    })
}

pub(super) fn load_task(conn: &rusqlite::Connection, id: i64) -> Result<Task> {
    let mut task = conn
        .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?
        .query_row([id], task_from_row)
        .optional()?
        .ok_or(Error::TaskNotFound(id))?;
    task.depends_on = conn
        .prepare_cached("SELECT depends_on FROM task_deps WHERE task_id = ?1 ORDER BY depends_on")?
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(task)
}

/// Trims and validates a tag list: no empty tags, no duplicates, order kept.
pub(super) fn clean_tags(tags: &[String]) -> Result<Vec<String>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for tag in tags {
        let tag = tag.trim();
        if tag.is_empty() {
            return Err(Error::InvalidInput("a tag cannot be empty".into()));
        }
        if seen.insert(tag.to_string()) {
            out.push(tag.to_string());
        }
    }
    Ok(out)
}

/// Checks and protected paths: trimmed, none empty, no repeats.
pub(super) fn clean_list(what: &str, items: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        let i = i.trim();
        if i.is_empty() {
            return Err(Error::InvalidInput(format!(
                "an empty {what}; give the command or path, or leave it out"
            )));
        }
        if !out.iter().any(|o| o == i) {
            out.push(i.to_string());
        }
    }
    Ok(out)
}

pub(super) fn clean_title(title: &str) -> Result<String> {
    let t = title.trim();
    if t.is_empty() {
        return Err(Error::InvalidInput("a task needs a title".into()));
    }
    Ok(t.to_string())
}

/// One row of the event log, before it is written.
pub(super) struct EventDraft<'a> {
    pub(super) project_id: i64,
    pub(super) task_id: Option<i64>,
    pub(super) kind: &'a str,
    pub(super) from: Option<Status>,
    pub(super) to: Option<Status>,
    pub(super) metadata: &'a Value,
}

pub(super) fn insert_event(
    tx: &Connection,
    e: &EventDraft<'_>,
    agent: &str,
    ts: &str,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO events (project_id, task_id, kind, from_status, to_status, agent, metadata, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        e.project_id,
        e.task_id,
        e.kind,
        e.from.map(Status::as_str),
        e.to.map(Status::as_str),
        agent,
        e.metadata.to_string(),
        ts
    ])?;
    Ok(())
}

pub(super) fn project_of(tx: &rusqlite::Connection, id: i64) -> Result<i64> {
    tx.prepare_cached("SELECT project_id FROM tasks WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .ok_or(Error::TaskNotFound(id))
}

/// External refs (`S1.2`) are unique within a project; `except` is the task
/// being edited.
pub(super) fn ensure_ref_free(
    tx: &rusqlite::Connection,
    project_id: i64,
    external_ref: &str,
    except: Option<i64>,
) -> Result<()> {
    let taken: Option<i64> = tx
        .prepare_cached(
            "SELECT id FROM tasks WHERE project_id = ?1 AND external_ref = ?2 AND id IS NOT ?3",
        )?
        .query_row(params![project_id, external_ref, except], |row| row.get(0))
        .optional()?;
    match taken {
        Some(other) => Err(Error::InvalidInput(format!(
            "task {other} of project {project_id} already has the reference {external_ref:?}; pick another"
        ))),
        None => Ok(()),
    }
}

pub(super) fn touch(tx: &Connection, id: i64, agent: &str, ts: &str) -> Result<()> {
    tx.prepare_cached(
        "UPDATE tasks SET updated_at = ?2, last_agent = ?3, last_updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![id, ts, agent])?;
    Ok(())
}
