//! Where a memory sits in the tree (`Level`, `level_of`) and which
//! memories a query may return (`Scope`).

use super::*;

/// Which memories a query may return; SQLite has the last word on each
/// hit (a stale index entry is never returned).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub project_id: Option<i64>,
    pub task_id: Option<i64>,
    pub kind: Option<String>,
    pub level: Option<Level>,
    /// Leave raw interactions out (a step's context: summaries only).
    pub skip_raw: bool,
}

impl Scope {
    /// One project's memories.
    pub fn project(project_id: i64) -> Scope {
        Scope {
            project_id: Some(project_id),
            ..Default::default()
        }
    }

    pub(super) fn admits(&self, db: &Store, r: &MemoryRecord) -> Result<bool> {
        Ok(self.project_id.is_none_or(|p| r.project_id == p)
            && self.task_id.is_none_or(|t| r.task_id == Some(t))
            && self.kind.as_ref().is_none_or(|k| &r.kind == k)
            && !(self.skip_raw && r.kind == "raw_interaction")
            && match self.level {
                Some(l) => level_of(db, r)?.0 == l,
                None => true,
            })
    }
}

/// Where a memory sits in the project's memory tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A project summary (or a note on no task).
    Project,
    /// The summary or handoff of a task with subtasks: a stage's roll-up.
    Stage,
    /// The summary or handoff of a task without subtasks.
    Task,
    /// A raw interaction: a model's answer as it was.
    Raw,
}

/// The levels' names, as the index and the tools spell them.
pub const LEVELS: [&str; 4] = ["project", "stage", "task", "raw"];

impl std::str::FromStr for Level {
    type Err = Error;

    fn from_str(s: &str) -> Result<Level> {
        match s {
            "project" => Ok(Level::Project),
            "stage" => Ok(Level::Stage),
            "task" => Ok(Level::Task),
            "raw" => Ok(Level::Raw),
            other => Err(Error::InvalidInput(format!(
                "unknown memory level {other:?}: expected one of {}",
                LEVELS.join(", ")
            ))),
        }
    }
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Project => "project",
            Level::Stage => "stage",
            Level::Task => "task",
            Level::Raw => "raw",
        }
    }
}

/// A memory's level and the task of the tree node above it (see
/// `PointMeta::parent`), decided from the task tree as it is now.
pub fn level_of(db: &Store, r: &MemoryRecord) -> Result<(Level, Option<i64>)> {
    if r.kind == "project_summary" {
        return Ok((Level::Project, None));
    }
    if r.kind == "raw_interaction" {
        return Ok((Level::Raw, r.task_id));
    }
    let Some(task) = r.task_id else {
        return Ok((Level::Project, None));
    };
    let (parent, has_children): (Option<i64>, bool) = db.conn().query_row(
        "SELECT t.parent_id, EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = t.id AND c.deleted_at IS NULL)
           FROM tasks t WHERE t.id = ?1",
        [task],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let level = if has_children {
        Level::Stage
    } else {
        Level::Task
    };
    Ok((level, parent))
}

pub(super) fn meta_of(db: &Store, r: &MemoryRecord) -> Result<PointMeta> {
    let (level, parent) = level_of(db, r)?;
    Ok(PointMeta {
        project_id: r.project_id,
        task_id: r.task_id,
        kind: r.kind.clone(),
        agent: r.agent.clone(),
        level: level.as_str().to_string(),
        parent,
    })
}
