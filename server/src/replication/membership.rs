//! `CLUSTER MEET` / `CLUSTER FORGET` in Raft mode, and the reconciler that makes every shard's
//! membership follow the cluster's.
//!
//! The metadata group's voters are the cluster's nodes. `MEET` (sent to any node; forwarded to
//! the metadata leader over the cluster bus) adds the new node there, learner then voter, like Redis's handshake in
//! the background. `FORGET` marks the node `leaving` in the metadata. Then, every second, each
//! node reconciles the shards it leads: a metadata voter missing from a shard is added
//! (learner until caught up, then voter); a leaving node is removed; a leaving node that
//! leads a shard first hands it to another node; once a leaving node is in no shard, the
//! metadata leader drops it from group 0. Removal happens only for nodes marked leaving, so a
//! stale view can delay a change but never remove a healthy member.

use super::meta::MetaCmd;
use super::Replication;
use parking_lot::Mutex;
use pinnacle_raft::transport::frame::{RpcRequest, RpcResponse};
use pinnacle_raft::transport::{GroupService, HandlerFuture, APP_GROUP};
use pinnacle_raft::{NodeId, ProposeError};
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long MEET waits for the new node to say who it is on the cluster bus.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long MEET's background additions retry while a lapsed leader lease refuses them.
const MEET_RETRY: Duration = Duration::from_secs(10);

/// Membership changes this node is running, by (group id, node): one at a time per pair.
#[derive(Default)]
pub(super) struct InFlight(Mutex<HashSet<(u64, NodeId)>>);

impl InFlight {
    pub(super) fn start(&self, key: (u64, NodeId)) -> bool {
        self.0.lock().insert(key)
    }

    pub(super) fn done(&self, key: (u64, NodeId)) {
        self.0.lock().remove(&key);
    }
}

/// A membership change slot held by `CLUSTER MEET`; released when dropped.
struct Claim {
    repl: Arc<Replication>,
    key: (u64, NodeId),
}

