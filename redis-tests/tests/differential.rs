//! Differential test: the same seeded random command sequences (strings and keys commands with
//! edge cases, see `redis_tests::diffgen`) go to the server under test and to a cluster-mode
//! redis-server 7.0.15 that owns every slot; raw reply bytes must match, in RESP2 and in RESP3.
//!
//! Environment: `DIFF_SEEDS=1,2,3` (default: fixed seeds, printed), `DIFF_COMMANDS=2000` per seed,
//! `DIFF_TRACE=1` to print every command, `DIFF_KEEP_GOING=1` to log every mismatch (re-syncing both servers with FLUSHALL) instead of
//! stopping at the first.
//!
//! Allow-list (replies not compared byte for byte, see `diffgen::compare_mode`): TTL/EXPIRETIME ±1,
//! PTTL/PEXPIRETIME ±2000 (the servers run a moment apart), KEYS as an unordered set, SCAN as the
//! full key set, RANDOMKEY and DUMP (implementation-specific payload) by reply type only. HELLO's reply (server id, version) is not compared.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use redis_tests::diffgen::{compare_mode, Cmd, Compare, Gen};
use redis_tests::frame::{parse_one, Value};
use redis_tests::{show, Builder, RawConn, Server};

const DEFAULT_SEEDS: &[u64] = &[1, 2, 3, 4, 5, 6];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seeds() -> Vec<u64> {
    match std::env::var("DIFF_SEEDS") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => DEFAULT_SEEDS.to_vec(),
    }
}

