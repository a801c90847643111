//! One truth after any crash. The binary is stopped at named instants
//! (`LLMCLIS_CRASH_AT`: after a step's commit, in the middle of the plans.md
//! write, after a memory row, during the summary); the next run recovers,
//! and every view (plans.md, the memory index, the run records) must equal
//! what a run that never crashed leaves, with each task done once.

use std::path::Path;
use std::time::Duration;

use llmclis::store::Store;
use serde_json::Value;

use crate::orchestrate::{
    CODER, CRITIC, SUMMARIZER, approve, install, quick_server_routes, registry_yaml, text,
};
use crate::support::fake_llm::{FakeLlm, Reply, Route};
use crate::support::{Env, Run, assets};

/// Two stages, five tasks, in the seed's format.
const PLANS: &str = "# demo – Plans

## Metadata

- Created: `2026-01-01T00:00:00+00:00`
- Last Updated: `2026-01-01T00:00:00+00:00`
- Last Editor (Agent / CLI): `someone`

---

## High-Level Roadmap

- [ ] **Stage 1 – Basics**
- [ ] **Stage 2 – More**

---

## Stage 1 – Basics

**Goal:** The first things.

**Status:** `[ ] Not started` / `[ ] In progress` / `[ ] Done`

**Tasks:**

- [ ] **S1.1 – Write the greeting**
  - **Description:** Say hello.
- [ ] **S1.2 – Write the farewell**
  - **Description:** Say goodbye.
- [ ] **S1.3 – Write the thanks**
  - **Description:** Say thank you.

---

## Stage 2 – More

**Goal:** The rest.

**Status:** `[ ] Not started` / `[ ] In progress` / `[ ] Done`

**Tasks:**

- [ ] **S2.1 – Name the project**
  - **Description:** Pick a name.
- [ ] **S2.2 – Describe the project**
  - **Description:** One paragraph.

---

## Done / Completed Work Log

- *(Empty – to be populated as work completes)*
";

/// An installation with the fake server, the real embedding model when this
/// machine has it (memory on), and project 1 imported from PLANS.
pub(crate) fn setup(url: &str) -> Env {
    let env = Env::new();
    install(&env, &registry_yaml(url), 60);
    if let Some((dir, lib)) = assets() {
        let cfg = env.config_dir().join("config.toml");
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str(&format!(
            "[memory]\nmodel_dir = {:?}\nonnxruntime = {:?}\n",
            dir.display().to_string(),
            lib.display().to_string()
        ));
        std::fs::write(&cfg, text).unwrap();
    }
    with_plans(env)
}

/// Project 1, linked to PLANS in the installation's directory.
fn with_plans(env: Env) -> Env {
    std::fs::write(env.dir.path().join("plans.md"), PLANS).unwrap();
    env.run(&["project", "add", "demo"]).assert_ok();
    env.run(&["plans", "import", "plans.md", "--project-id", "1"])
        .assert_ok();
    env
}

fn orchestrate(env: &Env, crash_at: Option<&str>) -> Run {
    let mut c = env.command();
    if let Some(p) = crash_at {
        c.env("LLMCLIS_CRASH_AT", p);
    }
    Run::from(
        c.args(["orchestrate", "--project-id", "1", "--max-steps", "30"])
            .output()
            .unwrap(),
    )
}

/// The file with the instants and the runs' numbers taken out: a late
/// write is stamped with the change's own time and agent, so what differs
/// between two runs is only when they ran.
fn normalised(text: &str) -> String {
    let stamp =
        regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)").unwrap();
    let run = regex::Regex::new(r"/run-\d+(/step-\d+)?").unwrap();
    run.replace_all(&stamp.replace_all(text, "<T>"), "/run")
        .into_owned()
}

fn plans(env: &Env) -> String {
    std::fs::read_to_string(env.dir.path().join("plans.md")).unwrap()
}

/// Files beside plans.md that a writer leaves only when it dies: a lock, a
/// temp file.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".plans.md.") || n.starts_with(".issues.md."))
        .collect()
}

fn sql_i64(db: &Path, q: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(q, [], |r| r.get(0))
        .unwrap()
}

