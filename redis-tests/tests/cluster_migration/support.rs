//! Topology and migration helpers shared by the migration tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis_tests::cluster::Cluster;
use redis_tests::frame::{self, Value};

/// Text of a bulk/simple/verbatim/int reply.
pub fn text(v: &Value) -> String {
    match v {
        Value::Bulk(b) | Value::Simple(b) | Value::Verbatim(b) | Value::Error(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        Value::Int(n) => n.to_string(),
        Value::Null => String::new(),
        other => format!("{other:?}"),
    }
}

/// The shards node `i` leads, from the `shardN:...state=Leader` lines of INFO replication.
pub fn led_shards(c: &Cluster, i: usize) -> Option<Vec<usize>> {
    let info = c.info(i).ok()?;
    let mut led: Vec<usize> = info
        .fields
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix("shard")?.parse::<usize>().ok()?;
            v.split(',').any(|f| f == "state=Leader").then_some(n)
        })
        .collect();
    led.sort_unstable();
    Some(led)
}

/// Waits until every node leads exactly one shard and says `cluster_state:ok`; returns the
/// shard each node leads (index `node - 1`).
pub fn wait_spread(c: &Cluster, timeout: Duration) -> Vec<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let led: Vec<Option<Vec<usize>>> = c.ids().into_iter().map(|i| led_shards(c, i)).collect();
        let ok_state = c.ids().into_iter().all(|i| {
            matches!(c.call(i, &["CLUSTER", "INFO"]), Ok(v) if text(&v).contains("cluster_state:ok"))
        });
        if ok_state && led.iter().all(|l| matches!(l, Some(v) if v.len() == 1)) {
            let out: Vec<usize> = led.iter().flatten().map(|v| v[0]).collect();
            let mut distinct = out.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() == out.len() {
                return out;
            }
        }
        assert!(
            Instant::now() < deadline,
            "shard leaders did not spread (one per node) within {timeout:?}: {led:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One range of CLUSTER SLOTS: start, end, master address.
pub type Range = (u16, u16, SocketAddr);

/// Node `i`'s CLUSTER SLOTS: raw bytes and the parsed ranges.
pub fn cluster_slots(c: &Cluster, i: usize) -> (Vec<u8>, Vec<Range>) {
    let mut conn = c.conn(i).expect("connect");
    let raw = conn.call(&["CLUSTER", "SLOTS"]).expect("CLUSTER SLOTS");
    let v = frame::parse_one(&raw).expect("parse");
    let ranges = v
        .as_list()
        .unwrap_or_else(|| panic!("node{i} CLUSTER SLOTS: {v:?}"))
        .iter()
        .map(|r| {
            let r = r.as_list().expect("range");
            let int = |v: &Value| match v {
                Value::Int(n) => *n as u16,
                o => panic!("slot bound {o:?}"),
            };
            let m = r[2].as_list().expect("master");
            let addr: SocketAddr = format!("{}:{}", text(&m[0]), text(&m[1]))
                .parse()
                .expect("addr");
            (int(&r[0]), int(&r[1]), addr)
        })
        .collect();
    (raw, ranges)
}

/// The master address of `slot` in `ranges`.
pub fn owner_of(ranges: &[Range], slot: u16) -> SocketAddr {
    ranges
        .iter()
        .find(|(s, e, _)| (*s..=*e).contains(&slot))
        .map(|r| r.2)
        .unwrap_or_else(|| panic!("slot {slot} not covered: {ranges:?}"))
}

/// Waits (up to 30 s: leaders and replica lists settle after a restart) until every node's
/// CLUSTER SLOTS is byte-identical and covers 16384 slots in order; returns the ranges.
pub fn assert_slots_agree(c: &Cluster) -> Vec<Range> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match slots_agree(c) {
            Ok(ranges) => return ranges,
            Err(e) if Instant::now() >= deadline => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn slots_agree(c: &Cluster) -> Result<Vec<Range>, String> {
    let (first, ranges) = cluster_slots(c, 1);
    for i in 2..=c.len() {
        let (raw, _) = cluster_slots(c, i);
        if raw != first {
            return Err(format!(
                "node{i}'s CLUSTER SLOTS differs from node1's:\n{}\n{}",
                frame::show(&raw),
                frame::show(&first)
            ));
        }
    }
    let mut next = 0u32;
    for (s, e, _) in &ranges {
        if u32::from(*s) != next {
            return Err(format!("CLUSTER SLOTS gap or overlap: {ranges:?}"));
        }
        next = u32::from(*e) + 1;
    }
    if next != 16384 {
        return Err(format!(
            "CLUSTER SLOTS does not cover 16384 slots: {ranges:?}"
        ));
    }
    Ok(ranges)
}

/// PINN.MIGRATIONS of node `i` as one field map per migration (RESP2 flat map-arrays).
pub fn migrations(c: &Cluster, i: usize) -> Vec<HashMap<String, String>> {
    let v = c.call(i, &["PINN.MIGRATIONS"]).expect("PINN.MIGRATIONS");
    let list = v
        .as_list()
        .unwrap_or_else(|| panic!("PINN.MIGRATIONS: {v:?}"));
    list.iter()
        .map(|m| {
            let m = m
                .as_list()
                .unwrap_or_else(|| panic!("migration entry {m:?}"));
            m.chunks(2)
                .map(|kv| (text(&kv[0]), text(kv.get(1).unwrap_or(&Value::Null))))
                .collect()
        })
        .collect()
}

/// Waits until migration `id` is `done` on node `i` (any live node); returns its fields.
pub fn wait_done(c: &Cluster, id: &str, timeout: Duration) -> HashMap<String, String> {
    let deadline = Instant::now() + timeout;
    let mut last = Vec::new();
    loop {
        for i in c.live() {
            let Ok(v) = c.call(i, &["PINN.MIGRATIONS"]) else {
                continue;
            };
            if v.as_list().is_none() {
                continue;
            }
            last = migrations(c, i);
            if let Some(m) = last
                .iter()
                .find(|m| m.get("id").map(String::as_str) == Some(id))
            {
                if m.get("state").map(String::as_str) == Some("done") {
                    return m.clone();
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "migration {id} not done within {timeout:?}: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts a migration (`PINN.MIGRATE <slots> <to> [SYNC]`) on node `i`; returns its id.
pub fn migrate(c: &Cluster, i: usize, slots: &str, to: &str, sync: bool) -> String {
    let mut conn = c.conn(i).expect("connect");
    let mut args = vec!["PINN.MIGRATE", slots, to];
    if sync {
        args.push("SYNC");
    }
    conn.send_command(&args).expect("send");
    let raw = conn
        .read_reply_timeout(Duration::from_secs(120))
        .expect("PINN.MIGRATE reply");
    let v = frame::parse_one(&raw).expect("parse");
    match &v {
        Value::Int(n) => n.to_string(),
        Value::Bulk(_) | Value::Simple(_) => text(&v),
        // SYNC answers the finished migration's fields.
        Value::Array(f) if sync => {
            let m: HashMap<String, String> =
                f.chunks(2).map(|kv| (text(&kv[0]), text(&kv[1]))).collect();
            assert_eq!(m.get("state").map(String::as_str), Some("done"), "{m:?}");
            m["id"].clone()
        }
        _ => panic!(
            "PINN.MIGRATE {slots} {to} on node{i}: {}",
            frame::show(&raw)
        ),
    }
}

/// SETs every `(key, value)` through node `i` in pipelined batches; every reply must be +OK.
pub fn load(c: &Cluster, i: usize, kvs: &[(String, String)]) {
    let mut conn = c.conn(i).expect("connect");
    for batch in kvs.chunks(2000) {
        let mut bytes = Vec::new();
        for (k, v) in batch {
            bytes.extend(frame::encode_command(&["SET", k, v]));
        }
        conn.send(&bytes).expect("send");
        for (k, _) in batch {
            let r = conn.read_reply().expect("reply");
            assert_eq!(r, b"+OK\r\n", "SET {k} on node{i}: {}", frame::show(&r));
        }
    }
}

/// GETs every key through node `i` (pipelined); returns the replies in order.
pub fn get_all(c: &Cluster, i: usize, keys: &[String]) -> Vec<Value> {
    let mut conn = c.conn(i).expect("connect");
    let mut out = Vec::with_capacity(keys.len());
    for batch in keys.chunks(2000) {
        let mut bytes = Vec::new();
        for k in batch {
            bytes.extend(frame::encode_command(&["GET", k]));
        }
        conn.send(&bytes).expect("send");
        for _ in batch {
            let r = conn.read_reply().expect("reply");
            out.push(frame::parse_one(&r).expect("parse"));
        }
    }
    out
}

/// The node whose client address is `addr`.
pub fn node_at(c: &Cluster, addr: SocketAddr) -> usize {
    c.id_of(addr)
        .unwrap_or_else(|| panic!("{addr} is no node's address"))
}
