//! The run loop: claims tasks (K at a time), drives a step for each, keeps
//! their leases alive, stops on max_steps, an empty queue or Ctrl-C, and
//! records the run. Headless `orchestrate` and the TUI both drive it; what
//! happens is reported as `Progress` events to an observer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::progress::Outcome;
pub use super::progress::{Observer, Options, Progress, Summary};
use super::shared::Shared;
use super::step::StepRun;
use crate::error::Result;
use crate::llm::caller::Caller;
use crate::memory::Memory;
use crate::prompts::Prompts;
use crate::registry::Mode;
use crate::store::Store;

/// What the run needs from outside: the database file, the models, the
/// prompts and (when it could be opened) the memory index.
pub struct Deps {
    pub db_path: PathBuf,
    pub caller: Arc<Caller>,
    pub prompts: Arc<Prompts>,
    pub memory: Option<Arc<Memory>>,
    /// Why memory is SQLite-only, when it is.
    pub memory_note: Option<String>,
    /// Said as warnings when the run starts (servers found down, …).
    pub notes: Vec<String>,
}

/// Runs up to `max_steps` steps on the project, `workers` at a time, until
/// the queue is empty or `cancel` turns true. The run is recorded whatever
/// happens; Ctrl-C puts unfinished tasks back to pending.
pub async fn run(
    deps: Deps,
    opts: Options,
    observer: Observer,
    cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<Summary> {
    let started = Instant::now();
    let workers = opts.workers.max(1);
    let mut main_db = Store::open(&deps.db_path)?;
    super::recover::at_start(
        &mut main_db,
        opts.project_id,
        opts.lease,
        &opts.agent,
        &observer,
    )?;
    // A query never misses a committed row: the index takes in what it
    // lacks before the first step asks it anything.
    if let Some(m) = &deps.memory {
        let missing = crate::memory::index_backlog(&main_db)?;
        if missing > 0 {
            let progress = progress_note(observer.clone(), missing);
            if let Err(e) = m.catch_up(&mut main_db, Some(&*progress)).await {
                observer(&Progress::Warning {
                    message: format!("memory index not caught up ({e}); queries may miss rows"),
                });
            }
        }
    }
    let run = main_db.start_run(
        opts.project_id,
        &opts.agent,
        mode_str(opts.mode),
        opts.max_steps,
        workers,
    )?;
    let shared = Shared {
        holder: format!("{}/run-{}", opts.agent, run.id),
        run_id: run.id,
        caller: deps.caller.clone(),
        prompts: deps.prompts.clone(),
        memory: deps.memory.clone(),
        observer: observer.clone(),
        cancel: cancel.clone(),
        spent: Mutex::new(0.0),
        in_flight: Arc::default(),
        worktrees: deps
            .db_path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("worktrees"),
        writers: tokio::sync::Mutex::new(()),
        indexer: Mutex::new(match &deps.memory {
            Some(m) => Some(super::indexer::Indexer::start(
                m.clone(),
                deps.db_path.clone(),
                observer.clone(),
                opts.project_id,
                workers * 4 + 2,
            )?),
            None => None,
        }),
        opts,
    };
    observer(&Progress::RunStarted {
        run_id: run.id,
        project_id: shared.opts.project_id,
        agent: shared.holder.clone(),
        mode: shared.opts.mode,
        workers,
        max_steps: shared.opts.max_steps,
        // The warning below says why when it is SQLite only.
        memory: if deps.memory.is_some() {
            "indexed".into()
        } else {
            "SQLite only".into()
        },
    });
    for n in &deps.notes {
        observer(&Progress::Warning { message: n.clone() });
    }
    if let (None, Some(why)) = (&deps.memory, &deps.memory_note) {
        observer(&Progress::Warning {
            message: format!(
                "memory index unavailable ({why}); this run saves its memories in SQLite, and whoever holds or next opens the index indexes them"
            ),
        });
    }

    // The first tasks' queries get embedded while the run sets up.
    shared.kick_indexer();
    super::recover::backfill(&shared, &mut main_db).await?;
    // Worktrees earlier runs left: done tasks' changes land, work for a
    // waiting task stays for its next claim, empty ones go.
    if let Err(e) = super::land::catch_up(&shared, &mut main_db).await {
        observer(&Progress::Warning {
            message: format!("the worktrees earlier runs left are not caught up: {e}"),
        });
    }

    // Leases of the tasks in flight, and the run's own heartbeat, are
    // renewed from a connection of their own.
    let in_flight = shared.in_flight.clone();
    let heartbeat = {
        let mut db = Store::open(&deps.db_path)?;
        let in_flight = in_flight.clone();
        let lease = shared.opts.lease;
        let run_id = run.id;
        let every = (lease / 3).max(Duration::from_millis(200));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = db.heartbeat_run(run_id) {
                    tracing::warn!(run = run_id, error = %e, "run heartbeat failed");
                }
                let held: Vec<(i64, String)> = in_flight
                    .lock()
                    .expect("lease set")
                    .iter()
                    .map(|(id, h)| (*id, h.clone()))
                    .collect();
                for (id, holder) in held {
                    match db.renew_lease(id, &holder, lease) {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(task = id, "lease lost"),
                        Err(e) => tracing::warn!(task = id, error = %e, "lease renewal failed"),
                    }
                }
            }
        })
    };

    let result = drive(&shared, &deps, &mut main_db, &in_flight, workers, cancel).await;
    // A run that finished anything leaves the project summary fresh (and
    // in the index: before the indexer's last pass).
    // (Not again when the last done task just refreshed it.)
    if let (Ok((t, why)), Some(every)) = (&result, shared.opts.project_summary_every)
        && t.done > 0
        && why != "interrupted"
        && (every == 0 || t.done % every != 0)
        && let Err(e) = super::rollup::project_summary(&shared, &mut main_db).await
    {
        observer(&Progress::Warning {
            message: format!("no new project summary ({e})"),
        });
    }
    heartbeat.abort();
    // The memories of the last steps go into the index before the run ends.
    let indexer = shared.indexer.lock().expect("indexer").take();
    if let Some(i) = indexer {
        i.finish();
    }

    let (tally, stopped_because, error) = match result {
        Ok((t, why)) => (t, why, None),
        Err((t, e)) => (t, "error".to_string(), Some(e)),
    };
    let calls = main_db.run_model_calls(run.id)?;
    let mut summary = Summary {
        run_id: run.id,
        project_id: shared.opts.project_id,
        status: match (&error, stopped_because.as_str()) {
            (Some(_), _) => "failed",
            (None, "interrupted") => "interrupted",
            (None, "models_unreachable" | "step_failed") => "failed",
            _ => "completed",
        }
        .into(),
        stopped_because,
        model_calls: calls.iter().filter(|c| c.outcome != "skipped").count(),
        prompt_tokens: calls.iter().filter_map(|c| c.prompt_tokens).sum(),
        completion_tokens: calls.iter().filter_map(|c| c.completion_tokens).sum(),
        cost_usd: crate::text::sum_usd(calls.iter().map(|c| c.cost_usd)),
        seconds: started.elapsed().as_secs_f64(),
        counts: main_db.status_counts(Some(shared.opts.project_id))?,
        ..tally
    };
    summary.run_id = run.id;
    summary.project_id = shared.opts.project_id;
    main_db.finish_run(
        run.id,
        &summary.status,
        &serde_json::to_value(&summary).expect("summary serializes"),
    )?;
    observer(&Progress::RunSummary(summary.clone()));
    match error {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// Progress of a long catch-up, as warnings every 10% (rows to embed
/// again take a while: about 270 a second on two cores).
fn progress_note(observer: Observer, total: i64) -> Box<dyn Fn(usize, usize) + Send + Sync> {
    let shown = std::sync::atomic::AtomicUsize::new(0);
    Box::new(move |done, all| {
        if total < 1_000 {
            return;
        }
        let tenth = done * 10 / all.max(1);
        if tenth > shown.swap(tenth, std::sync::atomic::Ordering::Relaxed) {
            observer(&Progress::Recovered {
                message: format!("indexing memories the index lacked: {done}/{all}"),
            });
        }
    })
}

fn mode_str(m: Mode) -> &'static str {
    match m {
        Mode::Offline => "offline",
        Mode::Online => "online",
    }
}

