//! Writes on in a git project, through the binary: each task works in its
//! own worktree on its own branch, a done task's change lands as a commit
//! naming it (or waits, or is left for review, or blocks on a conflict),
//! and a killed run's worktree is landed or resumed by the next run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use llmclis::store::{Status, Store};
use serde_json::json;

use crate::orchestrate::{CODER, CRITIC, SUMMARIZER, approve, install, registry_yaml, text};
use crate::support::fake_llm::{FakeLlm, Reply, Route};
use crate::support::{Env, Run};

fn git(root: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A coder that writes `content` to `path` (the JSON action protocol), then
/// says it is done; its first answer comes after `delay`.
fn writes(title: &'static str, path: &str, content: &str, delay: Duration) -> Route {
    let action = json!({"tool": "write_file", "args": {"path": path, "content": content}});
    Route::new(
        title,
        vec![
            Reply::Delay(delay, Box::new(text(&format!("```json\n{action}\n```")))),
            text("Done."),
        ],
        text("Done."),
    )
}

async fn server(coders: Vec<Route>) -> FakeLlm {
    let mut routes = vec![
        Route::new(CRITIC, vec![], approve()),
        Route::new(SUMMARIZER, vec![], text("summary")),
    ];
    routes.extend(coders);
    routes.push(Route::new(CODER, vec![], text("Done.")));
    FakeLlm::routed(routes, None, Duration::ZERO).await
}

/// A server whose coder edits alpha.txt at once.
async fn edits_alpha() -> FakeLlm {
    server(vec![writes(
        "Edit alpha",
        "alpha.txt",
        "alpha, edited\n",
        Duration::ZERO,
    )])
    .await
}

fn read(root: &Path, file: &str) -> String {
    std::fs::read_to_string(root.join(file)).unwrap()
}

/// A committed repository (alpha.txt, beta.txt, shared.txt) as project 1,
/// and the tasks, added through the binary.
fn project(env: &Env, url: &str, config: &str, tasks: &[&str]) -> PathBuf {
    install(env, &registry_yaml(url), 60);
    if !config.is_empty() {
        let path = env.config_dir().join("config.toml");
        let mut c = std::fs::read_to_string(&path).unwrap();
        c.push_str(config);
        std::fs::write(&path, c).unwrap();
    }
    let root = env.dir.path().join("repo");
    std::fs::create_dir_all(&root).unwrap();
    for (f, c) in [
        ("alpha.txt", "alpha\n"),
        ("beta.txt", "beta\n"),
        ("shared.txt", "value = 1\n"),
    ] {
        std::fs::write(root.join(f), c).unwrap();
    }
    git(&root, &["init", "-q", "-b", "main"]);
    git(&root, &["config", "user.name", "Tester"]);
    git(&root, &["config", "user.email", "tester@example.com"]);
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "start"]);
    git(&root, &["tag", "start"]);
    env.run(&["project", "add", "repo", "--root", &root.to_string_lossy()])
        .assert_ok();
    for t in tasks {
        env.run(&["task", "add", "--project-id", "1", t])
            .assert_ok();
    }
    root
}

fn orchestrate(env: &Env, workers: &str, crash: Option<&str>) -> Run {
    let mut c = env.command();
    if let Some(p) = crash {
        c.env("LLMCLIS_CRASH_AT", p);
    }
    Run::from(
        c.args([
            "orchestrate",
            "--project-id",
            "1",
            "--max-steps",
            "10",
            "--workers",
            workers,
            "--allow-writes",
        ])
        .output()
        .unwrap(),
    )
}

