//! Pub/sub against a cluster-mode redis-server 7.0.15: the same byte sequences sent over raw
//! TCP by several clients to both servers, every reply and pushed message compared byte for
//! byte (RESP2 and RESP3); and a subscriber that never reads is disconnected at the output
//! limit while the server's memory stays bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_tests::frame::{frame_len, parse_one, Value};
use redis_tests::{encode_command, show, Builder, Peek, RawConn, Server};

/// One scripted action: client `conn` sends `args`. No step leaves more than one channel by
/// "unsubscribe from all": Redis's order there is its dict's, and the counts follow it.
struct Step {
    conn: usize,
    /// Sent in one write (a pipeline when there are several).
    cmds: Vec<Vec<Vec<u8>>>,
}

fn argv(cmd: &str) -> Vec<Vec<u8>> {
    cmd.split(' ').map(|a| a.as_bytes().to_vec()).collect()
}

fn step(conn: usize, cmd: &str) -> Step {
    Step {
        conn,
        cmds: vec![argv(cmd)],
    }
}

fn pipeline(conn: usize, cmds: &[&str]) -> Step {
    Step {
        conn,
        cmds: cmds.iter().map(|c| argv(c)).collect(),
    }
}

/// Three clients: 0 and 1 subscribe, 2 publishes (and also subscribes in places).
fn script() -> Vec<Step> {
    let mut s = vec![
        step(0, "UNSUBSCRIBE"),
        step(0, "PUNSUBSCRIBE"),
        step(0, "SUNSUBSCRIBE"),
        step(0, "SUBSCRIBE"),
        step(0, "PUBLISH a"),
        step(2, "PUBLISH a nobody"),
        step(0, "SUBSCRIBE a b a"),
        step(1, "PSUBSCRIBE a* h?llo [xy]z"),
        step(2, "PUBLISH a hi"),
        step(2, "PUBLISH abc hi2"),
        step(2, "PUBLISH hallo there"),
        step(2, "PUBLISH yz p"),
        step(2, "PUBLISH b only-b"),
        step(0, "PING"),
        step(0, "PING msg"),
        step(0, "GET a"),
        step(0, "GET"),
        step(0, "SET k v"),
        step(0, "CLIENT GETNAME"),
        step(0, "HELLO 3"),
        step(0, "NOSUCH x"),
        step(0, "PUBSUB NUMPAT"),
        step(2, "PUBSUB NUMPAT"),
        step(2, "PUBSUB NUMSUB a b c"),
        step(2, "PUBSUB NUMSUB"),
        step(2, "PUBSUB CHANNELS a"),
        step(2, "PUBSUB CHANNELS z*"),
        step(2, "PUBSUB CHANNELS a b"),
        step(2, "PUBSUB SHARDCHANNELS"),
        step(2, "PUBSUB SHARDNUMSUB x"),
        step(2, "PUBSUB HELP"),
        step(2, "PUBSUB NOSUCH"),
        step(2, "PUBSUB"),
        step(0, "SSUBSCRIBE a b"),
        step(0, "SSUBSCRIBE {t}x {t}y"),
        step(2, "SPUBLISH {t}x shard-msg"),
        step(2, "SPUBLISH a not-shard"),
        step(2, "PUBSUB SHARDNUMSUB {t}x {t}y a"),
        step(0, "SUNSUBSCRIBE {t}y nosuch"),
        step(0, "SUNSUBSCRIBE a b"),
        step(0, "UNSUBSCRIBE b zz"),
        step(2, "PUBLISH b gone"),
        step(1, "PUNSUBSCRIBE h?llo"),
        step(2, "PUBLISH hello gone-too"),
        step(2, "PUBLISH abc still"),
        step(1, "SUBSCRIBE abc"),
        step(2, "PUBLISH abc both"),
        step(1, "PUNSUBSCRIBE [xy]z"),
        step(1, "PUNSUBSCRIBE"),
        step(1, "PING"),
        step(1, "UNSUBSCRIBE"),
        step(1, "PING"),
        step(1, "GET k"),
        step(0, "RESET"),
        step(0, "PING"),
        step(2, "PUBLISH a after-reset"),
        step(2, "SPUBLISH {t}x after-reset"),
        step(2, "PUBSUB NUMSUB a"),
        step(2, "PUBSUB NUMPAT"),
        // RESP3: pushes, and every command is allowed while subscribed.
        step(1, "HELLO 3"),
        step(1, "SUBSCRIBE r3"),
        step(1, "PSUBSCRIBE r*"),
        step(1, "PING"),
        step(1, "GET k"),
        step(1, "PUBLISH r3 self"),
        step(2, "PUBLISH r3 other"),
        step(1, "SSUBSCRIBE s3"),
        step(2, "SPUBLISH s3 sm"),
        step(1, "UNSUBSCRIBE r3"),
        step(1, "PUNSUBSCRIBE"),
        step(1, "SUNSUBSCRIBE"),
        step(1, "UNSUBSCRIBE"),
        // Back to RESP2 while subscribed: the RESP2 rules apply again.
        step(1, "SUBSCRIBE back"),
        step(1, "HELLO 2"),
        step(1, "GET k"),
        step(1, "PING"),
        step(2, "PUBLISH back resp2-again"),
        step(1, "QUIT"),
        step(2, "PUBLISH back after-quit"),
        // A pipeline: a client's own message comes between its confirmation and the reply.
        pipeline(
            2,
            &[
                "SUBSCRIBE p",
                "PUBLISH p self",
                "PING",
                "UNSUBSCRIBE p",
                "PING",
            ],
        ),
        // Pushes ignore CLIENT REPLY OFF, as in 7.0.15.
        step(0, "CLIENT REPLY OFF"),
        step(0, "SUBSCRIBE quiet"),
        step(2, "PUBLISH quiet still-pushed"),
        step(0, "CLIENT REPLY ON"),
        step(0, "PING"),
        step(0, "UNSUBSCRIBE quiet"),
    ];
    // A binary channel and payload.
    s.push(Step {
        conn: 0,
        cmds: vec![vec![b"SUBSCRIBE".to_vec(), b"\x00\xff\r\n".to_vec()]],
    });
    s.push(Step {
        conn: 2,
        cmds: vec![vec![
            b"PUBLISH".to_vec(),
            b"\x00\xff\r\n".to_vec(),
            vec![0, 1, 2, 255],
        ]],
    });
    s
}

