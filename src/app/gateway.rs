//! What the gateway decides for a request, whatever API it came in by:
//! which chain a model name means (a registry model, a replicated model's
//! replicas, `llmclis/<role>`, or `llmclis/auto` routed by the rules), why
//! it cannot be served when it cannot, and one call record per attempt.

use crate::llm::ChatRequest;
use crate::llm::caller::{CallFailed, CallOutcome, Caller};
use crate::registry::{Mode, Registry};
use crate::role::Role;
use crate::router::{self, TaskInfo};
use crate::store::ModelCall;
use crate::tokens::estimate_tokens;

/// The name that routes by the registry's rules.
pub const AUTO: &str = "llmclis/auto";
/// `llmclis/<role>` routes to a role's models.
pub const ROLE_PREFIX: &str = "llmclis/";

/// The chain a request goes down, and how it was chosen.
#[derive(Debug, Clone)]
pub struct Route {
    pub chain: Vec<String>,
    /// For `x-llmclis-route`: the rule, `role:NAME` or `model:ID`.
    pub label: String,
    pub role: Option<Role>,
    pub temperature: f32,
}

impl Route {
    pub fn header(&self) -> String {
        format!("{} -> {}", self.label, self.chain.join(","))
    }
}

/// Why a model name cannot be served; each API words it in its own shape.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unroutable {
    #[error("no model {model:?}; the models are: {}", names.join(", "))]
    NoSuchModel { model: String, names: Vec<String> },
    #[error(
        "{model} is an API model and llmclis runs offline; ask a local model or `llmclis/auto`"
    )]
    OfflineApiModel { model: String },
    #[error("every replica of {model} is cooling down after failures; try again shortly")]
    AllCooling { model: String },
    #[error("no model of {model} can take this request now: {}", why.join(", "))]
    NoneNow { model: String, why: Vec<String> },
}

impl Unroutable {
    /// Seconds a client should wait before asking again, when waiting helps.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Unroutable::NoneNow { .. } => Some(30),
            _ => None,
        }
    }
}

/// Every name a client may ask for: the router's names, each role's, then
/// each model (a replicated model by its own id once, before its replicas).
pub fn model_names(registry: &Registry) -> Vec<String> {
    let mut names = vec![AUTO.to_string()];
    names.extend(Role::ALL.iter().map(|r| format!("{ROLE_PREFIX}{r}")));
    for m in &registry.models {
        if let Some(base) = &m.replica_of
            && !names.contains(base)
        {
            names.push(base.clone());
        }
        names.push(m.id.clone());
    }
    names
}

/// Resolves the `model` a client sent. `text` is the prompt, for the rules
/// of `llmclis/auto`.
pub fn resolve(
    registry: &Registry,
    caller: &Caller,
    mode: Mode,
    model: &str,
    req: &ChatRequest,
    text: &str,
) -> Result<Route, Unroutable> {
    let prompt_tokens: u64 = req
        .messages
        .iter()
        .map(|m| estimate_tokens(&m.content))
        .sum();
    let title: String = text.chars().take(200).collect();
    let info = TaskInfo {
        project_id: 0,
        title: &title,
        description: text,
        tags: &[],
        role_hint: None,
        prompt_tokens,
        output_tokens: Some(req.max_tokens),
        needs_json: req.json_schema.is_some(),
    };
    let offline = |id: &str| {
        registry
            .model(id)
            .is_some_and(|m| !registry.provider_of(m).local && mode == Mode::Offline)
    };
    let decision = if model == AUTO {
        router::route(registry, &info, mode, caller)
    } else if let Some(role) = model
        .strip_prefix(ROLE_PREFIX)
        .and_then(|r| r.parse::<Role>().ok())
    {
        router::route_role(registry, role, &info, mode, caller)
    } else if let Some(chain) = router::replicas_in_order(registry, model, caller) {
        // The model by its own id: its replicas, balanced, each the next's
        // fallback.
        if chain.is_empty() {
            return Err(Unroutable::AllCooling {
                model: model.into(),
            });
        }
        if offline(&chain[0]) {
            return Err(Unroutable::OfflineApiModel {
                model: model.into(),
            });
        }
        return Ok(Route {
            chain,
            label: format!("model:{model}"),
            role: None,
            temperature: 0.7,
        });
    } else if let Some(m) = registry.model(model) {
        if offline(&m.id) {
            return Err(Unroutable::OfflineApiModel {
                model: model.into(),
            });
        }
        return Ok(Route {
            chain: vec![m.id.clone()],
            label: format!("model:{}", m.id),
            role: None,
            temperature: 0.7,
        });
    } else {
        return Err(Unroutable::NoSuchModel {
            model: model.into(),
            names: model_names(registry),
        });
    };
    if decision.chain.is_empty() {
        return Err(Unroutable::NoneNow {
            model: model.into(),
            why: decision
                .skipped
                .iter()
                .map(|s| format!("{} ({})", s.model, s.why.reason()))
                .collect(),
        });
    }
    Ok(Route {
        chain: decision.chain,
        label: decision.rule,
        role: Some(decision.role),
        temperature: decision.temperature,
    })
}

/// The route with only the models `allowed` (a replica by its own id or
/// the model it replicates); None when none is left.
pub fn only(
    registry: &Registry,
    mut route: Route,
    allowed: impl Fn(&str) -> bool,
) -> Option<Route> {
    route.chain.retain(|id| {
        allowed(id)
            || registry
                .model(id)
                .and_then(|m| m.replica_of.as_deref())
                .is_some_and(&allowed)
    });
    (!route.chain.is_empty()).then_some(route)
}

/// The input tokens of a request by the router's tokenizer-free estimate:
/// its messages, the tool calls in them, and the tools offered.
pub fn estimate_input(req: &ChatRequest) -> u64 {
    let messages: u64 = req
        .messages
        .iter()
        .map(|m| {
            estimate_tokens(&m.content)
                + m.tool_calls
                    .as_ref()
                    .map_or(0, |c| estimate_tokens(&c.to_string()))
        })
        .sum();
    let tools: u64 = req
        .tools
        .iter()
        .map(|t| estimate_tokens(&t.to_string()))
        .sum();
    messages + tools
}

/// One record per attempt of a gateway call, each with the attempt's
/// outcome (`ok` for the one that answered).
pub fn records<'a>(
    result: &'a Result<CallOutcome, CallFailed>,
    req: &ChatRequest,
    registry: &Registry,
    role: &str,
) -> Vec<(&'a crate::llm::caller::Attempt, ModelCall)> {
    crate::llm::caller::call_records(result, req, registry, role, "gateway")
}
