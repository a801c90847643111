//! The orchestrator: which task to work on, and the role pipeline that
//! works on it. Decisions are pure functions over data; the
//! store and the model servers stay at the edges.

pub mod context;
pub mod fit;
mod indexer;
mod land;
pub mod machine;
pub mod progress;
mod recover;
mod rollup;
pub mod routing;
pub mod run;
pub mod schedule;
mod shared;
pub mod split;
pub mod step;

use serde::Serialize;

use crate::error::Result;
use crate::store::{StatusCounts, Store, Task};

/// One step of a dry run: the task that would be worked on.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub step: usize,
    pub task_id: i64,
    pub external_ref: Option<String>,
    pub title: String,
    pub priority: i64,
    pub role: Option<crate::role::Role>,
    pub parent_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub project_id: i64,
    pub max_steps: usize,
    pub steps: Vec<PlannedStep>,
    /// The project as it is now, before the simulated steps.
    pub counts: StatusCounts,
    /// Pending tasks the run would not reach: over max_steps, or waiting on
    /// something that is blocked or in progress elsewhere.
    pub left_pending: usize,
}

/// The tasks `orchestrate` would work on, in order, assuming each one
/// succeeds (so the tasks waiting on it unblock). Reads the store, writes
/// nothing, calls no model.
pub fn dry_run(store: &Store, project_id: i64, max_steps: usize) -> Result<DryRun> {
    let tasks = store.tasks(Some(project_id), None)?;
    let counts = store.status_counts(Some(project_id))?;
    let mut board = schedule::Board::new(tasks.iter().map(schedule::Node::from_task));
    let by_id: std::collections::HashMap<i64, &Task> = tasks.iter().map(|t| (t.id, t)).collect();
    let mut steps = Vec::new();
    while steps.len() < max_steps {
        let Some(id) = board.pick_next() else { break };
        board.complete(id);
        let t = by_id[&id];
        steps.push(PlannedStep {
            step: steps.len() + 1,
            task_id: t.id,
            external_ref: t.external_ref.clone(),
            title: t.title.clone(),
            priority: t.priority,
            role: t.role,
            parent_id: t.parent_id,
        });
    }
    Ok(DryRun {
        project_id,
        max_steps,
        left_pending: board.pending(),
        steps,
        counts,
    })
}
