//! Claims across processes: every task is taken exactly once, however many
//! agents race for it, and the work of a dead agent comes back.

use std::collections::HashSet;

use llmclis::store::{NewTask, Store};

use crate::support::Env;

const TASKS: usize = 1000;
const WORKERS: usize = 8;

#[test]
fn eight_processes_claim_a_thousand_tasks_exactly_once() {
    let env = Env::new();
    {
        let mut s = Store::open(&env.db()).unwrap();
        let p = s.create_project("race", "", None, "setup").unwrap().id;
        for i in 0..TASKS {
            s.create_task(
                NewTask {
                    project_id: p,
                    title: format!("task {i}"),
                    priority: Some((i % 3) as i64),
                    ..Default::default()
                },
                "setup",
            )
            .unwrap();
        }
    }
    // Each worker is a loop of real `llmclis task next --claim` processes;
    // eight of them run at any moment.
    let claimed: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                let env = &env;
                scope.spawn(move || {
                    let agent = format!("worker-{w}");
                    let mut mine = Vec::new();
                    loop {
                        let v = env.json(&[
                            "task",
                            "next",
                            "--project-id",
                            "1",
                            "--claim",
                            "--agent",
                            &agent,
                        ]);
                        if v.is_null() {
                            break mine;
                        }
                        assert_eq!(v["claimed_by"], agent.as_str());
                        mine.push(v["id"].as_i64().unwrap());
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let all: Vec<i64> = claimed.iter().flatten().copied().collect();
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), TASKS, "claims: {}", all.len());
    assert_eq!(unique.len(), TASKS, "some task was claimed twice");
    assert!(
        claimed.iter().filter(|c| !c.is_empty()).count() > 1,
        "only one worker got work"
    );

    let s = Store::open(&env.db()).unwrap();
    let tasks = s.tasks(Some(1), None).unwrap();
    assert!(
        tasks
            .iter()
            .all(|t| t.attempts == 1 && t.claimed_by.is_some())
    );
    for (w, ids) in claimed.iter().enumerate() {
        for id in ids {
            let t = tasks.iter().find(|t| t.id == *id).unwrap();
            assert_eq!(
                t.claimed_by.as_deref(),
                Some(format!("worker-{w}").as_str())
            );
        }
    }
    let claim_events: i64 = rusqlite::Connection::open(env.db())
        .unwrap()
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'claim'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(claim_events, TASKS as i64);
}

#[test]
fn a_dead_agents_lease_expires_and_another_process_reclaims() {
    let env = Env::new();
    env.run(&["project", "add", "p"]).assert_ok();
    env.run(&["task", "add", "--project-id", "1", "only task"])
        .assert_ok();
    // A one-second lease, then the holder "dies" (never renews or finishes).
    let t = env.json(&[
        "task",
        "next",
        "--project-id",
        "1",
        "--claim",
        "--agent",
        "dead",
        "--lease",
        "1",
    ]);
    assert_eq!(t["id"], 1);
    let none = env.json(&[
        "task",
        "next",
        "--project-id",
        "1",
        "--claim",
        "--agent",
        "alive",
    ]);
    assert!(none.is_null(), "the lease is still live");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let t = env.json(&[
        "task",
        "next",
        "--project-id",
        "1",
        "--claim",
        "--agent",
        "alive",
    ]);
    assert_eq!(t["id"], 1);
    assert_eq!(t["claimed_by"], "alive");
    assert_eq!(t["attempts"], 2);
}

/// Two, then eight, processes noting tasks of the same plans.md (and one
/// syncing it) at once: llmclis processes take turns on the file, so none
/// exits non-zero, and every note is in the store once and in the file
/// once.
#[test]
fn processes_noting_the_same_plans_md_never_conflict() {
    for writers in [2usize, 8] {
        let env = Env::new();
        env.with_seed_plans();
        let tasks: Vec<i64> = {
            let s = Store::open(&env.db()).unwrap();
            s.tasks(Some(1), None)
                .unwrap()
                .into_iter()
                .filter(|t| {
                    t.external_ref
                        .as_deref()
                        .is_some_and(|r| r.matches('.').count() == 1)
                })
                .map(|t| t.id)
                .take(4)
                .collect()
        };
        let per_writer = 5;
        let failures: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..writers)
                .map(|w| {
                    let (env, tasks) = (&env, &tasks);
                    scope.spawn(move || {
                        let mut failed = Vec::new();
                        for i in 0..per_writer {
                            let task = tasks[(w + i) % tasks.len()].to_string();
                            let text = format!("note {w}-{i} from writer {w}");
                            let r = env.run(&[
                                "--agent",
                                &format!("w{w}"),
                                "task",
                                "note",
                                &task,
                                &text,
                            ]);
                            if r.code != 0 {
                                failed.push(format!("{text}: exit {}: {}", r.code, r.stderr));
                            }
                            if w == 0 {
                                let r = env.run(&["plans", "sync", "--project-id", "1"]);
                                if r.code != 0 {
                                    failed.push(format!("sync: exit {}: {}", r.code, r.stderr));
                                }
                            }
                        }
                        failed
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert!(failures.is_empty(), "{writers} writers: {failures:#?}");
        let plans = std::fs::read_to_string(env.dir.path().join("plans.md")).unwrap();
        let s = Store::open(&env.db()).unwrap();
        for w in 0..writers {
            for i in 0..per_writer {
                let text = format!("note {w}-{i} from writer {w}");
                let task = tasks[(w + i) % tasks.len()];
                let in_store = s
                    .notes(task)
                    .unwrap()
                    .iter()
                    .filter(|n| n.text == text)
                    .count();
                assert_eq!(in_store, 1, "{writers} writers: {text} in the store");
                assert_eq!(
                    plans.matches(&text).count(),
                    1,
                    "{writers} writers: {text} in plans.md"
                );
            }
        }
    }
}
