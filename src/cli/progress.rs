//! Progress bars for long jobs, on stderr, only for a person watching:
//! never under `--json` and never when stderr is not a terminal (a pipe, a
//! log file, CI), where the lines the job prints say enough.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar, or nothing when nobody watches.
#[derive(Clone)]
pub struct Bar(Option<ProgressBar>);

fn watched(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

impl Bar {
    /// `what [████░░░░] 3/10 (12s, 30s left)`.
    pub fn new(json: bool, what: &str, total: u64) -> Bar {
        if !watched(json) {
            return Bar(None);
        }
        let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} ({elapsed}, {eta} left) {msg}",
            )
            .expect("a valid template")
            .progress_chars("█▌░"),
        );
        pb.set_prefix(what.to_string());
        Bar(Some(pb))
    }

    pub fn set(&self, done: u64, total: u64) {
        if let Some(pb) = &self.0 {
            pb.set_length(total);
            pb.set_position(done);
        }
    }

    pub fn inc(&self) {
        if let Some(pb) = &self.0 {
            pb.inc(1);
        }
    }

    pub fn message(&self, m: impl Into<String>) {
        if let Some(pb) = &self.0 {
            pb.set_message(m.into());
        }
    }

    /// Runs `f` (which prints) with the bar out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.0 {
            Some(pb) => pb.suspend(f),
            None => f(),
        }
    }

    pub fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}
