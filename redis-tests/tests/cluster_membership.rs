//! A 4th node joins a sharded cluster with `CLUSTER MEET` (sent to any node), receives
//! replicas of the shards its placement gives it (every shard keeps exactly 3 replicas, so
//! each node drops one) and then slots (it ends up leading a shard, so CLUSTER SLOTS names it
//! a master, and `PINN.MIGRATE` can move more slots to it); `CLUSTER FORGET` (sent to another
//! node) hands its shards back and removes it everywhere. No acknowledged write is lost along
//! the way.
//!
//! The cluster starts with `--shards 4` on 3 nodes: slots belong to shards, and a node gets
//! slots by leading a shard, so a spare shard is what a new node can take over.

use redis::cluster::ClusterClient;
use redis::Commands;
use redis_tests::cluster::Cluster;
use redis_tests::raw::RawConn;
use redis_tests::tools::wait_until;
use redis_tests::{Builder, Server, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn text(v: &Value) -> String {
    match v {
        Value::Bulk(b) | Value::Verbatim(b) | Value::Simple(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        other => panic!("not text: {other:?}"),
    }
}

fn conn(at: SocketAddr) -> Option<RawConn> {
    RawConn::connect_addr(at, Duration::from_secs(5)).ok()
}

/// Master port → slot count, from `CLUSTER SLOTS` at `at`.
fn masters_at(at: SocketAddr) -> Option<BTreeMap<u16, u32>> {
    let v = conn(at)?.call_value(&["CLUSTER", "SLOTS"]).ok()?;
    let Value::Array(ranges) = v else { return None };
    let mut out = BTreeMap::new();
    for r in ranges {
        let Value::Array(f) = r else { return None };
        let (Value::Int(a), Value::Int(b), Value::Array(m)) = (&f[0], &f[1], &f[2]) else {
            return None;
        };
        let Value::Int(p) = m.get(1)? else {
            return None;
        };
        *out.entry(*p as u16).or_default() += (*b - *a + 1) as u32;
    }
    Some(out)
}

/// Writes `k:{i}` = `v{i}` for `range` through a cluster client, retrying refusals such as
/// CLUSTERDOWN during an election (a write refused with an error was not applied).
fn write_keys(urls: &[String], range: std::ops::Range<usize>) {
    let client = ClusterClient::builder(urls.to_vec())
        .retries(10)
        .build()
        .expect("cluster client");
    let mut conn = client.get_connection().expect("cluster connection");
    for i in range {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r: redis::RedisResult<()> = conn.set(format!("k:{i}"), format!("v{i}"));
            match r {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("SET k:{i}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                    conn = client.get_connection().expect("cluster connection");
                }
                Err(e) => panic!("SET k:{i}: {e}"),
            }
        }
    }
}

/// Reads every `k:{i}` of `range` back through a cluster client.
fn check_keys(urls: &[String], range: std::ops::Range<usize>) {
    let client = ClusterClient::builder(urls.to_vec())
        .retries(10)
        .build()
        .expect("cluster client");
    let mut conn = client.get_connection().expect("cluster connection");
    for i in range {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r: redis::RedisResult<Option<String>> = conn.get(format!("k:{i}"));
            match r {
                Ok(v) => {
                    assert_eq!(v, Some(format!("v{i}")), "k:{i}");
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("GET k:{i}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                    conn = client.get_connection().expect("cluster connection");
                }
                Err(e) => panic!("GET k:{i}: {e}"),
            }
        }
    }
}

/// Each shard's voters (`shardN:...,voters=a|b|c`) from `INFO replication` at `at`.
fn shard_voters(at: SocketAddr) -> Vec<BTreeSet<u64>> {
    let Some(Ok(v)) = conn(at).map(|mut c| c.call_value(&["INFO", "replication"])) else {
        return Vec::new();
    };
    text(&v)
        .lines()
        .filter(|l| l.starts_with("shard"))
        .filter_map(|l| l.split("voters=").nth(1))
        .map(|r| {
            r.split('|')
                .filter_map(|id| id.trim().parse().ok())
                .collect()
        })
        .collect()
}

/// `shardN:` states from `INFO replication` at `s` (`Leader`, `Follower`, `Learner`, ...).
fn shard_states(s: &Server) -> Vec<String> {
    let Ok(mut c) = s.conn() else {
        return Vec::new();
    };
    let Ok(v) = c.call_value(&["INFO", "replication"]) else {
        return Vec::new();
    };
    text(&v)
        .lines()
        .filter(|l| l.starts_with("shard"))
        .filter_map(|l| l.split("state=").nth(1))
        .map(|r| r.split(',').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn fourth_node_joins_gets_a_shard_and_slots_then_is_forgotten() {
    let c = Cluster::builder(3).shards(4).start().expect("cluster");
    let ports: Vec<u16> = c.ids().into_iter().map(|i| c.port(i)).collect();
    let addrs: Vec<SocketAddr> = c.addrs();
    let urls: Vec<String> = c.ids().into_iter().map(|i| c.url(i)).collect();
    wait_until("3 masters", Duration::from_secs(60), || {
        let m = masters_at(addrs[0]);
        (m.as_ref().is_some_and(|m| m.len() == 3), m)
    });
    write_keys(&urls, 0..1500);

    // Node 4 waits to be contacted; MEET goes to node 2 (forwarded to the metadata leader).
    let (n4, port, bus) = Builder::pinnacle_joining(4, 4).expect("port");
    let n4 = n4.start().expect("node 4");
    let meet = c
        .call(
            2,
            &[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &port.to_string(),
                &bus.to_string(),
            ],
        )
        .expect("meet");
    assert_eq!(meet, Value::Simple("OK".into()));

    // Every shard ends on exactly 3 nodes (4 shards × 3 replicas: 3 per node), node 4 in 3 of
    // them, and every node, node 4 included, sees the same placement.
    let at4: SocketAddr = ([127, 0, 0, 1], port).into();
    let all: Vec<SocketAddr> = addrs.iter().copied().chain([at4]).collect();
    wait_until(
        "3 replicas per shard, 3 shards per node, on every node",
        Duration::from_secs(120),
        || {
            let seen: Vec<Vec<BTreeSet<u64>>> = all.iter().map(|a| shard_voters(*a)).collect();
            let first = &seen[0];
            let per_node = |id: u64| first.iter().filter(|v| v.contains(&id)).count();
            let ok = first.len() == 4
                && first.iter().all(|v| v.len() == 3)
                && (1..=4).all(|id| per_node(id) == 3)
                && seen.iter().all(|s| s == first);
            (ok, seen)
        },
    );
    let outside = shard_voters(at4)
        .iter()
        .position(|v| !v.contains(&4))
        .expect("a shard without node 4");
    wait_until(
        "node 4 to own slots on every node",
        Duration::from_secs(60),
        || {
            let seen: Vec<_> = all.iter().map(|a| masters_at(*a)).collect();
            let ok = seen.iter().all(|m| {
                m.as_ref().is_some_and(|m| {
                    m.len() == 4
                        && m.get(&port).is_some_and(|n| *n > 0)
                        && m.values().sum::<u32>() == 16384
                })
            });
            (ok, seen)
        },
    );
    // Keys written before are served, some by node 4 itself; writes keep working.
    let mut urls4 = urls.clone();
    urls4.push(format!("redis://127.0.0.1:{port}"));
    check_keys(&urls4, 0..1500);
    write_keys(&urls4, 1500..2000);
    // Node 4 holds no replica of one shard: it redirects that shard's keys to the leader the
    // shard published, and the key is there.
    let mut conn4 = n4.conn().expect("conn");
    let (outside_key, moved) = (0..2000)
        .find_map(|i| {
            let k = format!("k:{i}");
            match conn4.call_value(&["GET", k.as_str()]) {
                Ok(Value::Error(e)) if e.starts_with(b"MOVED") => {
                    Some((k, String::from_utf8_lossy(&e).into_owned()))
                }
                _ => None,
            }
        })
        .expect("a key node 4 redirects");
    let to: SocketAddr = moved
        .split(' ')
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("MOVED target in {moved:?}"));
    let leader_port = to.port();
    assert_ne!(leader_port, port, "{moved}");
    assert_eq!(
        conn(to)
            .expect("conn")
            .call_value(&["GET", outside_key.as_str()])
            .expect("GET"),
        Value::Bulk(format!("v{}", &outside_key[2..]).into_bytes()),
        "{outside_key} at {to} (shard {outside} is not on node 4)"
    );
    let served_by_4 = (0..2000)
        .filter(|i| {
            let k = format!("k:{i}");
            let mut conn = n4.conn().expect("conn");
            matches!(conn.call_value(&["GET", k.as_str()]), Ok(Value::Bulk(_)))
        })
        .count();
    assert!(served_by_4 > 0, "node 4 serves none of the keys");

    // More slots to node 4 by migration (a node id names the shard it leads).
    let m4 = masters_at(at4).expect("slots");
    let donor = *m4.keys().find(|p| **p != port).expect("another master");
    let donor_slot = {
        let mut conn = conn(at4).expect("conn");
        let Value::Array(ranges) = conn.call_value(&["CLUSTER", "SLOTS"]).expect("slots") else {
            panic!("CLUSTER SLOTS")
        };
        ranges
            .iter()
            .find_map(|r| match r {
                Value::Array(f) => match (&f[0], &f[2]) {
                    (Value::Int(a), Value::Array(m))
                        if m.get(1) == Some(&Value::Int(donor as i64)) =>
                    {
                        Some(*a)
                    }
                    _ => None,
                },
                _ => None,
            })
            .expect("a donor slot")
    };
    let four = "0000000000000000000000000000000000000004";
    let mig = c
        .call(
            1,
            &[
                "PINN.MIGRATE",
                &format!("{}-{}", donor_slot, donor_slot + 9),
                four,
                "SYNC",
            ],
        )
        .expect("migrate");
    assert!(!matches!(mig, Value::Error(_)), "PINN.MIGRATE: {mig:?}");
    let before = m4[&port];
    wait_until(
        "node 4 to own 10 more slots",
        Duration::from_secs(30),
        || {
            let m = masters_at(at4);
            (
                m.as_ref()
                    .is_some_and(|m| m.get(&port) == Some(&(before + 10))),
                m,
            )
        },
    );
    check_keys(&urls4, 0..2000);

    // FORGET via node 1: node 4 hands its shard over and leaves every group.
    assert_eq!(
        c.call(1, &["CLUSTER", "FORGET", "4"]).expect("forget"),
        Value::Simple("OK".into())
    );
    wait_until(
        "node 4 gone from every node's view",
        Duration::from_secs(90),
        || {
            let seen: Vec<(Option<BTreeMap<u16, u32>>, bool)> = addrs
                .iter()
                .map(|a| {
                    let nodes = conn(*a)
                        .and_then(|mut c| c.call_value(&["CLUSTER", "NODES"]).ok())
                        .map(|v| text(&v).contains(&format!(":{port}@")))
                        .unwrap_or(true);
                    (masters_at(*a), nodes)
                })
                .collect();
            let ok = seen.iter().all(|(m, listed)| {
                !listed
                    && m.as_ref()
                        .is_some_and(|m| !m.contains_key(&port) && m.values().sum::<u32>() == 16384)
            });
            (ok, seen)
        },
    );
    let states = shard_states(&n4);
    assert!(
        !states.iter().any(|s| s == "Leader"),
        "node 4 still leads a shard: {states:?}"
    );
    // Back to 3 nodes: every shard on all three again.
    wait_until("every shard on nodes 1-3", Duration::from_secs(60), || {
        let seen: Vec<Vec<BTreeSet<u64>>> = addrs.iter().map(|a| shard_voters(*a)).collect();
        let want: BTreeSet<u64> = [1, 2, 3].into();
        let ok = seen
            .iter()
            .all(|s| s.len() == 4 && s.iter().all(|v| *v == want));
        (ok, seen)
    });
    check_keys(&urls, 0..2000);
    write_keys(&urls, 2000..2100);
    let live: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(live.len(), 3);
}

/// `CLUSTER MEET` of `node` (its address in `c`) sent to node `via`.
fn meet(c: &Cluster, via: usize, node: usize) -> Value {
    c.call(
        via,
        &[
            "CLUSTER".to_string(),
            "MEET".into(),
            c.ip(node).to_string(),
            c.port(node).to_string(),
            c.announced_bus_port(node).to_string(),
        ],
    )
    .unwrap_or_else(|e| Value::Error(format!("transport: {e}").into_bytes()))
}

/// True once some node logged that the metadata group dropped `node` (FORGET's last step).
fn removal_finished(c: &Cluster, node: usize) -> bool {
    let line = format!("membership: node {node} left the cluster");
    c.ids()
        .into_iter()
        .filter(|i| *i != node)
        .any(|i| c.log_since_start(i).contains(&line))
}

/// MEET of a live member is a no-op answered OK. Rejoining under a Raft id that some group
/// still counts as a voter is unsafe (the wiped node forgot its votes and log), so MEET
/// refuses a leaving node id until FORGET has taken it out of every shard and of the
/// metadata group. Then the same id at the same address is
/// accepted, becomes a voter everywhere again, and no acknowledged write is lost.
#[test]
fn meet_of_a_forgotten_node_waits_until_its_removal_finished() {
    let mut c = Cluster::builder(3).shards(2).start().expect("cluster");
    let urls: Vec<String> = c.ids().into_iter().map(|i| c.url(i)).collect();
    c.leader_within(Duration::from_secs(30)).expect("leader");
    write_keys(&urls, 0..300);
    c.wait_converged(Duration::from_secs(30))
        .expect("converged");
    let f = 3;

    // A live member: MEET is answered OK (idempotent, as in Redis) and changes nothing.
    let members = |via: usize| {
        c.info(via)
            .ok()
            .and_then(|i| i.fields.get("raft_meta_members").cloned())
    };
    let before = members(1);
    assert_eq!(before.as_deref(), Some("1,2,3"));
    for via in [1, 2, 3] {
        assert_eq!(
            meet(&c, via, f),
            Value::Simple("OK".into()),
            "MEET via {via}"
        );
    }
    assert_eq!(members(1), before);
    assert_eq!(members(3), before);

    // FORGET it, wipe it at once and keep asking MEET to take it back.
    assert_eq!(
        c.call(1, &["CLUSTER", "FORGET", "3"]).expect("forget"),
        Value::Simple("OK".into())
    );
    c.restart_wiped_joining(f).expect("restart wiped");
    let started = Instant::now();
    let mut refusals = Vec::new();
    loop {
        let via = if refusals.len() % 2 == 0 { 1 } else { 2 };
        let r = meet(&c, via, f);
        match &r {
            Value::Simple(ok) if ok.as_slice() == b"OK" => {
                assert!(
                    removal_finished(&c, f),
                    "MEET accepted node {f} before FORGET removed it from the metadata group \
                     (refusals so far: {refusals:?})"
                );
                break;
            }
            Value::Error(e) => {
                let e = String::from_utf8_lossy(e).into_owned();
                assert!(
                    e.contains("still leaving")
                        || e.contains("transport")
                        || e.contains("does not lead the metadata group")
                        || e.contains("being added or removed")
                        || e.contains("no metadata leader")
                        // The restarted node's bus is not listening yet.
                        || e.contains("unreachable"),
                    "unexpected MEET refusal: {e}"
                );
                refusals.push(e.clone());
            }
            other => panic!("MEET: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "MEET still refused 30 s after FORGET ({} times): first {:?}, last {:?}",
            refusals.len(),
            refusals.first(),
            refusals.last()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let kinds: BTreeSet<&String> = refusals.iter().collect();
    eprintln!(
        "MEET refused {} times over {:?} before the removal finished: {kinds:?}",
        refusals.len(),
        started.elapsed(),
    );
    assert!(
        !refusals.is_empty(),
        "the first MEET right after FORGET was accepted: nothing showed the refusal"
    );

    // It is a voter of every group again and serves as before; nothing was lost.
    let n3: SocketAddr = c.addr(f);
    wait_until(
        "node 3 back in the metadata group and every shard",
        Duration::from_secs(30),
        || {
            let info = c.info(f).ok();
            let members = c
                .info(1)
                .ok()
                .and_then(|i| i.fields.get("raft_meta_members").cloned());
            let shard_states: Vec<String> = info
                .as_ref()
                .map(|i| {
                    (0..2)
                        .filter_map(|s| i.fields.get(&format!("shard{s}")).cloned())
                        .collect()
                })
                .unwrap_or_default();
            let ok = members
                .as_deref()
                .is_some_and(|m| m.split(',').any(|id| id == "3"))
                && shard_states.len() == 2
                && shard_states
                    .iter()
                    .all(|s| s.contains("state=Follower") || s.contains("state=Leader"));
            (ok, (members, shard_states, n3))
        },
    );
    check_keys(&urls, 0..300);
    write_keys(&urls, 300..400);
    check_keys(&urls, 0..400);
}
