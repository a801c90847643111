//! The gateway's call records, written off the request's path: handlers
//! queue them, one thread commits them. A commit waits a moment for the
//! calls right behind it to join its transaction, and a handler wakes the
//! thread only for the first call of a batch, so a steady stream of
//! requests costs one wake and one commit per `COALESCE`, not per call.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::app::handles::Store;
use crate::app::types::ModelCall;

/// How long a batch waits for more calls before it commits. Short enough
/// that `llmclis keys show` and the board see a call as it ends.
const COALESCE: Duration = Duration::from_millis(10);
/// A batch this large commits at once.
const MAX_BATCH: usize = 512;

#[derive(Default)]
struct Queue {
    calls: Vec<ModelCall>,
    closed: bool,
}

#[derive(Default)]
pub(crate) struct Records {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Records {
    /// The queue and the thread that commits it to `db`.
    pub fn start(mut db: Store) -> (Arc<Records>, JoinHandle<()>) {
        let records = Arc::new(Records::default());
        let queue = records.clone();
        let writer = std::thread::spawn(move || {
            while let Some(batch) = queue.next_batch() {
                let written = db.batch(|s| {
                    for call in &batch {
                        s.record_model_call(call)?;
                    }
                    Ok(())
                });
                if let Err(e) = written {
                    tracing::error!(error = %e, calls = batch.len(), "could not record gateway calls");
                }
            }
        });
        (records, writer)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a call; false once closed.
    pub fn push(&self, call: ModelCall) -> bool {
        let mut q = self.lock();
        if q.closed {
            return false;
        }
        q.calls.push(call);
        let wake = q.calls.len() == 1 || q.calls.len() >= MAX_BATCH;
        drop(q);
        if wake {
            self.ready.notify_one();
        }
        true
    }

    /// Takes no more calls; the writer commits what it has and ends.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// The next batch to commit, once it has waited its moment (at once
    /// when closing); None when closed and empty.
    fn next_batch(&self) -> Option<Vec<ModelCall>> {
        let mut q = self
            .ready
            .wait_while(self.lock(), |q| q.calls.is_empty() && !q.closed)
            .unwrap_or_else(|e| e.into_inner());
        if q.calls.is_empty() {
            return None;
        }
        if !q.closed {
            q = self
                .ready
                .wait_timeout_while(q, COALESCE, |q| !q.closed && q.calls.len() < MAX_BATCH)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Some(std::mem::take(&mut q.calls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(n: usize) -> ModelCall {
        ModelCall {
            role: "direct".into(),
            provider: "p".into(),
            model: format!("m{n}"),
            outcome: "ok".into(),
            client: Some("c".into()),
            ..Default::default()
        }
    }

    #[test]
    fn every_queued_call_is_committed_by_close_and_none_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let (records, writer) = Records::start(Store::open(&path).unwrap());
        for n in 0..(MAX_BATCH + 7) {
            assert!(records.push(call(n)));
        }
        records.close();
        assert!(!records.push(call(0)), "closed");
        writer.join().unwrap();
        let calls = Store::open(&path).unwrap().gateway_calls(10_000).unwrap();
        assert_eq!(calls.len(), MAX_BATCH + 7);
    }
}
