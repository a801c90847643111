//! `llmclis orchestrate`: the headless run loop, with progress lines (or
//! JSON events), Ctrl-C handling and the run summary.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{Ctx, ProjectId, emit, render};
use crate::error::{Error, Result};
use crate::llm::caller::{Breakers, Caller};
use crate::llm::http_client;
use crate::orchestrator::{self, run::Progress};
use crate::prompts::Prompts;

#[derive(Debug, Args)]
pub struct OrchestrateArgs {
    #[command(flatten)]
    project: ProjectId,
    /// Steps (tasks taken) at most.
    #[arg(
        long = "max-steps",
        visible_alias = "max_steps",
        value_name = "M",
        default_value_t = 20
    )]
    max_steps: usize,
    /// Tasks worked on at once (default: [orchestrator] workers, 1).
    #[arg(long, value_name = "K")]
    workers: Option<usize>,
    /// Let coders and testers write to the project's files (otherwise their
    /// changes are recorded as a proposed diff).
    #[arg(long = "allow-writes", visible_alias = "allow_writes")]
    allow_writes: bool,
    /// Show the tasks the run would take, in order; call no model.
    #[arg(long = "dry-run", visible_alias = "dry_run")]
    dry_run: bool,
}

/// The run's parts from the settings: registry, prompts, caller, memory.
/// Everything that can be wrong with the setup is found here, before a task
/// is claimed. The TUI's run panel starts its runs the same way.
pub(crate) fn prepare(
    ctx: &Ctx,
    project_id: i64,
    max_steps: usize,
    workers: usize,
) -> Result<(orchestrator::run::Deps, orchestrator::run::Options)> {
    let cfg = &ctx.config.orchestrator;
    let registry = Arc::new(ctx.registry()?);
    let prompts = Arc::new(Prompts::load(&ctx.paths.config_dir)?);
    crate::logging::init(&ctx.paths.data_dir);
    let mut caller = Caller::new(
        registry,
        http_client(),
        Arc::new(Breakers::new(3, Duration::from_secs(60))),
    );
    caller.retry = ctx.config.models.retry();
    let caller = Arc::new(caller);
    let store = ctx.store()?;
    store.project(project_id)?;
    let notes = servers_up(&caller, ctx.mode())?;
    // Another process holding the index does not make the run wait: its
    // memories go to SQLite and the holder (or the next opener) indexes them.
    let (memory, memory_note) =
        match super::memory::open_memory_waiting(ctx, &store, Duration::ZERO) {
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
        context_tokens: cfg.context_tokens,
        memory_top_k: cfg.memory_top_k,
        max_plan_depth: cfg.max_plan_depth,
        task_id: None,
        stream_tokens: false,
        tools: ctx.config.tools.clone(),
        no_review: false,
    };
    Ok((deps, opts))
}

/// Probes the registry's local servers before a task is claimed. A server
/// that refuses the connection has its models cooled down, so the run does
/// not escalate through it step after step; when nothing can answer at all
/// the run does not start. Returns what to tell the user.
fn servers_up(caller: &Caller, mode: crate::registry::Mode) -> Result<Vec<String>> {
    let registry = caller.registry();
    let candidates = crate::endpoints::configured(registry, None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("<tokio runtime>", e))?;
    let found = rt.block_on(crate::endpoints::detect(registry, &candidates));
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
    let local_up = registry.providers.iter().filter(|p| p.local).count() > down.len();
    let api_usable = mode == crate::registry::Mode::Online
        && registry
            .providers
            .iter()
            .any(|p| !p.local && p.api_key().is_some());
    if !local_up && !api_usable {
        return Err(Error::Model(format!(
            "no model server answers: {}; start one (`docker compose up -d` on the GPU machine, `LLMCLIS_SMOLLM_PORT=8081 scripts/llama-server start` on a CPU) — `llmclis doctor` checks everything; no task was touched",
            down.join("; ")
        )));
    }
    if !down.is_empty() {
        notes.push(format!(
            "skipping servers that are down, for {} s: {}",
            caller.breakers.cooldown.as_secs(),
            down.join("; ")
        ));
    }
    Ok(notes)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("<tokio runtime>", e))
}

pub fn orchestrate(ctx: &Ctx, args: OrchestrateArgs, out: &mut impl Write) -> Result<()> {
    let store = ctx.store()?;
    let project_id = args.project.project_id;
    store.project(project_id)?;
    if args.max_steps == 0 {
        return Err(Error::InvalidInput("--max-steps must be at least 1".into()));
    }
    if args.dry_run {
        let plan = orchestrator::dry_run(&store, project_id, args.max_steps)?;
        return emit(out, ctx.json, &plan, || render::dry_run(&plan));
    }
    let cfg = &ctx.config.orchestrator;
    let workers = args.workers.unwrap_or(cfg.workers);
    if !(1..=64).contains(&workers) {
        return Err(Error::InvalidInput(
            "--workers must be between 1 and 64".into(),
        ));
    }
    drop(store);
    let (deps, mut opts) = prepare(ctx, project_id, args.max_steps, workers)?;
    if args.allow_writes {
        // For this run, whatever the config says per project.
        opts.tools.allow_writes = true;
        for p in opts.tools.projects.values_mut() {
            p.allow_writes = Some(true);
        }
    }
    let json = ctx.json;
    // Progress lines go straight to stdout as they happen.
    let observer: orchestrator::run::Observer = Arc::new(move |p: &Progress| {
        if json {
            println!("{}", serde_json::to_string(p).expect("progress serializes"));
        } else if let Progress::Token { .. } = p {
        } else if let Progress::Warning { message } = p {
            eprintln!("warning: {message}");
        } else if let Some(line) = render::progress(p) {
            println!("{line}");
        }
    });
    let rt = runtime()?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let summary = rt.block_on(async move {
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = tx.send(true);
                // A second Ctrl-C gives up waiting: leases expire on their own.
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("interrupted again: exiting now; the claimed tasks return to the queue when their leases expire");
                    std::process::exit(i32::from(crate::error::EXIT_INTERRUPTED));
                }
            }
        });
        orchestrator::run::run(deps, opts, observer, rx).await
    })?;
    out.flush().map_err(|e| Error::io("<stdout>", e))?;
    if summary.stopped_because == "models_unreachable" {
        return Err(Error::Model(format!(
            "run {} stopped: no model server answered or could take the request (down, overloaded or still loading); the task it tried is back in the queue. Start the servers in model_registry.yaml or wait for them (`llmclis models health` shows each)",
            summary.run_id
        )));
    }
    if summary.stopped_because == "step_failed" {
        return Err(Error::Model(format!(
            "run {} stopped after a step failed outside the models (see the warning above); its task is back in the queue",
            summary.run_id
        )));
    }
    if summary.status == "interrupted" {
        return Err(Error::Interrupted(format!(
            "interrupted: run {} stopped after {} step(s); unfinished tasks are back in the queue",
            summary.run_id, summary.steps
        )));
    }
    Ok(())
}
