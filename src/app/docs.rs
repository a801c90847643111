//! The plan files as operations: plans.md (import, add, check, sync),
//! issues.md (open, close) and research.md (add). Each edit is an atomic
//! rewrite under the file's lock (`docs::update_file`) that keeps history.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Context;
use crate::docs::catchup::Drift;
use crate::docs::check::{self, Violation};
use crate::docs::issues::IssuesDoc;
use crate::docs::plans::PlansDoc;
use crate::docs::research::ResearchDoc;
use crate::docs::{read_doc, stamp_now, sync, update_file};
use crate::error::{Error, Result};
use crate::fsutil::create_atomic;
use crate::store::{Project, Store, Task};

/// The project a plans command is about: `project_id`, else the one linked
/// to ./plans.md, else the only linked project.
pub fn resolve_project(store: &Store, project_id: Option<i64>) -> Result<Project> {
    if let Some(id) = project_id {
        return store.project(id);
    }
    if let Ok(here) = std::fs::canonicalize("plans.md")
        && let Some(p) = store.project_by_plans_path(&here.to_string_lossy())?
    {
        return Ok(p);
    }
    let linked: Vec<Project> = store
        .projects()?
        .into_iter()
        .filter(|p| p.plans_path.is_some())
        .collect();
    match linked.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::InvalidInput(
            "no project is linked to a plans.md; run `llmclis plans import [PATH]` first".into(),
        )),
        many => {
            let ids: Vec<String> = many.iter().map(|p| p.id.to_string()).collect();
            Err(Error::InvalidInput(format!(
                "several projects have a plans.md ({}); pass a project id",
                ids.join(", ")
            )))
        }
    }
}

