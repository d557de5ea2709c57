//! [`GroupStatus`]: a plain copy of one group's Raft state for `INFO replication`.

use openraft::{RaftMetrics, ServerState};

use crate::addr;
use crate::apply::ApplyTarget;
use crate::node::Group;
use crate::types::{LogId, NodeId, TypeConfig};

/// This node's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Leads the group: accepts proposals and serves reads after a barrier.
    Leader,
    /// A voter following a leader (or waiting for one).
    Follower,
    /// A voter campaigning for leadership.
    Candidate,
    /// A non-voter receiving the log (also a pristine node before `initialize`).
    Learner,
    /// The group stopped (shut down or failed; see [`Group::fatal`]).
    Shutdown,
}

impl Role {
    /// Lower-case name: `leader`, `follower`, `candidate`, `learner`, `shutdown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        }
    }
}

/// A peer's replication progress as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's node id.
    pub id: NodeId,
    /// Its `BasicNode.addr` (`ip:port@cport`); [`PeerStatus::client_addr`] gives `ip:port`.
    pub addr: String,
    /// True for a voter, false for a learner.
    pub voter: bool,
    /// Index of the last entry known to be in the peer's log (`None`: nothing matched yet).
    pub matched: Option<u64>,
    /// Entries the peer is missing relative to the leader's log.
    pub lag: u64,
}

impl PeerStatus {
    /// The peer's client address `ip:port` (see [`addr::client_addr`]).
    pub fn client_addr(&self) -> String {
        addr::client_addr(&self.addr)
    }
}

/// One group's Raft state on this node. Log indexes start at 0 (the first entry is index 0),
/// so `None` means "no entry", not index 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// This node's id.
    pub node_id: NodeId,
    /// This node's role.
    pub role: Role,
    /// The leader this node knows of.
    pub leader_id: Option<NodeId>,
    /// The leader's `BasicNode.addr` (`ip:port@cport`); see [`GroupStatus::leader_client_addr`].
    pub leader_addr: Option<String>,
    /// The current term.
    pub term: u64,
    /// Index of the last entry in this node's log.
    pub last_log_index: Option<u64>,
    /// Index of the last entry this node knows to be committed.
    pub commit_index: Option<u64>,
    /// Index of the last entry applied to the state machine.
    pub applied_index: Option<u64>,
    /// Every other member's progress, in id order; empty unless this node leads.
    pub peers: Vec<PeerStatus>,
}

impl GroupStatus {
    /// The leader's client address `ip:port` (see [`addr::client_addr`]).
    pub fn leader_client_addr(&self) -> Option<String> {
        self.leader_addr.as_deref().map(addr::client_addr)
    }

    /// Builds the status from a metrics snapshot.
    pub fn from_metrics(m: &RaftMetrics<TypeConfig>) -> GroupStatus {
        let membership = m.membership_config.membership();
        let node_addr = |id: &NodeId| membership.get_node(id).map(|n| n.addr.clone());
        // Entries in a log whose last index is `i`: indexes start at 0.
        let count = |i: Option<u64>| i.map_or(0, |i| i + 1);
        let index = |l: &Option<LogId>| l.as_ref().map(|l| l.index);
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let peers = match (&m.replication, role) {
            (Some(rep), Role::Leader) => rep
                .iter()
                .filter(|(id, _)| **id != m.id)
                .map(|(id, matched)| {
                    let matched = index(matched);
                    PeerStatus {
                        id: *id,
                        addr: node_addr(id).unwrap_or_default(),
                        voter: voters.contains(id),
                        matched,
                        lag: count(m.last_log_index).saturating_sub(count(matched)),
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        GroupStatus {
            node_id: m.id,
            role,
            leader_id: m.current_leader,
            leader_addr: m.current_leader.as_ref().and_then(node_addr),
            term: m.current_term,
            last_log_index: m.last_log_index,
            commit_index: index(&m.local_committed),
            applied_index: index(&m.last_applied),
            peers,
        }
    }
}

impl<A: ApplyTarget> Group<A> {
    /// This group's state for `INFO replication`; cheap (copies from the metrics watch).
    pub fn status(&self) -> GroupStatus {
        use openraft::type_config::async_runtime::watch::WatchReceiver;
        GroupStatus::from_metrics(&self.raft().metrics().borrow_watched())
    }
}
