//! CLUSTER MEET / FORGET in Raft mode: a node started with `--cluster-join` joins the cluster;
//! the one shard keeps 3 replicas, so the 4th node holds none and redirects to its leader; once
//! FORGET takes one of the first three out, the 4th node is added to the shard as a learner,
//! catches up and becomes a voter in its place.

use redis_tests::cluster::Cluster;
use redis_tests::process::free_port;
use redis_tests::{Builder, Server, Value};
use std::time::{Duration, Instant};

fn call(s: &Server, args: &[&str]) -> Value {
    s.conn().expect("conn").call_value(args).expect("call")
}

fn info_field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
}

fn info_replication(s: &Server) -> String {
    match call(s, &["INFO", "replication"]) {
        Value::Bulk(b) | Value::Verbatim(b) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("INFO: {other:?}"),
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn fourth_node_waits_outside_the_shard_until_forget_makes_room() {
    let c = Cluster::start(3).expect("cluster");
    let l = c.settled_leader().expect("leader");
    for i in 0..200 {
        let k = format!("m:{i}");
        assert_eq!(
            c.call(l, &["SET", k.as_str(), "v"]).expect("set"),
            Value::Simple("OK".into())
        );
    }
    // Node 4 waits to be contacted.
    let port = free_port().expect("port");
    let bus = free_port().expect("port");
    let n4 = Builder::pinnacle()
        .port(port)
        .args([
            "--node-id",
            "4",
            "--cluster-join",
            "--cluster-port",
            &bus.to_string(),
        ])
        .start()
        .expect("node 4");
    assert_eq!(
        c.call(
            l,
            &[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &port.to_string(),
                &bus.to_string()
            ]
        )
        .expect("meet"),
        Value::Simple("OK".into())
    );
    // The shard stays on nodes 1-3: node 4 holds no replica and redirects to the leader the
    // shard published in the cluster's metadata.
    wait_until(
        "node 4 to redirect to the leader",
        Duration::from_secs(20),
        || {
            let want = format!("MOVED 5398 {}", c.addr(c.leader().expect("leader")));
            matches!(call(&n4, &["GET", "m:1"]), Value::Error(e) if e == want.as_bytes())
        },
    );
    for _ in 0..10 {
        let l = c.leader().expect("leader");
        let info = c.info(l).expect("info");
        assert!(
            !info.fields.contains_key("raft_peer4"),
            "node 4 was added to the shard: {:?}",
            info.fields
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // FORGET of a follower: node 4 takes its place, learner then voter, with the whole data.
    let l = c.leader().expect("leader");
    let victim = c.ids().into_iter().find(|i| *i != l).expect("a follower");
    assert_eq!(
        c.call(l, &["CLUSTER", "FORGET", &victim.to_string()])
            .expect("forget"),
        Value::Simple("OK".into())
    );
    wait_until("node 4 to catch up", Duration::from_secs(20), || {
        let info = info_replication(&n4);
        info_field(&info, "raft_leader_id").as_deref()
            == Some(&c.leader().expect("leader").to_string()[..])
            && matches!(call(&n4, &["DBSIZE"]), Value::Int(201))
    });
    wait_until("node 4 to be a voter", Duration::from_secs(20), || {
        let l = c.leader().expect("leader");
        c.info(l)
            .map(|i| {
                i.fields
                    .get("raft_peer4")
                    .is_some_and(|p| p.ends_with("voter=yes"))
            })
            .unwrap_or(false)
    });
    // A follower redirects to the leader like the others.
    let r = call(&n4, &["GET", "m:1"]);
    assert!(
        matches!(&r, Value::Error(e) if e.starts_with(b"MOVED ")),
        "node 4 answered {r:?}"
    );
    // FORGET: refused for the leader itself, then node 4 leaves.
    let l = c.leader().expect("leader");
    let me = c.info(l).expect("info").node_id.to_string();
    assert!(matches!(
        c.call(l, &["CLUSTER", "FORGET", me.as_str()]).expect("forget"),
        Value::Error(e) if e == b"ERR I tried hard but I can't forget myself..."
    ));
    assert!(matches!(
        c.call(l, &["CLUSTER", "FORGET", "99"]).expect("forget"),
        Value::Error(e) if e == b"ERR Unknown node 99"
    ));
    let peer = format!("raft_peer{victim}");
    wait_until(
        "the forgotten node to leave",
        Duration::from_secs(20),
        || {
            let l = c.leader().expect("leader");
            c.info(l)
                .map(|i| !i.fields.contains_key(&peer))
                .unwrap_or(false)
        },
    );
    // The three remaining nodes still commit writes.
    let l = c.leader().expect("leader");
    assert_eq!(
        c.call(l, &["SET", "after", "forget"]).expect("set"),
        Value::Simple("OK".into())
    );
}

#[test]
fn meet_and_forget_need_raft_mode() {
    let s = Builder::pinnacle().start().expect("server");
    for args in [
        vec!["CLUSTER", "MEET", "127.0.0.1", "7000"],
        vec!["CLUSTER", "FORGET", "2"],
    ] {
        match call(&s, &args) {
            Value::Error(e) => {
                let e = String::from_utf8_lossy(&e);
                assert!(e.contains("without Raft"), "{e}")
            }
            other => panic!("{args:?}: {other:?}"),
        }
    }
}
