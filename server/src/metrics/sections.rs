//! The metric families, one function per part of the node.

use super::latency::{lowest_at, Latencies};
use super::text::{float, Exposition, Kind};
use crate::command::table::table;
use crate::command::Server;
use std::sync::atomic::Ordering;

/// Upper bounds of the latency buckets, in nanoseconds (1 µs to 1 s).
const BUCKETS_NS: [u64; 19] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// Clients, connections, totals and errors by kind.
pub(super) fn process(e: &mut Exposition, s: &Server) {
    let st = &s.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    e.single(
        "pinnacle_uptime_seconds",
        Kind::Gauge,
        "Seconds since the process started.",
        s.started.elapsed().as_secs(),
    );
    e.single(
        "pinnacle_connected_clients",
        Kind::Gauge,
        "Client connections open now.",
        s.client_count(),
    );
    e.single(
        "pinnacle_blocked_clients",
        Kind::Gauge,
        "Clients waiting in a blocking command.",
        s.waiters.blocked(),
    );
    e.single(
        "pinnacle_connections_received_total",
        Kind::Counter,
        "Client connections accepted.",
        load(&st.connections_received),
    );
    e.single(
        "pinnacle_rejected_connections_total",
        Kind::Counter,
        "Connections refused by maxclients.",
        load(&st.rejected_connections),
    );
    e.single(
        "pinnacle_commands_processed_total",
        Kind::Counter,
        "Commands run, all kinds.",
        st.commands_processed(),
    );
    e.single(
        "pinnacle_net_input_bytes_total",
        Kind::Counter,
        "Bytes read from clients.",
        load(&st.net_input_bytes),
    );
    e.single(
        "pinnacle_net_output_bytes_total",
        Kind::Counter,
        "Bytes written to clients.",
        load(&st.net_output_bytes),
    );
    e.family(
        "pinnacle_errors_total",
        Kind::Counter,
        "Error replies by their first word (INFO errorstats).",
    );
    for (kind, n) in st.errors_by_code() {
        e.sample("pinnacle_errors_total", &[("kind", &kind)], n);
    }
}

/// One command's counters at scrape time.
struct Row {
    name: &'static str,
    index: usize,
    calls: u64,
    usec: u64,
    rejected: u64,
    failed: u64,
}

/// Per-command calls, refusals, failures and the run-time histogram.
pub(super) fn commands(e: &mut Exposition, s: &Server) {
    let t = table();
    let st = &s.stats;
    let mut rows = Vec::new();
    for entry in &t.entries {
        let Some(c) = st.cmd(entry.index) else {
            continue;
        };
        let row = Row {
            name: entry.spec.name,
            index: entry.index,
            calls: c.calls.load(Ordering::Relaxed),
            usec: c.usec.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        };
        if row.calls > 0 || row.rejected > 0 || row.failed > 0 {
            rows.push(row);
        }
    }
    type Count = fn(&Row) -> u64;
    let families: [(&str, &str, Count); 3] = [
        (
            "pinnacle_commands_total",
            "Commands run, by command.",
            |r| r.calls,
        ),
        (
            "pinnacle_command_rejected_total",
            "Commands refused before running (arity, auth, routing), by command.",
            |r| r.rejected,
        ),
        (
            "pinnacle_command_failed_total",
            "Commands that ran and replied with an error, by command.",
            |r| r.failed,
        ),
    ];
    for (name, help, get) in families {
        e.family(name, Kind::Counter, help);
        for r in &rows {
            e.sample(name, &[("cmd", r.name)], get(r));
        }
    }
    let name = "pinnacle_command_duration_seconds";
    e.family(
        name,
        Kind::Histogram,
        "Time a command's handler ran, by command.",
    );
    for r in &rows {
        histogram(e, name, r.name, &st.latency, r.index, r.usec);
    }
}

/// One command's `_bucket`/`_sum`/`_count` series, folded from its HDR counts.
fn histogram(e: &mut Exposition, name: &str, cmd: &str, lat: &Latencies, idx: usize, usec: u64) {
    let Some(h) = lat.get(idx) else {
        return;
    };
    let counts = h.snapshot();
    let mut cumulative = [0u64; BUCKETS_NS.len()];
    let mut total = 0;
    for (i, &c) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
        total += c;
        // A slot spans under 1 % of its value: it goes where its lowest value goes.
        let low = lowest_at(i);
        if let Some(b) = BUCKETS_NS.iter().position(|&le| low <= le) {
            cumulative[b] += c;
        }
    }
    if total == 0 {
        return;
    }
    let bucket = format!("{name}_bucket");
    let mut running = 0;
    for (le, c) in BUCKETS_NS.iter().zip(cumulative) {
        running += c;
        let le = float(*le as f64 / 1e9);
        e.sample(&bucket, &[("cmd", cmd), ("le", &le)], running);
    }
    e.sample(&bucket, &[("cmd", cmd), ("le", "+Inf")], total);
    e.sample(
        &format!("{name}_sum"),
        &[("cmd", cmd)],
        float(usec as f64 / 1e6),
    );
    e.sample(&format!("{name}_count"), &[("cmd", cmd)], total);
}

