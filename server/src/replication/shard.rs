//! One shard: a Raft group replicating its own keyspace, and what the request path needs of it
//! (leadership, where to redirect, merged proposals, shared read barriers).

use super::{batch, status, ProposeFailure, ReadMode, Redirect, ReplError};
use crate::storage::{self, reply_codec, Db};
use bytes::Bytes;
use parking_lot::RwLock;
use pinnacle_raft::{addr, Group, NodeId, ProposeError, RaftNode, ReadError};
use pinnacle_resp::Reply;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How long a proposal may wait for its commit before its outcome counts as unknown.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// A follower that hears nothing from its leader for this long reports the cluster down (the
/// leader sends heartbeats every 50 ms; an election takes about 300 ms).
const LEADER_SILENCE: Duration = Duration::from_millis(1000);
/// Pause before re-proposing to a leader that refused because it can't take writes yet.
const FRESH_LEADER_RETRY: Duration = Duration::from_millis(20);
/// How long a read barrier may wait for a quorum before the read is refused.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before another quorum round when one failed while this node still leads.
const BARRIER_RETRY: Duration = Duration::from_millis(20);

/// The Raft group id of shard `index` (group 0 is kept for the cluster's metadata).
pub fn group_id(index: usize) -> u64 {
    index as u64 + 1
}

/// One shard's group on this node.
pub struct Shard {
    index: usize,
    /// Replaced when this node drops its replica (`evict`): the group is reopened empty.
    group: RwLock<Arc<Group<Db>>>,
    /// Set while the group is closed for dropping this node's replica (`evict`).
    pub(super) evicting: AtomicBool,
    /// Set while `evict` looks at this shard (and for a pause after, so it asks the leader at
    /// most about once a second).
    pub(super) evict_busy: AtomicBool,
    me: NodeId,
    read_mode: ReadMode,
    /// Mirror of "this node leads the shard", kept by the watcher.
    leader: AtomicBool,
    /// Where to send clients while this node does not lead it.
    redirect: RwLock<Redirect>,
    /// The published leader (id, full Raft address) while this node is outside the group
    /// (`shard_info`); `None` while it is a member and knows from Raft.
    outside: RwLock<Option<(NodeId, String)>>,
    proposer: OnceLock<batch::Proposer>,
    barriers: OnceLock<batch::Barriers>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    proposals: AtomicU64,
    commands: AtomicU64,
    barriers: AtomicU64,
}

impl Shard {
    /// Opens shard `index`'s group over `db` and switches `db` to proposed writes.
    pub(super) async fn open(
        node: &RaftNode,
        index: usize,
        db: Db,
        read_mode: ReadMode,
    ) -> Result<Arc<Shard>, ReplError> {
        let group = node
            .open_group(group_id(index), Arc::new(db.clone()))
            .await?;
        let shard = Arc::new(Shard {
            index,
            group: RwLock::new(Arc::new(group)),
            evicting: AtomicBool::new(false),
            evict_busy: AtomicBool::new(false),
            me: node.id(),
            read_mode,
            leader: AtomicBool::new(false),
            redirect: RwLock::new(Redirect::Down),
            outside: RwLock::new(None),
            proposer: OnceLock::new(),
            barriers: OnceLock::new(),
            counters: Counters::default(),
        });
        let weak = Arc::downgrade(&shard);
        let _ = shard
            .proposer
            .set(batch::Proposer::start(Arc::new(move |cmds| {
                let weak = weak.clone();
                Box::pin(async move {
                    match weak.upgrade() {
                        Some(s) => s.propose_now(cmds).await,
                        None => Err(ProposeFailure::NotApplied(Redirect::Down)),
                    }
                })
            })));
        let weak = Arc::downgrade(&shard);
        let _ = shard.barriers.set(batch::Barriers::new(Arc::new(move || {
            let weak = weak.clone();
            Box::pin(async move {
                match weak.upgrade() {
                    Some(s) => s.barrier_now().await,
                    None => Err(Redirect::Down),
                }
            })
        })));
        // The expiry sweeper's deletions: proposed by the leader, without waiting.
        let weak = Arc::downgrade(&shard);
        let rt = tokio::runtime::Handle::current();
        db.enable_replication(Box::new(move |cmd: Bytes| {
            let Some(s) = weak.upgrade() else { return };
            if !s.is_leader() {
                return;
            }
            rt.spawn(async move {
                let _ = s.propose(vec![cmd]).await;
            });
        }))?;
        shard.refresh();
        Ok(shard)
    }

