//! Operability, black box (issue 8): the Prometheus endpoint (`--metrics-port`) scraped from a
//! single node and from a 3-node Raft cluster after known traffic, and `INFO latencystats` /
//! `commandstats` / `errorstats` and `CONFIG SET latency-tracking-info-percentiles` against a
//! real redis-server 7.0.15.
//!
//! Checked: per-command counters equal what was sent (exactly), latency histograms are
//! cumulative and count every call, errors by kind, the LSM families per shard and level, and in
//! the cluster the Raft families per group (one leader, commit and applied indexes rising and
//! reaching every node, per-peer lag on the leader only).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use redis_tests::cluster::Cluster;
use redis_tests::frame::Value;
use redis_tests::process::free_port;
use redis_tests::{Builder, RawConn, Server};

use redis_tests::http::get as http_get;

/// Sample lines of an exposition: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample line {l:?}"));
            let v: f64 = match v {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")),
            };
            (k.to_string(), v)
        })
        .collect()
}

/// Scrapes `/metrics` and checks the format's rules: every sample's family is declared once
/// with `# HELP` and `# TYPE`, and histograms are cumulative with `+Inf` equal to `_count`.
fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (status, headers, body) = http_get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    for l in body.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{name} declared twice"
            );
        }
    }
    let s = samples(&body);
    for key in s.keys() {
        let name = key.split('{').next().unwrap_or_default();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suf| {
                name.strip_suffix(suf)
                    .filter(|b| types.get(*b).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample {key} of no declared family"
        );
    }
    // Histograms: per label set, buckets never decrease and +Inf is _count.
    for (key, count) in s.iter().filter(|(k, _)| k.contains("_count{")) {
        let (name, labels) = key.split_once("_count{").expect("count");
        let prefix = format!("{name}_bucket{{{}", labels.trim_end_matches('}'));
        let buckets: Vec<f64> = s
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| *v)
            .collect();
        assert!(!buckets.is_empty(), "{key} has no buckets");
        let inf = s
            .get(&format!("{prefix},le=\"+Inf\"}}"))
            .unwrap_or_else(|| panic!("{key}: no +Inf bucket"));
        assert_eq!(inf, count, "{key}: +Inf bucket is not the count");
        // BTreeMap order is by label text, so check cumulativeness by `le` value.
        let mut by_le: Vec<(f64, f64)> = s
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| {
                let le = k
                    .rsplit("le=\"")
                    .next()
                    .unwrap_or("")
                    .trim_end_matches("\"}");
                (le.parse::<f64>().unwrap_or(f64::INFINITY), *v)
            })
            .collect();
        by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            by_le.windows(2).all(|w| w[0].1 <= w[1].1),
            "{key}: buckets not cumulative: {by_le:?}"
        );
    }
    s
}

fn get(s: &BTreeMap<String, f64>, key: &str) -> f64 {
    *s.get(key).unwrap_or_else(|| {
        panic!(
            "no sample {key}; have: {:#?}",
            s.keys().take(400).collect::<Vec<_>>()
        )
    })
}

/// Sends `n` `SET key:i v` pipelined and reads every reply (all `+OK`).
fn pipelined_sets(conn: &mut RawConn, prefix: &str, n: usize) {
    let value = "v".repeat(100);
    let mut out = Vec::new();
    for i in 0..n {
        let key = format!("{prefix}:{i}");
        out.extend(redis_tests::encode_command(&["SET", &key, &value]));
    }
    conn.send(&out).expect("send sets");
    for _ in 0..n {
        let r = conn.read_reply().expect("set reply");
        assert_eq!(r, b"+OK\r\n");
    }
}

fn info_text(conn: &mut RawConn, section: &str) -> String {
    match conn.call_value(&["INFO", section]).expect("INFO") {
        Value::Bulk(b) | Value::Verbatim(b) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("INFO {section}: {other:?}"),
    }
}

/// INFO `section` lines with every number replaced by `N` (the shape to compare).
fn shape(text: &str, keep: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for l in text.lines().filter(|l| !l.is_empty()) {
        if !l.starts_with('#') && !keep.iter().any(|k| l.contains(k)) {
            continue;
        }
        let mut s = String::new();
        let mut in_num = false;
        for c in l.chars() {
            if c.is_ascii_digit() {
                if !in_num {
                    s.push('N');
                }
                in_num = true;
            } else {
                in_num = false;
                s.push(c);
            }
        }
        out.push(s);
    }
    out
}

/// A single node serving `/metrics` on a free port, and that endpoint's address.
fn node_with_metrics() -> (Server, SocketAddr) {
    let mport = free_port().expect("port");
    let server = Builder::pinnacle()
        .args(["--metrics-port".to_string(), mport.to_string()])
        .start()
        .expect("start pinnacle");
    (server, SocketAddr::from(([127, 0, 0, 1], mport)))
}