fn branches(root: &Path) -> Vec<String> {
    git(
        root,
        &["branch", "--list", "--format=%(refname:short)", "llmclis/*"],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

fn worktrees(root: &Path) -> usize {
    git(root, &["worktree", "list", "--porcelain"])
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count()
}

fn notes(env: &Env, task: i64) -> String {
    let s = Store::open(&env.db()).unwrap();
    s.notes(task)
        .unwrap()
        .iter()
        .map(|n| n.text.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Two workers on two tasks that edit different files: each works in its
/// own worktree, both changes land as commits that name their task, and
/// the tree is clean with no worktree or branch left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_different_files_land_two_commits_naming_their_tasks() {
    let srv = server(vec![
        writes(
            "Edit alpha",
            "alpha.txt",
            "alpha, edited\n",
            Duration::from_millis(300),
        ),
        writes(
            "Edit beta",
            "beta.txt",
            "beta, edited\n",
            Duration::from_millis(300),
        ),
    ])
    .await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let env = Env::new();
        let root = project(&env, &url, "", &["Edit alpha", "Edit beta"]);
        let r = orchestrate(&env, "2", None);
        r.assert_ok();
        assert_eq!(read(&root, "alpha.txt"), "alpha, edited\n");
        assert_eq!(read(&root, "beta.txt"), "beta, edited\n");
        let log = git(&root, &["log", "--format=%s%n%b", "start..HEAD"]);
        for (id, title) in [(1, "Edit alpha"), (2, "Edit beta")] {
            assert!(
                log.contains(&format!("Task {id}: {title}"))
                    && log.contains(&format!("Llmclis-Task: {id}"))
                    && log.contains("Llmclis-Model: m"),
                "{log}"
            );
        }
        let task_trailers = git(
            &root,
            &[
                "log",
                "--format=%(trailers:key=Llmclis-Task,valueonly)",
                "start..HEAD",
            ],
        );
        let mut ids: Vec<&str> = task_trailers.split_whitespace().collect();
        ids.sort();
        assert_eq!(ids, ["1", "2"], "one commit per task");
        assert_eq!(
            git(&root, &["status", "--porcelain"]),
            "",
            "the tree is clean"
        );
        assert!(branches(&root).is_empty(), "{:?}", branches(&root));
        assert_eq!(worktrees(&root), 1, "only the main tree");
        assert!(
            notes(&env, 1).contains("Works on branch llmclis/task-1"),
            "{}",
            notes(&env, 1)
        );
        assert!(
            notes(&env, 1).contains("landed as commit"),
            "{}",
            notes(&env, 1)
        );
    })
    .await
    .unwrap();
}

/// Two workers on one line: the first lands; the second either rebases
/// cleanly or, as here where both rewrite the same line, is blocked with
/// the conflicting path and its branch kept. Nothing is lost either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_the_same_line_land_one_and_block_the_other_with_the_conflict() {
    let srv = server(vec![
        writes(
            "Set two",
            "shared.txt",
            "value = 2\n",
            Duration::from_millis(300),
        ),
        writes(
            "Set three",
            "shared.txt",
            "value = 3\n",
            Duration::from_millis(1_500),
        ),
    ])
    .await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let env = Env::new();
        let root = project(&env, &url, "", &["Set two", "Set three"]);
        let r = orchestrate(&env, "2", None);
        let s = Store::open(&env.db()).unwrap();
        let (two, three) = (s.task(1).unwrap(), s.task(2).unwrap());
        let main = read(&root, "shared.txt");
        match (two.status, three.status) {
            (Status::Done, Status::Blocked) => {
                assert_eq!(main, "value = 2\n");
                r.assert_ok();
                assert!(r.stdout.contains("task 2 blocked"), "{}", r.stdout);
                let n = notes(&env, 2);
                assert!(n.contains("conflicts") && n.contains("shared.txt"), "{n}");
                // Nothing lost: its change is its branch's commit.
                let branch = "llmclis/task-2";
                assert_eq!(branches(&root), [branch]);
                assert_eq!(
                    git(&root, &["show", &format!("{branch}:shared.txt")]),
                    "value = 3"
                );
                assert!(
                    git(&root, &["log", "-1", "--format=%b", branch]).contains("Llmclis-Task: 2")
                );
                // Set back to pending, it starts again from HEAD (the old
                // attempt kept under another name) instead of conflicting
                // again.
                env.run(&["task", "status", "2", "pending"]).assert_ok();
                orchestrate(&env, "1", None).assert_ok();
                let s = Store::open(&env.db()).unwrap();
                assert_eq!(
                    s.task(2).unwrap().status,
                    Status::Done,
                    "{}",
                    notes(&env, 2)
                );
                let kept = branches(&root);
                assert!(
                    kept.len() == 1 && kept[0].starts_with("llmclis/task-2-was-"),
                    "{kept:?}"
                );
                assert_eq!(
                    git(&root, &["show", &format!("{}:shared.txt", kept[0])]),
                    "value = 3"
                );
            }
            // The second started after the first landed: a clean rebase.
            (Status::Done, Status::Done) => {
                assert_eq!(main, "value = 3\n");
                assert!(branches(&root).is_empty());
            }
            other => panic!("{other:?}: {}\n{}", r.stdout, r.stderr),
        }
        assert_eq!(git(&root, &["status", "--porcelain"]), "");
        assert_eq!(worktrees(&root), 1);
    })
    .await
    .unwrap();
}

