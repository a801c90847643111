//! Landing a done task's change from its git worktree (`crate::worktree`),
//! and, at a run's start, whatever a killed run left: a done task's
//! worktree is committed and landed, a waiting task's work is kept for its
//! next claim, an empty one is removed. The store decides first (the task
//! is done in SQLite before its change lands), so landing is a view that
//! catches up, like the plan files.

use std::path::{Path, PathBuf};

use super::progress::Progress;
use super::shared::Shared;
use crate::error::Result;
use crate::store::{Status, Store, Task};
use crate::worktree::{self, Action, Land, LandError, Landed, Repo, TaskState};

/// A task's worktree: where its tools, checks and tests run.
#[derive(Debug, Clone)]
pub(super) struct Workspace {
    pub repo: Repo,
    pub path: PathBuf,
    pub branch: String,
}

impl Workspace {
    /// The task's worktree in `root`'s repository (made, or found again
    /// with the work a killed step left); None outside git.
    pub async fn open(shared: &Shared, root: &Path, task: &Task) -> Result<Option<Workspace>> {
        let (root, dir) = (root.to_path_buf(), shared.worktrees.clone());
        let branch = worktree::branch_name(task.id, task.external_ref.as_deref());
        // A checkout of the whole tree: off the runtime's threads.
        tokio::task::spawn_blocking(move || -> Result<Option<Workspace>> {
            let Some(repo) = Repo::of(&root) else {
                return Ok(None);
            };
            let path = repo.worktree(&base_in(&dir, &repo), &branch)?;
            Ok(Some(Workspace { repo, path, branch }))
        })
        .await
        .map_err(|e| crate::Error::InvalidInput(format!("the worktree's thread failed: {e}")))?
    }

    /// Removes the worktree and what is uncommitted in it (a split task's
    /// attempt, which its subtasks redo in worktrees of their own), and
    /// the branch when HEAD has all of it.
    pub async fn discard(self) -> Result<()> {
        tokio::task::spawn_blocking(move || {
            self.repo.remove_as(Some(&self.path), &self.branch, true)
        })
        .await
        .map_err(|e| crate::Error::InvalidInput(format!("the worktree's thread failed: {e}")))??;
        Ok(())
    }

    /// The project's root inside the worktree.
    pub fn root(&self) -> PathBuf {
        self.repo.root_in(&self.path)
    }
}

/// Where one repository's worktrees go: beside the database, named for the
/// repository (a worktree inside it would sit in its build tool's
/// workspace).
fn base(shared: &Shared, repo: &Repo) -> PathBuf {
    base_in(&shared.worktrees, repo)
}

fn base_in(dir: &Path, repo: &Repo) -> PathBuf {
    let name = repo
        .top
        .file_name()
        .map_or("repo".into(), |n| n.to_string_lossy().to_string());
    let hash = repo
        .top
        .to_string_lossy()
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
    dir.join(format!("{name}-{:08x}", hash as u32))
}

fn subject(task: &Task) -> worktree::Subject<'_> {
    worktree::Subject::new(
        task.id,
        task.project_id,
        task.external_ref.as_deref(),
        &task.title,
    )
}

/// What landing needs, owned, for a blocking thread.
struct Job {
    ws: Workspace,
    message: String,
    mode: Land,
    checks: Vec<String>,
    timeout: std::time::Duration,
    output_cap: usize,
    lock: PathBuf,
}

/// Commits the worktree and lands it; one landing at a time per
/// repository, across processes (an OS lock that dies with its process).
fn land_blocking(job: Job) -> std::result::Result<Landed, LandError> {
    let _ = std::fs::create_dir_all(job.lock.parent().unwrap_or(Path::new(".")));
    let lock = std::fs::File::create(&job.lock).map_err(|e| {
        LandError::Git(worktree::GitError::Spawn {
            dir: job.lock.display().to_string(),
            source: e,
        })
    })?;
    lock.lock().map_err(|e| {
        LandError::Git(worktree::GitError::Spawn {
            dir: job.lock.display().to_string(),
            source: e,
        })
    })?;
    let ws = &job.ws;
    let committed = Repo::commit_all(&ws.path, &job.message)?;
    let landed = land_committed(&job, committed);
    // Committed first, so what is uncommitted now is only what the check
    // wrote: the worktree goes whatever happened; the branch stays while
    // it holds what HEAD lacks.
    ws.repo.remove_as(Some(&ws.path), &ws.branch, true)?;
    landed
}

