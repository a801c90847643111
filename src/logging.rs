//! Logs go to a file in the state dir (`Paths::log_file`), and to stderr
//! too with `-v`: level from `LLMCLIS_LOG`, else `RUST_LOG` (default
//! `info`; `-v` is `debug` on stderr); past 10 MB the file moves to
//! `.log.1` (three kept).
//! Nothing logged carries an API key: requests are logged by provider and
//! model, and error messages are scrubbed (`llm::redact`) before they are.

use std::path::{Path, PathBuf};

use tracing_subscriber::Layer as _;

/// `-v` was given: the log goes to stderr as well. Set once, before the
/// first `init`, by the command line.
pub static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts logging once per process; returns the log file, or None when its
/// directory cannot be written (llmclis then logs to stderr only with -v).
pub fn init(paths: &crate::config::Paths) -> Option<PathBuf> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let verbose = VERBOSE.load(std::sync::atomic::Ordering::Relaxed);
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("LLMCLIS_LOG")
            .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let path = paths.log_file();
    let file = std::fs::create_dir_all(&paths.state_dir)
        .ok()
        .and_then(|_| {
            rotate(&path);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .ok()
        });
    let opened = file.is_some();
    let to_file = file.map(|f| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .with_filter(filter())
    });
    let to_stderr = verbose.then(|| {
        let level = std::env::var("LLMCLIS_LOG")
            .or_else(|_| std::env::var("RUST_LOG"))
            .unwrap_or_else(|_| "debug".into());
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(tracing_subscriber::EnvFilter::new(level))
    });
    tracing_subscriber::registry()
        .with(to_file)
        .with(to_stderr)
        .try_init()
        .ok()?;
    opened.then_some(path)
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
