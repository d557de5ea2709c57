//! Stream consumer groups over the wire: XREADGROUP BLOCK (timeouts in RESP2 and RESP3,
//! woken by another connection's XADD, two blocked consumers served in arrival order, NOACK,
//! history reads never block) gives the same bytes as a real redis-server; and on a Raft
//! cluster the leader applies group writes (PEL, consumers) and wakes blocked readers.

use redis_tests::cluster::Cluster;
use redis_tests::transcript::{assert_same_as_redis, Transcript};
use redis_tests::{show, RawConn, Server};
use std::thread::sleep;
use std::time::Duration;

/// Long enough for a sent command to have blocked on the server.
const SETTLE: Duration = Duration::from_millis(150);

fn scenario(s: &Server) -> Transcript {
    let mut c1 = s.conn().expect("c1");
    let mut c2 = s.conn().expect("c2");
    let mut c3 = s.conn().expect("c3");
    let mut out = Vec::new();
    let mut log = |what: &str, r: Vec<u8>| out.push((what.to_string(), r));
    let call = |c: &mut RawConn, args: &[&str]| c.call(args).expect("call");
    log("del", call(&mut c1, &["DEL", "{s}x", "{s}y"]));
    log(
        "create",
        call(&mut c1, &["XGROUP", "CREATE", "{s}x", "g", "$", "MKSTREAM"]),
    );
    log(
        "create y",
        call(&mut c1, &["XGROUP", "CREATE", "{s}y", "g", "0", "MKSTREAM"]),
    );
    log(
        "timeout",
        call(
            &mut c1,
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "c1",
                "BLOCK",
                "100",
                "STREAMS",
                "{s}x",
                ">",
            ],
        ),
    );
    // No consumer is created by a read that found nothing.
    log(
        "consumers",
        call(&mut c2, &["XINFO", "CONSUMERS", "{s}x", "g"]),
    );
    // Woken by another connection's XADD; two waiters get one entry each, in order.
    c1.send_command(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c1",
        "COUNT",
        "1",
        "BLOCK",
        "5000",
        "STREAMS",
        "{s}x",
        "{s}y",
        ">",
        ">",
    ])
    .expect("send");
    sleep(SETTLE);
    c3.send_command(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c3",
        "COUNT",
        "1",
        "BLOCK",
        "5000",
        "STREAMS",
        "{s}x",
        ">",
    ])
    .expect("send");
    sleep(SETTLE);
    log(
        "xadd 1",
        call(&mut c2, &["XADD", "{s}x", "1-1", "f", "one"]),
    );
    log("c1 woken", c1.read_reply().expect("reply"));
    log(
        "xadd 2",
        call(&mut c2, &["XADD", "{s}x", "2-1", "f", "two"]),
    );
    log("c3 woken", c3.read_reply().expect("reply"));
    log("pending", call(&mut c2, &["XPENDING", "{s}x", "g"]));
    // History reads answer at once, even with BLOCK.
    log(
        "history",
        call(
            &mut c1,
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "c1",
                "BLOCK",
                "0",
                "STREAMS",
                "{s}x",
                "0",
            ],
        ),
    );
    // NOACK: delivered, not pending.
    c1.send_command(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c1",
        "NOACK",
        "BLOCK",
        "5000",
        "STREAMS",
        "{s}x",
        ">",
    ])
    .expect("send");
    sleep(SETTLE);
    log(
        "xadd 3",
        call(&mut c2, &["XADD", "{s}x", "3-1", "f", "three"]),
    );
    log("noack woken", c1.read_reply().expect("reply"));
    log("pending 2", call(&mut c2, &["XPENDING", "{s}x", "g"]));
    log(
        "ack",
        call(&mut c2, &["XACK", "{s}x", "g", "1-1", "2-1", "3-1"]),
    );
    // RESP3: the reply is a map, the timeout a null.
    log("hello 3", {
        let r = call(&mut c1, &["HELLO", "3"]);
        if r.starts_with(b"%") {
            b"map".to_vec()
        } else {
            r
        }
    });
    log(
        "resp3 timeout",
        call(
            &mut c1,
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "c1",
                "BLOCK",
                "100",
                "STREAMS",
                "{s}x",
                ">",
            ],
        ),
    );
    c1.send_command(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c1",
        "BLOCK",
        "5000",
        "STREAMS",
        "{s}x",
        ">",
    ])
    .expect("send");
    sleep(SETTLE);
    log(
        "xadd 4",
        call(&mut c2, &["XADD", "{s}x", "4-1", "f", "four"]),
    );
    log("resp3 woken", c1.read_reply().expect("reply"));
    log(
        "bad block",
        call(
            &mut c1,
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "c1",
                "BLOCK",
                "-1",
                "STREAMS",
                "{s}x",
                ">",
            ],
        ),
    );
    // A blocked reader is released when its group or its stream goes away.
    c1.send_command(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c1",
        "BLOCK",
        "5000",
        "STREAMS",
        "{s}x",
        ">",
    ])
    .expect("send");
    sleep(SETTLE);
    log(
        "destroy",
        call(&mut c2, &["XGROUP", "DESTROY", "{s}x", "g"]),
    );
    log("group gone", c1.read_reply().expect("reply"));
    log(
        "create again",
        call(&mut c2, &["XGROUP", "CREATE", "{s}x", "g", "$"]),
    );
    c1.send_command(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c1",
        "BLOCK",
        "5000",
        "STREAMS",
        "{s}x",
        ">",
    ])
    .expect("send");
    sleep(SETTLE);
    log("del", call(&mut c2, &["DEL", "{s}x"]));
    log("key gone", c1.read_reply().expect("reply"));
    log(
        "nogroup",
        call(
            &mut c1,
            &[
                "XREADGROUP",
                "GROUP",
                "nope",
                "c1",
                "BLOCK",
                "10",
                "STREAMS",
                "{s}x",
                ">",
            ],
        ),
    );
    out
}

