//! The store and the plan files, kept in step.
//!
//! - `import`: plans.md → store. Stages become parent tasks (`S1`), tasks keep
//!   their ids (`S1.1`), checklist items become subtasks (`S1.1/slug`).
//!   Re-importing updates by external ref and never duplicates.
//! - `follow`: store → files, for one task. Idempotent: it reconciles the
//!   file with the task's state (ticked box, Completed, Done log, notes,
//!   an issues.md entry while blocked), so running it twice changes nothing.
//! - `set_status`, `add_note`, `add_plan_task`: what the CLI, the TUI and the
//!   orchestrator call, so the files follow every change the same way.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use super::issues::{self, IssuesDoc};
use super::plans::{PlansDoc, StageState, note_line};
use super::{Written, read_doc, stamp_now, update_file};
use crate::error::{Error, Result};
use crate::fsutil::create_atomic;
use crate::store::{NewTask, Note, Project, Status, Store, Task, TaskPatch, Transition};

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub project_id: i64,
    pub path: String,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Tasks whose ref vanished from the file, closed with a note.
    pub retired: usize,
    /// Tasks the file shows behind the store, whose newer state in the
    /// store was kept and written into the file instead.
    pub kept: usize,
    /// Plan-file edits still pending from before (a process that died
    /// between its commit and its file write), written before the import.
    pub caught_up: usize,
    /// What the import did to each task it changed or kept, and why.
    pub changes: Vec<ImportChange>,
}

/// One task the import changed, kept or retired.
#[derive(Debug, Clone, Serialize)]
pub struct ImportChange {
    pub task_id: i64,
    pub external_ref: String,
    /// created, updated, kept or retired.
    pub action: &'static str,
    pub why: String,
}

/// What `follow` did to the files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FollowReport {
    /// The plans file, when the task is linked to one.
    pub plans: Option<String>,
    pub plans_changed: bool,
    /// The issues.md entry opened or kept open for a blocked task.
    pub issue: Option<String>,
    /// Entries closed because the task is no longer blocked.
    pub closed_issues: Vec<String>,
    /// The store change is saved but the file edit could not be written
    /// (another program changed the same lines): why, and what writes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
}

/// Where a task's external ref points in plans.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Loc {
    Stage(u32),
    Task(String),
    Check(String, String),
}

impl Loc {
    /// Only the forms import writes: `S2`, `S2.1` (or deeper), `S2.1/slug`.
    /// Any other ref (`API/v2`) is the user's own and not in plans.md.
    pub(super) fn of(external_ref: &str) -> Option<Loc> {
        let (id, slug) = match external_ref.split_once('/') {
            Some((id, slug)) => (id, Some(slug)),
            None => (external_ref, None),
        };
        let parts: Vec<&str> = id.strip_prefix('S')?.split('.').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        match (parts.len(), slug) {
            (1, None) => parts[0].parse().ok().map(Loc::Stage),
            (n, None) if n > 1 => Some(Loc::Task(id.to_string())),
            (n, Some(slug)) if n > 1 && !slug.is_empty() => {
                Some(Loc::Check(id.to_string(), slug.to_string()))
            }
            _ => None,
        }
    }
}

fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::InvalidInput(format!(
                "no plans file at {}; pass the path of a plans.md",
                path.display()
            ))
        } else {
            Error::io(path, e)
        }
    })
}

