//! Circuit breakers per model, shared by every caller in the process:
//! consecutive failures cool a model down, a busy model is skipped for its
//! Retry-After, a server seen down stays skipped. Time comes from a `Clock`
//! so tests move it by hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Consecutive failures per model; at `threshold` the model cools down for
/// `cooldown`, or for as long as the failures took when that is longer (a
/// hung server that costs minutes a call is not tried again a minute later).
pub struct Breakers {
    state: Mutex<HashMap<String, Streak>>,
    pub threshold: u32,
    pub cooldown: Duration,
    /// The time: `Instant::now`, or a test's own clock, so cooldowns are
    /// tested by moving the clock, never by sleeping.
    clock: Clock,
}

/// What `Breakers` reads the time from.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("threshold", &self.threshold)
            .field("cooldown", &self.cooldown)
            .finish_non_exhaustive()
    }
}

/// A model's failures in a row, the time they took, and its cooldown.
#[derive(Debug, Default)]
struct Streak {
    failures: u32,
    took: Duration,
    until: Option<Instant>,
    /// Its server refused the connection this many times in a row (each
    /// doubles the cooldown), the last one then.
    down: u32,
    down_at: Option<Instant>,
    /// The cooldown is a busy server's `retry-after`: the model is there
    /// and will take requests again, so a chain of such models is waited
    /// for rather than given up on.
    busy: bool,
}

/// How long a busy model that named no `retry-after` is skipped while
/// another model of the chain can answer.
pub const BUSY_COOLDOWN: Duration = Duration::from_secs(5);

/// The longest a server that keeps refusing is left alone; the background
/// watch reopens it as soon as it answers again.
pub const MAX_DOWN_COOLDOWN: Duration = Duration::from_secs(600);

impl Breakers {
    pub fn new(threshold: u32, cooldown: Duration) -> Breakers {
        Breakers::with_clock(threshold, cooldown, Arc::new(Instant::now))
    }

    /// `new`, reading the time from `clock`.
    pub fn with_clock(threshold: u32, cooldown: Duration, clock: Clock) -> Breakers {
        Breakers {
            state: Mutex::new(HashMap::new()),
            threshold,
            cooldown,
            clock,
        }
    }

    fn now(&self) -> Instant {
        (self.clock)()
    }

    pub fn is_open(&self, model: &str) -> bool {
        let state = self.state.lock().expect("breaker lock");
        state
            .get(model)
            .and_then(|s| s.until)
            .is_some_and(|until| self.now() < until)
    }

    /// Cools a model down now: its server refused the connection (before
    /// any call, or in one). Each refusal in a row doubles the cooldown, up
    /// to `MAX_DOWN_COOLDOWN`.
    pub fn trip(&self, model: &str) {
        self.trip_for(model, Duration::ZERO);
    }

    /// `trip`, cooling for at least `at_least` the first time: a hung
    /// server is left alone at least as long as it kept a call waiting.
    pub fn trip_for(&self, model: &str, at_least: Duration) {
        let mut state = self.state.lock().expect("breaker lock");
        let s = state.entry(model.to_string()).or_default();
        s.down += 1;
        let now = self.now();
        s.down_at = Some(now);
        let factor = 1u32 << (s.down - 1).min(10);
        let base = self.cooldown.max(at_least);
        s.until = Some(now + base.saturating_mul(factor).min(MAX_DOWN_COOLDOWN.max(base)));
        s.failures = 0;
        s.took = Duration::ZERO;
        s.busy = false;
    }

    /// A busy model (overloaded, rate limited, loading) is skipped for
    /// `wait`, its `retry-after`, by every caller; a longer cooldown it
    /// already has is kept.
    pub fn cool_busy(&self, model: &str, wait: Duration) {
        let mut state = self.state.lock().expect("breaker lock");
        let s = state.entry(model.to_string()).or_default();
        let until = self.now() + wait;
        if s.until.is_none_or(|u| u < until) {
            s.until = Some(until);
            s.busy = true;
        }
    }

    /// How long a model cooling because it was busy has left.
    pub fn busy_for(&self, model: &str) -> Option<Duration> {
        let state = self.state.lock().expect("breaker lock");
        let s = state.get(model).filter(|s| s.busy)?;
        s.until?.checked_duration_since(self.now())
    }

    /// When the model's server last refused a connection, within
    /// `MAX_DOWN_COOLDOWN` of now, whether or not its cooldown is over.
    pub fn last_down(&self, model: &str) -> Option<Instant> {
        let state = self.state.lock().expect("breaker lock");
        let at = state.get(model)?.down_at?;
        (self.now().saturating_duration_since(at) < MAX_DOWN_COOLDOWN).then_some(at)
    }

    /// The server answered again (seen by the background watch): its
    /// models are asked again now.
    pub fn server_up(&self, model: &str) {
        self.state.lock().expect("breaker lock").remove(model);
    }

    pub(super) fn success(&self, model: &str) {
        self.state.lock().expect("breaker lock").remove(model);
    }

    /// Counts a failure that took `took`; at the threshold the model cools
    /// down.
    pub(super) fn failure(&self, model: &str, took: Duration) {
        let mut state = self.state.lock().expect("breaker lock");
        let s = state.entry(model.to_string()).or_default();
        s.failures += 1;
        s.took += took;
        if s.failures >= self.threshold {
            s.busy = false;
            s.until = Some(self.now() + self.cooldown.max(s.took));
            s.failures = 0;
            s.took = Duration::ZERO;
        }
    }
}