impl Claim {
    /// Takes `key`, unless a change of that (group, node) is already running.
    fn take(repl: &Arc<Replication>, key: (u64, NodeId)) -> Option<Claim> {
        repl.membership_changes.start(key).then(|| Claim {
            repl: repl.clone(),
            key,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.repl.membership_changes.done(self.key);
    }
}

/// What `CLUSTER MEET` may do with a node id (see [`Replication::meet_check`]).
#[derive(Debug, PartialEq, Eq)]
enum MeetPlan {
    /// Unknown to every group: add it, learner then voter.
    Join,
    /// A metadata learner from an earlier MEET that did not finish: promote it.
    Promote,
    /// Already a member that is not leaving: nothing to do (MEET is idempotent, as in Redis).
    Member,
}

impl Replication {
    /// Adds the node whose client port is `host:port` (bus `bus`): learns its Raft id over
    /// the cluster bus (so only a node with the cluster's secret or certificate answers) and
    /// adds it to the metadata group; the reconciler then adds it
    /// to every shard. Blocks until the metadata leader (this node, or the one the command is
    /// forwarded to) has decided. A live member is answered OK with no change, as Redis does;
    /// a node that is still leaving (FORGET not finished) is refused (see
    /// [`Replication::meet_check`]).
    /// A node that does not lead the metadata group forwards the command to the one that
    /// does over the cluster bus ([`MeetService`]), which is authenticated like Raft traffic:
    /// no client password is needed between nodes.
    pub fn meet(self: &Arc<Self>, host: String, port: u16, bus: u16) -> Result<(), String> {
        let me = self.clone();
        block_on(async move { me.meet_async(host, port, bus, false).await })
    }

    async fn meet_async(
        self: &Arc<Self>,
        host: String,
        port: u16,
        bus: u16,
        forwarded: bool,
    ) -> Result<(), String> {
        if !self.meta.is_leader() && forwarded {
            return Err(
                "ERR CLUSTER MEET: this node does not lead the metadata group \
                        (an election is running); try again"
                    .into(),
            );
        }
        if !self.meta.is_leader() {
            return self.forward_meet(&host, port, bus).await;
        }
        let addr = format!("{host}:{port}@{bus}");
        let id = match tokio::time::timeout(HELLO_TIMEOUT, self.node.transport().identify(&addr))
            .await
        {
            Ok(Ok(id)) => id,
            Ok(Err(e)) => return Err(format!("ERR CLUSTER MEET {host}:{port}@{bus}: {e}")),
            Err(_) => return Err(format!("ERR CLUSTER MEET {host}:{port}@{bus}: no answer")),
        };
        // Every committed metadata entry applied here first: a FORGET acknowledged just
        // before (its leaving mark) must not be mistaken for a live member.
        if let Err(e) = self.meta.read_barrier().await {
            return Err(format!("ERR CLUSTER MEET: {e}; try again"));
        }
        // Serialised with the reconciler's removal of this node from the metadata group (same
        // key), and checked only once held: a removal cannot be half done under us.
        let Some(claim) = Claim::take(self, (0, id)) else {
            if !self.meta_state().leaving.contains(&id) {
                // Only an earlier MEET adds a node that is not leaving: it is on its way in.
                return Ok(());
            }
            return Err(format!(
                "ERR node {id} is being added or removed right now; try CLUSTER MEET again later"
            ));
        };
        let plan = self.meet_check(id)?;
        if plan == MeetPlan::Member {
            tracing::info!("CLUSTER MEET: node {id} at {addr} is already a member");
            return Ok(());
        }
        if self.meta_state().leaving.contains(&id) {
            // Its removal finished: welcome it back (the reconciler adds it to no shard while
            // it is marked leaving, and removes no node that is not).
            let cmd = MetaCmd::Leaving { id, leaving: false };
            if let Err(e) = self.meta.propose(cmd.encode()).await {
                return Err(format!(
                    "ERR CLUSTER MEET: clearing node {id}'s leaving mark failed: {e}"
                ));
            }
        }
        let me = self.clone();
        tokio::spawn(async move {
            let _claim = claim;
            if plan == MeetPlan::Join {
                tracing::info!("CLUSTER MEET: adding node {id} at {addr} to the metadata group");
                if let Err(e) = while_leading(&me, || me.meta.add_learner(id, &addr)).await {
                    if me.meta.is_leader() || !matches!(e, ProposeError::NotLeader { .. }) {
                        tracing::warn!(
                            "CLUSTER MEET: adding learner {id} to the metadata group failed: {e}"
                        );
                        return;
                    }
                    // Leadership moved after MEET answered OK: the new leader does it (the
                    // node would otherwise never join, and no reconciler adds a stranger).
                    drop(_claim);
                    me.hand_meet_over(id, &host, port, bus).await;
                    return;
                }
            }
            let promote = || me.meta.add_voters(BTreeSet::from([id]));
            if let Err(e) = while_leading(&me, promote).await {
                tracing::warn!("CLUSTER MEET: promoting {id} in the metadata group failed: {e}");
            }
        });
        Ok(())
    }

    /// What MEET does with node `id`. A member that is not leaving needs nothing
    /// ([`MeetPlan::Member`]). A leaving node still in any group is refused: a node wiped and
    /// restarted under the id of a voter would rejoin with its votes and log forgotten (it
    /// could vote twice in a term). It may come back once `CLUSTER FORGET` has taken it out
    /// of every shard and of the metadata group, as this node has applied.
    fn meet_check(&self, id: NodeId) -> Result<MeetPlan, String> {
        let leaving = self.meta_state().leaving.contains(&id);
        let meta = self.meta.metrics().membership_config.clone();
        let meta = meta.membership();
        let mut groups = Vec::new();
        let meta_voter = meta.voter_ids().any(|v| v == id);
        if meta.get_node(&id).is_some() {
            groups.push("the metadata group".to_string());
        }
        let mut unsettled = Vec::new();
        for s in self.shards.iter() {
            let m = s.group().metrics();
            if m.membership_config.membership().get_node(&id).is_some() {
                groups.push(format!("shard {}", s.index()));
            }
            // A membership change this node has not applied may still be undone.
            let at = m.membership_config.log_id().as_ref().map_or(0, |l| l.index);
            if at > m.last_applied.as_ref().map_or(0, |l| l.index) {
                unsettled.push(s.index());
            }
        }
        let only_meta_learner = groups.len() == 1 && !meta_voter && meta.get_node(&id).is_some();
        if leaving && !groups.is_empty() {
            return Err(format!(
                "ERR node {id} is still leaving the cluster (CLUSTER FORGET has not finished: \
                 it is in {}); CLUSTER MEET it again once it has left every group",
                groups.join(", ")
            ));
        }
        if leaving && !unsettled.is_empty() {
            return Err(format!(
                "ERR node {id} is still leaving the cluster (membership changes of shards {unsettled:?} \
                 are not applied here yet); try CLUSTER MEET again"
            ));
        }
        if only_meta_learner {
            return Ok(MeetPlan::Promote);
        }
        if !groups.is_empty() {
            return Ok(MeetPlan::Member);
        }
        Ok(MeetPlan::Join)
    }

    /// Starts taking node `id` out of the cluster (see the module comment).
    pub fn forget(self: &Arc<Self>, id: NodeId) -> Result<(), String> {
        if id == self.id {
            return Err("ERR I tried hard but I can't forget myself...".into());
        }
        let known = self
            .meta
            .metrics()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some()
            || self.shards.iter().any(|s| {
                s.group()
                    .metrics()
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .is_some()
            });
        if !known {
            return Err(format!("ERR Unknown node {id}"));
        }
        // Answered once the mark is committed: an OK FORGET is not lost with a leader that
        // dies right after (the node may be wiped as soon as it has left every group).
        let payload = MetaCmd::Leaving { id, leaving: true }.encode();
        let me = self.clone();
        block_on(async move {
            match tokio::time::timeout(HELLO_TIMEOUT, me.meta.propose_anywhere(payload)).await {
                Ok(Ok(_)) => {
                    tracing::info!("CLUSTER FORGET: node {id} is leaving");
                    Ok(())
                }
                Ok(Err(e)) => Err(format!("ERR CLUSTER FORGET {id}: {e}; try again")),
                Err(_) => Err(format!(
                    "ERR CLUSTER FORGET {id}: the metadata group did not commit it in time; try again"
                )),
            }
        })
    }

    /// Sends the MEET to the metadata leader over the cluster bus ([`MeetService`] there)
    /// and returns its answer.
    /// Forwards a MEET this node accepted but could not finish (it lost the metadata
    /// leadership) to the new leader, retrying for [`MEET_RETRY`] while an election runs.
    async fn hand_meet_over(&self, id: NodeId, host: &str, port: u16, bus: u16) {
        let deadline = tokio::time::Instant::now() + MEET_RETRY;
        loop {
            match self.forward_meet(host, port, bus).await {
                Ok(()) => {
                    tracing::info!("CLUSTER MEET: node {id} handed over to the new leader");
                    return;
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!("CLUSTER MEET: handing node {id} over failed: {e}");
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn forward_meet(&self, host: &str, port: u16, bus: u16) -> Result<(), String> {
        let (Some(leader), Some(to)) = (self.meta.leader(), self.meta.leader_addr()) else {
            return Err("ERR CLUSTER MEET: no metadata leader to forward to; try again".into());
        };
        let req = RpcRequest::App(MeetRequest::encode(host, port, bus));
        let res = self
            .node
            .transport()
            .call(leader, &to, APP_GROUP, req, 2 * HELLO_TIMEOUT)
            .await;
        match res {
            Ok(RpcResponse::App(Ok(_))) => Ok(()),
            Ok(RpcResponse::App(Err(e))) => Err(e),
            Ok(other) => Err(format!(
                "ERR CLUSTER MEET via node {leader}: unexpected answer {other:?}"
            )),
            Err(e) => Err(format!(
                "ERR CLUSTER MEET via node {leader}: {e}; try again"
            )),
        }
    }
}

/// A `CLUSTER MEET` forwarded over the bus: `host`, `port`, `bus`, one per line.
struct MeetRequest;

impl MeetRequest {
    fn encode(host: &str, port: u16, bus: u16) -> Vec<u8> {
        format!("{host}\n{port}\n{bus}").into_bytes()
    }

    fn decode(b: &[u8]) -> Option<(String, u16, u16)> {
        let text = std::str::from_utf8(b).ok()?;
        let mut parts = text.split('\n');
        let host = parts.next()?.to_string();
        let port = parts.next()?.parse().ok()?;
        let bus = parts.next()?.parse().ok()?;
        host.parse::<std::net::IpAddr>()
            .is_ok()
            .then_some((host, port, bus))
    }
}

/// Answers MEETs forwarded by other nodes over the cluster bus (registered under
/// [`APP_GROUP`]). The bus authenticated the sender (cluster secret or certificate), as it
/// does for every Raft message. A forwarded MEET is never forwarded again, so two nodes with
/// different views of the leader cannot bounce it.
pub(super) struct MeetService(pub(super) Weak<Replication>);

impl GroupService for MeetService {
    fn handle(&self, from: NodeId, req: RpcRequest) -> HandlerFuture {
        let repl = self.0.upgrade();
        Box::pin(async move {
            let RpcRequest::App(body) = req else {
                return RpcResponse::Error("not an application request".into());
            };
            if let Some(shard) = super::evict::decode_query(&body) {
                return RpcResponse::App(match &repl {
                    Some(r) => super::evict::answer(r, shard, from),
                    None => Err("ERR this node is shutting down".into()),
                });
            }
            let Some((host, port, bus)) = MeetRequest::decode(&body) else {
                return RpcResponse::App(Err("ERR malformed forwarded CLUSTER MEET".into()));
            };
            let Some(repl) = repl else {
                return RpcResponse::App(Err("ERR this node is shutting down".into()));
            };
            tracing::info!("CLUSTER MEET {host}:{port}@{bus} forwarded by node {from}");
            RpcResponse::App(
                repl.meet_async(host, port, bus, true)
                    .await
                    .map(|()| Vec::new()),
            )
        })
    }
}

/// Runs the membership change `change` again, for up to [`MEET_RETRY`], while it is refused as
/// "not the leader" although this node still leads the metadata group: a leader whose lease
/// lapsed for a moment (a quorum ack came late) refuses changes, and MEET has already answered
/// OK, so giving up would leave a node that never joins (T8 membership cycles, soak seed
/// 1796628758257363949).
async fn while_leading<F, Fut>(r: &Replication, mut change: F) -> Result<(), ProposeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), ProposeError>>,
{
    let deadline = tokio::time::Instant::now() + MEET_RETRY;
    loop {
        match change().await {
            Err(ProposeError::NotLeader { .. })
                if r.meta.is_leader() && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Runs `fut` to completion from a command handler (on a runtime worker thread).
fn block_on<T>(fut: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| h.block_on(fut))
        }
        _ => Err("ERR this CLUSTER subcommand needs the server's runtime".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::MeetRequest;

    #[test]
    fn forwarded_meet_round_trips_and_refuses_garbage() {
        let b = MeetRequest::encode("127.0.0.1", 7004, 17004);
        assert_eq!(
            MeetRequest::decode(&b),
            Some(("127.0.0.1".to_string(), 7004, 17004))
        );
        assert_eq!(MeetRequest::decode(b"not-an-ip\n1\n2"), None);
        assert_eq!(MeetRequest::decode(b"127.0.0.1\n70000\n2"), None);
        assert_eq!(MeetRequest::decode(b"127.0.0.1"), None);
        assert_eq!(MeetRequest::decode(&[0xff, 0xfe]), None);
    }
}
