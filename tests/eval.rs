//! `llmclis eval` through the binary: a scripted server answers each case
//! with a patch through tool calls, and the case's own check decides. A
//! right patch is solved, a wrong one is not, one that edits the test file
//! is caught; broken case folders are errors naming the case while the
//! others still run; the shipped suite's solutions all solve it; the real
//! SmolLM2 server runs two shipped cases end to end (recorded, not judged).

use std::path::{Path, PathBuf};
use std::time::Duration;

use llmclis::store::Store;
use serde_json::{Value, json};

use crate::orchestrate::{CRITIC, SUMMARIZER, approve, text, tool_call};
use crate::support::fake_llm::{FakeLlm, Route};
use crate::support::{Env, servers};

/// An installation whose one model (with tools) is served at `url`.
fn installed(url: &str) -> Env {
    installed_with(&crate::support::one_model_registry(
        &format!(
            "{{ name: p, kind: openai-compatible, flavour: vllm, base_url: \"{url}\", timeout_secs: 60, max_concurrency: 8, local: true }}"
        ),
        "{ id: m, provider: p, served_name: served, context_window: 32768, max_output_tokens: 4096, capabilities: [json_schema, tools] }",
        "m",
    ))
}

fn installed_with(registry: &str) -> Env {
    let env = Env::new();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    std::fs::write(env.config_dir().join("model_registry.yaml"), registry).unwrap();
    env
}

const CODE: &str =
    "def last(items):\n    \"\"\"The last item.\"\"\"\n    return items[len(items)]\n";
const TEST: &str = "import unittest\nfrom code import last\n\n\nclass T(unittest.TestCase):\n    def test_last(self):\n        self.assertEqual(last([1, 2, 3]), 3)\n\n\nif __name__ == \"__main__\":\n    unittest.main()\n";
const RIGHT: &str = "--- a/code.py\n+++ b/code.py\n@@ -1,3 +1,3 @@\n def last(items):\n     \"\"\"The last item.\"\"\"\n-    return items[len(items)]\n+    return items[len(items) - 1]\n";
const WRONG: &str = "--- a/code.py\n+++ b/code.py\n@@ -1,3 +1,3 @@\n def last(items):\n     \"\"\"The last item.\"\"\"\n-    return items[len(items)]\n+    return items[0]\n";
const CHEAT: &str = "--- a/test_code.py\n+++ b/test_code.py\n@@ -4,7 +4,7 @@\n \n class T(unittest.TestCase):\n     def test_last(self):\n-        self.assertEqual(last([1, 2, 3]), 3)\n+        self.assertTrue(True)\n \n \n if __name__ == \"__main__\":\n";

/// A Python case whose title is `title`.
fn python_case(suite: &Path, name: &str, title: &str) {
    let dir = suite.join(name);
    std::fs::create_dir_all(dir.join("repo")).unwrap();
    std::fs::write(dir.join("repo/code.py"), CODE).unwrap();
    std::fs::write(dir.join("repo/test_code.py"), TEST).unwrap();
    std::fs::write(
        dir.join("case.toml"),
        format!(
            "title = \"{title}\"\ndescription = \"last() fails on every list; test_code.py shows it.\"\ntags = [\"bug\"]\ncheck = [\"python3\", \"-m\", \"unittest\", \"-q\"]\nprotected = [\"test_code.py\"]\n[limits]\nsteps = 2\ntokens = 100000\nseconds = 120\n"
        ),
    )
    .unwrap();
}

/// The coder's answers for a case, for each of `runs` runs: apply `patch`,
/// then say it is done.
fn answers(title: &str, patch: &str, runs: usize) -> Route {
    let needle: &'static str = Box::leak(title.to_string().into_boxed_str());
    let done = || text("Fixed it; the test passes now.");
    Route::new(
        needle,
        (0..runs)
            .flat_map(|_| {
                [
                    tool_call("p1", "apply_patch", json!({"patch": patch})),
                    done(),
                ]
            })
            .collect(),
        done(),
    )
}

