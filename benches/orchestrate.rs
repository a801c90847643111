//! The orchestrator's own cost, measured on whole runs (each measurement is
//! a run of many steps, so this is a plain timing harness, not criterion):
//!
//! - overhead per step against a zero-latency fake model server;
//! - with the real llama.cpp server (when `scripts/llama-server env` is
//!   exported), the share of wall time that is not model time;
//! - `--workers 4` vs `--workers 1` against a server that serves 4 requests
//!   at a time;
//! - k = 5 voting vs one candidate against a server that serves 8 at a time
//!   and takes time per generated token.
//!
//!     cargo bench --bench orchestrate

#[path = "../tests/support/fake_llm.rs"]
#[allow(dead_code)]
mod fake_llm;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_llm::{FakeLlm, Reply, Route};
use llmclis::llm::caller::{Breakers, Caller};
use llmclis::llm::http_client;
use llmclis::orchestrator::run::{self, Deps, Options, Summary};
use llmclis::prompts::Prompts;
use llmclis::registry::{Mode, Registry};
use llmclis::store::{NewTask, Store};

const CRITIC: &str = "You are the reviewer";
const VOTER: &str = "You are one voter";
const SUMMARIZER: &str = "Summarize the material";

fn registry(providers: &[(&str, &str, u32)], coder_extra: &str, window: u64) -> Registry {
    let mut p = String::new();
    let mut m = String::new();
    let mut ids = Vec::new();
    for (name, url, conc) in providers {
        p.push_str(&format!(
            "  - {{ name: {name}, kind: openai-compatible, flavour: llamacpp, base_url: \"{url}\", timeout_secs: 120, max_concurrency: {conc}, local: true }}\n"
        ));
        m.push_str(&format!(
            "  - {{ id: m-{name}, provider: {name}, served_name: {name}, context_window: {window}, max_output_tokens: 256, capabilities: [json_schema] }}\n"
        ));
        ids.push(format!("m-{name}"));
    }
    let mut roles = String::new();
    for r in llmclis::registry::ROLES {
        let extra = if r == "coder" { coder_extra } else { "" };
        roles.push_str(&format!(
            "  {r}: {{ temperature: 0.2, models: [{}]{extra} }}\n",
            ids.join(", ")
        ));
    }
    let yaml = format!(
        "providers:\n{p}models:\n{m}roles:\n{roles}rules:\n  - {{ name: default, role: coder }}\nmodes:\n  offline: {{ providers: local }}\n  online: {{ providers: all }}\n"
    );
    Registry::parse(&yaml, "bench.yaml").expect("valid registry")
}

fn project(db: &Path, tasks: usize) {
    let mut s = Store::open(db).unwrap();
    let p = s.create_project("bench", "", None, "bench").unwrap();
    s.batch(|s| {
        for i in 0..tasks {
            s.create_task(
                NewTask {
                    project_id: p.id,
                    title: format!("Write function number {i}"),
                    description: "Return the sum of two integers.".into(),
                    ..Default::default()
                },
                "bench",
            )?;
        }
        Ok(())
    })
    .unwrap();
}

async fn orchestrate(
    db: &Path,
    registry: Registry,
    steps: usize,
    workers: usize,
) -> (Summary, Duration) {
    let caller = Caller::new(
        Arc::new(registry),
        http_client(),
        Arc::new(Breakers::new(3, Duration::from_secs(60))),
    );
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let summary = run::run(
        Deps {
            db_path: db.to_path_buf(),
            caller: Arc::new(caller),
            prompts: Arc::new(Prompts::builtin()),
            memory: None,
            memory_note: None,
            notes: vec![],
        },
        Options {
            project_id: 1,
            max_steps: steps,
            workers,
            mode: Mode::Offline,
            agent: "bench".into(),
            lease: Duration::from_secs(600),
            max_rounds: 1,
            context_tokens: 1500,
            memory_top_k: 5,
            max_plan_depth: 2,
            task_id: None,
            stream_tokens: false,
            tools: Default::default(),
        },
        Arc::new(|_| {}),
        rx,
    )
    .await
    .unwrap();
    (summary, started.elapsed())
}