/// The LSM of every shard's keyspace.
pub(super) fn storage(e: &mut Exposition, s: &Server) {
    let stats: Vec<(String, pinnacle_lsm::Stats)> = s
        .dbs
        .iter()
        .enumerate()
        .map(|(i, db)| (i.to_string(), db.engine().stats()))
        .collect();
    e.family(
        "pinnacle_lsm_level_files",
        Kind::Gauge,
        "SSTables per level, by shard.",
    );
    for (shard, st) in &stats {
        for (l, lv) in st.levels.iter().enumerate() {
            let level = l.to_string();
            e.sample(
                "pinnacle_lsm_level_files",
                &[("shard", shard), ("level", &level)],
                lv.files,
            );
        }
    }
    e.family(
        "pinnacle_lsm_level_bytes",
        Kind::Gauge,
        "SSTable bytes per level, by shard.",
    );
    for (shard, st) in &stats {
        for (l, lv) in st.levels.iter().enumerate() {
            let level = l.to_string();
            e.sample(
                "pinnacle_lsm_level_bytes",
                &[("shard", shard), ("level", &level)],
                lv.bytes,
            );
        }
    }
    type Field = fn(&pinnacle_lsm::Stats) -> String;
    let per_shard: [(&str, Kind, &str, Field); 13] = [
        (
            "pinnacle_lsm_memtable_bytes",
            Kind::Gauge,
            "Bytes in the active and immutable memtables.",
            |s| s.memtable_bytes.to_string(),
        ),
        (
            "pinnacle_lsm_immutable_memtables",
            Kind::Gauge,
            "Memtables waiting to be flushed.",
            |s| s.immutable_memtables.to_string(),
        ),
        (
            "pinnacle_lsm_wal_bytes",
            Kind::Gauge,
            "Bytes in WAL segments not yet flushed (replayed by a restart).",
            |s| s.wal_live_bytes.to_string(),
        ),
        (
            "pinnacle_lsm_compaction_debt_bytes",
            Kind::Gauge,
            "Bytes compaction must still move down before every level is within target.",
            |s| s.compaction_debt_bytes.to_string(),
        ),
        (
            "pinnacle_lsm_write_amplification",
            Kind::Gauge,
            "(flush + compaction bytes written) / user bytes written.",
            |s| float(s.write_amplification()),
        ),
        (
            "pinnacle_lsm_user_bytes_written_total",
            Kind::Counter,
            "Key and value bytes accepted by writes.",
            |s| s.user_bytes_written.to_string(),
        ),
        (
            "pinnacle_lsm_wal_bytes_written_total",
            Kind::Counter,
            "Bytes appended to the WAL.",
            |s| s.wal_bytes_written.to_string(),
        ),
        (
            "pinnacle_lsm_flush_bytes_written_total",
            Kind::Counter,
            "SSTable bytes written by memtable flushes.",
            |s| s.flush_bytes_written.to_string(),
        ),
        (
            "pinnacle_lsm_compaction_bytes_written_total",
            Kind::Counter,
            "SSTable bytes written by compactions.",
            |s| s.compaction_bytes_written.to_string(),
        ),
        (
            "pinnacle_lsm_write_stalls_total",
            Kind::Counter,
            "Writes slowed or paused by a write stall.",
            |s| s.write_stalls.to_string(),
        ),
        (
            "pinnacle_lsm_bloom_negatives_total",
            Kind::Counter,
            "Point lookups a bloom filter answered without a block read.",
            |s| s.bloom_negatives.to_string(),
        ),
        (
            "pinnacle_lsm_block_cache_hits_total",
            Kind::Counter,
            "Block cache hits.",
            |s| s.block_cache_hits.to_string(),
        ),
        (
            "pinnacle_lsm_block_cache_misses_total",
            Kind::Counter,
            "Block cache misses.",
            |s| s.block_cache_misses.to_string(),
        ),
    ];
    for (name, kind, help, get) in per_shard {
        e.family(name, kind, help);
        for (shard, st) in &stats {
            e.sample(name, &[("shard", shard)], get(st));
        }
    }
}