/// A run killed after the store says done and before the change lands
/// leaves the task's worktree; the next run lands it and removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_a_killed_run_did_not_land_is_landed_by_the_next_run() {
    let srv = edits_alpha().await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let env = Env::new();
        let root = project(&env, &url, "", &["Edit alpha"]);
        let crashed = orchestrate(&env, "1", Some("land"));
        assert_ne!(crashed.code, 0, "{}", crashed.stderr);
        assert!(
            crashed.stderr.contains("crash point land"),
            "{}",
            crashed.stderr
        );
        let s = Store::open(&env.db()).unwrap();
        assert_eq!(s.task(1).unwrap().status, Status::Done);
        assert_eq!(read(&root, "alpha.txt"), "alpha\n");
        assert_eq!(worktrees(&root), 2, "the task's worktree, with its work");
        let next = orchestrate(&env, "1", None);
        next.assert_ok();
        assert!(next.stdout.contains("landing it now"), "{}", next.stdout);
        assert_eq!(read(&root, "alpha.txt"), "alpha, edited\n");
        assert!(git(&root, &["log", "-1", "--format=%b"]).contains("Llmclis-Task: 1"));
        assert_eq!(worktrees(&root), 1);
        assert!(branches(&root).is_empty());
    })
    .await
    .unwrap();
}

/// Killed mid-task (inside its check), the worktree keeps the work; the
/// next run's claim resumes in it and lands the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worktree_killed_mid_task_is_resumed_by_the_next_claim() {
    let srv = edits_alpha().await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let env = Env::new();
        let root = project(&env, &url, "", &[]);
        env.run(&[
            "task",
            "add",
            "--project-id",
            "1",
            "Edit alpha",
            "--check",
            "grep -q edited alpha.txt",
        ])
        .assert_ok();
        let crashed = orchestrate(&env, "1", Some("check:1"));
        assert_ne!(crashed.code, 0, "{}", crashed.stderr);
        assert_eq!(worktrees(&root), 2);
        let wt = git(&root, &["worktree", "list", "--porcelain"])
            .lines()
            .filter_map(|l| l.strip_prefix("worktree "))
            .map(PathBuf::from)
            .find(|p| p != &root.canonicalize().unwrap())
            .unwrap();
        assert_eq!(
            git(&wt, &["status", "--porcelain"]),
            "M alpha.txt",
            "its work is kept"
        );
        let next = orchestrate(&env, "1", None);
        next.assert_ok();
        let s = Store::open(&env.db()).unwrap();
        assert_eq!(s.task(1).unwrap().verified, Some(true), "{}", next.stdout);
        assert_eq!(read(&root, "alpha.txt"), "alpha, edited\n");
        assert_eq!(worktrees(&root), 1);
    })
    .await
    .unwrap();
}

/// The user's uncommitted edits are never touched: with a dirty main tree
/// the landing waits (said, and in the task's notes); once the tree is
/// clean the next run lands it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_dirty_tree_landing_waits_and_the_next_run_lands() {
    let srv = edits_alpha().await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let env = Env::new();
        let root = project(&env, &url, "", &["Edit alpha"]);
        std::fs::write(root.join("beta.txt"), "the user's own edit\n").unwrap();
        let r = orchestrate(&env, "1", None);
        r.assert_ok();
        assert!(
            r.stderr.contains("waits on branch llmclis/task-1"),
            "{}",
            r.stderr
        );
        assert!(
            notes(&env, 1).contains("uncommitted changes (beta.txt)"),
            "{}",
            notes(&env, 1)
        );
        assert_eq!(read(&root, "alpha.txt"), "alpha\n");
        assert_eq!(read(&root, "beta.txt"), "the user's own edit\n");
        assert_eq!(branches(&root), ["llmclis/task-1"]);
        git(&root, &["checkout", "beta.txt"]);
        orchestrate(&env, "1", None).assert_ok();
        assert_eq!(read(&root, "alpha.txt"), "alpha, edited\n");
        assert!(branches(&root).is_empty());
    })
    .await
    .unwrap();
}

