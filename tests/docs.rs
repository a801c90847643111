//! The plan files: byte-identical round trips, golden edits (as diffs, so a
//! snapshot shows exactly which lines an edit touched), history-keeping
//! properties, malformed input, and concurrent edits.

use std::path::Path;

use llmclis::docs::issues::IssuesDoc;
use llmclis::docs::plans::{PlansDoc, StageState};
use llmclis::docs::research::ResearchDoc;
use llmclis::docs::{Written, check, splice, update_file};
use proptest::prelude::*;

const SEED: &str = include_str!("fixtures/seed_plans.md");
const STAMP: &str = "2026-11-21T10:00:00+00:00";

fn plans(text: &str) -> PlansDoc {
    PlansDoc::parse(text, Path::new("plans.md")).unwrap()
}

fn diff(before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(1)
        .to_string()
}

#[test]
fn the_files_round_trip_byte_for_byte() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, text) in [
        ("seed", SEED.to_string()),
        (
            "plans.md",
            std::fs::read_to_string(root.join("plans.md")).unwrap(),
        ),
    ] {
        let doc = plans(&text);
        assert_eq!(splice(&doc.text, vec![]), text, "{name}");
        assert!(doc.tasks().count() > 10, "{name}: too few tasks found");
    }
    let issues = std::fs::read_to_string(root.join("issues.md")).unwrap();
    let doc = IssuesDoc::parse(&issues, Path::new("issues.md")).unwrap();
    assert_eq!(splice(&doc.text, vec![]), issues);
    assert!(doc.issue("KM-001").is_some());
    let research = std::fs::read_to_string(root.join("research.md")).unwrap();
    let doc = ResearchDoc::parse(&research, Path::new("research.md")).unwrap();
    assert_eq!(splice(&doc.text, vec![]), research);
    assert!(doc.section("next-task-selection").is_some());
}

#[test]
fn the_seed_is_read_as_its_author_meant() {
    let doc = plans(SEED);
    assert_eq!(doc.stages.len(), 8);
    assert_eq!(doc.roadmap.len(), 8);
    assert_eq!(doc.tasks().count(), 25);
    let s22 = doc.task("S2.2").unwrap();
    assert_eq!(s22.title, "Dockerized Model Server");
    assert_eq!(s22.checklist.len(), 3);
    assert_eq!(
        doc.task("S3.3").unwrap().checklist.len(),
        1,
        "a box right under a task is a checklist item"
    );
    assert_eq!(doc.task("S1.2").unwrap().notes().len(), 2);
    assert!(
        doc.task("S1.1")
            .unwrap()
            .description()
            .contains("Task selection from the Knowledge Manager DB.")
    );
    assert_eq!(doc.done_log.as_ref().unwrap().entries.len(), 1);
}

#[test]
fn people_write_hyphens_capital_x_and_extra_blank_lines() {
    let text = "## Stage 1 - One\n\n\n- [X] **S1.1 - First**\n\n\n  - **Owner:** someone\n- [ ] **S1.2: Second**\n";
    let doc = plans(text);
    let t = doc.task("S1.1").unwrap();
    assert!(t.checked);
    assert_eq!(t.title, "First");
    assert_eq!(
        t.field("Owner").unwrap().value,
        "someone",
        "unknown fields are kept"
    );
    assert_eq!(doc.task("S1.2").unwrap().title, "Second");
    // New tasks use the dash the file uses.
    let (out, id) = doc.add_task(1, "Third", "", STAMP, "a", &[]).unwrap();
    assert_eq!(id, "S1.3");
    assert!(out.contains("- [ ] **S1.3 - Third**"), "{out}");
}

#[test]
fn golden_complete_a_task() {
    let doc = plans(SEED);
    let mut text = doc.complete_task("S1.1", STAMP, "claude", &[]).unwrap();
    text = plans(&text).log_done("`2026-11-21T10:00:00+00:00` – **S1.1 – Orchestrator Module Skeleton** completed by `claude`.");
    text = plans(&text).set_stage_state(1, StageState::InProgress);
    text = plans(&text).touch_metadata(STAMP, "claude");
    insta::assert_snapshot!(diff(SEED, &text));
}

#[test]
fn golden_reopen_note_and_link() {
    let done = plans(SEED).complete_task("S2.1", STAMP, "a", &[]).unwrap();
    let mut text = plans(&done)
        .reopen_task("S2.1", "2026-11-21T11:00:00+00:00", "b", "pending")
        .unwrap();
    text = plans(&text)
        .add_note("S2.3", STAMP, "b", "health check\nmust time out in 2 s")
        .unwrap();
    text = plans(&text)
        .add_link("S1.2", "Issues", "issues.md#km-002-schema")
        .unwrap();
    insta::assert_snapshot!(diff(SEED, &text));
}