#[test]
fn single_node_metrics_follow_traffic() {
    let (server, maddr) = node_with_metrics();
    let mut c = server.conn().expect("conn");
    pipelined_sets(&mut c, "k", 500);
    for i in 0..300 {
        c.call(&["GET", &format!("k:{i}")]).expect("get");
    }
    for _ in 0..3 {
        c.call(&["GET"]).expect("arity error");
    }
    c.call(&["LPUSH", "k:1", "x"]).expect("wrongtype");
    let s = scrape(maddr);
    assert_eq!(get(&s, "pinnacle_commands_total{cmd=\"set\"}"), 500.0);
    assert_eq!(get(&s, "pinnacle_commands_total{cmd=\"get\"}"), 300.0);
    assert_eq!(get(&s, "pinnacle_command_rejected_total{cmd=\"get\"}"), 3.0);
    assert_eq!(get(&s, "pinnacle_command_failed_total{cmd=\"lpush\"}"), 1.0);
    assert_eq!(
        get(&s, "pinnacle_command_duration_seconds_count{cmd=\"set\"}"),
        500.0
    );
    assert!(get(&s, "pinnacle_command_duration_seconds_sum{cmd=\"set\"}") > 0.0);
    assert_eq!(get(&s, "pinnacle_errors_total{kind=\"ERR\"}"), 3.0);
    assert_eq!(get(&s, "pinnacle_errors_total{kind=\"WRONGTYPE\"}"), 1.0);
    assert!(get(&s, "pinnacle_connected_clients") >= 1.0);
    // The LSM of the one keyspace: levels, memtable, WAL, debt and amplification.
    assert!(get(&s, "pinnacle_lsm_level_files{shard=\"0\",level=\"0\"}") >= 0.0);
    assert!(get(&s, "pinnacle_lsm_memtable_bytes{shard=\"0\"}") > 0.0);
    assert!(get(&s, "pinnacle_lsm_wal_bytes{shard=\"0\"}") > 0.0);
    assert!(get(&s, "pinnacle_lsm_user_bytes_written_total{shard=\"0\"}") >= 500.0 * 100.0);
    assert!(get(&s, "pinnacle_lsm_compaction_debt_bytes{shard=\"0\"}") >= 0.0);
    assert!(get(&s, "pinnacle_lsm_write_amplification{shard=\"0\"}") >= 0.0);
    assert!(s.contains_key("pinnacle_pinn_rounds_total{outcome=\"accepted\"}"));
    assert!(
        !s.keys().any(|k| k.starts_with("pinnacle_raft_")),
        "no Raft on a single node"
    );

    // Counters move by exactly what was sent.
    pipelined_sets(&mut c, "more", 250);
    let s2 = scrape(maddr);
    assert_eq!(get(&s2, "pinnacle_commands_total{cmd=\"set\"}"), 750.0);
    assert!(
        get(&s2, "pinnacle_lsm_user_bytes_written_total{shard=\"0\"}")
            > get(&s, "pinnacle_lsm_user_bytes_written_total{shard=\"0\"}")
    );
    let (status, _, _) = http_get(maddr, "/nope");
    assert!(status.contains(" 404 "), "{status}");

    // CONFIG RESETSTAT clears the per-command families.
    c.call(&["CONFIG", "RESETSTAT"]).expect("resetstat");
    let s3 = scrape(maddr);
    assert!(!s3.contains_key("pinnacle_commands_total{cmd=\"set\"}"));
}

