//! Logs go to a file in the data dir, never to the terminal: `<data
//! dir>/logs/llmclis.log`, level from `LLMCLIS_LOG`, else `RUST_LOG`
//! (default `info`); past 10 MB it moves to `.log.1` (three kept).
//! Nothing logged carries an API key: requests are logged by provider and
//! model, and error messages are scrubbed (`llm::redact`) before they are.

use std::path::{Path, PathBuf};

/// Starts file logging once per process; returns the log file, or None when
/// the directory cannot be written (llmclis then runs without a log).
pub fn init(data_dir: &Path) -> Option<PathBuf> {
    let dir = data_dir.join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join("llmclis.log");
    rotate(&path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("LLMCLIS_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init()
        .ok()?;
    Some(path)
}

/// A log past `MAX_LOG` moves to `llmclis.log.1` (the one before that to
/// `.2`, and the oldest is dropped), so the log never grows without end.
const MAX_LOG: u64 = 10 * 1024 * 1024;
const KEPT: usize = 3;

fn rotate(path: &Path) {
    if std::fs::metadata(path).map_or(true, |m| m.len() < MAX_LOG) {
        return;
    }
    let old = |n: usize| path.with_extension(format!("log.{n}"));
    let _ = std::fs::remove_file(old(KEPT));
    for n in (1..KEPT).rev() {
        let _ = std::fs::rename(old(n), old(n + 1));
    }
    let _ = std::fs::rename(path, old(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_log_moves_aside_and_the_oldest_goes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("llmclis.log");
        let big = vec![b'x'; MAX_LOG as usize];
        for n in 1..=KEPT {
            crate::fsutil::write_atomic(
                &log.with_extension(format!("log.{n}")),
                n.to_string().as_bytes(),
            )
            .unwrap();
        }
        crate::fsutil::write_atomic(&log, &big).unwrap();
        rotate(&log);
        assert!(!log.exists());
        let read = |n: usize| std::fs::read(log.with_extension(format!("log.{n}"))).unwrap();
        assert_eq!(read(1).len(), big.len());
        assert_eq!(
            (read(2), read(3)),
            (b"1".to_vec(), b"2".to_vec()),
            "the oldest (3) was dropped"
        );
        // A small log stays.
        crate::fsutil::write_atomic(&log, b"small").unwrap();
        rotate(&log);
        assert!(log.exists());
    }
}
