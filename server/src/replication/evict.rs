//! Dropping this node's copy of a shard whose Raft group it was removed from (placement moved
//! the replica to another node, or `CLUSTER FORGET`).
//!
//! Each shard has its own keyspace (`shard-<i>/`) that only that group's log writes, so a
//! removed node drops all of it: no slot of a shard it still replicates lives there. A node
//! outside a group already redirects that shard's keys (`MOVED`), so the copy is never served;
//! it only wasted disk and, worse, a stale log and state would be what the node resumed from
//! if the placement brought it back. Dropping it makes a returning node an empty learner that
//! the leader catches up from its log or a snapshot.
//!
//! When (all must hold, checked in this order):
//! 1. The published membership (`shard_info`, the leader's) leaves this node out, and the
//!    metadata is caught up with what this node had at start.
//! 2. No leader of the group sent this node anything for [`QUIET`]: a member, even a learner,
//!    hears heartbeats every 50 ms, so silence means the leaders stopped replicating to it.
//! 3. The shard leader answers (over the cluster bus) that its membership without this node is
//!    committed, at an index no older than the newest membership this node holds: a removed
//!    node often never learns that its removal committed (the leader stops sending to it once
//!    the entry is appended), and it must not drop entries it acknowledged while its
//!    acknowledgements could still count towards a commit or an election.
//! 4. After the group is stopped, still no leader contact since the question was asked: a
//!    node added back in between keeps its replica (the next round looks again).
//!
//! Then `RaftNode::reset_group` drops the log (keeping the vote), snapshots and keyspace with
//! a crash-safe mark, and the group is reopened empty. It is never done for the metadata
//! group (group 0 holds every node).

use super::Replication;
use pinnacle_raft::transport::frame::{RpcRequest, RpcResponse};
use pinnacle_raft::transport::APP_GROUP;
use pinnacle_raft::NodeId;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a leader must have been silent before this node asks whether it was removed.
const QUIET: Duration = Duration::from_secs(2);
/// How long the shard leader may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after looking at a shard before looking at it again.
const RETRY: Duration = Duration::from_secs(1);
/// Body prefix of the membership question (a forwarded MEET starts with an IP address).
const QUERY: &[u8] = b"\0committed-membership ";

/// Starts dropping the replica of every shard that satisfies the first two conditions (called
/// by the watcher; the rest runs in the background, one shard at a time each).
pub(super) fn check(r: &Arc<Replication>) {
    if !r.map_ready() {
        return;
    }
    for s in r.shards() {
        let Some((leader, at)) = s.outside_leader() else {
            continue;
        };
        let g = s.group();
        let m = g.metrics();
        let holds_state =
            m.last_log_index.is_some() || m.last_applied.is_some() || m.snapshot.is_some();
        let quiet = g.last_leader_contact().is_none_or(|(_, age)| age >= QUIET);
        if !holds_state || !quiet || s.evict_busy.swap(true, Ordering::AcqRel) {
            continue;
        }
        let (r, index) = (r.clone(), s.index());
        tokio::spawn(async move {
            evict(&r, index, leader, &at).await;
            tokio::time::sleep(RETRY).await;
            r.shards()[index].evict_busy.store(false, Ordering::Release);
        });
    }
}

/// Conditions 3 and 4, then the reset (see the module docs).
async fn evict(r: &Arc<Replication>, index: usize, leader: NodeId, at: &str) {
    let s = r.shards()[index].clone();
    let asked = Instant::now();
    let committed = match ask(r, index, leader, at).await {
        Ok(Some(committed)) => committed,
        Ok(None) => return,
        Err(why) => {
            tracing::debug!("shard {index}: not dropping the replica yet: {why}");
            return;
        }
    };
    let old = s.group();
    let mine = old
        .metrics()
        .membership_config
        .log_id()
        .as_ref()
        .map(|l| l.index);
    if mine.is_some_and(|i| i > committed) {
        return;
    }
    let gid = super::shard::group_id(index);
    s.evicting.store(true, Ordering::Release);
    r.node.close_group(gid).await;
    let contacted = old
        .last_leader_contact()
        .is_some_and(|(_, age)| age < asked.elapsed());
    let target = old.target().clone();
    if contacted {
        tracing::info!("shard {index}: a leader contacted this node again; keeping its replica");
    } else {
        tracing::info!(
            "shard {index}: this node left the group (committed at {committed}); dropping its replica"
        );
        if let Err(e) = r.node.reset_group(gid, target.clone()).await {
            // Fail-stop: the group is closed and its files may be half gone (the mark makes the
            // next start finish the job).
            tracing::error!("dropping the replica of shard {index} failed, stopping: {e}");
            std::process::exit(1);
        }
    }
    match r.node.open_group(gid, target).await {
        Ok(g) => {
            s.replace_group(g);
            s.evicting.store(false, Ordering::Release);
        }
        Err(e) => {
            tracing::error!("reopening the group of shard {index} failed, stopping: {e}");
            std::process::exit(1);
        }
    }
}

/// Asks the shard leader for its committed membership: `Some(index)` of a committed membership
/// without this node, `None` if it has this node (or a change is still running).
async fn ask(
    r: &Replication,
    index: usize,
    leader: NodeId,
    at: &str,
) -> Result<Option<u64>, String> {
    let mut body = QUERY.to_vec();
    body.extend_from_slice(index.to_string().as_bytes());
    let res = r
        .node
        .transport()
        .call(leader, at, APP_GROUP, RpcRequest::App(body), ASK_TIMEOUT)
        .await;
    match res {
        Ok(RpcResponse::App(Ok(b))) => decode_answer(&b).ok_or_else(|| "bad answer".to_string()),
        Ok(RpcResponse::App(Err(e))) => Err(e),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The shard index of a membership question, if `body` is one.
pub(super) fn decode_query(body: &[u8]) -> Option<usize> {
    std::str::from_utf8(body.strip_prefix(QUERY)?)
        .ok()?
        .parse()
        .ok()
}

fn decode_answer(b: &[u8]) -> Option<Option<u64>> {
    match std::str::from_utf8(b).ok()? {
        "member" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

/// The leader's side of [`ask`]: its membership if committed (applied), as the index of its
/// log entry, or `member` if it has node `from`.
pub(super) fn answer(r: &Replication, index: usize, from: NodeId) -> Result<Vec<u8>, String> {
    let s = r.shards().get(index).ok_or("ERR no such shard")?;
    let g = s.group();
    if !g.is_leader() {
        return Err("ERR not the shard leader".into());
    }
    let m = g.metrics();
    let at = m.membership_config.log_id().as_ref().map_or(0, |l| l.index);
    let applied = m.last_applied.as_ref().map_or(0, |l| l.index);
    if m.membership_config.membership().get_node(&from).is_some() {
        return Ok(b"member".to_vec());
    }
    if at > applied {
        return Err("ERR a membership change is not committed yet".into());
    }
    Ok(at.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_and_answers_round_trip() {
        let mut q = QUERY.to_vec();
        q.extend_from_slice(b"3");
        assert_eq!(decode_query(&q), Some(3));
        assert_eq!(decode_query(b"127.0.0.1\n7000\n17000"), None);
        assert_eq!(decode_answer(b"member"), Some(None));
        assert_eq!(decode_answer(b"42"), Some(Some(42)));
        assert_eq!(decode_answer(b"x"), None);
    }
}
