//! Raft mode: the node's keyspace replicated by one Raft group (`--cluster-peers`).
//!
//! Writes: a connection collects the writes of a pipelined batch (see
//! [`crate::storage::deferred`]) and proposes them as one entry with [`Replication::propose`];
//! the replies are what applying the committed entry returned. Reads on the leader wait for a
//! ReadIndex barrier ([`Replication::read_barrier`], or the leader lease with
//! `--raft-read lease`). A follower redirects keyed commands to the leader with `MOVED`.

mod batch;
mod membership;
mod status;
pub mod topology;

use crate::storage::{self, reply_codec, Db};
use bytes::Bytes;
use parking_lot::RwLock;
use pinnacle_raft::{addr, Group, NodeId, NodeOptions, ProposeError, RaftNode, ReadError};
use pinnacle_resp::Reply;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// The only Raft group until the cluster issue shards the keyspace.
const GROUP: u64 = 0;

/// How long a proposal may wait for its commit before its outcome counts as unknown.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// A follower that hears nothing from its leader for this long reports the cluster down (the
/// leader sends heartbeats every 50 ms; an election takes about 300 ms).
const LEADER_SILENCE: Duration = Duration::from_millis(1000);
/// Pause before re-proposing to a leader that refused because it can't take writes yet.
const FRESH_LEADER_RETRY: Duration = Duration::from_millis(20);
/// How long a read barrier may wait for a quorum before the read is refused.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(2);

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
            (Redirect::Leader(addr), Some(slot)) => Reply::error(format!("MOVED {slot} {addr}")),
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

/// A node's Raft side: the bus, the group, and what the command path needs to know fast.
pub struct Replication {
    node: RaftNode,
    group: Group<Db>,
    id: NodeId,
    read_mode: ReadMode,
    /// Mirror of "this node is the leader", kept by a metrics watcher.
    leader: AtomicBool,
    /// Where to send clients when this node is not the leader.
    redirect: RwLock<Redirect>,
    /// Merges concurrent connections' writes into few entries.
    proposer: std::sync::OnceLock<batch::Proposer>,
    /// Shares read-barrier rounds between concurrent readers.
    barriers: std::sync::OnceLock<batch::Barriers>,
    /// Entries proposed, commands they carried, and read-barrier rounds run (INFO).
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    proposals: std::sync::atomic::AtomicU64,
    commands: std::sync::atomic::AtomicU64,
    barriers: std::sync::atomic::AtomicU64,
}

impl Replication {
    /// Starts the bus and the group over `db`, forms the group on first start, and switches
    /// `db` to deferred (proposed) writes.
    pub async fn start(opts: ReplOptions, db: Db) -> Result<Arc<Replication>, ReplError> {
        if !opts.peers.contains_key(&opts.node_id) {
            return Err(ReplError::Peers(format!(
                "this node ({}) is not in the list",
                opts.node_id
            )));
        }
        let mut nopts = NodeOptions::new(opts.node_id, opts.bus_listen, opts.dir.clone());
        if let Some(n) = opts.snapshot_after {
            nopts.snapshot_after_entries = n.max(1);
            nopts.keep_after_snapshot = nopts.keep_after_snapshot.min(n);
        }
        let node = RaftNode::start(nopts).await?;
        let group = node.open_group(GROUP, Arc::new(db.clone())).await?;
        let repl = Arc::new(Replication {
            node,
            group: group.clone(),
            id: opts.node_id,
            read_mode: opts.read_mode,
            leader: AtomicBool::new(false),
            redirect: RwLock::new(Redirect::Down),
            proposer: std::sync::OnceLock::new(),
            barriers: std::sync::OnceLock::new(),
            counters: Counters::default(),
        });
        let weak = Arc::downgrade(&repl);
        let _ = repl
            .proposer
            .set(batch::Proposer::start(Arc::new(move |cmds| {
                let weak = weak.clone();
                Box::pin(async move {
                    match weak.upgrade() {
                        Some(r) => r.propose_now(cmds).await,
                        None => Err(ProposeFailure::NotApplied(Redirect::Down)),
                    }
                })
            })));
        let weak = Arc::downgrade(&repl);
        let _ = repl.barriers.set(batch::Barriers::new(Arc::new(move || {
            let weak = weak.clone();
            Box::pin(async move {
                match weak.upgrade() {
                    Some(r) => r.barrier_now().await,
                    None => Err(Redirect::Down),
                }
            })
        })));
        // The expiry sweeper's deletions: proposed by the leader, without waiting.
        let weak = Arc::downgrade(&repl);
        let rt = tokio::runtime::Handle::current();
        db.enable_replication(Box::new(move |cmd: Bytes| {
            let Some(r) = weak.upgrade() else { return };
            if !r.is_leader() {
                return;
            }
            rt.spawn(async move {
                let _ = r.propose(vec![cmd]).await;
            });
        }))?;
        if !opts.join {
            group.initialize(&opts.peers).await?;
        }
        repl.refresh();
        tokio::spawn(watch(Arc::downgrade(&repl)));
        Ok(repl)
    }

    /// This node's Raft id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// True if this node believes it leads (reads still pass a barrier).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Where a client should go while this node is not the leader.
    pub fn redirect(&self) -> Redirect {
        self.redirect.read().clone()
    }

    fn refresh(&self) {
        let leader = self.group.leader();
        let is_leader = leader == Some(self.id) && self.group.is_leader();
        // A follower trusts the leader it knows of only while it hears from it.
        let alive = is_leader
            || matches!(
                (leader, self.group.last_leader_contact()),
                (Some(l), Some((from, age))) if from == l && age < LEADER_SILENCE
            );
        let redirect = match self.group.leader_addr() {
            Some(a) if alive => Redirect::Leader(addr::client_addr(&a)),
            _ => Redirect::Down,
        };
        *self.redirect.write() = redirect;
        self.leader.store(is_leader, Ordering::Release);
    }

