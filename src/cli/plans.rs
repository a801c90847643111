//! `llmclis plans …`, `llmclis issues …`, `llmclis research …`: the commands
//! agents run instead of editing the plan files by hand.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;

use super::render::{self, NoteView, StatusView};
use super::{Ctx, emit};
use crate::docs::issues::IssuesDoc;
use crate::docs::plans::PlansDoc;
use crate::docs::research::ResearchDoc;
use crate::docs::{check, read_doc, stamp_now, sync, update_file};
use crate::error::{Error, Result};
use crate::fsutil::create_atomic;
use crate::store::{Project, Status, Store, Task};

#[derive(Debug, Subcommand)]
pub enum PlansCmd {
    /// Import plans.md into the store (again: update by task id, never duplicate)
    Import {
        /// The plans file [default: ./plans.md]
        path: Option<PathBuf>,
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
    /// Mark a task done: tick it, record who and when, log it
    Done {
        /// S1.2, or a task id
        id: String,
        #[arg(long, short)]
        note: Option<String>,
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
    /// Add a task to a stage
    Add {
        #[arg(long)]
        stage: u32,
        #[arg(long)]
        title: String,
        #[arg(long, short, default_value = "")]
        description: String,
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
    /// Append a dated note to a task
    Note {
        id: String,
        text: String,
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
    /// Set a task's status: pending, in-progress, done, blocked
    Status {
        id: String,
        status: String,
        /// Why (for blocked: the issues.md entry's description)
        #[arg(long, short)]
        note: Option<String>,
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
    /// Check that a plans.md kept the history of an earlier version
    Check {
        /// The plans file [default: ./plans.md]
        path: Option<PathBuf>,
        /// The earlier version: a file, or a git revision [default: HEAD when in git]
        #[arg(long, value_name = "FILE|GIT_REV")]
        against: Option<String>,
    },
    /// Write every task's state from the store into its plans.md
    Sync {
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IssuesCmd {
    /// Open an entry (KM-NNN) in issues.md
    Open {
        #[arg(long)]
        title: String,
        /// The plans.md task it blocks (S1.2); linked both ways
        #[arg(long)]
        task: Option<String>,
        #[arg(long, short, default_value = "")]
        description: String,
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
    /// Close an entry, with a dated note
    Close {
        id: String,
        #[arg(long, short)]
        note: Option<String>,
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ResearchCmd {
    /// Append a dated finding to a section (created when missing)
    Add {
        /// A section title or anchor
        #[arg(long)]
        section: String,
        #[arg(long)]
        text: String,
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
}

/// The project a plans command is about: `--project-id`, else the one linked
/// to ./plans.md, else the only linked project.
fn resolve_project(store: &Store, project_id: Option<i64>) -> Result<Project> {
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
                "several projects have a plans.md ({}); pass --project-id",
                ids.join(", ")
            )))
        }
    }
}

/// `S1.2` (an id in the project's plans.md) or a task id.
fn resolve_task(store: &Store, project: &Project, id: &str) -> Result<Task> {
    if let Ok(n) = id.trim().parse::<i64>() {
        return store.task(n);
    }
    store.task_by_ref(project.id, id.trim())?.ok_or_else(|| {
        Error::InvalidInput(format!(
            "project {} has no task {id}; `llmclis task list --project-id {}` shows the refs",
            project.id, project.id
        ))
    })
}

/// Where issues.md and research.md live: beside the project's plans.md with
/// `--project-id`, else the current directory.
fn docs_dir(store: &Store, project_id: Option<i64>) -> Result<PathBuf> {
    match project_id {
        Some(id) => {
            let plans = sync::linked_plans(&store.project(id)?)?;
            Ok(plans.parent().map(Path::to_path_buf).unwrap_or_default())
        }
        None => Ok(PathBuf::from(".")),
    }
}

pub fn plans(ctx: &Ctx, cmd: PlansCmd, out: &mut impl Write) -> Result<()> {
    let agent = ctx.agent.as_str();
    match cmd {
        PlansCmd::Import { path, project_id } => {
            let mut store = ctx.store()?;
            let path = path.unwrap_or_else(|| PathBuf::from("plans.md"));
            let r = sync::import(&mut store, &path, project_id, agent)?;
            emit(out, ctx.json, &r, || {
                let mut s = String::new();
                if r.caught_up > 0 {
                    s.push_str(&format!(
                        "Wrote {} pending change(s) from the store into {} first.\n",
                        r.caught_up, r.path
                    ));
                }
                // New tasks are only counted: a first import creates them all.
                for c in r.changes.iter().filter(|c| c.action != "created") {
                    s.push_str(&format!(
                        "  {:<8} {} (task {}): {}\n",
                        c.action, c.external_ref, c.task_id, c.why
                    ));
                }
                s.push_str(&format!(
                    "Imported {} into project {}: {} created, {} updated, {} kept from the store, {} retired, {} unchanged.\nNext: llmclis orchestrate --project-id {} --dry-run",
                    r.path, r.project_id, r.created, r.updated, r.kept, r.retired, r.unchanged, r.project_id
                ));
                s
            })
        }
        PlansCmd::Done {
            id,
            note,
            project_id,
        } => set_status(ctx, &id, Status::Done, note.as_deref(), project_id, out),
        PlansCmd::Status {
            id,
            status,
            note,
            project_id,
        } => {
            let status: Status = status.parse()?;
            set_status(ctx, &id, status, note.as_deref(), project_id, out)
        }
        PlansCmd::Note {
            id,
            text,
            project_id,
        } => {
            let mut store = ctx.store()?;
            let project = resolve_project(&store, project_id)?;
            let task = resolve_task(&store, &project, &id)?;
            let (note, files) = sync::add_note(&mut store, task.id, &text, agent)?;
            let view = NoteView { note, files };
            emit(out, ctx.json, &view, || render::note_added(&view))
        }
        PlansCmd::Add {
            stage,
            title,
            description,
            project_id,
        } => {
            let mut store = ctx.store()?;
            let project = resolve_project(&store, project_id)?;
            let t =
                sync::add_plan_task(&mut store, project.id, stage, &title, &description, agent)?;
            emit(out, ctx.json, &t, || {
                format!(
                    "Added {} – {} to Stage {stage} (task {} in project {}).",
                    t.external_ref.as_deref().unwrap_or("?"),
                    t.title,
                    t.id,
                    t.project_id
                )
            })
        }
        PlansCmd::Check { path, against } => check_cmd(ctx, path, against, out),
        PlansCmd::Sync { project_id } => {
            let mut store = ctx.store()?;
            let project = resolve_project(&store, project_id)?;
            let changed = sync::sync_project(&mut store, project.id, agent)?;
            let value = json!({"project_id": project.id, "tasks_written": changed});
            emit(out, ctx.json, &value, || {
                format!(
                    "Synced project {}: {changed} task(s) written to its plan files.",
                    project.id
                )
            })
        }
    }
}

fn set_status(
    ctx: &Ctx,
    id: &str,
    status: Status,
    note: Option<&str>,
    project_id: Option<i64>,
    out: &mut impl Write,
) -> Result<()> {
    let mut store = ctx.store()?;
    let project = resolve_project(&store, project_id)?;
    let task = resolve_task(&store, &project, id)?;
    let (tr, files) = sync::set_status(
        &mut store,
        task.id,
        status,
        &ctx.agent,
        json!({"via": "plans"}),
        note,
    )?;
    let view = StatusView {
        previous_status: tr.from,
        changed: tr.changed(),
        task: tr.task,
        files,
    };
    emit(out, ctx.json, &view, || render::status_change(&view))
}

fn check_cmd(
    ctx: &Ctx,
    path: Option<PathBuf>,
    against: Option<String>,
    out: &mut impl Write,
) -> Result<()> {
    let path = path.unwrap_or_else(|| PathBuf::from("plans.md"));
    let text = read_doc(&path)?;
    let new = PlansDoc::parse(&text, &path)?;
    let (earlier, label) = match against {
        Some(a) if Path::new(&a).is_file() => (Some(read_doc(Path::new(&a))?), a),
        Some(rev) => match git_show(&path, &rev)? {
            Some(t) => (Some(t), rev),
            None => {
                return Err(Error::InvalidInput(format!(
                    "--against {rev}: neither a file nor a git revision that has {}",
                    path.display()
                )));
            }
        },
        None => match git_show(&path, "HEAD").ok().flatten() {
            Some(t) => (Some(t), "HEAD".to_string()),
            None => (None, String::new()),
        },
    };
    let violations = match &earlier {
        Some(old) => check::compare(&PlansDoc::parse(old, Path::new(&label))?, &new),
        None => Vec::new(),
    };
    let shown = path.display().to_string();
    let (drift, pending, linked) = store_drift(ctx, &path)?;
    let value = json!({
        "path": shown,
        "against": earlier.as_ref().map(|_| label.clone()),
        "tasks": new.tasks().count(),
        "violations": violations,
        "project_id": linked,
        "drift": drift,
        "pending_edits": pending,
    });
    emit(out, ctx.json, &value, || {
        let mut s = String::new();
        if let Some(p) = linked {
            for d in &drift {
                s.push_str(&format!(
                    "{shown}:{}: {} is {} in the store, the file shows {}\n",
                    d.line, d.external_ref, d.store, d.file
                ));
            }
            if pending > 0 {
                s.push_str(&format!(
                    "{pending} task(s) have store changes not yet written to the plan files\n"
                ));
            }
            if pending > 0 || !drift.is_empty() {
                s.push_str(&format!(
                    "the store is the truth: `llmclis plans sync --project-id {p}` writes it into the file (or `llmclis plans import {shown} --project-id {p}` takes the file's edits)\n"
                ));
            }
        }
        for v in &violations {
            if v.in_earlier {
                s.push_str(&format!(
                    "{shown} ({label}, line {}): {}\n",
                    v.line, v.message
                ));
            } else {
                s.push_str(&format!("{shown}:{}: {}\n", v.line, v.message));
            }
        }
        match (&earlier, violations.len()) {
            (None, _) => s.push_str(&format!(
                "{shown}: parses, {} task(s); no earlier version to compare (pass --against)",
                new.tasks().count()
            )),
            (Some(_), 0) => s.push_str(&format!(
                "{shown}: keeps all history of {label} ({} task(s))",
                new.tasks().count()
            )),
            (Some(_), n) => s.push_str(&format!(
                "{n} violation(s) of the history rules against {label}"
            )),
        }
        s
    })?;
    let problems = violations.len() + drift.len() + pending as usize;
    if problems == 0 {
        Ok(())
    } else {
        Err(Error::CheckFailed { count: problems })
    }
}

/// Where the file and the store disagree, when a project of the database is
/// linked to it: (drift, tasks with pending edits, the project). Read only.
fn store_drift(
    ctx: &Ctx,
    path: &Path,
) -> Result<(Vec<crate::docs::catchup::Drift>, i64, Option<i64>)> {
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
fn git_show(path: &Path, rev: &str) -> Result<Option<String>> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .arg("show")
        .arg(format!("{rev}:./{name}"))
        .stderr(std::process::Stdio::null())
        .output();
    match output {
        Ok(o) if o.status.success() => Ok(String::from_utf8(o.stdout).ok()),
        _ => Ok(None),
    }
}

pub fn issues(ctx: &Ctx, cmd: IssuesCmd, out: &mut impl Write) -> Result<()> {
    let agent = ctx.agent.as_str();
    let stamp = stamp_now();
    match cmd {
        IssuesCmd::Open {
            title,
            task,
            description,
            project_id,
        } => {
            let store = ctx.store()?;
            let dir = docs_dir(&store, project_id)?;
            let path = dir.join("issues.md");
            create_atomic(
                &path,
                crate::docs::issues::template(&stamp, agent).as_bytes(),
            )?;
            // A task given by store id is written by its ref.
            let task_ref = match &task {
                Some(t) if t.parse::<i64>().is_ok() => {
                    let found = store.task(t.parse().unwrap_or_default())?;
                    Some(found.external_ref.ok_or_else(|| {
                        Error::InvalidInput(format!(
                            "task {t} has no plans.md id (like S1.2) to link"
                        ))
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
            let mut opened = (String::new(), String::new());
            update_file(&path, |text| {
                let doc = IssuesDoc::parse(text, &path)?;
                let (new, id, anchor) =
                    doc.open(&title, task_ref.as_deref(), &description, &stamp, agent)?;
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
            let value = json!({"id": id, "anchor": anchor, "path": path.display().to_string(), "task": task_ref});
            emit(out, ctx.json, &value, || {
                let linked = task_ref
                    .as_deref()
                    .map(|r| format!(", linked from {r} in plans.md"))
                    .unwrap_or_default();
                format!("Opened {id} in {}{linked}.", path.display())
            })
        }
        IssuesCmd::Close {
            id,
            note,
            project_id,
        } => {
            let store = ctx.store()?;
            let path = docs_dir(&store, project_id)?.join("issues.md");
            let note = note.unwrap_or_else(|| "closed".to_string());
            let mut closed = String::new();
            update_file(&path, |text| {
                let doc = IssuesDoc::parse(text, &path)?;
                let issue = doc.issue(&id).ok_or_else(|| {
                    Error::InvalidInput(format!("{} has no entry {id}", path.display()))
                })?;
                closed = issue.id.clone();
                let new = doc.set_status(&issue.id, "closed", &note, &stamp, agent)?;
                Ok(IssuesDoc::parse(&new, &path)?.touch_metadata(&stamp, agent))
            })?;
            let value =
                json!({"id": closed, "status": "closed", "path": path.display().to_string()});
            emit(out, ctx.json, &value, || {
                format!("Closed {closed} in {}.", path.display())
            })
        }
    }
}

pub fn research(ctx: &Ctx, cmd: ResearchCmd, out: &mut impl Write) -> Result<()> {
    let ResearchCmd::Add {
        section,
        text,
        project_id,
    } = cmd;
    if text.trim().is_empty() {
        return Err(Error::InvalidInput("--text cannot be empty".into()));
    }
    let store = ctx.store()?;
    let path = docs_dir(&store, project_id)?.join("research.md");
    let stamp = stamp_now();
    create_atomic(&path, b"# Research\n")?;
    let mut anchor = String::new();
    update_file(&path, |t| {
        let doc = ResearchDoc::parse(t, &path)?;
        let (new, a) = doc.add(&section, &text, &stamp, &ctx.agent);
        anchor = a;
        Ok(ResearchDoc::parse(&new, &path)?.touch_metadata(&stamp, &ctx.agent))
    })?;
    let value = json!({"section": section, "anchor": anchor, "path": path.display().to_string()});
    emit(out, ctx.json, &value, || {
        format!("Added to {}#{anchor}.", path.display())
    })
}
