//! The orchestrate loop. Deterministic paths run in-process against
//! scripted fake servers (critic rejections, escalation with a handoff,
//! exhausted chains, voting, planning, Ctrl-C); crash safety and parallel
//! runs go through the real binary; the end-to-end run uses the real
//! llama.cpp servers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use llmclis::llm::caller::{Breakers, Caller, RetryPolicy};
use llmclis::net::http_client;
use llmclis::orchestrator::run::{self, Deps, Options, Progress, Summary};
use llmclis::prompts::Prompts;
use llmclis::registry::{Mode, Registry};
use llmclis::store::{NewTask, Status, StepOutcome, Store};
use serde_json::{Value, json};

use crate::support::fake_llm::{FakeLlm, Reply, Route};
use crate::support::{Env, servers};

pub(crate) const CODER: &str = "You are an experienced software engineer";
pub(crate) const CRITIC: &str = "You are the reviewer";
const VOTER: &str = "You are one voter";
pub(crate) const PLANNER: &str = "You are the planner";
pub(crate) const SUMMARIZER: &str = "Summarize the material";

pub(crate) fn approve() -> Reply {
    Reply::Text(
        r#"{"verdict":"approve","reasons":["does what the task asks"],"risks":[]}"#.into(),
        12,
    )
}

fn revise(why: &str) -> Reply {
    Reply::Text(
        format!(r#"{{"verdict":"revise","reasons":["{why}"],"risks":["users lose tabs"]}}"#),
        12,
    )
}

pub(crate) fn text(t: &str) -> Reply {
    Reply::Text(t.into(), 20)
}

fn fail() -> Reply {
    Reply::Status(500, r#"{"error":"the GPU caught fire"}"#, vec![])
}

/// A registry with providers `a` and `b` (one model each, both with
/// structured output); every role tries model-a, then model-b.
pub(crate) fn registry(a: &str, b: &str, extra_coder: &str) -> Registry {
    registry_with(a, b, extra_coder, "[json_schema]")
}

/// `registry`, with the models' capabilities spelt out.
pub(crate) fn registry_with(a: &str, b: &str, extra_coder: &str, caps: &str) -> Registry {
    let mut roles = String::new();
    for r in llmclis::registry::ROLES {
        let extra = if r == "coder" { extra_coder } else { "" };
        roles.push_str(&format!(
            "  {r}: {{ temperature: 0.3, models: [model-a, model-b]{extra} }}\n"
        ));
    }
    let yaml = format!(
        r#"providers:
  - {{ name: a, kind: openai-compatible, flavour: vllm, base_url: "{a}", timeout_secs: 10, max_concurrency: 8, local: true }}
  - {{ name: b, kind: openai-compatible, flavour: vllm, base_url: "{b}", timeout_secs: 10, max_concurrency: 8, local: true }}
models:
  - {{ id: model-a, provider: a, served_name: served-a, context_window: 32768, max_output_tokens: 4096, capabilities: {caps} }}
  - {{ id: model-b, provider: b, served_name: served-b, context_window: 32768, max_output_tokens: 4096, capabilities: {caps} }}
roles:
{roles}rules:
  - {{ name: explicit-role, match: {{ has_role_hint: true }}, role: from_hint }}
  - {{ name: epics, match: {{ tags: [epic] }}, role: coder, plan: true }}
  - {{ name: default, role: coder }}
modes:
  offline: {{ providers: local }}
  online: {{ providers: all }}
"#
    );
    Registry::parse(&yaml, "test.yaml").unwrap()
}

pub(crate) struct Harness {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) db: PathBuf,
    pub(crate) project: i64,
    pub(crate) tools: llmclis::config::ToolsConfig,
}

impl Harness {
    pub(crate) fn new(titles: &[&str]) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("llmclis.db");
        let mut s = Store::open(&db).unwrap();
        let p = s.create_project("demo", "", None, "tester").unwrap();
        for t in titles {
            s.create_task(
                NewTask {
                    project_id: p.id,
                    title: t.to_string(),
                    ..Default::default()
                },
                "tester",
            )
            .unwrap();
        }
        Harness {
            _dir: dir,
            db,
            project: p.id,
            tools: Default::default(),
        }
    }

    pub(crate) fn store(&self) -> Store {
        Store::open(&self.db).unwrap()
    }

    pub(crate) async fn run(&self, registry: Registry, max_steps: usize) -> (Summary, Vec<Value>) {
        self.run_summarizing(registry, max_steps, 10).await
    }

    /// `run`, refreshing the project summary every `every` done tasks.
    pub(crate) async fn run_summarizing(
        &self,
        registry: Registry,
        max_steps: usize,
        every: usize,
    ) -> (Summary, Vec<Value>) {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        self.run_opts(registry, max_steps, None, rx, every).await
    }

    /// A run; with `task_id`, of that task alone, streaming its tokens.
    async fn run_with(
        &self,
        registry: Registry,
        max_steps: usize,
        task_id: Option<i64>,
        cancel: tokio::sync::watch::Receiver<bool>,
    ) -> (Summary, Vec<Value>) {
        self.run_opts(registry, max_steps, task_id, cancel, 10)
            .await
    }

    async fn run_opts(
        &self,
        registry: Registry,
        max_steps: usize,
        task_id: Option<i64>,
        cancel: tokio::sync::watch::Receiver<bool>,
        every: usize,
    ) -> (Summary, Vec<Value>) {
        let workers = 1;
        let mut caller = Caller::new(
            Arc::new(registry),
            http_client(),
            Arc::new(Breakers::new(3, Duration::from_secs(60))),
        );
        caller.retry = RetryPolicy {
            attempts: 2,
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
            max_wait: Duration::from_secs(1),
            // The pipeline, not the waiting: busy servers give up at once.
            busy_budget: Duration::ZERO,
        };
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let seen = events.clone();
        let observer: run::Observer = Arc::new(move |p: &Progress| {
            seen.lock().unwrap().push(serde_json::to_value(p).unwrap());
        });
        let summary = run::run(
            Deps {
                db_path: self.db.clone(),
                caller: Arc::new(caller),
                prompts: Arc::new(Prompts::builtin()),
                memory: None,
                memory_note: None,
                notes: vec![],
            },
            Options {
                project_id: self.project,
                max_steps,
                workers,
                mode: Mode::Offline,
                agent: "tester".into(),
                lease: Duration::from_secs(60),
                max_rounds: 3,
                check_rounds: 2,
                context_tokens: 1500,
                memory_top_k: 5,
                project_summary_every: Some(every),
                compact: llmclis::memory::rollup::CompactWhen::RolledUp,
                max_plan_depth: 2,
                make_room: false,
                task_id,
                stream_tokens: task_id.is_some(),
                tools: self.tools.clone(),
                no_review: false,
            },
            observer,
            cancel,
        )
        .await
        .unwrap();
        let events = events.lock().unwrap().clone();
        (summary, events)
    }
}

