//! Orchestrator runs, their steps (one task each) and every model call, with
//! its prompt and response, so a task's history can be replayed.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

use super::{Store, now};
use crate::error::{Error, Result};

/// A model call as recorded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelCall {
    pub id: i64,
    pub run_id: Option<i64>,
    pub step_id: Option<i64>,
    pub task_id: Option<i64>,
    pub role: String,
    /// plan, execute, sample, vote, critique, summarize, handoff
    pub purpose: Option<String>,
    pub provider: String,
    pub model: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub tokens_estimated: bool,
    pub latency_ms: Option<u64>,
    pub cost_usd: f64,
    /// ok, error, skipped, invalid (answered, but not what was asked),
    /// cancelled.
    pub outcome: String,
    pub error: Option<String>,
    /// The messages sent, as JSON.
    pub prompt: Option<String>,
    pub response: Option<String>,
    pub created_at: String,
}

/// A tool call an executing role made.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ToolCallRecord {
    pub id: i64,
    pub run_id: Option<i64>,
    pub step_id: Option<i64>,
    pub task_id: i64,
    pub tool: String,
    pub arguments: Value,
    /// ok or error.
    pub outcome: String,
    pub result_bytes: u64,
    /// The start of the result.
    pub result: String,
    pub duration_ms: u64,
    pub created_at: String,
}

/// How much of a tool's result the history keeps.
const TOOL_RESULT_KEPT: usize = 2_000;

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub project_id: Option<i64>,
    pub agent: String,
    pub mode: Option<String>,
    pub status: String,
    pub max_steps: Option<i64>,
    pub workers: Option<i64>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub summary: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunStep {
    pub id: i64,
    pub run_id: i64,
    pub task_id: i64,
    pub step: i64,
    pub agent: String,
    pub role: Option<String>,
    pub rule: Option<String>,
    pub outcome: Option<String>,
    pub model: Option<String>,
    pub rounds: i64,
    pub cost_usd: f64,
    pub detail: Value,
    pub started_at: String,
    pub finished_at: Option<String>,
}

const CALL_COLUMNS: &str = "id, run_id, step_id, task_id, role, purpose, provider, model,
    prompt_tokens, completion_tokens, tokens_estimated, latency_ms, cost_usd, outcome, error,
    prompt, response, created_at";

fn call_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ModelCall> {
    Ok(ModelCall {
        id: r.get(0)?,
        run_id: r.get(1)?,
        step_id: r.get(2)?,
        task_id: r.get(3)?,
        role: r.get(4)?,
        purpose: r.get(5)?,
        provider: r.get(6)?,
        model: r.get(7)?,
        prompt_tokens: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
        completion_tokens: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        tokens_estimated: r.get::<_, i64>(10)? != 0,
        latency_ms: r.get::<_, Option<i64>>(11)?.map(|v| v as u64),
        cost_usd: r.get(12)?,
        outcome: r.get(13)?,
        error: r.get(14)?,
        prompt: r.get(15)?,
        response: r.get(16)?,
        created_at: r.get(17)?,
    })
}

const RUN_COLUMNS: &str =
    "id, project_id, agent, mode, status, max_steps, workers, started_at, finished_at, summary";

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let summary: String = r.get(9)?;
    Ok(Run {
        id: r.get(0)?,
        project_id: r.get(1)?,
        agent: r.get(2)?,
        mode: r.get(3)?,
        status: r.get(4)?,
        max_steps: r.get(5)?,
        workers: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
        summary: serde_json::from_str(&summary).unwrap_or(Value::Null),
    })
}

const STEP_COLUMNS: &str = "id, run_id, task_id, step, agent, role, rule, outcome, model, rounds,
    cost_usd, detail, started_at, finished_at";

fn step_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunStep> {
    let detail: String = r.get(11)?;
    Ok(RunStep {
        id: r.get(0)?,
        run_id: r.get(1)?,
        task_id: r.get(2)?,
        step: r.get(3)?,
        agent: r.get(4)?,
        role: r.get(5)?,
        rule: r.get(6)?,
        outcome: r.get(7)?,
        model: r.get(8)?,
        rounds: r.get(9)?,
        cost_usd: r.get(10)?,
        detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
        started_at: r.get(12)?,
        finished_at: r.get(13)?,
    })
}

pub const STEP_OUTCOMES: [&str; 6] = ["done", "blocked", "split", "released", "failed", "lost"];
pub const RUN_STATUSES: [&str; 3] = ["completed", "interrupted", "failed"];

