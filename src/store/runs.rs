//! Orchestrator runs, their steps (one task each) and every model call, with
//! its prompt and response, so a task's history can be replayed.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

use std::time::Duration;

use chrono::Utc;

use super::{Store, format_time, now};
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
    /// The gateway client (its key's name) that asked, for `llmclis serve`.
    pub client: Option<String>,
    /// Of `prompt_tokens`, read from the prompt cache; and written to it.
    pub cached_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
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
    /// The process that ran it, on which host, and when it last said it
    /// was alive (NULL for runs recorded before version 8).
    pub pid: Option<i64>,
    pub host: Option<String>,
    pub heartbeat_at: Option<String>,
}

/// A run found dead and closed: its process is gone, or its heartbeat
/// stopped for longer than a lease.
#[derive(Debug, Clone, Serialize)]
pub struct ClosedRun {
    pub run_id: i64,
    pub project_id: Option<i64>,
    pub why: String,
    /// (step id, task id) of the steps that had no outcome, now `lost`.
    pub lost_steps: Vec<(i64, i64)>,
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
    /// None while the step runs.
    pub outcome: Option<StepOutcome>,
    pub model: Option<String>,
    pub rounds: i64,
    pub cost_usd: f64,
    pub detail: Value,
    pub started_at: String,
    pub finished_at: Option<String>,
}

const CALL_COLUMNS: &str = "id, run_id, step_id, task_id, role, purpose, provider, model,
    prompt_tokens, completion_tokens, tokens_estimated, latency_ms, cost_usd, outcome, error,
    prompt, response, created_at, client, cached_tokens, cache_write_tokens";

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
        client: r.get(18)?,
        cached_tokens: r.get::<_, Option<i64>>(19)?.map(|v| v as u64),
        cache_write_tokens: r.get::<_, Option<i64>>(20)?.map(|v| v as u64),
    })
}

const RUN_COLUMNS: &str = "id, project_id, agent, mode, status, max_steps, workers, started_at,
    finished_at, summary, pid, host, heartbeat_at";

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
        pid: r.get(10)?,
        host: r.get(11)?,
        heartbeat_at: r.get(12)?,
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
        outcome: r
            .get::<_, Option<String>>(7)?
            .as_deref()
            .and_then(StepOutcome::parse),
        model: r.get(8)?,
        rounds: r.get(9)?,
        cost_usd: r.get(10)?,
        detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
        started_at: r.get(12)?,
        finished_at: r.get(13)?,
    })
}

/// How a step ended, as its record keeps it (the schema's CHECK lists the
/// same words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Done,
    Blocked,
    Split,
    /// Back to pending: interrupted, or no server could take the request.
    Released,
    /// Something outside the models failed; the task went back to pending.
    Failed,
    /// The step's run died, or its claim ran out under it.
    Lost,
}