/// What every recovered database must show, whatever the crash point.
fn assert_one_truth(env: &Env, clean: &Env, point: &str) {
    assert_eq!(
        normalised(&plans(env)),
        normalised(&plans(clean)),
        "after a crash at {point} and the recovery, plans.md is what a run without the crash writes"
    );
    assert!(
        leftovers(env.dir.path()).is_empty(),
        "{point}: {:?}",
        leftovers(env.dir.path())
    );
    let db = env.db();
    let s = Store::open(&db).unwrap();
    for t in s.tasks(Some(1), None).unwrap() {
        assert_eq!(t.status.as_str(), "done", "{point}: task {} done", t.id);
        let done = s
            .task_steps(t.id)
            .unwrap()
            .iter()
            .filter(|st| st.outcome == Some(llmclis::store::StepOutcome::Done))
            .count();
        assert_eq!(done, 1, "{point}: task {} finished by one step", t.id);
    }
    assert_eq!(
        sql_i64(
            &db,
            "SELECT count(*) FROM tasks t WHERE NOT EXISTS (SELECT 1 FROM tasks s WHERE s.parent_id = t.id) AND (SELECT count(*) FROM model_calls c WHERE c.purpose = 'execute' AND c.task_id = t.id) != 1"
        ),
        0,
        "{point}: exactly one executor call per task that has no subtasks (a parent rolls up with none)"
    );
    assert_eq!(
        sql_i64(&db, "SELECT count(*) FROM runs WHERE status = 'running'"),
        0,
        "{point}: every run closed"
    );
    assert_eq!(
        s.run(1).unwrap().status,
        "interrupted",
        "{point}: the crashed run is closed as interrupted"
    );
    assert_eq!(
        sql_i64(
            &db,
            "SELECT count(*) FROM run_steps WHERE outcome IS NULL OR finished_at IS NULL"
        ),
        0,
        "{point}: no step without an outcome"
    );
    assert_eq!(
        sql_i64(
            &db,
            "SELECT count(*) FROM doc_outbox WHERE applied_at IS NULL"
        ),
        0,
        "{point}: no plan-file edit left pending"
    );
    // Every task a model finished has its raw interaction and its summary.
    assert_eq!(
        llmclis::memory::missing_memories(&s, None).unwrap().len(),
        0,
        "{point}: memories filled in"
    );
    if assets().is_some() {
        let stats = env.json(&["memory", "stats", "--project-id", "1", "--verify"]);
        let rows: i64 = stats["by_type"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_i64().unwrap())
            .sum::<i64>()
            - stats["compacted"].as_i64().unwrap();
        assert_eq!(stats["indexed"].as_i64().unwrap(), rows, "{point}: {stats}");
        assert_eq!(stats["unindexed"], 0, "{point}: {stats}");
    }
    // A re-import finds nothing to change: the file is not behind.
    let before = plans(env);
    let import = env.json(&["plans", "import", "plans.md", "--project-id", "1"]);
    for k in ["created", "updated", "kept", "retired", "caught_up"] {
        assert_eq!(import[k], 0, "{point}: import {k}: {import}");
    }
    assert_eq!(plans(env), before, "{point}: the import wrote nothing");
}