fn render(cmd: &Cmd) -> String {
    cmd.iter()
        .map(|a| format!("\"{}\"", show(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// All keys a SCAN reports, following the cursor to the end.
fn scan_all(conn: &mut RawConn, first: &[u8], cmd: &Cmd) -> Result<Vec<Value>, String> {
    let mut reply = first.to_vec();
    let mut keys = Vec::new();
    for _ in 0..1000 {
        let v = parse_one(&reply).map_err(|e| e.to_string())?;
        let parts = v.as_list().ok_or_else(|| format!("SCAN reply {v:?}"))?;
        let [cursor, batch] = parts else {
            return Err(format!("SCAN reply {v:?}"));
        };
        keys.extend(batch.as_list().ok_or("SCAN keys")?.iter().cloned());
        let cursor = cursor.as_bytes().ok_or("SCAN cursor")?.to_vec();
        if cursor == b"0" {
            keys.sort();
            return Ok(keys);
        }
        let mut next = cmd.clone();
        next[1] = cursor;
        reply = conn.call(&next).map_err(|e| e.to_string())?;
    }
    Err("SCAN never finished".into())
}

/// Compare two replies to `cmd` under its allow-list mode; `Err` explains the difference.
fn same(cmd: &Cmd, a: &[u8], b: &[u8], ca: &mut RawConn, cb: &mut RawConn) -> Result<(), String> {
    if a == b {
        return Ok(());
    }
    let mode = compare_mode(&cmd[0]);
    let (va, vb) = match (parse_one(a), parse_one(b)) {
        (Ok(va), Ok(vb)) => (va, vb),
        _ => return Err("different bytes (one is not valid RESP)".into()),
    };
    match mode {
        Compare::Exact => Err("different bytes".into()),
        Compare::IntWithin(d) => match (va, vb) {
            (Value::Int(x), Value::Int(y)) if x >= 0 && y >= 0 && (x - y).abs() <= d => Ok(()),
            _ => Err(format!("integers differ by more than {d}")),
        },
        Compare::Unordered => {
            let (mut x, mut y) = (va.clone(), vb.clone());
            for v in [&mut x, &mut y] {
                if let Value::Array(items) | Value::Set(items) = v {
                    items.sort();
                }
            }
            if x == y {
                Ok(())
            } else {
                Err("different elements".into())
            }
        }
        Compare::ScanKeys => {
            if va.is_error() || vb.is_error() {
                return Err("different bytes".into());
            }
            let ka = scan_all(ca, a, cmd)?;
            let kb = scan_all(cb, b, cmd)?;
            if ka == kb {
                Ok(())
            } else {
                Err(format!("SCAN key sets differ: {ka:?} vs {kb:?}"))
            }
        }
        Compare::SameType => {
            if a.first() == b.first() {
                Ok(())
            } else {
                Err("different reply types".into())
            }
        }
    }
}

/// The inline form of a command (`SET k v\r\n`) when every argument survives it unquoted.
fn encode_inline(cmd: &Cmd) -> Option<Vec<u8>> {
    let plain = |a: &Vec<u8>| {
        !a.is_empty()
            && a.iter()
                .all(|&c| c.is_ascii_graphic() && !matches!(c, b'"' | b'\'' | b'\\'))
    };
    // Inline requests are limited to 64 KiB.
    if !cmd.iter().all(plain) || cmd.iter().map(|a| a.len() + 1).sum::<usize>() > 60_000 {
        return None;
    }
    let mut out = cmd.join(&b' ');
    out.extend_from_slice(b"\r\n");
    Some(out)
}

/// Send pre-encoded requests and read `n` replies (a failure ends the batch).
fn send_batch(c: &mut RawConn, wire: &[u8], n: usize) -> Vec<Result<Vec<u8>, redis_tests::Error>> {
    if let Err(e) = c.send(wire) {
        return (0..n)
            .map(|_| Err(redis_tests::Error::Closed(e.to_string())))
            .collect();
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = c.read_reply();
        let failed = r.is_err();
        out.push(r);
        if failed {
            while out.len() < n {
                out.push(Err(redis_tests::Error::Closed(
                    "earlier reply failed".into(),
                )));
            }
        }
    }
    out
}

/// A command and both servers' replies, waiting to be compared.
type Pending = (Cmd, Reply, Reply);
type Reply = Result<Vec<u8>, redis_tests::Error>;

struct Mismatch {
    text: String,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn open(server: &Server, protocol: u8) -> RawConn {
    let mut c = server.conn().expect("connect");
    if protocol == 3 {
        let r = c.call(&["HELLO", "3"]).expect("HELLO 3");
        assert!(
            r.starts_with(b"%7\r\n"),
            "[{}] HELLO 3: {}",
            server.kind().name(),
            show(&r)
        );
    }
    let r = c.call(&["FLUSHALL"]).expect("FLUSHALL");
    assert_eq!(r, b"+OK\r\n", "[{}] FLUSHALL", server.kind().name());
    c
}

fn run_seed(
    subject: &Server,
    reference: &Server,
    seed: u64,
    protocol: u8,
    n: u64,
    keep_going: bool,
) -> Vec<Mismatch> {
    eprintln!("differential: seed {seed}, RESP{protocol}, {n} commands");
    let mut a = open(subject, protocol);
    let mut b = open(reference, protocol);
    let mut gen = Gen::new(seed, now_ms());
    let mut mode_rng = redis_tests::rng::Rng::new(seed ^ 0x05ee_d0fb_a7c4);
    let trace = std::env::var("DIFF_TRACE").is_ok_and(|v| v == "1");
    let mut history: VecDeque<String> = VecDeque::new();
    let mut out = Vec::new();
    // Reply types seen from redis-server, to show the mix is not all errors.
    let mut kinds: std::collections::BTreeMap<char, u32> = Default::default();
    let mut batch: VecDeque<Pending> = VecDeque::new();
    let mut i = 0;
    while i < n {
        if batch.is_empty() {
            // Usually one command at a time; sometimes a pipelined batch; sometimes inline syntax.
            let size = if mode_rng.chance(10) {
                2 + mode_rng.below(9)
            } else {
                1
            };
            let cmds: Vec<Cmd> = (0..size).map(|_| gen.command()).collect();
            let wire: Vec<u8> = cmds
                .iter()
                .flat_map(|c| {
                    if mode_rng.chance(10) {
                        encode_inline(c)
                    } else {
                        None
                    }
                    .unwrap_or_else(|| redis_tests::encode_command(c))
                })
                .collect();
            let (ra, rb) = (
                send_batch(&mut a, &wire, cmds.len()),
                send_batch(&mut b, &wire, cmds.len()),
            );
            for ((c, x), y) in cmds.into_iter().zip(ra).zip(rb) {
                batch.push_back((c, x, y));
            }
        }
        let Some((cmd, ra, rb)) = batch.pop_front() else {
            break;
        };
        if trace {
            eprintln!("  #{i} {}", render(&cmd));
        }
        i += 1;
        if let Ok(r) = &rb {
            *kinds
                .entry(r.first().map_or('?', |&c| c as char))
                .or_default() += 1;
        }
        let verdict = match (&ra, &rb) {
            (Ok(x), Ok(y)) => same(&cmd, x, y, &mut a, &mut b),
            _ => Err("a connection failed".into()),
        };
        if let Err(why) = verdict {
            let show_r = |r: &Result<Vec<u8>, redis_tests::Error>| match r {
                Ok(x) => show(x),
                Err(e) => format!("<{e}>"),
            };
            out.push(Mismatch {
                text: format!(
                    "seed {seed} RESP{protocol} command #{i}: {}\n  {why}\n  {}: {}\n  redis-server: {}\n  previous commands:\n    {}",
                    render(&cmd),
                    subject.kind().name(),
                    show_r(&ra),
                    show_r(&rb),
                    history.iter().cloned().collect::<Vec<_>>().join("\n    ")
                ),
            });
            if !keep_going {
                break;
            }
            // Re-sync both servers and carry on.
            a = open(subject, protocol);
            b = open(reference, protocol);
            history.clear();
            batch.clear();
            continue;
        }
        history.push_back(render(&cmd));
        if history.len() > 8 {
            history.pop_front();
        }
    }
    eprintln!("  reply types (first byte: count): {kinds:?}");
    out
}

fn differential(protocol: u8) {
    let subject = Builder::subject().start().expect("start server under test");
    let reference = Builder::redis_cluster()
        .start()
        .expect("start redis-server");
    let n = env_u64("DIFF_COMMANDS", 2000);
    let keep_going = std::env::var("DIFF_KEEP_GOING").is_ok_and(|v| v == "1");
    let mut all = Vec::new();
    for seed in seeds() {
        all.extend(run_seed(
            &subject, &reference, seed, protocol, n, keep_going,
        ));
    }
    assert!(
        all.is_empty(),
        "{} mismatches (replay with DIFF_SEEDS=<seed>):\n{}",
        all.len(),
        all.iter()
            .map(|m| m.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

#[test]
fn differential_resp2() {
    if !redis_tests::tools::available("differential_resp2", &["redis-server"]) {
        return;
    }
    differential(2);
}

#[test]
fn differential_resp3() {
    if !redis_tests::tools::available("differential_resp3", &["redis-server"]) {
        return;
    }
    differential(3);
}
