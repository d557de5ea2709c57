//! `INFO replication` in Raft mode.

use pinnacle_raft::NodeId;
use std::fmt::Write;

/// What the section shows, read from the group's metrics.
pub(super) struct Status {
    pub(super) id: NodeId,
    pub(super) state: String,
    pub(super) leader: Option<NodeId>,
    /// A follower heard from that leader lately (else it answers CLUSTERDOWN).
    pub(super) leader_alive: bool,
    /// Client address (`ip:port`) of the leader, if known.
    pub(super) leader_addr: Option<String>,
    pub(super) term: u64,
    pub(super) last_log: u64,
    pub(super) committed: u64,
    pub(super) applied: u64,
    pub(super) snapshot: u64,
    /// Index of the last log entry purged (deleted behind a snapshot); 0 when none. A follower
    /// whose log ends before it can only catch up by installing a snapshot.
    pub(super) purged: u64,
    /// On the leader: every node it replicates to (itself included).
    pub(super) peers: Option<Vec<Peer>>,
    /// Entries this node proposed and the commands they carried (batching).
    pub(super) proposals: u64,
    pub(super) proposed_commands: u64,
    /// Read-barrier rounds run (shared by concurrent readers).
    pub(super) barriers: u64,
}

/// One replication target of the leader.
pub(super) struct Peer {
    pub(super) id: NodeId,
    /// Client address (`ip:port`).
    pub(super) addr: String,
    pub(super) matched: u64,
    /// False while it is a learner (added by CLUSTER MEET, still catching up).
    pub(super) voter: bool,
}

impl Status {
    /// Formats the section.
    pub(super) fn info(&self) -> String {
        let leads = self.leader == Some(self.id);
        let role = if leads { "master" } else { "slave" };
        let mut out = String::new();
        let _ = write!(out, "role:{role}\r\n");
        if leads {
            let n = self.peers.as_ref().map_or(0, |p| p.len().saturating_sub(1));
            let _ = write!(out, "connected_slaves:{n}\r\n");
        } else {
            if let Some((host, port)) = self.leader_addr.as_deref().and_then(|a| a.rsplit_once(':'))
            {
                let _ = write!(out, "master_host:{host}\r\nmaster_port:{port}\r\n");
            }
            let up = if self.leader_alive { "up" } else { "down" };
            let _ = write!(out, "master_link_status:{up}\r\n");
        }
        let _ = write!(
            out,
            "raft_node_id:{}\r\nraft_state:{}\r\nraft_leader_id:{}\r\nraft_leader_addr:{}\r\n",
            self.id,
            self.state,
            self.leader.map(|l| l.to_string()).unwrap_or_default(),
            self.leader_addr.as_deref().unwrap_or_default(),
        );
        let _ = write!(
            out,
            "raft_term:{}\r\nraft_last_log_index:{}\r\nraft_commit_index:{}\r\nraft_applied_index:{}\r\nraft_snapshot_index:{}\r\nraft_purged_index:{}\r\n",
            self.term, self.last_log, self.committed, self.applied, self.snapshot, self.purged,
        );
        let _ = write!(
            out,
            "raft_proposals:{}\r\nraft_proposed_commands:{}\r\nraft_read_barriers:{}\r\n",
            self.proposals, self.proposed_commands, self.barriers,
        );
        for p in self.peers.iter().flatten() {
            let _ = write!(
                out,
                "raft_peer{}:addr={},match={},lag={},voter={}\r\n",
                p.id,
                p.addr,
                p.matched,
                self.last_log.saturating_sub(p.matched),
                if p.voter { "yes" } else { "no" },
            );
        }
        out
    }
}
