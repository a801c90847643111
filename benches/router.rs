//! The router's decision with 1,000 rules: 999 that do not match (tags,
//! title regexes, token ranges, role hints, projects) before the default.
//!
//!     cargo bench --bench router

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;

use llmclis::registry::{Device, Mode, Registry};
use llmclis::resources::{Fit, Placement, View};
use llmclis::router::{self, Conditions, Env, TaskInfo};

/// The real environment plus a cached resource view, as a run reads it.
struct Watched(Arc<View>);

impl Conditions for Watched {
    fn cooling_down(&self, id: &str) -> bool {
        Env.cooling_down(id)
    }
    fn key_set(&self, var: &str) -> bool {
        Env.key_set(var)
    }
    fn resources(&self) -> Option<Arc<View>> {
        Some(self.0.clone())
    }
}

/// The 32B does not fit, its TGI twin is loaded with a queue, the 7B fits,
/// SmolLM is loaded: a skip and a reorder on every decision.
fn view() -> Arc<View> {
    let place = |fit, waiting| Placement {
        fit,
        running: Some(1),
        waiting: Some(waiting),
    };
    let gpu = Device::Gpu(0);
    let placements = [
        (
            "qwen-coder-32b",
            place(
                Fit::DoesNotFit {
                    device: gpu,
                    need: 25 << 30,
                    free: 6 << 30,
                },
                0,
            ),
        ),
        ("qwen-coder-32b-tgi", place(Fit::Loaded, 3)),
        (
            "qwen-7b",
            place(
                Fit::Fits {
                    device: gpu,
                    need: 7 << 30,
                    free: 8 << 30,
                },
                0,
            ),
        ),
        ("smollm2-135m", place(Fit::Loaded, 0)),
    ]
    .into_iter()
    .map(|(id, p)| (id.to_string(), p))
    .collect();
    Arc::new(View {
        placements,
        ..Default::default()
    })
}

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
    let watched = Watched(view());
    let d = router::route(&registry, &task, Mode::Offline, &watched);
    assert_eq!(d.chain[0], "qwen-coder-32b-tgi", "the 32B is skipped");
    c.bench_function("route_1000_rules_with_resources", |b| {
        b.iter(|| {
            black_box(router::route(
                &registry,
                black_box(&task),
                Mode::Offline,
                &watched,
            ))
        })
    });
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
