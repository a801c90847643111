//! The background worker: it owns the TUI's database connection, carries
//! out jobs (loads and changes through the same store and `docs::sync` calls
//! as the CLI), starts and stops orchestrator runs on threads of their own,
//! and notices changes made by other processes (`PRAGMA data_version`), so
//! the UI thread never waits on SQLite or the network.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use super::app::{Job, ModelRow, ModelsData, Msg, ProviderRow};
use crate::app::Context as Ctx;
use crate::app::handles::{Store, Watch};
use crate::app::{board, tasks};
use crate::error::{Error, Result};

/// Gateway calls the requests view lists, newest first.
const REQUESTS_SHOWN: usize = 200;

/// How often the worker looks for changes made by other processes.
pub const POLL: Duration = Duration::from_millis(400);

struct Worker {
    ctx: Ctx,
    db: Store,
    out: Sender<Msg>,
    project: Option<i64>,
    data_version: i64,
    /// The requests view was opened: send the gateway's calls on changes.
    watch_requests: bool,
    /// The models view was opened: memory and loaded models, watched in
    /// the background from then on.
    resources: Option<Arc<Watch>>,
    /// The run started from the TUI: its stop switch and its thread.
    run: Option<(
        tokio::sync::watch::Sender<bool>,
        std::thread::JoinHandle<()>,
    )>,
}

/// Starts the worker; jobs go in through the returned sender.
pub(crate) fn spawn(ctx: Ctx, out: Sender<Msg>) -> Result<Sender<Job>> {
    let db = ctx.store()?;
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("llmclis-tui-worker".into())
        .spawn(move || {
            let mut w = Worker {
                ctx,
                db,
                out,
                project: None,
                data_version: 0,
                watch_requests: false,
                resources: None,
                run: None,
            };
            w.main(rx)
        })
        .map_err(|e| Error::io("<worker thread>", e))?;
    Ok(tx)
}

