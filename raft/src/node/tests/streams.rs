//! The follower side of pipelined replication keeps each stream of a peer apart: openraft's
//! heartbeat worker sends every heartbeat as a stream of its own, and that must not end the
//! leader's replication stream (which used to split it over two concurrent `stream_append`s).

use openraft::raft::AppendEntriesRequest;

use super::*;
use crate::pipeline::Sessions;
use crate::transport::frame::RpcResponse;

/// A heartbeat-shaped append: the leader's vote, no entries, no previous log id (never conflicts).
fn heartbeat(vote: crate::types::Vote) -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote,
        prev_log_id: None,
        leader_commit: None,
        entries: vec![],
    }
}

fn accepted(r: RpcResponse) -> bool {
    matches!(r, RpcResponse::StreamAppend(Ok(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stream_from_a_peer_runs_beside_the_first() {
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.confirmed_leader(Duration::from_secs(5)).await;
    let follower = *c.live.keys().find(|id| **id != leader).unwrap();
    let group = c.group(follower);
    // The leader's own (committed) vote: a follower's may still be a vote it cast.
    let vote = c.group(leader).metrics().vote;
    let sessions = Sessions::new(group.raft.clone());
    // The sender's id only keys the sessions: use one no real node has.
    let from = 99;

    assert!(accepted(sessions.push(from, 1, heartbeat(vote)).await));
    assert!(accepted(sessions.push(from, 2, heartbeat(vote)).await));
    assert_eq!(sessions.open_streams(from), 2, "stream 2 ended stream 1");
    // Stream 1 still takes requests after stream 2 opened.
    assert!(accepted(sessions.push(from, 1, heartbeat(vote)).await));
    assert_eq!(sessions.open_streams(from), 2);

    sessions.end(from, 2);
    assert_eq!(sessions.open_streams(from), 1);

    // Streams never ended (a lost connection) are bounded: the oldest go first.
    for stream in 3..20 {
        assert!(accepted(sessions.push(from, stream, heartbeat(vote)).await));
    }
    assert!(sessions.open_streams(from) <= 4);
    assert!(accepted(sessions.push(from, 19, heartbeat(vote)).await));
    sessions.end(from, 19);
    assert!(sessions.open_streams(from) < 4);
    c.shutdown().await;
}
