//! Memory that rolls up by itself, in a run with a scripted model over a
//! two-stage plan: a stage whose subtasks are done gets its own summary
//! covering theirs, the project gets a summary without `memory summarize`,
//! and stage 2's prompts carry stage 1's summary; a roll-up a killed run
//! never wrote is caught up by the next run.

use std::time::Duration;

use llmclis::store::{NewTask, Status, Store};

use crate::orchestrate::{CODER, CRITIC, Harness, SUMMARIZER, approve, registry, text};
use crate::support::fake_llm::{FakeLlm, Route};

/// Stage 1 (two subtasks) and stage 2 (one subtask that waits for stage 1).
fn two_stages(h: &Harness) -> (i64, i64, i64, i64, i64) {
    let mut s = Store::open(&h.db).unwrap();
    let mut add = |title: &str, parent: Option<i64>, deps: Vec<i64>| {
        s.create_task(
            NewTask {
                project_id: h.project,
                title: title.into(),
                parent_id: parent,
                depends_on: deps,
                ..Default::default()
            },
            "tester",
        )
        .unwrap()
        .id
    };
    let s1 = add("Stage one: the store", None, vec![]);
    let a = add("Create the schema", Some(s1), vec![]);
    let b = add("Write the migrations", Some(s1), vec![]);
    let s2 = add("Stage two: the CLI", None, vec![s1]);
    let c = add("Add the list command", Some(s2), vec![s1]);
    (s1, a, b, s2, c)
}

fn summaries(s: &Store, task: i64) -> Vec<llmclis::memory::MemoryRecord> {
    llmclis::memory::for_task(s, task)
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "task_summary")
        .collect()
}

