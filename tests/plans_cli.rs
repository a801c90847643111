//! The plan-file commands through the real binary, on a workspace holding
//! the seed plans.md.

use crate::support::{Env, dump};

const SEED: &str = include_str!("fixtures/seed_plans.md");

fn workspace() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let plans = env.dir.path().join("plans.md");
    std::fs::write(&plans, SEED).unwrap();
    (env, plans)
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn first_run_imports_the_workspace_plans_and_reimport_never_duplicates() {
    let (env, _) = workspace();
    let r = env.run(&["first-run", "--yes"]);
    r.assert_ok();
    assert!(r.stdout.contains("imported"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("Next: llmclis orchestrate --project_id 1"),
        "{}",
        r.stdout
    );
    let tasks = env.json(&["task", "list", "--project-id", "1"]);
    // 8 stages, 25 tasks, 4 checklist items.
    assert_eq!(tasks.as_array().unwrap().len(), 37);
    let s22 = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["external_ref"] == "S2.2")
        .unwrap();
    let checklist = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["parent_id"] == s22["id"])
        .count();
    assert_eq!(checklist, 3);

    let again = env.json(&["plans", "import"]);
    assert_eq!(again["project_id"], 1);
    assert_eq!(again["created"], 0);
    assert_eq!(again["unchanged"], 37);
    let r = env.run(&["first-run", "--yes"]);
    assert!(r.stdout.starts_with("Nothing to do"), "{}", r.stdout);
    assert_eq!(env.json(&["task", "list"]).as_array().unwrap().len(), 37);
}

#[test]
fn a_hand_ticked_box_comes_in_done_on_reimport() {
    let (env, plans) = workspace();
    env.json(&["plans", "import"]);
    std::fs::write(&plans, SEED.replacen("- [ ] **S1.2", "- [x] **S1.2", 1)).unwrap();
    let r = env.json(&["plans", "import"]);
    assert_eq!(r["updated"], 1);
    let t = env.json(&["plans", "status", "S1.2", "done"]);
    assert_eq!(t["changed"], false, "already done from the import");
}

#[test]
fn done_and_blocked_follow_into_the_files() {
    let (env, plans) = workspace();
    env.json(&["plans", "import"]);
    let before = read(&plans);

    let done = env.json(&[
        "plans",
        "done",
        "S1.1",
        "--note",
        "skeleton in place",
        "--agent",
        "claude",
    ]);
    assert_eq!(done["status"], "done");
    assert_eq!(done["files"]["plans_changed"], true);
    let text = read(&plans);
    assert!(text.contains("- [x] **S1.1 – Orchestrator Module Skeleton**"));
    assert!(text.contains("  - **Completed:** `"));
    assert!(text.contains("by `claude`: skeleton in place"));
    assert!(text.contains("**S1.1 – Orchestrator Module Skeleton** completed by `claude`."));
    assert!(text.contains("- Last Editor (Agent / CLI): `claude`"));
    assert!(
        !text.contains("*(Empty – to be populated"),
        "the placeholder makes way"
    );

    // The same status again changes nothing, in the store or the file.
    let db = dump(&env.db());
    let again = env.json(&["plans", "done", "S1.1"]);
    assert_eq!(again["changed"], false);
    assert_eq!(again["files"]["plans_changed"], false);
    assert_eq!(read(&plans), text);
    assert_eq!(dump(&env.db()), db);

    let blocked = env.json(&[
        "plans",
        "status",
        "S1.2",
        "blocked",
        "--note",
        "waiting for the schema",
    ]);
    assert_eq!(blocked["files"]["issue"], "KM-001");
    let issues = read(&env.dir.path().join("issues.md"));
    assert!(
        issues.contains("### KM-001: S1.2 blocked: Knowledge Manager Integration"),
        "{issues}"
    );
    assert!(issues.contains("- **Linked Task:** S1.2"));
    assert!(issues.contains("- **Description:** waiting for the schema"));
    assert!(
        read(&plans)
            .contains("- Issues: `issues.md#km-001-s12-blocked-knowledge-manager-integration`")
    );

    // Unblocking closes it, with a note; the entry stays.
    let r = env.json(&["task", "status", &blocked["id"].to_string(), "pending"]);
    assert_eq!(r["files"]["closed_issues"], serde_json::json!(["KM-001"]));
    let issues = read(&env.dir.path().join("issues.md"));
    assert!(issues.contains("- **Status:** `closed`"));
    assert!(issues.contains("task S1.2 is pending now"));

    // Every line removed from plans.md was a value that was replaced.
    let check = env.run(&[
        "plans",
        "check",
        "--against",
        write_copy(&env, &before).to_str().unwrap(),
    ]);
    check.assert_ok();
    assert!(
        check.stdout.contains("keeps all history"),
        "{}",
        check.stdout
    );
}

