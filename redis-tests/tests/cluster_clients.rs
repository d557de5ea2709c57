//! Cluster-aware clients against a multi-shard Pinnacle cluster: 3 nodes, `--shards 3` (three
//! Raft groups, each on every node, leaders spread), so that each node is the `master` of the
//! slots of the groups it leads (layout (a) of redis-wire §10) and followers answer MOVED.
//!
//! Topology replies are checked byte for byte where redis-wire §3 fixes them; then `redis-cli -c`,
//! redis-py `RedisCluster` (RESP2/3), redis-rs `cluster` and `cluster-async` (RESP2/3), ioredis
//! `Cluster` and `redis-benchmark --cluster` must work unchanged, also while a shard leader is
//! SIGKILLed and restarted (zero client-visible errors, every acknowledged write present).
//! A cluster showing a single master fails these tests: it is not multi-shard.
//! With `REDIS_TESTS_SUBJECT=redis` the same checks run against a real 3-master Redis Cluster.

#[path = "cluster_clients/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{AsyncCommands, Commands, ProtocolVersion};
use redis_tests::{tools, RawConn, Value};
use support::{
    key_in, masters, rs_client, run_script, script_report, slot, Range, Target, WriterReport, NODES,
};

/// Keys each client writes and reads back.
const KEYS: usize = 1000;

/// Sorted, adjacent ranges merged: two slot-range lists compare equal when they cover the same
/// slots however they are split.
fn normalize(mut r: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    r.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (s, e) in r {
        match out.last_mut() {
            Some(last) if last.1 + 1 == s => last.1 = e,
            _ => out.push((s, e)),
        }
    }
    out
}

fn raw(addr: SocketAddr, resp3: bool, args: &[&str]) -> Vec<u8> {
    let mut c = RawConn::connect_addr(addr, Duration::from_secs(2)).expect("connect");
    if resp3 {
        let hello = c.call(&["HELLO", "3"]).expect("HELLO 3");
        assert!(
            hello.starts_with(b"%7\r\n"),
            "HELLO 3: {}",
            redis_tests::show(&hello)
        );
    }
    c.call(args).expect("call")
}

/// CLUSTER SLOTS exactly as redis-server encodes it (redis-wire §3.1) for masters without replicas.
fn slots_bytes(ranges: &[Range], empty_map: &str) -> String {
    let mut s = format!("*{}\r\n", ranges.len());
    for r in ranges {
        let _ = write!(
            s,
            "*3\r\n:{}\r\n:{}\r\n*4\r\n${}\r\n{}\r\n:{}\r\n$40\r\n{}\r\n{empty_map}\r\n",
            r.start,
            r.end,
            r.ip.len(),
            r.ip,
            r.port,
            r.id
        );
    }
    s
}

/// Checks the CLUSTER NODES text of node `me`; returns its `myself` id and every node's
/// `ip:port` by id.
fn check_nodes(
    me: SocketAddr,
    nodes: &str,
    ranges: &[Range],
) -> (String, BTreeMap<String, String>) {
    assert!(
        nodes.ends_with('\n'),
        "{me}: CLUSTER NODES must end in \\n: {nodes:?}"
    );
    let lines: Vec<&str> = nodes.lines().collect();
    assert_eq!(lines.len(), NODES, "{me}: one line per node: {nodes}");
    let mut seen = BTreeMap::new();
    let mut all = BTreeMap::new();
    let mut myself = None;
    for line in &lines {
        let f: Vec<&str> = line.split(' ').collect();
        assert!(f.len() >= 8, "{me}: short line {line:?}");
        let id = f[0];
        assert!(
            id.len() == 40
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
            "{me}: node id {id:?}"
        );
        let (hostport, _cport) = f[1].split_once('@').expect("ip:port@cport");
        let flags: Vec<&str> = f[2].split(',').collect();
        all.insert(id.to_string(), hostport.to_string());
        assert!(
            f[6].parse::<u64>().is_ok(),
            "{me}: config epoch in {line:?}"
        );
        assert_eq!(f[7], "connected", "{me}: {line:?}");
        if flags.contains(&"myself") {
            assert!(myself.is_none(), "{me}: two myself lines: {nodes}");
            assert_eq!(hostport, me.to_string(), "{me}: myself line {line:?}");
            myself = Some(id.to_string());
        }
        if flags.contains(&"master") && f.len() > 8 {
            assert_eq!(f[3], "-", "{me}: {line:?}");
            let slots = f[8..]
                .iter()
                .map(|s| match s.split_once('-') {
                    Some((a, b)) => (a.parse().expect("slot"), b.parse().expect("slot")),
                    None => (s.parse().expect("slot"), s.parse().expect("slot")),
                })
                .collect();
            seen.insert(id.to_string(), (hostport.to_string(), normalize(slots)));
        }
    }
    let want: BTreeMap<String, (String, Vec<(u16, u16)>)> = masters(ranges)
        .into_iter()
        .map(|(id, (addr, r))| (id, (addr, normalize(r))))
        .collect();
    assert_eq!(
        seen, want,
        "{me}: CLUSTER NODES masters vs CLUSTER SLOTS\n{nodes}"
    );
    let myself = myself.unwrap_or_else(|| panic!("{me}: no myself line: {nodes}"));
    (myself, all)
}

