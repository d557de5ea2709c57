//! redis-benchmark `-t ping,set,get,incr,mset -n 20000 -q`, without and with `-P 16`, must
//! finish every test with zero errors; the INCR counter proves every request was executed.

use std::process::Command;

use redis_tests::{tools, RawConn, Server};

const N: u64 = 20_000;
const TESTS: [&str; 6] = [
    "PING_INLINE",
    "PING_MBULK",
    "SET",
    "GET",
    "INCR",
    "MSET (10 keys)",
];

/// Run redis-benchmark and return, per test name, its requests per second.
fn bench(server: &Server, extra: &[&str]) -> Vec<(String, f64)> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .args(["-t", "ping,set,get,incr,mset", "-n", &N.to_string(), "-q"])
        .args(extra)
        .output()
        .expect("run redis-benchmark");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "redis-benchmark {extra:?} failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains("Error") && !text.contains("WARNING"),
            "redis-benchmark {extra:?} reported a problem:\n{stdout}\n{stderr}"
        );
    }
    // Progress lines end in \r; each final result is "NAME: <rps> requests per second, p50=...".
    stdout
        .split(['\r', '\n'])
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(": ")?;
            let rps = rest
                .strip_suffix(" msec")?
                .split_once(" requests per second")?
                .0;
            Some((name.to_string(), rps.parse().ok()?))
        })
        .collect()
}

fn check_all_tests_ran(results: &[(String, f64)], extra: &[&str]) {
    let names: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names, TESTS,
        "redis-benchmark {extra:?} results: {results:?}"
    );
    for (name, rps) in results {
        assert!(*rps > 0.0, "{name} reported {rps} rps");
    }
}

fn counter(server: &Server) -> Vec<u8> {
    let mut c = RawConn::connect(server.port()).expect("connect");
    c.call(&["GET", "counter:__rand_int__"])
        .expect("GET counter")
}

#[test]
fn redis_benchmark_zero_errors() {
    if !tools::available("redis_benchmark_zero_errors", &["redis-benchmark"]) {
        return;
    }
    let server = Server::subject().expect("start server");
    for (i, extra) in [&[][..], &["-P", "16"][..]].iter().enumerate() {
        let results = bench(&server, extra);
        check_all_tests_ran(&results, extra);
        let expect = (N * (i as u64 + 1)).to_string();
        assert_eq!(
            counter(&server),
            format!("${}\r\n{expect}\r\n", expect.len()).into_bytes(),
            "every INCR of run {extra:?} was applied"
        );
        eprintln!("redis-benchmark {extra:?}: {results:?}");
    }
    let mut c = RawConn::connect(server.port()).expect("connect");
    // The payload is 3 random bytes (`-d` default).
    let v = c.call(&["GET", "key:__rand_int__"]).expect("GET");
    assert!(
        v.starts_with(b"$3\r\n") && v.len() == 9,
        "{}",
        redis_tests::show(&v)
    );
}