    /// This shard's index (0-based; its group id is one more).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The shard's Raft group.
    pub fn group(&self) -> Arc<Group<Db>> {
        self.group.read().clone()
    }

    /// Puts the reopened group in place of the closed one (`evict`).
    pub(super) fn replace_group(&self, group: Group<Db>) {
        *self.group.write() = Arc::new(group);
    }

    /// True if this node believes it leads the shard (reads still pass a barrier).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Where a client should go while this node does not lead the shard.
    pub fn redirect(&self) -> Redirect {
        self.redirect.read().clone()
    }

    /// The leader's Raft id, if one is known and alive.
    pub fn live_leader(&self) -> Option<NodeId> {
        if self.is_leader() {
            return Some(self.me);
        }
        match self.redirect() {
            Redirect::Leader(_) => match &*self.outside.read() {
                Some((id, _)) => Some(*id),
                None => self.group().leader(),
            },
            Redirect::Down => None,
        }
    }

    /// The published leader (id, full Raft address) if this node is outside the group.
    pub fn outside_leader(&self) -> Option<(NodeId, String)> {
        self.outside.read().clone()
    }

    /// Sets the published leader to redirect to while this node is outside the group.
    pub(super) fn set_outside(&self, outside: Option<(NodeId, String)>) {
        let mut o = self.outside.write();
        if *o != outside {
            *o = outside;
        }
    }

    /// Re-reads leadership and the redirect target from the group.
    pub fn refresh(&self) {
        let leader = self.group().leader();
        let is_leader = leader == Some(self.me) && self.group().is_leader();
        if !is_leader {
            if let Some((_, at)) = &*self.outside.read() {
                *self.redirect.write() = Redirect::Leader(addr::client_addr(at));
                self.leader.store(false, Ordering::Release);
                return;
            }
        }
        // A follower trusts the leader it knows of only while it hears from it.
        let alive = is_leader
            || matches!(
                (leader, self.group().last_leader_contact()),
                (Some(l), Some((from, age))) if from == l && age < LEADER_SILENCE
            );
        let redirect = match self.group().leader_addr() {
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
            let res =
                tokio::time::timeout_at(deadline, self.group().propose(payload.clone())).await;
            // A leader that can't take writes yet (just elected, before its first commit)
            // refuses without appending: waiting a little beats sending clients away.
            let refused_by_itself =
                matches!(&res, Ok(Err(ProposeError::NotLeader { addr: None, .. })))
                    && self.group().leader() == Some(self.me);
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

    /// Waits until local reads of this shard are linearizable; `Err` says where the reads
    /// should go. Concurrent callers share barrier rounds.
    pub async fn read_barrier(&self) -> Result<(), Redirect> {
        match self.barriers.get() {
            Some(b) => b.wait().await,
            None => self.barrier_now().await,
        }
    }

    async fn barrier_now(&self) -> Result<(), Redirect> {
        self.counters.barriers.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + BARRIER_TIMEOUT;
        loop {
            let barrier = async {
                match self.read_mode {
                    ReadMode::Index => self.group().read_barrier().await,
                    ReadMode::Lease => self.group().lease_read_barrier().await,
                }
            };
            match tokio::time::timeout_at(deadline, barrier).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(ReadError::NotLeader { addr: Some(a), .. })) => {
                    self.refresh();
                    return Err(Redirect::Leader(addr::client_addr(&a)));
                }
                // A quorum round that failed (acks late on a busy machine) while this node
                // still leads: try again rather than send the client away.
                Ok(Err(ReadError::Unavailable(_)))
                    if self.group().is_leader()
                        && tokio::time::Instant::now() + BARRIER_RETRY < deadline =>
                {
                    tokio::time::sleep(BARRIER_RETRY).await;
                }
                Ok(Err(_)) | Err(_) => {
                    self.refresh();
                    return Err(Redirect::Down);
                }
            }
        }
    }

    /// This shard's part of `INFO replication`.
    pub(super) fn status(&self) -> status::Status {
        let m = self.group().metrics();
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
            id: self.me,
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
            purged: m.purged.as_ref().map_or(0, |l| l.index),
            peers,
            proposals: self.counters.proposals.load(Ordering::Relaxed),
            proposed_commands: self.counters.commands.load(Ordering::Relaxed),
            barriers: self.counters.barriers.load(Ordering::Relaxed),
        }
    }
}
