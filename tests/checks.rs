//! Done means verified: a task's checks decide, not the critic. A scripted
//! coder against a real repository (its check a real command), with a
//! critic that approves everything, as a hurried reviewer would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use llmclis::store::{NewTask, Status, Store};
use serde_json::{Value, json};

use crate::orchestrate::{
    CODER, CRITIC, Harness, PLANNER, SUMMARIZER, approve, registry_with, text, tool_call,
};
use crate::support::fake_llm::{FakeLlm, Route};

const TEST: &str = "grep -q 'a + b' src/lib.rs && echo 'test add ... ok' || { echo 'test add ... FAILED: add(2, 2) gave 0'; exit 1; }\n";
const WRONG: &str = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn add(a: i32, b: i32) -> i32 {\n-    a - b\n+    a * b\n }\n";
const RIGHT: &str = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn add(a: i32, b: i32) -> i32 {\n-    a * b\n+    a + b\n }\n";
const DIRECT: &str = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn add(a: i32, b: i32) -> i32 {\n-    a - b\n+    a + b\n }\n";

/// A repository whose test (`sh tests/test_add.sh`) fails until `add` adds.
pub(crate) fn repo(dir: &Path) -> PathBuf {
    let root = dir.join("repo");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::create_dir_all(root.join("tests")).unwrap();
    std::fs::write(
        root.join("src/lib.rs"),
        "pub fn add(a: i32, b: i32) -> i32 {\n    a - b\n}\n",
    )
    .unwrap();
    std::fs::write(root.join("tests/test_add.sh"), TEST).unwrap();
    root
}

/// A project on that repository with one task that carries its check and
/// protects the tests, optionally under a parent.
fn harness(writes: bool, timeout_secs: u64, check: &str) -> (Harness, PathBuf, i64) {
    let dir = tempfile::tempdir().unwrap();
    let root = repo(dir.path());
    let db = dir.path().join("llmclis.db");
    let mut s = Store::open(&db).unwrap();
    let p = s
        .create_project("repo", "", Some(&root.to_string_lossy()), "tester")
        .unwrap();
    let t = s
        .create_task(
            NewTask {
                project_id: p.id,
                title: "Fix add, its test fails".into(),
                checks: vec![check.into()],
                protected: vec!["tests/**".into()],
                ..Default::default()
            },
            "tester",
        )
        .unwrap();
    let tools = llmclis::config::ToolsConfig {
        allow_writes: writes,
        timeout_secs,
        ..Default::default()
    };
    let h = Harness {
        _dir: dir,
        db,
        project: p.id,
        tools,
    };
    (h, root, t.id)
}

fn events_named<'e>(events: &'e [Value], name: &str) -> Vec<&'e Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

