//! The cached `View` and what refreshes it: the probes run in the
//! background (or on a caller's demand), never on the routing path.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::placement::{View, placements};
use super::snapshot::Snapshot;
use super::{gpu, servers, system};
use crate::registry::Registry;

/// The cached view and what refreshes it: probing never happens on the
/// routing path; the router reads the last view.
pub struct Watch {
    registry: Arc<Registry>,
    http: reqwest::Client,
    current: RwLock<Arc<View>>,
    detector: Arc<Mutex<gpu::Detector>>,
    /// Each probe's limit: a hung server costs this, once, in the background.
    pub timeout: Duration,
}

impl Watch {
    /// Its HTTP client keeps no idle connections: a refresh may run on the
    /// watch's thread or on a caller's runtime, and a pooled connection
    /// belongs to the runtime that opened it.
    pub fn new(registry: Arc<Registry>) -> Arc<Watch> {
        let http = crate::net::http_builder()
            .pool_max_idle_per_host(0)
            .connect_timeout(crate::endpoints::PROBE_TIMEOUT)
            .build()
            .expect("the HTTP client builds");
        Arc::new(Watch {
            registry,
            http,
            current: RwLock::new(Arc::new(View::default())),
            detector: Arc::new(Mutex::new(gpu::Detector::default())),
            timeout: crate::endpoints::PROBE_TIMEOUT,
        })
    }

    /// The last view (empty, every model unknown, before the first refresh).
    pub fn view(&self) -> Arc<View> {
        self.current.read().expect("view lock").clone()
    }

    /// Gathers a new snapshot: the GPUs and RAM on a blocking thread, every
    /// local server at once, each within the timeout.
    pub async fn refresh(&self) -> Arc<View> {
        let began = Instant::now();
        let detector = self.detector.clone();
        let gpus = tokio::task::spawn_blocking(move || {
            let mut d = detector.lock().expect("detector lock");
            (d.detect(), system::read())
        });
        let last = self.view();
        let probes = self.registry.providers.iter().filter(|p| p.local).map(|p| {
            let before = last.snapshot.servers.iter().find(|s| s.provider == p.name);
            servers::probe(&self.http, p, self.timeout, before)
        });
        let servers = futures_util::future::join_all(probes).await;
        let (gpus, ram) = gpus.await.unwrap_or_default();
        let snapshot = Snapshot {
            taken_at_ms: chrono::Utc::now().timestamp_millis(),
            took_ms: began.elapsed().as_millis() as u64,
            gpus,
            ram,
            servers,
        };
        tracing::debug!(
            took_ms = snapshot.took_ms,
            gpus = snapshot.gpus.devices.len(),
            up = snapshot.servers.iter().filter(|s| s.up).count(),
            "resources refreshed"
        );
        let view = Arc::new(View {
            placements: placements(&self.registry, &snapshot),
            snapshot,
            // When the look began: what it saw is no older than this.
            at: Some(began),
        });
        *self.current.write().expect("view lock") = view.clone();
        view
    }

    /// Refreshes every `every` on a thread of its own (with its own small
    /// runtime, so any front end can use it) until the watch is dropped.
    pub fn start(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        // A watch that has looked already (a run's, before its first claim)
        // waits a whole period; a new one looks after one tick.
        let looked = self.view().at.is_some();
        let spawned = std::thread::Builder::new()
            .name("resources".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let tick = Duration::from_millis(250).min(every);
                let mut waited = if looked { Duration::ZERO } else { every };
                loop {
                    std::thread::sleep(tick);
                    waited += tick;
                    // Gone when its last user is: the thread ends with it.
                    let Some(watch) = weak.upgrade() else { return };
                    if waited >= every {
                        waited = Duration::ZERO;
                        rt.block_on(watch.refresh());
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("resource watch not started: {e}");
        }
    }
}
