//! All integration tests, in one binary (one link instead of one per file).

// Tests write their fixtures directly; the atomic-write rule is for the tool.
#![allow(clippy::disallowed_methods)]
// The real servers' turn (`support::real_servers_lock`) is a std mutex held
// for a whole test, awaits included: each test has its own runtime, so no
// other task there waits for it; tests on other threads simply queue.
#![allow(clippy::await_holding_lock)]

mod support;

mod assets;
mod changes;
mod checks;
mod cli;
mod concurrency;
mod context;
mod deploy;
mod docs;
mod eval;
mod everyday;
mod faults;
mod faults_run;
mod fuzz;
mod gateway_keys;
mod interop;
mod layering;
mod llm;
mod llm_real;
mod mcp;
mod memory;
mod memory_tree;
mod orchestrate;
#[cfg(feature = "otlp")]
mod otlp;
mod planning;
mod plans_cli;
mod qdrant;
mod recovery;
mod replicas;
mod resources;
mod responses;
mod rollup;
mod schedule;
mod serve;
mod store;
mod tools;
mod tui;
mod worktrees;
