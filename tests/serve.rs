//! `llmclis serve` through clients others wrote: OpenAI's Python library
//! (chat, streams, tools, JSON schema, embeddings) and the MCP Python SDK
//! over Streamable HTTP, against the real binary; scripted upstreams for
//! faults (429, a stream cut after its 200, a client that hangs up); the
//! real llama.cpp server behind it end to end; bad input answered in
//! OpenAI's shapes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::Env;
use crate::support::fake_llm::{FakeLlm, Reply};

/// A running `llmclis serve`, stopped with SIGTERM when dropped.
pub(crate) struct Gateway {
    child: Child,
    pub(crate) url: String,
}

impl Gateway {
    pub(crate) fn start(env: &Env, args: &[&str]) -> Gateway {
        let mut child = env
            .command()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn llmclis serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("serve printed its address")
                .expect("stderr is text");
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Gateway { child, url }
    }

    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.child.wait().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a registry of these providers and models whose roles all use
/// `chain`, with the default rule and both modes.
pub(crate) fn write_registry(env: &Env, chain: &str, providers: &str, models: &str) {
    let roles: String = llmclis::registry::ROLES
        .iter()
        .map(|r| format!("  {r}: {{ models: [{chain}], temperature: 0.2 }}\n"))
        .collect();
    let yaml = format!(
        "providers:\n{providers}models:\n{models}roles:\n{roles}rules:\n  - {{ name: default, role: coder }}\nmodes:\n  offline: {{ providers: local }}\n  online: {{ providers: all }}\n"
    );
    std::fs::create_dir_all(env.config_dir()).unwrap();
    std::fs::write(env.config_dir().join("model_registry.yaml"), yaml).unwrap();
}

/// A registry of two local servers: `first` then `second` for every role.
pub(crate) fn two_servers(env: &Env, first: &str, second: &str) {
    write_registry(
        env,
        "first, second",
        &format!(
            "  - {{ name: one, kind: openai-compatible, flavour: vllm, base_url: '{first}', local: true }}\n  - {{ name: two, kind: openai-compatible, flavour: vllm, base_url: '{second}', local: true }}\n"
        ),
        "  - { id: first, provider: one, served_name: m1, context_window: 8192, max_output_tokens: 1024, capabilities: [json_schema, tools] }\n  - { id: second, provider: two, served_name: m2, context_window: 8192, max_output_tokens: 1024, capabilities: [json_schema, tools] }\n",
    );
}

/// The real SmolLM2 server (llama.cpp) as the registry's one model, and the
/// gateway in front of it with a key for `client`; None (said skipped)
/// without it or the Python clients. Hold `real_servers_lock` first.
pub(crate) fn smollm_behind_gateway(
    client: &str,
) -> Option<(std::path::PathBuf, Env, Gateway, String)> {
    let (Some(python), Ok(url)) = (
        crate::support::py_clients(),
        std::env::var("LLMCLIS_TEST_SMOLLM_URL"),
    ) else {
        crate::support::skipped("no Python clients or no LLMCLIS_TEST_SMOLLM_URL");
        return None;
    };
    let env = Env::new();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    let registry = crate::support::one_model_registry(
        &format!(
            "{{name: local, kind: openai-compatible, flavour: llamacpp, base_url: '{url}', local: true}}"
        ),
        "{id: smollm, provider: local, served_name: smollm, context_window: 2048, max_output_tokens: 256}",
        "smollm",
    );
    std::fs::write(env.config_dir().join("model_registry.yaml"), registry).unwrap();
    let key = new_key(&env, client, &[]);
    let gw = Gateway::start(&env, &[]);
    Some((python, env, gw, key))
}

pub(crate) fn new_key(env: &Env, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["keys", "add", name];
    args.extend_from_slice(extra);
    env.json(&args)["secret"].as_str().unwrap().to_string()
}

pub(crate) fn openai(
    python: &std::path::Path,
    env: &Env,
    gw: &Gateway,
    key: &str,
    steps: Value,
) -> Vec<Value> {
    let out = crate::support::py_client(
        python,
        "openai_calls.py",
        &[&format!("{}/v1", gw.url), key],
        env.vars(),
        &steps,
    );
    out.as_array().unwrap().clone()
}

/// The gateway's call records once there are at least `n` (they are
/// written in batches, just after the answers).
pub(crate) fn recorded(env: &Env, n: usize) -> Vec<llmclis::store::ModelCall> {
    let s = llmclis::store::Store::open(&env.db()).unwrap();
    let began = Instant::now();
    loop {
        let calls = s.gateway_calls(100).unwrap();
        if calls.len() >= n || began.elapsed() > Duration::from_secs(5) {
            return calls;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The response's JSON body, after checking its status.
pub(crate) async fn status_json(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status(), status);
    r.json().await.unwrap()
}

pub(crate) fn ok(r: &Value) -> &Value {
    assert_eq!(r["ok"], true, "{r}");
    &r["value"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_client_chats_streams_calls_tools_and_embeds() {
    let Some(python) = crate::support::py_clients() else {
        return;
    };
    let tool_answer = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":20,"completion_tokens":9}}"#;
    let fake = FakeLlm::start(vec![
        Reply::Ok("Hello from the first model"),
        Reply::Ok("one two three"),
        Reply::Raw(tool_answer),
        Reply::Ok(r#"{"answer": 42}"#),
        Reply::Ok("routed by the rules"),
    ])
    .await;
    let env = Env::new();
    env.run(&["project", "add", "demo"]).assert_ok();
    two_servers(&env, &fake.url, "http://127.0.0.1:9/v1");
    let embed = env.with_memory_config();
    let key = new_key(&env, "continue", &[]);
    let gw = Gateway::start(&env, &[]);

    let user = |t: &str| json!([{"role": "user", "content": t}]);
    let mut steps = vec![
        json!({"op": "models"}),
        json!({"op": "chat", "model": "first", "messages": user("Say hello")}),
        json!({"op": "stream", "model": "llmclis/coder", "messages": user("Count"), "stream_options": {"include_usage": true}}),
        json!({"op": "chat", "model": "first", "messages": user("Weather in Oslo?"), "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]}),
        json!({"op": "chat", "model": "first", "messages": user("The answer?"), "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "properties": {"answer": {"type": "integer"}}}}}}),
        json!({"op": "raw_chat", "model": "llmclis/auto", "messages": user("Route me")}),
        json!({"op": "chat", "model": "gpt-9", "messages": user("x")}),
    ];
    if embed {
        steps.push(json!({"op": "embed", "model": "all-MiniLM-L6-v2-int8", "input": ["a parser", "a queue"]}));
    }
    let r = tokio::task::spawn_blocking({
        let env_vars = env.vars();
        let python = python.clone();
        let url = gw.url.clone();
        let key = key.clone();
        move || {
            crate::support::py_client(
                &python,
                "openai_calls.py",
                &[&format!("{url}/v1"), &key],
                env_vars,
                &json!(steps),
            )
        }
    })
    .await
    .unwrap();
    let r = r.as_array().unwrap();

    let models = ok(&r[0]);
    for want in ["llmclis/auto", "llmclis/coder", "first", "second"] {
        assert!(
            models.as_array().unwrap().iter().any(|m| m == want),
            "{want}: {models}"
        );
    }
    let chat = ok(&r[1]);
    assert_eq!(chat["content"], "Hello from the first model");
    assert_eq!(chat["model"], "first");
    let stream = ok(&r[2]);
    assert_eq!(stream["text"], "one two three");
    assert_eq!(stream["finish_reason"], "stop");
    assert!(stream["chunks"].as_u64().unwrap() >= 4, "{stream}");
    assert!(
        stream["usage"]["completion_tokens"].as_u64().is_some(),
        "{stream}"
    );
    let tools = ok(&r[3]);
    assert_eq!(tools["finish_reason"], "tool_calls");
    assert_eq!(tools["tool_calls"][0]["name"], "get_weather");
    assert_eq!(tools["tool_calls"][0]["arguments"]["city"], "Oslo");
    let json_answer = ok(&r[4]);
    assert_eq!(json_answer["content"], r#"{"answer": 42}"#);
    let routed = ok(&r[5]);
    assert_eq!(routed["headers"]["x-llmclis-model"], "first");
    assert!(
        routed["headers"]["x-llmclis-route"]
            .as_str()
            .unwrap()
            .starts_with("default -> first"),
        "{routed}"
    );
    assert_eq!(routed["headers"]["x-llmclis-client"], "continue");
    assert_eq!(r[6]["error"]["status"], 404, "{}", r[6]);
    assert!(
        r[6]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("llmclis/auto"),
        "{}",
        r[6]
    );
    if embed {
        let e = ok(&r[7]);
        assert_eq!(e["dims"], json!([384, 384]), "{e}");
    }

    // What the upstream was sent: the tools and the schema passed on.
    let sent = fake.requests();
    assert_eq!(sent[2]["tools"][0]["function"]["name"], "get_weather");
    assert!(
        sent[3]["response_format"].to_string().contains("answer"),
        "{}",
        sent[3]
    );
    // Every call is on record under the client's key name.
    let calls = recorded(&env, 5);
    assert_eq!(
        calls.iter().filter(|c| c.outcome == "ok").count(),
        5,
        "{calls:#?}"
    );
    assert!(
        calls
            .iter()
            .all(|c| c.client.as_deref() == Some("continue"))
    );
    drop(gw);
}

/// One gateway on `first` (its replies) and a healthy `second`; the
/// OpenAI client's result for one step.
async fn one_fault(python: &std::path::Path, first: Vec<Reply>, step: Value) -> (Value, FakeLlm) {
    let first = FakeLlm::start(first).await;
    let second = FakeLlm::start(vec![Reply::Ok("the backup answers")]).await;
    let env = Env::new();
    two_servers(&env, &first.url, &second.url);
    let key = new_key(&env, "agent", &[]);
    let gw = Gateway::start(&env, &[]);
    let r = tokio::task::spawn_blocking({
        let (python, vars, url) = (python.to_path_buf(), env.vars(), gw.url.clone());
        move || {
            crate::support::py_client(
                &python,
                "openai_calls.py",
                &[&format!("{url}/v1"), &key],
                vars,
                &json!([step]),
            )
        }
    })
    .await
    .unwrap();
    (r[0].clone(), first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_reach_the_client_as_a_fallback_or_a_clean_error() {
    let Some(python) = crate::support::py_clients() else {
        return;
    };
    let hi = json!([{"role": "user", "content": "hi"}]);
    // vLLM overloaded (its 429): the next model answers, and says so.
    let overloaded = Reply::Status(
        429,
        r#"{"error":{"message":"Too many requests","type":"TooManyRequests","code":429}}"#,
        vec![],
    );
    let (r, _) = one_fault(
        &python,
        vec![overloaded.clone(), overloaded.clone(), overloaded],
        json!({"op": "raw_chat", "model": "llmclis/coder", "messages": hi}),
    )
    .await;
    let fell_back = ok(&r);
    assert_eq!(fell_back["content"], "the backup answers");
    assert_eq!(fell_back["headers"]["x-llmclis-model"], "second");

    // A 500 (vLLM's engine error form), every time: the next model answers.
    let broken = Reply::Status(
        500,
        r#"{"error":{"message":"EngineCore encountered an issue","type":"InternalServerError","param":null,"code":500}}"#,
        vec![],
    );
    let (r, _) = one_fault(
        &python,
        vec![broken.clone(), broken.clone(), broken],
        json!({"op": "chat", "model": "llmclis/coder", "messages": hi}),
    )
    .await;
    assert_eq!(ok(&r)["content"], "the backup answers");
    assert_eq!(ok(&r)["model"], "second");

    // vLLM's stream dies after its 200 (an in-band error event) once text
    // reached the client: a clean error, never a second answer spliced
    // onto half of the first.
    let cut = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Half an \"},\"finish_reason\":null}]}\n\ndata: {\"error\":{\"message\":\"EngineCore encountered an issue\",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}\n\n";
    let (r, first) = one_fault(
        &python,
        vec![Reply::Raw(cut), Reply::Raw(cut)],
        json!({"op": "stream", "model": "llmclis/coder", "messages": hi}),
    )
    .await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["type"], "APIError", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("incomplete"),
        "{r}"
    );
    assert!(first.hits() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_cancels_the_upstream_and_sigterm_finishes_streams() {
    let fake = FakeLlm::start(vec![
        Reply::Slow("a b c d e f g h i j k l", Duration::from_millis(250)),
        Reply::Slow("x y z", Duration::from_millis(300)),
    ])
    .await;
    let env = Env::new();
    two_servers(&env, &fake.url, "http://127.0.0.1:9/v1");
    let mut gw = Gateway::start(&env, &["--no-auth"]);
    let http = llmclis::net::http_client();
    let body =
        json!({"model": "first", "stream": true, "messages": [{"role": "user", "content": "go"}]});

    // Its own client, so its connection goes with it.
    let hang_up = llmclis::net::http_client();
    let mut resp = hang_up
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Hang up once the upstream is streaming (its first word is here).
    let mut seen = String::new();
    while !seen.contains(r#""content":"a "#) {
        let chunk = resp.chunk().await.unwrap().expect("the stream goes on");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);
    drop(hang_up);
    let began = Instant::now();
    while fake.dropped() == 0 && began.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fake.dropped(), 1, "the upstream saw the hang-up");
    let s = llmclis::store::Store::open(&env.db()).unwrap();
    let began = Instant::now();
    while !s
        .gateway_calls(5)
        .unwrap()
        .iter()
        .any(|c| c.outcome == "cancelled")
    {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "the cancel is on record"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SIGTERM while a stream runs: the stream still ends whole.
    let resp = http
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let stopping = tokio::task::spawn_blocking(move || gw.stop());
    let text = resp.text().await.unwrap();
    // Whole: every word the upstream sent, its finish, then [DONE] last; a
    // gateway that cut the stream and closed it itself would miss a word.
    let words: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(
        words, "x y z",
        "the stream in flight finished whole: {text}"
    );
    assert!(
        text.contains(r#""finish_reason":"stop""#) && text.trim_end().ends_with("data: [DONE]"),
        "{text}"
    );
    assert!(stopping.await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_an_answer_in_the_apis_shape() {
    let fake = FakeLlm::start(vec![Reply::Ok("fine")]).await;
    let env = Env::new();
    two_servers(&env, &fake.url, "http://127.0.0.1:9/v1");
    // No keys: serve refuses to start without --no-auth, and --no-auth off
    // loopback.
    let r = env.run(&["serve", "--listen", "127.0.0.1:0"]);
    r.assert_err(2, &["llmclis keys add"]);
    let r = env.run(&["serve", "--listen", "0.0.0.0:0", "--no-auth"]);
    r.assert_err(2, &["only on a loopback address"]);

    let key = new_key(&env, "busy", &["--rpm", "3"]);
    let broke = new_key(&env, "broke", &["--budget-usd", "0"]);
    let gw = Gateway::start(&env, &["--max-body-mib", "1"]);
    let http = llmclis::net::http_client();
    let post = |path: &str, k: &str, body: String| {
        http.post(format!("{}{path}", gw.url))
            .bearer_auth(k)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = post("/v1/chat/completions", "wrong", "{}".into())
        .await
        .unwrap();
    let e = status_json(r, 401).await;
    assert_eq!(e["error"]["type"], "authentication_error", "{e}");

    let r = post(
        "/v1/chat/completions",
        &key,
        r#"{"model": "first", "messages": [{"role": "user"}"#.into(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = post(
        "/v1/chat/completions",
        &key,
        r#"{"messages": [{"role": "user", "content": "x"}]}"#.into(),
    )
    .await
    .unwrap();
    let e = status_json(r, 400).await;
    assert_eq!(e["error"]["param"], "model", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing field `model`"),
        "{e}"
    );

    let r = post(
        "/v1/chat/completions",
        &key,
        json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}).to_string(),
    )
    .await
    .unwrap();
    let e = status_json(r, 404).await;
    assert_eq!(e["error"]["param"], "model", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("llmclis/auto, llmclis/planner"),
        "{e}"
    );
    // The fourth request in a minute is over the key's rate.
    let r = post(
        "/v1/chat/completions",
        &key,
        json!({"model": "first", "messages": [{"role": "user", "content": "x"}]}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 429, "the rate was spent");
    assert!(r.headers().get("retry-after").is_some());
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "rate_limit_error", "{e}");

    let r = post(
        "/v1/chat/completions",
        &broke,
        json!({"model": "first", "messages": [{"role": "user", "content": "x"}]}).to_string(),
    )
    .await
    .unwrap();
    // A zero budget is spent before the first call.
    let e = status_json(r, 429).await;
    assert_eq!(e["error"]["type"], "insufficient_quota", "{e}");

    let other = new_key(&env, "big", &[]);
    let r = post(
        "/v1/messages",
        &other,
        json!({"model": "nope", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
            .to_string(),
    )
    .await
    .unwrap();
    let e = status_json(r, 404).await;
    assert_eq!(
        (e["type"].as_str(), e["error"]["type"].as_str()),
        (Some("error"), Some("not_found_error")),
        "{e}"
    );

    // Last: the server closes a connection whose body it did not read.
    let big = format!(
        r#"{{"model": "first", "messages": [{{"role": "user", "content": "{}"}}]}}"#,
        "x".repeat(2 << 20)
    );
    let r = post("/v1/chat/completions", &other, big).await.unwrap();
    let e = status_json(r, 413).await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-body-mib"),
        "{e}"
    );

    // A new connection: the server closed the one the big body came on.
    let fresh = llmclis::net::http_client();
    let health: Value = fresh
        .get(format!("{}/health", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["ok"], true);
    let metrics = fresh
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"llmclis_limited_total{client="busy",limit="rpm"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"status="413"}"#), "{metrics}");
    // Nothing was called upstream, and nothing half-recorded.
    assert_eq!(fake.hits(), 0);
    let s = llmclis::store::Store::open(&env.db()).unwrap();
    assert!(s.gateway_calls(10).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_clients_get_messages_and_events() {
    let fake = FakeLlm::start(vec![Reply::Ok("Bonjour"), Reply::Ok("un deux")]).await;
    let env = Env::new();
    two_servers(&env, &fake.url, "http://127.0.0.1:9/v1");
    let key = new_key(&env, "claude", &[]);
    let gw = Gateway::start(&env, &[]);
    let http = llmclis::net::http_client();
    let body = json!({"model": "llmclis/writer", "max_tokens": 50, "system": "Be brief.",
                      "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello in French"}]}]});
    let r: Value = http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["type"], "message", "{r}");
    assert_eq!(r["content"][0]["text"], "Bonjour");
    assert_eq!(r["stop_reason"], "end_turn");
    let sent = &fake.requests()[0];
    assert_eq!(sent["messages"][0]["role"], "system", "{sent}");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .json(&streamed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"message_start"), "{text}");
    assert_eq!(events.last(), Some(&"message_stop"), "{text}");
    assert!(events.contains(&"content_block_delta"), "{text}");
    assert!(text.contains("un ") && text.contains("deux"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_over_http_with_the_official_python_sdk() {
    let Some(python) = crate::support::py_clients() else {
        return;
    };
    let env = Env::new();
    env.with_seed_plans();
    two_servers(&env, "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1");
    let key = new_key(&env, "remote-agent", &[]);
    let gw = Gateway::start(&env, &[]);
    let calls = json!([
        {"tool": "project_list"},
        {"tool": "task_next", "args": {"project_id": 1}},
        {"tool": "task_note", "args": {"id": "S1.1", "text": "taken over HTTP", "project_id": 1}},
    ]);
    let out = tokio::task::spawn_blocking({
        let (python, vars, url, key) = (python.clone(), env.vars(), gw.url.clone(), key.clone());
        move || {
            crate::support::py_client(
                &python,
                "mcp_calls.py",
                &["http", &format!("{url}/mcp"), &key],
                vars,
                &calls,
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(out["server"], "llmclis");
    // The same tools as over stdio: the library's whole list, by name.
    let mut over_http: Vec<String> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    let mut all: Vec<String> = llmclis::mcp::tools::all()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    over_http.sort();
    all.sort();
    assert_eq!(over_http, all);
    let results = out["results"].as_array().unwrap();
    assert!(
        results.iter().all(|r| r["is_error"] == false),
        "{results:?}"
    );
    let task: Value = serde_json::from_str(results[1]["text"].as_str().unwrap()).unwrap();
    assert_eq!(task["status"], "in-progress");
    // Without the key, MCP is refused like the API.
    let r = llmclis::net::http_client()
        .post(format!("{}/mcp", gw.url))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let plans = std::fs::read_to_string(env.dir.path().join("plans.md")).unwrap();
    assert!(plans.contains("taken over HTTP"));
}

/// The whole path on the real llama.cpp server: OpenAI's client, the
/// gateway, the router, SmolLM2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_llama_server_answers_through_the_gateway() {
    let _turn = crate::support::real_servers_lock();
    let Some((python, env, gw, key)) = smollm_behind_gateway("e2e") else {
        return;
    };
    let steps = json!([
        {"op": "chat", "model": "llmclis/auto", "messages": [{"role": "user", "content": "Name a color."}], "max_tokens": 16},
        {"op": "stream", "model": "smollm", "messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 24},
    ]);
    let r = openai(&python, &env, &gw, &key, steps);
    let chat = ok(&r[0]);
    assert!(!chat["content"].as_str().unwrap().is_empty(), "{chat}");
    assert!(chat["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let stream = ok(&r[1]);
    assert!(stream["chunks"].as_u64().unwrap() > 3, "{stream}");
    assert_eq!(recorded(&env, 2).len(), 2);
}

/// A client that names a replicated model (not a replica) gets its replicas
/// balanced, each the other's fallback; `/v1/models` lists the model once
/// and each replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_model_is_balanced_over_its_replicas_through_the_gateway() {
    // `a` answers twice, then fails as vLLM does when its engine died.
    let dead = Reply::Status(
        500,
        r#"{"error":{"message":"EngineCore encountered an issue","type":"InternalServerError","code":500}}"#,
        vec![],
    );
    let a = FakeLlm::start(vec![
        Reply::Ok("a"),
        Reply::Ok("a"),
        dead.clone(),
        dead.clone(),
        dead.clone(),
        dead.clone(),
        dead.clone(),
        dead,
    ])
    .await;
    let b = FakeLlm::start(vec![]).await;
    let env = Env::new();
    let roles: String = llmclis::registry::ROLES
        .iter()
        .map(|r| format!("  {r}: {{ models: [m], temperature: 0.2 }}\n"))
        .collect();
    let yaml = format!(
        "providers:\n  - {{ name: one, kind: openai-compatible, flavour: vllm, base_url: '{}', local: true }}\n  - {{ name: two, kind: openai-compatible, flavour: vllm, base_url: '{}', local: true }}\nmodels:\n  - {{ id: m, provider: [one, two], served_name: m1, context_window: 8192, max_output_tokens: 1024 }}\nroles:\n{roles}rules:\n  - {{ name: default, role: coder }}\nmodes:\n  offline: {{ providers: local }}\n  online: {{ providers: all }}\n",
        a.url, b.url
    );
    std::fs::create_dir_all(env.config_dir()).unwrap();
    std::fs::write(env.config_dir().join("model_registry.yaml"), yaml).unwrap();
    let gw = Gateway::start(&env, &["--no-auth"]);
    let http = llmclis::net::http_client();
    let models = status_json(
        http.get(format!("{}/v1/models", gw.url))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .filter(|id| id.starts_with('m'))
        .collect();
    assert_eq!(ids, ["m", "m@one", "m@two"], "{models}");
    let ask_m = || async {
        let r = http
            .post(format!("{}/v1/chat/completions", gw.url))
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        status_json(r, 200).await
    };
    for _ in 0..4 {
        ask_m().await;
    }
    assert_eq!(
        (a.hits(), b.hits()),
        (2, 2),
        "one request at a time takes turns"
    );
    // One replica failing: the other answers every request.
    for _ in 0..3 {
        ask_m().await;
    }
    assert_eq!(b.hits(), 5);
}
