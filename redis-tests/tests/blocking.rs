//! Blocking pops (BLPOP BRPOP BLMOVE BRPOPLPUSH BLMPOP BZPOPMIN BZPOPMAX BZMPOP): the same
//! scenario against Pinnacle and a real redis-server must give the same bytes, including
//! wake-ups by another connection's write, timeouts in RESP2 and RESP3, and errors; plus
//! two clients blocked on one key each get one element, and a Raft leader wakes its blocked
//! clients when a write commits.

use redis_tests::cluster::Cluster;
use redis_tests::transcript::{assert_same_as_redis, Transcript};
use redis_tests::{show, Builder, RawConn, Server};
use std::thread::sleep;
use std::time::Duration;

/// Long enough for a sent command to have blocked on the server.
const SETTLE: Duration = Duration::from_millis(150);

fn scenario(s: &Server) -> Transcript {
    let mut c1 = s.conn().expect("c1");
    let mut c2 = s.conn().expect("c2");
    let mut out = Vec::new();
    let mut log = |what: &str, r: Vec<u8>| out.push((what.to_string(), r));
    let call = |c: &mut RawConn, args: &[&str]| c.call(args).expect("call");
    log(
        "del",
        call(
            &mut c1,
            &["DEL", "{t}q", "{t}q2", "{t}z", "{t}src", "{t}dst", "{t}s"],
        ),
    );
    // Timeouts.
    log(
        "blpop timeout",
        call(&mut c1, &["BLPOP", "{t}q", "{t}q2", "0.1"]),
    );
    log(
        "blmove timeout",
        call(
            &mut c1,
            &["BLMOVE", "{t}src", "{t}dst", "LEFT", "RIGHT", "0.1"],
        ),
    );
    log(
        "bzmpop timeout",
        call(&mut c1, &["BZMPOP", "0.1", "1", "{t}z", "MIN"]),
    );
    // Woken by another connection.
    c1.send_command(&["BLPOP", "{t}q", "{t}q2", "5"])
        .expect("send");
    sleep(SETTLE);
    log("rpush", call(&mut c2, &["RPUSH", "{t}q2", "a", "b"]));
    log("blpop woken", c1.read_reply().expect("reply"));
    log(
        "brpop ready",
        call(&mut c1, &["BRPOP", "{t}q", "{t}q2", "5"]),
    );
    c1.send_command(&["BZPOPMIN", "{t}z", "5"]).expect("send");
    sleep(SETTLE);
    log(
        "zadd",
        call(&mut c2, &["ZADD", "{t}z", "2", "b", "1", "a", "3", "c"]),
    );
    log("bzpopmin woken", c1.read_reply().expect("reply"));
    log("bzpopmax ready", call(&mut c1, &["BZPOPMAX", "{t}z", "5"]));
    log(
        "bzmpop ready",
        call(&mut c1, &["BZMPOP", "1", "1", "{t}z", "MIN", "COUNT", "5"]),
    );
    c1.send_command(&["BLMOVE", "{t}src", "{t}dst", "LEFT", "RIGHT", "5"])
        .expect("send");
    sleep(SETTLE);
    log("lpush", call(&mut c2, &["LPUSH", "{t}src", "x"]));
    log("blmove woken", c1.read_reply().expect("reply"));
    log(
        "brpoplpush ready",
        call(&mut c1, &["BRPOPLPUSH", "{t}dst", "{t}src", "1"]),
    );
    log("lrange", call(&mut c1, &["LRANGE", "{t}src", "0", "-1"]));
    c1.send_command(&["BLMPOP", "5", "2", "{t}q", "{t}q2", "RIGHT", "COUNT", "3"])
        .expect("send");
    sleep(SETTLE);
    log(
        "rpush 4",
        call(&mut c2, &["RPUSH", "{t}q", "1", "2", "3", "4"]),
    );
    log("blmpop woken", c1.read_reply().expect("reply"));
    // A pipeline behind a blocked command waits for it.
    c1.send(b"*3\r\n$5\r\nBLPOP\r\n$4\r\n{t}e\r\n$1\r\n5\r\n*2\r\n$4\r\nLLEN\r\n$4\r\n{t}e\r\n")
        .expect("send");
    sleep(SETTLE);
    log("rpush e", call(&mut c2, &["RPUSH", "{t}e", "only"]));
    log("pipelined blpop", c1.read_reply().expect("reply"));
    log("pipelined llen", c1.read_reply().expect("reply"));
    // Errors.
    log("set", call(&mut c1, &["SET", "{t}s", "x"]));
    log("wrongtype", call(&mut c1, &["BLPOP", "{t}s", "0"]));
    log("negative", call(&mut c1, &["BLPOP", "{t}q", "-1"]));
    log("not a float", call(&mut c1, &["BLPOP", "{t}q", "abc"]));
    log(
        "numkeys",
        call(&mut c1, &["BLMPOP", "0", "0", "{t}q", "LEFT"]),
    );
    log(
        "bad side",
        call(&mut c1, &["BLMOVE", "{t}a", "{t}b", "UP", "DOWN", "0"]),
    );
    log(
        "bad count",
        call(&mut c1, &["BZMPOP", "0", "1", "{t}z", "MIN", "COUNT", "0"]),
    );
    log("arity", call(&mut c1, &["BLPOP", "{t}q"]));
    // RESP3 timeout.
    log("hello", {
        let r = call(&mut c1, &["HELLO", "3"]);
        if r.starts_with(b"%") {
            b"map".to_vec()
        } else {
            r
        }
    });
    log(
        "blpop resp3 timeout",
        call(&mut c1, &["BLPOP", "{t}q", "0.1"]),
    );
    log(
        "blmove resp3 timeout",
        call(&mut c1, &["BLMOVE", "{t}q", "{t}r", "LEFT", "LEFT", "0.1"]),
    );
    log("zadd 3", call(&mut c2, &["ZADD", "{t}z", "1.5", "m"]));
    log("bzpopmin resp3", call(&mut c1, &["BZPOPMIN", "{t}z", "0"]));
    // XREAD BLOCK: `$` means entries added after the request arrived.
    log("hello 2", {
        let r = call(&mut c1, &["HELLO", "2"]);
        if r.starts_with(b"*") {
            b"array".to_vec()
        } else {
            r
        }
    });
    log(
        "xadd old",
        call(&mut c2, &["XADD", "{t}x", "1-1", "f", "old"]),
    );
    log(
        "xread timeout",
        call(&mut c1, &["XREAD", "BLOCK", "100", "STREAMS", "{t}x", "$"]),
    );
    c1.send_command(&[
        "XREAD", "COUNT", "5", "BLOCK", "5000", "STREAMS", "{t}x", "{t}y", "$", "0-0",
    ])
    .expect("send");
    sleep(SETTLE);
    log(
        "xadd new",
        call(&mut c2, &["XADD", "{t}x", "2-1", "f", "new"]),
    );
    log("xread woken", c1.read_reply().expect("reply"));
    log(
        "xread ready",
        call(&mut c1, &["XREAD", "BLOCK", "0", "STREAMS", "{t}x", "1-1"]),
    );
    log(
        "xread negative",
        call(&mut c1, &["XREAD", "BLOCK", "-1", "STREAMS", "{t}x", "$"]),
    );
    out
}

