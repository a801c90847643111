//! The memory indexer of a run: embeds and indexes memory rows on a thread
//! of its own, so a step never waits for the index.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use super::progress::{Observer, Progress};
use crate::error::Result;
use crate::memory::Memory;
use crate::store::Store;

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
