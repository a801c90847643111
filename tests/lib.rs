//! All integration tests, in one binary (one link instead of one per file).

// Tests write their fixtures directly; the atomic-write rule is for the tool.
#![allow(clippy::disallowed_methods)]

mod support;

mod cli;
mod concurrency;
mod deploy;
mod docs;
mod eval;
mod faults;
mod layering;
mod llm;
mod llm_real;
mod mcp;
mod memory;
mod orchestrate;
mod plans_cli;
mod recovery;
mod resources;
mod schedule;
mod serve;
mod store;
mod tools;
mod tui;
