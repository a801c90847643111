//! The queue: which task is ready next, atomic claims with a lease,
//! renewing and settling them, and releasing leases that ran out.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::Transition;
use super::rows::*;
use super::tasks::{append_note_tx, set_status_tx};
use super::{Status, Store, Task, now};
use crate::error::{Error, Result};

/// The ready queue's filter and order. Spelled exactly as in the partial
/// indexes `tasks_ready` / `tasks_ready_any` (migrations/0001_init.sql), or
/// SQLite will not use them.
pub(super) const READY_ORDER: &str =
    "(parent_status IS 'in-progress') DESC, priority DESC, dep_count, id";

pub(super) fn next_ready_sql(project: bool) -> String {
    let scope = if project { "project_id = ?1 AND " } else { "" };
    format!("SELECT id FROM tasks WHERE {scope}{READY_WHERE} ORDER BY {READY_ORDER} LIMIT 1")
}

/// The task's project, or `TaskNotFound`.
pub(super) fn claim_event(
    tx: &Connection,
    project: i64,
    id: i64,
    until: &str,
    agent: &str,
    ts: &str,
) -> Result<()> {
    insert_event(
        tx,
        &EventDraft {
            project_id: project,
            task_id: Some(id),
            kind: "claim",
            from: Some(Status::Pending),
            to: Some(Status::InProgress),
            metadata: &json!({"lease_expires_at": until}),
        },
        agent,
        ts,
    )
}

