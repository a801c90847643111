//! `[serve] otlp_endpoint`: the gateway's requests and model attempts as
//! OpenTelemetry spans, received by an OTLP/HTTP endpoint on loopback that
//! decodes them with the official protobuf types (`opentelemetry-proto`).
//! A client's `traceparent` is the request span's parent, and the request
//! span is the upstream's; each attempt is a child span matching its call
//! record; a stream's span ends with the stream; what is queued at SIGTERM
//! still reaches the collector.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message as _;
use serde_json::json;

use crate::serve::{Gateway, new_key, recorded, two_servers};
use crate::support::Env;
use crate::support::fake_llm::{FakeLlm, Reply};

#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    kind: i32,
    start: u64,
    end: u64,
    /// 2: error.
    status: i32,
    attributes: HashMap<String, String>,
    service: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// An OTLP/HTTP traces endpoint: what it was sent, span by span.
async fn collector() -> (String, Arc<Mutex<Vec<Span>>>) {
    let got: Arc<Mutex<Vec<Span>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut out = sink.lock().unwrap();
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .map(|a| text(&a.value))
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            out.push(Span {
                                name: s.name,
                                trace_id: hex(&s.trace_id),
                                span_id: hex(&s.span_id),
                                parent: hex(&s.parent_span_id),
                                kind: s.kind,
                                start: s.start_time_unix_nano,
                                end: s.end_time_unix_nano,
                                status: s.status.map_or(0, |st| st.code),
                                attributes: s
                                    .attributes
                                    .iter()
                                    .map(|a| (a.key.clone(), text(&a.value)))
                                    .collect(),
                                service: service.clone(),
                            });
                        }
                    }
                }
                // An empty ExportTraceServiceResponse: all accepted.
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

fn otlp_config(env: &Env, endpoint: &str) {
    std::fs::create_dir_all(env.config_dir()).unwrap();
    std::fs::write(
        env.config_dir().join("config.toml"),
        format!("[serve]\notlp_endpoint = \"{endpoint}\"\n"),
    )
    .unwrap();
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_model_attempts_reach_the_collector_as_one_trace() {
    let (endpoint, spans) = collector().await;
    // The first model fails (vLLM's engine error) every time it is asked;
    // the second answers.
    let broken = Reply::Status(
        500,
        r#"{"error":{"message":"EngineCore encountered an issue","type":"InternalServerError","param":null,"code":500}}"#,
        vec![],
    );
    let first = FakeLlm::start(vec![broken.clone(), broken.clone(), broken.clone(), broken]).await;
    let second = FakeLlm::start(vec![Reply::Ok("the backup answers")]).await;
    let env = Env::new();
    two_servers(&env, &first.url, &second.url);
    otlp_config(&env, &endpoint);
    let key = new_key(&env, "agent", &[]);
    let mut gw = Gateway::start(&env, &[]);
    let http = llmclis::net::http_client();

    let plain = http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({"model": "llmclis/coder", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    let answer: serde_json::Value = plain.json().await.unwrap();
    assert_eq!(answer["model"], "second", "{answer}");

    // A stream, with no traceparent: a trace of its own.
    let streamed = http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .json(&json!({"model": "second", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(streamed.contains("[DONE]"), "{streamed}");
    let calls = recorded(&env, 1);
    // A probe is not traced.
    let health = http.get(format!("{}/health", gw.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // What is still queued goes out at the stop.
    assert!(gw.stop().success());
    let spans = spans.lock().unwrap().clone();
    let requests: Vec<&Span> = spans.iter().filter(|s| s.kind == 2).collect();
    let attempts: Vec<&Span> = spans.iter().filter(|s| s.kind == 3).collect();
    assert_eq!(
        requests.len(),
        2,
        "one server span per request, none for /health: {spans:#?}"
    );
    assert!(spans.iter().all(|s| s.service == "llmclis"), "{spans:#?}");

    // The plain request continues the client's trace.
    let req = requests
        .iter()
        .find(|s| s.trace_id == TRACE)
        .expect("the request span is in the client's trace");
    assert_eq!(req.parent, CALLER_SPAN, "its parent is the client's span");
    assert_eq!(req.name, "POST /v1/chat/completions");
    assert_eq!(req.attributes["http.response.status_code"], "200");
    assert_eq!(req.attributes["llmclis.client"], "agent");
    assert_eq!(req.status, 0, "a 200 is no error");

    // The upstream was told the request's span, to hang its own under.
    assert_eq!(
        first.last_traceparent(),
        Some(format!("00-{TRACE}-{}-01", req.span_id))
    );

    // Under it, each attempt: the failures of `first`, then `second`.
    let mine: Vec<&&Span> = attempts
        .iter()
        .filter(|s| s.parent == req.span_id)
        .collect();
    assert!(mine.len() >= 2, "{spans:#?}");
    assert!(mine.iter().all(|s| s.trace_id == TRACE));
    let failed: Vec<_> = mine
        .iter()
        .filter(|s| s.attributes["llmclis.outcome"] == "error")
        .collect();
    assert!(!failed.is_empty(), "{mine:#?}");
    for f in &failed {
        assert_eq!(f.attributes["gen_ai.request.model"], "first");
        assert_eq!(f.status, 2, "a failed attempt is an error span: {f:#?}");
        assert!(f.attributes.contains_key("error.type"), "{f:#?}");
    }
    let ok = mine
        .iter()
        .find(|s| s.attributes["llmclis.outcome"] == "ok")
        .expect("the attempt that answered");
    assert_eq!(ok.name, "chat second");
    assert_eq!(ok.attributes["gen_ai.response.model"], "second");
    assert_eq!(ok.attributes["llmclis.provider"], "two");
    assert!(ok.attributes.contains_key("gen_ai.usage.input_tokens"));
    for a in &mine {
        assert!(
            a.start >= req.start && a.end <= req.end,
            "an attempt lies within its request: {a:#?} {req:#?}"
        );
    }

    // The stream's span ends after its last event: its attempt is inside.
    let stream = requests.iter().find(|s| s.trace_id != TRACE).unwrap();
    assert_eq!(stream.parent, "", "no traceparent: a root span");
    let its: Vec<_> = attempts
        .iter()
        .filter(|s| s.parent == stream.span_id)
        .collect();
    assert_eq!(its.len(), 1, "{spans:#?}");
    assert_eq!(
        second.last_traceparent(),
        Some(format!("00-{}-{}-01", stream.trace_id, stream.span_id))
    );
    assert!(its[0].end <= stream.end, "{:#?} {stream:#?}", its[0]);

    // One span per recorded attempt.
    let calls = if calls.len() < attempts.len() {
        recorded(&env, attempts.len())
    } else {
        calls
    };
    assert_eq!(calls.len(), attempts.len(), "{calls:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_no_request() {
    let up = FakeLlm::start(vec![Reply::Ok("fine")]).await;
    let env = Env::new();
    two_servers(&env, &up.url, &up.url);
    otlp_config(&env, "http://127.0.0.1:9");
    let mut gw = Gateway::start(&env, &["--no-auth"]);
    let r = llmclis::net::http_client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&json!({"model": "first", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(gw.stop().success(), "it stops cleanly, its spans dropped");
}

#[test]
fn an_endpoint_that_is_no_url_is_refused_at_start() {
    let env = Env::new();
    two_servers(&env, "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1");
    otlp_config(&env, "http://not a host:4318");
    env.run(&["serve", "--no-auth", "--listen", "127.0.0.1:0"])
        .assert_err(2, &["otlp_endpoint", "not a host"]);
}
