//! `llmclis orchestrate`: the headless run loop, with progress lines (or
//! JSON events), Ctrl-C handling and the run summary.

use std::io::Write;
use std::sync::Arc;

use clap::Args;

use super::{Ctx, ProjectId, emit, render};
use crate::app::types::Progress;
use crate::error::{Error, Result};

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

pub fn orchestrate(ctx: &Ctx, args: OrchestrateArgs, out: &mut impl Write) -> Result<()> {
    let store = ctx.store()?;
    let project_id = args.project.choose(ctx, &store)?.project_id;
    if args.max_steps == 0 {
        return Err(Error::InvalidInput("--max-steps must be at least 1".into()));
    }
    if args.dry_run {
        let plan = crate::app::run::dry_run(&store, project_id, args.max_steps)?;
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
    let (deps, mut opts) = crate::app::run::prepare(ctx, project_id, args.max_steps, workers)?;
    if args.allow_writes {
        // For this run, whatever the config says per project.
        opts.tools.allow_writes = true;
        for p in opts.tools.projects.values_mut() {
            p.allow_writes = Some(true);
        }
    }
    let json = ctx.json;
    // On a terminal, the steps as a bar under the event lines.
    let bar = super::progress::Bar::new(json, "steps", opts.max_steps as u64);
    let shown = bar.clone();
    // Progress lines go straight to stdout as they happen.
    let observer: crate::app::types::Observer = Arc::new(move |p: &Progress| {
        if json {
            println!("{}", serde_json::to_string(p).expect("progress serializes"));
            return;
        }
        match p {
            Progress::Token { .. } => {}
            Progress::Warning { message } => shown.suspend(|| eprintln!("warning: {message}")),
            _ => {
                if let Progress::StepStarted { task_id, .. } = p {
                    shown.message(format!("task {task_id}"));
                }
                if let Progress::StepFinished { .. } = p {
                    shown.inc();
                }
                if let Some(line) = render::progress(p) {
                    shown.suspend(|| println!("{line}"));
                }
            }
        }
    });
    let rt = crate::app::runtime()?;
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
        crate::app::run::execute(deps, opts, observer, rx).await
    })?;
    bar.finish();
    out.flush().map_err(|e| Error::io("<stdout>", e))?;
    if summary.stopped_because == "models_unreachable" {
        return Err(Error::Model(format!(
            "run {} stopped: the {} ready task(s) left wait for a model that is down, overloaded or still loading (`llmclis route explain --task ID` says which could take each); start the servers in model_registry.yaml or wait for them (`llmclis models health` shows each)",
            summary.run_id, summary.waiting
        )));
    }
    if summary.waiting > 0 && summary.status != "interrupted" {
        // Some task went back because a server failed: the run did what it
        // could with the others, and the exit code says a server failed.
        return Err(Error::Model(format!(
            "run {} finished the tasks it could, but {} task(s) went back to the queue because a model server failed, is down or is busy (each task's last note says which and why; none was blocked for it); fix or start the servers (`llmclis models health`) and run again",
            summary.run_id, summary.waiting
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
