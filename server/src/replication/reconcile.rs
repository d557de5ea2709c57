//! The reconciler: every second, each node makes the memberships of the shards it leads follow
//! the cluster's (see `membership`'s module comment), and announces its TLS port.

use super::meta::MetaCmd;
use super::shard_info::placement;
use super::Replication;
use pinnacle_raft::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often the shards' memberships are reconciled with the cluster's.
const RECONCILE_EVERY: Duration = Duration::from_millis(1000);
/// A voter whose last heartbeat ack is older than this is not a leadership target.
const ALIVE: Duration = Duration::from_millis(500);

/// The reconciler task (see the module comment).
pub(super) async fn reconcile(repl: Weak<Replication>) {
    let mut tick = tokio::time::interval(RECONCILE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(r) = repl.upgrade() else { return };
        reconcile_once(&r).await;
    }
}

async fn reconcile_once(r: &Arc<Replication>) {
    announce_tls_port(r);
    let st = r.meta_state();
    let leaving = st.leaving.clone();
    let meta_m = r.meta.metrics().membership_config.clone();
    let meta_m = meta_m.membership();
    // The cluster's nodes that stay, with their addresses.
    let wanted: BTreeMap<NodeId, String> = meta_m
        .voter_ids()
        .filter(|id| !leaving.contains(id))
        .filter_map(|id| meta_m.get_node(&id).map(|n| (id, n.addr.clone())))
        .collect();
    let nodes: Vec<NodeId> = wanted.keys().copied().collect();
    let mut in_some_shard: BTreeSet<NodeId> = BTreeSet::new();
    for s in r.shards.iter() {
        let m = s.group().metrics().membership_config.clone();
        let m = m.membership();
        match (s.outside_leader(), st.shard_info.get(&s.index())) {
            // Outside the group, this node's own view of it is stale: use the published one.
            (Some(_), Some(info)) => {
                in_some_shard.extend(info.voters.iter().chain(&info.learners).copied())
            }
            _ => in_some_shard.extend(m.nodes().map(|(id, _)| *id)),
        }
        if !s.is_leader() {
            continue;
        }
        let gid = super::shard::group_id(s.index());
        let alive = |v: &NodeId| s.group().peer_ack_age(*v).is_some_and(|age| age < ALIVE);
        if leaving.contains(&r.id) {
            // Hand the shard to a live member that stays; the new leader then removes us.
            let to = m
                .voter_ids()
                .filter(|v| *v != r.id && wanted.contains_key(v))
                .filter(alive)
                .min();
            if let Some(to) = to {
                hand_over(s, to, "leaving").await;
            }
            continue;
        }
        let gone: BTreeSet<NodeId> = m
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| leaving.contains(id) && *id != r.id)
            .collect();
        for id in gone {
            spawn_change(r, s.index(), gid, id, Change::RemoveLeaving);
        }
        // Where the shard should live: every node, or 3 of them in a larger cluster.
        let want: BTreeSet<NodeId> = placement(s.index(), &nodes).into_iter().collect();
        let voters: BTreeSet<NodeId> = m.voter_ids().collect();
        for id in want.difference(&voters) {
            if let Some(at) = wanted.get(id) {
                spawn_change(r, s.index(), gid, *id, Change::Add(at.clone()));
            }
        }
        // Replicas move only once every wanted node votes: the group never shrinks first.
        if !want.is_subset(&voters) {
            continue;
        }
        if !want.contains(&r.id) {
            let to = want.iter().copied().filter(alive).min();
            if let Some(to) = to {
                hand_over(s, to, "placement").await;
            }
            continue;
        }
        let misplaced: Vec<NodeId> = m
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| !want.contains(id) && *id != r.id && !leaving.contains(id))
            .collect();
        for id in misplaced {
            spawn_change(r, s.index(), gid, id, Change::RemoveMisplaced);
        }
    }
    if leaving.contains(&r.id) && r.meta.is_leader() {
        // The metadata leader can't remove itself: hand group 0 over as well.
        let to = wanted
            .keys()
            .copied()
            .find(|v| *v != r.id && r.meta.peer_ack_age(*v).is_some_and(|age| age < ALIVE));
        if let Some(to) = to {
            tracing::info!("leaving: metadata group → node {to}");
            if let Err(e) = r.meta.transfer_leader(to).await {
                tracing::warn!("leader transfer of the metadata group to {to} failed: {e}");
            }
        }
    }
    // A CLUSTER MEET answers before its node is a voter; if its promotion failed (the leader
    // that ran it lost its lease or the leadership) the node stays a metadata learner and is
    // never placed in a shard: the metadata leader finishes the MEET (T8 membership cycles
    // under load, soak seed 1796628808335691672).
    if r.meta.is_leader() {
        for id in meta_m.learner_ids().filter(|id| !leaving.contains(id)) {
            spawn_promote(r, id);
        }
    }
    // Last step of FORGET: a leaving node that is in no shard leaves the metadata group.
    if r.meta.is_leader() {
        for id in &leaving {
            if *id != r.id && !in_some_shard.contains(id) && meta_m.get_node(id).is_some() {
                spawn_change(r, usize::MAX, 0, *id, Change::RemoveLeaving);
            }
        }
    }
}

