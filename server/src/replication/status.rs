//! `INFO replication` in Raft mode.

use pinnacle_raft::NodeId;
use std::fmt::Write;

/// What the section shows, read from the group's metrics.
pub(super) struct Status {
    pub(super) id: NodeId,
    pub(super) state: String,
    pub(super) leader: Option<NodeId>,
    /// Client address (`ip:port`) of the leader, if known.
    pub(super) leader_addr: Option<String>,
    pub(super) term: u64,
    pub(super) last_log: u64,
    pub(super) committed: u64,
    pub(super) applied: u64,
    pub(super) snapshot: u64,
    /// On the leader: (peer id, client address, matched index).
    pub(super) peers: Option<Vec<(NodeId, String, u64)>>,
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
            let up = if self.leader.is_some() { "up" } else { "down" };
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
            "raft_term:{}\r\nraft_last_log_index:{}\r\nraft_commit_index:{}\r\nraft_applied_index:{}\r\nraft_snapshot_index:{}\r\n",
            self.term, self.last_log, self.committed, self.applied, self.snapshot,
        );
        for (peer, addr, matched) in self.peers.iter().flatten() {
            let _ = write!(
                out,
                "raft_peer{peer}:addr={addr},match={matched},lag={}\r\n",
                self.last_log.saturating_sub(*matched)
            );
        }
        out
    }
}
