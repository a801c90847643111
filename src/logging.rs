//! Logs go to a file in the data dir, never to the terminal: `<data
//! dir>/logs/llmclis.log`, level from `LLMCLIS_LOG` (default `info`).
//! Nothing logged carries an API key: requests are logged by provider and
//! model, and error messages are scrubbed (`llm::redact`) before they are.

use std::path::{Path, PathBuf};

/// Starts file logging once per process; returns the log file, or None when
/// the directory cannot be written (llmclis then runs without a log).
pub fn init(data_dir: &Path) -> Option<PathBuf> {
    let dir = data_dir.join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join("llmclis.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("LLMCLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init()
        .ok()?;
    Some(path)
}
