//! A node started empty to be added by the leaders ([`NodeOptions::joining`], the server's
//! `--cluster-join`) grants no vote or pre-vote until the group's membership includes it: a
//! wiped node restarted under an old voter's id must not vote twice in a term.

use openraft::raft::VoteRequest;
use openraft::type_config::alias::{CommittedLeaderIdOf, LeaderIdOf};
use openraft::vote::RaftLeaderId;

use super::*;
use crate::transport::frame::{RpcRequest, RpcResponse};
use crate::transport::Transport;
use crate::types::{LogId, Vote};

/// A node id no member has: the candidate asking for votes.
pub(super) const CANDIDATE: NodeId = 9;

pub(super) fn log_id(term: u64, index: u64) -> LogId {
    let c: CommittedLeaderIdOf<TypeConfig> =
        LeaderIdOf::<TypeConfig>::new(term, CANDIDATE).to_committed();
    LogId::new(c, index)
}

/// Asks node `to` (bus `addr`) for a vote (or pre-vote) in `term` from a candidate whose log
/// is far ahead of anyone's; true if granted.
async fn granted(from: &Transport, to: NodeId, addr: &str, term: u64, pre: bool) -> bool {
    granted_with_log(from, to, addr, term, 1 << 40, pre).await
}

/// Asks node `to` (bus `addr`) for a vote (or pre-vote) in `term` from a candidate whose last
/// log index is `last`; true if granted.
pub(super) async fn granted_with_log(
    from: &Transport,
    to: NodeId,
    addr: &str,
    term: u64,
    last: u64,
    pre: bool,
) -> bool {
    let req = VoteRequest::new(Vote::new(term, CANDIDATE), Some(log_id(term, last)));
    let req = if pre {
        RpcRequest::PreVote(req)
    } else {
        RpcRequest::Vote(req)
    };
    match from.call(to, addr, G, req, Duration::from_secs(5)).await {
        Ok(RpcResponse::Vote(r)) => r.vote_granted,
        other => panic!("vote request to node {to}: {other:?}"),
    }
}

/// A pristine node on `dir` with `joining` set as given, its group opened.
pub(super) async fn pristine(
    id: NodeId,
    dir: std::path::PathBuf,
    joining: bool,
) -> (Member, String) {
    let mut o = NodeOptions::new(id, "127.0.0.1:0".parse().unwrap(), dir);
    o.joining = joining;
    let node = RaftNode::start(o).await.unwrap();
    let addr = node.addr().to_string();
    let group = node
        .open_group(G, Arc::new(MemTarget::default()))
        .await
        .unwrap();
    (Member { node, group }, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_node_votes_only_once_it_is_a_member() {
    let mut c = Cluster::start(3, |_| {}).await;
    propose_all(&c, "j", 20).await;
    let cand = Transport::bind(CANDIDATE, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();

    // Even without `joining`, a node that opened empty refuses a candidate whose log is past
    // a new cluster's first entry until a leader reaches it (`fresh.rs` tests that rule).
    let (plain, plain_addr) = pristine(5, c._root.path().join("n5"), false).await;
    assert!(!granted(&cand, 5, &plain_addr, 40, true).await, "pre-vote");
    assert!(!granted(&cand, 5, &plain_addr, 40, false).await, "vote");
    plain.node.shutdown().await;

    // A joining node refuses both while it is in no membership.
    let (m4, addr4) = pristine(4, c._root.path().join("n4"), true).await;
    assert!(
        !granted(&cand, 4, &addr4, 50, true).await,
        "pre-vote before joining"
    );
    assert!(
        !granted(&cand, 4, &addr4, 50, false).await,
        "vote before joining"
    );
    assert!(
        m4.group.metrics().vote.leader_id().term < 50,
        "the refused vote request still moved node 4's term"
    );

    // Added by the leader (a learner is in the membership), it votes as any member does once
    // no leader lease holds it back.
    c.live.insert(4, m4);
    on_leader(&c, |g| {
        let addr4 = addr4.clone();
        async move { g.add_learner(4, &addr4).await }
    })
    .await;
    wait_for(
        "node 4 to see itself in the membership",
        Duration::from_secs(10),
        || {
            let m = c.group(4).metrics();
            m.membership_config
                .membership()
                .get_node(&4)
                .is_some()
                .then_some(())
        },
    )
    .await;
    for id in [1, 2, 3] {
        c.kill(id).await;
    }
    let start = Instant::now();
    while !granted(&cand, 4, &addr4, 60, false).await {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "node 4 never granted a vote after it was added"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.shutdown().await;
}
