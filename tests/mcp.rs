//! `llmclis mcp` with a real MCP client (rmcp's, over the child's stdio):
//! initialize, list the tools, take a task, mark it done; the store and
//! plans.md both show it.

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

use crate::support::{BIN, Env};

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_takes_a_task_and_finishes_it_over_mcp() {
    let env = Env::new();
    env.with_seed_plans();

    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear()
        .envs(env.vars())
        .env("LLMCLIS_AGENT", "claude-code")
        .current_dir(env.dir.path())
        .arg("mcp");
    let client = ().serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let info = client.peer_info().expect("the server introduced itself");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("llmclis")
    );

    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(names.len() <= 12, "{names:?}");
    for want in [
        "task_next",
        "task_status",
        "task_note",
        "plans_add",
        "issues_open",
        "memory_query",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(
        tools
            .iter()
            .all(|t| t.description.as_deref().is_some_and(|d| d.len() < 200))
    );

    let call = |name: &'static str, a: Value| {
        let client = &client;
        async move {
            let r = client
                .call_tool(CallToolRequestParams::new(name).with_arguments(args(a)))
                .await
                .unwrap();
            let text = r.content[0].as_text().unwrap().text.clone();
            (r.is_error == Some(true), text)
        }
    };
    let (err, text) = call("task_next", json!({"project_id": 1})).await;
    assert!(!err, "{text}");
    let task: Value = serde_json::from_str(&text).unwrap();
    let id = task["id"].as_i64().unwrap();
    let r#ref = task["external_ref"].as_str().unwrap().to_string();
    assert_eq!(task["status"], "in-progress");
    assert_eq!(task["claimed_by"], "claude-code");

    let (err, text) = call(
        "task_note",
        json!({"id": id, "text": "-- started with the parser"}),
    )
    .await;
    assert!(!err, "{text}");
    let (err, text) = call(
        "task_status",
        json!({"id": r#ref, "status": "done", "note": "parser merged"}),
    )
    .await;
    assert!(!err, "{text}");

    // A bad call is an error result that says what is wrong, not a crash.
    let (err, text) = call("task_status", json!({"id": 999, "status": "done"})).await;
    assert!(err);
    assert!(text.contains("no task with id 999"), "{text}");
    let (err, text) = call("task_show", json!({})).await;
    assert!(err && text.contains("`id` is required"), "{text}");

    client.cancel().await.unwrap();

    let s = llmclis::store::Store::open(&env.db()).unwrap();
    let t = s.task(id).unwrap();
    assert_eq!(t.status, llmclis::store::Status::Done);
    let notes: Vec<String> = s.notes(id).unwrap().into_iter().map(|n| n.text).collect();
    assert!(
        notes.contains(&"-- started with the parser".to_string()),
        "{notes:?}"
    );
    let plans = std::fs::read_to_string(env.dir.path().join("plans.md")).unwrap();
    assert!(plans.contains("parser merged"), "plans.md has the note");
    let line = plans
        .lines()
        .find(|l| l.contains(&format!("**{ref}")))
        .unwrap();
    assert!(line.contains("[x]"), "ticked in plans.md: {line}");
}

/// Memory over MCP: what one call stores, the next finds by meaning, on
/// the memory layer the server keeps open (one model load for the session);
/// the answer is the same JSON as `llmclis --json memory query`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memories_stored_over_mcp_are_found_by_meaning() {
    let Some((dir, lib)) = crate::support::assets() else {
        return;
    };
    let env = Env::new();
    env.with_seed_plans();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    std::fs::write(
        env.config_dir().join("config.toml"),
        format!(
            "[memory]\nmodel_dir = {:?}\nonnxruntime = {:?}\n",
            dir.display().to_string(),
            lib.display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear()
        .envs(env.vars())
        .current_dir(env.dir.path())
        .arg("mcp");
    let client = ().serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let call = |name: &'static str, a: Value| {
        let client = &client;
        async move {
            let r = client
                .call_tool(CallToolRequestParams::new(name).with_arguments(args(a)))
                .await
                .unwrap();
            let text = r.content[0].as_text().unwrap().text.clone();
            assert!(r.is_error != Some(true), "{name}: {text}");
            serde_json::from_str::<Value>(&text).unwrap()
        }
    };
    for text in [
        "The parser chokes on tabs inside quoted strings.",
        "Deployment uses docker compose with vLLM on port 8000.",
        "The release checklist lives in docs/release.md.",
    ] {
        let stored = call(
            "memory_store",
            json!({"project_id": 1, "text": text, "type": "design_doc"}),
        )
        .await;
        assert_eq!(stored["type"], "design_doc", "{stored}");
    }
    let hits = call(
        "memory_query",
        json!({"project_id": 1, "text": "which port does the model server listen on", "top_k": 2}),
    )
    .await;
    assert_eq!(hits.as_array().unwrap().len(), 2, "{hits}");
    assert!(
        hits[0]["text"].as_str().unwrap().contains("port 8000"),
        "{hits}"
    );
    client.cancel().await.unwrap();
    // The command line finds the same, in the same shape.
    let cli = env.json(&[
        "memory",
        "query",
        "--project-id",
        "1",
        "--top-k",
        "2",
        "which port does the model server listen on",
    ]);
    assert_eq!(cli[0]["id"], hits[0]["id"]);
}
