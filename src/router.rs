//! The router: a pure function from a task (and the registry, the mode and
//! the providers' health) to a role and an ordered chain of models, with the
//! rule that matched and why each other model of the role was skipped.

use serde::Serialize;

use std::sync::Arc;

use crate::registry::{Device, Mode, Model, Registry, RuleRole};
use crate::resources::placement::{Fit, View};
use crate::role::Role;

/// What the router needs to know about a task.
#[derive(Debug, Clone, Default)]
pub struct TaskInfo<'a> {
    pub project_id: i64,
    pub title: &'a str,
    pub description: &'a str,
    pub tags: &'a [String],
    pub role_hint: Option<Role>,
    /// Estimated prompt tokens (see `estimate_tokens`).
    pub prompt_tokens: u64,
    /// The answer's size limit, when the caller knows it; else up to 1,024
    /// tokens are reserved for fitting and 4,096 priced for the budget.
    pub output_tokens: Option<u64>,
    /// The call asks for JSON with a schema: models without the
    /// `json_schema` capability are skipped.
    pub needs_json: bool,
}

pub use crate::tokens::estimate_tokens;

/// Whether `model`, whose window is `window` tokens, holds a prompt of
/// `prompt` tokens beside an answer of up to `output` (1,024 when the
/// caller does not know), as far as its `max_output_tokens` lets it answer.
/// The one rule the router, the context fitter and the step share.
pub fn holds(model: &Model, window: u64, prompt: u64, output: Option<u64>) -> bool {
    prompt + output.unwrap_or(1024).min(model.max_output_tokens) <= window
}

/// The state of the world the router reads: which models are cooling down,
/// which API keys are set, and how much budget is left.
pub trait Conditions {
    fn cooling_down(&self, model_id: &str) -> bool;
    fn key_set(&self, env_var: &str) -> bool;
    /// USD spent so far in this run and on this task.
    fn spent(&self) -> (f64, f64) {
        (0.0, 0.0)
    }
    /// What is loaded where and what fits, as last seen in the background;
    /// None when nobody watches (every model's fit unknown).
    fn resources(&self) -> Option<Arc<View>> {
        None
    }
    /// This process's requests to `model_id`: the router balances the
    /// members of a family (replicas, the same weights elsewhere) by them.
    fn load(&self, _model_id: &str) -> Load {
        Load::default()
    }
    /// A model's window: the registry's, or the smaller one its server
    /// reported.
    fn window(&self, model: &Model) -> u64 {
        model.context_window
    }
}

/// A model's requests from this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub in_flight: u32,
    /// Since the process started: among equals the least used goes first,
    /// so one request at a time still takes turns.
    pub started: u64,
}

/// The real environment, with nothing cooling down and nothing spent.
pub struct Env;

