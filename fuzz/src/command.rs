//! Property of the `command` target: arbitrary bytes, decoded as a client's request stream,
//! run through the real command pipeline (`pinnacle_server::command::call`) of one in-process
//! node on an LSM in a temporary directory: no command panics, and every reply encodes, in
//! RESP2 and RESP3, to complete, well-formed RESP frames.
//!
//! Used by `fuzz/fuzz_targets/command.rs` and, through `#[path]`, by
//! `server/tests/fuzz_corpus.rs`. The node is built once per process; each input gets a fresh
//! client, an emptied keyspace and the default user restored, so inputs do not depend on each
//! other much (the node's counters and slow log do carry over).
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use pinnacle_lsm::SyncPolicy;
use pinnacle_resp::{Protocol, RequestDecoder};
use pinnacle_server::command::state::NodeIds;
use pinnacle_server::command::{call, Client, Ctx, Server};
use pinnacle_server::config::{Config, Settings};
use pinnacle_server::storage::Db;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// At most this many commands run per input (keeps one input well under the 2 s timeout).
const MAX_COMMANDS: usize = 64;

struct Node {
    server: Arc<Server>,
    // Keeps the runtime (some commands spawn tasks) and the data directory alive.
    runtime: tokio::runtime::Runtime,
    dir: PathBuf,
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pinnacle-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let settings = Settings {
            values: vec![("dir".into(), dir.display().to_string())],
            config_file: None,
        };
        let config = Config::new(&settings).expect("fuzz config is valid");
        let db = Db::open(&dir, SyncPolicy::Never).expect("open the keyspace in a temp dir");
        let server = Arc::new(Server::new(
            db,
            config,
            NodeIds {
                node_id: "0123456789abcdef0123456789abcdef01234567".into(),
                shard_id: "89abcdef0123456789abcdef0123456789abcdef".into(),
            },
        ));
        Node {
            server,
            runtime,
            dir,
        }
    })
}

/// The node's data directory (a test removes it when done; the process may leave it behind).
pub fn data_dir() -> &'static std::path::Path {
    &node().dir
}

/// Commands that reach outside the process (network, files, the process itself) or change
/// node-wide settings every later input would inherit.
fn denied(args: &[Bytes]) -> bool {
    let name = args[0].to_ascii_uppercase();
    let sub = args
        .get(1)
        .map(|a| a.to_ascii_uppercase())
        .unwrap_or_default();
    match &name[..] {
        b"SHUTDOWN" | b"DEBUG" | b"MIGRATE" | b"REPLICAOF" | b"SLAVEOF" | b"FAILOVER" | b"SYNC"
        | b"PSYNC" | b"CLUSTER" | b"SAVE" | b"BGSAVE" | b"BGREWRITEAOF" | b"MONITOR" => true,
        b"CONFIG" => sub != b"GET",
        b"CLIENT" => sub == b"PAUSE" || sub == b"KILL",
        b"ACL" => sub == b"SAVE" || sub == b"LOAD",
        // Redis allows strings up to 512 MB: an offset or count that large is a legitimate
        // half-gigabyte allocation, not a bug; keep them small so inputs stay fast.
        b"SETRANGE" | b"SETBIT" | b"BITFIELD" | b"BITFIELD_RO" | b"SRANDMEMBER"
        | b"ZRANDMEMBER" | b"HRANDFIELD" | b"LPOS" => args[1..].iter().any(|a| {
            let digits: Vec<u8> = a.iter().copied().filter(u8::is_ascii_digit).collect();
            digits.len() > 6
        }),
        _ => false,
    }
}

/// Length of the complete RESP2/RESP3 frame at the front of `buf`, or `None` if it is
/// malformed or cut short.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
        let end = buf.windows(2).position(|w| w == b"\r\n")?;
        Some((&buf[1..end], end + 2))
    }
    fn int(s: &[u8]) -> Option<i64> {
        std::str::from_utf8(s).ok()?.parse().ok()
    }
    fn nested(buf: &[u8], mut at: usize, n: i64) -> Option<usize> {
        for _ in 0..n {
            at += frame_len(buf.get(at..)?)?;
        }
        Some(at)
    }
    let (head, mut at) = line(buf)?;
    match *buf.first()? {
        b'+' | b'-' | b'(' => (!head.contains(&b'\n') && !head.contains(&b'\r')).then_some(at),
        b':' => int(head).map(|_| at),
        b',' => (!head.is_empty()).then_some(at),
        b'_' => head.is_empty().then_some(at),
        b'#' => (head == b"t" || head == b"f").then_some(at),
        b'$' | b'=' | b'!' => {
            let n = int(head)?;
            if n == -1 && buf[0] == b'$' {
                return Some(at);
            }
            let n = usize::try_from(n).ok()?;
            (buf.get(at + n..at + n + 2)? == b"\r\n").then_some(at + n + 2)
        }
        b'*' | b'~' | b'>' => match int(head)? {
            -1 if buf[0] == b'*' => Some(at),
            n if n >= 0 => nested(buf, at, n),
            _ => None,
        },
        b'%' | b'|' => {
            let n = int(head)?;
            if n < 0 {
                return None;
            }
            at = nested(buf, at, 2 * n)?;
            // An attribute annotates the value that follows it.
            if buf[0] == b'|' {
                at += frame_len(buf.get(at..)?)?;
            }
            Some(at)
        }
        _ => None,
    }
}

fn check_reply(wire: &[u8], proto: Protocol, args: &[Bytes]) {
    let mut at = 0;
    while at < wire.len() {
        match frame_len(&wire[at..]) {
            Some(n) => at += n,
            None => panic!(
                "{proto:?} reply to {:?} is not RESP: {:?}",
                args.iter()
                    .map(|a| String::from_utf8_lossy(a))
                    .collect::<Vec<_>>(),
                String::from_utf8_lossy(&wire[at..wire.len().min(at + 200)])
            ),
        }
    }
}

fn run(server: &Server, client: &mut Client, args: &[Bytes]) {
    let mut ctx = Ctx { server, client };
    let reply = call(&mut ctx, args);
    if ctx.client.take_reply_allowed() && !ctx.client.close_silently {
        // Both protocols, whichever the client speaks: the reply value must encode in each.
        for proto in [Protocol::Resp2, Protocol::Resp3] {
            let mut out = BytesMut::new();
            reply.encode(proto, &mut out);
            check_reply(&out, proto, args);
        }
    }
}

fn argv(parts: &[&str]) -> Vec<Bytes> {
    parts
        .iter()
        .map(|p| Bytes::copy_from_slice(p.as_bytes()))
        .collect()
}

/// Decodes `data` as one connection's requests and runs each through the command pipeline.
pub fn dispatch(data: &[u8]) {
    let node = node();
    let _rt = node.runtime.enter();
    let server = &node.server;
    let mut client = server.register_client("127.0.0.1:5000".into(), "127.0.0.1:6379".into());
    // A clean slate: an earlier input may have written keys or locked the default user out.
    for reset in [
        &["FLUSHALL"][..],
        &[
            "ACL", "SETUSER", "default", "reset", "on", "nopass", "~*", "&*", "+@all",
        ],
    ] {
        run(server, &mut client, &argv(reset));
    }
    let mut decoder = RequestDecoder::new();
    let mut buf = BytesMut::from(data);
    for _ in 0..MAX_COMMANDS {
        let Ok(Some(args)) = decoder.decode(&mut buf, true) else {
            break;
        };
        if denied(&args) {
            continue;
        }
        run(server, &mut client, &args);
        if client.close_after_reply || client.close_silently {
            break;
        }
    }
    server.unregister_client(&client);
}
