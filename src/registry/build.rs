//! From the file as written (`raw.rs`) to the checked `Registry`: one
//! function per section, each error at the line and column of its value.

use std::collections::{BTreeMap, HashMap, HashSet};

use regex::{Regex, RegexSet};
use serde_saphyr::Spanned;

use super::raw::*;
use super::*;

pub(super) fn registry_error(
    source: &str,
    line: usize,
    column: usize,
    message: impl Into<String>,
) -> Error {
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
pub(super) fn build(raw: RawRegistry, source: &str) -> Result<Registry> {
    let (providers, provider_index) = build_providers(raw.providers, source)?;
    let (models, model_index, replicas) =
        build_models(raw.models, source, &providers, &provider_index)?;
    let machine = raw
        .resources
        .map(|r| build_machine(r, source))
        .transpose()?
        .unwrap_or_default();
    let roles = build_roles(raw.roles, source, &model_index, &replicas)?;
    let (rules, regexes) = build_rules(raw.rules, source, &model_index, &replicas)?;
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
        machine,
        regexes,
        model_index,
        replicas,
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
        let device = match &p.device {
            None => None,
            Some(d) if !p.local => {
                return Err(at(
                    source,
                    d,
                    format!("provider {name:?}: device is for local providers (local: true)"),
                ));
            }
            Some(d) => Some(Device::parse(&d.value).ok_or_else(|| {
                at(
                    source,
                    d,
                    format!(
                        "provider {name:?}: unknown device {:?}: expected cpu or gpu:N (N as nvidia-smi numbers the GPUs)",
                        d.value
                    ),
                )
            })?),
        };
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
            device,
        });
    }

    Ok((providers, provider_index))
}

fn build_models(
    raw_models: Vec<RawModel>,
    source: &str,
    providers: &[Provider],
    provider_index: &HashMap<String, usize>,
) -> Result<(Vec<Model>, HashMap<String, usize>, Replicas)> {
    let mut models = Vec::new();
    let mut model_index = HashMap::new();
    let mut replicas: Replicas = HashMap::new();
    for m in raw_models {
        let id = m.id.value.trim().to_string();
        let taken = |ix: &HashMap<String, usize>, r: &Replicas, id: &str| {
            ix.contains_key(id) || r.contains_key(id)
        };
        if taken(&model_index, &replicas, &id) {
            return Err(at(
                source,
                &m.id,
                format!("model {id:?} is defined twice; ids must be unique"),
            ));
        }
        let names: Vec<String> = match &m.provider.value {
            RawProviders::One(p) => vec![p.clone()],
            RawProviders::Many(list) => list.clone(),
        };
        if names.is_empty() {
            return Err(at(
                source,
                &m.provider,
                format!("model {id:?} lists no provider; name one, or several for replicas"),
            ));
        }
        for (i, p) in names.iter().enumerate() {
            if !provider_index.contains_key(p) {
                return Err(at(
                    source,
                    &m.provider,
                    format!(
                        "model {id:?} names provider {p:?}, which is not defined under providers"
                    ),
                ));
            }
            if names[..i].contains(p) {
                return Err(at(
                    source,
                    &m.provider,
                    format!("model {id:?} lists provider {p:?} twice"),
                ));
            }
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
        if m.cost_per_1m_input < 0.0
            || m.cost_per_1m_output < 0.0
            || m.cost_per_1m_cached_input.is_some_and(|c| c < 0.0)
            || m.cost_per_1m_cache_write.is_some_and(|c| c < 0.0)
        {
            return Err(at(
                source,
                &m.id,
                format!("model {id:?}: costs cannot be negative"),
            ));
        }
        let family = m
            .family
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| m.served_name.to_lowercase());
        // Replicas are models of their own, `id@provider`, of one family:
        // each has its breaker, its in-flight count and its placement, and
        // the router balances a family's members.
        let replicated = names.len() > 1;
        let mut ids = Vec::new();
        for p in &names {
            let rid = if replicated {
                format!("{id}@{p}")
            } else {
                id.clone()
            };
            if taken(&model_index, &replicas, &rid) {
                return Err(at(
                    source,
                    &m.id,
                    format!("model {rid:?} is defined twice; ids must be unique"),
                ));
            }
            let memory = match &m.memory {
                None => None,
                Some(raw) => {
                    let provider = &providers[provider_index[p]];
                    Some(build_memory(
                        source,
                        &id,
                        provider,
                        m.context_window,
                        raw.clone(),
                    )?)
                }
            };
            model_index.insert(rid.clone(), models.len());
            models.push(Model {
                id: rid.clone(),
                provider: p.clone(),
                served_name: m.served_name.clone(),
                context_window: m.context_window,
                max_output_tokens: m.max_output_tokens,
                cost_per_1m_input: m.cost_per_1m_input,
                cost_per_1m_output: m.cost_per_1m_output,
                cost_per_1m_cached_input: m.cost_per_1m_cached_input.unwrap_or(m.cost_per_1m_input),
                cost_per_1m_cache_write: m.cost_per_1m_cache_write.unwrap_or(m.cost_per_1m_input),
                capabilities: m.capabilities.iter().map(|c| c.value.clone()).collect(),
                memory,
                family: family.clone(),
                replica_of: replicated.then(|| id.clone()),
            });
            ids.push(rid);
        }
        if replicated {
            replicas.insert(id, ids);
        }
    }

    Ok((models, model_index, replicas))
}

