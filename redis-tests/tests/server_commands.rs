//! Connection, server and cluster commands: exact reply bytes against a cluster-mode
//! redis-server 7.0.15 (RESP2 and RESP3) for deterministic ones, and the documented reply shapes
//! (redis-wire.md §3, §7) for the ones that carry ids, times or versions.

use std::time::{SystemTime, UNIX_EPOCH};

use redis_tests::frame::{parse_one, Value};
use redis_tests::{show, Builder, RawConn, Server};

/// Commands whose replies must match Redis byte for byte, run in order on a fresh server.
fn exact_script() -> Vec<Vec<&'static str>> {
    let s = |x: &'static str| x.split(' ').collect::<Vec<_>>();
    vec![
        s("PING"),
        s("PING hello"),
        s("PING a b"),
        s("ECHO"),
        vec!["ECHO", "hello world"],
        s("SELECT 0"),
        s("SELECT 1"),
        s("SELECT abc"),
        s("CLIENT"),
        s("CLIENT NOSUCH"),
        s("CLIENT SETNAME"),
        vec!["CLIENT", "SETNAME", "a b"],
        s("CLIENT GETNAME"),
        s("CLIENT SETNAME worker-1"),
        s("CLIENT GETNAME"),
        s("CLIENT REPLY ON"),
        s("CLIENT NO-EVICT on"),
        s("CLIENT NO-EVICT maybe"),
        s("CONFIG GET nosuch"),
        s("CONFIG SET nosuch 1"),
        s("CONFIG GET maxclients"),
        s("CONFIG SET list-max-ziplist-size -2"),
        s("CONFIG GET list-max-ziplist-size"),
        s("COMMAND GETKEYS MSET a b c d"),
        s("COMMAND GETKEYS SET k v EX 10"),
        s("COMMAND GETKEYS GET"),
        s("COMMAND GETKEYS NOSUCH x"),
        s("READONLY"),
        s("READWRITE"),
        s("ASKING"),
        s("CLUSTER KEYSLOT"),
        s("CLUSTER KEYSLOT foo"),
        s("CLUSTER KEYSLOT somekey"),
        s("CLUSTER KEYSLOT foo{hash_tag}"),
        s("CLUSTER KEYSLOT foo{}{bar}"),
        s("CLUSTER KEYSLOT foo{{bar}}zap"),
        s("CLUSTER KEYSLOT {a}"),
        vec!["CLUSTER", "KEYSLOT", ""],
        s("CLUSTER NOSUCH"),
        s("CLUSTER MYID x"),
        s("CLUSTER COUNTKEYSINSLOT 12182"),
        s("SET foo 1"),
        s("CLUSTER COUNTKEYSINSLOT 12182"),
        s("CLUSTER COUNTKEYSINSLOT 16384"),
        s("CLUSTER COUNTKEYSINSLOT -1"),
        s("CLUSTER COUNTKEYSINSLOT abc"),
        s("CLUSTER GETKEYSINSLOT 12182 10"),
        s("CLUSTER GETKEYSINSLOT 12182 -1"),
        s("CLUSTER GETKEYSINSLOT 0 10"),
        s("DBSIZE"),
        s("DBSIZE x"),
        s("TIME x"),
        s("MEMORY USAGE nokey"),
        s("LATENCY LATEST"),
        s("FUNCTION FLUSH"),
        s("OBJECT HELP"),
        s("HELLO 4"),
        s("HELLO abc"),
        s("HELLO 2 FOO"),
        s("FLUSHALL x"),
        s("FLUSHALL ASYNC"),
        s("SET foo 1"),
        s("FLUSHALL SYNC"),
        s("FLUSHDB"),
        s("DBSIZE"),
        s("RESET"),
        s("CLIENT GETNAME"),
    ]
}

