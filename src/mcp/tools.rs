//! The MCP tools: one table, each row a name, a line for the agent, the
//! request type whose JSON schema the agent sees, and the application-layer
//! call it stands for. The schema and the parsing come from the same type,
//! so they cannot drift apart.

use std::sync::Arc;

use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Session;
use crate::app::types::KINDS;
use crate::app::{changes, docs, memory, tasks};
use crate::error::{Error, Result};

pub struct Tool {
    pub name: &'static str,
    pub description: &'static str,
    pub schema: fn() -> Arc<JsonObject>,
    pub call: fn(&Session, Value) -> Result<Value>,
}

/// The request's fields, or an error that names the field at fault.
fn parse<T: DeserializeOwned>(args: Value) -> Result<T> {
    serde_json::from_value(args).map_err(|e| {
        let m = e.to_string();
        let m = match m.strip_prefix("missing field ") {
            Some(field) => format!("{field} is required"),
            None => m,
        };
        Error::InvalidInput(m)
    })
}

fn json<T: Serialize>(value: T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::Internal(format!("result to JSON: {e}")))
}

/// The schema without `$schema`, `title` and the request type's own
/// description (the tool's line says it): every byte of the list is
/// context an agent pays for.
fn lean(schema: Arc<JsonObject>) -> Arc<JsonObject> {
    let mut s = (*schema).clone();
    s.remove("$schema");
    s.remove("title");
    s.remove("description");
    Arc::new(s)
}

/// A row of the table: `tool!(name, description, Request, |session, req| body)`.
macro_rules! tool {
    ($name:literal, $description:literal, $req:ty, |$s:ident, $r:ident| $body:expr) => {
        Tool {
            name: $name,
            description: $description,
            schema: || lean(rmcp::handler::server::common::schema_for_type::<$req>()),
            call: |$s, args| {
                let $r: $req = parse(args)?;
                json($body?)
            },
        }
    };
}

/// What to do with a done task's proposed change.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeAction {
    pub id: tasks::TaskRef,
    pub action: ChangeVerb,
    /// apply: commit it too.
    #[serde(default)]
    pub commit: bool,
    /// reject: why.
    pub reason: Option<String>,
    pub project_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeVerb {
    Diff,
    Apply,
    Reject,
}

fn change(s: &Session, r: ChangeAction) -> Result<Value> {
    let (id, project_id) = (r.id, r.project_id);
    match r.action {
        ChangeVerb::Diff => json(changes::diff(
            &*s.store()?,
            changes::TaskDiff { id, project_id },
        )?),
        ChangeVerb::Apply => json(changes::apply(
            &s.ctx,
            &mut *s.store()?,
            changes::ApplyChange {
                id,
                commit: r.commit,
                project_id,
            },
        )?),
        ChangeVerb::Reject => json(changes::reject(
            &s.ctx,
            &mut *s.store()?,
            changes::RejectChange {
                id,
                reason: r.reason,
                project_id,
            },
        )?),
    }
}

/// No arguments.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nothing {}

/// A memory to save for a project (or a task).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreMemory {
    pub project_id: i64,
    pub text: String,
    pub task_id: Option<i64>,
    /// The kind of memory [default: raw_interaction].
    #[serde(rename = "type")]
    #[schemars(extend("enum" = KINDS))]
    pub kind: Option<String>,
}

/// A search of a project's memories by meaning.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryMemory {
    pub project_id: i64,
    pub text: String,
    /// Only this task's memories.
    pub task_id: Option<i64>,
    /// Only memories of this kind.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = KINDS))]
    pub kind: Option<String>,
    /// Only this tree level.
    #[schemars(extend("enum" = crate::app::types::LEVELS))]
    pub level: Option<String>,
    /// How many to return [default: 5].
    pub top_k: Option<usize>,
}

