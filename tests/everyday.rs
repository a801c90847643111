//! The daily commands through the binary: the project from where you
//! stand, the ready queue, claims and releases, text from stdin, `-q`.

use std::io::Write;
use std::process::Stdio;

use serde_json::json;

use crate::support::{Env, Run};

fn in_dir(env: &Env, dir: &std::path::Path, args: &[&str]) -> Run {
    Run::from(env.command().current_dir(dir).args(args).output().unwrap())
}

fn with_stdin(env: &Env, args: &[&str], input: &str) -> Run {
    let mut child = env
        .command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    Run::from(child.wait_with_output().unwrap())
}

#[test]
fn the_project_is_found_from_where_you_stand_and_says_why() {
    let env = Env::new();
    let a = env.dir.path().join("a");
    let b = env.dir.path().join("b/deep");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    env.run(&["project", "add", "alpha", "--root", a.to_str().unwrap()])
        .assert_ok();
    env.run(&[
        "project",
        "add",
        "beta",
        "--root",
        b.parent().unwrap().to_str().unwrap(),
    ])
    .assert_ok();
    // Two projects, standing in neither: which one is asked, naming both.
    env.run(&["task", "add", "x"]).assert_err(
        2,
        &["which project?", "1 (alpha)", "2 (beta)", "default_project"],
    );
    // Inside beta's root, below it: beta, and why on stderr.
    let r = in_dir(&env, &b, &["task", "add", "in beta"]);
    r.assert_ok();
    assert!(r.stdout.contains("in project 2"), "{}", r.stdout);
    assert!(r.stderr.contains("inside project 2's root"), "{}", r.stderr);
    // --json says which and why.
    let ready: serde_json::Value =
        serde_json::from_str(&in_dir(&env, &b, &["--json", "task", "ready"]).stdout).unwrap();
    assert_eq!(ready["project"]["project_id"], 2);
    assert_eq!(ready["project"]["by"], "root");
    // A plans.md imported as a project wins over a root.
    std::fs::write(
        a.join("plans.md"),
        "# Plan\n\n## Stage 1: Go\n\n- [ ] **S1.1 – Walk**\n",
    )
    .unwrap();
    env.run(&[
        "plans",
        "import",
        a.join("plans.md").to_str().unwrap(),
        "--project-id",
        "1",
    ])
    .assert_ok();
    let ready: serde_json::Value =
        serde_json::from_str(&in_dir(&env, &a, &["--json", "task", "ready"]).stdout).unwrap();
    assert_eq!(ready["project"]["by"], "plans.md");
    // default_project in config, standing elsewhere.
    std::fs::create_dir_all(env.config_dir()).unwrap();
    std::fs::write(
        env.config_dir().join("config.toml"),
        "[general]\ndefault_project = \"beta\"\n",
    )
    .unwrap();
    let t = env.json(&["task", "add", "by config"]);
    assert_eq!(t["project_id"], 2);
    let paths = env.json(&["paths"]);
    assert!(
        paths.to_string().contains("default_project"),
        "paths names the project and why: {paths}"
    );
    // A default that names nothing is a config error naming the file.
    std::fs::write(
        env.config_dir().join("config.toml"),
        "[general]\ndefault_project = \"gamma\"\n",
    )
    .unwrap();
    env.run(&["task", "add", "lost"])
        .assert_err(2, &["config.toml", "gamma"]);
}

#[test]
fn ready_lists_the_queue_in_next_order_with_tag_and_role_filters() {
    let env = Env::new();
    env.run(&["project", "add", "p"]).assert_ok();
    let add = |title: &str, extra: &[&str]| {
        let mut args = vec!["task", "add", "--project-id", "1", title];
        args.extend_from_slice(extra);
        env.json(&args)["id"].as_i64().unwrap()
    };
    let low = add("low", &["--priority", "low", "--tag", "docs"]);
    let high = add("high", &["--priority", "high", "--role", "tester"]);
    let mid = add("mid", &["--tag", "docs"]);
    let waits = add(
        "waits",
        &["--priority", "critical", "--depends-on", &low.to_string()],
    );
    let ready = env.json(&["task", "ready", "--project-id", "1"]);
    let ids: Vec<i64> = ready["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![high, mid, low], "{waits} waits on {low}");
    assert_eq!(
        env.json(&["task", "next", "--project-id", "1"])["id"],
        ids[0]
    );
    let docs = env.json(&[
        "task",
        "ready",
        "--project-id",
        "1",
        "--tag",
        "docs",
        "--limit",
        "1",
    ]);
    assert_eq!(docs["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(docs["tasks"][0]["id"], mid);
    let testers = env.json(&["task", "ready", "--project-id", "1", "--role", "tester"]);
    assert_eq!(testers["tasks"][0]["id"], high);
    assert_eq!(testers["tasks"].as_array().unwrap().len(), 1, "{testers}");
    let listed = env.json(&["task", "list", "--project-id", "1", "--tag", "docs"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
}

#[test]
fn claim_and_release_respect_other_agents_leases() {
    let env = Env::new();
    env.run(&["project", "add", "p"]).assert_ok();
    let id = env.json(&["task", "add", "--project-id", "1", "job"])["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let t = env.json(&["task", "claim", &id, "--lease", "600"]);
    assert_eq!(t["status"], "in-progress");
    assert_eq!(t["claimed_by"], "tester");
    env.run(&["task", "claim", &id])
        .assert_err(2, &["not ready", "in-progress"]);
    env.run(&["--agent", "other", "task", "release", &id])
        .assert_err(2, &["claimed by tester", "--force"]);
    let r = env.json(&["task", "release", &id]);
    assert_eq!(r["status"], "pending");
    assert_eq!(r["claimed_by"], json!(null));
    env.run(&["task", "release", &id])
        .assert_err(2, &["pending, not claimed"]);
    env.run(&["--agent", "other", "task", "claim", &id])
        .assert_ok();
    env.json(&["task", "release", &id, "--force"]);
}

#[test]
fn text_comes_from_stdin_with_a_dash_and_quiet_prints_nothing() {
    let env = Env::new();
    env.run(&["project", "add", "p"]).assert_ok();
    let r = with_stdin(
        &env,
        &[
            "--json",
            "task",
            "add",
            "--project-id",
            "1",
            "piped",
            "-d",
            "-",
        ],
        "line one\nline two\n",
    );
    r.assert_ok();
    let t: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(t["description"], "line one\nline two");
    let id = t["id"].as_i64().unwrap().to_string();
    with_stdin(&env, &["task", "note", &id, "-"], "from a pipe").assert_ok();
    let shown = env.json(&["task", "show", &id]);
    assert_eq!(shown["notes"][0]["text"], "from a pipe");
    with_stdin(&env, &["task", "note", &id, "-"], "  \n").assert_err(2, &["stdin", "empty"]);
    let q = env.run(&["-q", "task", "status", &id, "done"]);
    q.assert_ok();
    assert!(
        q.stdout.is_empty() && q.stderr.is_empty(),
        "{q:?}",
        q = (q.stdout.clone(), q.stderr.clone())
    );
    // -q keeps errors.
    env.run(&["-q", "task", "show", "999"])
        .assert_err(2, &["999"]);
}