/// Every Raft group on this node (cluster mode only).
pub(super) fn raft(e: &mut Exposition, s: &Server) {
    let Some(repl) = s.replication.get() else {
        return;
    };
    let groups: Vec<(String, pinnacle_raft::GroupStatus)> = repl
        .group_statuses()
        .into_iter()
        .map(|(g, st)| (g.to_string(), st))
        .collect();
    type Field = fn(&pinnacle_raft::GroupStatus) -> Option<u64>;
    let per_group: [(&str, &str, Field); 6] = [
        (
            "pinnacle_raft_term",
            "Current term, by group (0 is the metadata group).",
            |g| Some(g.term),
        ),
        (
            "pinnacle_raft_last_log_index",
            "Index of the last entry in this node's log.",
            |g| g.last_log_index,
        ),
        (
            "pinnacle_raft_commit_index",
            "Index of the last entry known committed.",
            |g| g.commit_index,
        ),
        (
            "pinnacle_raft_applied_index",
            "Index of the last entry applied to the state machine.",
            |g| g.applied_index,
        ),
        (
            "pinnacle_raft_leader",
            "1 if this node leads the group.",
            |g| Some(u64::from(g.role == pinnacle_raft::Role::Leader)),
        ),
        (
            "pinnacle_raft_leader_id",
            "Node id of the leader this node knows of (0: none).",
            |g| Some(g.leader_id.unwrap_or(0)),
        ),
    ];
    for (name, help, get) in per_group {
        e.family(name, Kind::Gauge, help);
        for (group, st) in &groups {
            if let Some(v) = get(st) {
                e.sample(name, &[("group", group)], v);
            }
        }
    }
    e.family(
        "pinnacle_raft_peer_lag",
        Kind::Gauge,
        "On the leader: entries a peer is missing, by group and peer.",
    );
    for (group, st) in &groups {
        for p in &st.peers {
            let peer = p.id.to_string();
            e.sample(
                "pinnacle_raft_peer_lag",
                &[("group", group), ("peer", &peer)],
                p.lag,
            );
        }
    }
}

/// The PINN's last training round and the forecast error of each model.
pub(super) fn pinn(e: &mut Exposition) {
    let svc = crate::pinn::service();
    let (rounds, accepted, rejected) = svc.rounds();
    e.family(
        "pinnacle_pinn_rounds_total",
        Kind::Counter,
        "Training rounds, by outcome.",
    );
    e.sample(
        "pinnacle_pinn_rounds_total",
        &[("outcome", "accepted")],
        accepted,
    );
    e.sample(
        "pinnacle_pinn_rounds_total",
        &[("outcome", "rejected")],
        rejected,
    );
    e.family(
        "pinnacle_pinn_loss",
        Kind::Gauge,
        "Each loss term of the last round (data, pde, bc, ic, total).",
    );
    if let Some(r) = rounds.last() {
        let t = &r.terms;
        for (term, v) in [
            ("data", t.data),
            ("pde", t.pde),
            ("bc", t.bc),
            ("ic", t.ic),
            ("total", t.total),
        ] {
            e.sample("pinnacle_pinn_loss", &[("term", term)], float(v as f64));
        }
        e.single(
            "pinnacle_pinn_round_seconds",
            Kind::Gauge,
            "Wall time of the last training round.",
            float(r.duration.as_secs_f64()),
        );
        e.single(
            "pinnacle_pinn_train_steps",
            Kind::Gauge,
            "Adam steps accumulated by the served weights.",
            r.total_steps,
        );
    }
    let scores = svc.scores();
    if let Some(us) = scores.forward_us {
        e.single(
            "pinnacle_pinn_forward_seconds",
            Kind::Gauge,
            "Time of the last forward pass over every bucket.",
            float(us / 1e6),
        );
    }
    e.family(
        "pinnacle_pinn_forecast_mse",
        Kind::Gauge,
        "Mean squared forecast error at the horizon, by model (pinn and each baseline).",
    );
    for (model, mse, _) in &scores.models {
        e.sample(
            "pinnacle_pinn_forecast_mse",
            &[("model", model)],
            float(*mse),
        );
    }
    e.family(
        "pinnacle_pinn_forecasts_scored",
        Kind::Gauge,
        "Forecasts scored against what was later observed, by model.",
    );
    for (model, _, n) in &scores.models {
        e.sample("pinnacle_pinn_forecasts_scored", &[("model", model)], n);
    }
    e.single(
        "pinnacle_pinn_decisions",
        Kind::Gauge,
        "Planner decisions kept in the log.",
        svc.decisions().len(),
    );
}