pub fn all() -> Vec<Tool> {
    vec![
        tool!(
            "project_list",
            "List projects with their task counts.",
            Nothing,
            |s, _r| tasks::list_projects(&*s.store()?)
        ),
        tool!(
            "task_list",
            "List tasks (of a project, with a status), subtasks after their parents.",
            tasks::ListTasks,
            |s, r| tasks::list_tasks(&*s.store()?, r)
        ),
        tool!(
            "task_show",
            "A task with its notes, history, result, diff and model calls.",
            tasks::ShowTask,
            |s, r| tasks::show_task(&*s.store()?, r)
        ),
        tool!(
            "task_next",
            "Take the next ready task (dependencies done, highest priority) with a lease so no other agent gets it; task is null when nothing is ready.",
            tasks::NextTask,
            |s, r| {
                // Agents take work: claiming is the default here.
                let r = tasks::NextTask {
                    claim: Some(r.claim.unwrap_or(true)),
                    ..r
                };
                // The task alone, null when nothing is ready: as
                // `llmclis --json task next` prints it.
                tasks::next_task(&s.ctx, &mut *s.store()?, r).map(|n| n.task)
            }
        ),
        tool!(
            "task_add",
            "Add a task to a project.",
            tasks::AddTask,
            |s, r| tasks::add_task(&s.ctx, &mut *s.store()?, r)
        ),
        tool!(
            "task_edit",
            "Change a task's title, description, priority, role, tags, ref, checks or protected paths.",
            tasks::EditTask,
            |s, r| tasks::edit_task(&s.ctx, &mut *s.store()?, r)
        ),
        tool!(
            "task_change",
            "A done task's proposed change: diff (a patch), apply (if it applies and its checks pass) or reject (pending again).",
            ChangeAction,
            |s, r| change(s, r)
        ),
        tool!(
            "task_dep",
            "Make a task depend on another (remove: true drops it).",
            tasks::Dependency,
            |s, r| tasks::dependency(&s.ctx, &mut *s.store()?, r)
        ),
        tool!(
            "task_status",
            "Set a task's status with an optional note; plans.md follows (done ticks it, blocked opens an issue).",
            tasks::SetStatus,
            |s, r| tasks::set_status(&s.ctx, &mut *s.store()?, r, "mcp")
        ),
        tool!(
            "task_note",
            "Add a note to a task (also written under the task in plans.md).",
            tasks::AddNote,
            |s, r| tasks::add_note(&s.ctx, &mut *s.store()?, r)
        ),
        tool!(
            "task_delete",
            "Hide a task from every list and count; its history stays.",
            tasks::DeleteTask,
            |s, r| tasks::delete_task(&s.ctx, &mut *s.store()?, r)
        ),
        tool!(
            "plans_add",
            "Add a task to a stage of the project's plans.md (and to the queue).",
            docs::AddPlanTask,
            |s, r| docs::add_plan_task(&s.ctx, &mut *s.store()?, r)
        ),
        tool!(
            "plans_check",
            "Check that plans.md kept its history (against git HEAD) and agrees with the store.",
            docs::CheckPlans,
            |s, r| docs::check_plans(&s.ctx, r)
        ),
        tool!(
            "plans_sync",
            "Write every task's state from the store into the project's plan files.",
            docs::SyncPlans,
            |s, r| docs::sync_plans(&s.ctx, &mut *s.store()?, r)
        ),
        tool!(
            "issues_open",
            "Open an entry in issues.md, optionally linked from a plans.md task.",
            docs::OpenIssue,
            |s, r| docs::open_issue(&s.ctx, &*s.store()?, r)
        ),
        tool!(
            "issues_close",
            "Close an issues.md entry (KM-001) with a note.",
            docs::CloseIssue,
            |s, r| docs::close_issue(&s.ctx, &*s.store()?, r)
        ),
        tool!(
            "research_add",
            "Add a dated finding to a section of research.md.",
            docs::AddFinding,
            |s, r| docs::add_finding(&s.ctx, &*s.store()?, r)
        ),
        tool!(
            "memory_store",
            "Save a memory for a project (or a task) so agents can find it later by meaning.",
            StoreMemory,
            |s, r| s.store_memory(r)
        ),
        tool!(
            "memory_query",
            "Search a project's memories by meaning; best first.",
            QueryMemory,
            |s, r| s.query_memory(r)
        ),
        tool!(
            "models_status",
            "The model servers: which are up, what each serves, each model's window.",
            Nothing,
            |s, _r| s.models_status()
        ),
    ]
}

