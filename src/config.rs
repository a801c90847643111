//! Where llmclis keeps its files, and the user's `config.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const CONFIG_FILE: &str = "config.toml";
pub const DB_FILE: &str = "llmclis.db";

/// The default config that first-run writes. Every key is optional in the
/// user's copy; missing keys take these values.
pub const DEFAULT_CONFIG: &str = include_str!("../config.default.toml");

/// The directories and files of one installation.
#[derive(Debug, Clone)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    pub db: PathBuf,
    /// The log (XDG state dir).
    pub state_dir: PathBuf,
    /// Downloaded assets: the embedding model, ONNX Runtime (XDG cache dir).
    pub cache_dir: PathBuf,
}

impl Paths {
    /// Explicit values (flags or environment) win over the platform defaults
    /// of the `directories` crate.
    pub fn resolve(
        config_dir: Option<PathBuf>,
        data_dir: Option<PathBuf>,
        db: Option<PathBuf>,
    ) -> Result<Paths> {
        let dirs = directories::ProjectDirs::from("", "", "llmclis");
        let missing = || {
            Error::InvalidInput(
                "cannot find a home directory: set LLMCLIS_CONFIG_DIR and LLMCLIS_DATA_DIR (or pass --config-dir and --data-dir)".into(),
            )
        };
        let config_dir = match config_dir {
            Some(d) => d,
            None => dirs
                .as_ref()
                .ok_or_else(missing)?
                .config_dir()
                .to_path_buf(),
        };
        let explicit_data = data_dir.is_some();
        let data_dir = match data_dir {
            Some(d) => d,
            None => dirs.as_ref().ok_or_else(missing)?.data_dir().to_path_buf(),
        };
        let db = db.unwrap_or_else(|| data_dir.join(DB_FILE));
        // LLMCLIS_STATE_DIR / LLMCLIS_CACHE_DIR, else the platform's; an
        // installation given its own data dir keeps them inside it.
        let own = |var: &str, sub: &str, platform: Option<PathBuf>| -> PathBuf {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| explicit_data.then(|| data_dir.join(sub)))
                .or(platform)
                .unwrap_or_else(|| data_dir.join(sub))
        };
        let state_dir = own(
            "LLMCLIS_STATE_DIR",
            "state",
            dirs.as_ref()
                .and_then(|d| d.state_dir().map(Path::to_path_buf)),
        );
        let cache_dir = own(
            "LLMCLIS_CACHE_DIR",
            "cache",
            dirs.as_ref().map(|d| d.cache_dir().to_path_buf()),
        );
        Ok(Paths {
            config_dir,
            data_dir,
            db,
            state_dir,
            cache_dir,
        })
    }

    /// The log file.
    pub fn log_file(&self) -> PathBuf {
        self.state_dir.join("llmclis.log")
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join(CONFIG_FILE)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub general: General,
    pub queue: Queue,
    pub models: Models,
    pub memory: MemoryConfig,
    pub orchestrator: OrchestratorConfig,
    pub tui: TuiConfig,
    pub tools: ToolsConfig,
    pub serve: ServeConfig,
}

/// `llmclis serve`'s settings beside its flags.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// An OTLP/HTTP collector's base URL (`http://localhost:4318`); the
    /// gateway exports a span per request and one per model attempt there.
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// Coders and testers get the codebase tools when their project has a
    /// root (`project add --root DIR`).
    pub enabled: bool,
    /// Write to the project's files; otherwise changes are recorded as a
    /// proposed diff (`orchestrate --allow-writes` turns it on for a run).
    pub allow_writes: bool,
    /// Tool calls per executor answer.
    pub max_calls: usize,
    pub timeout_secs: u64,
    /// Bytes of a command's output the model sees (the end is kept).
    pub output_cap: usize,
    /// Commands a model may run by name, for every project: `test = ["cargo", "test"]`.
    pub commands: std::collections::BTreeMap<String, Vec<String>>,
    /// Per project id, more commands (or other ones under the same names).
    pub projects: std::collections::BTreeMap<String, ProjectTools>,
    /// With writes on in a git project, how a done task's commit lands:
    /// `merge` (fast-forward, or a clean rebase and the check again) or
    /// `review` (left on its branch for a person).
    pub land: crate::worktree::Land,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectTools {
    pub commands: std::collections::BTreeMap<String, Vec<String>>,
    /// This project's own setting for writes (the global one otherwise).
    pub allow_writes: Option<bool>,
    /// Checks for every task of the project that has none of its own.
    pub check: Vec<String>,
    /// Paths or globs no task's change may touch, beside each task's own.
    pub protect: Vec<String>,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            enabled: true,
            allow_writes: false,
            max_calls: 20,
            timeout_secs: 300,
            output_cap: 16_000,
            commands: Default::default(),
            projects: Default::default(),
            land: crate::worktree::Land::Merge,
        }
    }
}

