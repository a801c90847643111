//! `llmclis plans …`, `llmclis issues …`, `llmclis research …`: the commands
//! agents run instead of editing the plan files by hand.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use super::render;
use super::{Ctx, emit};
use crate::app::docs;
use crate::app::tasks::{self, TaskRef};
use crate::app::types::Status;
use crate::error::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum PlansCmd {
    /// Import plans.md into the store (again: update by task id, never duplicate)
    Import {
        /// The plans file [default: ./plans.md]
        path: Option<PathBuf>,
        /// The project to import into [default: the one linked to this file, else a new one named by its title]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
    /// Turn a requirements document into plans.md stages and tasks (by
    /// the planner), after the file's own stages, then import them
    Parse {
        /// The requirements document (free-form text or markdown)
        document: PathBuf,
        /// The plans.md to add to (made when missing)
        #[arg(long, value_name = "PATH", default_value = "plans.md")]
        into: PathBuf,
        /// The project to import into [default: the one linked to the file, else a new one]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
    /// Mark a task done: tick it, record who and when, log it
    Done {
        /// S1.2, or a task id
        id: String,
        /// A note recorded with it
        #[arg(long, short)]
        note: Option<String>,
        /// The project [default: the one linked to ./plans.md]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
    /// Add a task to a stage
    Add {
        /// The stage's number (`## Stage N` in plans.md)
        #[arg(long)]
        stage: u32,
        /// The task's title
        #[arg(long)]
        title: String,
        /// A longer description
        #[arg(long, short, default_value = "")]
        description: String,
        /// The project [default: the one linked to ./plans.md]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
    /// Append a dated note to a task
    Note {
        /// S1.2, or a task id
        id: String,
        /// The note
        text: String,
        /// The project [default: the one linked to ./plans.md]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
    /// Set a task's status
    Status {
        /// S1.2, or a task id
        id: String,
        /// pending, in-progress, done or blocked
        #[arg(value_parser = super::closed::closed::<Status>(&super::closed::STATUSES))]
        status: Status,
        /// Why (for blocked: the issues.md entry's description)
        #[arg(long, short)]
        note: Option<String>,
        /// The project [default: the one linked to ./plans.md]
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
        /// The project [default: the one linked to ./plans.md]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IssuesCmd {
    /// Open an entry (KM-NNN) in issues.md
    Open {
        /// The entry's title
        #[arg(long)]
        title: String,
        /// The plans.md task it blocks (S1.2); linked both ways
        #[arg(long)]
        task: Option<String>,
        /// What is wrong and what was tried
        #[arg(long, short, default_value = "")]
        description: String,
        /// The project [default: the one linked to ./plans.md]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
    /// Close an entry, with a dated note
    Close {
        /// The entry's id (KM-001)
        id: String,
        /// A note recorded with the closing
        #[arg(long, short)]
        note: Option<String>,
        /// The project [default: the one linked to ./plans.md]
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
        /// The finding
        #[arg(long)]
        text: String,
        /// The project [default: the one linked to ./plans.md]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
}

pub fn plans(ctx: &Ctx, cmd: PlansCmd, out: &mut impl Write) -> Result<()> {
    let agent = ctx.agent.as_str();
    match cmd {
        PlansCmd::Parse {
            document,
            into,
            project_id,
        } => {
            let mut store = ctx.store()?;
            let req = crate::app::planning::ParsePrd {
                document,
                into,
                project_id,
            };
            let rt = crate::app::runtime()?;
            let p = rt.block_on(crate::app::planning::parse_prd(ctx, &mut store, req))?;
            emit(out, ctx.json, &p, || {
                format!(
                    "{} planned {} task(s) in stage(s) {} of {} (project {}); `llmclis task ready` shows what can start",
                    p.model,
                    p.tasks,
                    p.stages
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    p.plans,
                    p.project_id
                )
            })
        }
        PlansCmd::Import { path, project_id } => {
            let mut store = ctx.store()?;
            let path = path.unwrap_or_else(|| PathBuf::from("plans.md"));
            let r = crate::app::docs::import_plans(&mut store, &path, project_id, agent)?;
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
        } => set_status(ctx, id, Status::Done, note, project_id, out),
        PlansCmd::Status {
            id,
            status,
            note,
            project_id,
        } => set_status(ctx, id, status, note, project_id, out),
        PlansCmd::Note {
            id,
            text,
            project_id,
        } => {
            let mut store = ctx.store()?;
            let req = tasks::AddNote {
                id: TaskRef::Ref(id),
                text,
                project_id,
            };
            let view = tasks::add_note(ctx, &mut store, req)?;
            emit(out, ctx.json, &view, || render::note_added(&view))
        }
        PlansCmd::Add {
            stage,
            title,
            description,
            project_id,
        } => {
            let mut store = ctx.store()?;
            let req = docs::AddPlanTask {
                stage,
                title,
                description,
                project_id,
            };
            let t = docs::add_plan_task(ctx, &mut store, req)?;
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
        PlansCmd::Check { path, against } => {
            let req = docs::CheckPlans {
                path: path.map(|p| p.to_string_lossy().into_owned()),
                against,
                project_id: None,
            };
            let check = docs::check_plans(ctx, req)?;
            emit(out, ctx.json, &check, || render::plans_check(&check))?;
            match check.problems() {
                0 => Ok(()),
                count => Err(Error::CheckFailed { count }),
            }
        }
        PlansCmd::Sync { project_id } => {
            let mut store = ctx.store()?;
            let r = docs::sync_plans(ctx, &mut store, docs::SyncPlans { project_id })?;
            emit(out, ctx.json, &r, || {
                format!(
                    "Synced project {}: {} task(s) written to its plan files.",
                    r.project_id, r.tasks_written
                )
            })
        }
    }
}

fn set_status(
    ctx: &Ctx,
    id: String,
    status: Status,
    note: Option<String>,
    project_id: Option<i64>,
    out: &mut impl Write,
) -> Result<()> {
    let mut store = ctx.store()?;
    let req = tasks::SetStatus {
        id: TaskRef::Ref(id),
        status,
        note,
        project_id,
    };
    let view = tasks::set_status(ctx, &mut store, req, "plans")?;
    emit(out, ctx.json, &view, || render::status_change(&view))
}

pub fn issues(ctx: &Ctx, cmd: IssuesCmd, out: &mut impl Write) -> Result<()> {
    let store = ctx.store()?;
    match cmd {
        IssuesCmd::Open {
            title,
            task,
            description,
            project_id,
        } => {
            let req = docs::OpenIssue {
                title,
                description,
                task,
                project_id,
            };
            let r = docs::open_issue(ctx, &store, req)?;
            emit(out, ctx.json, &r, || {
                let linked = r
                    .task
                    .as_deref()
                    .map(|t| format!(", linked from {t} in plans.md"))
                    .unwrap_or_default();
                format!("Opened {} in {}{linked}.", r.id, r.path)
            })
        }
        IssuesCmd::Close {
            id,
            note,
            project_id,
        } => {
            let req = docs::CloseIssue {
                id,
                note,
                project_id,
            };
            let r = docs::close_issue(ctx, &store, req)?;
            emit(out, ctx.json, &r, || {
                format!("Closed {} in {}.", r.id, r.path)
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
    let store = ctx.store()?;
    let req = docs::AddFinding {
        section,
        text,
        project_id,
    };
    let r = docs::add_finding(ctx, &store, req)?;
    emit(out, ctx.json, &r, || {
        format!("Added to {}#{}.", r.path, r.anchor)
    })
}
