//! What the registry says about memory: the device a local provider runs
//! on, what each model takes there, and budgets that override detection.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Bytes in a GiB: every figure in the registry and on screen is binary,
/// as `nvidia-smi` and NVML count.
pub const GIB: f64 = (1u64 << 30) as f64;

/// Where a local provider's models live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Device {
    /// A GPU by its index (as `nvidia-smi` numbers them).
    Gpu(u32),
    /// System RAM.
    Cpu,
}

impl Device {
    /// `cpu`, `gpu:0`, `gpu0` or `0`.
    pub fn parse(text: &str) -> Option<Device> {
        let t = text.trim().to_ascii_lowercase();
        if t == "cpu" {
            return Some(Device::Cpu);
        }
        let index = t
            .strip_prefix("gpu:")
            .or_else(|| t.strip_prefix("gpu"))
            .unwrap_or(&t);
        index.parse().ok().map(Device::Gpu)
    }
}

/// As the registry spells it: `gpu:0`, `cpu`.
impl Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Device::Gpu(i) => s.collect_str(&format_args!("gpu:{i}")),
            Device::Cpu => s.serialize_str("cpu"),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Gpu(i) => write!(f, "GPU {i}"),
            Device::Cpu => f.write_str("RAM"),
        }
    }
}

/// What a model takes on its device once loaded, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryNeed {
    pub weights: u64,
    /// The KV cache at the model's context window.
    pub kv_cache: u64,
    pub overhead: u64,
}

impl MemoryNeed {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.overhead
    }
}

/// `resources:` in the registry: the machine as the user states it, over
/// what detection finds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    /// Bytes per GPU index.
    pub gpu_memory: BTreeMap<u32, u64>,
    pub ram: Option<u64>,
    /// Bytes kept free on every device.
    pub headroom: u64,
}

/// `19.2 GiB`: one decimal, binary units.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB)
}

pub(super) fn bytes(gib: f64) -> u64 {
    (gib * GIB).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_in_every_spelling() {
        assert_eq!(Device::parse("cpu"), Some(Device::Cpu));
        assert_eq!(Device::parse("GPU:1"), Some(Device::Gpu(1)));
        assert_eq!(Device::parse("gpu0"), Some(Device::Gpu(0)));
        assert_eq!(Device::parse("2"), Some(Device::Gpu(2)));
        assert_eq!(Device::parse("tpu"), None);
        assert_eq!(Device::parse("gpu:-1"), None);
        assert_eq!(gib(20_615_843_020), "19.2 GiB");
    }
}