/// Imports (or re-imports) a plans.md into a project: the given one, the one
/// already linked to this file, or a new one named after the file's title.
pub fn import(
    store: &mut Store,
    path: &Path,
    project_id: Option<i64>,
    agent: &str,
) -> Result<ImportReport> {
    let path = canonical(path)?;
    let shown = path.to_string_lossy().into_owned();
    // When the file was last saved, before anything here writes it: a
    // difference with the store is the file's news only if the file is
    // newer than the store's change.
    let saved_at = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map(|t| crate::store::format_time(t.into()))
        .map_err(|e| Error::io(&path, e))?;
    // The store's changes that never reached the file (a process killed
    // between its commit and its write) go in first, so a lagging file
    // never moves the store back.
    let linked = match project_id {
        Some(id) => Some(store.project(id)?).filter(|p| p.plans_path.as_deref() == Some(&shown)),
        None => store.project_by_plans_path(&shown)?,
    };
    let caught_up = match linked {
        Some(p) => super::catchup::catch_up(store, p.id)?
            .into_result(p.id)?
            .applied
            .len(),
        None => 0,
    };
    let text = read_doc(&path)?;
    let doc = PlansDoc::parse(&text, &path)?;
    // All of it or none: a failure half-way leaves the store as it was.
    let mut report = store.batch(|store| {
        // Read inside the write transaction: no other process's edit can
        // slip in after it and be taken for one of the import's own.
        let mark = store.last_doc_edit_id()?;
        let r = import_doc(store, &doc, &path, project_id, agent, &saved_at)?;
        // What the import wrote came from the file: nothing to write back.
        store.mark_project_doc_edits_applied(r.project_id, mark)?;
        Ok(r)
    })?;
    report.caught_up = caught_up;
    // Tasks whose newer state the store kept: the file learns it now.
    for c in report.changes.iter().filter(|c| c.action == "kept") {
        follow(store, c.task_id, agent, None)?;
    }
    Ok(report)
}

fn import_doc(
    store: &mut Store,
    doc: &PlansDoc,
    path: &Path,
    project_id: Option<i64>,
    agent: &str,
    saved_at: &str,
) -> Result<ImportReport> {
    let shown = path.to_string_lossy().into_owned();
    let project = match project_id {
        Some(id) => store.project(id)?,
        None => match store.project_by_plans_path(&shown)? {
            Some(p) => p,
            None => {
                let name = project_name(doc, path);
                if let Some(p) = store.project_by_name(&name)? {
                    return Err(Error::InvalidInput(format!(
                        "a project named {name:?} already exists (id {}); import into it with --project-id {}",
                        p.id, p.id
                    )));
                }
                let root = path.parent().map(|p| p.to_string_lossy().into_owned());
                store.create_project(
                    &name,
                    &format!("Imported from {shown}"),
                    root.as_deref(),
                    agent,
                )?
            }
        },
    };
    store.set_project_plans_path(project.id, Some(&shown), agent)?;
    let mut report = ImportReport {
        project_id: project.id,
        path: shown,
        ..Default::default()
    };
    for stage in &doc.stages {
        let done = doc
            .roadmap_entry(stage.number)
            .and_then(|r| r.checkbox.as_ref())
            .is_some_and(|(c, _)| *c);
        let stage_ref = format!("S{}", stage.number);
        let stage_id = upsert(
            store,
            &project,
            None,
            &stage_ref,
            &stage.title,
            &stage.goal,
            done,
            (agent, saved_at),
            &mut report,
        )?;
        for t in &stage.tasks {
            let task_id = upsert(
                store,
                &project,
                Some(stage_id),
                &t.id,
                &t.title,
                &t.description(),
                t.checked,
                (agent, saved_at),
                &mut report,
            )?;
            for c in &t.checklist {
                let r = format!("{}/{}", t.id, c.slug);
                upsert(
                    store,
                    &project,
                    Some(task_id),
                    &r,
                    &c.text,
                    "",
                    c.checked,
                    (agent, saved_at),
                    &mut report,
                )?;
            }
        }
    }
    links(store, doc, path, &project, agent, &mut report)?;
    // Refs of this file that are gone from it (a renamed checklist item, a
    // deleted task) would wait forever and hold their parent back: close
    // them, with a note that says why. Their history stays.
    let present: std::collections::HashSet<String> = doc
        .stages
        .iter()
        .flat_map(|s| {
            std::iter::once(format!("S{}", s.number)).chain(s.tasks.iter().flat_map(|t| {
                std::iter::once(t.id.clone())
                    .chain(t.checklist.iter().map(|c| format!("{}/{}", t.id, c.slug)))
            }))
        })
        .collect();
    for t in store.tasks(Some(project.id), None)? {
        let Some(r) = t.external_ref.as_deref() else {
            continue;
        };
        if Loc::of(r).is_some() && !present.contains(r) && t.status != Status::Done {
            store.mark_task_status_with_note(
                t.id,
                Status::Done,
                agent,
                json!({"via": "plans import", "file": report.path, "reason": "no longer in the file"}),
                Some(&format!("{r} is no longer in {}; closed by the import", report.path)),
            )?;
            report.retired += 1;
            report.changes.push(ImportChange {
                task_id: t.id,
                external_ref: r.to_string(),
                action: "retired",
                why: format!("no longer in the file; closed ({} before)", t.status),
            });
        }
    }
    Ok(report)
}

