//! Bounded fuzzing of what strangers send, in every CI run (a few hundred
//! cases each, seconds in all): request bodies to the gateway's two APIs,
//! arguments to every MCP tool, and plans.md text through the readers and
//! an edit. Whatever comes in, the answer is a result or an error in the
//! protocol's shape; nothing panics, nothing dies, the store stays whole.

use std::path::Path;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use crate::serve::{Gateway, two_servers};
use crate::support::Env;
use crate::support::fake_llm::FakeLlm;

/// Any JSON, a few levels deep, with the keys and values the APIs use
/// mixed in so that some bodies get far into the handlers.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("model".to_string()),
        Just("messages".to_string()),
        Just("role".to_string()),
        Just("content".to_string()),
        Just("stream".to_string()),
        Just("max_tokens".to_string()),
        Just("tools".to_string()),
        Just("type".to_string()),
        Just("text".to_string()),
        Just("system".to_string()),
        Just("temperature".to_string()),
        Just("project_id".to_string()),
        Just("id".to_string()),
        Just("status".to_string()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("first".to_string()),
            Just("user".to_string()),
            Just("assistant".to_string()),
            Just("S1.1".to_string()),
            Just("done".to_string()),
            "\\PC{0,20}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// `n` values of `strategy`, from a fixed seed: the same cases every run
/// (a failure names its input, so it can be replayed by hand).
fn sample<S: Strategy>(strategy: &S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

/// Random bodies to `/v1/chat/completions` and `/v1/messages`: each gets
/// a 2xx or an error in that API's shape, never a 5xx of the gateway's
/// own, and the gateway is still up after all of them.
#[test]
fn the_gateway_answers_any_body_in_its_apis_shape() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(FakeLlm::start(vec![]));
    let env = Env::new();
    two_servers(&env, &fake.url, &fake.url);
    let gw = Gateway::start(&env, &["--no-auth"]);
    let cases = sample(&(json_value(), any::<bool>()), 300);
    let http = llmclis::net::http_client();
    let wrong = rt.block_on(async {
        let mut wrong = Vec::new();
        for (body, anthropic) in cases {
            let path = if anthropic {
                "/v1/messages"
            } else {
                "/v1/chat/completions"
            };
            let r = http
                .post(format!("{}{path}", gw.url))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .expect("the gateway answers");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let shaped = serde_json::from_str::<Value>(&text).is_ok_and(|v| {
                if anthropic {
                    v["type"] == "error" && v["error"]["message"].is_string()
                } else {
                    v["error"]["message"].is_string()
                }
            });
            // Upstream errors (a 502 with the reason) are the gateway's to
            // report; a 500 would be its own failure.
            if status == 500 || (status >= 400 && !shaped) {
                wrong.push(format!("{path} {status}: {body} -> {text}"));
            }
        }
        let health = http.get(format!("{}/health", gw.url)).send().await.unwrap();
        assert!(health.status().is_success(), "the gateway is still up");
        wrong
    });
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Random arguments to every MCP tool through the real server: each call
/// ends in a result or a tool error, the server keeps answering, and the
/// store passes its integrity check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mcp_tool_answers_any_arguments() {
    let env = Env::new();
    env.with_seed_plans();
    let client = crate::mcp::spawn(&env, "fuzzer").await;
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    let strategy = (
        0..names.len(),
        prop::collection::vec(("[a-z_]{1,10}", json_value()), 0..4),
    );
    let cases = sample(&strategy, 200);
    for (i, args) in cases {
        let name = names[i].clone();
        let mut map: serde_json::Map<String, Value> = args.into_iter().collect();
        // Half the calls name a real project, so they get past the lookup.
        if map.len().is_multiple_of(2) {
            map.insert("project_id".into(), json!(1));
        }
        let r = client
            .call_tool(CallToolRequestParams::new(name.clone()).with_arguments(map.clone()))
            .await;
        assert!(r.is_ok(), "{name} {map:?}: the protocol broke: {r:?}");
    }
    assert!(
        client.list_all_tools().await.is_ok(),
        "the server still answers"
    );
    client.cancel().await.unwrap();
    let ok: String = rusqlite::Connection::open(env.db())
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

proptest! {
    #![proptest_config(Config { cases: 300, failure_persistence: None, ..Config::default() })]

    /// plans.md text shaped like the real thing: the readers refuse or
    /// read it, never panic, and a task they read can be completed and
    /// read back ticked (what the never-built cargo-fuzz target checked).
    #[test]
    fn any_plans_md_is_read_or_refused_and_an_edit_keeps_it_readable(
        text in "(\\PC|\n|- \\[[ xX]\\] \\*\\*S1\\.[0-9] – |## Stage [0-9] – |  - \\*\\*(Notes|Completed|Check):\\*\\* |`|### KM-001: ){0,300}"
    ) {
        use llmclis::docs::plans::PlansDoc;
        let path = Path::new("fuzz.md");
        if let Ok(doc) = PlansDoc::parse(&text, path) {
            let ids: Vec<String> = doc.tasks().map(|t| t.id.clone()).collect();
            if let Some(id) = ids.first() {
                let done = doc
                    .complete_task(id, "2026-01-01T00:00:00+00:00", "fuzz", &[])
                    .expect("a task it read can be completed");
                let again = PlansDoc::parse(&done, path).expect("an edit keeps the file readable");
                prop_assert!(again.task(id).is_some_and(|t| t.checked), "the task is ticked");
            }
            let _ = doc.log_done("entry");
        }
        let _ = llmclis::docs::issues::IssuesDoc::parse(&text, path);
        let _ = llmclis::docs::research::ResearchDoc::parse(&text, path);
    }
}
