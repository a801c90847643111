//! Memory at 100,000 memories over 100 projects (each a 1% filter), with
//! the real embedding model (all-MiniLM-L6-v2 int8 through ONNX Runtime)
//! and queries that are not in the data:
//!
//! - `memory_100k/query_user_facing`: what `memory query` does in-process:
//!   embed the question, search one project's memories on Qdrant Edge,
//!   check each hit in SQLite (a real database file);
//! - `memory_100k/query_index_only`: the Edge search alone, the question's
//!   vector computed in advance;
//! - recall@10 of the index against exact search (stderr);
//! - `embedding/minilm_int8_1024_texts`: embedding throughput on 1,024 of
//!   the memories (varied lengths), as a catch-up or reindex embeds them.
//!
//!     cargo bench --bench memory      (needs scripts/embedding-assets' lines)
//!
//! The memories are generated from a fixed seed: sentences about a
//! project's tasks, decisions and findings. Their vectors are computed once
//! and kept under ~/.cache/llmclis/bench (about 150 MB; 6 minutes on two
//! cores to make).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use llmclis::memory::Memory;
use llmclis::memory::embed::{Embedder, FastEmbedder};
use llmclis::memory::vector::{EdgeIndex, Filter, VectorIndex};
use llmclis::store::Store;

const N: usize = 100_000;
const PROJECTS: usize = 100;
const DIM: usize = 384;
/// Bump when the generator changes: the kept vectors are its.
const CORPUS: &str = "corpus-v1";

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

const PARTS: [&str; 32] = [
    "the orchestrator",
    "the board",
    "the router",
    "the claim lease",
    "the memory index",
    "the gateway",
    "plans.md",
    "the SQLite store",
    "the MCP server",
    "the critic",
    "the planner",
    "the retry policy",
    "the circuit breaker",
    "the token budget",
    "the embedding cache",
    "the tool loop",
    "the test runner",
    "the config loader",
    "the migration",
    "the log rotation",
    "the vote",
    "the scheduler",
    "the tenant index",
    "the health probe",
    "the model registry",
    "the HTTP client",
    "the diff tool",
    "the prompt template",
    "the run record",
    "the queue",
    "the summary",
    "the parser",
];
const DOING: [&str; 24] = [
    "must release",
    "retries",
    "fails to parse",
    "times out on",
    "caches",
    "logs",
    "drops",
    "rebuilds",
    "validates",
    "streams",
    "rejects",
    "double-counts",
    "locks",
    "forgets",
    "renames",
    "compacts",
    "skips",
    "reorders",
    "truncates",
    "duplicates",
    "escapes",
    "normalizes",
    "spills",
    "blocks on",
];
const THINGS: [&str; 36] = [
    "expired leases",
    "CRLF line endings",
    "empty answers",
    "UTF-8 titles",
    "nested task lists",
    "large diffs",
    "stale vectors",
    "API keys in errors",
    "the last checkpoint",
    "half-written files",
    "unknown roles",
    "tool results",
    "429 responses",
    "streamed tool calls",
    "long prompts",
    "cancelled runs",
    "tasks with no parent",
    "duplicate tags",
    "the first message",
    "its own notes",
    "dependency cycles",
    "Markdown tables",
    "JSON schemas",
    "retry-after headers",
    "zero-cost models",
    "GPU memory figures",
    "sleeping servers",
    "old migrations",
    "temp directories",
    "daily logs",
    "the cost column",
    "the vote margin",
    "SSE error events",
    "queued requests",
    "partial writes",
    "empty projects",
];
const WHEN: [&str; 20] = [
    "after a crash",
    "under load",
    "when the server restarts",
    "on the first run",
    "with two agents",
    "at midnight",
    "in offline mode",
    "on a slow disk",
    "when the budget runs out",
    "after a reindex",
    "with an empty registry",
    "for long tasks",
    "when a replica is down",
    "in the board",
    "from the CLI",
    "over MCP",
    "through the gateway",
    "when the lease renews",
    "on Windows paths",
    "after compaction",
];
const KINDS: [&str; 6] = [
    "Found that",
    "Decided that",
    "Fixed a bug where",
    "Noted that",
    "Reviewed why",
    "Confirmed that",
];

