//! Limits under hostile clients (reliability.md §6.3, T4): with a password set, 200 loopback
//! connections that send partial pre-auth frames (`*10` headers, 16 KiB bulks that never
//! complete) or flood unauthenticated requests without ever reading the replies. Meanwhile a
//! benign authenticated client PINGs. Pass: server RSS grows ≤ 64 MiB and the benign PING p99
//! stays ≤ 50 ms.
//!
//! `HOSTILE_SECS` sets the duration of the tests (defaults: the plan's 30 s for the latency
//! tests, which also check RSS; 10 s for the memory-only test).
//!
//! The pub/sub flood (`slow_subscribers_under_publish_flood`): 200 authenticated subscribers,
//! each on its own channel, never read while a publisher floods every channel. The output
//! buffer limit is per client (Redis's `client-output-buffer-limit pubsub 32mb 8mb 60`), so at
//! the default 200 such clients may hold 6.4 GB in redis-server (it bounds the total only with
//! `maxmemory-clients`, off by default) and, with one channel per subscriber (no message shared
//! between queues), in Pinnacle too: no server meets "RSS growth ≤ 64 MiB" at the default. The
//! test therefore sets the limit an operator facing untrusted subscribers would, `pubsub 64kb
//! 32kb 10` ([`PUBSUB_LIMIT`] says why that size), and checks that the limit really bounds
//! memory: RSS, the benign PING p99, and that the server disconnected subscribers (which the
//! hostile side keeps replacing, so the pressure lasts the whole run). `HOSTILE_PUBSUB_LIMIT`
//! and `HOSTILE_PUBSUB_PAYLOAD` override the limit and the message size.

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use redis_tests::frame::Value;
use redis_tests::{Builder, RawConn, Server};

const HOSTILE: usize = 200;
const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;

fn hostile_payload(i: usize) -> Vec<u8> {
    match i % 4 {
        // A complete-looking header and a bulk that never completes.
        0 => {
            let mut v = b"*10\r\n$16384\r\n".to_vec();
            v.extend(std::iter::repeat_n(b'x', 16_000));
            v
        }
        // Just the array header, then silence.
        1 => b"*10\r\n".to_vec(),
        // Unauthenticated requests whose error replies are never read (CVE-2025-21605 shape).
        _ => b"PING\r\n".repeat(10_000),
    }
}

/// One PING of the benign client and its latency. A generous timeout: starvation shows in
/// the latency numbers, not as a harness error.
fn benign_ping(benign: &mut RawConn, name: &str) -> Duration {
    let t = Instant::now();
    benign.send_command(&["PING"]).expect("send benign PING");
    let r = benign
        .read_reply_timeout(Duration::from_secs(60))
        .expect("benign PING");
    let took = t.elapsed();
    assert_eq!(r, b"+PONG\r\n", "[{name}]");
    took
}

