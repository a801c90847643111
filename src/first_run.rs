//! `llmclis first-run`: creates the directories, the database, the default
//! config, and installs the registry and prompts, never overwriting a file
//! the user edited. Run again, it changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, DEFAULT_CONFIG, Paths};
use crate::defaults::INSTALLED_FILES;
use crate::error::{Error, Result};
use crate::fsutil::{sha256_hex, write_atomic};
use crate::store::{SCHEMA_VERSION, Store};

/// Remembers the hash of each file first-run installed, so a later run can
/// tell "our older default" (safe to update) from "edited by the user" (kept).
const MANIFEST: &str = ".llmclis-installed.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    files: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    /// The user's edited copy stays as it is.
    KeptEdited,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub what: String,
    pub path: PathBuf,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub steps: Vec<Step>,
    pub schema_version: i64,
    pub projects: usize,
    pub next_command: String,
}

impl Report {
    pub fn changed(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.outcome, Outcome::Created | Outcome::Updated))
    }
}

/// What first-run would change, without changing it: used to ask first.
pub fn pending_changes(paths: &Paths) -> Vec<String> {
    let mut out = Vec::new();
    for dir in [&paths.config_dir, &paths.data_dir] {
        if !dir.is_dir() {
            out.push(format!("create {}", dir.display()));
        }
    }
    if !paths.config_file().exists() {
        out.push(format!("write {}", paths.config_file().display()));
    }
    let manifest = read_manifest(&paths.config_dir);
    for (rel, content) in INSTALLED_FILES {
        let path = paths.config_dir.join(rel);
        match install_outcome(&path, content, manifest.files.get(*rel)) {
            Outcome::Created => out.push(format!("install {}", path.display())),
            Outcome::Updated => out.push(format!("update {} (unedited)", path.display())),
            Outcome::Unchanged | Outcome::KeptEdited => {}
        }
    }
    if !paths.db.exists() {
        out.push(format!("create the database {}", paths.db.display()));
    }
    out
}

pub fn run(paths: &Paths) -> Result<Report> {
    let mut steps = Vec::new();
    for (what, dir) in [
        ("config directory", &paths.config_dir),
        ("data directory", &paths.data_dir),
    ] {
        let outcome = if dir.is_dir() {
            Outcome::Unchanged
        } else {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            Outcome::Created
        };
        steps.push(Step {
            what: what.into(),
            path: dir.clone(),
            outcome,
        });
    }

    let config_path = paths.config_file();
    let outcome = if config_path.exists() {
        // Kept as the user wrote it, but a broken file is worth saying now.
        Config::load(&config_path)?;
        Outcome::Unchanged
    } else {
        write_atomic(&config_path, DEFAULT_CONFIG.as_bytes())?;
        Outcome::Created
    };
    steps.push(Step {
        what: "config".into(),
        path: config_path,
        outcome,
    });

    let mut manifest = read_manifest(&paths.config_dir);
    let mut manifest_dirty = false;
    for (rel, content) in INSTALLED_FILES {
        let path = paths.config_dir.join(rel);
        let outcome = install_outcome(&path, content, manifest.files.get(*rel));
        if matches!(outcome, Outcome::Created | Outcome::Updated) {
            write_atomic(&path, content.as_bytes())?;
        }
        if outcome != Outcome::KeptEdited {
            let hash = sha256_hex(content.as_bytes());
            if manifest.files.get(*rel) != Some(&hash) {
                manifest.files.insert(rel.to_string(), hash);
                manifest_dirty = true;
            }
        }
        steps.push(Step {
            what: (*rel).to_string(),
            path,
            outcome,
        });
    }
    if manifest_dirty {
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        write_atomic(&paths.config_dir.join(MANIFEST), &json)?;
    }

    let existed = paths.db.exists();
    let store = Store::open(&paths.db)?;
    steps.push(Step {
        what: "database".into(),
        path: paths.db.clone(),
        outcome: if existed {
            Outcome::Unchanged
        } else {
            Outcome::Created
        },
    });
    let projects = store.projects()?;
    let next_command = match projects.first() {
        Some(p) => format!("llmclis task next --project-id {}", p.id),
        None => "llmclis project add NAME --root DIR".to_string(),
    };
    Ok(Report {
        steps,
        schema_version: SCHEMA_VERSION,
        projects: projects.len(),
        next_command,
    })
}

fn install_outcome(path: &Path, shipped: &str, installed_hash: Option<&String>) -> Outcome {
    let Ok(current) = std::fs::read(path) else {
        return Outcome::Created;
    };
    if current == shipped.as_bytes() {
        return Outcome::Unchanged;
    }
    // Differs from what we ship now: ours from an older version, or theirs.
    if installed_hash == Some(&sha256_hex(&current)) {
        Outcome::Updated
    } else {
        Outcome::KeptEdited
    }
}

fn read_manifest(config_dir: &Path) -> Manifest {
    std::fs::read(config_dir.join(MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths::resolve(Some(dir.join("config")), Some(dir.join("data")), None).unwrap()
    }

    #[test]
    fn second_run_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        assert!(run(&p).unwrap().changed());
        let again = run(&p).unwrap();
        assert!(!again.changed(), "{again:?}");
        assert!(pending_changes(&p).is_empty());
    }

    #[test]
    fn an_edited_file_is_kept_and_an_old_default_is_updated() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        run(&p).unwrap();
        let registry = p.config_dir.join("model_registry.yaml");
        std::fs::write(&registry, "# mine\n").unwrap();
        // Pretend the planner prompt is an older default we installed.
        let planner = p.config_dir.join("prompts/planner.md");
        std::fs::write(&planner, "old default\n").unwrap();
        let mut m = read_manifest(&p.config_dir);
        m.files
            .insert("prompts/planner.md".into(), sha256_hex(b"old default\n"));
        std::fs::write(p.config_dir.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();

        let report = run(&p).unwrap();
        let outcome = |what: &str| {
            report
                .steps
                .iter()
                .find(|s| s.what == what)
                .unwrap()
                .outcome
        };
        assert_eq!(outcome("model_registry.yaml"), Outcome::KeptEdited);
        assert_eq!(outcome("prompts/planner.md"), Outcome::Updated);
        assert_eq!(std::fs::read_to_string(&registry).unwrap(), "# mine\n");
        assert_ne!(std::fs::read_to_string(&planner).unwrap(), "old default\n");
    }
}
