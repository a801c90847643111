//! What a finished task left: its last done step's answer and diff, or its
//! summary, for the CLI, the board and a parent closing over its subtasks.

use super::Store;
use crate::error::Result;

impl Store {
    /// A text field of the last step that finished the task, if one did.
    fn last_done(&self, task_id: i64, field: &str) -> Result<Option<String>> {
        Ok(self
            .task_steps(task_id)?
            .into_iter()
            .rev()
            .find(|s| s.outcome == Some(super::StepOutcome::Done))
            .and_then(|s| s.detail.get(field)?.as_str().map(str::to_string)))
    }

    /// The answer of the last step that finished the task, if one did.
    pub fn last_result(&self, task_id: i64) -> Result<Option<String>> {
        self.last_done(task_id, "result")
    }

    /// The change the last done step made (or proposed) with the codebase tools.
    pub fn last_diff(&self, task_id: i64) -> Result<Option<String>> {
        self.last_done(task_id, "diff")
    }

    /// A task's latest summary in memory.
    pub(crate) fn latest_summary(&self, task_id: i64) -> Option<String> {
        self.conn()
            .query_row(
                "SELECT text FROM memories WHERE task_id = ?1 AND type = 'task_summary' ORDER BY id DESC LIMIT 1",
                [task_id],
                |r| r.get(0),
            )
            .ok()
    }

    /// A finished task's result: its last done step's answer, else its latest
    /// task summary, else its last note.
    pub fn result_of(&self, task_id: i64) -> Result<String> {
        if let Some(r) = self.last_result(task_id)? {
            return Ok(r);
        }
        let summary = self.latest_summary(task_id);
        if let Some(s) = summary {
            return Ok(s);
        }
        Ok(self
            .notes(task_id)?
            .pop()
            .map(|n| n.text)
            .unwrap_or_default())
    }
}