fn land_committed(job: &Job, committed: Option<String>) -> std::result::Result<Landed, LandError> {
    let ws = &job.ws;
    let landed = match job.mode {
        Land::Review if ws.repo.ahead(&ws.branch)? => Landed::ForReview {
            commit: committed.unwrap_or(worktree::git(
                &ws.repo.top,
                &["rev-parse", "--short", &ws.branch],
            )?),
        },
        Land::Review => Landed::Nothing,
        Land::Merge => {
            let mut recheck = |wt: &Path| -> std::result::Result<(), String> {
                let tools = crate::tools::Toolbox::new(
                    &ws.repo.root_in(wt),
                    true,
                    Default::default(),
                    job.timeout,
                    job.output_cap,
                )?;
                for c in &job.checks {
                    let run = tools.run_check(c);
                    if !run.passed {
                        return Err(format!(
                            "`{c}`: {}",
                            crate::tools::check::tail(&run.output, 1_500)
                        ));
                    }
                }
                Ok(())
            };
            ws.repo.land(&ws.path, &ws.branch, &mut recheck)?
        }
    };
    Ok(landed)
}

/// Lands a done task's change and says how in its notes; a conflict, or a
/// rebased change whose check fails, blocks the task with the paths or the
/// output. True when the task ended blocked.
pub(super) async fn land(
    shared: &Shared,
    db: &mut Store,
    task: &Task,
    ws: Workspace,
    model: Option<&str>,
) -> Result<bool> {
    let tools = &shared.opts.tools;
    let checks = tools.checks_for(task);
    let job = Job {
        message: worktree::commit_message(&subject(task), model, &checks),
        mode: tools.land,
        checks,
        timeout: std::time::Duration::from_secs(tools.timeout_secs.max(1)),
        output_cap: tools.output_cap,
        lock: shared.worktrees.join("land.lock"),
        ws: ws.clone(),
    };
    let landed = tokio::task::spawn_blocking(move || land_blocking(job))
        .await
        .unwrap_or_else(|e| Err(LandError::Check(format!("the landing thread failed: {e}"))));
    let holder = shared.holder.as_str();
    let b = &ws.branch;
    let (note, block) = match landed {
        Ok(Landed::Merged { commit, rebased }) => (
            Some(format!(
                "Its change landed as commit {commit}{}.",
                if rebased {
                    " (rebased onto the moved branch; its check passed again)"
                } else {
                    ""
                }
            )),
            false,
        ),
        Ok(Landed::ForReview { commit }) => (
            Some(format!(
                "Its change is commit {commit} on branch {b}, left for review (`git log -p HEAD..{b}`, then `git merge {b}`)."
            )),
            false,
        ),
        Ok(Landed::Nothing) => (None, false),
        Ok(Landed::Waits { why }) => {
            warn(
                shared,
                format!("task {}: its change waits on branch {b}: {why}", task.id),
            );
            (
                Some(format!(
                    "Its change waits on branch {b}: {why}. The next run lands it."
                )),
                false,
            )
        }
        Ok(Landed::Conflict { paths }) => (
            Some(format!(
                "Its change conflicts with the branch it lands on in {}; it stays on branch {b}. Rebase it and resolve them, or set the task back to pending to redo it on the new code.",
                paths.join(", ")
            )),
            true,
        ),
        Err(LandError::Check(out)) => (
            Some(format!(
                "Its change was rebased onto the moved branch and its check then failed; it stays on branch {b}. {out}"
            )),
            true,
        ),
        Err(LandError::Git(e)) => {
            let why = format!(
                "its change stays on branch {b}; landing failed ({e}); the next run tries again"
            );
            warn(shared, format!("task {}: {why}", task.id));
            (
                Some(format!("{}{}.", why[..1].to_uppercase(), &why[1..])),
                false,
            )
        }
    };
    match (note, block) {
        (Some(note), true) => {
            db.mark_task_status_with_note(
                task.id,
                Status::Blocked,
                holder,
                serde_json::json!({"via": "landing", "branch": b}),
                Some(&note),
            )?;
            catch_up_docs(shared, db, task.project_id);
        }
        (Some(note), false) => {
            db.append_task_note(task.id, &note, holder)?;
        }
        (None, _) => {}
    }
    Ok(block)
}

