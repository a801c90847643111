//! One git worktree per task when writes are on: each claimed code task
//! works on its own branch (`llmclis/S1.2-12`) made from the project's
//! HEAD, so its tools, checks and tests see its change alone. A done task's
//! change is committed there (the message names the task and the model,
//! with trailers a script can read) and lands by `[tools] land`: a
//! fast-forward, or a clean rebase and its check again; a conflict leaves
//! the branch. Git is driven through its CLI (what the user has); the
//! decisions about a worktree found after a crash are `decide`, pure.
//!
//! The user's main tree is never written but by a fast-forward of its
//! branch, and only when it has no uncommitted changes to tracked files.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// How a finished change lands (`[tools] land`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Land {
    /// Fast-forward the project's branch, or rebase onto it when it moved
    /// (then the check runs again) and fast-forward.
    #[default]
    Merge,
    /// Commit on the task's branch and leave it for a person.
    Review,
}

/// Why git could not do what was asked, as values a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git {args} in {dir}: {message}")]
    Failed {
        args: String,
        dir: String,
        message: String,
    },
    #[error("cannot run git in {dir}: {source}")]
    Spawn { dir: String, source: std::io::Error },
}

type Result<T> = std::result::Result<T, GitError>;

/// Runs git in `dir` with hooks off (a task's commit must not run the
/// user's hooks), returning its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    git_raw(dir, args).map(|s| s.trim().to_string())
}

/// `git`, its stdout as it is (porcelain output's columns matter).
fn git_raw(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        // No hooks, and no signing prompt while the landing lock is held.
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .map_err(|source| GitError::Spawn {
            dir: dir.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        return Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.display().to_string(),
            message: format!("{} {}", stderr.trim(), stdout.trim())
                .trim()
                .to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The branch a task works on: `llmclis/<ref>-<id>`, or `llmclis/task-<id>`.
pub fn branch_name(task_id: i64, external_ref: Option<&str>) -> String {
    let label: String = external_ref
        .unwrap_or("task")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let label = label
        .trim_matches(|c| c == '.' || c == '-')
        .replace("..", ".");
    let label = if label.is_empty() { "task" } else { &label };
    format!("{PREFIX}{label}-{task_id}")
}

const PREFIX: &str = "llmclis/";

/// The task a branch of ours belongs to.
pub fn task_of_branch(branch: &str) -> Option<i64> {
    let rest = branch
        .strip_prefix("refs/heads/")
        .unwrap_or(branch)
        .strip_prefix(PREFIX)?;
    rest.rsplit('-').next()?.parse().ok()
}

/// What a commit of a task's change says: the subject names the task, the
/// body what was done, the trailers are for scripts
/// (`git log --format=%(trailers:key=Llmclis-Task)`).
pub fn commit_message(task: &Subject<'_>, model: Option<&str>, checks: &[String]) -> String {
    let subject = match task.external_ref {
        Some(r) => format!("{r}: {}", task.title),
        None => format!("Task {}: {}", task.id, task.title),
    };
    let mut trailers = format!("Llmclis-Task: {}\n", task.id);
    if let Some(r) = task.external_ref {
        trailers.push_str(&format!("Llmclis-Ref: {r}\n"));
    }
    if let Some(m) = model {
        trailers.push_str(&format!("Llmclis-Model: {m}\n"));
    }
    for c in checks {
        trailers.push_str(&format!("Llmclis-Check: {c}\n"));
    }
    let by = model.map_or(String::new(), |m| format!(" by {m}"));
    format!(
        "{subject}\n\nDone{by} for task {} of project {}.\n\n{trailers}",
        task.id, task.project_id
    )
}

/// What a commit names of its task (this module knows nothing of the
/// store, so the crate's `Error` can hold a `GitError` without a cycle).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub id: i64,
    pub project_id: i64,
    pub external_ref: Option<&'a str>,
    pub title: &'a str,
}

impl<'a> Subject<'a> {
    /// The task as a commit names it.
    pub fn new(
        id: i64,
        project_id: i64,
        external_ref: Option<&'a str>,
        title: &'a str,
    ) -> Subject<'a> {
        Subject {
            id,
            project_id,
            external_ref,
            title,
        }
    }
}

/// A git repository whose work tree holds a project's root.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The main work tree's top level.
    pub top: PathBuf,
    /// The project's root relative to `top` (empty when they are the same).
    pub sub: PathBuf,
}

/// One of our worktrees, as `git worktree list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub branch: String,
    pub task_id: i64,
}

