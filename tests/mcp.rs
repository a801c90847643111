//! `llmclis mcp` with a real MCP client (rmcp's, over the child's stdio):
//! initialize, list the tools, take a task, mark it done; the store and
//! plans.md both show it.

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

use crate::support::{BIN, Env};

/// `llmclis mcp` in `env` as `agent`, with rmcp's client on its stdio.
pub(crate) async fn spawn(
    env: &Env,
    agent: &str,
) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear()
        .envs(env.vars())
        .env("LLMCLIS_AGENT", agent)
        .current_dir(env.dir.path())
        .arg("mcp");
    ().serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .unwrap()
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_takes_a_task_and_finishes_it_over_mcp() {
    let env = Env::new();
    env.with_seed_plans();

    let client = spawn(&env, "claude-code").await;
    let info = client.peer_info().expect("the server introduced itself");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("llmclis")
    );

    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
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
    let env = Env::new();
    if !env.with_memory_config() {
        return;
    }
    env.with_seed_plans();
    let client = spawn(&env, "tester").await;
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

/// Every tool, called through the official MCP Python SDK over stdio, does
/// what its CLI command does: the store and the plan files show each call.
#[test]
fn every_tool_works_through_the_official_python_client() {
    every_tool(false);
}

/// The same over Streamable HTTP, through `llmclis serve` and a key.
#[test]
fn every_tool_works_over_http_through_the_official_python_client() {
    every_tool(true);
}

