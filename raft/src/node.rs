//! [`RaftNode`]: one process's cluster-bus endpoint hosting many groups; [`Group`]: one group's
//! propose / read-barrier / leadership API.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::type_config::async_runtime::watch::WatchReceiver;
use openraft::{BasicNode, ChangeMembers, Config, ReadPolicy, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use thiserror::Error;

use crate::apply::ApplyTarget;
use crate::log_store::{LogHealth, LogStore, LogStoreOptions, RecoveryError};
use crate::network::{LeaderContact, NetworkFactory, RaftService};
use crate::state_machine::StateMachine;
use crate::transport::Transport;
use crate::types::{GroupId, NodeId, Payload, Raft, TypeConfig};

/// How long a proposal forwarded to the leader may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a [`RaftNode`].
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// This node's id (stable for the cluster's lifetime).
    pub id: NodeId,
    /// Cluster-bus listen address; its IP is also the source IP of outgoing connections.
    pub listen: SocketAddr,
    /// Data folder; each group lives in `group-<id>/` below it.
    pub dir: PathBuf,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// openraft's `(election_timeout_min, election_timeout_max)`. A follower campaigns after
    /// `max` (the leader lease, hard-wired to `max` in openraft 0.10.0-alpha.37) plus a random
    /// `[min, max)` without a heartbeat, i.e. `[max + min, 2 max)` of silence. See
    /// [`NodeOptions::new`] for the defaults.
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot (and later purge the log) after this many entries.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log behind a snapshot (so slightly lagging followers need no snapshot).
    pub keep_after_snapshot: u64,
    /// Log segment size.
    pub segment_bytes: u64,
    /// How cluster-bus connections are authenticated (default: not at all).
    pub security: crate::transport::BusSecurity,
    /// The node starts empty to be added to its groups by their leaders (the server's
    /// `--cluster-join`): a group grants no vote or pre-vote until its membership includes
    /// this node. A wiped node restarted under the id of a voter has forgotten its votes; it
    /// must not vote again in a term in which it may already have voted.
    pub joining: bool,
    /// Where the node's tasks run: the bus, every group's Raft core and replication streams
    /// (see [`crate::runtime`]). `None`: the runtime that calls [`RaftNode::start`].
    pub runtime: Option<tokio::runtime::Handle>,
}

impl NodeOptions {
    /// The design's timing: heartbeat 50 ms, and a follower campaigns 225-300 ms after the
    /// last heartbeat (inside the design's randomised 150-300 ms election timeout).
    ///
    /// openraft 0.10.0-alpha.37 has no knob for the leader lease: a follower's lease is
    /// `election_timeout_max`, and its election timer only starts counting the random
    /// `[min, max)` once the lease has run out (a live leader's lease also makes peers refuse
    /// votes and pre-votes). Passing the design's numbers straight through (150, 300) therefore
    /// meant 450-600 ms of silence before a campaign (p99 579 ms to a new leader, over the
    /// issue's 500 ms). So the pair is chosen for the *effective* timeout instead:
    /// `(min, max) = (75, 150)` gives a 150 ms lease plus a random 75-150 ms, i.e. 225-300 ms,
    /// still 4.5-6 heartbeats (a few lost heartbeats do not depose a leader) with a 75 ms
    /// spread, far above a localhost or LAN round trip, so split votes stay rare. Measured with
    /// `cargo run -p pinnacle-raft --example election_time`: p50 248 ms, p99 290 ms (50 kills).
    /// The lease read (`lease_read_barrier`) trusts the same 150 ms lease.
    pub fn new(id: NodeId, listen: SocketAddr, dir: PathBuf) -> NodeOptions {
        NodeOptions {
            id,
            listen,
            dir,
            heartbeat: Duration::from_millis(50),
            election_timeout: (Duration::from_millis(75), Duration::from_millis(150)),
            snapshot_after_entries: 10_000,
            keep_after_snapshot: 1_000,
            segment_bytes: LogStoreOptions::default().segment_bytes,
            security: Default::default(),
            joining: false,
            runtime: None,
        }
    }

