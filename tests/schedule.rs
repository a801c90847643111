//! Property tests: the store's indexed next-task query and the pure rule in
//! `orchestrator::schedule` agree on every reachable state, and the derived
//! columns the index relies on never drift from the base tables.

use std::time::Duration;

use llmclis::orchestrator::schedule::{Board, Node};
use llmclis::store::{NewTask, Status, Store};
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone)]
enum Op {
    Add {
        priority: i64,
        parent: Option<usize>,
        deps: Vec<usize>,
    },
    SetStatus {
        task: usize,
        status: usize,
    },
    Depend {
        task: usize,
        on: usize,
    },
    Undepend {
        task: usize,
        on: usize,
    },
    Claim,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0i64..4, proptest::option::weighted(0.4, 0usize..64), proptest::collection::vec(0usize..64, 0..3))
            .prop_map(|(priority, parent, deps)| Op::Add { priority, parent, deps }),
        3 => (0usize..64, 0usize..4).prop_map(|(task, status)| Op::SetStatus { task, status }),
        2 => (0usize..64, 0usize..64).prop_map(|(task, on)| Op::Depend { task, on }),
        1 => (0usize..64, 0usize..64).prop_map(|(task, on)| Op::Undepend { task, on }),
        1 => Just(Op::Claim),
    ]
}

fn board(store: &Store, project: i64) -> Board {
    Board::new(
        store
            .tasks(Some(project), None)
            .unwrap()
            .iter()
            .map(Node::from_task),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn store_and_pure_rule_pick_the_same_task(ops in proptest::collection::vec(op(), 1..60)) {
        let mut s = Store::open_in_memory().unwrap();
        let p = s.create_project("p", "", None, "t").unwrap().id;
        let mut ids: Vec<i64> = Vec::new();
        for op in ops {
            let pick = |i: usize| ids.get(i % ids.len().max(1)).copied();
            match op {
                Op::Add { priority, parent, deps } => {
                    let parent = parent.and_then(pick);
                    let mut deps: Vec<i64> = deps.into_iter().filter_map(pick).collect();
                    deps.sort();
                    deps.dedup();
                    let t = s.create_task(NewTask {
                        project_id: p, title: "t".into(), priority: Some(priority),
                        parent_id: parent, depends_on: deps, ..Default::default()
                    }, "t").unwrap();
                    ids.push(t.id);
                }
                Op::SetStatus { task, status } => {
                    if let Some(id) = pick(task) {
                        s.mark_task_status(id, Status::ALL[status], "t", json!({})).unwrap();
                    }
                }
                Op::Depend { task, on } => {
                    if let (Some(a), Some(b)) = (pick(task), pick(on)) {
                        // Cycles and self-dependencies are refused; both are fine here.
                        let _ = s.add_dependency(a, b, "t");
                    }
                }
                Op::Undepend { task, on } => {
                    if let (Some(a), Some(b)) = (pick(task), pick(on)) {
                        s.remove_dependency(a, b, "t").unwrap();
                    }
                }
                Op::Claim => {
                    let expected = board(&s, p).pick_next();
                    let got = s.claim_next(Some(p), "w", Duration::from_secs(60)).unwrap().map(|t| t.id);
                    prop_assert_eq!(got, expected, "claim_next disagrees with the rule");
                }
            }
            prop_assert_eq!(s.check_derived_columns().unwrap(), Vec::<i64>::new());
            let expected = board(&s, p).pick_next();
            let got = s.next_task(Some(p)).unwrap().map(|t| t.id);
            prop_assert_eq!(got, expected, "next_task disagrees with the rule");
        }
    }
}

#[test]
fn dry_run_simulates_completion_in_order() {
    let mut s = Store::open_in_memory().unwrap();
    let p = s.create_project("p", "", None, "t").unwrap().id;
    let mut add = |title: &str, priority: i64, deps: Vec<i64>| {
        s.create_task(
            NewTask {
                project_id: p,
                title: title.into(),
                priority: Some(priority),
                depends_on: deps,
                ..Default::default()
            },
            "t",
        )
        .unwrap()
        .id
    };
    let a = add("a", 1, vec![]);
    let b = add("b", 9, vec![a]);
    let c = add("c", 5, vec![]);
    let plan = llmclis::orchestrator::dry_run(&s, p, 10).unwrap();
    let order: Vec<i64> = plan.steps.iter().map(|st| st.task_id).collect();
    assert_eq!(order, [c, a, b]);
    let plan = llmclis::orchestrator::dry_run(&s, p, 2).unwrap();
    assert_eq!(plan.steps.len(), 2);
    assert_eq!(plan.left_pending, 1);
    // Nothing was written.
    assert!(
        s.tasks(Some(p), None)
            .unwrap()
            .iter()
            .all(|t| t.status == Status::Pending)
    );
}
