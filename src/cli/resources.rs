//! `llmclis models status|load|unload`: memory per device, what each
//! local server holds, and each local model's fit.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use super::{Ctx, emit};
use crate::app::models::Resources;
use crate::app::types::Fit;
use crate::app::types::ResourceAction as Action;
use crate::app::types::{Device, gib};
use crate::error::Result;

pub fn status(ctx: &Ctx, out: &mut impl Write) -> Result<()> {
    let registry = Arc::new(ctx.registry()?);
    let rt = crate::app::runtime()?;
    let r = rt.block_on(crate::app::models::resources(registry));
    emit(out, ctx.json, &r, || render(&r))
}

pub fn act(
    ctx: &Ctx,
    id: &str,
    action: Action,
    keep_alive: Option<&str>,
    out: &mut impl Write,
) -> Result<()> {
    let registry = ctx.registry()?;
    crate::app::models::check_local(&registry, id)?;
    let rt = crate::app::runtime()?;
    let done = rt.block_on(crate::app::models::load_or_unload(
        &registry,
        id,
        action,
        keep_alive,
        Duration::from_secs(600),
    ))?;
    emit(out, ctx.json, &done, || {
        let what = match (action, done.already) {
            (Action::Load, false) => "loaded",
            (Action::Load, true) => "was already loaded",
            (Action::Unload, false) => "unloaded",
            (Action::Unload, true) => "was not loaded",
        };
        format!(
            "{} {what} on {} ({}, {} ms)",
            done.model, done.provider, done.request, done.took_ms
        )
    })
}

pub fn render(r: &Resources) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Memory");
    if r.gpu_source == "none" && !r.devices.iter().any(|d| matches!(d.device, Device::Gpu(_))) {
        let _ = writeln!(
            s,
            "  GPU    {}",
            r.gpu_note.as_deref().unwrap_or("no NVIDIA GPU seen")
        );
    }
    for d in &r.devices {
        let label = d.device.to_string();
        let name = d
            .name
            .as_deref()
            .map(|n| format!("  {n}"))
            .unwrap_or_default();
        match (d.used, d.total) {
            (Some(used), Some(total)) => {
                let _ = writeln!(
                    s,
                    "  {label:<6} {} {} / {} used, {} free for models ({}){name}",
                    crate::text::bar(used, total, 20),
                    gib(used),
                    gib(total),
                    d.free.map_or("?".into(), gib),
                    d.source
                );
            }
            _ => {
                let why = match d.device {
                    Device::Gpu(_) if d.name.is_none() => r
                        .gpu_note
                        .clone()
                        .unwrap_or_else(|| "not seen by the driver".into()),
                    _ => "memory not reported".into(),
                };
                let _ = writeln!(
                    s,
                    "  {label:<6} {why}{name}; resources.gpu_memory_gib in the registry sets its size"
                );
            }
        }
    }
    if let Some(ram) = r.ram.filter(|r| r.swap_total > 0) {
        let _ = writeln!(
            s,
            "  swap   {} / {} used",
            gib(ram.swap_total - ram.swap_free.min(ram.swap_total)),
            gib(ram.swap_total)
        );
    }
    let _ = writeln!(s, "\nServers");
    let width = r
        .servers
        .iter()
        .map(|x| x.provider.len())
        .max()
        .unwrap_or(0);
    for sv in &r.servers {
        let device = sv.device.map_or("?".to_string(), |d| d.to_string());
        let state = if !sv.up {
            format!("down: {}", sv.error.as_deref().unwrap_or("no answer"))
        } else if sv.sleeping == Some(true) {
            "asleep (holds no model)".to_string()
        } else if sv.loaded.is_empty() {
            "up, nothing loaded".to_string()
        } else {
            let names: Vec<String> = sv.loaded.iter().map(|l| l.describe()).collect();
            format!("loaded: {}", names.join(", "))
        };
        let mut queue = Vec::new();
        if let Some(n) = sv.running {
            queue.push(format!("{n} running"));
        }
        if let Some(n) = sv.waiting {
            queue.push(format!("{n} waiting"));
        }
        if let Some(k) = sv.kv_cache_usage {
            queue.push(format!("KV cache {:.0}%", k * 100.0));
        }
        let queue = if queue.is_empty() {
            String::new()
        } else {
            format!("; {}", queue.join(", "))
        };
        let _ = writeln!(s, "  {:<width$}  {device:<6} {state}{queue}", sv.provider);
        for f in &sv.failed {
            let _ = writeln!(s, "  {:<width$}         failed to load: {f}", "");
        }
        for n in &sv.notes {
            let _ = writeln!(s, "  {:<width$}         note: {n}", "");
        }
    }
    let _ = writeln!(s, "\nLocal models");
    let width = r.models.iter().map(|m| m.id.len()).max().unwrap_or(0);
    for m in &r.models {
        let fit = match &m.placement.fit {
            Fit::Fits { .. } => format!("not loaded, {}", m.placement.fit.describe()),
            Fit::DoesNotFit { .. } => format!("does not fit: {}", m.placement.fit.describe()),
            other => other.describe(),
        };
        let _ = writeln!(s, "  {:<width$}  {:<10} {fit}", m.id, m.provider);
    }
    let _ = write!(s, "\n(asked in {} ms)", r.took_ms);
    s
}
