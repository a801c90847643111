//! Append-only schema migrations, embedded in the binary and tracked in
//! `PRAGMA user_version` (the scheme rusqlite_migration uses).

use rusqlite::{Connection, TransactionBehavior};

use crate::error::Result;

/// `migrations/NNNN_name.sql`, in order. Never edit a released entry; append.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../migrations/0001_init.sql")),
    (
        "0002_plans_path",
        include_str!("../../migrations/0002_plans_path.sql"),
    ),
    (
        "0003_memories",
        include_str!("../../migrations/0003_memories.sql"),
    ),
    (
        "0004_store_id",
        include_str!("../../migrations/0004_store_id.sql"),
    ),
    ("0005_runs", include_str!("../../migrations/0005_runs.sql")),
    (
        "0006_deleted",
        include_str!("../../migrations/0006_deleted.sql"),
    ),
    (
        "0007_tool_calls",
        include_str!("../../migrations/0007_tool_calls.sql"),
    ),
    (
        "0008_outbox",
        include_str!("../../migrations/0008_outbox.sql"),
    ),
    (
        "0009_evals",
        include_str!("../../migrations/0009_evals.sql"),
    ),
    (
        "0010_gateway",
        include_str!("../../migrations/0010_gateway.sql"),
    ),
    (
        "0011_checks",
        include_str!("../../migrations/0011_checks.sql"),
    ),
    (
        "0012_imports",
        include_str!("../../migrations/0012_imports.sql"),
    ),
    (
        "0013_gateway_keys",
        include_str!("../../migrations/0013_gateway_keys.sql"),
    ),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies the migrations after `current`, each in its own transaction with
/// the version bump, so a crash leaves the database at a whole version.
pub(super) fn migrate(conn: &mut Connection, current: i64) -> Result<()> {
    for (index, (_name, sql)) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the lock.
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now > index as i64 {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, (name, _)) in MIGRATIONS.iter().enumerate() {
            let number: usize = name[..4].parse().expect("NNNN_ prefix");
            assert_eq!(number, i + 1, "{name} is out of order");
        }
    }
}
