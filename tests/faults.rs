//! Each server flavour's real faults, as its own source presents them
//! (status codes, in-band SSE error events after a 200, loading windows,
//! overload answers, window refusals), against the caller: what llmclis
//! does and how many requests it takes. The table is printed with
//! `cargo test faults -- --nocapture`; docs/orchestrator.md's fault table is this one.

use std::sync::Arc;
use std::time::Duration;

use llmclis::llm::caller::{Breakers, CallFailed, CallOutcome, Caller, RetryPolicy};
use llmclis::llm::{ChatRequest, Message};
use llmclis::net::http_client;
use llmclis::registry::Registry;

use crate::support::fake_llm::{FakeLlm, Reply};

/// What the caller is expected to end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The primary answered after retrying.
    Done,
    /// The backup (a bigger window) answered.
    FellBack,
    /// Nobody answered and a server's fault stood in the way: the
    /// orchestrator puts the task back in the queue and exits 1.
    Released,
}

/// The primary server as a case starts it.
enum Server {
    Scripted(Vec<Reply>),
    Window(Vec<Reply>, u64),
    Loading(Duration),
    Down,
}

struct Case {
    flavour: &'static str,
    fault: &'static str,
    server: Server,
    stream: bool,
    /// Ask the backup after the primary.
    backup: bool,
    outcome: Outcome,
    /// Chat requests the primary saw.
    requests: usize,
}

fn registry(flavour: &str, primary: &str, backup: &str) -> String {
    let roles: String = llmclis::registry::ROLES
        .iter()
        .map(|r| format!("  {r}: {{ temperature: 0.3, models: [p, b] }}\n"))
        .collect();
    let provider = match flavour {
        // The fake server takes any key; HOME is set wherever tests run.
        "anthropic" => {
            format!(
                r#"{{ name: p, kind: anthropic, base_url: "{primary}", api_key_env: HOME, timeout_secs: 3, local: false }}"#
            )
        }
        f => format!(
            r#"{{ name: p, kind: openai-compatible, flavour: {f}, base_url: "{primary}", timeout_secs: 3, idle_timeout_secs: 5, local: true }}"#
        ),
    };
    format!(
        r#"providers:
  - {provider}
  - {{ name: b, kind: openai-compatible, flavour: vllm, base_url: "{backup}", local: true }}
models:
  - {{ id: p, provider: p, served_name: fake-model, context_window: 8192, max_output_tokens: 4096 }}
  - {{ id: b, provider: b, served_name: fake-model, context_window: 32768, max_output_tokens: 4096 }}
roles:
{roles}rules:
  - {{ name: default, role: coder }}
modes:
  offline: {{ providers: all }}
  online: {{ providers: all }}
"#
    )
}