async fn server() -> FakeLlm {
    FakeLlm::routed(
        vec![
            Route::new(CRITIC, vec![], approve()),
            Route::new(
                "all 2 subtasks done",
                vec![],
                text("STAGE-ONE-ROLLUP: schema and migrations are in."),
            ),
            Route::new(
                "all 1 subtasks done",
                vec![],
                text("STAGE-TWO-ROLLUP: the list command is in."),
            ),
            Route::new(
                "stage summaries",
                vec![],
                text("PROJECT-ROLLUP: both stages are done."),
            ),
            Route::new(SUMMARIZER, vec![], text("A task summary.")),
            Route::new(CODER, vec![], text("Done as asked.")),
        ],
        None,
        Duration::ZERO,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_and_the_project_roll_up_in_the_run_and_stage_two_sees_stage_one() {
    let srv = server().await;
    let h = Harness::new(&[]);
    let (s1, a, b, s2, _) = two_stages(&h);
    let (summary, _) = h.run(registry(&srv.url, &srv.url, ""), 10).await;
    assert_eq!(summary.done, 5, "{summary:?}");
    let s = h.store();
    let stage = summaries(&s, s1);
    assert_eq!(stage.len(), 1, "stage 1's own summary: {stage:?}");
    assert!(stage[0].text.contains("STAGE-ONE-ROLLUP"), "{stage:?}");
    let mut covered: Vec<i64> = summaries(&s, a)
        .into_iter()
        .chain(summaries(&s, b))
        .map(|m| m.id)
        .collect();
    covered.sort();
    let mut covers = stage[0].covers.clone();
    covers.sort();
    assert_eq!(covers, covered, "it covers its subtasks' summaries");
    assert!(summaries(&s, s2)[0].text.contains("STAGE-TWO-ROLLUP"));
    // Each task summary covers its raw interaction, and once the stage's
    // roll-up covers the summary the raw leaves the index (`[memory]
    // compact = "rolled-up"`), kept in the database.
    for t in [a, b] {
        let mine = llmclis::memory::for_task(&s, t).unwrap();
        let raw: Vec<_> = mine
            .iter()
            .filter(|m| m.kind == "raw_interaction")
            .collect();
        assert_eq!(raw.len(), 1, "{mine:?}");
        assert!(raw[0].compacted, "rolled up, compacted: {mine:?}");
        assert_eq!(summaries(&s, t)[0].covers, vec![raw[0].id]);
    }
    let ids: Vec<i64> = rusqlite::Connection::open(&h.db)
        .unwrap()
        .prepare("SELECT id FROM memories WHERE type = 'project_summary'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|id| id.unwrap())
        .collect();
    let project: Vec<_> = ids
        .into_iter()
        .map(|id| llmclis::memory::get(&s, id).unwrap().unwrap())
        .collect();
    assert_eq!(
        project.len(),
        1,
        "a project summary without `memory summarize`"
    );
    assert!(project[0].text.contains("PROJECT-ROLLUP"));
    // Stage 2's task was written with stage 1's roll-up in its prompt.
    let prompts = srv.prompts_with(CODER);
    let stage_two = prompts
        .iter()
        .find(|p| p.contains("Add the list command"))
        .expect("stage 2's task was asked");
    assert!(stage_two.contains("STAGE-ONE-ROLLUP"), "{stage_two}");
    // `memory tree` shows it: project → stages → tasks, each with its
    // newest summary's first line.
    let env = crate::support::Env::new();
    let db = h.db.to_str().unwrap();
    let tree = env.run(&["--db", db, "memory", "tree", "--project-id", "1"]);
    tree.assert_ok();
    assert!(
        tree.stdout.contains("PROJECT-ROLLUP")
            && tree
                .stdout
                .contains("#1 Stage one: the store (done) [1 summary, 0 raw]")
            && tree.stdout.contains("↳ STAGE-ONE-ROLLUP")
            && tree.stdout.contains("    #2 Create the schema (done)"),
        "{}",
        tree.stdout
    );
    let json = env.json(&["--db", db, "memory", "tree", "--project-id", "1"]);
    assert_eq!(
        json["tasks"][0]["children"].as_array().unwrap().len(),
        2,
        "{json}"
    );
    assert!(
        json["tasks"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("STAGE-ONE-ROLLUP")
    );
}

/// A run killed between a parent's done and its summary leaves a done
/// parent with none; the next run writes it from its subtasks' summaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roll_up_a_killed_run_never_wrote_is_caught_up() {
    let srv = server().await;
    let h = Harness::new(&[]);
    let (s1, a, b, _, _) = two_stages(&h);
    {
        let mut s = h.store();
        for t in [a, b] {
            let raw = llmclis::memory::save_unindexed(
                &mut s,
                "The task's answer.",
                h.project,
                Some(t),
                "raw_interaction",
                "coder",
            )
            .unwrap();
            llmclis::memory::rollup::save_summary(
                &mut s,
                "A task summary.",
                h.project,
                Some(t),
                "task_summary",
                "summarizer",
                &[raw.id],
            )
            .unwrap();
            s.mark_task_status(t, Status::Done, "tester", serde_json::json!({}))
                .unwrap();
        }
        s.mark_task_status(s1, Status::Done, "tester", serde_json::json!({}))
            .unwrap();
        assert!(summaries(&s, s1).is_empty());
    }
    let (_, events) = h.run(registry(&srv.url, &srv.url, ""), 1).await;
    let s = h.store();
    let stage = summaries(&s, s1);
    assert_eq!(stage.len(), 1, "{events:?}");
    assert!(stage[0].text.contains("STAGE-ONE-ROLLUP"));
    assert_eq!(stage[0].covers.len(), 2);
    // And the compaction the kill also cut short: the raws it rolled up
    // leave the index.
    for t in [a, b] {
        let raw: Vec<_> = llmclis::memory::for_task(&s, t)
            .unwrap()
            .into_iter()
            .filter(|m| m.kind == "raw_interaction")
            .collect();
        assert!(raw.iter().all(|m| m.compacted), "{raw:?}");
    }
}

/// The memory part of a step's prompt stays bounded as a project grows:
/// at 10, 100 and 500 done tasks (stages of 10, each rolled up, and a
/// project summary) the tree a new task of the last stage gets is the
/// project summary, its stage's, its dependencies' and its own, while a
/// flat list of every task summary grows with the project. Tokens as the
/// router counts them; `cargo test rollup -- --nocapture` prints the table.
#[test]
fn the_memory_context_stays_bounded_as_the_project_grows() {
    const BUDGET: u64 = 1500;
    let summary = "Implemented the change as asked: the parser now accepts CRLF, the tests cover both endings, and the docs say so. Left open: nothing. Decisions: keep the old API.";
    println!("| done tasks | tree p50 | tree p95 | flat list |");
    for n in [10usize, 100, 500] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("m.db")).unwrap();
        let p = s.create_project("big", "", None, "t").unwrap().id;
        let mut flat = 0u64;
        let mut stage = 0;
        let mut last_task = 0;
        for i in 0..n {
            if i % 10 == 0 {
                stage = s
                    .create_task(
                        NewTask {
                            project_id: p,
                            title: format!("Stage {}", i / 10 + 1),
                            ..Default::default()
                        },
                        "t",
                    )
                    .unwrap()
                    .id;
            }
            let t = s
                .create_task(
                    NewTask {
                        project_id: p,
                        title: format!("Task {i}"),
                        parent_id: Some(stage),
                        depends_on: if last_task > 0 {
                            vec![last_task]
                        } else {
                            vec![]
                        },
                        ..Default::default()
                    },
                    "t",
                )
                .unwrap()
                .id;
            let m = llmclis::memory::rollup::save_summary(
                &mut s,
                summary,
                p,
                Some(t),
                "task_summary",
                "s",
                &[],
            )
            .unwrap();
            flat += m.tokens;
            last_task = t;
            if i % 10 == 9 && i + 1 < n {
                llmclis::memory::rollup::save_summary(
                    &mut s,
                    &summary.repeat(2),
                    p,
                    Some(stage),
                    "task_summary",
                    "s",
                    &[],
                )
                .unwrap();
            }
        }
        llmclis::memory::rollup::save_summary(
            &mut s,
            &summary.repeat(3),
            p,
            None,
            "project_summary",
            "s",
            &[],
        )
        .unwrap();
        // Every task of the project asks: what would its prompt carry?
        let mut sizes: Vec<u64> = s
            .tasks(Some(p), None)
            .unwrap()
            .iter()
            .filter(|t| t.parent_id.is_some())
            .map(|t| {
                let tree = llmclis::memory::rollup::tree_context(&s, t).unwrap();
                llmclis::memory::rollup::within(tree, BUDGET)
                    .iter()
                    .map(|r| r.tokens)
                    .sum()
            })
            .collect();
        sizes.sort_unstable();
        let pct = |q: f64| sizes[((sizes.len() - 1) as f64 * q).round() as usize];
        println!("| {n} | {} | {} | {flat} |", pct(0.5), pct(0.95));
        assert!(pct(0.95) <= BUDGET, "{n}: within the budget");
        assert!(
            pct(0.95) < 400,
            "{n}: a handful of summaries, whatever the size"
        );
        if n >= 100 {
            assert!(flat > BUDGET, "{n}: a flat list would not fit");
        }
    }
}

/// Every `project_summary_every` done tasks the run refreshes the project
/// summary between steps (here every 2 of 5: after the 2nd and the 4th),
/// and once more at its end for the work since; older ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_project_summary_is_refreshed_every_n_done_tasks_and_at_the_end() {
    let srv = server().await;
    let h = Harness::new(&[]);
    two_stages(&h);
    let (summary, _) = h
        .run_summarizing(registry(&srv.url, &srv.url, ""), 10, 2)
        .await;
    assert_eq!(summary.done, 5, "{summary:?}");
    let n: i64 = rusqlite::Connection::open(&h.db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM memories WHERE type = 'project_summary'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 3, "after the 2nd and 4th done task, and at the end");
}