fn catch_up_docs(shared: &Shared, db: &mut Store, project_id: i64) {
    if let Err(e) =
        crate::docs::catchup::catch_up(db, project_id).and_then(|c| c.into_result(project_id))
    {
        warn(shared, e.to_string());
    }
}

fn warn(shared: &Shared, message: String) {
    (shared.observer)(&Progress::Warning { message });
}

/// At a run's start: every worktree and branch of ours in the project's
/// repository gets `worktree::decide`'s action. A done task's change is
/// committed and landed; a waiting task's work stays for its next claim;
/// an empty worktree goes.
pub(super) async fn catch_up(shared: &Shared, db: &mut Store) -> Result<()> {
    let project = db.project(shared.opts.project_id)?;
    let Some(root) = project.root.as_deref() else {
        return Ok(());
    };
    let Some(repo) = Repo::of(Path::new(root)) else {
        return Ok(());
    };
    let mut found: Vec<(String, Option<PathBuf>)> = repo
        .ours(&base(shared, &repo))?
        .into_iter()
        .map(|f| (f.branch, Some(f.path)))
        .collect();
    found.extend(repo.branches()?.into_iter().map(|b| (b, None)));
    for (branch, path) in found {
        let Some(task_id) = worktree::task_of_branch(&branch) else {
            continue;
        };
        let Ok(task) = db.task(task_id) else { continue };
        if task.project_id != project.id {
            continue;
        }
        let state = match (task.deleted_at.is_some(), task.status) {
            (true, _) => TaskState::Parked,
            (false, Status::Done) => TaskState::Done,
            (false, Status::InProgress) => TaskState::Active,
            (false, Status::Pending) => TaskState::Waiting,
            (false, _) => TaskState::Parked,
        };
        let dirty = match &path {
            Some(p) if p.is_dir() => !Repo::changes(p, true)?.is_empty(),
            _ => false,
        };
        let ahead = repo.ahead(&branch)?;
        match worktree::decide(state, dirty, ahead) {
            Action::Keep => {}
            Action::Remove => {
                repo.remove(path.as_deref(), &branch)?;
            }
            // A change left for review stays as it is.
            Action::CommitAndLand if path.is_none() && shared.opts.tools.land == Land::Review => {}
            Action::CommitAndLand if path.is_none() && !ahead => {
                repo.remove(None, &branch)?;
            }
            Action::CommitAndLand => {
                let path = match path {
                    Some(p) if p.is_dir() => p,
                    _ => repo.worktree(&base(shared, &repo), &branch)?,
                };
                let model = db
                    .task_steps(task.id)?
                    .into_iter()
                    .rev()
                    .find_map(|s| s.model);
                (shared.observer)(&Progress::Recovered {
                    message: format!(
                        "task {} is done and its change on branch {branch} had not landed; landing it now",
                        task.id
                    ),
                });
                let ws = Workspace {
                    repo: repo.clone(),
                    path,
                    branch,
                };
                land(shared, db, &task, ws, model.as_deref()).await?;
            }
        }
    }
    Ok(())
}
