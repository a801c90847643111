//! Calls along the router's chain: retries with exponential backoff and jitter
//! on 429 (honouring Retry-After) and 5xx; a refused connection cools its
//! whole server down at once, a silent server is not asked again; a
//! per-model cooldown (circuit breaker) after repeated failures, shared by
//! every caller in the process; then the next model. A stream that breaks
//! after its 200 falls back too, and a context-length error skips to a model
//! with a bigger window. Each provider's `max_concurrency` is a semaphore.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::{ChatRequest, LlmClient, LlmError, Sink, StreamEvent, client_for, redact};
use crate::registry::Registry;
use crate::router::Conditions;

pub use super::breakers::{BUSY_COOLDOWN, Breakers, Clock, MAX_DOWN_COOLDOWN};
pub use super::outcome::{Attempt, CallFailed, CallOutcome};
pub use super::records::call_records;
pub use super::windows::{WindowMismatch, window_mismatches};

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries per model, the first included.
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
    /// A longer Retry-After moves on to the next model instead of waiting.
    pub max_wait: Duration,
    /// How long one call keeps going round a chain whose every model is
    /// busy (overloaded or loading) before it gives up; the task then goes
    /// back to the queue.
    pub busy_budget: Duration,
}

impl RetryPolicy {
    /// The default policy with `[models]`' busy budget.
    pub fn for_models(models: &crate::config::Models) -> RetryPolicy {
        RetryPolicy {
            busy_budget: std::time::Duration::from_secs(models.busy_wait_secs),
            ..Default::default()
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            // One quick retry, then the next model or the back-off.
            attempts: 2,
            base: Duration::from_millis(250),
            max: Duration::from_secs(8),
            max_wait: Duration::from_secs(30),
            busy_budget: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Exponential, with jitter in [half, full] so callers do not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let full = self
            .base
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.max);
        full.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// The pause between rounds of a busy chain: 1 s, 2 s, 4 s … 15 s.
    fn round_backoff(&self, round: u32) -> Duration {
        Duration::from_secs(1 << (round - 1).min(4))
            .min(Duration::from_secs(15))
            .mul_f64(0.75 + fastrand::f64() * 0.25)
    }
}

pub struct Caller {
    pub(super) registry: Arc<Registry>,
    pub(super) clients: HashMap<String, Box<dyn LlmClient>>,
    limits: HashMap<String, Arc<Semaphore>>,
    pub breakers: Arc<Breakers>,
    pub retry: RetryPolicy,
    /// Every API key in the environment, to scrub from messages.
    keys: Vec<String>,
    /// Windows the servers report, when smaller than the registry's.
    pub(super) windows: Mutex<HashMap<String, u64>>,
    /// What is loaded where, refreshed in the background, when watched.
    resources: std::sync::OnceLock<Arc<crate::resources::Watch>>,
    /// Requests in flight per model: a model in use is never unloaded, and
    /// replicas are balanced by them.
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
    /// Requests started per model since this caller was made.
    started: Mutex<HashMap<String, u64>>,
}

/// Counts a request to a model while it lasts.
struct InFlight(Arc<Mutex<HashMap<String, usize>>>, String);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut m = self.0.lock().expect("in-flight lock");
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

impl Caller {
    pub fn new(registry: Arc<Registry>, http: reqwest::Client, breakers: Arc<Breakers>) -> Caller {
        let clients = registry
            .providers
            .iter()
            .map(|p| (p.name.clone(), client_for(p, http.clone())))
            .collect();
        let limits = registry
            .providers
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    Arc::new(Semaphore::new(p.max_concurrency as usize)),
                )
            })
            .collect();
        let keys = registry
            .providers
            .iter()
            .filter_map(|p| p.api_key())
            .collect();
        Caller {
            registry,
            clients,
            limits,
            breakers,
            retry: RetryPolicy::default(),
            keys,
            windows: Mutex::new(HashMap::new()),
            resources: std::sync::OnceLock::new(),
            in_flight: Arc::default(),
            started: Mutex::default(),
        }
    }

    /// Whether `id`'s breaker is open. One opened because its server
    /// refused the connection closes as soon as the background watch sees
    /// that server answer again, however long its cooldown; and while the
    /// watch keeps seeing it down, it stays open past its cooldown (up to
    /// `MAX_DOWN_COOLDOWN`), so a down server is not asked request after
    /// request.
    fn open(&self, id: &str) -> bool {
        let open = self.breakers.is_open(id);
        let (Some(down_at), Some(watch)) = (self.breakers.last_down(id), self.resources.get())
        else {
            return open;
        };
        let view = watch.view();
        let provider = self.registry.model(id).map(|m| m.provider.as_str());
        let seen = view
            .snapshot
            .servers
            .iter()
            .find(|s| Some(s.provider.as_str()) == provider);
        let looked_since = view.at.is_some_and(|at| at > down_at);
        match seen {
            Some(server) if looked_since && server.up => {
                self.breakers.server_up(id);
                false
            }
            // Watched, and down when last looked at: still down.
            Some(_) => open || looked_since,
            None => open,
        }
    }

    /// Whether a request to `model` is in flight in this process.
    pub fn busy(&self, model: &str) -> bool {
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .contains_key(model)
    }

    fn start_request(&self, model: &str) -> InFlight {
        *self
            .started
            .lock()
            .expect("started lock")
            .entry(model.to_string())
            .or_default() += 1;
        *self
            .in_flight
            .lock()
            .expect("in-flight lock")
            .entry(model.to_string())
            .or_default() += 1;
        InFlight(self.in_flight.clone(), model.to_string())
    }

    /// Routes by what `watch` last saw (loaded models, free memory, queues).
    pub fn watch_resources(&self, watch: Arc<crate::resources::Watch>) {
        let _ = self.resources.set(watch);
    }

    pub fn resource_watch(&self) -> Option<&Arc<crate::resources::Watch>> {
        self.resources.get()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn registry_arc(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    pub fn client(&self, provider: &str) -> Option<&dyn LlmClient> {
        self.clients.get(provider).map(|c| c.as_ref())
    }

    /// The input tokens `req` would be to registry model `model_id`, as its
    /// server counts them; None when the server cannot say (or failed to).
    pub async fn count_tokens(&self, model_id: &str, req: &ChatRequest) -> Option<u64> {
        let m = self.registry.model(model_id)?;
        let client = self.clients.get(&self.registry.provider_of(m).name)?;
        match client.count_tokens(&m.served_name, req).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(model = %model_id, error = %self.redact(&e.to_string()), "the server did not count tokens; estimating");
                None
            }
        }
    }

    pub fn redact(&self, message: &str) -> String {
        redact(message, &self.keys)
    }

    /// A model's window: the registry's, or what its server reports when
    /// that is smaller.
    pub fn window(&self, model: &crate::registry::Model) -> u64 {
        let learned = self
            .windows
            .lock()
            .expect("windows lock")
            .get(&model.id)
            .copied();
        learned.map_or(model.context_window, |w| w.min(model.context_window))
    }

    /// Takes a window a server reported for a model (its probe, or an error
    /// that names it).
    pub fn learn_window(&self, model_id: &str, window: u64) {
        if window > 0 {
            self.windows
                .lock()
                .expect("windows lock")
                .insert(model_id.to_string(), window);
        }
    }

    /// Asks every local server for its real windows and keeps those
    /// smaller than the registry's; returns each mismatch found.
    pub async fn learn_windows(&self) -> Vec<WindowMismatch> {
        let probes = self
            .registry
            .providers
            .iter()
            .map(|p| async move { (p, self.clients[&p.name].windows().await) });
        let mut found = Vec::new();
        for (p, windows) in futures_util::future::join_all(probes).await {
            for w in window_mismatches(&self.registry, &p.name, &windows) {
                self.learn_window(&w.model, w.server);
                found.push(w);
            }
        }
        found
    }

    /// The request as one model should get it: `max_tokens` within what
    /// the model can produce and what its window leaves after the prompt;
    /// for Ollama, the window as `num_ctx` and the role's `keep_alive`.
    pub(crate) fn fit(&self, req: &ChatRequest, model: &crate::registry::Model) -> ChatRequest {
        let mut r = req.clone();
        let prompt: u64 = req
            .messages
            .iter()
            .map(|m| crate::tokens::estimate_tokens(&m.content))
            .sum();
        let room = self.window(model).saturating_sub(prompt).max(16);
        r.max_tokens = req.max_tokens.min(model.max_output_tokens).min(room).max(1);
        if self.registry.provider_of(model).is_ollama() {
            r.num_ctx.get_or_insert(model.context_window);
            if r.keep_alive.is_none() {
                r.keep_alive = req
                    .role
                    .and_then(|role| self.registry.roles.get(&role))
                    .and_then(|role| role.keep_alive.clone());
            }
        }
        r
    }

    /// Tries the chain in order until a model answers. A busy chain (every
    /// model overloaded or loading) is tried again in rounds, backing off,
    /// until `retry.busy_budget` is spent.
    pub async fn call(
        &self,
        chain: &[String],
        req: &ChatRequest,
        mut sink: Option<Sink<'_>>,
    ) -> Result<CallOutcome, CallFailed> {
        let began = Instant::now();
        let mut attempts = Vec::new();
        let mut last = None;
        // After a context-length error only bigger windows are worth a try.
        let mut min_window: Option<u64> = None;
        // A model that failed after streaming tokens; told to the listener
        // when the next model really starts.
        let mut restart_from: Option<String> = None;
        for round in 1u32.. {
            // The shortest wait any busy model asked for this round; None
            // when some model failed for a reason waiting does not fix.
            let mut busy_wait: Option<Duration> = None;
            let mut all_busy = true;
            for (at, id) in chain.iter().enumerate() {
                let Some(model) = self.registry.model(id) else {
                    continue;
                };
                let provider = self.registry.provider_of(model);
                let skip = |why: &str| Attempt {
                    model: id.clone(),
                    provider: provider.name.clone(),
                    outcome: "skipped",
                    error_kind: None,
                    error: Some(why.to_string()),
                    transient: false,
                    latency_ms: 0,
                    started_at: std::time::SystemTime::now(),
                };
                if min_window.is_some_and(|w| self.window(model) <= w) {
                    attempts.push(skip(
                        "context window no bigger than the one that overflowed",
                    ));
                    continue;
                }
                if req.json_schema.is_some()
                    && !model.capabilities.iter().any(|c| c == "json_schema")
                {
                    attempts.push(skip("no structured output (capability json_schema)"));
                    continue;
                }
                // Past the first round every model asked was busy, and a
                // busy model is asked again even if that cooled it down.
                if round == 1 && self.open(id) {
                    if let Some(left) = self.breakers.busy_for(id) {
                        // Busy, not broken: waited for if all the chain is.
                        attempts.push(skip("busy; skipped until its retry-after"));
                        busy_wait = Some(busy_wait.map_or(left, |b| b.min(left)));
                        continue;
                    }
                    attempts.push(skip("cooling down after repeated failures"));
                    all_busy = false;
                    continue;
                }
                if let (Some(failed), Some(s)) = (restart_from.take(), sink.as_mut()) {
                    s(StreamEvent::Restart {
                        failed_model: &failed,
                        next_model: id,
                    });
                }
                let mut fitted = self.fit(req, model);
                let client = &self.clients[&provider.name];
                let limit = &self.limits[&provider.name];
                let mut streamed = false;
                // One broken stream or garbled reply is a glitch: the same
                // model gets one more try before the next model does. One
                // refused max_tokens is retried with what the server says fits.
                let mut glitch_retried = false;
                let mut shrunk = false;
                // A busy server is asked again each round, once.
                let tries = if round == 1 {
                    self.retry.attempts.max(1)
                } else {
                    1
                };
                let mut attempt = 0;
                let mut ended_busy = None;
                while attempt < tries {
                    attempt += 1;
                    let started = Instant::now();
                    let started_at = std::time::SystemTime::now();
                    let result = {
                        // Counted while it waits for a permit too: a model
                        // with requests queued is never unloaded.
                        let _in_flight = self.start_request(id);
                        let _permit = limit.acquire().await.expect("semaphore never closed");
                        tracing::info!(provider = %provider.name, model = %id, attempt, round, "model call");
                        match sink.as_mut() {
                            Some(s) if fitted.stream => {
                                let mut relay = |ev: StreamEvent<'_>| {
                                    streamed = true;
                                    s(ev);
                                };
                                client
                                    .chat(&model.served_name, &fitted, Some(&mut relay))
                                    .await
                            }
                            _ => client.chat(&model.served_name, &fitted, None).await,
                        }
                    };
                    let latency_ms = started.elapsed().as_millis() as u64;
                    let e = match result {
                        Ok(response) => {
                            self.breakers.success(id);
                            tracing::info!(provider = %provider.name, model = %id, latency_ms, tokens = response.usage.completion_tokens, "model answered");
                            attempts.push(Attempt {
                                model: id.clone(),
                                provider: provider.name.clone(),
                                outcome: "ok",
                                error_kind: None,
                                error: None,
                                transient: false,
                                latency_ms,
                                started_at,
                            });
                            return Ok(CallOutcome {
                                model: id.clone(),
                                provider: provider.name.clone(),
                                response,
                                attempts,
                            });
                        }
                        Err(e) => e,
                    };
                    let message = self.redact(&e.to_string());
                    tracing::warn!(provider = %provider.name, model = %id, attempt, error = %message, "model call failed");
                    attempts.push(Attempt {
                        model: id.clone(),
                        provider: provider.name.clone(),
                        outcome: "error",
                        error_kind: Some(e.kind()),
                        error: Some(message),
                        transient: e.transient(),
                        latency_ms,
                        started_at,
                    });
                    let glitch =
                        matches!(e, LlmError::StreamBroken(_) | LlmError::InvalidResponse(_));
                    if e.retryable() || glitch || matches!(e, LlmError::Timeout { .. }) {
                        self.breakers.failure(id, Duration::from_millis(latency_ms));
                    }
                    if let LlmError::ContextLength(_) = e {
                        min_window = Some(self.window(model));
                    }
                    let mut wait = match &e {
                        LlmError::RateLimited {
                            retry_after: Some(d),
                        } => *d,
                        _ => self.retry.backoff(attempt),
                    };
                    let mut retry = e.retryable() || (glitch && !glitch_retried);
                    if let LlmError::OutputTooLong { fits, window, .. } = &e {
                        if let Some(w) = window {
                            self.learn_window(id, *w);
                        }
                        let smaller = fits.unwrap_or(fitted.max_tokens / 2);
                        retry = !shrunk && smaller >= 1 && smaller < fitted.max_tokens;
                        if retry {
                            tracing::info!(model = %id, from = fitted.max_tokens, to = smaller, "max_tokens shrunk to what the server allows");
                            fitted.max_tokens = smaller;
                            shrunk = true;
                            wait = Duration::ZERO;
                            // Not a try of its own: the request was wrong.
                            attempt -= 1;
                        }
                    }
                    // Nothing listens there, it hung before answering, or
                    // it refuses the key: every model of that server is
                    // cooled at once (a hang for at least as long as it
                    // kept the call waiting), and not asked again now.
                    let server_wide = match &e {
                        LlmError::Connect(_) | LlmError::Auth { .. } => Some(Duration::ZERO),
                        LlmError::Timeout { waited, .. } if e.hung() => Some(*waited),
                        _ => None,
                    };
                    if let Some(at_least) = server_wide {
                        for m in self
                            .registry
                            .models
                            .iter()
                            .filter(|m| m.provider == provider.name)
                        {
                            self.breakers.trip_for(&m.id, at_least);
                        }
                        retry = false;
                    }
                    // Busy, with another model to ask: that one is asked
                    // now, and this one is left alone for its retry-after
                    // by every call.
                    if e.busy()
                        && round == 1
                        && chain[at + 1..]
                            .iter()
                            .any(|m| self.registry.model(m).is_some() && !self.open(m))
                    {
                        self.breakers.cool_busy(id, wait.max(BUSY_COOLDOWN));
                        retry = false;
                    }
                    glitch_retried |= glitch;
                    let busy = e.busy();
                    last = Some(e);
                    // Another caller may have opened the breaker meanwhile.
                    if !retry
                        || attempt >= tries
                        || (round == 1 && self.open(id))
                        || wait > self.retry.max_wait
                    {
                        ended_busy = busy.then_some(wait);
                        break;
                    }
                    // Text already shown starts over: the listener is told.
                    if streamed && let Some(s) = sink.as_mut() {
                        s(StreamEvent::Restart {
                            failed_model: id,
                            next_model: id,
                        });
                        streamed = false;
                    }
                    self.wait(client.as_ref(), last.as_ref(), wait, began).await;
                }
                match ended_busy {
                    Some(w) => busy_wait = Some(busy_wait.map_or(w, |b| b.min(w))),
                    None => all_busy = false,
                }
                if streamed {
                    restart_from = Some(id.clone());
                }
            }
            // Every model that was asked is busy: wait for one, within the
            // budget, then go round again.
            let Some(asked) = busy_wait.filter(|_| all_busy) else {
                break;
            };
            let wait = asked.max(self.retry.round_backoff(round));
            if began.elapsed() + wait > self.retry.busy_budget {
                break;
            }
            tracing::info!(
                round,
                wait_ms = wait.as_millis() as u64,
                "every model is busy; waiting"
            );
            let first = chain.first().and_then(|id| self.registry.model(id));
            match first {
                Some(m) => {
                    let client = &self.clients[&self.registry.provider_of(m).name];
                    self.wait(client.as_ref(), last.as_ref(), wait, began).await;
                }
                None => tokio::time::sleep(wait).await,
            }
        }
        Err(CallFailed { attempts, last })
    }

    /// Waits before asking again: while a server says its model is still
    /// loading, by polling its readiness (llama.cpp's `/health`) so the
    /// call goes out as soon as it is ready, within the busy budget
    /// of the call that began at `began`; otherwise by sleeping.
    async fn wait(
        &self,
        client: &dyn LlmClient,
        error: Option<&LlmError>,
        wait: Duration,
        began: Instant,
    ) {
        if !error.is_some_and(LlmError::loading) {
            tokio::time::sleep(wait).await;
            return;
        }
        let until = (began + self.retry.busy_budget).max(Instant::now() + wait);
        while Instant::now() < until {
            if client.ready().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Conditions for Caller {
    /// A model cooling only because it was busy stays in chains: the call
    /// skips it while another model answers, and waits for it when none
    /// can, rather than having no chain at all.
    fn cooling_down(&self, model_id: &str) -> bool {
        self.open(model_id) && self.breakers.busy_for(model_id).is_none()
    }

    fn key_set(&self, env_var: &str) -> bool {
        std::env::var(env_var).is_ok_and(|v| !v.trim().is_empty())
    }

    fn resources(&self) -> Option<Arc<crate::resources::View>> {
        self.resources.get().map(|w| w.view())
    }

    fn window(&self, model: &crate::registry::Model) -> u64 {
        Caller::window(self, model)
    }

    fn load(&self, model_id: &str) -> crate::router::Load {
        crate::router::Load {
            in_flight: self
                .in_flight
                .lock()
                .expect("in-flight lock")
                .get(model_id)
                .map_or(0, |n| *n as u32),
            started: self
                .started
                .lock()
                .expect("started lock")
                .get(model_id)
                .copied()
                .unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Message;

    fn caller() -> Caller {
        let r = Arc::new(Registry::builtin());
        Caller::new(
            r,
            crate::net::http_client(),
            Arc::new(Breakers::new(3, Duration::from_secs(30))),
        )
    }

    /// A clock that moves only when told to.
    fn manual() -> (Clock, Arc<Mutex<Duration>>) {
        let base = Instant::now();
        let offset = Arc::new(Mutex::new(Duration::ZERO));
        let read = offset.clone();
        (Arc::new(move || base + *read.lock().unwrap()), offset)
    }

    #[test]
    fn a_model_cools_down_at_least_as_long_as_its_failures_took() {
        let (clock, at) = manual();
        let b = Breakers::with_clock(2, Duration::from_millis(1), clock.clone());
        b.failure("slow", Duration::from_secs(30));
        assert!(!b.is_open("slow"), "under the threshold");
        b.failure("slow", Duration::from_secs(30));
        *at.lock().unwrap() += Duration::from_secs(59);
        assert!(
            b.is_open("slow"),
            "a minute of failures: skipped a minute, not 1 ms"
        );
        *at.lock().unwrap() += Duration::from_secs(2);
        assert!(!b.is_open("slow"), "and not longer");
        let quick = Breakers::with_clock(2, Duration::from_millis(1), clock);
        quick.failure("fast", Duration::from_millis(1));
        quick.failure("fast", Duration::from_millis(1));
        *at.lock().unwrap() += Duration::from_millis(5);
        assert!(
            !quick.is_open("fast"),
            "quick failures keep the base cooldown"
        );
    }

    #[test]
    fn a_busy_model_is_skipped_for_its_retry_after_and_a_hang_doubles() {
        let (clock, at) = manual();
        let b = Breakers::with_clock(3, Duration::from_secs(30), clock);
        b.cool_busy("m", Duration::from_secs(10));
        assert_eq!(b.busy_for("m"), Some(Duration::from_secs(10)));
        *at.lock().unwrap() += Duration::from_secs(11);
        assert!(!b.is_open("m") && b.busy_for("m").is_none());
        // A hang of 120 s cools for at least that, then twice that.
        b.trip_for("h", Duration::from_secs(120));
        *at.lock().unwrap() += Duration::from_secs(119);
        assert!(b.is_open("h"));
        *at.lock().unwrap() += Duration::from_secs(2);
        assert!(!b.is_open("h"));
        b.trip_for("h", Duration::from_secs(120));
        *at.lock().unwrap() += Duration::from_secs(239);
        assert!(b.is_open("h"), "the second hang in a row doubles it");
    }

    #[tokio::test]
    async fn a_server_the_watch_sees_down_stays_skipped_past_its_cooldown() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let registry = Arc::new(Registry::for_tests(
            &[&format!(
                r#"{{ name: cpu, kind: openai-compatible, flavour: llamacpp, base_url: "http://127.0.0.1:{port}/v1", local: true }}"#
            )],
            &[
                "{ id: m, provider: cpu, served_name: m, context_window: 2048, max_output_tokens: 512 }",
            ],
            &["m"],
        ));
        // A cooldown that is over at once: only the watch keeps it shut.
        let c = Caller::new(
            registry.clone(),
            crate::net::http_client(),
            Arc::new(Breakers::new(3, Duration::ZERO)),
        );
        let watch = crate::resources::Watch::new(registry);
        c.watch_resources(watch.clone());
        c.breakers.trip("m");
        assert!(!c.breakers.is_open("m"), "its own cooldown is over");
        assert!(!c.cooling_down("m"), "nobody has looked since it refused");
        watch.refresh().await;
        assert!(
            c.cooling_down("m"),
            "the watch saw it down after it refused: not asked again"
        );
    }

    #[test]
    fn a_busy_model_stays_in_the_routers_chains() {
        let c = caller();
        c.breakers.cool_busy("qwen-7b", Duration::from_secs(30));
        assert!(c.breakers.is_open("qwen-7b"), "the call skips it");
        assert!(
            !c.cooling_down("qwen-7b"),
            "the router keeps it: a chain of busy models is waited for, not empty"
        );
        c.breakers.trip("qwen-7b");
        assert!(c.cooling_down("qwen-7b"), "down is another matter");
    }

    #[test]
    fn ollama_gets_its_window_and_the_roles_keep_alive() {
        let c = caller();
        let req = ChatRequest {
            messages: vec![Message::user("summarize this")],
            max_tokens: 100_000,
            role: Some(crate::role::Role::Summarizer),
            ..Default::default()
        };
        let qwen7 = c.registry().model("qwen-7b").unwrap();
        let fitted = c.fit(&req, qwen7);
        assert_eq!(fitted.num_ctx, Some(32768));
        assert_eq!(fitted.keep_alive.as_deref(), Some("0s"));
        assert_eq!(fitted.max_tokens, 4096, "clamped to the model's max output");
        // Not Ollama: no num_ctx; max_tokens fits the window after the prompt.
        let smol = c.registry().model("smollm2-135m").unwrap();
        let fitted = c.fit(&req, smol);
        assert_eq!(fitted.num_ctx, None);
        assert_eq!(fitted.max_tokens, 512);
    }

    #[test]
    fn breakers_open_at_the_threshold_and_close_after_the_cooldown() {
        let (clock, at) = manual();
        let b = Breakers::with_clock(2, Duration::from_secs(30), clock);
        b.failure("m", Duration::ZERO);
        assert!(!b.is_open("m"));
        b.failure("m", Duration::ZERO);
        assert!(b.is_open("m"));
        *at.lock().unwrap() += Duration::from_secs(29);
        assert!(b.is_open("m"));
        *at.lock().unwrap() += Duration::from_secs(2);
        assert!(!b.is_open("m"));
    }
}
