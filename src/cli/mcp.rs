//! `llmclis mcp`: the knowledge manager as an MCP server over stdio, so
//! other agents (Claude Code, Codex, Cursor) take work from the same queue.
//!
//! Each tool is a CLI command run in-process with `--json` and the server's
//! own settings (database, config, agent): the same validation, events and
//! plans.md sync as the command line, and the same JSON as its output. The
//! memory tools go to the application layer directly, on a memory layer the
//! server keeps open, so a call does not load the embedding model again. The
//! list is kept short, with one line each, so it costs an agent little of its
//! context window.

use std::ffi::OsString;
use std::sync::Arc;

use clap::Parser;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Map, Value, json};

use super::{Cli, Ctx, dispatch};
use crate::error::{Error, Result};

/// (name, description, JSON schema properties, required).
fn specs() -> Vec<(&'static str, &'static str, Value, Vec<&'static str>)> {
    let id = json!({"type": ["integer", "string"], "description": "a task id, or its plans.md id like S1.2"});
    let project = json!({"type": "integer", "description": "project id (project_list shows them)"});
    vec![
        (
            "project_list",
            "List projects with their task counts.",
            json!({}),
            vec![],
        ),
        (
            "task_next",
            "Take the next ready task (dependencies done, highest priority) with a lease, so no other agent gets it; null when nothing is ready.",
            json!({"project_id": project, "claim": {"type": "boolean", "description": "take it (default true); false only looks"}, "lease_seconds": {"type": "integer", "description": "how long the claim holds (default: the config's)"}}),
            vec![],
        ),
        (
            "task_show",
            "A task with its notes, history, result and model calls.",
            json!({"id": {"type": "integer"}}),
            vec!["id"],
        ),
        (
            "task_add",
            "Add a task to a project.",
            json!({"project_id": project, "title": {"type": "string"}, "description": {"type": "string"}, "priority": {"type": "string", "description": "low, medium, high, critical or a number"}, "depends_on": {"type": "array", "items": {"type": "integer"}}, "parent": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}),
            vec!["project_id", "title"],
        ),
        (
            "task_status",
            "Set a task's status (pending, in-progress, done, blocked) with an optional note; plans.md follows (done ticks it, blocked opens an issue).",
            json!({"id": id, "status": {"type": "string", "enum": ["pending", "in-progress", "done", "blocked"]}, "note": {"type": "string"}, "project_id": project}),
            vec!["id", "status"],
        ),
        (
            "task_note",
            "Add a note to a task (also written under the task in plans.md).",
            json!({"id": id, "text": {"type": "string"}, "project_id": project}),
            vec!["id", "text"],
        ),
        (
            "plans_add",
            "Add a task to a stage of the project's plans.md (and to the queue).",
            json!({"stage": {"type": "integer"}, "title": {"type": "string"}, "description": {"type": "string"}, "project_id": project}),
            vec!["stage", "title"],
        ),
        (
            "issues_open",
            "Open an entry in issues.md, optionally linked from a plans.md task.",
            json!({"title": {"type": "string"}, "description": {"type": "string"}, "task": {"type": "string", "description": "plans.md id like S1.2"}, "project_id": project}),
            vec!["title"],
        ),
        (
            "issues_close",
            "Close an issues.md entry (KM-001) with a note.",
            json!({"id": {"type": "string"}, "note": {"type": "string"}, "project_id": project}),
            vec!["id"],
        ),
        (
            "memory_store",
            "Save a memory for a project (or a task) so agents can find it later by meaning.",
            json!({"project_id": project, "text": {"type": "string"}, "task_id": {"type": "integer"}, "type": {"type": "string", "enum": crate::memory::KINDS}}),
            vec!["project_id", "text"],
        ),
        (
            "memory_query",
            "Search a project's memories by meaning; best first.",
            json!({"project_id": project, "text": {"type": "string"}, "task_id": {"type": "integer"}, "top_k": {"type": "integer"}}),
            vec!["project_id", "text"],
        ),
    ]
}

pub fn tools() -> Vec<Tool> {
    specs()
        .into_iter()
        .map(|(name, description, properties, required)| {
            let mut schema = Map::new();
            schema.insert("type".into(), json!("object"));
            schema.insert("properties".into(), properties);
            schema.insert("required".into(), json!(required));
            schema.insert("additionalProperties".into(), json!(false));
            Tool::new(name, description, Arc::new(schema))
        })
        .collect()
}