/// Checks CLUSTER SHARDS (RESP2 flat arrays or RESP3 maps, redis-wire §3.2) against SLOTS: one
/// `master` per shard, the same one with the same slots as CLUSTER SLOTS; other entries are
/// `replica`s naming nodes of CLUSTER NODES (Pinnacle lists every member of the shard's Raft
/// group; no client reads SHARDS during discovery, redis-wire §4).
fn check_shards(
    me: SocketAddr,
    raw: &[u8],
    resp3: bool,
    ranges: &[Range],
    known: &BTreeMap<String, String>,
) {
    fn pairs(v: &Value) -> Vec<(Value, Value)> {
        match v {
            Value::Map(p) => p.clone(),
            Value::Array(a) if a.len().is_multiple_of(2) => {
                a.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect()
            }
            other => panic!("CLUSTER SHARDS: expected a map, got {other:?}"),
        }
    }
    let v = redis_tests::frame::parse_one(raw).expect("CLUSTER SHARDS parses");
    if resp3 {
        let first = v.as_list().and_then(|l| l.first());
        assert!(
            matches!(first, Some(Value::Map(_))),
            "{me}: RESP3 shards are maps: {v:?}"
        );
    }
    let bulk = |s: &str| Value::Bulk(s.as_bytes().to_vec());
    let mut seen: BTreeMap<String, (String, Vec<(u16, u16)>)> = BTreeMap::new();
    for shard in v.as_list().expect("CLUSTER SHARDS array") {
        let p = pairs(shard);
        assert_eq!(p.len(), 2, "{me}: shard {shard:?}");
        assert_eq!(p[0].0, bulk("slots"));
        assert_eq!(p[1].0, bulk("nodes"));
        let ints: Vec<u16> = p[0]
            .1
            .as_list()
            .expect("slots")
            .iter()
            .map(|s| match s {
                Value::Int(n) => u16::try_from(*n).expect("slot"),
                other => panic!("{me}: slot {other:?}"),
            })
            .collect();
        assert!(
            ints.len().is_multiple_of(2) && !ints.is_empty(),
            "{me}: slots {ints:?}"
        );
        let nodes = p[1].1.as_list().expect("nodes");
        let mut shard_masters = 0;
        for node in nodes {
            let fields = pairs(node);
            let keys: Vec<Value> = fields.iter().map(|(k, _)| k.clone()).collect();
            let want_keys = [
                "id",
                "port",
                "ip",
                "endpoint",
                "role",
                "replication-offset",
                "health",
            ];
            assert_eq!(keys, want_keys.map(bulk), "{me}: node fields {fields:?}");
            let [(_, Value::Bulk(id)), (_, Value::Int(port)), (_, Value::Bulk(ip)), (_, Value::Bulk(endpoint)), (_, role), (_, Value::Int(_)), (_, health)] =
                fields.as_slice()
            else {
                panic!("{me}: node field types {fields:?}");
            };
            assert_eq!(ip, endpoint, "{me}: endpoint is the ip");
            let id = String::from_utf8_lossy(id).into_owned();
            let addr = format!("{}:{port}", String::from_utf8_lossy(ip));
            assert_eq!(
                known.get(&id),
                Some(&addr),
                "{me}: SHARDS names {id} at {addr}, unlike CLUSTER NODES: {}",
                redis_tests::show(raw)
            );
            if *role == bulk("master") {
                shard_masters += 1;
                assert_eq!(*health, bulk("online"), "{me}: master {id}");
                let e = seen.entry(id).or_insert_with(|| (addr.clone(), Vec::new()));
                e.1.extend(ints.chunks(2).map(|c| (c[0], c[1])));
            } else {
                assert_eq!(*role, bulk("replica"), "{me}: role of {id}");
                assert!(
                    *health == bulk("online") || *health == bulk("loading"),
                    "{me}: replica {id} health {health:?}"
                );
            }
        }
        assert_eq!(
            shard_masters,
            1,
            "{me}: one master per shard: {}",
            redis_tests::show(raw)
        );
    }
    for e in seen.values_mut() {
        e.1 = normalize(std::mem::take(&mut e.1));
    }
    let want: BTreeMap<String, (String, Vec<(u16, u16)>)> = masters(ranges)
        .into_iter()
        .map(|(id, (addr, r))| (id, (addr, normalize(r))))
        .collect();
    assert_eq!(seen, want, "{me}: CLUSTER SHARDS vs CLUSTER SLOTS");
}

fn check_info(me: SocketAddr, info: &str, masters: usize) {
    let fields: Vec<(&str, &str)> = info
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split_once(':')
                .unwrap_or_else(|| panic!("{me}: line {l:?}"))
        })
        .collect();
    assert!(info.ends_with("\r\n"), "{me}: {info:?}");
    let names: Vec<&str> = fields.iter().take(9).map(|(k, _)| *k).collect();
    assert_eq!(
        names,
        [
            "cluster_state",
            "cluster_slots_assigned",
            "cluster_slots_ok",
            "cluster_slots_pfail",
            "cluster_slots_fail",
            "cluster_known_nodes",
            "cluster_size",
            "cluster_current_epoch",
            "cluster_my_epoch"
        ],
        "{me}: {info}"
    );
    let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    assert_eq!(get("cluster_state"), Some("ok"), "{me}: {info}");
    assert_eq!(get("cluster_slots_assigned"), Some("16384"), "{me}: {info}");
    assert_eq!(get("cluster_slots_ok"), Some("16384"), "{me}: {info}");
    assert_eq!(get("cluster_known_nodes"), Some("3"), "{me}: {info}");
    assert_eq!(
        get("cluster_size"),
        Some(masters.to_string().as_str()),
        "{me}: {info}"
    );
}