fn routes(coder: Vec<Reply>, coder_then: Reply) -> Vec<Route> {
    vec![
        Route::new(
            CRITIC,
            vec![],
            Reply::Text(
                r#"{"verdict":"approve","reasons":["ok"],"risks":[]}"#.into(),
                12,
            ),
        ),
        Route::new(
            VOTER,
            vec![],
            Reply::Text(r#"{"best": 0, "reason": "ok"}"#.into(), 10),
        ),
        Route::new(SUMMARIZER, vec![], Reply::Text("Summed.".into(), 8)),
        Route::new("", coder, coder_then),
    ]
}

async fn overhead() {
    let srv = FakeLlm::routed(
        routes(
            vec![],
            Reply::Text("def add(a, b): return a + b".into(), 12),
        ),
        None,
        Duration::ZERO,
    )
    .await;
    let steps = 300;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    project(&db, steps);
    let (s, wall) = orchestrate(&db, registry(&[("p", &srv.url, 8)], "", 32768), steps, 1).await;
    assert_eq!(s.done, steps);
    let calls = s.model_calls as f64;
    let per_step = wall.as_secs_f64() * 1000.0 / steps as f64;
    // The server's own share: the latency the calls saw.
    let model_ms: f64 = {
        let st = Store::open(&db).unwrap();
        st.run_model_calls(s.run_id)
            .unwrap()
            .iter()
            .filter_map(|c| c.latency_ms)
            .sum::<u64>() as f64
    };
    println!(
        "orchestrate: overhead per step, zero-latency server: {per_step:.2} ms wall per step ({:.1} model calls per step, {:.2} ms of it inside HTTP calls; {:.2} ms orchestration)",
        calls / steps as f64,
        model_ms / steps as f64,
        per_step - model_ms / steps as f64
    );
}

async fn real_share() {
    let Ok(url) = std::env::var("LLMCLIS_TEST_SMOLLM_URL") else {
        println!(
            "orchestrate: real-server share skipped (export `scripts/llama-server env` to run it)"
        );
        return;
    };
    let steps = 5;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    project(&db, steps);
    let (s, wall) = orchestrate(&db, registry(&[("smol", &url, 1)], "", 2048), steps, 1).await;
    let model_ms: u64 = Store::open(&db)
        .unwrap()
        .run_model_calls(s.run_id)
        .unwrap()
        .iter()
        .filter_map(|c| c.latency_ms)
        .sum();
    let wall_ms = wall.as_secs_f64() * 1000.0;
    println!(
        "orchestrate: real llama.cpp (SmolLM2-135M, CPU), {steps} steps, {} calls: wall {wall_ms:.0} ms, model {model_ms} ms, orchestration {:.2}% of wall time",
        s.model_calls,
        (wall_ms - model_ms as f64) / wall_ms * 100.0
    );
}

async fn workers() {
    let srv = FakeLlm::routed(
        routes(
            vec![],
            Reply::Text("def add(a, b): return a + b".into(), 12),
        ),
        Some(4),
        Duration::from_millis(50),
    )
    .await;
    let steps = 24;
    let mut walls = Vec::new();
    for w in [1, 4] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bench.db");
        project(&db, steps);
        let (s, wall) =
            orchestrate(&db, registry(&[("p", &srv.url, 8)], "", 32768), steps, w).await;
        assert_eq!(s.done, steps);
        walls.push(wall.as_secs_f64());
    }
    println!(
        "orchestrate: {steps} steps against a server serving 4 at a time (50 ms per call): --workers 1 {:.2} s, --workers 4 {:.2} s, speed-up {:.2}×",
        walls[0],
        walls[1],
        walls[0] / walls[1]
    );
}

async fn voting() {
    // 400-token answers at 1 ms per token; short JSON for critic and voter.
    let per_token = Duration::from_millis(1);
    let answer = |t: &str| Reply::Text(t.into(), 400);
    let runs = 5;
    let mut results = Vec::new();
    for (label, extra, coder) in [
        ("one candidate", "", vec![]),
        (
            "k=5, agreeing",
            ", voting: { candidates: 5, ahead_by: 2, max_tokens: 512 }",
            vec![],
        ),
        (
            "k=5, split (needs ballots)",
            ", voting: { candidates: 5, ahead_by: 2, max_tokens: 512 }",
            vec![
                answer("A"),
                answer("B"),
                answer("A"),
                answer("B"),
                answer("C"),
            ],
        ),
    ] {
        let mut total = 0.0;
        for _ in 0..runs {
            let srv = FakeLlm::timed(
                routes(coder.clone(), answer("A")),
                Some(8),
                Duration::from_millis(5),
                per_token,
            )
            .await;
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("bench.db");
            project(&db, 1);
            let (s, wall) =
                orchestrate(&db, registry(&[("p", &srv.url, 8)], extra, 32768), 1, 1).await;
            assert_eq!(s.done, 1);
            total += wall.as_secs_f64();
        }
        results.push((label, total / runs as f64));
    }
    let base = results[0].1;
    for (label, t) in &results {
        println!(
            "orchestrate: voting, step wall time, {label}: {:.0} ms ({:.2}× one candidate)",
            t * 1000.0,
            t / base
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // and only needs this to build.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        overhead().await;
        workers().await;
        voting().await;
        real_share().await;
    });
}
