//! The model layer against scripted fake servers (fault injection), the
//! registry's validation, and the promise that keys stay out of logs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use llmclis::llm::caller::{Breakers, Caller, RetryPolicy};
use llmclis::llm::{ChatRequest, Message, StreamEvent};
use llmclis::net::http_client;
use llmclis::registry::{Mode, Registry};
use llmclis::router::{self, Conditions, Skip, TaskInfo};

use crate::support::Env;
use crate::support::fake_llm::{FakeLlm, Reply};

const KEY: &str = "sk-test-0123456789abcdefSECRET";
const CONTEXT_ERROR: &str = r#"{"error":{"message":"This model's maximum context length is 2048 tokens, however you requested 4000 tokens","type":"invalid_request_error"}}"#;

fn registry_yaml(a: &str, b: &str, api: &str) -> String {
    let roles: String = llmclis::registry::ROLES
        .iter()
        .map(|r| format!("  {r}: {{ temperature: 0.3, models: [small, big, cloud] }}\n"))
        .collect();
    format!(
        r#"providers:
  - {{ name: a, kind: openai-compatible, flavour: llamacpp, base_url: "{a}", timeout_secs: 1, max_concurrency: 2, local: true }}
  - {{ name: b, kind: openai-compatible, flavour: vllm, base_url: "{b}", timeout_secs: 5, max_concurrency: 2, local: true }}
  - {{ name: api, kind: openai-compatible, flavour: openai, base_url: "{api}", api_key_env: LLMCLIS_TEST_KEY, local: false }}
models:
  - {{ id: small, provider: a, served_name: s, context_window: 2048, max_output_tokens: 256 }}
  - {{ id: big, provider: b, served_name: b, context_window: 32768, max_output_tokens: 1024, capabilities: [json_schema] }}
  - {{ id: cloud, provider: api, served_name: c, context_window: 128000, max_output_tokens: 1024, cost_per_1m_input: 1, cost_per_1m_output: 2 }}
roles:
{roles}rules:
  - {{ name: default, role: coder }}
modes:
  offline: {{ providers: local }}
  online: {{ providers: all }}
"#
    )
}

struct Rig {
    a: FakeLlm,
    b: FakeLlm,
    api: FakeLlm,
    caller: Caller,
}

async fn rig(a: Vec<Reply>, b: Vec<Reply>, api: Vec<Reply>, breakers: Breakers) -> Rig {
    let (a, b, api) = (
        FakeLlm::start(a).await,
        FakeLlm::start(b).await,
        FakeLlm::start(api).await,
    );
    let registry = Registry::parse(&registry_yaml(&a.url, &b.url, &api.url), "test.yaml").unwrap();
    let mut caller = Caller::new(Arc::new(registry), http_client(), Arc::new(breakers));
    caller.retry = RetryPolicy {
        attempts: RetryPolicy::default().attempts,
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
        max_wait: Duration::from_secs(5),
        busy_budget: Duration::from_secs(3),
    };
    Rig { a, b, api, caller }
}

fn breakers() -> Breakers {
    Breakers::new(10, Duration::from_secs(60))
}

fn req(stream: bool) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user("hello")],
        temperature: 0.3,
        max_tokens: 16,
        stream,
        ..Default::default()
    }
}

