//! What detection saw at one instant, as data: the GPUs, RAM, and what
//! each local server holds. The probes (`gpu.rs`, `system.rs`,
//! `servers.rs`) fill it; placement reads it without any IO.

use serde::Serialize;

use crate::registry::Device;

/// Everything detection saw at one instant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// Unix time in milliseconds.
    pub taken_at_ms: i64,
    /// How long gathering it took.
    pub took_ms: u64,
    pub gpus: Gpus,
    pub ram: Option<Ram>,
    /// One per local provider, in registry order.
    pub servers: Vec<ServerState>,
}

/// One GPU as the driver counts it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gpu {
    pub index: u32,
    pub name: String,
    /// Bytes; None where the driver does not say (`[N/A]`).
    pub total: Option<u64>,
    pub used: Option<u64>,
    pub free: Option<u64>,
    /// MIG is on: memory belongs to the instances, not the GPU.
    pub mig: bool,
}

/// What detection saw, and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Gpus {
    /// `nvml`, `nvidia-smi`, or `none`.
    pub source: &'static str,
    pub devices: Vec<Gpu>,
    /// Why nothing was seen, or what went wrong on the way.
    pub note: Option<String>,
}

/// System RAM and swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ram {
    pub total: u64,
    /// What the kernel says can be had without swapping (`MemAvailable`).
    pub available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

/// A model a server holds in memory now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Loaded {
    pub name: String,
    /// Bytes, when the server says (Ollama).
    pub size: Option<u64>,
    pub size_vram: Option<u64>,
    /// When Ollama unloads it unless it is used again (RFC 3339).
    pub expires_at: Option<String>,
}

impl Loaded {
    /// What it holds on `device`, when the server says (Ollama's
    /// `size_vram` on a GPU, `size` in RAM); a zero is no figure.
    pub fn bytes_on(&self, device: Device) -> Option<u64> {
        match device {
            Device::Gpu(_) => self.size_vram,
            Device::Cpu => self.size,
        }
        .filter(|b| *b > 0)
    }

    /// Its name and size for people: `qwen2.5:7b (6.6 GiB)`.
    pub fn describe(&self) -> String {
        match self.size_vram.filter(|b| *b > 0).or(self.size) {
            Some(b) => format!("{} ({})", self.name, crate::registry::gib(b)),
            None => self.name.clone(),
        }
    }

    pub(super) fn named(name: &str) -> Loaded {
        Loaded {
            name: name.to_string(),
            size: None,
            size_vram: None,
            expires_at: None,
        }
    }
}

/// One local server at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerState {
    pub provider: String,
    pub flavour: Option<String>,
    pub device: Option<Device>,
    pub up: bool,
    pub error: Option<String>,
    pub loaded: Vec<Loaded>,
    /// llama.cpp's router mode: several models, loaded on request.
    pub router_mode: bool,
    /// Models it can load on request that are not loaded (router mode).
    pub unloaded: Vec<String>,
    /// Models whose load failed (router mode), with why.
    pub failed: Vec<String>,
    /// llama-cpp-python: it answers only `/v1/models`, and any request to
    /// it interrupts the answer it is streaming; after the first look it
    /// is only connected to, never asked.
    pub lists_only: bool,
    /// vLLM in sleep mode (or llama.cpp asleep): holds no model now.
    pub sleeping: Option<bool>,
    pub running: Option<u32>,
    pub waiting: Option<u32>,
    /// vLLM's KV cache in use, 0 to 1.
    pub kv_cache_usage: Option<f64>,
    /// What it answered that could not be read, and what it lacks.
    pub notes: Vec<String>,
}

/// Whether a server that lists `served` answers requests for `name`: the
/// same name give or take Gemini's `models/` prefix and Ollama's implicit
/// `:latest` tag. TGI and llama.cpp serve their one model whatever the
/// request names (TGI lists it as `tgi`), so for them any name does.
pub fn serves_name(served: &[String], name: &str, flavour: Option<&str>) -> bool {
    if matches!(flavour, Some("tgi" | "llamacpp")) || served.is_empty() {
        return true;
    }
    let norm = |s: &str| {
        let s = s.trim_start_matches("models/");
        s.strip_suffix(":latest").unwrap_or(s).to_string()
    };
    let want = norm(name);
    served.iter().any(|s| norm(s) == want)
}

#[cfg(test)]
mod serves_name_tests {
    use super::serves_name;

    #[test]
    fn ollama_latest_and_single_model_servers_match() {
        let ollama = vec!["llama3.2:latest".to_string(), "qwen2.5:7b".to_string()];
        assert!(serves_name(&ollama, "llama3.2", Some("ollama")));
        assert!(serves_name(&ollama, "llama3.2:latest", Some("ollama")));
        assert!(
            !serves_name(&ollama, "qwen2.5", Some("ollama")),
            "another tag is another model"
        );
        assert!(!serves_name(&ollama, "mistral", Some("ollama")));
        assert!(serves_name(
            &["tgi".to_string()],
            "Qwen/Qwen2.5-7B",
            Some("tgi")
        ));
        let vllm = vec!["Qwen/Qwen2.5-Coder-32B-Instruct-AWQ".to_string()];
        assert!(!serves_name(&vllm, "qwen-coder", Some("vllm")));
    }
}
