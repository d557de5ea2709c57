//! `CLUSTER MEET` / `CLUSTER FORGET` in Raft mode: membership changes run in the background
//! (like Redis's handshake), in every shard the receiving node leads. (With several shards led
//! by different nodes, send the command to each shard leader.)

use super::Replication;
use pinnacle_raft::NodeId;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long MEET waits for the new node to answer `INFO replication`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

impl Replication {
    /// Adds the node whose client port is `host:port` (bus `bus`): learns its Raft id from
    /// its `INFO replication`, adds it as a learner, and makes it a voter once it caught up.
    pub fn meet(self: &Arc<Self>, host: String, port: u16, bus: u16) -> Result<(), String> {
        if !self.is_leader() {
            return Err("ERR CLUSTER MEET must be sent to the Raft leader".into());
        }
        let me = self.clone();
        tokio::runtime::Handle::current().spawn(async move {
            let addr = format!("{host}:{port}@{bus}");
            let id = match tokio::time::timeout(HELLO_TIMEOUT, node_id_of(&host, port)).await {
                Ok(Ok(id)) => id,
                Ok(Err(e)) => {
                    tracing::warn!("CLUSTER MEET {host}:{port}: {e}");
                    return;
                }
                Err(_) => {
                    tracing::warn!("CLUSTER MEET {host}:{port}: no answer");
                    return;
                }
            };
            if me.meta.is_leader() {
                // The slot map too, or the new node would route from a stale copy.
                if let Err(e) = me.meta.add_learner(id, &addr).await {
                    tracing::warn!(
                        "CLUSTER MEET: adding learner {id} to the metadata group failed: {e}"
                    );
                } else if let Err(e) = me.meta.add_voters(BTreeSet::from([id])).await {
                    tracing::warn!(
                        "CLUSTER MEET: promoting {id} in the metadata group failed: {e}"
                    );
                }
            }
            for s in me.shards.iter().filter(|s| s.is_leader()) {
                let i = s.index();
                tracing::info!(
                    "CLUSTER MEET: adding node {id} at {addr} to shard {i} as a learner"
                );
                if let Err(e) = s.group.add_learner(id, &addr).await {
                    tracing::warn!("CLUSTER MEET: adding learner {id} to shard {i} failed: {e}");
                    continue;
                }
                match s.group.add_voters(BTreeSet::from([id])).await {
                    Ok(()) => tracing::info!("CLUSTER MEET: node {id} is a voter of shard {i}"),
                    Err(e) => {
                        tracing::warn!("CLUSTER MEET: promoting {id} in shard {i} failed: {e}")
                    }
                }
            }
        });
        Ok(())
    }

    /// Removes node `id` from the group.
    pub fn forget(self: &Arc<Self>, id: NodeId) -> Result<(), String> {
        if id == self.id {
            return Err("ERR I tried hard but I can't forget myself...".into());
        }
        if !self.is_leader() {
            return Err("ERR CLUSTER FORGET must be sent to the Raft leader".into());
        }
        let known = self.shards.iter().any(|s| {
            s.group
                .metrics()
                .membership_config
                .membership()
                .get_node(&id)
                .is_some()
        });
        if !known {
            return Err(format!("ERR Unknown node {id}"));
        }
        let me = self.clone();
        tokio::runtime::Handle::current().spawn(async move {
            for s in me.shards.iter().filter(|s| s.is_leader()) {
                match s.group.remove_voters(BTreeSet::from([id])).await {
                    Ok(()) => {
                        tracing::info!("CLUSTER FORGET: node {id} removed from shard {}", s.index())
                    }
                    Err(e) => {
                        tracing::warn!("CLUSTER FORGET {id} in shard {} failed: {e}", s.index())
                    }
                }
            }
        });
        Ok(())
    }
}

/// Asks the node at `host:port` for its Raft id (`raft_node_id` in `INFO replication`).
async fn node_id_of(host: &str, port: u16) -> std::io::Result<NodeId> {
    let mut sock = tokio::net::TcpStream::connect((host, port)).await?;
    sock.write_all(b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n")
        .await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(rest) = text.split("raft_node_id:").nth(1) {
            if let Some((id, _)) = rest.split_once("\r\n") {
                return id.trim().parse().map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "bad raft_node_id")
                });
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the node is not in Raft mode (no raft_node_id in INFO replication)",
    ))
}
