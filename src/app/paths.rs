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

/// Every place the settings in use point at. Opens nothing.
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
    ]
}
