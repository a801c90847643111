//! All integration tests, in one binary (one link instead of one per file).

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
mod schedule;
mod store;
mod tools;
mod tui;
