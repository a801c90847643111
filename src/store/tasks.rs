use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Value, json};

use super::deps::*;
use super::rows::*;
use super::{Event, NewTask, Note, Status, StatusCounts, Store, Task, TaskPatch, now};
use crate::error::{Error, Result};

pub(super) fn set_status_tx(
    tx: &Connection,
    id: i64,
    status: Status,
    agent: &str,
    metadata: &Value,
    ts: &str,
) -> Result<Status> {
    let (project, from, holder): (i64, String, Option<String>) = tx
        .prepare_cached("SELECT project_id, status, claimed_by FROM tasks WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
        .ok_or(Error::TaskNotFound(id))?;
    let from: Status = from.parse()?;
    if from == status {
        return Ok(from);
    }
    if status == Status::InProgress {
        // Taken by hand: the agent holds it with no lease, unless it already
        // held a lease from a claim.
        let keep_lease = holder.as_deref() == Some(agent);
        tx.prepare_cached(
            "UPDATE tasks SET status = 'in-progress', claimed_by = ?2,
                    lease_expires_at = CASE WHEN ?3 THEN lease_expires_at END,
                    updated_at = ?4, last_agent = ?2, last_updated_at = ?4
              WHERE id = ?1",
        )?
        .execute(params![id, agent, keep_lease, ts])?;
    } else {
        tx.prepare_cached(
            "UPDATE tasks SET status = ?2, claimed_by = NULL, lease_expires_at = NULL,
                    updated_at = ?4, last_agent = ?3, last_updated_at = ?4
              WHERE id = ?1",
        )?
        .execute(params![id, status.as_str(), agent, ts])?;
    }
    insert_event(
        tx,
        &EventDraft {
            project_id: project,
            task_id: Some(id),
            kind: "status",
            from: Some(from),
            to: Some(status),
            metadata,
        },
        agent,
        ts,
    )?;
    Ok(from)
}

pub(super) fn append_note_tx(
    tx: &Connection,
    id: i64,
    text: &str,
    agent: &str,
    ts: &str,
) -> Result<i64> {
    if text.trim().is_empty() {
        return Err(Error::InvalidInput("a note cannot be empty".into()));
    }
    let project = project_of(tx, id)?;
    tx.prepare_cached(
        "INSERT INTO task_notes (task_id, agent, text, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, agent, text, ts])?;
    let note_id = tx.last_insert_rowid();
    insert_event(
        tx,
        &EventDraft {
            project_id: project,
            task_id: Some(id),
            kind: "note",
            from: None,
            to: None,
            metadata: &json!({"note_id": note_id}),
        },
        agent,
        ts,
    )?;
    touch(tx, id, agent, ts)?;
    Ok(note_id)
}

/// A status change as it happened: the task after it, and where it came from.
#[derive(Debug, Clone)]
pub struct Transition {
    pub task: Task,
    pub from: Status,
}

impl Transition {
    pub fn changed(&self) -> bool {
        self.from != self.task.status
    }
}

impl Store {
    pub fn create_task(&mut self, new: NewTask, agent: &str) -> Result<Task> {
        let title = clean_title(&new.title)?;
        let tags = clean_tags(&new.tags)?;
        let checks = clean_list("check", &new.checks)?;
        let protected = clean_list("protected path", &new.protected)?;
        let external_ref = new
            .external_ref
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        let status = new.status.unwrap_or(Status::Pending);
        let priority = new.priority.unwrap_or(super::DEFAULT_PRIORITY);
        let id = self.write(|tx| {
            let ts = now();
            // Checked here, not left to the foreign key, for an error that names the id.
            let project_exists = tx
                .query_row("SELECT 1 FROM projects WHERE id = ?1", [new.project_id], |_| Ok(()))
                .optional()?;
            project_exists.ok_or(Error::ProjectNotFound(new.project_id))?;
            if let Some(parent) = new.parent_id {
                let parent_project = project_of(tx, parent)?;
                if parent_project != new.project_id {
                    return Err(Error::InvalidInput(format!(
                        "task {parent} is in project {parent_project}, not {}: a parent must be in the same project",
                        new.project_id
                    )));
                }
            }
            if let Some(r) = external_ref {
                ensure_ref_free(tx, new.project_id, r, None)?;
            }
            tx.prepare_cached(
                "INSERT INTO tasks (project_id, parent_id, external_ref, title, description, status,
                                    priority, role, tags, created_at, created_by, updated_at,
                                    last_agent, last_updated_at, checks, protected)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?10, ?11, ?10, ?12, ?13)",
            )?
            .execute(params![
                new.project_id,
                new.parent_id,
                external_ref,
                title,
                new.description,
                status.as_str(),
                priority,
                new.role,
                serde_json::to_string(&tags).expect("strings serialize"),
                ts,
                agent,
                serde_json::to_string(&checks).expect("strings serialize"),
                serde_json::to_string(&protected).expect("strings serialize"),
            ])?;
            let id = tx.last_insert_rowid();
            insert_event(
                tx,
                &EventDraft {
                    project_id: new.project_id,
                    task_id: Some(id),
                    kind: "created",
                    from: None,
                    to: Some(status),
                    metadata: &json!({"title": title, "parent_id": new.parent_id}),
                },
                agent,
                &ts,
            )?;
            for dep in &new.depends_on {
                add_dependency_tx(tx, id, *dep, agent, &ts)?;
            }
            Ok(id)
        })?;
        self.task(id)
    }

    pub fn task(&self, id: i64) -> Result<Task> {
        load_task(self.conn(), id)
    }

    /// Tasks of one project (or all), optionally of one status, by id.
    pub fn tasks(&self, project_id: Option<i64>, status: Option<Status>) -> Result<Vec<Task>> {
        if let Some(p) = project_id {
            self.ensure_project(p)?;
        }
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks
              WHERE (?1 IS NULL OR project_id = ?1) AND (?2 IS NULL OR status = ?2)
                AND deleted_at IS NULL
              ORDER BY id"
        ))?;
        let mut tasks = stmt
            .query_map(
                params![project_id, status.map(Status::as_str)],
                task_from_row,
            )?
            .collect::<rusqlite::Result<Vec<Task>>>()?;
        let mut deps: HashMap<i64, Vec<i64>> = HashMap::new();
        let mut stmt = conn.prepare_cached(
            "SELECT d.task_id, d.depends_on FROM task_deps d JOIN tasks t ON t.id = d.task_id
              WHERE (?1 IS NULL OR t.project_id = ?1) ORDER BY d.task_id, d.depends_on",
        )?;
        let rows = stmt.query_map([project_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        for row in rows {
            let (task, dep): (i64, i64) = row?;
            deps.entry(task).or_default().push(dep);
        }
        for t in &mut tasks {
            if let Some(d) = deps.remove(&t.id) {
                t.depends_on = d;
            }
        }
        Ok(tasks)
    }

    /// The task of a project with this external ref (`S1.2`), if any.
    pub fn task_by_ref(&self, project_id: i64, external_ref: &str) -> Result<Option<Task>> {
        let id: Option<i64> = self
            .conn()
            .prepare_cached("SELECT id FROM tasks WHERE project_id = ?1 AND external_ref = ?2")?
            .query_row(params![project_id, external_ref], |r| r.get(0))
            .optional()?;
        id.map(|id| self.task(id)).transpose()
    }

    /// The direct subtasks of a task, by id.
    pub fn subtasks(&self, id: i64) -> Result<Vec<Task>> {
        let ids: Vec<i64> = self
            .conn()
            .prepare_cached(
                "SELECT id FROM tasks WHERE parent_id = ?1 AND deleted_at IS NULL ORDER BY id",
            )?
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        ids.into_iter().map(|i| self.task(i)).collect()
    }

    /// Applies the fields set in `patch`; writes one `edit` event listing each
    /// changed field's old and new value. No change, no event.
    pub fn update_task(&mut self, id: i64, patch: TaskPatch, agent: &str) -> Result<Task> {
        let title = patch.title.as_deref().map(clean_title).transpose()?;
        let tags = patch.tags.as_deref().map(clean_tags).transpose()?;
        let checks = patch
            .checks
            .as_deref()
            .map(|c| clean_list("check", c))
            .transpose()?;
        let protected = patch
            .protected
            .as_deref()
            .map(|p| clean_list("protected path", p))
            .transpose()?;
        // Read and write in one transaction, so a concurrent edit of another
        // field is neither overwritten nor misreported as this edit's "from".
        self.write(|tx| {
            let before = load_task(tx, id)?;
            let mut after = before.clone();
            if let Some(t) = &title {
                after.title = t.clone();
            }
            if let Some(d) = &patch.description {
                after.description = d.clone();
            }
            if let Some(p) = patch.priority {
                after.priority = p;
            }
            if let Some(r) = &patch.role {
                after.role = *r;
            }
            if let Some(t) = &tags {
                after.tags = t.clone();
            }
            if let Some(c) = &checks {
                after.checks = c.clone();
            }
            if let Some(p) = &protected {
                after.protected = p.clone();
            }
            if let Some(r) = &patch.external_ref {
                after.external_ref = r
                    .as_deref()
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(String::from);
            }
            let mut changes = serde_json::Map::new();
            let mut diff = |field: &str, from: Value, to: Value| {
                if from != to {
                    changes.insert(field.to_string(), json!({"from": from, "to": to}));
                }
            };
            diff("title", json!(before.title), json!(after.title));
            diff(
                "description",
                json!(before.description),
                json!(after.description),
            );
            diff("priority", json!(before.priority), json!(after.priority));
            diff("role", json!(before.role), json!(after.role));
            diff("tags", json!(before.tags), json!(after.tags));
            diff("checks", json!(before.checks), json!(after.checks));
            diff("protected", json!(before.protected), json!(after.protected));
            diff(
                "external_ref",
                json!(before.external_ref),
                json!(after.external_ref),
            );
            if changes.is_empty() {
                return Ok(());
            }
            let ts = now();
            if let Some(r) = &after.external_ref {
                ensure_ref_free(tx, after.project_id, r, Some(id))?;
            }
            tx.execute(
                "UPDATE tasks SET title = ?2, description = ?3, priority = ?4, role = ?5, tags = ?6,
                        external_ref = ?7, updated_at = ?8, last_agent = ?9, last_updated_at = ?8,
                        checks = ?10, protected = ?11
                  WHERE id = ?1",
                params![
                    id,
                    after.title,
                    after.description,
                    after.priority,
                    after.role,
                    serde_json::to_string(&after.tags).expect("strings serialize"),
                    after.external_ref,
                    ts,
                    agent,
                    serde_json::to_string(&after.checks).expect("strings serialize"),
                    serde_json::to_string(&after.protected).expect("strings serialize"),
                ],
            )?;
            insert_event(
                tx,
                &EventDraft {
                    project_id: after.project_id,
                    task_id: Some(id),
                    kind: "edit",
                    from: None,
                    to: None,
                    metadata: &Value::Object(changes),
                },
                agent,
                &ts,
            )
        })?;
        self.task(id)
    }

    /// Sets a task's status and writes the event (with `metadata`) in one
    /// transaction. Setting the status it already has changes nothing.
    pub fn mark_task_status(
        &mut self,
        task_id: i64,
        status: Status,
        agent: &str,
        metadata: Value,
    ) -> Result<Transition> {
        self.mark_task_status_with_note(task_id, status, agent, metadata, None)
    }

    /// `mark_task_status` plus an optional note, all or nothing.
    pub fn mark_task_status_with_note(
        &mut self,
        task_id: i64,
        status: Status,
        agent: &str,
        metadata: Value,
        note: Option<&str>,
    ) -> Result<Transition> {
        let metadata = if metadata.is_null() {
            json!({})
        } else {
            metadata
        };
        let from = self.write(|tx| {
            let ts = now();
            let from = set_status_tx(tx, task_id, status, agent, &metadata, &ts)?;
            if let Some(text) = note {
                append_note_tx(tx, task_id, text, agent, &ts)?;
            }
            Ok(from)
        })?;
        Ok(Transition {
            task: self.task(task_id)?,
            from,
        })
    }

    /// Deletes a task: it leaves every list and count, and its history
    /// stays. Refused while another task depends on it, while it has
    /// subtasks, or when it comes from plans.md (the file is the source:
    /// remove it there and re-import).
    pub fn delete_task(&mut self, task_id: i64, agent: &str) -> Result<Task> {
        self.write(|tx| {
            let (project, status, deleted, external_ref, plans): (
                i64,
                String,
                Option<String>,
                Option<String>,
                Option<String>,
            ) = tx
                .prepare_cached(
                    "SELECT t.project_id, t.status, t.deleted_at, t.external_ref, p.plans_path
                       FROM tasks t JOIN projects p ON p.id = t.project_id WHERE t.id = ?1",
                )?
                .query_row([task_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()?
                .ok_or(Error::TaskNotFound(task_id))?;
            if deleted.is_some() {
                return Err(Error::TaskNotFound(task_id));
            }
            if let (Some(r), Some(_)) = (&external_ref, &plans) {
                return Err(Error::InvalidInput(format!(
                    "task {task_id} is {r} in the project's plans.md; remove it from the file and run `llmclis plans import` (it retires tasks that left the file)"
                )));
            }
            let dependents: Vec<i64> = tx
                .prepare_cached(
                    "SELECT d.task_id FROM task_deps d JOIN tasks t ON t.id = d.task_id
                      WHERE d.depends_on = ?1 AND t.deleted_at IS NULL ORDER BY d.task_id",
                )?
                .query_map([task_id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if !dependents.is_empty() {
                let ids: Vec<String> = dependents.iter().map(|d| d.to_string()).collect();
                return Err(Error::InvalidInput(format!(
                    "task {task_id} cannot be deleted: task(s) {} depend on it; remove those dependencies first (`llmclis task dep ID --on {task_id} --remove`)",
                    ids.join(", ")
                )));
            }
            let children: i64 = tx.query_row(
                "SELECT count(*) FROM tasks WHERE parent_id = ?1 AND deleted_at IS NULL",
                [task_id],
                |r| r.get(0),
            )?;
            if children > 0 {
                return Err(Error::InvalidInput(format!(
                    "task {task_id} cannot be deleted: it has {children} subtask(s); delete them first"
                )));
            }
            let ts = now();
            // Closed, so a parent no longer waits for it.
            tx.execute(
                "UPDATE tasks SET status = 'done', deleted_at = ?2, claimed_by = NULL,
                        lease_expires_at = NULL, updated_at = ?2, last_agent = ?3,
                        last_updated_at = ?2
                  WHERE id = ?1",
                params![task_id, ts, agent],
            )?;
            let from: Status = status.parse()?;
            insert_event(
                tx,
                &EventDraft {
                    project_id: project,
                    task_id: Some(task_id),
                    kind: "deleted",
                    from: Some(from),
                    to: None,
                    metadata: &json!({}),
                },
                agent,
                &ts,
            )?;
            Ok(())
        })?;
        self.task(task_id)
    }

    pub fn append_task_note(&mut self, task_id: i64, note: &str, agent: &str) -> Result<Note> {
        let id = self.write(|tx| append_note_tx(tx, task_id, note, agent, &now()))?;
        Ok(self.conn().query_row(
            "SELECT id, task_id, agent, text, created_at FROM task_notes WHERE id = ?1",
            [id],
            note_from_row,
        )?)
    }

    pub fn notes(&self, task_id: i64) -> Result<Vec<Note>> {
        project_of(self.conn(), task_id)?;
        let mut stmt = self.conn().prepare_cached(
            "SELECT id, task_id, agent, text, created_at FROM task_notes WHERE task_id = ?1 ORDER BY id",
        )?;
        let notes = stmt
            .query_map([task_id], note_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(notes)
    }

    /// A task's history, oldest first.
    pub fn events(&self, task_id: i64) -> Result<Vec<Event>> {
        project_of(self.conn(), task_id)?;
        let mut stmt = self.conn().prepare_cached(
            "SELECT id, project_id, task_id, kind, from_status, to_status, agent, metadata, created_at
               FROM events WHERE task_id = ?1 ORDER BY id",
        )?;
        let events = stmt
            .query_map([task_id], |r| {
                let from: Option<String> = r.get(4)?;
                let to: Option<String> = r.get(5)?;
                let metadata: String = r.get(7)?;
                Ok(Event {
                    id: r.get(0)?,
                    project_id: r.get(1)?,
                    task_id: r.get(2)?,
                    kind: r.get(3)?,
                    from_status: from.map(status_col).transpose()?,
                    to_status: to.map(status_col).transpose()?,
                    agent: r.get(6)?,
                    metadata: serde_json::from_str(&metadata).unwrap_or(Value::Null),
                    created_at: r.get(8)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(events)
    }

    /// Counts by status, and how many pending tasks are ready now.
    pub fn status_counts(&self, project_id: Option<i64>) -> Result<StatusCounts> {
        if let Some(p) = project_id {
            self.ensure_project(p)?;
        }
        let mut counts = StatusCounts::default();
        let mut stmt = self.conn().prepare_cached(
            "SELECT status, count(*) FROM tasks
              WHERE (?1 IS NULL OR project_id = ?1) AND deleted_at IS NULL GROUP BY status",
        )?;
        let rows = stmt.query_map([project_id], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
        for row in rows {
            let (status, n): (String, i64) = row?;
            match status.parse()? {
                Status::Pending => counts.pending = n,
                Status::InProgress => counts.in_progress = n,
                Status::Done => counts.done = n,
                Status::Blocked => counts.blocked = n,
            }
        }
        counts.ready = self.conn().query_row(
            &format!(
                "SELECT count(*) FROM tasks WHERE (?1 IS NULL OR project_id = ?1) AND {READY_WHERE}"
            ),
            [project_id],
            |r| r.get(0),
        )?;
        Ok(counts)
    }
}

pub(super) fn note_from_row(r: &Row<'_>) -> rusqlite::Result<Note> {
    Ok(Note {
        id: r.get(0)?,
        task_id: r.get(1)?,
        agent: r.get(2)?,
        text: r.get(3)?,
        created_at: r.get(4)?,
    })
}
