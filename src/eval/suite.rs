//! An eval suite on disk: a folder of cases, each `case.toml` (the task,
//! the check, the protected files, the limits) beside `repo/` (the snapshot
//! the agent works on). A broken case is an error naming it; the others
//! still load.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One case, checked for what can be checked before a model is called.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case's folder name.
    pub name: String,
    pub repo: PathBuf,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub difficulty: u32,
    /// The role that works on it (a role hint; coder unless the case says).
    pub role: crate::role::Role,
    /// Run in the worked-on copy; exit 0 means solved.
    pub check: Vec<String>,
    /// Paths (relative to the repo) the check relies on: any change fails
    /// the case.
    pub protected: Vec<String>,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Orchestrator steps.
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// Prompt and completion tokens over the run.
    #[serde(default = "default_tokens")]
    pub tokens: u64,
    /// Wall time of the run.
    #[serde(default = "default_seconds")]
    pub seconds: u64,
}

fn default_steps() -> usize {
    6
}

fn default_tokens() -> u64 {
    100_000
}

fn default_seconds() -> u64 {
    900
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            steps: default_steps(),
            tokens: default_tokens(),
            seconds: default_seconds(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default = "one")]
    difficulty: u32,
    #[serde(default = "coder")]
    role: crate::role::Role,
    check: Option<Vec<String>>,
    #[serde(default)]
    protected: Vec<String>,
    #[serde(default)]
    limits: Limits,
}

fn one() -> u32 {
    1
}

fn coder() -> crate::role::Role {
    crate::role::Role::Coder
}

/// A case that cannot run, and why, in words that name it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("case {case}: {message}")]
pub struct CaseError {
    pub case: String,
    pub message: String,
}

/// The suite's cases in name order, and the folders that are not valid
/// cases. A folder without `case.toml` at all is not a case (a README's
/// folder, say) unless it has a `repo/`.
pub fn load(suite: &Path) -> std::io::Result<(Vec<Case>, Vec<CaseError>)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(suite)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for dir in dirs {
        if !dir.join("case.toml").exists() && !dir.join("repo").exists() {
            continue;
        }
        match case(&dir) {
            Ok(c) => cases.push(c),
            Err(e) => errors.push(e),
        }
    }
    Ok((cases, errors))
}

/// Reads and checks one case folder.
pub fn case(dir: &Path) -> Result<Case, CaseError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let fail = |message: String| CaseError {
        case: name.clone(),
        message,
    };
    let file = dir.join("case.toml");
    let text = std::fs::read_to_string(&file)
        .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?;
    let raw: RawCase = toml::from_str(&text)
        .map_err(|e| fail(format!("{}: {}", file.display(), e.to_string().trim_end())))?;
    let check = raw.check.filter(|c| !c.is_empty()).ok_or_else(|| {
        fail(format!(
            "{} has no check: add `check = [\"python3\", \"-m\", \"unittest\"]` (the command whose exit status 0 means solved)",
            file.display()
        ))
    })?;
    let repo = dir.join("repo");
    if !repo.is_dir() {
        return Err(fail(format!(
            "{} is not a directory: put the repository snapshot the agent works on there",
            repo.display()
        )));
    }
    runnable(&check[0], &repo).map_err(fail)?;
    for p in &raw.protected {
        if !repo.join(p).exists() {
            return Err(fail(format!(
                "protected file {p} is not in {}",
                repo.display()
            )));
        }
    }
    if raw.limits.steps == 0 {
        return Err(fail(format!(
            "{}: limits.steps must be at least 1",
            file.display()
        )));
    }
    Ok(Case {
        name,
        repo,
        title: raw.title,
        description: raw.description,
        tags: raw.tags,
        difficulty: raw.difficulty,
        role: raw.role,
        check,
        protected: raw.protected,
        limits: raw.limits,
    })
}

/// The check's program exists and may be run: a path (relative to the
/// repo) must be an executable file; a bare name must be on PATH.
fn runnable(program: &str, repo: &Path) -> Result<(), String> {
    let found = if program.contains('/') {
        let p = repo.join(program);
        if !p.is_file() {
            return Err(format!("the check {program} is not a file in the repo"));
        }
        p
    } else {
        match std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
        {
            Some(p) => p,
            None => return Err(format!("the check's program {program} is not on PATH")),
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&found)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        if mode & 0o111 == 0 {
            return Err(format!(
                "the check {program} is not executable: chmod +x {}",
                found.display()
            ));
        }
    }
    Ok(())
}
