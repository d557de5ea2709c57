//! INFO, with Redis's section and field names plus a `pinnacle` section for the LSM.

use super::connection::REDIS_VERSION;
use crate::command::table::table;
use crate::command::{Ctx, Handler, Server};
use crate::metrics::latency;
use bytes::Bytes;
use pinnacle_resp::Reply;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Handlers of this family.
pub const HANDLERS: &[(&str, Handler)] = &[("info", info)];

/// Sections in output order, and whether the default INFO includes them.
const SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("modules", true),
    ("commandstats", false),
    ("errorstats", true),
    ("latencystats", false),
    ("cluster", true),
    ("keyspace", true),
    ("pinnacle", true),
];

fn info(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let wanted: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let all = wanted.iter().any(|w| w == "all" || w == "everything");
    let default = wanted.is_empty() || wanted.iter().any(|w| w == "default");
    let mut out = String::new();
    for (name, in_default) in SECTIONS {
        let pick = all || (default && *in_default) || wanted.iter().any(|w| w == name);
        if !pick {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        section(ctx, name, &mut out);
    }
    Reply::Verbatim("txt", Bytes::from(out))
}

/// Appends `# Title\r\n` and the section's `field:value\r\n` lines.
fn section(ctx: &Ctx<'_>, name: &str, out: &mut String) {
    let s = ctx.server;
    // Redis's headers: capitalised, except `CPU`.
    let mut title = name.to_string();
    if name == "cpu" {
        title.make_ascii_uppercase();
    } else {
        title[..1].make_ascii_uppercase();
    }
    let _ = write!(out, "# {title}\r\n");
    let mut f = |k: &str, v: &dyn std::fmt::Display| {
        let _ = write!(out, "{k}:{v}\r\n");
    };
    match name {
        "server" => {
            let now_us = Server::unix_ms() * 1000;
            let up = s.started.elapsed().as_secs();
            f("redis_version", &REDIS_VERSION);
            f("redis_git_sha1", &"00000000");
            f("redis_git_dirty", &0);
            f("redis_build_id", &"0");
            f("redis_mode", &"cluster");
            f(
                "os",
                &format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            );
            f("arch_bits", &(usize::BITS));
            f("multiplexing_api", &"epoll");
            f("process_id", &std::process::id());
            f("process_supervised", &"no");
            f("run_id", &s.run_id);
            f("tcp_port", &s.config.get("port").unwrap_or_default());
            f("server_time_usec", &now_us);
            f("uptime_in_seconds", &up);
            f("uptime_in_days", &(up / 86400));
            f("hz", &s.config.get("hz").unwrap_or_default());
            f("configured_hz", &s.config.get("hz").unwrap_or_default());
            f(
                "executable",
                &std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
            f(
                "config_file",
                &s.config_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
            f("io_threads_active", &0);
            f("pinnacle_version", &env!("CARGO_PKG_VERSION"));
        }
        "clients" => {
            f("connected_clients", &s.client_count());
            f("cluster_connections", &0);
            f(
                "maxclients",
                &s.config.get("maxclients").unwrap_or_default(),
            );
            f("blocked_clients", &s.waiters.blocked());
            f("tracking_clients", &0);
            f("clients_in_timeout_table", &0);
        }
        "memory" => {
            let rss = rss_bytes();
            f("used_memory", &rss);
            f("used_memory_human", &human(rss));
            f("used_memory_rss", &rss);
            f("used_memory_rss_human", &human(rss));
            f("maxmemory", &s.config.get("maxmemory").unwrap_or_default());
            f(
                "maxmemory_human",
                &human(s.config.get_i64("maxmemory").unwrap_or(0) as u64),
            );
            f(
                "maxmemory_policy",
                &s.config.get("maxmemory-policy").unwrap_or_default(),
            );
            f("mem_allocator", &"jemalloc");
        }
        "persistence" => {
            f("loading", &0);
            f("async_loading", &0);
            f("rdb_changes_since_last_save", &0);
            f("rdb_bgsave_in_progress", &0);
            f("rdb_last_bgsave_status", &"ok");
            // The LSM's write-ahead log is our append-only file.
            f("aof_enabled", &1);
            f("aof_rewrite_in_progress", &0);
            // Probes: `ok` again as soon as space returns, even with no write since. In Raft
            // mode the Raft logs count too (they are the durability point).
            let ok = s.dbs.iter().all(|d| d.has_space())
                && !s.replication.get().is_some_and(|r| r.disk_full());
            f("aof_last_write_status", &if ok { "ok" } else { "err" });
        }
        "stats" => {
            let st = &s.stats;
            f(
                "total_connections_received",
                &st.connections_received.load(Ordering::Relaxed),
            );
            f("total_commands_processed", &st.commands_processed());
            let [ops, input, output] = st.instantaneous();
            f("instantaneous_ops_per_sec", &(ops.round() as u64));
            f(
                "total_net_input_bytes",
                &st.net_input_bytes.load(Ordering::Relaxed),
            );
            f(
                "total_net_output_bytes",
                &st.net_output_bytes.load(Ordering::Relaxed),
            );
            f(
                "instantaneous_input_kbps",
                &format!("{:.2}", input / 1024.0),
            );
            f(
                "instantaneous_output_kbps",
                &format!("{:.2}", output / 1024.0),
            );
            f(
                "rejected_connections",
                &st.rejected_connections.load(Ordering::Relaxed),
            );
            f("expired_keys", &0);
            f("evicted_keys", &0);
            f("keyspace_hits", &0);
            f("keyspace_misses", &0);
            f("pubsub_channels", &s.pubsub.channel_count());
            f("pubsub_patterns", &s.pubsub.numpat());
            f("pubsubshard_channels", &s.pubsub.shard_channel_count());
            f(
                "total_error_replies",
                &st.error_replies.load(Ordering::Relaxed),
            );
        }
        "replication" if s.replication.get().is_some() => {
            if let Some(r) = s.replication.get() {
                out.push_str(&r.info());
                // Requests that waited for a slot migration's copy on this node.
                out.push_str(&format!("migration_copy_waits:{}\r\n", r.copy_waits()));
                out.push_str(&format!("migration_key_pulls:{}\r\n", r.key_pulls()));
            }
        }
        "replication" => {
            f("role", &"master");
            f("connected_slaves", &0);
            f("master_failover_state", &"no-failover");
            f("master_replid", &s.run_id);
            f("master_repl_offset", &0);
        }
        "cpu" => {
            let (user, sys) = cpu_seconds();
            f("used_cpu_sys", &format!("{sys:.6}"));
            f("used_cpu_user", &format!("{user:.6}"));
        }
        "errorstats" => {
            for (code, n) in s.stats.errors_by_code() {
                f(&format!("errorstat_{code}"), &format!("count={n}"));
            }
        }
        "cluster" => f("cluster_enabled", &1),
        "keyspace" => {
            // A cluster node reports the keyspace of the shard it answers DBSIZE for.
            let home = s.replication.get().map_or(0, |r| r.home_shard());
            if let Ok((keys, expires)) = s.shard_db(home).key_counts() {
                if keys > 0 {
                    f("db0", &format!("keys={keys},expires={expires},avg_ttl=0"));
                }
            }
        }
        "pinnacle" => {
            let st = s.db.engine().stats();
            f("lsm_memtable_bytes", &st.memtable_bytes);
            f("lsm_immutable_memtables", &st.immutable_memtables);
            f("lsm_sst_bytes", &st.sst_bytes());
            f(
                "lsm_levels",
                &st.levels
                    .iter()
                    .map(|l| l.files.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
            f("lsm_user_bytes_written", &st.user_bytes_written);
            f("lsm_wal_bytes_written", &st.wal_bytes_written);
            f("lsm_flush_bytes_written", &st.flush_bytes_written);
            f("lsm_compaction_bytes_written", &st.compaction_bytes_written);
            f(
                "lsm_write_amplification",
                &format!("{:.2}", st.write_amplification()),
            );
            f("lsm_bloom_negatives", &st.bloom_negatives);
            f("lsm_block_cache_hits", &st.block_cache_hits);
            f("lsm_block_cache_misses", &st.block_cache_misses);
            f("lsm_write_stalls", &st.write_stalls);
            f("lsm_last_seq", &st.last_seq);
            f(
                "appendfsync",
                &s.config.get("appendfsync").unwrap_or_default(),
            );
        }
        "commandstats" => {
            let t = table();
            for e in &t.entries {
                let Some(c) = s.stats.cmd(e.index) else {
                    continue;
                };
                let calls = c.calls.load(Ordering::Relaxed);
                let usec = c.usec.load(Ordering::Relaxed);
                let rejected = c.rejected.load(Ordering::Relaxed);
                let failed = c.failed.load(Ordering::Relaxed);
                if calls == 0 && rejected == 0 && failed == 0 {
                    continue;
                }
                let per = if calls > 0 {
                    usec as f64 / calls as f64
                } else {
                    0.0
                };
                f(
                    &format!("cmdstat_{}", e.spec.name),
                    &format!("calls={calls},usec={usec},usec_per_call={per:.2},rejected_calls={rejected},failed_calls={failed}"),
                );
            }
        }
        "latencystats" => {
            let percentiles = s
                .config
                .get("latency-tracking-info-percentiles")
                .and_then(|p| latency::parse_percentiles(&p).ok())
                .unwrap_or_default();
            for e in &table().entries {
                let Some(h) = s.stats.latency.get(e.index) else {
                    continue;
                };
                let counts = h.snapshot();
                if counts.iter().all(|&c| c == 0) {
                    continue;
                }
                f(
                    &format!("latency_percentiles_usec_{}", e.spec.name),
                    &latency::percentile_line(&counts, &percentiles),
                );
            }
        }
        _ => {}
    }
}

fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "K", "M", "G"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2}{}", UNITS[u])
}

/// Resident set size from /proc (0 where unavailable).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// (user, system) CPU seconds from /proc (zeros where unavailable).
fn cpu_seconds() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (ticks(11), ticks(12))
}

#[cfg(test)]
mod tests {
    use crate::command::testutil::TestNode;

    #[test]
    fn default_sections_and_filters() {
        let mut n = TestNode::new();
        let all = n.run(&["INFO"]);
        assert!(all.starts_with('$'));
        for s in [
            "# CPU\r\n",
            "# Modules\r\n\r\n# Errorstats\r\n",
            "# Server\r\nredis_version:7.0.15\r\n",
            "# Clients\r\n",
            "# Cluster\r\ncluster_enabled:1\r\n",
            "# Pinnacle\r\n",
            "# Keyspace\r\n",
        ] {
            assert!(all.contains(s), "missing {s}");
        }
        assert!(!all.contains("# Commandstats"));
        assert_eq!(n.run(&["INFO", "bogus"]), "$0\r\n\r\n");
        assert_eq!(
            n.run(&["INFO", "cluster"]),
            "$30\r\n# Cluster\r\ncluster_enabled:1\r\n\r\n"
        );
        let two = n.run(&["INFO", "cluster", "keyspace"]);
        assert_eq!(
            two,
            "$44\r\n# Cluster\r\ncluster_enabled:1\r\n\r\n# Keyspace\r\n\r\n"
        );
        n.resp3();
        assert_eq!(
            n.run(&["INFO", "cluster"]),
            "=34\r\ntxt:# Cluster\r\ncluster_enabled:1\r\n\r\n"
        );
    }

    #[test]
    fn latencystats_follow_the_percentile_setting_and_tracking() {
        let mut n = TestNode::new();
        n.run(&["PING"]);
        n.run(&["PING"]);
        let s = n.run(&["INFO", "latencystats"]);
        let line = s
            .lines()
            .find(|l| l.starts_with("latency_percentiles_usec_ping:"))
            .unwrap_or_else(|| panic!("{s}"));
        let values: Vec<&str> = line.split(':').nth(1).unwrap_or("").split(',').collect();
        assert_eq!(values.len(), 3, "{line}");
        for (v, p) in values.iter().zip(["p50=", "p99=", "p99.9="]) {
            let num = v.strip_prefix(p).unwrap_or_else(|| panic!("{line}"));
            assert!(
                num.split_once('.').is_some_and(|(_, f)| f.len() == 3),
                "{line}"
            );
        }
        assert!(!n.run(&["INFO"]).contains("# Latencystats"));
        n.run(&[
            "CONFIG",
            "SET",
            "latency-tracking-info-percentiles",
            "50.50 1.0",
        ]);
        assert_eq!(
            n.run(&["CONFIG", "GET", "latency-tracking-info-percentiles"]),
            "*2\r\n$33\r\nlatency-tracking-info-percentiles\r\n$6\r\n50.5 1\r\n"
        );
        assert!(n.run(&["INFO", "latencystats"]).contains("_ping:p50.5="));
        // With tracking off, PING's histogram stops counting.
        n.run(&["CONFIG", "SET", "latency-tracking", "no"]);
        n.run(&["CONFIG", "RESETSTAT"]);
        n.run(&["PING"]);
        assert!(!n.run(&["INFO", "latencystats"]).contains("_ping:"));
        n.run(&["CONFIG", "SET", "latency-tracking", "yes"]);
        n.run(&["PING"]);
        assert!(n.run(&["INFO", "latencystats"]).contains("_ping:"));
    }

    #[test]
    fn commandstats_count_calls_and_rejections() {
        let mut n = TestNode::new();
        n.run(&["PING"]);
        n.run(&["PING"]);
        n.run(&["PING", "a", "b"]);
        n.run(&["ECHO"]);
        let s = n.run(&["INFO", "commandstats"]);
        assert!(s.contains("cmdstat_ping:calls=3,"), "{s}");
        assert!(s.contains("rejected_calls=0,failed_calls=1\r\n"), "{s}");
        assert!(
            s.contains(
                "cmdstat_echo:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0"
            ),
            "{s}"
        );
        n.run(&["GET"]);
        n.run(&["NOSUCH"]);
        let e = n.run(&["INFO", "errorstats"]);
        // PING a b, ECHO (arity), GET (arity), NOSUCH.
        assert!(
            e.contains("# Errorstats\r\nerrorstat_ERR:count=4\r\n"),
            "{e}"
        );
        if crate::command::table::table().get(b"set").is_some() {
            n.run(&["SET", "a", "1"]);
            assert!(n
                .run(&["INFO", "keyspace"])
                .contains("db0:keys=1,expires=0,avg_ttl=0\r\n"));
        }
    }
}
