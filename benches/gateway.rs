//! `llmclis serve` against a zero-latency upstream on loopback, side by
//! side with calling that upstream directly, in one run:
//! - added latency, sequential, non-streaming: p50 and p99 of (through the
//!   gateway) minus (direct), over interleaved requests;
//! - non-streaming throughput with 64 concurrent clients;
//! - 1,000 concurrent streams held open: the gateway's resident memory.
//!
//! The gateway is the release binary as a user runs it (its own process,
//! a client key, every call recorded in SQLite); the upstream and the load
//! run in this process, on the same 2 cores. Prints only what ran.
//!
//!   cargo bench --bench gateway

// Fixtures in a temp dir are written directly.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;

const ANSWER: &str = r#"{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;

/// Answers at once; a request that asks to stream and says "hold" gets a
/// chunk every 200 ms for 6 s (a stream kept open).
async fn upstream_chat(body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    if !text.contains("\"stream\":true") {
        return ([("content-type", "application/json")], ANSWER).into_response();
    }
    let n = if text.contains("hold") { 30 } else { 1 };
    let gap = if text.contains("hold") {
        Duration::from_millis(200)
    } else {
        Duration::ZERO
    };
    let chunks = futures_util::stream::iter(0..n).then(move |_| async move {
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        Ok::<_, std::convert::Infallible>(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"w \"},\"finish_reason\":null}]}\n\n".to_string(),
        )
    });
    let end = futures_util::stream::once(async {
        Ok::<_, std::convert::Infallible>(
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":30}}\n\ndata: [DONE]\n\n".to_string(),
        )
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(chunks.chain(end)),
    )
        .into_response()
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let app = Router::new()
        .route("/v1/chat/completions", post(upstream_chat))
        .route("/v1/models", get(|| async { r#"{"data":[{"id":"m"}]}"# }))
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    let roles: String = llmclis::registry::ROLES
        .iter()
        .map(|r| format!("  {r}: {{ models: [m], temperature: 0.2 }}\n"))
        .collect();
    std::fs::write(
        cfg.join("model_registry.yaml"),
        format!(
            "providers:\n  - {{ name: up, kind: openai-compatible, flavour: vllm, base_url: '{upstream}', local: true, max_concurrency: 2000 }}\nmodels:\n  - {{ id: m, provider: up, served_name: m, context_window: 8192, max_output_tokens: 256 }}\nroles:\n{roles}rules:\n  - {{ name: default, role: coder }}\nmodes:\n  offline: {{ providers: local }}\n  online: {{ providers: all }}\n"
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_llmclis");
    let envs = [
        ("LLMCLIS_CONFIG_DIR", cfg.clone()),
        ("LLMCLIS_DATA_DIR", dir.path().join("data")),
        ("LLMCLIS_DB", dir.path().join("llmclis.db")),
    ];
    let key_out = Command::new(bin)
        .envs(envs.iter().cloned())
        .args(["--json", "keys", "add", "bench"])
        .output()
        .unwrap();
    assert!(key_out.status.success(), "{key_out:?}");
    let key = serde_json::from_slice::<serde_json::Value>(&key_out.stdout).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let mut child = Command::new(bin)
        .envs(envs.iter().cloned())
        .env("LLMCLIS_LOG", "warn")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let gateway = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break format!("{}/v1", rest.split_whitespace().next().unwrap());
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let pid = child.id();
    let _gw = Gateway(child);

    let http = llmclis::net::http_client();
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16});
    let call = |base: &str, key: Option<&str>, body: &serde_json::Value| {
        let mut r = http.post(format!("{base}/chat/completions")).json(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };

    // Warm both paths (connections, the gateway's first records).
    for _ in 0..200 {
        call(&upstream, None, &body)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let r = call(&gateway, Some(&key), &body).await.unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    // 1. Added latency, sequential, interleaved.
    let n = 3000;
    let (mut direct, mut through) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        call(&upstream, None, &body)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        direct.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        call(&gateway, Some(&key), &body)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        through.push(t.elapsed().as_secs_f64() * 1e3);
    }
    direct.sort_by(f64::total_cmp);
    through.sort_by(f64::total_cmp);
    println!(
        "gateway: added latency, sequential non-streaming, {n} interleaved requests: p50 {:.3} ms (direct {:.3}, through {:.3}), p99 {:.3} ms (direct {:.3}, through {:.3})",
        percentile(&through, 0.5) - percentile(&direct, 0.5),
        percentile(&direct, 0.5),
        percentile(&through, 0.5),
        percentile(&through, 0.99) - percentile(&direct, 0.99),
        percentile(&direct, 0.99),
        percentile(&through, 0.99),
    );

    // 2. Throughput, 64 concurrent clients for 10 s.
    for (label, base, k) in [
        ("direct", upstream.clone(), None),
        ("through the gateway", gateway.clone(), Some(key.clone())),
    ] {
        let done = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let until = Instant::now() + Duration::from_secs(10);
        let workers: Vec<_> = (0..64)
            .map(|_| {
                let (http, base, k, body, done, failed) = (
                    http.clone(),
                    base.clone(),
                    k.clone(),
                    body.clone(),
                    done.clone(),
                    failed.clone(),
                );
                tokio::spawn(async move {
                    while Instant::now() < until {
                        let mut r = http.post(format!("{base}/chat/completions")).json(&body);
                        if let Some(k) = &k {
                            r = r.bearer_auth(k);
                        }
                        match r.send().await {
                            Ok(r) if r.status() == 200 => {
                                let _ = r.bytes().await;
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        let began = Instant::now();
        for w in workers {
            w.await.unwrap();
        }
        let secs = began.elapsed().as_secs_f64();
        println!(
            "gateway: throughput, non-streaming, 64 concurrent clients, 10 s, {label}: {:.0} requests/s ({} failed)",
            done.load(Ordering::Relaxed) as f64 / secs,
            failed.load(Ordering::Relaxed)
        );
    }

    // 3. 1,000 streams held open at once.
    let idle = rss_mb(pid);
    let hold = serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hold"}], "max_tokens": 64});
    let opened = Arc::new(AtomicUsize::new(0));
    let streams: Vec<_> = (0..1000)
        .map(|_| {
            let (http, gateway, key, hold, opened) = (
                http.clone(),
                gateway.clone(),
                key.clone(),
                hold.clone(),
                opened.clone(),
            );
            tokio::spawn(async move {
                let mut r = http
                    .post(format!("{gateway}/chat/completions"))
                    .bearer_auth(&key)
                    .json(&hold)
                    .send()
                    .await
                    .ok()?;
                let mut seen = String::new();
                while !seen.contains("\"w \"") {
                    seen.push_str(&String::from_utf8_lossy(&r.chunk().await.ok()??));
                }
                opened.fetch_add(1, Ordering::Relaxed);
                let rest = r.text().await.ok()?;
                Some(rest.contains("[DONE]"))
            })
        })
        .collect();
    let began = Instant::now();
    while opened.load(Ordering::Relaxed) < 1000 && began.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = opened.load(Ordering::Relaxed);
    let peak = rss_mb(pid);
    let mut whole = 0;
    for s in streams {
        if s.await.unwrap() == Some(true) {
            whole += 1;
        }
    }
    println!(
        "gateway: {held} concurrent streams open at once: resident memory {peak:.1} MB (idle after the runs above: {idle:.1} MB); {whole} of 1000 ended whole"
    );
}
