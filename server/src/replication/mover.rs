//! The PINN layer's view of the cluster ([`SlotMover`]): shards, and slot migrations through
//! [`Replication::begin_migration`].

use super::topology::{cluster_id, shard_id_of};
use super::Replication;
use crate::pinn::mover::{MigrationRecord, MoveTarget, ShardInfo, SlotMover};
use std::sync::Arc;
use std::time::Duration;

/// [`SlotMover`] over a node's [`Replication`].
pub struct ClusterMover {
    repl: Arc<Replication>,
    rt: tokio::runtime::Handle,
}

impl ClusterMover {
    /// A mover for `repl`, running its async steps on `rt`.
    pub fn new(repl: Arc<Replication>, rt: tokio::runtime::Handle) -> ClusterMover {
        ClusterMover { repl, rt }
    }

    /// Runs `f` to completion from sync code, on a runtime worker or any other thread.
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.rt.block_on(f)),
            Err(_) => self.rt.block_on(f),
        }
    }

    fn record(&self, id: u64) -> Option<MigrationRecord> {
        let st = self.repl.meta_state();
        let m = st.migrations.get(&id)?;
        Some(MigrationRecord {
            id: m.id,
            state: m.state.name().to_string(),
            slots: m.slots.clone(),
            from: m.from,
            to: m.to,
            keys: m.keys,
            bytes: m.bytes,
            started_ms: m.started_ms,
            duration_ms: m.finished_ms.map(|f| f.saturating_sub(m.started_ms)),
            planner: m.planner.clone(),
            error: None,
        })
    }
}

impl SlotMover for ClusterMover {
    fn shards(&self) -> Vec<ShardInfo> {
        let map = self.repl.slot_map();
        self.repl
            .shards()
            .iter()
            .map(|s| {
                let i = s.index();
                ShardInfo {
                    index: i,
                    id: shard_id_of(i),
                    slots: map.ranges_of(i),
                    leader_node: s.live_leader().map(cluster_id),
                    leader_addr: self.repl.leader_client_addr(i),
                    local_leader: s.is_leader(),
                }
            })
            .collect()
    }

    fn start(&self, slots: Vec<(u16, u16)>, to: MoveTarget, planner: &str) -> Result<u64, String> {
        let to = match to {
            MoveTarget::Shard(i) => i,
            MoveTarget::Node(node) => {
                let map = self.repl.slot_map();
                self.repl
                    .shards()
                    .iter()
                    .filter(|s| s.live_leader().map(cluster_id).as_deref() == Some(&node))
                    .min_by_key(|s| (map.count(s.index()), s.index()))
                    .map(|s| s.index())
                    .ok_or_else(|| format!("ERR node {node} leads no shard"))?
            }
        };
        self.block_on(self.repl.begin_migration(slots, to, planner))
    }

    fn wait(&self, id: u64, timeout: Duration) -> Result<MigrationRecord, String> {
        self.block_on(self.repl.wait_migration(id, timeout))?;
        self.record(id)
            .ok_or_else(|| format!("ERR no migration {id}"))
    }

    fn migrations(&self) -> Vec<MigrationRecord> {
        let ids: Vec<u64> = self.repl.meta_state().migrations.keys().copied().collect();
        ids.into_iter().filter_map(|id| self.record(id)).collect()
    }
}