/// `$len\r\n<text>\r\n` in RESP2, `=len+4\r\ntxt:<text>\r\n` in RESP3; returns the text.
fn unframe(me: SocketAddr, what: &str, bytes: &[u8], resp3: bool) -> String {
    let s = String::from_utf8_lossy(bytes);
    let (head, rest) = s
        .split_once("\r\n")
        .unwrap_or_else(|| panic!("{me} {what}: {s:?}"));
    let body = rest
        .strip_suffix("\r\n")
        .unwrap_or_else(|| panic!("{me} {what}: {s:?}"));
    let len: usize = head[1..]
        .parse()
        .unwrap_or_else(|_| panic!("{me} {what}: {s:?}"));
    assert_eq!(len, body.len(), "{me} {what}: declared length");
    if resp3 {
        assert!(
            head.starts_with('='),
            "{me} {what}: RESP3 must be verbatim: {s:?}"
        );
        body.strip_prefix("txt:")
            .unwrap_or_else(|| panic!("{me} {what}: {s:?}"))
            .to_string()
    } else {
        assert!(
            head.starts_with('$'),
            "{me} {what}: RESP2 must be bulk: {s:?}"
        );
        body.to_string()
    }
}

#[test]
fn topology_every_node_agrees_on_spread_masters_covering_all_slots() {
    let _serial = support::serial();
    let t = Target::start();
    let ranges = t.spread(NODES);
    // Every slot exactly once, ascending.
    assert_eq!(ranges.first().map(|r| r.start), Some(0), "{ranges:?}");
    assert_eq!(ranges.last().map(|r| r.end), Some(16383), "{ranges:?}");
    for w in ranges.windows(2) {
        assert_eq!(w[1].start, w[0].end + 1, "gap or overlap: {ranges:?}");
    }
    let m = masters(&ranges);
    let addrs: BTreeSet<String> = t.addrs().iter().map(|a| a.to_string()).collect();
    let master_addrs: BTreeSet<String> = m.values().map(|(a, _)| a.clone()).collect();
    assert_eq!(
        master_addrs, addrs,
        "every node leads some slots: {ranges:?}"
    );
    assert_eq!(m.len(), NODES, "one id per node: {ranges:?}");

    for me in t.addrs() {
        for resp3 in [false, true] {
            let empty = if resp3 { "%0" } else { "*0" };
            let got = raw(me, resp3, &["CLUSTER", "SLOTS"]);
            assert_eq!(
                String::from_utf8_lossy(&got),
                slots_bytes(&ranges, empty),
                "{me}: CLUSTER SLOTS bytes (RESP{})",
                if resp3 { 3 } else { 2 }
            );
            let nodes = unframe(
                me,
                "CLUSTER NODES",
                &raw(me, resp3, &["CLUSTER", "NODES"]),
                resp3,
            );
            let (myself, known) = check_nodes(me, &nodes, &ranges);
            let myid = raw(me, resp3, &["CLUSTER", "MYID"]);
            assert_eq!(
                myid,
                format!("$40\r\n{myself}\r\n").into_bytes(),
                "{me}: MYID"
            );
            let info = unframe(
                me,
                "CLUSTER INFO",
                &raw(me, resp3, &["CLUSTER", "INFO"]),
                resp3,
            );
            check_info(me, &info, m.len());
            let shards = raw(me, resp3, &["CLUSTER", "SHARDS"]);
            check_shards(me, &shards, resp3, &ranges, &known);
        }
        // Keys of another master's slots are redirected to it, own slots are served here.
        for r in &ranges {
            let key = key_in("moved:", r.start, r.end);
            let got = raw(me, false, &["GET", &key]);
            let want = if r.addr() == me.to_string() {
                "$-1\r\n".to_string()
            } else {
                format!("-MOVED {} {}\r\n", slot(key.as_bytes()), r.addr())
            };
            assert_eq!(String::from_utf8_lossy(&got), want, "{me}: GET {key}");
        }
    }
}

#[test]
fn redis_cli_c_follows_moved_to_every_shard() {
    let _serial = support::serial();
    if !tools::available("redis_cli_c_cluster", &["redis-cli"]) {
        return;
    }
    let t = Target::start();
    let ranges = t.spread(NODES);
    let entry = t.addr(1);
    let cli = |args: &[&str]| -> String {
        let out = Command::new("redis-cli")
            .args([
                "-c",
                "-h",
                &entry.ip().to_string(),
                "-p",
                &entry.port().to_string(),
            ])
            .args(args)
            .output()
            .expect("redis-cli");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    };
    let mut redirected = 0;
    for (i, r) in ranges.iter().enumerate() {
        let key = key_in(&format!("cli{i}:"), r.start, r.end);
        assert_eq!(cli(&["SET", &key, &format!("val{i}")]), "OK", "SET {key}");
        assert_eq!(cli(&["GET", &key]), format!("val{i}"), "GET {key}");
        assert_eq!(cli(&["INCR", &format!("{{{key}}}:n")]), "1", "INCR");
        // The value lives at the slot's master, which serves it without a redirect.
        let at_owner = raw(r.addr().parse().expect("addr"), false, &["GET", &key]);
        assert_eq!(
            at_owner,
            format!("$4\r\nval{i}\r\n").into_bytes(),
            "{key} at {}",
            r.addr()
        );
        if r.addr() != entry.to_string() {
            redirected += 1;
        }
    }
    assert!(redirected >= 1, "no key needed a redirect: {ranges:?}");
}

