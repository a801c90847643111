//! A done task's proposed change (writes off) through the binary: printed
//! as a patch `git apply` takes, applied (and committed) only while it
//! applies and its check passes, or rejected back to pending.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use llmclis::store::{Status, Store};
use serde_json::json;

use crate::orchestrate::{CODER, CRITIC, SUMMARIZER, approve, install, registry_yaml, text};
use crate::support::fake_llm::{FakeLlm, Route};
use crate::support::{Env, Run};

const FIX: &str = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn add(a: i32, b: i32) -> i32 {\n-    a - b\n+    a + b\n }\n";

fn git(root: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A git repository whose test fails until `add` adds, and an installation
/// whose project 1 is rooted there with one checked task, done by a run
/// with writes off (so its change is only proposed).
fn done_with_a_proposed_change(url: &str) -> (Env, std::path::PathBuf) {
    let env = Env::new();
    install(&env, &registry_yaml(url), 60);
    let root = crate::checks::repo(env.dir.path());
    git(&root, &["init", "-q", "-b", "main"]);
    git(&root, &["config", "user.name", "Tester"]);
    git(&root, &["config", "user.email", "tester@example.com"]);
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "start"]);
    env.run(&["project", "add", "repo", "--root", &root.to_string_lossy()])
        .assert_ok();
    env.run(&[
        "task",
        "add",
        "--project-id",
        "1",
        "Fix add",
        "--check",
        "sh tests/test_add.sh",
        "--protect",
        "tests/**",
    ])
    .assert_ok();
    let r = env.run(&["orchestrate", "--project-id", "1", "--max-steps", "1"]);
    r.assert_ok();
    let s = Store::open(&env.db()).unwrap();
    assert_eq!(s.task(1).unwrap().verified, Some(true), "{}", r.stdout);
    assert!(
        std::fs::read_to_string(root.join("src/lib.rs"))
            .unwrap()
            .contains("a - b"),
        "writes off: the tree is untouched"
    );
    (env, root)
}

async fn server() -> FakeLlm {
    // Models without tool calling: the JSON action protocol.
    let action = json!({"tool": "apply_patch", "args": {"patch": FIX}}).to_string();
    FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(SUMMARIZER, vec![], text("Fixed add.")),
            Route::new(
                CODER,
                vec![
                    text(&format!("```json\n{action}\n```")),
                    text("Fixed add()."),
                ],
                text("done"),
            ),
        ],
        None,
        Duration::ZERO,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposed_change_is_a_patch_applied_and_committed_then_refused_once_in() {
    let srv = server().await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let (env, root) = done_with_a_proposed_change(&url);
        let patch = env.run(&["task", "diff", "1"]);
        patch.assert_ok();
        assert!(patch.stdout.contains("+    a + b"), "{}", patch.stdout);
        // `git apply` takes it as printed.
        std::fs::write(env.dir.path().join("fix.patch"), &patch.stdout).unwrap();
        git(&root, &["apply", "--check", "../fix.patch"]);

        let applied = env.json(&["task", "apply", "1", "--commit"]);
        assert_eq!(applied["files"], json!(["src/lib.rs"]));
        assert_eq!(applied["checks"], json!(["sh tests/test_add.sh"]));
        let commit = applied["commit"].as_str().unwrap();
        let log = git(&root, &["log", "-1", "--format=%h %s%n%b"]);
        assert!(log.starts_with(commit), "{log}");
        assert!(
            log.contains("Task 1: Fix add") && log.contains("Llmclis-Task: 1"),
            "{log}"
        );
        assert_eq!(
            git(&root, &["status", "--porcelain"]),
            "",
            "the tree is clean"
        );
        assert!(
            std::fs::read_to_string(root.join("src/lib.rs"))
                .unwrap()
                .contains("a + b")
        );
        // Once in, it no longer applies: refused, nothing written.
        let again = env.run(&["task", "apply", "1"]);
        again.assert_err(1, &["no longer applies"]);
        let shown = env.run(&["task", "show", "1"]);
        assert!(shown.stdout.contains("committed as"), "{}", shown.stdout);

        let rejected = env.json(&["task", "reject", "1", "--reason", "use checked_add"]);
        assert_eq!(rejected["status"], "pending");
        let s = Store::open(&env.db()).unwrap();
        let note = s.notes(1).unwrap().pop().unwrap().text;
        assert!(
            note.contains("rejected") && note.contains("use checked_add"),
            "{note}"
        );
        // Pending now: nothing to reject.
        env.run(&["task", "reject", "1"])
            .assert_err(2, &["not done"]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_check_fails_on_the_tree_now_is_not_applied() {
    let srv = server().await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let (env, root) = done_with_a_proposed_change(&url);
        // The tree moved on: the test now wants more than the change gives.
        std::fs::write(
            root.join("tests/test_add.sh"),
            "echo 'now it wants mul too'; exit 1\n",
        )
        .unwrap();
        let r = env.run(&["task", "apply", "1"]);
        r.assert_err(
            1,
            &["check `sh tests/test_add.sh` fails", "now it wants mul too"],
        );
        assert!(
            std::fs::read_to_string(root.join("src/lib.rs"))
                .unwrap()
                .contains("a - b"),
            "nothing was written"
        );
        // Uncommitted edits of the user's own to its files stop a commit.
        std::fs::write(root.join("tests/test_add.sh"), "exit 0\n").unwrap();
        std::fs::write(
            root.join("src/lib.rs"),
            "pub fn add(a: i32, b: i32) -> i32 {\n    a - b\n}\n// mine\n",
        )
        .unwrap();
        let r = Run::from(
            env.command()
                .args(["task", "apply", "1", "--commit"])
                .output()
                .unwrap(),
        );
        assert_ne!(r.code, 0, "{}", r.stdout);
        assert!(
            std::fs::read_to_string(root.join("src/lib.rs"))
                .unwrap()
                .ends_with("// mine\n"),
            "the user's edit is kept"
        );
        let s = Store::open(&env.db()).unwrap();
        assert_eq!(s.task(1).unwrap().status, Status::Done);
    })
    .await
    .unwrap();
}
