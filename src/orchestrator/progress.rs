//! What a run is asked to do (`Options`) and what it reports as it goes
//! (`Progress`, ending with the `Summary`), apart from the loop that does it
//! so the steps, recovery and every front end can name them.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::registry::Mode;
use crate::store::StatusCounts;

#[derive(Debug, Clone)]
pub struct Options {
    pub project_id: i64,
    pub max_steps: usize,
    pub workers: usize,
    pub mode: Mode,
    pub agent: String,
    pub lease: Duration,
    /// Executor rounds per model before escalating.
    pub max_rounds: u32,
    /// Repairs on the same model after a failing check.
    pub check_rounds: u32,
    /// Tokens of memory context per prompt.
    pub context_tokens: u64,
    pub memory_top_k: usize,
    /// Refresh the project summary every this many done tasks and at the
    /// run's end when it finished any (`Some(0)`: only at the end); `None`:
    /// never (an evaluation, whose figures are the pipeline's alone).
    pub project_summary_every: Option<usize>,
    /// When done tasks' raw interactions leave the index, checked after
    /// each summary the run writes.
    pub compact: crate::memory::rollup::CompactWhen,
    /// How deep the planner may split (1: only top-level tasks).
    pub max_plan_depth: usize,
    /// Unload idle Ollama models to load a better model that does not fit.
    pub make_room: bool,
    /// Work on this task only (it must be ready), as one step.
    pub task_id: Option<i64>,
    /// Report the executor's answer token by token (`Progress::Token`).
    pub stream_tokens: bool,
    /// The codebase tools for coders and testers.
    pub tools: crate::config::ToolsConfig,
    /// Direct: one executor answer closes a task, with no planner, no
    /// voting and no critic (an evaluation's baseline).
    pub no_review: bool,
}

/// What a run reports as it goes: one JSON object per line with `--json`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    RunStarted {
        run_id: i64,
        project_id: i64,
        agent: String,
        mode: Mode,
        workers: usize,
        max_steps: usize,
        memory: String,
    },
    StepStarted {
        run_id: i64,
        step: usize,
        task_id: i64,
        external_ref: Option<String>,
        title: String,
        role: String,
        rule: String,
        chain: Vec<String>,
        plan: bool,
    },
    ModelCall {
        step: usize,
        task_id: i64,
        purpose: String,
        role: String,
        model: String,
        provider: String,
        outcome: String,
        prompt_tokens: Option<u64>,
        completion_tokens: Option<u64>,
        latency_ms: u64,
        cost_usd: f64,
        error: Option<String>,
    },
    ToolCall {
        step: usize,
        task_id: i64,
        tool: String,
        ok: bool,
        result_bytes: usize,
        duration_ms: u64,
    },
    Verdict {
        step: usize,
        task_id: i64,
        verdict: String,
        reasons: Vec<String>,
        risks: Vec<String>,
    },
    Note {
        step: usize,
        task_id: i64,
        text: String,
    },
    /// The step's context was cut to fit the window of the model that
    /// answers (what went, in the stated order: `orchestrator::fit`).
    ContextCut {
        step: usize,
        task_id: i64,
        model: String,
        window: u64,
        tokens: u64,
        cut: Vec<super::fit::Cut>,
    },
    /// A check of the task's change starts.
    CheckStarted {
        step: usize,
        task_id: i64,
        command: String,
    },
    /// It ended: `exit_code` null when it was killed at its timeout or the
    /// change was refused before it ran (a protected path).
    CheckFinished {
        step: usize,
        task_id: i64,
        command: String,
        exit_code: Option<i32>,
        passed: bool,
        seconds: f64,
    },
    /// A task was left for a later run: no model that could take it is up
    /// (the reason says which could).
    TaskWaits {
        step: usize,
        task_id: i64,
        reason: String,
    },
    /// Idle models were unloaded to load a better one (`make_room`).
    MadeRoom {
        step: usize,
        task_id: i64,
        unloaded: Vec<String>,
        loaded: String,
        took_ms: u64,
        /// Why the load did not happen after all.
        error: Option<String>,
    },
    StatusChange {
        step: usize,
        task_id: i64,
        from: String,
        to: String,
    },
    StepFinished {
        step: usize,
        task_id: i64,
        title: String,
        outcome: Outcome,
        model: Option<String>,
        rounds: u32,
        seconds: f64,
        cost_usd: f64,
    },
    /// A piece of the executor's answer as it streams (with
    /// `Options::stream_tokens`).
    Token {
        step: usize,
        task_id: i64,
        text: String,
    },
    Warning {
        message: String,
    },
    /// Catching up after an earlier process died: a dead run closed, plan
    /// files written, memories filled in or indexed.
    Recovered {
        message: String,
    },
    /// Ctrl-C was seen: no new task is taken.
    Interrupting,
    RunSummary(Summary),
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub run_id: i64,
    pub project_id: i64,
    /// completed, interrupted or failed.
    pub status: String,
    /// max_steps, no_ready_task, interrupted, models_unreachable or
    /// step_failed.
    pub stopped_because: String,
    pub steps: usize,
    pub done: usize,
    /// Of those done, the ones whose checks passed.
    pub verified: usize,
    pub blocked: usize,
    pub split: usize,
    pub released: usize,
    /// Of those released, tasks left for a later run because no model that
    /// could take them was up (`task show` says which could).
    pub waiting: usize,
    pub failed: usize,
    pub lost: usize,
    pub model_calls: usize,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub seconds: f64,
    /// The project after the run.
    pub counts: StatusCounts,
}

pub type Observer = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Blocked,
    Split,
    /// Back to pending (interrupted).
    Released,
    /// Back to pending: no model that could take it is up or answered;
    /// the run passes over it and goes on with the others.
    Unreachable,
    /// Something outside the models failed (the database, plans.md); the
    /// task went back to pending with a note.
    Failed,
    /// The lease ran out and another agent took the task; nothing written.
    Lost,
}

impl Outcome {
    /// How the step's record keeps it.
    pub fn recorded(self) -> crate::store::StepOutcome {
        use crate::store::StepOutcome as S;
        match self {
            Outcome::Done => S::Done,
            Outcome::Blocked => S::Blocked,
            Outcome::Split => S::Split,
            Outcome::Released | Outcome::Unreachable => S::Released,
            Outcome::Failed => S::Failed,
            Outcome::Lost => S::Lost,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.recorded().as_str()
    }
}