fn every_tool(http: bool) {
    let Some(python) = crate::support::py_clients() else {
        return;
    };
    let env = Env::new();
    let memory = env.with_memory_config();
    env.with_seed_plans();
    // A registry whose one server is down: models_status answers at once.
    std::fs::create_dir_all(env.config_dir()).unwrap();
    let registry = crate::support::one_model_registry(
        "{name: local, kind: openai-compatible, flavour: vllm, base_url: 'http://127.0.0.1:9/v1', local: true}",
        "{id: m, provider: local, served_name: m, context_window: 4096, max_output_tokens: 512}",
        "m",
    );
    std::fs::write(env.config_dir().join("model_registry.yaml"), registry).unwrap();

    let seeded = env.json(&["task", "list", "--project-id", "1"]);
    let new_id = seeded.as_array().unwrap().len() as i64 + 1;
    let next = env.json(&["task", "next", "--project-id", "1"]);
    let next_id = next["id"].as_i64().unwrap();

    let mut calls = vec![
        json!({"tool": "project_list"}),
        json!({"tool": "task_list", "args": {"project_id": 1, "status": "pending"}}),
        json!({"tool": "task_add", "args": {"project_id": 1, "title": "Write the changelog", "role": "writer", "ref": "X1", "priority": "low", "tags": ["docs"], "depends_on": [next_id]}}),
        json!({"tool": "task_show", "args": {"id": "X1", "project_id": 1}}),
        json!({"tool": "task_edit", "args": {"id": new_id, "title": "Write the changelog for 0.2", "role": "none", "ref": ""}}),
        json!({"tool": "task_dep", "args": {"id": new_id, "on": next_id, "remove": true}}),
        json!({"tool": "task_next", "args": {"project_id": 1}}),
        json!({"tool": "task_note", "args": {"id": next_id, "text": "started"}}),
        json!({"tool": "task_status", "args": {"id": next_id, "status": "done", "note": "merged"}}),
        json!({"tool": "task_delete", "args": {"id": new_id}}),
        json!({"tool": "plans_add", "args": {"stage": 1, "title": "Benchmark the parser", "project_id": 1}}),
        json!({"tool": "plans_sync", "args": {"project_id": 1}}),
        json!({"tool": "plans_check", "args": {"project_id": 1}}),
        json!({"tool": "issues_open", "args": {"title": "Parser hangs", "task": "S1.2", "project_id": 1}}),
        json!({"tool": "issues_close", "args": {"id": "KM-001", "note": "fixed", "project_id": 1}}),
        json!({"tool": "research_add", "args": {"section": "Parsers", "text": "pest against nom", "project_id": 1}}),
        json!({"tool": "models_status"}),
        // Bad calls: an error result that says what is wrong.
        json!({"tool": "task_show", "args": {}}),
        json!({"tool": "task_status", "args": {"id": 1, "status": "finished"}}),
        json!({"tool": "task_add", "args": {"project_id": 1, "title": "x", "role": "poet"}}),
        json!({"tool": "rm_rf", "args": {}}),
        // Done by hand, so no proposed change; the deleted one is not done.
        json!({"tool": "task_change", "args": {"id": next_id, "action": "diff"}}),
        json!({"tool": "task_change", "args": {"id": next_id, "action": "apply", "commit": true}}),
        json!({"tool": "task_change", "args": {"id": new_id, "action": "reject", "reason": "redo"}}),
    ];
    if memory {
        calls.push(json!({"tool": "memory_store", "args": {"project_id": 1, "text": "vLLM listens on port 8000.", "type": "design_doc"}}));
        calls.push(json!({"tool": "memory_query", "args": {"project_id": 1, "text": "which port", "top_k": 1}}));
        // By level of the memory tree: a task-less note is project-level.
        calls.push(json!({"tool": "memory_query", "args": {"project_id": 1, "text": "which port", "level": "project"}}));
        calls.push(json!({"tool": "memory_query", "args": {"project_id": 1, "text": "which port", "level": "stage"}}));
        calls.push(json!({"tool": "memory_query", "args": {"project_id": 1, "text": "which port", "level": "galaxy"}}));
    }
    let bin = std::path::Path::new(BIN).to_str().unwrap();
    let mut envs = env.vars();
    envs.push(("LLMCLIS_AGENT", "claude-code".into()));
    // Over HTTP the agent is the client's key name.
    let out = if http {
        let key = crate::serve::new_key(&env, "claude-code", &[]);
        let gw = crate::serve::Gateway::start(&env, &[]);
        let url = format!("{}/mcp", gw.url);
        crate::support::py_client(
            &python,
            "mcp_calls.py",
            &["http", &url, &key],
            envs,
            &json!(calls),
        )
    } else {
        crate::support::py_client(
            &python,
            "mcp_calls.py",
            &["stdio", bin, "mcp"],
            envs,
            &json!(calls),
        )
    };
    assert_eq!(out["server"], "llmclis");
    let results = out["results"].as_array().unwrap();
    let ok = |i: usize| -> Value {
        let r = &results[i];
        assert_eq!(r["is_error"], false, "{}: {}", calls[i], r["text"]);
        serde_json::from_str(r["text"].as_str().unwrap()).unwrap()
    };
    let err = |i: usize| -> String {
        let r = &results[i];
        assert_eq!(r["is_error"], true, "{}: {}", calls[i], r["text"]);
        r["text"].as_str().unwrap().to_string()
    };

    // Every tool the server lists was called, and has an object schema.
    let listed: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["inputSchema"]["type"], "object", "{t}");
            t["name"].as_str().unwrap()
        })
        .collect();
    let called: Vec<&str> = calls.iter().filter_map(|c| c["tool"].as_str()).collect();
    for name in &listed {
        let memory_tool = name.starts_with("memory_");
        assert!(
            called.contains(name) || (memory_tool && !memory),
            "{name} is listed but not called"
        );
    }

    assert_eq!(ok(0)[0]["name"], "demo");
    assert!(
        ok(1)
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "pending")
    );
    let added = ok(2);
    assert_eq!(added["id"], new_id);
    assert_eq!(
        (added["role"].as_str(), added["external_ref"].as_str()),
        (Some("writer"), Some("X1"))
    );
    assert_eq!(added["priority"], 1);
    assert_eq!(ok(3)["id"], new_id, "found by its ref");
    let edited = ok(4);
    assert_eq!(edited["title"], "Write the changelog for 0.2");
    assert_eq!(
        (&edited["role"], &edited["external_ref"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(ok(5)["changed"], true);
    let claimed = ok(6);
    assert_eq!(
        (claimed["id"].as_i64(), claimed["claimed_by"].as_str()),
        (Some(next_id), Some("claude-code"))
    );
    assert_eq!(ok(7)["text"], "started");
    let done = ok(8);
    assert_eq!(
        (done["status"].as_str(), done["previous_status"].as_str()),
        (Some("done"), Some("in-progress"))
    );
    assert!(ok(9)["deleted_at"].is_string());
    let planned = ok(10);
    assert_eq!(planned["project_id"], 1);
    assert!(
        planned["external_ref"].as_str().unwrap().starts_with("S1."),
        "{planned}"
    );
    assert_eq!(ok(11)["project_id"], 1);
    let check = ok(12);
    assert_eq!(
        (
            check["drift"].as_array().map(Vec::len),
            check["pending_edits"].as_i64()
        ),
        (Some(0), Some(0)),
        "{check}"
    );
    assert_eq!(ok(13)["id"], "KM-001");
    assert_eq!(ok(14)["status"], "closed");
    assert!(ok(15)["path"].as_str().unwrap().ends_with("research.md"));
    let models = ok(16);
    assert_eq!(models["models"][0]["id"], "m");
    assert_eq!(models["providers"][0]["health"]["ok"], false);
    assert!(err(17).contains("`id` is required"));
    assert!(err(18).contains("finished"));
    assert!(err(19).contains("poet"));
    assert!(err(20).contains("unknown tool"));
    assert!(err(21).contains("has no proposed change"), "{}", err(21));
    assert!(err(22).contains("has no proposed change"));
    assert!(err(23).contains("was deleted"), "{}", err(23));
    if memory {
        assert_eq!(ok(24)["type"], "design_doc");
        let hits = ok(25);
        assert!(
            hits[0]["text"].as_str().unwrap().contains("port 8000"),
            "{hits}"
        );
        assert!(ok(26)[0]["text"].as_str().unwrap().contains("port 8000"));
        assert_eq!(ok(27), json!([]), "no stage roll-ups yet");
        assert_eq!(results[28]["is_error"], true, "{}", results[28]);
        assert!(
            results[28]["text"].as_str().unwrap().contains("galaxy"),
            "{}",
            results[28]
        );
    }

    // The store and the files agree with what the calls said.
    let s = llmclis::store::Store::open(&env.db()).unwrap();
    assert_eq!(
        s.task(next_id).unwrap().status,
        llmclis::store::Status::Done
    );
    assert!(s.task(new_id).unwrap().deleted_at.is_some());
    let plans = std::fs::read_to_string(env.dir.path().join("plans.md")).unwrap();
    assert!(plans.contains("Benchmark the parser") && plans.contains("merged"));
    assert!(plans.contains("issues.md#"), "S1.2 links its issue");
    let issues = std::fs::read_to_string(env.dir.path().join("issues.md")).unwrap();
    assert!(issues.contains("Parser hangs") && issues.contains("fixed"));
    let research = std::fs::read_to_string(env.dir.path().join("research.md")).unwrap();
    assert!(research.contains("pest against nom"));
}
