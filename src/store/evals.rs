//! Eval runs and their results (`llmclis eval`, migration 0009): one row
//! per case, configuration and attempt, written when the case has finished.

use rusqlite::params;
use serde::Serialize;

use super::{Store, now};
use crate::error::Result;

/// One case under one configuration, as the check decided it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EvalResult {
    pub case: String,
    pub config: String,
    pub attempt: u32,
    /// solved, unsolved, protected_changed, over_tokens, timed_out, error
    pub outcome: String,
    pub solved: bool,
    /// Why, in a line: the check's last output, the changed file, the error.
    pub detail: String,
    pub steps: u64,
    pub model_calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub seconds: f64,
    pub tool_calls: u64,
    pub escalations: u64,
    /// The models that answered, in order of first answer.
    pub models: Vec<String>,
    /// The pipeline recorded the task done (a critic approved it, or its
    /// check passed): set against `solved`, the false-done rate.
    pub done: bool,
    /// Answers its check refused before the run ended.
    pub check_failures: u64,
}

impl Store {
    pub fn start_eval_run(
        &mut self,
        suite: &str,
        configs: &[String],
        repeat: u32,
        agent: &str,
    ) -> Result<i64> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO eval_runs (suite, configs, repeat, agent, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    suite,
                    serde_json::to_string(configs).unwrap_or_else(|_| "[]".into()),
                    repeat,
                    agent,
                    now()
                ],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    pub fn record_eval_result(&mut self, run_id: i64, r: &EvalResult) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO eval_results (eval_run_id, case_name, config, attempt, outcome,
                     solved, detail, steps, model_calls, prompt_tokens, completion_tokens,
                     cost_usd, seconds, tool_calls, escalations, models, created_at, done,
                     check_failures)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                         ?18, ?19)",
                params![
                    run_id,
                    r.case,
                    r.config,
                    r.attempt,
                    r.outcome,
                    r.solved,
                    r.detail,
                    r.steps as i64,
                    r.model_calls as i64,
                    r.prompt_tokens as i64,
                    r.completion_tokens as i64,
                    r.cost_usd,
                    r.seconds,
                    r.tool_calls as i64,
                    r.escalations as i64,
                    serde_json::to_string(&r.models).unwrap_or_else(|_| "[]".into()),
                    now(),
                    r.done,
                    r.check_failures as i64,
                ],
            )?;
            Ok(())
        })
    }

    pub fn finish_eval_run(&mut self, run_id: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE eval_runs SET finished_at = ?2 WHERE id = ?1",
                params![run_id, now()],
            )?;
            Ok(())
        })
    }

    /// An eval run's results, in the order they were recorded.
    pub fn eval_results(&self, run_id: i64) -> Result<Vec<EvalResult>> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT case_name, config, attempt, outcome, solved, detail, steps, model_calls,
                    prompt_tokens, completion_tokens, cost_usd, seconds, tool_calls,
                    escalations, models, done, check_failures
             FROM eval_results WHERE eval_run_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map([run_id], |r| {
                let models: String = r.get(14)?;
                Ok(EvalResult {
                    case: r.get(0)?,
                    config: r.get(1)?,
                    attempt: r.get(2)?,
                    outcome: r.get(3)?,
                    solved: r.get(4)?,
                    detail: r.get(5)?,
                    steps: r.get::<_, i64>(6)? as u64,
                    model_calls: r.get::<_, i64>(7)? as u64,
                    prompt_tokens: r.get::<_, i64>(8)? as u64,
                    completion_tokens: r.get::<_, i64>(9)? as u64,
                    cost_usd: r.get(10)?,
                    seconds: r.get(11)?,
                    tool_calls: r.get::<_, i64>(12)? as u64,
                    escalations: r.get::<_, i64>(13)? as u64,
                    models: serde_json::from_str(&models).unwrap_or_default(),
                    done: r.get(15)?,
                    check_failures: r.get::<_, i64>(16)? as u64,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}