fn run(server: &Server, p99_limit: Duration, default_secs: u64) {
    let name = server.kind().name();
    let secs = std::env::var("HOSTILE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_secs);
    let mut benign = server.conn().expect("connect benign");
    assert_eq!(benign.call(&["AUTH", "secret"]).expect("AUTH"), b"+OK\r\n");
    let base_rss = server.rss_kib().expect("rss");

    let mut conns: Vec<(TcpStream, Vec<u8>, bool)> = Vec::new();
    for i in 0..HOSTILE {
        let s = TcpStream::connect(("127.0.0.1", server.port())).expect("hostile connect");
        s.set_nonblocking(true).expect("nonblocking");
        conns.push((s, hostile_payload(i), i % 4 >= 2));
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut latencies = Vec::new();
    let mut max_rss = base_rss;
    let mut first_round = true;
    while Instant::now() < deadline {
        // Feed the hostile clients: partial-frame clients once, flooders as much as the socket takes.
        for (s, payload, flood) in conns.iter_mut() {
            if first_round || *flood {
                match s.write(payload) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => {} // closed by the server: allowed
                }
            }
        }
        first_round = false;
        latencies.push(benign_ping(&mut benign, name));
        max_rss = max_rss.max(server.rss_kib().expect("rss"));
        std::thread::sleep(Duration::from_millis(10));
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "[{name}] {} benign PINGs, p50 {:?}, p99 {p99:?}; RSS {base_rss} KiB -> max {max_rss} KiB",
        latencies.len(),
        latencies[latencies.len() / 2]
    );
    assert!(
        p99 <= p99_limit,
        "[{name}] benign PING p99 {p99:?} > {p99_limit:?}"
    );
    assert!(
        max_rss.saturating_sub(base_rss) <= RSS_GROWTH_LIMIT_KIB,
        "[{name}] RSS grew {} KiB (> 64 MiB)",
        max_rss - base_rss
    );
}

/// Memory stays bounded and every benign PING is answered (within 60 s); the latency bar is the
/// separate test below.
#[test]
fn hostile_clients_bounded_memory() {
    let server = Builder::subject()
        .requirepass("secret")
        .start()
        .expect("start server");
    run(&server, Duration::MAX, 10);
}

/// The plan's latency bar: benign PING p99 ≤ 50 ms (release build).
#[test]
fn hostile_clients_benign_p99_50ms() {
    let server = Builder::subject()
        .requirepass("secret")
        .start()
        .expect("start server");
    run(&server, Duration::from_millis(50), 30);
}

/// The per-subscriber output buffer limit of the pub/sub flood (see the module comment). A
/// subscriber costs more than its counted queue (allocation size classes, the connection's
/// 64 KiB write buffer, jemalloc's delayed page return, and the hostile side replaces dropped
/// subscribers): with 4 KiB messages for 30 s, 200 of them grew RSS by 52–58 MiB in Pinnacle
/// and 64 MiB in redis-server 7.0.15 at `pubsub 128kb` (256kb, 15 s: 97 and 76 MiB), and by 30
/// and 32–35 MiB at 64kb. So 64 KiB, which leaves both servers a margin under the 64 MiB bound.
const PUBSUB_LIMIT: &str = "pubsub 64kb 32kb 10";
/// Bytes per published message, and messages per pipelined batch.
const PUBLISH_PAYLOAD: usize = 4096;
const PUBLISH_BATCH: usize = 64;

fn pubsub_limit() -> String {
    std::env::var("HOSTILE_PUBSUB_LIMIT").unwrap_or_else(|_| PUBSUB_LIMIT.to_string())
}

fn publish_payload() -> usize {
    std::env::var("HOSTILE_PUBSUB_PAYLOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PUBLISH_PAYLOAD)
}

/// `AUTH secret` + `SUBSCRIBE ch<i>` on a fresh connection that will never read.
fn slow_subscriber(port: u16, i: usize) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("subscriber connect");
    let ch = format!("ch{i}");
    let req = format!(
        "*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{ch}\r\n",
        ch.len()
    );
    s.write_all(req.as_bytes()).expect("subscribe");
    s
}

/// Floods PUBLISH to `ch0..ch<n>` in pipelined batches (reading the replies, so the publisher
/// itself is not a slow client) until `stop`; counts the messages sent.
fn publisher(port: u16, n: usize, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let mut c = RawConn::connect(port).expect("publisher connect");
    assert_eq!(c.call(&["AUTH", "secret"]).expect("AUTH"), b"+OK\r\n");
    let payload = vec![b'p'; publish_payload()];
    let mut next = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::with_capacity(PUBLISH_BATCH * (payload.len() + 40));
        for _ in 0..PUBLISH_BATCH {
            let ch = format!("ch{}", next % n);
            next += 1;
            batch.extend_from_slice(
                format!(
                    "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{ch}\r\n${}\r\n",
                    ch.len(),
                    payload.len()
                )
                .as_bytes(),
            );
            batch.extend_from_slice(&payload);
            batch.extend_from_slice(b"\r\n");
        }
        c.send(&batch).expect("publish batch");
        for _ in 0..PUBLISH_BATCH {
            let r = c
                .read_reply_timeout(Duration::from_secs(60))
                .expect("PUBLISH reply");
            assert!(r.starts_with(b":"), "PUBLISH replied {r:?}");
        }
        sent.fetch_add(PUBLISH_BATCH as u64, Ordering::Relaxed);
    }
}

/// Subscribers of `ch0..ch<n>` per `PUBSUB NUMSUB` (0 for one the server disconnected).
fn numsub(c: &mut RawConn, n: usize) -> Vec<i64> {
    let mut args = vec!["PUBSUB".to_string(), "NUMSUB".to_string()];
    args.extend((0..n).map(|i| format!("ch{i}")));
    match c.call_value(&args).expect("PUBSUB NUMSUB") {
        Value::Array(items) => items
            .chunks(2)
            .map(|p| match p.get(1) {
                Some(Value::Int(k)) => *k,
                other => panic!("PUBSUB NUMSUB count {other:?}"),
            })
            .collect(),
        other => panic!("PUBSUB NUMSUB replied {other:?}"),
    }
}