/// The first task of a stage that has none goes under its `**Tasks:**`
/// line, and stays a task of its own when it is completed (a line right
/// after a list item would be read as part of it).
#[test]
fn the_first_task_of_an_empty_stage_goes_under_its_tasks_line() {
    let text = "# d – Plans\n\n## Stage 1 – One\n\n**Goal:** G.\n\n**Tasks:**\n\n---\n\n## Done / Completed Work Log\n\n- *(Empty – to be populated as work completes)*\n";
    let (text, id) = plans(text)
        .add_task(1, "First", "", STAMP, "max", &[])
        .unwrap();
    assert_eq!(id, "S1.1");
    let (text, _) = plans(&text)
        .add_task(1, "Second", "", STAMP, "max", &[])
        .unwrap();
    let text = plans(&text)
        .complete_task("S1.1", STAMP, "max", &["true".into()])
        .unwrap();
    let tasks_line = text.find("**Tasks:**").unwrap();
    assert!(tasks_line < text.find("S1.1").unwrap(), "{text}");
    let doc = plans(&text);
    let t = doc.task("S1.1").unwrap();
    assert!(t.checked);
    assert!(
        doc.text[t.item.clone()]
            .contains("**Completed:** `2026-11-21T10:00:00+00:00` by `max` — verified by `true`"),
        "{text}"
    );
    assert!(!doc.text[t.item.clone()].contains("**Tasks:**"), "{text}");
    assert_eq!(doc.tasks().count(), 2);
}

/// `**Check:**` and `**Protected:**` are read as lists of code spans (a
/// fence longer than the backticks inside), and written back the same.
#[test]
fn checks_and_protected_paths_round_trip() {
    let text = "# d – Plans\n\n## Stage 1 – One\n\n**Goal:** G.\n\n**Check:** `make test`\n\n**Tasks:**\n\n- [ ] **S1.1 – First**\n  - **Check:** `python3 -m unittest -q`, `` grep -q `x` a.py ``\n  - **Protected:** tests/, *.lock\n\n---\n";
    let doc = plans(text);
    assert_eq!(
        doc.stage(1).unwrap().checks,
        Some(vec!["make test".to_string()])
    );
    let t = doc.task("S1.1").unwrap();
    assert_eq!(
        doc.task_list_field(t, "Check").unwrap(),
        ["python3 -m unittest -q", "grep -q `x` a.py"]
    );
    assert_eq!(
        doc.task_list_field(t, "Protected").unwrap(),
        ["tests/", "*.lock"]
    );
    let items = vec!["cargo test".to_string(), "grep -q `y` b.rs".to_string()];
    let written = doc.set_list_field("S1.1", "Check", &items).unwrap();
    let again = plans(&written);
    let t = again.task("S1.1").unwrap();
    assert_eq!(again.task_list_field(t, "Check").unwrap(), items);
    assert!(
        written.contains("  - **Check:** `cargo test`, `` grep -q `y` b.rs ``\n"),
        "{written}"
    );
}

#[test]
fn golden_add_task_stage_and_checklist() {
    let (mut text, id) = plans(SEED)
        .add_task(
            3,
            "Qdrant Edge spike",
            "Try qdrant-edge 0.7 in-process",
            STAMP,
            "max",
            &[],
        )
        .unwrap();
    assert_eq!(id, "S3.4");
    text = plans(&text)
        .set_check_item("S2.2", "http-port-exposed-documented", true)
        .unwrap();
    text = plans(&text).set_roadmap(1, true);
    text = plans(&text).set_stage_state(1, StageState::Done);
    insta::assert_snapshot!(diff(SEED, &text));
}

#[test]
fn golden_done_log_appends_after_the_placeholder_is_gone() {
    let one = plans(SEED).log_done("first");
    let two = plans(&one).log_done("second");
    insta::assert_snapshot!(diff(SEED, &two));
}