/// The PINN families (issue 8 "PINN loss and forecast error"): with rounds every second and a
/// 1 s horizon, steady writes make the trainer run rounds and score its forecasts; the scrape
/// then carries every loss term of the last round and the PINN's forecast error next to the
/// baselines'.
#[test]
fn pinn_loss_and_forecast_error_are_exported() {
    let (server, maddr) = node_with_metrics();
    let mut c = server.conn().expect("conn");
    for (k, v) in [
        ("pinn-train-interval", "1"),
        ("pinn-train-min-ops", "1"),
        ("pinn-train-steps", "5"),
        ("pinn-horizon", "1"),
    ] {
        assert_eq!(
            c.call(&["CONFIG", "SET", k, v]).expect("CONFIG SET"),
            b"+OK\r\n"
        );
    }
    let wanted = [
        "pinnacle_pinn_loss{term=\"data\"}",
        "pinnacle_pinn_loss{term=\"pde\"}",
        "pinnacle_pinn_loss{term=\"bc\"}",
        "pinnacle_pinn_loss{term=\"ic\"}",
        "pinnacle_pinn_loss{term=\"total\"}",
        "pinnacle_pinn_forecast_mse{model=\"pinn\"}",
        "pinnacle_pinn_forecast_mse{model=\"persistence\"}",
    ];
    // Generous: the trainer needs a few seconds of heat history before its first round, and
    // a forecast is scored only once its horizon has passed.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut round = 0;
    let s = loop {
        round += 1;
        pipelined_sets(&mut c, &format!("pinn{round}"), 2000);
        let s = scrape(maddr);
        if wanted.iter().all(|k| s.contains_key(*k))
            && s.get("pinnacle_pinn_forecasts_scored{model=\"pinn\"}")
                .is_some_and(|n| *n >= 1.0)
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no PINN loss/forecast error after 90 s of writes; have: {:#?}",
            s.iter()
                .filter(|(k, _)| k.starts_with("pinnacle_pinn"))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(get(&s, "pinnacle_pinn_rounds_total{outcome=\"accepted\"}") >= 1.0);
    for k in wanted {
        let v = get(&s, k);
        assert!(v.is_finite() && v >= 0.0, "{k} = {v}");
    }
    assert!(get(&s, "pinnacle_pinn_loss{term=\"total\"}") > 0.0);
}

#[test]
fn info_latencystats_and_commandstats_match_redis_shapes() {
    let ours = Server::pinnacle().expect("start pinnacle");
    let redis = Server::redis().expect("start redis-server");
    let run = |srv: &Server| {
        let mut c = srv.conn().expect("conn");
        let mut log = Vec::new();
        pipelined_sets(&mut c, "k", 20);
        for _ in 0..5 {
            c.call(&["GET", "k:1"]).expect("get");
        }
        c.call(&["GET"]).expect("arity");
        c.call(&["PING"]).expect("ping");
        for v in ["50 99.99 100", "101", "abc", "50  99", ""] {
            log.push(
                c.call(&["CONFIG", "SET", "latency-tracking-info-percentiles", v])
                    .expect("config set"),
            );
        }
        log.push(
            c.call(&["CONFIG", "GET", "latency-tracking-info-percentiles"])
                .expect("get"),
        );
        let empty = info_text(&mut c, "latencystats");
        c.call(&[
            "CONFIG",
            "SET",
            "latency-tracking-info-percentiles",
            "50.50 1.0 99",
        ])
        .expect("set");
        log.push(
            c.call(&["CONFIG", "GET", "latency-tracking-info-percentiles"])
                .expect("get"),
        );
        let custom = info_text(&mut c, "latencystats");
        c.call(&[
            "CONFIG",
            "SET",
            "latency-tracking-info-percentiles",
            "50 99 99.9",
        ])
        .expect("set");
        let lat = info_text(&mut c, "latencystats");
        let cmd = info_text(&mut c, "commandstats");
        let err = info_text(&mut c, "errorstats");
        let both = info_text(&mut c, "latencystats commandstats");
        let everything = info_text(&mut c, "everything");
        c.call(&["CONFIG", "RESETSTAT"]).expect("resetstat");
        let after = info_text(&mut c, "latencystats");
        (log, empty, custom, lat, cmd, err, both, everything, after)
    };
    let (o, r) = (run(&ours), run(&redis));
    let show = |v: &[Vec<u8>]| {
        v.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        show(&o.0),
        show(&r.0),
        "CONFIG SET/GET latency-tracking-info-percentiles"
    );
    let keep = ["_set:", "_get:", "_ping:"];
    for (what, a, b) in [
        ("empty percentile list", &o.1, &r.1),
        ("custom percentiles", &o.2, &r.2),
        ("latencystats", &o.3, &r.3),
        ("commandstats", &o.4, &r.4),
        ("latencystats commandstats", &o.6, &r.6),
    ] {
        let (mut sa, mut sb) = (shape(a, &keep), shape(b, &keep));
        // Redis lists commands in hash order, we in table order.
        sa.sort();
        sb.sort();
        assert_eq!(sa, sb, "{what}:\nours:\n{a}\nredis:\n{b}");
    }
    // Exact values where they are deterministic.
    for text in [&o.4, &r.4] {
        assert!(text.contains("cmdstat_set:calls=20,"), "{text}");
        assert!(text.contains("cmdstat_get:calls=5,"), "{text}");
        assert!(
            text.contains(",rejected_calls=1,failed_calls=0\r\n"),
            "{text}"
        );
    }
    assert!(
        o.3.starts_with("# Latencystats\r\nlatency_percentiles_usec_"),
        "{}",
        o.3
    );
    assert_eq!(o.5, r.5, "errorstats");
    // INFO everything: Redis's section order (ours adds # Pinnacle at the end).
    let headers = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("# "))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let mut ours_h = headers(&o.7);
    ours_h.retain(|h| h != "# Pinnacle");
    assert_eq!(ours_h, headers(&r.7));
    assert!(!o.8.contains("_set:"), "RESETSTAT: {}", o.8);
    assert!(!r.8.contains("_set:"));
}

/// A port free on every one of `ips`.
fn port_free_on(ips: &[Ipv4Addr]) -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind((ips[0], 0)).expect("bind");
        let port = l.local_addr().expect("addr").port();
        if port == 6379 {
            continue;
        }
        let others: Vec<_> = ips[1..]
            .iter()
            .filter_map(|ip| TcpListener::bind((*ip, port)).ok())
            .collect();
        if others.len() == ips.len() - 1 {
            return port;
        }
    }
    panic!("no port free on {ips:?}");
}

