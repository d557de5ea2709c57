//! A node removed from a shard's Raft group drops its copy of that shard (keyspace and Raft
//! log), and a node added back catches up from the leader, not from what it had.
//!
//! 3 nodes with `--shards 4` hold every shard; a 4th node joins with `CLUSTER MEET`, so each
//! shard keeps 3 replicas and each of nodes 1-3 leaves one shard's group. `DEBUG SHARDKEYS`
//! (each shard keyspace's live keys on that node's disk, whatever its role) shows the left
//! shard's keys gone from that node while its members hold them all, and every key stays
//! readable through the cluster. `CLUSTER FORGET 4` then puts every shard back on nodes 1-3:
//! the nodes re-added to a shard they had dropped get it whole again, and every key reads back
//! from every node with `READONLY` (a follower serves its own copy).

use redis::cluster::ClusterClient;
use redis::Commands;
use redis_tests::cluster::Cluster;
use redis_tests::raw::RawConn;
use redis_tests::tools::wait_until;
use redis_tests::{Builder, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn conn(at: SocketAddr) -> Option<RawConn> {
    RawConn::connect_addr(at, Duration::from_secs(5)).ok()
}

/// Runs `op` on key `k:{i}` through a cluster client for every `i` in `range`, retrying
/// refusals such as CLUSTERDOWN during an election (a refused write was not applied).
fn each_key(
    urls: &[String],
    range: std::ops::Range<usize>,
    op: impl Fn(&mut redis::cluster::ClusterConnection, usize) -> redis::RedisResult<()>,
) {
    let client = ClusterClient::builder(urls.to_vec())
        .retries(10)
        .build()
        .expect("cluster client");
    let mut conn = client.get_connection().expect("cluster connection");
    for i in range {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match op(&mut conn, i) {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("k:{i}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                    conn = client.get_connection().expect("cluster connection");
                }
                Err(e) => panic!("k:{i}: {e}"),
            }
        }
    }
}

fn write_keys(urls: &[String], range: std::ops::Range<usize>) {
    each_key(urls, range, |c, i| c.set(format!("k:{i}"), format!("v{i}")));
}

fn check_keys(urls: &[String], range: std::ops::Range<usize>) {
    each_key(urls, range, |c, i| {
        let v: Option<String> = c.get(format!("k:{i}"))?;
        assert_eq!(v, Some(format!("v{i}")), "k:{i}");
        Ok(())
    });
}

/// Each shard's voters (`shardN:...,voters=a|b|c`) from `INFO replication` at `at`.
fn shard_voters(at: SocketAddr) -> Vec<BTreeSet<u64>> {
    let Some(Ok(Value::Bulk(v))) = conn(at).map(|mut c| c.call_value(&["INFO", "replication"]))
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&v)
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

/// `DEBUG SHARDKEYS` at `at`: live keys in each shard keyspace on that node's disk.
fn shard_keys(at: SocketAddr) -> Vec<i64> {
    match conn(at).map(|mut c| c.call_value(&["DEBUG", "SHARDKEYS"])) {
        Some(Ok(Value::Array(v))) => v
            .iter()
            .map(|x| match x {
                Value::Int(n) => *n,
                other => panic!("DEBUG SHARDKEYS: {other:?}"),
            })
            .collect(),
        other => panic!("DEBUG SHARDKEYS at {at}: {other:?}"),
    }
}

/// A node's id, each shard's voters as it sees them, and its `DEBUG SHARDKEYS`.
type NodeView = (u64, Vec<BTreeSet<u64>>, Vec<i64>);

/// Per node (`ids[k]` at `addrs[k]`): every shard it is a voter of holds `total`'s share
/// (the same count on each member, summing to `total` over the shards), every other shard
/// none. Returns whether that holds and what was seen.
fn copies_match(ids: &[u64], addrs: &[SocketAddr], total: i64) -> (bool, Vec<NodeView>) {
    let seen: Vec<_> = ids
        .iter()
        .zip(addrs)
        .map(|(id, a)| (*id, shard_voters(*a), shard_keys(*a)))
        .collect();
    let voters = &seen[0].1;
    if voters.len() != 4 || !seen.iter().all(|(_, v, k)| v == voters && k.len() == 4) {
        return (false, seen);
    }
    let mut ok = true;
    let mut sum = 0;
    for (shard, members) in voters.iter().enumerate() {
        let held: Vec<i64> = seen
            .iter()
            .filter(|(id, _, _)| members.contains(id))
            .map(|(_, _, k)| k[shard])
            .collect();
        let dropped = seen
            .iter()
            .filter(|(id, _, _)| !members.contains(id))
            .all(|(_, _, k)| k[shard] == 0);
        ok &= dropped && !held.is_empty() && held.iter().all(|n| *n == held[0]);
        sum += held.first().copied().unwrap_or(0);
    }
    (ok && sum == total, seen)
}

/// `CLUSTER FORGET 4`, then every shard is back on nodes 1-3 with all `total` keys: through
/// the cluster, and from every node's own copy (leader or follower) with `READONLY`.
fn forget_4_then_whole_on_1_to_3(c: &Cluster, addrs: &[SocketAddr], urls: &[String], total: usize) {
    assert_eq!(
        c.call(1, &["CLUSTER", "FORGET", "4"]).expect("forget"),
        Value::Simple("OK".into())
    );
    wait_until(
        "every shard whole on nodes 1-3 again",
        Duration::from_secs(120),
        || {
            let (ok, seen) = copies_match(&[1, 2, 3], addrs, total as i64);
            let want: BTreeSet<u64> = [1, 2, 3].into();
            let back = seen
                .first()
                .is_some_and(|(_, v, _)| v.iter().all(|m| *m == want));
            (ok && back, seen)
        },
    );
    check_keys(urls, 0..total);
    for at in addrs {
        let mut rc = conn(*at).expect("conn");
        assert_eq!(
            rc.call_value(&["READONLY"]).expect("READONLY"),
            Value::Simple("OK".into())
        );
        for i in 0..total {
            let k = format!("k:{i}");
            let v = rc.call_value(&["GET", k.as_str()]).expect("GET");
            assert_eq!(v, Value::Bulk(format!("v{i}").into_bytes()), "{k} at {at}");
        }
    }
}

