//! What the board reads and changes: a project's columns, one task's whole
//! story, the gateway's recent calls, the project shown last, the edit form
//! saved all or nothing, and the change counter that tells it another
//! process wrote. The board's worker holds a store handle and calls these.

use std::path::PathBuf;

use serde_json::json;

use super::Context;
use crate::error::Result;
use crate::memory::MemoryRecord;
use crate::store::{
    Event, ModelCall, Note, Project, RunStep, StatusCounts, Store, Task, TaskPatch, ToolCallRecord,
};

/// A project's board: its tasks and the count per status.
pub struct Board {
    pub project: Project,
    pub tasks: Vec<Task>,
    pub counts: StatusCounts,
}

pub fn board(db: &Store, project_id: i64) -> Result<Board> {
    Ok(Board {
        project: db.project(project_id)?,
        tasks: db.tasks(Some(project_id), None)?,
        counts: db.status_counts(Some(project_id))?,
    })
}

/// Everything the task detail view shows.
#[derive(Debug, Clone, Default)]
pub struct TaskDetail {
    pub task: Option<Task>,
    pub subtasks: Vec<Task>,
    pub notes: Vec<Note>,
    pub events: Vec<Event>,
    pub steps: Vec<RunStep>,
    pub calls: Vec<ModelCall>,
    pub result: Option<String>,
    pub memories: Vec<MemoryRecord>,
    pub tool_calls: Vec<ToolCallRecord>,
    pub diff: Option<String>,
}

pub fn detail(db: &Store, id: i64) -> Result<TaskDetail> {
    Ok(TaskDetail {
        task: Some(db.task(id)?),
        subtasks: db.subtasks(id)?,
        notes: db.notes(id)?,
        events: db.events(id)?,
        steps: db.task_steps(id)?,
        calls: db.model_calls(id)?,
        result: db.last_result(id)?,
        memories: super::memory::for_task(db, id)?,
        tool_calls: db.tool_calls(id)?,
        diff: db.last_diff(id)?,
    })
}

/// The gateway's newest calls, newest first.
pub fn requests(db: &Store, limit: usize) -> Result<Vec<ModelCall>> {
    db.gateway_calls(limit)
}

/// A number that changes whenever another connection commits (SQLite's
/// `data_version`): the board reloads when it moves.
pub fn change_counter(db: &Store) -> Result<i64> {
    Ok(db
        .conn()
        .query_row("PRAGMA data_version", [], |r| r.get(0))?)
}

fn state_file(ctx: &Context) -> PathBuf {
    ctx.paths.data_dir.join("tui-state.json")
}

/// The project to open on: the one from where you stand (a plans.md or a
/// project root here or above, `[general] default_project`), else the one
/// shown last if it still exists, else the first.
pub fn start_project(ctx: &Context, db: &Store) -> Option<i64> {
    if let Ok(c) = super::here::project(ctx, db, None)
        && c.by != "only"
    {
        return Some(c.project_id);
    }
    let last = (|| {
        let text = std::fs::read_to_string(state_file(ctx)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let id = v.get("project_id")?.as_i64()?;
        db.project(id).ok().map(|p| p.id)
    })();
    last.or_else(|| db.projects().ok().and_then(|p| p.first().map(|p| p.id)))
}

/// Remembers the project shown, for the next start. Best effort: a board
/// that cannot write its state still works.
pub fn remember_project(ctx: &Context, project_id: i64) {
    let _ = crate::fsutil::write_atomic(
        &state_file(ctx),
        json!({"project_id": project_id}).to_string().as_bytes(),
    );
}

/// The edit form's fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Form {
    pub title: String,
    pub description: String,
    pub priority: Option<i64>,
    pub tags: Vec<String>,
    pub depends_on: Vec<i64>,
}

/// Saves the form's changes, all or nothing: fields, then dependencies
/// added and dropped.
pub fn save_form(ctx: &Context, db: &mut Store, id: i64, form: &Form) -> Result<()> {
    let old = db.task(id)?;
    let agent = ctx.agent.as_str();
    db.batch(|s| {
        let patch = TaskPatch {
            title: (form.title != old.title).then(|| form.title.clone()),
            description: (form.description != old.description).then(|| form.description.clone()),
            priority: form.priority.filter(|p| *p != old.priority),
            tags: (form.tags != old.tags).then(|| form.tags.clone()),
            ..Default::default()
        };
        if !patch.is_empty() {
            s.update_task(id, patch, agent)?;
        }
        for d in form
            .depends_on
            .iter()
            .filter(|d| !old.depends_on.contains(d))
        {
            s.add_dependency(id, *d, agent)?;
        }
        for d in old
            .depends_on
            .iter()
            .filter(|d| !form.depends_on.contains(d))
        {
            s.remove_dependency(id, *d, agent)?;
        }
        Ok(())
    })
}

/// What dead processes left behind: runs still marked running are closed,
/// plan-file edits still pending are written. Returns the edits that could
/// not be written (they stay pending).
pub fn recover(ctx: &Context, db: &mut Store) -> Result<usize> {
    for c in db.close_dead_runs(ctx.config.lease(), &ctx.agent)? {
        tracing::info!(run = c.run_id, why = %c.why, lost = c.lost_steps.len(), "closed a dead run");
    }
    let (applied, failed) = super::docs::catch_up_all(db)?;
    if applied > 0 {
        tracing::info!(applied, "wrote pending plan-file edits");
    }
    Ok(failed)
}