impl Conditions for Env {
    fn cooling_down(&self, _: &str) -> bool {
        false
    }
    fn key_set(&self, var: &str) -> bool {
        std::env::var(var).is_ok_and(|v| !v.trim().is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Skip {
    /// An API provider in offline mode.
    Offline,
    ContextTooSmall {
        needed: u64,
        window: u64,
    },
    CoolingDown,
    OverBudget {
        estimate_usd: f64,
        remaining_usd: f64,
    },
    /// The provider's key variable is not set.
    NoApiKey {
        env: String,
    },
    ExcludedByRule,
    /// The call needs structured output and the model lacks `json_schema`.
    NoStructuredOutput,
    /// A local model that is not loaded and needs more than its device has
    /// free (bytes).
    DoesNotFit {
        device: Device,
        need: u64,
        free: u64,
    },
    /// Its server is asleep (vLLM's sleep mode) and does not wake on a
    /// request.
    Asleep,
}

impl Skip {
    /// The short name, as `reason` in JSON: `cooling_down`, `offline`, …
    pub fn reason(&self) -> &'static str {
        match self {
            Skip::Offline => "offline",
            Skip::ContextTooSmall { .. } => "context_too_small",
            Skip::CoolingDown => "cooling_down",
            Skip::OverBudget { .. } => "over_budget",
            Skip::NoApiKey { .. } => "no_api_key",
            Skip::ExcludedByRule => "excluded_by_rule",
            Skip::NoStructuredOutput => "no_structured_output",
            Skip::DoesNotFit { .. } => "does_not_fit",
            Skip::Asleep => "asleep",
        }
    }
}

/// The same weights on two servers, put in the other order than the
/// role's: the loaded one, or the one with the shorter queue, first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preferred {
    pub model: String,
    pub over: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub model: String,
    #[serde(flatten)]
    pub why: Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub role: Role,
    pub temperature: f32,
    pub rule: String,
    /// The rule (or the role) asks the planner to look at the task first.
    pub plan: bool,
    /// Voting on the answers: the rule's, else the role's.
    pub voting: Option<crate::registry::Voting>,
    pub mode: Mode,
    /// Models to try, in order.
    pub chain: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// Models moved ahead of the same weights elsewhere, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preferred: Vec<Preferred>,
    pub prompt_tokens: u64,
}

fn rule_matches(
    registry: &Registry,
    rule: &crate::registry::Rule,
    task: &TaskInfo<'_>,
    regex_hits: &[bool],
) -> bool {
    let w = &rule.when;
    (w.tags.is_empty()
        || w.tags
            .iter()
            .any(|t| task.tags.iter().any(|x| x.eq_ignore_ascii_case(t))))
        && (w.role_hint.is_empty()
            || task
                .role_hint
                .is_some_and(|h| w.role_hint.iter().any(|r| r == h.as_str())))
        && w.has_role_hint
            .is_none_or(|want| task.role_hint.is_some() == want)
        && w.regex
            .is_none_or(|i| regex_hits.get(i).copied().unwrap_or(false))
        && w.min_prompt_tokens.is_none_or(|m| task.prompt_tokens >= m)
        && w.max_prompt_tokens.is_none_or(|m| task.prompt_tokens <= m)
        && (w.project.is_empty() || w.project.contains(&task.project_id))
        && match &rule.role {
            // `from_hint` only applies when the hint names a role.
            RuleRole::FromHint => task
                .role_hint
                .is_some_and(|h| registry.roles.contains_key(&h)),
            RuleRole::Fixed(_) => true,
        }
}

/// Routes a task. Pure: the same inputs give the same decision.
pub fn route(
    registry: &Registry,
    task: &TaskInfo<'_>,
    mode: Mode,
    conditions: &dyn Conditions,
) -> Decision {
    let regex_hits = regex_hits(registry, task);
    let (rule, role_name) = rule_for(registry, task, &regex_hits);
    chain(registry, Some(rule), role_name, task, mode, conditions)
}

/// The first rule that takes the task and the role it names.
fn rule_for<'r>(
    registry: &'r Registry,
    task: &TaskInfo<'_>,
    regex_hits: &[bool],
) -> (&'r crate::registry::Rule, Role) {
    let rule = registry
        .rules
        .iter()
        .find(|r| rule_matches(registry, r, task, regex_hits))
        .expect("validation guarantees a default rule");
    let role = match rule.role {
        RuleRole::Fixed(r) => r,
        RuleRole::FromHint => task.role_hint.unwrap_or(Role::Coder),
    };
    (rule, role)
}

/// The role the registry's rules give a task, whatever the servers do.
pub fn role_of(registry: &Registry, task: &TaskInfo<'_>) -> Role {
    rule_for(registry, task, &regex_hits(registry, task)).1
}

/// One pass over title and description for every rule's regex.
fn regex_hits(registry: &Registry, task: &TaskInfo<'_>) -> Vec<bool> {
    match &registry.regexes {
        Some(set) => {
            let mut hits = vec![false; set.len()];
            let text = format!("{}\n{}", task.title, task.description);
            for i in set.matches(&text).iter() {
                hits[i] = true;
            }
            hits
        }
        None => Vec::new(),
    }
}

/// A role no model can serve however the servers are: none of its models
/// is allowed in the mode, has its API key, and (where its answers are
/// JSON) gives structured output. Found before any work, by `doctor`,
/// `route explain` and a run's start-up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleProblem {
    pub role: Role,
    /// Every task needs it (the critic): a run does not start.
    pub fatal: bool,
    /// Each of its models and why it cannot serve.
    pub why: String,
    pub fix: String,
}

