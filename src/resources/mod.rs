//! What is loaded where and what fits: GPU memory (`gpu.rs`), RAM
//! (`system.rs`) and what each local server holds and how busy it is
//! (`servers.rs`), gathered in the background (`watch.rs`) into a `Snapshot`
//! (`snapshot.rs`, data only); the pure `placement.rs` turns a snapshot and the registry into each local model's
//! `Placement`, which the router reads from the cached `View` and never
//! waits for. `control.rs` loads and unloads models on servers that can.

use std::time::Duration;

pub mod control;
pub mod gpu;
pub mod placement;
pub mod servers;
pub mod snapshot;
pub mod system;
pub mod watch;

pub use placement::{
    DeviceMemory, Fit, Placement, StackFit, View, devices, does_not_fit, make_room, names_match,
    placements, stack_fit,
};
pub use snapshot::{Loaded, ServerState, Snapshot};
pub use watch::Watch;

/// How often a long-lived front end (a run, the board, the gateway)
/// looks again.
pub const REFRESH: Duration = Duration::from_secs(5);
