//! The executing roles' codebase tools, inside their sandbox.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use llmclis::tools::Toolbox;
use serde_json::json;

fn project() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(
        root.join("src/lib.rs"),
        "pub fn add(a: i32, b: i32) -> i32 {\n    a - b\n}\n",
    )
    .unwrap();
    std::fs::write(root.join("README.md"), "# demo\n").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "outside\n").unwrap();
    (dir, root)
}

fn toolbox(root: &std::path::Path, writes: bool) -> Toolbox {
    let mut commands = BTreeMap::new();
    commands.insert(
        "test".into(),
        vec![
            "sh".into(),
            "-c".into(),
            "grep -q 'a + b' src/lib.rs && echo ok || { echo 'add is wrong'; exit 1; }".into(),
        ],
    );
    commands.insert(
        "slow".into(),
        vec!["sh".into(), "-c".into(), "sleep 30 & sleep 30".into()],
    );
    commands.insert(
        "loud".into(),
        vec![
            "sh".into(),
            "-c".into(),
            "yes line | head -n 100000; echo THE-END".into(),
        ],
    );
    Toolbox::new(root, writes, commands, Duration::from_secs(1), 2_000).unwrap()
}

#[test]
fn every_path_escape_is_refused_and_nothing_outside_is_touched() {
    let (dir, root) = project();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link")).unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
    let mut t = toolbox(&root, true);
    let outside = dir.path().join("secret.txt").to_string_lossy().into_owned();
    for path in [
        "../secret.txt",
        "src/../../secret.txt",
        outside.as_str(),
        "/etc/passwd",
        "link",
        "up/secret.txt",
        "src/lib.rs\0.png",
        "%2e%2e/secret.txt",
        "..%2fsecret.txt",
        "..\\secret.txt",
        "~/secret.txt",
    ] {
        for (tool, args) in [
            ("read_file", json!({"path": path})),
            ("write_file", json!({"path": path, "content": "pwned"})),
            ("list_dir", json!({"path": path})),
        ] {
            let out = t.call(tool, &args).unwrap();
            assert!(!out.ok, "{tool} {path:?} was allowed: {}", out.output);
            assert!(
                out.output.contains("refused") || out.output.contains("does not exist"),
                "{tool} {path:?}: {}",
                out.output
            );
        }
    }
    let patch = "--- a/../secret.txt\n+++ b/../secret.txt\n@@ -1 +1 @@\n-outside\n+pwned\n";
    assert!(!t.call("apply_patch", &json!({"patch": patch})).unwrap().ok);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("secret.txt")).unwrap(),
        "outside\n"
    );
    // Inside is fine, through a subdirectory too.
    assert!(
        t.call("read_file", &json!({"path": "src/./lib.rs"}))
            .unwrap()
            .ok
    );
}

#[test]
fn apply_patch_applies_or_leaves_the_file_untouched() {
    let (_dir, root) = project();
    let mut t = toolbox(&root, true);
    let bad = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn add(a: i32, b: i32) -> i32 {\n-    a * b\n+    a + b\n }\n";
    let out = t.call("apply_patch", &json!({"patch": bad})).unwrap();
    assert!(
        !out.ok && out.output.contains("does not apply"),
        "{}",
        out.output
    );
    assert!(
        std::fs::read_to_string(root.join("src/lib.rs"))
            .unwrap()
            .contains("a - b")
    );
    let good = "diff --git a/src/lib.rs b/src/lib.rs\nindex 1..2 100644\n--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn add(a: i32, b: i32) -> i32 {\n-    a - b\n+    a + b\n }\n--- /dev/null\n+++ b/NOTES.md\n@@ -0,0 +1 @@\n+fixed add\n";
    let out = t.call("apply_patch", &json!({"patch": good})).unwrap();
    assert!(out.ok, "{}", out.output);
    assert!(
        std::fs::read_to_string(root.join("src/lib.rs"))
            .unwrap()
            .contains("a + b")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("NOTES.md")).unwrap(),
        "fixed add\n"
    );
    let diff = t.diff();
    assert!(
        diff.contains("-    a - b")
            && diff.contains("+    a + b")
            && diff.contains("+++ b/NOTES.md"),
        "{diff}"
    );
}

#[test]
fn without_writes_changes_are_proposed_and_the_disk_stays_as_it_was() {
    let (_dir, root) = project();
    let mut t = toolbox(&root, false);
    let out = t.call("write_file", &json!({"path": "src/lib.rs", "content": "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n"})).unwrap();
    assert!(out.ok && out.output.contains("proposed"), "{}", out.output);
    // Later reads see the proposal; the disk does not.
    assert!(
        t.call("read_file", &json!({"path": "src/lib.rs"}))
            .unwrap()
            .output
            .contains("a + b")
    );
    assert!(
        std::fs::read_to_string(root.join("src/lib.rs"))
            .unwrap()
            .contains("a - b")
    );
    assert!(
        t.call("git_diff", &json!({}))
            .unwrap()
            .output
            .contains("+    a + b")
    );
}

