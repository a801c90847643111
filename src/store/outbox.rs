//! The derived work a committed change implies, kept in the store until it
//! is done: plan-file edits (`doc_outbox`, filled by triggers in the same
//! transaction as the change).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, now};
use crate::error::Result;

/// A task whose lines in the plan files lag behind the store: the newest
/// pending change to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingDocEdit {
    pub task_id: i64,
    /// The newest pending row; applying marks every row up to it.
    pub last_id: i64,
    /// Who made the newest change, and when (store time).
    pub agent: String,
    pub created_at: String,
}

impl Store {
    /// The project's tasks with plan-file edits not yet applied, oldest
    /// change first.
    pub fn pending_doc_edits(&self, project_id: i64) -> Result<Vec<PendingDocEdit>> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT o.task_id, o.id, o.agent, o.created_at
               FROM doc_outbox o
               JOIN (SELECT task_id, max(id) AS last, min(id) AS first FROM doc_outbox
                      WHERE project_id = ?1 AND applied_at IS NULL GROUP BY task_id) p
                 ON o.id = p.last
              ORDER BY p.first",
        )?;
        let rows = stmt
            .query_map([project_id], |r| {
                Ok(PendingDocEdit {
                    task_id: r.get(0)?,
                    last_id: r.get(1)?,
                    agent: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// How many plan-file edits wait, over every project.
    pub fn pending_doc_edit_count(&self, project_id: Option<i64>) -> Result<i64> {
        Ok(self.conn().query_row(
            "SELECT count(DISTINCT task_id) FROM doc_outbox
              WHERE applied_at IS NULL AND (?1 IS NULL OR project_id = ?1)",
            [project_id],
            |r| r.get(0),
        )?)
    }

    /// Marks a task's pending edits up to `last_id` as applied.
    pub fn mark_doc_edits_applied(&mut self, task_id: i64, last_id: i64) -> Result<()> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE doc_outbox SET applied_at = ?3
                  WHERE task_id = ?1 AND id <= ?2 AND applied_at IS NULL",
            )?
            .execute(params![task_id, last_id, now()])?;
            Ok(())
        })
    }

    /// The newest outbox row, so a caller can mark what it wrote itself.
    pub fn last_doc_edit_id(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT coalesce(max(id), 0) FROM doc_outbox", [], |r| {
                r.get(0)
            })?)
    }

    /// Marks every pending edit of a project after `after_id` as applied:
    /// for changes that came from the file itself (an import).
    pub fn mark_project_doc_edits_applied(&mut self, project_id: i64, after_id: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE doc_outbox SET applied_at = ?3
                  WHERE project_id = ?1 AND id > ?2 AND applied_at IS NULL",
                params![project_id, after_id, now()],
            )?;
            Ok(())
        })
    }

    /// When the task's status last changed (store time), if ever.
    pub fn last_status_change(&self, task_id: i64) -> Result<Option<String>> {
        Ok(self.conn().query_row(
            "SELECT max(created_at) FROM events WHERE task_id = ?1 AND to_status IS NOT NULL",
            [task_id],
            |r| r.get(0),
        )?)
    }

    /// The note written with the task's latest status change (same
    /// transaction, same time), which is the reason a task was blocked.
    pub fn note_of_last_status_change(&self, task_id: i64) -> Result<Option<String>> {
        let note: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT (SELECT n.text FROM task_notes n
                          WHERE n.task_id = ?1 AND n.created_at = e.created_at
                          ORDER BY n.id DESC LIMIT 1)
                   FROM events e WHERE e.task_id = ?1 AND e.to_status IS NOT NULL
                  ORDER BY e.id DESC LIMIT 1",
                [task_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(note.flatten())
    }
}