/// A run that never crashed, then one stopped at `point` and recovered by
/// the next run; both on the same scripted server.
async fn crash_then_recover(point: &'static str) {
    let srv = FakeLlm::routed(quick_server_routes(), None, Duration::ZERO).await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let clean = setup(&url);
        orchestrate(&clean, None).assert_ok();

        let env = setup(&url);
        let crashed = orchestrate(&env, Some(point));
        assert_ne!(crashed.code, 0, "{point}: {}", crashed.stderr);
        assert!(
            crashed
                .stderr
                .contains(&format!("crash point {}", point.split(':').next().unwrap())),
            "{point}: the run stopped at the point: {}",
            crashed.stderr
        );
        let recovered = orchestrate(&env, None);
        recovered.assert_ok();
        assert!(
            recovered.stdout.contains("recovered: run 1 died"),
            "{point}: the next run says it closed the dead one: {}",
            recovered.stdout
        );
        assert_one_truth(&env, &clean, point);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_a_steps_commit_before_plans_md_the_next_run_writes_it() {
    crash_then_recover("step_committed:2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_in_the_middle_of_the_plans_md_write_nothing_is_left_behind() {
    crash_then_recover("plans_write:3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_a_memory_row_before_the_index_the_index_catches_up() {
    crash_then_recover("memory_row:2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_the_summary_the_next_run_fills_it_in_without_the_executor() {
    crash_then_recover("summary:1").await;
}

/// `plans done` killed while it writes plans.md: the store has the change,
/// the file does not, a temp file is left. The next command (another
/// `plans done`) writes both and cleans up; a re-import before it never
/// moves the task back.
#[test]
fn a_dead_writer_neither_blocks_the_next_nor_lets_an_import_undo_its_work() {
    let env = with_plans(Env::new());
    let crashed = Run::from(
        env.command()
            .env("LLMCLIS_CRASH_AT", "plans_write")
            .args(["plans", "done", "S1.1", "--project-id", "1"])
            .output()
            .unwrap(),
    );
    assert_ne!(crashed.code, 0);
    assert!(plans(&env).contains("- [ ] **S1.1"), "the file lags");
    assert_eq!(
        leftovers(env.dir.path()).len(),
        1,
        "the dead writer's temp file"
    );

    // The import finds the file behind the store: the store wins, the file
    // is brought up to date, and it says so.
    let import = env.json(&["plans", "import", "plans.md", "--project-id", "1"]);
    assert_eq!(import["updated"], 0, "{import}");
    assert_eq!(import["caught_up"], 1, "{import}");
    assert!(plans(&env).contains("- [x] **S1.1"), "{}", plans(&env));
    assert!(leftovers(env.dir.path()).is_empty());
    let s = Store::open(&env.db()).unwrap();
    let t = s.task_by_ref(1, "S1.1").unwrap().unwrap();
    assert_eq!(t.status.as_str(), "done");

    // A person unticks it afterwards: a real edit, newer than the store's
    // change, so the import takes it, and says why.
    std::thread::sleep(Duration::from_millis(20));
    let text = plans(&env).replacen("- [x] **S1.1", "- [ ] **S1.1", 1);
    std::fs::write(env.dir.path().join("plans.md"), text).unwrap();
    let import = env.json(&["plans", "import", "plans.md", "--project-id", "1"]);
    assert_eq!(import["updated"], 1, "{import}");
    let change = &import["changes"][0];
    assert_eq!(change["external_ref"], "S1.1", "{import}");
    assert!(
        change["why"]
            .as_str()
            .unwrap()
            .contains("saved after the store's last change"),
        "{import}"
    );
}

/// A store change the file lost (the file restored from a backup, edited by
/// a version without the outbox): `plans check` and `doctor` name the task,
/// its line and the fix; `plans import` keeps the store's newer state.
#[test]
fn drift_between_the_store_and_plans_md_is_reported_with_the_fix() {
    let env = with_plans(Env::new());
    let path = env.dir.path().join("plans.md");
    // An older copy of the file, saved before the change below.
    let old = plans(&env);
    std::thread::sleep(Duration::from_millis(20));
    env.run(&["plans", "done", "S1.2", "--project-id", "1"])
        .assert_ok();
    std::fs::write(&path, &old).unwrap();
    let past = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(past)
        .unwrap();

    let check = env.run(&["plans", "check", "plans.md", "--against", "plans.md"]);
    assert_eq!(
        check.code, 1,
        "{}
{}",
        check.stdout, check.stderr
    );
    assert!(
        check
            .stdout
            .contains("S1.2 is done in the store, the file shows [ ]"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("llmclis plans sync --project-id 1"),
        "{}",
        check.stdout
    );

    let doctor: Value = serde_json::from_str(&env.run(&["--json", "doctor"]).stdout).unwrap();
    let plans_check = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["check"] == "plans files of project 1" || c["check"] == "plan files of project 1"
        })
        .unwrap_or_else(|| panic!("{doctor}"));
    assert_eq!(plans_check["level"], "warning", "{plans_check}");
    assert!(
        plans_check["detail"].as_str().unwrap().contains("S1.2"),
        "{plans_check}"
    );

    let import = env.json(&["plans", "import", "plans.md", "--project-id", "1"]);
    assert_eq!(import["kept"], 1, "{import}");
    assert_eq!(import["updated"], 0, "{import}");
    assert!(
        plans(&env).contains("- [x] **S1.2"),
        "the file learns the store's state"
    );
    env.run(&["plans", "check", "plans.md", "--against", "plans.md"])
        .assert_ok();
}

/// A plans.md someone broke while an edit was pending: the command says
/// which line, the edit stays pending, and once the file is fixed the next
/// command writes it.
#[test]
fn a_broken_plans_md_keeps_edits_pending_until_it_is_fixed() {
    let env = with_plans(Env::new());
    let path = env.dir.path().join("plans.md");
    // The store changes, the file write dies.
    let crashed = Run::from(
        env.command()
            .env("LLMCLIS_CRASH_AT", "plans_write")
            .args(["task", "status", "2", "done"])
            .output()
            .unwrap(),
    );
    assert_ne!(crashed.code, 0);
    // Someone breaks the file: two tasks with one id.
    let broken = PLANS.replace("**S1.3 – Write the thanks**", "**S1.2 – Write the thanks**");
    std::fs::write(&path, &broken).unwrap();
    let r = env.run(&["plans", "sync", "--project-id", "1"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("plans.md:"),
        "file and line: {}",
        r.stderr
    );
    assert_eq!(
        sql_i64(
            &env.db(),
            "SELECT count(*) FROM doc_outbox WHERE applied_at IS NULL"
        ),
        1,
        "the edit stays pending"
    );
    std::fs::write(&path, PLANS).unwrap();
    env.run(&["plans", "sync", "--project-id", "1"]).assert_ok();
    assert!(plans(&env).contains("- [x] **S1.1"), "{}", plans(&env));
    assert_eq!(
        sql_i64(
            &env.db(),
            "SELECT count(*) FROM doc_outbox WHERE applied_at IS NULL"
        ),
        0
    );
}

/// The lease renewer stops when the step commits: a summary slower than
/// the lease raises no "lease lost" alarm for a step that already ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_summary_after_the_commit_raises_no_lease_alarm() {
    let srv = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(
                SUMMARIZER,
                vec![],
                Reply::Delay(Duration::from_millis(2500), Box::new(text("summary"))),
            ),
            Route::new(CODER, vec![], text("result")),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let env = Env::new();
        install(&env, &registry_yaml(&url), 1);
        let env = with_plans(env);
        let r = Run::from(
            env.command()
                .args(["orchestrate", "--project-id", "1", "--max-steps", "1"])
                .output()
                .unwrap(),
        );
        r.assert_ok();
        let log = std::fs::read_to_string(env.dir.path().join("data/state/llmclis.log"))
            .unwrap_or_default();
        assert!(!log.contains("lease lost"), "{log}");
    })
    .await
    .unwrap();
}

/// Runs that died are closed by whoever comes next: one whose process is
/// gone at once, one whose heartbeat stopped after a lease; a live one is
/// left alone. Their open steps become lost, with events.
#[test]
fn dead_runs_are_closed_and_their_open_steps_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("db")).unwrap();
    let p = s.create_project("demo", "", None, "t").unwrap();
    let t = s
        .create_task(
            llmclis::store::NewTask {
                project_id: p.id,
                title: "work".into(),
                ..Default::default()
            },
            "t",
        )
        .unwrap();
    let live = s.start_run(p.id, "t", "offline", 5, 1).unwrap();
    let gone = s.start_run(p.id, "t", "offline", 5, 1).unwrap();
    let silent = s.start_run(p.id, "t", "offline", 5, 1).unwrap();
    let step = s
        .start_step(gone.id, t.id, 1, "t/run-2", None, None)
        .unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("db")).unwrap();
    conn.execute(
        "UPDATE runs SET pid = ?1 WHERE id = ?2",
        rusqlite::params![dead_pid, gone.id],
    )
    .unwrap();
    conn.execute(
        "UPDATE runs SET host = 'elsewhere', heartbeat_at = '2020-01-01T00:00:00.000Z' WHERE id = ?1",
        [silent.id],
    )
    .unwrap();

    let closed = s
        .close_dead_runs(Duration::from_secs(60), "doctor")
        .unwrap();
    let ids: Vec<i64> = closed.iter().map(|c| c.run_id).collect();
    assert_eq!(ids, [gone.id, silent.id]);
    assert_eq!(closed[0].lost_steps, [(step, t.id)]);
    assert_eq!(s.run(live.id).unwrap().status, "running");
    assert_eq!(s.run(gone.id).unwrap().status, "interrupted");
    assert_eq!(s.run(silent.id).unwrap().status, "interrupted");
    let st = &s.steps(gone.id).unwrap()[0];
    assert_eq!(st.outcome, Some(llmclis::store::StepOutcome::Lost));
    assert!(st.finished_at.is_some());
    assert!(
        s.events(t.id)
            .unwrap()
            .iter()
            .any(|e| e.kind == "step_lost")
    );
    // Closing again finds nothing.
    assert!(
        s.close_dead_runs(Duration::from_secs(60), "doctor")
            .unwrap()
            .is_empty()
    );
}

