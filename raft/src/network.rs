//! openraft's network traits over the [`Transport`], and the receiving side ([`RaftService`]).

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::StreamAppendResult;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::SnapshotOf;
use openraft::{BasicNode, RPCTypes};
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;

use crate::apply::ApplyTarget;
use crate::snapshot_file::SnapshotFile;
use crate::state_machine::StateMachine;
use crate::transport::frame::{RpcRequest, RpcResponse};
use crate::transport::{CallError, GroupService, HandlerFuture, Transport};
use crate::types::{GroupId, LogId, NodeId, Raft, TypeConfig, Vote};

type StreamItem = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// Snapshot files travel in pieces of this size.
const SNAPSHOT_CHUNK: usize = 1 << 20;

/// Builds per-peer clients for one group.
pub struct NetworkFactory {
    pub(crate) transport: Transport,
    pub(crate) group: GroupId,
}

/// Sends one group's RPCs to one peer.
pub struct PeerClient {
    transport: Transport,
    group: GroupId,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            transport: self.transport.clone(),
            group: self.group,
            target,
            addr: node.addr.clone(),
        }
    }
}

static TRANSFER_SEQ: AtomicU64 = AtomicU64::new(1);

/// Maps a transport failure onto openraft's RPC error kinds.
pub(crate) fn rpc_error(
    e: CallError,
    me: NodeId,
    target: NodeId,
    ttl: Duration,
    action: RPCTypes,
) -> RPCError<TypeConfig> {
    match e {
        e @ CallError::Unreachable(..) => RPCError::Unreachable(Unreachable::new(&e)),
        e @ CallError::Closed(_) => RPCError::Network(NetworkError::new(&e)),
        CallError::Timeout(..) => RPCError::Timeout(Timeout {
            action,
            id: me,
            target,
            timeout: ttl,
        }),
    }
}

impl PeerClient {
    async fn call(
        &self,
        req: RpcRequest,
        ttl: Duration,
        action: RPCTypes,
    ) -> Result<RpcResponse, RPCError<TypeConfig>> {
        let res = self
            .transport
            .call(self.target, &self.addr, self.group, req, ttl)
            .await;
        match res {
            Ok(RpcResponse::Error(e)) => Err(RPCError::Unreachable(Unreachable::from_string(
                format!("node {} failed the request: {e}", self.target),
            ))),
            Ok(RpcResponse::NoGroup) => Err(RPCError::Unreachable(Unreachable::from_string(
                format!("node {} does not run group {}", self.target, self.group),
            ))),
            Ok(r) => Ok(r),
            Err(e) => Err(rpc_error(e, self.transport.id(), self.target, ttl, action)),
        }
    }
}