#[test]
fn same_bytes_as_redis() {
    assert_same_as_redis("blocking_same_bytes_as_redis", scenario);
}

#[test]
fn blocked_clients_are_served_in_arrival_order() {
    let s = Builder::pinnacle().start().expect("pinnacle");
    let mut c1 = s.conn().expect("c1");
    let mut c3 = s.conn().expect("c3");
    let mut c2 = s.conn().expect("c2");
    c1.send_command(&["BLPOP", "f", "5"]).expect("send");
    sleep(SETTLE);
    c3.send_command(&["BLPOP", "f", "5"]).expect("send");
    sleep(SETTLE);
    assert!(show(&c2.call(&["INFO", "clients"]).expect("info")).contains("blocked_clients:2"));
    // One element: the first to block gets it, the other keeps waiting.
    c2.call(&["RPUSH", "f", "one"]).expect("rpush");
    assert_eq!(
        show(&c1.read_reply().expect("c1")),
        "*2\\r\\n$1\\r\\nf\\r\\n$3\\r\\none\\r\\n"
    );
    c2.call(&["RPUSH", "f", "two"]).expect("rpush");
    assert_eq!(
        show(&c3.read_reply().expect("c3")),
        "*2\\r\\n$1\\r\\nf\\r\\n$3\\r\\ntwo\\r\\n"
    );
    // Two elements at once for two waiters: each gets one, in arrival order.
    c1.send_command(&["BLPOP", "f", "5"]).expect("send");
    sleep(SETTLE);
    c3.send_command(&["BLPOP", "f", "5"]).expect("send");
    sleep(SETTLE);
    c2.call(&["RPUSH", "f", "a", "b"]).expect("rpush");
    assert!(show(&c1.read_reply().expect("c1")).ends_with("$1\\r\\na\\r\\n"));
    assert!(show(&c3.read_reply().expect("c3")).ends_with("$1\\r\\nb\\r\\n"));
    assert_eq!(show(&c2.call(&["LLEN", "f"]).expect("llen")), ":0\\r\\n");
}

#[test]
fn raft_leader_wakes_blocked_clients_and_followers_redirect() {
    let c = Cluster::start(3).expect("cluster");
    let l = c.settled_leader().expect("leader");
    let f = c.ids().into_iter().find(|&i| i != l).expect("follower");
    let mut waiter = c.conn(l).expect("conn");
    let mut pusher = c.conn(l).expect("conn");
    waiter.send_command(&["BLPOP", "jobs", "5"]).expect("send");
    sleep(SETTLE);
    assert_eq!(
        show(&pusher.call(&["RPUSH", "jobs", "j1"]).expect("rpush")),
        ":1\\r\\n"
    );
    assert_eq!(
        show(&waiter.read_reply().expect("woken")),
        "*2\\r\\n$4\\r\\njobs\\r\\n$2\\r\\nj1\\r\\n"
    );
    assert_eq!(
        show(&waiter.call(&["BLPOP", "jobs", "0.1"]).expect("timeout")),
        "*-1\\r\\n"
    );
    let moved = show(
        &c.conn(f)
            .expect("conn")
            .call(&["BLPOP", "jobs", "1"])
            .expect("moved"),
    );
    assert!(moved.starts_with("-MOVED "), "{moved}");
}