type Tally = Summary;

/// Whether a ready task that some model that is up could take is left;
/// the ready tasks before it that wait for a model are added to `waiting`
/// (said as `TaskWaits`, and noted on the task once when the reason is its
/// size).
fn next_runnable(shared: &Shared, db: &mut Store, waiting: &mut Vec<i64>) -> Result<bool> {
    use super::machine::Empty;
    let registry = shared.caller.registry();
    // A dead run's tasks (their leases expired at start-up) are ready again.
    db.release_expired(shared.opts.project_id, &shared.holder)?;
    while let Some(task) = db.next_task_except(shared.opts.project_id, waiting)? {
        let material = super::context::gather(db, &task)?;
        let conditions = super::shared::Spend {
            caller: &shared.caller,
            run: shared.spent(),
            task: db.task_cost(task.id)?,
        };
        let routed = super::routing::route(
            registry,
            &shared.prompts,
            shared.opts.mode,
            &conditions,
            &task,
            &material.vars,
        )?;
        let reason = match routed.empty {
            Some(Empty::ServersDown(why)) => {
                format!("no model server for it is up ({why})")
            }
            Some(Empty::WaitsForWindow(why)) => {
                let note = format!("{why}; the task waits in the queue.");
                let said = db.notes(task.id)?.last().is_some_and(|n| n.text == note);
                if !said {
                    db.append_task_note(task.id, &note, &shared.holder)?;
                }
                why
            }
            // Runnable, or blocked by its step with the reason.
            _ => return Ok(true),
        };
        (shared.observer)(&Progress::TaskWaits {
            step: 0,
            task_id: task.id,
            reason,
        });
        waiting.push(task.id);
    }
    Ok(false)
}

