//! The runs of tasks' checks (migration 0011): append-only, one row per
//! command run (or per change refused for touching a protected path).

use rusqlite::params;
use serde::Serialize;

use super::{Store, now};
use crate::error::Result;

/// One check's run, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRecord {
    pub id: i64,
    pub task_id: i64,
    pub run_id: Option<i64>,
    pub step_id: Option<i64>,
    /// The step's attempt, from 1.
    pub attempt: i64,
    pub command: String,
    pub exit_code: Option<i32>,
    pub passed: bool,
    pub seconds: f64,
    pub output_tail: String,
    pub created_at: String,
}

const COLUMNS: &str = "id, task_id, run_id, step_id, attempt, command, exit_code, passed, seconds, \
     output_tail, created_at";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CheckRecord> {
    Ok(CheckRecord {
        id: r.get(0)?,
        task_id: r.get(1)?,
        run_id: r.get(2)?,
        step_id: r.get(3)?,
        attempt: r.get(4)?,
        command: r.get(5)?,
        exit_code: r.get(6)?,
        passed: r.get(7)?,
        seconds: r.get(8)?,
        output_tail: r.get(9)?,
        created_at: r.get(10)?,
    })
}

impl Store {
    /// Records one check's run (`id` and `created_at` are set here).
    pub fn record_check_run(&mut self, c: &CheckRecord) -> Result<i64> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO check_runs (task_id, run_id, step_id, attempt, command, exit_code,
                                         passed, seconds, output_tail, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                c.task_id,
                c.run_id,
                c.step_id,
                c.attempt,
                c.command,
                c.exit_code,
                c.passed,
                c.seconds,
                c.output_tail,
                now()
            ])?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// A task's check runs, oldest first.
    pub fn check_runs(&self, task_id: i64) -> Result<Vec<CheckRecord>> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {COLUMNS} FROM check_runs WHERE task_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt
            .query_map([task_id], from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The commands of the task's last passing attempt, when its last check
    /// run passed: what verified it.
    pub fn verified_by(&self, task_id: i64) -> Result<Vec<String>> {
        let runs = self.check_runs(task_id)?;
        let Some(last) = runs.last().filter(|r| r.passed) else {
            return Ok(Vec::new());
        };
        Ok(runs
            .iter()
            .filter(|r| r.step_id == last.step_id && r.attempt == last.attempt && r.passed)
            .map(|r| r.command.clone())
            .collect())
    }
}
