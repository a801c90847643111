//! The library's one error type. `cli::report` is the one place that turns it
//! into a message and an exit code.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code for bad input: the user can fix the command line or the data.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for runtime failures: the environment, the file system, the database.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code after Ctrl-C, as shells report SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no project with id {0}; `llmclis project list` shows the ids")]
    ProjectNotFound(i64),

    #[error("no task with id {0}; `llmclis task list` shows the ids")]
    TaskNotFound(i64),

    #[error("a project named {name:?} already exists (id {id}); pick another name")]
    ProjectExists { name: String, id: i64 },

    #[error("invalid status {0:?}: expected one of pending, in-progress, done, blocked")]
    InvalidStatus(String),

    #[error("task {0} cannot depend on itself")]
    SelfDependency(i64),

    #[error("dependency cycle: {path}; drop one of these dependencies first")]
    DependencyCycle { path: String },

    #[error(
        "task {task} is in project {task_project} but {other} is in project {other_project}: {what} must be in the same project"
    )]
    CrossProject {
        task: i64,
        task_project: i64,
        other: i64,
        other_project: i64,
        what: &'static str,
    },

    /// Any other bad argument or value, with the message that says what to do.
    #[error("{0}")]
    InvalidInput(String),

    #[error("cannot use database {path}: {reason}; pass another path with --db or LLMCLIS_DB")]
    DatabaseUnavailable { path: PathBuf, reason: String },

    #[error(
        "{path} is not an SQLite database; pass another path with --db or LLMCLIS_DB (the file was not touched)"
    )]
    NotADatabase { path: PathBuf },

    #[error(
        "{path} was written by a newer llmclis (schema version {found}, this build knows {known}); upgrade llmclis to use it (the database was not touched)"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("{path}:{line}: {message}")]
    Document {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("{path}: {message}")]
    Conflict { path: PathBuf, message: String },

    #[error("{}", registry_message(path, *line, *column, message))]
    Registry {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },

    /// The memory index or the embedder failed.
    #[error("{0}")]
    Memory(String),

    /// The vector index (Edge or a Qdrant server) failed.
    #[error(transparent)]
    Index(#[from] crate::memory::vector::info::IndexError),

    /// git refused a worktree, commit or landing step.
    #[error(transparent)]
    Git(#[from] crate::worktree::GitError),

    /// Another process holds the embedded (Edge) memory index.
    #[error("the memory index {0} is in use by another llmclis process; try again when it is done")]
    IndexBusy(PathBuf),

    /// No model could answer: every one in the chain failed or was skipped.
    #[error("{0}")]
    Model(String),

    /// A download (`assets fetch`) failed: the index did not answer, or
    /// the bytes were never right.
    #[error("{0}")]
    Download(String),

    #[error("{count} problem(s) found; each is listed above")]
    CheckFailed { count: usize },

    /// A task's proposed change was not applied: it no longer applies, its
    /// check fails on it, or the tree has edits of its own there.
    #[error("{0}")]
    ChangeRefused(String),

    /// A step's claim on a task ran out and another agent holds it now;
    /// nothing of the step's ending was written.
    #[error("task {0}: the claim ran out and another agent holds the task")]
    ClaimLost(i64),

    /// A failure inside llmclis itself (a worker thread that died, say),
    /// not the user's input.
    #[error("internal error: {0}")]
    Internal(String),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// Ctrl-C: the work in flight was put back, nothing is lost.
    #[error("{0}")]
    Interrupted(String),
}

fn registry_message(path: &str, line: usize, column: usize, message: &str) -> String {
    if line == 0 {
        format!("{path}: {message}")
    } else {
        format!("{path}:{line}:{column}: {message}")
    }
}

impl Error {
    /// A stable, machine-readable name for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::ProjectNotFound(_) => "project_not_found",
            Error::TaskNotFound(_) => "task_not_found",
            Error::ProjectExists { .. } => "project_exists",
            Error::InvalidStatus(_) => "invalid_status",
            Error::SelfDependency(_) => "self_dependency",
            Error::DependencyCycle { .. } => "dependency_cycle",
            Error::CrossProject { .. } => "cross_project",
            Error::InvalidInput(_) => "invalid_input",
            Error::DatabaseUnavailable { .. } => "database_unavailable",
            Error::NotADatabase { .. } => "not_a_database",
            Error::NewerSchema { .. } => "newer_schema",
            Error::Config { .. } => "config",
            Error::Document { .. } => "document",
            Error::Conflict { .. } => "conflict",
            Error::CheckFailed { .. } => "check_failed",
            Error::ChangeRefused(_) => "change_refused",
            Error::ClaimLost(_) => "claim_lost",
            Error::Internal(_) => "internal",
            Error::Registry { .. } => "registry",
            Error::Model(_) => "model",
            Error::Download(_) => "download",
            Error::Memory(_) => "memory",
            Error::IndexBusy(_) => "index_busy",
            Error::Index(e) => e.kind(),
            Error::Git(_) => "git",
            Error::Io { .. } => "io",
            Error::Sqlite(_) => "database",
            Error::Interrupted(_) => "interrupted",
        }
    }

    /// 2 for input the user can correct, 1 for failures of the environment.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::ProjectNotFound(_)
            | Error::TaskNotFound(_)
            | Error::ProjectExists { .. }
            | Error::InvalidStatus(_)
            | Error::SelfDependency(_)
            | Error::DependencyCycle { .. }
            | Error::CrossProject { .. }
            | Error::InvalidInput(_)
            | Error::Config { .. }
            | Error::Document { .. }
            | Error::Registry { .. } => EXIT_USAGE,
            Error::DatabaseUnavailable { .. }
            | Error::NotADatabase { .. }
            | Error::NewerSchema { .. }
            | Error::Conflict { .. }
            | Error::CheckFailed { .. }
            | Error::ChangeRefused(_)
            | Error::ClaimLost(_)
            | Error::Internal(_)
            | Error::Model(_)
            | Error::Download(_)
            | Error::Memory(_)
            | Error::IndexBusy(_)
            | Error::Index(_)
            | Error::Git(_)
            | Error::Io { .. }
            | Error::Sqlite(_) => EXIT_RUNTIME,
            Error::Interrupted(_) => EXIT_INTERRUPTED,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
