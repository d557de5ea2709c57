//! Which nodes replicate each shard, and how a node outside a shard learns its leader.
//!
//! Placement: with more than [`REPLICAS`] nodes, shard `i` lives on [`REPLICAS`] of them,
//! chosen by [`placement`] from the cluster's nodes (the metadata group's voters that are not
//! leaving); the reconciler moves replicas until every group matches. Every node still runs the
//! metadata group and answers topology for all 16384 slots.
//!
//! A node outside a shard's group knows nothing of its leader from Raft. So each shard leader
//! publishes [`ShardInfo`] (term, leader, voters, learners) in the metadata group whenever that
//! changes; nodes outside the group route (`MOVED`), forward migration proposals and answer
//! `CLUSTER SLOTS/SHARDS/NODES` from it. A newer term always wins, so a late proposal from a
//! deposed leader never overwrites its successor's.

use super::meta::{self, MetaCmd};
use super::meta_image;
use super::Replication;
use bytes::{BufMut, BytesMut};
use pinnacle_raft::NodeId;
use std::sync::Arc;

/// Replicas per shard (fewer when the cluster has fewer nodes).
pub const REPLICAS: usize = 3;

/// The nodes shard `shard` should live on, given the cluster's nodes (any order): all of them
/// when there are at most [`REPLICAS`]; otherwise [`REPLICAS`] consecutive nodes in id order,
/// starting [`REPLICAS`] further along for each next shard, so replicas spread evenly.
pub fn placement(shard: usize, nodes: &[NodeId]) -> Vec<NodeId> {
    let mut sorted = nodes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let n = sorted.len();
    if n <= REPLICAS {
        return sorted;
    }
    let mut out: Vec<NodeId> = (0..REPLICAS)
        .map(|k| sorted[(shard * REPLICAS + k) % n])
        .collect();
    out.sort_unstable();
    out
}

/// What a shard's leader last published about its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// The leader's term.
    pub term: u64,
    /// The leader.
    pub leader: NodeId,
    /// Voters, in id order.
    pub voters: Vec<NodeId>,
    /// Learners (being added), in id order.
    pub learners: Vec<NodeId>,
}

impl ShardInfo {
    /// True if `id` is in the group (voter or learner).
    pub fn has(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Appends the wire form.
    pub(super) fn encode(&self, b: &mut BytesMut) {
        b.put_u64(self.term);
        b.put_u64(self.leader);
        for ids in [&self.voters, &self.learners] {
            b.put_u32(ids.len() as u32);
            for id in ids {
                b.put_u64(*id);
            }
        }
    }

    /// Reads the wire form (`None` if truncated).
    pub(super) fn decode(b: &mut &[u8]) -> Option<ShardInfo> {
        let term = meta_image::get_u64(b)?;
        let leader = meta_image::get_u64(b)?;
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = meta_image::get_u32(b)? as usize;
            if b.len() < n.checked_mul(8)? {
                return None;
            }
            for _ in 0..n {
                list.push(meta_image::get_u64(b)?);
            }
        }
        let [voters, learners] = lists;
        Some(ShardInfo {
            term,
            leader,
            voters,
            learners,
        })
    }
}

impl Replication {
    /// The cluster's nodes as the metadata group has them, without those leaving.
    pub(super) fn cluster_nodes(&self) -> Vec<NodeId> {
        let leaving = self.meta_state().leaving.clone();
        let m = self.meta.metrics().membership_config.clone();
        let nodes: Vec<NodeId> = m
            .membership()
            .voter_ids()
            .filter(|id| !leaving.contains(id))
            .collect();
        nodes
    }

    /// The full Raft address (`ip:port@cport`) of node `id`, from the metadata group.
    pub(super) fn node_addr(&self, id: NodeId) -> Option<String> {
        let m = self.meta.metrics().membership_config.clone();
        let addr = m.membership().get_node(&id).map(|n| n.addr.clone());
        addr
    }

    /// Shard `i`'s published leader and its full Raft address, when this node is outside the
    /// group (by the published membership); `None` when it is inside or nothing was published.
    pub(super) fn outside_leader(
        &self,
        st: &meta::MetaState,
        i: usize,
    ) -> Option<(NodeId, String)> {
        let info = st.shard_info.get(&i)?;
        if info.has(self.id) || info.leader == self.id {
            return None;
        }
        Some((info.leader, self.node_addr(info.leader)?))
    }

    /// Publishes what this node's led shards look like when the metadata differs (a new
    /// term, leader or membership), one proposal per shard at a time.
    pub(super) fn publish_shard_info(self: &Arc<Self>) {
        if !self.map_ready() {
            return;
        }
        let st = self.meta_state();
        for s in self.shards.iter().filter(|s| s.is_leader()) {
            let m = s.group().metrics();
            let membership = m.membership_config.membership();
            let mut voters: Vec<NodeId> = membership.voter_ids().collect();
            let mut learners: Vec<NodeId> = membership.learner_ids().collect();
            voters.sort_unstable();
            learners.sort_unstable();
            let info = ShardInfo {
                term: m.current_term,
                leader: self.id,
                voters,
                learners,
            };
            if st.shard_info.get(&s.index()) == Some(&info) {
                continue;
            }
            // Not a group id: keeps one publication per shard in flight.
            let key = (u64::MAX - 1 - s.index() as u64, self.id);
            if !self.membership_changes.start(key) {
                continue;
            }
            let r = self.clone();
            let cmd = MetaCmd::ShardInfo {
                shard: s.index(),
                info,
            };
            tokio::spawn(async move {
                if let Err(e) = r.meta.propose_anywhere(cmd.encode()).await {
                    tracing::debug!("publishing shard info: {e}");
                }
                r.membership_changes.done(key);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_clusters_put_every_shard_everywhere() {
        assert_eq!(placement(0, &[3, 1, 2]), vec![1, 2, 3]);
        assert_eq!(placement(7, &[5, 9]), vec![5, 9]);
        assert_eq!(placement(1, &[4]), vec![4]);
    }

    #[test]
    fn larger_clusters_get_three_replicas_spread_evenly() {
        let nodes = [1, 2, 3, 4];
        let mut load = std::collections::BTreeMap::<NodeId, usize>::new();
        for shard in 0..4 {
            let p = placement(shard, &nodes);
            assert_eq!(p.len(), REPLICAS, "shard {shard}: {p:?}");
            for id in p {
                *load.entry(id).or_default() += 1;
            }
        }
        // 4 shards × 3 replicas over 4 nodes: 3 each.
        assert!(load.values().all(|n| *n == 3), "{load:?}");
        // Order of the input does not matter: every node computes the same placement.
        assert_eq!(placement(2, &[4, 3, 2, 1]), placement(2, &nodes));
    }

    #[test]
    fn info_round_trips_and_rejects_truncation() {
        let info = ShardInfo {
            term: 9,
            leader: 2,
            voters: vec![1, 2, 4],
            learners: vec![5],
        };
        let mut b = BytesMut::new();
        info.encode(&mut b);
        let mut s: &[u8] = &b;
        assert_eq!(ShardInfo::decode(&mut s), Some(info.clone()));
        assert!(s.is_empty());
        for cut in 0..b.len() {
            let mut s: &[u8] = &b[..cut];
            assert_eq!(ShardInfo::decode(&mut s), None, "cut at {cut}");
        }
        assert!(info.has(5) && info.has(1) && !info.has(3));
    }
}
