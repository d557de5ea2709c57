//! Differential test: the same command sequence through our handlers and through a real
//! redis-server 7.0.15, comparing reply bytes in RESP2 and RESP3.
//!
//! Only commands with deterministic replies are used (no KEYS/SCAN order, no clock-dependent
//! TTLs). Needs `redis-server` on PATH (the README's test command installs it).

use crate::commands::strings::tests::run_bin;
use crate::storage::Db;
use pinnacle_resp::Protocol;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server child stopped (by its pid) when dropped, even if the test panics.
pub(crate) struct RedisServer {
    child: Child,
    pub(crate) port: u16,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_redis() -> RedisServer {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (apt-get install redis-server)");
    let server = RedisServer { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// Reads one complete reply and returns its raw bytes.
pub(crate) fn read_reply(r: &mut BufReader<TcpStream>, out: &mut Vec<u8>) {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).expect("read");
    out.extend_from_slice(&line);
    let head = line[0];
    let n: i64 = std::str::from_utf8(&line[1..line.len() - 2])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    match head {
        b'$' | b'=' | b'!' if n >= 0 => {
            let mut buf = vec![0; n as usize + 2];
            r.read_exact(&mut buf).expect("read bulk");
            out.extend_from_slice(&buf);
        }
        b'*' | b'~' | b'>' => (0..n.max(0)).for_each(|_| read_reply(r, out)),
        b'%' | b'|' => (0..2 * n).for_each(|_| read_reply(r, out)),
        _ => {}
    }
}

pub(crate) fn encode_cmd(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn split(cmd: &str) -> Vec<Vec<u8>> {
    cmd.split(' ').map(|s| s.as_bytes().to_vec()).collect()
}

/// The script: strings and keys with their edge cases.
fn script() -> Vec<Vec<Vec<u8>>> {
    let mut cmds: Vec<Vec<Vec<u8>>> = [
        "GET k",
        "SET k v",
        "GET k",
        "SET k v NX",
        "SET k w XX",
        "SET k x GET",
        "SET n y GET",
        "SET k v NX XX",
        "SET k v EX 0",
        "SET k v EX -5",
        "SET k v PX abc",
        "SET k v KEEPTTL EX 5",
        "SET k v FOO",
        "SET k v GET NX",
        "SET k2 v GET XX",
        "SET k v PXAT 1",
        "GET k",
        "SETNX k a",
        "SETNX k b",
        "SETEX k 0 v",
        "SETEX k x v",
        "PSETEX k -1 v",
        "GETSET k z",
        "GETSET nk z",
        "GETDEL k",
        "GETDEL k",
        "GETEX nk",
        "GETEX nk PERSIST",
        "GETEX nk FOO",
        "GETEX nk EX 0",
        "GETEX nk PX abc",
        "GETEX cnt EX 0",
        "GETEX cnt PXAT x",
        "GETEX nk EX 5 PX 5",
        "GETEX nk PXAT 1",
        "EXISTS nk",
        "MSET a 1 b 2 c 3",
        "MGET a b c d",
        "MSET a 1 b",
        "MSETNX a 1 z 2",
        "MSETNX y 1 z 2",
        "MSETNX y",
        "INCR cnt",
        "INCRBY cnt 10",
        "DECRBY cnt 3",
        "DECR cnt",
        "INCRBY cnt x",
        "DECRBY cnt -9223372036854775808",
        "SET cnt 9223372036854775807",
        "INCR cnt",
        "SET cnt -9223372036854775808",
        "DECR cnt",
        "SET cnt 01",
        "INCR cnt",
        "SET cnt ' 1'",
        "INCR cnt",
        "SET cnt -0",
        "INCR cnt",
        "INCRBYFLOAT f 10.5",
        "INCRBYFLOAT f 0.1",
        "INCRBYFLOAT f -5e2",
        "INCRBYFLOAT f 1e-20",
        "INCRBYFLOAT f abc",
        "INCRBYFLOAT f inf",
        "INCRBYFLOAT f 0x10",
        "INCRBYFLOAT f 1.23456789012345678901",
        "SET f 3.0e3",
        "INCRBYFLOAT f 0",
        "INCRBYFLOAT g 1e308",
        "INCRBYFLOAT g -1e308",
        "INCRBYFLOAT h 0.1",
        "INCRBYFLOAT h 0.2",
        "INCRBYFLOAT h 1e-320",
        "APPEND s foo",
        "APPEND s bar",
        "STRLEN s",
        "STRLEN nos",
        "GETRANGE s 0 -1",
        "GETRANGE s -3 -1",
        "GETRANGE s -1 -3",
        "GETRANGE s 10 20",
        "GETRANGE s 2 1",
        "GETRANGE s -100 100",
        "GETRANGE s x 1",
        "SUBSTR s 1 2",
        "GETRANGE nos 0 -1",
        "SETRANGE s 1 X",
        "SETRANGE s 10 Y",
        "GET s",
        "SETRANGE s -1 x",
        "SETRANGE s 536870912 x",
        "SETRANGE ns 3 abc",
        "GET ns",
        "MSET key1 ohmytext key2 mynewtext",
        "LCS key1 key2",
        "LCS key1 key2 LEN",
        "LCS key1 key2 IDX",
        "LCS key1 key2 IDX MINMATCHLEN 4 WITHMATCHLEN",
        "LCS key1 key2 IDX WITHMATCHLEN",
        "LCS key1 key2 IDX LEN",
        "LCS key1 key2 FOO",
        "LCS key1 nokey",
        "LCS key1 key2 MINMATCHLEN",
        "DEL a a b nokey",
        "UNLINK c",
        "EXISTS a b c key1 key1",
        "TOUCH key1 key2 nokey",
        "TYPE key1",
        "TYPE nokey",
        "EXPIRE nokey 10",
        "TTL nokey",
        "PTTL nokey",
        "EXPIRETIME nokey",
        "PEXPIRETIME nokey",
        "TTL key1",
        "PTTL key1",
        "EXPIRETIME key1",
        "PEXPIREAT key1 99999999999999",
        "PEXPIRETIME key1",
        "EXPIRETIME key1",
        "EXPIREAT key1 99999999999999 NX",
        "EXPIREAT key1 99999999999998 GT",
        "EXPIREAT key1 99999999999998 LT",
        "PEXPIRETIME key1",
        "EXPIRE key1 10 NX XX",
        "EXPIRE key1 10 GT LT",
        "EXPIRE key1 10 foo",
        "EXPIRE key1 x",
        "EXPIRE key1 9223372036854775807",
        "PEXPIRE key1 9223372036854775807",
        "PERSIST key1",
        "PERSIST key1",
        "TTL key1",
        "EXPIRE key1 100 XX",
        "EXPIRE key1 -1",
        "EXISTS key1",
        "RENAME nokey x",
        "RENAMENX nokey x",
        "RENAME key2 key3",
        "GET key3",
        "RENAME key3 key3",
        "RENAMENX key3 key3",
        "SET k4 v",
        "RENAMENX key3 k4",
        "RENAMENX key3 k5",
        "COPY k5 k6",
        "COPY k5 k6",
        "COPY k5 k6 REPLACE",
        "COPY k5 k5",
        "COPY k5 k6 DB 16",
        "COPY k5 k6 DB x",
        "COPY k5 k6 FOO",
        "COPY nokey k7",
        "OBJECT ENCODING k5",
        "OBJECT ENCODING cnt",
        "OBJECT ENCODING nokey",
        "SET i 123",
        "OBJECT ENCODING i",
        "OBJECT REFCOUNT i",
        "OBJECT REFCOUNT k5",
        "OBJECT FREQ k5",
        "OBJECT HELP",
        "DUMP nokey",
        "RESTORE k5 0 xxx",
        "RESTORE k5 -1 xxx",
        "RESTORE new 0 xxx",
        "RESTORE new -1 xxx",
        "RESTORE new 0 xxx FOO",
        "RESTORE new 0 xxx IDLETIME -1",
        "RESTORE new 0 xxx FREQ 300",
        "RESTORE k5 0 xxx REPLACE",
        "SCAN x",
        "SCAN 0 COUNT 0",
        "SCAN 0 MATCH",
        "SCAN 18446744073709551616",
        "FLUSHALL FOO",
        "FLUSHDB SYNC ASYNC",
        "FLUSHALL",
        "DBSIZE",
        "RANDOMKEY",
        "KEYS *",
        "SCAN 0",
    ]
    .iter()
    .map(|c| split(c))
    .collect();
    // Binary-safe keys and values, and the empty key.
    cmds.push(vec![
        b"SET".to_vec(),
        b"\x00\xff\r\n".to_vec(),
        b"\x00\x01\r\n".to_vec(),
    ]);
    cmds.push(vec![b"GET".to_vec(), b"\x00\xff\r\n".to_vec()]);
    cmds.push(vec![b"SET".to_vec(), b"".to_vec(), b"".to_vec()]);
    cmds.push(vec![b"GET".to_vec(), b"".to_vec()]);
    cmds.push(vec![b"STRLEN".to_vec(), b"".to_vec()]);
    cmds.push(vec![
        b"SETRANGE".to_vec(),
        b"e".to_vec(),
        b"5".to_vec(),
        b"".to_vec(),
    ]);
    cmds.push(vec![
        b"SETRANGE".to_vec(),
        b"".to_vec(),
        b"3".to_vec(),
        b"".to_vec(),
    ]);
    for opt in [&b"\xff\r\x99"[..], b"\r\n", b"ab\x00cd", b"\nx\n"] {
        cmds.push(vec![
            b"EXPIRE".to_vec(),
            b"k".to_vec(),
            b"10".to_vec(),
            opt.to_vec(),
        ]);
    }
    cmds.push(split("DBSIZE"));
    cmds.extend(generated());
    cmds
}

/// Random but seeded cases: long-double arithmetic and LCS ranges are easy to get subtly wrong.
fn generated() -> Vec<Vec<Vec<u8>>> {
    let mut seed: u64 = 0x5EED_1234_ABCD_0001;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut cmds = Vec::new();
    for i in 0..300 {
        let digits: String = (0..1 + next(25))
            .map(|_| char::from(b'0' + next(10) as u8))
            .collect();
        let mut num = digits.clone();
        if next(2) == 0 {
            let frac: String = (0..1 + next(20))
                .map(|_| char::from(b'0' + next(10) as u8))
                .collect();
            num = format!("{num}.{frac}");
        }
        if next(4) == 0 {
            num = format!("{num}e{}{}", if next(2) == 0 { "-" } else { "" }, next(40));
        }
        if next(3) == 0 {
            num = format!("-{num}");
        }
        let key = format!("fl{}", i % 7);
        cmds.push(vec![
            b"INCRBYFLOAT".to_vec(),
            key.into_bytes(),
            num.into_bytes(),
        ]);
    }
    for i in 0..60 {
        let gen = |next: &mut dyn FnMut(u64) -> u64| -> Vec<u8> {
            (0..next(30)).map(|_| b"abcd"[next(4) as usize]).collect()
        };
        let a = gen(&mut next);
        let b = gen(&mut next);
        cmds.push(vec![b"MSET".to_vec(), b"la".to_vec(), a, b"lb".to_vec(), b]);
        let opts: &[&str] = match i % 4 {
            0 => &["IDX"],
            1 => &["IDX", "WITHMATCHLEN"],
            2 => &["IDX", "MINMATCHLEN", "2", "WITHMATCHLEN"],
            _ => &[],
        };
        let mut cmd = split("LCS la lb");
        cmd.extend(opts.iter().map(|o| o.as_bytes().to_vec()));
        cmds.push(cmd);
        cmds.push(split("LCS la lb LEN"));
    }
    for _ in 0..100 {
        let len = next(12) as i64;
        let v: Vec<u8> = (0..len).map(|_| b'a' + next(26) as u8).collect();
        cmds.push(vec![b"SET".to_vec(), b"gr".to_vec(), v]);
        let s = next(30) as i64 - 15;
        let e = next(30) as i64 - 15;
        cmds.push(split(&format!("GETRANGE gr {s} {e}")));
        let off = next(15);
        cmds.push(split(&format!("SETRANGE gr {off} xy")));
        cmds.push(split("GET gr"));
    }
    cmds
}

fn compare(proto: Protocol, db: &Db) {
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
    let mut mismatches = Vec::new();
    for cmd in script() {
        writer.write_all(&encode_cmd(&cmd)).expect("send");
        let mut theirs = Vec::new();
        read_reply(&mut reader, &mut theirs);
        let argv: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
        let ours = run_bin(db, &argv).to_bytes(proto);
        if ours[..] != theirs[..] {
            mismatches.push(format!(
                "{}\n  redis: {:?}\n  ours:  {:?}",
                String::from_utf8_lossy(&cmd.join(&b' ')),
                String::from_utf8_lossy(&theirs),
                String::from_utf8_lossy(&ours)
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn same_bytes_as_redis_resp2() {
    compare(Protocol::Resp2, &Db::in_memory());
}

#[test]
fn same_bytes_as_redis_resp3() {
    compare(Protocol::Resp3, &Db::in_memory());
}

#[test]
fn same_bytes_as_redis_on_the_lsm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), pinnacle_lsm::SyncPolicy::Never).expect("open");
    compare(Protocol::Resp2, &db);
}