/// Every frame each connection received after each step, plus whether it was closed.
type Transcript = Vec<Vec<Vec<u8>>>;

/// Reads frames from `c` until `want` frames arrived (the reference run's count) or, with no
/// count, until 100 ms pass without data.
fn read_frames(c: &mut RawConn, want: Option<usize>) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    match want {
        Some(n) => {
            while frames.len() < n {
                match c.read_reply_timeout(Duration::from_secs(5)) {
                    Ok(f) => frames.push(f),
                    Err(redis_tests::Error::Closed(_)) => {
                        frames.push(b"<closed>".to_vec());
                        break;
                    }
                    Err(e) => {
                        frames.push(format!("<{e}>").into_bytes());
                        break;
                    }
                }
            }
        }
        None => loop {
            match c.read_reply_timeout(Duration::from_millis(100)) {
                Ok(f) => frames.push(f),
                Err(redis_tests::Error::Closed(_)) => {
                    frames.push(b"<closed>".to_vec());
                    break;
                }
                Err(_) => break,
            }
        },
    }
    frames
}

/// Runs the script on `server`. With `reference` (the redis run), reads exactly as many frames
/// as Redis sent for each connection and step, then checks nothing extra arrived.
fn run(server: &Server, protocol: u8, reference: Option<&[Transcript]>) -> Vec<Transcript> {
    let mut conns: Vec<RawConn> = (0..3).map(|_| server.conn().expect("connect")).collect();
    let mut closed = [false; 3];
    if protocol == 3 {
        for c in &mut conns {
            c.call(&["HELLO", "3"]).expect("HELLO 3");
        }
    }
    let mut out = Vec::new();
    for (i, st) in script().iter().enumerate() {
        if !closed[st.conn] {
            let bytes: Vec<u8> = st.cmds.iter().flat_map(|c| encode_command(c)).collect();
            conns[st.conn].send(&bytes).expect("send");
        }
        let mut per_conn: Transcript = Vec::new();
        for (ci, c) in conns.iter_mut().enumerate() {
            if closed[ci] {
                per_conn.push(vec![]);
                continue;
            }
            let want = reference.map(|r| r[i][ci].len());
            let frames = read_frames(c, want);
            if frames.last().is_some_and(|f| f == b"<closed>") {
                closed[ci] = true;
            }
            per_conn.push(frames);
        }
        if reference.is_some() {
            // Anything beyond Redis's frames is a difference too.
            for (ci, c) in conns.iter_mut().enumerate() {
                if closed[ci] {
                    continue;
                }
                if let Ok(Peek::Data(extra)) = c.peek(Duration::from_millis(20)) {
                    per_conn[ci].push(extra);
                }
            }
        }
        out.push(per_conn);
    }
    out
}

