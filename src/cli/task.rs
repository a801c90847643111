//! `llmclis task …`: add, list, show, the ready queue, claims, status,
//! notes, dependencies, edits, and a done task's change.

use std::io::Write;

use clap::Subcommand;

use serde_json::json;

use super::{Ctx, ProjectId, closed, emit, render, scope, text_arg};
use crate::app::types::{Role, Status};
use crate::app::{changes, tasks};
use crate::error::{Error, Result};

#[derive(Debug, Subcommand)]
pub(super) enum TaskCmd {
    /// Add a task
    Add {
        #[command(flatten)]
        project: ProjectId,
        /// The task's title
        title: String,
        /// A longer description; `-` reads it from stdin
        #[arg(long, short, default_value = "")]
        description: String,
        /// low, medium, high, critical or a number (higher first) [default: medium]
        #[arg(long, short, value_name = "P")]
        priority: Option<String>,
        /// A task that must be done first (repeatable)
        #[arg(long = "depends-on", visible_alias = "depends_on", value_name = "ID")]
        depends_on: Vec<i64>,
        /// Make this a subtask of ID
        #[arg(long, value_name = "ID")]
        parent: Option<i64>,
        /// A tag (repeatable)
        #[arg(long = "tag", value_name = "T")]
        tags: Vec<String>,
        /// The role that should work on it (the rules decide when unset)
        #[arg(long, value_name = "ROLE", value_parser = closed::closed::<Role>(&crate::app::types::ROLES))]
        role: Option<Role>,
        /// An external reference such as S1.2
        #[arg(long = "ref", value_name = "REF")]
        external_ref: Option<String>,
        /// A command that must pass on the task's change before it is done,
        /// run with `sh -c` in the project's root (repeatable)
        #[arg(long = "check", value_name = "CMD")]
        check: Vec<String>,
        /// A path or glob the change must not touch, e.g. tests/** (repeatable)
        #[arg(long = "protect", value_name = "PATH")]
        protect: Vec<String>,
    },
    /// List tasks, subtasks under their parents
    List {
        /// Only this project's tasks [default: the project from where you
        /// stand, else every project]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
        /// Only tasks with this status
        #[arg(long, value_name = "S", value_parser = closed::closed::<Status>(&closed::STATUSES))]
        status: Option<Status>,
        /// Only tasks with this tag (repeatable: any of them)
        #[arg(long = "tag", value_name = "T")]
        tags: Vec<String>,
    },
    /// The ready queue: what `next` would give, in that order
    Ready {
        /// Only this project [default: the project from where you stand,
        /// else every project]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
        /// Only tasks with this tag (repeatable: any of them)
        #[arg(long = "tag", value_name = "T")]
        tags: Vec<String>,
        /// Only tasks for this role (its hint, or what the registry's rules
        /// would route it to)
        #[arg(long, value_name = "ROLE", value_parser = closed::closed::<Role>(&crate::app::types::ROLES))]
        role: Option<Role>,
        /// At most this many
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
    },
    /// Take a task with a lease: no other agent gets it while the lease runs
    Claim {
        /// The task's id
        id: i64,
        /// Lease length in seconds [default: config queue.lease_seconds]
        #[arg(long, value_name = "SECONDS")]
        lease: Option<u64>,
    },
    /// Ask the planner to split a task now, as a run's planner would; the
    /// subtasks are written the same way
    Expand {
        /// The task's id
        id: i64,
        /// At most this many subtasks (2 to 12)
        #[arg(long, value_name = "N")]
        max: Option<usize>,
    },
    /// Give a claimed task back: pending again, for any agent
    Release {
        /// The task's id
        id: i64,
        /// Release it even though another agent's lease still runs
        #[arg(long)]
        force: bool,
    },
    /// Show a task with its dependencies, subtasks, notes and history
    Show {
        /// The task's id
        id: i64,
    },
    /// Print a done task's proposed change as a patch (`git apply` takes it)
    Diff {
        /// The task's id
        id: i64,
    },
    /// Apply a done task's proposed change to the project's tree, once it
    /// still applies and its checks pass on it
    Apply {
        /// The task's id
        id: i64,
        /// Commit it too (only its files), the message naming the task
        #[arg(long)]
        commit: bool,
    },
    /// Send a done task's change back: pending again, the reason noted
    Reject {
        /// The task's id
        id: i64,
        /// Why (the next attempt reads it)
        #[arg(long)]
        reason: Option<String>,
    },
    /// The task to work on next; --claim takes it with a lease
    Next {
        /// Only this project [default: any project]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
        /// Take the task atomically (no other agent gets it while the lease runs)
        #[arg(long)]
        claim: bool,
        /// Lease length in seconds [default: config queue.lease_seconds]
        #[arg(long, value_name = "SECONDS", requires = "claim")]
        lease: Option<u64>,
    },
    /// Set a task's status
    Status {
        /// The task's id
        id: i64,
        /// pending, in-progress, done or blocked
        #[arg(value_parser = closed::closed::<Status>(&closed::STATUSES))]
        status: Status,
        /// A note recorded with the change; `-` reads it from stdin
        #[arg(long, short)]
        note: Option<String>,
    },
    /// Append a note to a task
    Note {
        /// The task's id
        id: i64,
        /// The note; `-` reads it from stdin
        text: String,
    },
    /// Hide a task from every list and count; its history is kept.
    Delete {
        /// The task's id
        id: i64,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
    /// Make a task depend on another (or drop that with --remove)
    Dep {
        /// The task that waits
        id: i64,
        /// The task it waits for
        #[arg(long, value_name = "OTHER_ID")]
        on: i64,
        /// Drop the dependency instead of adding it
        #[arg(long)]
        remove: bool,
    },
    /// Change a task's fields
    Edit {
        /// The task's id
        id: i64,
        /// A new title
        #[arg(long)]
        title: Option<String>,
        /// A new description; `-` reads it from stdin
        #[arg(long, short)]
        description: Option<String>,
        /// low, medium, high, critical or a number (higher first)
        #[arg(long, short, value_name = "P")]
        priority: Option<String>,
        /// A role, or "none" to clear it
        #[arg(long, value_name = "ROLE", value_parser = closed::closed::<tasks::RoleOrNone>(&closed::ROLES_OR_NONE))]
        role: Option<tasks::RoleOrNone>,
        /// Replaces the tags (repeatable); --tag "" clears them
        #[arg(long = "tag", value_name = "T")]
        tags: Option<Vec<String>>,
        /// An external reference such as S1.2, or "" to clear it
        #[arg(long = "ref", value_name = "REF")]
        external_ref: Option<String>,
        /// Replaces the checks (repeatable); --check "" clears them
        #[arg(long = "check", value_name = "CMD")]
        check: Option<Vec<String>>,
        /// Replaces the protected paths (repeatable); --protect "" clears them
        #[arg(long = "protect", value_name = "PATH")]
        protect: Option<Vec<String>>,
    },
}

pub(super) fn cmd_task(ctx: &Ctx, cmd: TaskCmd, out: &mut impl Write) -> Result<()> {
    let mut store = ctx.store()?;
    let priority = |p: Option<String>| p.map(tasks::Priority::Named);
    match cmd {
        TaskCmd::Add {
            project,
            title,
            description,
            priority: p,
            depends_on,
            parent,
            tags,
            role,
            external_ref,
            check,
            protect,
        } => {
            let chosen = project.choose(ctx, &store)?;
            let req = tasks::AddTask {
                project_id: chosen.project_id,
                title,
                description: text_arg(description, "description")?,
                priority: priority(p),
                depends_on,
                parent,
                tags,
                role,
                external_ref,
                check,
                protect,
            };
            let t = tasks::add_task(ctx, &mut store, req)?;
            emit(out, ctx.json, &t, || {
                format!(
                    "Created task {} in project {}: {}",
                    t.id, t.project_id, t.title
                )
            })
        }
        TaskCmd::List {
            project_id,
            status,
            tags,
        } => {
            let project_id = scope(ctx, &store, project_id)?.map(|c| c.project_id);
            let req = tasks::ListTasks {
                project_id,
                status,
                tags,
            };
            let list = tasks::list_tasks(&store, req)?;
            emit(out, ctx.json, &list, || {
                render::task_list(&list, project_id.is_none())
            })
        }
        TaskCmd::Ready {
            project_id,
            tags,
            role,
            limit,
        } => {
            let chosen = scope(ctx, &store, project_id)?;
            let req = tasks::ReadyTasks {
                project_id: chosen.as_ref().map(|c| c.project_id),
                tags,
                role,
                limit: Some(limit),
            };
            let ready = tasks::ready(ctx, &store, req)?;
            let shown = json!({"project": chosen, "tasks": ready});
            emit(out, ctx.json, &shown, || {
                render::ready(&ready, chosen.is_none())
            })
        }
        TaskCmd::Claim { id, lease } => {
            let req = tasks::ClaimTask {
                id: id.into(),
                lease_seconds: lease,
                project_id: None,
            };
            let t = tasks::claim(ctx, &mut store, req)?;
            emit(out, ctx.json, &t, || {
                format!(
                    "Claimed task {}: {} (lease until {})",
                    t.id,
                    t.title,
                    t.lease_expires_at.as_deref().unwrap_or("?")
                )
            })
        }
        TaskCmd::Expand { id, max } => {
            let req = crate::app::planning::ExpandTask {
                id: id.into(),
                max,
                project_id: None,
            };
            let rt = crate::app::runtime()?;
            let e = rt.block_on(crate::app::planning::expand(ctx, &mut store, req))?;
            emit(out, ctx.json, &e, || {
                if !e.split {
                    return format!("{} kept task {} whole: {}", e.model, e.task_id, e.reason);
                }
                let mut s = format!(
                    "{} split task {} into {} subtasks: {}",
                    e.model,
                    e.task_id,
                    e.subtasks.len(),
                    e.reason
                );
                for t in &e.subtasks {
                    let after = if t.depends_on.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "  (after {})",
                            t.depends_on
                                .iter()
                                .map(|d| d.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    s.push_str(&format!("\n  {:>5}  {}{after}", t.id, t.title));
                }
                s
            })
        }
        TaskCmd::Release { id, force } => {
            let req = tasks::ReleaseTask {
                id: id.into(),
                force,
                project_id: None,
            };
            let view = tasks::release(ctx, &mut store, req)?;
            emit(out, ctx.json, &view, || {
                format!("Released task {}: pending again", view.task.id)
            })
        }
        TaskCmd::Delete { id, yes } => {
            if !yes {
                return Err(Error::InvalidInput(format!(
                    "deleting task {id} hides it from every list (its history stays); run again with --yes to confirm"
                )));
            }
            let req = tasks::DeleteTask {
                id: id.into(),
                project_id: None,
            };
            let task = tasks::delete_task(ctx, &mut store, req)?;
            emit(out, ctx.json, &task, || {
                format!("Deleted task {}: {} (history kept)", task.id, task.title)
            })
        }
        TaskCmd::Show { id } => {
            let req = tasks::ShowTask {
                id: id.into(),
                project_id: None,
            };
            let view = tasks::show_task(&store, req)?;
            emit(out, ctx.json, &view, || render::task_show(&view))
        }
        TaskCmd::Diff { id } => {
            let d = changes::diff(
                &store,
                changes::TaskDiff {
                    id: id.into(),
                    project_id: None,
                },
            )?;
            // The patch as it is, so `llmclis task diff 7 | git apply` works.
            emit(out, ctx.json, &d, || d.patch.trim_end().to_string())
        }
        TaskCmd::Apply { id, commit } => {
            let a = changes::apply(
                ctx,
                &mut store,
                changes::ApplyChange {
                    id: id.into(),
                    commit,
                    project_id: None,
                },
            )?;
            emit(out, ctx.json, &a, || {
                let checks = if a.checks.is_empty() {
                    "it has no check".to_string()
                } else {
                    format!("{} passed on it first", a.checks.join(", "))
                };
                format!(
                    "Applied task {}'s change to {} ({checks}){}",
                    a.task_id,
                    a.files.join(", "),
                    a.commit
                        .as_deref()
                        .map(|c| format!("; committed as {c}"))
                        .unwrap_or_default()
                )
            })
        }
        TaskCmd::Reject { id, reason } => {
            let t = changes::reject(
                ctx,
                &mut store,
                changes::RejectChange {
                    id: id.into(),
                    reason,
                    project_id: None,
                },
            )?;
            emit(out, ctx.json, &t, || {
                format!(
                    "Task {} is pending again; the next run does it anew and reads why",
                    t.id
                )
            })
        }
        TaskCmd::Next {
            project_id,
            claim,
            lease,
        } => {
            let project_id = scope(ctx, &store, project_id)?.map(|c| c.project_id);
            let req = tasks::NextTask {
                project_id,
                claim: Some(claim),
                lease_seconds: lease,
            };
            let next = tasks::next_task(ctx, &mut store, req)?;
            emit(out, ctx.json, &next.task, || {
                render::next(next.task.as_ref(), claim, next.counts.as_ref())
            })
        }
        TaskCmd::Status { id, status, note } => {
            let req = tasks::SetStatus {
                id: id.into(),
                status,
                note: note.map(|n| text_arg(n, "note")).transpose()?,
                project_id: None,
            };
            let view = tasks::set_status(ctx, &mut store, req, "cli")?;
            emit(out, ctx.json, &view, || render::status_change(&view))
        }
        TaskCmd::Note { id, text } => {
            let req = tasks::AddNote {
                id: id.into(),
                text: text_arg(text, "note")?,
                project_id: None,
            };
            let view = tasks::add_note(ctx, &mut store, req)?;
            emit(out, ctx.json, &view, || render::note_added(&view))
        }
        TaskCmd::Dep { id, on, remove } => {
            let c = tasks::dependency(ctx, &mut store, tasks::Dependency { id, on, remove })?;
            emit(out, ctx.json, &c, || match (remove, c.changed) {
                (false, true) => format!("Task {id} now depends on task {on}."),
                (false, false) => {
                    format!("Task {id} already depended on task {on}; nothing changed.")
                }
                (true, true) => format!("Task {id} no longer depends on task {on}."),
                (true, false) => format!("Task {id} did not depend on task {on}; nothing changed."),
            })
        }
        TaskCmd::Edit {
            id,
            title,
            description,
            priority: p,
            role,
            tags,
            external_ref,
            check,
            protect,
        } => {
            // `--check ""` clears, as `--tag ""` does.
            let list = |v: Option<Vec<String>>| {
                v.map(|v| v.into_iter().filter(|x| !x.trim().is_empty()).collect())
            };
            let req = tasks::EditTask {
                id: id.into(),
                title,
                description: description
                    .map(|d| text_arg(d, "description"))
                    .transpose()?,
                priority: priority(p),
                role,
                tags,
                external_ref,
                check: list(check),
                protect: list(protect),
                project_id: None,
            };
            let t = tasks::edit_task(ctx, &mut store, req).map_err(|e| match e {
                Error::InvalidInput(m) if m.starts_with("nothing to change") => Error::InvalidInput(
                    "nothing to change: pass --title, --description, --priority, --role, --tag, --ref, --check or --protect".into(),
                ),
                e => e,
            })?;
            emit(out, ctx.json, &t, || {
                format!("Updated task {}: {}", t.id, t.title)
            })
        }
    }
}