#[test]
fn xreadgroup_block_same_bytes_as_redis() {
    assert_same_as_redis("xreadgroup_block_same_bytes_as_redis", scenario);
}

#[test]
fn raft_leader_applies_group_writes_and_wakes_readers() {
    let c = Cluster::start(3).expect("cluster");
    let l = c.settled_leader().expect("leader");
    let mut a = c.conn(l).expect("conn");
    let mut b = c.conn(l).expect("conn");
    let call = |c: &mut RawConn, args: &[&str]| show(&c.call(args).expect("call"));
    assert_eq!(
        call(&mut a, &["XGROUP", "CREATE", "jobs", "g", "$", "MKSTREAM"]),
        "+OK\\r\\n"
    );
    a.send_command(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "w1",
        "BLOCK",
        "5000",
        "STREAMS",
        "jobs",
        ">",
    ])
    .expect("send");
    sleep(SETTLE);
    assert_eq!(
        call(&mut b, &["XADD", "jobs", "1-1", "task", "t1"]),
        "$3\\r\\n1-1\\r\\n"
    );
    assert_eq!(
        show(&a.read_reply().expect("woken")),
        "*1\\r\\n*2\\r\\n$4\\r\\njobs\\r\\n*1\\r\\n*2\\r\\n$3\\r\\n1-1\\r\\n*2\\r\\n$4\\r\\ntask\\r\\n$2\\r\\nt1\\r\\n"
    );
    assert_eq!(
        call(&mut b, &["XPENDING", "jobs", "g"]),
        "*4\\r\\n:1\\r\\n$3\\r\\n1-1\\r\\n$3\\r\\n1-1\\r\\n*1\\r\\n*2\\r\\n$2\\r\\nw1\\r\\n$1\\r\\n1\\r\\n"
    );
    // Claimed by another consumer, then acknowledged: the PEL empties.
    assert_eq!(
        call(
            &mut b,
            &["XAUTOCLAIM", "jobs", "g", "w2", "0", "0", "JUSTID"]
        ),
        "*3\\r\\n$3\\r\\n0-0\\r\\n*1\\r\\n$3\\r\\n1-1\\r\\n*0\\r\\n"
    );
    assert_eq!(call(&mut b, &["XACK", "jobs", "g", "1-1"]), ":1\\r\\n");
    let groups = call(&mut b, &["XINFO", "GROUPS", "jobs"]);
    assert!(
        groups.contains("$9\\r\\nconsumers\\r\\n:2\\r\\n$7\\r\\npending\\r\\n:0\\r\\n"),
        "{groups}"
    );
    // Pipelined: each command sees the writes queued before it (one batch, one entry).
    for cmd in [
        &["XADD", "p", "1-1", "f", "v"][..],
        &["XGROUP", "CREATE", "p", "g", "0"],
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "p", ">"],
        &["XACK", "p", "g", "1-1"],
        &["XDEL", "p", "1-1"],
    ] {
        b.send_command(cmd).expect("send");
    }
    let replies: Vec<String> = (0..5)
        .map(|_| show(&b.read_reply().expect("reply")))
        .collect();
    assert_eq!(
        replies,
        [
            "$3\\r\\n1-1\\r\\n",
            "+OK\\r\\n",
            "*1\\r\\n*2\\r\\n$1\\r\\np\\r\\n*1\\r\\n*2\\r\\n$3\\r\\n1-1\\r\\n*2\\r\\n$1\\r\\nf\\r\\n$1\\r\\nv\\r\\n",
            ":1\\r\\n",
            ":1\\r\\n",
        ]
    );
    // A follower redirects the write.
    let f = c.ids().into_iter().find(|&i| i != l).expect("follower");
    let moved = call(
        &mut c.conn(f).expect("conn"),
        &["XREADGROUP", "GROUP", "g", "w1", "STREAMS", "jobs", ">"],
    );
    assert!(moved.starts_with("-MOVED "), "{moved}");
}
