//! redis-cli against the server under test: one-shot commands, `-3` (RESP3 via HELLO 3),
//! `--pipe` mass insert of 100k keys, `--scan` with and without `--pattern`.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use redis_tests::{encode_command, tools, Server};

/// Run redis-cli against `server` with `args`, feeding `stdin`; returns stdout (asserts exit 0).
fn cli(server: &Server, args: &[&str], stdin: Option<&[u8]>) -> String {
    let port = server.port().to_string();
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redis-cli");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input).expect("write redis-cli stdin");
    }
    let out = child.wait_with_output().expect("redis-cli output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "redis-cli {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn one_shot_commands() {
    if !tools::available("one_shot_commands", &["redis-cli"]) {
        return;
    }
    let s = Server::subject().expect("start server");
    assert_eq!(cli(&s, &["PING"], None), "PONG\n");
    assert_eq!(cli(&s, &["SET", "greeting", "hello world"], None), "OK\n");
    assert_eq!(cli(&s, &["GET", "greeting"], None), "hello world\n");
    assert_eq!(
        cli(&s, &["--no-raw", "GET", "greeting"], None),
        "\"hello world\"\n"
    );
    assert_eq!(cli(&s, &["--no-raw", "GET", "missing"], None), "(nil)\n");
    assert_eq!(
        cli(&s, &["--no-raw", "INCRBY", "n", "5"], None),
        "(integer) 5\n"
    );
    assert_eq!(
        cli(&s, &["--no-raw", "INCR", "greeting"], None),
        "(error) ERR value is not an integer or out of range\n"
    );
    assert_eq!(
        cli(&s, &["--no-raw", "NOSUCH", "a"], None),
        "(error) ERR unknown command 'NOSUCH', with args beginning with: 'a' \n"
    );
    assert_eq!(
        cli(&s, &["--no-raw", "MSET", "{t}a", "1", "{t}b", "2"], None),
        "OK\n"
    );
    assert_eq!(
        cli(&s, &["--no-raw", "MGET", "{t}a", "{t}nope", "{t}b"], None),
        "1) \"1\"\n2) (nil)\n3) \"2\"\n"
    );
    assert_eq!(
        cli(&s, &["--no-raw", "EXPIRE", "{t}a", "100"], None),
        "(integer) 1\n"
    );
    assert_eq!(cli(&s, &["--no-raw", "TYPE", "{t}a"], None), "string\n");
    assert_eq!(
        cli(&s, &["--no-raw", "DEL", "{t}a", "{t}b", "{t}c"], None),
        "(integer) 2\n"
    );
    assert_eq!(cli(&s, &["--no-raw", "DBSIZE"], None), "(integer) 2\n");
    // Binary-safe values given with -x from stdin (a trailing newline is part of the value).
    assert_eq!(cli(&s, &["-x", "SET", "bin"], Some(b"a\x00b\r\n")), "OK\n");
    assert_eq!(
        cli(&s, &["--no-raw", "STRLEN", "bin"], None),
        "(integer) 5\n"
    );
}

#[test]
fn resp3_with_dash_3() {
    if !tools::available("resp3_with_dash_3", &["redis-cli"]) {
        return;
    }
    let s = Server::subject().expect("start server");
    let hello = cli(&s, &["-3", "--no-raw", "HELLO", "3"], None);
    let lines: Vec<&str> = hello.lines().collect();
    assert_eq!(lines.len(), 7, "HELLO 3 has 7 map entries: {hello}");
    assert_eq!(lines[0], "1# \"server\" => \"redis\"", "{hello}");
    assert!(lines[1].starts_with("2# \"version\" => \""), "{hello}");
    assert_eq!(lines[2], "3# \"proto\" => (integer) 3", "{hello}");
    assert!(lines[3].starts_with("4# \"id\" => (integer) "), "{hello}");
    assert!(lines[4].starts_with("5# \"mode\" => \""), "{hello}");
    assert_eq!(lines[5], "6# \"role\" => \"master\"", "{hello}");
    assert!(lines[6].starts_with("7# \"modules\" => "), "{hello}");
    assert_eq!(
        cli(&s, &["-3", "--no-raw", "SET", "{k}1", "v"], None),
        "OK\n"
    );
    assert_eq!(cli(&s, &["-3", "--no-raw", "GET", "{k}1"], None), "\"v\"\n");
    assert_eq!(
        cli(&s, &["-3", "--no-raw", "GET", "missing"], None),
        "(nil)\n"
    );
    assert_eq!(
        cli(&s, &["-3", "--no-raw", "EXISTS", "{k}1", "{k}2"], None),
        "(integer) 1\n"
    );
    assert_eq!(
        cli(&s, &["-3", "--no-raw", "CONFIG", "GET", "appendonly"], None)
            .lines()
            .count(),
        1,
        "CONFIG GET in RESP3 is a one-entry map"
    );
}

#[test]
fn pipe_mass_insert_and_scan() {
    if !tools::available("pipe_mass_insert_and_scan", &["redis-cli"]) {
        return;
    }
    const N: usize = 100_000;
    let s = Server::subject().expect("start server");
    let mut input = Vec::with_capacity(N * 40);
    for i in 0..N {
        input.extend_from_slice(&encode_command(&[
            "SET".to_string(),
            format!("key:{i}"),
            format!("value-{i}"),
        ]));
    }
    let out = cli(&s, &["--pipe"], Some(&input));
    assert!(
        out.contains(&format!("errors: 0, replies: {N}")),
        "--pipe summary: {out}"
    );
    assert_eq!(cli(&s, &["DBSIZE"], None), format!("{N}\n"));
    assert_eq!(cli(&s, &["GET", "key:99999"], None), "value-99999\n");

    // --scan lists every key exactly once.
    let out = cli(&s, &["--scan"], None);
    let keys: Vec<&str> = out.lines().collect();
    let unique: BTreeSet<&str> = keys.iter().copied().collect();
    assert_eq!(
        unique.len(),
        N,
        "--scan returned {} keys ({} lines)",
        unique.len(),
        keys.len()
    );
    assert!(unique.contains("key:0") && unique.contains("key:99999"));

    // --scan --pattern lists exactly the matching keys.
    let expected = |pred: &dyn Fn(&str) -> bool| -> BTreeSet<String> {
        (0..N)
            .map(|i| format!("key:{i}"))
            .filter(|k| pred(k))
            .collect()
    };
    let got = |pattern: &str| -> BTreeSet<String> {
        cli(&s, &["--scan", "--pattern", pattern], None)
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(got("key:1234*"), expected(&|k| k.starts_with("key:1234")));
    assert_eq!(
        got("key:9?9"),
        expected(&|k| k.len() == 7 && k.starts_with("key:9") && k.ends_with('9'))
    );
    assert_eq!(got("key:[12]"), expected(&|k| k == "key:1" || k == "key:2"));
    assert!(got("nomatch*").is_empty());
}
