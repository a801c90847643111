use rusqlite::{OptionalExtension, Row, params};

use super::{Project, Store, now};
use crate::error::{Error, Result};

const PROJECT_COLUMNS: &str = "id, name, description, root, created_at, created_by, updated_at";

fn project_from_row(r: &Row<'_>) -> rusqlite::Result<Project> {
    Ok(Project {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        root: r.get(3)?,
        created_at: r.get(4)?,
        created_by: r.get(5)?,
        updated_at: r.get(6)?,
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

    /// Fails with `ProjectNotFound` unless the project exists.
    pub(crate) fn ensure_project(&self, id: i64) -> Result<()> {
        let found = self
            .conn()
            .query_row("SELECT 1 FROM projects WHERE id = ?1", [id], |_| Ok(()))
            .optional()?;
        found.ok_or(Error::ProjectNotFound(id))
    }
}