fn write_copy(env: &Env, text: &str) -> std::path::PathBuf {
    let p = env.dir.path().join("earlier.md");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn notes_and_new_tasks_go_to_both_store_and_file() {
    let (env, plans) = workspace();
    env.json(&["plans", "import"]);
    let note = env.json(&[
        "plans",
        "note",
        "S2.1",
        "vLLM for concurrency",
        "--agent",
        "gpt",
    ]);
    assert_eq!(note["text"], "vLLM for concurrency");
    assert!(read(&plans).contains("by `gpt`: vLLM for concurrency"));
    // A note added through `task note` lands in the file the same way.
    let s21 = note["task_id"].to_string();
    env.json(&["task", "note", &s21, "TGI as fallback"]);
    assert!(read(&plans).contains("by `tester`: TGI as fallback"));

    let added = env.json(&[
        "plans",
        "add",
        "--stage",
        "3",
        "--title",
        "Qdrant Edge spike",
        "-d",
        "in-process",
    ]);
    assert_eq!(added["external_ref"], "S3.4");
    let stage3 = env.json(&["task", "list", "--project-id", "1"]);
    let parent = stage3
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["external_ref"] == "S3")
        .unwrap();
    assert_eq!(added["parent_id"], parent["id"]);
    let text = read(&plans);
    assert!(text.contains("- [ ] **S3.4 – Qdrant Edge spike**\n  - **Description:** in-process\n"));

    let r = env.json(&[
        "research",
        "add",
        "--section",
        "Local LLM Runtimes",
        "--text",
        "vLLM wins",
    ]);
    assert_eq!(r["anchor"], "local-llm-runtimes");
    assert!(read(&env.dir.path().join("research.md")).contains("## Local LLM Runtimes"));

    let opened = env.json(&[
        "issues",
        "open",
        "--title",
        "Edge pin",
        "--task",
        "S3.4",
        "-d",
        "0.7.0 only",
    ]);
    assert_eq!(opened["id"], "KM-001");
    assert!(read(&plans).contains("- Issues: `issues.md#km-001-edge-pin`"));
    env.json(&["issues", "close", "KM-001", "--note", "pinned"]);
    env.run(&["issues", "close", "KM-009"])
        .assert_err(2, &["has no entry KM-009"]);
}

#[test]
fn a_malformed_plan_is_refused_with_file_and_line_and_nothing_changes() {
    let (env, plans) = workspace();
    env.json(&["plans", "import"]);
    let broken = SEED.replacen(
        "**S1.2 – Knowledge Manager Integration**",
        "**S1.1 – Knowledge Manager Integration**",
        1,
    );
    std::fs::write(&plans, &broken).unwrap();
    let db = dump(&env.db());
    let line = broken[..broken.find("**S1.1 – Knowledge").unwrap()]
        .matches('\n')
        .count()
        + 1;
    env.run(&["plans", "import"]).assert_err(
        2,
        &[&format!("plans.md:{line}: task id S1.1 is used twice")],
    );
    env.run(&["plans", "done", "S1.3"]).assert_err(
        2,
        &[&format!("plans.md:{line}: task id S1.1 is used twice")],
    );
    env.run(&["task", "note", "4", "a note"])
        .assert_err(2, &["task id S1.1 is used twice"]);
    assert_eq!(read(&plans), broken, "the file is untouched");
    assert_eq!(dump(&env.db()), db, "the store is untouched");
    std::fs::write(&plans, [0xffu8, 0xfe, b'\n']).unwrap();
    env.run(&["plans", "check"])
        .assert_err(2, &["plans.md:1: not valid UTF-8"]);
}

