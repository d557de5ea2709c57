//! The cluster's slot-moving path as the planner and the `PINN.*` commands see it. The Raft
//! layer implements [`SlotMover`] and installs it with [`set_mover`] at start-up; without one
//! the node is a single shard owning every slot and nothing moves.

use std::sync::{Arc, OnceLock};

/// One shard as the planner and PINN.* commands see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// Position of the shard in the cluster's shard list.
    pub index: usize,
    /// 40-hex shard id.
    pub id: String,
    /// Slots owned, as inclusive ranges.
    pub slots: Vec<(u16, u16)>,
    /// 40-hex node id of the shard's leader, if known.
    pub leader_node: Option<String>,
    /// `ip:port` of the shard's leader, if known.
    pub leader_addr: Option<String>,
    /// True when this process leads the shard.
    pub local_leader: bool,
}

/// One migration as PINN.MIGRATIONS lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRecord {
    /// Migration id (from [`SlotMover::start`]).
    pub id: u64,
    /// State text (`running`, `done`, `failed`, ...), as the mover reports it.
    pub state: String,
    /// Slots moved, as inclusive ranges.
    pub slots: Vec<(u16, u16)>,
    /// Source shard index.
    pub from: usize,
    /// Destination shard index.
    pub to: usize,
    /// Keys copied so far.
    pub keys: u64,
    /// Bytes copied so far.
    pub bytes: u64,
    /// Start time, Unix milliseconds.
    pub started_ms: u64,
    /// Duration once finished.
    pub duration_ms: Option<u64>,
    /// Who asked: `pinn`, `reactive` or `manual`.
    pub planner: String,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Where slots go: a shard index, or a node id (= the shard led by that node owning the fewest
/// slots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveTarget {
    /// A shard by index.
    Shard(usize),
    /// The shard led by this 40-hex node id that owns the fewest slots.
    Node(String),
}

/// The cluster's slot-moving path (implemented by the lead's replication layer in Raft mode).
pub trait SlotMover: Send + Sync + 'static {
    /// Every shard, in index order.
    fn shards(&self) -> Vec<ShardInfo>;
    /// Starts moving `slots` (inclusive ranges) to `to`; returns the migration id.
    fn start(&self, slots: Vec<(u16, u16)>, to: MoveTarget, planner: &str) -> Result<u64, String>;
    /// Blocks the calling thread (it is called inside tokio::task::block_in_place) until
    /// migration `id` ends or `timeout` passes.
    fn wait(&self, id: u64, timeout: std::time::Duration) -> Result<MigrationRecord, String>;
    /// Every migration the mover remembers, oldest first.
    fn migrations(&self) -> Vec<MigrationRecord>;
}

static MOVER: OnceLock<Arc<dyn SlotMover>> = OnceLock::new();

/// Installs the slot mover (once, at start-up in Raft mode; later calls are ignored).
pub fn set_mover(m: Arc<dyn SlotMover>) {
    if MOVER.set(m).is_err() {
        tracing::warn!("PINN: a slot mover was already installed; keeping the first");
    }
}

/// The installed slot mover, if any.
pub fn mover() -> Option<Arc<dyn SlotMover>> {
    MOVER.get().cloned()
}

/// True for a migration that has not ended (no duration yet).
pub fn in_flight(m: &MigrationRecord) -> bool {
    m.duration_ms.is_none()
}
