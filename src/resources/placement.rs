//! What a snapshot means for each local model, without any IO: whether it
//! is loaded, could be loaded or does not fit (`Fit`, `Placement`), each
//! device's memory, whether the whole stack fits, and what to unload to
//! make room. The router reads a `View` of these; the watch (`watch.rs`)
//! keeps it fresh.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use super::snapshot::{ServerState, Snapshot};
use crate::registry::{Device, Model, Registry, gib};

/// Whether a local model can answer now without loading, could be loaded,
/// or cannot.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "fit", rename_all = "snake_case")]
pub enum Fit {
    /// Its server holds it now.
    Loaded,
    /// Not loaded, and its figure fits its device's free memory.
    Fits {
        device: Device,
        need: u64,
        free: u64,
    },
    /// Not loaded, and it needs more than its device has free.
    DoesNotFit {
        device: Device,
        need: u64,
        free: u64,
    },
    /// Its server holds no model now and does not load one on a request
    /// (vLLM or llama.cpp in sleep mode): `models load` wakes it.
    Asleep,
    /// The registry or the machine does not say enough to tell.
    Unknown { why: String },
}

impl Fit {
    /// `loaded`, `fits: needs …`, `needs 23.5 GiB, 6.1 GiB free on GPU 0`,
    /// `asleep: …`, `unknown: …`.
    pub fn describe(&self) -> String {
        match self {
            Fit::Loaded => "loaded".into(),
            Fit::Fits { device, need, free } => {
                format!(
                    "fits: needs {}, {} free on {device}",
                    gib(*need),
                    gib(*free)
                )
            }
            Fit::DoesNotFit { device, need, free } => does_not_fit(*device, *need, *free),
            Fit::Asleep => "asleep: `llmclis models load` wakes it".into(),
            Fit::Unknown { why } => format!("unknown: {why}"),
        }
    }
}

/// `needs 23.5 GiB, 6.1 GiB free on GPU 0`.
pub fn does_not_fit(device: Device, need: u64, free: u64) -> String {
    format!("needs {}, {} free {}", gib(need), gib(free), on(device))
}

/// `on GPU 0`, `in RAM`.
fn on(device: Device) -> String {
    match device {
        Device::Gpu(_) => format!("on {device}"),
        Device::Cpu => "in RAM".into(),
    }
}

/// A model as the router sees it: its fit and its server's queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    #[serde(flatten)]
    pub fit: Fit,
    /// Requests its server is working on, and waiting to start, when it says.
    pub running: Option<u32>,
    pub waiting: Option<u32>,
}

impl Placement {
    pub fn unknown(why: &str) -> Placement {
        Placement {
            fit: Fit::Unknown { why: why.into() },
            running: None,
            waiting: None,
        }
    }

    /// Lower is preferred among the same weights on several servers: a
    /// loaded model first, one that can load next, then the shorter queue.
    pub fn rank(&self) -> (u8, u32, u32) {
        let loaded = match self.fit {
            Fit::Loaded => 0,
            Fit::Fits { .. } => 1,
            Fit::Unknown { .. } => 2,
            Fit::Asleep | Fit::DoesNotFit { .. } => 3,
        };
        (loaded, self.waiting.unwrap_or(0), self.running.unwrap_or(0))
    }
}

/// Memory on one device: what it has, what is free for a model to load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceMemory {
    pub device: Device,
    pub name: Option<String>,
    pub total: Option<u64>,
    pub used: Option<u64>,
    /// Free for a new model: detected free (or the budget less what the
    /// servers say they hold), less the registry's headroom.
    pub free: Option<u64>,
    /// `nvml`, `nvidia-smi`, `/proc/meminfo`, `registry` (a budget), or
    /// `registry+servers` (a budget less what the servers hold).
    pub source: &'static str,
}

