//! The context fits the model that answers: through the binary, a small
//! window that refuses what does not fit (as vLLM does) behind a
//! bigger-window model that is down and first in every chain.

use llmclis::store::{Status, Store};

use crate::orchestrate::{CODER, CRITIC, SUMMARIZER, approve, text};
use crate::support::Env;
use crate::support::fake_llm::{FakeLlm, Route};

const SMALL_WINDOW: u64 = 2048;

/// `big` (32k, its server down) first, then `small` (2k), for every role.
fn registry(down: u16, small: &str) -> String {
    let mut roles = String::new();
    for r in llmclis::registry::ROLES {
        roles.push_str(&format!(
            "  {r}: {{ temperature: 0.3, models: [big, small] }}\n"
        ));
    }
    format!(
        r#"providers:
  - {{ name: gpu, kind: openai-compatible, flavour: vllm, base_url: "http://127.0.0.1:{down}/v1", timeout_secs: 10, max_concurrency: 4, local: true }}
  - {{ name: cpu, kind: openai-compatible, flavour: vllm, base_url: "{small}", timeout_secs: 10, max_concurrency: 4, local: true }}
models:
  - {{ id: big, provider: gpu, served_name: big, context_window: 32768, max_output_tokens: 4096, capabilities: [json_schema] }}
  - {{ id: small, provider: cpu, served_name: small, context_window: {SMALL_WINDOW}, max_output_tokens: 512, capabilities: [json_schema] }}
roles:
{roles}rules:
  - {{ name: default, role: coder }}
modes:
  offline: {{ providers: local }}
  online: {{ providers: all }}
"#
    )
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Adds a task through the binary; its id.
fn add(env: &Env, args: &[&str]) -> i64 {
    let mut all = vec!["task", "add", "--project-id", "1"];
    all.extend_from_slice(args);
    env.json(&all)["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_window_takes_what_it_can_hold_and_a_task_only_the_down_model_holds_waits() {
    let small = FakeLlm::routed_with_window(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(SUMMARIZER, vec![], text("A short summary.")),
            Route::new(CODER, vec![], text("The change, made.")),
        ],
        SMALL_WINDOW,
    )
    .await;
    let url = small.url.clone();
    let (env, user, huge, plain) = tokio::task::spawn_blocking(move || {
        let env = Env::new();
        std::fs::create_dir_all(env.config_dir()).unwrap();
        std::fs::write(
            env.config_dir().join("model_registry.yaml"),
            registry(closed_port(), &url),
        )
        .unwrap();
        env.run(&["project", "add", "demo"]).assert_ok();
        // Six finished dependencies whose results together overflow 2k.
        let mut deps = Vec::new();
        for i in 0..6 {
            let id = add(&env, &[&format!("Part {i}")]);
            let result = format!("Result of part {i}: ") + &"detail ".repeat(200);
            let mut s = Store::open(&env.db()).unwrap();
            s.append_task_note(id, &result, "tester").unwrap();
            s.mark_task_status(id, Status::Done, "tester", serde_json::Value::Null)
                .unwrap();
            deps.push(id);
        }
        let ids: Vec<String> = deps.iter().map(i64::to_string).collect();
        let mut args = vec!["Combine the parts"];
        for id in &ids {
            args.extend(["--depends-on", id.as_str()]);
        }
        let user = add(&env, &args);
        // Its own text alone is more than the small window holds.
        let long = "Every word of this description matters. ".repeat(250);
        let huge = add(&env, &["Read the whole spec", "--description", &long]);
        let plain = add(&env, &["Say hello"]);
        (env, user, huge, plain)
    })
    .await
    .unwrap();

    let env = tokio::task::spawn_blocking(move || {
        // The run and route explain agree before the run.
        let e = env.json(&["route", "explain", "--task", &huge.to_string()]);
        assert_eq!(e["outcome"], "waits", "{e}");
        assert!(
            e["reason"]
                .as_str()
                .unwrap()
                .contains("big (down or cooling down) can"),
            "{e}"
        );
        let e = env.json(&["route", "explain", "--task", &user.to_string()]);
        assert_eq!(e["outcome"], "runs", "{e}");
        assert_eq!(e["decision"]["chain"], serde_json::json!(["small"]), "{e}");
        assert_eq!(e["context"]["model"], "small", "{e}");
        assert!(!e["context"]["cut"].as_array().unwrap().is_empty(), "{e}");

        let r = env.run(&[
            "--json",
            "orchestrate",
            "--project-id",
            "1",
            "--max-steps",
            "10",
        ]);
        // What is left waits for the down model: exit 1, said so.
        assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("wait for a model"), "{}", r.stderr);
        let events: Vec<serde_json::Value> = r
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let summary = events.iter().find(|e| e["event"] == "run_summary").unwrap();
        assert_eq!(summary["done"], 2, "{summary}");
        assert_eq!(summary["waiting"], 1, "{summary}");
        assert_eq!(summary["stopped_because"], "models_unreachable");
        assert_eq!(summary["cost_usd"].to_string(), "0.0", "never -0.0");
        let cut = events
            .iter()
            .find(|e| e["event"] == "context_cut" && e["task_id"] == user)
            .expect("the cut is an event");
        assert_eq!(cut["model"], "small");
        assert_eq!(cut["cut"][0]["part"], "dependency_results", "{cut}");
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "task_waits" && e["task_id"] == huge),
            "the waiting task is said"
        );

        let s = Store::open(&env.db()).unwrap();
        assert_eq!(s.task(user).unwrap().status, Status::Done);
        assert_eq!(s.task(plain).unwrap().status, Status::Done);
        let waits = s.task(huge).unwrap();
        assert_eq!(waits.status, Status::Pending);
        assert_eq!(waits.attempts, 0, "never claimed: nothing counted");
        let notes = s.notes(huge).unwrap();
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].text.contains("the models up hold 2048")
                && notes[0].text.contains("big (down or cooling down) can"),
            "{}",
            notes[0].text
        );
        // The step's record keeps what was cut; task show says it.
        let steps = s.task_steps(user).unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].detail["context"]["model"], "small");
        let shown = env.run(&["task", "show", &user.to_string()]);
        assert!(
            shown
                .stdout
                .contains("context cut to fit small's 2048-token window"),
            "{}",
            shown.stdout
        );
        // Every dependency is still named in the prompt the model saw.
        let prompt = s
            .model_calls(user)
            .unwrap()
            .into_iter()
            .find(|c| c.purpose.as_deref() == Some("execute"))
            .unwrap()
            .prompt
            .unwrap();
        assert!(prompt.contains("Combine the parts"));
        // Nothing was refused for its size, and no step ended unreachable.
        let calls = sql_count(
            &env,
            "SELECT COUNT(*) FROM model_calls WHERE error LIKE '%context length%'",
        );
        assert_eq!(calls, 0);
        let unreachable = sql_count(
            &env,
            "SELECT COUNT(*) FROM run_steps WHERE outcome IS NOT 'done'",
        );
        assert_eq!(unreachable, 0, "every step that ran was done");
        // A second run waits again without noting it twice.
        let r = env.run(&["orchestrate", "--project-id", "1", "--max-steps", "5"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert_eq!(s.notes(huge).unwrap().len(), 1, "said once");
        env
    })
    .await
    .unwrap();
    // The small server never got a prompt bigger than its window.
    for req in small.requests() {
        let chars: usize = req["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap_or("").len())
            .sum();
        assert!((chars as u64) / 4 < SMALL_WINDOW, "{chars} characters sent");
    }
    drop(env);
}