/// Records this node's TLS client port in the metadata when it differs from what is there
/// (first start, a restart with another `--tls-port`), once this node is a metadata voter.
fn announce_tls_port(r: &Arc<Replication>) {
    let want = r.own_tls_port();
    let st = r.meta_state();
    let have = st.tls_ports.get(&r.id).copied().unwrap_or(0);
    if want == have || st.leaving.contains(&r.id) || !is_voter(&r.meta, r.id) {
        return;
    }
    // Not a group id: this key only keeps one announcement in flight.
    let key = (u64::MAX, r.id);
    if !r.membership_changes.start(key) {
        return;
    }
    let r = r.clone();
    tokio::spawn(async move {
        let cmd = MetaCmd::TlsPort {
            id: r.id,
            port: want,
        };
        match r.meta.propose_anywhere(cmd.encode()).await {
            Ok(_) => tracing::info!("metadata: this node's TLS port is {want}"),
            Err(e) => tracing::debug!("announcing the TLS port: {e}"),
        }
        r.membership_changes.done(key);
    });
}

/// Transfers the leadership of shard `s` to node `to`, logging `why`.
async fn hand_over(s: &super::shard::Shard, to: NodeId, why: &str) {
    tracing::info!("{why}: shard {} → node {to}", s.index());
    if let Err(e) = s.group().transfer_leader(to).await {
        tracing::warn!("leader transfer of shard {} to {to} failed: {e}", s.index());
    }
}

/// Promotes metadata learner `id` to voter in the background, unless a change of it (its
/// MEET, or a removal) is already running here.
fn spawn_promote(r: &Arc<Replication>, id: NodeId) {
    if !r.membership_changes.start((0, id)) {
        return;
    }
    let r = r.clone();
    tokio::spawn(async move {
        tracing::info!("membership: promoting metadata learner {id} (an unfinished CLUSTER MEET)");
        match r.meta.add_voters(BTreeSet::from([id])).await {
            Ok(()) => tracing::info!("membership: node {id} votes in the metadata group"),
            Err(e) => tracing::warn!("promoting metadata learner {id} failed: {e}"),
        }
        r.membership_changes.done((0, id));
    });
}

/// A membership change of one node in one group.
enum Change {
    /// Add it (learner, then voter) at this address.
    Add(String),
    /// Remove it: `CLUSTER FORGET` marked it leaving.
    RemoveLeaving,
    /// Remove it: the shard's placement no longer includes it (every wanted node votes).
    RemoveMisplaced,
}

/// Applies `change` to node `id` in group `gid` (shard `index`, or the metadata group when
/// `gid` is 0) in the background, unless a change of that pair is already running.
fn spawn_change(r: &Arc<Replication>, index: usize, gid: u64, id: NodeId, change: Change) {
    if !r.membership_changes.start((gid, id)) {
        return;
    }
    let r = r.clone();
    tokio::spawn(async move {
        // Decided from a view taken before the change slot was ours: a CLUSTER MEET may have
        // welcomed the node back (removals) or FORGET marked it (additions) since.
        let leaving = r.meta_state().leaving.contains(&id);
        let stale = match &change {
            Change::Add(_) => leaving,
            Change::RemoveMisplaced => {
                leaving || placement(index, &r.cluster_nodes()).contains(&id)
            }
            Change::RemoveLeaving => !leaving,
        };
        if stale {
            r.membership_changes.done((gid, id));
            return;
        }
        let res = if gid == 0 {
            if is_voter(&r.meta, id) {
                r.meta.remove_voters(BTreeSet::from([id])).await
            } else {
                r.meta.remove_nodes(BTreeSet::from([id])).await
            }
        } else {
            let g = r.shards[index].group();
            match &change {
                Change::Add(at) => {
                    tracing::info!("membership: adding node {id} at {at} to shard {index}");
                    match g.add_learner(id, at).await {
                        Ok(()) => g.add_voters(BTreeSet::from([id])).await,
                        Err(e) => Err(e),
                    }
                }
                Change::RemoveLeaving | Change::RemoveMisplaced => {
                    tracing::info!("membership: removing node {id} from shard {index}");
                    // A voter is dropped entirely by RemoveVoters; RemoveNodes takes learners.
                    if is_voter(&g, id) {
                        g.remove_voters(BTreeSet::from([id])).await
                    } else {
                        g.remove_nodes(BTreeSet::from([id])).await
                    }
                }
            }
        };
        match res {
            Ok(()) if gid == 0 => tracing::info!("membership: node {id} left the cluster"),
            Ok(()) => tracing::info!("membership: node {id} changed in shard {index}"),
            Err(e) => tracing::warn!("membership change of node {id} in group {gid}: {e}"),
        }
        r.membership_changes.done((gid, id));
    });
}

pub(super) fn is_voter<A: pinnacle_raft::ApplyTarget>(
    g: &pinnacle_raft::Group<A>,
    id: NodeId,
) -> bool {
    g.metrics()
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == id)
}