/// Each device the registry's providers use, with its memory.
pub fn devices(registry: &Registry, snap: &Snapshot) -> Vec<DeviceMemory> {
    let mut wanted: Vec<Device> = registry.providers.iter().filter_map(|p| p.device).collect();
    wanted.extend(snap.gpus.devices.iter().map(|g| Device::Gpu(g.index)));
    wanted.extend(registry.machine.gpu_memory.keys().map(|&i| Device::Gpu(i)));
    wanted.sort();
    wanted.dedup();
    wanted
        .into_iter()
        .map(|d| device_memory(registry, snap, d))
        .collect()
}

fn device_memory(registry: &Registry, snap: &Snapshot, device: Device) -> DeviceMemory {
    let headroom = registry.machine.headroom;
    let (name, detected_total, detected_used, detected_free, source) = match device {
        Device::Gpu(i) => match snap.gpus.devices.iter().find(|g| g.index == i) {
            // Under MIG the GPU's own figures are not what an instance has.
            Some(g) if !g.mig => (
                Some(g.name.clone()),
                g.total,
                g.used,
                g.free,
                snap.gpus.source,
            ),
            Some(g) => (Some(format!("{} (MIG)", g.name)), None, None, None, "none"),
            None => (None, None, None, None, "none"),
        },
        Device::Cpu => match snap.ram {
            Some(r) => (
                None,
                Some(r.total),
                Some(r.total - r.available.min(r.total)),
                Some(r.available),
                "/proc/meminfo",
            ),
            None => (None, None, None, None, "none"),
        },
    };
    let budget = match device {
        Device::Gpu(i) => registry.machine.gpu_memory.get(&i).copied(),
        Device::Cpu => registry.machine.ram,
    };
    let (total, used, free, source) = match (budget, detected_used) {
        // The user's figure for the size; what is in use as detected.
        (Some(b), Some(used)) => (
            Some(b),
            Some(used),
            Some(b.saturating_sub(used)),
            "registry",
        ),
        // No detection: the budget less what the servers say they hold.
        (Some(b), None) => {
            let held = held_on(registry, snap, device);
            (
                Some(b),
                Some(held),
                Some(b.saturating_sub(held)),
                "registry+servers",
            )
        }
        (None, _) => (detected_total, detected_used, detected_free, source),
    };
    DeviceMemory {
        device,
        name,
        total,
        used,
        free: free.map(|f| f.saturating_sub(headroom)),
        source,
    }
}

/// What the servers on `device` say they hold: Ollama's `size_vram` (or
/// `size` on the CPU), else the registry's figure of each loaded model.
fn held_on(registry: &Registry, snap: &Snapshot, device: Device) -> u64 {
    snap.servers
        .iter()
        .filter(|s| s.device == Some(device))
        .flat_map(|s| s.loaded.iter().map(move |l| (s, l)))
        .map(|(s, l)| {
            l.bytes_on(device).unwrap_or_else(|| {
                owner(registry, s, &l.name)
                    .and_then(|m| m.memory)
                    .map_or(0, |m| m.total())
            })
        })
        .sum()
}

/// The registry model a server's loaded `name` is.
fn owner<'r>(registry: &'r Registry, server: &ServerState, name: &str) -> Option<&'r Model> {
    registry
        .models
        .iter()
        .find(|m| m.provider == server.provider && names_match(server, name, &m.served_name))
}

/// Whether a server's loaded `name` is `served_name`: a single-model
/// server (TGI, llama.cpp) answers to any name; a router of several
/// models, and every other server, by the name itself.
pub fn names_match(server: &ServerState, loaded: &str, served_name: &str) -> bool {
    if server.router_mode {
        return loaded == served_name;
    }
    super::snapshot::serves_name(
        &[loaded.to_string()],
        served_name,
        server.flavour.as_deref(),
    )
}

/// Each local model's placement under a snapshot. Pure.
pub fn placements(registry: &Registry, snap: &Snapshot) -> HashMap<String, Placement> {
    let memory: HashMap<Device, DeviceMemory> = devices(registry, snap)
        .into_iter()
        .map(|d| (d.device, d))
        .collect();
    registry
        .models
        .iter()
        .filter(|m| registry.provider_of(m).local)
        .map(|m| (m.id.clone(), placement(registry, snap, &memory, m)))
        .collect()
}

