//! Projects, tasks and dependencies: each operation a typed request and a
//! serialisable result, for the CLI, the board and MCP alike. A task given
//! by its plans.md id (`S1.2`) is resolved here, and status changes and
//! notes follow into the plan files (`docs::sync`).

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Context;
use crate::docs::sync::{self, FollowReport};
use crate::error::{Error, Result};
use crate::role::Role;
use crate::store::{
    Event, ModelCall, NewTask, Note, Project, RunStep, Status, StatusCounts, Store, Task,
    TaskPatch, ToolCallRecord, parse_priority,
};

/// A priority: low, medium, high, critical, or a whole number (higher
/// first).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Priority {
    Number(i64),
    Named(String),
}

impl Priority {
    fn value(&self) -> Result<i64> {
        match self {
            Priority::Number(n) => parse_priority(&n.to_string()),
            Priority::Named(s) => parse_priority(s),
        }
    }
}

/// A task: its id, or its plans.md id like `S1.2` (in `project_id`, else
/// the project linked to ./plans.md or the only linked one).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
// Shorter for agents: it is in a dozen tools' schemas.
#[schemars(description = "A task id, or a plans.md id like S1.2.")]
pub enum TaskRef {
    Id(i64),
    Ref(String),
}

impl TaskRef {
    /// The task's id: a number, a numeric string, or a plans.md id.
    pub fn resolve(&self, store: &Store, project_id: Option<i64>) -> Result<i64> {
        let text = match self {
            TaskRef::Id(n) => return Ok(*n),
            TaskRef::Ref(s) => s.trim(),
        };
        if let Ok(n) = text.parse::<i64>() {
            return Ok(n);
        }
        let project = super::docs::resolve_project(store, project_id)?;
        store
            .task_by_ref(project.id, text)?
            .map(|t| t.id)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "project {} has no task {text}; `llmclis task list --project-id {}` shows the refs",
                    project.id, project.id
                ))
            })
    }
}

impl From<i64> for TaskRef {
    fn from(id: i64) -> TaskRef {
        TaskRef::Id(id)
    }
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddProject {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The project's workspace: an existing directory.
    pub root: Option<String>,
}

/// A project with its task counts.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectRow {
    #[serde(flatten)]
    pub project: Project,
    pub counts: StatusCounts,
}

/// A project, its counts and the task that would be worked on next.
#[derive(Debug, Serialize)]
pub struct ProjectView {
    #[serde(flatten)]
    pub project: Project,
    pub counts: StatusCounts,
    pub next_task: Option<Task>,
}

pub fn add_project(ctx: &Context, store: &mut Store, req: AddProject) -> Result<Project> {
    let root = req
        .root
        .map(|r| {
            std::fs::canonicalize(&r)
                .ok()
                .filter(|p| p.is_dir())
                .map(|p| p.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "root {r}: not an existing directory; create it first or pass another"
                    ))
                })
        })
        .transpose()?;
    store.create_project(&req.name, &req.description, root.as_deref(), &ctx.agent)
}

pub fn list_projects(store: &Store) -> Result<Vec<ProjectRow>> {
    store
        .projects()?
        .into_iter()
        .map(|p| {
            let counts = store.status_counts(Some(p.id))?;
            Ok(ProjectRow { project: p, counts })
        })
        .collect()
}

