//! The knowledge manager on temporary databases: migrations, the next-task
//! rule, claims and leases, history.

use std::time::Duration;

use llmclis::Error;
use llmclis::store::{NewTask, SCHEMA_VERSION, Status, Store, TaskPatch};
use serde_json::json;

const LONG: Duration = Duration::from_secs(600);

fn store_with_project() -> (Store, i64) {
    let mut s = Store::open_in_memory().unwrap();
    let p = s.create_project("demo", "", None, "t").unwrap();
    (s, p.id)
}

fn add(
    s: &mut Store,
    project: i64,
    title: &str,
    priority: i64,
    deps: &[i64],
    parent: Option<i64>,
) -> i64 {
    s.create_task(
        NewTask {
            project_id: project,
            title: title.into(),
            priority: Some(priority),
            depends_on: deps.to_vec(),
            parent_id: parent,
            ..Default::default()
        },
        "t",
    )
    .unwrap()
    .id
}

fn next(s: &Store, project: i64) -> Option<i64> {
    s.next_task(Some(project)).unwrap().map(|t| t.id)
}

fn set(s: &mut Store, id: i64, status: Status) {
    s.mark_task_status(id, status, "t", json!({})).unwrap();
}

#[test]
fn migrates_an_empty_file_and_reopens_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/km.db");
    {
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        s.create_project("p", "d", None, "t").unwrap();
    }
    let before = crate::support::dump(&path);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.projects().unwrap().len(), 1);
    drop(s);
    assert_eq!(
        before,
        crate::support::dump(&path),
        "re-opening changed the data"
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn refuses_a_newer_schema_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("km.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
            .unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    match Store::open(&path) {
        Err(Error::NewerSchema {
            found: 99, known, ..
        }) => assert_eq!(known, SCHEMA_VERSION),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("opened a newer schema"),
    }
    assert_eq!(bytes, std::fs::read(&path).unwrap(), "the file changed");
    assert!(!dir.path().join("km.db-wal").exists(), "a WAL was started");
}

#[test]
fn refuses_a_file_that_is_not_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "just some notes, not a database at all\n").unwrap();
    assert!(matches!(
        Store::open(&path),
        Err(Error::NotADatabase { .. })
    ));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "just some notes, not a database at all\n"
    );
}

#[test]
fn next_task_waits_for_dependencies() {
    let (mut s, p) = store_with_project();
    let a = add(&mut s, p, "a", 2, &[], None);
    let b = add(&mut s, p, "b", 9, &[a], None);
    assert_eq!(next(&s, p), Some(a), "b is more urgent but waits on a");
    set(&mut s, a, Status::Done);
    assert_eq!(next(&s, p), Some(b));
    // Reopening a puts b back behind it.
    set(&mut s, a, Status::Pending);
    assert_eq!(next(&s, p), Some(a));
}

#[test]
fn next_task_prefers_priority_then_fewer_dependencies_then_lowest_id() {
    let (mut s, p) = store_with_project();
    let done = add(&mut s, p, "done", 0, &[], None);
    set(&mut s, done, Status::Done);
    let low = add(&mut s, p, "low", 1, &[], None);
    let with_dep = add(&mut s, p, "with dep", 3, &[done], None);
    let plain = add(&mut s, p, "plain", 3, &[], None);
    let plain2 = add(&mut s, p, "plain2", 3, &[], None);
    assert_eq!(
        next(&s, p),
        Some(plain),
        "same priority: fewer deps, then lowest id"
    );
    set(&mut s, plain, Status::Done);
    assert_eq!(next(&s, p), Some(plain2));
    set(&mut s, plain2, Status::Done);
    assert_eq!(next(&s, p), Some(with_dep));
    set(&mut s, with_dep, Status::Done);
    assert_eq!(next(&s, p), Some(low));
}

#[test]
fn subtasks_of_in_progress_parents_come_first() {
    let (mut s, p) = store_with_project();
    let urgent = add(&mut s, p, "urgent", 9, &[], None);
    let parent = add(&mut s, p, "parent", 1, &[], None);
    let child = add(&mut s, p, "child", 1, &[], Some(parent));
    assert_eq!(next(&s, p), Some(urgent));
    set(&mut s, parent, Status::InProgress);
    assert_eq!(
        next(&s, p),
        Some(child),
        "the started parent's subtask goes first"
    );
}

#[test]
fn a_blocked_parent_holds_back_its_subtasks() {
    let (mut s, p) = store_with_project();
    let parent = add(&mut s, p, "parent", 2, &[], None);
    let child = add(&mut s, p, "child", 5, &[], Some(parent));
    let other = add(&mut s, p, "other", 1, &[], None);
    set(&mut s, parent, Status::Blocked);
    assert_eq!(next(&s, p), Some(other));
    set(&mut s, parent, Status::Pending);
    assert_eq!(next(&s, p), Some(child));
}