/// Anthropic's stream of one short answer (its Messages streaming events).
const ANTHROPIC_STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"fine\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":1}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn cases() -> Vec<Case> {
    use Outcome::*;
    let case = |flavour, fault, server, outcome, requests| Case {
        flavour,
        fault,
        server,
        stream: false,
        backup: false,
        outcome,
        requests,
    };
    let streamed = |c: Case| Case { stream: true, ..c };
    let with_backup = |c: Case| Case { backup: true, ..c };
    let status = |code, body| Reply::Status(code, body, vec![]);
    vec![
        case(
            "vllm",
            "400 'max_tokens' too large for --max-model-len",
            Server::Window(vec![], 2048),
            Done,
            2,
        ),
        streamed(case(
            "vllm",
            "in-band error event after the 200 (code 500)",
            Server::Scripted(vec![Reply::Raw(
                "data: {\"error\":{\"message\":\"EngineCore encountered an issue\",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}\n\n",
            )]),
            Done,
            2,
        )),
        with_backup(streamed(case(
            "vllm",
            "hung: no first token within timeout_secs",
            Server::Scripted(vec![Reply::Hang(Duration::from_secs(10))]),
            FellBack,
            1,
        ))),
        streamed(case(
            "vllm",
            "slow healthy stream, longer than timeout_secs",
            Server::Scripted(vec![Reply::Slow(
                "a b c d e f g h i j k l m n",
                Duration::from_millis(300),
            )]),
            Done,
            1,
        )),
        case(
            "tgi",
            "429 \"Model is overloaded\" (queue full)",
            Server::Scripted(vec![status(
                429,
                r#"{"error":"Model is overloaded","error_type":"overloaded"}"#,
            )]),
            Done,
            2,
        ),
        // TGI's chat stream says every error as `{"error": {"message",
        // "http_status_code": 422}}` (`InferError::into_openai_event`).
        streamed(case(
            "tgi",
            "in-band \"Model is overloaded\" after the 200",
            Server::Scripted(vec![Reply::Raw(
                "data: {\"error\":{\"message\":\"Model is overloaded\",\"http_status_code\":422}}\n\n",
            )]),
            Done,
            2,
        )),
        streamed(case(
            "tgi",
            "in-band \"Incomplete generation stream\"",
            Server::Scripted(vec![Reply::Raw(
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"par\"},\"finish_reason\":null}]}\n\ndata: {\"error\":{\"message\":\"Incomplete generation stream\",\"http_status_code\":422}}\n\n",
            )]),
            Done,
            2,
        )),
        streamed(case(
            "tgi",
            "in-band validation: inputs + max_new_tokens too many",
            Server::Scripted(vec![Reply::Raw(
                "data: {\"error\":{\"message\":\"Input validation error: `inputs` tokens + `max_new_tokens` must be <= 2048. Given: 12 `inputs` tokens and 4000 `max_new_tokens`\",\"http_status_code\":422}}\n\n",
            )]),
            Done,
            2,
        )),
        with_backup(case(
            "tgi",
            "429 overloaded, a healthy backup",
            Server::Scripted(vec![status(
                429,
                r#"{"error":"Model is overloaded","error_type":"overloaded"}"#,
            )]),
            FellBack,
            1,
        )),
        case(
            "tgi",
            "422 inputs + max_new_tokens over max_total_tokens",
            Server::Scripted(vec![status(
                422,
                r#"{"error":"Input validation error: `inputs` tokens + `max_new_tokens` must be <= 2048. Given: 12 `inputs` tokens and 4000 `max_new_tokens`","error_type":"validation"}"#,
            )]),
            Done,
            2,
        ),
        case(
            "tgi",
            "429 overloaded for longer than the busy budget",
            Server::Scripted(
                (0..100)
                    .map(|_| {
                        status(
                            429,
                            r#"{"error":"Model is overloaded","error_type":"overloaded"}"#,
                        )
                    })
                    .collect(),
            ),
            Released,
            // One quick retry, then at least one more round.
            3,
        ),
        case(
            "ollama",
            "503 \"server busy\" (OLLAMA_MAX_QUEUE)",
            Server::Scripted(vec![status(
                503,
                r#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#,
            )]),
            Done,
            2,
        ),
        // Ollama streams NDJSON; an error after content is one more line
        // `{"error": …}` with no status (server/routes.go streamResponse).
        streamed(case(
            "ollama",
            "in-stream {\"error\"} line after content (runner crash)",
            Server::Scripted(vec![Reply::Raw(
                "{\"model\":\"fake-model\",\"message\":{\"role\":\"assistant\",\"content\":\"par\"},\"done\":false}\n{\"error\":\"an error was encountered while running the model: unexpected EOF\"}\n",
            )]),
            Done,
            2,
        )),
        streamed(case(
            "ollama",
            "NDJSON stream ends without done",
            Server::Scripted(vec![Reply::Raw(
                "{\"model\":\"fake-model\",\"message\":{\"role\":\"assistant\",\"content\":\"par\"},\"done\":false}\n",
            )]),
            Done,
            2,
        )),
        streamed(case(
            "ollama",
            "500 \"model runner has unexpectedly stopped\"",
            Server::Scripted(vec![status(
                500,
                r#"{"error":"model runner has unexpectedly stopped, this may be due to resource limitations or an internal error, check ollama server logs for details"}"#,
            )]),
            Done,
            2,
        )),
        case(
            "vllm",
            "500 on every request, no backup",
            Server::Scripted(
                (0..10)
                    .map(|_| {
                        status(
                            500,
                            r#"{"error":{"message":"EngineCore encountered an issue","type":"InternalServerError","param":null,"code":500}}"#,
                        )
                    })
                    .collect(),
            ),
            Released,
            2,
        ),
        case(
            "openai",
            "401 invalid_api_key",
            Server::Scripted(vec![status(
                401,
                r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            )]),
            Released,
            1,
        ),
        case(
            "llamacpp",
            "503 \"Loading model\" for 1.5 s, /v1/models answering",
            Server::Loading(Duration::from_millis(1500)),
            Done,
            2,
        ),
        with_backup(case(
            "llamacpp",
            "400 exceed_context_size_error",
            Server::Scripted(vec![status(
                400,
                r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":9000,"n_ctx":8192}}"#,
            )]),
            FellBack,
            1,
        )),
        case(
            "llamacpp",
            "connection refused (server down)",
            Server::Down,
            Released,
            0,
        ),
        case(
            "openai",
            "429 with Retry-After: 1",
            Server::Scripted(vec![Reply::Status(
                429,
                r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
                vec![("retry-after", "1")],
            )]),
            Done,
            2,
        ),
        case(
            "anthropic",
            "529 overloaded_error",
            Server::Scripted(vec![status(
                529,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            )]),
            Done,
            2,
        ),
        streamed(case(
            "anthropic",
            "in-band overloaded_error event after the 200",
            Server::Scripted(vec![
                Reply::Raw(
                    "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
                ),
                Reply::Raw(ANTHROPIC_STREAM),
            ]),
            Done,
            2,
        )),
    ]
}

