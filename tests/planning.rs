//! `task expand`: the planner splits one task now, the way a run's planner
//! would, recorded the way a run records it.

use std::time::Duration;

use crate::orchestrate::{PLANNER, install, registry_yaml, text};
use crate::support::Env;
use crate::support::fake_llm::{FakeLlm, Reply, Route};

const PLAN: &str = r#"{"split": true, "reason": "two separate pieces", "subtasks": [
  {"title": "Write the lexer", "description": "tokens", "depends_on": []},
  {"title": "", "description": "an empty title is dropped", "depends_on": []},
  {"title": "Write the grammar", "description": "rules", "depends_on": [0, 5]},
  {"title": "Test both", "description": "tests", "role": "tester", "depends_on": [0, 2]}
]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_splits_a_task_now_as_a_run_would_and_records_the_call() {
    let llm = FakeLlm::routed(
        vec![Route::new(PLANNER, vec![text(PLAN)], Reply::Ok("unused"))],
        None,
        Duration::ZERO,
    )
    .await;
    let env = Env::new();
    install(&env, &registry_yaml(&llm.url), 60);
    env.run(&["project", "add", "p"]).assert_ok();
    let id = env.json(&[
        "task",
        "add",
        "--project-id",
        "1",
        "Build the parser",
        "--priority",
        "high",
    ])["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let out = env.json(&["task", "expand", &id, "--max", "3"]);
    assert_eq!(out["split"], true, "{out}");
    let subs = out["subtasks"].as_array().unwrap();
    let titles: Vec<&str> = subs.iter().map(|t| t["title"].as_str().unwrap()).collect();
    // Empty titles dropped, at most --max, dependencies only on earlier
    // kept ones (index 5 does not exist), as a run keeps them.
    assert_eq!(
        titles,
        ["Write the lexer", "Write the grammar", "Test both"]
    );
    let lexer = subs[0]["id"].as_i64().unwrap();
    let grammar = subs[1]["id"].as_i64().unwrap();
    assert_eq!(subs[1]["depends_on"], serde_json::json!([lexer]));
    assert_eq!(subs[2]["depends_on"], serde_json::json!([lexer, grammar]));
    assert_eq!(subs[2]["role"], "tester");
    assert!(
        subs.iter().all(|t| t["priority"] == 3),
        "the task's priority"
    );
    let shown = env.json(&["task", "show", &id]);
    let notes = shown["notes"].to_string();
    assert!(
        notes.contains("Split by the planner into 3 subtasks"),
        "{notes}"
    );
    assert_eq!(
        shown["model_calls"][0]["purpose"], "expand",
        "{}",
        shown["model_calls"]
    );
    assert_eq!(shown["model_calls"][0]["role"], "planner");
    // The prompt was the run's planner prompt about this task.
    assert!(llm.prompts_with(PLANNER)[0].contains("Build the parser"));
    // Again: refused, the split is there.
    env.run(&["task", "expand", &id])
        .assert_err(2, &["split already", "3 subtasks"]);
    // Next works on the subtasks.
    assert_eq!(env.json(&["task", "next"])["id"], lexer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planner_that_keeps_the_task_whole_changes_nothing_but_a_note() {
    let llm = FakeLlm::routed(
        vec![Route::new(
            PLANNER,
            vec![text(
                r#"{"split": false, "reason": "one small change", "subtasks": []}"#,
            )],
            Reply::Ok("unused"),
        )],
        None,
        Duration::ZERO,
    )
    .await;
    let env = Env::new();
    install(&env, &registry_yaml(&llm.url), 60);
    env.run(&["project", "add", "p"]).assert_ok();
    env.run(&["task", "add", "--project-id", "1", "Fix a typo"])
        .assert_ok();
    let out = env.json(&["task", "expand", "1"]);
    assert_eq!(out["split"], false);
    assert_eq!(out["subtasks"], serde_json::json!([]));
    let shown = env.json(&["task", "show", "1"]);
    assert!(
        shown["notes"]
            .to_string()
            .contains("kept the task whole: one small change")
    );
    assert_eq!(shown["subtasks"], serde_json::json!([]), "{shown}");
}

const PRD: &str = "# Todo app\n\nPeople keep a list of things to do.\n\n- Add an item with a title.\n- Mark an item done.\n- List the items, open ones first.\n\nLater: share a list with a friend by link.\n";

const OUTLINE: &str = r#"{"stages": [
  {"title": "Items", "goal": "keep a list", "tasks": [
    {"title": "Add an item", "description": "an item with a title is stored", "depends_on": []},
    {"title": "Mark done", "description": "an item can be marked done", "depends_on": [0]},
    {"title": "List items", "description": "open ones first", "depends_on": [0, 1]}
  ]},
  {"title": "Sharing", "goal": "share by link", "tasks": [
    {"title": "Share a list", "description": "a link opens the list", "depends_on": [2, 9]}
  ]}
]}"#;

/// The stages go after the file's own (untouched, byte for byte), the
/// tasks are imported with their dependencies, and a second document
/// comes after the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_parse_appends_stages_and_imports_them_with_dependencies() {
    let llm = FakeLlm::routed(
        vec![Route::new(
            "Requirements document",
            vec![text(OUTLINE)],
            text(OUTLINE),
        )],
        None,
        Duration::ZERO,
    )
    .await;
    let env = Env::new();
    install(&env, &registry_yaml(&llm.url), 60);
    let seed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/seed_plans.md"
    ))
    .unwrap();
    let plans = env.dir.path().join("plans.md");
    std::fs::write(&plans, &seed).unwrap();
    std::fs::write(env.dir.path().join("prd.md"), PRD).unwrap();
    let out = env.json(&["plans", "parse", "prd.md"]);
    assert_eq!(out["tasks"], 4, "{out}");
    let after = std::fs::read_to_string(&plans).unwrap();
    assert!(
        after.starts_with(seed.trim_end()),
        "the file's own text is untouched"
    );
    let stages: Vec<u64> = out["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert_eq!(stages, [9, 10], "after the seed's 8 stages: {out}");
    assert!(after.contains("## Stage 9 – Items"));
    assert!(after.contains("- [ ] **S10.1 – Share a list**\n"));
    assert!(
        after.contains("  - **Depends On:** S9.3\n"),
        "index 9 does not exist: dropped"
    );
    // The planner saw the document and the stages already there.
    let prompt = &llm.prompts_with("Requirements document")[0];
    assert!(
        prompt.contains("Mark an item done") && prompt.contains("Stage 8: "),
        "{prompt}"
    );
    // Imported: the tasks are in the queue with their dependencies.
    let listed = env.json(&[
        "task",
        "list",
        "--project-id",
        &out["project_id"].to_string(),
    ]);
    let by_ref = |r: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["external_ref"] == r)
            .unwrap_or_else(|| panic!("{r} imported: {listed}"))
            .clone()
    };
    let list = by_ref("S9.3");
    assert_eq!(
        list["depends_on"],
        serde_json::json!([by_ref("S9.1")["id"], by_ref("S9.2")["id"]])
    );
    env.run(&["plans", "check"]).assert_ok();
    // Again with another document: after the new stages.
    let again = env.json(&["plans", "parse", "prd.md"]);
    assert_eq!(again["stages"], serde_json::json!([11, 12]));
}