#[test]
fn a_parent_waits_for_its_subtasks() {
    let (mut s, p) = store_with_project();
    let parent = add(&mut s, p, "stage", 5, &[], None);
    let c1 = add(&mut s, p, "c1", 1, &[], Some(parent));
    let c2 = add(&mut s, p, "c2", 1, &[], Some(parent));
    assert_eq!(next(&s, p), Some(c1));
    set(&mut s, c1, Status::Done);
    assert_eq!(next(&s, p), Some(c2));
    set(&mut s, c2, Status::Done);
    assert_eq!(next(&s, p), Some(parent));
}

#[test]
fn next_task_is_scoped_to_the_project() {
    let (mut s, p) = store_with_project();
    let q = s.create_project("other", "", None, "t").unwrap().id;
    let in_q = add(&mut s, q, "q task", 9, &[], None);
    let in_p = add(&mut s, p, "p task", 1, &[], None);
    assert_eq!(next(&s, p), Some(in_p));
    assert_eq!(next(&s, q), Some(in_q));
    assert_eq!(s.next_task(None).unwrap().map(|t| t.id), Some(in_q));
    assert!(matches!(
        s.next_task(Some(42)),
        Err(Error::ProjectNotFound(42))
    ));
}

#[test]
fn claims_take_each_task_once_and_write_events() {
    let (mut s, p) = store_with_project();
    let a = add(&mut s, p, "a", 2, &[], None);
    let b = add(&mut s, p, "b", 2, &[], None);
    let t1 = s.claim_next(Some(p), "w1", LONG).unwrap().unwrap();
    let t2 = s.claim_next(Some(p), "w2", LONG).unwrap().unwrap();
    assert_eq!((t1.id, t2.id), (a, b));
    assert_eq!(t1.status, Status::InProgress);
    assert_eq!(t1.claimed_by.as_deref(), Some("w1"));
    assert_eq!(t1.attempts, 1);
    assert!(t1.lease_expires_at.is_some());
    assert!(s.claim_next(Some(p), "w3", LONG).unwrap().is_none());
    let kinds: Vec<String> = s.events(a).unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["created", "claim"]);
}

#[test]
fn an_expired_lease_is_reclaimed() {
    let (mut s, p) = store_with_project();
    let a = add(&mut s, p, "a", 2, &[], None);
    s.claim_next(Some(p), "dead", Duration::from_millis(1))
        .unwrap()
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let t = s.claim_next(Some(p), "alive", LONG).unwrap().unwrap();
    assert_eq!(t.id, a);
    assert_eq!(t.claimed_by.as_deref(), Some("alive"));
    assert_eq!(t.attempts, 2);
    let events = s.events(a).unwrap();
    let expired = events
        .iter()
        .find(|e| e.kind == "lease_expired")
        .expect("an event");
    assert_eq!(expired.metadata["previous_holder"], "dead");
    assert_eq!(expired.to_status, Some(Status::Pending));
    // The dead agent's renewal fails; the live one's works.
    assert!(!s.renew_lease(a, "dead", LONG).unwrap());
    assert!(s.renew_lease(a, "alive", LONG).unwrap());
}

#[test]
fn a_live_lease_is_not_reclaimed() {
    let (mut s, p) = store_with_project();
    add(&mut s, p, "a", 2, &[], None);
    s.claim_next(Some(p), "w1", LONG).unwrap().unwrap();
    assert!(s.claim_next(Some(p), "w2", LONG).unwrap().is_none());
}

#[test]
fn dependency_errors_name_the_tasks() {
    let (mut s, p) = store_with_project();
    let a = add(&mut s, p, "a", 2, &[], None);
    let b = add(&mut s, p, "b", 2, &[a], None);
    let c = add(&mut s, p, "c", 2, &[b], None);
    let err = s.add_dependency(a, c, "t").unwrap_err();
    assert!(matches!(err, Error::DependencyCycle { .. }));
    assert!(
        err.to_string()
            .contains(&format!("task {a} → {c} → {b} → {a}")),
        "{err}"
    );
    assert!(matches!(
        s.add_dependency(a, a, "t"),
        Err(Error::SelfDependency(_))
    ));
    assert!(matches!(
        s.add_dependency(a, 999, "t"),
        Err(Error::TaskNotFound(999))
    ));
    let q = s.create_project("q", "", None, "t").unwrap().id;
    let other = add(&mut s, q, "elsewhere", 2, &[], None);
    assert!(matches!(
        s.add_dependency(a, other, "t"),
        Err(Error::CrossProject { .. })
    ));
    // Adding one twice changes nothing.
    assert!(!s.add_dependency(b, a, "t").unwrap());
    assert!(s.check_derived_columns().unwrap().is_empty());
}

#[test]
fn a_failed_create_writes_nothing() {
    let (mut s, p) = store_with_project();
    let a = add(&mut s, p, "a", 2, &[], None);
    let before = s.tasks(None, None).unwrap().len();
    let err = s
        .create_task(
            NewTask {
                project_id: p,
                title: "bad".into(),
                depends_on: vec![a, 12345],
                ..Default::default()
            },
            "t",
        )
        .unwrap_err();
    assert!(matches!(err, Error::TaskNotFound(12345)));
    assert_eq!(s.tasks(None, None).unwrap().len(), before);
    assert!(s.check_derived_columns().unwrap().is_empty());
}

