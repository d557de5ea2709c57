//! `CLUSTER MEET` behind `requirepass` (and a cluster secret on the bus): a node that does not
//! lead the metadata group forwards the MEET to the leader over the cluster bus, and the
//! leader learns the new node's id over the bus too, so neither needs a client password.
//! MEET is sent to every node in turn (at least two of them are metadata followers, so at
//! least one MEET is forwarded); each answers OK (MEET of a member is a no-op, as in Redis),
//! and node 4 becomes a member everywhere.

use redis_tests::cluster::Cluster;
use redis_tests::raw::RawConn;
use redis_tests::tools::wait_until;
use redis_tests::{Builder, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const PASS: &str = "s3cret-pw";

fn text(v: &Value) -> String {
    match v {
        Value::Bulk(b) | Value::Verbatim(b) | Value::Simple(b) | Value::Error(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        other => format!("{other:?}"),
    }
}

/// `args` at `at` on a connection authenticated with [`PASS`].
fn call(at: SocketAddr, args: &[&str]) -> Result<Value, String> {
    let mut c = RawConn::connect_addr(at, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    match c.call_value(&["AUTH", PASS]).map_err(|e| e.to_string())? {
        Value::Simple(ok) if ok.as_slice() == b"OK" => {}
        other => return Err(format!("AUTH: {other:?}")),
    }
    c.call_value(args).map_err(|e| e.to_string())
}

/// The metadata group's members in `INFO replication` at `at`.
fn meta_members(at: SocketAddr) -> Vec<String> {
    call(at, &["INFO", "replication"])
        .map(|v| text(&v))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("raft_meta_members:"))
        .map(|m| m.trim().split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

#[test]
fn meet_sent_to_metadata_followers_works_behind_requirepass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "meet behind a password\n").expect("write secret");
    let secret = secret.display().to_string();
    let c = Cluster::builder(3)
        .shards(2)
        .args(["--requirepass", PASS, "--cluster-secret-file", &secret])
        .start()
        .expect("cluster");
    let addrs = c.addrs();
    // Unauthenticated clients are refused: the password is really required.
    let noauth = c
        .call(1, &["CLUSTER", "MEET", "127.0.0.1", "1"])
        .expect("call");
    assert!(text(&noauth).starts_with("NOAUTH"), "{noauth:?}");

    let (n4, port, bus) = Builder::pinnacle_joining(4, 2).expect("port");
    let _n4 = n4
        .requirepass(PASS)
        .args(["--cluster-secret-file", &secret])
        .start()
        .expect("node 4");
    let meet = [
        "CLUSTER",
        "MEET",
        "127.0.0.1",
        &port.to_string(),
        &bus.to_string(),
    ];
    for (i, at) in addrs.iter().enumerate() {
        // An election may be running right after start: retry what says "try again".
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = call(*at, &meet);
            match &r {
                Ok(Value::Simple(ok)) if ok.as_slice() == b"OK" => break,
                Ok(Value::Error(e))
                    if String::from_utf8_lossy(e).contains("try again")
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => panic!("CLUSTER MEET via node {}: {other:?}", i + 1),
            }
        }
    }
    let forwarded = c
        .ids()
        .into_iter()
        .any(|i| c.log_since_start(i).contains("forwarded by node"));
    assert!(forwarded, "no MEET was forwarded to the metadata leader");

    let at4: SocketAddr = ([127, 0, 0, 1], port).into();
    let all: Vec<SocketAddr> = addrs.iter().copied().chain([at4]).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: Vec<Vec<String>> = all.iter().map(|a| meta_members(*a)).collect();
        if seen
            .iter()
            .all(|m| m.len() == 4 && m.iter().any(|id| id == "4"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 4 is not a member everywhere: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The cluster still serves authenticated writes. It may be a fraction of a second old
    // here (the MEETs above can all succeed at once), so a shard may still be electing its
    // leader: CLUSTERDOWN is then Redis's answer, and the write is retried.
    let mut set = Value::Null;
    wait_until(
        "a SET not refused with CLUSTERDOWN",
        Duration::from_secs(30),
        || {
            set = call(addrs[0], &["SET", "{a}k", "v"]).expect("SET");
            (!text(&set).starts_with("CLUSTERDOWN"), set.clone())
        },
    );
    assert!(
        matches!(&set, Value::Simple(_)) || text(&set).starts_with("MOVED"),
        "{set:?}"
    );
}
