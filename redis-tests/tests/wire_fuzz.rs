//! End-to-end wire fuzz against redis-server: random byte streams built from valid multibulk
//! commands, inline lines (quotes, escapes, tabs, blank lines) and broken fragments (bad
//! headers, wrong types, short bulks, garbage) are sent, split at random points, on a fresh
//! connection to both servers; the client then half-closes and reads to EOF. Reply bytes and
//! the close must match exactly (commands are deterministic: no ids, times or versions).
//! Run without a password and with `requirepass` (pre-auth limits, NOAUTH).
//!
//! `WIRE_SEED` (default fixed, printed) and `WIRE_CASES` (default 300 per run).

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use redis_tests::rng::Rng;
use redis_tests::{encode_command, show, Builder, Server};

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    let s: &&str = rng.pick(items);
    s
}

fn random_bytes(rng: &mut Rng, max: u64) -> Vec<u8> {
    let n = rng.below(max + 1) as usize;
    (0..n).map(|_| rng.below(256) as u8).collect()
}

/// One fragment of a request stream.
fn fragment(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0..=3 => {
            let key = format!("{{w}}k{}", rng.below(4));
            let cmd: Vec<Vec<u8>> = match rng.below(8) {
                0 => vec![b"PING".to_vec()],
                1 => vec![b"ECHO".to_vec(), random_bytes(rng, 20)],
                2 => vec![b"SET".to_vec(), key.into_bytes(), random_bytes(rng, 10)],
                3 => vec![b"GET".to_vec(), key.into_bytes()],
                4 => vec![b"INCR".to_vec(), b"{w}n".to_vec()],
                5 => vec![b"EXISTS".to_vec(), key.into_bytes(), b"{w}n".to_vec()],
                6 => vec![
                    b"AUTH".to_vec(),
                    pick(rng, &["secret", "wrong"]).as_bytes().to_vec(),
                ],
                _ => vec![b"NOPE".to_vec(), random_bytes(rng, 8)],
            };
            encode_command(&cmd)
        }
        4..=6 => pick(
            rng,
            &[
                "PING\r\n",
                "PING\n",
                "ECHO hello\r\n",
                "ECHO \"a b\"\r\n",
                "ECHO 'x y'\r\n",
                "ECHO \"\\x41\\n\\t\\\\\"\r\n",
                "ECHO 'it\\'s'\r\n",
                "SET {w}k1 \"v v\"\r\n",
                "GET {w}k1\r\n",
                "ECHO\ta\r\n",
                "  PING  \r\n",
                "\r\n",
                "\n",
                "ECHO \"\\x4g\"\r\n",
                "ECHO \"\\u\"\r\n",
                "ECHO \"a\"b\r\n",
                "ECHO \"abc\r\n",
                "ECHO 'abc\r\n",
                "ECHO \"\"\r\n",
                "ECHO ''\r\n",
                "AUTH secret\r\n",
                "AUTH default secret\r\n",
                "INCR {w}n\r\n",
                "\x00PING\r\n",
                "GET\r\n",
            ],
        )
        .as_bytes()
        .to_vec(),
        _ => pick(
            rng,
            &[
                "*abc\r\n",
                "*-1\r\n",
                "*0\r\n",
                "*1\r\n$-1\r\n",
                "*1\r\n+x\r\n",
                "*1\r\n:1\r\n",
                "*1\r\n$4\r\nPINGxx",
                "*2\r\n$4\r\nECHO\r\n$1\r\n",
                "$3\r\nfoo\r\n",
                ":1\r\n",
                "*3000000000\r\n",
                "*1\r\n$9999999999\r\n",
                "*1\r\n$4\r\nPI",
                "*11\r\n",
                "*1\r\n$16385\r\n",
                "*2\r\n$3\r\nGET\r\n$1\r\nk",
                "*1 \r\n$4\r\nPING\r\n",
                "*01\r\n$04\r\nPING\r\n",
                "*+1\r\n$4\r\nPING\r\n",
                "*1\r\n$+4\r\nPING\r\n",
                "garbage line with spaces\r\n",
            ],
        )
        .as_bytes()
        .to_vec(),
    }
}

/// Mask connection ids in HELLO replies (a shifted frame can turn `ECHO hello` into `HELLO`).
fn mask_ids(mut b: Vec<u8>) -> Vec<u8> {
    let pat = b"$2\r\nid\r\n:";
    let mut i = 0;
    while let Some(p) = b[i..].windows(pat.len()).position(|w| w == pat) {
        let start = i + p + pat.len();
        let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        b.splice(start..end, *b"N");
        i = start;
    }
    b
}

/// Send `stream` split into random pieces, half-close, read to EOF.
fn exchange(server: &Server, stream: &[u8], cuts: &[usize]) -> (Vec<u8>, bool) {
    let mut c = server.conn().expect("connect");
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        if cut > last {
            // The server may already have closed after a protocol error.
            let _ = c.stream().write_all(&stream[last..cut]);
            std::thread::sleep(Duration::from_millis(2));
            last = cut;
        }
    }
    let _ = c.stream().shutdown(Shutdown::Write);
    let (bytes, eof) = c
        .read_until_close(Duration::from_secs(10))
        .expect("read to EOF");
    (mask_ids(bytes), eof)
}

fn run(password: bool) {
    let seed = std::env::var("WIRE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let cases = std::env::var("WIRE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    eprintln!("wire fuzz: seed {seed}, {cases} cases, requirepass {password}");
    let with_pass = |b: Builder| if password { b.requirepass("secret") } else { b };
    let subject = with_pass(Builder::subject())
        .start()
        .expect("start server under test");
    let reference = with_pass(Builder::redis_cluster())
        .start()
        .expect("start redis-server");
    let mut rng = Rng::new(seed ^ u64::from(password));
    let mut failures = Vec::new();
    for case in 0..cases {
        let n = 1 + rng.below(6);
        let stream: Vec<u8> = (0..n).flat_map(|_| fragment(&mut rng)).collect();
        let mut cuts: Vec<usize> = (0..rng.below(4))
            .map(|_| rng.below(stream.len() as u64 + 1) as usize)
            .collect();
        cuts.sort_unstable();
        let (ra, ea) = exchange(&subject, &stream, &cuts);
        let (rb, eb) = exchange(&reference, &stream, &cuts);
        if ra != rb || ea != eb {
            failures.push(format!(
                "case {case}: sent {}\n  {}: {} (eof {ea})\n  redis-server: {} (eof {eb})",
                show(&stream),
                subject.kind().name(),
                show(&ra),
                show(&rb)
            ));
            if failures.len() >= 10 {
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed}: {} mismatches (replay with WIRE_SEED={seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn wire_fuzz_authenticated() {
    if !redis_tests::tools::available("wire_fuzz_authenticated", &["redis-server"]) {
        return;
    }
    run(false);
}

#[test]
fn wire_fuzz_before_auth() {
    if !redis_tests::tools::available("wire_fuzz_before_auth", &["redis-server"]) {
        return;
    }
    run(true);
}
