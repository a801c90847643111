//! `model_registry.yaml`: providers, models, roles, routing rules and modes.
//!
//! The shipped default is compiled in; the user's copy in the config dir wins;
//! `--registry PATH` / `LLMCLIS_REGISTRY` point to another file. Every error
//! names the file, line and column and what was expected. API keys are never
//! in this file: a provider names the environment variable that holds its key.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::error::{Error, Result};

/// The registry compiled into the binary.
pub const DEFAULT_REGISTRY: &str = include_str!("../model_registry.yaml");

/// The role names, in the order `Role::ALL` gives them.
pub const ROLES: [&str; 7] = [
    crate::role::Role::Planner.as_str(),
    crate::role::Role::Coder.as_str(),
    crate::role::Role::Tester.as_str(),
    crate::role::Role::Critic.as_str(),
    crate::role::Role::Researcher.as_str(),
    crate::role::Role::Writer.as_str(),
    crate::role::Role::Summarizer.as_str(),
];

const FLAVOURS: [&str; 7] = [
    "vllm",
    "tgi",
    "ollama",
    "llamacpp",
    "lmstudio",
    "openai",
    "openrouter",
];
const CAPABILITIES: [&str; 7] = [
    "tools",
    "code",
    "reasoning",
    "fast",
    "cheap",
    "json_schema",
    "embeddings",
];

// ---- the file as written ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    providers: Vec<RawProvider>,
    models: Vec<RawModel>,
    roles: Spanned<BTreeMap<String, RawRole>>,
    rules: Spanned<Vec<RawRule>>,
    modes: RawModes,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    flavour: Option<Spanned<String>>,
    base_url: Spanned<String>,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
    #[serde(default = "default_idle_timeout")]
    idle_timeout_secs: u64,
    #[serde(default = "default_concurrency")]
    max_concurrency: u32,
    local: bool,
}

fn default_timeout() -> u64 {
    120
}

fn default_idle_timeout() -> u64 {
    60
}