fn unexpected(r: RpcResponse) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(format!(
        "unexpected response {r:?}"
    )))
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotFile;

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, StreamItem>, RPCError<TypeConfig>>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        let t = self.transport.clone();
        crate::pipeline::open(
            t,
            self.target,
            self.addr.clone(),
            self.group,
            input,
            option.soft_ttl(),
        )
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(
                RpcRequest::Append(rpc),
                option.soft_ttl(),
                RPCTypes::AppendEntries,
            )
            .await?
        {
            RpcResponse::Append(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RpcRequest::Vote(rpc), option.soft_ttl(), RPCTypes::Vote)
            .await?
        {
            RpcResponse::Vote(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RpcRequest::PreVote(rpc), option.soft_ttl(), RPCTypes::Vote)
            .await?
        {
            RpcResponse::Vote(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(
                RpcRequest::TransferLeader(req),
                option.soft_ttl(),
                RPCTypes::TransferLeader,
            )
            .await?
        {
            RpcResponse::TransferLeader(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let send = self.send_snapshot(vote, snapshot.snapshot, option.soft_ttl());
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = send => r,
        }
    }
}

impl PeerClient {
    async fn send_snapshot(
        &self,
        vote: Vote,
        file: SnapshotFile,
        ttl: Duration,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let io_err = |e: std::io::Error| StreamingError::Unreachable(Unreachable::new(&e));
        let mut f = tokio::fs::File::open(&file.path).await.map_err(io_err)?;
        let len = f.metadata().await.map_err(io_err)?.len();
        let transfer = TRANSFER_SEQ.fetch_add(1, Ordering::Relaxed);
        let mut offset = 0u64;
        loop {
            let n = (len - offset).min(SNAPSHOT_CHUNK as u64) as usize;
            let mut data = vec![0u8; n];
            f.read_exact(&mut data).await.map_err(io_err)?;
            let last = offset + n as u64 == len;
            let req = RpcRequest::SnapshotChunk {
                vote,
                transfer,
                offset,
                data,
                last,
            };
            let resp = self
                .call(
                    req,
                    ttl.max(Duration::from_secs(5)),
                    RPCTypes::InstallSnapshot,
                )
                .await;
            let resp = resp.map_err(|e| match e {
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Network(n) => StreamingError::Network(n),
                RPCError::RemoteError(r) => {
                    StreamingError::Network(NetworkError::from_string(r.to_string()))
                }
            })?;
            offset += n as u64;
            match resp {
                RpcResponse::SnapshotAck if !last => continue,
                RpcResponse::Snapshot(r) if last => return Ok(r),
                other => {
                    return Err(StreamingError::Network(NetworkError::from_string(format!(
                        "unexpected snapshot response {other:?}"
                    ))))
                }
            }
        }
    }
}

struct Incoming {
    path: PathBuf,
    file: std::fs::File,
    next: u64,
}

/// Serves one group's incoming RPCs by handing them to the local [`Raft`].
pub struct RaftService<A: ApplyTarget> {
    pub(crate) raft: Raft<A>,
    pub(crate) sm: StateMachine<A>,
    streams: crate::pipeline::Sessions<A>,
    incoming: Arc<Mutex<HashMap<(NodeId, u64), Incoming>>>,
    contact: LeaderContact,
    /// Grant no vote or pre-vote while this node is not in the group's membership (see
    /// [`crate::NodeOptions::joining`]).
    members_only_vote: bool,
    /// Set when the group opened with nothing on disk: see [`RaftService::fresh_refusal`].
    fresh: Option<FreshGuard>,
}

/// What a group that opened empty knows about whether it may vote yet.
#[derive(Default)]
struct FreshGuard {
    /// The commit log id of the first leader append received since opening (outer `None`:
    /// no leader has reached this node yet): every entry acknowledged before this node lost
    /// its disk is at or below it.
    catch_up_to: Mutex<Option<Option<LogId>>>,
    /// The log reached `catch_up_to`: the guard is off for good.
    caught_up: std::sync::atomic::AtomicBool,
}

/// When this node last received appends (heartbeats included) and from whom: a follower's
/// evidence that the leader it knows of is alive.
#[derive(Clone, Default)]
pub struct LeaderContact(Arc<Mutex<Option<(NodeId, std::time::Instant)>>>);

impl LeaderContact {
    fn record(&self, from: NodeId) {
        *self.0.lock() = Some((from, std::time::Instant::now()));
    }

    /// The node that last sent appends and how long ago.
    pub fn last(&self) -> Option<(NodeId, std::time::Duration)> {
        self.0.lock().map(|(n, at)| (n, at.elapsed()))
    }
}

impl<A: ApplyTarget> RaftService<A> {
    /// Wraps a running group.
    pub fn new(raft: Raft<A>, sm: StateMachine<A>) -> Arc<Self> {
        Self::with_contact(raft, sm, LeaderContact::default())
    }

    /// Like [`RaftService::new`], recording incoming appends in `contact`.
    pub fn with_contact(raft: Raft<A>, sm: StateMachine<A>, contact: LeaderContact) -> Arc<Self> {
        Self::with_vote_guard(raft, sm, contact, false, false)
    }

    /// Like [`RaftService::with_contact`]; with `members_only_vote`, vote and pre-vote requests
    /// are refused until the group's membership (from an entry or snapshot a leader sent, or
    /// from [`crate::Group::initialize`]) includes this node; `opened_empty` (the group had
    /// no vote, log or snapshot on disk) turns on [`RaftService::fresh_refusal`].
    pub fn with_vote_guard(
        raft: Raft<A>,
        sm: StateMachine<A>,
        contact: LeaderContact,
        members_only_vote: bool,
        opened_empty: bool,
    ) -> Arc<Self> {
        Arc::new(RaftService {
            streams: crate::pipeline::Sessions::new(raft.clone()),
            raft,
            sm,
            incoming: Arc::default(),
            contact,
            members_only_vote,
            fresh: opened_empty.then(FreshGuard::default),
        })
    }

    /// Notes a leader's append (with its commit log id) for [`RaftService::fresh_refusal`].
    fn note_leader_commit(&self, commit: Option<&LogId>) {
        if let Some(f) = &self.fresh {
            f.catch_up_to.lock().get_or_insert_with(|| commit.copied());
        }
    }

    /// The refusal a group that opened empty gives a (pre-)vote request from a candidate whose
    /// log holds more than the group's first entry, until a leader has reached this node; after
    /// that, only to a candidate whose last log id is below what that leader had committed
    /// then, and only until this node's own log holds it.
    ///
    /// An empty start is either a new cluster's first start (every log holds at most the
    /// membership entry `initialize` wrote, index 0, so nothing is refused and the first
    /// election runs as before; the first leader's commit index is reached at once) or a voter
    /// whose data folder was wiped and which was started again under its old id without
    /// `CLUSTER FORGET` (with `--cluster-peers`, not `--cluster-join`). Such a node has
    /// forgotten its votes and the entries it acknowledged: voting again in a term it already
    /// voted in could elect two leaders in one term, and voting for a candidate that lacks
    /// entries committed with its old acknowledgements would lose them. Any candidate of an
    /// existing cluster has a longer log, so the wiped node stays out of elections until it
    /// holds every entry committed before it came back.
    ///
    /// A candidate whose last log id is at least that leader's commit log id `c` holds every
    /// entry up to `c` (Raft's log matching and leader completeness), so this node's grant
    /// cannot elect a leader without an entry it may have acknowledged before the wipe: it
    /// votes as if its log ended at `c`, and Raft's own check does the rest. Waiting for this
    /// node's own log to reach `c` instead (the first version) left a 3-node cluster without a
    /// leader for good when its leader died before a follower that started a moment late had
    /// received its first entries: the up-to-date survivor needed that follower's vote, and
    /// that follower refused it (seen in CI: `leader_sigkill_loop_loses_no_acknowledged_write`).
    fn fresh_refusal(&self, candidate_last: Option<&LogId>) -> Option<RpcResponse> {
        use std::sync::atomic::Ordering;
        let f = self.fresh.as_ref()?;
        if f.caught_up.load(Ordering::Acquire) || candidate_last.is_none_or(|l| l.index == 0) {
            return None;
        }
        use openraft::type_config::async_runtime::watch::WatchReceiver;
        let m = self.raft.metrics().borrow_watched().clone();
        let target = *f.catch_up_to.lock();
        if let Some(committed) = target {
            let own = m.last_log_index.unwrap_or(0);
            if committed.as_ref().is_none_or(|c| own >= c.index) {
                f.caught_up.store(true, Ordering::Release);
                return None;
            }
            if candidate_last >= committed.as_ref() {
                return None;
            }
        }
        Some(RpcResponse::Vote(openraft::raft::VoteResponse::new(
            m.vote, None, false,
        )))
    }

    /// The refusal a node outside the group's membership gives a (pre-)vote request, if it
    /// votes only as a member: its own vote (lower than the candidate's, so not a grant) and
    /// no log, which the candidate ignores.
    fn outsider_refusal(&self) -> Option<RpcResponse> {
        if !self.members_only_vote {
            return None;
        }
        use openraft::type_config::async_runtime::watch::WatchReceiver;
        let m = self.raft.metrics().borrow_watched().clone();
        let member = m.membership_config.membership().get_node(&m.id).is_some();
        (!member).then(|| RpcResponse::Vote(openraft::raft::VoteResponse::new(m.vote, None, false)))
    }
}

/// Stores one snapshot piece (runs on a blocking thread: pieces are up to 1 MiB).
fn store_chunk(
    incoming: &Mutex<HashMap<(NodeId, u64), Incoming>>,
    new_path: impl FnOnce() -> PathBuf,
    key: (NodeId, u64),
    offset: u64,
    data: &[u8],
) -> std::io::Result<()> {
    let mut incoming = incoming.lock();
    if offset == 0 {
        let path = new_path();
        let file = std::fs::File::create(&path)?;
        if let Some(old) = incoming.insert(
            key,
            Incoming {
                path,
                file,
                next: 0,
            },
        ) {
            let _ = std::fs::remove_file(old.path);
        }
    }
    let inc = incoming
        .get_mut(&key)
        .ok_or_else(|| std::io::Error::other("snapshot piece for an unknown transfer"))?;
    if inc.next != offset {
        return Err(std::io::Error::other(format!(
            "snapshot piece at {offset}, expected {}",
            inc.next
        )));
    }
    inc.file.write_all(data)?;
    inc.next += data.len() as u64;
    Ok(())
}

/// Installs a completely received snapshot through Raft (which checks the vote).
async fn finish_snapshot<A: ApplyTarget>(
    raft: Raft<A>,
    inc: Option<Incoming>,
    vote: Vote,
) -> RpcResponse {
    let Some(inc) = inc else {
        return RpcResponse::Error("snapshot finished for an unknown transfer".into());
    };
    let path = inc.path.clone();
    let res = async {
        inc.file.sync_all()?;
        drop(inc.file);
        let file = SnapshotFile { path: path.clone() };
        let (meta, _, _) = file.verify()?;
        let snap = openraft::storage::Snapshot {
            meta,
            snapshot: file,
        };
        raft.install_full_snapshot(vote, snap)
            .await
            .map_err(std::io::Error::other)
    }
    .await;
    // Installed snapshots were renamed into place; anything left here was refused.
    let _ = std::fs::remove_file(&path);
    match res {
        Ok(r) => RpcResponse::Snapshot(r),
        Err(e) => RpcResponse::Error(e.to_string()),
    }
}

impl<A: ApplyTarget> GroupService for RaftService<A> {
    fn handle(&self, from: NodeId, req: RpcRequest) -> HandlerFuture {
        let raft = self.raft.clone();
        let err = |e: &dyn std::fmt::Display| RpcResponse::Error(e.to_string());
        if matches!(req, RpcRequest::Append(_) | RpcRequest::StreamAppend { .. }) {
            self.contact.record(from);
            let commit = match &req {
                RpcRequest::Append(r) => r.leader_commit.as_ref(),
                RpcRequest::StreamAppend { req, .. } => req.leader_commit.as_ref(),
                _ => None,
            };
            self.note_leader_commit(commit);
        }
        if let RpcRequest::Vote(v) | RpcRequest::PreVote(v) = &req {
            if let Some(refusal) = self.fresh_refusal(v.last_log_id.as_ref()) {
                tracing::debug!(
                    "refused a vote request from node {from}: this group started empty and \
                     does not hold what the cluster had committed yet"
                );
                return Box::pin(async move { refusal });
            }
        }
        if matches!(req, RpcRequest::Vote(_) | RpcRequest::PreVote(_)) {
            if let Some(refusal) = self.outsider_refusal() {
                tracing::debug!(
                    "refused a vote request from node {from}: this node joined empty and is \
                     not in the group's membership yet"
                );
                return Box::pin(async move { refusal });
            }
        }
        match req {
            RpcRequest::Append(r) => Box::pin(async move {
                raft.append_entries(r)
                    .await
                    .map_or_else(|e| err(&e), RpcResponse::Append)
            }),
            RpcRequest::Vote(r) => Box::pin(async move {
                raft.vote(r)
                    .await
                    .map_or_else(|e| err(&e), RpcResponse::Vote)
            }),
            RpcRequest::PreVote(r) => Box::pin(async move {
                raft.pre_vote(r)
                    .await
                    .map_or_else(|e| err(&e), RpcResponse::Vote)
            }),
            RpcRequest::StreamAppend { stream, req } => self.streams.push(from, stream, req),
            RpcRequest::StreamEnd { stream } => {
                self.streams.end(from, stream);
                Box::pin(async { RpcResponse::StreamAppend(Ok(None)) })
            }
            RpcRequest::Propose(payload) => Box::pin(async move {
                use crate::transport::frame::ProposeOutcome;
                use openraft::error::{ClientWriteError, RaftError};
                RpcResponse::Proposed(
                    match raft.client_write(crate::types::Payload(payload)).await {
                        Ok(r) => ProposeOutcome::Applied(r.data.0),
                        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                            ProposeOutcome::NotLeader
                        }
                        Err(e) => ProposeOutcome::Indeterminate(e.to_string()),
                    },
                )
            }),
            RpcRequest::App(_) => Box::pin(async {
                RpcResponse::Error("an application request for a Raft group".into())
            }),
            RpcRequest::TransferLeader(r) => Box::pin(async move {
                raft.handle_transfer_leader(r)
                    .await
                    .map_or_else(|e| err(&e), RpcResponse::TransferLeader)
            }),
            RpcRequest::SnapshotChunk {
                vote,
                transfer,
                offset,
                data,
                last,
            } => {
                // Written off the connection's reader thread; the sender awaits each piece, so
                // pieces of one transfer arrive in order.
                let incoming = self.incoming.clone();
                let sm = self.sm.clone();
                Box::pin(async move {
                    let key = (from, transfer);
                    let inc2 = incoming.clone();
                    let stored = tokio::task::spawn_blocking(move || {
                        store_chunk(&inc2, || sm.temp_path(), key, offset, &data)
                    })
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r);
                    if let Err(e) = stored {
                        return RpcResponse::Error(e.to_string());
                    }
                    if !last {
                        return RpcResponse::SnapshotAck;
                    }
                    let inc = incoming.lock().remove(&key);
                    finish_snapshot(raft, inc, vote).await
                })
            }
        }
    }
}