async fn drive(
    shared: &Shared,
    deps: &Deps,
    main_db: &mut Store,
    in_flight: &Arc<Mutex<HashMap<i64, String>>>,
    workers: usize,
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> std::result::Result<(Tally, String), (Tally, crate::Error)> {
    let mut tally = Tally::default();
    // One connection per worker: a step owns its connection while it runs.
    let mut pool: Vec<Store> = Vec::new();
    for _ in 0..workers {
        pool.push(Store::open(&deps.db_path).map_err(|e| (tally.clone(), e))?);
    }
    let mut running = FuturesUnordered::new();
    let mut started = 0usize;
    let stopped: String;
    let mut interrupted_seen = false;
    // Tasks that wait for a model that is down: passed over for the rest
    // of the run, which goes on with the others.
    let mut waiting: Vec<i64> = Vec::new();
    let mut failed = false;
    // A project summary came due (every `project_summary_every` done).
    let mut summary_due = false;
    loop {
        let cancelled = *cancel.borrow() || failed;
        if cancelled && !failed && !interrupted_seen {
            interrupted_seen = true;
            (shared.observer)(&Progress::Interrupting);
        }
        while !cancelled && running.len() < workers && started < shared.opts.max_steps {
            let number = started + 1;
            let holder = format!("{}/step-{number}", shared.holder);
            let claimed = match shared.opts.task_id {
                // One given task: one step, then the run ends.
                Some(id) if started == 0 => Some(
                    main_db
                        .claim_task(id, &holder, shared.opts.lease)
                        .map_err(|e| (tally.clone(), e))?,
                ),
                Some(_) => None,
                None => {
                    // A task no model that is up can take is passed over
                    // before it is claimed: no attempt counted, no churn.
                    match next_runnable(shared, main_db, &mut waiting)
                        .map_err(|e| (tally.clone(), e))?
                    {
                        true => {}
                        false => break,
                    }
                    main_db
                        .claim_next_except(
                            Some(shared.opts.project_id),
                            &holder,
                            shared.opts.lease,
                            &waiting,
                        )
                        .map_err(|e| (tally.clone(), e))?
                }
            };
            let Some(task) = claimed else { break };
            started = number;
            in_flight
                .lock()
                .expect("lease set")
                .insert(task.id, holder.clone());
            let mut db = pool.pop().expect("a connection per worker");
            running.push(async move {
                let id = task.id;
                let outcome = StepRun::new(shared, &mut db, task, number, holder)
                    .run()
                    .await;
                (db, id, outcome)
            });
        }
        if running.is_empty() {
            stopped = if failed {
                "step_failed"
            } else if cancelled {
                "interrupted"
            } else if started >= shared.opts.max_steps {
                "max_steps"
            } else if !waiting.is_empty() {
                // What is left waits for models that are down.
                "models_unreachable"
            } else {
                "no_ready_task"
            }
            .into();
            break;
        }
        let next = tokio::select! {
            next = running.next() => next,
            // Wake up to stop claiming; the steps see the cancel themselves.
            _ = cancel.wait_for(|c| *c), if !cancelled => continue,
        };
        let Some((db, id, outcome)) = next else {
            continue;
        };
        pool.push(db);
        in_flight.lock().expect("lease set").remove(&id);
        tally.steps += 1;
        match outcome {
            Ok(Outcome::Done) => {
                tally.done += 1;
                if main_db.task(id).map_err(|e| (tally.clone(), e))?.verified == Some(true) {
                    tally.verified += 1;
                }
                if let Some(every) = shared.opts.project_summary_every
                    && every > 0
                    && tally.done.is_multiple_of(every)
                {
                    summary_due = true;
                }
            }
            Ok(Outcome::Blocked) => tally.blocked += 1,
            Ok(Outcome::Split) => tally.split += 1,
            Ok(Outcome::Released) => tally.released += 1,
            Ok(Outcome::Unreachable) => {
                tally.released += 1;
                waiting.push(id);
            }
            Ok(Outcome::Failed) => {
                // Failures outside the models (the database, a template)
                // would only repeat: the steps in flight finish, then stop.
                tally.failed += 1;
                failed = true;
            }
            Ok(Outcome::Lost) => tally.lost += 1,
            Err(e) => {
                // The database failed under a step: finish the others, then stop.
                tally.failed += 1;
                while let Some((_, _, _)) = running.next().await {}
                return Err((tally, e));
            }
        }
        // The summary that came due, once no step is in flight: a summarizer
        // call while steps run would leave them unpolled, their silence
        // timers running. With several workers it may wait for a lull.
        if summary_due && running.is_empty() && !*cancel.borrow() {
            summary_due = false;
            summary_now(shared, main_db).await;
        }
    }
    if summary_due && !*cancel.borrow() {
        summary_now(shared, main_db).await;
    }
    tally.waiting = waiting.len();
    Ok((tally, stopped))
}

/// A project summary between steps; a failure is a warning (the run's work
/// is safe in the store, and the next refresh tries again).
async fn summary_now(shared: &Shared, db: &mut Store) {
    if let Err(e) = super::rollup::project_summary(shared, db).await {
        (shared.observer)(&Progress::Warning {
            message: format!("no new project summary ({e})"),
        });
    }
}