/// The tags and dependencies a task's fields state (`**Tags:** docs,
/// research`, `**Depends On:** S1.1, S1.2`): added to the store, never
/// removed there (the store may know more than the file says). A
/// dependency on a task the file does not have is an error at its line.
fn links(
    store: &mut Store,
    doc: &PlansDoc,
    path: &Path,
    project: &Project,
    agent: &str,
    report: &mut ImportReport,
) -> Result<()> {
    let list = |v: &str| -> Vec<String> {
        v.split([',', ';'])
            .map(|x| x.trim().trim_matches('`').trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    };
    for stage in &doc.stages {
        let r = format!("S{}", stage.number);
        let Some(task) = store.task_by_ref(project.id, &r)? else {
            continue;
        };
        let patch = TaskPatch {
            checks: stage.checks.clone().filter(|c| *c != task.checks),
            protected: stage.protected.clone().filter(|p| *p != task.protected),
            ..Default::default()
        };
        if !patch.is_empty() {
            store.update_task(task.id, patch, agent)?;
            report.changes.push(ImportChange {
                task_id: task.id,
                external_ref: r,
                action: "linked",
                why: "from the file: the stage's checks".into(),
            });
        }
    }
    for t in doc.stages.iter().flat_map(|s| &s.tasks) {
        let Some(task) = store.task_by_ref(project.id, &t.id)? else {
            continue;
        };
        let mut said = Vec::new();
        if let Some(f) = t.field("Tags") {
            let mut tags = task.tags.clone();
            for tag in list(&f.value) {
                if !tags.contains(&tag) {
                    said.push(format!("tag {tag}"));
                    tags.push(tag);
                }
            }
            if tags != task.tags {
                store.update_task(
                    task.id,
                    TaskPatch {
                        tags: Some(tags),
                        ..Default::default()
                    },
                    agent,
                )?;
            }
        }
        // Checks and protected paths: the file states them whole.
        let checks = doc.task_list_field(t, "Check");
        let protected = doc.task_list_field(t, "Protected");
        let patch = TaskPatch {
            checks: checks.filter(|c| *c != task.checks),
            protected: protected.filter(|p| *p != task.protected),
            ..Default::default()
        };
        if !patch.is_empty() {
            if let Some(c) = &patch.checks {
                said.push(format!("checks {}", super::plans::code_spans_of(c)));
            }
            if let Some(p) = &patch.protected {
                said.push(format!("protected {}", p.join(", ")));
            }
            store.update_task(task.id, patch, agent)?;
        }
        let deps = t
            .field("Depends On")
            .map(|f| list(&f.value))
            .unwrap_or_default();
        for r in deps {
            let Some(dep) = store.task_by_ref(project.id, &r)? else {
                return Err(Error::Document {
                    path: path.to_path_buf(),
                    line: t.line,
                    message: format!(
                        "{} depends on {r}, which is not a task of this file; write its id (S1.2) or remove it",
                        t.id
                    ),
                });
            };
            if store.add_dependency(task.id, dep.id, agent)? {
                said.push(format!("after {r}"));
            }
        }
        if !said.is_empty() {
            report.changes.push(ImportChange {
                task_id: task.id,
                external_ref: t.id.clone(),
                action: "linked",
                why: format!("from the file: {}", said.join(", ")),
            });
        }
    }
    Ok(())
}

/// `# llmclis – Plans` → `llmclis`; without a title, the directory's name.
fn project_name(doc: &PlansDoc, path: &Path) -> String {
    let from_title = doc.title.as_deref().map(|t| {
        let t = t.trim();
        for sep in [" – ", " — ", " - ", ": "] {
            if let Some((head, tail)) = t.rsplit_once(sep)
                && tail.trim().eq_ignore_ascii_case("plans")
            {
                return head.trim().to_string();
            }
        }
        t.to_string()
    });
    from_title
        .filter(|t| !t.is_empty())
        .or_else(|| {
            path.parent()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "plans".to_string())
}

#[allow(clippy::too_many_arguments)] // one row of the import: the fields of a task
fn upsert(
    store: &mut Store,
    project: &Project,
    parent: Option<i64>,
    external_ref: &str,
    title: &str,
    description: &str,
    done: bool,
    (agent, saved_at): (&str, &str),
    report: &mut ImportReport,
) -> Result<i64> {
    let meta = json!({"via": "plans import", "file": report.path});
    match store.task_by_ref(project.id, external_ref)? {
        None => {
            let t = store.create_task(
                NewTask {
                    project_id: project.id,
                    title: title.to_string(),
                    description: description.to_string(),
                    parent_id: parent,
                    external_ref: Some(external_ref.to_string()),
                    status: Some(if done { Status::Done } else { Status::Pending }),
                    ..Default::default()
                },
                agent,
            )?;
            report.created += 1;
            report.changes.push(ImportChange {
                task_id: t.id,
                external_ref: external_ref.to_string(),
                action: "created",
                why: format!("new in the file ({})", t.status),
            });
            Ok(t.id)
        }
        Some(t) => {
            let mut changed = Vec::new();
            let patch = TaskPatch {
                title: (t.title != title).then(|| title.to_string()),
                description: (t.description != description).then(|| description.to_string()),
                ..Default::default()
            };
            if !patch.is_empty() {
                if patch.title.is_some() {
                    changed.push("title edited in the file".to_string());
                }
                if patch.description.is_some() {
                    changed.push("description edited in the file".to_string());
                }
                store.update_task(t.id, patch, agent)?;
            }
            // The file says done or not done; the store keeps in-progress and
            // blocked, which the file cannot express.
            let target = match (done, t.status) {
                (true, s) if s != Status::Done => Some(Status::Done),
                (false, Status::Done) => Some(Status::Pending),
                _ => None,
            };
            if let Some(s) = target {
                // Only a file saved after the store's last change to this
                // task can move it; otherwise the file is behind.
                match store.last_status_change(t.id)? {
                    Some(at) if at.as_str() > saved_at => {
                        report.kept += 1;
                        report.changes.push(ImportChange {
                            task_id: t.id,
                            external_ref: external_ref.to_string(),
                            action: "kept",
                            why: format!(
                                "the file shows {}, but the store made it {} at {at}, after the file was saved ({saved_at}); the file is brought up to date",
                                if done { "done" } else { "not done" },
                                t.status
                            ),
                        });
                    }
                    _ => {
                        store.mark_task_status(t.id, s, agent, meta)?;
                        changed.push(format!(
                            "{} → {s}: the file was saved after the store's last change",
                            t.status
                        ));
                    }
                }
            }
            if changed.is_empty() {
                report.unchanged += 1;
            } else {
                report.updated += 1;
                report.changes.push(ImportChange {
                    task_id: t.id,
                    external_ref: external_ref.to_string(),
                    action: "updated",
                    why: changed.join("; "),
                });
            }
            Ok(t.id)
        }
    }
}

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

/// Whether plans.md still holds what `loc` points at.
fn present(doc: &PlansDoc, loc: &Loc) -> bool {
    match loc {
        Loc::Task(id) => doc.task(id).is_some(),
        Loc::Stage(n) => doc.stage(*n).is_some(),
        Loc::Check(id, slug) => doc
            .task(id)
            .is_some_and(|t| t.checklist.iter().any(|c| &c.slug == slug)),
    }
}

/// Brings the plan files in line with one task's state in the store,
/// stamped with the agent and time of its newest status change as the
/// store recorded it (its newest event when it never changed status), so
/// whoever writes the file, and whenever, a completion reads as made by
/// whoever made it. `agent` and now only for a task with no events.
pub fn follow(
    store: &Store,
    task_id: i64,
    agent: &str,
    reason: Option<&str>,
) -> Result<FollowReport> {
    let events = store.events(task_id)?;
    let newest = events
        .iter()
        .rev()
        .find(|e| e.kind == "status")
        .or(events.last());
    match newest {
        Some(e) => follow_as(
            store,
            task_id,
            &e.agent,
            reason,
            &local_stamp(&e.created_at),
        ),
        None => follow_as(store, task_id, agent, reason, &stamp_now()),
    }
}

/// `follow`, stamping the files with `stamp` (when the change was made).
pub(super) fn follow_as(
    store: &Store,
    task_id: i64,
    agent: &str,
    reason: Option<&str>,
    stamp: &str,
) -> Result<FollowReport> {
    let task = store.task(task_id)?;
    let project = store.project(task.project_id)?;
    let mut report = FollowReport::default();
    let (Some(plans), Some(loc)) = (
        project.plans_path.as_deref().map(PathBuf::from),
        task.external_ref.as_deref().and_then(Loc::of),
    ) else {
        return Ok(report);
    };
    report.plans = Some(plans.to_string_lossy().into_owned());
    // A task whose ref left the file (closed by the last import) has nothing
    // to follow; the store change stands on its own.
    if !present(&PlansDoc::parse(&read_doc(&plans)?, &plans)?, &loc) {
        return Ok(report);
    }
    let issues_path = plans.with_file_name("issues.md");
    let mut link: Option<String> = None;
    if let Loc::Task(id) = &loc {
        if task.status == Status::Blocked {
            let why = reason
                .map(str::to_string)
                .unwrap_or_else(|| format!("Marked blocked by {agent}."));
            let (km, anchor) =
                ensure_open_issue(&issues_path, id, &task.title, &why, stamp, agent)?;
            report.issue = Some(km);
            link = Some(format!("issues.md#{anchor}"));
        } else if issues_path.exists() {
            report.closed_issues = close_issues(&issues_path, id, task.status, stamp, agent)?;
        }
    }
    let notes = store.notes(task_id)?;
    let verified_by = store.verified_by(task_id)?;
    let written = update_file(&plans, |text| {
        reconcile(
            text,
            &plans,
            &task,
            &loc,
            &notes,
            &verified_by,
            link.as_deref(),
            stamp,
            agent,
        )
    })?;
    report.plans_changed = written != Written::Unchanged;
    Ok(report)
}

/// The plans.md text with one task's state applied.
#[allow(clippy::too_many_arguments)] // the task's whole state, passed once
fn reconcile(
    original: &str,
    path: &Path,
    task: &Task,
    loc: &Loc,
    notes: &[Note],
    verified_by: &[String],
    link: Option<&str>,
    stamp: &str,
    agent: &str,
) -> Result<String> {
    let parse = |t: &str| PlansDoc::parse(t, path);
    let missing = |what: &str| {
        Error::InvalidInput(format!(
            "{what} is no longer in {}; restore it or re-import with `llmclis plans import`",
            path.display()
        ))
    };
    let done = task.status == Status::Done;
    let mut text = original.to_string();
    match loc {
        Loc::Task(id) => {
            let doc = parse(&text)?;
            let t = doc.task(id).ok_or_else(|| missing(id))?;
            let stage = t.stage;
            if done && !t.checked {
                let verified = if verified_by.is_empty() {
                    String::new()
                } else {
                    format!(", verified by {}", super::plans::code_spans_of(verified_by))
                };
                let entry = format!(
                    "`{stamp}` – **{}** completed by `{agent}`{verified}.",
                    t.label_source
                );
                text = doc.complete_task(id, stamp, agent, verified_by)?;
                text = parse(&text)?.log_done(&entry);
            } else if !done && t.checked {
                text = doc.reopen_task(id, stamp, agent, task.status.as_str())?;
            }
            if let Some(link) = link {
                let doc = parse(&text)?;
                let t = doc.task(id).ok_or_else(|| missing(id))?;
                let linked = t
                    .field("Links")
                    .is_some_and(|f| f.children.iter().any(|(c, _)| c.contains(link)));
                if !linked {
                    text = doc.add_link(id, "Issues", link)?;
                }
            }
            // The checks and protected paths the store holds (a field the
            // file has and the store lacks is left for the next import).
            for (name, items) in [("Check", &task.checks), ("Protected", &task.protected)] {
                let doc = parse(&text)?;
                let t = doc.task(id).ok_or_else(|| missing(id))?;
                let written = doc.task_list_field(t, name).unwrap_or_default();
                if !items.is_empty() && written != *items {
                    text = doc.set_list_field(id, name, items)?;
                }
            }
            for n in notes {
                let doc = parse(&text)?;
                let t = doc.task(id).ok_or_else(|| missing(id))?;
                if !note_written(&doc.text[t.item.clone()], n) {
                    text = doc.add_note(id, &local_stamp(&n.created_at), &n.agent, &n.text)?;
                }
            }
            if text != original {
                text = parse(&text)?.touch_task(id, stamp, agent)?;
            }
            let doc = parse(&text)?;
            if let Some(s) = doc.stage(stage) {
                let all_done = !s.tasks.is_empty() && s.tasks.iter().all(|t| t.checked);
                let started = all_done
                    || s.tasks.iter().any(|t| t.checked)
                    || matches!(task.status, Status::InProgress | Status::Blocked);
                if all_done {
                    text = doc.set_stage_state(stage, StageState::Done);
                } else if started {
                    text = doc.set_stage_state(stage, StageState::InProgress);
                }
            }
        }
        Loc::Stage(n) => {
            // The stage task's own notes, under the stage's **Notes:**.
            for note in notes {
                let doc = parse(&text)?;
                let s = doc
                    .stage(*n)
                    .ok_or_else(|| missing(&format!("Stage {n}")))?;
                let written = s
                    .notes
                    .as_ref()
                    .is_some_and(|r| note_written(&doc.text[r.clone()], note));
                if !written {
                    text = doc.add_stage_note(
                        *n,
                        &local_stamp(&note.created_at),
                        &note.agent,
                        &note.text,
                    )?;
                }
            }
            let doc = parse(&text)?;
            let s = doc
                .stage(*n)
                .ok_or_else(|| missing(&format!("Stage {n}")))?;
            let ticked = doc
                .roadmap_entry(*n)
                .and_then(|r| r.checkbox.as_ref())
                .is_some_and(|(c, _)| *c);
            let title = s.title.clone();
            if done && !ticked {
                let before = text.clone();
                text = doc.set_roadmap(*n, true);
                text = parse(&text)?.set_stage_state(*n, StageState::Done);
                // Logged when this marked the stage done; a stage with no box
                // or Status line to mark is logged once, not on every sync.
                let logged = doc.done_log.as_ref().is_some_and(|l| {
                    l.entries
                        .iter()
                        .any(|(e, _)| e.contains(&format!("Stage {n} ")) && e.contains("completed"))
                });
                if text != before || (s.status_line.is_none() && !logged) {
                    text = parse(&text)?.log_done(&format!(
                        "`{stamp}` – **Stage {n} {} {title}** completed by `{agent}`.",
                        doc.dash
                    ));
                }
            } else if !done && ticked {
                text = doc.set_roadmap(*n, false);
                text = parse(&text)?.set_stage_state(*n, StageState::InProgress);
            } else if task.status == Status::InProgress {
                text = doc.set_stage_state(*n, StageState::InProgress);
            }
        }
        Loc::Check(id, slug) => {
            let doc = parse(&text)?;
            let t = doc.task(id).ok_or_else(|| missing(id))?;
            let item = t
                .checklist
                .iter()
                .find(|c| &c.slug == slug)
                .ok_or_else(|| missing(&format!("checklist item {slug} of {id}")))?;
            if item.checked != done {
                text = doc.set_check_item(id, slug, done)?;
                text = parse(&text)?.touch_task(id, stamp, agent)?;
            }
        }
    }
    if text != original {
        text = parse(&text)?.touch_metadata(stamp, agent);
    }
    Ok(text)
}

/// Whether a store note is already under the task: a line with its agent and
/// text whose timestamp is the same instant (to the second), whatever offset
/// it was written with.
pub(super) fn note_written(task_source: &str, n: &Note) -> bool {
    let tail = note_line("", &n.agent, &n.text);
    let tail = tail.trim_start_matches("`` ");
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(&n.created_at) else {
        return false;
    };
    task_source.lines().any(|line| {
        let Some(head) = line.trim_start().strip_prefix("- `") else {
            return false;
        };
        let Some((stamp, rest)) = head.split_once('`') else {
            return false;
        };
        rest.trim_start() == tail
            && chrono::DateTime::parse_from_rfc3339(stamp)
                .is_ok_and(|t| t.timestamp() == at.timestamp())
    })
}

/// A store time (`2026-11-21T03:05:00.123Z`) as the files write it.
pub(super) fn local_stamp(store_time: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(store_time)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_else(|_| store_time.to_string())
}

/// The open issues.md entry for a blocked task, opened when there is none.
fn ensure_open_issue(
    path: &Path,
    task_ref: &str,
    title: &str,
    why: &str,
    stamp: &str,
    agent: &str,
) -> Result<(String, String)> {
    create_atomic(path, issues::template(stamp, agent).as_bytes())?;
    let mut found = None;
    update_file(path, |text| {
        let doc = IssuesDoc::parse(text, path)?;
        if let Some(i) = doc.issues.iter().find(|i| i.is_open() && i.links(task_ref)) {
            found = Some((i.id.clone(), i.anchor.clone()));
            return Ok(text.to_string());
        }
        let (new, id, anchor) = doc.open(
            &format!("{task_ref} blocked: {title}"),
            Some(task_ref),
            why,
            stamp,
            agent,
        )?;
        found = Some((id, anchor));
        Ok(IssuesDoc::parse(&new, path)?.touch_metadata(stamp, agent))
    })?;
    Ok(found.expect("the transform ran"))
}

/// Closes the open entries linked to a task that is no longer blocked.
fn close_issues(
    path: &Path,
    task_ref: &str,
    status: Status,
    stamp: &str,
    agent: &str,
) -> Result<Vec<String>> {
    let mut closed = Vec::new();
    update_file(path, |text| {
        closed.clear();
        let mut text = text.to_string();
        loop {
            let doc = IssuesDoc::parse(&text, path)?;
            let Some(i) = doc.issues.iter().find(|i| {
                i.is_open()
                    && i.links(task_ref)
                    && i.title.starts_with(&format!("{task_ref} blocked"))
            }) else {
                break;
            };
            closed.push(i.id.clone());
            text = doc.set_status(
                &i.id,
                "closed",
                &format!("task {task_ref} is {status} now"),
                stamp,
                agent,
            )?;
        }
        if !closed.is_empty() {
            text = IssuesDoc::parse(&text, path)?.touch_metadata(stamp, agent);
        }
        Ok(text)
    })?;
    Ok(closed)
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
