//! The front end over real sockets, in-process: pipelining, closing rules, limits, MONITOR.

use super::{serve, NetOptions};
use crate::command::state::NodeIds;
use crate::command::Server;
use crate::config::{Config, Settings};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start(settings: &[(&str, &str)]) -> (Arc<Server>, String) {
    let settings = Settings {
        values: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        config_file: None,
    };
    let config = Config::new(&settings).expect("valid test config");
    let ids = NodeIds {
        node_id: "a".repeat(40),
        shard_id: "b".repeat(40),
    };
    let server = Arc::new(Server::new(crate::storage::Db::in_memory(), config, ids));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(serve(
        listener,
        server.clone(),
        NetOptions {
            blocking_commands: false,
        },
    ));
    (server, addr)
}

/// Reads until `want` bytes arrived or the peer closed; returns the bytes and whether it closed.
async fn read_n(s: &mut TcpStream, want: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < want {
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
    (out, false)
}

async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_inline_and_multibulk() {
    let (_, addr) = start(&[]).await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"PING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nECHO \"a b\"\r\n")
        .await
        .expect("write");
    let want = b"+PONG\r\n$2\r\nhi\r\n$3\r\na b\r\n";
    let (got, _) = read_n(&mut s, want.len()).await;
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_protocol_errors_and_post_close() {
    let (_, addr) = start(&[]).await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"QUIT\r\nPING\r\n").await.expect("write");
    assert_eq!(read_n(&mut s, 5).await.0, b"+OK\r\n");
    assert!(closed(&mut s).await);

    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"PING\r\n*1\r\n+PING\r\nPING\r\n")
        .await
        .expect("write");
    let want = b"+PONG\r\n-ERR Protocol error: expected '$', got '+'\r\n";
    assert_eq!(read_n(&mut s, want.len()).await.0, want);
    assert!(closed(&mut s).await);

    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (got, was_closed) = read_n(&mut s, 1).await;
    assert!(got.is_empty() && was_closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxclients_and_client_kill() {
    let (server, addr) = start(&[("maxclients", "2")]).await;
    let mut a = TcpStream::connect(&addr).await.expect("connect");
    a.write_all(b"PING\r\n").await.expect("write");
    assert_eq!(read_n(&mut a, 7).await.0, b"+PONG\r\n");
    let mut b = TcpStream::connect(&addr).await.expect("connect");
    b.write_all(b"CLIENT ID\r\n").await.expect("write");
    let (id, _) = read_n(&mut b, 4).await;
    let id = String::from_utf8_lossy(&id[1..id.len() - 2]).to_string();
    let mut c = TcpStream::connect(&addr).await.expect("connect");
    let want = b"-ERR max number of clients reached\r\n";
    assert_eq!(read_n(&mut c, want.len()).await.0, want);
    assert!(closed(&mut c).await);
    a.write_all(format!("CLIENT KILL ID {id}\r\n").as_bytes())
        .await
        .expect("write");
    assert_eq!(read_n(&mut a, 4).await.0, b":1\r\n");
    assert!(closed(&mut b).await);
    assert!(
        server
            .stats
            .rejected_connections
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes() {
    let (_, addr) = start(&[("timeout", "1")]).await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"PING\r\n").await.expect("write");
    assert_eq!(read_n(&mut s, 7).await.0, b"+PONG\r\n");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(closed(&mut s).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_streams_commands() {
    let (_, addr) = start(&[]).await;
    let mut m = TcpStream::connect(&addr).await.expect("connect");
    m.write_all(b"MONITOR\r\n").await.expect("write");
    assert_eq!(read_n(&mut m, 5).await.0, b"+OK\r\n");
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"ECHO hello\r\n").await.expect("write");
    read_n(&mut s, 11).await;
    let (line, _) = read_n(&mut m, 30).await;
    let line = String::from_utf8_lossy(&line).to_string();
    assert!(
        line.starts_with('+') && line.contains("\"ECHO\" \"hello\""),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_block_others() {
    let (_, addr) = start(&[]).await;
    let mut hog = TcpStream::connect(&addr).await.expect("connect");
    // 4 MB of ECHO replies nobody reads: the server's writes to `hog` stall.
    let big = format!("ECHO {}\r\n", "x".repeat(60_000));
    let hog_task = tokio::spawn(async move {
        for _ in 0..70 {
            if hog.write_all(big.as_bytes()).await.is_err() {
                break;
            }
        }
        hog
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"PING\r\n").await.expect("write");
    assert_eq!(read_n(&mut s, 7).await.0, b"+PONG\r\n");
    hog_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_flood_is_dropped() {
    let (_, addr) = start(&[("requirepass", "pw")]).await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    // 4000 NOAUTH replies would be 136 KB; Redis drops such a client after ~17 KB.
    let _ = s.write_all(&b"PING\r\n".repeat(4000)).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("flooding client was not closed"),
        }
    }
    assert!(got.len() <= 16 * 1024 + 1024, "sent {} bytes", got.len());
    // A few pre-auth commands are still answered normally.
    let mut ok = TcpStream::connect(&addr).await.expect("connect");
    ok.write_all(b"PING\r\nAUTH pw\r\nPING\r\n")
        .await
        .expect("write");
    let want = b"-NOAUTH Authentication required.\r\n+OK\r\n+PONG\r\n";
    assert_eq!(read_n(&mut ok, want.len()).await.0, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_proto_max_bulk_len_applies_to_open_connections() {
    let (_, addr) = start(&[]).await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"CONFIG SET proto-max-bulk-len 1mb\r\n")
        .await
        .expect("write");
    assert_eq!(read_n(&mut s, 5).await.0, b"+OK\r\n");
    s.write_all(b"*2\r\n$4\r\nECHO\r\n$1048577\r\n")
        .await
        .expect("write");
    let want = b"-ERR Protocol error: invalid bulk length\r\n";
    assert_eq!(read_n(&mut s, want.len()).await.0, want);
    assert!(closed(&mut s).await);
}

/// A pipeline's plain writes are applied as one run (`net::conn::run`): each still sees the
/// earlier ones, reads see all of them, and the replies (errors, skipped ones, mapped ones)
/// stay in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_writes_run_in_order() {
    let (_, addr) = start(&[]).await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let cmds = [
        "LPUSH l a b",
        "RPUSH l c",
        "LPOP l",
        "INCR n",
        "INCR n",
        "LPUSH n x",
        "LRANGE l 0 -1",
        "HMSET h f v",
        "HSET h f w g x",
        "INCRBY n notanint",
        "CLIENT REPLY SKIP",
        "INCR n",
        "GET n",
        "RPOP l 5",
        "EXISTS l",
        "ZADD z 1 a 2 b",
        "ZPOPMIN z",
        "SET s x",
        "ZPOPMIN s 0",
    ];
    let wire: String = cmds.iter().map(|c| format!("{c}\r\n")).collect();
    s.write_all(wire.as_bytes()).await.expect("write");
    let want: &[u8] = b":2\r\n:3\r\n$1\r\nb\r\n:1\r\n:2\r\n\
        -WRONGTYPE Operation against a key holding the wrong kind of value\r\n\
        *2\r\n$1\r\na\r\n$1\r\nc\r\n+OK\r\n:1\r\n\
        -ERR value is not an integer or out of range\r\n\
        $1\r\n3\r\n*2\r\n$1\r\nc\r\n$1\r\na\r\n:0\r\n\
        :2\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n+OK\r\n\
        -WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    let (got, _) = read_n(&mut s, want.len()).await;
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
}

/// Pops in one run read the stored elements ahead with one scan (`list::read_ahead`); pops at
/// both ends, of two lists, with a count and after a push in the same run still see the list
/// as Redis would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_pops_read_ahead() {
    let (_, addr) = start(&[]).await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"RPUSH a 1 2 3 4 5\r\nRPUSH b x y z\r\n")
        .await
        .expect("write");
    assert_eq!(read_n(&mut s, 8).await.0, b":5\r\n:3\r\n");
    let cmds = [
        "LPOP a",
        "RPOP a",
        "LPOP b",
        "LPUSH a 0",
        "LPOP a",
        "LPOP a 2",
        "RPOP b",
        "LPOP a",
        "LPOP a",
        "LPOP b",
        "EXISTS a",
        "EXISTS b",
    ];
    let wire: String = cmds.iter().map(|c| format!("{c}\r\n")).collect();
    s.write_all(wire.as_bytes()).await.expect("write");
    let want: &[u8] = b"$1\r\n1\r\n$1\r\n5\r\n$1\r\nx\r\n:4\r\n$1\r\n0\r\n\
        *2\r\n$1\r\n2\r\n$1\r\n3\r\n$1\r\nz\r\n$1\r\n4\r\n$-1\r\n$1\r\ny\r\n:0\r\n:0\r\n";
    let (got, _) = read_n(&mut s, want.len()).await;
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
}

/// A pipeline longer than one run (`MAX_RUN`) is applied as several, still in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_pipelines_span_several_runs() {
    let (_, addr) = start(&[]).await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let mut wire = "INCR n\r\n".repeat(150);
    wire.push_str("GET n\r\n");
    s.write_all(wire.as_bytes()).await.expect("write");
    let mut want: String = (1..=150).map(|i| format!(":{i}\r\n")).collect();
    want.push_str("$3\r\n150\r\n");
    let (got, _) = read_n(&mut s, want.len()).await;
    assert_eq!(String::from_utf8_lossy(&got), want);
}
