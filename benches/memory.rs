//! Memory at 100,000 entries on Qdrant Edge: filtered query p50, recall@10
//! against exact search, insert throughput; and the real embedding model's
//! throughput in sentences/s (when its assets are present).
//!
//!     cargo bench --bench memory
//!
//! The vectors are 384-d and clustered (1,000 centres plus noise), shaped
//! like sentence embeddings, from a fixed seed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use llmclis::memory::embed::{Embedder, FastEmbedder};
use llmclis::memory::vector::{EdgeIndex, Filter, IndexInfo, PointMeta, VectorIndex};

const N: usize = 100_000;
const DIM: usize = 384;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn memory(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let index = EdgeIndex::open(&dir.path().join("edge")).unwrap();
    let info = IndexInfo {
        model: "bench".into(),
        dim: DIM,
    };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let centres: Vec<Vec<f32>> = (0..1000)
        .map(|_| (0..DIM).map(|_| rng.next()).collect())
        .collect();
    let point = |rng: &mut Rng, i: usize| -> Vec<f32> {
        unit(
            centres[i % centres.len()]
                .iter()
                .map(|c| c + rng.next() * 0.6)
                .collect(),
        )
    };
    let vectors: Vec<Vec<f32>> = (0..N).map(|i| point(&mut rng, i * 7919)).collect();
    rt.block_on(async {
        index.ensure(&info).await.unwrap();
        let started = Instant::now();
        for (b, chunk) in vectors.chunks(1000).enumerate() {
            let points = chunk
                .iter()
                .enumerate()
                .map(|(j, v)| {
                    let id = (b * 1000 + j) as u64;
                    let meta = PointMeta {
                        project_id: (id % 4) as i64,
                        task_id: Some((id % 500) as i64),
                        kind: "raw_interaction".into(),
                        agent: "bench".into(),
                    };
                    (id, v.clone(), meta)
                })
                .collect();
            index.upsert(points).await.unwrap();
        }
        let insert = started.elapsed();
        let started = Instant::now();
        index.optimize().await.unwrap();
        eprintln!(
            "memory: insert {N} points: {:.0} points/s; optimize (HNSW build): {:.1} s",
            N as f64 / insert.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    });
    let queries: Vec<Vec<f32>> = (0..100).map(|i| point(&mut rng, i * 31 + 5)).collect();
    let filter = || Filter {
        project_id: Some(1),
        ..Default::default()
    };
    // As ann-benchmarks counts it: a result is right when it is at least as
    // close as the 10th true neighbour (ties are not misses).
    let recall_of = |filter: Filter| {
        rt.block_on(async {
            let mut total = 0.0;
            for q in &queries {
                let approx = index
                    .search(q.clone(), filter.clone(), 10, false)
                    .await
                    .unwrap();
                let exact = index
                    .search(q.clone(), filter.clone(), 10, true)
                    .await
                    .unwrap();
                let kth = exact.last().map_or(f32::MAX, |e| e.1);
                let hits = approx.iter().filter(|a| a.1 >= kth - 1e-6).count();
                total += hits as f64 / exact.len().max(1) as f64;
            }
            total / queries.len() as f64
        })
    };
    eprintln!(
        "memory: recall@10 vs exact, 100 queries: {:.3} filtered to one project, {:.3} unfiltered",
        recall_of(filter()),
        recall_of(Filter::default())
    );

    let mut group = c.benchmark_group("memory_100k");
    let mut i = 0;
    group.bench_function("query_top10_filtered", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            black_box(
                rt.block_on(index.search(queries[i].clone(), filter(), 10, false))
                    .unwrap(),
            )
        })
    });
    group.finish();

    if let (Some(dir), Some(lib)) = (
        std::env::var_os("LLMCLIS_EMBEDDING_MODEL_DIR"),
        std::env::var_os("LLMCLIS_ONNXRUNTIME"),
    ) {
        let emb = FastEmbedder::load(dir.as_ref(), lib.as_ref()).unwrap();
        let sentences: Vec<String> = (0..64)
            .map(|i| format!("Task {i}: make the orchestrator release expired leases before it claims new work, and log why."))
            .collect();
        let mut group = c.benchmark_group("embedding");
        group.throughput(criterion::Throughput::Elements(sentences.len() as u64));
        group.bench_function("minilm_int8_batch_64", |b| {
            b.iter(|| black_box(rt.block_on(emb.embed(sentences.clone())).unwrap()))
        });
        group.finish();
    } else {
        eprintln!(
            "memory: embedding throughput skipped (run scripts/embedding-assets and export its lines)"
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = memory
}
criterion_main!(benches);
