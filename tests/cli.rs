//! The command line through the real binary: output, JSON shapes, and every
//! error path (exit code, one-line message, database unchanged).

use crate::support::{Env, dump};

/// An installation with one project and tasks 1 ← 2 (2 depends on 1).
fn seeded() -> Env {
    let env = Env::new();
    env.run(&["first-run", "--yes"]).assert_ok();
    env.run(&["project", "add", "demo", "--description", "a demo"])
        .assert_ok();
    env.run(&["task", "add", "--project-id", "1", "design"])
        .assert_ok();
    env.run(&[
        "task",
        "add",
        "--project-id",
        "1",
        "build",
        "--depends-on",
        "1",
    ])
    .assert_ok();
    env
}

/// Runs a failing command and checks the code, the message and that the
/// database is exactly as before.
fn fails_cleanly(env: &Env, args: &[&str], code: i32, needles: &[&str]) {
    let before = dump(&env.db());
    env.run(args).assert_err(code, needles);
    assert_eq!(before, dump(&env.db()), "{args:?} changed the database");
}

#[test]
fn bad_input_exits_2_with_one_line_and_changes_nothing() {
    let env = seeded();
    fails_cleanly(
        &env,
        &["task", "add", "--project-id", "9", "x"],
        2,
        &["no project with id 9"],
    );
    fails_cleanly(
        &env,
        &["project", "show", "9"],
        2,
        &["no project with id 9"],
    );
    fails_cleanly(&env, &["task", "show", "42"], 2, &["no task with id 42"]);
    fails_cleanly(
        &env,
        &["task", "status", "42", "done"],
        2,
        &["no task with id 42"],
    );
    fails_cleanly(
        &env,
        &["task", "note", "42", "hello"],
        2,
        &["no task with id 42"],
    );
    fails_cleanly(
        &env,
        &["task", "status", "1", "finished"],
        2,
        &[
            "invalid status \"finished\"",
            "pending, in-progress, done, blocked",
        ],
    );
    fails_cleanly(
        &env,
        &["task", "list", "--status", "later"],
        2,
        &["invalid status \"later\""],
    );
    fails_cleanly(
        &env,
        &["task", "dep", "1", "--on", "2"],
        2,
        &["dependency cycle", "task 1 → 2 → 1"],
    );
    fails_cleanly(
        &env,
        &["task", "dep", "1", "--on", "1"],
        2,
        &["task 1 cannot depend on itself"],
    );
    fails_cleanly(
        &env,
        &["task", "dep", "1", "--on", "77"],
        2,
        &["no task with id 77"],
    );
    fails_cleanly(
        &env,
        &[
            "task",
            "add",
            "--project-id",
            "1",
            "x",
            "--depends-on",
            "77",
        ],
        2,
        &["no task with id 77"],
    );
    fails_cleanly(
        &env,
        &[
            "task",
            "add",
            "--project-id",
            "1",
            "x",
            "--priority",
            "urgent",
        ],
        2,
        &["invalid priority \"urgent\""],
    );
    fails_cleanly(
        &env,
        &["task", "add", "--project-id", "1", "x", "--role", "poet"],
        2,
        &["unknown role \"poet\""],
    );
    fails_cleanly(
        &env,
        &["project", "add", "demo"],
        2,
        &["a project named \"demo\" already exists (id 1)"],
    );
    fails_cleanly(
        &env,
        &["orchestrate", "--project-id", "5", "--dry-run"],
        2,
        &["no project with id 5"],
    );
    // A status change with an empty note is refused whole: no status change either.
    fails_cleanly(
        &env,
        &["task", "status", "1", "done", "--note", " "],
        2,
        &["a note cannot be empty"],
    );
}

