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
            llmclis::memory::rollup::save_summary(
                &mut s,
                "A task summary.",
                h.project,
                Some(t),
                "task_summary",
                "summarizer",
                &[],
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
}