/// Puts tasks whose lease ran out back to pending, with an event naming the
/// holder that lost them. Returns how many were released.
pub(super) fn release_expired_leases(
    tx: &Connection,
    project_id: Option<i64>,
    agent: &str,
    ts: &str,
) -> Result<usize> {
    let expired: Vec<(i64, i64, Option<String>, String)> = tx
        .prepare_cached(
            "SELECT id, project_id, claimed_by, lease_expires_at FROM tasks
              WHERE lease_expires_at IS NOT NULL AND lease_expires_at < ?1
                AND status = 'in-progress' AND (?2 IS NULL OR project_id = ?2)",
        )?
        .query_map(params![ts, project_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (id, project, holder, lease) in &expired {
        tx.prepare_cached(
            "UPDATE tasks SET status = 'pending', claimed_by = NULL, lease_expires_at = NULL,
                    updated_at = ?2 WHERE id = ?1",
        )?
        .execute(params![id, ts])?;
        insert_event(
            tx,
            &EventDraft {
                project_id: *project,
                task_id: Some(*id),
                kind: "lease_expired",
                from: Some(Status::InProgress),
                to: Some(Status::Pending),
                metadata: &json!({"previous_holder": holder, "lease_expired_at": lease}),
            },
            agent,
            ts,
        )?;
    }
    Ok(expired.len())
}

impl Store {
    /// Ends `holder`'s claim on a task: the new status, the event and the
    /// note (written as `agent`) in one transaction. `None`, with nothing
    /// written, when the holder no longer holds the task (its lease ran out and another agent took
    /// it), so a slow worker never overwrites a newer one's result.
    pub fn finish_claim(
        &mut self,
        task_id: i64,
        holder: &str,
        agent: &str,
        status: Status,
        metadata: Value,
        note: Option<&str>,
    ) -> Result<Option<Transition>> {
        let from = self.write(|tx| {
            let held: bool = tx
                .prepare_cached(
                    "SELECT status = 'in-progress' AND claimed_by IS ?2 FROM tasks WHERE id = ?1",
                )?
                .query_row(params![task_id, holder], |r| r.get(0))
                .optional()?
                .ok_or(Error::TaskNotFound(task_id))?;
            if !held {
                return Ok(None);
            }
            let ts = now();
            let from = set_status_tx(tx, task_id, status, agent, &metadata, &ts)?;
            if let Some(text) = note {
                append_note_tx(tx, task_id, text, agent, &ts)?;
            }
            Ok(Some(from))
        })?;
        from.map(|from| {
            Ok(Transition {
                task: self.task(task_id)?,
                from,
            })
        })
        .transpose()
    }

    /// Claims one given task for `agent`, as `claim_next` would if it were
    /// next: it must be pending and ready.
    pub fn claim_task(&mut self, task_id: i64, agent: &str, lease: Duration) -> Result<Task> {
        let lease = chrono::Duration::from_std(lease)
            .map_err(|_| Error::InvalidInput("the lease is too long".into()))?;
        self.write(|tx| {
            let now_t = chrono::Utc::now();
            let ts = super::format_time(now_t);
            let until = super::format_time(now_t + lease);
            let project = project_of(tx, task_id)?;
            release_expired_leases(tx, Some(project), agent, &ts)?;
            let n = tx.execute(
                &format!(
                    "UPDATE tasks SET status = 'in-progress', claimed_by = ?2, lease_expires_at = ?3,
                            attempts = attempts + 1, updated_at = ?4, last_agent = ?2,
                            last_updated_at = ?4
                      WHERE id = ?1 AND deleted_at IS NULL AND {READY_WHERE}"
                ),
                params![task_id, agent, until, ts],
            )?;
            if n == 0 {
                let status: String =
                    tx.query_row("SELECT status FROM tasks WHERE id = ?1", [task_id], |r| {
                        r.get(0)
                    })?;
                return Err(Error::InvalidInput(format!(
                    "task {task_id} is not ready ({status}, or waiting on dependencies or subtasks); `llmclis task show {task_id}` says why"
                )));
            }
            claim_event(tx, project, task_id, &until, agent, &ts)?;
            Ok(())
        })?;
        self.task(task_id)
    }

    /// The task an agent should work on next, without claiming it: pending,
    /// every dependency and subtask done, parent not blocked; subtasks of
    /// in-progress parents first, then higher priority, then fewer
    /// dependencies, then the lowest id. Tasks whose lease expired come back
    /// at the next `claim_next`.
    pub fn next_task(&self, project_id: Option<i64>) -> Result<Option<Task>> {
        if let Some(p) = project_id {
            self.ensure_project(p)?;
        }
        let conn = self.conn();
        let id: Option<i64> = match project_id {
            Some(p) => conn
                .prepare_cached(&next_ready_sql(true))?
                .query_row([p], |r| r.get(0))
                .optional()?,
            None => conn
                .prepare_cached(&next_ready_sql(false))?
                .query_row([], |r| r.get(0))
                .optional()?,
        };
        id.map(|id| self.task(id)).transpose()
    }

    /// Puts a project's tasks whose lease ran out back to pending (what
    /// `claim_next` does first), so a look at the ready queue sees them.
    pub fn release_expired(&mut self, project_id: i64, agent: &str) -> Result<usize> {
        self.write(|tx| release_expired_leases(tx, Some(project_id), agent, &now()))
    }

    /// `next_task` for one project, passing over the tasks in `skip`.
    pub fn next_task_except(&self, project_id: i64, skip: &[i64]) -> Result<Option<Task>> {
        if skip.is_empty() {
            return self.next_task(Some(project_id));
        }
        let sql = next_ready_sql(true).replace(
            " ORDER BY",
            " AND id NOT IN (SELECT value FROM json_each(?2)) ORDER BY",
        );
        let skipped = serde_json::to_string(skip).expect("ids serialize");
        let id: Option<i64> = self
            .conn()
            .prepare_cached(&sql)?
            .query_row(params![project_id, skipped], |r| r.get(0))
            .optional()?;
        id.map(|id| self.task(id)).transpose()
    }

    /// The first `limit` ready tasks of a project, in the order they would be
    /// claimed (what the next steps will work on, if nothing changes).
    pub fn ready_tasks(&self, project_id: i64, limit: usize) -> Result<Vec<Task>> {
        let ids: Vec<i64> = self
            .conn()
            .prepare_cached(&format!(
                "SELECT id FROM tasks WHERE project_id = ?1 AND {READY_WHERE} ORDER BY {READY_ORDER} LIMIT ?2"
            ))?
            .query_map(params![project_id, limit as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        ids.into_iter().map(|id| self.task(id)).collect()
    }

    /// The first `limit` ready tasks of every project, in claim order.
    pub fn ready_tasks_any(&self, limit: usize) -> Result<Vec<Task>> {
        let ids: Vec<i64> = self
            .conn()
            .prepare_cached(&format!(
                "SELECT id FROM tasks WHERE {READY_WHERE} ORDER BY {READY_ORDER} LIMIT ?1"
            ))?
            .query_map(params![limit.min(i64::MAX as usize) as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        ids.into_iter().map(|id| self.task(id)).collect()
    }

    /// Atomically takes the next task for `agent`: one `UPDATE … WHERE status
    /// = 'pending' … RETURNING` inside a write transaction, with a lease that
    /// ends after `lease`. Leases that already ran out are released first, so
    /// the work of a dead agent is picked up again.
    pub fn claim_next(
        &mut self,
        project_id: Option<i64>,
        agent: &str,
        lease: Duration,
    ) -> Result<Option<Task>> {
        self.claim_next_except(project_id, agent, lease, &[])
    }

    /// `claim_next`, passing over the tasks in `skip` (a run's tasks that
    /// wait for a model that is down).
    pub fn claim_next_except(
        &mut self,
        project_id: Option<i64>,
        agent: &str,
        lease: Duration,
        skip: &[i64],
    ) -> Result<Option<Task>> {
        if agent.trim().is_empty() {
            return Err(Error::InvalidInput("claiming needs an agent name".into()));
        }
        if let Some(p) = project_id {
            self.ensure_project(p)?;
        }
        let lease = chrono::Duration::from_std(lease)
            .map_err(|_| Error::InvalidInput("the lease is too long".into()))?;
        let claimed = self.write(|tx| {
            let now_t = chrono::Utc::now();
            let ts = super::format_time(now_t);
            let until = super::format_time(now_t + lease);
            release_expired_leases(tx, project_id, agent, &ts)?;
            let mut pick = next_ready_sql(project_id.is_some());
            let skipped = serde_json::to_string(skip).expect("ids serialize");
            if !skip.is_empty() {
                pick = pick.replace(
                    " ORDER BY",
                    " AND id NOT IN (SELECT value FROM json_each(:skip)) ORDER BY",
                );
            }
            let sql = format!(
                "UPDATE tasks SET status = 'in-progress', claimed_by = :agent, lease_expires_at = :until,
                        attempts = attempts + 1, updated_at = :now, last_agent = :agent,
                        last_updated_at = :now
                  WHERE id = ({}) AND status = 'pending'
                 RETURNING id, project_id",
                pick.replace("?1", ":project")
            );
            let mut stmt = tx.prepare_cached(&sql)?;
            let mut named: Vec<(&str, &dyn rusqlite::ToSql)> =
                vec![(":agent", &agent), (":until", &until), (":now", &ts)];
            if let Some(p) = project_id.as_ref() {
                named.push((":project", p));
            }
            if !skip.is_empty() {
                named.push((":skip", &skipped));
            }
            let row: Option<(i64, i64)> = stmt
                .query_row(named.as_slice(), |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((id, project)) = row else {
                return Ok(None);
            };
            claim_event(tx, project, id, &until, agent, &ts)?;
            Ok(Some(id))
        })?;
        claimed.map(|id| self.task(id)).transpose()
    }

    /// Extends the lease of a task `agent` holds. False when it no longer
    /// holds it (the lease ran out and another agent took the task).
    pub fn renew_lease(&mut self, task_id: i64, agent: &str, lease: Duration) -> Result<bool> {
        let lease = chrono::Duration::from_std(lease)
            .map_err(|_| Error::InvalidInput("the lease is too long".into()))?;
        let until = super::format_time(chrono::Utc::now() + lease);
        self.write(|tx| {
            project_of(tx, task_id)?;
            let n = tx.execute(
                "UPDATE tasks SET lease_expires_at = ?3
                  WHERE id = ?1 AND claimed_by = ?2 AND status = 'in-progress'",
                params![task_id, agent, until],
            )?;
            Ok(n == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ready-queue queries must be index seeks, or next_task scans the
    /// whole table at 100,000 tasks.
    #[test]
    fn next_task_queries_use_the_ready_indexes() {
        let store = Store::open_in_memory().unwrap();
        for (project, index) in [(true, "tasks_ready"), (false, "tasks_ready_any")] {
            let plan: Vec<String> = store
                .conn()
                .prepare(&format!("EXPLAIN QUERY PLAN {}", next_ready_sql(project)))
                .unwrap()
                .query_map(rusqlite::params_from_iter(project.then_some(1i64)), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let plan = plan.join("\n");
            assert!(plan.contains(index), "plan does not use {index}:\n{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "plan sorts:\n{plan}");
        }
    }
}
