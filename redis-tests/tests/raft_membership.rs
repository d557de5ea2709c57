//! CLUSTER MEET / FORGET in Raft mode: a node started with `--cluster-join` is added as a
//! learner, catches up, becomes a voter (so the group survives losing two of the first three
//! nodes' majority), and FORGET takes it out again.

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
fn meet_adds_a_caught_up_voter_and_forget_removes_it() {
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
    // It catches up (learner), then shows up as a voter the leader replicates to.
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
    assert_eq!(
        c.call(l, &["CLUSTER", "FORGET", "4"]).expect("forget"),
        Value::Simple("OK".into())
    );
    wait_until("node 4 to leave", Duration::from_secs(20), || {
        let l = c.leader().expect("leader");
        c.info(l)
            .map(|i| !i.fields.contains_key("raft_peer4"))
            .unwrap_or(false)
    });
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
