//! What `CLUSTER SLOTS/SHARDS/NODES/INFO` show in Raft mode: the group is one Redis shard
//! owning all 16384 slots, its leader the master and the other members its replicas.
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

/// The shard id of the (only) group.
pub fn shard_id() -> String {
    format!("{:040x}", 0x5348_4152_4400_u64)
}

/// One member of the group.
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
    /// True for the leader this node trusts.
    pub leader: bool,
    /// False while a learner.
    pub voter: bool,
    /// Replication offset: the leader's match index for it (this node's own applied index
    /// when it is not the leader).
    pub offset: u64,
}

/// The group as seen from this node.
#[derive(Debug, Clone)]
pub struct Topology {
    /// This node's Raft id.
    pub me: NodeId,
    /// Every member, leader first.
    pub members: Vec<Member>,
    /// True when a live leader is known (`cluster_state:ok`).
    pub ok: bool,
    /// Current term (shown as the config epoch).
    pub term: u64,
}

impl Replication {
    /// The group's membership and leader as this node sees it.
    pub fn topology(&self) -> Topology {
        let m = self.group.metrics();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let ok = self.is_leader() || matches!(self.redirect(), super::Redirect::Leader(_));
        let leader = if ok { m.current_leader } else { None };
        let applied = m.last_applied.as_ref().map_or(0, |l| l.index);
        let mut members: Vec<Member> = membership
            .nodes()
            .map(|(id, node)| {
                let client = addr::client_addr(&node.addr);
                let bus = addr::bus_addr(&node.addr);
                let (ip, port) = split(&client);
                let (_, cport) = split(&bus);
                let offset = match &m.replication {
                    Some(rep) => rep
                        .get(id)
                        .and_then(|l| l.as_ref().map(|l| l.index))
                        .unwrap_or(0),
                    None if *id == self.id => applied,
                    None => 0,
                };
                Member {
                    id: *id,
                    ip,
                    port,
                    cport,
                    leader: Some(*id) == leader,
                    voter: voters.contains(id),
                    offset,
                }
            })
            .collect();
        members.sort_by_key(|mb| (!mb.leader, mb.id));
        Topology {
            me: self.id,
            members,
            ok,
            term: m.current_term,
        }
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
