//! Differential test of consumer groups: seeded random sequences of XGROUP, XREADGROUP, XACK,
//! XPENDING, XCLAIM, XAUTOCLAIM, XINFO (plus XADD/XDEL/XTRIM/XSETID/DEL/RENAME/COPY around them)
//! through our handlers and a real redis-server 7.0.15, reply bytes compared in RESP2 and
//! RESP3.
//!
//! Time differs between the two servers, so before comparing: integers that are Unix-ms
//! timestamps (XINFO FULL's seen/delivery times) become 0, as do the idle times (XPENDING's
//! third element, XINFO CONSUMERS' `idle`) and Redis's memory-layout counters
//! (`radix-tree-keys`, `radix-tree-nodes`). Min-idle thresholds are 0 or far from any real
//! idle time, so which entries are claimed never depends on timing.

use crate::commands::keys::redis_diff::{encode_cmd, read_reply, start_redis};
use crate::storage::Db;
use bytes::Bytes;
use pinnacle_resp::{Protocol, Reply};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Runs one command in-process, with XGROUP/XINFO subcommands and XREADGROUP routed here.
pub(crate) fn run(db: &Db, proto: Protocol, args: &[&[u8]]) -> Reply {
    let argv: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
    let mut name = String::from_utf8_lossy(args[0]).to_ascii_lowercase();
    if (name == "xgroup" || name == "xinfo") && args.len() > 1 {
        name = format!(
            "{name}|{}",
            String::from_utf8_lossy(args[1]).to_ascii_lowercase()
        );
    }
    if name == "xreadgroup" {
        return super::readgroup::xreadgroup_now(db, proto, &argv);
    }
    if let Some((_, h)) = super::PDB_HANDLERS.iter().find(|(n, _)| *n == name) {
        return h(db, proto, &argv);
    }
    crate::commands::sets::tests::run_p(db, proto, args)
}

/// A parsed reply, enough to normalise it.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// `+ - : _ , # (` lines: type byte and text.
    Line(u8, Vec<u8>),
    /// `$ = !` with a length (`None` = `$-1`).
    Blob(u8, Option<Vec<u8>>),
    /// `* % ~ >` with children (maps flattened); `None` = `*-1`.
    Agg(u8, Option<Vec<Node>>),
}

