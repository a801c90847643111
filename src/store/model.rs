//! The rows of the knowledge manager, as the rest of llmclis sees them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pending,
    #[serde(alias = "in_progress")]
    InProgress,
    Done,
    Blocked,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::InProgress,
        Status::Done,
        Status::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::InProgress => "in-progress",
            Status::Done => "done",
            Status::Blocked => "blocked",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = Error;

    /// Accepts the canonical names plus the spellings people type
    /// (`in_progress`, `In-Progress`).
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "pending" => Ok(Status::Pending),
            "in-progress" => Ok(Status::InProgress),
            "done" => Ok(Status::Done),
            "blocked" => Ok(Status::Blocked),
            _ => Err(Error::InvalidStatus(s.to_string())),
        }
    }
}

/// The default priority (`medium`). Higher numbers are worked on first.
pub const DEFAULT_PRIORITY: i64 = 2;

/// Parses `low|medium|high|critical` or an integer in -1000..=1000.
pub fn parse_priority(s: &str) -> Result<i64, Error> {
    let named = match s.trim().to_ascii_lowercase().as_str() {
        "low" => Some(1),
        "medium" => Some(2),
        "high" => Some(3),
        "critical" => Some(4),
        _ => None,
    };
    if let Some(p) = named {
        return Ok(p);
    }
    match s.trim().parse::<i64>() {
        Ok(p) if (-1000..=1000).contains(&p) => Ok(p),
        _ => Err(Error::InvalidInput(format!(
            "invalid priority {s:?}: expected low, medium, high, critical or a whole number from -1000 to 1000"
        ))),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub root: Option<String>,
    /// The plans.md this project was imported from; its tasks' status
    /// changes are written back there.
    pub plans_path: Option<String>,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    pub id: i64,
    pub project_id: i64,
    pub parent_id: Option<i64>,
    pub external_ref: Option<String>,
    pub title: String,
    pub description: String,
    pub status: Status,
    pub priority: i64,
    pub role: Option<crate::role::Role>,
    pub tags: Vec<String>,
    pub depends_on: Vec<i64>,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub last_agent: Option<String>,
    pub last_updated_at: Option<String>,
    pub claimed_by: Option<String>,
    pub lease_expires_at: Option<String>,
    pub attempts: i64,
    /// Set when the task was deleted: hidden from lists, history kept.
    pub deleted_at: Option<String>,
    /// Commands that must pass on the task's change before it is done.
    pub checks: Vec<String>,
    /// Paths or globs the task's change must not touch.
    pub protected: Vec<String>,
    /// Done, and its last check passed: `true` (verified); done without a
    /// passing check: `false` (unverified); not done: None.
    pub verified: Option<bool>,
}

/// What `create_task` needs; everything but the project and title has a default.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub project_id: i64,
    pub title: String,
    pub description: String,
    pub parent_id: Option<i64>,
    pub external_ref: Option<String>,
    pub priority: Option<i64>,
    pub role: Option<crate::role::Role>,
    pub tags: Vec<String>,
    pub depends_on: Vec<i64>,
    pub status: Option<Status>,
    pub checks: Vec<String>,
    pub protected: Vec<String>,
}

/// A partial update: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<i64>,
    /// `Some(None)` clears the role hint.
    pub role: Option<Option<crate::role::Role>>,
    pub tags: Option<Vec<String>>,
    pub external_ref: Option<Option<String>>,
    pub checks: Option<Vec<String>>,
    pub protected: Option<Vec<String>>,
}

impl TaskPatch {
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.priority.is_none()
            && self.role.is_none()
            && self.tags.is_none()
            && self.external_ref.is_none()
            && self.checks.is_none()
            && self.protected.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Note {
    pub id: i64,
    pub task_id: i64,
    pub agent: String,
    pub text: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: i64,
    pub project_id: i64,
    pub task_id: Option<i64>,
    /// `created`, `status`, `edit`, `dependency`, `claim`, `lease_expired`, `note`.
    pub kind: String,
    pub from_status: Option<Status>,
    pub to_status: Option<Status>,
    pub agent: String,
    pub metadata: serde_json::Value,
    pub created_at: String,
}

/// How many tasks of a project are in each state, and why the pending ones wait.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusCounts {
    pub pending: i64,
    pub in_progress: i64,
    pub done: i64,
    pub blocked: i64,
    /// Pending tasks that could be claimed now.
    pub ready: i64,
}