fn default_concurrency() -> u32 {
    4
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: Spanned<String>,
    provider: Spanned<String>,
    served_name: String,
    context_window: u64,
    max_output_tokens: u64,
    #[serde(default)]
    cost_per_1m_input: f64,
    #[serde(default)]
    cost_per_1m_output: f64,
    #[serde(default)]
    capabilities: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    temperature: f32,
    models: Spanned<Vec<Spanned<String>>>,
    /// Ollama only: how long the model stays loaded after a call (`5m`, `0`).
    #[serde(default)]
    keep_alive: Option<String>,
    #[serde(default)]
    voting: Option<Spanned<Voting>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    #[serde(rename = "match", default)]
    when: Option<RawMatch>,
    role: Spanned<String>,
    #[serde(default)]
    pin: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    /// The planner looks at the task first and may split it.
    #[serde(default)]
    plan: bool,
    /// Voting for the tasks this rule matches, whatever the role's own.
    #[serde(default)]
    voting: Option<Spanned<Voting>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    role_hint: Vec<String>,
    #[serde(default)]
    has_role_hint: Option<bool>,
    #[serde(default)]
    title_regex: Option<Spanned<String>>,
    #[serde(default)]
    min_prompt_tokens: Option<u64>,
    #[serde(default)]
    max_prompt_tokens: Option<u64>,
    #[serde(default)]
    project: Vec<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModes {
    offline: RawMode,
    online: RawMode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMode {
    providers: Spanned<String>,
    #[serde(default)]
    budget_usd: Option<Budget>,
}

// ---- the checked registry ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    OpenAiCompatible,
    Anthropic,
}

#[derive(Debug, Clone, Serialize)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// vllm, tgi, ollama, llamacpp, lmstudio, openai, openrouter; None for anthropic.
    pub flavour: Option<String>,
    pub base_url: String,
    /// The NAME of the environment variable with the key, never the key.
    pub api_key_env: Option<String>,
    /// The longest wait for the first byte: the queue, the prompt and,
    /// without streaming, the whole answer.
    #[serde(serialize_with = "secs")]
    pub timeout: Duration,
    /// The longest silence between two chunks of a stream.
    #[serde(serialize_with = "secs")]
    pub idle_timeout: Duration,
    pub max_concurrency: u32,
    pub local: bool,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl Provider {
    /// The key from the environment, when the provider uses one and it is set.
    pub fn api_key(&self) -> Option<String> {
        let var = self.api_key_env.as_deref()?;
        std::env::var(var)
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
    }

    pub fn is_ollama(&self) -> bool {
        self.flavour.as_deref() == Some("ollama")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub id: String,
    pub provider: String,
    pub served_name: String,
    pub context_window: u64,
    pub max_output_tokens: u64,
    pub cost_per_1m_input: f64,
    pub cost_per_1m_output: f64,
    pub capabilities: Vec<String>,
}

impl Model {
    /// USD for a call of this many tokens.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.cost_per_1m_input
            + completion_tokens as f64 * self.cost_per_1m_output)
            / 1e6
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleConfig {
    pub name: String,
    pub temperature: f32,
    /// The escalation order, cheapest and local first.
    pub models: Vec<String>,
    pub keep_alive: Option<String>,
    /// MAKER-style voting on this role's answers, when set.
    pub voting: Option<Voting>,
}

/// `voting: {candidates: k, ahead_by: n, max_tokens: m}` on a role: k
/// answers are sampled at once; empty, cut-off or overlong ones are dropped;
/// voters pick the best until one answer leads by n votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Voting {
    pub candidates: u32,
    pub ahead_by: u32,
    /// An answer longer than this (completion tokens) is red-flagged.
    pub max_tokens: u64,
    /// Ballots before the leader is taken without an n-vote margin;
    /// default 3 × candidates.
    #[serde(default)]
    pub max_votes: Option<u32>,
}

impl Voting {
    pub fn max_votes(&self) -> u32 {
        self.max_votes
            .unwrap_or(self.candidates * 3)
            .max(self.ahead_by)
    }
}

/// What the rule's role is: a fixed role, or the task's own role hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleRole {
    Fixed(crate::role::Role),
    FromHint,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Match {
    pub tags: Vec<String>,
    pub role_hint: Vec<String>,
    pub has_role_hint: Option<bool>,
    /// Index into `Registry::regexes` when the rule has a title regex.
    #[serde(skip)]
    pub regex: Option<usize>,
    pub title_regex: Option<String>,
    pub min_prompt_tokens: Option<u64>,
    pub max_prompt_tokens: Option<u64>,
    pub project: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    pub name: String,
    pub when: Match,
    pub role: RuleRole,
    pub pin: Vec<String>,
    pub exclude: Vec<String>,
    /// The planner sees the task first and may split it into subtasks.
    pub plan: bool,
    /// Voting on the answers to the tasks this rule matches (overrides the
    /// role's).
    pub voting: Option<Voting>,
    /// No conditions: matches every task.
    pub is_default: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    #[serde(default)]
    pub per_run: Option<f64>,
    #[serde(default)]
    pub per_task: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Local providers only.
    Offline,
    /// Local and API providers.
    Online,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModePolicy {
    pub local_only: bool,
    pub budget: Budget,
}

#[derive(Debug, Clone, Serialize)]
pub struct Registry {
    /// Where it was read from (`<built-in>` for the default).
    pub source: String,
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
    pub roles: BTreeMap<crate::role::Role, RoleConfig>,
    pub rules: Vec<Rule>,
    pub offline: ModePolicy,
    pub online: ModePolicy,
    #[serde(skip)]
    pub regexes: Option<RegexSet>,
    #[serde(skip)]
    model_index: HashMap<String, usize>,
    #[serde(skip)]
    provider_index: HashMap<String, usize>,
}

impl Registry {
    pub fn model(&self, id: &str) -> Option<&Model> {
        self.model_index.get(id).map(|i| &self.models[*i])
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.provider_index.get(name).map(|i| &self.providers[*i])
    }

    pub fn provider_of(&self, model: &Model) -> &Provider {
        self.provider(&model.provider).expect("validated reference")
    }

    pub fn policy(&self, mode: Mode) -> &ModePolicy {
        match mode {
            Mode::Offline => &self.offline,
            Mode::Online => &self.online,
        }
    }

    /// The built-in registry.
    pub fn builtin() -> Registry {
        Registry::parse(DEFAULT_REGISTRY, "<built-in>").expect("the shipped registry is valid")
    }

    /// `explicit` (flag or env), else the user's copy in the config dir, else the built-in one.
    pub fn load(explicit: Option<&Path>, config_dir: &Path) -> Result<Registry> {
        let path: Option<PathBuf> = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => Some(config_dir.join("model_registry.yaml")).filter(|p| p.is_file()),
        };
        match path {
            None => Ok(Registry::builtin()),
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
                Registry::parse(&text, &p.display().to_string())
            }
        }
    }

    /// Parses and validates a registry; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Registry> {
        let raw: RawRegistry = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
            let message = e.without_snippet().to_string();
            let mut message = message
                .lines()
                .next()
                .unwrap_or("invalid YAML")
                .trim()
                .to_string();
            // The location goes in front; drop the parser's own copy at the end.
            if let Some(i) = message.rfind(" at line ") {
                message.truncate(i);
            }
            registry_error(source, line, column, message)
        })?;
        build(raw, source)
    }
}

