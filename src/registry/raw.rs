//! `model_registry.yaml` as written: the serde types the file parses
//! into, every reference `Spanned` so an error names its line and column.
//! `build.rs` checks them and makes the `Registry`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Budget, Voting};
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistry {
    pub(super) providers: Vec<RawProvider>,
    pub(super) models: Vec<RawModel>,
    pub(super) roles: Spanned<BTreeMap<String, RawRole>>,
    pub(super) rules: Spanned<Vec<RawRule>>,
    pub(super) modes: RawModes,
    /// The machine's memory, when detection is wrong or absent.
    #[serde(default)]
    pub(super) resources: Option<Spanned<RawResources>>,
}

/// `resources:`: budgets that override what detection finds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResources {
    /// GiB per GPU index.
    #[serde(default)]
    pub(super) gpu_memory_gib: BTreeMap<u32, f64>,
    #[serde(default)]
    pub(super) ram_gib: Option<f64>,
    /// Kept free on every device (the desktop, CUDA contexts).
    #[serde(default)]
    pub(super) headroom_gib: Option<f64>,
}

/// A model's `memory:` on its device, in GiB.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMemory {
    pub(super) weights_gib: f64,
    /// The KV cache at the model's context window…
    #[serde(default)]
    pub(super) kv_gib: Option<f64>,
    /// …or per 1,000 tokens of it.
    #[serde(default)]
    pub(super) kv_gib_per_1k: Option<f64>,
    /// The runtime's own: CUDA graphs, activations, the server process.
    #[serde(default)]
    pub(super) overhead_gib: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub(super) name: Spanned<String>,
    pub(super) kind: Spanned<String>,
    #[serde(default)]
    pub(super) flavour: Option<Spanned<String>>,
    pub(super) base_url: Spanned<String>,
    #[serde(default)]
    pub(super) api_key_env: Option<String>,
    #[serde(default = "default_timeout")]
    pub(super) timeout_secs: u64,
    #[serde(default = "default_idle_timeout")]
    pub(super) idle_timeout_secs: u64,
    #[serde(default = "default_concurrency")]
    pub(super) max_concurrency: u32,
    pub(super) local: bool,
    /// `cpu`, or a GPU as `gpu:0` (or its index alone).
    #[serde(default)]
    pub(super) device: Option<Spanned<String>>,
}

pub(super) fn default_timeout() -> u64 {
    120
}

pub(super) fn default_idle_timeout() -> u64 {
    60
}

pub(super) fn default_concurrency() -> u32 {
    4
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawProviders {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub(super) id: Spanned<String>,
    /// One provider, or several serving the same weights (replicas).
    pub(super) provider: Spanned<RawProviders>,
    pub(super) served_name: String,
    pub(super) context_window: u64,
    pub(super) max_output_tokens: u64,
    #[serde(default)]
    pub(super) cost_per_1m_input: f64,
    #[serde(default)]
    pub(super) cost_per_1m_output: f64,
    /// Input read from the provider's prompt cache (default: the input rate).
    #[serde(default)]
    pub(super) cost_per_1m_cached_input: Option<f64>,
    /// Input written to the prompt cache (default: the input rate).
    #[serde(default)]
    pub(super) cost_per_1m_cache_write: Option<f64>,
    #[serde(default)]
    pub(super) capabilities: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) memory: Option<Spanned<RawMemory>>,
    /// Models of one family are the same weights on other servers; the
    /// router prefers the one already loaded. Default: the served name.
    #[serde(default)]
    pub(super) family: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRole {
    pub(super) temperature: f32,
    pub(super) models: Spanned<Vec<Spanned<String>>>,
    /// Ollama only: how long the model stays loaded after a call (`5m`, `0`).
    #[serde(default)]
    pub(super) keep_alive: Option<String>,
    #[serde(default)]
    pub(super) voting: Option<Spanned<Voting>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: Spanned<String>,
    #[serde(rename = "match", default)]
    pub(super) when: Option<RawMatch>,
    pub(super) role: Spanned<String>,
    #[serde(default)]
    pub(super) pin: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) exclude: Vec<Spanned<String>>,
    /// The planner looks at the task first and may split it.
    #[serde(default)]
    pub(super) plan: bool,
    /// Voting for the tasks this rule matches, whatever the role's own.
    #[serde(default)]
    pub(super) voting: Option<Spanned<Voting>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    #[serde(default)]
    pub(super) tags: Vec<String>,
    #[serde(default)]
    pub(super) role_hint: Vec<String>,
    #[serde(default)]
    pub(super) has_role_hint: Option<bool>,
    #[serde(default)]
    pub(super) title_regex: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) min_prompt_tokens: Option<u64>,
    #[serde(default)]
    pub(super) max_prompt_tokens: Option<u64>,
    #[serde(default)]
    pub(super) project: Vec<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModes {
    pub(super) offline: RawMode,
    pub(super) online: RawMode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMode {
    pub(super) providers: Spanned<String>,
    #[serde(default)]
    pub(super) budget_usd: Option<Budget>,
}

// ---- the checked registry ----
