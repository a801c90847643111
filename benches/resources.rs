//! `llmclis models status` as a user runs it (the release binary, its own
//! process): every local server asked at once (Ollama `/api/ps`, vLLM
//! `/v1/models` + `/metrics` + `/is_sleeping`, TGI `/info` + `/metrics`,
//! llama.cpp's router `/props` + `/v1/models`), the GPUs and RAM read,
//! each model placed, JSON printed. Servers are scripted on loopback and
//! answer at once; then the vLLM one hangs, and the command costs the
//! probe timeout (1.5 s), once. Prints only what ran.
//!
//!   cargo bench --bench resources

// Fixtures in a temp dir are written directly.
#![allow(clippy::disallowed_methods)]

use std::process::Command;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;

fn json(v: &'static str) -> ([(&'static str, &'static str); 1], &'static str) {
    ([("content-type", "application/json")], v)
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn servers(rt: &tokio::runtime::Runtime) -> [String; 5] {
    rt.block_on(async {
        let ollama = serve(Router::new().route("/api/ps", get(|| async {
            json(r#"{"models":[{"name":"qwen2.5:7b-instruct","model":"qwen2.5:7b-instruct","size":7516192768,"digest":"x","details":{},"expires_at":"2026-11-27T23:00:00Z","size_vram":7516192768,"context_length":32768}]}"#)
        }))).await;
        let vllm = serve(
            Router::new()
                .route("/v1/models", get(|| async { json(r#"{"object":"list","data":[{"id":"Qwen/Coder"}]}"#) }))
                .route("/metrics", get(|| async {
                    "vllm:num_requests_running{engine=\"0\",model_name=\"Qwen/Coder\"} 2.0\nvllm:num_requests_waiting{engine=\"0\",model_name=\"Qwen/Coder\"} 1.0\nvllm:kv_cache_usage_perc{engine=\"0\",model_name=\"Qwen/Coder\"} 0.3\n"
                }))
                .route("/is_sleeping", get(|| async { json(r#"{"is_sleeping":false}"#) })),
        )
        .await;
        let tgi = serve(
            Router::new()
                .route("/info", get(|| async { json(r#"{"model_id":"Qwen/Coder","max_total_tokens":32768}"#) }))
                .route("/metrics", get(|| async { "tgi_queue_size 0\ntgi_batch_current_size 1\n" })),
        )
        .await;
        let llama = serve(
            Router::new()
                .route("/props", get(|| async { json(r#"{"role":"router"}"#) }))
                .route("/v1/models", get(|| async {
                    json(r#"{"object":"list","data":[{"id":"smol","status":{"value":"loaded"}}]}"#)
                })),
        )
        .await;
        let hung = serve(Router::new().fallback(|| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            ""
        }))
        .await;
        [ollama, vllm, tgi, llama, hung]
    })
}

fn registry(ollama: &str, vllm: &str, tgi: &str, llama: &str) -> String {
    let roles: String = llmclis::registry::ROLES
        .iter()
        .map(|r| {
            format!("  {r}: {{ temperature: 0.3, models: [coder, coder-tgi, qwen-7b, small] }}\n")
        })
        .collect();
    format!(
        "providers:
  - {{ name: ollama, kind: openai-compatible, flavour: ollama, base_url: {ollama}/v1, local: true, device: gpu:0 }}
  - {{ name: vllm, kind: openai-compatible, flavour: vllm, base_url: {vllm}/v1, local: true, device: gpu:0 }}
  - {{ name: tgi, kind: openai-compatible, flavour: tgi, base_url: {tgi}/v1, local: true, device: gpu:0 }}
  - {{ name: llamacpp, kind: openai-compatible, flavour: llamacpp, base_url: {llama}/v1, local: true, device: cpu }}
models:
  - {{ id: qwen-7b, provider: ollama, served_name: 'qwen2.5:7b-instruct', context_window: 32768, max_output_tokens: 4096, memory: {{ weights_gib: 4.4, kv_gib_per_1k: 0.0534 }} }}
  - {{ id: coder, provider: vllm, served_name: Qwen/Coder, context_window: 32768, max_output_tokens: 4096, memory: {{ weights_gib: 18, kv_gib: 4 }} }}
  - {{ id: coder-tgi, provider: tgi, served_name: Qwen/Coder, context_window: 32768, max_output_tokens: 4096, memory: {{ weights_gib: 18, kv_gib: 4 }} }}
  - {{ id: small, provider: llamacpp, served_name: smol, context_window: 2048, max_output_tokens: 512, memory: {{ weights_gib: 0.1 }} }}
roles:
{roles}rules:
  - {{ name: default, role: coder }}
modes:
  offline: {{ providers: local }}
  online: {{ providers: all }}
"
    )
}

/// Runs `models status --json` `n` times; the wall times, sorted.
fn time(dir: &std::path::Path, n: usize) -> Vec<Duration> {
    let mut out: Vec<Duration> = (0..n)
        .map(|_| {
            let began = Instant::now();
            let o = Command::new(env!("CARGO_BIN_EXE_llmclis"))
                .args(["--json", "models", "status"])
                .env("LLMCLIS_CONFIG_DIR", dir.join("config"))
                .env("LLMCLIS_DATA_DIR", dir.join("data"))
                .env("LLMCLIS_DB", dir.join("data/llmclis.db"))
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            began.elapsed()
        })
        .collect();
    out.sort();
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench -- <filter>` passes arguments; this bench has one case.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let [ollama, vllm, tgi, llama, hung] = servers(&rt);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    let write = |vllm: &str| {
        std::fs::write(
            dir.path().join("config/model_registry.yaml"),
            registry(&ollama, vllm, &tgi, &llama),
        )
        .unwrap()
    };
    write(&vllm);
    time(dir.path(), 3); // the database is created on the first run
    let t = time(dir.path(), 30);
    println!(
        "models status: 4 servers answering: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms (30 runs, whole process)",
        ms(t[15]),
        ms(t[27]),
        ms(t[29])
    );
    write(&hung);
    let t = time(dir.path(), 5);
    println!(
        "models status: vLLM hung: p50 {:.0} ms, max {:.0} ms (5 runs; the probe timeout is 1500 ms)",
        ms(t[2]),
        ms(t[4])
    );
}
