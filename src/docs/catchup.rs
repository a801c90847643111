//! The plan files catching up with the store. Every status change and note
//! of a linked task leaves a row in the store's doc outbox (a trigger, same
//! transaction); `catch_up` reconciles those tasks' lines in plans.md and
//! issues.md and marks the rows applied. It runs right after a change and
//! again at the start of the next command on the project, so a process
//! killed between its commit and its file write loses nothing: the next one
//! writes what it could not. `drift` compares the file with the store for
//! `doctor` and `plans check`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::follow::{FollowReport, Loc, follow_as, local_stamp, note_written};
use super::plans::PlansDoc;
use super::read_doc;
use crate::error::{Error, Result};
use crate::store::{Status, Store};

/// What `catch_up` did.
#[derive(Debug, Default)]
pub struct CatchUp {
    /// Each task brought up to date, with what changed in the files.
    pub applied: Vec<(i64, FollowReport)>,
    /// Tasks whose edit could not be applied (a broken file, a conflict);
    /// their rows stay pending.
    pub failed: Vec<(i64, Error)>,
}

impl CatchUp {
    pub fn report_for(&self, task_id: i64) -> Option<&FollowReport> {
        self.applied
            .iter()
            .find(|(t, _)| *t == task_id)
            .map(|(_, r)| r)
    }

    /// How many files changed.
    pub fn written(&self) -> usize {
        self.applied.iter().filter(|(_, r)| r.plans_changed).count()
    }

    /// The first failure as an error that says nothing is lost and what to
    /// run once it is fixed.
    pub fn into_result(mut self, project_id: i64) -> Result<CatchUp> {
        if self.failed.is_empty() {
            return Ok(self);
        }
        let n = self.failed.len();
        let (task, e) = self.failed.remove(0);
        Err(lagging(project_id, task, n, e))
    }
}

fn lagging(project_id: i64, task: i64, n: usize, e: Error) -> Error {
    let (path, detail) = match e {
        Error::Document {
            path,
            line,
            message,
        } => (
            path.clone(),
            format!("{}:{line}: {message}", path.display()),
        ),
        Error::Conflict { path, message } => (path, message),
        other => (PathBuf::new(), other.to_string()),
    };
    Error::Conflict {
        path,
        message: format!(
            "the plan files lag the store for {n} task(s) (task {task} first): {detail}. Nothing is lost: the store has the change and the edit stays pending; once the file is fixed, `llmclis plans sync --project-id {project_id}` (or any command on the project) writes it"
        ),
    }
}

/// Applies the project's pending plan-file edits, oldest first. Each task's
/// lines are reconciled with its state in the store, stamped with the time
/// and agent of its newest change, so a late write reads as an on-time one.
/// Applying an edit the file already shows changes nothing.
pub fn catch_up(store: &mut Store, project_id: i64) -> Result<CatchUp> {
    let mut out = CatchUp::default();
    for p in store.pending_doc_edits(project_id)? {
        let task = store.task(p.task_id)?;
        let reason = if task.status == Status::Blocked {
            store.note_of_last_status_change(p.task_id)?
        } else {
            None
        };
        let stamp = local_stamp(&p.created_at);
        match follow_as(store, p.task_id, &p.agent, reason.as_deref(), &stamp) {
            Ok(report) => {
                store.mark_doc_edits_applied(p.task_id, p.last_id)?;
                out.applied.push((p.task_id, report));
            }
            Err(e) => {
                tracing::warn!(task = p.task_id, error = %e, "plan-file edit stays pending");
                out.failed.push((p.task_id, e));
            }
        }
    }
    Ok(out)
}

/// `catch_up` for every project with pending edits; failures are left
/// pending and counted, never raised (for starts of the board and runs).
pub fn catch_up_all(store: &mut Store) -> Result<(usize, usize)> {
    let projects: Vec<i64> = store
        .projects()?
        .into_iter()
        .filter(|p| p.plans_path.is_some())
        .map(|p| p.id)
        .collect();
    let (mut applied, mut failed) = (0, 0);
    for p in projects {
        if store.pending_doc_edit_count(Some(p))? == 0 {
            continue;
        }
        let c = catch_up(store, p)?;
        applied += c.applied.len();
        failed += c.failed.len();
    }
    Ok((applied, failed))
}

/// A task whose state in the store the plan file does not show.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub task_id: i64,
    pub external_ref: String,
    /// The task's status in the store.
    pub store: String,
    /// What the file shows instead.
    pub file: String,
    pub line: usize,
}