/// The roles the pipeline needs that no model can serve in `mode`: the
/// critic (its verdict is JSON), and each executor role a rule routes to.
pub fn role_problems(
    registry: &Registry,
    mode: Mode,
    conditions: &dyn Conditions,
) -> Vec<RoleProblem> {
    let policy = registry.policy(mode);
    let mut executors: Vec<Role> = Vec::new();
    for r in &registry.rules {
        let role = match r.role {
            RuleRole::Fixed(role) => role,
            RuleRole::FromHint => Role::Coder,
        };
        if !executors.contains(&role) {
            executors.push(role);
        }
    }
    let mut needs: Vec<(Role, bool)> = vec![(Role::Critic, true)];
    needs.extend(executors.into_iter().map(|r| (r, false)));
    let mut out = Vec::new();
    for (role, json) in needs {
        let Some(config) = registry.roles.get(&role) else {
            continue;
        };
        let mut why = Vec::new();
        let mut usable = false;
        for id in &config.models {
            let Some(model) = registry.model(id) else {
                continue;
            };
            let provider = registry.provider_of(model);
            let reason = if policy.local_only && !provider.local {
                Some(format!("{id} is an API model and the mode is offline"))
            } else if json && !model.capabilities.iter().any(|c| c == "json_schema") {
                Some(format!(
                    "{id} has no structured output (capability json_schema)"
                ))
            } else {
                provider
                    .api_key_env
                    .as_deref()
                    .filter(|e| !conditions.key_set(e))
                    .map(|e| format!("{id} needs {e}, which is not set"))
            };
            match reason {
                Some(r) => why.push(r),
                None => usable = true,
            }
        }
        if usable {
            continue;
        }
        if why.is_empty() {
            why.push("it lists no model".into());
        }
        let fix = if json {
            format!(
                "give a {role} model `json_schema` in its capabilities (vLLM, llama.cpp, TGI, Ollama, OpenAI and Anthropic all give structured output), or add one that has it to roles.{role}.models in model_registry.yaml"
            )
        } else {
            format!(
                "add a model the mode allows to roles.{role}.models in model_registry.yaml, set the missing key, or run with --mode online"
            )
        };
        out.push(RoleProblem {
            role,
            fatal: role == Role::Critic,
            why: why.join("; "),
            fix,
        });
    }
    out
}

/// The chain for a given role, with no rule: how the pipeline's own calls
/// (planner, critic, voter, summarizer) find their models.
pub fn route_role(
    registry: &Registry,
    role: Role,
    task: &TaskInfo<'_>,
    mode: Mode,
    conditions: &dyn Conditions,
) -> Decision {
    chain(registry, None, role, task, mode, conditions)
}

fn chain(
    registry: &Registry,
    rule: Option<&crate::registry::Rule>,
    role_name: Role,
    task: &TaskInfo<'_>,
    mode: Mode,
    conditions: &dyn Conditions,
) -> Decision {
    let role = &registry.roles[&role_name];
    let (pin, exclude): (&[String], &[String]) = match rule {
        Some(r) => (&r.pin, &r.exclude),
        None => (&[], &[]),
    };
    let policy = registry.policy(mode);
    let (spent_run, spent_task) = conditions.spent();
    let view = conditions.resources();
    let placement = |id: &str| view.as_deref().and_then(|v| v.placements.get(id));

    // Pinned models first, then the role's order.
    let mut order: Vec<&str> = pin.iter().map(String::as_str).collect();
    for m in &role.models {
        if !order.contains(&m.as_str()) {
            order.push(m);
        }
    }
    let mut chain = Vec::new();
    let mut skipped = Vec::new();
    for id in order {
        let model: &Model = registry.model(id).expect("validated reference");
        let provider = registry.provider_of(model);
        let why = if exclude.iter().any(|e| e == id) {
            Some(Skip::ExcludedByRule)
        } else if policy.local_only && !provider.local {
            Some(Skip::Offline)
        } else if task.needs_json && !model.capabilities.iter().any(|c| c == "json_schema") {
            Some(Skip::NoStructuredOutput)
        } else if !holds(
            model,
            conditions.window(model),
            task.prompt_tokens,
            task.output_tokens,
        ) {
            Some(Skip::ContextTooSmall {
                needed: task.prompt_tokens,
                window: conditions.window(model),
            })
        } else if conditions.cooling_down(id) {
            Some(Skip::CoolingDown)
        } else if let Some(fit @ (Fit::DoesNotFit { .. } | Fit::Asleep)) =
            placement(id).map(|p| &p.fit)
        {
            Some(match *fit {
                Fit::DoesNotFit { device, need, free } => Skip::DoesNotFit { device, need, free },
                _ => Skip::Asleep,
            })
        } else if let Some(env) = provider
            .api_key_env
            .as_deref()
            .filter(|e| !conditions.key_set(e))
        {
            Some(Skip::NoApiKey {
                env: env.to_string(),
            })
        } else {
            let estimate = model.cost(
                task.prompt_tokens,
                task.output_tokens
                    .unwrap_or(4096)
                    .min(model.max_output_tokens),
            );
            let remaining = [
                policy.budget.per_run.map(|b| b - spent_run),
                policy.budget.per_task.map(|b| b - spent_task),
            ]
            .into_iter()
            .flatten()
            .fold(f64::INFINITY, f64::min);
            (estimate > 0.0 && estimate > remaining).then_some(Skip::OverBudget {
                estimate_usd: estimate,
                remaining_usd: remaining.max(0.0),
            })
        };
        match why {
            Some(why) => skipped.push(Skipped {
                model: id.to_string(),
                why,
            }),
            None => chain.push(id.to_string()),
        }
    }
    let preferred = balance(registry, view.as_deref(), conditions, &mut chain);
    Decision {
        plan: rule.is_some_and(|r| r.plan) || role_name == Role::Planner,
        voting: rule.and_then(|r| r.voting).or(role.voting),
        rule: rule.map_or_else(|| format!("role:{role_name}"), |r| r.name.clone()),
        role: role_name,
        temperature: role.temperature,
        mode,
        chain,
        skipped,
        preferred,
        prompt_tokens: task.prompt_tokens,
    }
}

