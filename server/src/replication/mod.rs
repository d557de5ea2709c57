//! Raft mode (`--cluster-peers`): the keyspace sharded over `--shards` Raft groups.
//!
//! Each shard is one Raft group replicating its own keyspace ([`shard::Shard`], one LSM per
//! shard replica) and owns slot ranges ([`slot_map::SlotMap`]). Writes: a connection collects
//! the writes of a pipelined batch (see [`crate::storage::deferred`]) and proposes them to the
//! shard of their slot as one entry; the replies are what applying the committed entry
//! returned. Reads on a shard's leader wait for a ReadIndex barrier (or the leader lease with
//! `--raft-read lease`). Keyed commands for a shard this node does not lead get `MOVED` to its
//! leader. Shard leaders are spread over the nodes by leader transfer ([`spread`]).

mod batch;
pub mod copying;
mod evict;
mod membership;
pub mod meta;
mod meta_image;
pub mod migrate;
pub mod mover;
mod reconcile;
pub mod shard;
pub mod shard_info;
pub mod slot_map;
mod spread;
mod status;
pub mod topology;

use crate::storage::{self, Db};
use pinnacle_raft::{NodeId, NodeOptions, RaftNode};
use pinnacle_resp::Reply;
use shard::Shard;
use slot_map::SlotMap;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// How leader reads are made linearizable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// ReadIndex: a quorum confirms leadership for every batch of reads.
    Index,
    /// Leader lease (bounded by the election timeout): no round trip, assumes bounded drift.
    Lease,
}

/// Raft-mode start-up settings.
#[derive(Debug, Clone)]
pub struct ReplOptions {
    /// This node's Raft id.
    pub node_id: NodeId,
    /// Every voter (this node included): id → `ip:port@cport`.
    pub peers: BTreeMap<NodeId, String>,
    /// Where this node's cluster bus listens.
    pub bus_listen: SocketAddr,
    /// Folder for the Raft log and snapshots.
    pub dir: PathBuf,
    /// Leader read mode.
    pub read_mode: ReadMode,
    /// Entries between snapshots (log purge point).
    pub snapshot_after: Option<u64>,
    /// Join an existing cluster (`CLUSTER MEET` from its leader) instead of forming one.
    pub join: bool,
    /// Number of shards (one Raft group and one keyspace each).
    pub shards: usize,
    /// How cluster-bus connections are authenticated (secret or mutual TLS).
    pub security: pinnacle_raft::transport::BusSecurity,
    /// Runtime for the cluster bus and Raft (`None`: the caller's).
    pub runtime: Option<tokio::runtime::Handle>,
}

/// Errors starting Raft mode.
#[derive(Debug, Error)]
pub enum ReplError {
    /// Bad `--cluster-peers` value.
    #[error("--cluster-peers: {0}")]
    Peers(String),
    /// The Raft node or group failed to start.
    #[error(transparent)]
    Node(#[from] pinnacle_raft::NodeError),
    /// The keyspace could not switch to replicated mode.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
}

/// Why a proposal produced no replies.
#[derive(Debug)]
pub enum ProposeFailure {
    /// Definitely not applied: answer each command with this redirect/refusal.
    NotApplied(Redirect),
    /// May or may not be applied: the client must not get an answer.
    Unknown(String),
}

/// Where a refused command should go.
#[derive(Debug, Clone)]
pub enum Redirect {
    /// The leader's client address.
    Leader(String),
    /// No leader is known.
    Down,
}

impl Redirect {
    /// The error for a command on `slot` (`None` = keyless).
    pub fn error(&self, slot: Option<u16>) -> Reply {
        match (self, slot) {
            (Redirect::Leader(addr), Some(slot)) => {
                Reply::error(crate::command::route::redirect_text("MOVED", slot, addr))
            }
            (Redirect::Leader(_), None) => {
                Reply::error("READONLY You can't write against a read only replica.")
            }
            (Redirect::Down, _) => Reply::error("CLUSTERDOWN The cluster is down"),
        }
    }
}

/// Parses `id@ip:port[@cport],...` into id → `ip:port@cport` (cport defaults to port+10000).
pub fn parse_peers(spec: &str) -> Result<BTreeMap<NodeId, String>, ReplError> {
    let mut out = BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| ReplError::Peers(format!("`{part}` is not id@ip:port[@cport]")))?;
        let id: NodeId = id
            .parse()
            .map_err(|_| ReplError::Peers(format!("bad node id in `{part}`")))?;
        let (client, bus) = match addr.split_once('@') {
            Some((c, b)) => (c.to_string(), b.parse::<u16>().ok()),
            None => (addr.to_string(), None),
        };
        let (host, port) = client
            .rsplit_once(':')
            .ok_or_else(|| ReplError::Peers(format!("no port in `{part}`")))?;
        let port: u16 = port
            .parse()
            .map_err(|_| ReplError::Peers(format!("bad port in `{part}`")))?;
        let bus = match bus {
            Some(b) => b,
            None => port
                .checked_add(10000)
                .ok_or_else(|| ReplError::Peers(format!("port too high for a bus in `{part}`")))?,
        };
        if out.insert(id, format!("{host}:{port}@{bus}")).is_some() {
            return Err(ReplError::Peers(format!("node {id} listed twice")));
        }
    }
    if out.is_empty() {
        return Err(ReplError::Peers("no peers".into()));
    }
    Ok(out)
}