impl Session {
    fn store_memory(&self, r: StoreMemory) -> Result<crate::app::types::MemoryRecord> {
        let mut db = self.store()?;
        self.rt.block_on(async {
            let mem = match self.memory.get(&db).await {
                Ok(m) => Some(m),
                // Another process holds the index: the row is saved and
                // indexed by that process or the next opener.
                Err(Error::IndexBusy(_)) => None,
                Err(e) => return Err(e),
            };
            let req = memory::StoreMemory {
                project_id: r.project_id,
                task_id: r.task_id,
                kind: r.kind.unwrap_or_else(|| "raw_interaction".into()),
                text: r.text,
            };
            // A server that is down: saved, and indexed when it is back.
            Ok(
                memory::store(mem.as_deref(), &mut db, &req, &self.ctx.agent)
                    .await?
                    .record,
            )
        })
    }

    fn query_memory(&self, r: QueryMemory) -> Result<Vec<crate::app::types::Hit>> {
        let mut db = self.store()?;
        self.rt.block_on(async {
            let mem = self.memory.get(&db).await?;
            let req = memory::QueryMemory {
                project_id: r.project_id,
                task_id: r.task_id,
                kind: r.kind,
                level: r.level.as_deref().map(str::parse).transpose()?,
                top_k: r.top_k.unwrap_or(5).max(1),
                text: r.text,
            };
            memory::query(&mem, &mut db, &req).await
        })
    }

    fn models_status(&self) -> Result<crate::app::models::ModelsStatus> {
        let registry = std::sync::Arc::new(self.ctx.registry()?);
        let caller = self
            .ctx
            .caller(registry.clone(), std::time::Duration::from_secs(30));
        let mode = self.ctx.mode();
        Ok(self
            .rt
            .block_on(crate::app::models::status(&registry, &caller, mode)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_schema_that_refuses_unknown_fields() {
        let tools = all();
        let mut names: Vec<&str> = tools.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), tools.len(), "a name is used twice");
        for t in &tools {
            let s = (t.schema)();
            assert_eq!(s["type"], "object", "{}", t.name);
            assert_eq!(s["additionalProperties"], false, "{}", t.name);
            assert!(t.description.len() < 200, "{}", t.name);
        }
    }

    #[test]
    fn the_tool_list_stays_small() {
        let tools = all();
        let listed: Vec<Value> = tools
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "description": t.description, "inputSchema": *(t.schema)()}))
            .collect();
        let bytes = serde_json::to_string(&listed).unwrap().len();
        eprintln!("{} tools, {bytes} bytes", tools.len());
        assert!(bytes < 12_000, "{bytes}");
    }

    #[test]
    fn a_schema_lists_the_closed_sets() {
        let tools = all();
        let add = tools.iter().find(|t| t.name == "task_add").unwrap();
        let text = serde_json::to_string(&*(add.schema)()).unwrap();
        for want in ["coder", "summarizer", "ref", "depends_on"] {
            assert!(text.contains(want), "{want} missing from {text}");
        }
        let status = tools.iter().find(|t| t.name == "task_status").unwrap();
        let text = serde_json::to_string(&*(status.schema)()).unwrap();
        assert!(text.contains("in-progress"), "{text}");
        let memory = tools.iter().find(|t| t.name == "memory_store").unwrap();
        let text = serde_json::to_string(&*(memory.schema)()).unwrap();
        assert!(text.contains("raw_interaction"), "{text}");
    }

    #[test]
    fn bad_arguments_name_the_field() {
        let e = parse::<tasks::ShowTask>(serde_json::json!({})).unwrap_err();
        assert!(e.to_string().contains("`id` is required"), "{e}");
        let e = parse::<tasks::ShowTask>(serde_json::json!({"id": 1, "bogus": 2})).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = parse::<tasks::SetStatus>(serde_json::json!({"id": 1, "status": "finished"}))
            .unwrap_err();
        assert!(e.to_string().contains("finished"), "{e}");
    }
}
