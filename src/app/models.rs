//! The model registry as the user's servers see it: each provider's health
//! and each model's window and whether its server serves it.

use serde::Serialize;

use crate::llm::Health;
use crate::llm::caller::Caller;
use crate::registry::{Mode, Model, ProviderKind, Registry};
use crate::router::{Conditions, Skip};

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

/// Starts the background watch of memory and loaded models (refreshed
/// every `REFRESH`); the handle reads its latest view.
pub fn watch(registry: std::sync::Arc<Registry>) -> std::sync::Arc<crate::resources::Watch> {
    let watch = crate::resources::Watch::new(registry);
    watch.start(crate::resources::REFRESH);
    watch
}

/// Each provider's health, in the registry's order, asked all at once.
/// Offline mode never probes API providers (`None`).
pub async fn provider_health(registry: &Registry, mode: Mode) -> Vec<Option<crate::llm::Health>> {
    let http = crate::net::http_client();
    let checks = registry.providers.iter().map(|p| {
        let http = http.clone();
        async move {
            if !p.local && mode == Mode::Offline {
                return None;
            }
            Some(crate::llm::client_for(p, http).health().await)
        }
    });
    futures_util::future::join_all(checks).await
}

/// The models `chat` tries, in order, its temperature and the role: the
/// model asked for, or the router's chain for the prompt (`--role` as a
/// hint). Refused when the mode rules the model out or nothing can take
/// the prompt, naming why each model was passed over.
#[allow(clippy::too_many_arguments)]
pub fn chat_route(
    registry: &Registry,
    caller: &Caller,
    mode: Mode,
    model: Option<&str>,
    role: Option<crate::role::Role>,
    prompt: &str,
    system: Option<&str>,
    max_tokens: u64,
) -> crate::error::Result<(Vec<String>, f32, Option<crate::role::Role>)> {
    use crate::error::Error;
    if let Some(id) = model {
        let m = registry.known_model(id)?;
        let p = registry.provider_of(m);
        if !p.local && mode == Mode::Offline {
            return Err(Error::InvalidInput(format!(
                "{id} is an API model ({}); the mode is offline: pass --mode online",
                p.name
            )));
        }
        return Ok((vec![id.to_string()], 0.3, None));
    }
    let prompt_tokens =
        crate::tokens::estimate_tokens(prompt) + system.map_or(0, crate::tokens::estimate_tokens);
    let info = crate::router::TaskInfo {
        project_id: 0,
        title: prompt,
        description: "",
        tags: &[],
        role_hint: role,
        prompt_tokens,
        output_tokens: Some(max_tokens),
        needs_json: false,
    };
    let d = crate::router::route(registry, &info, mode, caller);
    if d.chain.is_empty() {
        let why: Vec<String> = d
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.model, skip_reason(&s.why)))
            .collect();
        return Err(Error::Model(format!(
            "no model can take this prompt ({})",
            why.join("; ")
        )));
    }
    Ok((d.chain, d.temperature, Some(d.role)))
}

/// Why the router passed a model over, in words.
pub fn skip_reason(why: &Skip) -> String {
    match why {
        Skip::Offline => "an API model, and the mode is offline".into(),
        Skip::ContextTooSmall { needed, window } => {
            format!("~{needed} prompt tokens do not fit its {window}-token window")
        }
        Skip::CoolingDown => "cooling down after repeated failures".into(),
        Skip::OverBudget {
            estimate_usd,
            remaining_usd,
        } => {
            format!("would cost ~${estimate_usd:.4}, ${remaining_usd:.4} of the budget is left")
        }
        Skip::NoApiKey { env } => format!("{env} is not set"),
        Skip::ExcludedByRule => "excluded by the rule".into(),
        Skip::NoStructuredOutput => "no structured output (capability json_schema)".into(),
        Skip::DoesNotFit { device, need, free } => {
            format!(
                "not loaded, and {}",
                crate::resources::does_not_fit(*device, *need, *free)
            )
        }
        Skip::Asleep => {
            "its server is asleep; `llmclis models load` wakes it (or [orchestrator] make_room)"
                .into()
        }
    }
}

/// Refuses a model that is not a local server's (load and unload act on
/// local servers only), before any request.
pub fn check_local(registry: &Registry, id: &str) -> crate::error::Result<()> {
    crate::resources::control::local_model(registry, id).map(|_| ())
}

/// Loads or unloads a local model on its server, waiting at most `wait`.
pub async fn load_or_unload(
    registry: &Registry,
    id: &str,
    action: crate::resources::control::Action,
    keep_alive: Option<&str>,
    wait: std::time::Duration,
) -> crate::error::Result<crate::resources::control::Done> {
    crate::resources::control::act(
        &crate::net::http_client(),
        registry,
        id,
        action,
        keep_alive,
        wait,
    )
    .await
}