/// The outcome of landing a committed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landed {
    /// The project's branch now holds it (`rebased`: after a rebase whose
    /// check passed).
    Merged { commit: String, rebased: bool },
    /// Left on its branch for a person (`[tools] land = "review"`).
    ForReview { commit: String },
    /// Nothing to land: the task changed no file.
    Nothing,
    /// Not now: the main tree has uncommitted changes, or HEAD is not on a
    /// branch. The branch stays; the next run lands it.
    Waits { why: String },
    /// The rebase conflicted in these paths; the branch stays as it was.
    Conflict { paths: Vec<String> },
}

impl Repo {
    /// The repository holding `root`, if it is in one.
    pub fn of(root: &Path) -> Option<Repo> {
        let top = git(root, &["rev-parse", "--show-toplevel"]).ok()?;
        let top = PathBuf::from(top).canonicalize().ok()?;
        let root = root.canonicalize().ok()?;
        let sub = root.strip_prefix(&top).ok()?.to_path_buf();
        // A repository without a commit has nothing to branch from, and a
        // root git does not track would be missing from every worktree:
        // both are worked on as plain directories.
        git(&top, &["rev-parse", "--verify", "-q", "HEAD"]).ok()?;
        if !sub.as_os_str().is_empty() {
            let at = format!("HEAD:{}", sub.to_string_lossy());
            git(&top, &["cat-file", "-e", &at]).ok()?;
        }
        Some(Repo { top, sub })
    }

