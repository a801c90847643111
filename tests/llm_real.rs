//! The model layer against real llama.cpp servers with small real models
//! (`scripts/llama-server start`; README's test command starts them).
//! Without the servers these tests fail when `CI` is set and skip loudly
//! otherwise.

use std::sync::Arc;
use std::time::Duration;

use llmclis::llm::caller::{Breakers, Caller};
use llmclis::llm::{ChatRequest, Message, StreamEvent};
use llmclis::net::http_client;
use llmclis::registry::{Mode, Registry};
use llmclis::router::{self, Skip, TaskInfo};

use crate::support::{Env, servers};

fn registry_yaml(smollm: &str, gemma: &str) -> String {
    let roles: String = llmclis::registry::ROLES
        .iter()
        .map(|r| {
            format!(
                "  {r}: {{ temperature: 0.3, models: [closed-port, gemma-270m, smollm2-135m] }}\n"
            )
        })
        .collect();
    format!(
        r#"providers:
  - {{ name: smol, kind: openai-compatible, flavour: llamacpp, base_url: "{smollm}", timeout_secs: 60, max_concurrency: 1, local: true }}
  - {{ name: gem, kind: openai-compatible, flavour: llamacpp, base_url: "{gemma}", timeout_secs: 60, max_concurrency: 1, local: true }}
  - {{ name: nothing, kind: openai-compatible, flavour: vllm, base_url: "http://127.0.0.1:9/v1", timeout_secs: 2, max_concurrency: 1, local: true }}
models:
  - {{ id: smollm2-135m, provider: smol, served_name: SmolLM2-135M-Instruct, context_window: 2048, max_output_tokens: 256, capabilities: [fast, cheap, json_schema] }}
  - {{ id: gemma-270m, provider: gem, served_name: gemma-3-270m, context_window: 512, max_output_tokens: 128, capabilities: [fast] }}
  - {{ id: closed-port, provider: nothing, served_name: none, context_window: 8192, max_output_tokens: 256 }}
roles:
{roles}rules:
  - {{ name: default, role: writer }}
modes:
  offline: {{ providers: local }}
  online: {{ providers: all }}
"#
    )
}

fn caller(smollm: &str, gemma: &str) -> Caller {
    let registry = Registry::parse(&registry_yaml(smollm, gemma), "real.yaml").unwrap();
    let mut c = Caller::new(
        Arc::new(registry),
        http_client(),
        Arc::new(Breakers::new(3, Duration::from_secs(60))),
    );
    c.retry.base = Duration::from_millis(20);
    c
}

