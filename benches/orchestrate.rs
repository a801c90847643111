//! The orchestrator's own cost, measured on whole runs (each measurement is
//! a run of many steps, so this is a plain timing harness, not criterion):
//!
//! - overhead per step against a zero-latency fake model server;
//! - with the real llama.cpp server (when `scripts/llama-server env` is
//!   exported), the share of wall time that is not model time;
//! - `--workers 4` vs `--workers 1` against a server that serves 4 requests
//!   at a time;
//! - k = 5 voting vs one candidate against a server that serves 8 at a time
//!   and takes time per generated token;
//! - the whole process, `llmclis orchestrate --max_steps 60` against a
//!   zero-latency server, with memory on and off, minus the same number of
//!   model calls made directly (memory on needs scripts/embedding-assets'
//!   lines exported);
//! - catching up the memory index on rows that keep their vectors.
//!
//!     cargo bench --bench orchestrate

// The bench writes its fixtures directly.
#![allow(clippy::disallowed_methods)]

#[path = "../tests/support/fake_llm.rs"]
#[allow(dead_code)]
mod fake_llm;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_llm::{FakeLlm, Reply, Route};
use llmclis::llm::caller::{Breakers, Caller};
use llmclis::net::http_client;
use llmclis::orchestrator::run::{self, Deps, Options, Summary};
use llmclis::prompts::Prompts;
use llmclis::registry::{Mode, Registry};
use llmclis::store::{NewTask, Store};

const CRITIC: &str = "You are the reviewer";
const VOTER: &str = "You are one voter";
const SUMMARIZER: &str = "Summarize the material";

fn registry(providers: &[(&str, &str, u32)], coder_extra: &str, window: u64) -> Registry {
    Registry::parse(&registry_yaml(providers, coder_extra, window), "bench.yaml")
        .expect("valid registry")
}