/// A memory: a finding, decision or fix about a part of the tool; some
/// carry a second clause, so lengths vary like real notes.
fn memory_text(rng: &mut Rng, project: usize) -> String {
    let mut s = format!(
        "{} {} {} {} {}.",
        rng.pick(&KINDS),
        rng.pick(&PARTS),
        rng.pick(&DOING),
        rng.pick(&THINGS),
        rng.pick(&WHEN)
    );
    if rng.below(3) == 0 {
        s.push_str(&format!(
            " The fix touches {} and {}, and project {project} tracks it.",
            rng.pick(&PARTS),
            rng.pick(&THINGS)
        ));
    }
    s
}

/// A question in another form than any memory.
fn question(rng: &mut Rng) -> String {
    format!(
        "why does {} {} {}?",
        rng.pick(&PARTS),
        rng.pick(&DOING).replace("must ", ""),
        rng.pick(&THINGS)
    )
}

fn cache_dir() -> PathBuf {
    std::env::var_os("LLMCLIS_BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/llmclis/bench")
        })
}

/// The corpus' vectors: read back when kept, else embedded and kept.
fn vectors(emb: &FastEmbedder, texts: &[String], rt: &tokio::runtime::Runtime) -> Vec<Vec<f32>> {
    let path = cache_dir().join(format!("{CORPUS}-{}-{N}.f32", emb.model()));
    if let Ok(bytes) = std::fs::read(&path)
        && bytes.len() == N * DIM * 4
    {
        return bytes
            .chunks_exact(DIM * 4)
            .map(|c| {
                c.chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect()
            })
            .collect();
    }
    eprintln!(
        "memory: embedding {N} memories once (kept in {})",
        path.display()
    );
    let started = Instant::now();
    let mut out = Vec::with_capacity(N);
    for chunk in texts.chunks(1024) {
        out.extend(rt.block_on(emb.embed(chunk.to_vec())).unwrap());
    }
    eprintln!(
        "memory: embedded {N} in {:.0} s ({:.0} texts/s)",
        started.elapsed().as_secs_f64(),
        N as f64 / started.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let bytes: Vec<u8> = out.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
    llmclis::fsutil::write_atomic(&path, &bytes).unwrap();
    out
}

/// The database a user would have: 100 projects, the memories saved with
/// their vectors (as a run saves them, embedded off the step's path), then
/// indexed by the catch-up every command runs.
fn build(
    dir: &Path,
    texts: &[String],
    projects_of: &[usize],
    vectors: &[Vec<f32>],
    memory: &Memory,
    rt: &tokio::runtime::Runtime,
) -> Store {
    let mut db = Store::open(&dir.join("llmclis.db")).unwrap();
    db.batch(|s| {
        for p in 0..PROJECTS {
            s.create_project(&format!("project-{p}"), "", None, "bench")?;
        }
        for ((text, p), v) in texts.iter().zip(projects_of).zip(vectors) {
            llmclis::memory::save_embedded(
                s,
                text,
                *p as i64 + 1,
                None,
                "raw_interaction",
                "bench",
                v,
            )?;
        }
        Ok(())
    })
    .unwrap();
    let started = Instant::now();
    rt.block_on(memory.catch_up(&mut db, None)).unwrap();
    eprintln!(
        "memory: indexed {N} saved memories in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    db
}

fn memory(c: &mut Criterion) {
    let (Some(model_dir), Some(lib)) = (
        std::env::var_os("LLMCLIS_EMBEDDING_MODEL_DIR"),
        std::env::var_os("LLMCLIS_ONNXRUNTIME"),
    ) else {
        eprintln!(
            "memory: skipped: needs the embedding model (run scripts/embedding-assets and export its lines)"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let emb = Arc::new(FastEmbedder::load(model_dir.as_ref(), lib.as_ref()).unwrap());
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let projects_of: Vec<usize> = (0..N).map(|i| i % PROJECTS).collect();
    let texts: Vec<String> = projects_of
        .iter()
        .map(|p| memory_text(&mut rng, *p + 1))
        .collect();
    let vectors = vectors(&emb, &texts, &rt);

    let dir = tempfile::tempdir().unwrap();
    let index = Arc::new(EdgeIndex::open(&dir.path().join("edge")).unwrap());
    let memory = Memory::new(emb.clone(), index.clone());
    let db = build(dir.path(), &texts, &projects_of, &vectors, &memory, &rt);
    let started = Instant::now();
    rt.block_on(index.optimize()).unwrap();
    eprintln!(
        "memory: optimize (HNSW build): {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Questions unlike any memory, each asked of one project.
    let questions: Vec<(String, i64)> = (0..100)
        .map(|i| (question(&mut rng), (i * 37 % PROJECTS) as i64 + 1))
        .collect();
    let qvectors: Vec<Vec<f32>> = rt
        .block_on(emb.embed(questions.iter().map(|q| q.0.clone()).collect()))
        .unwrap();
    let in_project = |p: i64| Filter {
        project_id: Some(p),
        ..Default::default()
    };
    // As ann-benchmarks counts it: a result is right when it is at least as
    // close as the 10th true neighbour (ties are not misses).
    let recall = |filtered: bool| {
        let mut total = 0.0;
        for (v, (_, p)) in qvectors.iter().zip(&questions) {
            let f = if filtered {
                in_project(*p)
            } else {
                Filter::default()
            };
            let approx = rt
                .block_on(index.search(v.clone(), f.clone(), 10, false))
                .unwrap();
            let exact = rt.block_on(index.search(v.clone(), f, 10, true)).unwrap();
            let kth = exact.last().map_or(f32::MAX, |e| e.1);
            let hits = approx.iter().filter(|a| a.1 >= kth - 1e-6).count();
            total += hits as f64 / exact.len().max(1) as f64;
        }
        total / qvectors.len() as f64
    };
    eprintln!(
        "memory: recall@10 vs exact, 100 questions not in the data: {:.3} in one project (1% of the points), {:.3} over all",
        recall(true),
        recall(false)
    );

    let mut group = c.benchmark_group("memory_100k");
    let mut i = 0;
    group.bench_function("query_user_facing", |b| {
        b.iter(|| {
            i = (i + 1) % questions.len();
            let (q, p) = &questions[i];
            black_box(
                rt.block_on(memory.query_memory(&db, q, &llmclis::memory::Scope::project(*p), 10))
                    .unwrap(),
            )
        })
    });
    let mut i = 0;
    group.bench_function("query_index_only", |b| {
        b.iter(|| {
            i = (i + 1) % questions.len();
            black_box(
                rt.block_on(index.search(
                    qvectors[i].clone(),
                    in_project(questions[i].1),
                    10,
                    false,
                ))
                .unwrap(),
            )
        })
    });
    group.finish();

    let sample: Vec<String> = texts[..1024].to_vec();
    let tokens: usize = sample.iter().map(|t| t.split_whitespace().count()).sum();
    eprintln!(
        "memory: the 1,024 texts embedded below average {:.1} words",
        tokens as f64 / 1024.0
    );
    let mut group = c.benchmark_group("embedding");
    group.throughput(criterion::Throughput::Elements(sample.len() as u64));
    group.sample_size(10);
    group.bench_function("minilm_int8_1024_texts", |b| {
        b.iter(|| black_box(rt.block_on(emb.embed(sample.clone())).unwrap()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(8));
    targets = memory
}
criterion_main!(benches);
