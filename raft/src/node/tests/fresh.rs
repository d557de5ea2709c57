//! A group that opened with nothing on disk, without `joining` (a new cluster's first start,
//! or a voter whose data folder was wiped and which was restarted under its old id), grants
//! no (pre-)vote to a candidate whose log is past a new cluster's first entry until a leader
//! has sent it appends: a wiped voter has forgotten the votes it cast.

use openraft::raft::{AppendEntriesRequest, VoteRequest};

use super::join::{granted_with_log as granted, log_id, pristine, CANDIDATE};
use super::*;
use crate::transport::frame::{RpcRequest, RpcResponse};
use crate::transport::Transport;
use crate::types::Vote;

/// A pristine node 5 (its folder, handle and bus address) and the candidate's transport.
async fn setup() -> (tempfile::TempDir, Transport, Member, String) {
    let root = tempfile::tempdir().unwrap();
    let cand = Transport::bind(CANDIDATE, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (m, addr) = pristine(5, root.path().join("n5"), false).await;
    (root, cand, m, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_opened_empty_votes_past_bootstrap_only_after_a_leader_reached_it() {
    let (root, cand, m, addr) = setup().await;

    // A candidate of a new cluster (its log holds at most the first entry) is answered as
    // before: the first election needs the empty nodes' votes.
    assert!(
        granted(&cand, 5, &addr, 1, 0, true).await,
        "bootstrap pre-vote"
    );
    // A candidate of an existing cluster is refused, pre-vote and vote alike.
    assert!(!granted(&cand, 5, &addr, 40, 7, true).await, "pre-vote");
    assert!(!granted(&cand, 5, &addr, 40, 7, false).await, "vote");

    // A leader's append (a heartbeat here) lifts the rule: that leader's term is past every
    // election this node may have voted in before it lost its disk.
    heartbeat(&cand, &addr, None).await;
    // (Once that leader's lease, which this node now honours, has run out.)
    let start = Instant::now();
    while !granted(&cand, 5, &addr, 50, 7, false).await {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no vote granted after a leader's append"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    m.node.shutdown().await;

    // Reopened, the group is no longer empty (it voted): nothing is refused any more.
    let mut o = NodeOptions::new(5, "127.0.0.1:0".parse().unwrap(), root.path().join("n5"));
    o.joining = false;
    let node = RaftNode::start(o).await.unwrap();
    let addr = node.addr().to_string();
    let _group = node
        .open_group(G, Arc::new(MemTarget::default()))
        .await
        .unwrap();
    assert!(
        granted(&cand, 5, &addr, 60, 7, true).await,
        "pre-vote after restart"
    );
    node.shutdown().await;
}

/// A heartbeat to node 5 (bus `addr`) from the leader of term 41 (the candidate's transport),
/// which has committed up to `leader_commit`.
async fn heartbeat(cand: &Transport, addr: &str, leader_commit: Option<crate::types::LogId>) {
    let hb = AppendEntriesRequest {
        vote: Vote::new_committed(41, CANDIDATE),
        prev_log_id: None,
        leader_commit,
        entries: vec![],
    };
    let r = cand
        .call(5, addr, G, RpcRequest::Append(hb), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(r, RpcResponse::Append(_)), "append: {r:?}");
}

/// A pre-vote request in `term` from a candidate whose last log id is `last`; true if granted.
async fn pre_vote_granted(
    from: &Transport,
    to: NodeId,
    addr: &str,
    term: u64,
    last: crate::types::LogId,
) -> bool {
    let req = VoteRequest::new(Vote::new(term, CANDIDATE), Some(last));
    match from
        .call(
            to,
            addr,
            G,
            RpcRequest::PreVote(req),
            Duration::from_secs(5),
        )
        .await
    {
        Ok(RpcResponse::Vote(r)) => r.vote_granted,
        other => panic!("pre-vote request to node {to}: {other:?}"),
    }
}

/// A node that opened empty and was reached by a leader (which had committed up to `c`) but
/// has not received `c` itself yet votes for a candidate holding `c`: when that leader dies,
/// the up-to-date survivor of a 3-node cluster needs this vote. It still refuses a candidate
/// whose log ends before `c`, which could lack an entry it acknowledged before losing its disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_behind_its_first_leaders_commit_votes_for_a_candidate_that_holds_it() {
    let (_root, cand, m, addr) = setup().await;

    // A heartbeat from the leader of term 41, which has committed up to (41, 30); this node's
    // log holds none of it (the entries never arrived).
    heartbeat(&cand, &addr, Some(log_id(41, 30))).await;

    // (Once that leader's lease has run out.)
    let start = Instant::now();
    while !pre_vote_granted(&cand, 5, &addr, 45, log_id(41, 30)).await {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no pre-vote granted to a candidate holding the leader's commit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        pre_vote_granted(&cand, 5, &addr, 45, log_id(43, 2)).await,
        "a later term's log holds every committed entry"
    );
    assert!(
        !pre_vote_granted(&cand, 5, &addr, 45, log_id(41, 29)).await,
        "a candidate without the leader's commit"
    );
    assert!(
        !pre_vote_granted(&cand, 5, &addr, 45, log_id(40, 90)).await,
        "a candidate whose log ends in an earlier term"
    );
    m.node.shutdown().await;
}