fn placement(
    registry: &Registry,
    snap: &Snapshot,
    memory: &HashMap<Device, DeviceMemory>,
    m: &Model,
) -> Placement {
    let provider = registry.provider_of(m);
    let Some(server) = snap.servers.iter().find(|s| s.provider == provider.name) else {
        return Placement::unknown("not probed yet");
    };
    let queue = |fit| Placement {
        fit,
        running: server.running,
        waiting: server.waiting,
    };
    if !server.up {
        return queue(Fit::Unknown {
            why: format!("{} is not answering", provider.name),
        });
    }
    if server
        .loaded
        .iter()
        .any(|l| names_match(server, &l.name, &m.served_name))
    {
        return queue(Fit::Loaded);
    }
    if server.sleeping == Some(true) {
        return queue(Fit::Asleep);
    }
    let Some(device) = provider.device else {
        return queue(Fit::Unknown {
            why: format!("provider {} has no device in the registry", provider.name),
        });
    };
    let Some(need) = m.memory else {
        return queue(Fit::Unknown {
            why: "no memory figure in the registry".into(),
        });
    };
    let Some(free) = memory.get(&device).and_then(|d| d.free) else {
        return queue(Fit::Unknown {
            why: format!("{device}'s free memory is not known"),
        });
    };
    // Ollama evicts its own idle models to load another: what it holds on
    // this device is free to it.
    let own = if provider.is_ollama() {
        held_on_server(server, device)
    } else {
        0
    };
    let free = free + own;
    let need = need.total();
    queue(if need <= free {
        Fit::Fits { device, need, free }
    } else {
        Fit::DoesNotFit { device, need, free }
    })
}

fn held_on_server(server: &ServerState, device: Device) -> u64 {
    server
        .loaded
        .iter()
        .filter_map(|l| l.bytes_on(device))
        .sum()
}

/// What the servers that answer on one GPU want together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackFit {
    pub device: Device,
    /// Its size (a budget, or as detected), less the headroom.
    pub total: Option<u64>,
    /// Each server and what it takes: its model's figure (Ollama: its
    /// largest model's), None when the registry gives none.
    pub parts: Vec<(String, Option<u64>)>,
}

impl StackFit {
    pub fn need(&self) -> u64 {
        self.parts.iter().filter_map(|p| p.1).sum()
    }
}

/// Per GPU, the local servers that answer and what they take (for doctor).
pub fn stack_fit(registry: &Registry, snap: &Snapshot) -> Vec<StackFit> {
    let memory = devices(registry, snap);
    let mut out: Vec<StackFit> = Vec::new();
    for s in snap.servers.iter().filter(|s| s.up) {
        let Some(device @ Device::Gpu(_)) = s.device else {
            continue;
        };
        let takes = registry
            .models
            .iter()
            .filter(|m| m.provider == s.provider)
            .filter_map(|m| m.memory.map(|n| n.total()))
            .max();
        let fit = match out.iter_mut().find(|f| f.device == device) {
            Some(f) => f,
            None => {
                let d = memory.iter().find(|d| d.device == device);
                out.push(StackFit {
                    device,
                    total: d
                        .and_then(|d| d.total)
                        .map(|t| t.saturating_sub(registry.machine.headroom)),
                    parts: Vec::new(),
                });
                out.last_mut().expect("just pushed")
            }
        };
        fit.parts.push((s.provider.clone(), takes));
    }
    out
}

