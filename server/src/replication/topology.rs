//! What `CLUSTER SLOTS/SHARDS/NODES/INFO` show in Raft mode (layout (a) of redis-wire §10):
//! each node appears once, as a `master` owning the slots of the shards it leads; a node that
//! leads nothing is shown as a replica.
//!
//! Cluster node ids must be known for every member without an exchange, so in Raft mode a
//! node's 40-hex id is its Raft id in hex ([`cluster_id`]).

use super::Replication;
use pinnacle_raft::{addr, NodeId};

/// A node's 40-hex cluster id in Raft mode.
pub fn cluster_id(raft_id: NodeId) -> String {
    format!("{raft_id:040x}")
}

/// The Raft id named by a 40-hex cluster id or a plain decimal id (`CLUSTER FORGET`).
pub fn parse_node_ref(s: &str) -> Option<NodeId> {
    if s.len() == 40 {
        // The high 24 hex digits of a Raft-mode id are zero; the low 16 are the Raft id.
        let (high, low) = s.split_at(24);
        return (high.bytes().all(|b| b == b'0'))
            .then(|| u64::from_str_radix(low, 16).ok())
            .flatten();
    }
    s.parse().ok()
}

/// The 40-hex shard id of shard `index` (CLUSTER SHARDS, MYSHARDID).
pub fn shard_id_of(index: usize) -> String {
    format!("{:040x}", 0x5348_4152_4400_u64 + index as u64)
}

/// The shard id of shard 0 (this node's CLUSTER MYSHARDID).
pub fn shard_id() -> String {
    shard_id_of(0)
}

/// One node of the cluster.
#[derive(Debug, Clone)]
pub struct Member {
    /// Raft id.
    pub id: NodeId,
    /// Client ip.
    pub ip: String,
    /// Client port.
    pub port: u16,
    /// Cluster-bus port.
    pub cport: u16,
    /// TLS client port from the metadata (0: none announced).
    pub tls_port: u16,
    /// True if it leads at least one shard (a `master`).
    pub leader: bool,
    /// False while a learner.
    pub voter: bool,
    /// Replication offset in shard 0: the leader's match index for it (this node's own
    /// applied index when it is not the leader).
    pub offset: u64,
}

/// One member of one shard's group.
#[derive(Debug, Clone)]
pub struct ShardMember {
    /// Raft id.
    pub id: NodeId,
    /// True for the shard's live leader.
    pub leader: bool,
    /// False while a learner.
    pub voter: bool,
    /// Match index (leader's view) or own applied index.
    pub offset: u64,
}

/// One shard as this node sees it.
#[derive(Debug, Clone)]
pub struct ShardView {
    /// Index.
    pub index: usize,
    /// Slot runs it owns.
    pub slots: Vec<(u16, u16)>,
    /// Its live leader.
    pub leader: Option<NodeId>,
    /// Its leader as last known, even if silent (keeps CLUSTER SLOTS covering every slot).
    pub known_leader: Option<NodeId>,
    /// Every member, leader first.
    pub members: Vec<ShardMember>,
}

/// The cluster as seen from this node.
#[derive(Debug, Clone)]
pub struct Topology {
    /// This node's Raft id.
    pub me: NodeId,
    /// Every node, leaders first.
    pub members: Vec<Member>,
    /// Every shard, by index.
    pub shards: Vec<ShardView>,
    /// Slot runs `(start, end, shard)` covering all 16384 slots.
    pub ranges: Vec<(u16, u16, usize)>,
    /// True when every shard has a live leader (`cluster_state:ok`).
    pub ok: bool,
    /// Highest term of any shard (shown as the config epoch).
    pub term: u64,
}

impl Topology {
    /// The member with Raft id `id`.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Slot runs of the shards `id` leads, in slot order.
    pub fn slots_led_by(&self, id: NodeId) -> Vec<(u16, u16)> {
        self.ranges
            .iter()
            .filter(|(_, _, sh)| self.shards[*sh].leader == Some(id))
            .map(|&(a, b, _)| (a, b))
            .collect()
    }
}