/// A replicated model's replicas, best first (as `balance` orders a
/// family): what a client that names the model, not a replica, gets.
pub fn replicas_in_order(
    registry: &Registry,
    id: &str,
    conditions: &dyn Conditions,
) -> Option<Vec<String>> {
    let mut chain = registry.replicas(id)?.to_vec();
    chain.retain(|r| !conditions.cooling_down(r));
    let view = conditions.resources();
    balance(registry, view.as_deref(), conditions, &mut chain);
    Some(chain)
}

/// Within each family (replicas, or the same weights on several servers)
/// the chain's places keep their family, and the members take them best
/// first: loaded, then the shorter queue (what the server last reported
/// waiting, and running or in flight from here, whichever is more), then
/// the least used. Other models stay put, so the role's escalation order
/// holds.
fn balance(
    registry: &Registry,
    view: Option<&View>,
    conditions: &dyn Conditions,
    chain: &mut [String],
) -> Vec<Preferred> {
    let families: Vec<Option<&str>> = chain
        .iter()
        .map(|id| registry.model(id).map(|m| m.family.as_str()))
        .collect();
    let mut preferred = Vec::new();
    let mut done = vec![false; chain.len()];
    for start in 0..chain.len() {
        if done[start] {
            continue;
        }
        let places: Vec<usize> = (start..chain.len())
            .filter(|&i| families[i] == families[start])
            .collect();
        for &i in &places {
            done[i] = true;
        }
        if places.len() < 2 {
            continue;
        }
        let ranks: Vec<Rank> = places
            .iter()
            .map(|&i| Rank::of(view, conditions, &chain[i]))
            .collect();
        let mut order: Vec<usize> = (0..places.len()).collect();
        // Stable: equals keep the role's order.
        order.sort_by_key(|&k| ranks[k].key());
        if order.iter().enumerate().all(|(k, &o)| k == o) {
            continue;
        }
        let (a, b) = (&ranks[order[0]], &ranks[0]);
        let (first, over) = (chain[places[order[0]]].clone(), chain[places[0]].clone());
        let why = a.why_before(&first, b, &over);
        let reordered: Vec<String> = order.iter().map(|&k| chain[places[k]].clone()).collect();
        for (&i, m) in places.iter().zip(reordered) {
            chain[i] = m;
        }
        preferred.push(Preferred {
            model: first,
            over,
            why,
        });
    }
    preferred
}

/// What ranks one member of a family.
struct Rank {
    fit: Option<Fit>,
    loaded: u8,
    waiting: u32,
    busy: u32,
    load: Load,
}