/// T4's pub/sub flood: see the module comment. Pass: RSS grows ≤ 64 MiB, benign PING p99 ≤
/// 50 ms, and the limit disconnected subscribers.
#[test]
fn slow_subscribers_under_publish_flood() {
    let server = Builder::subject()
        .requirepass("secret")
        .start()
        .expect("start server");
    let name = server.kind().name();
    let secs = std::env::var("HOSTILE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30u64);
    let (limit, payload) = (pubsub_limit(), publish_payload());
    let mut benign = server.conn().expect("connect benign");
    assert_eq!(benign.call(&["AUTH", "secret"]).expect("AUTH"), b"+OK\r\n");
    let set = benign
        .call(&["CONFIG", "SET", "client-output-buffer-limit", &limit])
        .expect("CONFIG SET");
    assert_eq!(
        set, b"+OK\r\n",
        "[{name}] CONFIG SET client-output-buffer-limit"
    );
    let base_rss = server.rss_kib().expect("rss");
    let port = server.port();

    // (stream, when it subscribed): replaced once the server has dropped it.
    let mut subs: Vec<(TcpStream, Instant)> = (0..HOSTILE)
        .map(|i| (slow_subscriber(port, i), Instant::now()))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (stop, sent) = (stop.clone(), sent.clone());
        thread::spawn(move || publisher(port, HOSTILE, stop, sent))
    };
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut latencies, mut max_rss, mut replaced) = (Vec::new(), base_rss, 0usize);
    let mut checked = Instant::now();
    while Instant::now() < deadline {
        latencies.push(benign_ping(&mut benign, name));
        max_rss = max_rss.max(server.rss_kib().expect("rss"));
        // Once a second, a hostile client re-subscribes where the server disconnected one.
        if checked.elapsed() >= Duration::from_secs(1) {
            for (i, n) in numsub(&mut benign, HOSTILE).into_iter().enumerate() {
                if n == 0 && subs[i].1.elapsed() >= Duration::from_secs(1) {
                    subs[i] = (slow_subscriber(port, i), Instant::now());
                    replaced += 1;
                }
            }
            checked = Instant::now();
        }
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher thread");
    drop(subs);
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "[{name}] {} messages of {payload} B published to {HOSTILE} slow subscribers \
         ({limit}), {replaced} disconnected and replaced; {} benign PINGs, p50 {:?}, \
         p99 {p99:?}; RSS {base_rss} KiB -> max {max_rss} KiB",
        sent.load(Ordering::Relaxed),
        latencies.len(),
        latencies[latencies.len() / 2]
    );
    assert!(
        replaced > 0,
        "[{name}] no slow subscriber was disconnected: the output buffer limit did not act"
    );
    assert!(
        p99 <= Duration::from_millis(50),
        "[{name}] benign PING p99 {p99:?} > 50 ms"
    );
    assert!(
        max_rss.saturating_sub(base_rss) <= RSS_GROWTH_LIMIT_KIB,
        "[{name}] RSS grew {} KiB (> 64 MiB)",
        max_rss - base_rss
    );
}

/// `VmSize` of a process in KiB (address space, which counts reservations that RSS does not).
fn vm_size_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmSize:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Memory for a frame is bounded by what arrived, not by what the header declares: 64
/// connections each declare a 512 MB bulk (32 GB in total) and send 1 KiB of it. Address space
/// must grow by less than 2 GiB and RSS by less than 64 MiB, and the server keeps answering.
/// (Pinnacle only: redis-server reserves the declared size up front for big arguments.)
#[test]
fn declared_sizes_do_not_allocate() {
    if redis_tests::process::subject_kind() != redis_tests::Kind::Pinnacle {
        return;
    }
    let server = Server::subject().expect("start server");
    let pid = server.pid().expect("pid");
    let (vm0, rss0) = (vm_size_kib(pid), server.rss_kib().expect("rss"));
    let mut conns = Vec::new();
    for _ in 0..64 {
        let mut c = server.conn().expect("connect");
        let mut req = b"*2\r\n$4\r\nECHO\r\n$536870912\r\n".to_vec();
        req.extend(std::iter::repeat_n(b'x', 1024));
        c.send(&req).expect("send");
        conns.push(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut probe = server.conn().expect("connect");
    assert_eq!(probe.call(&["PING"]).expect("PING"), b"+PONG\r\n");
    let (vm1, rss1) = (vm_size_kib(pid), server.rss_kib().expect("rss"));
    eprintln!("VmSize {vm0} -> {vm1} KiB, RSS {rss0} -> {rss1} KiB");
    assert!(
        vm1.saturating_sub(vm0) < 2 * 1024 * 1024,
        "address space grew {} KiB",
        vm1 - vm0
    );
    assert!(
        rss1.saturating_sub(rss0) < 64 * 1024,
        "RSS grew {} KiB",
        rss1 - rss0
    );
}