async fn run(case: Case) -> (Result<CallOutcome, CallFailed>, usize) {
    let (primary, url) = match case.server {
        Server::Scripted(s) => {
            let f = FakeLlm::start(s).await;
            let url = f.url.clone();
            (Some(f), url)
        }
        Server::Window(s, w) => {
            let f = FakeLlm::with_window(s, w).await;
            let url = f.url.clone();
            (Some(f), url)
        }
        Server::Loading(d) => {
            let f = FakeLlm::loading(d).await;
            let url = f.url.clone();
            (Some(f), url)
        }
        Server::Down => (None, "http://127.0.0.1:9/v1".to_string()),
    };
    let backup = FakeLlm::start(vec![]).await;
    let registry = Registry::parse(&registry(case.flavour, &url, &backup.url), "faults.yaml")
        .expect("the case's registry parses");
    let mut caller = Caller::new(
        Arc::new(registry),
        http_client(),
        Arc::new(Breakers::new(3, Duration::from_secs(60))),
    );
    caller.retry = RetryPolicy {
        attempts: RetryPolicy::default().attempts,
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
        max_wait: Duration::from_secs(5),
        busy_budget: Duration::from_secs(4),
    };
    let chain: Vec<String> = if case.backup {
        vec!["p".into(), "b".into()]
    } else {
        vec!["p".into()]
    };
    let req = ChatRequest {
        messages: vec![Message::user("Say fine.")],
        temperature: 0.2,
        max_tokens: 4000,
        stream: case.stream,
        ..Default::default()
    };
    let result = if case.stream {
        let mut sink = |_: llmclis::llm::StreamEvent<'_>| {};
        caller.call(&chain, &req, Some(&mut sink)).await
    } else {
        caller.call(&chain, &req, None).await
    };
    (result, primary.map_or(0, |p| p.hits()))
}

