//! The knowledge manager: projects, tasks, dependencies, notes, the event log,
//! runs and model calls, in one SQLite file.
//!
//! Invariants kept here, whoever calls:
//! - every status change and edit writes an event in the same transaction;
//! - notes and events are append-only (the schema refuses UPDATE and DELETE);
//! - a task is claimed by one atomic `UPDATE … RETURNING`, so two processes
//!   never hold the same task;
//! - the schema only moves forward, and a newer one is refused untouched.

// The one place SQL writes are allowed (clippy.toml).
#![allow(clippy::disallowed_methods)]

mod checks;
mod deps;
mod evals;
pub mod imports;
mod keys;
mod migrate;
pub mod model;
mod outbox;
mod projects;
mod queue;
mod responses;
mod results;
mod rows;
mod runs;
mod tasks;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::{Error, Result};

pub use checks::CheckRecord;
pub use evals::EvalResult;
pub use imports::Imported;
pub use keys::{ApiKey, DaySpend, KeyLimits, KeyState, NewKey, Period, key_hash};
pub use migrate::SCHEMA_VERSION;
pub use model::*;
pub use outbox::PendingDocEdit;
pub use responses::KeptResponse;
pub use runs::{ClosedRun, ModelCall, Run, RunStep, StepOutcome, ToolCallRecord};
pub use tasks::Transition;

/// How long a writer waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Store {
    conn: Connection,
    path: Option<PathBuf>,
    /// Nesting of `batch`; inside one, writes are savepoints.
    batch_depth: usize,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema
    /// up to date. A file that is not SQLite, or a schema newer than this
    /// build knows, is refused before anything is written.
    pub fn open(path: &Path) -> Result<Store> {
        check_path(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::DatabaseUnavailable {
            path: path.to_path_buf(),
            reason: sqlite_reason(&e),
        })?;
        Self::init(conn, Some(path.to_path_buf()))
    }

    /// A private in-memory store, for tests and benchmarks.
    pub fn open_in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?, None)
    }

    fn init(conn: Connection, path: Option<PathBuf>) -> Result<Store> {
        let shown = path.clone().unwrap_or_else(|| PathBuf::from(":memory:"));
        let unavailable = |e: rusqlite::Error| match &e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
                Error::NotADatabase {
                    path: shown.clone(),
                }
            }
            _ => Error::DatabaseUnavailable {
                path: shown.clone(),
                reason: sqlite_reason(&e),
            },
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(unavailable)?;
        // Read the version before anything writes: a newer schema stays untouched.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(unavailable)?;
        if version > SCHEMA_VERSION {
            return Err(Error::NewerSchema {
                path: shown,
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if path.is_some() {
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(unavailable)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::DatabaseUnavailable {
                    path: shown,
                    reason: format!("could not switch to WAL journaling (got {mode})"),
                });
            }
            // WAL makes NORMAL durable across application crashes; only an OS
            // crash can lose the last transactions, never corrupt the file.
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(unavailable)?;
        }
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(unavailable)?;
        let mut store = Store {
            conn,
            path,
            batch_depth: 0,
        };
        migrate::migrate(&mut store.conn, version).map_err(|e| match e {
            Error::Sqlite(e) => unavailable(e),
            other => other,
        })?;
        Ok(store)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// This database's random id (16 hex digits), which names its memory index.
    pub fn store_id(&self) -> Result<String> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
                r.get(0)
            })?)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: it takes the write lock
    /// up front, so concurrent writers queue on the busy timeout instead of
    /// failing half-way with SQLITE_BUSY. Inside `batch`, a savepoint.
    pub(crate) fn write<T>(&mut self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.batch_depth > 0 {
            let sp = self.conn.savepoint()?;
            let out = f(&sp)?;
            sp.commit()?;
            return Ok(out);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs several store calls as one transaction: all of them or none.
    pub fn batch<T>(&mut self, f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
        if self.batch_depth > 0 {
            return f(self);
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        self.batch_depth += 1;
        let out = f(self);
        self.batch_depth -= 1;
        match out {
            Ok(v) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Recomputes the derived task columns from the base tables and returns
    /// the ids whose stored values disagree. Empty on a healthy database.
    pub fn check_derived_columns(&self) -> Result<Vec<i64>> {
        let mut stmt = self.conn.prepare(
            "SELECT t.id FROM tasks t
              WHERE t.dep_count != (SELECT count(*) FROM task_deps d WHERE d.task_id = t.id)
                 OR t.unmet_deps != (SELECT count(*) FROM task_deps d JOIN tasks x ON x.id = d.depends_on
                                      WHERE d.task_id = t.id AND x.status != 'done')
                 OR t.open_children != (SELECT count(*) FROM tasks c
                                         WHERE c.parent_id = t.id AND c.status != 'done')
                 OR t.parent_status IS NOT (SELECT p.status FROM tasks p WHERE p.id = t.parent_id)
              ORDER BY t.id",
        )?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        Ok(ids)
    }
}

/// Refuses paths SQLite would fail on obscurely, and files that are not
/// SQLite, before SQLite opens (and might write to) them.
fn check_path(path: &Path) -> Result<()> {
    let unavailable = |reason: String| Error::DatabaseUnavailable {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Err(unavailable("it is a directory".into())),
        Ok(meta) if meta.len() > 0 => {
            use std::io::Read;
            let mut header = [0u8; 16];
            let mut file = std::fs::File::open(path).map_err(|e| unavailable(e.to_string()))?;
            let n = file
                .read(&mut header)
                .map_err(|e| unavailable(e.to_string()))?;
            if n < header.len() || &header != b"SQLite format 3\0" {
                return Err(Error::NotADatabase {
                    path: path.to_path_buf(),
                });
            }
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::fs::create_dir_all(parent)
                .map_err(|e| unavailable(format!("cannot create {}: {e}", parent.display())))?;
        }
        Err(e) => return Err(unavailable(e.to_string())),
    }
    Ok(())
}

fn sqlite_reason(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(f, Some(msg)) => format!("{msg} ({:?})", f.code),
        other => other.to_string(),
    }
}

/// Now, in the store's time format: UTC, milliseconds, `Z`; sorts as text.
pub fn now() -> String {
    format_time(Utc::now())
}

pub fn format_time(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
