//! `llmclis import taskmaster` on a 10,000-task tasks.json, as a user runs
//! it: the whole process (the release binary, a real SQLite file, one
//! transaction), first into an empty database, then again with the file
//! unchanged (every item mapped and compared, nothing written), then
//! `task next` on the imported project. The file is generated from a fixed
//! seed: 2,000 tasks with 4 subtasks each, priorities mixed, up to 3
//! dependencies on earlier tasks, a third done.
//!
//!     cargo bench --bench import

use std::process::Command;
use std::time::Instant;

fn tasks_json() -> String {
    let mut rng = fastrand::Rng::with_seed(10_000);
    let pri = ["high", "medium", "low"];
    let tasks: Vec<serde_json::Value> = (1..=2000)
        .map(|id: u64| {
            let deps: Vec<u64> = (0..rng.usize(0..=3))
                .filter(|_| id > 1)
                .map(|_| rng.u64(1..id))
                .collect();
            let subtasks: Vec<serde_json::Value> = (1..=4)
                .map(|s: u64| {
                    serde_json::json!({"id": s, "title": format!("part {s} of {id}"),
                        "description": "a piece", "status": if rng.u8(..) < 85 { "done" } else { "pending" },
                        "dependencies": if s > 1 { vec![s - 1] } else { vec![] }})
                })
                .collect();
            serde_json::json!({"id": id, "title": format!("task {id}"), "description": "generated",
                "details": "details", "testStrategy": "cargo test", "status": "pending",
                "priority": pri[rng.usize(..3)], "dependencies": deps, "subtasks": subtasks})
        })
        .collect();
    serde_json::json!({"master": {"tasks": tasks}}).to_string()
}

fn main() {
    // The release binary, built for this bench.
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--bin", "llmclis"])
        .status()
        .unwrap();
    assert!(st.success());
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let bin = std::path::Path::new(&target).join("release/llmclis");
    let dir = tempfile::tempdir().unwrap();
    let tm = dir.path().join(".taskmaster/tasks");
    std::fs::create_dir_all(&tm).unwrap();
    llmclis::fsutil::write_atomic(&tm.join("tasks.json"), tasks_json().as_bytes()).unwrap();
    let run = |args: &[&str]| {
        let t = Instant::now();
        let out = Command::new(&bin)
            .args(args)
            .current_dir(dir.path())
            .env("LLMCLIS_DB", dir.path().join("l.db"))
            .env("LLMCLIS_CONFIG_DIR", dir.path().join("cfg"))
            .env("LLMCLIS_DATA_DIR", dir.path().join("data"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            t.elapsed(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (first, out) = run(&["--json", "import", "taskmaster"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["created"], 10_000);
    let (again, out) = run(&["--json", "import", "taskmaster"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["unchanged"], 10_000);
    let (next, _) = run(&["task", "next"]);
    println!(
        "import taskmaster, 10,000 tasks (2,000 with 4 subtasks), whole process, release build:"
    );
    println!(
        "  first import (all created):   {:>8.2} s",
        first.as_secs_f64()
    );
    println!(
        "  again, file unchanged:        {:>8.2} s",
        again.as_secs_f64()
    );
    println!(
        "  task next on the project:     {:>8.1} ms",
        next.as_secs_f64() * 1000.0
    );
}
