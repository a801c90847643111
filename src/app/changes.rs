//! A finished task's proposed change (writes off): print it as a patch,
//! apply it to the project's tree once it still applies and its checks
//! pass on it (optionally as a commit), or reject it (the task goes back to
//! pending with the reason). The CLI, MCP and the board call these.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Context;
use super::tasks::TaskRef;
use crate::docs::sync;
use crate::error::{Error, Result};
use crate::store::{Status, Store, Task};
use crate::tools::Toolbox;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskDiff {
    pub id: TaskRef,
    /// The project a plans.md id is in.
    pub project_id: Option<i64>,
}

/// A task's proposed change.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub task_id: i64,
    /// A unified diff `git apply` takes, from the project's root.
    pub patch: String,
    /// The files it changes, relative to the root.
    pub files: Vec<String>,
}

/// The change the task's last done step proposed (or made).
pub fn diff(store: &Store, req: TaskDiff) -> Result<Diff> {
    let id = req.id.resolve(store, req.project_id)?;
    let patch = store.last_diff(id)?.filter(|d| !d.trim().is_empty());
    let Some(patch) = patch else {
        return Err(Error::InvalidInput(format!(
            "task {id} has no proposed change: no done step of it changed a file (`llmclis task show {id}` shows its steps)"
        )));
    };
    Ok(Diff {
        task_id: id,
        files: files_of(&patch),
        patch,
    })
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyChange {
    pub id: TaskRef,
    /// Commit the change in the project's git repository, its message
    /// naming the task.
    #[serde(default)]
    pub commit: bool,
    /// The project a plans.md id is in.
    pub project_id: Option<i64>,
}

/// What applying did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub task_id: i64,
    pub files: Vec<String>,
    /// The checks that passed on the change before it was written.
    pub checks: Vec<String>,
    /// The commit made, with `commit`.
    pub commit: Option<String>,
}