    /// `-c` options that let git commit in a repository with no identity
    /// set (rebases commit too).
    fn identity(dir: &Path) -> Vec<&'static str> {
        if git(dir, &["config", "user.email"]).is_ok_and(|e| !e.is_empty()) {
            vec![]
        } else {
            vec![
                "-c",
                "user.name=llmclis",
                "-c",
                "user.email=llmclis@localhost",
            ]
        }
    }

    /// The project's root inside a worktree of this repository.
    pub fn root_in(&self, worktree: &Path) -> PathBuf {
        worktree.join(&self.sub)
    }

    /// The worktree of `branch` under `base`: the existing one (a run
    /// killed mid-task left it, with its work), or a new one on the
    /// existing branch, or a new branch from HEAD.
    pub fn worktree(&self, base: &Path, branch: &str) -> Result<PathBuf> {
        if let Some(f) = self.ours(base)?.into_iter().find(|f| f.branch == branch)
            && f.path.is_dir()
        {
            return Ok(f.path);
        }
        // Its directory went (deleted by hand): forget it.
        git(&self.top, &["worktree", "prune"])?;
        let path = base.join(branch.trim_start_matches(PREFIX).replace('/', "-"));
        let _ = std::fs::create_dir_all(base);
        let p = path.to_string_lossy().to_string();
        if path.exists() {
            // A detached copy a killed landing left (its work is committed
            // on the branch): gone before the branch is checked out again.
            git(&self.top, &["worktree", "remove", "--force", &p])?;
        }
        if self.has_branch(branch)? && !self.based_on_head(branch) {
            // An earlier attempt on an older base (a conflict, a rejected
            // review): kept under another name, and the task starts again
            // from HEAD.
            let sha = git(&self.top, &["rev-parse", "--short", branch])?;
            git(
                &self.top,
                &["branch", "-m", branch, &format!("{branch}-was-{sha}")],
            )?;
        }
        if self.has_branch(branch)? {
            git(&self.top, &["worktree", "add", &p, branch])?;
        } else {
            git(&self.top, &["worktree", "add", "-b", branch, &p, "HEAD"])?;
        }
        Ok(path)
    }

    /// Whether the main tree's HEAD is an ancestor of `branch`.
    fn based_on_head(&self, branch: &str) -> bool {
        git(&self.top, &["merge-base", "--is-ancestor", "HEAD", branch]).is_ok()
    }

    fn has_branch(&self, branch: &str) -> Result<bool> {
        Ok(git(
            &self.top,
            &["branch", "--list", "--format=%(refname:short)", branch],
        )? == branch)
    }

    /// Our worktrees: on a branch under `llmclis/` and under `base` (never
    /// the main tree, or a worktree the user made for such a branch).
    pub fn ours(&self, base: &Path) -> Result<Vec<Found>> {
        let base = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
        let list = git(&self.top, &["worktree", "list", "--porcelain"])?;
        let mut out = Vec::new();
        let mut path: Option<PathBuf> = None;
        for line in list.lines() {
            if let Some(p) = line.strip_prefix("worktree ") {
                path = Some(PathBuf::from(p));
            } else if let Some(b) = line.strip_prefix("branch ")
                && let (Some(p), Some(task_id)) = (path.clone(), task_of_branch(b))
                && p.canonicalize()
                    .unwrap_or_else(|_| p.clone())
                    .starts_with(&base)
            {
                out.push(Found {
                    path: p,
                    branch: b.trim_start_matches("refs/heads/").to_string(),
                    task_id,
                });
            }
        }
        Ok(out)
    }

    /// Branches of ours with no worktree (a landing that waits, a change
    /// left for review or blocked by a conflict).
    pub fn branches(&self) -> Result<Vec<String>> {
        // Checked out anywhere (ours, the main tree, the user's): not ours
        // to land from here.
        let checked_out: Vec<String> = git(&self.top, &["worktree", "list", "--porcelain"])?
            .lines()
            .filter_map(|l| l.strip_prefix("branch refs/heads/"))
            .map(str::to_string)
            .collect();
        Ok(git(
            &self.top,
            &["branch", "--list", "--format=%(refname:short)", "llmclis/*"],
        )?
        .lines()
        .map(str::to_string)
        .filter(|b| task_of_branch(b).is_some() && !checked_out.contains(b))
        .collect())
    }

    /// Uncommitted changes in a work tree (tracked files, and new files
    /// not ignored when `untracked`).
    pub fn changes(dir: &Path, untracked: bool) -> Result<Vec<String>> {
        let mode = if untracked { "-unormal" } else { "-uno" };
        Ok(git_raw(dir, &["status", "--porcelain", mode])?
            .lines()
            .map(|l| l.get(3..).unwrap_or(l).to_string())
            .collect())
    }

    /// Commits everything in `worktree` with `message`; the commit, or
    /// None when nothing changed.
    pub fn commit_all(worktree: &Path, message: &str) -> Result<Option<String>> {
        git(worktree, &["add", "-A"])?;
        if git(worktree, &["diff", "--cached", "--name-only"])?.is_empty() {
            return Ok(None);
        }
        // A repository with no identity set still gets a commit.
        let mut args = Self::identity(worktree);
        args.extend(["commit", "--no-verify", "-q", "-m", message]);
        git(worktree, &args)?;
        git(worktree, &["rev-parse", "--short", "HEAD"]).map(Some)
    }

    /// Whether `branch` has commits its base (the main tree's HEAD) lacks.
    pub fn ahead(&self, branch: &str) -> Result<bool> {
        let n = git(
            &self.top,
            &["rev-list", "--count", &format!("HEAD..{branch}")],
        )?;
        Ok(n.trim() != "0")
    }

    /// Lands `branch` (worked in `worktree`) on the main tree's branch:
    /// a fast-forward when it is based on it, else a rebase in the
    /// worktree, `recheck` there, and a fast-forward. Never with
    /// uncommitted changes to the main tree's tracked files.
    pub fn land(
        &self,
        worktree: &Path,
        branch: &str,
        recheck: &mut dyn FnMut(&Path) -> std::result::Result<(), String>,
    ) -> std::result::Result<Landed, LandError> {
        if !self.ahead(branch)? {
            return Ok(Landed::Nothing);
        }
        let Ok(target) = git(&self.top, &["symbolic-ref", "--short", "HEAD"]) else {
            return Ok(Landed::Waits {
                why: "the main tree's HEAD is not on a branch".into(),
            });
        };
        let dirty = Self::changes(&self.top, false)?;
        if !dirty.is_empty() {
            return Ok(Landed::Waits {
                why: format!(
                    "the main tree has uncommitted changes ({}); commit or stash them",
                    dirty.join(", ")
                ),
            });
        }
        let based = git(&self.top, &["merge-base", "--is-ancestor", &target, branch]).is_ok();
        if !based {
            // Rebased detached: the branch moves only once the check passed,
            // so a kill during the check never leaves it rebased unchecked.
            git(worktree, &["checkout", "-q", "--detach"])?;
            let mut rebase = Self::identity(worktree);
            rebase.extend(["rebase", "-q", &target]);
            if let Err(e) = git(worktree, &rebase) {
                let paths: Vec<String> = git(worktree, &["diff", "--name-only", "--diff-filter=U"])
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string)
                    .collect();
                let _ = git(worktree, &["rebase", "--abort"]);
                if paths.is_empty() {
                    return Err(e.into());
                }
                return Ok(Landed::Conflict { paths });
            }
            recheck(worktree).map_err(LandError::Check)?;
            let rebased = git(worktree, &["rev-parse", "HEAD"])?;
            git(&self.top, &["branch", "-f", branch, &rebased])?;
        }
        git(&self.top, &["merge", "--ff-only", "-q", branch])?;
        let commit = git(&self.top, &["rev-parse", "--short", "HEAD"])?;
        Ok(Landed::Merged {
            commit,
            rebased: !based,
        })
    }

    /// Removes a worktree that holds no uncommitted work, and its branch
    /// when the main tree's HEAD has every commit of it.
    pub fn remove(&self, path: Option<&Path>, branch: &str) -> Result<bool> {
        self.remove_as(path, branch, false)
    }

    /// `remove`; `discard`: whatever is uncommitted in the worktree goes
    /// too (a landing's check output after its commit, a split task's
    /// abandoned attempt).
    pub fn remove_as(&self, path: Option<&Path>, branch: &str, discard: bool) -> Result<bool> {
        let path = path.filter(|p| p.is_dir());
        if let Some(p) = path {
            if !discard && !Self::changes(p, true)?.is_empty() {
                return Ok(false);
            }
            let p = p.to_string_lossy();
            let mut args = vec!["worktree", "remove"];
            if discard {
                args.push("--force");
            }
            args.push(&p);
            git(&self.top, &args)?;
        }
        git(&self.top, &["worktree", "prune"])?;
        if !self.ahead(branch)? {
            git(&self.top, &["branch", "-q", "-D", branch])?;
        }
        Ok(true)
    }
}

