//! Membership changes overlapping a partition (reliability.md: "membership changes during
//! partitions", T8). Five nodes (bus links through the harness proxies), two shards, and a
//! register/counter workload throughout: `CLUSTER FORGET 5` while node 4 is cut off, heal;
//! node 5 wiped and restarted with `--cluster-join`, then `CLUSTER MEET` of it while node 3 is
//! cut off, heal. Afterwards no acknowledged write is lost (every acknowledged `SET` of a
//! unique key reads back, every counter is at least its acknowledged `INCR`s) and every node's
//! `CLUSTER SLOTS` names each slot exactly once, the same map on every node. ~40 s.

use redis::cluster::ClusterClient;
use redis::Commands;
use redis_tests::cluster::Cluster;
use redis_tests::tools::wait_until;
use redis_tests::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Counters the workload increments.
const COUNTERS: usize = 8;

/// What one workload client had acknowledged.
#[derive(Default)]
struct Acks {
    /// Unique keys written once each, with their value.
    sets: Vec<(String, String)>,
    /// Acknowledged INCRs per counter.
    incrs: [u64; COUNTERS],
    /// Commands that failed (refused or of unknown outcome: treated as maybe applied).
    failed: u64,
}

fn client(urls: &[String]) -> ClusterClient {
    ClusterClient::builder(urls.to_vec())
        .retries(2)
        .connection_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(2))
        .build()
        .expect("cluster client")
}

/// Unique SETs and INCRs from client `t` until `stop`.
fn workload(urls: Vec<String>, t: usize, stop: Arc<AtomicBool>) -> Acks {
    let cl = client(&urls);
    let mut acks = Acks::default();
    let mut conn = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = conn.as_mut() else {
            conn = cl.get_connection().ok();
            if conn.is_none() {
                thread::sleep(Duration::from_millis(100));
            }
            continue;
        };
        n += 1;
        let ok = if n.is_multiple_of(2) {
            let (k, v) = (format!("r:{t}:{n}"), format!("v{t}.{n}"));
            let r: redis::RedisResult<()> = c.set(&k, &v);
            r.map(|()| acks.sets.push((k, v))).is_ok()
        } else {
            let i = (n as usize / 2) % COUNTERS;
            let r: redis::RedisResult<i64> = c.incr(format!("ctr:{i}"), 1);
            r.map(|_| acks.incrs[i] += 1).is_ok()
        };
        if !ok {
            acks.failed += 1;
            conn = None;
            thread::sleep(Duration::from_millis(50));
        }
    }
    acks
}

/// `(first, last, master port)` ranges of `CLUSTER SLOTS` at node `i`, sorted.
fn slot_ranges(c: &Cluster, i: usize) -> Option<Vec<(i64, i64, i64)>> {
    let Ok(Value::Array(ranges)) = c.call(i, &["CLUSTER", "SLOTS"]) else {
        return None;
    };
    let mut out = Vec::new();
    for r in ranges {
        let Value::Array(f) = r else { return None };
        let (Some(Value::Int(a)), Some(Value::Int(b)), Some(Value::Array(m))) =
            (f.first(), f.get(1), f.get(2))
        else {
            return None;
        };
        let Some(Value::Int(port)) = m.get(1) else {
            return None;
        };
        out.push((*a, *b, *port));
    }
    out.sort();
    Some(out)
}

/// True if `ranges` name every slot exactly once (no gap, no overlap).
fn each_slot_once(ranges: &[(i64, i64, i64)]) -> bool {
    let mut next = 0;
    for (a, b, _) in ranges {
        if *a != next || b < a {
            return false;
        }
        next = b + 1;
    }
    next == 16384
}

/// The metadata group's members as node `i` sees them.
fn meta_members(c: &Cluster, i: usize) -> Option<String> {
    c.info(i)
        .ok()
        .and_then(|info| info.fields.get("raft_meta_members").cloned())
}

/// Sends `args` to node `via` until it answers OK (elections and a cut-off metadata leader
/// make it answer "try again" or time out for a while).
fn until_ok(c: &Cluster, via: usize, args: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        match c.call(via, args) {
            Ok(Value::Simple(ok)) if ok.as_slice() == b"OK" => return,
            Ok(Value::Error(e)) => {
                let e = String::from_utf8_lossy(&e).into_owned();
                assert!(Instant::now() < deadline, "{args:?} via node {via}: {e}");
                eprintln!("{args:?} via node {via}: {e}; retrying");
                thread::sleep(Duration::from_millis(300));
            }
            other => {
                assert!(
                    Instant::now() < deadline,
                    "{args:?} via node {via}: {other:?}"
                );
                eprintln!("{args:?} via node {via}: {other:?}; retrying");
                thread::sleep(Duration::from_millis(300));
            }
        }
    }
}