    /// Replicates `cmds` (encoded `WriteCommand`s), merged with other connections' writes
    /// into one entry, and returns their replies.
    pub async fn propose(&self, cmds: Vec<Bytes>) -> Result<Vec<Reply>, ProposeFailure> {
        match self.proposer.get() {
            Some(p) => p.propose(cmds).await,
            None => self.propose_now(cmds).await,
        }
    }

    async fn propose_now(&self, cmds: Vec<Bytes>) -> Result<Vec<Reply>, ProposeFailure> {
        let n = cmds.len();
        self.counters.proposals.fetch_add(1, Ordering::Relaxed);
        self.counters
            .commands
            .fetch_add(n as u64, Ordering::Relaxed);
        let payload = storage::raft_target_proposal(&cmds);
        let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
        let res = loop {
            let res = tokio::time::timeout_at(deadline, self.group.propose(payload.clone())).await;
            // A leader that can't take writes yet (just elected, before its first commit)
            // refuses without appending: waiting a little beats sending clients away.
            let refused_by_itself =
                matches!(&res, Ok(Err(ProposeError::NotLeader { addr: None, .. })))
                    && self.group.leader() == Some(self.id);
            if refused_by_itself && tokio::time::Instant::now() + FRESH_LEADER_RETRY < deadline {
                tokio::time::sleep(FRESH_LEADER_RETRY).await;
                continue;
            }
            break res;
        };
        match res {
            Err(_) => Err(ProposeFailure::Unknown("commit timed out".into())),
            Ok(Err(ProposeError::Indeterminate(why))) => Err(ProposeFailure::Unknown(why)),
            Ok(Err(ProposeError::NotLeader { addr, .. })) => {
                self.refresh();
                Err(ProposeFailure::NotApplied(match addr {
                    Some(a) => Redirect::Leader(addr::client_addr(&a)),
                    None => Redirect::Down,
                }))
            }
            Ok(Ok(raw)) => match reply_codec::decode_list(raw) {
                Some(replies) if replies.len() == n => Ok(replies),
                _ => Err(ProposeFailure::Unknown(
                    "applied entry returned a malformed reply list".into(),
                )),
            },
        }
    }

    /// Waits until local reads are linearizable; `Err` says where the reads should go.
    /// Concurrent callers share barrier rounds.
    pub async fn read_barrier(&self) -> Result<(), Redirect> {
        match self.barriers.get() {
            Some(b) => b.wait().await,
            None => self.barrier_now().await,
        }
    }

    async fn barrier_now(&self) -> Result<(), Redirect> {
        self.counters.barriers.fetch_add(1, Ordering::Relaxed);
        let barrier = async {
            match self.read_mode {
                ReadMode::Index => self.group.read_barrier().await,
                ReadMode::Lease => self.group.lease_read_barrier().await,
            }
        };
        match tokio::time::timeout(BARRIER_TIMEOUT, barrier).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(ReadError::NotLeader { addr: Some(a), .. })) => {
                self.refresh();
                Err(Redirect::Leader(addr::client_addr(&a)))
            }
            Ok(Err(_)) | Err(_) => {
                self.refresh();
                Err(Redirect::Down)
            }
        }
    }

    /// The `# Replication` section of INFO.
    pub fn info(&self) -> String {
        let m = self.group.metrics();
        let membership = m.membership_config.membership();
        let client = |n: &NodeId| {
            membership
                .get_node(n)
                .map(|b| addr::client_addr(&b.addr))
                .unwrap_or_default()
        };
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let peers = m.replication.as_ref().map(|rep| {
            rep.iter()
                .map(|(p, matched)| status::Peer {
                    id: *p,
                    addr: client(p),
                    matched: matched.as_ref().map_or(0, |l| l.index),
                    voter: voters.contains(p),
                })
                .collect()
        });
        status::Status {
            id: self.id,
            state: format!("{:?}", m.state),
            leader: m.current_leader,
            leader_alive: self.is_leader() || matches!(self.redirect(), Redirect::Leader(_)),
            leader_addr: m.current_leader.as_ref().map(client),
            term: m.current_term,
            last_log: m.last_log_index.unwrap_or(0),
            committed: m
                .cluster_committed
                .as_ref()
                .or(m.local_committed.as_ref())
                .map_or(0, |l| l.index),
            applied: m.last_applied.as_ref().map_or(0, |l| l.index),
            snapshot: m.snapshot.as_ref().map_or(0, |l| l.index),
            peers,
            proposals: self.counters.proposals.load(Ordering::Relaxed),
            proposed_commands: self.counters.commands.load(Ordering::Relaxed),
            barriers: self.counters.barriers.load(Ordering::Relaxed),
        }
        .info()
    }

    /// Stops the bus and the group (shutdown).
    pub async fn shutdown(&self) {
        self.node.shutdown().await;
    }
}

/// Keeps the leader flag and redirect current (polled: cheap, and a change of leader is also
/// noticed at once by a failing proposal or barrier); exits the process if the group failed for
/// good (fail-stop: a node whose log can't be made durable must not serve).
async fn watch(repl: std::sync::Weak<Replication>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        let Some(r) = repl.upgrade() else { return };
        if let Some(why) = r.group.fatal() {
            tracing::error!("raft group failed, stopping the node: {why}");
            std::process::exit(1);
        }
        r.refresh();
    }
}
