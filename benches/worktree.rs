//! What a task's own git worktree costs (it is paid per task with writes
//! on): `worktree::Repo::worktree` (a new branch from HEAD and its work
//! tree checked out) then `Repo::remove` (the work tree and the branch
//! gone), in a repository of 1,000 committed files (20 directories of 50,
//! about 2 KB each). In-process; git 2.x on the machine's disk.
//!
//!     cargo bench --bench worktree

use std::hint::black_box;
use std::path::Path;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use llmclis::worktree::Repo;

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "user.name=b", "-c", "user.email=b@b"])
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    for d in 0..20 {
        let sub = root.join(format!("module_{d:02}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..50 {
            let body = format!(
                "// file {d}/{f}\n{}",
                "fn work() { let x = 1 + 1; }\n".repeat(70)
            );
            llmclis::fsutil::write_atomic(&sub.join(format!("file_{f:02}.rs")), body.as_bytes())
                .unwrap();
        }
    }
    git(&root, &["init", "-q", "-b", "main"]);
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "1,000 files"]);
    let repo = Repo::of(&root).unwrap();
    let base = dir.path().join("worktrees");
    let mut g = c.benchmark_group("worktree");
    g.sample_size(20);
    g.bench_function("make_and_remove_1000_files", |b| {
        b.iter(|| {
            let path = repo.worktree(&base, "llmclis/bench-1").unwrap();
            black_box(&path);
            assert!(repo.remove(Some(&path), "llmclis/bench-1").unwrap());
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