#[test]
fn golden_issues_open_and_close() {
    let before = include_str!("fixtures/issues.md");
    let doc = IssuesDoc::parse(before, Path::new("issues.md")).unwrap();
    assert_eq!(doc.next_id(), "KM-004");
    let (text, id, anchor) = doc
        .open(
            "S3.1 blocked: registry schema",
            Some("S3.1"),
            "Waiting on\nthe schema.",
            STAMP,
            "claude",
        )
        .unwrap();
    assert_eq!(
        (id.as_str(), anchor.as_str()),
        ("KM-004", "km-004-s31-blocked-registry-schema")
    );
    let text = IssuesDoc::parse(&text, Path::new("issues.md"))
        .unwrap()
        .set_status("KM-002", "closed", "fixed by claiming", STAMP, "claude")
        .unwrap();
    insta::assert_snapshot!(diff(before, &text));
}

#[test]
fn golden_research_add() {
    let before = include_str!("fixtures/research.md");
    let doc = ResearchDoc::parse(before, Path::new("research.md")).unwrap();
    let (text, anchor) = doc.add(
        "local-llm-runtimes",
        "vLLM serves 16 sequences at once",
        STAMP,
        "claude",
    );
    assert_eq!(anchor, "local-llm-runtimes");
    let (text, anchor) = ResearchDoc::parse(&text, Path::new("research.md"))
        .unwrap()
        .add("Voting", "k = 5 costs 1.2× one call", STAMP, "claude");
    assert_eq!(anchor, "voting");
    insta::assert_snapshot!(diff(before, &text));
}

#[test]
fn duplicate_ids_are_errors_with_the_line() {
    let text = "## Stage 1 – A\n\n- [ ] **S1.1 – One**\n- [ ] **S1.1 – Two**\n";
    let err = PlansDoc::parse(text, Path::new("p/plans.md"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "p/plans.md:4: task id S1.1 is used twice (first at line 3); give this task a new id"
    );
    let err = PlansDoc::parse("## Stage 1 – A\n\n- [ ] **S1.1**\n", Path::new("plans.md"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("plans.md:3: task S1.1 has no title"),
        "{err}"
    );
}

#[test]
fn check_names_what_a_hand_edit_lost() {
    let done = plans(SEED).complete_task("S1.1", STAMP, "a", &[]).unwrap();
    let done = plans(&done).log_done("entry one");
    // A careless edit: S1.3 deleted, S1.1 unticked, a note and the log entry dropped.
    let start = done.find("- [ ] **S1.3").unwrap();
    let end = done.find("---\n\n## Stage 2").unwrap();
    let mut edited = format!("{}{}", &done[..start], &done[end..]);
    edited = edited.replacen("- [x] **S1.1", "- [ ] **S1.1", 1);
    edited = edited.replacen(
        "    - Ensure no schema-breaking changes; keep compatibility with current KM code.\n",
        "",
        1,
    );
    edited = edited.replacen("- entry one\n", "", 1);
    let v = check::compare(&plans(&done), &plans(&edited));
    let messages: Vec<&str> = v.iter().map(|v| v.message.as_str()).collect();
    assert_eq!(v.len(), 4, "{messages:#?}");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("task S1.3 (CLI Entry Point for Orchestrator) was removed"))
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("task S1.1 was done and is unticked"))
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("a note of S1.2 was removed"))
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Done log entry \"entry one\""))
    );
    let removed = v
        .iter()
        .find(|v| v.message.starts_with("task S1.3"))
        .unwrap();
    assert!(removed.in_earlier);
    assert_eq!(removed.line, done[..start].lines().count() + 1);
}

#[test]
fn timestamps_may_only_move_forward() {
    let a = plans(SEED).complete_task("S1.1", STAMP, "a", &[]).unwrap();
    let b = a.replacen(
        "**Last Updated:** `2026-11-21T10:00:00+00:00`",
        "**Last Updated:** `2026-11-20T10:00:00+00:00`",
        1,
    );
    let v = check::compare(&plans(&a), &plans(&b));
    assert_eq!(v.len(), 1);
    assert!(
        v[0].message.starts_with("Last Updated of S1.1 went back"),
        "{}",
        v[0].message
    );
}