impl Replication {
    /// Every shard's membership and leader, and the slot map, as this node sees them.
    pub fn topology(&self) -> Topology {
        let meta = self.meta_state();
        let map = meta.map.clone();
        // Every node of the cluster is in the metadata group (shards may live on 3 of them).
        let meta_m = self.meta.metrics().membership_config.clone();
        let meta_voters: std::collections::BTreeSet<NodeId> =
            meta_m.membership().voter_ids().collect();
        let mut addrs: std::collections::BTreeMap<NodeId, String> = meta_m
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let mut shards = Vec::with_capacity(self.shards.len());
        let mut term = 0;
        for s in &self.shards {
            if let (Some((leader, _)), Some(info)) =
                (s.outside_leader(), meta.shard_info.get(&s.index()))
            {
                // Outside this shard's group: what its leader published.
                term = term.max(info.term);
                let voters = info.voters.iter().map(|id| (*id, true));
                let learners = info.learners.iter().map(|id| (*id, false));
                let mut members: Vec<ShardMember> = voters
                    .chain(learners)
                    .map(|(id, voter)| ShardMember {
                        id,
                        leader: id == leader,
                        voter,
                        offset: 0,
                    })
                    .collect();
                members.sort_by_key(|mb| (!mb.leader, mb.id));
                shards.push(ShardView {
                    index: s.index(),
                    slots: map.ranges_of(s.index()),
                    leader: Some(leader),
                    known_leader: Some(leader),
                    members,
                });
                continue;
            }
            let m = s.group().metrics();
            term = term.max(m.current_term);
            let membership = m.membership_config.membership();
            let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
            let leader = s.live_leader();
            let applied = m.last_applied.as_ref().map_or(0, |l| l.index);
            let mut members: Vec<ShardMember> = membership
                .nodes()
                .map(|(id, node)| {
                    addrs.entry(*id).or_insert_with(|| node.addr.clone());
                    let offset = match &m.replication {
                        Some(rep) => rep
                            .get(id)
                            .and_then(|l| l.as_ref().map(|l| l.index))
                            .unwrap_or(0),
                        None if *id == self.id => applied,
                        None => 0,
                    };
                    ShardMember {
                        id: *id,
                        leader: Some(*id) == leader,
                        voter: voters.contains(id),
                        offset,
                    }
                })
                .collect();
            members.sort_by_key(|mb| (!mb.leader, mb.id));
            shards.push(ShardView {
                index: s.index(),
                slots: map.ranges_of(s.index()),
                leader,
                known_leader: leader.or(m.current_leader),
                members,
            });
        }
        let ok = shards.iter().all(|s| s.leader.is_some());
        let leaders: std::collections::BTreeSet<NodeId> =
            shards.iter().filter_map(|s| s.leader).collect();
        let mut members: Vec<Member> = addrs
            .iter()
            .map(|(id, a)| {
                let client = addr::client_addr(a);
                let bus = addr::bus_addr(a);
                let (ip, port) = split(&client);
                let (_, cport) = split(&bus);
                let in0 = shards
                    .first()
                    .and_then(|s| s.members.iter().find(|m| m.id == *id));
                Member {
                    id: *id,
                    ip,
                    port,
                    cport,
                    tls_port: meta.tls_ports.get(id).copied().unwrap_or(0),
                    leader: leaders.contains(id),
                    voter: meta_voters.contains(id) && in0.is_none_or(|m| m.voter),
                    offset: in0.map_or(0, |m| m.offset),
                }
            })
            .collect();
        members.sort_by_key(|mb| (!mb.leader, mb.id));
        Topology {
            me: self.id,
            members,
            shards,
            ranges: map.ranges(),
            ok,
            term,
        }
    }
}

impl Replication {
    /// Sets this node's TLS client port (0: none), which the reconciler records in the
    /// metadata so that every node can name it to TLS clients.
    pub fn set_tls_port(&self, port: u16) {
        self.tls_port
            .store(port, std::sync::atomic::Ordering::Relaxed);
    }

    /// This node's TLS client port (0: none).
    pub fn own_tls_port(&self) -> u16 {
        self.tls_port.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The TLS address (`host:tls-port`) of the member whose plain client address is
    /// `plain` (`host:port`, as redirects name it), if it announced a TLS port.
    pub fn tls_client_addr(&self, plain: &str) -> Option<String> {
        let st = self.meta_state();
        let m = self.meta.metrics();
        let m = m.membership_config.membership();
        let (id, _) = m
            .nodes()
            .find(|(_, n)| addr::client_addr(&n.addr) == plain)?;
        let port = *st.tls_ports.get(id).filter(|p| **p != 0)?;
        let (host, _) = plain.rsplit_once(':')?;
        Some(format!("{host}:{port}"))
    }

    /// Every other cluster member's client ports (the pub/sub relay's peers).
    pub fn peer_client_addrs(&self) -> Vec<crate::pubsub::relay::Peer> {
        let t = self.topology();
        t.members
            .iter()
            .filter(|m| m.id != t.me && (m.port != 0 || m.tls_port != 0))
            .map(|m| crate::pubsub::relay::Peer {
                host: m.ip.clone(),
                port: m.port,
                tls_port: m.tls_port,
            })
            .collect()
    }
}

fn split(a: &str) -> (String, u16) {
    match a.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().unwrap_or(0),
        ),
        None => (a.to_string(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for id in [0, 1, 42, u64::MAX] {
            let c = cluster_id(id);
            assert_eq!(c.len(), 40);
            assert_eq!(parse_node_ref(&c), Some(id));
        }
        assert_eq!(parse_node_ref("7"), Some(7));
        assert_eq!(parse_node_ref(&"f".repeat(40)), None);
        assert_eq!(parse_node_ref("x"), None);
        assert_eq!(shard_id().len(), 40);
    }
}