impl Worker {
    fn main(&mut self, rx: Receiver<Job>) {
        if let Err(e) = self.recover() {
            let _ = self.out.send(Msg::Error(e.to_string()));
        }
        loop {
            match rx.recv_timeout(POLL) {
                Ok(job) => {
                    if let Err(e) = self.job(job) {
                        let _ = self.out.send(Msg::Error(e.to_string()));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.notice_changes() {
                        tracing::warn!(error = %e, "change check failed");
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // The UI is gone: a run still going is stopped, so its task goes back.
        if let Some((stop, thread)) = self.run.take() {
            let _ = stop.send(true);
            let _ = thread.join();
        }
    }

    /// What dead processes left behind: runs still marked running are
    /// closed, plan-file edits still pending are written.
    fn recover(&mut self) -> Result<()> {
        let failed = board::recover(&self.ctx, &mut self.db)?;
        if failed > 0 {
            return Err(Error::InvalidInput(format!(
                "{failed} plan-file edit(s) could not be written (see the log); they stay pending: fix the file and run `llmclis plans sync`"
            )));
        }
        Ok(())
    }

    /// Another connection committed: reload what is on screen.
    fn notice_changes(&mut self) -> Result<()> {
        let v = board::change_counter(&self.db)?;
        if v != self.data_version {
            self.data_version = v;
            if let Some(p) = self.project {
                self.load_board(p)?;
            }
            self.job(Job::LoadProjects)?;
            if self.watch_requests {
                self.send(Msg::Requests(board::requests(&self.db, REQUESTS_SHOWN)?));
            }
        }
        Ok(())
    }

    fn send(&self, msg: Msg) {
        let _ = self.out.send(msg);
    }

    fn load_board(&mut self, project_id: i64) -> Result<()> {
        let b = board::board(&self.db, project_id)?;
        if self.project != Some(project_id) {
            self.project = Some(project_id);
            board::remember_project(&self.ctx, project_id);
        }
        self.send(Msg::Board {
            project: b.project,
            tasks: b.tasks,
            counts: b.counts,
        });
        Ok(())
    }

    fn job(&mut self, job: Job) -> Result<()> {
        match job {
            Job::LoadProjects => {
                let rows = tasks::list_projects(&self.db)?;
                self.send(Msg::Projects(rows));
            }
            Job::LoadBoard(id) => self.load_board(id)?,
            Job::LoadMemoryTree(id) => {
                let tree = crate::app::memory::tree(&self.db, id)?;
                self.send(Msg::MemoryTree(Box::new(tree)));
            }
            Job::LoadDetail(id) => {
                let d = board::detail(&self.db, id)?;
                self.send(Msg::Detail(Box::new(d)));
            }
            Job::CreateTask { project_id, form } => {
                let req = tasks::AddTask {
                    project_id,
                    title: form.title,
                    description: form.description,
                    priority: form.priority.map(tasks::Priority::Number),
                    depends_on: form.depends_on,
                    parent: None,
                    tags: form.tags,
                    role: None,
                    external_ref: None,
                    check: Vec::new(),
                    protect: Vec::new(),
                };
                let t = tasks::add_task(&self.ctx, &mut self.db, req)?;
                self.send(Msg::Saved(format!("added task {}: {}", t.id, t.title)));
            }
            Job::UpdateTask { id, form } => {
                board::save_form(&self.ctx, &mut self.db, id, &form)?;
                self.send(Msg::Saved(format!("saved task {id}")));
            }
            Job::SetStatus { id, status, note } => {
                let req = tasks::SetStatus {
                    id: id.into(),
                    status,
                    note,
                    project_id: None,
                };
                let v = tasks::set_status(&self.ctx, &mut self.db, req, "tui")?;
                let files = if v.files.plans_changed {
                    "; plans.md updated"
                } else {
                    ""
                };
                self.send(Msg::Saved(format!(
                    "task {id}: {} → {}{files}",
                    v.previous_status.as_str(),
                    v.task.status.as_str()
                )));
            }
            Job::AddNote { id, text } => {
                let req = tasks::AddNote {
                    id: id.into(),
                    text,
                    project_id: None,
                };
                tasks::add_note(&self.ctx, &mut self.db, req)?;
                self.send(Msg::Saved(format!("note added to task {id}")));
            }
            Job::ApplyChange(id) => {
                let req = crate::app::changes::ApplyChange {
                    id: id.into(),
                    commit: false,
                    project_id: None,
                };
                let a = crate::app::changes::apply(&self.ctx, &mut self.db, req)?;
                self.send(Msg::Saved(format!(
                    "applied task {id}'s change to {}",
                    a.files.join(", ")
                )));
            }
            Job::RejectChange(id) => {
                let req = crate::app::changes::RejectChange {
                    id: id.into(),
                    reason: None,
                    project_id: None,
                };
                crate::app::changes::reject(&self.ctx, &mut self.db, req)?;
                self.send(Msg::Saved(format!(
                    "task {id} is pending again; the next run does it anew"
                )));
            }
            Job::Delete(id) => {
                let req = tasks::DeleteTask {
                    id: id.into(),
                    project_id: None,
                };
                let t = tasks::delete_task(&self.ctx, &mut self.db, req)?;
                self.send(Msg::Saved(format!(
                    "deleted task {id}: {} (history kept)",
                    t.title
                )));
            }
            Job::StartRun { project_id, task } => self.start_run(project_id, task)?,
            Job::StopRun => {
                if let Some((stop, _)) = &self.run {
                    let _ = stop.send(true);
                }
            }
            Job::CheckModels => self.check_models()?,
            Job::WatchRequests => {
                self.watch_requests = true;
                self.send(Msg::Requests(board::requests(&self.db, REQUESTS_SHOWN)?));
            }
            Job::SearchMemory {
                project_id,
                query,
                seq,
            } => {
                // Its own thread: opening the index may wait for another
                // process's lock, and embedding takes a moment.
                let ctx = self.ctx.clone();
                let out = self.out.clone();
                std::thread::spawn(move || {
                    let result = (|| -> Result<_> {
                        let mut db = ctx.store()?;
                        let mem = ctx.open_memory(&db)?;
                        let rt = crate::app::runtime()?;
                        // Caught up first: a search never misses a
                        // committed memory.
                        let req = crate::app::memory::QueryMemory {
                            project_id,
                            task_id: None,
                            kind: None,
                            level: None,
                            top_k: 10,
                            text: query,
                        };
                        rt.block_on(crate::app::memory::query(&mem, &mut db, &req))
                    })();
                    let _ = out.send(Msg::MemoryHits {
                        seq,
                        hits: result.map_err(|e| e.to_string()),
                    });
                });
            }
        }
        Ok(())
    }

    fn start_run(&mut self, project_id: i64, task: Option<i64>) -> Result<()> {
        // The board asks only after the last run reported its end, so the
        // old thread is done or about to be.
        if let Some((_, old)) = self.run.take() {
            let _ = old.join();
        }
        let cfg = &self.ctx.config.orchestrator;
        let steps = if task.is_some() { 1 } else { 20 };
        let (deps, mut opts) =
            crate::app::run::prepare(&self.ctx, project_id, steps, cfg.workers.max(1))
                .inspect_err(|e| {
                    self.send(Msg::RunEnded(Err(e.to_string())));
                })?;
        opts.task_id = task;
        opts.stream_tokens = true;
        let (stop, cancel) = tokio::sync::watch::channel(false);
        let out = self.out.clone();
        let progress = self.out.clone();
        let thread = std::thread::Builder::new()
            .name("llmclis-tui-run".into())
            .spawn(move || {
                let observer: crate::app::types::Observer = Arc::new(move |p| {
                    let _ = progress.send(Msg::Progress(Box::new(p.clone())));
                });
                // A panic in the run still ends it for the board.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::app::runtime().and_then(|rt| {
                        rt.block_on(crate::app::run::execute(deps, opts, observer, cancel))
                    })
                }))
                .unwrap_or_else(|_| {
                    Err(Error::Internal(
                        "the run stopped on an internal error; see the log".into(),
                    ))
                });
                let _ = out.send(Msg::RunEnded(result.map_err(|e| e.to_string())));
            })
            .map_err(|e| Error::io("<run thread>", e))?;
        self.run = Some((stop, thread));
        Ok(())
    }