/// HELLO's `id` differs between servers: replaced by 0.
fn mask_id(f: &[u8]) -> Vec<u8> {
    let key = b"$2\r\nid\r\n:";
    let Some(at) = f.windows(key.len()).position(|w| w == key) else {
        return f.to_vec();
    };
    let start = at + key.len();
    let end = start + f[start..].iter().position(|&b| b == b'\r').unwrap_or(0);
    [&f[..start], b"0", &f[end..]].concat()
}

fn differential(protocol: u8) {
    if !redis_tests::tools::available("pubsub_differential", &["redis-server"]) {
        return;
    }
    let reference = Builder::redis_cluster()
        .start()
        .expect("start redis-server");
    let subject = Server::subject().expect("start server under test");
    let want = run(&reference, protocol, None);
    // The comparison is only as good as the reference run: it must hold each kind of frame.
    let frames: Vec<&Vec<u8>> = want.iter().flatten().flatten().collect();
    for needle in [
        &b"$7\r\nmessage\r\n"[..],
        b"$8\r\npmessage\r\n",
        b"$8\r\nsmessage\r\n",
        b"$11\r\nunsubscribe\r\n",
        b"-ERR Can't execute",
        b"-CROSSSLOT",
        b"<closed>",
    ] {
        assert!(
            frames
                .iter()
                .any(|f| f.windows(needle.len()).any(|w| w == needle)),
            "reference transcript lacks {}",
            show(needle)
        );
    }
    assert!(frames.len() > 100, "only {} reference frames", frames.len());
    let got = run(&subject, protocol, Some(&want));
    let mut failures = Vec::new();
    for (i, (st, (w, g))) in script().iter().zip(want.iter().zip(&got)).enumerate() {
        for ci in 0..3 {
            let a: Vec<Vec<u8>> = w[ci].iter().map(|f| mask_id(f)).collect();
            let b: Vec<Vec<u8>> = g[ci].iter().map(|f| mask_id(f)).collect();
            if a != b {
                let args: Vec<Vec<String>> = st
                    .cmds
                    .iter()
                    .map(|c| {
                        c.iter()
                            .map(|a| String::from_utf8_lossy(a).into_owned())
                            .collect()
                    })
                    .collect();
                let fmt = |v: &[Vec<u8>]| v.iter().map(|f| show(f)).collect::<Vec<_>>().join(" | ");
                failures.push(format!(
                    "step {i} (client {} sends {args:?}), client {ci}:\n  redis-server: {}\n  {}: {}",
                    st.conn,
                    fmt(&a),
                    subject.kind().name(),
                    fmt(&b)
                ));
            }
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
fn pubsub_matches_redis_resp2() {
    differential(2);
}

#[test]
fn pubsub_matches_redis_resp3() {
    differential(3);
}

/// `CLIENT LIST` fields of the connection whose `id=` is `id`.
fn client_fields(c: &mut RawConn, id: i64) -> HashMap<String, String> {
    let list = c.call_value(&["CLIENT", "LIST"]).expect("CLIENT LIST");
    let text = match list {
        Value::Bulk(b) | Value::Verbatim(b) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("CLIENT LIST: {other:?}"),
    };
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("id={id} ")))
        .unwrap_or_else(|| panic!("no client {id} in {text}"));
    line.split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn client_list_shows_subscriptions() {
    if !redis_tests::tools::available("client_list_shows_subscriptions", &["redis-server"]) {
        return;
    }
    let reference = Builder::redis_cluster()
        .start()
        .expect("start redis-server");
    let subject = Server::subject().expect("start server under test");
    for server in [&reference, &subject] {
        let mut sub = server.conn().expect("connect");
        let mut admin = server.conn().expect("connect");
        let id = match sub.call_value(&["CLIENT", "ID"]).expect("CLIENT ID") {
            Value::Int(n) => n,
            other => panic!("CLIENT ID: {other:?}"),
        };
        for cmd in [
            &["SUBSCRIBE", "a", "b"][..],
            &["PSUBSCRIBE", "p*"],
            &["SSUBSCRIBE", "{x}1", "{x}2", "{x}3"],
        ] {
            sub.send_command(cmd).expect("send");
            for _ in 1..cmd.len() {
                sub.read_reply().expect("confirmation");
            }
        }
        let f = client_fields(&mut admin, id);
        let name = server.kind().name();
        assert_eq!(f["flags"], "P", "[{name}] {f:?}");
        assert_eq!(
            (f["sub"].as_str(), f["psub"].as_str(), f["ssub"].as_str()),
            ("2", "1", "3"),
            "[{name}] {f:?}"
        );
        assert_eq!(f["cmd"], "ssubscribe", "[{name}] {f:?}");
        sub.call(&["RESET"]).expect("RESET");
        let f = client_fields(&mut admin, id);
        assert_eq!(f["flags"], "N", "[{name}] {f:?}");
        assert_eq!(f["sub"], "0", "[{name}] {f:?}");
    }
}

/// Publishes `total` bytes in `msg`-byte messages to `channel`, pipelined 16 at a time, calling
/// `before_batch` with the number of messages sent so far; returns the sum of the PUBLISH
/// replies (receivers).
fn flood(
    p: &mut RawConn,
    channel: &str,
    msg: usize,
    total: usize,
    mut before_batch: impl FnMut(usize),
) -> i64 {
    let payload = vec![b'x'; msg];
    let cmd = redis_tests::encode_command(&[b"PUBLISH", channel.as_bytes(), &payload[..]]);
    let mut receivers = 0;
    let batch = 16;
    let mut sent = 0;
    while sent < total {
        before_batch(sent / msg);
        let mut buf = Vec::with_capacity(cmd.len() * batch);
        for _ in 0..batch {
            buf.extend_from_slice(&cmd);
        }
        p.send(&buf).expect("publish");
        for _ in 0..batch {
            let r = p.read_reply().expect("PUBLISH reply");
            match parse_one(&r).expect("parse") {
                Value::Int(n) => receivers += n,
                other => panic!("PUBLISH: {other:?}"),
            }
        }
        sent += batch * msg;
    }
    receivers
}

/// Waits until `c` is closed by the server, discarding what it sent; false on timeout.
fn closed_within(c: &mut RawConn, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match c.peek(Duration::from_millis(200)) {
            Ok(Peek::Closed) => return true,
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    false
}

fn subscribe(c: &mut RawConn, channel: &str) {
    let r = c.call(&["SUBSCRIBE", channel]).expect("SUBSCRIBE");
    assert!(r.starts_with(b"*3\r\n$9\r\nsubscribe"), "{}", show(&r));
    // Keep the kernel's receive buffer small so the server's queue fills quickly.
    let _ = socket2::SockRef::from(c.stream()).set_recv_buffer_size(64 * 1024);
}

#[test]
fn slow_subscriber_is_disconnected_and_memory_stays_bounded() {
    let server = Server::subject().expect("start server under test");
    let mut slow = server.conn().expect("connect");
    subscribe(&mut slow, "firehose");
    let mut fast = server.conn().expect("connect");
    subscribe(&mut fast, "firehose");
    // The fast subscriber reads everything, in order, while the slow one never reads.
    let fast_got = Arc::new(AtomicUsize::new(0));
    let progress = fast_got.clone();
    let reader = std::thread::spawn(move || {
        let mut got = 0usize;
        let mut buf = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while got < 1600 && Instant::now() < deadline {
            match fast.peek(Duration::from_secs(5)) {
                Ok(Peek::Data(d)) => buf.extend_from_slice(&d),
                other => {
                    eprintln!("fast subscriber stopped after {got}: {other:?}");
                    break;
                }
            }
            while let Ok(Some(n)) = frame_len(&buf) {
                let f: Vec<u8> = buf.drain(..n).collect();
                assert!(f.starts_with(b"*3\r\n$7\r\nmessage\r\n$8\r\nfirehose\r\n"));
                got += 1;
                progress.store(got, Ordering::Relaxed);
            }
        }
        (got, fast)
    });
    let mut publisher = server.conn().expect("connect");
    let rss_before = server.rss_kib().expect("rss");
    let mut rss_peak = rss_before;
    // 1600 × 64 KiB = 100 MiB, three times the default 32 MiB hard limit. The publisher stays
    // at most 4 MiB ahead of the reading subscriber, so only the other one falls behind.
    let receivers = flood(
        &mut publisher,
        "firehose",
        64 * 1024,
        1600 * 64 * 1024,
        |sent| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while sent > fast_got.load(Ordering::Relaxed) + 64 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if let Ok(r) = server.rss_kib() {
                rss_peak = rss_peak.max(r);
            }
        },
    );
    assert!(
        closed_within(&mut slow, Duration::from_secs(30)),
        "the slow subscriber is still connected after 100 MiB"
    );
    // The reader hands its connection back so it stays subscribed.
    let (got, _fast) = reader.join().expect("reader thread");
    assert_eq!(
        got,
        1600,
        "the fast subscriber must receive every message; log: {}",
        server.log_tail(2000)
    );
    // Until it was dropped the slow one counted as a receiver too.
    assert!(
        receivers > 1600 && receivers < 3200,
        "receivers {receivers}"
    );
    let grown_mib = rss_peak.saturating_sub(rss_before) / 1024;
    eprintln!(
        "[{}] RSS {} KiB before, peak {} KiB while flooding; {receivers} deliveries",
        server.kind().name(),
        rss_before,
        rss_peak
    );
    assert!(
        grown_mib < 96,
        "RSS grew by {grown_mib} MiB while 100 MiB went to a subscriber that never reads"
    );
    // The registry forgot it: only the fast subscriber remains.
    let n = publisher
        .call_value(&["PUBSUB", "NUMSUB", "firehose"])
        .expect("NUMSUB");
    assert_eq!(
        n,
        Value::Array(vec![Value::Bulk(b"firehose".to_vec()), Value::Int(1)])
    );
}

#[test]
fn output_limit_is_configurable() {
    let server = Server::subject().expect("start server under test");
    let mut admin = server.conn().expect("connect");
    let r = admin
        .call(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 1mb 0 0",
        ])
        .expect("CONFIG SET");
    assert_eq!(r, b"+OK\r\n");
    let mut slow = server.conn().expect("connect");
    subscribe(&mut slow, "c");
    // 8 MiB: more than the kernel buffers plus the 1 MiB limit, far below the default 32 MiB.
    flood(&mut admin, "c", 16 * 1024, 8 << 20, |_| {});
    assert!(
        closed_within(&mut slow, Duration::from_secs(30)),
        "a subscriber 7 MiB behind is still connected with a 1 MiB limit"
    );
    // Without a limit the same subscriber stays.
    let r = admin
        .call(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 0 0 0",
        ])
        .expect("CONFIG SET");
    assert_eq!(r, b"+OK\r\n");
    let mut slow = server.conn().expect("connect");
    subscribe(&mut slow, "c");
    flood(&mut admin, "c", 16 * 1024, 8 << 20, |_| {});
    assert!(
        !closed_within(&mut slow, Duration::from_secs(1)),
        "disconnected with the limit off"
    );
}