/// A second run does not wait for the first to let go of the Edge index:
/// it starts at once, saves its memories in SQLite, and they are indexed
/// (by the first run's indexer, or the next opener) with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_goes_on_without_the_index_and_its_memories_are_indexed() {
    if assets().is_none() {
        return;
    }
    let srv = FakeLlm::routed(quick_server_routes(), None, Duration::from_millis(150)).await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let env = setup(&url);
        let run = |env: &Env| {
            env.command()
                .args(["orchestrate", "--project-id", "1", "--max-steps", "3"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let first = run(&env);
        // The first holds the index once its first step has started.
        let db = env.db();
        while rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT count(*) FROM run_steps", [], |r| r.get::<_, i64>(0)))
            .unwrap_or(0)
            == 0
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let second = Run::from(run(&env).wait_with_output().unwrap());
        let first = Run::from(first.wait_with_output().unwrap());
        first.assert_ok();
        second.assert_ok();
        assert!(
            second.stderr.contains("in use by another llmclis process"),
            "the second run went on without the index: {}",
            second.stderr
        );
        let stats = env.json(&["memory", "stats", "--project-id", "1", "--verify"]);
        let rows: i64 = stats["by_type"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_i64().unwrap())
            .sum();
        assert!(rows >= 8, "both runs saved memories: {stats}");
        // Every row is indexed but the raw interactions compaction took
        // out (`[memory] compact`: rolled up by the project summary).
        let compacted = stats["compacted"].as_i64().unwrap();
        assert_eq!(
            stats["indexed"].as_i64().unwrap(),
            rows - compacted,
            "{stats}"
        );
        assert_eq!(
            stats["index_points"].as_i64().unwrap(),
            rows - compacted,
            "{stats}"
        );
        assert_eq!(stats["unindexed"], 0, "{stats}");
    })
    .await
    .unwrap();
}