/// Providers `(name, url, max_concurrency)`, one model `m-NAME` each, every
/// role using them all in order.
fn registry_yaml(providers: &[(&str, &str, u32)], coder_extra: &str, window: u64) -> String {
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
    format!(
        "providers:\n{p}models:\n{m}roles:\n{roles}rules:\n  - {{ name: default, role: coder }}\nmodes:\n  offline: {{ providers: local }}\n  online: {{ providers: all }}\n"
    )
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
            check_rounds: 2,
            context_tokens: 1500,
            memory_top_k: 5,
            project_summary_every: None,
            compact: llmclis::memory::rollup::CompactWhen::RolledUp,
            max_plan_depth: 2,
            make_room: false,
            task_id: None,
            stream_tokens: false,
            tools: Default::default(),
            no_review: false,
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

/// The whole process per step, beyond the model calls themselves: run the
/// release binary over 60 tasks, subtract the same number of calls made
/// directly to the same server.
async fn whole_process(memory: bool) {
    let assets = match (
        std::env::var("LLMCLIS_EMBEDDING_MODEL_DIR"),
        std::env::var("LLMCLIS_ONNXRUNTIME"),
    ) {
        (Ok(d), Ok(l)) => Some((d, l)),
        _ => None,
    };
    if memory && assets.is_none() {
        println!(
            "orchestrate: whole process with memory skipped (export `scripts/embedding-assets` lines to run it)"
        );
        return;
    }
    let srv = FakeLlm::routed(
        routes(
            vec![],
            Reply::Text("def add(a, b): return a + b".into(), 12),
        ),
        None,
        Duration::ZERO,
    )
    .await;
    let steps = 60;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("config"), dir.path().join("data"));
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let memory_cfg = match (&assets, memory) {
        (Some((d, l)), true) => format!("[memory]\nmodel_dir = {d:?}\nonnxruntime = {l:?}\n"),
        // No model: memories are saved in SQLite only.
        _ => "[memory]\nmodel_dir = \"/nonexistent\"\nonnxruntime = \"/nonexistent\"\n".into(),
    };
    std::fs::write(cfg.join("config.toml"), memory_cfg).unwrap();
    let yaml = registry_yaml(&[("p", &srv.url, 8)], "", 32768);
    std::fs::write(cfg.join("model_registry.yaml"), yaml).unwrap();
    let db = data.join("llmclis.db");
    project(&db, steps);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_llmclis"));
    cmd.args([
        "--json",
        "orchestrate",
        "--project-id",
        "1",
        "--max-steps",
        &steps.to_string(),
    ])
    .env_clear()
    .env("LLMCLIS_CONFIG_DIR", &cfg)
    .env("LLMCLIS_DATA_DIR", &data)
    .env("LLMCLIS_DB", &db)
    .env("LLMCLIS_AGENT", "bench")
    .env("LLMCLIS_DETECT", "0")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    // Each event's arrival, to split the whole into start-up (to the first
    // step), the steps, and what follows the last step (indexing left).
    let (out, wall, first_step, last_step) = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let (mut first, mut last) = (None, Duration::ZERO);
        for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if first.is_none() && line.contains("\"step_started\"") {
                first = Some(started.elapsed());
            }
            if line.contains("\"step_finished\"") {
                last = started.elapsed();
            }
        }
        let out = child.wait_with_output().unwrap();
        (out, started.elapsed(), first.unwrap_or_default(), last)
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = Store::open(&db).unwrap();
    let calls = st.run_model_calls(1).unwrap();
    assert_eq!(st.status_counts(Some(1)).unwrap().done, steps as i64);
    let memories: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM memories WHERE indexed = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    // The same number of calls, made directly.
    let http = http_client();
    let body = serde_json::json!({
        "model": "p",
        "messages": [{"role": "user", "content": "Write function number 1. Return the sum of two integers."}],
        "max_tokens": 256,
    });
    let direct_started = Instant::now();
    for _ in 0..calls.len() {
        http.post(format!("{}/chat/completions", srv.url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let direct = direct_started.elapsed();
    let per_step = (wall.as_secs_f64() - direct.as_secs_f64()) * 1000.0 / steps as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "orchestrate: whole process, {steps} steps, memory {}: {per_step:.2} ms per step beyond the model calls ({:.0} ms wall, {} calls taking {:.0} ms directly; start-up to the first step {:.0} ms, the steps {:.2} ms each, after the last step {:.0} ms; {memories} memories indexed by the end)",
        if memory {
            "on (Edge + MiniLM, indexed off the step's path)"
        } else {
            "off (SQLite only)"
        },
        ms(wall),
        calls.len(),
        ms(direct),
        ms(first_step),
        ms(last_step.saturating_sub(first_step)) / (steps - 1) as f64,
        ms(wall.saturating_sub(last_step)),
    );
}

/// An embedder that must never be called: catching up rows that keep their
/// vectors embeds nothing.
struct NoEmbedder;

impl llmclis::memory::embed::Embedder for NoEmbedder {
    fn model(&self) -> String {
        "bench-384".into()
    }
    fn dim(&self) -> usize {
        384
    }
    fn embed(
        &self,
        _texts: Vec<String>,
    ) -> llmclis::net::BoxFuture<'_, llmclis::Result<Vec<Vec<f32>>>> {
        panic!("catch-up re-embedded a row that keeps its vector")
    }
}

/// Rows a killed process saved with their vectors, not yet indexed: how
/// fast the next opener puts them into the Edge index (SQLite read, upsert,
/// flush, marks).
async fn catch_up() {
    let rows = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("bench.db");
    project(&db_path, 1);
    {
        let mut conn = rusqlite::Connection::open(&db_path).unwrap();
        let tx = conn.transaction().unwrap();
        let mut seed = 7u64;
        for i in 0..rows {
            let v: Vec<u8> = (0..384)
                .flat_map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (((seed >> 33) as f32 / u32::MAX as f32) - 0.25).to_le_bytes()
                })
                .collect();
            tx.execute(
                "INSERT INTO memories (project_id, task_id, type, agent, text, tokens, created_at, vector)
                 VALUES (1, 1, 'raw_interaction', 'bench', ?1, 10, '2026-01-01T00:00:00.000Z', ?2)",
                rusqlite::params![format!("memory number {i}"), v],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let mut db = Store::open(&db_path).unwrap();
    let index = llmclis::memory::vector::EdgeIndex::open(&dir.path().join("edge")).unwrap();
    let memory = llmclis::memory::Memory::new(Arc::new(NoEmbedder), Arc::new(index));
    let started = Instant::now();
    let done = memory.catch_up(&mut db, None).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(done.indexed, rows);
    assert_eq!(done.embedded, 0);
    println!(
        "memory: index catch-up, {rows} rows that keep their vectors (Edge, flushed): {:.0} rows/s ({:.2} s)",
        rows as f64 / secs,
        secs
    );
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
        whole_process(false).await;
        whole_process(true).await;
        catch_up().await;
    });
}
