//! What every step of a run shares: the options, the models, the prompts,
//! memory, the observer, the leases in flight and the spend; and the
//! router's view of the run (`Spend`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::progress::{Observer, Options};
use crate::llm::caller::Caller;
use crate::memory::Memory;
use crate::prompts::Prompts;
use crate::router::Conditions;

/// State every step of a run shares.
pub(super) struct Shared {
    pub opts: Options,
    pub run_id: i64,
    /// The run's agent name, `agent/run-N`: notes and events are written
    /// as it. Each step claims as `agent/run-N/step-M`, so no claim is ever
    /// mistaken for another (another process with the same agent name, or
    /// this run's own earlier claim whose lease ran out).
    pub holder: String,
    pub caller: Arc<Caller>,
    pub prompts: Arc<Prompts>,
    pub memory: Option<Arc<Memory>>,
    pub observer: Observer,
    pub cancel: tokio::sync::watch::Receiver<bool>,
    pub(super) spent: Mutex<f64>,
    /// The tasks in flight and their claims, whose leases the heartbeat
    /// renews; a step leaves it as soon as its end is committed.
    pub in_flight: Arc<Mutex<HashMap<i64, String>>>,
    /// Indexes the memory rows the steps save, off their path.
    pub(super) indexer: Mutex<Option<super::indexer::Indexer>>,
    /// Where tasks' git worktrees go (beside the database, never inside
    /// the user's repository).
    pub worktrees: std::path::PathBuf,
    /// Projects outside git with writes on: one writer at a time, within
    /// this process (other processes: the OS lock beside it).
    pub writers: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The step's claim is settled: its lease needs no more renewing.
    pub fn settled(&self, task_id: i64) {
        self.in_flight.lock().expect("lease set").remove(&task_id);
    }

    /// New memory rows are in SQLite: index them (in the background).
    pub fn kick_indexer(&self) {
        if let Some(i) = self.indexer.lock().expect("indexer").as_ref() {
            i.kick();
        }
    }

    pub fn spent(&self) -> f64 {
        *self.spent.lock().expect("spend lock")
    }

    pub fn add_spent(&self, usd: f64) {
        *self.spent.lock().expect("spend lock") += usd;
    }
}

/// The router's view of the run: the caller's cooldowns and keys, and what
/// the run and the task have spent so far.
pub(super) struct Spend<'a> {
    pub caller: &'a Caller,
    pub run: f64,
    pub task: f64,
}

impl Conditions for Spend<'_> {
    fn cooling_down(&self, model_id: &str) -> bool {
        self.caller.cooling_down(model_id)
    }
    fn key_set(&self, env_var: &str) -> bool {
        self.caller.key_set(env_var)
    }
    fn spent(&self) -> (f64, f64) {
        (self.run, self.task)
    }
    fn resources(&self) -> Option<Arc<crate::resources::View>> {
        Conditions::resources(self.caller)
    }
    fn load(&self, model_id: &str) -> crate::router::Load {
        self.caller.load(model_id)
    }
    fn window(&self, model: &crate::registry::Model) -> u64 {
        self.caller.window(model)
    }
}