/// `[tools] land = "review"`: the change is a commit on the task's branch,
/// the main tree is untouched and the note says how to look at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_review_mode_the_commit_waits_on_its_branch() {
    let srv = edits_alpha().await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let env = Env::new();
        let root = project(&env, &url, "[tools]\nland = \"review\"\n", &["Edit alpha"]);
        orchestrate(&env, "1", None).assert_ok();
        assert_eq!(read(&root, "alpha.txt"), "alpha\n");
        assert_eq!(branches(&root), ["llmclis/task-1"]);
        assert_eq!(
            git(&root, &["show", "llmclis/task-1:alpha.txt"]),
            "alpha, edited"
        );
        assert!(
            notes(&env, 1).contains("left for review"),
            "{}",
            notes(&env, 1)
        );
        assert_eq!(worktrees(&root), 1);
        // A second run leaves it as it is.
        orchestrate(&env, "1", None).assert_ok();
        assert_eq!(branches(&root), ["llmclis/task-1"]);
        assert_eq!(notes(&env, 1).matches("left for review").count(), 1);
    })
    .await
    .unwrap();
}

/// Outside git, writes stay one writer at a time: two workers on two
/// tasks both finish, each edit is in the tree, and the second step began
/// only after the first had ended (the writer's lock, held per step).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_git_two_workers_write_one_at_a_time() {
    let srv = server(vec![
        writes(
            "Edit alpha",
            "alpha.txt",
            "alpha, edited\n",
            Duration::from_millis(300),
        ),
        writes(
            "Edit beta",
            "beta.txt",
            "beta, edited\n",
            Duration::from_millis(300),
        ),
    ])
    .await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let env = Env::new();
        install(&env, &registry_yaml(&url), 60);
        let root = env.dir.path().join("plain");
        std::fs::create_dir_all(&root).unwrap();
        for f in ["alpha.txt", "beta.txt"] {
            std::fs::write(root.join(f), "x\n").unwrap();
        }
        env.run(&["project", "add", "plain", "--root", &root.to_string_lossy()])
            .assert_ok();
        for t in ["Edit alpha", "Edit beta"] {
            env.run(&["task", "add", "--project-id", "1", t])
                .assert_ok();
        }
        orchestrate(&env, "2", None).assert_ok();
        assert_eq!(read(&root, "alpha.txt"), "alpha, edited\n");
        assert_eq!(read(&root, "beta.txt"), "beta, edited\n");
        // The second step began (it takes the writer's place before it
        // is recorded) only after the first had ended.
        let db = rusqlite::Connection::open(env.db()).unwrap();
        let spans: Vec<(String, String)> = db
            .prepare("SELECT started_at, finished_at FROM run_steps ORDER BY started_at")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(spans.len(), 2);
        assert!(spans[1].0 >= spans[0].1, "overlapping steps: {spans:?}");
    })
    .await
    .unwrap();
}

/// A repository with no commit yet has nothing to branch from: it is
/// worked on as a plain directory (one writer at a time), and the task
/// still gets done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_without_a_commit_is_worked_on_in_place() {
    let srv = edits_alpha().await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let env = Env::new();
        install(&env, &registry_yaml(&url), 60);
        let root = env.dir.path().join("fresh");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("alpha.txt"), "alpha\n").unwrap();
        git(&root, &["init", "-q", "-b", "main"]);
        env.run(&["project", "add", "fresh", "--root", &root.to_string_lossy()])
            .assert_ok();
        env.run(&["task", "add", "--project-id", "1", "Edit alpha"])
            .assert_ok();
        let r = orchestrate(&env, "1", None);
        r.assert_ok();
        assert!(!r.stderr.contains("no codebase tools"), "{}", r.stderr);
        assert_eq!(read(&root, "alpha.txt"), "alpha, edited\n");
        assert_eq!(worktrees(&root), 1);
    })
    .await
    .unwrap();
}

/// A branch of ours checked out in the main tree (the user trying a change
/// left for review) is the user's: the next run neither commits the
/// user's edits there nor removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_branch_the_user_checked_out_is_left_alone() {
    let srv = edits_alpha().await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let env = Env::new();
        let root = project(&env, &url, "[tools]\nland = \"review\"\n", &["Edit alpha"]);
        orchestrate(&env, "1", None).assert_ok();
        git(&root, &["checkout", "-q", "llmclis/task-1"]);
        std::fs::write(root.join("beta.txt"), "the user's own edit\n").unwrap();
        orchestrate(&env, "1", None).assert_ok();
        assert_eq!(read(&root, "beta.txt"), "the user's own edit\n");
        assert_eq!(git(&root, &["status", "--porcelain"]), "M beta.txt");
        assert_eq!(
            git(&root, &["rev-parse", "--abbrev-ref", "HEAD"]),
            "llmclis/task-1"
        );
        assert_eq!(
            git(&root, &["log", "--format=%s", "start..HEAD"])
                .lines()
                .count(),
            1
        );
    })
    .await
    .unwrap();
}