/// Which loaded Ollama models to unload so that `model` fits its device:
/// registry models on an Ollama server on the same device, not busy,
/// largest first, until enough is free (none for a sleeping model that
/// fits as it is: it only needs waking). None when the model already fits
/// or is loaded, or when unloading every idle one would not make room.
pub fn make_room(
    registry: &Registry,
    view: &View,
    model: &str,
    busy: &dyn Fn(&str) -> bool,
) -> Option<Vec<(String, u64)>> {
    let (device, need, free) = match view.placements.get(model)?.fit {
        Fit::DoesNotFit { device, need, free } => (device, need, free),
        // Asleep: wake it, after making room when its figure says so.
        Fit::Asleep => {
            let m = registry.model(model)?;
            let device = registry.provider_of(m).device;
            let free = device.and_then(|d| {
                devices(registry, &view.snapshot)
                    .into_iter()
                    .find(|x| x.device == d)?
                    .free
            });
            match (device, m.memory, free) {
                (Some(d), Some(n), Some(f)) if n.total() > f => (d, n.total(), f),
                _ => return Some(Vec::new()),
            }
        }
        _ => return None,
    };
    let mut idle: Vec<(String, u64)> = Vec::new();
    for s in view
        .snapshot
        .servers
        .iter()
        .filter(|s| s.device == Some(device))
    {
        let provider = registry.provider(&s.provider)?;
        if !provider.is_ollama() || provider.name == registry.model(model)?.provider {
            continue;
        }
        for l in &s.loaded {
            let frees = l.bytes_on(device).unwrap_or(0);
            if let Some(m) = owner(registry, s, &l.name)
                && !busy(&m.id)
                && frees > 0
            {
                idle.push((m.id.clone(), frees));
            }
        }
    }
    idle.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut freed = free;
    let mut out = Vec::new();
    for (id, frees) in idle {
        if freed >= need {
            break;
        }
        freed += frees;
        out.push((id, frees));
    }
    (freed >= need).then_some(out)
}

/// A snapshot and what it means for each model: what the router reads.
#[derive(Debug, Default)]
pub struct View {
    pub snapshot: Snapshot,
    pub placements: HashMap<String, Placement>,
    /// When it was taken, for its age.
    pub at: Option<Instant>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::GIB;
    use crate::resources::snapshot::{Gpu, Gpus, Loaded, Ram};

    fn gb(x: f64) -> u64 {
        (x * GIB) as u64
    }