fn run_py(test: &str, protocol: u8) {
    if !redis_tests::tools::available(test, &["python3", "python3-redis"]) {
        return;
    }
    let server = Server::subject().expect("start server");
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/redis_py_pubsub.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(server.port().to_string())
        .arg(protocol.to_string())
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "redis-py pub/sub (protocol {protocol}) failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn redis_py_pubsub_resp2() {
    run_py("redis_py_pubsub_resp2", 2);
}

#[test]
fn redis_py_pubsub_resp3() {
    run_py("redis_py_pubsub_resp3", 3);
}

/// In Raft mode writes go through the replicated request loop: a RESP3 client pipelining a
/// write, a PUBLISH to itself and a read still gets its message ahead of the PUBLISH reply.
#[test]
fn raft_leader_orders_pushes_with_replicated_writes() {
    let c = redis_tests::cluster::Cluster::start(3).expect("cluster");
    let cmds = [
        &["SET", "k", "v"][..],
        &["PUBLISH", "raft", "self"],
        &["GET", "k"],
    ];
    let bytes: Vec<u8> = cmds.iter().flat_map(|c| encode_command(c)).collect();
    // The node serving `k` (its shard's leader). An election on a loaded machine can refuse
    // a command (CLUSTERDOWN, or MOVED to the new leader; nothing applied): start over there.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (leader, mut s, got) = loop {
        assert!(Instant::now() < deadline, "no stable leader for k");
        let Some((leader, mut s)) = c.ids().into_iter().find_map(|i| {
            let mut s = c.conn(i).ok()?;
            (s.call(&["SET", "k", "v"]).ok()? == b"+OK\r\n").then_some((i, s))
        }) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        s.call(&["HELLO", "3"]).expect("HELLO 3");
        let r = s.call(&["SUBSCRIBE", "raft"]).expect("SUBSCRIBE");
        assert_eq!(r, b">3\r\n$9\r\nsubscribe\r\n$4\r\nraft\r\n:1\r\n");
        s.send(&bytes).expect("send");
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(s.read_reply().expect("reply"));
        }
        let refused = got
            .iter()
            .any(|r| r.starts_with(b"-CLUSTERDOWN") || r.starts_with(b"-MOVED"));
        if !refused {
            break (leader, s, got);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        got,
        [
            &b"+OK\r\n"[..],
            b">3\r\n$7\r\nmessage\r\n$4\r\nraft\r\n$4\r\nself\r\n",
            b":1\r\n",
            b"$1\r\nv\r\n",
        ],
        "{:?}",
        got.iter().map(|f| show(f)).collect::<Vec<_>>()
    );
    // Another client's message arrives as a push.
    let mut p = c.conn(leader).expect("connect");
    assert_eq!(
        p.call(&["PUBLISH", "raft", "other"]).expect("PUBLISH"),
        b":1\r\n"
    );
    assert_eq!(
        s.read_reply().expect("push"),
        b">3\r\n$7\r\nmessage\r\n$4\r\nraft\r\n$5\r\nother\r\n"
    );
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort();
    v
}