    fn raft_config(&self, group: GroupId) -> Result<Config, NodeError> {
        let ms = |d: Duration| d.as_millis() as u64;
        let cfg = Config {
            cluster_name: format!("pinnacle-group-{group}"),
            heartbeat_interval: ms(self.heartbeat),
            election_timeout_min: ms(self.election_timeout.0),
            election_timeout_max: ms(self.election_timeout.1),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            max_in_snapshot_log_to_keep: self.keep_after_snapshot,
            // A node back from a partition or restart must not depose a healthy leader.
            enable_pre_vote: Some(true),
            // A leader restarted by a crash must win a new election (a higher term) rather
            // than resume in its old term: entries it had accepted but not yet written can be
            // committed by the followers' acks alone, and a resumed leader would hand their
            // indexes to new entries of the same term, so replicas would hold different
            // entries under the same (term, index) and acknowledged writes would be lost
            // (found by the whole-cluster SIGKILL tests in redis-tests).
            enable_leader_restore: Some(false),
            // A follower whose log went back to empty (a voter restarted on a wiped data
            // folder under its old id) is replicated to again from scratch instead of being
            // left behind for good. What makes that safe is the vote guard of a group that
            // opened empty (`RaftService::fresh_refusal`): such a node votes only once it
            // holds everything committed before it came back.
            allow_log_reversion: Some(true),
            ..Default::default()
        };
        cfg.validate().map_err(|e| NodeError::Config(e.to_string()))
    }
}

/// Errors starting a node or a group.
#[derive(Debug, Error)]
pub enum NodeError {
    /// Invalid Raft settings.
    #[error("raft config: {0}")]
    Config(String),
    /// The log could not be recovered.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// File system or socket failure.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// openraft refused to start or initialize.
    #[error("raft: {0}")]
    Raft(String),
    /// The group is already open on this node.
    #[error("group {0} is already running")]
    GroupExists(GroupId),
}

/// Why a proposal has no reply.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProposeError {
    /// This node is not the leader: the entry was NOT appended (safe to send elsewhere).
    #[error("not the leader (leader: {leader:?} at {addr:?})")]
    NotLeader {
        /// The leader if known.
        leader: Option<NodeId>,
        /// Its `BasicNode.addr` if known (`ip:port@cport`; see [`crate::addr`]).
        addr: Option<String>,
    },
    /// The entry may or may not be committed (leader changed or node stopped mid-flight). Never
    /// re-propose it behind the client's back.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
}

/// Why a read barrier failed; reads must not be served.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// This node is not (or no longer) the leader.
    #[error("not the leader (leader: {leader:?} at {addr:?})")]
    NotLeader {
        /// The leader if known.
        leader: Option<NodeId>,
        /// Its `BasicNode.addr` if known (`ip:port@cport`; see [`crate::addr`]).
        addr: Option<String>,
    },
    /// A quorum could not be reached, or the node stopped.
    #[error("read barrier failed: {0}")]
    Unavailable(String),
}

trait Stop: Send + Sync {
    fn stop(&self) -> futures_util::future::BoxFuture<'static, ()>;
}

impl<A: ApplyTarget> Stop for Raft<A> {
    fn stop(&self) -> futures_util::future::BoxFuture<'static, ()> {
        let r = self.clone();
        Box::pin(async move {
            let _ = r.shutdown().await;
        })
    }
}

/// One node: the cluster bus plus the groups it runs.
pub struct RaftNode {
    opts: NodeOptions,
    transport: Transport,
    groups: Mutex<HashMap<GroupId, Arc<dyn Stop>>>,
}