fn text(args: &Map<String, Value>, key: &str) -> Option<String> {
    args.get(key).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

fn need(args: &Map<String, Value>, key: &str) -> std::result::Result<String, String> {
    text(args, key).ok_or_else(|| format!("`{key}` is required"))
}

/// The command line a tool call stands for (after the global options).
fn command(name: &str, args: &Map<String, Value>) -> std::result::Result<Vec<String>, String> {
    let mut argv: Vec<String> = Vec::new();
    // `--flag=value`, so a value that starts with `-` is never read as a flag.
    let opt = |argv: &mut Vec<String>, flag: &str, key: &str| {
        if let Some(v) = text(args, key) {
            argv.push(format!("--{flag}={v}"));
        }
    };
    let is_task_id = |s: &str| s.trim().parse::<i64>().is_ok();
    match name {
        "project_list" => argv.extend(["project".into(), "list".into()]),
        "task_next" => {
            argv.extend(["task".into(), "next".into()]);
            opt(&mut argv, "project-id", "project_id");
            if args.get("claim").and_then(Value::as_bool) != Some(false) {
                argv.push("--claim".into());
                opt(&mut argv, "lease", "lease_seconds");
            }
        }
        "task_show" => argv.extend(["task".into(), "show".into(), need(args, "id")?]),
        "task_add" => {
            argv.extend(["task".into(), "add".into()]);
            argv.push(format!("--project-id={}", need(args, "project_id")?));
            opt(&mut argv, "description", "description");
            opt(&mut argv, "priority", "priority");
            opt(&mut argv, "parent", "parent");
            for (key, flag) in [("depends_on", "depends-on"), ("tags", "tag")] {
                for v in args
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    argv.push(format!("--{flag}={v}"));
                }
            }
            argv.extend(["--".into(), need(args, "title")?]);
        }
        "task_status" => {
            let id = need(args, "id")?;
            if is_task_id(&id) {
                argv.extend(["task".into(), "status".into()]);
            } else {
                argv.extend(["plans".into(), "status".into()]);
                opt(&mut argv, "project-id", "project_id");
            }
            opt(&mut argv, "note", "note");
            argv.extend(["--".into(), id, need(args, "status")?]);
        }
        "task_note" => {
            let id = need(args, "id")?;
            if is_task_id(&id) {
                argv.extend(["task".into(), "note".into()]);
            } else {
                argv.extend(["plans".into(), "note".into()]);
                opt(&mut argv, "project-id", "project_id");
            }
            argv.extend(["--".into(), id, need(args, "text")?]);
        }
        "plans_add" => {
            argv.extend(["plans".into(), "add".into()]);
            argv.push(format!("--stage={}", need(args, "stage")?));
            argv.push(format!("--title={}", need(args, "title")?));
            opt(&mut argv, "description", "description");
            opt(&mut argv, "project-id", "project_id");
        }
        "issues_open" => {
            argv.extend(["issues".into(), "open".into()]);
            argv.push(format!("--title={}", need(args, "title")?));
            opt(&mut argv, "description", "description");
            opt(&mut argv, "task", "task");
            opt(&mut argv, "project-id", "project_id");
        }
        "issues_close" => {
            argv.extend(["issues".into(), "close".into()]);
            opt(&mut argv, "note", "note");
            opt(&mut argv, "project-id", "project_id");
            argv.extend(["--".into(), need(args, "id")?]);
        }
        "memory_store" => {
            argv.extend(["memory".into(), "store".into()]);
            argv.push(format!("--project-id={}", need(args, "project_id")?));
            opt(&mut argv, "task-id", "task_id");
            opt(&mut argv, "type", "type");
            argv.extend(["--".into(), need(args, "text")?]);
        }
        "memory_query" => {
            argv.extend(["memory".into(), "query".into()]);
            argv.push(format!("--project-id={}", need(args, "project_id")?));
            opt(&mut argv, "task-id", "task_id");
            opt(&mut argv, "top-k", "top_k");
            argv.extend(["--".into(), need(args, "text")?]);
        }
        other => {
            let names: Vec<&str> = specs().iter().map(|s| s.0).collect();
            return Err(format!(
                "unknown tool {other:?}; the tools are {}",
                names.join(", ")
            ));
        }
    }
    Ok(argv)
}

#[derive(Clone)]
struct Server {
    /// `llmclis --json` and the server's own settings.
    base: Vec<OsString>,
    app: crate::app::Context,
    /// Memory stays open between calls: only the first memory call loads
    /// the embedding model and opens the index.
    memory: Arc<crate::app::memory::Kept>,
}

impl Server {
    fn new(ctx: &Ctx) -> Server {
        let mut base: Vec<OsString> = vec!["llmclis".into(), "--json".into()];
        let mut opt = |flag: &str, value: OsString| {
            let mut s = OsString::from(format!("--{flag}="));
            s.push(value);
            base.push(s);
        };
        opt("db", ctx.paths.db.clone().into_os_string());
        opt("config-dir", ctx.paths.config_dir.clone().into_os_string());
        opt("data-dir", ctx.paths.data_dir.clone().into_os_string());
        opt("agent", ctx.agent.clone().into());
        if let Some(r) = ctx.registry_file() {
            opt("registry", r.as_os_str().to_owned());
        }
        if let Some(m) = ctx.mode_asked() {
            opt(
                "mode",
                match m {
                    crate::registry::Mode::Offline => "offline".into(),
                    crate::registry::Mode::Online => "online".into(),
                },
            );
        }
        Server {
            base,
            app: ctx.app.clone(),
            memory: Arc::new(crate::app::memory::Kept::new(ctx.app.clone())),
        }
    }

