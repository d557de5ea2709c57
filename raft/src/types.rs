//! The openraft type configuration shared by every group: opaque byte payloads in, opaque bytes out.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's id: stable for the life of the cluster, never reused for a node with an empty log.
pub type NodeId = u64;

/// A Raft group's id. One node runs many groups (shards + metadata); frames carry this id.
pub type GroupId = u64;

/// An opaque, already-encoded command. The crate never looks inside: the server owns the format.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Payload(pub Vec<u8>);

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.0.len())
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

/// What applying a [`Payload`] returned: the client's reply, opaque to this crate.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Reply(pub Vec<u8>);

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reply({} bytes)", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// Pinnacle's openraft type configuration (node = `BasicNode { addr }` = cluster-bus address).
    pub TypeConfig:
        D = Payload,
        R = Reply,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        // Standard Raft: at most one leader per term (reliability T8 checks it from the logs).
        // openraft's default `leader_id_adv` lets a voter that granted (term, a) also grant
        // (term, b > a), so two nodes could lead one term (safe there, but not what Raft's
        // and our criterion's "one leader per term" says).
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, NodeId>,
);

/// A log id (leader id + index) under [`TypeConfig`].
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A vote under [`TypeConfig`].
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// A log entry under [`TypeConfig`].
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// Membership plus the log id that stored it.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata (last log id + membership).
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// The openraft handle for one group with our state machine adapter.
pub type Raft<A> = openraft::Raft<TypeConfig, crate::state_machine::StateMachine<A>>;