impl Rank {
    fn of(view: Option<&View>, conditions: &dyn Conditions, id: &str) -> Rank {
        let p = view.and_then(|v| v.placements.get(id));
        let load = conditions.load(id);
        let (loaded, waiting, running) = p.map_or((1, 0, 0), |p| p.rank());
        Rank {
            fit: p.map(|p| p.fit.clone()),
            loaded,
            waiting,
            busy: running.max(load.in_flight),
            load,
        }
    }

    fn key(&self) -> (u8, u32, u64) {
        (self.loaded, self.waiting + self.busy, self.load.started)
    }

    fn why_before(&self, first: &str, other: &Rank, over: &str) -> String {
        if self.loaded != other.loaded {
            let theirs = other
                .fit
                .as_ref()
                .map_or_else(|| "not seen".to_string(), |f| f.describe());
            return format!("{first} is loaded; {over} is not ({theirs})");
        }
        if self.waiting + self.busy != other.waiting + other.busy {
            return format!(
                "{first} has {} waiting and {} running, {over} {} waiting and {} running",
                self.waiting, self.busy, other.waiting, other.busy
            );
        }
        format!(
            "{first} has taken {} requests, {over} {}: they take turns",
            self.load.started, other.load.started
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skips_reason_is_its_json_tag() {
        for s in [
            Skip::Offline,
            Skip::ContextTooSmall {
                needed: 1,
                window: 1,
            },
            Skip::CoolingDown,
            Skip::OverBudget {
                estimate_usd: 1.0,
                remaining_usd: 0.0,
            },
            Skip::NoApiKey { env: "K".into() },
            Skip::ExcludedByRule,
            Skip::NoStructuredOutput,
            Skip::DoesNotFit {
                device: Device::Gpu(0),
                need: 1,
                free: 0,
            },
            Skip::Asleep,
        ] {
            assert_eq!(serde_json::to_value(&s).unwrap()["reason"], s.reason());
        }
    }

    struct Cond {
        cooling: Vec<&'static str>,
        keys: Vec<&'static str>,
        spent: (f64, f64),
        view: Option<Arc<View>>,
        loads: Vec<(&'static str, Load)>,
    }

    impl Conditions for Cond {
        fn cooling_down(&self, m: &str) -> bool {
            self.cooling.contains(&m)
        }
        fn key_set(&self, v: &str) -> bool {
            self.keys.contains(&v)
        }
        fn spent(&self) -> (f64, f64) {
            self.spent
        }
        fn resources(&self) -> Option<Arc<View>> {
            self.view.clone()
        }
        fn load(&self, m: &str) -> Load {
            self.loads
                .iter()
                .find(|(id, _)| *id == m)
                .map_or(Load::default(), |(_, l)| *l)
        }
    }

    fn none() -> Cond {
        Cond {
            cooling: vec![],
            keys: vec![],
            spent: (0.0, 0.0),
            view: None,
            loads: vec![],
        }
    }

    fn replicas() -> Registry {
        let yaml = crate::registry::DEFAULT_REGISTRY.replacen(
            "provider: vllm",
            "provider: [vllm, tgi]",
            1,
        );
        Registry::parse(&yaml, "r.yaml").unwrap()
    }

    fn load(in_flight: u32, started: u64) -> Load {
        Load { in_flight, started }
    }

    #[test]
    fn replicas_take_turns_and_the_less_busy_one_goes_first() {
        let r = replicas();
        // Two replicas, and the shipped TGI twin of the same weights.
        let (a, b, t) = (
            "qwen-coder-32b@vllm",
            "qwen-coder-32b@tgi",
            "qwen-coder-32b-tgi",
        );
        let tk = task("Fix", &[], None);
        let d = route(&r, &tk, Mode::Offline, &none());
        assert_eq!(d.chain[..3], [a, b, t], "the registry's order among equals");
        // One request at a time: the less used go first.
        let c = Cond {
            loads: vec![(a, load(0, 1))],
            ..none()
        };
        let d = route(&r, &tk, Mode::Offline, &c);
        assert_eq!(d.chain[..3], [b, t, a]);
        assert!(
            d.preferred[0].why.contains("take turns"),
            "{:?}",
            d.preferred
        );
        // In flight outweighs the turn.
        let c = Cond {
            loads: vec![(a, load(0, 5)), (b, load(2, 1)), (t, load(0, 7))],
            ..none()
        };
        let d = route(&r, &tk, Mode::Offline, &c);
        assert_eq!(d.chain[..3], [a, t, b]);
        // A queue the server reports counts too.
        let c = Cond {
            loads: vec![(b, load(0, 9))],
            ..placed(&[
                (a, Fit::Loaded, 3),
                (b, Fit::Loaded, 0),
                (t, Fit::Loaded, 1),
            ])
        };
        let d = route(&r, &tk, Mode::Offline, &c);
        assert_eq!(d.chain[..3], [b, t, a]);
        assert!(
            d.preferred[0].why.contains("3 waiting"),
            "{:?}",
            d.preferred
        );
        // A replica cooling down is skipped; the others serve.
        let c = Cond {
            cooling: vec![a],
            ..none()
        };
        let d = route(&r, &tk, Mode::Offline, &c);
        assert_eq!(d.chain[..2], [b, t]);
        assert_eq!(d.skipped[0].model, a);
    }

    fn placed(models: &[(&str, Fit, u32)]) -> Cond {
        let placements = models
            .iter()
            .map(|(id, fit, waiting)| {
                (
                    id.to_string(),
                    crate::resources::placement::Placement {
                        fit: fit.clone(),
                        running: None,
                        waiting: Some(*waiting),
                    },
                )
            })
            .collect();
        Cond {
            view: Some(Arc::new(View {
                placements,
                ..Default::default()
            })),
            ..none()
        }
    }

    #[test]
    fn a_model_that_does_not_fit_is_skipped_and_a_loaded_twin_goes_first() {
        let r = Registry::builtin();
        let fits = Fit::Fits {
            device: Device::Gpu(0),
            need: 10,
            free: 20,
        };
        // vLLM not loaded (fits), TGI serving the same weights: TGI first;
        // the other models keep their places.
        let c = placed(&[
            ("qwen-coder-32b", fits.clone(), 0),
            ("qwen-coder-32b-tgi", Fit::Loaded, 0),
        ]);
        let d = route(&r, &task("Fix", &[], None), Mode::Offline, &c);
        assert_eq!(
            d.chain,
            [
                "qwen-coder-32b-tgi",
                "qwen-coder-32b",
                "qwen-7b",
                "smollm2-135m"
            ]
        );
        assert_eq!(d.preferred.len(), 1);
        assert!(
            d.preferred[0].why.contains("qwen-coder-32b-tgi is loaded"),
            "{:?}",
            d.preferred
        );
        // Both loaded: the shorter queue first.
        let c = placed(&[
            ("qwen-coder-32b", Fit::Loaded, 9),
            ("qwen-coder-32b-tgi", Fit::Loaded, 1),
        ]);
        let d = route(&r, &task("Fix", &[], None), Mode::Offline, &c);
        assert_eq!(d.chain[..2], ["qwen-coder-32b-tgi", "qwen-coder-32b"]);
        assert!(
            d.preferred[0].why.contains("1 waiting"),
            "{:?}",
            d.preferred
        );
        // Not loaded and too big: skipped, with the figures.
        let c = placed(&[(
            "qwen-coder-32b",
            Fit::DoesNotFit {
                device: Device::Gpu(0),
                need: 25_232_932_864,
                free: 6_549_825_126,
            },
            0,
        )]);
        let d = route(&r, &task("Fix", &[], None), Mode::Offline, &c);
        assert_eq!(d.chain[0], "qwen-coder-32b-tgi");
        let s = d
            .skipped
            .iter()
            .find(|s| s.model == "qwen-coder-32b")
            .unwrap();
        assert_eq!(s.why.reason(), "does_not_fit");
        // Asleep: skipped (it would not wake on a request).
        let c = placed(&[("qwen-coder-32b", Fit::Asleep, 0)]);
        let d = route(&r, &task("Fix", &[], None), Mode::Offline, &c);
        assert_eq!(d.chain[0], "qwen-coder-32b-tgi");
        assert!(
            d.skipped
                .iter()
                .any(|s| s.model == "qwen-coder-32b" && s.why == Skip::Asleep)
        );
        // Nothing known: the role's order, nothing preferred.
        let d = route(&r, &task("Fix", &[], None), Mode::Offline, &placed(&[]));
        assert_eq!(d.chain[0], "qwen-coder-32b");
        assert!(d.preferred.is_empty());
        assert!(d.skipped.iter().all(|s| s.why == Skip::Offline));
    }

    fn task<'a>(title: &'a str, tags: &'a [String], hint: Option<&'a str>) -> TaskInfo<'a> {
        TaskInfo {
            project_id: 1,
            title,
            description: "",
            tags,
            role_hint: hint.map(|h| h.parse().unwrap()),
            prompt_tokens: 500,
            ..Default::default()
        }
    }

    #[test]
    fn a_rule_with_voting_votes_whatever_its_roles_setting() {
        let r = Registry::builtin();
        let vote = vec!["vote".to_string()];
        let d = route(&r, &task("Pick one", &vote, None), Mode::Offline, &none());
        assert_eq!((d.role.as_str(), d.rule.as_str()), ("researcher", "votes"));
        assert_eq!(d.voting.map(|v| v.candidates), Some(3));
        // The same role by another rule: the role has no voting.
        let research = vec!["research".to_string()];
        let d = route(
            &r,
            &task("Pick one", &research, None),
            Mode::Offline,
            &none(),
        );
        assert_eq!(d.role, "researcher");
        assert_eq!(d.voting, None);
    }

    #[test]
    fn rules_pick_roles_first_match_wins() {
        let r = Registry::builtin();
        let tags = vec!["test".to_string()];
        assert_eq!(
            route(&r, &task("x", &tags, None), Mode::Offline, &none()).role,
            "tester"
        );
        assert_eq!(
            route(
                &r,
                &task("x", &tags, Some("writer")),
                Mode::Offline,
                &none()
            )
            .role,
            "writer"
        );
        let d = route(
            &r,
            &task("Compare vLLM and TGI", &[], None),
            Mode::Offline,
            &none(),
        );
        assert_eq!(
            (d.role.as_str(), d.rule.as_str()),
            ("researcher", "research-title")
        );
        let d = route(
            &r,
            &task("Fix the parser", &[], None),
            Mode::Offline,
            &none(),
        );
        assert_eq!((d.role.as_str(), d.rule.as_str()), ("coder", "default"));
        assert_eq!(d.temperature, 0.3);
    }

    #[test]
    fn offline_keeps_local_models_and_says_why_others_are_skipped() {
        let r = Registry::builtin();
        let d = route(&r, &task("Fix", &[], None), Mode::Offline, &none());
        assert_eq!(
            d.chain,
            [
                "qwen-coder-32b",
                "qwen-coder-32b-tgi",
                "qwen-7b",
                "smollm2-135m"
            ]
        );
        assert!(d.skipped.iter().all(|s| s.why == Skip::Offline));
        // Online without keys: API models are skipped for the missing key.
        let d = route(&r, &task("Fix", &[], None), Mode::Online, &none());
        assert!(d.skipped.iter().any(|s| s.why
            == Skip::NoApiKey {
                env: "OPENAI_API_KEY".into()
            }));
        let keys = Cond {
            keys: vec!["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY"],
            ..none()
        };
        let d = route(&r, &task("Fix", &[], None), Mode::Online, &keys);
        assert_eq!(d.chain.len(), 7);
        assert!(d.skipped.is_empty());
    }

    #[test]
    fn context_cooldown_and_budget_skip_models() {
        let r = Registry::builtin();
        let mut big = task("Fix", &[], None);
        big.prompt_tokens = 3000;
        let d = route(&r, &big, Mode::Offline, &none());
        assert!(!d.chain.contains(&"smollm2-135m".to_string()));
        assert!(d.skipped.iter().any(|s| s.model == "smollm2-135m"
            && matches!(s.why, Skip::ContextTooSmall { window: 2048, .. })));
        let cooling = Cond {
            cooling: vec!["qwen-coder-32b"],
            ..none()
        };
        let d = route(&r, &task("Fix", &[], None), Mode::Offline, &cooling);
        assert_eq!(d.chain[0], "qwen-coder-32b-tgi");
        let broke = Cond {
            keys: vec!["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY"],
            spent: (4.999, 0.0),
            ..none()
        };
        let d = route(&r, &task("Fix", &[], None), Mode::Online, &broke);
        assert!(
            d.skipped
                .iter()
                .any(|s| s.model == "claude-sonnet" && matches!(s.why, Skip::OverBudget { .. }))
        );
        assert!(
            d.chain.contains(&"qwen-7b".to_string()),
            "free local models stay"
        );
    }
}