    fn server(provider: &str, flavour: &str, device: Device, loaded: &[&str]) -> ServerState {
        ServerState {
            provider: provider.into(),
            flavour: Some(flavour.into()),
            device: Some(device),
            up: true,
            loaded: loaded
                .iter()
                .map(|n| Loaded {
                    name: n.to_string(),
                    size: None,
                    size_vram: None,
                    expires_at: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// An RTX 5090 with `free` GiB free, 24 GiB of RAM available.
    pub(crate) fn snapshot(free: f64, servers: Vec<ServerState>) -> Snapshot {
        Snapshot {
            gpus: Gpus {
                source: "nvidia-smi",
                devices: vec![Gpu {
                    index: 0,
                    name: "NVIDIA GeForce RTX 5090".into(),
                    total: Some(32607 << 20),
                    used: Some((32607 << 20) - gb(free)),
                    free: Some(gb(free)),
                    mig: false,
                }],
                note: None,
            },
            ram: Some(Ram {
                total: gb(32.0),
                available: gb(24.0),
                swap_total: 0,
                swap_free: 0,
            }),
            servers,
            ..Default::default()
        }
    }

    #[test]
    fn a_model_is_loaded_fits_or_does_not_by_its_devices_free_memory() {
        let r = Registry::builtin();
        let mut ollama = server("ollama", "ollama", Device::Gpu(0), &["qwen2.5:7b-instruct"]);
        ollama.loaded[0].size_vram = Some(gb(6.6));
        let snap = snapshot(
            6.1,
            vec![
                server("vllm", "vllm", Device::Gpu(0), &[]),
                ollama,
                server(
                    "llamacpp",
                    "llamacpp",
                    Device::Cpu,
                    &["SmolLM2-135M-Instruct"],
                ),
            ],
        );
        let p = placements(&r, &snap);
        assert_eq!(p["qwen-7b"].fit, Fit::Loaded);
        assert_eq!(p["smollm2-135m"].fit, Fit::Loaded);
        match &p["qwen-coder-32b"].fit {
            f @ Fit::DoesNotFit { device, .. } => {
                assert_eq!(*device, Device::Gpu(0));
                assert_eq!(f.describe(), "needs 23.5 GiB, 6.1 GiB free on GPU 0");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&p["qwen-coder-32b-tgi"].fit, Fit::Unknown { why } if why == "not probed yet")
        );
        // API models have no placement.
        assert!(!p.contains_key("gpt-4.1"));

        // Ollama evicts its own models: what it holds is free to it.
        let mut ollama = server("ollama", "ollama", Device::Gpu(0), &["llama3.2:latest"]);
        ollama.loaded[0].size_vram = Some(gb(3.0));
        let p = placements(&r, &snapshot(4.0, vec![ollama]));
        assert!(matches!(p["qwen-7b"].fit, Fit::Fits { free, .. } if free == gb(7.0)));
    }

    #[test]
    fn room_is_made_by_unloading_idle_ollama_models_largest_first() {
        let r = Registry::builtin();
        let mut ollama = server("ollama", "ollama", Device::Gpu(0), &["qwen2.5:7b-instruct"]);
        ollama.loaded[0].size_vram = Some(gb(6.6));
        let snap = snapshot(
            20.0,
            vec![server("vllm", "vllm", Device::Gpu(0), &[]), ollama],
        );
        let view = View {
            placements: placements(&r, &snap),
            snapshot: snap,
            at: None,
        };
        // 20 GiB free, 23.5 needed: the idle 7B's 6.6 GiB makes room.
        let plan = make_room(&r, &view, "qwen-coder-32b", &|_| false).unwrap();
        assert_eq!(plan, [("qwen-7b".to_string(), gb(6.6))]);
        // In use: nothing is unloaded, and there is no room.
        assert_eq!(
            make_room(&r, &view, "qwen-coder-32b", &|m| m == "qwen-7b"),
            None
        );
        // A model that fits or is loaded needs no room.
        assert_eq!(make_room(&r, &view, "qwen-7b", &|_| false), None);
    }

    #[test]
    fn budgets_headroom_mig_and_down_servers() {
        let yaml = crate::registry::DEFAULT_REGISTRY.replacen(
            "# resources:\n#   gpu_memory_gib: { 0: 31.8 }",
            "resources:\n  gpu_memory_gib: { 0: 24 }\n  headroom_gib: 1",
            1,
        );
        let r = Registry::parse(&yaml, "r.yaml").unwrap();
        // No GPU seen: the budget less what the servers hold.
        let mut snap = snapshot(0.0, vec![server("tgi", "tgi", Device::Gpu(0), &["x"])]);
        snap.gpus = Gpus::default();
        let d = devices(&r, &snap);
        let gpu0 = d.iter().find(|d| d.device == Device::Gpu(0)).unwrap();
        assert_eq!(gpu0.source, "registry+servers");
        // 24 − 23.5 (TGI's model, from the registry) − 1 of headroom: none.
        assert_eq!(gpu0.free, Some(0));
        let p = placements(&r, &snap);
        assert!(
            matches!(p["qwen-7b"].fit, Fit::Unknown { .. }),
            "ollama not probed"
        );
        // Detected use under a budget: the budget's size, the detected use.
        let snap = snapshot(30.0, vec![server("ollama", "ollama", Device::Gpu(0), &[])]);
        let gpu0 = devices(&r, &snap)
            .into_iter()
            .find(|d| d.device == Device::Gpu(0))
            .unwrap();
        assert_eq!(gpu0.source, "registry");
        assert_eq!(gpu0.total, Some(24 << 30));
        // MIG: the GPU's figures are not an instance's.
        let mut snap = snapshot(30.0, vec![server("ollama", "ollama", Device::Gpu(0), &[])]);
        snap.gpus.devices[0].mig = true;
        let p = placements(&Registry::builtin(), &snap);
        assert!(matches!(&p["qwen-7b"].fit, Fit::Unknown { why } if why.contains("GPU 0")));
        // A server that does not answer: unknown, never "does not fit".
        let mut down = server("vllm", "vllm", Device::Gpu(0), &[]);
        down.up = false;
        let p = placements(&Registry::builtin(), &snapshot(1.0, vec![down]));
        assert!(
            matches!(&p["qwen-coder-32b"].fit, Fit::Unknown { why } if why.contains("not answering"))
        );
    }
}