/// Told the slots that just left a shard this node leads.
pub type MovedHook = Box<dyn Fn(&[u16]) + Send + Sync>;

/// A node's Raft side: the bus, its shards, and the slot map.
pub struct Replication {
    node: RaftNode,
    id: NodeId,
    shards: Vec<Arc<Shard>>,
    /// The metadata group (group 0): slot map and migrations.
    meta: pinnacle_raft::Group<meta::MetaTarget>,
    /// Slot migrations this node drives or waits on.
    migrations: copying::Local,
    /// Told the slots that just left a shard this node leads (wakes blocked clients).
    on_moved: std::sync::OnceLock<MovedHook>,
    /// The metadata log index this node had on disk at start: until it has applied that far,
    /// its slot map may be stale and it serves no keyed command.
    meta_at_start: u64,
    meta_caught_up: std::sync::atomic::AtomicBool,
    /// Membership changes the reconciler is running.
    membership_changes: membership::InFlight,
    /// This node's TLS client port (0: none), announced in the metadata (`topology`).
    tls_port: std::sync::atomic::AtomicU16,
}

impl Replication {
    /// Starts the bus and one group per shard over `dbs` (one keyspace per shard), forms the
    /// groups on first start, and switches every keyspace to proposed writes.
    pub async fn start(opts: ReplOptions, dbs: Vec<Db>) -> Result<Arc<Replication>, ReplError> {
        if !opts.peers.contains_key(&opts.node_id) {
            return Err(ReplError::Peers(format!(
                "this node ({}) is not in the list",
                opts.node_id
            )));
        }
        if dbs.is_empty() || dbs.len() != opts.shards {
            return Err(ReplError::Peers(format!(
                "{} keyspaces for {} shards",
                dbs.len(),
                opts.shards
            )));
        }
        let mut nopts = NodeOptions::new(opts.node_id, opts.bus_listen, opts.dir.clone());
        nopts.security = opts.security.clone();
        nopts.runtime = opts.runtime.clone();
        // A joining node may be a wiped old voter: it votes only once a leader added it.
        nopts.joining = opts.join;
        if let Some(n) = opts.snapshot_after {
            nopts.snapshot_after_entries = n.max(1);
            nopts.keep_after_snapshot = nopts.keep_after_snapshot.min(n);
        }
        let node = RaftNode::start(nopts).await?;
        let meta = node
            .open_group(0, Arc::new(meta::MetaTarget::new(dbs.len())))
            .await?;
        let mut shards = Vec::with_capacity(dbs.len());
        for (i, db) in dbs.into_iter().enumerate() {
            shards.push(Shard::open(&node, i, db, opts.read_mode).await?);
        }
        if !opts.join {
            meta.initialize(&opts.peers).await?;
            for s in &shards {
                s.group().initialize(&opts.peers).await?;
            }
        }
        let meta_at_start = meta.metrics().last_log_index.unwrap_or(0);
        let repl = Arc::new(Replication {
            node,
            id: opts.node_id,
            shards,
            meta_at_start,
            meta_caught_up: std::sync::atomic::AtomicBool::new(meta_at_start == 0),
            meta,
            migrations: copying::Local::default(),
            on_moved: std::sync::OnceLock::new(),
            membership_changes: membership::InFlight::default(),
            tls_port: std::sync::atomic::AtomicU16::new(0),
        });
        repl.node.transport().register(
            pinnacle_raft::transport::APP_GROUP,
            Arc::new(membership::MeetService(Arc::downgrade(&repl))),
        );
        tokio::spawn(watch(Arc::downgrade(&repl)));
        tokio::spawn(spread::run(Arc::downgrade(&repl)));
        tokio::spawn(migrate::drive(Arc::downgrade(&repl)));
        tokio::spawn(reconcile::reconcile(Arc::downgrade(&repl)));
        Ok(repl)
    }

