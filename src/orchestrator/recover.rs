//! What a run does so that every view catches up with the store, whatever
//! instant an earlier process died at: close the runs that died (their open
//! steps lost), write the plan-file edits they left pending, fill in the
//! memories of tasks they finished, and index memory rows off the step's
//! path (`Indexer`).

use std::time::Duration;

use super::progress::{Observer, Progress};
use super::shared::Shared;
use super::step::StepRun;
use crate::error::Result;
use crate::store::Store;

/// Closes dead runs and writes pending plan-file edits before a run claims
/// anything. Problems are warnings: the store is right either way.
pub(super) fn at_start(
    db: &mut Store,
    project_id: i64,
    lease: Duration,
    agent: &str,
    observer: &Observer,
) -> Result<()> {
    for c in db.close_dead_runs(lease, agent)? {
        observer(&Progress::Recovered {
            message: format!(
                "run {} died without closing ({}); closed as interrupted, {} step(s) lost",
                c.run_id,
                c.why,
                c.lost_steps.len()
            ),
        });
    }
    let caught = crate::docs::catchup::catch_up(db, project_id)?;
    let written = caught.written();
    if written > 0 {
        observer(&Progress::Recovered {
            message: format!(
                "wrote {written} change(s) an earlier process committed but did not get into the plan files"
            ),
        });
    }
    if let Err(e) = caught.into_result(project_id) {
        observer(&Progress::Warning {
            message: e.to_string(),
        });
    }
    Ok(())
}

/// Gives done tasks the memories their step did not leave (the process was
/// killed after the commit): the raw interaction from the step's recorded
/// answer, the summary through the summarizer. No executor is called again.
pub(super) async fn backfill(shared: &Shared, db: &mut Store) -> Result<()> {
    let mut missing = crate::memory::missing_memories(db, Some(shared.opts.project_id))?;
    // And done parents whose roll-up summary a killed run never wrote.
    for id in crate::memory::rollup::missing_rollups(db, shared.opts.project_id)? {
        missing.push(crate::memory::MissingMemory {
            task_id: id,
            project_id: shared.opts.project_id,
            step_id: 0,
            raw_interaction: false,
            task_summary: true,
            rollup: true,
        });
    }
    if missing.is_empty() {
        super::rollup::compact(shared, db);
        shared.kick_indexer();
        return Ok(());
    }
    (shared.observer)(&Progress::Recovered {
        message: format!(
            "{} done task(s) lack their memories (an earlier process stopped after the commit); filling them in from their recorded steps",
            missing.len()
        ),
    });
    for m in missing {
        if *shared.cancel.borrow() {
            break;
        }
        if m.rollup {
            let task = db.task(m.task_id)?;
            if let Err(e) = StepRun::new(shared, db, task, 0, String::new())
                .summarize_parent()
                .await
            {
                (shared.observer)(&Progress::Warning {
                    message: format!("task {}: no roll-up summary ({e})", m.task_id),
                });
            }
            continue;
        }
        let task = db.task(m.task_id)?;
        let step = db
            .task_steps(m.task_id)?
            .into_iter()
            .find(|s| s.id == m.step_id)
            .expect("the step of the query");
        StepRun::new(shared, db, task, 0, String::new())
            .backfill(&step, m.raw_interaction, m.task_summary)
            .await;
    }
    super::rollup::compact(shared, db);
    shared.kick_indexer();
    Ok(())
}