async fn wrong_then_right(writes: bool) {
    let srv = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(SUMMARIZER, vec![], text("Fixed add.")),
            Route::new(
                CODER,
                vec![
                    tool_call("c1", "apply_patch", json!({"patch": WRONG})),
                    text("Fixed add(); done."),
                    tool_call("c2", "apply_patch", json!({"patch": RIGHT})),
                    text("Now add() adds."),
                ],
                text("nothing more"),
            ),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let (h, root, task) = harness(writes, 10, "sh tests/test_add.sh");
    let (summary, events) = h
        .run(
            registry_with(&srv.url, &srv.url, "", "[json_schema, tools]"),
            1,
        )
        .await;
    assert_eq!((summary.done, summary.verified), (1, 1), "{summary:?}");
    let finished = events_named(&events, "check_finished");
    assert_eq!(finished.len(), 2, "{events:?}");
    assert_eq!(finished[0]["passed"], false);
    assert_eq!(finished[0]["exit_code"], 1);
    assert_eq!(finished[0]["command"], "sh tests/test_add.sh");
    assert_eq!(finished[1]["passed"], true);
    // The critic was asked once, after the pass, never about the wrong fix.
    assert_eq!(srv.prompts_with(CRITIC).len(), 1);
    // The second attempt's prompt carried the failure.
    let coder = srv.prompts_with(CODER);
    assert!(
        coder
            .iter()
            .any(|p| p.contains("The task's check failed") && p.contains("add(2, 2) gave 0")),
        "{coder:?}"
    );
    let s = h.store();
    let t = s.task(task).unwrap();
    assert_eq!(t.status, Status::Done);
    assert_eq!(t.verified, Some(true));
    let runs = s.check_runs(task).unwrap();
    assert_eq!(
        runs.iter()
            .map(|r| (r.attempt, r.passed, r.exit_code))
            .collect::<Vec<_>>(),
        [(1, false, Some(1)), (2, true, Some(0))]
    );
    assert!(runs[0].output_tail.contains("FAILED"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    if writes {
        assert!(lib.contains("a + b"), "{lib}");
    } else {
        assert!(lib.contains("a - b"), "writes off: untouched: {lib}");
        let step = &s.task_steps(task).unwrap()[0];
        assert!(step.detail["diff"].as_str().unwrap().contains("+    a + b"));
    }
    assert!(
        s.notes(task)
            .unwrap()
            .iter()
            .any(|n| n.text.contains("verified by `sh tests/test_add.sh`")),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_fix_the_critic_would_approve_is_done_only_after_the_check_passes() {
    wrong_then_right(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_writes_on_the_check_runs_in_the_tree() {
    wrong_then_right(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_the_protected_test_is_refused_and_undone() {
    let srv = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(SUMMARIZER, vec![], text("Fixed add.")),
            Route::new(
                CODER,
                vec![
                    tool_call(
                        "c1",
                        "write_file",
                        json!({"path": "tests/test_add.sh", "content": "exit 0\n"}),
                    ),
                    text("The test passes now."),
                    tool_call("c2", "apply_patch", json!({"patch": DIRECT})),
                    text("Fixed add() itself."),
                ],
                text("nothing more"),
            ),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let (h, root, task) = harness(true, 10, "sh tests/test_add.sh");
    let (summary, _) = h
        .run(
            registry_with(&srv.url, &srv.url, "", "[json_schema, tools]"),
            1,
        )
        .await;
    assert_eq!(summary.verified, 1, "{summary:?}");
    assert_eq!(
        std::fs::read_to_string(root.join("tests/test_add.sh")).unwrap(),
        TEST,
        "the protected test is as it was"
    );
    let runs = h.store().check_runs(task).unwrap();
    assert_eq!(runs[0].command, "protected: tests/test_add.sh");
    assert!(!runs[0].passed);
    assert!(runs.last().unwrap().passed);
    assert!(
        srv.prompts_with(CODER)
            .iter()
            .any(|p| p.contains("which this task must not change")),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_check_is_killed_and_a_check_that_never_passes_blocks_with_its_output() {
    let srv = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(PLANNER, vec![], text("not json")),
            Route::new(CODER, vec![], text("Done, surely.")),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let (h, _root, task) = harness(true, 1, "echo waiting for godot; sleep 30");
    let (summary, events) = h
        .run(registry_with(&srv.url, &srv.url, "", "[json_schema]"), 1)
        .await;
    assert_eq!(summary.blocked, 1, "{summary:?}");
    // Two models, each with its first try and two repairs: six checks,
    // each killed at the one-second timeout.
    let finished = events_named(&events, "check_finished");
    assert_eq!(finished.len(), 6, "{finished:?}");
    assert!(
        finished
            .iter()
            .all(|f| f["exit_code"].is_null() && f["passed"] == false)
    );
    assert!(srv.prompts_with(CRITIC).is_empty(), "never reviewed");
    let s = h.store();
    let t = s.task(task).unwrap();
    assert_eq!(t.status, Status::Blocked);
    let note = s.notes(task).unwrap().pop().unwrap().text;
    assert!(
        note.contains("Its check still fails") && note.contains("waiting for godot"),
        "{note}"
    );
    assert!(note.contains("timeout"), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_is_done_only_when_its_check_passes_on_the_combined_change() {
    let srv = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(CODER, vec![], text("I cannot see what is wrong.")),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let (h, _root, parent) = harness(true, 10, "sh tests/test_add.sh");
    let mut s = h.store();
    let child = s
        .create_task(
            NewTask {
                project_id: h.project,
                title: "A part".into(),
                parent_id: Some(parent),
                ..Default::default()
            },
            "tester",
        )
        .unwrap();
    s.mark_task_status(child.id, Status::Done, "tester", Value::Null)
        .unwrap();
    let (summary, events) = h
        .run(registry_with(&srv.url, &srv.url, "", "[json_schema]"), 1)
        .await;
    assert_eq!(summary.blocked, 1, "{summary:?}");
    assert_eq!(events_named(&events, "check_finished").len(), 2);
    let t = s.task(parent).unwrap();
    assert_eq!(t.status, Status::Blocked);
    let note = s.notes(parent).unwrap().pop().unwrap().text;
    assert!(
        note.contains("combined change") && note.contains("FAILED"),
        "{note}"
    );
    // The coder got one try, with the failure.
    let coder = srv.prompts_with(CODER);
    assert_eq!(coder.len(), 1);
    assert!(coder[0].contains("add(2, 2) gave 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_without_a_check_is_done_unverified() {
    let srv = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(CODER, vec![], text("Written.")),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let h = Harness {
        tools: Default::default(),
        ..harness(false, 10, "true").0
    };
    let mut s = h.store();
    let plain = s
        .create_task(
            NewTask {
                project_id: h.project,
                title: "Write a haiku".into(),
                ..Default::default()
            },
            "tester",
        )
        .unwrap();
    // Only the plain task runs: the checked one is already done by hand.
    s.mark_task_status(1, Status::Done, "tester", Value::Null)
        .unwrap();
    let (summary, _) = h
        .run(registry_with(&srv.url, &srv.url, "", "[json_schema]"), 1)
        .await;
    assert_eq!((summary.done, summary.verified), (1, 0));
    let t = s.task(plain.id).unwrap();
    assert_eq!(t.verified, Some(false));
    assert_eq!(
        s.task(1).unwrap().verified,
        Some(false),
        "done by hand, never checked"
    );
    assert!(
        s.notes(plain.id)
            .unwrap()
            .iter()
            .any(|n| n.text.contains("unverified"))
    );
}

const CHECKED_PLANS: &str = "# demo – Plans

## Stage 1 – Checked

**Goal:** Two checked tasks.

**Tasks:**

- [ ] **S1.1 – Write the greeting**
  - **Description:** Say hello.
  - **Check:** `test -f plans.md`
- [ ] **S1.2 – Write the farewell**
  - **Description:** Say goodbye.
  - **Check:** `test -f plans.md`, `grep -q Stage plans.md`

---

## Done / Completed Work Log

- *(Empty – to be populated as work completes)*
";

/// Killed while a check runs: the task is not done (nothing of the step is
/// committed); the next run closes the dead one and checks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_a_check_the_task_is_never_done_and_the_next_run_checks_again() {
    let srv = FakeLlm::routed(
        crate::orchestrate::quick_server_routes(),
        None,
        Duration::ZERO,
    )
    .await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let env = crate::support::Env::new();
        crate::orchestrate::install(&env, &crate::orchestrate::registry_yaml(&url), 60);
        std::fs::write(env.dir.path().join("plans.md"), CHECKED_PLANS).unwrap();
        env.run(&["plans", "import", "plans.md"]).assert_ok();
        let run = |crash: Option<&str>| {
            let mut c = env.command();
            if let Some(p) = crash {
                c.env("LLMCLIS_CRASH_AT", p);
            }
            crate::support::Run::from(
                c.args(["orchestrate", "--project-id", "1", "--max-steps", "10"])
                    .output()
                    .unwrap(),
            )
        };
        let crashed = run(Some("check:2"));
        assert_ne!(crashed.code, 0, "{}", crashed.stderr);
        assert!(
            crashed.stderr.contains("crash point check"),
            "{}",
            crashed.stderr
        );
        let s = Store::open(&env.db()).unwrap();
        let by_ref = |r: &str| s.task_by_ref(1, r).unwrap().unwrap();
        // The first task was done (its one check passed); the second was
        // killed inside its first check: not done, no run of it recorded.
        assert_eq!(by_ref("S1.1").verified, Some(true));
        let second = by_ref("S1.2");
        assert_ne!(second.status, Status::Done);
        assert!(s.check_runs(second.id).unwrap().is_empty());
        let recovered = run(None);
        recovered.assert_ok();
        assert!(
            recovered.stdout.contains("recovered: run 1 died"),
            "{}",
            recovered.stdout
        );
        let second = by_ref("S1.2");
        assert_eq!(
            second.verified,
            Some(true),
            "checked again, and passed: {}",
            recovered.stdout
        );
        let runs = s.check_runs(second.id).unwrap();
        assert_eq!(runs.len(), 2, "both commands, once: {runs:?}");
        assert!(runs.iter().all(|r| r.passed && r.run_id == Some(2)));
        let plans = std::fs::read_to_string(env.dir.path().join("plans.md")).unwrap();
        assert!(
            plans.contains("verified by `test -f plans.md`, `grep -q Stage plans.md`"),
            "{plans}"
        );
        assert_eq!(
            plans.matches("completed by").count(),
            3,
            "two tasks and the stage: {plans}"
        );
        assert!(
            plans.contains("**S1.2 – Write the farewell** completed by `tester"),
            "{plans}"
        );
    })
    .await
    .unwrap();
}

/// The same path on the real llama.cpp server with SmolLM2 (the plumbing,
/// not the quality): the answer's change is checked before the critic sees
/// it, the run is recorded, and the task never ends done unverified.
#[test]
fn the_real_small_model_goes_through_the_check_first() {
    let Some((smollm, _gemma, _turn)) = crate::support::servers() else {
        return;
    };
    let env = crate::support::Env::new();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    // The task's role hint decides (a writer: no tools, so its answer
    // always reaches the check).
    let registry = crate::support::one_model_registry(
        &format!(
            "{{ name: smol, kind: openai-compatible, flavour: llamacpp, base_url: \"{smollm}\", timeout_secs: 120, max_concurrency: 1, local: true }}"
        ),
        "{ id: smollm2-135m, provider: smol, served_name: SmolLM2-135M-Instruct, context_window: 2048, max_output_tokens: 200, capabilities: [fast, cheap, json_schema] }",
        "smollm2-135m",
    )
    .replace(
        "rules:\n",
        "rules:\n  - { name: explicit-role, match: { has_role_hint: true }, role: from_hint }\n",
    );
    std::fs::write(env.config_dir().join("model_registry.yaml"), registry).unwrap();
    std::fs::write(
        env.config_dir().join("config.toml"),
        "[orchestrator]\nmax_rounds = 1\ncheck_rounds = 0\nmax_plan_depth = 0\n",
    )
    .unwrap();
    let root = env.dir.path().join("work");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("notes.txt"), "hello\n").unwrap();
    env.run(&["project", "add", "demo", "--root", &root.to_string_lossy()])
        .assert_ok();
    env.run(&[
        "task",
        "add",
        "--project-id",
        "1",
        "Write one sentence about SQLite",
        "--role",
        "writer",
        "--check",
        "test -f notes.txt",
    ])
    .assert_ok();
    let r = env.run(&[
        "--json",
        "orchestrate",
        "--project-id",
        "1",
        "--max-steps",
        "1",
    ]);
    r.assert_ok();
    let events: Vec<Value> = r
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    let check = names.iter().position(|n| *n == "check_finished");
    let critique = events
        .iter()
        .position(|e| e["event"] == "model_call" && e["purpose"] == "critique");
    assert!(check.is_some(), "{}", r.stdout);
    if let (Some(c), Some(k)) = (check, critique) {
        assert!(c < k, "the check comes before the critic");
    }
    assert!(
        r.stdout.contains(r#""role":"writer""#),
        "the hint decided: {}",
        r.stdout
    );
    let s = Store::open(&env.db()).unwrap();
    let runs = s.check_runs(1).unwrap();
    assert_eq!(runs.len(), 1);
    assert!(runs[0].passed && runs[0].command == "test -f notes.txt");
    let t = s.task(1).unwrap();
    assert!(
        matches!(t.status, Status::Done | Status::Blocked),
        "{:?}",
        t.status
    );
    if t.status == Status::Done {
        assert_eq!(t.verified, Some(true));
    }
}