#[test]
fn a_concurrent_edit_elsewhere_is_merged_and_one_on_the_same_lines_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.md");
    std::fs::write(&path, SEED).unwrap();

    // Someone else edits another task while our transform runs (only the first time).
    let mut first = true;
    let written = update_file(&path, |text| {
        if std::mem::take(&mut first) {
            let theirs = text.replacen(
                "- [ ] **S4.2 – Summarization Jobs**",
                "- [x] **S4.2 – Summarization Jobs**",
                1,
            );
            std::fs::write(&path, theirs).unwrap();
        }
        plans(text).complete_task("S1.1", STAMP, "us", &[])
    })
    .unwrap();
    assert_eq!(written, Written::Merged);
    let now = std::fs::read_to_string(&path).unwrap();
    assert!(now.contains("- [x] **S4.2"), "their change is kept");
    assert!(now.contains("- [x] **S1.1"), "ours is applied");

    // Someone else edits the very line we change: nothing is written, theirs stays.
    let mut first = true;
    let err = update_file(&path, |text| {
        if std::mem::take(&mut first) {
            let theirs = text.replacen(
                "- [ ] **S1.2 – Knowledge Manager Integration**",
                "- [ ] **S1.2 – KM Integration (renamed)**",
                1,
            );
            std::fs::write(&path, theirs).unwrap();
        }
        plans(text).complete_task("S1.2", STAMP, "us", &[])
    })
    .unwrap_err();
    assert_eq!(err.kind(), "conflict");
    assert!(
        err.to_string().contains("changed by another program"),
        "{err}"
    );
    let now = std::fs::read_to_string(&path).unwrap();
    assert!(now.contains("KM Integration (renamed)"));
    assert!(now.contains("- [ ] **S1.2"));
}

