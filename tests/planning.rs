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
    assert_eq!(shown["model_calls"][0]["purpose"], "expand", "{}", shown["model_calls"]);
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