#[test]
fn redis_py_cluster_resp2_and_resp3() {
    let _serial = support::serial();
    if !tools::available("redis_py_cluster_shards", &["python3", "python3-redis"]) {
        return;
    }
    let t = Target::start();
    t.spread(NODES);
    for (node, proto) in [(1, 2), (2, 3)] {
        let a = t.addr(node);
        let args = [
            "check",
            &a.ip().to_string(),
            &a.port().to_string(),
            &proto.to_string(),
            &KEYS.to_string(),
        ];
        let out = run_script(
            &format!("redis-py RESP{proto} via {a}"),
            &mut support::python(&args.map(String::from)),
        );
        assert!(String::from_utf8_lossy(&out.stdout)
            .trim_end()
            .ends_with("OK"));
    }
}

/// SET/GET [`KEYS`] keys (spanning >= 2 masters), MSET/MGET under hash tags, a cross-slot MGET the
/// client splits, a cluster pipeline, INCR: redis-rs's sync cluster client.
fn rs_sync_check(urls: &[String], proto: ProtocolVersion, pfx: &str, ranges: &[Range]) {
    let mut con = rs_client(urls, proto)
        .get_connection()
        .expect("redis-rs cluster connection");
    let keys: Vec<String> = (0..KEYS).map(|i| format!("{pfx}:k{i}")).collect();
    for k in &keys {
        let () = con
            .set(k, format!("v-{k}"))
            .unwrap_or_else(|e| panic!("{pfx} SET {k}: {e}"));
    }
    for k in &keys {
        let v: String = con.get(k).unwrap_or_else(|e| panic!("{pfx} GET {k}: {e}"));
        assert_eq!(v, format!("v-{k}"));
    }
    assert_spans_masters(&keys, ranges);
    for t in 0..50 {
        let kv: Vec<(String, String)> = (0..5)
            .map(|j| (format!("{{{pfx}-tag{t}}}:f{j}"), format!("{t}-{j}")))
            .collect();
        let () = con.mset(&kv).unwrap_or_else(|e| panic!("{pfx} MSET: {e}"));
        let ks: Vec<&String> = kv.iter().map(|(k, _)| k).collect();
        let got: Vec<String> = con.mget(&ks).unwrap_or_else(|e| panic!("{pfx} MGET: {e}"));
        assert_eq!(got, kv.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
    }
    let got: Vec<String> = con
        .mget(&keys[..200])
        .unwrap_or_else(|e| panic!("{pfx} cross-slot MGET: {e}"));
    assert_eq!(
        got,
        keys[..200]
            .iter()
            .map(|k| format!("v-{k}"))
            .collect::<Vec<_>>()
    );
    let mut pipe = redis::cluster::cluster_pipe();
    for i in 0..200 {
        pipe.set(format!("{pfx}:p{i}"), i).ignore();
    }
    for i in 0..200 {
        pipe.get(format!("{pfx}:p{i}"));
    }
    let got: Vec<i64> = pipe
        .query(&mut con)
        .unwrap_or_else(|e| panic!("{pfx} pipeline: {e}"));
    assert_eq!(got, (0..200).collect::<Vec<i64>>());
    let n: i64 = con.incr(format!("{pfx}:counter"), 1).expect("INCR");
    assert_eq!(n, 1);
}

/// The same checks with redis-rs's async cluster client, 10 tasks sharing the connection.
async fn rs_async_check(urls: &[String], proto: ProtocolVersion, pfx: &str, ranges: &[Range]) {
    let con = rs_client(urls, proto)
        .get_async_connection()
        .await
        .expect("redis-rs async cluster connection");
    let keys: Vec<String> = (0..KEYS).map(|i| format!("{pfx}:k{i}")).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in keys.chunks(KEYS / 10) {
        let (mut con, chunk) = (con.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for k in &chunk {
                let () = con
                    .set(k, format!("v-{k}"))
                    .await
                    .map_err(|e| format!("SET {k}: {e}"))?;
            }
            for k in &chunk {
                let v: String = con.get(k).await.map_err(|e| format!("GET {k}: {e}"))?;
                if v != format!("v-{k}") {
                    return Err(format!("GET {k} -> {v}"));
                }
            }
            Ok::<(), String>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").unwrap_or_else(|e| panic!("{pfx}: {e}"));
    }
    assert_spans_masters(&keys, ranges);
    let mut con = con;
    for t in 0..50 {
        let kv: Vec<(String, String)> = (0..5)
            .map(|j| (format!("{{{pfx}-tag{t}}}:f{j}"), format!("{t}-{j}")))
            .collect();
        let () = con
            .mset(&kv)
            .await
            .unwrap_or_else(|e| panic!("{pfx} MSET: {e}"));
        let ks: Vec<&String> = kv.iter().map(|(k, _)| k).collect();
        let got: Vec<String> = con
            .mget(&ks)
            .await
            .unwrap_or_else(|e| panic!("{pfx} MGET: {e}"));
        assert_eq!(got, kv.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
    }
    // The async client splits a multi-slot MGET per slot and reassembles the reply.
    let got: Vec<String> = con
        .mget(&keys[..200])
        .await
        .unwrap_or_else(|e| panic!("{pfx} cross-slot MGET: {e}"));
    assert_eq!(
        got,
        keys[..200]
            .iter()
            .map(|k| format!("v-{k}"))
            .collect::<Vec<_>>()
    );
    // An async cluster pipeline goes to one node: keep it in one slot.
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.set(format!("{{{pfx}-pipe}}:{i}"), i).ignore();
    }
    pipe.incr(format!("{{{pfx}-pipe}}:counter"), 1);
    let got: Vec<i64> = pipe
        .query_async(&mut con)
        .await
        .unwrap_or_else(|e| panic!("{pfx} pipeline: {e}"));
    assert_eq!(got, vec![1]);
}

fn assert_spans_masters(keys: &[String], ranges: &[Range]) {
    let owners: BTreeSet<&str> = keys
        .iter()
        .filter_map(|k| {
            let s = slot(k.as_bytes());
            ranges
                .iter()
                .find(|r| (r.start..=r.end).contains(&s))
                .map(|r| r.id.as_str())
        })
        .collect();
    assert!(owners.len() >= 2, "keys on {} master(s)", owners.len());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn redis_rs_cluster_sync_and_async() {
    let _serial = support::serial();
    let t = Target::start();
    let ranges = t.spread(NODES);
    // Each client starts from one node and discovers the rest.
    rs_sync_check(&[t.url(1)], ProtocolVersion::RESP2, "rs-sync2", &ranges);
    rs_sync_check(&[t.url(2)], ProtocolVersion::RESP3, "rs-sync3", &ranges);
    let rt = runtime();
    rt.block_on(rs_async_check(
        &[t.url(3)],
        ProtocolVersion::RESP2,
        "rs-async2",
        &ranges,
    ));
    rt.block_on(rs_async_check(
        &[t.url(1)],
        ProtocolVersion::RESP3,
        "rs-async3",
        &ranges,
    ));
}

#[test]
fn ioredis_cluster() {
    let _serial = support::serial();
    if !tools::available("ioredis_cluster", &["node", "npm"]) {
        return;
    }
    support::ioredis_dir();
    let t = Target::start();
    t.spread(NODES);
    let a = t.addr(2);
    let out = run_script(
        &format!("ioredis Cluster via {a}"),
        &mut support::node(
            &[
                "check",
                &a.ip().to_string(),
                &a.port().to_string(),
                &KEYS.to_string(),
            ]
            .map(String::from),
        ),
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .trim_end()
        .ends_with("OK"));
}

const BENCH_N: u64 = 20_000;
const BENCH_TESTS: [&str; 18] = [
    "SET",
    "GET",
    "INCR",
    "LPUSH",
    "RPUSH",
    "LPOP",
    "RPOP",
    "SADD",
    "HSET",
    "SPOP",
    "ZADD",
    "ZPOPMIN",
    "LPUSH (needed to benchmark LRANGE)",
    "LRANGE_100 (first 100 elements)",
    "LRANGE_300 (first 300 elements)",
    "LRANGE_500 (first 500 elements)",
    "LRANGE_600 (first 600 elements)",
    "MSET (10 keys)",
];

/// Every `counter:*` key (redis-benchmark's INCR keys), found by SCAN on every node.
fn counter_keys(t: &Target) -> Vec<String> {
    let mut keys = BTreeSet::new();
    for a in t.addrs() {
        let mut c = RawConn::connect_addr(a, Duration::from_secs(2)).expect("connect");
        let mut cursor = "0".to_string();
        loop {
            let v = c
                .call_value(&["SCAN", &cursor, "MATCH", "counter:*", "COUNT", "1000"])
                .expect("SCAN");
            let [Value::Bulk(next), Value::Array(batch)] = v.as_list().expect("SCAN reply") else {
                panic!("SCAN: {v:?}");
            };
            keys.extend(batch.iter().filter_map(|k| {
                k.as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            }));
            cursor = String::from_utf8_lossy(next).into_owned();
            if cursor == "0" {
                break;
            }
        }
    }
    keys.into_iter().collect()
}

/// INCRs the nodes ran (`cmdstat_incr` calls, summed over the nodes): each at most once
/// applied. Redirected ones (`rejected_calls`) did not run.
fn incr_calls(t: &Target) -> i64 {
    t.addrs()
        .into_iter()
        .map(|a| {
            let mut c = RawConn::connect_addr(a, Duration::from_secs(2)).expect("connect");
            let info = match c.call_value(&["INFO", "commandstats"]) {
                Ok(Value::Bulk(b)) => String::from_utf8_lossy(&b).into_owned(),
                other => panic!("INFO commandstats on {a}: {other:?}"),
            };
            info.lines()
                .find_map(|l| l.strip_prefix("cmdstat_incr:calls="))
                .and_then(|rest| rest.split(',').next()?.parse::<i64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// Sum of every `counter:{tag}:__rand_int__` INCR made (keys found by SCAN on every node, read
/// through the cluster client).
fn counter_total(t: &Target, keys: &[String]) -> i64 {
    let mut con = rs_client(&t.urls_from(1), ProtocolVersion::RESP2)
        .get_connection()
        .expect("cluster connection");
    let mut total = 0;
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::cluster::cluster_pipe();
        for k in chunk {
            pipe.get(k);
        }
        let vals: Vec<i64> = pipe.query(&mut con).expect("GET counters");
        total += vals.iter().sum::<i64>();
    }
    total
}

/// Each node's own copy of each counter (`READONLY` reads, served by followers too), to tell
/// replicas that diverged from a log that holds too many INCRs.
fn counter_copies(t: &Target, keys: &[String]) -> String {
    let mut out = String::new();
    for (i, a) in t.addrs().into_iter().enumerate() {
        let Ok(mut c) = RawConn::connect_addr(a, Duration::from_secs(2)) else {
            let _ = writeln!(out, "node{}: unreachable", i + 1);
            continue;
        };
        let _ = c.call_value(&["READONLY"]);
        let vals: Vec<String> = keys
            .iter()
            .map(|k| match c.call_value(&["GET", k]) {
                Ok(Value::Bulk(b)) => String::from_utf8_lossy(&b).into_owned(),
                other => format!("{other:?}"),
            })
            .collect();
        let _ = writeln!(out, "node{}: {vals:?}", i + 1);
    }
    out
}

#[test]
fn redis_benchmark_cluster_zero_errors() {
    let _serial = support::serial();
    if !tools::available("redis_benchmark_cluster", &["redis-benchmark"]) {
        return;
    }
    let mut t = Target::start();
    let entry = t.addr(1);
    let mut clusterdown = 0;
    let mut before = 0;
    for extra in [&[][..], &["-P", "16"][..]] {
        // Every node a master again before each run: redis-benchmark learns the masters once
        // and exits ("could not find node with ID") when a node that led nothing at its start
        // leads a shard later (the -P 1 run's elections can leave one node without a shard).
        let ranges = t.spread(NODES);
        let started = Instant::now();
        let ran_before = incr_calls(&t);
        let out = Command::new("timeout")
            .args(["600", "redis-benchmark"])
            .args([
                "--cluster",
                "-h",
                &entry.ip().to_string(),
                "-p",
                &entry.port().to_string(),
            ])
            .args([
                "-t",
                "set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange,mset",
            ])
            .args(["-n", &BENCH_N.to_string(), "-q"])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-benchmark");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let all = format!("{stdout}\n{stderr}");
        assert!(
            out.status.success(),
            "redis-benchmark {extra:?}: {}\n{all}",
            out.status
        );
        // The only error tolerated is CLUSTERDOWN while a shard elects a leader (the groups'
        // heartbeats can starve on a loaded 2-core machine; redis-benchmark waits 1 s and
        // re-reads the slot map). Anything else, TRYAGAIN included, fails.
        let errors: Vec<&str> = all
            .split(['\r', '\n'])
            .filter(|l| l.contains("Error"))
            .collect();
        let elections = errors
            .iter()
            .filter(|l| l.contains("CLUSTERDOWN The cluster is down"))
            .count();
        assert_eq!(
            elections,
            errors.len(),
            "redis-benchmark {extra:?}: errors other than CLUSTERDOWN:\n{all}"
        );
        // redis-benchmark also prints "WARNING: Cluster slots configuration changed" each time
        // it re-reads CLUSTER SLOTS: after a CLUSTERDOWN, and after a MOVED/ASK, which it
        // follows transparently (the leader spreader hands shards back after an election).
        // Those are not errors; a redirect loop would never finish, which `timeout` catches.

        if elections > 0 {
            eprintln!("redis-benchmark {extra:?}: {elections} CLUSTERDOWN replies (elections)");
            clusterdown += elections;
        }
        let masters_line = format!("Cluster has {} master nodes", masters(&ranges).len());
        assert!(
            all.contains(&masters_line),
            "redis-benchmark {extra:?} expected '{masters_line}':\n{all}"
        );
        let results: Vec<(String, f64)> = stdout
            .split(['\r', '\n'])
            .filter_map(|l| {
                let (name, rest) = l.trim().split_once(": ")?;
                let rps = rest.split_once(" requests per second")?.0;
                Some((name.to_string(), rps.parse().ok()?))
            })
            .collect();
        let names: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, BENCH_TESTS, "redis-benchmark {extra:?}:\n{all}");
        assert!(results.iter().all(|(_, rps)| *rps > 0.0), "{results:?}");
        eprintln!(
            "redis-benchmark --cluster {extra:?} in {:?}: {results:?}",
            started.elapsed()
        );
        // Every INCR the servers ran was applied at most once; without elections, exactly once
        // (one refused with CLUSTERDOWN, or MOVED after a leader change, was not applied).
        // Counted against the INCRs the servers ran, not `-n`: redis-benchmark sends more than
        // `-n` when one connection waits long (e.g. 16 one-second CLUSTERDOWN sleeps), since its
        // 32-bit `requests_issued`, raised by `-P` on every turn of each idle client's busy
        // write handler, wraps negative and every idle client sends another pipeline
        // (closing12's 40,464 for 40,000; see incr_exactly_once.rs).
        let ran = incr_calls(&t) - ran_before;
        let keys = counter_keys(&t);
        let total = counter_total(&t, &keys);
        let applied = total - before;
        if ran != BENCH_N as i64 {
            eprintln!("redis-benchmark {extra:?}: the servers ran {ran} INCRs for -n {BENCH_N}");
        }
        if applied > ran || (clusterdown == 0 && applied != ran) {
            let copies = counter_copies(&t, &keys);
            let kept = t.pinnacle().and_then(|c| c.keep_dir());
            panic!(
                "after redis-benchmark {extra:?}: {applied} INCRs counted ({total} in all), {ran} run \
                 by the servers (-n {BENCH_N}), {clusterdown} CLUSTERDOWN so far\nkeys {keys:?}\n\
                 copies per node:\n{copies}data and logs kept at {kept:?}"
            );
        }
        before = total;
    }
}

fn report(name: &str, prefix: &str) -> WriterReport {
    WriterReport {
        name: name.into(),
        prefix: prefix.into(),
        attempts: 0,
        acked: Vec::new(),
        error_count: 0,
        errors: Vec::new(),
        reconnects: 0,
        max_outage: 0.0,
        max_latency: 0.0,
    }
}

/// Bookkeeping of one write attempt of a Rust writer (see [`WriterReport`]).
struct Attempt {
    started: Instant,
}

impl Attempt {
    fn start() -> Attempt {
        Attempt {
            started: Instant::now(),
        }
    }

    fn acked(self, r: &mut WriterReport, i: u64, outage: &mut Option<Instant>) {
        r.acked.push(i);
        r.max_latency = r.max_latency.max(self.started.elapsed().as_secs_f64());
        if let Some(o) = outage.take() {
            r.max_outage = r.max_outage.max(o.elapsed().as_secs_f64());
        }
    }
}

/// Writes `<prefix>:<i>` = `val-<i>` until `stop`, through redis-rs's sync cluster client.
///
/// That client retries a refused connection immediately, without waiting and without asking
/// another node for the slot map, so while a master's process is down it returns the I/O error
/// to the caller (against a real Redis Cluster too). The writer then does what an application
/// must: builds a new connection (a fresh CLUSTER SLOTS from a live startup node) and writes the
/// same key again; those are counted as `reconnects`, anything else as an error.
fn rs_sync_writer(
    urls: Vec<String>,
    proto: ProtocolVersion,
    prefix: &str,
    stop: Arc<AtomicBool>,
) -> WriterReport {
    let client = rs_client(&urls, proto);
    let mut con = client
        .get_connection()
        .expect("redis-rs cluster connection");
    let mut r = report("redis-rs cluster", prefix);
    let mut outage = None;
    while !stop.load(Ordering::Relaxed) {
        let i = r.attempts;
        let a = Attempt::start();
        match con.set::<_, _, ()>(format!("{prefix}:{i}"), format!("val-{i}")) {
            Ok(()) => a.acked(&mut r, i, &mut outage),
            Err(e) if e.is_io_error() => {
                r.reconnects += 1;
                outage.get_or_insert(a.started);
                if r.errors.len() < 20 {
                    r.errors.push(format!("(retried) {prefix}:{i}: {e}"));
                }
                std::thread::sleep(Duration::from_millis(100));
                match client.get_connection() {
                    Ok(c) => con = c,
                    Err(e) => r.errors.push(format!("reconnect: {e}")),
                }
                continue; // the same key again
            }
            Err(e) => {
                r.error_count += 1;
                r.errors.push(format!("{prefix}:{i}: {e}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        r.attempts += 1;
    }
    r
}

/// The same through redis-rs's async cluster client (which retries I/O errors itself).
async fn rs_async_writer(
    urls: Vec<String>,
    proto: ProtocolVersion,
    prefix: &str,
    stop: Arc<AtomicBool>,
) -> WriterReport {
    let mut con = rs_client(&urls, proto)
        .get_async_connection()
        .await
        .expect("redis-rs async cluster connection");
    let mut r = report("redis-rs cluster-async", prefix);
    let mut outage = None;
    while !stop.load(Ordering::Relaxed) {
        let i = r.attempts;
        let a = Attempt::start();
        match con
            .set::<_, _, ()>(format!("{prefix}:{i}"), format!("val-{i}"))
            .await
        {
            Ok(()) => a.acked(&mut r, i, &mut outage),
            Err(e) => {
                r.error_count += 1;
                r.errors.push(format!("{prefix}:{i}: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        r.attempts += 1;
    }
    r
}

/// Longest a writer may go without an acknowledged write around a kill (election + the client's
/// topology refresh; the killed node stays down for 3 s).
const MAX_OUTAGE: f64 = 2.5;

#[test]
fn clients_ride_through_a_shard_leader_kill_and_restart() {
    let _serial = support::serial();
    let mut t = Target::start();
    if t.pinnacle().is_none() {
        eprintln!("SKIP clients_ride_through_a_shard_leader_kill_and_restart: the Redis Cluster here has no replicas to fail over to");
        return;
    }
    let ranges = t.spread(NODES);
    let scratch = tempfile::tempdir().expect("tempdir");
    let stopfile = scratch.path().join("stop");
    let stop = Arc::new(AtomicBool::new(false));

    // External writers: redis-py RESP3 from node 2, ioredis from node 3 (each skipped only if
    // its tool is missing and REDIS_TESTS_STRICT is unset).
    let mut scripts = Vec::new();
    let arg = |s: &str| s.to_string();
    if tools::available("failover redis-py writer", &["python3", "python3-redis"]) {
        let a = t.addr(2);
        let ack = scratch.path().join("py.ack");
        let args = [
            arg("write"),
            a.ip().to_string(),
            a.port().to_string(),
            arg("3"),
            arg("fo-py"),
            stopfile.display().to_string(),
            ack.display().to_string(),
        ];
        let child = support::python(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        scripts.push(("redis-py RedisCluster RESP3", "fo-py", child, ack));
    }
    if tools::available("failover ioredis writer", &["node", "npm"]) {
        support::ioredis_dir();
        let a = t.addr(3);
        let ack = scratch.path().join("js.ack");
        let args = [
            arg("write"),
            a.ip().to_string(),
            a.port().to_string(),
            arg("fo-js"),
            stopfile.display().to_string(),
            ack.display().to_string(),
        ];
        let child = support::node(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node");
        scripts.push(("ioredis Cluster", "fo-js", child, ack));
    }
    let sync_writer = {
        let (urls, stop) = (t.urls_from(1), stop.clone());
        std::thread::spawn(move || rs_sync_writer(urls, ProtocolVersion::RESP2, "fo-rss", stop))
    };
    let async_writer = {
        let (urls, stop) = (t.urls_from(2), stop.clone());
        std::thread::spawn(move || {
            runtime().block_on(rs_async_writer(
                urls,
                ProtocolVersion::RESP3,
                "fo-rsa",
                stop,
            ))
        })
    };

    std::thread::sleep(Duration::from_secs(2));
    // Twice: SIGKILL the master of a slot (it leads that slot's shard), let the other two elect,
    // bring it back (the leaders spread again), keep writing.
    let mut ranges = ranges;
    for victim_slot in [0u16, 16383] {
        let owner = ranges
            .iter()
            .find(|r| (r.start..=r.end).contains(&victim_slot))
            .expect("owner");
        let victim_addr: SocketAddr = owner.addr().parse().expect("addr");
        let c = t.pinnacle().expect("pinnacle");
        let victim = c.id_of(victim_addr).expect("victim node");
        eprintln!("SIGKILL node {victim} (master of slot {victim_slot})");
        c.kill9(victim).expect("kill9");
        std::thread::sleep(Duration::from_secs(3));
        c.restart(victim).expect("restart");
        ranges = t.spread(NODES);
        eprintln!("after restarting node {victim}: {:?}", masters(&ranges));
        std::thread::sleep(Duration::from_millis(1500));
    }
    std::fs::write(&stopfile, b"").expect("stop file");
    stop.store(true, Ordering::Relaxed);

    let mut reports = vec![
        sync_writer.join().expect("sync writer"),
        async_writer.join().expect("async writer"),
    ];
    for (name, prefix, child, ack) in scripts {
        let out = child.wait_with_output().expect("writer script");
        assert!(
            out.status.success(),
            "{name}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        reports.push(script_report(name, prefix, &out, &ack));
    }
    for r in &reports {
        eprintln!(
            "{}: {} attempts, {} acknowledged, {} errors, {} writer retries after connection errors (longest outage {:.2} s), slowest write {:.2} s; {:?}",
            r.name,
            r.attempts,
            r.acked.len(),
            r.error_count,
            r.reconnects,
            r.max_outage,
            r.max_latency,
            r.errors
        );
    }
    for r in &reports {
        assert_eq!(
            r.error_count, 0,
            "{} saw errors (only transparent redirects/retries allowed): {:?}",
            r.name, r.errors
        );
        assert!(
            r.max_outage <= MAX_OUTAGE && r.max_latency <= MAX_OUTAGE,
            "{}: writes stalled for {:.2} s / {:.2} s (bound {MAX_OUTAGE} s): the shard did not fail over in time",
            r.name,
            r.max_outage,
            r.max_latency
        );
        assert!(
            r.acked.len() >= 20,
            "{} acknowledged only {} writes",
            r.name,
            r.acked.len()
        );
    }

    // Every acknowledged write is present.
    let mut con = rs_client(&t.urls_from(1), ProtocolVersion::RESP2)
        .get_connection()
        .expect("cluster connection");
    for r in &reports {
        let mut missing = Vec::new();
        for chunk in r.acked.chunks(1000) {
            let mut pipe = redis::cluster::cluster_pipe();
            for i in chunk {
                pipe.get(format!("{}:{i}", r.prefix));
            }
            let vals: Vec<Option<String>> = pipe.query(&mut con).expect("read back");
            for (i, v) in chunk.iter().zip(vals) {
                if v.as_deref() != Some(format!("val-{i}").as_str()) {
                    missing.push((*i, v));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "{}: {} acknowledged writes lost or wrong, e.g. {:?}",
            r.name,
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
}