/// A replicated model's id → its replicas' ids, in the registry's order.
pub(super) type Replicas = HashMap<String, Vec<String>>;

/// Checked references, each replicated model as its replicas.
fn expand(
    refs: &[Spanned<String>],
    model_index: &HashMap<String, usize>,
    replicas: &Replicas,
) -> Vec<String> {
    refs.iter()
        .filter_map(|m| resolve(&m.value, model_index, replicas))
        .flatten()
        .map(String::from)
        .collect()
}

/// The model ids a reference stands for: itself, or every replica.
fn resolve<'a>(
    id: &'a str,
    model_index: &HashMap<String, usize>,
    replicas: &'a Replicas,
) -> Option<Vec<&'a str>> {
    match replicas.get(id) {
        Some(list) => Some(list.iter().map(String::as_str).collect()),
        None => model_index.contains_key(id).then(|| vec![id]),
    }
}

/// The most memory one device of today can hold, with room to grow: a
/// figure above it is a typo (MB for GiB), not a model.
const MAX_GIB: f64 = 4096.0;

/// A model's `memory:`, each figure a finite number of GiB in bounds, the
/// KV cache given one way.
fn build_memory(
    source: &str,
    id: &str,
    provider: &Provider,
    window: u64,
    raw: Spanned<RawMemory>,
) -> Result<MemoryNeed> {
    let m = &raw.value;
    if !provider.local {
        return Err(at(
            source,
            &raw,
            format!(
                "model {id:?}: memory is for local models; provider {:?} is an API",
                provider.name
            ),
        ));
    }
    let figures = [
        ("weights_gib", Some(m.weights_gib)),
        ("kv_gib", m.kv_gib),
        ("kv_gib_per_1k", m.kv_gib_per_1k),
        ("overhead_gib", m.overhead_gib),
    ];
    for (name, value) in figures {
        if let Some(v) = value
            && !(v.is_finite() && (0.0..=MAX_GIB).contains(&v))
        {
            return Err(at(
                source,
                &raw,
                format!("model {id:?}: memory.{name} is {v}: give GiB between 0 and {MAX_GIB}"),
            ));
        }
    }
    if m.weights_gib <= 0.0 {
        return Err(at(
            source,
            &raw,
            format!("model {id:?}: memory.weights_gib must be more than 0 (GiB of weights)"),
        ));
    }
    let kv = match (m.kv_gib, m.kv_gib_per_1k) {
        (Some(_), Some(_)) => {
            return Err(at(
                source,
                &raw,
                format!(
                    "model {id:?}: give kv_gib (at the context window) or kv_gib_per_1k, not both"
                ),
            ));
        }
        (Some(kv), None) => kv,
        (None, Some(per_1k)) => per_1k * window as f64 / 1000.0,
        (None, None) => 0.0,
    };
    Ok(MemoryNeed {
        weights: device::bytes(m.weights_gib),
        kv_cache: device::bytes(kv),
        overhead: device::bytes(m.overhead_gib.unwrap_or(0.0)),
    })
}

/// `resources:`: each budget a positive number of GiB in bounds.
fn build_machine(raw: Spanned<RawResources>, source: &str) -> Result<Machine> {
    let r = &raw.value;
    let bad = |what: String, v: f64| {
        at(
            source,
            &raw,
            format!("resources: {what} is {v}: give GiB between 0 and {MAX_GIB}"),
        )
    };
    let mut machine = Machine::default();
    for (&gpu, &v) in &r.gpu_memory_gib {
        if !(v.is_finite() && v > 0.0 && v <= MAX_GIB) {
            return Err(bad(format!("gpu_memory_gib.{gpu}"), v));
        }
        machine.gpu_memory.insert(gpu, device::bytes(v));
    }
    if let Some(v) = r.ram_gib {
        if !(v.is_finite() && v > 0.0 && v <= MAX_GIB) {
            return Err(bad("ram_gib".into(), v));
        }
        machine.ram = Some(device::bytes(v));
    }
    if let Some(v) = r.headroom_gib {
        if !(v.is_finite() && (0.0..=MAX_GIB).contains(&v)) {
            return Err(bad("headroom_gib".into(), v));
        }
        machine.headroom = device::bytes(v);
    }
    Ok(machine)
}

fn build_roles(
    raw_roles: Spanned<BTreeMap<String, RawRole>>,
    source: &str,
    model_index: &HashMap<String, usize>,
    replicas: &Replicas,
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
        let mut models = Vec::new();
        for m in &r.models.value {
            let Some(ids) = resolve(&m.value, model_index, replicas) else {
                return Err(at(
                    source,
                    m,
                    format!(
                        "role {name:?} names model {:?}, which is not defined under models",
                        m.value
                    ),
                ));
            };
            // A replicated model stands for its replicas, in place.
            models.extend(ids.iter().map(|s| s.to_string()));
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
                models,
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
    replicas: &Replicas,
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
            if resolve(&m.value, model_index, replicas).is_none() {
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
            pin: expand(&r.pin, model_index, replicas),
            exclude: expand(&r.exclude, model_index, replicas),
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