/// Where plans.md disagrees with the store: boxes ticked or not, notes the
/// file lacks. Tasks whose ref left the file are not drift (the import
/// closed them).
pub fn drift(store: &Store, project_id: i64) -> Result<Vec<Drift>> {
    let project = store.project(project_id)?;
    let Some(plans) = project.plans_path.as_deref().map(Path::new) else {
        return Ok(vec![]);
    };
    let text = read_doc(plans)?;
    let doc = PlansDoc::parse(&text, plans)?;
    let mut out = Vec::new();
    for t in store.tasks(Some(project_id), None)? {
        let Some((r, loc)) = t
            .external_ref
            .as_deref()
            .and_then(|r| Some((r, Loc::of(r)?)))
        else {
            continue;
        };
        let done = t.status == Status::Done;
        let mut found = |file: String, line: usize| {
            out.push(Drift {
                task_id: t.id,
                external_ref: r.to_string(),
                store: t.status.as_str().to_string(),
                file,
                line,
            })
        };
        match &loc {
            Loc::Task(id) => {
                let Some(pt) = doc.task(id) else { continue };
                if pt.checkbox.is_some() && pt.checked != done {
                    found(box_word(pt.checked), pt.line);
                    continue;
                }
                if let Some(why) = stamp_drift(store, t.id, pt, &text)? {
                    found(why, pt.line);
                    continue;
                }
                let missing = unwritten_notes(store, t.id, &text[pt.item.clone()])?;
                if missing > 0 {
                    found(format!("{missing} note(s) missing"), pt.line);
                }
            }
            Loc::Stage(n) => {
                if let Some(stage) = doc.stage(*n) {
                    let source = stage.notes.clone().map_or("", |r| &text[r]);
                    let missing = unwritten_notes(store, t.id, source)?;
                    if missing > 0 {
                        found(format!("{missing} stage note(s) missing"), stage.line);
                        continue;
                    }
                }
                let Some(entry) = doc.roadmap_entry(*n) else {
                    continue;
                };
                if let Some((ticked, _)) = entry.checkbox.as_ref()
                    && *ticked != done
                {
                    found(box_word(*ticked), entry.line);
                }
            }
            Loc::Check(id, slug) => {
                let Some(item) = doc
                    .task(id)
                    .and_then(|pt| pt.checklist.iter().find(|c| &c.slug == slug))
                else {
                    continue;
                };
                if item.checked != done {
                    found(box_word(item.checked), item.line);
                }
            }
        }
    }
    Ok(out)
}

/// How many of the task's notes in the store `source` lacks.
fn unwritten_notes(store: &Store, task_id: i64, source: &str) -> Result<usize> {
    Ok(store
        .notes(task_id)?
        .iter()
        .filter(|n| !note_written(source, n))
        .count())
}

/// A done task whose Completed field names another agent or time than
/// the store's own done event (a late write stamped by its writer): what
/// the file says, for the drift. Read only: the file's history keeps its
/// stamps, so a person corrects it if it matters.
fn stamp_drift(
    store: &Store,
    task_id: i64,
    pt: &super::plans::PlanTask,
    text: &str,
) -> Result<Option<String>> {
    let Some(field) = pt.field("Completed").filter(|_| pt.checked) else {
        return Ok(None);
    };
    // The source, code spans and all: "`2026-…` by `agent`".
    let source = &text[field.value_range.clone()];
    let spans: Vec<&str> = source.split('`').skip(1).step_by(2).collect();
    let (Some(when), Some(who)) = (spans.first(), spans.get(1)) else {
        return Ok(None);
    };
    let Some(done) = store
        .events(task_id)?
        .into_iter()
        .rfind(|e| e.kind == "status" && e.to_status == Some(Status::Done))
    else {
        return Ok(None);
    };
    // Ticked in the file by a person and imported: the file's own stamp
    // is the truth there, not the import's.
    if done.metadata.get("via").and_then(|v| v.as_str()) == Some("plans import") {
        return Ok(None);
    }
    let instant = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t.trim())
            .ok()
            .map(|t| t.timestamp())
    };
    // Within a few seconds: older versions stamped when they wrote.
    let same_time = match (instant(when), instant(&done.created_at)) {
        (Some(a), Some(b)) => (a - b).abs() <= 5,
        // A stamp that is not a time is not this check's business.
        _ => true,
    };
    if same_time && *who == done.agent {
        return Ok(None);
    }
    Ok(Some(format!(
        "completed `{when}` by `{who}`, but the store's done event is `{}` by `{}` (a late write took its writer's stamp; correct the line by hand if it matters)",
        super::follow::local_stamp(&done.created_at),
        done.agent
    )))
}

fn box_word(ticked: bool) -> String {
    if ticked { "[x]" } else { "[ ]" }.to_string()
}
