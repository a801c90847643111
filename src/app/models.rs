//! The model registry as the user's servers see it: each provider's health
//! and each model's window and whether its server serves it.

use serde::Serialize;

use crate::llm::Health;
use crate::llm::caller::Caller;
use crate::registry::{Mode, Model, ProviderKind, Registry};
use crate::router::Conditions;

#[derive(Debug, Serialize)]
pub struct ProviderView {
    pub name: String,
    pub kind: ProviderKind,
    pub flavour: Option<String>,
    pub base_url: String,
    pub local: bool,
    pub api_key_env: Option<String>,
    pub api_key_set: bool,
    /// Null when the mode keeps llmclis from asking (an API provider offline).
    pub health: Option<Health>,
}

#[derive(Debug, Serialize)]
pub struct ModelView {
    #[serde(flatten)]
    pub model: Model,
    pub local: bool,
    /// Whether its server lists the served name; null when not asked.
    pub served: Option<bool>,
    /// The window its server reports when smaller than `context_window`:
    /// the one llmclis uses.
    pub server_window: Option<u64>,
}

/// The registry in use, every provider asked once, every model placed.
#[derive(Debug, Serialize)]
pub struct ModelsStatus {
    pub registry: String,
    pub mode: Mode,
    pub providers: Vec<ProviderView>,
    pub models: Vec<ModelView>,
}

/// Asks every provider the mode allows (never an API one offline) for its
/// health and its models' windows, all at once.
pub async fn status(registry: &Registry, caller: &Caller, mode: Mode) -> ModelsStatus {
    let windows = caller.learn_windows().await;
    let checks = registry.providers.iter().map(|p| async {
        let asked = p.local || mode == Mode::Online;
        let health = if asked {
            match caller.client(&p.name) {
                Some(c) => Some(c.health().await),
                None => None,
            }
        } else {
            None
        };
        ProviderView {
            name: p.name.clone(),
            kind: p.kind,
            flavour: p.flavour.clone(),
            base_url: p.base_url.clone(),
            local: p.local,
            api_key_env: p.api_key_env.clone(),
            api_key_set: p.api_key_env.as_deref().is_some_and(|v| caller.key_set(v)),
            health,
        }
    });
    let providers = futures_util::future::join_all(checks).await;
    let models = registry
        .models
        .iter()
        .map(|m| {
            let p = providers.iter().find(|p| p.name == m.provider);
            ModelView {
                model: m.clone(),
                server_window: windows.iter().find(|w| w.model == m.id).map(|w| w.server),
                local: p.is_some_and(|p| p.local),
                served: p.and_then(|p| p.health.as_ref()).filter(|h| h.ok).map(|h| {
                    crate::endpoints::serves_name(
                        &h.served,
                        &m.served_name,
                        registry.provider_of(m).flavour.as_deref(),
                    )
                }),
            }
        })
        .collect();
    ModelsStatus {
        registry: registry.source.clone(),
        mode,
        providers,
        models,
    }
}

/// A local model where it would run: its device, what it needs there, and
/// whether it is loaded, fits or does not.
#[derive(Debug, Clone, Serialize)]
pub struct ModelPlacement {
    pub id: String,
    pub provider: String,
    pub device: Option<crate::registry::Device>,
    /// Bytes, from the registry's `memory`.
    pub need: Option<u64>,
    #[serde(flatten)]
    pub placement: crate::resources::Placement,
}

/// The machine as llmclis sees it: each device's memory, each local
/// server's models and queue, each local model's placement.
#[derive(Debug, Clone, Serialize)]
pub struct Resources {
    pub registry: String,
    /// How the GPUs were read (`nvml`, `nvidia-smi`, `none`), and why none.
    pub gpu_source: &'static str,
    pub gpu_note: Option<String>,
    pub devices: Vec<crate::resources::DeviceMemory>,
    pub ram: Option<crate::resources::system::Ram>,
    pub servers: Vec<crate::resources::ServerState>,
    pub models: Vec<ModelPlacement>,
    /// How long gathering took.
    pub took_ms: u64,
    pub taken_at_ms: i64,
}

/// What a watch last saw, for people.
pub fn resources_from(registry: &Registry, view: &crate::resources::View) -> Resources {
    let snap = &view.snapshot;
    let models = registry
        .models
        .iter()
        .filter(|m| registry.provider_of(m).local)
        .map(|m| {
            let p = registry.provider_of(m);
            ModelPlacement {
                id: m.id.clone(),
                provider: p.name.clone(),
                device: p.device,
                need: m.memory.map(|n| n.total()),
                placement: view
                    .placements
                    .get(&m.id)
                    .cloned()
                    .unwrap_or_else(|| crate::resources::Placement::unknown("not probed yet")),
            }
        })
        .collect();
    Resources {
        registry: registry.source.clone(),
        gpu_source: snap.gpus.source,
        gpu_note: snap.gpus.note.clone(),
        devices: crate::resources::devices(registry, snap),
        ram: snap.ram,
        servers: snap.servers.clone(),
        models,
        took_ms: snap.took_ms,
        taken_at_ms: snap.taken_at_ms,
    }
}

/// Asks every local server and the GPUs now, at once, each within the
/// probe timeout.
pub async fn resources(registry: std::sync::Arc<Registry>) -> Resources {
    let watch = crate::resources::Watch::new(registry.clone());
    let view = watch.refresh().await;
    resources_from(&registry, &view)
}