fn exact(protocol: u8) {
    let subject = Server::subject().expect("start server under test");
    let reference = Builder::redis_cluster()
        .start()
        .expect("start redis-server");
    let mut a = subject.conn().expect("connect");
    let mut b = reference.conn().expect("connect");
    if protocol == 3 {
        a.call(&["HELLO", "3"]).expect("HELLO 3");
        b.call(&["HELLO", "3"]).expect("HELLO 3");
    }
    let mut failures = Vec::new();
    for cmd in exact_script() {
        let ra = a.call(&cmd).expect("subject reply");
        let rb = b.call(&cmd).expect("redis reply");
        if ra != rb {
            failures.push(format!(
                "{cmd:?}\n  {}: {}\n  redis-server: {}",
                subject.kind().name(),
                show(&ra),
                show(&rb)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences (RESP{protocol}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn exact_replies_resp2() {
    if !redis_tests::tools::available("exact_replies_resp2", &["redis-server"]) {
        return;
    }
    exact(2);
}

#[test]
fn exact_replies_resp3() {
    if !redis_tests::tools::available("exact_replies_resp3", &["redis-server"]) {
        return;
    }
    exact(3);
}

fn text(v: &Value) -> String {
    match v {
        Value::Bulk(b) | Value::Simple(b) => String::from_utf8_lossy(b).into_owned(),
        // RESP3 verbatim strings carry a `txt:` prefix.
        Value::Verbatim(b) => String::from_utf8_lossy(b.get(4..).unwrap_or_default()).into_owned(),
        other => panic!("expected a string, got {other:?}"),
    }
}

fn map_of(v: &Value) -> Vec<(String, Value)> {
    match v {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), v.clone())).collect(),
        Value::Array(items) => items
            .chunks(2)
            .map(|p| (text(&p[0]), p[1].clone()))
            .collect(),
        other => panic!("expected a map, got {other:?}"),
    }
}

fn is_node_id(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

fn shapes(server: &Server, protocol: u8) {
    let name = server.kind().name();
    let mut c: RawConn = server.conn().expect("connect");
    let hello = c
        .call_value(&["HELLO", &protocol.to_string()])
        .expect("HELLO");
    let hello = map_of(&hello);
    let keys: Vec<&str> = hello.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["server", "version", "proto", "id", "mode", "role", "modules"],
        "[{name}]"
    );
    assert_eq!(text(&hello[0].1), "redis", "[{name}]");
    assert_eq!(
        hello[2].1,
        Value::Int(protocol.into()),
        "[{name}] proto is an integer"
    );
    assert!(matches!(hello[3].1, Value::Int(_)), "[{name}] id");
    assert_eq!(text(&hello[4].1), "cluster", "[{name}]");
    assert_eq!(text(&hello[5].1), "master", "[{name}]");
    assert_eq!(hello[6].1, Value::Array(vec![]), "[{name}] modules");

    let myid = text(&c.call_value(&["CLUSTER", "MYID"]).expect("MYID"));
    assert!(is_node_id(&myid), "[{name}] CLUSTER MYID {myid}");

    // CLUSTER SLOTS: one range covering every slot, served by this node.
    let slots = c.call_value(&["CLUSTER", "SLOTS"]).expect("SLOTS");
    let ranges = slots.as_list().expect("SLOTS array");
    assert_eq!(ranges.len(), 1, "[{name}] {slots:?}");
    let r = ranges[0].as_list().expect("range");
    assert_eq!(&r[..2], &[Value::Int(0), Value::Int(16383)], "[{name}]");
    let node = r[2].as_list().expect("node");
    assert_eq!(text(&node[0]), "127.0.0.1", "[{name}]");
    assert_eq!(node[1], Value::Int(server.port().into()), "[{name}]");
    assert_eq!(text(&node[2]), myid, "[{name}] SLOTS id = MYID");

    // CLUSTER NODES: the myself line, newline-terminated, with every slot.
    let nodes = text(&c.call_value(&["CLUSTER", "NODES"]).expect("NODES"));
    assert!(
        nodes.ends_with('\n'),
        "[{name}] NODES must end with \\n: {nodes:?}"
    );
    let line = nodes.lines().next().unwrap_or_default();
    let f: Vec<&str> = line.split(' ').collect();
    assert!(f.len() >= 9, "[{name}] {line}");
    assert_eq!(f[0], myid, "[{name}]");
    assert!(
        f[1].starts_with(&format!("127.0.0.1:{}@", server.port())),
        "[{name}] {line}"
    );
    assert_eq!(f[2], "myself,master", "[{name}]");
    assert_eq!(f[3], "-", "[{name}]");
    assert_eq!(f[7], "connected", "[{name}]");
    assert_eq!(f[8..], ["0-16383"], "[{name}]");

    let info = text(&c.call_value(&["CLUSTER", "INFO"]).expect("CLUSTER INFO"));
    for field in [
        "cluster_state:ok",
        "cluster_slots_assigned:16384",
        "cluster_slots_ok:16384",
        "cluster_known_nodes:1",
        "cluster_size:1",
    ] {
        assert!(
            info.contains(&format!("{field}\r\n")),
            "[{name}] CLUSTER INFO lacks {field}: {info}"
        );
    }

    assert_eq!(c.call(&["SET", "k", "v"]).expect("SET"), b"+OK\r\n");
    let info = text(&c.call_value(&["INFO"]).expect("INFO"));
    for needle in [
        "# Server\r\n",
        "redis_version:",
        "# Clients\r\n",
        "# Memory\r\n",
        "# Persistence\r\n",
        "# Stats\r\n",
        "# Replication\r\n",
        "# CPU\r\n",
        "# Cluster\r\ncluster_enabled:1\r\n",
        "# Keyspace\r\ndb0:keys=1,",
    ] {
        assert!(info.contains(needle), "[{name}] INFO lacks {needle:?}");
    }
    let server_only = text(&c.call_value(&["INFO", "server"]).expect("INFO server"));
    assert!(
        server_only.starts_with("# Server\r\n") && !server_only.contains("# Keyspace"),
        "[{name}] INFO server"
    );

    let id = match c.call_value(&["CLIENT", "ID"]).expect("CLIENT ID") {
        Value::Int(i) => i,
        other => panic!("[{name}] CLIENT ID {other:?}"),
    };
    let me = text(&c.call_value(&["CLIENT", "INFO"]).expect("CLIENT INFO"));
    assert!(
        me.starts_with(&format!("id={id} addr=127.0.0.1:")),
        "[{name}] CLIENT INFO {me}"
    );
    let list = text(&c.call_value(&["CLIENT", "LIST"]).expect("CLIENT LIST"));
    assert!(
        list.lines().any(|l| l.starts_with(&format!("id={id} "))),
        "[{name}] CLIENT LIST {list}"
    );

    for param in ["save", "appendonly"] {
        let v = c.call_value(&["CONFIG", "GET", param]).expect("CONFIG GET");
        let m = map_of(&v);
        assert_eq!(m.len(), 1, "[{name}] CONFIG GET {param}: {v:?}");
        assert_eq!(m[0].0, param, "[{name}]");
        let _ = text(&m[0].1);
    }

    let t = c.call_value(&["TIME"]).expect("TIME");
    let parts = t.as_list().expect("TIME array");
    assert_eq!(parts.len(), 2, "[{name}]");
    let secs: u64 = text(&parts[0]).parse().expect("TIME seconds");
    let usecs: u64 = text(&parts[1]).parse().expect("TIME micros");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    assert!(
        secs.abs_diff(now) <= 5 && usecs < 1_000_000,
        "[{name}] TIME {secs} {usecs}"
    );

    let raw = c.call(&["COMMAND", "DOCS", "get"]).expect("COMMAND DOCS");
    let docs = parse_one(&raw).expect("COMMAND DOCS parses");
    assert!(
        matches!(docs, Value::Array(_) | Value::Map(_)),
        "[{name}] COMMAND DOCS must be an array or map: {}",
        show(&raw)
    );
}

#[test]
fn reply_shapes() {
    if !redis_tests::tools::available("reply_shapes", &["redis-server"]) {
        return;
    }
    let subject = Server::subject().expect("start server under test");
    let reference = Builder::redis_cluster()
        .start()
        .expect("start redis-server");
    for protocol in [2, 3] {
        shapes(&reference, protocol);
        shapes(&subject, protocol);
    }
}