impl ToolsConfig {
    /// Whether a project's files may be written (`--allow-writes` also turns
    /// it on for a run).
    pub fn writes_for(&self, project_id: i64) -> bool {
        self.projects
            .get(&project_id.to_string())
            .and_then(|p| p.allow_writes)
            .unwrap_or(self.allow_writes)
    }

    /// A task's checks: its own, else its project's default.
    pub fn checks_for(&self, task: &crate::store::Task) -> Vec<String> {
        if !task.checks.is_empty() {
            return task.checks.clone();
        }
        self.projects
            .get(&task.project_id.to_string())
            .map(|p| p.check.clone())
            .unwrap_or_default()
    }

    /// What a task's change must not touch: its own and its project's.
    pub fn protected_for(&self, task: &crate::store::Task) -> Vec<String> {
        let mut all = task.protected.clone();
        if let Some(p) = self.projects.get(&task.project_id.to_string()) {
            for x in &p.protect {
                if !all.contains(x) {
                    all.push(x.clone());
                }
            }
        }
        all
    }

    /// The commands allowed in one project.
    pub fn commands_for(&self, project_id: i64) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut c = self.commands.clone();
        if let Some(p) = self.projects.get(&project_id.to_string()) {
            c.extend(p.commands.clone());
        }
        c
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TuiConfig {
    /// Action name → keys, replacing that action's defaults (see `?` in the
    /// board for the names and keys).
    pub keys: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorConfig {
    /// Tasks worked on at once (`--workers` overrides).
    pub workers: usize,
    /// Executor rounds per model when the critic asks for changes, before
    /// escalating to the next model.
    pub max_rounds: u32,
    /// After a task's check fails, the same model gets its output this
    /// many more times before the next model takes over.
    pub check_rounds: u32,
    /// Tokens of memory context in each executor prompt.
    pub context_tokens: u64,
    /// Memories searched for that context.
    pub memory_top_k: usize,
    /// How deep the planner may split: 1 splits top-level tasks only, 2 their
    /// subtasks too.
    pub max_plan_depth: usize,
    /// When a better model is skipped for memory, unload idle Ollama models
    /// on its device (other roles' small models) and load it, if that makes
    /// room.
    pub make_room: bool,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        OrchestratorConfig {
            workers: 1,
            max_rounds: 3,
            check_rounds: 2,
            context_tokens: 1_500,
            memory_top_k: 5,
            max_plan_depth: 2,
            make_room: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    /// The name written as `agent` when a command gets no `--agent`.
    pub agent: Option<String>,
    /// The project a command is about when none is given and none is
    /// found from the working directory: an id or a name.
    pub default_project: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// `edge` (embedded, no server) or `qdrant` (a Qdrant server).
    pub backend: String,
    /// The Qdrant server, for `backend = "qdrant"`.
    pub qdrant_url: String,
    /// The NAME of the variable holding the Qdrant API key, if it needs one.
    pub qdrant_api_key_env: Option<String>,
    pub collection: String,
    /// `fastembed` (in-process, offline) or `openai` (a server's /v1/embeddings).
    pub embedder: String,
    /// fastembed: the model directory and libonnxruntime.so; empty means the
    /// cache dir's, as `llmclis assets fetch` puts them.
    pub model_dir: Option<PathBuf>,
    pub onnxruntime: Option<PathBuf>,
    /// openai: a registry provider, the served embedding model and its dimension.
    pub openai_provider: Option<String>,
    pub openai_model: Option<String>,
    pub openai_dim: Option<usize>,
    /// A task's raw interactions are summarized past this many, or this many tokens.
    pub compact_after: usize,
    pub compact_tokens: u64,
    /// A run refreshes the project summary every this many done tasks (and
    /// at its end when it finished any); 0: only at the end.
    pub project_summary_every: usize,
    /// When a done task's raw interactions leave the index:
    /// `rolled-up` (its summary is covered by a stage's or the project's),
    /// `summarized` (its own summary covers them) or `off`.
    pub compact: CompactWhen,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            backend: "edge".into(),
            qdrant_url: "http://127.0.0.1:6334".into(),
            qdrant_api_key_env: None,
            collection: "llmclis_memory".into(),
            embedder: "fastembed".into(),
            model_dir: None,
            onnxruntime: None,
            openai_provider: None,
            openai_model: None,
            openai_dim: None,
            compact_after: 20,
            compact_tokens: 4_000,
            project_summary_every: 10,
            compact: CompactWhen::RolledUp,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Models {
    /// `offline` (local providers only) or `online` (local and API).
    pub mode: crate::registry::Mode,
    /// How long one model call keeps waiting while every server it may use
    /// is busy (overloaded or loading) before the task goes back to the
    /// queue.
    pub busy_wait_secs: u64,
}

impl Default for Models {
    fn default() -> Self {
        Models {
            mode: crate::registry::Mode::Offline,
            busy_wait_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Queue {
    /// How long a claim holds a task before another agent may take it.
    pub lease_seconds: u64,
}

impl Default for Queue {
    fn default() -> Self {
        Queue { lease_seconds: 900 }
    }
}

impl Config {
    /// Reads the user's config; a missing file means the defaults.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(Error::io(path, e)),
        };
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    let col = s.start - text[..s.start].rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("line {line}, column {col}: ")
                })
                .unwrap_or_default();
            Error::Config {
                path: path.to_path_buf(),
                message: format!(
                    "{at}{}; fix the file or delete it to use the defaults",
                    e.message()
                ),
            }
        })
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.queue.lease_seconds)
    }
}