/// One random edit, as an agent command would make it.
#[derive(Debug, Clone)]
enum Edit {
    Complete(usize),
    Reopen(usize),
    Note(usize, String),
    Link(usize),
    Add(usize, String),
    Log(String),
    Stage(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let text = "[a-zA-Z0-9 `*_#\\[\\]-]{1,30}";
    prop_oneof![
        (0usize..40).prop_map(Edit::Complete),
        (0usize..40).prop_map(Edit::Reopen),
        ((0usize..40), text).prop_map(|(t, s)| Edit::Note(t, s)),
        (0usize..40).prop_map(Edit::Link),
        ((0usize..8), "[a-zA-Z0-9 ]{1,20}").prop_map(|(s, t)| Edit::Add(s, t)),
        text.prop_map(Edit::Log),
        ((0usize..8), (0usize..3)).prop_map(|(s, st)| Edit::Stage(s, st)),
    ]
}

fn apply(text: &str, e: &Edit) -> String {
    let doc = plans(text);
    let ids: Vec<String> = doc.tasks().map(|t| t.id.clone()).collect();
    let id = |i: usize| ids[i % ids.len()].clone();
    let stage = |i: usize| doc.stages[i % doc.stages.len()].number;
    match e {
        Edit::Complete(i) => doc.complete_task(&id(*i), STAMP, "p", &[]).unwrap(),
        Edit::Reopen(i) => doc.reopen_task(&id(*i), STAMP, "p", "pending").unwrap(),
        Edit::Note(i, s) => doc.add_note(&id(*i), STAMP, "p", s).unwrap(),
        Edit::Link(i) => doc
            .add_link(&id(*i), "Issues", "issues.md#km-009-x")
            .unwrap(),
        Edit::Add(s, t) if !t.trim().is_empty() => {
            doc.add_task(stage(*s), t, "", STAMP, "p", &[]).unwrap().0
        }
        Edit::Add(..) => text.to_string(),
        Edit::Log(s) => doc.log_done(s),
        Edit::Stage(s, st) => {
            let state = [
                StageState::NotStarted,
                StageState::InProgress,
                StageState::Done,
            ][*st];
            doc.set_stage_state(stage(*s), state)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever agents do through the commands, no task, note or log line
    /// of an earlier version disappears.
    #[test]
    fn edits_never_lose_history(edits in proptest::collection::vec(edit(), 1..25)) {
        let mut text = SEED.to_string();
        for e in &edits {
            let before = text.clone();
            text = apply(&text, e);
            let lost: Vec<_> = check::compare(&plans(&before), &plans(&text))
                .into_iter()
                .filter(|v| v.in_earlier)
                .collect();
            prop_assert!(lost.is_empty(), "{e:?} lost {lost:?}");
        }
        let lost: Vec<_> = check::compare(&plans(SEED), &plans(&text)).into_iter().filter(|v| v.in_earlier).collect();
        prop_assert!(lost.is_empty(), "{lost:?}");
    }

    /// The readers take any text without panicking.
    #[test]
    fn readers_never_panic(text in "(\\PC|\n|- \\[[ xX]\\] \\*\\*S1\\.1 – |## Stage 1 – |### KM-001: ){0,400}") {
        let _ = PlansDoc::parse(&text, Path::new("f.md"));
        let _ = IssuesDoc::parse(&text, Path::new("f.md"));
        let _ = ResearchDoc::parse(&text, Path::new("f.md"));
    }
}

#[test]
fn an_edit_keeps_continuation_lines_and_odd_nesting_does_not_panic() {
    let text = "## Stage 1 – A\n\n- [ ] **S1.1 – T**\n  - **Last Updated:** `2026-01-01T00:00:00+00:00` by `x`\n    reviewed by Alice, see PR 42\n";
    let out = plans(text).complete_task("S1.1", STAMP, "y", &[]).unwrap();
    assert!(out.contains("    reviewed by Alice, see PR 42\n"), "{out}");
    assert!(out.contains("**Last Updated:** `2026-11-21T10:00:00+00:00` by `y`"));
    let odd = "## Stage 1 – A\n\n- [ ] **S1.1 – T**\n  - - a\n\n    **Foo:** b\n";
    let doc = plans(odd);
    assert!(doc.complete_task("S1.1", STAMP, "y", &[]).is_ok());
}

#[test]
fn closing_an_issue_at_the_end_of_a_file_without_a_newline() {
    let text = "### KM-001: A\n\n- **Status:** `open`\n- **Notes:**\n  - earlier note";
    let doc = IssuesDoc::parse(text, Path::new("issues.md")).unwrap();
    let out = doc
        .set_status("KM-001", "closed", "done", STAMP, "a")
        .unwrap();
    assert!(
        out.ends_with("  - earlier note\n  - `2026-11-21T10:00:00+00:00` by `a`: done\n"),
        "{out:?}"
    );
}

#[test]
fn create_atomic_never_replaces_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("issues.md");
    assert!(llmclis::fsutil::create_atomic(&p, b"first").unwrap());
    assert!(!llmclis::fsutil::create_atomic(&p, b"second").unwrap());
    assert_eq!(std::fs::read(&p).unwrap(), b"first");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// A note on a stage task has a place of its own: a `**Notes:**`
/// paragraph after the stage's tasks, created by the first note and
/// appended to by the next; the tasks stay the stage's, the note is read
/// back as the stage's, and a re-parse of the result is stable.
#[test]
fn stage_notes_go_under_the_stages_own_notes() {
    let first = plans(SEED)
        .add_stage_note(2, STAMP, "a", "the spec\nchanged")
        .unwrap();
    let text = plans(&first)
        .add_stage_note(2, "2026-11-21T11:00:00+00:00", "b", "second")
        .unwrap();
    insta::assert_snapshot!(diff(SEED, &text));
    let doc = plans(&text);
    let before = plans(SEED);
    let (old, new) = (before.stage(2).unwrap(), doc.stage(2).unwrap());
    let ids =
        |s: &llmclis::docs::plans::Stage| s.tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(old), ids(new), "the tasks stay the stage's");
    let notes = &text[new.notes.clone().expect("the stage has notes")];
    assert!(
        notes.contains("`a`: the spec changed") && notes.contains("`b`: second"),
        "{notes}"
    );
    assert!(doc.stage(1).unwrap().notes.is_none(), "only Stage 2's");
    // Nothing else moved: every other stage reads as before.
    for n in [1, 3, 4] {
        assert_eq!(ids(before.stage(n).unwrap()), ids(doc.stage(n).unwrap()));
    }
}

/// A stage with no tasks and no Status line gets its notes inside its own
/// section (after its Goal, before the rule), once: re-parsed, they are
/// its notes, and adding the same state again adds nothing.
#[test]
fn a_note_on_a_bare_stage_stays_in_its_section() {
    let text = "# d – Plans\n\n## Stage 1 – One\n\n**Goal:** G.\n\n---\n\n## Stage 2 – Two\n\n**Goal:** H.\n\n---\n";
    let out = plans(text).add_stage_note(2, STAMP, "a", "later").unwrap();
    let doc = plans(&out);
    let notes = &out[doc
        .stage(2)
        .unwrap()
        .notes
        .clone()
        .expect("stage 2's notes")];
    assert!(notes.contains("`a`: later"), "{out}");
    assert!(doc.stage(1).unwrap().notes.is_none(), "{out}");
    let two = out.find("## Stage 2").unwrap();
    assert!(
        out[two..].find("**Notes:**").unwrap() < out[two..].find("---").unwrap(),
        "{out}"
    );
    // CRLF and no final newline read the same way.
    let crlf = text.replace('\n', "\r\n");
    let crlf = crlf.trim_end();
    let out = plans(crlf).add_stage_note(2, STAMP, "a", "later").unwrap();
    assert!(plans(&out).stage(2).unwrap().notes.is_some(), "{out:?}");
}
