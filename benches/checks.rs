//! The check runner's own cost, beyond the command's: `sh -c true` run as
//! a task's check through the tools' sandbox, against the same command
//! spawned directly; with writes on (in the tree) and off (in the scratch
//! copy with the proposed change), on a repository of 1,000 files. The
//! first check of a step with writes off copies the tree; later ones only
//! write what the overlay changed. In-process.
//!
//!     cargo bench --bench checks

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use llmclis::tools::Toolbox;

/// 1,000 files of about 2 KB in 50 folders, and an ignored build folder.
fn repo(root: &Path) {
    for d in 0..50 {
        let dir = root.join(format!("pkg{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..20 {
            let body = format!("def f{f}():\n    return {f}\n").repeat(80);
            llmclis::fsutil::write_atomic(&dir.join(format!("mod{f}.py")), body.as_bytes())
                .unwrap();
        }
    }
    llmclis::fsutil::write_atomic(&root.join(".gitignore"), b"build/\n").unwrap();
    std::fs::create_dir_all(root.join("build")).unwrap();
}

fn toolbox(root: &Path, writes: bool) -> Toolbox {
    Toolbox::new(
        root,
        writes,
        BTreeMap::new(),
        Duration::from_secs(30),
        16_000,
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    repo(dir.path());
    let mut g = c.benchmark_group("check");
    g.sample_size(30);
    g.bench_function("sh_true_spawned_directly", |b| {
        b.iter(|| {
            let s = Command::new("sh")
                .args(["-c", "true"])
                .current_dir(dir.path())
                .status()
                .unwrap();
            black_box(s)
        })
    });
    let on = toolbox(dir.path(), true);
    g.bench_function("run_check_writes_on", |b| {
        b.iter(|| {
            let r = on.run_check("true");
            assert!(r.passed);
            r
        })
    });
    g.bench_function("first_check_writes_off_1000_files", |b| {
        b.iter(|| {
            let mut t = toolbox(dir.path(), false);
            t.call(
                "write_file",
                &serde_json::json!({"path": "pkg0/mod0.py", "content": "x = 1\n"}),
            );
            let r = t.run_check("true");
            assert!(r.passed);
            r
        })
    });
    let mut off = toolbox(dir.path(), false);
    let mut n = 0u64;
    g.bench_function("next_check_writes_off_1000_files", |b| {
        b.iter(|| {
            n += 1;
            off.call(
                "write_file",
                &serde_json::json!({"path": "pkg1/mod1.py", "content": format!("x = {n}\n")}),
            );
            let r = off.run_check("true");
            assert!(r.passed);
            r
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