/// Where issues.md and research.md live: beside the project's plans.md
/// with a project id, else the current directory.
fn docs_dir(store: &Store, project_id: Option<i64>) -> Result<PathBuf> {
    match project_id {
        Some(id) => {
            let plans = sync::linked_plans(&store.project(id)?)?;
            Ok(plans.parent().map(Path::to_path_buf).unwrap_or_default())
        }
        None => Ok(PathBuf::from(".")),
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddPlanTask {
    /// The stage number (Stage 2 → 2).
    pub stage: u32,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub project_id: Option<i64>,
}

/// Adds a task to a stage of plans.md and to the queue.
pub fn add_plan_task(ctx: &Context, store: &mut Store, req: AddPlanTask) -> Result<Task> {
    let project = resolve_project(store, req.project_id)?;
    sync::add_plan_task(
        store,
        project.id,
        req.stage,
        &req.title,
        &req.description,
        &ctx.agent,
    )
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncPlans {
    pub project_id: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Synced {
    pub project_id: i64,
    pub tasks_written: usize,
}

/// Writes every task's state from the store into its plan files.
pub fn sync_plans(ctx: &Context, store: &mut Store, req: SyncPlans) -> Result<Synced> {
    let project = resolve_project(store, req.project_id)?;
    let tasks_written = sync::sync_project(store, project.id, &ctx.agent)?;
    Ok(Synced {
        project_id: project.id,
        tasks_written,
    })
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckPlans {
    /// The plans file [default: the project's plans.md, else ./plans.md].
    pub path: Option<String>,
    /// The earlier version: a file, or a git revision [default: HEAD when in git].
    pub against: Option<String>,
    /// Check this project's plans.md.
    pub project_id: Option<i64>,
}

/// Whether a plans.md kept the history of an earlier version, and where it
/// and the store disagree.
#[derive(Debug, Serialize)]
pub struct PlansCheck {
    pub path: String,
    /// What it was compared with; null when there was nothing to compare.
    pub against: Option<String>,
    pub tasks: usize,
    pub violations: Vec<Violation>,
    /// The project of the database linked to this file.
    pub project_id: Option<i64>,
    pub drift: Vec<Drift>,
    pub pending_edits: i64,
}

impl PlansCheck {
    /// Problems found: history broken, or the file behind the store.
    pub fn problems(&self) -> usize {
        self.violations.len() + self.drift.len() + self.pending_edits as usize
    }
}

/// Read only: `problems()` says whether the check failed.
pub fn check_plans(ctx: &Context, req: CheckPlans) -> Result<PlansCheck> {
    let path = match (req.path, req.project_id) {
        (Some(p), _) => PathBuf::from(p),
        (None, Some(id)) => sync::linked_plans(&ctx.store()?.project(id)?)?,
        (None, None) => PathBuf::from("plans.md"),
    };
    let text = read_doc(&path)?;
    let new = PlansDoc::parse(&text, &path)?;
    let (earlier, label) = match req.against {
        Some(a) if Path::new(&a).is_file() => (Some(read_doc(Path::new(&a))?), a),
        Some(rev) => match git_show(&path, &rev) {
            Some(t) => (Some(t), rev),
            None => {
                return Err(Error::InvalidInput(format!(
                    "--against {rev}: neither a file nor a git revision that has {}",
                    path.display()
                )));
            }
        },
        None => match git_show(&path, "HEAD") {
            Some(t) => (Some(t), "HEAD".to_string()),
            None => (None, String::new()),
        },
    };
    let violations = match &earlier {
        Some(old) => check::compare(&PlansDoc::parse(old, Path::new(&label))?, &new),
        None => Vec::new(),
    };
    let (drift, pending_edits, project_id) = store_drift(ctx, &path)?;
    Ok(PlansCheck {
        path: path.display().to_string(),
        against: earlier.map(|_| label),
        tasks: new.tasks().count(),
        violations,
        project_id,
        drift,
        pending_edits,
    })
}

/// Where the file and the store disagree, when a project of the database is
/// linked to it: (drift, tasks with pending edits, the project). Read only.
fn store_drift(ctx: &Context, path: &Path) -> Result<(Vec<Drift>, i64, Option<i64>)> {
    if !Path::new(&ctx.paths.db).exists() {
        return Ok((vec![], 0, None));
    }
    let Ok(canonical) = std::fs::canonicalize(path) else {
        return Ok((vec![], 0, None));
    };
    let store = ctx.store()?;
    let Some(project) = store.project_by_plans_path(&canonical.to_string_lossy())? else {
        return Ok((vec![], 0, None));
    };
    let drift = crate::docs::catchup::drift(&store, project.id)?;
    let pending = store.pending_doc_edit_count(Some(project.id))?;
    Ok((drift, pending, Some(project.id)))
}

/// The file as it was at a git revision, or None when git has no such
/// revision or path (or git is missing).
fn git_show(path: &Path, rev: &str) -> Option<String> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name()?.to_string_lossy().into_owned();
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .arg("show")
        .arg(format!("{rev}:./{name}"))
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if output.status.success() {
        String::from_utf8(output.stdout).ok()
    } else {
        None
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenIssue {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// The plans.md task it blocks (S1.2, or a task id); linked both ways.
    pub task: Option<String>,
    pub project_id: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct IssueOpened {
    pub id: String,
    pub anchor: String,
    pub path: String,
    /// The plans.md task linked to it.
    pub task: Option<String>,
}

/// Opens an entry (KM-NNN) in issues.md, linked from its plans.md task.
pub fn open_issue(ctx: &Context, store: &Store, req: OpenIssue) -> Result<IssueOpened> {
    let agent = ctx.agent.as_str();
    let stamp = stamp_now();
    let dir = docs_dir(store, req.project_id)?;
    let path = dir.join("issues.md");
    // A task given by store id is written by its ref.
    let task_ref = match &req.task {
        Some(t) if t.trim().parse::<i64>().is_ok() => {
            let found = store.task(t.trim().parse().unwrap_or_default())?;
            Some(found.external_ref.ok_or_else(|| {
                Error::InvalidInput(format!("task {t} has no plans.md id (like S1.2) to link"))
            })?)
        }
        other => other.clone(),
    };
    let plans = dir.join("plans.md");
    if let Some(r) = &task_ref {
        let text = read_doc(&plans).map_err(|_| {
            Error::InvalidInput(format!(
                "--task {r}: there is no {} to link it in",
                plans.display()
            ))
        })?;
        if PlansDoc::parse(&text, &plans)?.task(r).is_none() {
            return Err(Error::InvalidInput(format!(
                "--task {r}: {} has no such task",
                plans.display()
            )));
        }
    }
    create_atomic(
        &path,
        crate::docs::issues::template(&stamp, agent).as_bytes(),
    )?;
    let mut opened = (String::new(), String::new());
    update_file(&path, |text| {
        let doc = IssuesDoc::parse(text, &path)?;
        let (new, id, anchor) = doc.open(
            &req.title,
            task_ref.as_deref(),
            &req.description,
            &stamp,
            agent,
        )?;
        opened = (id, anchor);
        Ok(IssuesDoc::parse(&new, &path)?.touch_metadata(&stamp, agent))
    })?;
    let (id, anchor) = opened;
    if let Some(r) = &task_ref {
        let link = format!("issues.md#{anchor}");
        update_file(&plans, |text| {
            let doc = PlansDoc::parse(text, &plans)?;
            let t = doc.add_link(r, "Issues", &link)?;
            Ok(PlansDoc::parse(&t, &plans)?.touch_metadata(&stamp, agent))
        })?;
    }
    Ok(IssueOpened {
        id,
        anchor,
        path: path.display().to_string(),
        task: task_ref,
    })
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseIssue {
    /// The entry, like KM-001.
    pub id: String,
    /// The dated note it closes with [default: "closed"].
    pub note: Option<String>,
    pub project_id: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct IssueClosed {
    pub id: String,
    pub status: &'static str,
    pub path: String,
}

pub fn close_issue(ctx: &Context, store: &Store, req: CloseIssue) -> Result<IssueClosed> {
    let agent = ctx.agent.as_str();
    let stamp = stamp_now();
    let path = docs_dir(store, req.project_id)?.join("issues.md");
    let note = req.note.unwrap_or_else(|| "closed".to_string());
    let mut closed = String::new();
    update_file(&path, |text| {
        let doc = IssuesDoc::parse(text, &path)?;
        let issue = doc.issue(&req.id).ok_or_else(|| {
            Error::InvalidInput(format!("{} has no entry {}", path.display(), req.id))
        })?;
        closed = issue.id.clone();
        let new = doc.set_status(&issue.id, "closed", &note, &stamp, agent)?;
        Ok(IssuesDoc::parse(&new, &path)?.touch_metadata(&stamp, agent))
    })?;
    Ok(IssueClosed {
        id: closed,
        status: "closed",
        path: path.display().to_string(),
    })
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddFinding {
    /// A section title or anchor (created when missing).
    pub section: String,
    pub text: String,
    pub project_id: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct FindingAdded {
    pub section: String,
    pub anchor: String,
    pub path: String,
}

/// Appends a dated finding to a section of research.md.
pub fn add_finding(ctx: &Context, store: &Store, req: AddFinding) -> Result<FindingAdded> {
    if req.text.trim().is_empty() {
        return Err(Error::InvalidInput("--text cannot be empty".into()));
    }
    let path = docs_dir(store, req.project_id)?.join("research.md");
    let stamp = stamp_now();
    create_atomic(&path, b"# Research\n")?;
    let mut anchor = String::new();
    update_file(&path, |t| {
        let doc = ResearchDoc::parse(t, &path)?;
        let (new, a) = doc.add(&req.section, &req.text, &stamp, &ctx.agent);
        anchor = a;
        Ok(ResearchDoc::parse(&new, &path)?.touch_metadata(&stamp, &ctx.agent))
    })?;
    Ok(FindingAdded {
        section: req.section,
        anchor,
        path: path.display().to_string(),
    })
}

/// Imports a plans.md into the store (`plans import`): its stages and
/// tasks as a project, the file linked to it.
pub use crate::docs::sync::import as import_plans;

/// Writes every plan-file edit the store has pending, for every project
/// (the board's start): how many were written and how many failed.
pub use crate::docs::catchup::catch_up_all;