#[test]
fn check_fails_on_lost_history_and_names_the_line() {
    let (env, plans) = workspace();
    let earlier = write_copy(&env, SEED);
    let start = SEED.find("- [ ] **S1.3").unwrap();
    let end = SEED.find("---\n\n## Stage 2").unwrap();
    std::fs::write(&plans, format!("{}{}", &SEED[..start], &SEED[end..])).unwrap();
    let r = env.run(&["plans", "check", "--against", earlier.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let line = SEED[..start].lines().count() + 1;
    assert!(
        r.stdout.contains(&format!(
            "line {line}): task S1.3 (CLI Entry Point for Orchestrator) was removed"
        )),
        "{}",
        r.stdout
    );
    let v = env.run(&[
        "--json",
        "plans",
        "check",
        "--against",
        earlier.to_str().unwrap(),
    ]);
    let out: serde_json::Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(out["violations"].as_array().unwrap().len(), 1);
    env.run(&["plans", "check", "--against", "no-such-rev"])
        .assert_err(2, &["neither a file nor a git revision"]);
}

#[test]
fn a_renamed_checklist_item_retires_the_old_subtask() {
    let (env, plans) = workspace();
    env.json(&["plans", "import"]);
    let renamed = SEED.replacen(
        "HTTP port exposed & documented.",
        "HTTP port exposed, documented and tested.",
        1,
    );
    std::fs::write(&plans, &renamed).unwrap();
    let r = env.json(&["plans", "import"]);
    assert_eq!(
        (r["created"].as_i64(), r["retired"].as_i64()),
        (Some(1), Some(1))
    );
    let tasks = env.json(&["task", "list", "--project-id", "1"]);
    let old = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["external_ref"] == "S2.2/http-port-exposed-documented")
        .unwrap();
    assert_eq!(old["status"], "done");
    let shown = env.json(&["task", "show", &old["id"].to_string()]);
    assert!(
        shown["notes"][0]["text"]
            .as_str()
            .unwrap()
            .contains("no longer in")
    );
    // A status change on it still works; the file has nothing to follow.
    let r = env.json(&["task", "status", &old["id"].to_string(), "pending"]);
    assert_eq!(r["files"]["plans_changed"], false);
    assert_eq!(read(&plans), renamed);
}

#[test]
fn user_refs_are_not_mistaken_for_plan_ids() {
    let (env, _) = workspace();
    env.json(&["plans", "import"]);
    let t = env.json(&[
        "task",
        "add",
        "--project-id",
        "1",
        "API work",
        "--ref",
        "API/v2",
    ]);
    let r = env.json(&["task", "status", &t["id"].to_string(), "done"]);
    assert_eq!(r["files"]["plans_changed"], false);
}

#[test]
fn notes_are_written_once_whatever_the_time_zone() {
    let (env, plans) = workspace();
    env.json(&["plans", "import"]);
    env.json(&["plans", "note", "S1.1", "written once"]);
    for tz in ["Asia/Tokyo", "America/New_York", "UTC"] {
        let r = crate::support::Run::from(
            env.command()
                .args(["plans", "sync"])
                .env("TZ", tz)
                .output()
                .unwrap(),
        );
        r.assert_ok();
    }
    assert_eq!(read(&plans).matches("written once").count(), 1);
}

#[test]
fn a_stage_without_a_roadmap_box_is_logged_once() {
    let (env, plans) = workspace();
    let no_roadmap = SEED.replacen("- [ ] **Stage 6 – Routing & Meta-Controller**\n", "", 1);
    std::fs::write(&plans, &no_roadmap).unwrap();
    env.json(&["plans", "import"]);
    env.json(&["plans", "done", "S6"]);
    env.json(&["plans", "sync"]);
    env.json(&["plans", "sync"]);
    assert_eq!(
        read(&plans)
            .matches("**Stage 6 – Routing & Meta-Controller** completed")
            .count(),
        1
    );
}

#[test]
fn plans_add_never_reuses_an_id_the_store_remembers() {
    let (env, plans) = workspace();
    env.json(&["plans", "import"]);
    // S1.3 deleted from the file by hand; the store still has it.
    let start = SEED.find("- [ ] **S1.3").unwrap();
    let end = SEED.find("---\n\n## Stage 2").unwrap();
    std::fs::write(&plans, format!("{}{}", &SEED[..start], &SEED[end..])).unwrap();
    let added = env.json(&["plans", "add", "--stage", "1", "--title", "New one"]);
    assert_eq!(added["external_ref"], "S1.4");
    assert!(read(&plans).contains("**S1.4 – New one**"));
}

#[test]
fn a_stage_without_a_title_is_an_error_with_its_line_and_nothing_is_imported() {
    let (env, plans) = workspace();
    std::fs::write(
        &plans,
        SEED.replacen("## Stage 2 – Local LLM Runtime (RTX 5090)", "## Stage 2", 1),
    )
    .unwrap();
    env.run(&["plans", "import"])
        .assert_err(2, &["plans.md:", "Stage 2 has no title"]);
    env.run(&["project", "list"]).assert_ok();
    assert!(
        env.json(&["project", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// `**Tags:**` and `**Depends On:**` fields come into the store on import
/// (added, never removed); a dependency on a task the file lacks is refused
/// at the task's line, and nothing changes.
#[test]
fn tags_and_dependencies_are_read_from_the_file() {
    let (env, plans) = workspace();
    let with_links = SEED.replacen(
        "  - **Description:** Add a CLI command to start the orchestrator.\n",
        "  - **Description:** Add a CLI command to start the orchestrator.\n  - **Tags:** cli, `epic`\n  - **Depends On:** S1.1, S1.2\n",
        1,
    );
    std::fs::write(&plans, &with_links).unwrap();
    let report = env.json(&["plans", "import"]);
    let linked: Vec<&serde_json::Value> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "linked")
        .collect();
    assert_eq!(linked.len(), 1, "{report:#}");
    assert_eq!(linked[0]["external_ref"], "S1.3");
    let task = env.json(&["task", "show", &linked[0]["task_id"].to_string()]);
    let t = if task["task"].is_object() {
        &task["task"]
    } else {
        &task
    };
    assert_eq!(t["tags"], serde_json::json!(["cli", "epic"]), "{task:#}");
    assert_eq!(t["depends_on"].as_array().unwrap().len(), 2, "{task:#}");
    // Again: nothing new to link.
    let again = env.json(&["plans", "import"]);
    assert!(
        !again["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["action"] == "linked"),
        "{again:#}"
    );
    let broken = with_links.replacen("S1.1, S1.2", "S1.1, S9.9", 1);
    std::fs::write(&plans, &broken).unwrap();
    let db = dump(&env.db());
    let line = broken[..broken.find("**S1.3 –").unwrap()]
        .matches('\n')
        .count()
        + 1;
    env.run(&["plans", "import"]).assert_err(
        2,
        &[&format!(
            "plans.md:{line}: S1.3 depends on S9.9, which is not a task of this file"
        )],
    );
    assert_eq!(dump(&env.db()), db, "the store is untouched");
}

/// A note on a stage task reaches plans.md under the stage's own
/// **Notes:**, once; a re-import changes nothing, `plans check` sees no
/// drift, and a note removed by hand is drift again.
#[test]
fn stage_notes_are_written_once_and_survive_a_reimport() {
    let (env, plans) = workspace();
    env.json(&["plans", "import"]);
    let stage = env
        .json(&["task", "list", "--project-id", "1"])
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["external_ref"] == "S2")
        .unwrap()["id"]
        .to_string();
    env.json(&["task", "note", &stage, "runtimes settled: vLLM first"]);
    env.json(&["task", "note", &stage, "TGI stays the fallback"]);
    let text = read(&plans);
    assert_eq!(
        text.matches("runtimes settled: vLLM first").count(),
        1,
        "{text}"
    );
    let notes_at = text
        .find("**Notes:**\n\n- `")
        .expect("the stage's Notes paragraph");
    assert!(
        text[..notes_at]
            .rfind("## Stage 2")
            .is_some_and(|s| !text[s..notes_at].contains("## Stage 3")),
        "under Stage 2: {text}"
    );
    let reimport = env.json(&["plans", "import"]);
    assert_eq!(reimport["updated"], 0, "{reimport}");
    assert_eq!(read(&plans), text, "a re-import changes nothing");
    let check = env.run(&[
        "--json",
        "plans",
        "check",
        "plans.md",
        "--against",
        "plans.md",
    ]);
    assert_eq!(check.code, 0, "{}", check.stdout);
    let without = text
        .lines()
        .filter(|l| !l.contains("TGI stays the fallback"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(&plans, without).unwrap();
    let check = env.run(&["--json", "plans", "check", "plans.md"]);
    assert!(
        check.stdout.contains("stage note(s) missing"),
        "{}",
        check.stdout
    );
}
