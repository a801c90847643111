//! `route explain`: the route a run would take for a task, with the
//! servers looked at and the context counted as the run counts it (memory
//! aside), so the two give one answer.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::Context;
use crate::error::Result;
use crate::orchestrator::context;
use crate::orchestrator::fit::Fitted;
use crate::orchestrator::machine::Empty;
use crate::orchestrator::routing;
use crate::prompts::Prompts;
use crate::router::Decision;

/// What a run would do with a task now.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    pub task_id: i64,
    /// The registry file in use.
    pub registry: String,
    pub decision: Decision,
    /// The prompt's tokens with everything that may be cut left out.
    pub least_tokens: u64,
    /// The context as fitted to the first model of the chain (memory is
    /// not counted: it is cut first, and looking it up would embed).
    pub context: Option<Fitted>,
    /// `runs` (on the chain's first model), `waits` (back to pending: no
    /// model that could take it is up) or `blocked` (no usable model could).
    pub outcome: &'static str,
    pub reason: Option<String>,
    /// Local servers that are down (their models are skipped).
    pub servers_down: Vec<String>,
    /// Roles no model can serve in this mode, whatever the servers do.
    pub setup_problems: Vec<crate::router::RoleProblem>,
}

pub fn explain(ctx: &Context, task_id: i64) -> Result<Explained> {
    let registry = Arc::new(ctx.registry()?);
    let prompts = Prompts::load(&ctx.paths.config_dir)?;
    let store = ctx.store()?;
    let task = store.task(task_id)?;
    let caller = ctx.caller(registry.clone(), Duration::from_secs(60));
    let seen = super::run::probe(&caller)?;
    let material = context::gather(&store, &task)?;
    let routed = routing::route(
        &registry,
        &prompts,
        ctx.mode(),
        &caller,
        &task,
        &material.vars,
    )?;
    let mut context = None;
    let (outcome, reason) = match (&routed.empty, routed.decision.chain.first()) {
        (None, Some(first)) => {
            let m = registry.known_model(first)?;
            let role = routed.role.as_str();
            let (_, fitted, _) =
                routing::fit_for(&prompts, role, &material, m, caller.window(m), &|v| {
                    prompts.render(role, v)
                })?;
            context = Some(fitted);
            ("runs", None)
        }
        (Some(Empty::NoModel(why)), _) => ("blocked", Some(why.clone())),
        (Some(Empty::ServersDown(why)), _) => (
            "waits",
            Some(format!("no model server for it is up ({why})")),
        ),
        (Some(Empty::WaitsForWindow(why)), _) => ("waits", Some(why.clone())),
        (None, None) => ("blocked", Some("the role has no usable model".into())),
    };
    Ok(Explained {
        task_id: task.id,
        registry: registry.source.clone(),
        least_tokens: routed.least_tokens,
        decision: routed.decision,
        context,
        outcome,
        reason,
        servers_down: seen.down,
        setup_problems: crate::router::role_problems(&registry, ctx.mode(), &caller),
    })
}
