//! Which task each item from another tool became (migration 0012), and the
//! item as it was last imported.

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::{Store, now};
use crate::error::Result;

/// One mapped item.
#[derive(Debug, Clone)]
pub struct Imported {
    pub scope: String,
    pub ext_id: String,
    pub task_id: i64,
    pub original: Value,
}

impl Store {
    /// The task an item became, if it was imported into this project.
    pub fn imported_task(
        &self,
        project_id: i64,
        source: &str,
        scope: &str,
        ext_id: &str,
    ) -> Result<Option<i64>> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT task_id FROM imports
                  WHERE project_id = ?1 AND source = ?2 AND scope = ?3 AND ext_id = ?4",
            )?
            .query_row(params![project_id, source, scope, ext_id], |r| r.get(0))
            .optional()?)
    }

    /// Records (or moves) an item's mapping, with the item as imported.
    pub fn record_import(
        &mut self,
        project_id: i64,
        source: &str,
        scope: &str,
        ext_id: &str,
        task_id: i64,
        original: &Value,
    ) -> Result<()> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO imports (project_id, source, scope, ext_id, task_id, original, imported_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (project_id, source, scope, ext_id)
                 DO UPDATE SET task_id = excluded.task_id, original = excluded.original,
                               imported_at = excluded.imported_at",
            )?
            .execute(params![
                project_id,
                source,
                scope,
                ext_id,
                task_id,
                original.to_string(),
                now()
            ])?;
            Ok(())
        })
    }

    /// Every item imported into a project from `source`, in the order they
    /// were first imported.
    pub fn imports(&self, project_id: i64, source: &str) -> Result<Vec<Imported>> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT i.scope, i.ext_id, i.task_id, i.original FROM imports i
               JOIN tasks t ON t.id = i.task_id
              WHERE i.project_id = ?1 AND i.source = ?2 AND t.deleted_at IS NULL
              ORDER BY i.task_id",
        )?;
        let rows = stmt.query_map(params![project_id, source], |r| {
            let original: String = r.get(3)?;
            Ok(Imported {
                scope: r.get(0)?,
                ext_id: r.get(1)?,
                task_id: r.get(2)?,
                original: serde_json::from_str(&original).unwrap_or(Value::Null),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
