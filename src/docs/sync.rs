//! The store and the plan files, kept in step: the store → files
//! direction (`import.rs` is files → store).
//!
//! - `follow`: store → files, for one task. Idempotent: it reconciles the
//!   file with the task's state (ticked box, Completed, Done log, notes,
//!   an issues.md entry while blocked), so running it twice changes nothing.
//! - `set_status`, `add_note`, `add_plan_task`: what the CLI, the TUI and the
//!   orchestrator call, so the files follow every change the same way.

use std::path::{Path, PathBuf};

use super::follow::Loc;
pub use super::follow::{FollowReport, follow};
pub use super::import::{ImportChange, ImportReport, import};
use super::plans::PlansDoc;
use super::{read_doc, stamp_now, update_file};
use crate::error::{Error, Result};
use crate::store::{NewTask, Note, Project, Status, Store, Task, Transition};

/// Sets a task's status in the store (with an optional note, one
/// transaction), then brings the plan files in line.
pub fn set_status(
    store: &mut Store,
    task_id: i64,
    status: Status,
    agent: &str,
    metadata: serde_json::Value,
    note: Option<&str>,
) -> Result<(Transition, FollowReport)> {
    preflight(store, task_id)?;
    let tr = store.mark_task_status_with_note(task_id, status, agent, metadata, note)?;
    let report = files_follow(store, &tr.task)?;
    Ok((tr, report))
}

/// Appends a note in the store and under the task's Notes in plans.md.
pub fn add_note(
    store: &mut Store,
    task_id: i64,
    text: &str,
    agent: &str,
) -> Result<(Note, FollowReport)> {
    preflight(store, task_id)?;
    let note = store.append_task_note(task_id, text, agent)?;
    let task = store.task(task_id)?;
    let report = files_follow(store, &task)?;
    Ok((note, report))
}

/// After a change to `task`: the project's pending plan-file edits (this
/// one, and any a killed process left). The store change is committed
/// already, so a file edit that cannot be written now (another program
/// changed the same lines) is reported as pending, not as a failure: the
/// command succeeded, and `plans sync` writes the edit later.
fn files_follow(store: &mut Store, task: &Task) -> Result<FollowReport> {
    let mut caught = super::catchup::catch_up(store, task.project_id)?;
    let mut report = caught.report_for(task.id).cloned().unwrap_or_default();
    // Another task's edit that cannot be written yet stays pending (doctor
    // and `plans check` show it); only this command's own edit is said.
    caught.failed.retain(|(t, _)| *t == task.id);
    match caught.into_result(task.project_id) {
        Ok(_) => {}
        Err(Error::Conflict { path, message }) => {
            report.plans = Some(path.to_string_lossy().into_owned());
            report.pending = Some(format!(
                "task {} is saved in the store; its edit of {} is pending: {message}",
                task.id,
                path.display()
            ));
        }
        Err(e) => return Err(e),
    }
    Ok(report)
}

/// Checks, before the store changes, that the task's plans.md can be read,
/// so a broken file stops the command whole.
fn preflight(store: &Store, task_id: i64) -> Result<()> {
    let task = store.task(task_id)?;
    let project = store.project(task.project_id)?;
    if let (Some(plans), Some(_)) = (
        project.plans_path.as_deref().map(Path::new),
        task.external_ref.as_deref().and_then(Loc::of),
    ) {
        PlansDoc::parse(&read_doc(plans)?, plans)?;
    }
    Ok(())
}

/// Adds a task to a stage of the project's plans.md and to the store, as a
/// subtask of the stage.
pub fn add_plan_task(
    store: &mut Store,
    project_id: i64,
    stage: u32,
    title: &str,
    description: &str,
    agent: &str,
) -> Result<Task> {
    let project = store.project(project_id)?;
    let plans = linked_plans(&project)?;
    let stamp = stamp_now();
    let taken: Vec<String> = store
        .tasks(Some(project_id), None)?
        .into_iter()
        .filter_map(|t| t.external_ref)
        .collect();
    let mut new_id = String::new();
    update_file(&plans, |text| {
        let doc = PlansDoc::parse(text, &plans)?;
        let (text, id) = doc.add_task(stage, title, description, &stamp, agent, &taken)?;
        new_id = id;
        Ok(PlansDoc::parse(&text, &plans)?.touch_metadata(&stamp, agent))
    })?;
    let parent = match store.task_by_ref(project_id, &format!("S{stage}"))? {
        Some(t) => Some(t.id),
        None => None,
    };
    store.create_task(
        NewTask {
            project_id,
            title: title.trim().to_string(),
            description: description.trim().to_string(),
            parent_id: parent,
            external_ref: Some(new_id),
            ..Default::default()
        },
        agent,
    )
}

/// The part of plans.md a task was imported from (its item, or its stage's
/// section), for the agents working on it. `None` when the project has no
/// plans.md, the task no ref, or the file no longer holds it.
pub fn plan_section(project: &Project, external_ref: Option<&str>) -> Option<String> {
    let plans = PathBuf::from(project.plans_path.as_deref()?);
    let loc = Loc::of(external_ref?)?;
    let text = std::fs::read_to_string(&plans).ok()?;
    let doc = PlansDoc::parse(&text, &plans).ok()?;
    let range = match &loc {
        Loc::Task(id) | Loc::Check(id, _) => doc.task(id)?.item.clone(),
        Loc::Stage(n) => doc.stage(*n)?.section.clone(),
    };
    Some(text[range].trim().to_string())
}

/// The plans file a project is linked to, or an error that says how to link one.
pub fn linked_plans(project: &Project) -> Result<PathBuf> {
    project.plans_path.as_deref().map(PathBuf::from).ok_or_else(|| {
        Error::InvalidInput(format!(
            "project {} has no plans.md linked; run `llmclis plans import PATH --project-id {}`",
            project.id, project.id
        ))
    })
}

/// Writes the project's pending edits (stamped as when they were made), then
/// runs `follow` for every linked task; returns how many changed a file.
pub fn sync_project(store: &mut Store, project_id: i64, agent: &str) -> Result<usize> {
    let project = store.project(project_id)?;
    linked_plans(&project)?;
    let caught = super::catchup::catch_up(store, project_id)?.into_result(project_id)?;
    let mut changed = caught.written();
    for t in store.tasks(Some(project_id), None)? {
        if t.external_ref.is_some() && follow(store, t.id, agent, None)?.plans_changed {
            changed += 1;
        }
    }
    Ok(changed)
}
