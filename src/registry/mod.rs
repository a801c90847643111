//! `model_registry.yaml`: providers, models, roles, routing rules and modes.
//!
//! The shipped default is compiled in; the user's copy in the config dir wins;
//! `--registry PATH` / `LLMCLIS_REGISTRY` point to another file. Every error
//! names the file, line and column and what was expected. API keys are never
//! in this file: a provider names the environment variable that holds its key.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::RegexSet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod build;
mod device;
mod raw;

pub use device::{Device, GIB, Machine, MemoryNeed, gib};

use build::{build, registry_error};
use raw::RawRegistry;

/// The registry compiled into the binary.
pub const DEFAULT_REGISTRY: &str = include_str!("../../model_registry.yaml");

/// The role names, in the order `Role::ALL` gives them.
pub const ROLES: [&str; 7] = [
    crate::role::Role::Planner.as_str(),
    crate::role::Role::Coder.as_str(),
    crate::role::Role::Tester.as_str(),
    crate::role::Role::Critic.as_str(),
    crate::role::Role::Researcher.as_str(),
    crate::role::Role::Writer.as_str(),
    crate::role::Role::Summarizer.as_str(),
];

const FLAVOURS: [&str; 7] = [
    "vllm",
    "tgi",
    "ollama",
    "llamacpp",
    "lmstudio",
    "openai",
    "openrouter",
];
const CAPABILITIES: [&str; 7] = [
    "tools",
    "code",
    "reasoning",
    "fast",
    "cheap",
    "json_schema",
    "embeddings",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    OpenAiCompatible,
    Anthropic,
}

#[derive(Debug, Clone, Serialize)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// vllm, tgi, ollama, llamacpp, lmstudio, openai, openrouter; None for anthropic.
    pub flavour: Option<String>,
    pub base_url: String,
    /// The NAME of the environment variable with the key, never the key.
    pub api_key_env: Option<String>,
    /// The longest wait for the first byte: the queue, the prompt and,
    /// without streaming, the whole answer.
    #[serde(serialize_with = "secs")]
    pub timeout: Duration,
    /// The longest silence between two chunks of a stream.
    #[serde(serialize_with = "secs")]
    pub idle_timeout: Duration,
    pub max_concurrency: u32,
    pub local: bool,
    /// Where its models live; None when the registry does not say (no
    /// memory check for its models).
    pub device: Option<Device>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl Provider {
    /// The key from the environment, when the provider uses one and it is set.
    pub fn api_key(&self) -> Option<String> {
        key_from_env(self.api_key_env.as_deref()?)
    }

    pub fn is_ollama(&self) -> bool {
        self.flavour.as_deref() == Some("ollama")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub id: String,
    pub provider: String,
    pub served_name: String,
    pub context_window: u64,
    pub max_output_tokens: u64,
    pub cost_per_1m_input: f64,
    pub cost_per_1m_output: f64,
    /// Prompt-cache reads and writes (each the input rate unless given).
    pub cost_per_1m_cached_input: f64,
    pub cost_per_1m_cache_write: f64,
    pub capabilities: Vec<String>,
    /// What it takes on its provider's device; None: unknown, never skipped
    /// for memory.
    pub memory: Option<MemoryNeed>,
    /// The same weights on other servers share a family (default: the
    /// served name, lower case).
    pub family: String,
    /// For a replica (`id@provider`): the registry model it was listed
    /// under, with several providers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_of: Option<String>,
}

impl Model {
    /// USD for a call of this many tokens.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.cost_per_1m_input
            + completion_tokens as f64 * self.cost_per_1m_output)
            / 1e6
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleConfig {
    pub name: String,
    pub temperature: f32,
    /// The escalation order, cheapest and local first.
    pub models: Vec<String>,
    pub keep_alive: Option<String>,
    /// MAKER-style voting on this role's answers, when set.
    pub voting: Option<Voting>,
}

/// `voting: {candidates: k, ahead_by: n, max_tokens: m}` on a role: k
/// answers are sampled at once; empty, cut-off or overlong ones are dropped;
/// voters pick the best until one answer leads by n votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Voting {
    pub candidates: u32,
    pub ahead_by: u32,
    /// An answer longer than this (completion tokens) is red-flagged.
    pub max_tokens: u64,
    /// Ballots before the leader is taken without an n-vote margin;
    /// default 3 × candidates.
    #[serde(default)]
    pub max_votes: Option<u32>,
}