async fn server(mut routes: Vec<Route>) -> FakeLlm {
    // The critic and the summarizer first: their prompts quote the title.
    let mut all = vec![
        Route::new(CRITIC, vec![], approve()),
        Route::new(SUMMARIZER, vec![], text("Done.")),
        // A planner asked to split a task every model failed keeps it whole.
        Route::new(
            crate::orchestrate::PLANNER,
            vec![],
            text(r#"{"split": false, "reason": "one change"}"#),
        ),
    ];
    all.append(&mut routes);
    FakeLlm::routed(all, None, Duration::ZERO).await
}

fn results(env: &Env) -> Vec<Value> {
    let s = Store::open(&env.db()).unwrap();
    s.eval_results(1)
        .unwrap()
        .into_iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_decides_right_wrong_and_cheating_patches() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite");
    python_case(&suite, "a-right", "Fix last, variant right");
    python_case(&suite, "b-wrong", "Fix last, variant wrong");
    python_case(&suite, "c-cheat", "Fix last, variant cheat");
    let srv = server(vec![
        answers("variant right", RIGHT, 12),
        answers("variant wrong", WRONG, 12),
        answers("variant cheat", CHEAT, 12),
    ])
    .await;
    let url = srv.url.clone();
    let suite_arg = suite.to_string_lossy().into_owned();
    let (env, out) = tokio::task::spawn_blocking(move || {
        let env = installed(&url);
        let r = env.run(&[
            "--json",
            "eval",
            &suite_arg,
            "--config",
            "direct",
            "--config",
            "pipeline",
            "--config",
            "pipeline-unchecked",
        ]);
        r.assert_ok();
        let out: Value = serde_json::from_str(&r.stdout).unwrap();
        (env, out)
    })
    .await
    .unwrap();
    let result = |case: &str, config: &str| {
        out["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["case"] == case && r["config"] == config)
            .cloned()
            .unwrap()
    };
    let outcome = |case: &str, config: &str| result(case, config)["outcome"].clone();
    for config in ["direct", "pipeline", "pipeline-unchecked"] {
        assert_eq!(outcome("a-right", config), "solved", "{config}: {out:#}");
        assert_eq!(outcome("b-wrong", config), "unsolved", "{config}");
    }
    for config in ["direct", "pipeline-unchecked"] {
        assert_eq!(outcome("c-cheat", config), "protected_changed", "{config}");
    }
    // With the check on the task, the run itself refused the edit to the
    // protected test and undid it: the case is unsolved, the test intact.
    assert_eq!(outcome("c-cheat", "pipeline"), "unsolved");
    assert!(
        result("c-cheat", "pipeline")["check_failures"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(
        result("b-wrong", "pipeline")["check_failures"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let totals = &out["totals"];
    assert_eq!(totals[0]["config"], "direct");
    assert_eq!(
        (totals[0]["solved"].clone(), totals[0]["runs"].clone()),
        (json!(1), json!(3))
    );
    // The false-done rate: with checks, nothing is done that fails its
    // check; with the critic alone, the wrong and the cheating patch were.
    assert_eq!(totals[1]["config"], "pipeline");
    assert_eq!(
        (
            totals[1]["solved"].clone(),
            totals[1]["done"].clone(),
            totals[1]["false_done"].clone()
        ),
        (json!(1), json!(1), json!(0)),
        "{totals}"
    );
    assert_eq!(totals[2]["config"], "pipeline-unchecked");
    assert_eq!(
        (
            totals[2]["solved"].clone(),
            totals[2]["done"].clone(),
            totals[2]["false_done"].clone()
        ),
        (json!(1), json!(3), json!(2)),
        "{totals}"
    );
    // Direct calls no critic; the checked pipeline asks it only after a
    // passing check (once); the unchecked one once per case.
    let critic_calls = srv.prompts_with(CRITIC).len();
    assert_eq!(critic_calls, 4);
    // Every result is in the user's store; the user's projects are not.
    let stored = results(&env);
    assert_eq!(stored.len(), 9);
    assert!(
        stored
            .iter()
            .filter(|r| r["config"] == "direct")
            .all(|r| r["tool_calls"] == 1),
        "{stored:?}"
    );
    let s = Store::open(&env.db()).unwrap();
    assert!(
        s.projects().unwrap().is_empty(),
        "cases run on scratch databases"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_cases_are_named_and_the_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite");
    python_case(&suite, "good", "Fix last, variant good");
    // No check.
    python_case(&suite, "no-check", "x");
    let toml = suite.join("no-check/case.toml");
    let t = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        t.lines()
            .filter(|l| !l.starts_with("check"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    // A check that is not executable.
    python_case(&suite, "not-exec", "x");
    std::fs::write(suite.join("not-exec/repo/check.sh"), "#!/bin/sh\nexit 0\n").unwrap();
    let toml = suite.join("not-exec/case.toml");
    let t = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        t.replace(
            "check = [\"python3\", \"-m\", \"unittest\", \"-q\"]",
            "check = [\"./check.sh\"]",
        ),
    )
    .unwrap();
    // A repo that is a file.
    python_case(&suite, "repo-file", "x");
    std::fs::remove_dir_all(suite.join("repo-file/repo")).unwrap();
    std::fs::write(suite.join("repo-file/repo"), "not a folder").unwrap();
    let srv = server(vec![answers("variant good", RIGHT, 1)]).await;
    let url = srv.url.clone();
    let suite_arg = suite.to_string_lossy().into_owned();
    tokio::task::spawn_blocking(move || {
        let env = installed(&url);
        let r = env.run(&["eval", &suite_arg, "--config", "direct"]);
        assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
        for needle in [
            "case no-check:",
            "has no check",
            "case not-exec:",
            "is not executable: chmod +x",
            "case repo-file:",
            "is not a directory",
        ] {
            assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
        }
        assert!(
            r.stdout.contains("good") && r.stdout.contains("solved"),
            "the good case ran: {}",
            r.stdout
        );
        let stored = results(&env);
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0]["outcome"], "solved");
        // Usage errors: a made-up configuration, a missing suite.
        env.run(&["eval", &suite_arg, "--config", "fast"])
            .assert_err(2, &["unknown configuration \"fast\""]);
        env.run(&["eval", "/nonexistent/suite"])
            .assert_err(2, &["not a folder of eval cases"]);
    })
    .await
    .unwrap();
}

/// The shipped suite in `evals/`.
fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("evals")
}

fn shipped_cases() -> Vec<(String, String, String)> {
    let mut cases: Vec<(String, String, String)> = std::fs::read_dir(shipped())
        .unwrap()
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let toml = std::fs::read_to_string(dir.join("case.toml")).ok()?;
            let v: toml::Value = toml::from_str(&toml).unwrap();
            let patch = std::fs::read_to_string(dir.join("solution.patch")).unwrap();
            Some((
                dir.file_name()?.to_string_lossy().into_owned(),
                v["title"].as_str().unwrap().to_string(),
                patch,
            ))
        })
        .collect();
    cases.sort();
    cases
}

/// Every shipped case is solved by its known-correct patch, applied through
/// the agent's own tool: the suite is sound and a solve is detected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_case_is_solved_by_its_solution() {
    let cases = shipped_cases();
    assert_eq!(
        cases.len(),
        14,
        "README's figures are on the 14 shipped cases"
    );
    let srv = server(
        cases
            .iter()
            .map(|(_, title, patch)| answers(title, patch, 1))
            .collect(),
    )
    .await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let env = installed(&url);
        let suite = shipped();
        let r = env.run(&[
            "--json",
            "eval",
            suite.to_str().unwrap(),
            "--config",
            "direct",
        ]);
        r.assert_ok();
        let out: Value = serde_json::from_str(&r.stdout).unwrap();
        let unsolved: Vec<String> = out["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["outcome"] != "solved")
            .map(|r| format!("{}: {} ({})", r["case"], r["outcome"], r["detail"]))
            .collect();
        assert!(unsolved.is_empty(), "{unsolved:#?}");
        assert_eq!(out["totals"][0]["solved"], cases.len());
    })
    .await
    .unwrap();
}

/// The real SmolLM2 server on two shipped cases, end to end. Whether it
/// solves them is recorded, not asserted: a 135M model rarely does.
#[test]
fn the_real_small_model_runs_two_shipped_cases() {
    let Some((smollm, _, _turn)) = servers() else {
        return;
    };
    let env = installed_with(&crate::support::one_model_registry(
        &format!(
            "{{ name: smol, kind: openai-compatible, flavour: llamacpp, base_url: \"{smollm}\", timeout_secs: 120, max_concurrency: 1, local: true }}"
        ),
        "{ id: smollm2-135m, provider: smol, served_name: SmolLM2-135M-Instruct, context_window: 8192, max_output_tokens: 512, capabilities: [json_schema] }",
        "smollm2-135m",
    ));
    let cases = shipped_cases();
    let suite = shipped();
    let r = env.run(&[
        "--json",
        "eval",
        suite.to_str().unwrap(),
        "--config",
        "direct",
        "--only",
        &cases[0].0,
        "--only",
        &cases[1].0,
    ]);
    r.assert_ok();
    let out: Value = serde_json::from_str(&r.stdout).unwrap();
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{out:#}");
    for res in results {
        assert_ne!(res["outcome"], "error", "{res:#}");
        assert!(res["model_calls"].as_u64().unwrap() >= 1, "{res:#}");
        println!(
            "real SmolLM2-135M on {}: {} in {:.1} s",
            res["case"], res["outcome"], res["seconds"]
        );
    }
}
