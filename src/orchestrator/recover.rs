//! What a run does so that every view catches up with the store, whatever
//! instant an earlier process died at: close the runs that died (their open
//! steps lost), write the plan-file edits they left pending, fill in the
//! memories of tasks they finished, and index memory rows off the step's
//! path (`Indexer`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use super::run::{Observer, Progress, Shared};
use super::step::StepRun;
use crate::error::Result;
use crate::memory::Memory;
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
    let missing = crate::memory::missing_memories(db, Some(shared.opts.project_id))?;
    if missing.is_empty() {
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
    shared.kick_indexer();
    Ok(())
}

/// Rows indexed between two looks at the next steps' queries.
const ROWS_AT_A_TIME: usize = 4;

enum Job {
    Kick,
    Finish,
}

/// Indexes memory rows on a thread of its own, so embedding never sits on
/// a step's path: a step saves its memories in SQLite and kicks it at its
/// end; it indexes everything not yet indexed (other processes' rows too)
/// and flushes. `finish` indexes what is left and waits for it.
pub(super) struct Indexer {
    tx: mpsc::Sender<Job>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Indexer {
    /// `ahead`: how many of the project's next ready tasks get their
    /// context query embedded before they are claimed.
    pub fn start(
        memory: Arc<Memory>,
        db_path: PathBuf,
        observer: Observer,
        project_id: i64,
        ahead: usize,
    ) -> Result<Indexer> {
        let mut db = Store::open(&db_path)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("llmclis-indexer".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        observer(&Progress::Warning {
                            message: format!("memory indexer not started: {e}"),
                        });
                        return;
                    }
                };
                let mut warned = false;
                while let Ok(job) = rx.recv() {
                    // Kicks that piled up while indexing are one catch-up.
                    let mut finish = matches!(job, Job::Finish);
                    while let Ok(more) = rx.try_recv() {
                        finish |= matches!(more, Job::Finish);
                    }
                    // A little at a time, the next steps' queries before
                    // each bit: a step waits for its query, never for rows.
                    loop {
                        let next = db.ready_tasks(project_id, ahead).unwrap_or_default();
                        let queries = next.iter().map(crate::memory::context_query).collect();
                        if let Err(e) = rt.block_on(memory.prefetch(queries)) {
                            tracing::warn!(error = %e, "query prefetch failed");
                        }
                        match rt.block_on(memory.catch_up_at_most(&mut db, ROWS_AT_A_TIME, None)) {
                            Ok(done) if done.indexed + done.dropped == 0 => break,
                            Ok(_) => {}
                            Err(e) => {
                                if !warned {
                                    observer(&Progress::Warning {
                                        message: format!(
                                            "memories are saved but not indexed yet ({e}); the next command that opens the index indexes them"
                                        ),
                                    });
                                    warned = true;
                                }
                                tracing::warn!(error = %e, "memory catch-up failed");
                                break;
                            }
                        }
                    }
                    if finish {
                        break;
                    }
                }
            })
            .map_err(|e| crate::Error::io("<indexer thread>", e))?;
        Ok(Indexer {
            tx,
            thread: Some(thread),
        })
    }

    pub fn kick(&self) {
        let _ = self.tx.send(Job::Kick);
    }

    /// Indexes what is left, then returns.
    pub fn finish(mut self) {
        let _ = self.tx.send(Job::Finish);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
