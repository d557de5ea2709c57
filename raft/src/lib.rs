//! Pinnacle's Raft layer: a generic replicated log for opaque byte commands.
//!
//! # openraft version: `=0.10.0-alpha.37` (pinned exactly)
//!
//! Chosen over the stable 0.9.x line because the cluster issue needs what only 0.10 has:
//! leader transfer (`Raft::trigger().transfer_leader`, to spread shard leaders across nodes),
//! pre-vote, `Raft::build` + `run`, and a network API (`RaftNetworkV2`, `full_snapshot`) that lets
//! one connection per peer pair carry every group. The price is an alpha API that changes between
//! releases, hence the exact pin; only this version's sources and docs were used. Features:
//! `default-features = false, features = ["tokio-rt", "serde"]`.
//!
//! # Layout
//! - [`types`]: the openraft type config (payload and reply are opaque bytes).
//! - [`apply`]: the [`ApplyTarget`] seam the server implements on its LSM.
//! - [`log_store`]: segment-file log with CRC32C per entry, group-committed fsync.
//! - [`state_machine`]: openraft's state machine on top of an [`ApplyTarget`], file snapshots
//!   ([`snapshot_file`]).
//! - [`transport`]: the cluster bus (one TCP connection per peer pair for every group).
//! - [`network`]: openraft's network traits over the transport, chunked snapshot transfer,
//!   and pipelined replication (`pipeline`: appends in flight, fed to `Raft::stream_append`).
//! - [`node`]: [`RaftNode`] (a process's bus endpoint and its groups) and [`Group`] (propose,
//!   read barriers, leadership, membership, metrics).
//! - [`status`]: [`GroupStatus`] from [`Group::status`], for `INFO replication`.
//! - [`addr`]: peer addresses in Redis's `ip:port@cport` form ([`addr::bus_addr`] is dialed,
//!   [`addr::client_addr`] goes into `MOVED` and `INFO`).
//!
//! # Plugging in the server
//! 1. Implement [`ApplyTarget`] on the server's storage: decode each [`Command`] payload (a
//!    `WriteCommand` with a frozen opcode, leader-stamped time), apply all of a call's commands
//!    into one LSM write batch together with the `meta` bytes under a reserved system key, use
//!    [`Command::index`] as the version, return one encoded reply per command. `applied_meta`
//!    reads that key back; `snapshot`/`install` stream an LSM checkpoint through `Write`/`Read`.
//! 2. At startup: [`RaftNode::start`] on the cluster-bus address (client port + 10000),
//!    [`RaftNode::open_group`] per shard, then [`Group::initialize`] with the peer map (one
//!    voter = the single-node default).
//! 3. Writes: [`Group::propose`] (batch many clients' commands into one payload);
//!    `ProposeError::NotLeader` = not applied → `-MOVED`/`-CLUSTERDOWN`;
//!    `ProposeError::Indeterminate` = unknown outcome, never retried silently. Reads:
//!    [`Group::read_barrier`] then read the LSM. [`Group::fatal`] → exit (fail-stop).
//!
//! Timing note: in this openraft version a follower starts an election only after the leader
//! lease (`election_timeout_max`, no separate knob) *plus* a random `[min, max)` have passed
//! without a heartbeat. The defaults (`NodeOptions::new`: heartbeat 50 ms, openraft min/max
//! 75/150 ms) make that 225-300 ms, so a new leader appears p50 ~250 ms, p99 ~300 ms after the
//! old one dies (`cargo run -p pinnacle-raft --example election_time`); the design's 150-300
//! passed straight through gave 450-600 ms.

pub mod addr;
pub mod apply;
pub mod clock;
pub mod log_store;
pub mod network;
pub mod node;
mod pipeline;
mod reset;
pub mod runtime;
pub mod snapshot_file;
pub mod state_machine;
pub mod status;
pub mod transport;
pub mod types;

pub use apply::{ApplyError, ApplyTarget, Command, MemTarget};
pub use log_store::{LogStore, LogStoreOptions, RecoveryError};
pub use node::{Group, NodeError, NodeOptions, ProposeError, RaftNode, ReadError};
pub use snapshot_file::SnapshotFile;
pub use state_machine::StateMachine;
pub use status::{GroupStatus, PeerStatus, Role};
pub use types::{GroupId, NodeId, Payload, Reply, TypeConfig};
