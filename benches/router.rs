//! The router's decision with 1,000 rules: 999 that do not match (tags,
//! title regexes, token ranges, role hints, projects) before the default.
//!
//!     cargo bench --bench router

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use llmclis::registry::{Mode, Registry};
use llmclis::router::{self, Env, TaskInfo};

/// The shipped registry with its rules replaced by 1,000 generated ones.
fn registry() -> Registry {
    let shipped = llmclis::registry::DEFAULT_REGISTRY;
    let head = &shipped[..shipped.find("\nrules:").expect("rules section")];
    let tail = &shipped[shipped.find("\nmodes:").expect("modes section")..];
    let mut rules = String::from("\nrules:\n");
    for i in 0..999 {
        let cond = match i % 5 {
            0 => format!("tags: [area-{i}, team-{i}]"),
            1 => format!("title_regex: '(?i)\\bticket-{i}\\b'"),
            2 => format!("min_prompt_tokens: {}", 100_000 + i),
            3 => format!("role_hint: [tester], project: [{}]", 1000 + i),
            _ => format!("tags: [x{i}], title_regex: 'component-{i}'"),
        };
        rules.push_str(&format!(
            "  - {{ name: rule-{i}, match: {{ {cond} }}, role: tester }}\n"
        ));
    }
    rules.push_str("  - { name: default, role: coder }");
    Registry::parse(&format!("{head}{rules}{tail}"), "bench.yaml").expect("valid")
}

fn route(c: &mut Criterion) {
    let registry = registry();
    assert_eq!(registry.rules.len(), 1000);
    let tags = vec!["backend".to_string(), "storage".to_string()];
    let task = TaskInfo {
        project_id: 1,
        title: "Make claim_next reclaim expired leases before picking",
        description: "The orchestrator must never hand the same task to two agents; see S1.2 and the lease tests.",
        tags: &tags,
        role_hint: None,
        prompt_tokens: 1_200,
        ..Default::default()
    };
    let d = router::route(&registry, &task, Mode::Offline, &Env);
    assert_eq!(d.rule, "default", "every generated rule misses");
    c.bench_function("route_1000_rules", |b| {
        b.iter(|| {
            black_box(router::route(
                &registry,
                black_box(&task),
                Mode::Offline,
                &Env,
            ))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = route
}
criterion_main!(benches);