#[test]
fn cluster_node_metrics_show_raft_progress() {
    // Nodes listen on 127.0.0.11..13 (the harness's default base): one port serves all three.
    let ips: Vec<Ipv4Addr> = (11..=13).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    let mport = port_free_on(&ips);
    let cluster = Cluster::builder(3)
        .args(["--metrics-port".to_string(), mport.to_string()])
        .start()
        .expect("start cluster");
    let leader = cluster.leader().expect("leader");
    let maddr = |i: usize| SocketAddr::new(cluster.ip(i), mport);
    // A fresh node answers CLUSTERDOWN until its slot map replayed: wait until it serves a
    // write (refusals count as rejected, not as calls).
    let mut c = cluster.conn(leader).expect("conn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.call(&["SET", "{t}:warm", "1"]).expect("warm-up SET") != b"+OK\r\n" {
        assert!(Instant::now() < deadline, "the leader never served a SET");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A fresh cluster's leader can serve that SET before its followers got an entry or learnt
    // the term (no applied index, no lag, another term in their metrics): wait until every node
    // applied it.
    cluster
        .wait_converged(Duration::from_secs(30))
        .expect("every node applies the warm-up SET");
    // Group 1 is shard 0's (group 0 is the metadata group).
    let g = "{group=\"1\"}";
    let before = scrape(maddr(leader));
    assert_eq!(get(&before, &format!("pinnacle_raft_leader{g}")), 1.0);
    let commit0 = get(&before, &format!("pinnacle_raft_commit_index{g}"));
    let n = 200;
    pipelined_sets(&mut c, "{t}", n);
    let after = scrape(maddr(leader));
    let commit1 = get(&after, &format!("pinnacle_raft_commit_index{g}"));
    assert!(commit1 > commit0, "commit index {commit0} → {commit1}");
    assert!(get(&after, &format!("pinnacle_raft_last_log_index{g}")) >= commit1);
    assert!(get(&after, &format!("pinnacle_raft_applied_index{g}")) <= commit1);
    assert_eq!(
        get(&after, "pinnacle_commands_total{cmd=\"set\"}"),
        n as f64 + 1.0
    );
    // The leader reports both peers' lag for every group it leads.
    let lag_keys: Vec<&String> = after
        .keys()
        .filter(|k| k.starts_with("pinnacle_raft_peer_lag{group=\"1\""))
        .collect();
    assert_eq!(lag_keys.len(), 2, "{lag_keys:?}");
    assert!(get(&after, "pinnacle_lsm_memtable_bytes{shard=\"0\"}") > 0.0);
    assert!(after.contains_key("pinnacle_lsm_level_files{shard=\"0\",level=\"0\"}"));
    // Every node: one agreed term and leader for the group, and the followers apply up to the
    // leader's commit index (generous deadline: liveness on a loaded machine).
    let term = get(&after, &format!("pinnacle_raft_term{g}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in cluster.ids() {
        loop {
            let s = scrape(maddr(i));
            assert!(s.contains_key("pinnacle_raft_term{group=\"0\"}"));
            let leads = get(&s, &format!("pinnacle_raft_leader{g}"));
            // A follower that has applied nothing yet has no applied index to report (a fresh
            // cluster's leader can serve the warm-up SET before its followers got an entry).
            let applied = s
                .get(&format!("pinnacle_raft_applied_index{g}"))
                .copied()
                .unwrap_or(-1.0);
            if i != leader {
                assert_eq!(leads, 0.0, "node {i} also claims group 1");
                assert!(
                    !s.keys()
                        .any(|k| k.starts_with("pinnacle_raft_peer_lag{group=\"1\"")),
                    "a follower reports lag"
                );
            }
            if applied >= commit1 {
                assert_eq!(get(&s, &format!("pinnacle_raft_term{g}")), term);
                assert_eq!(
                    get(&s, &format!("pinnacle_raft_leader_id{g}")),
                    leader as f64
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} applied {applied} < leader's commit {commit1}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