#[test]
fn commands_are_allow_listed_timed_out_and_capped() {
    let (_dir, root) = project();
    let t = &mut toolbox(&root, true);
    let out = t.call("run_command", &json!({"name": "rm"})).unwrap();
    assert!(
        !out.ok && out.output.contains("not allowed") && out.output.contains("loud, slow, test"),
        "{}",
        out.output
    );
    let out = t.call("run_tests", &json!({})).unwrap();
    assert!(
        !out.ok && out.output.contains("add is wrong") && out.output.starts_with("exit 1"),
        "{}",
        out.output
    );
    let started = Instant::now();
    let out = t.call("run_command", &json!({"name": "slow"})).unwrap();
    assert!(
        !out.ok && out.output.contains("killed after the 1 s timeout"),
        "{}",
        out.output
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the whole group was killed"
    );
    let out = t.call("run_command", &json!({"name": "loud"})).unwrap();
    assert!(out.ok, "{}", &out.output[..200]);
    assert!(out.output.len() < 2_200, "capped: {}", out.output.len());
    assert!(out.output.contains("bytes cut") && out.output.trim_end().ends_with("THE-END"));
}

#[test]
fn search_and_find_references_skip_ignored_files() {
    let (_dir, root) = project();
    std::fs::write(root.join(".gitignore"), "target/\n").unwrap();
    std::fs::create_dir_all(root.join("target")).unwrap();
    std::fs::write(root.join("target/gen.rs"), "add(1, 2)\n").unwrap();
    std::fs::write(
        root.join("src/main.rs"),
        "fn main() { llm::add(1, 2); let added = 3; }\n",
    )
    .unwrap();
    // `ignore` honours .gitignore inside a git repository.
    std::process::Command::new("git")
        .arg("init")
        .arg("-q")
        .current_dir(&root)
        .status()
        .unwrap();
    let mut t = toolbox(&root, true);
    let out = t
        .call("find_references", &json!({"symbol": "add"}))
        .unwrap();
    assert!(
        out.output.contains("src/lib.rs:1:") && out.output.contains("src/main.rs:1:"),
        "{}",
        out.output
    );
    assert!(!out.output.contains("target/"), "{}", out.output);
    let out = t
        .call("search", &json!({"pattern": "a - b", "path": "src"}))
        .unwrap();
    assert_eq!(out.output, "src/lib.rs:2:     a - b", "the line as written");
    assert!(
        !t.call("search", &json!({"pattern": "("})).unwrap().ok,
        "a bad regex is an answer"
    );
    assert!(
        t.call("memory_query", &json!({})).is_none(),
        "not a codebase tool"
    );
}

#[test]
fn gits_own_files_are_off_limits_and_deletions_and_split_patches_work() {
    let (_dir, root) = project();
    std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(&root)
        .status()
        .unwrap();
    let mut t = toolbox(&root, true);
    for path in [".git/config", ".GIT/hooks/pre-commit", "src/../.git/config"] {
        let out = t
            .call(
                "write_file",
                &json!({"path": path, "content": "[core]\nfsmonitor = touch /tmp/pwned"}),
            )
            .unwrap();
        assert!(!out.ok, "{path}: {}", out.output);
    }
    // Two parts for one file apply one after the other; a deletion deletes.
    let patch = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1 +1 @@\n-pub fn add(a: i32, b: i32) -> i32 {\n+pub fn add(a: i64, b: i64) -> i64 {\n--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -2 +2 @@\n-    a - b\n+    a + b\n--- a/README.md\n+++ /dev/null\n@@ -1 +0,0 @@\n-# demo\n";
    let out = t.call("apply_patch", &json!({"patch": patch})).unwrap();
    assert!(out.ok, "{}", out.output);
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    assert!(lib.contains("a: i64") && lib.contains("a + b"), "{lib}");
    assert!(!root.join("README.md").exists());
    assert!(t.diff().contains("+++ /dev/null"));
    // Absurd hunk numbers are refused, not a crash.
    let out = t
        .call(
            "apply_patch",
            &json!({"patch": "--- a/x\n+++ b/x\n@@ -18446744073709551615,1 +1 @@\n-a\n+b\n"}),
        )
        .unwrap();
    assert!(
        !out.ok && out.output.contains("impossible line number"),
        "{}",
        out.output
    );
}
