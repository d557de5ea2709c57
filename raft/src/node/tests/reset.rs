//! A node removed from a group drops its replica ([`RaftNode::reset_group`]) and, added back,
//! catches up from the leader into the same state as everyone else.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_node_resets_and_catches_up_when_added_back() {
    let mut c = Cluster::start(3, |_| {}).await;
    propose_all(&c, "a", 30).await;
    let leader = c.confirmed_leader(Duration::from_secs(5)).await;
    let gone = *c.live.keys().find(|id| **id != leader).unwrap();
    on_leader(&c, |g| async move {
        g.remove_voters(BTreeSet::from([gone])).await
    })
    .await;
    let m = c.live.remove(&gone).unwrap();
    propose_all(&c, "b", 20).await;

    let term = m.group.metrics().current_term;
    let target = m.group.target().clone();
    assert!(!target.applied().is_empty());
    // Open groups refuse: only a stopped group's files may go.
    assert!(matches!(
        m.node.reset_group(G, target.clone()).await,
        Err(NodeError::GroupExists(G))
    ));
    m.node.close_group(G).await;
    m.node.reset_group(G, target.clone()).await.unwrap();
    assert!(target.applied().is_empty());
    let group = m.node.open_group(G, target.clone()).await.unwrap();
    // Initializing again is a no-op: the group must not be formed anew from the peer list.
    group.initialize(&c.members).await.unwrap();
    // Metrics are published once the group's core ran: wait for the vote read from disk.
    let metrics = wait_for(
        "the kept vote in the metrics",
        Duration::from_secs(5),
        || {
            let m = group.metrics();
            (m.current_term == term).then_some(m)
        },
    )
    .await;
    assert_eq!(metrics.last_log_index, None);
    assert_eq!(metrics.last_applied, None);
    assert_eq!(metrics.membership_config.membership().nodes().count(), 0);

    // Back in: it catches up from the leader's log, not from anything it had.
    let addr = c.members[&gone].clone();
    on_leader(&c, |g| {
        let addr = addr.clone();
        async move { g.add_learner(gone, &addr).await }
    })
    .await;
    on_leader(
        &c,
        |g| async move { g.add_voters(BTreeSet::from([gone])).await },
    )
    .await;
    c.live.insert(
        gone,
        Member {
            node: m.node,
            group,
        },
    );
    propose_all(&c, "c", 10).await;
    let applied = c.converged(Duration::from_secs(10)).await;
    assert_eq!(applied.len(), 60);
    c.shutdown().await;
}
