//! The project a command is about when it is not given one: the project
//! from where you stand. In order: `--project-id`; a plans.md in this
//! directory or above it that a project was imported from; a project whose
//! root is this directory or above it (the nearest); `[general]
//! default_project` in config.toml; the only project there is. Which one
//! was used, and why, goes with the answer (`--json`, `llmclis paths`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Context;
use crate::error::{Error, Result};
use crate::store::{Project, Store};

/// The project chosen and the rule that chose it.
#[derive(Debug, Clone, Serialize)]
pub struct Chosen {
    pub project_id: i64,
    pub name: String,
    /// `given`, `plans.md`, `root`, `config` or `only`.
    pub by: &'static str,
    /// In words: `./plans.md was imported as project 3`.
    pub why: String,
}

/// The directory and its parents, nearest first.
fn upwards(dir: &Path) -> impl Iterator<Item = &Path> {
    std::iter::successors(Some(dir), |d| d.parent())
}

/// Chooses the project for a command run in `cwd`.
pub fn choose(ctx: &Context, store: &Store, given: Option<i64>, cwd: &Path) -> Result<Chosen> {
    let chosen = |p: Project, by: &'static str, why: String| Chosen {
        project_id: p.id,
        name: p.name,
        by,
        why,
    };
    if let Some(id) = given {
        let p = store.project(id)?;
        return Ok(chosen(p, "given", format!("--project-id {id}")));
    }
    let cwd = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
    for dir in upwards(&cwd) {
        let plans = dir.join("plans.md");
        if plans.is_file()
            && let Ok(real) = std::fs::canonicalize(&plans)
            && let Some(p) = store.project_by_plans_path(&real.to_string_lossy())?
        {
            let why = format!("{} was imported as project {}", plans.display(), p.id);
            return Ok(chosen(p, "plans.md", why));
        }
    }
    let projects = store.projects()?;
    let mut by_root: Option<(usize, Project)> = None;
    for p in &projects {
        let Some(root) = p.root.as_deref().map(PathBuf::from) else {
            continue;
        };
        let root = std::fs::canonicalize(&root).unwrap_or(root);
        if cwd.starts_with(&root) {
            let depth = root.components().count();
            if by_root.as_ref().is_none_or(|(d, _)| depth > *d) {
                by_root = Some((depth, p.clone()));
            }
        }
    }
    if let Some((_, p)) = by_root {
        let why = format!(
            "{} is inside project {}'s root {}",
            cwd.display(),
            p.id,
            p.root.as_deref().unwrap_or("")
        );
        return Ok(chosen(p, "root", why));
    }
    if let Some(want) = ctx.config.general.default_project.as_deref() {
        let p = match want.parse::<i64>() {
            Ok(id) => store.project(id).ok(),
            Err(_) => store.project_by_name(want)?,
        };
        return match p {
            Some(p) => {
                let why = format!("[general] default_project = {want:?} in config.toml");
                Ok(chosen(p, "config", why))
            }
            None => Err(Error::Config {
                path: ctx.paths.config_file(),
                message: format!(
                    "[general] default_project = {want:?} names no project; `llmclis project list` shows them"
                ),
            }),
        };
    }
    match projects.as_slice() {
        [one] => {
            let why = format!("project {} is the only project", one.id);
            Ok(chosen(one.clone(), "only", why))
        }
        [] => Err(Error::InvalidInput(
            "no project yet: `llmclis project add NAME --root DIR`, `llmclis plans import plans.md` or `llmclis import taskmaster|beads PATH`".into(),
        )),
        many => {
            let names: Vec<String> = many.iter().map(|p| format!("{} ({})", p.id, p.name)).collect();
            Err(Error::InvalidInput(format!(
                "which project? {}: pass --project-id N, run inside a project's root or beside its plans.md, or set [general] default_project in config.toml",
                names.join(", ")
            )))
        }
    }
}

/// `choose` from the process's working directory.
pub fn project(ctx: &Context, store: &Store, given: Option<i64>) -> Result<Chosen> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("<current directory>", e))?;
    choose(ctx, store, given, &cwd)
}