fn chain(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn kinds(o: &[llmclis::llm::caller::Attempt]) -> Vec<String> {
    o.iter()
        .map(|a| format!("{}:{}", a.model, a.error_kind.unwrap_or(a.outcome)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_alone_is_retried_after_its_retry_after() {
    let r = rig(
        vec![
            Reply::Status(429, "{}", vec![("retry-after", "1")]),
            Reply::Ok("hi there"),
        ],
        vec![],
        vec![],
        breakers(),
    )
    .await;
    let started = Instant::now();
    let out = r
        .caller
        .call(&chain(&["small"]), &req(false), None)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert_eq!(out.model, "small");
    assert_eq!(out.response.text, "hi there");
    assert_eq!((r.a.hits(), r.b.hits()), (2, 0));
    assert_eq!(kinds(&out.attempts), ["small:rate_limited", "small:ok"]);
}

/// A busy model with a backup: the backup answers at once, and the busy
/// one is left alone for its retry-after by the next call too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_a_backup_moves_on_at_once_and_cools_for_its_retry_after() {
    let r = rig(
        vec![Reply::Status(429, "{}", vec![("retry-after", "30")])],
        vec![Reply::Ok("from b"), Reply::Ok("again b")],
        vec![],
        breakers(),
    )
    .await;
    let started = Instant::now();
    let out = r
        .caller
        .call(&chain(&["small", "big"]), &req(false), None)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "no waiting");
    assert_eq!(kinds(&out.attempts), ["small:rate_limited", "big:ok"]);
    let again = r
        .caller
        .call(&chain(&["small", "big"]), &req(false), None)
        .await
        .unwrap();
    assert_eq!(kinds(&again.attempts), ["small:skipped", "big:ok"]);
    assert_eq!((r.a.hits(), r.b.hits()), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_get_one_quick_retry_then_the_next_model_answers() {
    let e500 = || Reply::Status(500, r#"{"error":"the GPU caught fire"}"#, vec![]);
    let r = rig(
        vec![e500(), e500(), e500()],
        vec![Reply::Ok("from b")],
        vec![],
        breakers(),
    )
    .await;
    let out = r
        .caller
        .call(&chain(&["small", "big"]), &req(false), None)
        .await
        .unwrap();
    assert_eq!(out.model, "big");
    assert_eq!((r.a.hits(), r.b.hits()), (2, 1));
    assert_eq!(
        kinds(&out.attempts),
        ["small:server", "small:server", "big:ok"]
    );
    assert_eq!(out.response.usage.prompt_tokens, 11, "real usage is read");
    assert!(!out.response.usage.estimated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_is_not_asked_again_and_the_next_model_answers() {
    // Provider a waits 1 s for the first byte; this answer takes 1.5 s.
    let slow = || Reply::Delay(Duration::from_millis(1500), Box::new(Reply::Ok("late")));
    let r = rig(
        vec![slow(), slow()],
        vec![Reply::Ok("b answers")],
        vec![],
        breakers(),
    )
    .await;
    let out = r
        .caller
        .call(&chain(&["small", "big"]), &req(false), None)
        .await
        .unwrap();
    assert_eq!(out.model, "big");
    assert_eq!(kinds(&out.attempts), ["small:timeout", "big:ok"]);
    assert_eq!(r.a.hits(), 1, "a hung request is not re-sent");
    assert!(
        out.attempts[0].transient,
        "a hung server never blocks a task"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_healthy_stream_is_never_cut() {
    // 12 chunks 200 ms apart: 2.4 s in all, past provider a's 1 s, but
    // never silent that long.
    let r = rig(
        vec![Reply::Slow(
            "one two three four five six seven eight nine ten eleven",
            Duration::from_millis(200),
        )],
        vec![],
        vec![],
        breakers(),
    )
    .await;
    let mut shown = String::new();
    let mut sink = |ev: StreamEvent<'_>| shown.push_str(&self::shown(ev));
    let out = r
        .caller
        .call(&chain(&["small"]), &req(true), Some(&mut sink))
        .await
        .unwrap();
    assert!(out.response.latency > Duration::from_secs(2));
    assert_eq!(
        out.response.text,
        "one two three four five six seven eight nine ten eleven"
    );
    assert_eq!(r.a.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_goes_silent_times_out_on_its_idle_limit() {
    let r = rig(
        vec![Reply::Hang(Duration::from_secs(5))],
        vec![Reply::Ok("b")],
        vec![],
        breakers(),
    )
    .await;
    let started = Instant::now();
    let out = r
        .caller
        .call(&chain(&["small", "big"]), &req(true), None)
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(kinds(&out.attempts), ["small:timeout", "big:ok"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_stream_falls_back_and_the_listener_is_told() {
    let truncated = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"half an \"},\"finish_reason\":null}]}\n\n";
    // Twice: one glitch is retried on the same model, a second moves on.
    let r = rig(
        vec![Reply::Raw(truncated), Reply::Raw(truncated)],
        vec![Reply::Ok("whole answer")],
        vec![],
        breakers(),
    )
    .await;
    let mut seen = Vec::new();
    let mut sink = |ev: StreamEvent<'_>| seen.push(shown(ev));
    let out = r
        .caller
        .call(&chain(&["small", "big"]), &req(true), Some(&mut sink))
        .await
        .unwrap();
    assert_eq!(out.model, "big");
    assert_eq!(out.response.text, "whole answer");
    assert_eq!(
        seen,
        [
            "half an ",
            "<restart small->small>",
            "half an ",
            "<restart small->big>",
            "whole ",
            "answer"
        ]
    );
    assert!(
        out.response.usage.estimated,
        "the fake sends no usage when streaming"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_after_a_streaming_200_falls_back() {
    let broken = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"so far \"},\"finish_reason\":null}]}\n\ndata: {\"error\":{\"message\":\"model crashed\"}}\n\n";
    let r = rig(
        vec![Reply::Raw(broken), Reply::Raw(broken)],
        vec![Reply::Ok("rescued")],
        vec![],
        breakers(),
    )
    .await;
    let out = r
        .caller
        .call(&chain(&["small", "big"]), &req(true), None)
        .await
        .unwrap();
    assert_eq!(out.model, "big");
    assert_eq!(
        kinds(&out.attempts),
        ["small:stream_broken", "small:stream_broken", "big:ok"]
    );
    assert!(
        out.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("model crashed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_falls_back() {
    let r = rig(
        vec![
            Reply::Raw("<html>proxy error</html>"),
            Reply::Raw("<html>proxy error</html>"),
        ],
        vec![Reply::Ok("json")],
        vec![],
        breakers(),
    )
    .await;
    let out = r
        .caller
        .call(&chain(&["small", "big"]), &req(false), None)
        .await
        .unwrap();
    assert_eq!(
        kinds(&out.attempts),
        ["small:invalid_response", "small:invalid_response", "big:ok"]
    );
}

/// With one server, one glitch (a stream cut off after some text, a
/// garbled reply) does not cost the task: the same model is asked again
/// and the listener is told the answer starts over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_glitch_is_retried_on_the_same_model() {
    let truncated = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"half \"},\"finish_reason\":null}]}\n\n";
    let r = rig(vec![Reply::Raw(truncated)], vec![], vec![], breakers()).await;
    let mut seen = Vec::new();
    let mut sink = |ev: StreamEvent<'_>| seen.push(shown(ev));
    let out = r
        .caller
        .call(&chain(&["small"]), &req(true), Some(&mut sink))
        .await
        .unwrap();
    assert_eq!(out.model, "small");
    assert_eq!(kinds(&out.attempts), ["small:stream_broken", "small:ok"]);
    assert_eq!(
        seen[..2],
        ["half ".to_string(), "<restart small->small>".to_string()]
    );
    assert_eq!(r.a.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_length_error_moves_to_a_bigger_window_without_retrying() {
    let r = rig(
        vec![Reply::Status(400, CONTEXT_ERROR, vec![])],
        vec![Reply::Ok("fits")],
        vec![],
        breakers(),
    )
    .await;
    let out = r
        .caller
        .call(&chain(&["small", "big"]), &req(false), None)
        .await
        .unwrap();
    assert_eq!(out.model, "big");
    assert_eq!(r.a.hits(), 1);
    assert_eq!(kinds(&out.attempts), ["small:context_length", "big:ok"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_cool_a_model_down_for_every_caller() {
    let e500 = || {
        Reply::Status(
            500,
            r#"{"error":"CUDA error: an illegal memory access"}"#,
            vec![],
        )
    };
    let r = rig(
        vec![e500(), e500(), e500()],
        vec![],
        vec![],
        Breakers::new(2, Duration::from_secs(60)),
    )
    .await;
    let first = r
        .caller
        .call(&chain(&["small", "big"]), &req(false), None)
        .await
        .unwrap();
    assert_eq!(
        kinds(&first.attempts),
        ["small:server", "small:server", "big:ok"],
        "opened after 2"
    );
    let second = r
        .caller
        .call(&chain(&["small", "big"]), &req(false), None)
        .await
        .unwrap();
    assert_eq!(kinds(&second.attempts), ["small:skipped", "big:ok"]);
    assert_eq!(r.a.hits(), 2, "a cooling model gets no requests");
    // The router sees it too.
    assert!(r.caller.cooling_down("small"));
    let task = TaskInfo {
        title: "x",
        prompt_tokens: 10,
        ..Default::default()
    };
    let d = router::route(r.caller.registry(), &task, Mode::Offline, &r.caller);
    assert!(
        d.skipped
            .iter()
            .any(|s| s.model == "small" && s.why == Skip::CoolingDown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_mode_never_calls_an_online_provider() {
    let e500 = || Reply::Status(500, r#"{"error":"down"}"#, vec![]);
    let r = rig(
        vec![e500(), e500(), e500()],
        vec![e500(), e500(), e500()],
        vec![Reply::Ok("api")],
        breakers(),
    )
    .await;
    let task = TaskInfo {
        title: "x",
        prompt_tokens: 10,
        ..Default::default()
    };
    let d = router::route(r.caller.registry(), &task, Mode::Offline, &r.caller);
    assert_eq!(d.chain, ["small", "big"]);
    assert!(r.caller.call(&d.chain, &req(false), None).await.is_err());
    assert_eq!(r.api.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_stay_out_of_logs_output_and_the_database() {
    let echo = r#"{"error":{"message":"Incorrect API key provided: sk-test-0123456789abcdefSECRET. You can find your API key at https://platform.openai.com."}}"#;
    let a = FakeLlm::start(vec![]).await;
    let b = FakeLlm::start(vec![]).await;
    let api = FakeLlm::start(vec![Reply::Status(401, echo, vec![])]).await;
    let env = Env::new();
    let reg = env.dir.path().join("registry.yaml");
    std::fs::write(&reg, registry_yaml(&a.url, &b.url, &api.url)).unwrap();
    let out = tokio::task::spawn_blocking({
        let mut cmd = env.command();
        cmd.args(["--mode", "online", "chat", "--model", "cloud", "hello"])
            .env("LLMCLIS_REGISTRY", &reg)
            .env("LLMCLIS_TEST_KEY", KEY)
            .env("LLMCLIS_LOG", "debug");
        move || cmd.output().unwrap()
    })
    .await
    .unwrap();
    let run = crate::support::Run::from(out);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(api.hits(), 1);
    assert_eq!(
        api.last_auth().as_deref(),
        Some(format!("Bearer {KEY}").as_str()),
        "the key was sent"
    );
    assert!(
        run.stderr.contains("authentication failed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("[redacted]"), "{}", run.stderr);
    let log = std::fs::read_to_string(env.dir.path().join("data/state/llmclis.log")).unwrap();
    assert!(log.contains("model call"), "the log was written: {log}");
    for (what, text) in [
        ("stdout", &run.stdout),
        ("stderr", &run.stderr),
        ("log", &log),
    ] {
        assert!(
            !text.contains("SECRET"),
            "the key leaked into {what}: {text}"
        );
    }
    for entry in walk(env.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("SECRET"),
            "the key is in {}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn registry_errors_name_file_line_and_column() {
    let base = registry_yaml(
        "http://127.0.0.1:1/v1",
        "http://127.0.0.1:2/v1",
        "https://api.example/v1",
    );
    let cases = [
        (
            base.replacen(
                "max_concurrency: 2, local: true }",
                "max_concurrency: 2, local: true, colour: red }",
                1,
            ),
            "unknown field",
        ),
        (
            base.replacen(
                "provider: b, served_name: b",
                "provider: nope, served_name: b",
                1,
            ),
            "names provider \"nope\", which is not defined",
        ),
        (
            base.replacen("id: big,", "id: small,", 1),
            "model \"small\" is defined twice",
        ),
        (
            base.replacen(
                "  planner: { temperature: 0.3, models: [small, big, cloud] }",
                "  planner: { temperature: 0.3, models: [] }",
                1,
            ),
            "role \"planner\" has no models",
        ),
        (
            base.replacen(
                "models: [small, big, cloud] }\n  coder",
                "models: [small, huge] }\n  coder",
                1,
            ),
            "names model \"huge\"",
        ),
        (
            base.replacen(
                "  - { name: default, role: coder }",
                "  - { name: tests, match: { tags: [test] }, role: tester }",
                1,
            ),
            "a default rule is required",
        ),
        (
            base.replacen("flavour: vllm", "flavour: vlm", 1),
            "unknown flavour \"vlm\"",
        ),
    ];
    for (yaml, expect) in cases {
        let err = Registry::parse(&yaml, "reg.yaml").unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.exit_code(), 2);
        assert!(msg.contains(expect), "{msg}");
        assert!(msg.starts_with("reg.yaml:"), "{msg}");
        if !expect.starts_with("a default rule") {
            let loc: Vec<&str> = msg.splitn(4, ':').collect();
            assert!(
                loc[1].parse::<usize>().unwrap() > 0 && loc[2].parse::<usize>().unwrap() > 0,
                "no line/column: {msg}"
            );
        }
    }
    // The line is the one with the mistake.
    let bad = base.replacen(
        "provider: b, served_name: b",
        "provider: nope, served_name: b",
        1,
    );
    let line = bad
        .lines()
        .position(|l| l.contains("provider: nope"))
        .unwrap()
        + 1;
    let msg = Registry::parse(&bad, "reg.yaml").unwrap_err().to_string();
    assert!(msg.starts_with(&format!("reg.yaml:{line}:")), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_output_skips_models_without_the_capability() {
    let r = rig(
        vec![Reply::Ok("prose")],
        vec![Reply::Ok("{\"ok\":true}")],
        vec![],
        breakers(),
    )
    .await;
    let mut q = req(false);
    q.json_schema = Some(serde_json::json!({"type": "object"}));
    let out = r
        .caller
        .call(&chain(&["small", "big"]), &q, None)
        .await
        .unwrap();
    assert_eq!(kinds(&out.attempts), ["small:skipped", "big:ok"]);
    assert_eq!(r.a.hits(), 0);
}

#[test]
fn an_api_model_is_not_asked_in_offline_mode() {
    let env = Env::new();
    env.run(&["models", "health", "--model", "gpt-4.1"])
        .assert_err(2, &["gpt-4.1 is an API model", "--mode online"]);
    env.run(&["chat", "--model", "claude-sonnet", "hi"])
        .assert_err(2, &["claude-sonnet is an API model"]);
}

#[test]
fn a_bad_registry_file_is_a_usage_error_through_the_cli() {
    let env = Env::new();
    let reg = env.dir.path().join("registry.yaml");
    std::fs::write(&reg, "providers: []\nmodels: []\nroles: {}\nrules: []\nmodes: {offline: {providers: local}, online: {providers: everything}}\n").unwrap();
    env.run(&["--registry", reg.to_str().unwrap(), "models", "list"])
        .assert_err(2, &["registry.yaml"]);
}

/// `models health` is a check: a model that does not answer makes it exit
/// 1, naming the model, after the table.
#[test]
fn models_health_fails_when_a_model_is_down() {
    let env = Env::new();
    let reg = env.dir.path().join("registry.yaml");
    std::fs::write(
        &reg,
        crate::support::one_model_registry(
            "{ name: p, kind: openai-compatible, flavour: llamacpp, base_url: \"http://127.0.0.1:9/v1\", timeout_secs: 2, max_concurrency: 1, local: true }",
            "{ id: gone, provider: p, served_name: gone, context_window: 2048, max_output_tokens: 256 }",
            "gone",
        ),
    )
    .unwrap();
    let r = env.run(&["--registry", reg.to_str().unwrap(), "models", "health"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("gone"),
        "the table still prints: {}",
        r.stdout
    );
    assert!(
        r.stderr.contains("1 of 1 model(s) did not answer") && r.stderr.contains("gone"),
        "{}",
        r.stderr
    );
}

/// In-band errors after a streaming 200, as TGI sends them, are classified
/// like their HTTP status: an overload is retried on the same model (and is
/// the server's state, never the task's fault); a prompt that does not fit
/// moves to a bigger window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_band_errors_are_classified_like_their_status() {
    let overloaded = "data: {\"error\":\"Model is overloaded\",\"error_type\":\"overloaded\"}\n\n";
    let r = rig(vec![Reply::Raw(overloaded)], vec![], vec![], breakers()).await;
    let out = r
        .caller
        .call(&chain(&["small"]), &req(true), None)
        .await
        .unwrap();
    assert_eq!(kinds(&out.attempts), ["small:server", "small:ok"]);
    assert!(out.attempts[0].transient, "a busy server, not the task");

    let too_long = "data: {\"error\":\"Input validation error: `inputs` must have less than 4095 tokens. Given: 5000\",\"error_type\":\"validation\"}\n\n";
    let r = rig(
        vec![Reply::Raw(too_long)],
        vec![Reply::Ok("fits")],
        vec![],
        breakers(),
    )
    .await;
    let out = r
        .caller
        .call(&chain(&["small", "big"]), &req(true), None)
        .await
        .unwrap();
    assert_eq!(out.model, "big");
    assert_eq!(kinds(&out.attempts), ["small:context_length", "big:ok"]);
}

/// A stream event as the tests compare it.
fn shown(ev: StreamEvent<'_>) -> String {
    match ev {
        StreamEvent::Token(t) => t.to_string(),
        StreamEvent::Restart {
            failed_model,
            next_model,
        } => format!("<restart {failed_model}->{next_model}>"),
    }
}

/// A server that refuses connections is asked once per cooldown, not once
/// per call; each refusal in a row doubles the cooldown; and the
/// background watch reopens it as soon as it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_tried_once_per_cooldown_and_reopened_when_seen_up() {
    // A port nothing listens on, yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}/v1");
    let b = FakeLlm::start(vec![]).await;
    let registry = Arc::new(
        Registry::parse(
            &registry_yaml(&dead, &b.url, "http://127.0.0.1:9/v1"),
            "t.yaml",
        )
        .unwrap(),
    );
    let base = Duration::from_millis(300);
    let caller = Caller::new(
        registry.clone(),
        http_client(),
        Arc::new(Breakers::new(3, base)),
    );
    let refused = std::cell::Cell::new(0);
    let call = || async {
        let o = caller
            .call(&chain(&["small", "big"]), &req(false), None)
            .await
            .unwrap();
        refused.set(
            refused.get()
                + o.attempts
                    .iter()
                    .filter(|a| a.model == "small" && a.outcome == "error")
                    .count(),
        );
        o.model
    };
    for _ in 0..10 {
        assert_eq!(call().await, "big");
    }
    assert_eq!(
        refused.get(),
        1,
        "ten calls within the cooldown: one refusal"
    );
    tokio::time::sleep(base + Duration::from_millis(100)).await;
    call().await;
    assert_eq!(refused.get(), 2, "asked again after the cooldown");
    // Refused again: 600 ms now.
    tokio::time::sleep(Duration::from_millis(350)).await;
    call().await;
    assert_eq!(refused.get(), 2, "the second cooldown is twice as long");
    tokio::time::sleep(Duration::from_millis(350)).await;
    call().await;
    assert_eq!(refused.get(), 3);
    // It comes back: 1.2 s of cooldown left, but the watch sees it up.
    let _back = FakeLlm::start_at(port, vec![]).await;
    assert!(caller.cooling_down("small"));
    let watch = llmclis::resources::Watch::new(registry);
    caller.watch_resources(watch.clone());
    watch.refresh().await;
    assert!(!caller.cooling_down("small"), "reopened by the watch");
    assert_eq!(call().await, "small");
}
