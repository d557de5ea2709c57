//! PINN wiring: the process-wide service behind the `PINN.*` commands (telemetry, forecasts,
//! trainer, planner), the slot-mover hook the Raft layer installs, and the heatmap rendering.
//! The model itself lives in the `pinnacle-pinn` crate; see ARCHITECTURE.md, "PINN".
//!
//! Start-up (main.rs): [`prepare_process`] first, before any thread exists; then [`init`] with
//! the server once it is built; in Raft mode also [`set_mover`]. The dispatcher calls
//! [`record`] for every keyed command (and may call [`record_key`] with its first key). With
//! `--dashboard-port`, spawn [`serve_dashboard`]. In a cluster each node pulls the other shard
//! leaders' last-second counts (`PINN.HEAT`, [`exchange`]) so every window is cluster-wide.

pub mod dashboard;
pub mod exchange;
pub mod heatmap;
pub mod mover;
pub mod planner;
mod service;
pub mod settings;

pub use dashboard::serve_dashboard;
pub use mover::{mover, set_mover, MigrationRecord, MoveTarget, ShardInfo, SlotMover};
pub use service::{shards, unix_now, Decision, PinnService, Scores, Snapshot};
pub use settings::{PlannerKind, Settings};

use crate::command::Server;
use std::sync::{Arc, OnceLock};

static SERVICE: OnceLock<PinnService> = OnceLock::new();

/// The process-wide PINN service (created with default settings on first use; counting works
/// before [`init`], the tick thread and the trainer start with it).
pub fn service() -> &'static PinnService {
    SERVICE.get_or_init(|| PinnService::new(Settings::default()))
}

/// Counts one keyed command on `slot`: relaxed atomic adds, no lock, no allocation.
#[inline]
pub fn record(slot: u16, write: bool, bytes: usize) {
    service().record(slot, write, bytes);
}

/// Offers a key to the heavy-hitters sketch, sampled one call in `pinn-key-sample` per thread.
#[inline]
pub fn record_key(key: &[u8]) {
    service().record_key(key);
}

/// Process set-up the trainer needs before any thread exists: candle reads
/// `RAYON_NUM_THREADS` at every matmul, and training belongs on one core.
pub fn prepare_process() {
    pinnacle_pinn::single_threaded_matmul();
}

/// Starts the service for `server`: follows its `pinn-*` configuration, folds once a second
/// and trains in the background (only when enabled and the node is not idle).
pub fn init(server: &Arc<Server>) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        tracing::warn!(
            "PINN: RAYON_NUM_THREADS is unset (call pinn::prepare_process first): training \
             will split matmuls over every core"
        );
    }
    let s = service();
    s.attach(server);
    s.start();
    if s.settings().enabled && s.settings().train {
        // Spawned now so the first round can run as soon as traffic fills the window.
        let _ = s.trainer();
    }
}