/// Applies a task's proposed change to its project's tree: only when every
/// file still applies (all or none) and its checks pass on the tree with
/// the change; with `commit`, as a commit of those files alone.
pub fn apply(ctx: &Context, store: &mut Store, req: ApplyChange) -> Result<Applied> {
    let d = diff(
        store,
        TaskDiff {
            id: req.id,
            project_id: req.project_id,
        },
    )?;
    let task = store.task(d.task_id)?;
    let root = root_of(store, &task)?;
    let tools = &ctx.config.tools;
    let timeout = Duration::from_secs(tools.timeout_secs.max(1));
    // First on a copy: the patch must apply whole, and the checks pass.
    let mut trial = Toolbox::new(&root, false, BTreeMap::new(), timeout, tools.output_cap)
        .map_err(Error::InvalidInput)?;
    let out = trial.call("apply_patch", &json!({ "patch": d.patch }));
    if let Some(o) = out.filter(|o| !o.ok) {
        return Err(Error::ChangeRefused(format!(
            "task {}'s change no longer applies to {}: {}; `llmclis task reject {}` sends it back to be done again",
            task.id,
            root.display(),
            o.output.trim(),
            task.id
        )));
    }
    let checks = tools.checks_for(&task);
    for c in &checks {
        let r = trial.run_check(c);
        if !r.passed {
            return Err(Error::ChangeRefused(format!(
                "task {}'s change applies, but its check `{c}` fails on it (nothing was written): {}",
                task.id,
                crate::tools::check::tail(r.output.trim(), 600)
            )));
        }
    }
    if req.commit && git(&root, &["var", "GIT_COMMITTER_IDENT"]).is_err() {
        return Err(Error::InvalidInput(format!(
            "git has no name and email to commit with in {}: set them (`git config user.name …`, `git config user.email …`) and run it again (nothing was written)",
            root.display()
        )));
    }
    if req.commit && !is_clean(&root, &d.files)? {
        return Err(Error::ChangeRefused(format!(
            "{} has uncommitted changes to {}; commit or stash them first (nothing was written)",
            root.display(),
            d.files.join(", ")
        )));
    }
    let mut tree = Toolbox::new(&root, true, BTreeMap::new(), timeout, tools.output_cap)
        .map_err(Error::InvalidInput)?;
    let out = tree.call("apply_patch", &json!({ "patch": d.patch }));
    if let Some(o) = out.filter(|o| !o.ok) {
        return Err(Error::ChangeRefused(format!(
            "task {}'s change did not apply: {}",
            task.id,
            o.output.trim()
        )));
    }
    let commit = if req.commit {
        match commit(&root, &task, &d.files) {
            Ok(c) => Some(c),
            Err(e) => {
                // All or nothing: the files go back as they were.
                let _ = tree.revert(&d.files);
                return Err(e);
            }
        }
    } else {
        None
    };
    let note = match &commit {
        Some(c) => format!(
            "Its change was applied to the tree and committed as {c} by {}.",
            ctx.agent
        ),
        None => format!("Its change was applied to the tree by {}.", ctx.agent),
    };
    sync::add_note(store, task.id, &note, &ctx.agent)?;
    Ok(Applied {
        task_id: task.id,
        files: d.files,
        checks,
        commit,
    })
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectChange {
    pub id: TaskRef,
    /// Why: the next attempt reads it.
    pub reason: Option<String>,
    /// The project a plans.md id is in.
    pub project_id: Option<i64>,
}

/// Sends a done task's change back: the task is pending again with the
/// reason as a note, so the next run does it again and reads why.
pub fn reject(ctx: &Context, store: &mut Store, req: RejectChange) -> Result<Task> {
    let id = req.id.resolve(store, req.project_id)?;
    let task = store.task(id)?;
    if task.deleted_at.is_some() {
        return Err(Error::InvalidInput(format!(
            "task {id} was deleted: there is no change of it to reject"
        )));
    }
    if task.status != Status::Done {
        return Err(Error::InvalidInput(format!(
            "task {id} is {}, not done: only a finished change can be rejected",
            task.status
        )));
    }
    let note = format!(
        "Its change was rejected by {}: {}",
        ctx.agent,
        req.reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .unwrap_or("no reason given")
    );
    let (tr, _) = sync::set_status(
        store,
        id,
        Status::Pending,
        &ctx.agent,
        json!({"via": "task reject"}),
        Some(&note),
    )?;
    Ok(tr.task)
}

fn root_of(store: &Store, task: &Task) -> Result<std::path::PathBuf> {
    let project = store.project(task.project_id)?;
    project.root.map(std::path::PathBuf::from).ok_or_else(|| {
        Error::InvalidInput(format!(
            "project {} has no root directory to apply the change in",
            project.id
        ))
    })
}

/// The files a unified diff changes (its `+++ b/…` lines, or `--- a/…` for
/// a deleted file).
fn files_of(patch: &str) -> Vec<String> {
    let mut files: Vec<String> = Vec::new();
    let mut old: Option<String> = None;
    for line in patch.lines() {
        if let Some(p) = line.strip_prefix("--- ") {
            old = p.trim().strip_prefix("a/").map(str::to_string);
        } else if let Some(p) = line.strip_prefix("+++ ") {
            let new = p.trim().strip_prefix("b/").map(str::to_string);
            if let Some(f) = new.or(old.take())
                && !files.contains(&f)
            {
                files.push(f);
            }
        }
    }
    files
}

fn git(root: &Path, args: &[&str]) -> Result<String> {
    Ok(crate::worktree::git(root, args)?)
}

/// Whether `files` have no uncommitted changes (a commit of the task's
/// change must not sweep the user's edits in).
fn is_clean(root: &Path, files: &[String]) -> Result<bool> {
    let mut args = vec!["status", "--porcelain", "--"];
    args.extend(files.iter().map(String::as_str));
    Ok(git(root, &args)?.is_empty())
}

/// Commits `files` alone, the message naming the task, with a trailer a
/// script can read; the new commit's id.
fn commit(root: &Path, task: &Task, files: &[String]) -> Result<String> {
    let mut add = vec!["add", "-A", "--"];
    add.extend(files.iter().map(String::as_str));
    git(root, &add)?;
    let subject = crate::worktree::Subject::new(
        task.id,
        task.project_id,
        task.external_ref.as_deref(),
        &task.title,
    );
    let message = crate::worktree::commit_message(&subject, None, &[]);
    let mut args = vec!["commit", "--no-verify", "-m", &message, "--"];
    args.extend(files.iter().map(String::as_str));
    git(root, &args)?;
    git(root, &["rev-parse", "--short", "HEAD"])
}