#[test]
fn plans_parse_refuses_an_empty_document_and_writes_nothing() {
    let env = Env::new();
    std::fs::write(env.dir.path().join("empty.md"), "  \n").unwrap();
    env.run(&["plans", "parse", "empty.md"])
        .assert_err(2, &["empty.md", "nothing to plan"]);
    assert!(!env.dir.path().join("plans.md").exists());
}

/// The plumbing with a real model: SmolLM2-135M through llama.cpp's server,
/// its answer held to the prompt's JSON schema. A model this small plans
/// poorly; what is checked is that its plan lands whole or not at all.
#[test]
fn plans_parse_with_the_real_small_model() {
    let Some((smollm, _, _turn)) = crate::support::servers() else {
        return;
    };
    let env = Env::new();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    std::fs::write(
        env.config_dir().join("model_registry.yaml"),
        crate::support::one_model_registry(
            &format!(
                "{{ name: smol, kind: openai-compatible, flavour: llamacpp, base_url: \"{smollm}\", timeout_secs: 120, max_concurrency: 1, local: true }}"
            ),
            "{ id: smollm2-135m, provider: smol, served_name: SmolLM2-135M-Instruct, context_window: 8192, max_output_tokens: 1024, capabilities: [json_schema] }",
            "smollm2-135m",
        ),
    )
    .unwrap();
    std::fs::write(env.dir.path().join("prd.md"), PRD).unwrap();
    let r = env.run(&["--json", "plans", "parse", "prd.md"]);
    let plans = env.dir.path().join("plans.md");
    if r.code == 0 {
        let out: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert!(out["tasks"].as_u64().unwrap() >= 1, "{out}");
        assert_eq!(out["model"], "smollm2-135m");
        env.run(&["plans", "check", "plans.md"]).assert_ok();
        let listed = env.json(&["task", "list"]);
        assert!(listed.as_array().unwrap().len() as u64 >= out["tasks"].as_u64().unwrap());
    } else {
        // A plan it could not finish (cut at its output limit) is a clean
        // error naming the model, and nothing is written.
        r.assert_err(1, &["smollm2-135m"]);
        assert!(!plans.exists(), "nothing half-written");
    }
}