    /// Sets what is told the slots that just moved away from a shard this node leads.
    pub fn set_on_moved(&self, f: MovedHook) {
        let _ = self.on_moved.set(f);
    }

    /// This node's Raft id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Every shard, by index.
    pub fn shards(&self) -> &[Arc<Shard>] {
        &self.shards
    }

    /// Shard `i` (the last one if there is no such shard).
    pub fn shard(&self, i: usize) -> &Arc<Shard> {
        &self.shards[i.min(self.shards.len() - 1)]
    }

    /// The current slot map.
    pub fn slot_map(&self) -> SlotMap {
        self.meta.target().state().map.clone()
    }

    /// The applied metadata (slot map and migrations).
    pub fn meta_state(&self) -> Arc<meta::MetaState> {
        self.meta.target().state()
    }

    /// False until the slot map has replayed what this node's metadata log held at start.
    pub fn map_ready(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.meta_caught_up.load(Ordering::Acquire) {
            return true;
        }
        let applied = self
            .meta
            .metrics()
            .last_applied
            .as_ref()
            .map_or(0, |l| l.index);
        let ready = applied >= self.meta_at_start;
        if ready {
            self.meta_caught_up.store(true, Ordering::Release);
        }
        ready
    }

    /// The shard owning `slot`.
    pub fn shard_of(&self, slot: u16) -> usize {
        self.meta.target().state().map.owner(slot)
    }

    /// The shard keyless keyspace commands (DBSIZE, SCAN, FLUSHALL, ...) run on: the first
    /// shard this node leads, as a Redis master answers for its own slots; else the first it
    /// replicates (a replica answers for its master's); shard 0 otherwise.
    pub fn home_shard(&self) -> usize {
        self.shards
            .iter()
            .position(|s| s.is_leader())
            .or_else(|| {
                self.shards
                    .iter()
                    .position(|s| s.outside_leader().is_none())
            })
            .unwrap_or(0)
    }

    /// The client address (`ip:port`) of shard `i`'s live leader (this node's own if it
    /// leads it).
    pub fn leader_client_addr(&self, i: usize) -> Option<String> {
        let s = self.shards.get(i)?;
        if s.is_leader() {
            let m = s.group().metrics();
            let me = m.membership_config.membership().get_node(&self.id)?;
            return Some(pinnacle_raft::addr::client_addr(&me.addr));
        }
        match s.redirect() {
            Redirect::Leader(a) => Some(a),
            Redirect::Down => None,
        }
    }

    /// Every Raft group on this node with its id (the metadata group 0, then the shards), for
    /// the metrics endpoint.
    pub fn group_statuses(&self) -> Vec<(u64, pinnacle_raft::GroupStatus)> {
        std::iter::once((0, self.meta.status()))
            .chain(
                self.shards
                    .iter()
                    .map(|s| (shard::group_id(s.index()), s.group().status())),
            )
            .collect()
    }

    /// True if this node leads any shard (a `master` in CLUSTER NODES).
    pub fn is_leader(&self) -> bool {
        self.shards.iter().any(|s| s.is_leader())
    }

