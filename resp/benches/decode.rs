//! Request decode throughput: our `RequestDecoder` against `redis-protocol`'s RESP2 decoder
//! (`decode_bytes_mut`, what its tokio codec calls). Run with
//! `cargo bench -p pinnacle-resp --bench decode`. Plain timing loops (no criterion) to keep the
//! build light on the shared machine; each line is the best of several runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pinnacle_resp::RequestDecoder;

fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// `SET key:NNNNNN <100 bytes>` × n, as redis-benchmark -P sends them.
fn set_pipeline(n: usize) -> Vec<u8> {
    let value = [b'x'; 100];
    (0..n)
        .flat_map(|i| multibulk(&[b"SET", format!("key:{i:06}").as_bytes(), &value]))
        .collect()
}

/// Best wall time of `runs` runs of `f`.
fn best(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut out = 0;
    for _ in 0..runs {
        let t = Instant::now();
        out = f();
        best = best.min(t.elapsed());
    }
    (best, out)
}

/// Feeds `input` in `chunk`-byte reads and decodes after each, returning the request count.
fn ours(input: &[u8], chunk: usize) -> usize {
    let mut d = RequestDecoder::new();
    let mut buf = BytesMut::new();
    let mut n = 0;
    for piece in input.chunks(chunk) {
        d.reserve_for_read(&mut buf);
        buf.extend_from_slice(piece);
        while let Ok(Some(args)) = d.decode(&mut buf, true) {
            black_box(&args);
            n += 1;
        }
    }
    n
}

fn theirs(input: &[u8], chunk: usize) -> usize {
    let mut buf = BytesMut::new();
    let mut n = 0;
    for piece in input.chunks(chunk) {
        buf.reserve(chunk);
        buf.extend_from_slice(piece);
        while let Ok(Some((frame, _, _))) =
            redis_protocol::resp2::decode::decode_bytes_mut(&mut buf)
        {
            black_box(&frame);
            n += 1;
        }
    }
    n
}

fn report(name: &str, bytes: usize, (t, n): (Duration, usize)) {
    let s = t.as_secs_f64();
    println!(
        "{name:<58} {:>8.2} M req/s {:>8.0} MB/s  ({n} requests, {:.1} ms)",
        n as f64 / s / 1e6,
        bytes as f64 / s / 1e6,
        s * 1e3
    );
}

fn main() {
    let n = 200_000;
    let input = set_pipeline(n);
    println!(
        "SET key:NNNNNN <100 B> pipeline: {n} requests, {} bytes",
        input.len()
    );
    for chunk in [input.len(), 16 * 1024] {
        let label = if chunk == input.len() {
            "all in one buffer".to_string()
        } else {
            format!("{chunk}-byte reads")
        };
        report(
            &format!("pinnacle RequestDecoder, {label}"),
            input.len(),
            best(5, || ours(&input, chunk)),
        );
        report(
            &format!("redis-protocol resp2 decode_bytes_mut, {label}"),
            input.len(),
            best(5, || theirs(&input, chunk)),
        );
    }

    let ping: Vec<u8> = b"PING\r\n".repeat(n);
    report(
        "pinnacle RequestDecoder, inline PING, 16 KiB reads",
        ping.len(),
        best(5, || ours(&ping, 16 * 1024)),
    );

    // One 256 MiB value in 16 KiB reads.
    let big = 256 << 20;
    let mut input = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${big}\r\n").into_bytes();
    input.resize(input.len() + big, b'v');
    input.extend_from_slice(b"\r\n");
    report(
        "pinnacle RequestDecoder, one 256 MiB SET, 16 KiB reads",
        input.len(),
        best(3, || ours(&input, 16 * 1024)),
    );
    report(
        "redis-protocol, one 256 MiB SET, 16 KiB reads",
        input.len(),
        best(3, || theirs(&input, 16 * 1024)),
    );

    // One MSET of 100 000 pairs (200 001 elements, ~2.6 MB) in 16 KiB reads: redis-protocol
    // parses the array again from its first element after every read.
    let pairs: Vec<Vec<u8>> = (0..100_000)
        .flat_map(|i| {
            [
                format!("k{i:07}").into_bytes(),
                format!("v{i:07}").into_bytes(),
            ]
        })
        .collect();
    let mut args: Vec<&[u8]> = vec![b"MSET"];
    args.extend(pairs.iter().map(|p| p.as_slice()));
    let input = multibulk(&args);
    report(
        "pinnacle RequestDecoder, MSET 100k pairs, 16 KiB reads",
        input.len(),
        best(3, || ours(&input, 16 * 1024)),
    );
    report(
        "redis-protocol, MSET 100k pairs, 16 KiB reads",
        input.len(),
        best(1, || theirs(&input, 16 * 1024)),
    );
}