#[test]
fn edits_and_status_changes_are_logged_and_notes_are_append_only() {
    let (mut s, p) = store_with_project();
    let a = add(&mut s, p, "a", 2, &[], None);
    let t = s
        .update_task(
            a,
            TaskPatch {
                title: Some("renamed".into()),
                tags: Some(vec!["x".into(), "x".into(), "y".into()]),
                ..Default::default()
            },
            "editor",
        )
        .unwrap();
    assert_eq!(t.title, "renamed");
    assert_eq!(t.tags, ["x", "y"]);
    assert_eq!(t.last_agent.as_deref(), Some("editor"));
    let tr = s
        .mark_task_status_with_note(
            a,
            Status::Blocked,
            "bot",
            json!({"why": "needs a key"}),
            Some("waiting on a key"),
        )
        .unwrap();
    assert_eq!(tr.from, Status::Pending);
    assert!(tr.changed());
    // Same status again: no new event.
    let again = s
        .mark_task_status(a, Status::Blocked, "bot", json!({}))
        .unwrap();
    assert!(!again.changed());

    let events = s.events(a).unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["created", "edit", "status", "note"]);
    assert_eq!(
        events[1].metadata["title"],
        json!({"from": "a", "to": "renamed"})
    );
    assert_eq!(events[2].metadata["why"], "needs a key");
    assert_eq!(events[2].agent, "bot");
    assert_eq!(s.notes(a).unwrap()[0].text, "waiting on a key");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("km.db");
    let mut f = Store::open(&path).unwrap();
    let p = f.create_project("p", "", None, "t").unwrap().id;
    let id = add(&mut f, p, "a", 2, &[], None);
    f.append_task_note(id, "first", "t").unwrap();
    drop(f);
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert!(
        conn.execute("UPDATE task_notes SET text = 'rewritten'", [])
            .is_err()
    );
    assert!(conn.execute("DELETE FROM task_notes", []).is_err());
    assert!(conn.execute("DELETE FROM events", []).is_err());
}

#[test]
fn invalid_input_is_refused() {
    let (mut s, p) = store_with_project();
    assert!(matches!(
        "finished".parse::<Status>(),
        Err(Error::InvalidStatus(_))
    ));
    assert_eq!("In_Progress".parse::<Status>().unwrap(), Status::InProgress);
    let err = s
        .create_task(
            NewTask {
                project_id: p,
                title: "  ".into(),
                ..Default::default()
            },
            "t",
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)));
    let err = s
        .create_task(
            NewTask {
                project_id: 77,
                title: "x".into(),
                ..Default::default()
            },
            "t",
        )
        .unwrap_err();
    assert!(matches!(err, Error::ProjectNotFound(77)));
    assert!(matches!(
        s.create_project("demo", "", None, "t"),
        Err(Error::ProjectExists { .. })
    ));
    assert!(matches!(
        s.append_task_note(1, " ", "t"),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn deleting_hides_a_task_keeps_its_history_and_frees_its_parent() {
    let (mut s, p) = store_with_project();
    let parent = add(&mut s, p, "parent", 2, &[], None);
    let child = add(&mut s, p, "typo", 2, &[], Some(parent));
    let needed = add(&mut s, p, "needed", 2, &[], None);
    let user = add(&mut s, p, "user", 2, &[needed], None);
    // Refused while something depends on it, or while it has subtasks.
    let e = s.delete_task(needed, "t").unwrap_err().to_string();
    assert!(e.contains(&format!("task(s) {user} depend on it")), "{e}");
    let e = s.delete_task(parent, "t").unwrap_err().to_string();
    assert!(e.contains("has 1 subtask"), "{e}");
    assert_eq!(next(&s, p), Some(child), "the parent waits for its subtask");
    let gone = s.delete_task(child, "t").unwrap();
    assert!(gone.deleted_at.is_some());
    assert!(
        s.tasks(Some(p), None)
            .unwrap()
            .iter()
            .all(|t| t.id != child)
    );
    assert!(s.subtasks(parent).unwrap().is_empty());
    assert_eq!(
        s.status_counts(Some(p)).unwrap().done,
        0,
        "not counted as done"
    );
    assert_eq!(next(&s, p), Some(parent), "the parent no longer waits");
    assert_eq!(s.events(child).unwrap().last().unwrap().kind, "deleted");
    assert!(s.delete_task(child, "t").is_err(), "already deleted");
    assert!(s.check_derived_columns().unwrap().is_empty());
}

#[test]
fn claiming_a_given_task_needs_it_ready() {
    let (mut s, p) = store_with_project();
    let a = add(&mut s, p, "a", 2, &[], None);
    let b = add(&mut s, p, "b", 2, &[a], None);
    let e = s
        .claim_task(b, "agent", std::time::Duration::from_secs(60))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("task {b} is not ready")), "{e}");
    let t = s
        .claim_task(a, "agent", std::time::Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        (t.status, t.claimed_by.as_deref()),
        (Status::InProgress, Some("agent"))
    );
    assert!(
        s.claim_task(a, "other", std::time::Duration::from_secs(60))
            .is_err()
    );
}