fn ask(prompt: &str, max_tokens: u64) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user(prompt)],
        temperature: 0.0,
        max_tokens,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_model_answers_with_usage() {
    let Some((smollm, gemma, _turn)) = servers() else {
        return;
    };
    let c = caller(&smollm, &gemma);
    let out = c
        .call(
            &["smollm2-135m".into()],
            &ask("Name three primary colours.", 48),
            None,
        )
        .await
        .unwrap();
    let r = &out.response;
    let lower = r.text.to_lowercase();
    let named = ["red", "blue", "yellow"]
        .iter()
        .filter(|c| lower.contains(*c))
        .count();
    assert!(
        named >= 2,
        "an instruction model names the colours: {:?}",
        r.text
    );
    assert!(
        !r.usage.estimated && r.usage.prompt_tokens > 5 && r.usage.completion_tokens > 0,
        "{:?}",
        r.usage
    );
    assert!(matches!(
        r.finish_reason.as_deref(),
        Some("stop" | "length")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_stream_arrives_token_by_token() {
    let Some((smollm, gemma, _turn)) = servers() else {
        return;
    };
    let c = caller(&smollm, &gemma);
    let mut tokens = Vec::new();
    let mut sink = |ev: StreamEvent<'_>| {
        if let StreamEvent::Token(t) = ev {
            tokens.push(t.to_string());
        }
    };
    let mut req = ask("Say hello to the team.", 24);
    req.stream = true;
    let out = c
        .call(&["smollm2-135m".into()], &req, Some(&mut sink))
        .await
        .unwrap();
    assert!(tokens.len() > 3, "{tokens:?} {:?}", out.response);
    assert_eq!(tokens.concat(), out.response.text);
    // llama-cpp-python sends no usage in a stream: estimated, and marked so.
    assert!(out.response.usage.estimated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_output_follows_the_schema() {
    let Some((smollm, gemma, _turn)) = servers() else {
        return;
    };
    let c = caller(&smollm, &gemma);
    let mut req = ask("List three primary colours.", 80);
    req.json_schema = Some(serde_json::json!({
        "type": "object",
        "properties": {"colors": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 3}},
        "required": ["colors"]
    }));
    let out = c.call(&["smollm2-135m".into()], &req, None).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&out.response.text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.response.text));
    assert_eq!(v["colors"].as_array().map(Vec::len), Some(3), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_escalates_past_a_dead_server_and_a_small_window() {
    let Some((smollm, gemma, _turn)) = servers() else {
        return;
    };
    let c = caller(&smollm, &gemma);
    // Short prompt: the dead server is retried, then the next model (Gemma) answers.
    let task = TaskInfo {
        title: "Write a haiku",
        prompt_tokens: 40,
        ..Default::default()
    };
    let d = router::route(c.registry(), &task, Mode::Offline, &c);
    assert_eq!(d.chain, ["closed-port", "gemma-270m", "smollm2-135m"]);
    let out = c
        .call(&d.chain, &ask("The sun rises over", 12), None)
        .await
        .unwrap();
    assert_eq!(out.model, "gemma-270m");
    assert!(
        out.attempts
            .iter()
            .filter(|a| a.model == "closed-port")
            .all(|a| a.error_kind == Some("connect"))
    );
    // A long prompt: Gemma's 512-token window is skipped by the router.
    let long = TaskInfo {
        prompt_tokens: 900,
        ..task
    };
    let d = router::route(c.registry(), &long, Mode::Offline, &c);
    assert!(
        d.skipped
            .iter()
            .any(|s| s.model == "gemma-270m" && matches!(s.why, Skip::ContextTooSmall { .. }))
    );
    assert_eq!(d.chain.last().map(String::as_str), Some("smollm2-135m"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_served_models_come_from_the_servers() {
    let Some((smollm, gemma, _turn)) = servers() else {
        return;
    };
    let c = caller(&smollm, &gemma);
    let h = c.client("smol").unwrap().health().await;
    assert!(h.ok, "{h:?}");
    assert_eq!(h.checked, "/v1/models", "llama-cpp-python has no /health");
    assert_eq!(h.served, ["SmolLM2-135M-Instruct"]);
    let dead = c.client("nothing").unwrap().health().await;
    assert!(!dead.ok && dead.error.is_some());
}

#[test]
fn the_cli_streams_a_real_answer() {
    let Some((smollm, gemma, _turn)) = servers() else {
        return;
    };
    let env = Env::new();
    let reg = env.dir.path().join("registry.yaml");
    std::fs::write(&reg, registry_yaml(&smollm, &gemma)).unwrap();
    let out = env
        .command()
        .args([
            "chat",
            "--model",
            "smollm2-135m",
            "--max-tokens",
            "24",
            "Say hello.",
        ])
        .env("LLMCLIS_REGISTRY", &reg)
        .output()
        .unwrap();
    let run = crate::support::Run::from(out);
    run.assert_ok();
    assert!(run.stdout.trim().len() > 3, "{}", run.stdout);
    assert!(run.stderr.contains("smollm2-135m (smol)"), "{}", run.stderr);
    // An answer cut at --max-tokens says so, and how to get more.
    let cut = crate::support::Run::from(
        env.command()
            .args([
                "chat",
                "--model",
                "smollm2-135m",
                "--max-tokens",
                "2",
                "Write a long story about a lighthouse keeper.",
            ])
            .env("LLMCLIS_REGISTRY", &reg)
            .output()
            .unwrap(),
    );
    cut.assert_ok();
    assert!(
        cut.stderr
            .contains("cut at 2 tokens; raise it with --max-tokens"),
        "{}",
        cut.stderr
    );
    let list = env
        .command()
        .args(["--json", "models", "list"])
        .env("LLMCLIS_REGISTRY", &reg)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let served: Vec<(String, serde_json::Value)> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_string(), m["served"].clone()))
        .collect();
    assert!(
        served.contains(&("smollm2-135m".into(), serde_json::json!(true))),
        "{served:?}"
    );
    assert!(
        served.contains(&("closed-port".into(), serde_json::Value::Null)),
        "{served:?}"
    );
}

/// The real llama.cpp server streaming a long answer: it keeps streaming
/// for longer than the provider's silence limit (`idle_timeout_secs: 2`),
/// which holds only between chunks, so the answer arrives whole. Under the
/// old whole-request deadline it was cut at the limit. (The first byte may
/// wait behind the other tests' requests on the same server, so it gets
/// `timeout_secs: 60`; the streaming time is measured from the first token.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_stream_longer_than_its_silence_limit_is_not_cut() {
    let Some((smollm, gemma, _turn)) = servers() else {
        return;
    };
    // The first provider is smol's.
    let yaml = registry_yaml(&smollm, &gemma).replacen(
        "timeout_secs: 60",
        "timeout_secs: 60, idle_timeout_secs: 2",
        1,
    );
    let registry = Registry::parse(&yaml, "real.yaml").unwrap();
    let c = Caller::new(
        Arc::new(registry),
        http_client(),
        Arc::new(Breakers::new(3, Duration::from_secs(60))),
    );
    let mut req = ask("Write a long story about a dragon and a knight.", 256);
    req.stream = true;
    let mut pieces = 0;
    let mut first: Option<std::time::Instant> = None;
    let mut last: Option<std::time::Instant> = None;
    let mut sink = |ev: StreamEvent<'_>| {
        if let StreamEvent::Token(_) = ev {
            pieces += 1;
            let now = std::time::Instant::now();
            first.get_or_insert(now);
            last = Some(now);
        }
    };
    let out = c
        .call(&["smollm2-135m".into()], &req, Some(&mut sink))
        .await
        .unwrap();
    assert_eq!(out.attempts.len(), 1, "{:?}", out.attempts);
    let streamed = last.unwrap() - first.unwrap();
    assert!(
        streamed > Duration::from_secs(2),
        "the stream must outlast the silence limit to show anything: {streamed:?} for {} tokens",
        out.response.usage.completion_tokens
    );
    assert!(pieces > 20, "{pieces} pieces streamed");
}

/// `models status` and `models unload` against the real llama-cpp-python
/// server: up, holding the model it serves, placed in RAM; an unload is
/// refused with how to get a server that can. (Gemma's server only: a
/// request to llama-cpp-python interrupts the answer it is streaming, and
/// the streaming tests here use SmolLM's.)
#[test]
fn models_status_sees_what_the_real_servers_hold() {
    let Some((_, gemma, _turn)) = servers() else {
        return;
    };
    let env = Env::new();
    let yaml = crate::support::one_model_registry(
        &format!(
            "{{ name: gem, kind: openai-compatible, flavour: llamacpp, base_url: \"{gemma}\", local: true, device: cpu }}"
        ),
        "{ id: gemma-270m, provider: gem, served_name: gemma-3-270m, context_window: 512, max_output_tokens: 128, memory: { weights_gib: 0.25, kv_gib_per_1k: 0.01 } }",
        "gemma-270m",
    );
    let path = env.dir.path().join("real.yaml");
    std::fs::write(&path, yaml).unwrap();
    let reg = path.to_str().unwrap();
    let s = env.json(&["--registry", reg, "models", "status"]);
    let gem = &s["servers"][0];
    assert_eq!(gem["up"], true, "{gem}");
    assert_eq!(gem["device"], "cpu");
    assert_eq!(gem["lists_only"], true, "llama-cpp-python has no /props");
    assert!(!gem["loaded"].as_array().unwrap().is_empty(), "{gem}");
    let m = &s["models"][0];
    assert_eq!(
        (m["id"].as_str(), m["fit"].as_str()),
        (Some("gemma-270m"), Some("loaded")),
        "{m}"
    );
    assert!(s["ram"]["total"].as_u64().unwrap() > 0);
    env.run(&["--registry", reg, "models", "unload", "gemma-270m"])
        .assert_err(
            1,
            &["serves the one model it was started with", "router mode"],
        );
}