/// A completion is stamped with its own agent and time, whoever writes
/// the file: alice's `plans done` dies between its commit and its file
/// write, the catch-up misses it (as a sync racing the commit would), and
/// bob's `plans sync` later writes the line. It says alice, at alice's
/// time, never bob or the time of the sync.
#[test]
fn a_late_write_of_a_completion_keeps_its_own_agent_and_time() {
    let env = with_plans(Env::new());
    let crashed = Run::from(
        env.command()
            .env("LLMCLIS_CRASH_AT", "plans_write")
            .args([
                "--agent",
                "alice",
                "plans",
                "done",
                "S1.1",
                "--project-id",
                "1",
            ])
            .output()
            .unwrap(),
    );
    assert_ne!(crashed.code, 0);
    assert!(plans(&env).contains("- [ ] **S1.1"), "the file lags");
    let s = Store::open(&env.db()).unwrap();
    let t = s.task_by_ref(1, "S1.1").unwrap().unwrap();
    let done = s
        .events(t.id)
        .unwrap()
        .into_iter()
        .rfind(|e| e.kind == "status")
        .unwrap();
    assert_eq!(done.agent, "alice");
    // The race: the pending edit is out of the catch-up's sight.
    rusqlite::Connection::open(env.db())
        .unwrap()
        .execute("UPDATE doc_outbox SET applied_at = created_at", [])
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    env.command()
        .args(["--agent", "bob", "plans", "sync", "--project-id", "1"])
        .output()
        .unwrap();
    let text = plans(&env);
    let when = chrono::DateTime::parse_from_rfc3339(&done.created_at)
        .unwrap()
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    assert!(
        text.contains(&format!("**Completed:** `{when}` by `alice`")),
        "{text}"
    );
    assert!(
        text.contains(&format!("`{when}` – **S1.1")) && !text.contains("by `bob`"),
        "{text}"
    );
    // `plans check` and `doctor` compare the stamps with the store: none
    // now, one once the line names another agent.
    let check = env.json(&["plans", "check", "plans.md", "--against", "plans.md"]);
    assert_eq!(check["drift"].as_array().unwrap().len(), 0, "{check}");
    let edited = text.replacen(
        &format!("**Completed:** `{when}` by `alice`"),
        &format!("**Completed:** `{when}` by `bob`"),
        1,
    );
    std::fs::write(env.dir.path().join("plans.md"), edited).unwrap();
    let found = env.run(&[
        "--json",
        "plans",
        "check",
        "plans.md",
        "--against",
        "plans.md",
    ]);
    assert_eq!(found.code, 1, "drift fails the check: {}", found.stdout);
    let check: Value = serde_json::from_str(&found.stdout).unwrap();
    let drift = &check["drift"][0];
    assert_eq!(drift["external_ref"], "S1.1", "{check}");
    assert!(
        drift["file"].as_str().unwrap().contains("by `bob`")
            && drift["file"].as_str().unwrap().contains("`alice`"),
        "{check}"
    );
    let doctor = env.run(&["doctor"]);
    assert!(doctor.stdout.contains("S1.1"), "{}", doctor.stdout);
}