/// `CLIENT LIST TYPE` and `CLIENT KILL TYPE`: a subscribed client is of type `pubsub`, the
/// others `normal`, no client is a `master` or `replica` (checked against redis-server too).
#[test]
fn client_type_filters_tell_subscribers_apart() {
    if !redis_tests::tools::available(
        "client_type_filters_tell_subscribers_apart",
        &["redis-server"],
    ) {
        return;
    }
    let reference = Builder::redis_cluster()
        .start()
        .expect("start redis-server");
    let subject = Server::subject().expect("start server under test");
    let ids = |c: &mut RawConn, t: &str| -> Vec<i64> {
        let text = match c.call_value(&["CLIENT", "LIST", "TYPE", t]).expect("LIST") {
            Value::Bulk(b) | Value::Verbatim(b) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("CLIENT LIST TYPE {t}: {other:?}"),
        };
        let mut v: Vec<i64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("id="))
            .filter_map(|l| l.split(' ').next()?.parse().ok())
            .collect();
        v.sort();
        v
    };
    for server in [&reference, &subject] {
        let name = server.kind().name();
        let mut sub = server.conn().expect("connect");
        let mut psub = server.conn().expect("connect");
        let mut admin = server.conn().expect("connect");
        let id = |c: &mut RawConn| match c.call_value(&["CLIENT", "ID"]).expect("ID") {
            Value::Int(n) => n,
            other => panic!("CLIENT ID: {other:?}"),
        };
        let (sub_id, psub_id, admin_id) = (id(&mut sub), id(&mut psub), id(&mut admin));
        sub.call(&["SUBSCRIBE", "news"]).expect("SUBSCRIBE");
        psub.call(&["PSUBSCRIBE", "n*"]).expect("PSUBSCRIBE");
        assert_eq!(
            ids(&mut admin, "pubsub"),
            sorted(vec![sub_id, psub_id]),
            "[{name}]"
        );
        assert_eq!(ids(&mut admin, "normal"), vec![admin_id], "[{name}]");
        assert_eq!(ids(&mut admin, "master"), Vec::<i64>::new(), "[{name}]");
        assert_eq!(ids(&mut admin, "slave"), Vec::<i64>::new(), "[{name}]");
        assert_eq!(
            show(
                &admin
                    .call(&["CLIENT", "LIST", "TYPE", "bogus"])
                    .expect("LIST")
            ),
            "-ERR Unknown client type 'bogus'\\r\\n",
            "[{name}]"
        );
        // Unsubscribed from everything: normal again.
        sub.call(&["UNSUBSCRIBE"]).expect("UNSUBSCRIBE");
        assert_eq!(ids(&mut admin, "pubsub"), vec![psub_id], "[{name}]");
        assert_eq!(
            admin
                .call(&["CLIENT", "KILL", "TYPE", "pubsub"])
                .expect("KILL"),
            b":1\r\n",
            "[{name}]"
        );
        assert!(closed_within(&mut psub, Duration::from_secs(5)), "[{name}]");
        // The killed connection leaves the list once its task ends (both servers close
        // asynchronously).
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut normal = ids(&mut admin, "normal");
        while normal != sorted(vec![sub_id, admin_id]) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            normal = ids(&mut admin, "normal");
        }
        assert_eq!(normal, sorted(vec![sub_id, admin_id]), "[{name}]");
        assert_eq!(ids(&mut admin, "pubsub"), Vec::<i64>::new(), "[{name}]");
    }
}

