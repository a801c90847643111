//! Named crash points for the crash-recovery tests: `LLMCLIS_CRASH_AT=NAME`
//! (or `NAME:N`, the N-th time it is reached) makes the process abort there,
//! as a `kill -9` at that instant would. Unset, each point costs one load of
//! a cached value.
//!
//! The points: `step_committed` (a step's end is committed, the plan files
//! not yet written), `plans_write` (the new plans.md is on disk as a temp
//! file, not yet renamed, the lock held), `memory_row` (a memory row is in
//! SQLite, the index not yet flushed), `summary` (the summary call is on its
//! way).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Armed {
    name: String,
    nth: u64,
    seen: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var("LLMCLIS_CRASH_AT").ok()?;
            let (name, nth) = match v.split_once(':') {
                Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
                None => (v, 1),
            };
            Some(Armed {
                name,
                nth: nth.max(1),
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Aborts the process when `LLMCLIS_CRASH_AT` names this point (and this is
/// the N-th time it is reached).
pub fn here(name: &str) {
    if let Some(a) = armed()
        && a.name == name
        && a.seen.fetch_add(1, Ordering::SeqCst) + 1 == a.nth
    {
        eprintln!("llmclis: crash point {name} reached (LLMCLIS_CRASH_AT); aborting");
        std::process::abort();
    }
}
