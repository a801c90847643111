//! Logs go to a file in the state dir (`Paths::log_file`), and to stderr
//! too with `-v`: level from `LLMCLIS_LOG`, else `RUST_LOG` (default
//! `info`; `-v` is `debug` on stderr); each day's log (and one past
//! 10 MB) moves aside as `.log.YYYY-MM-DD`, seven kept.
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

/// A log from an earlier day (UTC), or past `MAX_LOG`, moves aside as
/// `llmclis.log.YYYY-MM-DD` (its own last day; `.1`, `.2` … when one day
/// fills more than one), and only the `KEPT` newest of those stay.
const MAX_LOG: u64 = 10 * 1024 * 1024;
const KEPT: usize = 7;

fn rotate(path: &Path) {
    rotate_at(path, chrono::Utc::now());
}

/// `rotate` as of `now`: the clock is a parameter so tests can move it.
fn rotate_at(path: &Path, now: chrono::DateTime<chrono::Utc>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let day = meta
        .modified()
        .map(chrono::DateTime::<chrono::Utc>::from)
        .unwrap_or(now)
        .date_naive();
    if meta.len() < MAX_LOG && day >= now.date_naive() {
        return;
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut aside = path.with_file_name(format!("{name}.{day}"));
    let mut n = 1;
    while aside.exists() {
        aside = path.with_file_name(format!("{name}.{day}.{n}"));
        n += 1;
    }
    if std::fs::rename(path, &aside).is_err() {
        return;
    }
    // The oldest go: by last change, newest first.
    let Some(dir) = path.parent() else { return };
    let prefix = format!("{name}.");
    let mut old: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    old.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (_, p) in old.into_iter().skip(KEPT) {
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, bytes: &[u8], days_ago: u64, now: std::time::SystemTime) {
        crate::fsutil::write_atomic(path, bytes).unwrap();
        let f = std::fs::File::options().append(true).open(path).unwrap();
        f.set_modified(now - std::time::Duration::from_secs(days_ago * 86_400))
            .unwrap();
    }

    #[test]
    fn a_log_moves_aside_each_day_and_when_big_and_old_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("llmclis.log");
        let now = std::time::SystemTime::now();
        let clock = chrono::DateTime::<chrono::Utc>::from(now);
        // Today's small log stays.
        write(&log, b"today", 0, now);
        rotate_at(&log, clock);
        assert!(log.exists());
        // Tomorrow it moves aside under its own day.
        let tomorrow = clock + chrono::Duration::days(1);
        rotate_at(&log, tomorrow);
        let aside = dir
            .path()
            .join(format!("llmclis.log.{}", clock.date_naive()));
        assert!(!log.exists());
        assert_eq!(std::fs::read(&aside).unwrap(), b"today");
        // A big log moves aside the same day, beside the first.
        write(&log, &vec![b'x'; MAX_LOG as usize], 0, now);
        rotate_at(&log, clock);
        assert!(
            dir.path()
                .join(format!("llmclis.log.{}.1", clock.date_naive()))
                .exists()
        );
        // Ten older days: only the KEPT newest files stay.
        for d in 1..=10u64 {
            write(&log, format!("day -{d}").as_bytes(), d, now);
            rotate_at(&log, clock);
        }
        let kept: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(kept.len(), KEPT, "{kept:?}");
        assert!(aside.exists(), "the newest stay");
        let oldest = clock - chrono::Duration::days(10);
        assert!(
            !dir.path()
                .join(format!("llmclis.log.{}", oldest.date_naive()))
                .exists()
        );
    }
}