#[test]
fn usage_errors_exit_2() {
    let env = seeded();
    let r = env.run(&["task", "show", "abc"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = env.run(&["orchestrate", "--project-id", "1", "--max-steps", "0"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--max-steps must be at least 1"),
        "{}",
        r.stderr
    );
    let r = env.run(&["--json", "task", "frobnicate"]);
    assert_eq!(r.code, 2);
    let err: serde_json::Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(err["error"]["kind"], "usage");
}

#[test]
fn an_unusable_database_path_exits_1_and_touches_nothing() {
    let env = seeded();
    let dir = env.dir.path();

    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let under_file = file.join("sub").join("km.db");
    let r = env
        .command()
        .args(["task", "list"])
        .env("LLMCLIS_DB", &under_file)
        .output()
        .unwrap();
    let r = crate::support::Run::from(r);
    r.assert_err(
        1,
        &["cannot use database", &under_file.display().to_string()],
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");

    let text = dir.join("notes.md");
    std::fs::write(&text, "# my notes\nnot a database\n").unwrap();
    env.run(&["--db", text.to_str().unwrap(), "task", "list"])
        .assert_err(1, &["is not an SQLite database", "notes.md"]);
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        "# my notes\nnot a database\n"
    );

    env.run(&["--db", dir.to_str().unwrap(), "task", "list"])
        .assert_err(1, &["it is a directory"]);

    let newer = dir.join("newer.db");
    {
        let conn = rusqlite::Connection::open(&newer).unwrap();
        conn.execute_batch("CREATE TABLE t (x); PRAGMA user_version = 42;")
            .unwrap();
    }
    let bytes = std::fs::read(&newer).unwrap();
    env.run(&["--db", newer.to_str().unwrap(), "project", "list"])
        .assert_err(
            1,
            &[
                "written by a newer llmclis",
                "schema version 42",
                "not touched",
            ],
        );
    assert_eq!(bytes, std::fs::read(&newer).unwrap());

    let r = env.run(&["--json", "--db", newer.to_str().unwrap(), "project", "list"]);
    assert_eq!(r.code, 1);
    let err: serde_json::Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(err["error"]["kind"], "newer_schema");
}

#[test]
fn json_errors_go_to_stderr_with_kind_and_message() {
    let env = seeded();
    let r = env.run(&["--json", "task", "show", "99"]);
    assert_eq!(r.code, 2);
    assert!(r.stdout.is_empty());
    let err: serde_json::Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(err["error"]["kind"], "task_not_found");
    assert!(err["error"]["message"].as_str().unwrap().contains("99"));
}

#[test]
fn tasks_round_trip_through_the_cli_as_json() {
    let env = seeded();
    let t = env.json(&[
        "task",
        "add",
        "--project_id",
        "1",
        "write docs",
        "-d",
        "the README",
        "-p",
        "high",
        "--tag",
        "docs",
        "--tag",
        "readme",
        "--role",
        "writer",
        "--ref",
        "S1.4",
        "--parent",
        "1",
    ]);
    assert_eq!(t["id"], 3);
    assert_eq!(t["project_id"], 1);
    assert_eq!(t["parent_id"], 1);
    assert_eq!(t["external_ref"], "S1.4");
    assert_eq!(t["priority"], 3);
    assert_eq!(t["role"], "writer");
    assert_eq!(t["tags"], serde_json::json!(["docs", "readme"]));
    assert_eq!(t["status"], "pending");
    assert_eq!(t["created_by"], "tester");

    let list = env.json(&["task", "list", "--project-id", "1"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(list[1]["depends_on"], serde_json::json!([1]));

    // The subtask comes before its parent; the parent waits for it.
    let next = env.json(&["task", "next", "--project-id", "1"]);
    assert_eq!(next["id"], 3);
    let claimed = env.json(&[
        "task",
        "next",
        "--project-id",
        "1",
        "--claim",
        "--agent",
        "bot-1",
    ]);
    assert_eq!(claimed["id"], 3);
    assert_eq!(claimed["claimed_by"], "bot-1");
    assert_eq!(claimed["status"], "in-progress");

    let st = env.json(&[
        "task",
        "status",
        "3",
        "done",
        "--agent",
        "bot-1",
        "--note",
        "README written",
    ]);
    assert_eq!(st["previous_status"], "in-progress");
    assert_eq!(st["status"], "done");
    assert_eq!(st["changed"], true);
    assert_eq!(st["claimed_by"], serde_json::Value::Null);

    let note = env.json(&["task", "note", "3", "reviewed"]);
    assert_eq!(note["task_id"], 3);
    assert_eq!(note["agent"], "tester");

    let shown = env.json(&["task", "show", "3"]);
    let notes: Vec<&str> = shown["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(notes, ["README written", "reviewed"]);
    let kinds: Vec<&str> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "claim", "status", "note", "note"]);

    let parent = env.json(&["task", "show", "1"]);
    assert_eq!(parent["subtasks"], serde_json::json!([3]));

    let edited = env.json(&["task", "edit", "2", "--title", "build it", "--tag", "code"]);
    assert_eq!(edited["title"], "build it");
    assert_eq!(edited["tags"], serde_json::json!(["code"]));

    let dep = env.json(&["task", "dep", "2", "--on", "1", "--remove"]);
    assert_eq!(dep["changed"], true);

    let projects = env.json(&["project", "list"]);
    assert_eq!(projects[0]["counts"]["done"], 1);
    assert_eq!(projects[0]["counts"]["pending"], 2);
}

#[test]
fn next_with_nothing_ready_says_why() {
    let env = seeded();
    env.run(&["task", "status", "1", "blocked"]).assert_ok();
    let r = env.run(&["task", "next", "--project-id", "1"]);
    r.assert_ok();
    assert!(
        r.stdout
            .contains("No task is ready: 1 pending (0 ready), 0 in progress, 1 blocked, 0 done"),
        "{}",
        r.stdout
    );
    let v = env.json(&["task", "next", "--project-id", "1"]);
    assert!(v.is_null());
}

#[test]
fn orchestrate_dry_run_lists_the_order_and_writes_nothing() {
    let env = seeded();
    env.run(&[
        "task",
        "add",
        "--project-id",
        "1",
        "urgent",
        "-p",
        "critical",
    ])
    .assert_ok();
    let before = dump(&env.db());
    let r = env.run(&[
        "orchestrate",
        "--project_id",
        "1",
        "--max_steps",
        "20",
        "--dry-run",
    ]);
    r.assert_ok();
    let lines: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(lines[0].contains("task 3 urgent"));
    assert!(lines[1].contains("task 1 design"));
    assert!(lines[2].contains("task 2 build"));
    let plan = env.json(&[
        "orchestrate",
        "--project-id",
        "1",
        "--max-steps",
        "1",
        "--dry-run",
    ]);
    assert_eq!(plan["steps"].as_array().unwrap().len(), 1);
    assert_eq!(plan["left_pending"], 2);
    assert_eq!(before, dump(&env.db()));
}

#[test]
fn first_run_is_idempotent_and_keeps_edited_files() {
    let env = Env::new();
    // Without a terminal and without --yes it asks for --yes and creates nothing.
    env.run(&["first-run"]).assert_err(2, &["--yes"]);
    assert!(!env.config_dir().exists());

    let r = env.run(&["first-run", "--yes"]);
    r.assert_ok();
    assert!(r.stdout.contains("llmclis is set up"));
    assert!(r.stdout.contains("Next: llmclis project add"));
    for f in [
        "config.toml",
        "model_registry.yaml",
        "prompts/planner.md",
        "prompts/critic.md",
    ] {
        assert!(env.config_dir().join(f).is_file(), "{f} missing");
    }
    assert!(env.db().is_file());

    let registry = env.config_dir().join("model_registry.yaml");
    std::fs::write(&registry, "# my own registry\n").unwrap();
    let r = env.run(&["first-run", "--yes"]);
    r.assert_ok();
    assert!(r.stdout.starts_with("Nothing to do"), "{}", r.stdout);
    assert!(r.stdout.contains("kept (edited)"));
    assert_eq!(
        std::fs::read_to_string(&registry).unwrap(),
        "# my own registry\n"
    );
    // Nothing to do, so no --yes needed either.
    env.run(&["first-run"]).assert_ok();

    let report = env.json(&["first-run", "--yes"]);
    assert_eq!(report["schema_version"], llmclis::store::SCHEMA_VERSION);
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["outcome"] != "created")
    );
}

#[test]
fn a_broken_config_names_the_line() {
    let env = Env::new();
    env.run(&["first-run", "--yes"]).assert_ok();
    std::fs::write(
        env.config_dir().join("config.toml"),
        "[queue]\nlease_seconds = \"long\"\n",
    )
    .unwrap();
    env.run(&["project", "list"])
        .assert_err(2, &["config.toml", "line 2"]);
}

#[test]
fn a_running_claim_and_a_lease_flag() {
    let env = seeded();
    let t = env.json(&[
        "task",
        "next",
        "--project-id",
        "1",
        "--claim",
        "--lease",
        "5",
    ]);
    assert_eq!(t["id"], 1);
    let until = t["lease_expires_at"].as_str().unwrap();
    assert!(until.ends_with('Z'));
    // Task 2 waits on task 1, which is now held: nothing else to claim.
    let none = env.json(&["task", "next", "--project-id", "1", "--claim"]);
    assert!(none.is_null());
}

#[test]
fn completions_and_the_man_page_print_for_every_shell() {
    let env = seeded();
    for (shell, marker) in [
        ("bash", "complete -F _llmclis"),
        ("zsh", "#compdef llmclis"),
        ("fish", "complete -c llmclis"),
        ("elvish", "edit:completion:arg-completer[llmclis]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let r = env.run(&["completions", shell]);
        r.assert_ok();
        assert!(
            r.stdout.contains(marker),
            "{shell}: {}",
            &r.stdout[..200.min(r.stdout.len())]
        );
        // Subcommands are completed too.
        assert!(
            r.stdout.contains("orchestrate") && r.stdout.contains("serve"),
            "{shell}"
        );
    }
    let man = env.run(&["man"]);
    man.assert_ok();
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH llmclis 1"),
        "{}",
        man.stdout
    );
    assert!(man.stdout.contains(".SH SUBCOMMANDS") || man.stdout.contains("orchestrate"));
    env.run(&["completions", "tcsh"])
        .assert_err(2, &["possible values: bash"]);
}

#[test]
fn paths_says_which_files_are_in_use() {
    let env = seeded();
    let places = env.json(&["paths"]);
    let find = |what: &str| {
        places
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["what"] == what)
            .unwrap_or_else(|| panic!("{what} missing from {places}"))
            .clone()
    };
    let db = find("database");
    assert_eq!(db["path"], env.db().display().to_string());
    assert_eq!(db["exists"], true);
    let registry = find("registry");
    let own = env.config_dir().join("model_registry.yaml").is_file();
    assert_eq!(registry["exists"], own);
    let why = if own { "config dir" } else { "built-in" };
    assert!(
        registry["note"].as_str().unwrap().contains(why),
        "{registry}"
    );
    assert!(
        find("log file")["path"]
            .as_str()
            .unwrap()
            .ends_with("llmclis.log")
    );
}

/// `-v` copies the log to stderr; without it stderr stays quiet, and the
/// log file lives in the state dir.
#[test]
fn verbose_logs_to_stderr_and_the_log_is_in_the_state_dir() {
    let env = Env::new();
    let quiet = env.run(&["models", "status"]);
    quiet.assert_ok();
    assert!(
        !quiet.stderr.contains("resources refreshed"),
        "{}",
        quiet.stderr
    );
    let loud = env.run(&["-v", "models", "status"]);
    loud.assert_ok();
    assert!(
        loud.stderr.contains("resources refreshed"),
        "{}",
        loud.stderr
    );
    assert!(env.dir.path().join("data/state/llmclis.log").is_file());
    assert!(
        !env.dir.path().join("data/logs").exists(),
        "not the data dir's"
    );
}

/// The main commands' help, flags and examples, as a person reads it.
#[test]
fn main_commands_help_with_examples() {
    let env = Env::new();
    for cmd in [
        vec!["--help"],
        vec!["orchestrate", "--help"],
        vec!["task", "--help"],
        vec!["task", "add", "--help"],
        vec!["models", "--help"],
        vec!["memory", "--help"],
        vec!["serve", "--help"],
        vec!["chat", "--help"],
    ] {
        let r = env.run(&cmd);
        r.assert_ok();
        let name = format!("help_{}", cmd[..cmd.len() - 1].join("_"));
        let name = if name == "help_" {
            "help".to_string()
        } else {
            name
        };
        insta::assert_snapshot!(name, r.stdout);
    }
}

/// `config path` for an editor; `config show` has every setting with its
/// default, and names the key variables without their values.
#[test]
fn config_path_and_show_name_keys_but_never_show_them() {
    let env = Env::new();
    let r = env.run(&["config", "path"]);
    r.assert_ok();
    assert_eq!(
        r.stdout.trim(),
        env.config_dir().join("config.toml").display().to_string()
    );
    let out = env
        .command()
        .args(["config", "show"])
        .env("OPENAI_API_KEY", "sk-test-SECRET-4242")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    for needle in [
        "not there: every value below is a default",
        "[orchestrator]",
        "make_room = false",
        "[models]",
        "OPENAI_API_KEY",
        "set (provider openai)",
        "ANTHROPIC_API_KEY",
        "not set (provider anthropic)",
    ] {
        assert!(shown.contains(needle), "{needle:?} in\n{shown}");
    }
    assert!(!shown.contains("SECRET"), "a key's value is never shown");
    let v = env.json(&["config", "show"]);
    assert_eq!(v["settings"]["orchestrator"]["make_room"], false);
}

/// `memory stats` counts from the store alone: with no embedding model
/// fetched it still answers (exit 0), naming the model as not available.
#[test]
fn memory_stats_reads_the_store_without_the_model() {
    let env = Env::new();
    env.run(&["project", "add", "p"]).assert_ok();
    let r = env.run(&["memory", "stats"]);
    r.assert_ok();
    assert!(
        r.stdout.contains("embedding model not available") && r.stdout.contains("not yet indexed"),
        "{}",
        r.stdout
    );
    let j = env.json(&["memory", "stats"]);
    assert_eq!(j["dim"], 0, "{j}");
}
