//! Context windows learnt from the servers themselves: what each local
//! server says its window is, where that disagrees with the registry, and
//! the window a call uses.

use std::collections::HashMap;

use serde::Serialize;

use crate::registry::Registry;

/// A server whose window is smaller than the registry says.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WindowMismatch {
    pub model: String,
    pub registry: u64,
    pub server: u64,
}

/// The models of `provider` whose window, as its server reports it
/// (`LlmClient::windows`), is smaller than the registry's.
pub fn window_mismatches(
    registry: &Registry,
    provider: &str,
    windows: &HashMap<String, u64>,
) -> Vec<WindowMismatch> {
    registry
        .models
        .iter()
        .filter(|m| m.provider == provider)
        .filter_map(|m| {
            let reported = windows
                .get(&m.served_name)
                .or_else(|| windows.get(super::ANY_MODEL))?;
            (*reported < m.context_window).then(|| WindowMismatch {
                model: m.id.clone(),
                registry: m.context_window,
                server: *reported,
            })
        })
        .collect()
}
