//! Keys people manage, through the running gateway: each limit (models,
//! tokens a minute, a budget that resets each day, an expiry) refused at
//! its edge in each API's error shape, naming the limit and when it
//! resets; rotation with a grace period; `/metrics` and `keys show` by key.
//! Time is not waited for: what a day or an expiry would bring is written
//! into the store before the gateway reads it.

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::serve::{Gateway, new_key, recorded};
use crate::support::Env;
use crate::support::fake_llm::FakeLlm;

/// Two priced models on one upstream: each scripted answer (11 prompt and
/// 3 completion tokens) costs $0.14.
fn priced(env: &Env, url: &str) {
    crate::serve::write_registry(
        env,
        "first, second",
        &format!(
            "  - {{ name: one, kind: openai-compatible, flavour: vllm, base_url: '{url}', local: true }}\n"
        ),
        "  - { id: first, provider: one, served_name: m1, context_window: 8192, max_output_tokens: 1024, cost_per_1m_input: 10000, cost_per_1m_output: 10000 }\n  - { id: second, provider: one, served_name: m2, context_window: 8192, max_output_tokens: 1024, cost_per_1m_input: 10000, cost_per_1m_output: 10000 }\n",
    );
}

/// One request in OpenAI's shape (`/v1/chat/completions`) or Anthropic's
/// (`/v1/messages`): its status, headers and body.
async fn ask(gw: &Gateway, key: &str, model: &str, anthropic: bool) -> (u16, Value, Value) {
    let http = llmclis::net::http_client();
    let (path, body) = if anthropic {
        (
            "/v1/messages",
            json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        )
    } else {
        (
            "/v1/chat/completions",
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
        )
    };
    let r = http
        .post(format!("{}{path}", gw.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers: serde_json::Map<String, Value> = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    (status, Value::Object(headers), r.json().await.unwrap())
}

/// An OpenAI-shaped refusal: its type and message.
fn openai_error(body: &Value) -> (&str, &str) {
    (
        body["error"]["type"].as_str().unwrap(),
        body["error"]["message"].as_str().unwrap(),
    )
}

/// An Anthropic-shaped refusal: `{"type": "error", "error": {...}}`.
fn anthropic_error(body: &Value) -> (&str, &str) {
    assert_eq!(body["type"], "error", "{body}");
    (
        body["error"]["type"].as_str().unwrap(),
        body["error"]["message"].as_str().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_limit_is_refused_at_its_edge_naming_the_limit_and_its_reset() {
    let fake = FakeLlm::start(vec![]).await;
    let env = Env::new();
    priced(&env, &fake.url);
    let scoped = new_key(&env, "scoped", &["--models", "sec*"]);
    let tpm = new_key(&env, "tpm", &["--tpm", "28"]);
    let daily = new_key(&env, "daily", &["--budget-usd", "0.2", "--per", "day"]);
    let soon = new_key(&env, "soon", &["--expires", "30d"]);
    {
        let db = rusqlite::Connection::open(env.db()).unwrap();
        // Yesterday's spend is on record and not in today's budget.
        let yesterday = llmclis::app::types::format_time(Utc::now() - Duration::days(1));
        db.execute(
            "INSERT INTO model_calls (role, provider, model, prompt_tokens, completion_tokens, cost_usd, outcome, client, created_at)
             VALUES ('direct', 'one', 'first', 1000, 10, 5.0, 'ok', 'daily', ?1)",
            [&yesterday],
        )
        .unwrap();
        // A month has passed for `soon`.
        let past = llmclis::app::types::format_time(Utc::now() - Duration::minutes(1));
        db.execute(
            "UPDATE api_keys SET expires_at = ?1 WHERE name = 'soon'",
            [&past],
        )
        .unwrap();
    }
    let gw = Gateway::start(&env, &[]);

    // Models: only `second` (by its glob); a router name routes among the
    // allowed models alone (the roles list `first` first).
    let (status, _, body) = ask(&gw, &scoped, "first", false).await;
    assert_eq!(status, 403, "{body}");
    let (kind, message) = openai_error(&body);
    assert_eq!(kind, "permission_error");
    assert!(
        message.contains("may not use \"first\"") && message.contains("sec*"),
        "{message}"
    );
    assert_eq!(body["error"]["param"], "model");
    let (status, _, body) = ask(&gw, &scoped, "first", true).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(anthropic_error(&body).0, "permission_error");
    let (status, headers, body) = ask(&gw, &scoped, "llmclis/auto", false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-llmclis-model"], "second");
    assert_eq!(ask(&gw, &scoped, "second", true).await.0, 200);

    // Tokens a minute: 14 a call, so the third is past 28.
    for _ in 0..2 {
        assert_eq!(ask(&gw, &tpm, "first", false).await.0, 200);
    }
    let (status, headers, body) = ask(&gw, &tpm, "first", false).await;
    assert_eq!(status, 429, "{body}");
    let (kind, message) = openai_error(&body);
    assert_eq!(kind, "rate_limit_error");
    assert!(
        message.contains("28 tokens a minute and used 28"),
        "{message}"
    );
    assert!(message.contains("resets in"), "{message}");
    assert_eq!(headers["x-ratelimit-limit-tokens"], "28");
    let wait: u64 = headers["retry-after"].as_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{headers}");
    let (status, _, body) = ask(&gw, &tpm, "first", true).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(anthropic_error(&body).0, "rate_limit_error");

    // A daily budget of $0.20: yesterday's $5 is not in it; two calls
    // today ($0.28) are past it.
    for _ in 0..2 {
        assert_eq!(ask(&gw, &daily, "first", false).await.0, 200);
    }
    let (status, _, body) = ask(&gw, &daily, "first", false).await;
    assert_eq!(status, 429, "{body}");
    let (kind, message) = openai_error(&body);
    assert_eq!(kind, "insufficient_quota");
    let tomorrow = (Utc::now() + Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    assert!(
        message.contains("$0.2800 of its $0.20 daily budget")
            && message.contains(&format!("resets at {tomorrow}T00:00:00")),
        "{message}"
    );
    let (status, _, body) = ask(&gw, &daily, "first", true).await;
    assert_eq!(status, 429, "{body}");
    let (kind, message) = anthropic_error(&body);
    assert_eq!(kind, "rate_limit_error");
    assert!(message.contains("daily budget"), "{message}");

    // Expiry: refused as a key that no longer works, in both shapes.
    let (status, _, body) = ask(&gw, &soon, "first", false).await;
    assert_eq!(status, 401, "{body}");
    let (kind, message) = openai_error(&body);
    assert_eq!(kind, "authentication_error");
    assert!(message.contains("\"soon\" expired at"), "{message}");
    let (status, _, body) = ask(&gw, &soon, "first", true).await;
    assert_eq!(
        (status, anthropic_error(&body).0),
        (401, "authentication_error")
    );
    let list = env.run(&["keys", "list"]).stdout;
    let soon_row = list.lines().find(|l| l.starts_with("soon")).unwrap();
    assert!(soon_row.contains(" expired "), "{list}");
    // Rotating renews it (a passed expiry is not inherited).
    let renewed = env.json(&["keys", "rotate", "soon", "--grace", "0s"]);
    let renewed = renewed["secret"].as_str().unwrap().to_string();
    assert_eq!(ask(&gw, &renewed, "first", false).await.0, 200);

    // Only what reached a model is on record: 2 scoped, 2 tpm, 2 daily
    // and the renewed key's, besides yesterday's.
    let calls = recorded(&env, 8);
    assert_eq!(calls.len(), 8, "{calls:#?}");
    assert_eq!(fake.hits(), 7);

    let metrics = llmclis::net::http_client()
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"llmclis_limited_total{client="scoped",limit="model"} 2"#,
        r#"llmclis_limited_total{client="tpm",limit="tpm"} 2"#,
        r#"llmclis_limited_total{client="daily",limit="budget"} 2"#,
        r#"llmclis_limited_total{client="soon",limit="expired"} 2"#,
        r#"llmclis_client_calls_total{client="daily"} 2"#,
        r#"llmclis_client_tokens_total{client="tpm",kind="prompt"} 22"#,
        r#"llmclis_client_cost_usd_total{client="daily"} 0.28"#,
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }

    // `keys show`: spend by day and model, yesterday's included.
    let shown = env.json(&["keys", "show", "daily"]);
    let days: Vec<(String, String, u64)> = shown["by_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().to_string(),
                d["model"].as_str().unwrap().to_string(),
                d["calls"].as_u64().unwrap(),
            )
        })
        .collect();
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let yesterday = (Utc::now() - Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(
        days,
        [(today, "first".into(), 2), (yesterday, "first".into(), 1)],
        "{shown}"
    );
    let text = env.run(&["keys", "show", "daily"]).stdout;
    assert!(text.contains("this period (resets"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_works_beside_the_new_one_for_its_grace_and_not_after() {
    let fake = FakeLlm::start(vec![]).await;
    let env = Env::new();
    priced(&env, &fake.url);
    let first = new_key(&env, "team", &["--rpm", "100", "--models", "first"]);
    let rotated = env.json(&["keys", "rotate", "team"]);
    let second = rotated["secret"].as_str().unwrap().to_string();
    // The old key works for a day.
    let until =
        chrono::DateTime::parse_from_rfc3339(rotated["old_works_until"].as_str().unwrap()).unwrap();
    let day = until.with_timezone(&Utc) - Utc::now();
    assert!(
        day > Duration::hours(23) && day <= Duration::hours(24),
        "{rotated}"
    );
    // Rotated again with no grace: the second stops at once; the first is
    // still in its own grace.
    let third = env.json(&["keys", "rotate", "team", "--grace", "0s"]);
    let third = third["secret"].as_str().unwrap().to_string();
    let gw = Gateway::start(&env, &[]);

    for (key, anthropic) in [
        (&first, false),
        (&first, true),
        (&third, false),
        (&third, true),
    ] {
        let (status, _, body) = ask(&gw, key, "first", anthropic).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _, body) = ask(&gw, &second, "first", false).await;
    assert_eq!(status, 401, "{body}");
    let (kind, message) = openai_error(&body);
    assert_eq!(kind, "authentication_error");
    assert!(message.contains("stopped working"), "{message}");
    // The limits came along: the new key may not use `second` either.
    assert_eq!(ask(&gw, &third, "second", false).await.0, 403);

    // All calls are recorded under the one client.
    let calls = recorded(&env, 4);
    assert!(calls.iter().all(|c| c.client.as_deref() == Some("team")));
    let list = env.json(&["keys", "list"]);
    let states: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.iter().filter(|s| **s == "live").count(), 1, "{list}");
    assert_eq!(
        states.iter().filter(|s| **s == "retiring").count(),
        1,
        "{list}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "revoked").count(),
        1,
        "{list}"
    );

    // Revoking the name stops the retiring key too (serve starts only
    // with a live key, so another client has one).
    env.run(&["keys", "revoke", "team"]).assert_ok();
    new_key(&env, "other", &[]);
    let gw = Gateway::start(&env, &[]);
    for key in [&first, &third] {
        assert_eq!(ask(&gw, key, "first", false).await.0, 401);
    }
}