fn parse(b: &[u8], at: &mut usize) -> Node {
    let eol = b[*at..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("line")
        + *at;
    let t = b[*at];
    let text = b[*at + 1..eol].to_vec();
    *at = eol + 2;
    let n: i64 = std::str::from_utf8(&text)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    match t {
        b'$' | b'=' | b'!' => {
            if n < 0 {
                return Node::Blob(t, None);
            }
            let v = b[*at..*at + n as usize].to_vec();
            *at += n as usize + 2;
            Node::Blob(t, Some(v))
        }
        b'*' | b'~' | b'>' | b'%' => {
            if n < 0 {
                return Node::Agg(t, None);
            }
            let items = if t == b'%' { 2 * n } else { n };
            Node::Agg(t, Some((0..items).map(|_| parse(b, at)).collect()))
        }
        _ => Node::Line(t, text),
    }
}

fn emit(n: &Node, out: &mut Vec<u8>) {
    match n {
        Node::Line(t, text) => {
            out.push(*t);
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        Node::Blob(t, None) => out.extend_from_slice(&[*t, b'-', b'1', b'\r', b'\n']),
        Node::Blob(t, Some(v)) => {
            out.extend_from_slice(format!("{}{}\r\n", *t as char, v.len()).as_bytes());
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        Node::Agg(t, None) => out.extend_from_slice(&[*t, b'-', b'1', b'\r', b'\n']),
        Node::Agg(t, Some(kids)) => {
            let n = if *t == b'%' {
                kids.len() / 2
            } else {
                kids.len()
            };
            out.extend_from_slice(format!("{}{}\r\n", *t as char, n).as_bytes());
            for k in kids {
                emit(k, out);
            }
        }
    }
}

const ZEROED_AFTER: &[&[u8]] = &[
    b"idle",
    b"seen-time",
    b"radix-tree-keys",
    b"radix-tree-nodes",
];

fn zero() -> Node {
    Node::Line(b':', b"0".to_vec())
}

/// Zeroes time-dependent and layout-dependent integers (see the module doc).
fn normalise_node(n: &mut Node, pending_entries: bool) {
    let Node::Agg(_, Some(kids)) = n else {
        if let Node::Line(b':', text) = n {
            let v: i64 = std::str::from_utf8(text)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if v >= 1_000_000_000_000 {
                *n = zero();
            }
        }
        return;
    };
    for i in 1..kids.len() {
        if let Node::Blob(_, Some(k)) = &kids[i - 1] {
            if ZEROED_AFTER.contains(&k.as_slice()) && matches!(kids[i], Node::Line(b':', _)) {
                kids[i] = zero();
            }
        }
    }
    for k in kids.iter_mut() {
        // XPENDING's extended form: `[id, consumer, idle, count]`.
        if pending_entries {
            if let Node::Agg(_, Some(e)) = k {
                if e.len() == 4 {
                    e[2] = zero();
                }
            }
        }
        normalise_node(k, false);
    }
}

fn normalise(cmd: &[Vec<u8>], b: &[u8]) -> Vec<u8> {
    let mut at = 0;
    let mut n = parse(b, &mut at);
    let pending = cmd[0].eq_ignore_ascii_case(b"xpending") && cmd.len() > 3;
    normalise_node(&mut n, pending);
    let mut out = Vec::new();
    emit(&n, &mut out);
    out
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.next(xs.len() as u64) as usize]
    }
}

const KEYS: &[&str] = &["s1", "s1", "s1", "s2", "s2", "str"];
const GROUPS: &[&str] = &["g1", "g1", "g1", "g2", "g3"];
const CONSUMERS: &[&str] = &["c1", "c2", "c3"];
const IDS: &[&str] = &[
    "1-1", "2-0", "2-1", "3", "4-2", "5-0", "6-1", "0", "0-1", "9-9", "12-0", "15-1", "20-0",
];
const BAD_IDS: &[&str] = &["x", "1-x", "-", "+", "(1", "18446744073709551616"];
const IDLES: &[&str] = &["0", "0", "10000000", "-5"];

fn group_cmd(r: &mut Rng, ms: &mut u64) -> String {
    let k = r.pick(KEYS);
    let g = r.pick(GROUPS);
    let c = r.pick(CONSUMERS);
    // Ids near the newest entries (most commands), or fixed small ones.
    let cur = *ms;
    let near = |r: &mut Rng| -> String {
        if r.next(3) == 0 {
            r.pick(IDS).to_string()
        } else {
            format!("{}-{}", cur.saturating_sub(r.next(6)), r.next(3))
        }
    };
    let id = near(r);
    let id2 = near(r);
    let n = r.next(4);
    let idle = r.pick(IDLES);
    match r.next(40) {
        0..=5 => {
            // Mostly growing ids, sometimes an old one (refused).
            *ms += r.next(2);
            let at = if r.next(8) == 0 { r.next(*ms + 1) } else { *ms };
            format!("XADD {k} {at}-{} f{n} v", r.next(3))
        }
        6 => format!(
            "XGROUP CREATE {k} {g} {} {}",
            r.pick(&["$", "0", "2-0", "5", "bad"]),
            r.pick(&[
                "",
                "MKSTREAM",
                "ENTRIESREAD 1",
                "MKSTREAM ENTRIESREAD 0",
                "ENTRIESREAD -2",
                "FOO",
                "ENTRIESREAD -1"
            ])
        )
        .trim_end()
        .to_string(),
        7 => format!(
            "XGROUP CREATE {k} {g} {} MKSTREAM",
            r.pick(&["0", "$", &id])
        ),
        8 => format!(
            "XGROUP SETID {k} {g} {} {}",
            r.pick(&["$", "0", "3", "-", "+", "(1", "bad"]),
            r.pick(&["", "ENTRIESREAD 2", "ENTRIESREAD x", "FOO 1", "ENTRIESREAD"])
        )
        .trim_end()
        .to_string(),
        9 => format!("XGROUP DESTROY {k} {g}"),
        10 => format!("XGROUP CREATECONSUMER {k} {g} {c}"),
        11 => format!("XGROUP DELCONSUMER {k} {g} {c}"),
        12..=16 => format!(
            "XREADGROUP GROUP {g} {c}{}{} STREAMS {k} {}",
            r.pick(&["", " COUNT 1", " COUNT 2", " COUNT 0", " COUNT -1"]),
            r.pick(&["", "", " NOACK"]),
            r.pick(&[">", ">", ">", "0", &id])
        ),
        17 => format!("XREADGROUP GROUP {g} {c} COUNT {n} STREAMS s1 s2 > {id}"),
        18 | 19 => format!("XACK {k} {g} {id} {id2}"),
        20 => format!("XPENDING {k} {g}"),
        21 | 22 => format!(
            "XPENDING {k} {g} {}{} {} {n}{}",
            r.pick(&["", "IDLE 0 ", "IDLE 10000000 "]),
            r.pick(&["-", "0", "(1-1", "2"]),
            r.pick(&["+", "5", "(5-0"]),
            r.pick(&["", "", " c1", " c2", " nobody"])
        ),
        23 | 24 => format!(
            "XCLAIM {k} {g} {c} {idle} {id} {id2}{}",
            r.pick(&[
                "",
                " JUSTID",
                " FORCE",
                " IDLE 100000000",
                " TIME 1",
                " RETRYCOUNT 5",
                " LASTID 7-0",
                " FORCE JUSTID RETRYCOUNT 2",
                " IDLE x",
                " BAR",
            ])
        ),
        25 | 26 => format!(
            "XAUTOCLAIM {k} {g} {c} {idle} {}{}",
            r.pick(&["0", "-", "(1-1", "3", "bad"]),
            r.pick(&[
                "",
                " COUNT 1",
                " COUNT 2 JUSTID",
                " JUSTID",
                " COUNT 0",
                " FOO"
            ])
        ),
        27 => format!("XINFO GROUPS {k}"),
        28 => format!("XINFO CONSUMERS {k} {g}"),
        29 => format!(
            "XINFO STREAM {k}{}",
            r.pick(&["", " FULL", " FULL COUNT 1", " FULL COUNT 0", " BAR"])
        ),
        30 => format!("XDEL {k} {id}"),
        31 => format!("XTRIM {k} MAXLEN {n}"),
        32 if r.next(4) == 0 => r
            .pick(&[
                "DEL s2",
                "DEL s1",
                "COPY s1 s2",
                "COPY s2 s1 REPLACE",
                "RENAME s1 s2",
            ])
            .to_string(),
        32 => format!("XREADGROUP GROUP {g} {c} COUNT 3 STREAMS {k} >"),
        33 => format!("XREADGROUP GROUP {g} {c} STREAMS {k} $"),
        34 => format!("XACK {k} {g} {}", r.pick(BAD_IDS)),
        35 => format!("XCLAIM {k} {g} {c} 0 {} JUSTID", r.pick(BAD_IDS)),
        36 => format!("XREADGROUP GROUP {g} {c} STREAMS {k} {}", r.pick(BAD_IDS)),
        37 => format!("XINFO STREAM {k} FULL COUNT {}", r.pick(&["x", "-1", "2"])),
        38 if r.next(2) == 0 => format!("TYPE {k}"),
        38 => format!(
            "XSETID {k} {}{}",
            r.pick(&["5-0", "9-9", "1-0", "0-1", "bad", &id]),
            r.pick(&[
                "",
                "",
                " ENTRIESADDED 100",
                " ENTRIESADDED 0",
                " ENTRIESADDED -1",
                " MAXDELETEDID 1-0",
                " MAXDELETEDID 99-0",
                " ENTRIESADDED 50 MAXDELETEDID 0-1",
                " FOO 1",
            ])
        ),
        _ => r
            .pick(&[
                "XGROUP HELP",
                "XINFO HELP",
                "XREADGROUP GROUP g1 c1 STREAMS s1 s2 >",
                "XREADGROUP COUNT 1 NOACK STREAMS s1 >",
                "XREADGROUP GROUP g1 c1 BLOCK x STREAMS s1 >",
                "XREADGROUP GROUP g1 c1 COUNT x STREAMS s1 >",
                "XREADGROUP GROUP g1 c1 FOO STREAMS s1 >",
                "XREAD GROUP g1 c1 STREAMS s1 >",
                "XREAD NOACK STREAMS s1 0",
                "XREAD STREAMS s1 >",
                "XREAD BLOCK x STREAMS s1 0",
                "XPENDING s1 g1 - +",
                "XPENDING s1 g1 - + x",
                "XPENDING s1 g1 IDLE x - + 1",
                "XPENDING s1 g1 IDLE 1 - +",
                "XPENDING s1 g1 (18446744073709551615-18446744073709551615 + 1",
                "XAUTOCLAIM s1 g1 c1 x 0",
                "XAUTOCLAIM s1 g1 c1 0 (18446744073709551615-18446744073709551615",
                "XCLAIM s1 g1 c1 x 1-1",
                "XCLAIM s1 g1 c1 0 1-1 LASTID x",
                "OBJECT ENCODING s1",
                "XINFO CONSUMERS str g1",
                "XGROUP CREATE str g1 $",
                "XGROUP DESTROY nokey g1",
                "XACK nokey g1 1-1",
            ])
            .to_string(),
    }
}

fn split(cmd: &str) -> Vec<Vec<u8>> {
    cmd.split(' ').map(|s| s.as_bytes().to_vec()).collect()
}

fn compare(proto: Protocol, seed: u64, steps: usize) {
    compare_on(&Db::in_memory(), proto, seed, steps);
}

fn compare_on(db: &Db, proto: Protocol, seed: u64, steps: usize) {
    let redis = start_redis();
    let stream = TcpStream::connect(("127.0.0.1", redis.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    if proto == Protocol::Resp3 {
        writer
            .write_all(&encode_cmd(&split("HELLO 3")))
            .expect("hello");
        read_reply(&mut reader, &mut Vec::new());
    }
    let mut rng = Rng(seed);
    let mut mismatches = Vec::new();
    let mut script = vec!["SET str x".to_string()];
    let mut ms = 1;
    script.extend((0..steps).map(|_| group_cmd(&mut rng, &mut ms)));
    for text in script {
        let cmd = split(&text);
        writer.write_all(&encode_cmd(&cmd)).expect("send");
        let mut theirs = Vec::new();
        read_reply(&mut reader, &mut theirs);
        let argv: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
        let ours = run(db, proto, &argv).to_bytes(proto);
        let (o, t) = (normalise(&cmd, &ours), normalise(&cmd, &theirs));
        if o != t {
            mismatches.push(format!(
                "{text}\n  redis: {:?}\n  ours:  {:?}",
                String::from_utf8_lossy(&theirs),
                String::from_utf8_lossy(&ours)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(15)].join("\n")
    );
}

#[test]
fn stream_groups_same_bytes_as_redis_resp2() {
    compare(Protocol::Resp2, 71, 1500);
}

#[test]
fn stream_groups_same_bytes_as_redis_resp3() {
    compare(Protocol::Resp3, 72, 1500);
}

#[test]
fn stream_groups_more_seeds() {
    for seed in [73, 74, 75, 76] {
        let proto = if seed % 2 == 0 {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        };
        compare(proto, seed, 800);
    }
}

#[test]
fn stream_groups_same_bytes_on_the_lsm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), pinnacle_lsm::SyncPolicy::Never).expect("open");
    compare_on(&db, Protocol::Resp3, 77, 1500);
}

#[test]
fn normalising_zeroes_only_time_fields() {
    let cmd = split("XPENDING s g - + 10");
    let a = b"*1\r\n*4\r\n$3\r\n1-1\r\n$1\r\nc\r\n:17\r\n:2\r\n";
    let b = b"*1\r\n*4\r\n$3\r\n1-1\r\n$1\r\nc\r\n:23\r\n:2\r\n";
    let c = b"*1\r\n*4\r\n$3\r\n1-1\r\n$1\r\nc\r\n:23\r\n:3\r\n";
    assert_eq!(normalise(&cmd, a), normalise(&cmd, b));
    assert_ne!(normalise(&cmd, a), normalise(&cmd, c));
    let info = split("XINFO CONSUMERS s g");
    let x = b"*1\r\n%3\r\n$4\r\nname\r\n$1\r\nc\r\n$7\r\npending\r\n:1\r\n$4\r\nidle\r\n:5\r\n";
    let y = b"*1\r\n%3\r\n$4\r\nname\r\n$1\r\nc\r\n$7\r\npending\r\n:2\r\n$4\r\nidle\r\n:9\r\n";
    assert_ne!(normalise(&info, x), normalise(&info, y));
    let mut out = Vec::new();
    emit(&parse(x, &mut 0), &mut out);
    assert_eq!(&out[..], &x[..]);
}