impl Store {
    pub fn start_run(
        &mut self,
        project_id: i64,
        agent: &str,
        mode: &str,
        max_steps: usize,
        workers: usize,
    ) -> Result<Run> {
        self.ensure_project(project_id)?;
        let id = self.write(|tx| {
            tx.execute(
                "INSERT INTO runs (project_id, agent, mode, max_steps, workers, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    project_id,
                    agent,
                    mode,
                    max_steps as i64,
                    workers as i64,
                    now()
                ],
            )?;
            Ok(tx.last_insert_rowid())
        })?;
        self.run(id)
    }

    /// Closes a run as completed, interrupted or failed, with its summary.
    pub fn finish_run(&mut self, run_id: i64, status: &str, summary: &Value) -> Result<()> {
        if !RUN_STATUSES.contains(&status) {
            return Err(Error::InvalidInput(format!(
                "unknown run status {status:?}: expected one of {}",
                RUN_STATUSES.join(", ")
            )));
        }
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET status = ?2, finished_at = ?3, summary = ?4 WHERE id = ?1",
                params![run_id, status, now(), summary.to_string()],
            )?;
            Ok(())
        })
    }

    pub fn run(&self, id: i64) -> Result<Run> {
        self.conn()
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                run_from_row,
            )
            .optional()?
            .ok_or_else(|| Error::InvalidInput(format!("no run with id {id}")))
    }

    /// A project's runs, newest first.
    pub fn runs(&self, project_id: i64, limit: usize) -> Result<Vec<Run>> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE project_id = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let runs = stmt
            .query_map(params![project_id, limit as i64], run_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(runs)
    }

    pub fn start_step(
        &mut self,
        run_id: i64,
        task_id: i64,
        step: usize,
        agent: &str,
        role: Option<&str>,
        rule: Option<&str>,
    ) -> Result<i64> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO run_steps (run_id, task_id, step, agent, role, rule, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![run_id, task_id, step as i64, agent, role, rule, now()],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Records how a step ended. Call it inside the `batch` that changes the
    /// task's status, so the two land together.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_step(
        &mut self,
        step_id: i64,
        outcome: &str,
        model: Option<&str>,
        rounds: u32,
        cost_usd: f64,
        detail: &Value,
    ) -> Result<()> {
        if !STEP_OUTCOMES.contains(&outcome) {
            return Err(Error::InvalidInput(format!(
                "unknown step outcome {outcome:?}"
            )));
        }
        self.write(|tx| {
            tx.execute(
                "UPDATE run_steps SET outcome = ?2, model = ?3, rounds = ?4, cost_usd = ?5,
                        detail = ?6, finished_at = ?7
                  WHERE id = ?1",
                params![
                    step_id,
                    outcome,
                    model,
                    rounds,
                    cost_usd,
                    detail.to_string(),
                    now()
                ],
            )?;
            Ok(())
        })
    }

    pub fn steps(&self, run_id: i64) -> Result<Vec<RunStep>> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {STEP_COLUMNS} FROM run_steps WHERE run_id = ?1 ORDER BY id"
        ))?;
        let steps = stmt
            .query_map([run_id], step_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(steps)
    }

    /// Every step that worked on a task, oldest first.
    pub fn task_steps(&self, task_id: i64) -> Result<Vec<RunStep>> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {STEP_COLUMNS} FROM run_steps WHERE task_id = ?1 ORDER BY id"
        ))?;
        let steps = stmt
            .query_map([task_id], step_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(steps)
    }

    pub fn record_model_call(&mut self, c: &ModelCall) -> Result<i64> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO model_calls (run_id, step_id, task_id, role, purpose, provider, model,
                        prompt_tokens, completion_tokens, tokens_estimated, latency_ms, cost_usd,
                        outcome, error, prompt, response, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            )?
            .execute(params![
                c.run_id,
                c.step_id,
                c.task_id,
                c.role,
                c.purpose,
                c.provider,
                c.model,
                c.prompt_tokens.map(|v| v as i64),
                c.completion_tokens.map(|v| v as i64),
                c.tokens_estimated,
                c.latency_ms.map(|v| v as i64),
                c.cost_usd,
                c.outcome,
                c.error,
                c.prompt,
                c.response,
                now()
            ])?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// A task's model calls, oldest first.
    pub fn model_calls(&self, task_id: i64) -> Result<Vec<ModelCall>> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {CALL_COLUMNS} FROM model_calls WHERE task_id = ?1 ORDER BY id"
        ))?;
        let calls = stmt
            .query_map([task_id], call_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(calls)
    }

    /// A run's model calls, oldest first.
    pub fn run_model_calls(&self, run_id: i64) -> Result<Vec<ModelCall>> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {CALL_COLUMNS} FROM model_calls WHERE run_id = ?1 ORDER BY id"
        ))?;
        let calls = stmt
            .query_map([run_id], call_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(calls)
    }

    pub fn record_tool_call(&mut self, c: &ToolCallRecord) -> Result<i64> {
        let mut kept = c.result.clone();
        if kept.len() > TOOL_RESULT_KEPT {
            let mut cut = TOOL_RESULT_KEPT;
            while !kept.is_char_boundary(cut) {
                cut -= 1;
            }
            kept.truncate(cut);
            kept.push_str(" […]");
        }
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO tool_calls (run_id, step_id, task_id, tool, arguments, outcome,
                        result_bytes, result, duration_ms, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                c.run_id,
                c.step_id,
                c.task_id,
                c.tool,
                c.arguments.to_string(),
                c.outcome,
                c.result_bytes as i64,
                kept,
                c.duration_ms as i64,
                now()
            ])?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// A task's tool calls, oldest first.
    pub fn tool_calls(&self, task_id: i64) -> Result<Vec<ToolCallRecord>> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT id, run_id, step_id, task_id, tool, arguments, outcome, result_bytes, result,
                    duration_ms, created_at
               FROM tool_calls WHERE task_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map([task_id], |r| {
                let args: String = r.get(5)?;
                Ok(ToolCallRecord {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    step_id: r.get(2)?,
                    task_id: r.get(3)?,
                    tool: r.get(4)?,
                    arguments: serde_json::from_str(&args).unwrap_or(Value::Null),
                    outcome: r.get(6)?,
                    result_bytes: r.get::<_, i64>(7)? as u64,
                    result: r.get(8)?,
                    duration_ms: r.get::<_, i64>(9)? as u64,
                    created_at: r.get(10)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// USD spent on a task's model calls, over every run.
    pub fn task_cost(&self, task_id: i64) -> Result<f64> {
        Ok(self.conn().query_row(
            "SELECT coalesce(sum(cost_usd), 0) FROM model_calls WHERE task_id = ?1",
            [task_id],
            |r| r.get(0),
        )?)
    }
}