pub fn show_project(store: &Store, id: i64) -> Result<ProjectView> {
    Ok(ProjectView {
        project: store.project(id)?,
        counts: store.status_counts(Some(id))?,
        next_task: store.next_task(Some(id))?,
    })
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTask {
    /// The project (project_list shows them).
    pub project_id: i64,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// low, medium (the default), high, critical or a number.
    pub priority: Option<Priority>,
    /// Tasks that must be done first.
    #[serde(default)]
    pub depends_on: Vec<i64>,
    /// Make this a subtask of that task.
    pub parent: Option<i64>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The role that should work on it; the rules decide when unset.
    pub role: Option<Role>,
    /// An external reference such as S1.2.
    #[serde(rename = "ref")]
    pub external_ref: Option<String>,
    /// Commands that must pass on its change before it is done.
    #[serde(default)]
    pub check: Vec<String>,
    /// Paths or globs its change must not touch.
    #[serde(default)]
    pub protect: Vec<String>,
}

pub fn add_task(ctx: &Context, store: &mut Store, req: AddTask) -> Result<Task> {
    let new = NewTask {
        project_id: req.project_id,
        title: req.title,
        description: req.description,
        parent_id: req.parent,
        external_ref: req.external_ref,
        priority: req.priority.as_ref().map(Priority::value).transpose()?,
        role: req.role,
        tags: req.tags,
        depends_on: req.depends_on,
        status: None,
        checks: req.check,
        protected: req.protect,
    };
    store.create_task(new, &ctx.agent)
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTasks {
    /// Only this project's tasks.
    pub project_id: Option<i64>,
    /// Only tasks with this status.
    pub status: Option<Status>,
    /// Only tasks with one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

pub fn list_tasks(store: &Store, req: ListTasks) -> Result<Vec<Task>> {
    let mut tasks = store.tasks(req.project_id, req.status)?;
    if !req.tags.is_empty() {
        tasks.retain(|t| {
            t.tags
                .iter()
                .any(|x| req.tags.iter().any(|w| w.eq_ignore_ascii_case(x)))
        });
    }
    Ok(tasks)
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShowTask {
    pub id: TaskRef,
    /// The project a plans.md id is in.
    pub project_id: Option<i64>,
}

/// A task with everything recorded about it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    #[serde(flatten)]
    pub task: Task,
    pub subtasks: Vec<i64>,
    pub notes: Vec<Note>,
    pub events: Vec<Event>,
    /// The orchestrator's result: the last done step's answer.
    pub result: Option<String>,
    /// The change the last done step made to the project's files.
    pub diff: Option<String>,
    /// Orchestrator steps that worked on the task.
    pub steps: Vec<RunStep>,
    /// Every model call, with its prompt and response (for replay).
    pub model_calls: Vec<ModelCall>,
    /// The codebase tools the executor used.
    pub tool_calls: Vec<ToolCallRecord>,
    /// Each run of its checks, oldest first.
    pub check_runs: Vec<crate::store::CheckRecord>,
}

pub fn show_task(store: &Store, req: ShowTask) -> Result<TaskView> {
    let id = req.id.resolve(store, req.project_id)?;
    Ok(TaskView {
        task: store.task(id)?,
        subtasks: store.subtasks(id)?.into_iter().map(|t| t.id).collect(),
        notes: store.notes(id)?,
        events: store.events(id)?,
        result: store.last_result(id)?,
        diff: store.last_diff(id)?,
        steps: store.task_steps(id)?,
        model_calls: store.model_calls(id)?,
        tool_calls: store.tool_calls(id)?,
        check_runs: store.check_runs(id)?,
    })
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NextTask {
    pub project_id: Option<i64>,
    /// Take it with a lease, so no other agent gets it (MCP: default true).
    pub claim: Option<bool>,
    /// How long the claim holds [default: the config's queue.lease_seconds].
    pub lease_seconds: Option<u64>,
}

/// The next ready task, or why there is none.
#[derive(Debug, Serialize)]
pub struct Next {
    pub task: Option<Task>,
    pub claimed: bool,
    /// When nothing is ready: what the project's tasks are doing.
    pub counts: Option<StatusCounts>,
}

pub fn next_task(ctx: &Context, store: &mut Store, req: NextTask) -> Result<Next> {
    let claim = req.claim.unwrap_or(false);
    let task = if claim {
        let lease = req
            .lease_seconds
            .map(Duration::from_secs)
            .unwrap_or(ctx.config.lease());
        store.claim_next(req.project_id, &ctx.agent, lease)?
    } else {
        store.next_task(req.project_id)?
    };
    let counts = match &task {
        Some(_) => None,
        None => Some(store.status_counts(req.project_id)?),
    };
    Ok(Next {
        task,
        claimed: claim,
        counts,
    })
}

/// The ready queue, filtered.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadyTasks {
    /// Only this project [default: every project].
    pub project_id: Option<i64>,
    /// Only tasks with one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only tasks for this role: their hint, or the role the registry's
    /// rules give them.
    pub role: Option<Role>,
    /// At most this many [default: 20].
    pub limit: Option<usize>,
}

/// The tasks `next` would give, in that order (claims aside).
pub fn ready(ctx: &Context, store: &Store, req: ReadyTasks) -> Result<Vec<Task>> {
    let limit = req.limit.unwrap_or(20);
    let filtered = !req.tags.is_empty() || req.role.is_some();
    // Filters look at every ready task; without them the queue stops early.
    let take = if filtered { usize::MAX } else { limit };
    let queue = match req.project_id {
        Some(p) => {
            store.project(p)?;
            store.ready_tasks(p, take)?
        }
        None => store.ready_tasks_any(take)?,
    };
    let registry = match req.role {
        Some(_) => Some(ctx.registry()?),
        None => None,
    };
    let wanted_tag = |t: &Task| {
        req.tags.is_empty()
            || t.tags
                .iter()
                .any(|x| req.tags.iter().any(|w| w.eq_ignore_ascii_case(x)))
    };
    let wanted_role = |t: &Task| match (req.role, &registry) {
        (Some(want), Some(r)) => {
            let info = crate::router::TaskInfo {
                project_id: t.project_id,
                title: &t.title,
                description: &t.description,
                tags: &t.tags,
                role_hint: t.role,
                prompt_tokens: crate::tokens::estimate_tokens(&t.title)
                    + crate::tokens::estimate_tokens(&t.description),
                output_tokens: None,
                needs_json: false,
            };
            t.role.unwrap_or_else(|| crate::router::role_of(r, &info)) == want
        }
        _ => true,
    };
    Ok(queue
        .into_iter()
        .filter(|t| wanted_tag(t) && wanted_role(t))
        .take(limit)
        .collect())
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimTask {
    pub id: TaskRef,
    /// How long the claim holds [default: the config's queue.lease_seconds].
    pub lease_seconds: Option<u64>,
    /// The project a plans.md id is in.
    pub project_id: Option<i64>,
}

/// Takes one given task with a lease, as `next --claim` would if it were
/// next: it must be pending and ready.
pub fn claim(ctx: &Context, store: &mut Store, req: ClaimTask) -> Result<Task> {
    let id = req.id.resolve(store, req.project_id)?;
    let lease = req
        .lease_seconds
        .map(Duration::from_secs)
        .unwrap_or(ctx.config.lease());
    store.claim_task(id, &ctx.agent, lease)
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseTask {
    pub id: TaskRef,
    /// Release it though another agent's lease still runs.
    #[serde(default)]
    pub force: bool,
    /// The project a plans.md id is in.
    pub project_id: Option<i64>,
}

/// Gives a claimed task back: pending again, for any agent. Another
/// agent's live lease is theirs unless `force`.
pub fn release(ctx: &Context, store: &mut Store, req: ReleaseTask) -> Result<StatusView> {
    let id = req.id.resolve(store, req.project_id)?;
    let t = store.task(id)?;
    if t.status != Status::InProgress {
        return Err(Error::InvalidInput(format!(
            "task {id} is {}, not claimed: there is nothing to release",
            t.status.as_str()
        )));
    }
    let live = t
        .lease_expires_at
        .as_deref()
        .is_none_or(|until| until > crate::store::now().as_str());
    if let Some(holder) = t.claimed_by.as_deref()
        && holder != ctx.agent
        && live
        && !req.force
    {
        let until = t
            .lease_expires_at
            .as_deref()
            .map(|u| format!(" until {u}"))
            .unwrap_or_default();
        return Err(Error::InvalidInput(format!(
            "task {id} is claimed by {holder}{until}; release it as that agent (--agent {holder}) or pass --force"
        )));
    }
    set_status(
        ctx,
        store,
        SetStatus {
            id: TaskRef::Id(id),
            status: Status::Pending,
            note: None,
            project_id: None,
        },
        "release",
    )
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStatus {
    pub id: TaskRef,
    pub status: Status,
    /// Why (for blocked: the issues.md entry's description).
    pub note: Option<String>,
    /// The project a plans.md id is in.
    pub project_id: Option<i64>,
}

/// A status change and what it did to the plan files.
#[derive(Debug, Serialize)]
pub struct StatusView {
    #[serde(flatten)]
    pub task: Task,
    pub previous_status: Status,
    pub changed: bool,
    /// What happened to the linked plan files.
    pub files: FollowReport,
}

/// Sets a status; plans.md follows (done ticks it, blocked opens an issue).
/// `via` says which front end asked, for the event log.
pub fn set_status(
    ctx: &Context,
    store: &mut Store,
    req: SetStatus,
    via: &str,
) -> Result<StatusView> {
    let id = req.id.resolve(store, req.project_id)?;
    let (tr, files) = sync::set_status(
        store,
        id,
        req.status,
        &ctx.agent,
        json!({ "via": via }),
        req.note.as_deref(),
    )?;
    Ok(StatusView {
        previous_status: tr.from,
        changed: tr.changed(),
        task: tr.task,
        files,
    })
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNote {
    pub id: TaskRef,
    pub text: String,
    /// The project a plans.md id is in.
    pub project_id: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct NoteView {
    #[serde(flatten)]
    pub note: Note,
    pub files: FollowReport,
}

/// Adds a note, also written under the task in plans.md.
pub fn add_note(ctx: &Context, store: &mut Store, req: AddNote) -> Result<NoteView> {
    let id = req.id.resolve(store, req.project_id)?;
    let (note, files) = sync::add_note(store, id, &req.text, &ctx.agent)?;
    Ok(NoteView { note, files })
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditTask {
    pub id: TaskRef,
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    /// A role, or "none" to clear it.
    pub role: Option<RoleOrNone>,
    /// Replaces the tags; an empty list clears them.
    pub tags: Option<Vec<String>>,
    /// An external reference such as S1.2, or "" to clear it.
    #[serde(rename = "ref")]
    pub external_ref: Option<String>,
    /// Replaces the checks.
    pub check: Option<Vec<String>>,
    /// Replaces the protected paths.
    pub protect: Option<Vec<String>>,
    /// The project a plans.md id is in.
    pub project_id: Option<i64>,
}

/// A role, or `none` to clear a task's role.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RoleOrNone {
    Role(Role),
    None(NoRole),
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NoRole {
    None,
}

impl RoleOrNone {
    pub fn role(self) -> Option<Role> {
        match self {
            RoleOrNone::Role(r) => Some(r),
            RoleOrNone::None(_) => None,
        }
    }
}

impl std::str::FromStr for RoleOrNone {
    type Err = Error;

    fn from_str(s: &str) -> Result<RoleOrNone> {
        if matches!(s.trim().to_ascii_lowercase().as_str(), "none" | "") {
            Ok(RoleOrNone::None(NoRole::None))
        } else {
            s.parse().map(RoleOrNone::Role)
        }
    }
}

pub fn edit_task(ctx: &Context, store: &mut Store, req: EditTask) -> Result<Task> {
    let id = req.id.resolve(store, req.project_id)?;
    let patch = TaskPatch {
        title: req.title,
        description: req.description,
        priority: req.priority.as_ref().map(Priority::value).transpose()?,
        role: req.role.map(RoleOrNone::role),
        tags: req
            .tags
            .map(|t| t.into_iter().filter(|t| !t.is_empty()).collect()),
        external_ref: req
            .external_ref
            .map(|r| Some(r).filter(|r| !r.trim().is_empty())),
        checks: req.check,
        protected: req.protect,
    };
    if patch.is_empty() {
        return Err(Error::InvalidInput(
            "nothing to change: give a title, description, priority, role, tags, ref, check or protect".into(),
        ));
    }
    let files = patch.checks.is_some() || patch.protected.is_some();
    let task = store.update_task(id, patch, &ctx.agent)?;
    if files {
        // The plan file states checks too: it follows the store.
        sync::follow(store, id, &ctx.agent, None)?;
    }
    Ok(task)
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    pub id: i64,
    /// The task that must be done first.
    pub on: i64,
    /// Drop the dependency instead of adding it.
    #[serde(default)]
    pub remove: bool,
}

#[derive(Debug, Serialize)]
pub struct DependencyChange {
    pub task_id: i64,
    pub depends_on: i64,
    pub removed: bool,
    /// False when it was already so.
    pub changed: bool,
}

pub fn dependency(ctx: &Context, store: &mut Store, req: Dependency) -> Result<DependencyChange> {
    let changed = if req.remove {
        store.remove_dependency(req.id, req.on, &ctx.agent)?
    } else {
        store.add_dependency(req.id, req.on, &ctx.agent)?
    };
    Ok(DependencyChange {
        task_id: req.id,
        depends_on: req.on,
        removed: req.remove,
        changed,
    })
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteTask {
    pub id: TaskRef,
    /// The project a plans.md id is in.
    pub project_id: Option<i64>,
}

/// Hides a task from every list and count; its history stays.
pub fn delete_task(ctx: &Context, store: &mut Store, req: DeleteTask) -> Result<Task> {
    let id = req.id.resolve(store, req.project_id)?;
    store.delete_task(id, &ctx.agent)
}
