//! `CLUSTER MEET` / `CLUSTER FORGET` in Raft mode, and the reconciler that makes every shard's
//! membership follow the cluster's.
//!
//! The metadata group's voters are the cluster's nodes. `MEET` (sent to any node; forwarded to
//! the metadata leader) adds the new node there, learner then voter, like Redis's handshake in
//! the background. `FORGET` marks the node `leaving` in the metadata. Then, every second, each
//! node reconciles the shards it leads: a metadata voter missing from a shard is added
//! (learner until caught up, then voter); a leaving node is removed; a leaving node that
//! leads a shard first hands it to another node; once a leaving node is in no shard, the
//! metadata leader drops it from group 0. Removal happens only for nodes marked leaving, so a
//! stale view can delay a change but never remove a healthy member.

use super::meta::MetaCmd;
use super::topology::FORWARDED_MEET;
use super::Replication;
use parking_lot::Mutex;
use pinnacle_raft::{addr, NodeId};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long MEET waits for the new node to answer `INFO replication`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Adds the node whose client port is `host:port` (bus `bus`): learns its Raft id from
    /// its `INFO replication` and adds it to the metadata group; the reconciler then adds it
    /// to every shard. Blocks until the metadata leader (this node, or the one the command is
    /// forwarded to) has decided. A live member is answered OK with no change, as Redis does;
    /// a node that is still leaving (FORGET not finished) is refused (see
    /// [`Replication::meet_check`]).
    /// `forwarded`: the command came from another node ([`FORWARDED_MEET`]).
    pub fn meet(
        self: &Arc<Self>,
        host: String,
        port: u16,
        bus: u16,
        forwarded: bool,
    ) -> Result<(), String> {
        let me = self.clone();
        block_on(async move { me.meet_async(host, port, bus, forwarded).await })
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
            let cmd = [
                "CLUSTER".to_string(),
                "MEET".into(),
                host.clone(),
                port.to_string(),
                bus.to_string(),
            ];
            return self.forward_to_meta_leader(&cmd).await;
        }
        let addr = format!("{host}:{port}@{bus}");
        let id = match tokio::time::timeout(HELLO_TIMEOUT, node_id_of(&host, port)).await {
            Ok(Ok(id)) => id,
            Ok(Err(e)) => return Err(format!("ERR CLUSTER MEET {host}:{port}: {e}")),
            Err(_) => return Err(format!("ERR CLUSTER MEET {host}:{port}: no answer")),
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
                if let Err(e) = me.meta.add_learner(id, &addr).await {
                    tracing::warn!(
                        "CLUSTER MEET: adding learner {id} to the metadata group failed: {e}"
                    );
                    return;
                }
            }
            if let Err(e) = me.meta.add_voters(BTreeSet::from([id])).await {
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
            let m = s.group.metrics();
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
                s.group
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

    /// Sends `cmd` to the metadata leader's client port (MEET needs that node's view) and
    /// returns its answer.
    async fn forward_to_meta_leader(&self, cmd: &[String]) -> Result<(), String> {
        let Some(to) = self.meta.leader_addr().map(|a| addr::client_addr(&a)) else {
            return Err(format!(
                "ERR {}: no metadata leader to forward to; try again",
                cmd[..2].join(" ")
            ));
        };
        let mut req = format!(
            "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n${}\r\n{FORWARDED_MEET}\r\n*{}\r\n",
            FORWARDED_MEET.len(),
            cmd.len()
        );
        for a in cmd {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        let (host, port) = match to.rsplit_once(':') {
            Some((h, p)) => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse().unwrap_or(0),
            ),
            None => (to.as_str(), 0),
        };
        // Two one-line replies: SETNAME's, then MEET's.
        let two_lines = |b: &[u8]| b.windows(2).filter(|w| w == b"\r\n").count() >= 2;
        let res = tokio::time::timeout(
            2 * HELLO_TIMEOUT,
            ask_node(host, port, req.as_bytes(), two_lines),
        )
        .await
        .map(|r| {
            r.map(|buf| {
                let text = String::from_utf8_lossy(&buf).into_owned();
                match text.split_once("\r\n") {
                    Some((setname, rest)) if setname.starts_with('+') => rest.to_string(),
                    _ => text,
                }
            })
        });
        let what = cmd[..2].join(" ");
        match res {
            Ok(Ok(reply)) if reply.starts_with('+') => Ok(()),
            Ok(Ok(reply)) if reply.starts_with('-') => Err(reply[1..].trim_end().to_string()),
            Ok(Ok(reply)) => Err(format!("ERR {what} via {to}: {}", reply.trim_end())),
            Ok(Err(e)) => Err(format!("ERR {what} via {to}: {e}")),
            Err(_) => Err(format!("ERR {what} via {to}: no answer")),
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

/// Sends `req` to the client port `host:port` and reads until `enough` holds (or the node
/// closes, or 64 KiB). Plain TCP first; if that gives nothing useful and node-to-node TLS is
/// on (`tls-cluster yes`), again over TLS: a TLS-only node names its TLS port.
async fn ask_node(
    host: &str,
    port: u16,
    req: &[u8],
    enough: impl Fn(&[u8]) -> bool,
) -> std::io::Result<Vec<u8>> {
    let mut last = Err(std::io::Error::other("not asked"));
    for tls in [false, true] {
        if tls && !crate::pubsub::relay::tls_enabled() {
            break;
        }
        let res = async {
            let mut sock = crate::pubsub::relay::dial(host, port, tls).await?;
            sock.write_all(req).await?;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !enough(&buf) && buf.len() < 64 * 1024 {
                let n = sock.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Ok::<_, std::io::Error>(buf)
        }
        .await;
        match res {
            Ok(buf) if enough(&buf) => return Ok(buf),
            other => last = other,
        }
    }
    last
}

/// Asks the node at `host:port` for its Raft id (`raft_node_id` in `INFO replication`).
async fn node_id_of(host: &str, port: u16) -> std::io::Result<NodeId> {
    let id_line = |b: &[u8]| {
        let text = String::from_utf8_lossy(b);
        text.split("raft_node_id:")
            .nth(1)
            .and_then(|rest| rest.split_once("\r\n"))
            .map(|(id, _)| id.trim().to_string())
    };
    let buf = ask_node(
        host,
        port,
        b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n",
        |b| id_line(b).is_some(),
    )
    .await?;
    match id_line(&buf) {
        Some(id) => id
            .parse()
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad raft_node_id")),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the node is not in Raft mode (no raft_node_id in INFO replication)",
        )),
    }
}
