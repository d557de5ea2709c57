//! MULTI EXEC DISCARD WATCH UNWATCH: one scenario byte-compared with redis-server (queued
//! replies, EXECABORT after a refused command, errors inside EXEC, WATCH invalidated by another
//! client's write and by expiry, RESP3), plus atomicity against a concurrent writer and
//! transactions on a Raft leader (one entry; reads after writes see them, byte-compared with
//! redis-server).

use redis_tests::cluster::Cluster;
use redis_tests::transcript::{assert_same_as_redis, Transcript};
use redis_tests::{show, tools, Builder, RawConn, Server};
use std::thread::sleep;
use std::time::Duration;

fn scenario(s: &Server) -> Transcript {
    let mut c1 = s.conn().expect("c1");
    let mut c2 = s.conn().expect("c2");
    let mut out = Vec::new();
    let mut log = |what: &str, r: Vec<u8>| out.push((what.to_string(), r));
    let call = |c: &mut RawConn, args: &[&str]| c.call(args).expect("call");
    for k in ["a", "k", "w", "e", "l", "h"] {
        log("del", call(&mut c1, &["DEL", k]));
    }
    for (what, args) in [
        ("multi", vec!["MULTI"]),
        ("set", vec!["SET", "a", "1"]),
        ("incr", vec!["INCR", "a"]),
        ("get", vec!["GET", "a"]),
        ("nested", vec!["MULTI"]),
        ("exec", vec!["EXEC"]),
        ("exec again", vec!["EXEC"]),
        ("discard none", vec!["DISCARD"]),
        ("multi 2", vec!["MULTI"]),
        ("set 2", vec!["SET", "k", "v"]),
        ("unknown", vec!["NOSUCHCMD", "x"]),
        ("arity", vec!["GET"]),
        ("execabort", vec!["EXEC"]),
        ("multi 3", vec!["MULTI"]),
        ("set 3", vec!["SET", "k", "text"]),
        ("incr text", vec!["INCR", "k"]),
        ("lpush wrong", vec!["LPUSH", "k", "x"]),
        ("exec errors inside", vec!["EXEC"]),
        ("multi 4", vec!["MULTI"]),
        ("set 4", vec!["SET", "k", "gone"]),
        ("discard", vec!["DISCARD"]),
        ("get after discard", vec!["GET", "k"]),
        ("multi 5", vec!["MULTI"]),
        ("watch inside", vec!["WATCH", "k"]),
        ("blpop inside", vec!["BLPOP", "l", "5"]),
        ("exec blpop", vec!["EXEC"]),
        ("exec empty", vec!["MULTI"]),
        ("exec empty 2", vec!["EXEC"]),
    ] {
        log(what, call(&mut c1, &args));
    }
    // WATCH broken by another client's write.
    log("watch", call(&mut c1, &["WATCH", "w"]));
    log("other write", call(&mut c2, &["SET", "w", "theirs"]));
    log("multi w", call(&mut c1, &["MULTI"]));
    log("set w", call(&mut c1, &["SET", "w", "mine"]));
    log("exec watched", call(&mut c1, &["EXEC"]));
    log("get w", call(&mut c1, &["GET", "w"]));
    // WATCH kept: nobody wrote.
    log("watch 2", call(&mut c1, &["WATCH", "w"]));
    log("multi w2", call(&mut c1, &["MULTI"]));
    log("set w2", call(&mut c1, &["SET", "w", "mine"]));
    log("exec ok", call(&mut c1, &["EXEC"]));
    // UNWATCH forgets.
    log("watch 3", call(&mut c1, &["WATCH", "w"]));
    log("other write 3", call(&mut c2, &["SET", "w", "x"]));
    log("unwatch", call(&mut c1, &["UNWATCH"]));
    log("multi w3", call(&mut c1, &["MULTI"]));
    log("get w3", call(&mut c1, &["GET", "w"]));
    log("exec unwatched", call(&mut c1, &["EXEC"]));
    // WATCH broken by expiry.
    log("set e", call(&mut c1, &["SET", "e", "v", "PX", "100"]));
    log("watch e", call(&mut c1, &["WATCH", "e"]));
    sleep(Duration::from_millis(250));
    log("multi e", call(&mut c1, &["MULTI"]));
    log("get e", call(&mut c1, &["GET", "e"]));
    log("exec expired", call(&mut c1, &["EXEC"]));
    // RESP3.
    log("hello", {
        let r = call(&mut c1, &["HELLO", "3"]);
        if r.starts_with(b"%") {
            b"map".to_vec()
        } else {
            r
        }
    });
    log("watch r3", call(&mut c1, &["WATCH", "w"]));
    log("other write r3", call(&mut c2, &["SET", "w", "y"]));
    log("multi r3", call(&mut c1, &["MULTI"]));
    log("get r3", call(&mut c1, &["GET", "w"]));
    log("exec aborted r3", call(&mut c1, &["EXEC"]));
    log("multi r3b", call(&mut c1, &["MULTI"]));
    log("hset r3b", call(&mut c1, &["HSET", "h", "f", "1"]));
    log("hgetall r3b", call(&mut c1, &["HGETALL", "h"]));
    log("exec r3b", call(&mut c1, &["EXEC"]));
    out
}