    /// Starts the resource watch once; a thread forwards each new view.
    fn watch_resources(&mut self, registry: &Arc<crate::app::types::Registry>) {
        if self.resources.is_some() {
            return;
        }
        let watch = crate::app::models::watch(registry.clone());
        self.resources = Some(watch.clone());
        let out = self.out.clone();
        let registry = registry.clone();
        std::thread::spawn(move || {
            let mut last = None;
            loop {
                std::thread::sleep(std::time::Duration::from_millis(200));
                let view = watch.view();
                if view.at.is_none() || view.at == last {
                    continue;
                }
                last = view.at;
                let r = crate::app::models::resources_from(&registry, &view);
                // The board is gone: so is the watch.
                if out.send(Msg::Resources(Box::new(r))).is_err() {
                    return;
                }
            }
        });
    }

    fn check_models(&mut self) -> Result<()> {
        let registry = Arc::new(self.ctx.registry()?);
        let mode = self.ctx.mode();
        let mut data = ModelsData {
            source: registry.source.clone(),
            mode: format!("{mode:?}").to_lowercase(),
            providers: registry
                .providers
                .iter()
                .map(|p| ProviderRow {
                    name: p.name.clone(),
                    base_url: p.base_url.clone(),
                    local: p.local,
                    key_env: p.api_key_env.clone(),
                    key_set: p.api_key().is_some(),
                    health: None,
                })
                .collect(),
            models: registry
                .models
                .iter()
                .map(|m| ModelRow {
                    id: m.id.clone(),
                    provider: m.provider.clone(),
                    served_name: m.served_name.clone(),
                    context_window: m.context_window,
                    roles: registry
                        .roles
                        .values()
                        .filter(|r| r.models.contains(&m.id))
                        .map(|r| r.name.clone())
                        .collect(),
                })
                .collect(),
            checking: true,
            resources: None,
        };
        self.send(Msg::Models(data.clone()));
        self.watch_resources(&registry);
        let out = self.out.clone();
        std::thread::spawn(move || {
            let result = crate::app::runtime()
                .map(|rt| rt.block_on(crate::app::models::provider_health(&registry, mode)));
            if let Ok(healths) = result {
                for (row, h) in data.providers.iter_mut().zip(healths) {
                    row.health = h;
                }
            }
            data.checking = false;
            let _ = out.send(Msg::Models(data));
        });
        Ok(())
    }
}