    /// `memory_store` and `memory_query` on the memory kept open; the
    /// same JSON as `llmclis --json memory store|query`.
    async fn memory_call(
        &self,
        name: &str,
        args: &Map<String, Value>,
    ) -> std::result::Result<String, String> {
        let int = |key: &str| -> std::result::Result<Option<i64>, String> {
            match text(args, key) {
                None => Ok(None),
                Some(v) => v
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| format!("`{key}` must be a whole number, not {v:?}")),
            }
        };
        let project_id = int("project_id")?.ok_or("`project_id` is required")?;
        let task_id = int("task_id")?;
        let text_arg = need(args, "text")?;
        let mut db = self.app.store().map_err(|e| e.to_string())?;
        let out = match name {
            "memory_store" => {
                let mem = match self.memory.get(&db).await {
                    Ok(m) => Some(m),
                    Err(Error::IndexBusy(_)) => None,
                    Err(e) => return Err(e.to_string()),
                };
                let req = crate::app::memory::StoreMemory {
                    project_id,
                    task_id,
                    kind: text(args, "type").unwrap_or_else(|| "raw_interaction".into()),
                    text: text_arg,
                };
                let r = crate::app::memory::store(mem.as_deref(), &mut db, &req, &self.app.agent)
                    .await
                    .map_err(|e| e.to_string())?;
                serde_json::to_string(&r)
            }
            _ => {
                let mem = self.memory.get(&db).await.map_err(|e| e.to_string())?;
                let req = crate::app::memory::QueryMemory {
                    project_id,
                    task_id,
                    kind: text(args, "type"),
                    top_k: int("top_k")?.map_or(5, |k| k.max(1) as usize),
                    text: text_arg,
                };
                let hits = crate::app::memory::query(&mem, &mut db, &req)
                    .await
                    .map_err(|e| e.to_string())?;
                serde_json::to_string(&hits)
            }
        };
        out.map_err(|e| e.to_string())
    }

    /// Runs a tool's command; its JSON output, or the error's message.
    fn run(&self, name: &str, args: &Map<String, Value>) -> std::result::Result<String, String> {
        let mut argv = self.base.clone();
        argv.extend(command(name, args)?.into_iter().map(OsString::from));
        let cli = Cli::try_parse_from(&argv).map_err(|e| {
            e.to_string()
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_string()
        })?;
        let mut out = Vec::new();
        dispatch(cli, &mut out).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out).trim().to_string();
        // Compact: every byte is context an agent pays for.
        Ok(serde_json::from_str::<Value>(&text)
            .map(|v| v.to_string())
            .unwrap_or(text))
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("llmclis", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "llmclis's task queue: take work with task_next (it claims the task with a lease), report with task_note and task_status (done, or blocked with the reason). Results are JSON, as `llmclis --json` prints them.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, ErrorData> {
        let server = self.clone();
        let args = request.arguments.unwrap_or_default();
        let name = request.name.to_string();
        // The store and the files are synchronous (and the store is not
        // Sync): off the protocol's thread, memory calls included.
        let rt = tokio::runtime::Handle::current();
        let result = tokio::task::spawn_blocking(move || {
            if matches!(name.as_str(), "memory_store" | "memory_query") {
                rt.block_on(server.memory_call(&name, &args))
            } else {
                server.run(&name, &args)
            }
        })
        .await
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(match result {
            Ok(json) => CallToolResult::success(vec![ContentBlock::text(json)]),
            Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]),
        }
        .into())
    }
}

/// Serves until the client closes stdin. Logs go to the log file: stdout
/// belongs to the protocol.
pub fn serve(ctx: &Ctx) -> Result<()> {
    crate::logging::init(&ctx.paths.data_dir);
    // The database must open before the client is told the server is up.
    ctx.store()?;
    let rt = crate::app::runtime()?;
    rt.block_on(async {
        let service = Server::new(ctx)
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| Error::InvalidInput(format!("MCP handshake failed: {e}")))?;
        service
            .waiting()
            .await
            .map_err(|e| Error::Internal(format!("MCP server stopped: {e}")))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_a_dozen_tools_each_with_a_schema_and_a_command() {
        let t = tools();
        assert!(t.len() <= 12, "{}", t.len());
        for (name, _, props, required) in specs() {
            let mut args = Map::new();
            for r in &required {
                let v = match props[*r]["type"].as_str() {
                    Some("integer") => json!(1),
                    _ => json!("S1.1"),
                };
                args.insert(r.to_string(), v);
            }
            assert!(command(name, &args).is_ok(), "{name}");
        }
        let mut args = Map::new();
        args.insert("id".into(), json!(3));
        args.insert("status".into(), json!("done"));
        args.insert("note".into(), json!("--all good"));
        assert_eq!(
            command("task_status", &args).unwrap(),
            ["task", "status", "--note=--all good", "--", "3", "done"]
        );
        args.insert("id".into(), json!("S1.2"));
        assert_eq!(
            command("task_status", &args).unwrap()[..2],
            ["plans", "status"]
        );
        assert!(
            command("rm_rf", &args)
                .unwrap_err()
                .contains("unknown tool")
        );
        assert!(
            command("task_show", &Map::new())
                .unwrap_err()
                .contains("`id` is required")
        );
    }
}
