//! Spreads shard leaders over the nodes so that every node leads some slots (a 3-node cluster
//! shows 3 masters, and `redis-benchmark --cluster` needs at least 2).
//!
//! Rule, checked every second on each node: a node leading more than one shard above the
//! least-loaded live voter hands one of them to that voter (openraft leader transfer). Counts
//! only fall towards the minimum, so it never flaps, and one shard never moves at all.

use super::shard_info::placement;
use super::Replication;
use pinnacle_raft::NodeId;
use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

/// How often the rule is checked.
const EVERY: Duration = Duration::from_millis(1000);
/// A voter whose last heartbeat ack is older than this is not a transfer target.
const ALIVE: Duration = Duration::from_millis(500);

pub(super) async fn run(repl: Weak<Replication>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(r) = repl.upgrade() else { return };
        if r.shards.len() < 2 {
            continue;
        }
        if let Some((shard, to)) = pick(&r) {
            tracing::info!("spreading leaders: shard {shard} → node {to}");
            if let Err(e) = r.shards[shard].group().transfer_leader(to).await {
                tracing::warn!("leader transfer of shard {shard} to node {to} failed: {e}");
            }
        }
    }
}

/// A shard this node leads and the node to hand it to, if the rule says so.
fn pick(r: &Replication) -> Option<(usize, NodeId)> {
    // Nodes CLUSTER FORGET is taking out get no shard (and hand theirs away: reconcile.rs).
    let leaving = r.meta_state().leaving.clone();
    if leaving.contains(&r.id) {
        return None;
    }
    let voters = r.cluster_nodes();
    let mut led: BTreeMap<NodeId, usize> = voters.iter().map(|v| (*v, 0)).collect();
    for s in &r.shards {
        if let Some(l) = s.live_leader().filter(|l| !leaving.contains(l)) {
            *led.entry(l).or_default() += 1;
        }
    }
    let mine = led.get(&r.id).copied().unwrap_or(0);
    for s in r.shards.iter().filter(|s| s.is_leader()) {
        // Only to a node the shard's placement keeps (else the reconciler hands it back).
        let want = placement(s.index(), &voters);
        let m = s.group().metrics();
        let last = m.last_log_index.unwrap_or(0);
        let Some(rep) = m.replication.as_ref() else {
            continue;
        };
        // The least-loaded voter that is alive and has this shard's whole log.
        let target = led
            .iter()
            .filter(|(v, n)| **v != r.id && mine > **n + 1 && want.contains(v))
            .filter(|(v, _)| {
                let caught_up = rep
                    .get(v)
                    .and_then(|l| l.as_ref())
                    .is_some_and(|l| l.index >= last);
                let alive = s.group().peer_ack_age(**v).is_some_and(|age| age < ALIVE);
                caught_up && alive
            })
            .min_by_key(|(v, n)| (**n, **v))
            .map(|(v, _)| *v);
        if let Some(to) = target {
            return Some((s.index(), to));
        }
    }
    None
}
