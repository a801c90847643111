//! The door in from Task Master and beads, through the binary: ids mapped
//! and shown, importing again updates in place and never duplicates, a
//! command test strategy becomes a check, exports give the file back, and
//! `task next` on an imported project chooses what Task Master's own
//! `next` chooses on held-out graphs.

use serde_json::{Value, json};

use crate::support::Env;

fn write(env: &Env, rel: &str, text: &str) -> std::path::PathBuf {
    let p = env.dir.path().join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn sample() -> Value {
    json!({
      "master": {
        "tasks": [
          {"id": 1, "title": "Set up the repo", "description": "Init", "details": "cargo new",
           "testStrategy": "`cargo build`", "status": "done", "priority": "high", "dependencies": [], "subtasks": []},
          {"id": 2, "title": "Parser", "description": "Parse input", "details": "",
           "testStrategy": "Check by hand that the parser works.", "status": "pending", "priority": "medium",
           "dependencies": [1], "subtasks": [
             {"id": 1, "title": "Lexer", "description": "tokens", "status": "pending", "dependencies": []},
             {"id": 2, "title": "Grammar", "description": "rules", "status": "pending", "dependencies": [1]}
           ]},
          {"id": 3, "title": "CLI", "description": "flags", "status": "deferred", "priority": "low",
           "dependencies": [2], "subtasks": []}
        ],
        "metadata": {"created": "2026-01-01T00:00:00Z"}
      },
      "feature-x": {"tasks": [
        {"id": 1, "title": "Try X", "description": "", "status": "in-progress", "priority": "high", "dependencies": []}
      ]}
    })
}

#[test]
fn taskmaster_import_maps_ids_is_idempotent_and_exports_the_file_back() {
    let env = Env::new();
    let file = write(&env, ".taskmaster/tasks/tasks.json", &sample().to_string());
    let r = env.json(&["import", "taskmaster"]);
    assert_eq!(r["created"], 6, "{r}");
    let ids: Vec<(String, i64)> = r["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["from"].as_str().unwrap().to_string(),
                m["task_id"].as_i64().unwrap(),
            )
        })
        .collect();
    let id = |from: &str| ids.iter().find(|(f, _)| f == from).unwrap().1;
    assert!(ids.iter().any(|(f, _)| f == "feature-x/1"), "{ids:?}");

    // Subtasks under their task, statuses, priorities, tags, a check.
    let lexer = env.json(&["task", "show", &id("2.1").to_string()]);
    assert_eq!(lexer["parent_id"], id("2"));
    let setup = env.json(&["task", "show", &id("1").to_string()]);
    assert_eq!(setup["status"], "done");
    assert_eq!(setup["priority"], 3);
    assert_eq!(setup["checks"], json!(["cargo build"]));
    let parser = env.json(&["task", "show", &id("2").to_string()]);
    assert!(
        parser["description"]
            .as_str()
            .unwrap()
            .contains("Test strategy:\nCheck by hand"),
        "prose stays in the description: {parser}"
    );
    assert_eq!(parser["checks"], json!([]));
    let cli = env.json(&["task", "show", &id("3").to_string()]);
    assert_eq!(cli["status"], "blocked", "deferred waits");
    let x = env.json(&["task", "show", &id("feature-x/1").to_string()]);
    assert_eq!(x["tags"], json!(["feature-x"]));

    // Again: nothing new, nothing changed.
    let again = env.json(&["import", "taskmaster"]);
    assert_eq!(
        (again["created"].as_i64(), again["updated"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(again["unchanged"], 6);
    let listed = env.json(&["task", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 6, "no duplicates");

    // Work done here survives an import of an unchanged file; a change made
    // in the file comes in.
    env.run(&["task", "status", &id("2.1").to_string(), "done"])
        .assert_ok();
    let mut changed = sample();
    changed["master"]["tasks"][2]["title"] = json!("Command line");
    std::fs::write(&file, changed.to_string()).unwrap();
    let third = env.json(&["import", "taskmaster"]);
    assert_eq!(third["updated"], 1, "{third}");
    let cli = env.json(&["task", "show", &id("3").to_string()]);
    assert_eq!(cli["title"], "Command line");
    let lexer = env.json(&["task", "show", &id("2.1").to_string()]);
    assert_eq!(lexer["status"], "done", "unchanged in the file: kept");

    // Export: the file back, with the one change made here.
    let out = env.run(&["export", "taskmaster"]);
    out.assert_ok();
    let back: Value = serde_json::from_str(&out.stdout).unwrap();
    let mut want = changed["master"]["tasks"].clone();
    want[1]["subtasks"][0]["status"] = json!("done");
    assert_eq!(back["master"]["tasks"], want);
}

#[test]
fn a_bad_taskmaster_file_is_refused_whole_with_where_and_what() {
    let env = Env::new();
    let file = write(
        &env,
        "tasks.json",
        "{\"master\": {\"tasks\": [ {\"id\": 1,, } ]}}",
    );
    env.run(&["import", "taskmaster", file.to_str().unwrap()])
        .assert_err(2, &["tasks.json", "line 1"]);
    env.run(&["import", "taskmaster", "nowhere"])
        .assert_err(2, &[".taskmaster/tasks/tasks.json"]);
    std::fs::write(&file, sample().to_string()).unwrap();
    env.run(&[
        "import",
        "taskmaster",
        file.to_str().unwrap(),
        "--tag",
        "nope",
    ])
    .assert_err(2, &["no tag \"nope\"", "master"]);
    assert!(
        env.json(&["project", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

fn beads_lines() -> Vec<Value> {
    vec![
        json!({"id": "bd-1", "title": "Epic", "description": "the whole", "status": "open", "priority": 1,
               "issue_type": "epic", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
               "labels": ["core"], "assignee": "ann"}),
        json!({"id": "bd-2", "title": "First", "description": "d", "design": "a plan", "status": "closed", "priority": 0,
               "issue_type": "task", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-02T00:00:00Z",
               "closed_at": "2026-01-02T00:00:00Z",
               "dependencies": [{"issue_id": "bd-2", "depends_on_id": "bd-1", "type": "parent-child",
                                 "created_at": "2026-01-01T00:00:00Z", "created_by": "ann"}]}),
        json!({"id": "bd-3", "title": "Second", "description": "", "status": "open", "priority": 2,
               "issue_type": "bug", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
               "dependencies": [
                 {"issue_id": "bd-3", "depends_on_id": "bd-1", "type": "parent-child", "created_at": "2026-01-01T00:00:00Z", "created_by": "ann"},
                 {"issue_id": "bd-3", "depends_on_id": "bd-2", "type": "blocks", "created_at": "2026-01-01T00:00:00Z", "created_by": "ann"},
                 {"issue_id": "bd-3", "depends_on_id": "bd-9", "type": "related", "created_at": "2026-01-01T00:00:00Z", "created_by": "ann"}]}),
        json!({"id": "bd-4", "title": "Gone", "status": "tombstone", "priority": 2, "issue_type": "task",
               "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}),
    ]
}

#[test]
fn a_beads_round_trip_keeps_every_field() {
    let env = Env::new();
    let lines = beads_lines();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    write(&env, ".beads/issues.jsonl", &text);
    let r = env.json(&["import", "beads"]);
    assert_eq!(r["created"], 3, "the tombstone stays out: {r}");
    let id = |from: &str| {
        r["ids"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["from"] == from)
            .unwrap()["task_id"]
            .as_i64()
            .unwrap()
    };
    let second = env.json(&["task", "show", &id("bd-3").to_string()]);
    assert_eq!(second["parent_id"], id("bd-1"));
    assert_eq!(second["depends_on"], json!([id("bd-2")]));
    let first = env.json(&["task", "show", &id("bd-2").to_string()]);
    assert_eq!(first["status"], "done");
    assert_eq!(first["priority"], 4, "beads 0 is the most urgent");
    assert_eq!(env.json(&["import", "beads"])["unchanged"], 3);

    let out = env.run(&["export", "beads"]);
    out.assert_ok();
    let back: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back.len(), 3);
    for (b, want) in back.iter().zip(&lines[..3]) {
        let mut b = b.clone();
        // llmclis's own clock for when it last changed the task.
        b["updated_at"] = want["updated_at"].clone();
        assert_eq!(&b, want);
    }
}

/// Task Master's `findNextTask` (scripts/modules/task-manager/
/// find-next-task.js), transcribed for top-level tasks: pending or
/// in-progress with every dependency done; highest priority, then fewest
/// dependencies, then lowest id.
fn taskmaster_next(tasks: &[Value]) -> Option<i64> {
    let done: std::collections::HashSet<i64> = tasks
        .iter()
        .filter(|t| t["status"] == "done")
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    let pri = |t: &Value| match t["priority"].as_str().unwrap_or("medium") {
        "high" => 3,
        "low" => 1,
        _ => 2,
    };
    tasks
        .iter()
        .filter(|t| matches!(t["status"].as_str(), Some("pending" | "in-progress")))
        .filter(|t| {
            t["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| done.contains(&d.as_i64().unwrap()))
        })
        .min_by_key(|t| {
            (
                -pri(t),
                t["dependencies"].as_array().unwrap().len(),
                t["id"].as_i64().unwrap(),
            )
        })
        .map(|t| t["id"].as_i64().unwrap())
}

#[test]
fn task_next_chooses_what_taskmaster_next_chooses_on_held_out_graphs() {
    // Graphs the implementation was not tuned on: a fixed seed, statuses
    // Task Master's queue can hold without a claim (pending, done,
    // deferred, cancelled, blocked), any priority, dependencies on earlier
    // tasks.
    let mut rng = fastrand::Rng::with_seed(0x07a5_c0de);
    let statuses = [
        "pending",
        "pending",
        "pending",
        "done",
        "done",
        "deferred",
        "cancelled",
        "blocked",
    ];
    let priorities = ["high", "medium", "low"];
    let mut agreed = 0;
    for graph in 0..40 {
        let n = rng.usize(3..25);
        let tasks: Vec<Value> = (1..=n as i64)
            .map(|id| {
                let deps: Vec<i64> = (1..id).filter(|_| rng.u8(..) < 40).collect();
                json!({"id": id, "title": format!("t{id}"), "description": "", "details": "",
                       "status": statuses[rng.usize(..statuses.len())],
                       "priority": priorities[rng.usize(..priorities.len())],
                       "dependencies": deps, "subtasks": []})
            })
            .collect();
        let env = Env::new();
        write(
            &env,
            ".taskmaster/tasks/tasks.json",
            &json!({"master": {"tasks": tasks}}).to_string(),
        );
        let r = env.json(&["import", "taskmaster"]);
        let next = env.json(&["task", "next"]);
        let ours = next["id"].as_i64().map(|task| {
            let m = r["ids"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["task_id"] == task)
                .unwrap();
            m["from"].as_str().unwrap().parse::<i64>().unwrap()
        });
        assert_eq!(ours, taskmaster_next(&tasks), "graph {graph}: {tasks:#?}");
        agreed += 1;
    }
    println!("task next agreed with Task Master's next on {agreed} of 40 held-out graphs");
}

#[test]
fn a_subtask_waits_for_what_its_task_waits_for() {
    // Task Master offers no part of task 2 before task 1 is done; neither
    // does llmclis after the import.
    let env = Env::new();
    write(
        &env,
        ".taskmaster/tasks/tasks.json",
        &json!({"master": {"tasks": [
            {"id": 1, "title": "First", "status": "pending", "priority": "low", "dependencies": []},
            {"id": 2, "title": "Second", "status": "pending", "priority": "high", "dependencies": [1],
             "subtasks": [{"id": 1, "title": "Part", "status": "pending", "dependencies": []}]}
        ]}})
        .to_string(),
    );
    env.json(&["import", "taskmaster"]);
    assert_eq!(env.json(&["task", "next"])["title"], "First");
}
