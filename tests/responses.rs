//! The gateway for today's clients, through the clients themselves: OpenAI's
//! Python library on the Responses API (plain, streamed, function calls,
//! `previous_response_id`, kept responses) against an upstream that speaks
//! only Chat Completions, scripted and the real llama.cpp server; and
//! Anthropic's Python library counting tokens and making a cached-prompt
//! call whose cache tokens come back, are recorded and are priced.

use serde_json::{Value, json};

use crate::serve::{Gateway, new_key, ok, openai, recorded, two_servers};
use crate::support::Env;
use crate::support::fake_llm::{COUNTED_TOKENS, FakeLlm, Reply};

/// Runs the OpenAI client's steps off the runtime (the fake upstream runs
/// on it).
async fn openai_off(
    python: &std::path::Path,
    env: &Env,
    gw: &Gateway,
    key: &str,
    steps: Value,
) -> Vec<Value> {
    let (python, vars, url, key) = (
        python.to_path_buf(),
        env.vars(),
        gw.url.clone(),
        key.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        crate::support::py_client(
            &python,
            "openai_calls.py",
            &[&format!("{url}/v1"), &key],
            vars,
            &steps,
        )
        .as_array()
        .unwrap()
        .clone()
    })
    .await
    .unwrap()
}

const WEATHER: &str = r#"{"city":"Oslo"}"#;

