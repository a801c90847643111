//! Dependencies between tasks: same project only, never a cycle (the path
//! that would close one is named), each change an event.

use std::collections::{HashMap, HashSet, VecDeque};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::rows::*;
use super::{Store, now};
use crate::error::{Error, Result};

pub(super) fn ensure_same_project(
    tx: &rusqlite::Connection,
    task: i64,
    task_project: i64,
    other: i64,
    what: &'static str,
) -> Result<()> {
    let other_project = project_of(tx, other)?;
    if other_project != task_project {
        return Err(Error::CrossProject {
            task,
            task_project,
            other,
            other_project,
            what,
        });
    }
    Ok(())
}

/// If `from` already reaches `to` through dependencies, the path `from → … → to`.
pub(super) fn dependency_path(
    tx: &rusqlite::Connection,
    from: i64,
    to: i64,
) -> Result<Option<Vec<i64>>> {
    let mut stmt = tx.prepare_cached("SELECT depends_on FROM task_deps WHERE task_id = ?1")?;
    let mut came_from: HashMap<i64, i64> = HashMap::new();
    let mut queue = VecDeque::from([from]);
    let mut seen = HashSet::from([from]);
    while let Some(node) = queue.pop_front() {
        if node == to {
            let mut path = vec![to];
            let mut cur = to;
            while let Some(&prev) = came_from.get(&cur) {
                path.push(prev);
                cur = prev;
            }
            path.reverse();
            return Ok(Some(path));
        }
        let next: Vec<i64> = stmt
            .query_map([node], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for n in next {
            if seen.insert(n) {
                came_from.insert(n, node);
                queue.push_back(n);
            }
        }
    }
    Ok(None)
}

pub(super) fn add_dependency_tx(
    tx: &Connection,
    task_id: i64,
    depends_on: i64,
    agent: &str,
    ts: &str,
) -> Result<bool> {
    if task_id == depends_on {
        return Err(Error::SelfDependency(task_id));
    }
    let project = project_of(tx, task_id)?;
    ensure_same_project(tx, task_id, project, depends_on, "a dependency")?;
    let exists = tx
        .prepare_cached("SELECT 1 FROM task_deps WHERE task_id = ?1 AND depends_on = ?2")?
        .query_row([task_id, depends_on], |_| Ok(()))
        .optional()?
        .is_some();
    if exists {
        return Ok(false);
    }
    if let Some(path) = dependency_path(tx, depends_on, task_id)? {
        // The new edge task → depends_on closes the loop depends_on → … → task.
        let mut cycle = vec![task_id];
        cycle.extend(path);
        let shown: Vec<String> = cycle.iter().map(i64::to_string).collect();
        return Err(Error::DependencyCycle {
            path: format!("task {} (each depends on the next)", shown.join(" → ")),
        });
    }
    tx.prepare_cached(
        "INSERT INTO task_deps (task_id, depends_on, created_at, created_by) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![task_id, depends_on, ts, agent])?;
    insert_event(
        tx,
        &EventDraft {
            project_id: project,
            task_id: Some(task_id),
            kind: "dependency",
            from: None,
            to: None,
            metadata: &json!({"action": "added", "depends_on": depends_on}),
        },
        agent,
        ts,
    )?;
    touch(tx, task_id, agent, ts)?;
    Ok(true)
}

impl Store {
    /// `task_id` depends on `depends_on`. Refuses self-dependencies, other
    /// projects and cycles (naming the cycle). Adding an existing dependency
    /// changes nothing and returns false.
    pub fn add_dependency(&mut self, task_id: i64, depends_on: i64, agent: &str) -> Result<bool> {
        self.write(|tx| add_dependency_tx(tx, task_id, depends_on, agent, &now()))
    }

    /// Drops a dependency; returns false when there was none.
    pub fn remove_dependency(
        &mut self,
        task_id: i64,
        depends_on: i64,
        agent: &str,
    ) -> Result<bool> {
        self.write(|tx| {
            let project = project_of(tx, task_id)?;
            project_of(tx, depends_on)?;
            let n = tx.execute(
                "DELETE FROM task_deps WHERE task_id = ?1 AND depends_on = ?2",
                [task_id, depends_on],
            )?;
            if n == 0 {
                return Ok(false);
            }
            let ts = now();
            insert_event(
                tx,
                &EventDraft {
                    project_id: project,
                    task_id: Some(task_id),
                    kind: "dependency",
                    from: None,
                    to: None,
                    metadata: &json!({"action": "removed", "depends_on": depends_on}),
                },
                agent,
                &ts,
            )?;
            touch(tx, task_id, agent, &ts)?;
            Ok(true)
        })
    }
}