/// A landing that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum LandError {
    #[error(transparent)]
    Git(#[from] GitError),
    /// The rebased change failed its check; the output's end.
    #[error("after the rebase its check fails: {0}")]
    Check(String),
}

/// What the task of a worktree (or branch) found after a run is, as far as
/// landing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Done: its change is to be committed and landed.
    Done,
    /// Someone is working on it now.
    Active,
    /// Waiting for another attempt (pending, or claimed by a dead run).
    Waiting,
    /// Blocked (a conflict waits for a person), deleted, or not ours.
    Parked,
}

/// What to do with a worktree of ours at a run's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Commit what is uncommitted, then land (or leave for review).
    CommitAndLand,
    /// Keep it: it has work for the next attempt or a person.
    Keep,
    /// Remove it: nothing in it is worth keeping.
    Remove,
}

/// The decision for one worktree of ours: pure, so each case is a test.
pub fn decide(state: TaskState, dirty: bool, ahead: bool) -> Action {
    match state {
        TaskState::Done => Action::CommitAndLand,
        TaskState::Active => Action::Keep,
        // Blocked or deleted: kept while it holds work for a person.
        TaskState::Parked if dirty || ahead => Action::Keep,
        TaskState::Parked => Action::Remove,
        // Work a killed step left is resumed by the next claim.
        TaskState::Waiting if dirty || ahead => Action::Keep,
        TaskState::Waiting => Action::Remove,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_are_valid_and_name_the_task() {
        assert_eq!(branch_name(12, Some("S1.2")), "llmclis/S1.2-12");
        assert_eq!(branch_name(3, None), "llmclis/task-3");
        assert_eq!(branch_name(4, Some("a b..c/")), "llmclis/a-b.c-4");
        assert_eq!(task_of_branch("refs/heads/llmclis/S1.2-12"), Some(12));
        assert_eq!(task_of_branch("llmclis/task-3"), Some(3));
        assert_eq!(task_of_branch("main"), None);
    }

    #[test]
    fn uncommitted_changes_are_named_whole() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git(d, &["init", "-q"]).unwrap();
        crate::fsutil::write_atomic(&d.join("beta.txt"), b"b").unwrap();
        git(d, &["add", "-A"]).unwrap();
        git(
            d,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                "s",
            ],
        )
        .unwrap();
        crate::fsutil::write_atomic(&d.join("beta.txt"), b"c").unwrap();
        crate::fsutil::write_atomic(&d.join("new.txt"), b"n").unwrap();
        assert_eq!(Repo::changes(d, false).unwrap(), ["beta.txt"]);
        assert_eq!(Repo::changes(d, true).unwrap(), ["beta.txt", "new.txt"]);
    }

    #[test]
    fn a_found_worktree_is_landed_kept_or_removed() {
        assert_eq!(decide(TaskState::Done, false, true), Action::CommitAndLand);
        assert_eq!(decide(TaskState::Done, true, false), Action::CommitAndLand);
        assert_eq!(decide(TaskState::Active, false, false), Action::Keep);
        assert_eq!(decide(TaskState::Waiting, true, false), Action::Keep);
        assert_eq!(decide(TaskState::Waiting, false, true), Action::Keep);
        assert_eq!(decide(TaskState::Waiting, false, false), Action::Remove);
        assert_eq!(decide(TaskState::Parked, true, false), Action::Keep);
        assert_eq!(decide(TaskState::Parked, false, true), Action::Keep);
        assert_eq!(decide(TaskState::Parked, false, false), Action::Remove);
    }
}