impl Voting {
    pub fn max_votes(&self) -> u32 {
        self.max_votes
            .unwrap_or(self.candidates * 3)
            .max(self.ahead_by)
    }
}

/// What the rule's role is: a fixed role, or the task's own role hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleRole {
    Fixed(crate::role::Role),
    FromHint,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Match {
    pub tags: Vec<String>,
    pub role_hint: Vec<String>,
    pub has_role_hint: Option<bool>,
    /// Index into `Registry::regexes` when the rule has a title regex.
    #[serde(skip)]
    pub regex: Option<usize>,
    pub title_regex: Option<String>,
    pub min_prompt_tokens: Option<u64>,
    pub max_prompt_tokens: Option<u64>,
    pub project: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    pub name: String,
    pub when: Match,
    pub role: RuleRole,
    pub pin: Vec<String>,
    pub exclude: Vec<String>,
    /// The planner sees the task first and may split it into subtasks.
    pub plan: bool,
    /// Voting on the answers to the tasks this rule matches (overrides the
    /// role's).
    pub voting: Option<Voting>,
    /// No conditions: matches every task.
    pub is_default: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    #[serde(default)]
    pub per_run: Option<f64>,
    #[serde(default)]
    pub per_task: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Local providers only.
    Offline,
    /// Local and API providers.
    Online,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModePolicy {
    pub local_only: bool,
    pub budget: Budget,
}

/// The key in the environment variable `var`, trimmed; None when unset or
/// blank: providers' keys and the Qdrant key are read through it.
pub fn key_from_env(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
}

#[derive(Debug, Clone, Serialize)]
pub struct Registry {
    /// Where it was read from (`<built-in>` for the default).
    pub source: String,
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
    pub roles: BTreeMap<crate::role::Role, RoleConfig>,
    pub rules: Vec<Rule>,
    pub offline: ModePolicy,
    pub online: ModePolicy,
    pub machine: Machine,
    #[serde(skip)]
    pub regexes: Option<RegexSet>,
    #[serde(skip)]
    model_index: HashMap<String, usize>,
    /// A replicated model's id → its replicas' ids.
    #[serde(skip)]
    replicas: HashMap<String, Vec<String>>,
    #[serde(skip)]
    provider_index: HashMap<String, usize>,
}

impl Registry {
    pub fn model(&self, id: &str) -> Option<&Model> {
        self.model_index.get(id).map(|i| &self.models[*i])
    }

    /// The replicas' ids of a model listed with several providers.
    pub fn replicas(&self, id: &str) -> Option<&[String]> {
        self.replicas.get(id).map(Vec::as_slice)
    }

    /// The model `id`, or a usage error that says where the ids are listed.
    pub fn known_model(&self, id: &str) -> Result<&Model> {
        if let Some(list) = self.replicas(id) {
            return Err(Error::InvalidInput(format!(
                "model {id:?} runs on several servers: {}; name one",
                list.join(", ")
            )));
        }
        self.model(id).ok_or_else(|| {
            Error::InvalidInput(format!(
                "no model {id:?} in {}; `llmclis models list` shows them",
                self.source
            ))
        })
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.provider_index.get(name).map(|i| &self.providers[*i])
    }

    pub fn provider_of(&self, model: &Model) -> &Provider {
        self.provider(&model.provider).expect("validated reference")
    }

    pub fn policy(&self, mode: Mode) -> &ModePolicy {
        match mode {
            Mode::Offline => &self.offline,
            Mode::Online => &self.online,
        }
    }

    /// The built-in registry.
    pub fn builtin() -> Registry {
        Registry::parse(DEFAULT_REGISTRY, "<built-in>").expect("the shipped registry is valid")
    }

    /// `explicit` (flag or env), else the user's copy in the config dir, else the built-in one.
    pub fn load(explicit: Option<&Path>, config_dir: &Path) -> Result<Registry> {
        let path: Option<PathBuf> = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => Some(config_dir.join("model_registry.yaml")).filter(|p| p.is_file()),
        };
        match path {
            None => Ok(Registry::builtin()),
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
                Registry::parse(&text, &p.display().to_string())
            }
        }
    }

    /// For tests: a registry of `providers` and `models` (YAML flow
    /// mappings, one a line), every role using `chain`, one default rule.
    #[cfg(test)]
    pub(crate) fn for_tests(providers: &[&str], models: &[&str], chain: &[&str]) -> Registry {
        let list = |items: &[&str]| {
            items
                .iter()
                .map(|i| format!("  - {i}\n"))
                .collect::<String>()
        };
        let roles: String = ROLES
            .iter()
            .map(|r| {
                format!(
                    "  {r}: {{ temperature: 0.3, models: [{}] }}\n",
                    chain.join(", ")
                )
            })
            .collect();
        Registry::parse(
            &format!(
                "providers:\n{}models:\n{}roles:\n{roles}rules:\n  - {{ name: default, role: coder }}\nmodes:\n  offline: {{ providers: local }}\n  online: {{ providers: all }}\n",
                list(providers),
                list(models)
            ),
            "test.yaml",
        )
        .expect("a valid test registry")
    }

    /// Parses and validates a registry; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Registry> {
        let raw: RawRegistry = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
            let message = e.without_snippet().to_string();
            let mut message = message
                .lines()
                .next()
                .unwrap_or("invalid YAML")
                .trim()
                .to_string();
            // The location goes in front; drop the parser's own copy at the end.
            if let Some(i) = message.rfind(" at line ") {
                message.truncate(i);
            }
            registry_error(source, line, column, message)
        })?;
        build(raw, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_registry_is_valid() {
        let r = Registry::builtin();
        assert!(r.model("qwen-coder-32b").is_some());
        assert_eq!(r.roles[&crate::role::Role::Critic].temperature, 0.1);
        assert!(r.offline.local_only);
        assert!(!r.online.local_only);
        assert!(
            r.providers
                .iter()
                .filter(|p| !p.local)
                .all(|p| p.api_key_env.is_some())
        );
    }

    #[test]
    fn memory_figures_and_devices_are_read_and_checked_at_their_line() {
        let r = Registry::builtin();
        let coder = r.model("qwen-coder-32b").unwrap();
        assert_eq!(r.provider_of(coder).device, Some(Device::Gpu(0)));
        assert_eq!(gib(coder.memory.unwrap().total()), "23.5 GiB");
        // Per 1k tokens, at the model's window: 0.0534 × 32.768 = 1.75 GiB.
        let q7 = r.model("qwen-7b").unwrap().memory.unwrap();
        assert_eq!(gib(q7.kv_cache), "1.7 GiB");
        assert_eq!(coder.family, r.model("qwen-coder-32b-tgi").unwrap().family);
        assert_eq!(r.provider("llamacpp").unwrap().device, Some(Device::Cpu));

        let line_of =
            |yaml: &str, needle: &str| yaml.lines().position(|l| l.contains(needle)).unwrap() + 1;
        let cases = [
            (
                "kv_gib: 4.0, overhead",
                "kv_gib: 4.0, kv_gib_per_1k: 0.1, overhead",
                "not both",
            ),
            (
                "weights_gib: 18.0, kv_gib: 4.0",
                "weights_gib: 18000.0, kv_gib: 4.0",
                "between 0 and 4096",
            ),
            ("weights_gib: 4.4", "weights_gib: 0", "more than 0"),
            (
                "weights_gib: 4.4",
                "weights_gib: .nan",
                "between 0 and 4096",
            ),
            (
                "overhead_gib: 0.5",
                "overhead_gib: -1",
                "between 0 and 4096",
            ),
            ("weights_gib: 4.4", "weights_mb: 4400", "unknown field"),
            ("device: gpu:0\n", "device: tpu\n", "unknown device \"tpu\""),
            (
                "api_key_env: OPENAI_API_KEY\n",
                "api_key_env: OPENAI_API_KEY\n    device: gpu:0\n",
                "for local providers",
            ),
            (
                "capabilities: [code, fast, json_schema, tools]",
                "capabilities: [code, fast, json_schema, tools]\n    memory: { weights_gib: 1 }",
                "memory is for local models",
            ),
            (
                "# resources:\n#   gpu_memory_gib: { 0: 31.8 }",
                "resources:\n  gpu_memory_gib: { 0: -31.8 }",
                "gpu_memory_gib.0 is -31.8",
            ),
        ];
        for (from, to, expect) in cases {
            assert!(DEFAULT_REGISTRY.contains(from), "{from}");
            let yaml = DEFAULT_REGISTRY.replacen(from, to, 1);
            let err = Registry::parse(&yaml, "r.yaml").unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let msg = err.to_string();
            assert!(msg.contains(expect), "{msg}");
            let first = to.lines().next().unwrap().trim_end_matches("\\n");
            let line = line_of(&yaml, first.trim());
            let said: usize = msg.split(':').nth(1).unwrap().parse().unwrap();
            assert!(
                said == line || said == line + 1,
                "{msg}: expected line {line} ({first})"
            );
        }
        // A GPU as its bare index, and budgets that override detection.
        let yaml = DEFAULT_REGISTRY
            .replacen("device: gpu:0", "device: 1", 1)
            .replacen(
                "# resources:\n#   gpu_memory_gib: { 0: 31.8 }",
                "resources:\n  gpu_memory_gib: { 0: 24 }\n  headroom_gib: 0.5",
                1,
            );
        let r = Registry::parse(&yaml, "r.yaml").unwrap();
        assert_eq!(r.provider("vllm").unwrap().device, Some(Device::Gpu(1)));
        assert_eq!(r.machine.gpu_memory[&0], 24 << 30);
        assert_eq!(r.machine.headroom, 1 << 29);
        // An old registry, with none of it, stays valid.
        let old = DEFAULT_REGISTRY
            .lines()
            .filter(|l| {
                !l.trim_start().starts_with("device:") && !l.trim_start().starts_with("memory:")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let r = Registry::parse(&old, "old.yaml").unwrap();
        assert!(r.models.iter().all(|m| m.memory.is_none()));
    }

    fn replicated(models_line: &str, extra_rule: &str) -> String {
        let roles: String = crate::role::Role::ALL
            .iter()
            .map(|r| format!("  {r}: {{ temperature: 0.3, models: [coder, small] }}\n"))
            .collect();
        format!(
            "providers:\n  - {{ name: a, kind: openai-compatible, flavour: llamacpp, base_url: http://127.0.0.1:1/v1, local: true }}\n  - {{ name: b, kind: openai-compatible, flavour: llamacpp, base_url: http://127.0.0.1:2/v1, local: true }}\nmodels:\n  - {models_line}\n  - {{ id: small, provider: a, served_name: s, context_window: 2048, max_output_tokens: 256 }}\nroles:\n{roles}rules:\n{extra_rule}  - {{ name: default, role: coder }}\nmodes:\n  offline: {{ providers: local }}\n  online: {{ providers: all }}\n"
        )
    }

    #[test]
    fn a_model_on_several_providers_is_one_replica_per_provider() {
        let yaml = replicated(
            "{ id: coder, provider: [a, b], served_name: Q, context_window: 4096, max_output_tokens: 512 }",
            "  - { name: big, role: coder, match: { tags: [big] }, pin: [coder], exclude: [small] }\n",
        );
        let r = Registry::parse(&yaml, "r.yaml").unwrap();
        let a = r.model("coder@a").unwrap();
        let b = r.model("coder@b").unwrap();
        assert_eq!((a.provider.as_str(), b.provider.as_str()), ("a", "b"));
        assert_eq!(a.family, b.family, "replicas are one family");
        assert_eq!(a.replica_of.as_deref(), Some("coder"));
        assert!(r.model("coder").is_none());
        assert_eq!(r.replicas("coder").unwrap(), ["coder@a", "coder@b"]);
        // Roles and rules name the model; they get every replica, in place.
        assert_eq!(
            r.roles[&crate::role::Role::Coder].models,
            ["coder@a", "coder@b", "small"]
        );
        assert_eq!(r.rules[0].pin, ["coder@a", "coder@b"]);
        assert_eq!(r.rules[0].exclude, ["small"]);
        // A command that takes one model says which ids to use.
        let err = r.known_model("coder").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("coder@a, coder@b"), "{err}");
        // One provider in a list is a plain model.
        let one = replicated(
            "{ id: coder, provider: [b], served_name: Q, context_window: 4096, max_output_tokens: 512 }",
            "",
        );
        let r = Registry::parse(&one, "r.yaml").unwrap();
        assert_eq!(r.model("coder").unwrap().provider, "b");
        assert!(r.replicas("coder").is_none());
    }

    #[test]
    fn a_bad_replica_list_is_an_error_at_its_line() {
        for (list, expect) in [
            ("[a, a]", "lists provider \"a\" twice"),
            ("[a, c]", "names provider \"c\", which is not defined"),
            ("[]", "lists no provider"),
        ] {
            let yaml = replicated(
                &format!(
                    "{{ id: coder, provider: {list}, served_name: Q, context_window: 4096, max_output_tokens: 512 }}"
                ),
                "",
            );
            let err = Registry::parse(&yaml, "r.yaml").unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let msg = err.to_string();
            assert!(
                msg.contains(expect) && msg.starts_with("r.yaml:5:"),
                "{msg}"
            );
        }
    }
}
