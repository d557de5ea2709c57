//! Cluster-aware clients against a Raft cluster: the group is one shard owning every slot, its
//! leader the master (CLUSTER SLOTS/NODES/SHARDS/INFO), followers redirect with MOVED. redis-py's
//! `RedisCluster` and `redis-cli -c` start from any node and keep working across a leader
//! failover.

use redis_tests::cluster::Cluster;
use redis_tests::{tools, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn py(c: &Cluster, node: usize, proto: u8, phase: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/raft_cluster_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(c.ip(node).to_string())
        .arg(c.port(node).to_string())
        .arg(proto.to_string())
        .arg(phase)
        .arg("100")
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "redis-py {phase} via node {node} (RESP{proto}) failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn text(v: Value) -> String {
    match v {
        Value::Bulk(b) | Value::Verbatim(b) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Right after an election a follower may not have heard from the leader yet (it then says
/// CLUSTERDOWN, which redis-cli does not retry).
fn wait_state_ok(c: &Cluster) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for i in c.live() {
        while !text(c.call(i, &["CLUSTER", "INFO"]).expect("info")).starts_with("cluster_state:ok")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "node {i} never saw the leader"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn topology_names_the_leader_as_master_of_every_slot() {
    let c = Cluster::start(3).expect("cluster");
    let l = c.leader().expect("leader");
    c.wait_converged(Duration::from_secs(10)).expect("converge");
    let leader_id = format!("{:040x}", c.info(l).expect("info").node_id);
    wait_state_ok(&c);
    for i in c.ids() {
        // CLUSTER SLOTS: one range 0-16383, master = the leader.
        let slots = c.call(i, &["CLUSTER", "SLOTS"]).expect("slots");
        let ranges = slots.as_list().expect("array").to_vec();
        assert_eq!(ranges.len(), 1, "node {i}: {slots:?}");
        let r = ranges[0].as_list().expect("range").to_vec();
        assert_eq!(r[0], Value::Int(0));
        assert_eq!(r[1], Value::Int(16383));
        let master = r[2].as_list().expect("node").to_vec();
        assert_eq!(master[1], Value::Int(c.port(l) as i64));
        assert_eq!(master[2].as_bytes(), Some(leader_id.as_bytes()));
        // CLUSTER NODES: one line per node, the leader master with the slots.
        let nodes = text(c.call(i, &["CLUSTER", "NODES"]).expect("nodes"));
        assert_eq!(nodes.lines().count(), 3, "{nodes}");
        assert!(nodes.ends_with('\n'));
        let master_line = nodes
            .lines()
            .find(|l| l.starts_with(&leader_id))
            .expect("leader line");
        assert!(master_line.contains("master - "), "{master_line}");
        assert!(master_line.ends_with(" connected 0-16383"), "{master_line}");
        for line in nodes.lines().filter(|l| !l.starts_with(&leader_id)) {
            assert!(line.contains(&format!("slave {leader_id} ")), "{line}");
        }
        assert_eq!(
            nodes.lines().filter(|l| l.contains("myself,")).count(),
            1,
            "{nodes}"
        );
        let info = text(c.call(i, &["CLUSTER", "INFO"]).expect("info"));
        assert!(info.starts_with("cluster_state:ok\r\n"), "{info}");
        assert!(info.contains("cluster_known_nodes:3\r\n"), "{info}");
        let myid = c.call(i, &["CLUSTER", "MYID"]).expect("myid");
        assert_eq!(
            myid.as_bytes().map(|b| b.len()),
            Some(40),
            "CLUSTER MYID: {myid:?}"
        );
    }
}

#[test]
fn redis_py_cluster_client_follows_the_leader_across_a_failover() {
    if !tools::available("redis_py_raft", &["python3", "python3-redis"]) {
        return;
    }
    let mut c = Cluster::start(3).expect("cluster");
    let l = c.leader().expect("leader");
    let f = c.ids().into_iter().find(|&i| i != l).expect("follower");
    // Started from a follower: CLUSTER SLOTS sends it to the leader.
    py(&c, f, 3, "write");
    c.kill9(l).expect("kill leader");
    c.wait_leader_change(l, Duration::from_secs(10))
        .expect("new leader");
    let survivor = c.live().into_iter().next().expect("live node");
    py(&c, survivor, 2, "read");
}

#[test]
fn redis_cli_follows_moved_from_a_follower() {
    if !tools::available("redis_cli_raft", &["redis-cli"]) {
        return;
    }
    let c = Cluster::start(3).expect("cluster");
    let l = c.leader().expect("leader");
    let f = c.ids().into_iter().find(|&i| i != l).expect("follower");
    wait_state_ok(&c);
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args([
                "-c",
                "-h",
                &c.ip(f).to_string(),
                "-p",
                &c.port(f).to_string(),
            ])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "cli:k", "hello"]), "OK");
    assert_eq!(cli(&["GET", "cli:k"]), "hello");
    assert_eq!(cli(&["INCR", "cli:n"]), "1");
}