#[test]
fn same_bytes_as_redis() {
    assert_same_as_redis("transactions_same_bytes_as_redis", scenario);
}

#[test]
fn exec_is_not_interleaved_with_other_writers() {
    let s = Builder::pinnacle().start().expect("pinnacle");
    let port = s.port();
    // `n` exists before the first transaction (else its INCRBY n 0 creates it in between).
    s.conn()
        .expect("conn")
        .call(&["SET", "n", "0"])
        .expect("set");
    // A writer hammers INCR n while transactions read n twice: both reads must agree.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut c = RawConn::connect(port).expect("writer");
        while !st.load(std::sync::atomic::Ordering::Relaxed) {
            c.call(&["INCR", "n"]).expect("incr");
        }
    });
    let mut c = s.conn().expect("conn");
    for _ in 0..300 {
        c.call(&["MULTI"]).expect("multi");
        c.call(&["GET", "n"]).expect("get");
        c.call(&["INCRBY", "n", "0"]).expect("incrby");
        c.call(&["GET", "n"]).expect("get");
        let r = show(&c.call(&["EXEC"]).expect("exec"));
        let parts: Vec<&str> = r.split("\\r\\n").collect();
        // *3, $len, v1, :v2, $len, v3
        assert_eq!(parts[2], parts[5], "{r}");
        assert_eq!(parts[3], format!(":{}", parts[2]).as_str(), "{r}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
}

#[test]
fn raft_leader_applies_a_transaction_as_one_entry() {
    let c = Cluster::start(3).expect("cluster");
    // A leader can still lose an election right after start on a loaded machine: a refusal
    // while queueing (CLUSTERDOWN/MOVED, nothing applied) means start over on the new leader.
    let mut attempt = 0;
    let (l, mut conn, before) = loop {
        attempt += 1;
        let l = c.settled_leader().expect("leader");
        let mut conn = c.conn(l).expect("conn");
        let before = c.info(l).expect("info");
        conn.call(&["MULTI"]).expect("multi");
        let queued = show(&conn.call(&["SET", "{t}a", "1"]).expect("call"));
        if queued == "+QUEUED\\r\\n" {
            break (l, conn, before);
        }
        assert!(
            attempt < 5 && (queued.starts_with("-CLUSTERDOWN") || queued.starts_with("-MOVED")),
            "SET in MULTI: {queued}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    for (args, want) in [
        (vec!["INCR", "{t}a"], "+QUEUED\\r\\n"),
        (vec!["RPUSH", "{t}l", "x", "y"], "+QUEUED\\r\\n"),
        (vec!["EXEC"], "*3\\r\\n+OK\\r\\n:2\\r\\n:2\\r\\n"),
        (vec!["GET", "{t}a"], "$1\\r\\n2\\r\\n"),
    ] {
        assert_eq!(show(&conn.call(&args).expect("call")), want, "{args:?}");
    }
    let after = c.info(l).expect("info");
    let proposals = |i: &redis_tests::cluster::RaftInfo| -> u64 {
        i.fields
            .get("raft_proposals")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        proposals(&after) - proposals(&before),
        1,
        "one entry for the EXEC"
    );
    // WATCH on the leader: another client's committed write aborts the EXEC.
    let mut other = c.conn(l).expect("conn");
    conn.call(&["WATCH", "{t}a"]).expect("watch");
    other.call(&["SET", "{t}a", "9"]).expect("set");
    conn.call(&["MULTI"]).expect("multi");
    conn.call(&["INCR", "{t}a"]).expect("incr");
    assert_eq!(show(&conn.call(&["EXEC"]).expect("exec")), "*-1\\r\\n");
}

/// Transactions mixing reads and writes of one slot, in RESP2 and RESP3: each read sees the
/// transaction's earlier writes (and only those), as in Redis.
fn mixed_steps() -> Vec<Vec<&'static str>> {
    let mut steps: Vec<Vec<&'static str>> =
        vec![vec!["DEL", "{t}s", "{t}l", "{t}h", "{t}z", "{t}n"]];
    for proto in ["2", "3"] {
        steps.extend([
            vec!["HELLO", proto],
            vec!["MULTI"],
            vec!["GET", "{t}s"],
            vec!["SET", "{t}s", "5"],
            vec!["GET", "{t}s"],
            vec!["INCRBY", "{t}s", "10"],
            vec!["STRLEN", "{t}s"],
            vec!["RPUSH", "{t}l", "a", "b"],
            vec!["LRANGE", "{t}l", "0", "-1"],
            vec!["LPOP", "{t}l"],
            vec!["LRANGE", "{t}l", "0", "-1"],
            vec!["HSET", "{t}h", "f", "1", "g", "2"],
            vec!["HGETALL", "{t}h"],
            vec!["ZADD", "{t}z", "1", "x", "2.5", "y"],
            vec!["ZRANGE", "{t}z", "0", "-1", "WITHSCORES"],
            vec!["ZSCORE", "{t}z", "y"],
            vec!["EXISTS", "{t}s", "{t}l", "{t}n"],
            vec!["TYPE", "{t}h"],
            vec!["DEL", "{t}s", "{t}h"],
            vec!["EXISTS", "{t}s", "{t}h"],
            vec!["GET", "{t}s"],
            vec!["LPUSH", "{t}s", "wrong"],
            vec!["EXEC"],
            // Reads before any write, then a write: the same state as the writes leave.
            vec!["MULTI"],
            vec!["LLEN", "{t}l"],
            vec!["DEL", "{t}l", "{t}z"],
            vec!["LLEN", "{t}l"],
            vec!["ZCARD", "{t}z"],
            vec!["EXEC"],
        ]);
    }
    steps
}

fn run_steps(c: &mut RawConn) -> Transcript {
    mixed_steps()
        .into_iter()
        .map(|args| {
            let r = c.call(&args).expect("call");
            // HELLO's map names the server; only whether it answered matters.
            let r = if args[0] == "HELLO" && !r.starts_with(b"-") {
                b"hello".to_vec()
            } else {
                r
            };
            (args.join(" "), r)
        })
        .collect()
}

#[test]
fn raft_transaction_reads_see_its_writes_like_redis() {
    if !tools::available(
        "raft_transaction_reads_see_its_writes_like_redis",
        &["redis-server"],
    ) {
        return;
    }
    let theirs = Server::redis().expect("redis-server");
    let want = run_steps(&mut theirs.conn().expect("conn"));
    let c = Cluster::start(3).expect("cluster");
    // A refusal while queueing (a fresh leader, CLUSTERDOWN/MOVED: nothing applied) starts
    // the scenario over on the current leader.
    let mut attempt = 0;
    let got = loop {
        attempt += 1;
        let l = c.settled_leader().expect("leader");
        let got = run_steps(&mut c.conn(l).expect("conn"));
        let refused = got.iter().any(|(_, r)| {
            r.starts_with(b"-CLUSTERDOWN")
                || r.starts_with(b"-MOVED")
                || r.starts_with(b"-TRYAGAIN")
        });
        if !refused || attempt >= 5 {
            break got;
        }
        sleep(Duration::from_millis(500));
    };
    for ((what, x), (_, y)) in got.iter().zip(&want) {
        assert_eq!(show(x), show(y), "{what}: pinnacle (Raft leader) vs redis");
    }
    assert_eq!(got.len(), want.len());
}