fn registry_error(source: &str, line: usize, column: usize, message: impl Into<String>) -> Error {
    Error::Registry {
        path: source.to_string(),
        line,
        column,
        message: message.into(),
    }
}

fn at<T>(source: &str, s: &Spanned<T>, message: impl Into<String>) -> Error {
    registry_error(
        source,
        s.referenced.line() as usize,
        s.referenced.column() as usize,
        message,
    )
}

/// A voting block within its bounds, or an error at its line naming `whose`.
fn checked_voting(source: &str, whose: &str, v: Spanned<Voting>) -> Result<Voting> {
    let ok = v.value.candidates >= 2
        && v.value.ahead_by >= 1
        && v.value.max_tokens >= 1
        && v.value.candidates <= 32;
    if !ok {
        return Err(at(
            source,
            &v,
            format!(
                "{whose}: voting needs 2 to 32 candidates, ahead_by of at least 1 and a positive max_tokens"
            ),
        ));
    }
    Ok(v.value)
}

/// The registry from its parsed file: each section checked in turn, every
/// error with the line and column it is about.
fn build(raw: RawRegistry, source: &str) -> Result<Registry> {
    let (providers, provider_index) = build_providers(raw.providers, source)?;
    let (models, model_index) = build_models(raw.models, source, &provider_index)?;
    let roles = build_roles(raw.roles, source, &model_index)?;
    let (rules, regexes) = build_rules(raw.rules, source, &model_index)?;
    let policy = |m: RawMode| -> Result<ModePolicy> {
        let local_only = match m.providers.value.as_str() {
            "local" => true,
            "all" => false,
            other => {
                return Err(at(
                    source,
                    &m.providers,
                    format!("unknown providers {other:?}: expected local or all"),
                ));
            }
        };
        Ok(ModePolicy {
            local_only,
            budget: m.budget_usd.unwrap_or_default(),
        })
    };
    Ok(Registry {
        source: source.to_string(),
        providers,
        models,
        roles,
        rules,
        offline: policy(raw.modes.offline)?,
        online: policy(raw.modes.online)?,
        regexes,
        model_index,
        provider_index,
    })
}

fn build_providers(
    raw_providers: Vec<RawProvider>,
    source: &str,
) -> Result<(Vec<Provider>, HashMap<String, usize>)> {
    let mut providers = Vec::new();
    let mut provider_index = HashMap::new();
    for p in raw_providers {
        let name = p.name.value.trim().to_string();
        if name.is_empty() {
            return Err(at(source, &p.name, "a provider needs a name"));
        }
        if provider_index.contains_key(&name) {
            return Err(at(
                source,
                &p.name,
                format!("provider {name:?} is defined twice; names must be unique"),
            ));
        }
        let kind = match p.kind.value.as_str() {
            "openai-compatible" => ProviderKind::OpenAiCompatible,
            "anthropic" => ProviderKind::Anthropic,
            other => {
                return Err(at(
                    source,
                    &p.kind,
                    format!(
                        "unknown provider kind {other:?}: expected openai-compatible or anthropic"
                    ),
                ));
            }
        };
        let flavour = match (&kind, &p.flavour) {
            (ProviderKind::OpenAiCompatible, None) => {
                return Err(at(
                    source,
                    &p.kind,
                    format!(
                        "provider {name:?} needs a flavour: one of {}",
                        FLAVOURS.join(", ")
                    ),
                ));
            }
            (ProviderKind::OpenAiCompatible, Some(f)) if !FLAVOURS.contains(&f.value.as_str()) => {
                return Err(at(
                    source,
                    f,
                    format!(
                        "unknown flavour {:?}: expected one of {}",
                        f.value,
                        FLAVOURS.join(", ")
                    ),
                ));
            }
            (ProviderKind::Anthropic, Some(f)) => {
                return Err(at(source, f, "an anthropic provider takes no flavour"));
            }
            (_, f) => f.as_ref().map(|f| f.value.clone()),
        };
        let url = p.base_url.value.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(at(
                source,
                &p.base_url,
                format!("base_url {url:?} must start with http:// or https://"),
            ));
        }
        if p.max_concurrency == 0 {
            return Err(at(
                source,
                &p.name,
                format!("provider {name:?}: max_concurrency must be at least 1"),
            ));
        }
        if kind == ProviderKind::Anthropic && p.api_key_env.is_none() {
            return Err(at(
                source,
                &p.name,
                format!(
                    "provider {name:?}: an anthropic provider needs api_key_env (e.g. ANTHROPIC_API_KEY)"
                ),
            ));
        }
        if let Some(env) = &p.api_key_env
            && !env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(at(
                source,
                &p.name,
                format!(
                    "provider {name:?}: api_key_env must be the NAME of an environment variable (like OPENAI_API_KEY), not a key"
                ),
            ));
        }
        provider_index.insert(name.clone(), providers.len());
        providers.push(Provider {
            name,
            kind,
            flavour,
            base_url: url,
            api_key_env: p.api_key_env,
            timeout: Duration::from_secs(p.timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(p.idle_timeout_secs.max(1)),
            max_concurrency: p.max_concurrency,
            local: p.local,
        });
    }

    Ok((providers, provider_index))
}

