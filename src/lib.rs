//! llmclis: a terminal knowledge manager with a task queue for LLM agents.
//!
//! The library owns the logic; `main.rs` only calls [`run`]. See
//! ARCHITECTURE.md for the map of modules and the invariants they keep.

pub mod app;
pub mod assets;
pub mod cli;
pub mod config;
pub mod crashpoint;
pub mod defaults;
pub mod describe;
pub mod docs;
pub mod doctor;
pub mod endpoints;
pub mod error;
pub mod eval;
pub mod first_run;
pub mod fsutil;
pub mod interop;
pub mod llm;
pub mod logging;
pub mod mcp;
pub mod memory;
pub mod net;
pub mod orchestrator;
pub mod process;
pub mod prompts;
pub mod registry;
pub mod resources;
pub mod role;
pub mod router;
pub mod serve;
pub mod store;
pub mod text;
pub mod tokens;
pub mod tools;
pub mod tui;
pub mod worktree;
pub mod zip;

pub use error::{Error, Result};

/// Runs the command line with the process's arguments.
pub fn run() -> std::process::ExitCode {
    cli::main(std::env::args_os())
}
