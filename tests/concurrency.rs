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