/// A plain connection, for the checks no store call answers.
fn sql(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(db).unwrap()
}

fn purposes(s: &Store, task: i64) -> Vec<String> {
    s.model_calls(task)
        .unwrap()
        .into_iter()
        .map(|c| {
            format!(
                "{}:{}:{}",
                c.purpose.unwrap_or_default(),
                c.model,
                c.outcome
            )
        })
        .collect()
}

fn notes(s: &Store, task: i64) -> String {
    s.notes(task)
        .unwrap()
        .into_iter()
        .map(|n| n.text)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_critic_rejects_twice_then_approves_and_everything_is_recorded() {
    let srv = FakeLlm::routed(
        vec![
            Route::new(
                CRITIC,
                vec![revise("tabs vanish"), revise("still no tests")],
                approve(),
            ),
            Route::new(SUMMARIZER, vec![], text("Fixed the parser's tab handling.")),
            Route::new(
                CODER,
                vec![text("v1"), text("v2")],
                text("v3: tabs kept, tests added"),
            ),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let h = Harness::new(&["Fix the parser"]);
    let (summary, events) = h.run(registry(&srv.url, &srv.url, ""), 5).await;
    assert_eq!(
        (summary.steps, summary.done, summary.status.as_str()),
        (1, 1, "completed")
    );
    assert_eq!(summary.stopped_because, "no_ready_task");
    let s = h.store();
    let t = s.task(1).unwrap();
    assert_eq!(t.status, Status::Done);
    assert_eq!(t.claimed_by, None);
    assert_eq!(
        purposes(&s, 1),
        [
            "execute:model-a:ok",
            "critique:model-a:ok",
            "execute:model-a:ok",
            "critique:model-a:ok",
            "execute:model-a:ok",
            "critique:model-a:ok",
            "summarize:model-a:ok",
        ]
    );
    // The critique goes back to the executor, round by round.
    let coder = srv.prompts_with(CODER);
    assert!(!coder[0].contains("The reviewer asked for changes"));
    assert!(coder[1].contains("- tabs vanish") && coder[1].contains("Risk: users lose tabs"));
    assert!(coder[2].contains("- still no tests"));
    // Every call keeps its prompt and response, for replay.
    let calls = s.model_calls(1).unwrap();
    assert!(calls.iter().all(|c| {
        c.prompt
            .as_deref()
            .is_some_and(|p| p.contains("Fix the parser"))
    }));
    assert_eq!(
        calls[4].response.as_deref(),
        Some("v3: tabs kept, tests added")
    );
    assert!(
        calls
            .iter()
            .all(|c| c.run_id == Some(summary.run_id) && c.step_id.is_some())
    );
    let n = notes(&s, 1);
    assert!(
        n.contains("The critic asked model-a for changes (round 1 of 3): tabs vanish"),
        "{n}"
    );
    assert!(n.contains("Done by model-a in 3 round(s)"), "{n}");
    // The step, the run, the memories.
    let step = &s.task_steps(1).unwrap()[0];
    assert_eq!((step.outcome, step.rounds), (Some(StepOutcome::Done), 3));
    assert_eq!(step.detail["result"], "v3: tabs kept, tests added");
    let run = s.run(summary.run_id).unwrap();
    assert_eq!(run.status, "completed");
    assert_eq!(run.summary["done"], 1);
    let kinds: Vec<String> = sql(&h.db)
        .prepare("SELECT type FROM memories WHERE task_id = 1 ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(kinds, ["raw_interaction", "task_summary"]);
    // The event stream: started, calls, verdicts, status, finished, summary.
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names.first(), Some(&"run_started"));
    assert_eq!(names.last(), Some(&"run_summary"));
    assert_eq!(names.iter().filter(|n| **n == "verdict").count(), 3);
    assert!(names.contains(&"status_change") && names.contains(&"step_finished"));
    // Status, event and note landed together.
    let ev = s.events(1).unwrap();
    let last_status = ev.iter().rev().find(|e| e.kind == "status").unwrap();
    assert_eq!(last_status.to_status, Some(Status::Done));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_gave_nothing_passes_the_task_on_without_a_handoff_call() {
    // Every request to `a` fails: there is nothing to summarize for b, so
    // b starts at once (no summarizer call, no handoff memory); the note
    // and the call records still say what happened.
    let a = FakeLlm::routed(vec![Route::new("", vec![], fail())], None, Duration::ZERO).await;
    let b = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(SUMMARIZER, vec![], text("Fixed the parser.")),
            Route::new(CODER, vec![], text("done on b")),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let h = Harness::new(&["Fix the parser"]);
    let (summary, _) = h.run(registry(&a.url, &b.url, ""), 1).await;
    assert_eq!(summary.done, 1);
    let s = h.store();
    let coder_b = b.prompts_with(CODER);
    assert_eq!(coder_b.len(), 1);
    assert!(
        !coder_b[0].contains("## Handoff from the previous attempt"),
        "{}",
        coder_b[0]
    );
    let calls = purposes(&s, 1);
    assert!(
        calls.starts_with(&[
            "execute:model-a:error".into(),
            "execute:model-a:error".into()
        ]),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"execute:model-b:ok".to_string()),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.starts_with("handoff:")),
        "{calls:?}"
    );
    assert!(
        notes(&s, 1).contains("model-a's server failed")
            && notes(&s, 1).contains("model-b answered instead"),
        "{}",
        notes(&s, 1)
    );
    let handoffs: i64 = sql(&h.db)
        .query_row(
            "SELECT count(*) FROM memories WHERE type = 'handoff' AND task_id = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(handoffs, 0);
}

/// The seed plans.md imported (a project linked to it), one step run on
/// models `a` and `b`: the environment, the run's summary and the task
/// the step took.
async fn seeded_step(a: &str, b: &str) -> (Env, Summary, llmclis::store::Task) {
    let env = Env::new();
    env.with_seed_plans();
    let next = Store::open(&env.db())
        .unwrap()
        .next_task(Some(1))
        .unwrap()
        .unwrap();
    let h = Harness {
        _dir: tempfile::tempdir().unwrap(),
        db: env.db(),
        project: 1,
        tools: Default::default(),
    };
    let (summary, _) = h.run(registry(a, b, ""), 1).await;
    (env, summary, next)
}

/// Every server failing (a 500, a 503) is never the task's fault: back to
/// pending with the cause in a note, no issue opened, the run says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_server_fails_the_task_goes_back_never_blocked() {
    let a = FakeLlm::routed(vec![Route::new("", vec![], fail())], None, Duration::ZERO).await;
    let b = FakeLlm::routed(
        vec![Route::new(
            "",
            vec![],
            Reply::Status(503, r#"{"error":"overloaded"}"#, vec![]),
        )],
        None,
        Duration::ZERO,
    )
    .await;
    let (env, summary, next) = seeded_step(&a.url, &b.url).await;
    assert_eq!((summary.blocked, summary.done, summary.waiting), (0, 0, 1));
    let s = Store::open(&env.db()).unwrap();
    let t = s.task(next.id).unwrap();
    assert_eq!(t.status, Status::Pending);
    let n = notes(&s, t.id);
    assert!(
        n.contains("The model servers failed, not the task") && n.contains("the GPU caught fire"),
        "{n}"
    );
    assert!(!env.dir.path().join("issues.md").exists());
}

/// Every model's request refused for what it is (a 400): that is the
/// task's to fix, so it is blocked with the reasons and an issue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_model_refuses_the_task_is_blocked_with_a_note_and_an_issue() {
    let refuse = || {
        Reply::Status(
            400,
            r#"{"error":{"message":"\"auto\" tool choice requires --enable-auto-tool-choice","type":"BadRequestError","param":null,"code":400}}"#,
            vec![],
        )
    };
    let a = FakeLlm::routed(
        vec![Route::new(CODER, vec![], refuse())],
        None,
        Duration::ZERO,
    )
    .await;
    let b = FakeLlm::routed(
        vec![
            Route::new(SUMMARIZER, vec![], text("both refused")),
            Route::new(CODER, vec![], refuse()),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    // A project linked to a plans.md: the block opens an issues.md entry.
    let (env, summary, next) = seeded_step(&a.url, &b.url).await;
    assert_eq!(
        (summary.blocked, summary.done, summary.status.as_str()),
        (1, 0, "completed")
    );
    let s = Store::open(&env.db()).unwrap();
    let t = s.task(next.id).unwrap();
    assert_eq!(t.status, Status::Blocked);
    let n = notes(&s, t.id);
    assert!(n.contains("Every model in the chain was tried"), "{n}");
    assert!(
        n.contains("model-a: it failed") && n.contains("model-b: it failed"),
        "{n}"
    );
    let issues = std::fs::read_to_string(env.dir.path().join("issues.md")).unwrap();
    assert!(
        issues.contains("Every model in the chain was tried"),
        "{issues}"
    );
    let plans = std::fs::read_to_string(env.dir.path().join("plans.md")).unwrap();
    assert!(plans.contains("Every model in the chain was tried"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voting_drops_red_flagged_answers_and_takes_the_one_that_leads() {
    let srv = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(VOTER, vec![], text(r#"{"best": 0, "reason": "correct"}"#)),
            Route::new(SUMMARIZER, vec![], text("ok")),
            Route::new(
                CODER,
                vec![
                    text("answer X"),
                    text("answer Y"),
                    text("answer  X"),
                    Reply::Cut("answer Z, cut".into(), 130),
                    Reply::Text("answer W, rambling".into(), 400),
                ],
                text("answer Y"),
            ),
        ],
        Some(8),
        Duration::from_millis(20),
    )
    .await;
    let h = Harness::new(&["Pick a name"]);
    let voting = ", voting: { candidates: 5, ahead_by: 2, max_tokens: 100 }";
    let (summary, _) = h.run(registry(&srv.url, &srv.url, voting), 1).await;
    assert_eq!(summary.done, 1);
    let s = h.store();
    let calls = purposes(&s, 1);
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("sample:")).count(),
        5,
        "{calls:?}"
    );
    // X has 2 votes and Y 1, in the order they arrived. Every voter picks
    // answer 0: when that is X, one ballot gives it a lead of 2; when it is
    // Y, Y needs three ballots (2:2, then 4:2).
    let ballot = &srv.prompts_with(VOTER)[0];
    let first = ballot
        .split("## Answer 0\n")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let ballots = calls.iter().filter(|c| c.starts_with("vote:")).count();
    match first.as_str() {
        "answer X" => assert_eq!(ballots, 1, "{calls:?}"),
        "answer Y" => assert_eq!(ballots, 3, "{calls:?}"),
        other => panic!("answer 0 is {other:?}: red-flagged answers reached the voters"),
    }
    let result = s.task_steps(1).unwrap()[0].detail["result"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(result, first, "the answer that led by 2 won");
    let n = notes(&s, 1);
    assert!(n.contains("2 of 5 answers red-flagged"), "{n}");
    assert!(
        n.contains("cut off at max_tokens") && n.contains("overlong (400 > 100 tokens)"),
        "{n}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planner_splits_a_big_task_and_the_subtasks_then_run() {
    let plan = r#"{"split": true, "reason": "two independent parts",
        "subtasks": [
            {"title": "Write the parser", "description": "tokens to AST", "depends_on": []},
            {"title": "Test the parser", "description": "edge cases", "role": "tester", "depends_on": [0]}
        ]}"#;
    let srv = FakeLlm::routed(
        vec![
            Route::new(
                PLANNER,
                vec![text(plan)],
                text(r#"{"split": false, "reason": "small", "subtasks": []}"#),
            ),
            Route::new(CRITIC, vec![], approve()),
            Route::new(SUMMARIZER, vec![], text("summary")),
            Route::new("", vec![], text("work done")),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let h = Harness::new(&[]);
    {
        let mut s = h.store();
        s.create_task(
            NewTask {
                project_id: h.project,
                title: "Build the config language".into(),
                tags: vec!["epic".into()],
                ..Default::default()
            },
            "tester",
        )
        .unwrap();
    }
    let (summary, events) = h.run(registry(&srv.url, &srv.url, ""), 10).await;
    assert_eq!(
        (summary.split, summary.done, summary.steps),
        (1, 3, 4),
        "{events:#?}"
    );
    let s = h.store();
    let subs = s.subtasks(1).unwrap();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[1].depends_on, [subs[0].id]);
    assert_eq!(subs[1].role, Some(llmclis::role::Role::Tester));
    assert!(subs.iter().all(|t| t.status == Status::Done));
    let parent = s.task(1).unwrap();
    assert_eq!(parent.status, Status::Done);
    assert!(notes(&s, 1).contains("Split by the planner into 2 subtasks"));
    // The order: split, part one, part two (it waits for part one), roll-up.
    let order: Vec<i64> = events
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| e["task_id"].as_i64().unwrap())
        .collect();
    assert_eq!(order, [1, subs[0].id, subs[1].id, 1]);
    // Subtasks are not planned again; the roll-up calls no model.
    assert_eq!(srv.prompts_with(PLANNER).len(), 1);
    let rollup = s.task_steps(1).unwrap().pop().unwrap();
    assert!(
        rollup.detail["result"]
            .as_str()
            .unwrap()
            .contains("All 2 subtasks are done")
    );
    // The second subtask's prompt carries the first one's result.
    let tester_prompt = srv
        .prompts_with("Test the parser")
        .into_iter()
        .find(|p| p.contains("You are a test engineer"))
        .unwrap();
    assert!(tester_prompt.contains("Write the parser") && tester_prompt.contains("work done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_puts_the_task_in_flight_back_and_records_the_run_as_interrupted() {
    let srv = FakeLlm::routed(
        vec![Route::new(
            CODER,
            vec![Reply::Delay(
                Duration::from_secs(30),
                Box::new(text("late")),
            )],
            text("x"),
        )],
        None,
        Duration::ZERO,
    )
    .await;
    let h = Harness::new(&["Slow task", "Other task"]);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let reg = registry(&srv.url, &srv.url, "");
    let run = {
        let h = &h;
        async move { h.run_with(reg, 5, None, rx).await }
    };
    let cancel = async {
        while srv.hits() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tx.send(true).unwrap();
    };
    let ((summary, _), ()) = tokio::join!(run, cancel);
    assert_eq!(
        (summary.status.as_str(), summary.released, summary.steps),
        ("interrupted", 1, 1)
    );
    let s = h.store();
    for id in [1, 2] {
        let t = s.task(id).unwrap();
        assert_eq!(
            (t.status, t.claimed_by.as_deref()),
            (Status::Pending, None),
            "task {id}"
        );
    }
    assert!(notes(&s, 1).contains("the run was interrupted"));
    assert_eq!(s.run(summary.run_id).unwrap().status, "interrupted");
    assert_eq!(
        purposes(&s, 1),
        ["execute:model-a:cancelled"],
        "the dropped call is on record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_given_task_runs_alone_and_its_answer_streams() {
    let srv = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(SUMMARIZER, vec![], text("summary")),
            Route::new(CODER, vec![], Reply::Ok("streamed answer in words")),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let h = Harness::new(&["First", "Second", "Third"]);
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let (summary, events) = h
        .run_with(registry(&srv.url, &srv.url, ""), 10, Some(2), rx)
        .await;
    assert_eq!((summary.steps, summary.done), (1, 1));
    let s = h.store();
    assert_eq!(s.task(2).unwrap().status, Status::Done);
    assert_eq!(
        s.status_counts(Some(1)).unwrap().pending,
        2,
        "the others wait"
    );
    let streamed: String = events
        .iter()
        .filter(|e| e["event"] == "token")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, "streamed answer in words");
    // A task that is not ready is refused before anything runs.
    let mut st = h.store();
    st.create_task(
        NewTask {
            project_id: 1,
            title: "Waits".into(),
            depends_on: vec![1],
            ..Default::default()
        },
        "tester",
    )
    .unwrap();
    assert!(st.claim_task(4, "x", Duration::from_secs(5)).is_err());
}

/// A repository whose test fails until `add` adds.
fn broken_repo(dir: &Path) -> PathBuf {
    let root = dir.join("repo");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(
        root.join("src/lib.rs"),
        "pub fn add(a: i32, b: i32) -> i32 {\n    a - b\n}\n",
    )
    .unwrap();
    root
}

fn tools_for_repo(writes: bool) -> llmclis::config::ToolsConfig {
    let mut t = llmclis::config::ToolsConfig {
        allow_writes: writes,
        timeout_secs: 10,
        ..Default::default()
    };
    t.commands.insert(
        "test".into(),
        vec![
            "sh".into(),
            "-c".into(),
            "grep -q 'a + b' src/lib.rs && echo 'test add ... ok' || { echo 'test add ... FAILED'; exit 1; }".into(),
        ],
    );
    t
}

/// An OpenAI-style answer asking for one tool.
pub(crate) fn tool_call(id: &str, name: &str, args: Value) -> Reply {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    Reply::ToolCall(leak(id.into()), leak(name.into()), leak(args.to_string()))
}

const FIX: &str = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn add(a: i32, b: i32) -> i32 {\n-    a - b\n+    a + b\n }\n";

/// A project on a broken repository with one task, "Fix add".
fn repo_harness(writes: bool) -> (Harness, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = broken_repo(dir.path());
    let db = dir.path().join("llmclis.db");
    let mut s = Store::open(&db).unwrap();
    let p = s
        .create_project("repo", "", Some(&root.to_string_lossy()), "tester")
        .unwrap();
    s.create_task(
        NewTask {
            project_id: p.id,
            title: "Fix add, its test fails".into(),
            ..Default::default()
        },
        "tester",
    )
    .unwrap();
    let h = Harness {
        _dir: dir,
        db,
        project: p.id,
        tools: tools_for_repo(writes),
    };
    (h, root)
}

async fn fix_run(writes: bool) -> (Harness, FakeLlm, PathBuf) {
    let srv = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(SUMMARIZER, vec![], text("Fixed add.")),
            Route::new(
                CODER,
                vec![
                    tool_call("c1", "read_file", json!({"path": "src/lib.rs"})),
                    tool_call("c2", "apply_patch", json!({"patch": FIX})),
                    tool_call("c3", "run_tests", json!({})),
                ],
                text("Fixed the sign in add(); the test passes."),
            ),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let (h, root) = repo_harness(writes);
    let (summary, _) = h
        .run(
            registry_with(&srv.url, &srv.url, "", "[json_schema, tools]"),
            1,
        )
        .await;
    assert_eq!(summary.done, 1);
    (h, srv, root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coder_reads_patches_and_tests_a_real_repository_with_tools() {
    let (h, srv, root) = fix_run(true).await;
    assert!(
        std::fs::read_to_string(root.join("src/lib.rs"))
            .unwrap()
            .contains("a + b")
    );
    let s = h.store();
    let tools: Vec<String> = s
        .tool_calls(1)
        .unwrap()
        .iter()
        .map(|c| format!("{}:{}", c.tool, c.outcome))
        .collect();
    assert_eq!(tools, ["read_file:ok", "apply_patch:ok", "run_tests:ok"]);
    // The model saw each result, as a tool message answering its call.
    let last = srv
        .requests()
        .into_iter()
        .rfind(|r| r["tools"].is_array())
        .unwrap();
    let msgs = last["messages"].as_array().unwrap();
    assert!(msgs.iter().any(|m| m["role"] == "tool"
        && m["tool_call_id"] == "c3"
        && m["content"].as_str().unwrap().contains("test add ... ok")));
    // The critic read the diff and the test output.
    let critic = &srv.prompts_with(CRITIC)[0];
    assert!(
        critic.contains("## The diff") && critic.contains("+    a + b"),
        "{critic}"
    );
    assert!(critic.contains("## Test output") && critic.contains("test add ... ok"));
    let step = &s.task_steps(1).unwrap()[0];
    assert!(step.detail["diff"].as_str().unwrap().contains("-    a - b"));
    assert_eq!(step.detail["writes"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allow_writes_the_repository_is_untouched_and_the_diff_is_kept() {
    let (h, _srv, root) = fix_run(false).await;
    assert!(
        std::fs::read_to_string(root.join("src/lib.rs"))
            .unwrap()
            .contains("a - b")
    );
    let s = h.store();
    let step = &s.task_steps(1).unwrap()[0];
    assert!(step.detail["diff"].as_str().unwrap().contains("+    a + b"));
    assert_eq!(step.detail["writes"], false);
    // The tests ran on a copy with the proposed change in it: they pass,
    // and the repository never saw the change.
    let run = s.tool_calls(1).unwrap().pop().unwrap();
    assert_eq!(
        (run.tool.as_str(), run.outcome.as_str()),
        ("run_tests", "ok")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_without_tool_calling_use_the_json_action_protocol() {
    let srv = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(SUMMARIZER, vec![], text("ok")),
            Route::new(
                CODER,
                vec![text("Let me look.\n```json\n{\"tool\": \"read_file\", \"args\": {\"path\": \"../etc/passwd\"}}\n```")],
                text("The sign in add() is wrong; it should add."),
            ),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = broken_repo(dir.path());
    let db = dir.path().join("llmclis.db");
    let mut s = Store::open(&db).unwrap();
    s.create_project("repo", "", Some(&root.to_string_lossy()), "tester")
        .unwrap();
    s.create_task(
        NewTask {
            project_id: 1,
            title: "Review add".into(),
            ..Default::default()
        },
        "tester",
    )
    .unwrap();
    let h = Harness {
        _dir: dir,
        db,
        project: 1,
        tools: tools_for_repo(false),
    };
    let (summary, _) = h.run(registry(&srv.url, &srv.url, ""), 1).await;
    assert_eq!(summary.done, 1);
    let first = &srv.prompts_with(CODER)[0];
    assert!(
        first.contains("## Tools") && first.contains("read_file(path"),
        "the protocol is explained"
    );
    let second = &srv.prompts_with(CODER)[1];
    assert!(
        second.contains("Result of read_file:\nerror: path \"../etc/passwd\" refused"),
        "{second}"
    );
    let calls = h.store().tool_calls(1).unwrap();
    assert_eq!((calls.len(), calls[0].outcome.as_str()), (1, "error"));
}

// ---- through the binary ----

/// A config with short leases, and the registry, for the binary.
pub(crate) fn install(env: &Env, registry_yaml: &str, lease_seconds: u64) {
    std::fs::create_dir_all(env.config_dir()).unwrap();
    std::fs::write(
        env.config_dir().join("config.toml"),
        format!("[queue]\nlease_seconds = {lease_seconds}\n"),
    )
    .unwrap();
    std::fs::write(env.config_dir().join("model_registry.yaml"), registry_yaml).unwrap();
}

pub(crate) fn registry_yaml(url: &str) -> String {
    let mut roles = String::new();
    for r in llmclis::registry::ROLES {
        roles.push_str(&format!("  {r}: {{ temperature: 0.3, models: [m] }}\n"));
    }
    format!(
        r#"providers:
  - {{ name: p, kind: openai-compatible, flavour: vllm, base_url: "{url}", timeout_secs: 60, max_concurrency: 16, local: true }}
models:
  - {{ id: m, provider: p, served_name: served, context_window: 32768, max_output_tokens: 4096, capabilities: [json_schema] }}
roles:
{roles}rules:
  - {{ name: default, role: coder }}
modes:
  offline: {{ providers: local }}
  online: {{ providers: all }}
"#
    )
}

fn add_tasks(env: &Env, n: usize) {
    let mut s = Store::open(&env.db()).unwrap();
    let p = s.create_project("demo", "", None, "tester").unwrap();
    s.batch(|s| {
        for i in 0..n {
            s.create_task(
                NewTask {
                    project_id: p.id,
                    title: format!("Task number {i}"),
                    ..Default::default()
                },
                "tester",
            )?;
        }
        Ok(())
    })
    .unwrap();
}

pub(crate) fn quick_server_routes() -> Vec<Route> {
    vec![
        Route::new(CRITIC, vec![], approve()),
        Route::new(SUMMARIZER, vec![], text("summary")),
        Route::new(CODER, vec![], text("result")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_the_next_run_reclaims_the_task_and_nothing_is_done_twice() {
    let srv = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(SUMMARIZER, vec![], text("summary")),
            Route::new(
                CODER,
                vec![Reply::Delay(
                    Duration::from_secs(60),
                    Box::new(text("never")),
                )],
                text("result"),
            ),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let env = Env::new();
    install(&env, &registry_yaml(&srv.url), 2);
    add_tasks(&env, 3);
    let mut child = env
        .command()
        .args(["orchestrate", "--project-id", "1", "--max-steps", "10"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while srv.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    {
        let s = Store::open(&env.db()).unwrap();
        assert_eq!(
            s.task(1).unwrap().status,
            Status::InProgress,
            "held by the dead run"
        );
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let out = tokio::task::spawn_blocking(move || {
        let r = env.run(&["orchestrate", "--project-id", "1", "--max-steps", "10"]);
        (r, env)
    })
    .await
    .unwrap();
    let (r, env) = out;
    r.assert_ok();
    assert!(r.stdout.contains("3 done"), "{}", r.stdout);
    // Without a terminal there is no progress bar: no carriage returns,
    // no bar cells, no escape sequences.
    for out in [&r.stdout, &r.stderr] {
        assert!(
            !out.contains('\r') && !out.contains('█') && !out.contains('\u{1b}'),
            "a bar without a TTY: {out:?}"
        );
    }
    assert!(
        r.stdout.contains("recovered: run 1 died"),
        "the next run closes the dead one: {}",
        r.stdout
    );
    // The dead run's step shows as lost, with why.
    let show = env.run(&["task", "show", "1"]);
    show.assert_ok();
    assert!(
        show.stdout.contains("run 1 step 1: lost (its process"),
        "{}",
        show.stdout
    );
    let s = Store::open(&env.db()).unwrap();
    for id in 1..=3 {
        assert_eq!(s.task(id).unwrap().status, Status::Done);
        let done: Vec<_> = s
            .task_steps(id)
            .unwrap()
            .into_iter()
            .filter(|st| st.outcome == Some(llmclis::store::StepOutcome::Done))
            .collect();
        assert_eq!(done.len(), 1, "task {id} finished once");
    }
    assert!(
        s.events(1)
            .unwrap()
            .iter()
            .any(|e| e.kind == "lease_expired")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_orchestrators_on_200_tasks_process_each_task_once() {
    // A few milliseconds per call, so neither run can finish before the
    // other starts.
    let srv = FakeLlm::routed(quick_server_routes(), None, Duration::from_millis(4)).await;
    let env = Env::new();
    install(&env, &registry_yaml(&srv.url), 60);
    add_tasks(&env, 200);
    let env = Arc::new(env);
    let spawn = |name: &'static str| {
        let env = env.clone();
        tokio::task::spawn_blocking(move || {
            env.command()
                .args([
                    "--agent",
                    name,
                    "orchestrate",
                    "--project-id",
                    "1",
                    "--max-steps",
                    "200",
                    "--workers",
                    "2",
                ])
                .output()
                .unwrap()
        })
    };
    let (one, two) = tokio::join!(spawn("one"), spawn("two"));
    for o in [one.unwrap(), two.unwrap()] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let s = Store::open(&env.db()).unwrap();
    assert_eq!(s.status_counts(Some(1)).unwrap().done, 200);
    let per_task: Vec<(i64, i64, i64)> = sql(&env.db())
        .prepare(
            "SELECT t.id,
                    (SELECT count(*) FROM run_steps r WHERE r.task_id = t.id),
                    (SELECT count(*) FROM model_calls c WHERE c.task_id = t.id AND c.purpose = 'execute')
               FROM tasks t",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        per_task
            .iter()
            .all(|(_, steps, execs)| (*steps, *execs) == (1, 1)),
        "{per_task:?}"
    );
    let runs: i64 = sql(&env.db())
        .query_row("SELECT count(DISTINCT run_id) FROM run_steps", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(runs, 2, "both orchestrators took work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_the_binary_releases_the_task_and_exits_130() {
    let srv = FakeLlm::routed(
        vec![Route::new(
            CODER,
            vec![Reply::Delay(Duration::from_secs(60), Box::new(text("x")))],
            text("x"),
        )],
        None,
        Duration::ZERO,
    )
    .await;
    let env = Env::new();
    install(&env, &registry_yaml(&srv.url), 60);
    add_tasks(&env, 2);
    let child = env
        .command()
        .args(["--json", "orchestrate", "--project-id", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while srv.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = events.last().unwrap();
    assert_eq!(
        (last["event"].as_str(), last["status"].as_str()),
        (Some("run_summary"), Some("interrupted"))
    );
    let s = Store::open(&env.db()).unwrap();
    assert_eq!(s.status_counts(Some(1)).unwrap().pending, 2);
    assert!(s.task(1).unwrap().claimed_by.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_server_up_the_run_does_not_start() {
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    };
    let env = Env::new();
    install(&env, &registry_yaml(&closed), 60);
    add_tasks(&env, 3);
    let r = env.run(&["orchestrate", "--project-id", "1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("no model server answers"), "{}", r.stderr);
    assert!(r.stderr.contains("no task was touched"), "{}", r.stderr);
    let s = Store::open(&env.db()).unwrap();
    assert_eq!(
        s.status_counts(Some(1)).unwrap().pending,
        3,
        "nothing blocked"
    );
    assert!(s.runs(1, 5).unwrap().is_empty(), "no run started");
    assert!(notes(&s, 1).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_setup_is_refused_before_any_task_is_claimed() {
    let env = Env::new();
    add_tasks(&env, 1);
    std::fs::create_dir_all(env.config_dir().join("prompts")).unwrap();
    std::fs::write(
        env.config_dir().join("prompts/critic.md"),
        "---\nrole: critic\n---\n{% if %}\n",
    )
    .unwrap();
    let r = env.run(&["orchestrate", "--project-id", "1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("prompts/critic.md:4:"), "{}", r.stderr);
    let r = env.run(&["orchestrate", "--project-id", "1", "--workers", "0"]);
    assert_eq!(r.code, 2);
    let r = env.run(&["orchestrate", "--project-id", "9"]);
    assert_eq!(r.code, 2);
    let s = Store::open(&env.db()).unwrap();
    assert_eq!(s.task(1).unwrap().status, Status::Pending);
    assert!(s.runs(1, 10).unwrap().is_empty());
}

/// The real llama.cpp servers: a small project runs several steps and
/// everything is recorded.
#[test]
fn end_to_end_against_the_real_llama_cpp_server() {
    let Some((smollm, gemma, _turn)) = servers() else {
        return;
    };
    let env = Env::new();
    let mut roles = String::new();
    for r in llmclis::registry::ROLES {
        roles.push_str(&format!(
            "  {r}: {{ temperature: 0.2, models: [smollm2-135m, gemma-270m] }}\n"
        ));
    }
    let yaml = format!(
        r#"providers:
  - {{ name: smol, kind: openai-compatible, flavour: llamacpp, base_url: "{smollm}", timeout_secs: 120, max_concurrency: 1, local: true }}
  - {{ name: gemma, kind: openai-compatible, flavour: llamacpp, base_url: "{gemma}", timeout_secs: 120, max_concurrency: 1, local: true }}
models:
  - {{ id: smollm2-135m, provider: smol, served_name: SmolLM2-135M-Instruct, context_window: 2048, max_output_tokens: 200, capabilities: [fast, cheap, json_schema] }}
  - {{ id: gemma-270m, provider: gemma, served_name: gemma-3-270m, context_window: 4096, max_output_tokens: 200, capabilities: [fast, cheap, json_schema] }}
roles:
{roles}rules:
  - {{ name: default, role: coder }}
modes:
  offline: {{ providers: local }}
  online: {{ providers: all }}
"#
    );
    install(&env, &yaml, 120);
    std::fs::write(
        env.config_dir().join("config.toml"),
        "[orchestrator]\nmax_rounds = 1\n",
    )
    .unwrap();
    env.run(&["project", "add", "demo"]).assert_ok();
    for t in [
        "Write a Python function that adds two numbers",
        "Write one sentence about SQLite",
        "Name three colours",
    ] {
        env.run(&["task", "add", "--project-id", "1", t])
            .assert_ok();
    }
    let mut cmd = env.command();
    if let Some((dir, lib)) = crate::support::assets() {
        cmd.env("LLMCLIS_EMBEDDING_MODEL_DIR", dir)
            .env("LLMCLIS_ONNXRUNTIME", lib);
    }
    let r = crate::support::Run::from(
        cmd.args([
            "--json",
            "orchestrate",
            "--project-id",
            "1",
            "--max-steps",
            "3",
        ])
        .output()
        .unwrap(),
    );
    r.assert_ok();
    let events: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "run_summary");
    assert_eq!(summary["steps"], 3, "{}", r.stdout);
    assert_eq!(
        summary["done"].as_u64().unwrap() + summary["blocked"].as_u64().unwrap(),
        3,
        "every step ends done or blocked: {}",
        r.stdout
    );
    if crate::support::assets().is_some() {
        assert_eq!(events[0]["memory"], "indexed", "{}", events[0]);
    }
    let s = Store::open(&env.db()).unwrap();
    for id in 1..=3 {
        let calls = s.model_calls(id).unwrap();
        assert!(
            calls
                .iter()
                .any(|c| c.purpose.as_deref() == Some("execute") && c.outcome == "ok")
        );
        for c in calls.iter().filter(|c| c.outcome == "ok") {
            assert!(c.prompt.as_deref().is_some_and(|p| !p.is_empty()));
            assert!(
                c.response.is_some() && c.completion_tokens.is_some() && c.latency_ms.is_some()
            );
        }
        assert_eq!(s.task_steps(id).unwrap().len(), 1);
    }
    let memories: i64 = sql(&env.db())
        .query_row(
            "SELECT count(*) FROM memories WHERE type = 'raw_interaction'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(memories >= 1);
    assert_eq!(s.runs(1, 1).unwrap()[0].status, "completed");
}

/// A busy server is not the task's fault: TGI's 429 "Model is overloaded"
/// and Ollama's 503 "server busy" (their own bodies), retried until the
/// caller gives up, put the task back in the queue and stop the run with
/// exit 1, like a server that is down; nothing is blocked, no issue opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_server_releases_the_task_instead_of_blocking_it() {
    for (status, body) in [
        (
            429,
            r#"{"error":"Model is overloaded","error_type":"overloaded"}"#,
        ),
        (
            503,
            r#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#,
        ),
    ] {
        let srv = FakeLlm::routed(
            vec![Route::new(
                CODER,
                vec![],
                Reply::Status(status, body, vec![]),
            )],
            None,
            Duration::ZERO,
        )
        .await;
        let url = srv.url.clone();
        tokio::task::spawn_blocking(move || {
            let env = crate::recovery::setup(&url);
            // Two seconds of rounds instead of a minute.
            let cfg = env.config_dir().join("config.toml");
            let text = std::fs::read_to_string(&cfg).unwrap();
            std::fs::write(&cfg, format!("{text}\n[models]\nbusy_wait_secs = 2\n")).unwrap();
            let started = std::time::Instant::now();
            let r = env.run(&["orchestrate", "--project-id", "1", "--max-steps", "3"]);
            assert_eq!(r.code, 1, "{status}: {}\n{}", r.stdout, r.stderr);
            // Three tries take under a second; a second round waits ~1 s.
            assert!(
                started.elapsed() >= Duration::from_secs(1),
                "{status}: the busy servers were waited for"
            );
            assert!(
                r.stderr.contains("overloaded or still loading"),
                "{status}: {}",
                r.stderr
            );
            let s = Store::open(&env.db()).unwrap();
            let counts = s.status_counts(Some(1)).unwrap();
            assert_eq!(counts.blocked, 0, "{status}: nothing blocked");
            assert_eq!(counts.in_progress, 0, "{status}: nothing held");
            assert!(
                !env.dir.path().join("issues.md").exists(),
                "{status}: no issue opened for a busy server"
            );
        })
        .await
        .unwrap();
        // One quick retry, then a second round after the back-off.
        assert!(
            srv.hits() >= 3,
            "{status}: a second round before giving up ({} requests)",
            srv.hits()
        );
    }
}

/// A model stuck on one failing call (`read_file` of a directory) loses
/// its tools after three in a row and gets one turn to answer; answering
/// with yet another tool call is a failed attempt, so the task is blocked
/// with the reason, never approved as done with no change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_stuck_on_a_failing_tool_call_never_ends_done() {
    let stuck = tool_call("c1", "read_file", json!({"path": ""}));
    let srv = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(SUMMARIZER, vec![], text("summary")),
            Route::new(CODER, vec![], stuck),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let (h, _root) = repo_harness(false);
    let (summary, _) = h
        .run(
            registry_with(&srv.url, &srv.url, "", "[json_schema, tools]"),
            1,
        )
        .await;
    assert_eq!(summary.done, 0, "nothing was done, so nothing is approved");
    let s = h.store();
    assert_ne!(s.task(1).unwrap().status, Status::Done);
    let tools = s.tool_calls(1).unwrap();
    // Three failing calls per model (model-a, then model-b), not twenty.
    assert_eq!(tools.len(), 6, "{tools:?}");
    assert!(tools.iter().all(|c| c.outcome == "error"));
    // The last turn of each model went without tools.
    let last = srv
        .requests()
        .into_iter()
        .filter(|r| r["messages"].to_string().contains("No more tool calls"))
        .count();
    assert_eq!(last, 2);
    assert!(
        notes(&s, 1).contains("failed 3 times in a row"),
        "{}",
        notes(&s, 1)
    );
}

/// The registry's role temperature is what each call is sent with (the
/// executor's for the executor, the critic's for the critic), as `chat` and
/// `route explain` use it: editing it in model_registry.yaml takes effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_uses_its_roles_temperature_from_the_registry() {
    let srv = FakeLlm::routed(quick_server_routes(), None, Duration::ZERO).await;
    let url = srv.url.clone();
    tokio::task::spawn_blocking(move || {
        let env = crate::recovery::setup(&url);
        let reg = env.config_dir().join("model_registry.yaml");
        let yaml = std::fs::read_to_string(&reg)
            .unwrap()
            .replace("coder: { temperature: 0.3", "coder: { temperature: 0.9")
            .replace("critic: { temperature: 0.3", "critic: { temperature: 0.05");
        std::fs::write(&reg, yaml).unwrap();
        env.run(&["orchestrate", "--project-id", "1", "--max-steps", "1"])
            .assert_ok();
    })
    .await
    .unwrap();
    let temp = |needle: &str| -> f64 {
        srv.requests()
            .into_iter()
            .find(|r| r["messages"].to_string().contains(needle))
            .unwrap_or_else(|| panic!("no request with {needle}"))["temperature"]
            .as_f64()
            .unwrap()
    };
    assert!((temp(CODER) - 0.9).abs() < 1e-6, "{}", temp(CODER));
    assert!((temp(CRITIC) - 0.05).abs() < 1e-6, "{}", temp(CRITIC));
}

/// The critic of a code task is told when the agent changed no file, so a
/// "done" that did nothing can be sent back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_critic_is_told_when_a_code_task_changed_nothing() {
    let srv = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(SUMMARIZER, vec![], text("summary")),
            Route::new(CODER, vec![], text("I looked at it; it should work.")),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let (h, _root) = repo_harness(false);
    h.run(
        registry_with(&srv.url, &srv.url, "", "[json_schema, tools]"),
        1,
    )
    .await;
    let critic = &srv.prompts_with(CRITIC)[0];
    assert!(
        critic.contains("Empty: the agent changed no file"),
        "{critic}"
    );
}

/// Voting on a role with tools: each candidate runs the tool loop in its
/// own overlay (the third patch applies to the untouched file, so the
/// first never reached the disk), the voters see each diff, and only the
/// winner's change is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voting_candidates_get_the_tools_each_in_its_own_overlay() {
    let srv = FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(VOTER, vec![], text(r#"{"best": 0, "reason": "fixes it"}"#)),
            Route::new(SUMMARIZER, vec![], text("Fixed add.")),
            Route::new(
                CODER,
                vec![
                    tool_call("a1", "apply_patch", json!({"patch": FIX})),
                    text("Fixed the sign in add()."),
                    text("Nothing needs to change."),
                    tool_call("c1", "apply_patch", json!({"patch": FIX})),
                    text("Fixed the sign in add()."),
                ],
                text("Nothing needs to change."),
            ),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let (h, root) = repo_harness(true);
    let voting = ", voting: { candidates: 3, ahead_by: 1, max_tokens: 200 }";
    let (summary, _) = h
        .run(
            registry_with(&srv.url, &srv.url, voting, "[json_schema, tools]"),
            1,
        )
        .await;
    assert_eq!(summary.done, 1);
    let s = h.store();
    let tools: Vec<String> = s
        .tool_calls(1)
        .unwrap()
        .iter()
        .map(|c| format!("{}:{}", c.tool, c.outcome))
        .collect();
    assert_eq!(
        tools,
        ["apply_patch:ok", "apply_patch:ok"],
        "each candidate patched the original file"
    );
    assert!(
        std::fs::read_to_string(root.join("src/lib.rs"))
            .unwrap()
            .contains("a + b"),
        "the winner's change is written"
    );
    let critic = &srv.prompts_with(CRITIC)[0];
    assert!(
        critic.contains("+    a + b") && critic.contains("Proposed change"),
        "{critic}"
    );
    let step = &s.task_steps(1).unwrap()[0];
    assert!(step.detail["diff"].as_str().unwrap().contains("-    a - b"));
}