fn build_models(
    raw_models: Vec<RawModel>,
    source: &str,
    provider_index: &HashMap<String, usize>,
) -> Result<(Vec<Model>, HashMap<String, usize>)> {
    let mut models = Vec::new();
    let mut model_index = HashMap::new();
    for m in raw_models {
        let id = m.id.value.trim().to_string();
        if model_index.contains_key(&id) {
            return Err(at(
                source,
                &m.id,
                format!("model {id:?} is defined twice; ids must be unique"),
            ));
        }
        if !provider_index.contains_key(&m.provider.value) {
            return Err(at(
                source,
                &m.provider,
                format!(
                    "model {id:?} names provider {:?}, which is not defined under providers",
                    m.provider.value
                ),
            ));
        }
        for c in &m.capabilities {
            if !CAPABILITIES.contains(&c.value.as_str()) {
                return Err(at(
                    source,
                    c,
                    format!(
                        "unknown capability {:?}: expected one of {}",
                        c.value,
                        CAPABILITIES.join(", ")
                    ),
                ));
            }
        }
        if m.context_window == 0
            || m.max_output_tokens == 0
            || m.max_output_tokens > m.context_window
        {
            return Err(at(
                source,
                &m.id,
                format!(
                    "model {id:?}: context_window and max_output_tokens must be positive, with max_output_tokens ≤ context_window"
                ),
            ));
        }
        if m.cost_per_1m_input < 0.0 || m.cost_per_1m_output < 0.0 {
            return Err(at(
                source,
                &m.id,
                format!("model {id:?}: costs cannot be negative"),
            ));
        }
        model_index.insert(id.clone(), models.len());
        models.push(Model {
            id,
            provider: m.provider.value,
            served_name: m.served_name,
            context_window: m.context_window,
            max_output_tokens: m.max_output_tokens,
            cost_per_1m_input: m.cost_per_1m_input,
            cost_per_1m_output: m.cost_per_1m_output,
            capabilities: m.capabilities.into_iter().map(|c| c.value).collect(),
        });
    }

    Ok((models, model_index))
}

fn build_roles(
    raw_roles: Spanned<BTreeMap<String, RawRole>>,
    source: &str,
    model_index: &HashMap<String, usize>,
) -> Result<BTreeMap<crate::role::Role, RoleConfig>> {
    let mut roles = BTreeMap::new();
    let roles_at = (
        raw_roles.referenced.line() as usize,
        raw_roles.referenced.column() as usize,
    );
    for (name, r) in raw_roles.value {
        let Ok(key) = name.parse::<crate::role::Role>() else {
            return Err(at(
                source,
                &r.models,
                format!(
                    "unknown role {name:?}: expected one of {}",
                    ROLES.join(", ")
                ),
            ));
        };
        if r.models.value.is_empty() {
            return Err(at(
                source,
                &r.models,
                format!("role {name:?} has no models; list at least one"),
            ));
        }
        let mut seen = HashSet::new();
        for m in &r.models.value {
            if !model_index.contains_key(&m.value) {
                return Err(at(
                    source,
                    m,
                    format!(
                        "role {name:?} names model {:?}, which is not defined under models",
                        m.value
                    ),
                ));
            }
            if !seen.insert(m.value.clone()) {
                return Err(at(
                    source,
                    m,
                    format!("role {name:?} lists model {:?} twice", m.value),
                ));
            }
        }
        if !(0.0..=2.0).contains(&r.temperature) {
            return Err(at(
                source,
                &r.models,
                format!("role {name:?}: temperature must be between 0 and 2"),
            ));
        }
        let voting = match r.voting {
            Some(v) => Some(checked_voting(source, &format!("role {name:?}"), v)?),
            None => None,
        };
        roles.insert(
            key,
            RoleConfig {
                name,
                temperature: r.temperature,
                models: r.models.value.into_iter().map(|m| m.value).collect(),
                keep_alive: r.keep_alive,
                voting,
            },
        );
    }
    for role in crate::role::Role::ALL {
        if !roles.contains_key(&role) {
            return Err(registry_error(
                source,
                roles_at.0,
                roles_at.1,
                format!("role {role:?} is missing; every role needs a list of models"),
            ));
        }
    }

    Ok(roles)
}

