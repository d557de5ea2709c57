//! `Group::status` on a live three-node cluster.

use super::*;
use crate::status::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_reports_roles_leader_indexes_and_peer_lag() {
    let mut c = Cluster::start(3, |_| {}).await;
    propose_all(&c, "s", 10).await;
    let leader = c.confirmed_leader(Duration::from_secs(5)).await;
    let followers: Vec<NodeId> = c.live.keys().copied().filter(|i| *i != leader).collect();

    // Everyone caught up: no lag, commit = last log = applied everywhere.
    let st = wait_for("peers caught up", Duration::from_secs(5), || {
        let st = c.group(leader).status();
        let done = st.peers.len() == 2 && st.peers.iter().all(|p| p.lag == 0);
        done.then_some(st)
    })
    .await;
    assert_eq!(st.node_id, leader);
    assert_eq!(st.role, Role::Leader);
    assert_eq!(st.leader_id, Some(leader));
    assert_eq!(st.leader_addr.as_ref(), Some(&c.members[&leader]));
    assert_eq!(
        st.leader_client_addr(),
        Some(format!("127.0.0.1:{}", 7000 + leader))
    );
    assert!(st.term >= 1);
    let last = st.last_log_index.expect("entries");
    assert!(last >= 10, "{st:?}");
    assert_eq!(st.commit_index, Some(last));
    let ids: Vec<NodeId> = st.peers.iter().map(|p| p.id).collect();
    assert_eq!(ids, followers);
    for p in &st.peers {
        assert_eq!(p.addr, c.members[&p.id]);
        assert_eq!(p.client_addr(), format!("127.0.0.1:{}", 7000 + p.id));
        assert!(p.voter);
        assert_eq!(p.matched, Some(last));
    }
    for f in &followers {
        let fs = wait_for("follower applied", Duration::from_secs(5), || {
            let s = c.group(*f).status();
            (s.applied_index == Some(last)).then_some(s)
        })
        .await;
        assert_eq!(fs.role, Role::Follower);
        assert_eq!(fs.leader_id, Some(leader));
        assert_eq!(fs.leader_addr.as_ref(), Some(&c.members[&leader]));
        assert_eq!(fs.term, st.term);
        assert!(fs.peers.is_empty(), "only the leader reports peers");
    }

    // A dead follower falls behind by exactly what it missed; the live one keeps up.
    let (dead, alive) = (followers[0], followers[1]);
    c.kill(dead).await;
    propose_all(&c, "t", 20).await;
    let st = wait_for("lag visible", Duration::from_secs(5), || {
        let st = c.group(leader).status();
        let alive_ok = st.peers.iter().any(|p| p.id == alive && p.lag == 0);
        alive_ok.then_some(st)
    })
    .await;
    let d = st
        .peers
        .iter()
        .find(|p| p.id == dead)
        .expect("dead peer listed");
    assert!(d.lag >= 20, "{d:?}");
    assert_eq!(d.matched, Some(last));
    assert_eq!(st.commit_index, st.last_log_index);
    c.shutdown().await;
}