    /// The `# Replication` section of INFO: shard 0 in the single-group form, then one line
    /// per shard.
    pub fn info(&self) -> String {
        let mut out = self.shards[0].status().info();
        // The metadata group's members: a FORGOTTEN node is gone from the cluster (and may be
        // wiped or reused) only once it has left this group too, after every shard.
        let meta = self.meta.metrics().membership_config.clone();
        let ids: Vec<String> = meta
            .membership()
            .nodes()
            .map(|(id, _)| id.to_string())
            .collect();
        out.push_str(&format!("raft_meta_members:{}\r\n", ids.join(",")));
        // The cluster clock (T12): this node's correction and each peer's measured offset.
        let clock = pinnacle_raft::clock::global();
        let offsets: Vec<String> = clock
            .offsets()
            .iter()
            .map(|(id, ms)| format!("{id}={ms}"))
            .collect();
        out.push_str(&format!(
            "cluster_clock_correction_ms:{}\r\ncluster_clock_peer_offsets_ms:{}\r\n",
            clock.correction_ms(),
            offsets.join(",")
        ));
        if self.shards.len() > 1 {
            let topo = self.topology();
            for s in &self.shards {
                let st = s.status();
                // The shard's voters (its own view inside the group, the published one outside).
                let voters: Vec<String> = topo.shards[s.index()]
                    .members
                    .iter()
                    .filter(|m| m.voter)
                    .map(|m| m.id.to_string())
                    .collect();
                // A node outside the group (more nodes than replicas) holds no replica: its
                // group's own view is stale, the leader is the published one.
                let (state, leader) = match s.outside_leader() {
                    Some((id, _)) => ("Outside".to_string(), Some(id)),
                    None => (st.state, st.leader),
                };
                out.push_str(&format!(
                    "shard{}:group={},state={},leader={},term={},applied={},voters={}\r\n",
                    s.index(),
                    shard::group_id(s.index()),
                    state,
                    leader.map(|l| l.to_string()).unwrap_or_default(),
                    st.term,
                    st.applied,
                    voters.join("|"),
                ));
            }
        }
        out
    }

    /// True while one of this node's Raft logs cannot grow for lack of disk space: the node
    /// refuses writes with Redis's `-MISCONF` until it can (appends already in flight wait,
    /// unacknowledged, for space; see `pinnacle_raft::Group::disk_full`).
    pub fn disk_full(&self) -> bool {
        self.meta.disk_full() || self.shards.iter().any(|s| s.group().disk_full())
    }

    /// Stops the bus and the groups (shutdown).
    pub async fn shutdown(&self) {
        self.node.shutdown().await;
    }
}

/// Keeps every shard's leader flag and redirect current (polled: cheap, and a change of leader
/// is also noticed at once by a failing proposal or barrier); exits the process if a group
/// failed for good (fail-stop: a node whose log can't be made durable must not serve).
async fn watch(repl: std::sync::Weak<Replication>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        let Some(r) = repl.upgrade() else { return };
        let st = r.meta_state();
        if let Some(why) = r.meta.fatal() {
            tracing::error!("the metadata raft group failed, stopping the node: {why}");
            std::process::exit(1);
        }
        for s in &r.shards {
            // A group closed to drop this node's replica (`evict`) reports itself stopped: not
            // a failure. `evicting` is set before the close and cleared after the new group
            // is in place, so one of the two checks sees it.
            let g = s.group();
            let closed = |g: &Arc<pinnacle_raft::Group<Db>>| {
                s.evicting.load(std::sync::atomic::Ordering::Acquire) || !Arc::ptr_eq(g, &s.group())
            };
            if let Some(why) = g.fatal().filter(|_| !closed(&g)) {
                tracing::error!(
                    "raft group of shard {} failed, stopping the node: {why}",
                    s.index()
                );
                std::process::exit(1);
            }
            s.set_outside(r.outside_leader(&st, s.index()));
            s.refresh();
        }
        r.publish_shard_info();
        evict::check(&r);
    }
}