/// In a cluster a PUBLISH reaches the subscribers of every node (Redis Cluster's bus relays
/// it); its reply counts the receivers on the node that took it, as Redis Cluster does.
#[test]
fn publish_reaches_subscribers_on_every_node() {
    let c = redis_tests::cluster::Cluster::start(3).expect("cluster");
    let mut subs = Vec::new();
    for node in c.ids() {
        let mut s = c.conn(node).expect("connect");
        s.call(&["SUBSCRIBE", "news"]).expect("SUBSCRIBE");
        let mut p = c.conn(node).expect("connect");
        p.call(&["PSUBSCRIBE", "ne*"]).expect("PSUBSCRIBE");
        subs.push((s, p));
    }
    let mut publisher = c.conn(1).expect("connect");
    // The relay learns its peers within a second of start: publish until the first message
    // arrives everywhere (liveness), then check every later message arrives exactly once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut warm = 0;
    'warm: loop {
        warm += 1;
        let r = publisher
            .call(&["PUBLISH", "news", &format!("warm{warm}")])
            .expect("PUBLISH");
        assert_eq!(r, b":2\r\n", "node 1's own subscriber and pattern");
        std::thread::sleep(Duration::from_millis(200));
        let mut everywhere = true;
        for (s, _) in subs.iter_mut() {
            everywhere &= matches!(s.peek(Duration::from_millis(10)), Ok(Peek::Data(_)));
        }
        if everywhere {
            break 'warm;
        }
        assert!(
            Instant::now() < deadline,
            "messages never reached every node"
        );
    }
    // Drain the warm-up messages, then publish from every node.
    std::thread::sleep(Duration::from_millis(500));
    for (s, p) in subs.iter_mut() {
        for c in [s, p] {
            while let Ok(Peek::Data(_)) = c.peek(Duration::from_millis(200)) {}
        }
    }
    for from in c.ids() {
        let mut publisher = c.conn(from).expect("connect");
        for i in 0..5 {
            let msg = format!("from{from}-{i}");
            let r = publisher.call(&["PUBLISH", "news", &msg]).expect("PUBLISH");
            assert_eq!(r, b":2\r\n", "local receivers on node {from}");
        }
        for (node, (s, p)) in c.ids().into_iter().zip(subs.iter_mut()) {
            for i in 0..5 {
                let msg = format!("from{from}-{i}");
                let want = encode_command(&["message", "news", &msg]);
                let got = s
                    .read_reply_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("node {node} missed {msg}: {e}"));
                assert_eq!(show(&got), show(&want), "node {node}, in order");
                let want = encode_command(&["pmessage", "ne*", "news", &msg]);
                let got = p
                    .read_reply_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("node {node} missed pattern {msg}: {e}"));
                assert_eq!(show(&got), show(&want), "node {node} pattern, in order");
            }
        }
    }
    // Nothing arrived twice.
    for (node, (s, p)) in c.ids().into_iter().zip(subs.iter_mut()) {
        for c in [s, p] {
            assert!(
                matches!(c.peek(Duration::from_millis(300)), Ok(Peek::Nothing)),
                "node {node}: an extra message"
            );
        }
    }
}