#[test]
fn replicas_moved_off_a_node_are_dropped_and_re_replicated_when_moved_back() {
    let c = Cluster::builder(3).shards(4).start().expect("cluster");
    let addrs: Vec<SocketAddr> = c.addrs();
    let urls: Vec<String> = c.ids().into_iter().map(|i| c.url(i)).collect();
    write_keys(&urls, 0..1200);
    wait_until(
        "every node holds every key",
        Duration::from_secs(60),
        || copies_match(&[1, 2, 3], &addrs, 1200),
    );

    // Node 4 joins: each shard moves one replica to it.
    let (n4, port, bus) = Builder::pinnacle_joining(4, 4).expect("port");
    let _n4 = n4.start().expect("node 4");
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
    let at4: SocketAddr = ([127, 0, 0, 1], port).into();
    let all: Vec<SocketAddr> = addrs.iter().copied().chain([at4]).collect();
    wait_until(
        "3 replicas per shard, each node's left shard dropped, node 4 caught up",
        Duration::from_secs(120),
        || {
            let (ok, seen) = copies_match(&[1, 2, 3, 4], &all, 1200);
            // 4 shards × 3 replicas over 4 nodes: 3 shards each.
            let three = seen.first().is_some_and(|(_, v, _)| {
                v.iter().all(|m| m.len() == 3)
                    && (1..=4u64).all(|id| v.iter().filter(|m| m.contains(&id)).count() == 3)
            });
            (ok && three, seen)
        },
    );
    // Each of nodes 1-3 really left a shard (the check above is not vacuous), and its Raft
    // log of that group is gone too (only the vote is left, next to the reset mark); the
    // groups it still belongs to were not reset.
    let voters = shard_voters(addrs[0]);
    for id in 1..=3usize {
        let left = voters
            .iter()
            .position(|m| !m.contains(&(id as u64)))
            .unwrap_or_else(|| panic!("node {id} left no shard: {voters:?}"));
        for (shard, members) in voters.iter().enumerate() {
            let group = c.dir(id).join("raft").join(format!("group-{}", shard + 1));
            if members.contains(&(id as u64)) {
                assert!(
                    !group.join("reset").exists(),
                    "{} was reset",
                    group.display()
                );
            }
        }
        let group = c.dir(id).join("raft").join(format!("group-{}", left + 1));
        assert!(
            group.join("reset").exists(),
            "no reset mark in {}",
            group.display()
        );
        let log: Vec<String> = std::fs::read_dir(group.join("log"))
            .expect("log dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            log.iter().all(|f| f == "vote"),
            "{}: {log:?}",
            group.display()
        );
    }
    let mut urls4 = urls.clone();
    urls4.push(format!("redis://127.0.0.1:{port}"));
    check_keys(&urls4, 0..1200);
    write_keys(&urls4, 1200..1500);

    // FORGET 4: every shard goes back to nodes 1-3, including the ones they had dropped.
    forget_4_then_whole_on_1_to_3(&c, &addrs, &urls, 1500);
    write_keys(&urls, 1500..1600);
    check_keys(&urls, 0..1600);
}

/// A node added back to a shard while it is still dropping its copy of it ends up with the
/// whole shard: node 4 joins, and the moment the first of nodes 1-3 starts dropping a shard it
/// left (its `reset` mark appears), `CLUSTER FORGET 4` puts every shard back on nodes 1-3. In
/// every interleaving of the drop with the re-add, each node must end with every key of every
/// shard, and every key must read back from every node's own copy.
#[test]
fn a_replica_re_added_while_it_drops_its_copy_gets_the_shard_whole() {
    let c = Cluster::builder(3).shards(4).start().expect("cluster");
    let addrs: Vec<SocketAddr> = c.addrs();
    let urls: Vec<String> = c.ids().into_iter().map(|i| c.url(i)).collect();
    write_keys(&urls, 0..1200);
    wait_until(
        "every node holds every key",
        Duration::from_secs(60),
        || copies_match(&[1, 2, 3], &addrs, 1200),
    );
    let (n4, port, bus) = Builder::pinnacle_joining(4, 4).expect("port");
    let _n4 = n4.start().expect("node 4");
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
    let marks = || -> Vec<String> {
        (1..=3usize)
            .flat_map(|id| (1..=4).map(move |g| (id, g)))
            .filter(|(id, g)| {
                c.dir(*id)
                    .join("raft")
                    .join(format!("group-{g}"))
                    .join("reset")
                    .exists()
            })
            .map(|(id, g)| format!("node {id} group {g}"))
            .collect()
    };
    wait_until(
        "a node starts dropping a shard it left",
        Duration::from_secs(120),
        || {
            let m = marks();
            (!m.is_empty(), m)
        },
    );
    eprintln!("dropping when FORGET was sent: {:?}", marks());
    forget_4_then_whole_on_1_to_3(&c, &addrs, &urls, 1200);
}