fn sql_count(env: &Env, q: &str) -> i64 {
    rusqlite::Connection::open(env.db())
        .unwrap()
        .query_row(q, [], |r| r.get(0))
        .unwrap()
}

/// The quickstart's setting on the real SmolLM2 server: the shipped
/// registry (GPU and API models first in every chain, none of them up
/// here), examples/notes imported from its plans.md. Every task ends done
/// or blocked by its own review; no step waits for a server and nothing is
/// left, however long the dependencies' results grow.
#[test]
fn examples_notes_runs_to_completion_on_smollm_with_the_shipped_registry() {
    let Some((smollm, _gemma, _turn)) = crate::support::servers() else {
        return;
    };
    let env = Env::new();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    let shipped = include_str!("../model_registry.yaml");
    assert!(shipped.contains("http://127.0.0.1:8081/v1"));
    std::fs::write(
        env.config_dir().join("model_registry.yaml"),
        shipped.replace("http://127.0.0.1:8081/v1", &smollm),
    )
    .unwrap();
    std::fs::write(
        env.config_dir().join("config.toml"),
        "[orchestrator]\nmax_rounds = 1\n",
    )
    .unwrap();
    let notes = env.dir.path().join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    for f in ["plans.md", "issues.md", "research.md"] {
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/notes/").to_string() + f,
            notes.join(f),
        )
        .unwrap();
    }
    env.run(&["plans", "import", "notes/plans.md"]).assert_ok();
    let r = env.run(&[
        "--json",
        "orchestrate",
        "--project-id",
        "1",
        "--max-steps",
        "20",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let events: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "run_summary", "{}", r.stdout);
    assert_eq!(summary["waiting"], 0, "{summary}");
    assert_eq!(summary["stopped_because"], "no_ready_task", "{summary}");
    assert!(
        !events.iter().any(|e| e["event"] == "task_waits"),
        "{}",
        r.stdout
    );
    let s = Store::open(&env.db()).unwrap();
    let counts = s.status_counts(Some(1)).unwrap();
    // Nothing is left that could run: what is pending waits on a task its
    // own review blocked (a 135M model's answers vary from run to run).
    assert_eq!((counts.ready, counts.in_progress), (0, 0), "{counts:?}");
    assert!(counts.pending == 0 || counts.blocked > 0, "{counts:?}");
    assert!(counts.done >= 1, "{counts:?}");
    for t in s.tasks(Some(1), Some(Status::Blocked)).unwrap() {
        let note = s
            .notes(t.id)
            .unwrap()
            .pop()
            .map(|n| n.text)
            .unwrap_or_default();
        eprintln!("blocked: task {} ({}): {note}", t.id, t.title);
        assert!(!note.contains("No model server"), "{note}");
    }
    // Every step that ran ended done, blocked or split: none released.
    let odd = sql_count(
        &env,
        "SELECT COUNT(*) FROM run_steps WHERE outcome NOT IN ('done', 'blocked', 'split')",
    );
    assert_eq!(odd, 0, "{}", r.stdout);
    // The server refused nothing for its size.
    let refused = sql_count(
        &env,
        "SELECT COUNT(*) FROM model_calls WHERE error LIKE '%context%'",
    );
    assert_eq!(refused, 0, "{}", r.stdout);
}