#[test]
fn forget_and_meet_while_a_minority_is_partitioned_lose_nothing() {
    let mut c = Cluster::builder(5)
        .shards(2)
        .with_proxies()
        .start()
        .expect("cluster");
    let urls: Vec<String> = c.ids().into_iter().map(|i| c.url(i)).collect();
    wait_until(
        "every slot served on node 1",
        Duration::from_secs(30),
        || {
            let r = slot_ranges(&c, 1);
            (r.as_deref().is_some_and(each_slot_once), r)
        },
    );

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|t| {
            let (urls, stop) = (urls.clone(), stop.clone());
            thread::spawn(move || workload(urls, t, stop))
        })
        .collect();
    thread::sleep(Duration::from_secs(2));

    // FORGET node 5 while node 4 is cut off: the shards' removals need node 4 only where it
    // is among the wanted replicas, and finish after the heal.
    c.isolate(4).expect("isolate 4");
    let forget: Vec<String> = ["CLUSTER", "FORGET", "5"].map(String::from).to_vec();
    until_ok(&c, 1, &forget, Duration::from_secs(15));
    thread::sleep(Duration::from_secs(3));
    c.heal().expect("heal");
    wait_until(
        "node 5 out of the metadata group",
        Duration::from_secs(45),
        || {
            let m = meta_members(&c, 1);
            (m.as_deref() == Some("1,2,3,4"), m)
        },
    );

    // Wiped, it comes back under its id by MEET while node 3 is cut off.
    c.restart_wiped_joining(5).expect("restart 5 wiped");
    c.isolate(3).expect("isolate 3");
    let meet = vec![
        "CLUSTER".to_string(),
        "MEET".into(),
        c.ip(5).to_string(),
        c.port(5).to_string(),
        c.announced_bus_port(5).to_string(),
    ];
    until_ok(&c, 2, &meet, Duration::from_secs(20));
    thread::sleep(Duration::from_secs(3));
    c.heal().expect("heal");
    wait_until(
        "node 5 a member on every node",
        Duration::from_secs(45),
        || {
            let seen: Vec<Option<String>> =
                c.ids().into_iter().map(|i| meta_members(&c, i)).collect();
            let ok = seen.iter().all(|m| m.as_deref() == Some("1,2,3,4,5"));
            (ok, seen)
        },
    );
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let acks: Vec<Acks> = clients
        .into_iter()
        .map(|h| h.join().expect("workload"))
        .collect();

    // Every node names each slot exactly once, and they all agree.
    wait_until(
        "one slot map, each slot once, on every node",
        Duration::from_secs(30),
        || {
            let maps: Vec<Option<Vec<(i64, i64, i64)>>> =
                c.ids().into_iter().map(|i| slot_ranges(&c, i)).collect();
            let ok = maps
                .iter()
                .all(|m| m.as_deref().is_some_and(each_slot_once) && *m == maps[0]);
            (ok, maps)
        },
    );

    // Nothing acknowledged is lost.
    let sets: usize = acks.iter().map(|a| a.sets.len()).sum();
    let incrs: u64 = acks.iter().flat_map(|a| a.incrs).sum();
    let failed: u64 = acks.iter().map(|a| a.failed).sum();
    eprintln!("acknowledged: {sets} SETs, {incrs} INCRs; {failed} failed or unknown");
    assert!(
        sets > 100 && incrs > 100,
        "too little acknowledged to mean anything"
    );
    let cl = client(&urls);
    let mut conn = cl.get_connection().expect("connection");
    let mut read = |k: &str| -> Option<String> {
        for _ in 0..50 {
            match conn.get::<_, Option<String>>(k) {
                Ok(v) => return v,
                Err(e) => {
                    eprintln!("GET {k}: {e}; retrying");
                    thread::sleep(Duration::from_millis(200));
                    if let Ok(c2) = cl.get_connection() {
                        conn = c2;
                    }
                }
            }
        }
        panic!("GET {k} kept failing");
    };
    for a in &acks {
        for (k, v) in &a.sets {
            assert_eq!(
                read(k).as_deref(),
                Some(v.as_str()),
                "acknowledged SET {k} lost"
            );
        }
    }
    let mut want = [0u64; COUNTERS];
    for a in &acks {
        for (i, n) in a.incrs.iter().enumerate() {
            want[i] += n;
        }
    }
    let got: BTreeMap<usize, u64> = (0..COUNTERS)
        .map(|i| {
            let v = read(&format!("ctr:{i}")).and_then(|s| s.parse().ok());
            (i, v.unwrap_or(0))
        })
        .collect();
    for (i, w) in want.iter().enumerate() {
        assert!(
            got[&i] >= *w,
            "counter {i}: {} < {w} acknowledged INCRs (all: {got:?})",
            got[&i]
        );
    }
}