impl StepOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Done => "done",
            StepOutcome::Blocked => "blocked",
            StepOutcome::Split => "split",
            StepOutcome::Released => "released",
            StepOutcome::Failed => "failed",
            StepOutcome::Lost => "lost",
        }
    }

    fn parse(text: &str) -> Option<StepOutcome> {
        [
            StepOutcome::Done,
            StepOutcome::Blocked,
            StepOutcome::Split,
            StepOutcome::Released,
            StepOutcome::Failed,
            StepOutcome::Lost,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}
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
            let ts = now();
            tx.execute(
                "INSERT INTO runs (project_id, agent, mode, max_steps, workers, started_at,
                                   pid, host, heartbeat_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?6)",
                params![
                    project_id,
                    agent,
                    mode,
                    max_steps as i64,
                    workers as i64,
                    ts,
                    std::process::id() as i64,
                    crate::process::host(),
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

    /// The run is alive: called by its heartbeat.
    pub fn heartbeat_run(&mut self, run_id: i64) -> Result<()> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE runs SET heartbeat_at = ?2 WHERE id = ?1 AND status = 'running'",
            )?
            .execute(params![run_id, now()])?;
            Ok(())
        })
    }

    /// Closes the runs that died without closing themselves (kill -9, a
    /// crash, a lost machine): a run still `running` whose process is gone
    /// from this host, or whose heartbeat is older than `stale_after`,
    /// becomes `interrupted`, and its steps without an outcome become
    /// `lost`, each with an event. The claims of a run whose process is
    /// known to be gone are expired at once, so the next claim takes its
    /// tasks back without waiting for the lease.
    pub fn close_dead_runs(&mut self, stale_after: Duration, by: &str) -> Result<Vec<ClosedRun>> {
        let host = crate::process::host();
        let cutoff =
            format_time(Utc::now() - chrono::Duration::from_std(stale_after).unwrap_or_default());
        let mut closed = Vec::new();
        for run in self.open_runs()? {
            let (id, project_id, agent, pid) = (run.id, run.project_id, run.agent, run.pid);
            let run_host = run.host;
            let beat = run.heartbeat_at.unwrap_or(run.started_at);
            let gone = run_host.as_deref() == Some(host.as_str())
                && pid.is_some_and(|p| !crate::process::alive(p));
            let why = if gone {
                format!(
                    "its process {} on {host} is gone (last heartbeat {beat})",
                    pid.unwrap_or_default()
                )
            } else if beat < cutoff {
                format!(
                    "no heartbeat since {beat} (more than {} s)",
                    stale_after.as_secs()
                )
            } else {
                continue;
            };
            let lost = self.write(|tx| {
                let ts = now();
                let changed = tx.execute(
                    "UPDATE runs SET status = 'interrupted', finished_at = ?2,
                            summary = json_patch(summary, json_object('closed_by', ?3, 'closed_because', ?4,
                                                                      'stopped_because', 'died'))
                      WHERE id = ?1 AND status = 'running'",
                    params![id, ts, by, why],
                )?;
                if changed == 0 {
                    // Another process closed it first.
                    return Ok(None);
                }
                let lost: Vec<(i64, i64)> = tx
                    .prepare(
                        "UPDATE run_steps SET outcome = 'lost', finished_at = ?2,
                                detail = json_set(detail, '$.lost_because', ?3)
                          WHERE run_id = ?1 AND outcome IS NULL
                          RETURNING id, task_id",
                    )?
                    .query_map(params![id, ts, why], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                if let Some(p) = project_id {
                    tx.execute(
                        "INSERT INTO events (project_id, kind, agent, metadata, created_at)
                         VALUES (?1, 'run_interrupted', ?2, json_object('run_id', ?3, 'reason', ?4, 'lost_steps', ?5), ?6)",
                        params![p, by, id, why, lost.len() as i64, ts],
                    )?;
                    for (step, task) in &lost {
                        tx.execute(
                            "INSERT INTO events (project_id, task_id, kind, agent, metadata, created_at)
                             VALUES (?1, ?2, 'step_lost', ?3, json_object('run_id', ?4, 'step_id', ?5, 'reason', ?6), ?7)",
                            params![p, task, by, id, step, why, ts],
                        )?;
                    }
                }
                if gone {
                    let prefix = format!("{agent}/run-{id}/");
                    tx.execute(
                        "UPDATE tasks SET lease_expires_at = ?2
                          WHERE status = 'in-progress' AND claimed_by IS NOT NULL
                            AND substr(claimed_by, 1, length(?1)) = ?1",
                        params![prefix, format_time(Utc::now() - chrono::Duration::seconds(1))],
                    )?;
                }
                Ok(Some(lost))
            })?;
            if let Some(lost_steps) = lost {
                closed.push(ClosedRun {
                    run_id: id,
                    project_id,
                    why,
                    lost_steps,
                });
            }
        }
        Ok(closed)
    }

    /// Runs still marked running (alive, or dead and not yet found out).
    pub fn open_runs(&self) -> Result<Vec<Run>> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' ORDER BY id"
        ))?;
        let runs = stmt
            .query_map([], run_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(runs)
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
        outcome: StepOutcome,
        model: Option<&str>,
        rounds: u32,
        cost_usd: f64,
        detail: &Value,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE run_steps SET outcome = ?2, model = ?3, rounds = ?4, cost_usd = ?5,
                        detail = ?6, finished_at = ?7
                  WHERE id = ?1",
                params![
                    step_id,
                    outcome.as_str(),
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
                        outcome, error, prompt, response, created_at, client, cached_tokens,
                        cache_write_tokens)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                         ?19, ?20)",
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
                now(),
                c.client,
                c.cached_tokens.map(|v| v as i64),
                c.cache_write_tokens.map(|v| v as i64)
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

/// The latest calls gateway clients made, newest first.
pub(super) fn recent_client_calls(
    conn: &rusqlite::Connection,
    limit: usize,
) -> Result<Vec<ModelCall>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CALL_COLUMNS} FROM model_calls WHERE client IS NOT NULL ORDER BY id DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit as i64], call_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
