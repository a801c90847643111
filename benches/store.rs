//! The task queue at scale: `next_task` and `claim_next` on a database with
//! 100,000 tasks and 50,000 dependencies, on a real file (WAL), as agents use it.
//!
//!     cargo bench --bench store
//!
//! `scripts/bench` runs this and prints the medians (p50) that
//! docs/performance.md quotes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use llmclis::store::{NewTask, Status, Store};
use serde_json::json;

const TASKS: usize = 100_000;

/// A deterministic xorshift, so every run builds the same project.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// 100,000 tasks in one project: the oldest 40% done, 1% blocked, 1% in
/// progress, the rest pending; every tenth task a subtask of an earlier one;
/// every other task depending on an earlier task (50,000 dependencies).
fn build(path: &std::path::Path) -> (Store, i64) {
    let mut s = Store::open(path).unwrap();
    let p = s.create_project("bench", "", None, "bench").unwrap().id;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ids: Vec<i64> = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        let earlier = |rng: &mut Rng| (!ids.is_empty()).then(|| ids[rng.below(ids.len())]);
        let parent = if i % 10 == 9 { earlier(&mut rng) } else { None };
        let depends_on = if i % 2 == 1 {
            earlier(&mut rng).into_iter().collect()
        } else {
            vec![]
        };
        let status = match i * 100 / TASKS {
            0..=39 => Status::Done,
            40 => Status::Blocked,
            41 => Status::InProgress,
            _ => Status::Pending,
        };
        let t = s
            .create_task(
                NewTask {
                    project_id: p,
                    title: format!("task {i}"),
                    priority: Some(rng.below(4) as i64),
                    parent_id: parent,
                    depends_on,
                    status: Some(status),
                    ..Default::default()
                },
                "bench",
            )
            .unwrap();
        ids.push(t.id);
    }
    (s, p)
}

fn queue(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (mut store, p) = build(&dir.path().join("bench.db"));
    eprintln!("built {TASKS} tasks in {:.1?}", started.elapsed());
    assert!(store.check_derived_columns().unwrap().is_empty());
    assert!(store.next_task(Some(p)).unwrap().is_some(), "nothing ready");

    let mut group = c.benchmark_group("queue_100k_tasks_50k_deps");
    group.bench_function("next_task", |b| {
        b.iter(|| black_box(store.next_task(Some(p)).unwrap()))
    });
    // Only the claim is timed; the task then goes back to pending (untimed),
    // so every iteration claims from the same 100,000-task state.
    group.bench_function("claim_next", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let t = store
                    .claim_next(Some(p), "bench", Duration::from_secs(600))
                    .unwrap()
                    .expect("a task to claim");
                timed += start.elapsed();
                store
                    .mark_task_status(t.id, Status::Pending, "bench", json!({}))
                    .unwrap();
            }
            timed
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = queue
}
criterion_main!(benches);