impl RaftNode {
    /// Binds the cluster bus; groups are opened with [`RaftNode::open_group`].
    pub async fn start(opts: NodeOptions) -> Result<RaftNode, NodeError> {
        std::fs::create_dir_all(&opts.dir)?;
        let rt = opts
            .runtime
            .clone()
            .unwrap_or_else(tokio::runtime::Handle::current);
        let transport = Transport::bind_on(opts.id, opts.listen, opts.security.clone(), rt)?;
        Ok(RaftNode {
            opts,
            transport,
            groups: Mutex::new(HashMap::new()),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.opts.id
    }

    /// The bound cluster-bus address.
    pub fn addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// The transport (for diagnostics).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Opens (recovering from disk) group `group` applying to `target`. A pristine group does
    /// nothing until [`Group::initialize`] runs on it or a leader contacts it.
    pub async fn open_group<A: ApplyTarget>(
        &self,
        group: GroupId,
        target: Arc<A>,
    ) -> Result<Group<A>, NodeError> {
        if self.groups.lock().contains_key(&group) {
            return Err(NodeError::GroupExists(group));
        }
        let dir = self.group_dir(group);
        // A reset interrupted by a crash is finished before the log is read (see `reset`).
        let was_reset = crate::reset::recover(&dir, &*target)?;
        // Opened on the Raft runtime: its writer thread (every vote and append waits for its
        // fsync) inherits that runtime's priority.
        let log = {
            let (path, segment_bytes) = (dir.join("log"), self.opts.segment_bytes);
            self.transport
                .runtime()
                .spawn_blocking(move || LogStore::open(&path, LogStoreOptions { segment_bytes }))
                .await
                .map_err(|e| NodeError::Io(std::io::Error::other(e)))??
        };
        let health = log.health();
        let pristine_log = log.is_pristine();
        // May install a snapshot into the target (see `StateMachine::open`): a blocking thread.
        let sm = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || StateMachine::open(&dir, target))
                .await
                .map_err(|e| NodeError::Io(std::io::Error::other(e)))??
        };
        // Nothing on disk at all: a new cluster's first start, or a wiped voter (see
        // `RaftService::fresh_refusal`).
        let opened_empty = pristine_log && sm.is_empty();
        let cfg = Arc::new(self.opts.raft_config(group)?);
        let net = NetworkFactory {
            transport: self.transport.clone(),
            group,
        };
        // openraft spawns the group's core, log and state-machine workers and later every
        // replication stream from the runtime it is created on: the node's Raft runtime.
        let raft = {
            let (id, sm) = (self.opts.id, sm.clone());
            self.transport
                .runtime()
                .spawn(async move { openraft::Raft::new(id, cfg, net, log, sm).await })
                .await
                .map_err(|e| NodeError::Raft(e.to_string()))?
                .map_err(|e| NodeError::Raft(e.to_string()))?
        };
        self.transport
            .runtime()
            .spawn(log_leadership(group, raft.server_metrics()));
        let contact = LeaderContact::default();
        self.transport.register(
            group,
            RaftService::with_vote_guard(
                raft.clone(),
                sm.clone(),
                contact.clone(),
                self.opts.joining || was_reset,
                opened_empty,
            ),
        );
        self.groups.lock().insert(group, Arc::new(raft.clone()));
        Ok(Group {
            id: group,
            me: self.opts.id,
            transport: self.transport.clone(),
            raft,
            sm,
            log: health,
            contact,
            was_reset,
        })
    }

    fn group_dir(&self, group: GroupId) -> PathBuf {
        self.opts.dir.join(format!("group-{group}"))
    }

    /// Drops this node's replica of group `group`, which must be closed
    /// ([`RaftNode::close_group`]): its log (not the vote), snapshots and `target`'s data, in
    /// a crash-safe order (see `reset.rs`). Reopened, the group is empty and waits for a leader
    /// to add this node back and catch it up. Only for a group that committed a membership
    /// without this node, which this node has not been added back to.
    pub async fn reset_group<A: ApplyTarget>(
        &self,
        group: GroupId,
        target: Arc<A>,
    ) -> Result<(), NodeError> {
        if self.groups.lock().contains_key(&group) {
            return Err(NodeError::GroupExists(group));
        }
        let dir = self.group_dir(group);
        tokio::task::spawn_blocking(move || crate::reset::reset(&dir, &*target))
            .await
            .map_err(|e| NodeError::Io(std::io::Error::other(e)))??;
        Ok(())
    }

    /// Stops group `group` on this node (its data stays on disk).
    pub async fn close_group(&self, group: GroupId) {
        self.transport.unregister(group);
        let g = self.groups.lock().remove(&group);
        if let Some(g) = g {
            g.stop().await;
        }
    }

    /// Stops every group and closes the cluster bus (as if the process died, minus the disk).
    pub async fn shutdown(&self) {
        self.transport.shutdown().await;
        let groups: Vec<_> = self.groups.lock().drain().map(|(_, g)| g).collect();
        for g in groups {
            g.stop().await;
        }
    }
}

