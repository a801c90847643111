//! A prepared orchestrator run: the registry, prompts, caller and memory
//! from the settings, with every problem of the setup found before a task
//! is claimed. `llmclis orchestrate` and the board's run panel start their
//! runs here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Context;
use crate::error::{Error, Result};
use crate::llm::caller::Caller;
use crate::orchestrator;
use crate::prompts::Prompts;

/// The run's parts from the settings: registry, prompts, caller, memory.
/// Everything that can be wrong with the setup is found here, before a task
/// is claimed.
pub fn prepare(
    ctx: &Context,
    project_id: i64,
    max_steps: usize,
    workers: usize,
) -> Result<(orchestrator::run::Deps, orchestrator::run::Options)> {
    let cfg = &ctx.config.orchestrator;
    let registry = Arc::new(ctx.registry()?);
    let prompts = Arc::new(Prompts::load(&ctx.paths.config_dir)?);
    let setup = setup_problems(&registry, ctx.mode())?;
    let caller = Arc::new(ctx.caller(registry, Duration::from_secs(60)));
    let store = ctx.store()?;
    store.project(project_id)?;
    let mut notes = setup;
    notes.extend(servers_up(&caller, ctx.mode())?);
    // Another process holding the index does not make the run wait: its
    // memories go to SQLite and the holder (or the next opener) indexes them.
    let (memory, memory_note) = match ctx.open_memory_waiting(&store, Duration::ZERO) {
        Ok(m) => (Some(Arc::new(m)), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let deps = orchestrator::run::Deps {
        db_path: PathBuf::from(&ctx.paths.db),
        caller,
        prompts,
        memory,
        memory_note,
        notes,
    };
    let opts = orchestrator::run::Options {
        project_id,
        max_steps,
        workers,
        mode: ctx.mode(),
        agent: ctx.agent.clone(),
        lease: ctx.config.lease(),
        max_rounds: cfg.max_rounds,
        check_rounds: cfg.check_rounds,
        context_tokens: cfg.context_tokens,
        memory_top_k: cfg.memory_top_k,
        project_summary_every: Some(ctx.config.memory.project_summary_every),
        compact: ctx.config.memory.compact,
        max_plan_depth: cfg.max_plan_depth,
        make_room: cfg.make_room,
        task_id: None,
        stream_tokens: false,
        tools: ctx.config.tools.clone(),
        no_review: false,
    };
    Ok((deps, opts))
}

/// Roles no model can serve, whatever the servers do: a critic that
/// cannot give its verdict as JSON stops the run before any task is
/// claimed (every task would fail at its review); an executor role is said
/// as a warning (its tasks are blocked with the fix).
pub fn setup_problems(
    registry: &crate::registry::Registry,
    mode: crate::registry::Mode,
) -> Result<Vec<String>> {
    let problems = crate::router::role_problems(registry, mode, &crate::router::Env);
    let mode_name = match mode {
        crate::registry::Mode::Offline => "offline",
        crate::registry::Mode::Online => "online",
    };
    if let Some(p) = problems.iter().find(|p| p.fatal) {
        return Err(Error::Config {
            path: PathBuf::from(&registry.source),
            message: format!(
                "no {} model can serve in {mode_name} mode ({}); {}. No task was touched",
                p.role, p.why, p.fix
            ),
        });
    }
    Ok(problems
        .iter()
        .map(|p| {
            format!(
                "tasks routed to the {} role are blocked: no model of it can serve in {mode_name} mode ({}); {}",
                p.role, p.why, p.fix
            )
        })
        .collect())
}

/// Probes the registry's local servers before a task is claimed. A server
/// that refuses the connection has its models cooled down, so the run does
/// not escalate through it step after step; when nothing can answer at all
/// the run does not start. Returns what to tell the user.
fn servers_up(caller: &Caller, mode: crate::registry::Mode) -> Result<Vec<String>> {
    let seen = probe(caller)?;
    let registry = caller.registry();
    let local_up = registry.providers.iter().filter(|p| p.local).count() > seen.down.len();
    let api_usable = mode == crate::registry::Mode::Online
        && registry
            .providers
            .iter()
            .any(|p| !p.local && p.api_key().is_some());
    if !local_up && !api_usable {
        return Err(Error::Model(format!(
            "no model server answers: {}; start one (`docker compose up -d` on the GPU machine, `LLMCLIS_SMOLLM_PORT=8081 scripts/llama-server start` on a CPU) — `llmclis doctor` checks everything; no task was touched",
            seen.down.join("; ")
        )));
    }
    let mut notes = seen.notes;
    if !seen.down.is_empty() {
        notes.push(format!(
            "skipping servers that are down until they answer (looked at every {} s): {}",
            crate::resources::REFRESH.as_secs(),
            seen.down.join("; ")
        ));
    }
    Ok(notes)
}

/// What a look at the local servers found.
pub(super) struct Seen {
    /// Windows smaller than the registry says, as notes.
    pub notes: Vec<String>,
    /// Each server that is down: name, address and why.
    pub down: Vec<String>,
}

/// Looks at every local server as a run does before its first claim: the
/// resource watch (started, and handed to `caller`), the windows the
/// servers really run, and the models of servers that are down cooled
/// until the watch sees them answer.
pub(super) fn probe(caller: &Caller) -> Result<Seen> {
    let registry = caller.registry();
    let candidates = crate::endpoints::configured(registry, None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("<tokio runtime>", e))?;
    // What is loaded where, seen once before the first claim and then
    // every few seconds in the background: the router reads the last view.
    let watch = crate::resources::Watch::new(caller.registry_arc());
    let (found, _) = rt.block_on(async {
        tokio::join!(
            crate::endpoints::detect(registry, &candidates),
            watch.refresh()
        )
    });
    watch.start(crate::resources::REFRESH);
    caller.watch_resources(watch);
    let mut notes = Vec::new();
    // The windows the servers really run: every request then fits them.
    for w in rt.block_on(caller.learn_windows()) {
        notes.push(format!(
            "{}: its server runs a {}-token window, the registry says {}; using {} (set context_window in the registry to match)",
            w.model, w.server, w.registry, w.server
        ));
    }
    let mut down = Vec::new();
    for p in registry.providers.iter().filter(|p| p.local) {
        let Some(f) = found
            .iter()
            .find(|f| f.url == crate::endpoints::root(&p.base_url))
        else {
            continue;
        };
        if f.up {
            continue;
        }
        for m in registry.models.iter().filter(|m| m.provider == p.name) {
            caller.breakers.trip(&m.id);
        }
        down.push(format!(
            "{} at {} ({})",
            p.name,
            p.base_url,
            f.error.as_deref().unwrap_or("no answer")
        ));
    }
    Ok(Seen { notes, down })
}

/// Runs the orchestrator with what `prepare` made: the one way a front end
/// starts a run (the command line's `orchestrate`, the board's run panel).
pub use crate::orchestrator::run::run as execute;

/// What a run would claim, without claiming (`orchestrate --dry-run`).
pub use crate::orchestrator::dry_run;
