//! What a durable plan-file write costs on this disk: `fsutil::write_atomic`
//! (the file synced, renamed, the directory synced) against the same write
//! and rename with no sync, and the whole locked `docs::update_file` edit
//! of the same file. The file is the repository's own plans.md (about
//! 60 KB). In-process.
//!
//!     cargo bench --bench plans_write

use std::hint::black_box;
use std::io::Write;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};

/// The atomic write without its two syncs: what durability costs on top.
fn write_unsynced(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn bench(c: &mut Criterion) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plans.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.md");
    llmclis::fsutil::write_atomic(&path, text.as_bytes()).unwrap();
    let mut g = c.benchmark_group("plans_write");
    g.sample_size(50);
    g.bench_function("durable_write_atomic", |b| {
        b.iter(|| llmclis::fsutil::write_atomic(black_box(&path), text.as_bytes()).unwrap())
    });
    g.bench_function("write_and_rename_no_sync", |b| {
        b.iter(|| write_unsynced(black_box(&path), text.as_bytes()))
    });
    // Each edit adds or removes a last line, so every one writes.
    let marked = format!("{text}<!-- edited -->\n");
    g.bench_function("locked_update_file_edit", |b| {
        b.iter(|| {
            llmclis::docs::update_file(&path, |t| {
                Ok(if t == text {
                    marked.clone()
                } else {
                    text.clone()
                })
            })
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