/// Logs `raft group <g>: leader in term <t>` (INFO) once for each term this node leads
/// `group` in, until the group stops: the black-box tests read every node's log to check that
/// no term ever had two leaders (reliability T8).
async fn log_leadership(
    group: GroupId,
    mut rx: openraft::type_config::alias::WatchReceiverOf<
        TypeConfig,
        openraft::metrics::RaftServerMetrics<TypeConfig>,
    >,
) {
    let mut logged = None;
    loop {
        let (state, term) = {
            let m = rx.borrow_watched();
            (m.state, m.vote.leader_id.term)
        };
        if state == ServerState::Leader && logged != Some(term) {
            tracing::info!("raft group {group}: leader in term {term}");
            logged = Some(term);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Handle to one running group.
pub struct Group<A: ApplyTarget> {
    id: GroupId,
    me: NodeId,
    transport: Transport,
    raft: Raft<A>,
    sm: StateMachine<A>,
    log: LogHealth,
    contact: LeaderContact,
    /// This node's replica was dropped once ([`RaftNode::reset_group`]): never initialize.
    was_reset: bool,
}

impl<A: ApplyTarget> Clone for Group<A> {
    fn clone(&self) -> Self {
        Group {
            id: self.id,
            me: self.me,
            transport: self.transport.clone(),
            raft: self.raft.clone(),
            sm: self.sm.clone(),
            log: self.log.clone(),
            contact: self.contact.clone(),
            was_reset: self.was_reset,
        }
    }
}

fn leader_info(
    f: &openraft::error::ForwardToLeader<TypeConfig>,
) -> (Option<NodeId>, Option<String>) {
    (f.leader_id, f.leader_node.as_ref().map(|n| n.addr.clone()))
}

impl<A: ApplyTarget> Group<A> {
    /// The group id.
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// The application's state machine target.
    pub fn target(&self) -> &Arc<A> {
        self.sm.target()
    }

    /// The underlying openraft handle (membership changes, leader transfer, metrics watch).
    pub fn raft(&self) -> &Raft<A> {
        &self.raft
    }

    /// Forms the group with `members` (id → `ip:port@cport`, or a bare bus address; see
    /// [`crate::addr`]) if this node is pristine; a
    /// no-op if it already has state. Every member may call it with the same map.
    pub async fn initialize(&self, members: &BTreeMap<NodeId, String>) -> Result<(), NodeError> {
        if self.was_reset {
            // Its members formed it long ago; it comes back only through a leader.
            return Ok(());
        }
        let init = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if init {
            return Ok(());
        }
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .iter()
            .map(|(id, a)| (*id, BasicNode::new(a)))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            // Lost a race with a leader that already reached us: fine.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(NodeError::Raft(e.to_string())),
        }
    }

    /// Replicates `payload`; returns what applying it returned once a majority has it durably
    /// and this node applied it.
    pub async fn propose(&self, payload: Vec<u8>) -> Result<Vec<u8>, ProposeError> {
        match self.raft.client_write(Payload(payload)).await {
            Ok(r) => Ok(r.data.0),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let (leader, addr) = leader_info(&f);
                Err(ProposeError::NotLeader { leader, addr })
            }
            Err(e) => Err(ProposeError::Indeterminate(e.to_string())),
        }
    }

    /// Like [`Group::propose`], but a member that does not lead the group forwards the
    /// proposal to the leader it knows of over the cluster bus (one hop; the leader does not
    /// forward again). A transport failure after sending is `Indeterminate`.
    pub async fn propose_anywhere(&self, payload: Vec<u8>) -> Result<Vec<u8>, ProposeError> {
        let (leader, addr) = match self.propose(payload.clone()).await {
            Err(ProposeError::NotLeader {
                leader: Some(l),
                addr: Some(a),
            }) if l != self.me => (l, a),
            other => return other,
        };
        self.propose_to(leader, &addr, payload).await
    }

    /// Sends `payload` straight to `leader` (bus address `addr`) over the cluster bus, as a
    /// forwarded proposal: for a node outside the group, which learns its leader elsewhere
    /// (the cluster metadata). A transport failure after sending is `Indeterminate`.
    pub async fn propose_to(
        &self,
        leader: NodeId,
        addr: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, ProposeError> {
        use crate::transport::frame::{ProposeOutcome, RpcRequest, RpcResponse};
        let req = RpcRequest::Propose(payload);
        match self
            .transport
            .call(leader, addr, self.id, req, FORWARD_TIMEOUT)
            .await
        {
            Ok(RpcResponse::Proposed(ProposeOutcome::Applied(r))) => Ok(r),
            Ok(RpcResponse::Proposed(ProposeOutcome::NotLeader)) | Ok(RpcResponse::NoGroup) => {
                Err(ProposeError::NotLeader {
                    leader: None,
                    addr: None,
                })
            }
            Ok(RpcResponse::Proposed(ProposeOutcome::Indeterminate(e))) => {
                Err(ProposeError::Indeterminate(e))
            }
            Ok(other) => Err(ProposeError::Indeterminate(format!(
                "unexpected answer to a forwarded proposal: {other:?}"
            ))),
            Err(e) => Err(ProposeError::Indeterminate(format!(
                "forwarding to leader {leader}: {e}"
            ))),
        }
    }

    /// Waits until reads from the local state machine are linearizable (ReadIndex: a quorum
    /// confirms leadership, then the local apply catches up to the read point).
    pub async fn read_barrier(&self) -> Result<(), ReadError> {
        self.barrier(ReadPolicy::ReadIndex).await
    }

    /// Like [`Group::read_barrier`] but trusts the leader lease (no round trip while the lease,
    /// bounded by the election timeout, is valid). Assumes bounded clock drift.
    pub async fn lease_read_barrier(&self) -> Result<(), ReadError> {
        self.barrier(ReadPolicy::LeaseRead).await
    }

    async fn barrier(&self, policy: ReadPolicy) -> Result<(), ReadError> {
        match self.raft.ensure_linearizable(policy).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                let (leader, addr) = leader_info(&f);
                Err(ReadError::NotLeader { leader, addr })
            }
            Err(e) => Err(ReadError::Unavailable(e.to_string())),
        }
    }

    /// The `BasicNode.addr` of the leader this node currently knows of (`ip:port@cport`;
    /// [`crate::addr::client_addr`] gives the part for `MOVED`).
    pub fn leader_addr(&self) -> Option<String> {
        let m = self.raft.metrics().borrow_watched().clone();
        let leader = m.current_leader?;
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    /// Test hook: the next fsync of this group's log fails.
    #[cfg(test)]
    pub(crate) fn inject_log_sync_failure(&self) {
        self.log.fail_next_sync();
    }

    /// The node that last sent this node appends (heartbeats included) and how long ago. A
    /// follower's `leader()` stays set while no election happens (pre-vote keeps a lone
    /// follower from starting one), so this is how it tells that the leader is gone.
    pub fn last_leader_contact(&self) -> Option<(NodeId, Duration)> {
        self.contact.last()
    }

    /// The leader this node currently knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// True if this node currently believes it leads (use a barrier before trusting reads).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// A snapshot of this group's Raft metrics (term, log/commit/applied index, replication lag).
    pub fn metrics(&self) -> openraft::RaftMetrics<TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// On the leader: how long ago `peer` last acknowledged a heartbeat or append (`None` if
    /// never, or if this node does not lead).
    pub fn peer_ack_age(&self, peer: NodeId) -> Option<Duration> {
        use openraft::Instant as _;
        let m = self.raft.metrics().borrow_watched().clone();
        let hb = m.heartbeat?;
        let at = hb.get(&peer)?.as_ref()?;
        Some(at.elapsed())
    }

    /// Asks the leader to hand leadership to `to` (used to spread shard leaders).
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), NodeError> {
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))
    }

    /// Adds `id` at `addr` as a learner and waits until it has caught up (`CLUSTER MEET`, step
    /// one). Must run on the leader.
    pub async fn add_learner(&self, id: NodeId, addr: &str) -> Result<(), ProposeError> {
        let res = self.raft.add_learner(id, BasicNode::new(addr), true).await;
        membership_result(res)
    }

    /// Adds existing learners as voters (`CLUSTER MEET`, step two). Must run on the leader.
    pub async fn add_voters(&self, ids: BTreeSet<NodeId>) -> Result<(), ProposeError> {
        let res = self
            .raft
            .change_membership(ChangeMembers::AddVoterIds(ids), true)
            .await;
        membership_result(res)
    }

    /// Removes voters (`CLUSTER FORGET`); `retain: false` drops them from the group entirely.
    pub async fn remove_voters(&self, ids: BTreeSet<NodeId>) -> Result<(), ProposeError> {
        let res = self
            .raft
            .change_membership(ChangeMembers::RemoveVoters(ids), false)
            .await;
        membership_result(res)
    }

    /// Removes nodes entirely, voters or learners (a learner whose catch-up never finished).
    pub async fn remove_nodes(&self, ids: BTreeSet<NodeId>) -> Result<(), ProposeError> {
        let res = self
            .raft
            .change_membership(ChangeMembers::RemoveNodes(ids), false)
            .await;
        membership_result(res)
    }

    /// True while this node's log of the group cannot grow for lack of disk space: appends
    /// wait (unacknowledged) for space, and the server refuses writes with Redis's `-MISCONF`.
    pub fn disk_full(&self) -> bool {
        self.log.disk_full()
    }

    /// Why this group stopped for good (e.g. a failed log fsync), if it did. The server should
    /// take the node out of service (fail-stop) rather than retry.
    pub fn fatal(&self) -> Option<String> {
        if let Some(why) = self.log.failure() {
            return Some(format!("raft log failed: {why}"));
        }
        self.raft
            .metrics()
            .borrow_watched()
            .running_state
            .as_ref()
            .err()
            .map(|e| e.to_string())
    }
}

type WriteResult = Result<
    openraft::raft::ClientWriteResponse<TypeConfig>,
    RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
>;

fn membership_result(res: WriteResult) -> Result<(), ProposeError> {
    match res {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            let (leader, addr) = leader_info(&f);
            Err(ProposeError::NotLeader { leader, addr })
        }
        Err(e) => Err(ProposeError::Indeterminate(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
