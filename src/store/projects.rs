use rusqlite::{OptionalExtension, Row, params};

use super::{Project, Store, now};
use crate::error::{Error, Result};

const PROJECT_COLUMNS: &str =
    "id, name, description, root, plans_path, created_at, created_by, updated_at";

fn project_from_row(r: &Row<'_>) -> rusqlite::Result<Project> {
    Ok(Project {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        root: r.get(3)?,
        plans_path: r.get(4)?,
        created_at: r.get(5)?,
        created_by: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

impl Store {
    pub fn create_project(
        &mut self,
        name: &str,
        description: &str,
        root: Option<&str>,
        agent: &str,
    ) -> Result<Project> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::InvalidInput("a project needs a name".into()));
        }
        let id = self.write(|tx| {
            if let Some(id) = tx
                .query_row("SELECT id FROM projects WHERE name = ?1", [name], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()?
            {
                return Err(Error::ProjectExists {
                    name: name.to_string(),
                    id,
                });
            }
            let ts = now();
            tx.execute(
                "INSERT INTO projects (name, description, root, created_at, created_by, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?4)",
                params![name, description, root, ts, agent],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO events (project_id, kind, agent, metadata, created_at)
                 VALUES (?1, 'project_created', ?2, json_object('name', ?3), ?4)",
                params![id, agent, name, ts],
            )?;
            Ok(id)
        })?;
        self.project(id)
    }

    pub fn project(&self, id: i64) -> Result<Project> {
        self.conn()
            .query_row(
                &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = ?1"),
                [id],
                project_from_row,
            )
            .optional()?
            .ok_or(Error::ProjectNotFound(id))
    }

    pub fn project_by_name(&self, name: &str) -> Result<Option<Project>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE name = ?1"),
                [name],
                project_from_row,
            )
            .optional()?)
    }

    pub fn projects(&self) -> Result<Vec<Project>> {
        let mut stmt = self.conn().prepare(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects ORDER BY id"
        ))?;
        let rows = stmt
            .query_map([], project_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The project linked to this plans file (an absolute path), if any.
    pub fn project_by_plans_path(&self, path: &str) -> Result<Option<Project>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE plans_path = ?1"),
                [path],
                project_from_row,
            )
            .optional()?)
    }

    /// Links a project to its plans file (or unlinks it with `None`).
    pub fn set_project_plans_path(
        &mut self,
        id: i64,
        path: Option<&str>,
        agent: &str,
    ) -> Result<Project> {
        self.write(|tx| {
            let old: Option<Option<String>> = tx
                .query_row("SELECT plans_path FROM projects WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            let old = old.ok_or(Error::ProjectNotFound(id))?;
            if old.as_deref() == path {
                return Ok(());
            }
            if let Some(p) = path {
                let other: Option<i64> = tx
                    .query_row(
                        "SELECT id FROM projects WHERE plans_path = ?1 AND id != ?2",
                        params![p, id],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(other) = other {
                    return Err(Error::InvalidInput(format!(
                        "{p} is already linked to project {other}; import it with --project-id {other}"
                    )));
                }
            }
            let ts = now();
            tx.execute(
                "UPDATE projects SET plans_path = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, path, ts],
            )?;
            tx.execute(
                "INSERT INTO events (project_id, kind, agent, metadata, created_at)
                 VALUES (?1, 'project_edit', ?2, json_object('plans_path', json_object('from', ?3, 'to', ?4)), ?5)",
                params![id, agent, old, path, ts],
            )?;
            Ok(())
        })?;
        self.project(id)
    }

    /// Fails with `ProjectNotFound` unless the project exists.
    pub(crate) fn ensure_project(&self, id: i64) -> Result<()> {
        let found = self
            .conn()
            .query_row("SELECT 1 FROM projects WHERE id = ?1", [id], |_| Ok(()))
            .optional()?;
        found.ok_or(Error::ProjectNotFound(id))
    }
}