fn weather_tool() -> Value {
    json!([{"type": "function", "name": "get_weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_client_speaks_the_responses_api_to_a_chat_completions_upstream() {
    let Some(python) = crate::support::py_clients() else {
        return;
    };
    let fake = FakeLlm::start(vec![
        Reply::Ok("Hello from responses"),
        Reply::Ok("one two three"),
        Reply::ToolCall("call_7", "get_weather", WEATHER),
        Reply::ToolCall("call_8", "get_weather", WEATHER),
        Reply::Ok("Remember: the word is heron"),
        Reply::Ok("heron"),
        Reply::Ok("It is 4 C in Oslo"),
    ])
    .await;
    let env = Env::new();
    two_servers(&env, &fake.url, "http://127.0.0.1:9/v1");
    let key = new_key(&env, "codex", &[]);
    let gw = Gateway::start(&env, &[]);
    let steps = json!([
        {"op": "responses", "model": "first", "input": "Say hello", "instructions": "Be terse."},
        {"op": "responses_stream", "model": "llmclis/coder", "input": [{"role": "user", "content": [{"type": "input_text", "text": "Count"}]}]},
        {"op": "responses", "model": "first", "input": "Weather in Oslo?", "tools": weather_tool()},
        {"op": "responses_stream", "model": "first", "input": "Weather in Oslo, streamed?", "tools": weather_tool()},
        {"op": "responses_chain", "first": {"model": "first", "input": "The word is heron. Remember it."},
                                  "second": {"model": "first", "input": "What was the word?"}},
        {"op": "responses", "model": "first", "tools": weather_tool(), "input": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"type": "function_call", "call_id": "call_7", "name": "get_weather", "arguments": WEATHER},
            {"type": "function_call_output", "call_id": "call_7", "output": "4 C"}]},
        {"op": "responses", "model": "first", "input": "x", "previous_response_id": "resp_nobody"},
        {"op": "responses", "model": "first", "input": [{"type": "input_image", "image_url": "x"}]},
    ]);
    let r = openai_off(&python, &env, &gw, &key, steps).await;

    let plain = ok(&r[0]);
    assert_eq!(plain["output_text"], "Hello from responses", "{plain}");
    assert_eq!(plain["status"], "completed");
    assert_eq!(plain["model"], "first");
    assert!(
        plain["id"].as_str().unwrap().starts_with("resp_"),
        "{plain}"
    );
    assert!(
        plain["usage"]["input_tokens"].as_u64().unwrap() > 0,
        "{plain}"
    );

    let streamed = ok(&r[1]);
    let types: Vec<&str> = streamed["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"response.created"), "{types:?}");
    assert_eq!(types.last(), Some(&"response.completed"), "{types:?}");
    assert!(
        types
            .iter()
            .filter(|t| **t == "response.output_text.delta")
            .count()
            >= 3,
        "{types:?}"
    );
    for t in [
        "response.output_item.added",
        "response.output_text.done",
        "response.output_item.done",
    ] {
        assert!(types.contains(&t), "{t}: {types:?}");
    }
    assert_eq!(streamed["text"], "one two three");
    assert_eq!(
        streamed["final"]["output_text"], "one two three",
        "{streamed}"
    );

    let tools = ok(&r[2]);
    assert_eq!(tools["types"], json!(["function_call"]), "{tools}");
    assert_eq!(tools["calls"][0]["name"], "get_weather");
    assert_eq!(tools["calls"][0]["call_id"], "call_7");
    assert_eq!(tools["calls"][0]["arguments"]["city"], "Oslo");

    let streamed_tools = ok(&r[3]);
    let types = streamed_tools["types"].to_string();
    assert!(
        types.contains("response.function_call_arguments.delta"),
        "{types}"
    );
    assert!(
        types.contains("response.function_call_arguments.done"),
        "{types}"
    );
    assert_eq!(
        streamed_tools["final"]["calls"][0]["arguments"]["city"], "Oslo",
        "{streamed_tools}"
    );

    let chain = ok(&r[4]);
    assert_eq!(chain["second"]["output_text"], "heron", "{chain}");

    let answered = ok(&r[5]);
    assert_eq!(answered["output_text"], "It is 4 C in Oslo", "{answered}");

    // A response not kept for this key, and input that cannot be served:
    // the client's 400s, naming the field.
    assert_eq!(r[6]["error"]["status"], 400, "{}", r[6]);
    assert!(
        r[6]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("previous_response_id"),
        "{}",
        r[6]
    );
    assert_eq!(r[7]["error"]["status"], 400, "{}", r[7]);
    assert!(
        r[7]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input_image"),
        "{}",
        r[7]
    );

    // What the Chat Completions upstream was asked.
    let sent = fake.requests();
    assert_eq!(sent.len(), 7, "the refused requests reached no model");
    assert_eq!(
        sent[0]["messages"][0],
        json!({"role": "system", "content": "Be terse."})
    );
    assert_eq!(sent[1]["stream"], true);
    assert_eq!(
        sent[2]["tools"][0]["function"]["name"], "get_weather",
        "{}",
        sent[2]
    );
    // The continued conversation: the first turn, its answer, then the new
    // question (the first's instructions are not carried, as OpenAI does).
    let continued: Vec<(String, String)> = sent[5]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        continued,
        [
            (
                "user".to_string(),
                "The word is heron. Remember it.".to_string()
            ),
            ("assistant".into(), "Remember: the word is heron".into()),
            ("user".into(), "What was the word?".into()),
        ]
    );
    let with_result = &sent[6]["messages"];
    assert_eq!(
        with_result[1]["tool_calls"][0]["id"], "call_7",
        "{with_result}"
    );
    assert_eq!(with_result[2]["role"], "tool");
    assert_eq!(with_result[2]["tool_call_id"], "call_7");
    assert_eq!(with_result[2]["content"], "4 C");

    // Kept responses: read back, deleted, then gone; another key sees none.
    let id = chain["second"]["id"].as_str().unwrap().to_string();
    let other = new_key(&env, "other", &[]);
    let theirs = openai_off(
        &python,
        &env,
        &gw,
        &other,
        json!([{"op": "responses_get", "id": id}]),
    )
    .await;
    assert_eq!(theirs[0]["error"]["status"], 404, "{theirs:?}");
    let r = openai_off(
        &python,
        &env,
        &gw,
        &key,
        json!([{"op": "responses_get", "id": id}, {"op": "responses_delete", "id": id}, {"op": "responses_get", "id": id}]),
    )
    .await;
    assert_eq!(ok(&r[0])["output_text"], "heron", "{r:?}");
    ok(&r[1]);
    assert_eq!(r[2]["error"]["status"], 404, "{r:?}");

    // Every model call is on record under the client's key.
    let calls = recorded(&env, 7);
    assert_eq!(
        calls.iter().filter(|c| c.outcome == "ok").count(),
        7,
        "{calls:#?}"
    );
    assert!(calls.iter().all(|c| c.client.as_deref() == Some("codex")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_llama_server_answers_the_responses_api_through_the_gateway() {
    let _turn = crate::support::real_servers_lock();
    let Some((python, env, gw, key)) = crate::serve::smollm_behind_gateway("codex") else {
        return;
    };
    let steps = json!([
        {"op": "responses", "model": "smollm", "input": "Name a color.", "instructions": "Answer in one word.", "max_output_tokens": 16},
        {"op": "responses_stream", "model": "llmclis/auto", "input": "Count to five.", "max_output_tokens": 24},
    ]);
    let r = openai(&python, &env, &gw, &key, steps);
    let plain = ok(&r[0]);
    assert!(
        !plain["output_text"].as_str().unwrap().is_empty(),
        "{plain}"
    );
    assert!(
        plain["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{plain}"
    );
    let streamed = ok(&r[1]);
    assert!(
        streamed["types"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| *t == "response.output_text.delta")
            .count()
            > 3,
        "{streamed}"
    );
    assert_eq!(
        streamed["text"], streamed["final"]["output_text"],
        "{streamed}"
    );
    assert_eq!(recorded(&env, 2).len(), 2);
}

/// Claude (Anthropic's API, priced with cache rates) and a local model.
fn anthropic_and_local(env: &Env, anthropic: &str, local: &str) {
    crate::serve::write_registry(
        env,
        "local, claude",
        &format!(
            "  - {{ name: anth, kind: anthropic, base_url: '{anthropic}', api_key_env: PATH, local: false }}\n  - {{ name: here, kind: openai-compatible, flavour: vllm, base_url: '{local}', local: true }}\n"
        ),
        "  - { id: claude, provider: anth, served_name: claude-sonnet-4-5, context_window: 200000, max_output_tokens: 8192, cost_per_1m_input: 3.0, cost_per_1m_output: 15.0, cost_per_1m_cached_input: 0.3, cost_per_1m_cache_write: 3.75, capabilities: [tools] }\n  - { id: local, provider: here, served_name: m, context_window: 8192, max_output_tokens: 1024, cost_per_1m_input: 1.0, cost_per_1m_cached_input: 0.5 }\n",
    );
}

const CACHED_ANSWER: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Cached hello"}],"stop_reason":"end_turn","usage":{"input_tokens":10,"cache_read_input_tokens":2000,"cache_creation_input_tokens":500,"output_tokens":20}}"#;
const OPENAI_CACHED: &str = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"local hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":100,"completion_tokens":4,"total_tokens":104,"prompt_tokens_details":{"cached_tokens":64}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_anthropic_client_counts_tokens_and_its_cached_prompt_is_recorded_and_priced()
{
    let Some(python) = crate::support::py_clients() else {
        return;
    };
    let claude = FakeLlm::start(vec![
        Reply::Raw(CACHED_ANSWER),
        Reply::Ok("streamed hi there"),
    ])
    .await;
    let local = FakeLlm::start(vec![Reply::Raw(OPENAI_CACHED)]).await;
    let env = Env::new();
    anthropic_and_local(&env, &claude.url, &local.url);
    let key = new_key(&env, "claude-code", &[]);
    let gw = Gateway::start(&env, &["--mode", "online"]);
    let cached_system = json!([{"type": "text", "text": "You are a careful reviewer. (a long, stable prompt)", "cache_control": {"type": "ephemeral"}}]);
    let tools = json!([{"name": "read_file", "description": "Read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}, "cache_control": {"type": "ephemeral"}}]);
    let hello = json!([{"role": "user", "content": "Review this diff, please."}]);
    let steps = json!([
        {"op": "count_tokens", "model": "claude", "system": cached_system, "messages": hello, "tools": tools},
        {"op": "count_tokens", "model": "local", "messages": hello},
        {"op": "message", "model": "claude", "max_tokens": 100, "system": cached_system, "messages": hello, "tools": tools},
        {"op": "stream", "model": "claude", "max_tokens": 100, "messages": hello},
        {"op": "message", "model": "local", "max_tokens": 100, "messages": hello},
    ]);
    let r = {
        let (vars, url) = (env.vars(), gw.url.clone());
        tokio::task::spawn_blocking(move || {
            crate::support::py_client(&python, "anthropic_calls.py", &[&url, &key], vars, &steps)
        })
        .await
        .unwrap()
    };
    let r = r.as_array().unwrap();
    // Claude's own count, asked of its server; the local model's by the
    // gateway's estimate.
    assert_eq!(ok(&r[0]), &json!(COUNTED_TOKENS), "{r:?}");
    let estimate = ok(&r[1]).as_u64().unwrap();
    assert!((3..100).contains(&estimate), "{estimate}");

    let cached = ok(&r[2]);
    assert_eq!(cached["text"], "Cached hello");
    assert_eq!(
        cached["usage"],
        json!({"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 2000, "cache_creation_input_tokens": 500}),
        "{cached}"
    );
    let streamed = ok(&r[3]);
    assert_eq!(streamed["text"], "streamed hi there", "{streamed}");
    assert!(
        streamed["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{streamed}"
    );
    // OpenAI's cached count, in Anthropic's terms.
    let local_answer = ok(&r[4]);
    assert_eq!(
        local_answer["usage"]["cache_read_input_tokens"], 64,
        "{local_answer}"
    );
    assert_eq!(local_answer["usage"]["input_tokens"], 36, "{local_answer}");

    // The breakpoints reached Anthropic where the client put them.
    let sent = &claude.requests()[0];
    assert_eq!(
        sent["system"][0]["cache_control"]["type"], "ephemeral",
        "{sent}"
    );
    assert_eq!(
        sent["tools"][0]["cache_control"]["type"], "ephemeral",
        "{sent}"
    );
    // ...and nowhere near the OpenAI-compatible server.
    assert!(!local.requests()[0].to_string().contains("cache_control"));

    // Recorded per call and priced at the cache rates.
    let calls = recorded(&env, 3);
    let claude_call = calls
        .iter()
        .find(|c| c.cached_tokens == Some(2000))
        .expect("the cached call is recorded");
    assert_eq!(claude_call.prompt_tokens, Some(2510));
    assert_eq!(claude_call.cache_write_tokens, Some(500));
    let want = (10.0 * 3.0 + 2000.0 * 0.3 + 500.0 * 3.75 + 20.0 * 15.0) / 1e6;
    assert!(
        (claude_call.cost_usd - want).abs() < 1e-12,
        "{} vs {want}",
        claude_call.cost_usd
    );
    let local_call = calls.iter().find(|c| c.model == "local").unwrap();
    assert_eq!(local_call.cached_tokens, Some(64));
    let want = (36.0 * 1.0 + 64.0 * 0.5) / 1e6;
    assert!(
        (local_call.cost_usd - want).abs() < 1e-12,
        "{} vs {want}",
        local_call.cost_usd
    );
    let shown = env.json(&["keys", "show", "claude-code"]);
    let cached_shown: u64 = shown["by_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["cached_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(cached_shown, 2064, "{shown}");
}