fn build_rules(
    raw_rules: Spanned<Vec<RawRule>>,
    source: &str,
    model_index: &HashMap<String, usize>,
) -> Result<(Vec<Rule>, Option<RegexSet>)> {
    let rules_at = (
        raw_rules.referenced.line() as usize,
        raw_rules.referenced.column() as usize,
    );
    let mut rules = Vec::new();
    let mut patterns = Vec::new();
    let mut names = HashSet::new();
    for r in raw_rules.value {
        let name = r.name.value.clone();
        if !names.insert(name.clone()) {
            return Err(at(
                source,
                &r.name,
                format!("rule {name:?} is defined twice; names must be unique"),
            ));
        }
        let role = match r.role.value.as_str() {
            "from_hint" => RuleRole::FromHint,
            role if ROLES.contains(&role) => {
                RuleRole::Fixed(role.parse().expect("a name from ROLES"))
            }
            other => {
                return Err(at(
                    source,
                    &r.role,
                    format!(
                        "rule {name:?}: unknown role {other:?}: expected one of {} or from_hint",
                        ROLES.join(", ")
                    ),
                ));
            }
        };
        for m in r.pin.iter().chain(&r.exclude) {
            if !model_index.contains_key(&m.value) {
                return Err(at(
                    source,
                    m,
                    format!(
                        "rule {name:?} names model {:?}, which is not defined under models",
                        m.value
                    ),
                ));
            }
        }
        let raw_match = r.when.unwrap_or_default();
        let mut when = Match {
            tags: raw_match.tags,
            role_hint: raw_match.role_hint,
            has_role_hint: raw_match.has_role_hint,
            regex: None,
            title_regex: None,
            min_prompt_tokens: raw_match.min_prompt_tokens,
            max_prompt_tokens: raw_match.max_prompt_tokens,
            project: raw_match.project,
        };
        if let Some(re) = raw_match.title_regex {
            Regex::new(&re.value).map_err(|e| {
                at(
                    source,
                    &re,
                    format!("rule {name:?}: invalid title_regex: {e}"),
                )
            })?;
            when.regex = Some(patterns.len());
            patterns.push(re.value.clone());
            when.title_regex = Some(re.value);
        }
        let is_default = when.tags.is_empty()
            && when.role_hint.is_empty()
            && when.has_role_hint.is_none()
            && when.regex.is_none()
            && when.min_prompt_tokens.is_none()
            && when.max_prompt_tokens.is_none()
            && when.project.is_empty();
        rules.push(Rule {
            name,
            when,
            role,
            pin: r.pin.into_iter().map(|m| m.value).collect(),
            exclude: r.exclude.into_iter().map(|m| m.value).collect(),
            plan: r.plan,
            voting: match r.voting {
                Some(v) => Some(checked_voting(
                    source,
                    &format!("rule {:?}", r.name.value),
                    v,
                )?),
                None => None,
            },
            is_default,
        });
    }
    if !rules
        .iter()
        .any(|r| r.is_default && matches!(r.role, RuleRole::Fixed(_)))
    {
        return Err(registry_error(
            source,
            rules_at.0,
            rules_at.1,
            "a default rule is required: add a last rule with no `match` and a fixed role, e.g. `- name: default` / `role: coder`",
        ));
    }
    let regexes =
        if patterns.is_empty() {
            None
        } else {
            Some(RegexSet::new(&patterns).map_err(|e| {
                registry_error(source, rules_at.0, rules_at.1, format!("rules: {e}"))
            })?)
        };

    Ok((rules, regexes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_registry_is_valid() {
        let r = Registry::builtin();
        assert!(r.model("qwen-coder-32b").is_some());
        assert_eq!(r.roles[&crate::role::Role::Critic].temperature, 0.1);
        assert!(r.offline.local_only);
        assert!(!r.online.local_only);
        assert!(
            r.providers
                .iter()
                .filter(|p| !p.local)
                .all(|p| p.api_key_env.is_some())
        );
    }
}
