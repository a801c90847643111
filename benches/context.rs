//! Fitting a step's context to the model that answers, in-process: the
//! coder's template over a task with 200 done dependencies (each result at
//! its 1,500-character cap), 10 notes, 5 memories and a plans.md section,
//! cut for SmolLM2's 2k window (nearly everything goes) and for a 32k
//! window (the results go down to their summaries), beside rendering it
//! whole without fitting. What a step pays before its first model call.
//!
//!     cargo bench --bench context

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use llmclis::orchestrator::context::{DepView, Material, NoteView, ParentView, TaskView, Vars};
use llmclis::orchestrator::routing::fit_for;
use llmclis::prompts::Prompts;
use llmclis::registry::Registry;

fn material(deps: usize) -> Material {
    let vars = Vars {
        task: TaskView {
            id: 1_000,
            external_ref: Some("S3.4".into()),
            title: "Write the release notes".into(),
            description: "Collect what every part changed and write it up for users. ".repeat(4),
            priority: 0,
            tags: vec!["docs".into()],
        },
        parent: Some(ParentView {
            title: "Stage 3 – Release".into(),
            description: "Ship the release: notes, packages, announcement. ".repeat(20),
            summary: None,
        }),
        dependencies: (0..deps)
            .map(|i| DepView {
                id: i as i64,
                title: format!("Part {i}: a change to the parser"),
                result: format!("Part {i} changed: ")
                    + &"the parser now keeps its spans. ".repeat(46),
            })
            .collect(),
        plan_section: Some(
            "- **S3.4 – Write the release notes**\n  - **Description:** … \n".repeat(40),
        ),
        notes: (0..10)
            .map(|i| NoteView {
                created_at: format!("2026-12-03T10:0{i}:00Z"),
                agent: "alice".into(),
                text: "Remember the migration note for users of 0.1. ".repeat(6),
            })
            .collect(),
        memory: (0..5)
            .map(|i| format!("memory {i}: ") + &"an earlier decision about the format. ".repeat(10))
            .collect(),
    };
    let summaries = (0..deps)
        .map(|i| Some(format!("Part {i}: the parser keeps spans.")))
        .collect();
    Material { vars, summaries }
}

fn bench(c: &mut Criterion) {
    let prompts = Prompts::builtin();
    let registry = Registry::builtin();
    let m = material(200);
    let mut g = c.benchmark_group("context");
    g.measurement_time(Duration::from_secs(5));
    for (name, id, window) in [
        ("fit_200_deps_2k_window", "smollm2-135m", 2_048),
        ("fit_200_deps_32k_window", "qwen-coder-32b", 32_768),
    ] {
        let model = registry.model(id).unwrap();
        let (_, fitted, fits) = fit_for(&prompts, "coder", &m, model, window, &|v| {
            prompts.render("coder", v)
        })
        .unwrap();
        eprintln!(
            "context: {name}: {} prompt tokens of a {} budget, {} cut(s), fits {fits}",
            fitted.tokens,
            fitted.budget,
            fitted.cut.len()
        );
        g.bench_function(name, |b| {
            b.iter(|| {
                fit_for(&prompts, "coder", black_box(&m), model, window, &|v| {
                    prompts.render("coder", v)
                })
                .unwrap()
            })
        });
    }
    g.bench_function("render_200_deps_uncut", |b| {
        b.iter(|| prompts.render("coder", black_box(&m.vars)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
