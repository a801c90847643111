//! GPU memory: NVML when the driver's library loads, else `nvidia-smi`,
//! else no GPU seen (a fact, not an error).

use std::process::Command;
use std::time::Duration;

pub use super::snapshot::{Gpu, Gpus};

/// The query `nvidia-smi` is asked.
pub const NVIDIA_SMI_ARGS: [&str; 2] = [
    "--query-gpu=index,name,memory.total,memory.used,memory.free,mig.mode.current",
    "--format=csv,noheader,nounits",
];

/// A detector that keeps NVML open between refreshes (it costs ~100 ms to
/// load) and remembers that it is absent.
#[derive(Default)]
pub struct Detector {
    nvml: Option<nvml_wrapper::Nvml>,
    nvml_error: Option<String>,
    tried: bool,
}

impl Detector {
    pub fn detect(&mut self) -> Gpus {
        if !self.tried {
            self.tried = true;
            let off = std::env::var("LLMCLIS_NVML").is_ok_and(|v| v == "0");
            match if off {
                None
            } else {
                Some(nvml_wrapper::Nvml::init())
            } {
                None => self.nvml_error = Some("NVML off (LLMCLIS_NVML=0)".into()),
                Some(Ok(n)) => self.nvml = Some(n),
                Some(Err(nvml_wrapper::error::NvmlError::LibloadingError(_))) => {
                    self.nvml_error = Some("libnvidia-ml.so.1 not found".into())
                }
                Some(Err(e)) => self.nvml_error = Some(format!("NVML: {e}")),
            }
        }
        if let Some(nvml) = &self.nvml {
            match read_nvml(nvml) {
                Ok(devices) => {
                    return Gpus {
                        source: "nvml",
                        devices,
                        note: None,
                    };
                }
                Err(e) => self.nvml_error = Some(format!("NVML: {e}")),
            }
        }
        let smi = nvidia_smi();
        match smi {
            Ok(devices) if !devices.is_empty() => Gpus {
                source: "nvidia-smi",
                devices,
                note: None,
            },
            Ok(_) => none(self.nvml_error.clone(), "nvidia-smi lists no GPU".into()),
            Err(e) => none(self.nvml_error.clone(), e),
        }
    }
}

fn none(nvml: Option<String>, smi: String) -> Gpus {
    let why = match nvml {
        Some(n) => format!("{n}; {smi}"),
        None => smi,
    };
    Gpus {
        source: "none",
        devices: Vec::new(),
        note: Some(format!("no NVIDIA GPU seen ({why})")),
    }
}

fn read_nvml(nvml: &nvml_wrapper::Nvml) -> Result<Vec<Gpu>, nvml_wrapper::error::NvmlError> {
    let mut out = Vec::new();
    for index in 0..nvml.device_count()? {
        let d = nvml.device_by_index(index)?;
        let mem = d.memory_info()?;
        out.push(Gpu {
            index,
            name: d.name().unwrap_or_default(),
            total: Some(mem.total),
            used: Some(mem.used),
            free: Some(mem.free),
            mig: d.mig_mode().is_ok_and(|m| m.current == 1),
        });
    }
    Ok(out)
}

/// Runs `nvidia-smi` (on PATH) with a timeout: a wedged driver can hang it.
fn nvidia_smi() -> Result<Vec<Gpu>, String> {
    let mut child = Command::new("nvidia-smi")
        .args(NVIDIA_SMI_ARGS)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "nvidia-smi not found".to_string(),
            _ => format!("nvidia-smi: {e}"),
        })?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("nvidia-smi did not answer within 5 s".into());
            }
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // It explains itself on stdout ("NVIDIA-SMI has failed because it
        // couldn't communicate with the NVIDIA driver…").
        let said = String::from_utf8_lossy(&out.stderr);
        let said = [text.trim(), said.trim()]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or("no output")
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        return Err(format!("nvidia-smi failed ({}): {said}", out.status));
    }
    parse_nvidia_smi(&text)
}

/// `nvidia-smi --query-gpu=… --format=csv,noheader,nounits`: one line per
/// GPU, memory in MiB, `[N/A]` where the driver has no figure.
pub fn parse_nvidia_smi(text: &str) -> Result<Vec<Gpu>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() < 5 {
            return Err(format!(
                "nvidia-smi line {}: expected index, name and three memory figures, got {line:?}",
                n + 1
            ));
        }
        // A name may hold commas: the memory figures are the last ones.
        let tail = &f[f.len() - 4..];
        let (mem, mig) = if f.len() >= 6 {
            (&tail[..3], tail[3])
        } else {
            (&f[f.len() - 3..], "")
        };
        let name_end = f.len() - if f.len() >= 6 { 4 } else { 3 };
        let index = f[0].parse().map_err(|_| {
            format!(
                "nvidia-smi line {}: index {:?} is not a number",
                n + 1,
                f[0]
            )
        })?;
        let mib = |s: &str| s.parse::<u64>().ok().map(|m| m << 20);
        out.push(Gpu {
            index,
            name: f[1..name_end].join(","),
            total: mib(mem[0]),
            used: mib(mem[1]),
            free: mib(mem[2]),
            mig: mig.eq_ignore_ascii_case("enabled"),
        });
    }
    Ok(out)
}