/// The agent name for a command: `--agent`, then `LLMCLIS_AGENT` (both via
/// clap), then the config's `general.agent`, then the login name.
pub fn agent_name(flag: Option<&str>, config: &Config) -> String {
    let pick = |s: Option<&str>| s.map(str::trim).filter(|s| !s.is_empty()).map(String::from);
    pick(flag)
        .or_else(|| pick(config.general.agent.as_deref()))
        .or_else(|| pick(std::env::var("USER").ok().as_deref()))
        .unwrap_or_else(|| "human".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_file_matches_the_defaults_in_code() {
        let parsed = Config::parse(DEFAULT_CONFIG, Path::new("config.default.toml")).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let err = Config::parse("[queue]\nlease_secs = 3\n", Path::new("c.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("c.toml: line 2, column 1:"), "{msg}");
        assert!(msg.contains("lease_secs"), "{msg}");
    }

    #[test]
    fn partial_config_keeps_defaults() {
        let c = Config::parse("[general]\nagent = \"max\"\n", Path::new("c.toml")).unwrap();
        assert_eq!(c.general.agent.as_deref(), Some("max"));
        assert_eq!(c.queue.lease_seconds, 900);
    }
}

/// When a done task's raw interactions leave the index (`[memory]
/// compact`). They stay in SQLite either way, for `memory show` and a
/// later `memory reindex` that keeps the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompactWhen {
    /// Never automatically (`memory compact` still can).
    Off,
    /// As soon as the task's own summary covers them.
    Summarized,
    /// Once the task's summary is itself covered by a roll-up above it (its
    /// stage's or the project's): the work is two levels up the tree.
    #[default]
    RolledUp,
}
