//! Which files are in use: the answer to "which config, registry, database
//! and log is this?" (`llmclis paths`).

use std::path::Path;

use serde::Serialize;

use super::Context;

/// A file or directory in use, and whether it is there.
#[derive(Debug, Serialize)]
pub struct Place {
    pub what: &'static str,
    pub path: String,
    pub exists: bool,
    /// Why this one: a flag, an environment variable, the config, a default.
    pub note: String,
}

fn place(what: &'static str, path: &Path, note: impl Into<String>) -> Place {
    Place {
        what,
        path: path.display().to_string(),
        exists: path.exists(),
        note: note.into(),
    }
}

/// Every place the settings in use point at, and the project commands
/// here are about. Opens only an existing database.
pub fn places(ctx: &Context) -> Vec<Place> {
    let p = &ctx.paths;
    let registry_dir = p.config_dir.join("model_registry.yaml");
    let (registry, registry_note) = match ctx.registry_file() {
        Some(r) => (r.to_path_buf(), "--registry / LLMCLIS_REGISTRY"),
        None if registry_dir.is_file() => (registry_dir, "the config dir's"),
        None => (registry_dir, "missing: the built-in registry is used"),
    };
    let (model_dir, onnxruntime) = crate::memory::embed::asset_paths(p, &ctx.config.memory);
    vec![
        place(
            "config dir",
            &p.config_dir,
            "--config-dir / LLMCLIS_CONFIG_DIR, else the platform's",
        ),
        place(
            "config file",
            &p.config_file(),
            "defaults apply when missing",
        ),
        place("registry", &registry, registry_note),
        place(
            "prompts",
            &p.config_dir.join("prompts"),
            "your copies win over the built-in ones",
        ),
        place(
            "data dir",
            &p.data_dir,
            "--data-dir / LLMCLIS_DATA_DIR, else the platform's",
        ),
        place(
            "database",
            &p.db,
            "--db / LLMCLIS_DB, else <data dir>/llmclis.db",
        ),
        place(
            "log file",
            &p.log_file(),
            "in the state dir (LLMCLIS_STATE_DIR, else the platform's; <data dir>/state when the data dir is given); LLMCLIS_LOG or RUST_LOG sets the level, -v copies it to stderr",
        ),
        place(
            "memory index",
            &p.data_dir.join("memory"),
            format!("backend {}", ctx.config.memory.backend),
        ),
        place(
            "embedding model",
            &model_dir,
            "LLMCLIS_EMBEDDING_MODEL_DIR, else [memory] model_dir, else the cache dir's (LLMCLIS_CACHE_DIR)",
        ),
        place(
            "ONNX Runtime",
            &onnxruntime,
            "LLMCLIS_ONNXRUNTIME, else [memory] onnxruntime, else the cache dir's",
        ),
        project_here(ctx),
    ]
}

/// The project a command run here is about, and why (`app::here`).
fn project_here(ctx: &Context) -> Place {
    let found = if ctx.paths.db.exists() {
        ctx.store()
            .and_then(|db| super::here::project(ctx, &db, None))
            .map_err(|e| e.to_string())
    } else {
        Err("no database yet".to_string())
    };
    match found {
        Ok(c) => Place {
            what: "project",
            path: format!("{} ({})", c.project_id, c.name),
            exists: true,
            note: format!("{}: {}", c.by, c.why),
        },
        Err(why) => Place {
            what: "project",
            path: "none".into(),
            exists: false,
            note: why,
        },
    }
}

/// An API key the settings name: the variable, never its value.
#[derive(Debug, Serialize)]
pub struct KeyVar {
    /// Who reads it: a registry provider, or the Qdrant server.
    pub for_: String,
    pub variable: String,
    pub set: bool,
}

/// The settings in effect: config.toml with every default filled in, and
/// the environment variables that hold keys (`llmclis config show`).
#[derive(Debug, Serialize)]
pub struct Effective {
    pub config_file: String,
    pub exists: bool,
    pub settings: crate::config::Config,
    pub keys: Vec<KeyVar>,
    /// The registry could not be read: why (its keys are then not listed).
    pub registry_error: Option<String>,
}

pub fn effective(ctx: &Context) -> Effective {
    let set = |v: &str| std::env::var(v).is_ok_and(|x| !x.trim().is_empty());
    let mut keys = Vec::new();
    let registry_error = match ctx.registry() {
        Ok(r) => {
            for p in &r.providers {
                if let Some(v) = &p.api_key_env {
                    keys.push(KeyVar {
                        for_: format!("provider {}", p.name),
                        variable: v.clone(),
                        set: set(v),
                    });
                }
            }
            None
        }
        Err(e) => Some(e.to_string()),
    };
    if let Some(v) = &ctx.config.memory.qdrant_api_key_env {
        keys.push(KeyVar {
            for_: "the Qdrant server".into(),
            variable: v.clone(),
            set: set(v),
        });
    }
    let file = ctx.paths.config_file();
    Effective {
        config_file: file.display().to_string(),
        exists: file.is_file(),
        settings: ctx.config.clone(),
        keys,
        registry_error,
    }
}