/// Every flavour × fault ends as the table says, with the request count it
/// says: retried and done, fell back, or released (never a blocked task).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flavour_and_fault_ends_as_the_table_says() {
    let mut table = vec![format!(
        "| {:<9} | {:<52} | {:<10} | {:>8} | {} |",
        "server", "fault", "outcome", "requests", "attempts"
    )];
    let mut wrong = Vec::new();
    let runs = cases().into_iter().map(|c| async move {
        let (flavour, fault, want, want_requests) = (c.flavour, c.fault, c.outcome, c.requests);
        let (result, requests) = run(c).await;
        (flavour, fault, want, want_requests, result, requests)
    });
    for (flavour, fault, want, want_requests, result, requests) in
        futures_util::future::join_all(runs).await
    {
        let (got, attempts) = match &result {
            Ok(o) if o.model == "p" => (Outcome::Done, &o.attempts),
            Ok(o) => (Outcome::FellBack, &o.attempts),
            Err(f) if f.server_fault() => (Outcome::Released, &f.attempts),
            Err(f) => {
                wrong.push(format!("{flavour} / {fault}: failed for good: {f}"));
                continue;
            }
        };
        let kinds: Vec<String> = attempts
            .iter()
            .map(|a| format!("{}:{}", a.model, a.error_kind.unwrap_or(a.outcome)))
            .collect();
        let kinds = if kinds.len() > 4 {
            format!(
                "{} … {} ({} tries)",
                kinds[0],
                kinds[kinds.len() - 1],
                kinds.len()
            )
        } else {
            kinds.join(" ")
        };
        table.push(format!(
            "| {flavour:<9} | {fault:<52} | {:<10} | {requests:>8} | {kinds} |",
            format!("{got:?}")
        ));
        // A busy server is asked again each round; how many rounds fit the
        // budget depends on timing, so that count is a floor.
        let count_ok = if want == Outcome::Released && want_requests > 0 {
            requests >= want_requests
        } else {
            requests == want_requests
        };
        if got != want || !count_ok {
            wrong.push(format!(
                "{flavour} / {fault}: {got:?} after {requests} request(s), expected {want:?} after {want_requests}: {kinds}"
            ));
        }
    }
    println!("{}", table.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The windows servers report are used: vLLM's `max_model_len`, TGI's
/// `max_total_tokens`, llama.cpp's `n_ctx`; the first request then fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_come_from_the_server() {
    for flavour in ["vllm", "tgi", "llamacpp"] {
        let server = FakeLlm::with_window(vec![], 2048).await;
        let backup = FakeLlm::start(vec![]).await;
        let registry =
            Registry::parse(&registry(flavour, &server.url, &backup.url), "w.yaml").unwrap();
        let caller = Caller::new(
            Arc::new(registry),
            http_client(),
            Arc::new(Breakers::new(3, Duration::from_secs(60))),
        );
        let found = caller.learn_windows().await;
        assert_eq!(found.len(), 1, "{flavour}: {found:?}");
        assert_eq!((found[0].registry, found[0].server), (8192, 2048));
        let req = ChatRequest {
            messages: vec![Message::user("Say fine.")],
            max_tokens: 4000,
            ..Default::default()
        };
        let out = caller.call(&["p".to_string()], &req, None).await.unwrap();
        assert_eq!(out.attempts.len(), 1, "{flavour}: the first request fits");
        let asked = server.requests()[0]["max_tokens"].as_u64().unwrap();
        assert!(asked < 2048, "{flavour}: asked for {asked}");
    }
}

/// `models list` and `doctor` say when a server runs a smaller window than
/// the registry (vLLM started with `--max-model-len 2048`), and the fix.
#[test]
fn doctor_and_models_list_report_a_smaller_server_window() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(FakeLlm::with_window(vec![], 2048));
    let env = crate::support::Env::new();
    let reg = env.one_model_registry(
            &format!(
                "{{ name: v, kind: openai-compatible, flavour: vllm, base_url: \"{}\", local: true }}",
                server.url
            ),
            "{ id: qwen, provider: v, served_name: fake-model, context_window: 32768, max_output_tokens: 8192 }",
            "qwen",
    );
    let reg = reg.as_str();
    let list = env.run(&["--registry", reg, "models", "list"]);
    list.assert_ok();
    assert!(
        list.stdout.contains("2048*")
            && list
                .stdout
                .contains("qwen: the server runs a 2048-token window, the registry says 32768"),
        "{}",
        list.stdout
    );
    let doctor = env.run(&["--registry", reg, "doctor"]);
    let all = format!("{}{}", doctor.stdout, doctor.stderr);
    assert!(
        all.contains("its server runs a 2048-token window; the registry says 32768")
            && all.contains("set context_window: 2048 for qwen"),
        "{all}"
    );
}
