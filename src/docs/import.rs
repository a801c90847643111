//! plans.md → the store. Stages become parent tasks (`S1`), tasks keep
//! their ids (`S1.1`), checklist items become subtasks (`S1.1/slug`).
//! Re-importing updates by external ref and never duplicates.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use super::follow::{Loc, follow};
use super::plans::PlansDoc;
use super::read_doc;
use crate::error::{Error, Result};
use crate::store::{NewTask, Project, Status, Store, TaskPatch};

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
