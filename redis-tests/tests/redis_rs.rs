//! redis-rs (the `redis` crate, tokio) against the server under test, over RESP2 and RESP3:
//! strings and keys round trips, pipelines, expiry.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, RedisResult, Value};
use redis_tests::Server;

async fn connect(server: &Server, resp3: bool) -> MultiplexedConnection {
    let url = if resp3 {
        format!("{}?protocol=resp3", server.url())
    } else {
        server.url()
    };
    let client = redis::Client::open(url).expect("client url");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("connect with redis-rs")
}

fn start() -> Server {
    Server::subject().expect("start server under test")
}

async fn strings_round_trip(resp3: bool) {
    let server = start();
    let mut c = connect(&server, resp3).await;

    let () = c.set("greeting", "hello").await.unwrap();
    let v: String = c.get("greeting").await.unwrap();
    assert_eq!(v, "hello");
    let missing: Option<String> = c.get("nope").await.unwrap();
    assert_eq!(missing, None);
    let raw: Value = redis::cmd("GET")
        .arg("nope")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(raw, Value::Nil);

    // Empty string, binary and large values survive byte for byte.
    let () = c.set("empty", "").await.unwrap();
    let v: Vec<u8> = c.get("empty").await.unwrap();
    assert!(v.is_empty());
    let bin: Vec<u8> = (0..=255u8).collect();
    let bin_key: Vec<u8> = vec![0, 0xff, b'\r', b'\n', b' '];
    let () = c.set(&bin_key, &bin).await.unwrap();
    let v: Vec<u8> = c.get(&bin_key).await.unwrap();
    assert_eq!(v, bin);
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let () = c.set("big", &big).await.unwrap();
    let v: Vec<u8> = c.get("big").await.unwrap();
    assert_eq!(v, big);
    let n: usize = c.strlen("big").await.unwrap();
    assert_eq!(n, big.len());

    // SET options.
    let r: Option<String> = redis::cmd("SET")
        .arg("greeting")
        .arg("x")
        .arg("NX")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(r, None, "SET NX on an existing key");
    let r: Option<String> = redis::cmd("SET")
        .arg("fresh")
        .arg("x")
        .arg("XX")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(r, None, "SET XX on a missing key");
    let old: Option<String> = redis::cmd("SET")
        .arg("greeting")
        .arg("world")
        .arg("GET")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(old.as_deref(), Some("hello"));
    let old: Option<String> = c.getset("greeting", "again").await.unwrap();
    assert_eq!(old.as_deref(), Some("world"));
    let gone: Option<String> = c.get_del("greeting").await.unwrap();
    assert_eq!(gone.as_deref(), Some("again"));
    let exists: bool = c.exists("greeting").await.unwrap();
    assert!(!exists);

    // Multi-key commands stay in one slot with a hash tag.
    let () = c
        .mset(&[("{u}a", "1"), ("{u}b", "2"), ("{u}c", "3")])
        .await
        .unwrap();
    let vals: Vec<Option<String>> = c.mget(&["{u}a", "{u}missing", "{u}c"]).await.unwrap();
    assert_eq!(vals, vec![Some("1".into()), None, Some("3".into())]);
    let set: bool = redis::cmd("MSETNX")
        .arg("{u}a")
        .arg("9")
        .arg("{u}z")
        .arg("9")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!set, "MSETNX with one existing key sets nothing");
    let z: Option<String> = c.get("{u}z").await.unwrap();
    assert_eq!(z, None);

    // Counters.
    let n: i64 = c.incr("ctr", 1).await.unwrap();
    assert_eq!(n, 1);
    let n: i64 = c.incr("ctr", 41).await.unwrap();
    assert_eq!(n, 42);
    let n: i64 = c.decr("ctr", 50).await.unwrap();
    assert_eq!(n, -8);
    let f: f64 = c.incr("ctr", 0.5f64).await.unwrap();
    assert_eq!(f, -7.5);
    let () = c.set("maxed", i64::MAX).await.unwrap();
    let e: RedisResult<i64> = c.incr("maxed", 1).await;
    let e = e.expect_err("INCR past i64::MAX must fail");
    assert!(
        e.to_string()
            .contains("increment or decrement would overflow"),
        "{e}"
    );
    let () = c.set("word", "abc").await.unwrap();
    let e = c
        .incr::<_, _, i64>("word", 1)
        .await
        .expect_err("INCR on non-integer");
    assert!(
        e.to_string()
            .contains("value is not an integer or out of range"),
        "{e}"
    );

    // APPEND / GETRANGE / SETRANGE.
    let n: usize = c.append("s", "Hello").await.unwrap();
    assert_eq!(n, 5);
    let n: usize = c.append("s", " World").await.unwrap();
    assert_eq!(n, 11);
    let v: String = c.getrange("s", -5, -1).await.unwrap();
    assert_eq!(v, "World");
    let v: String = c.getrange("s", 0, 1_000_000).await.unwrap();
    assert_eq!(v, "Hello World");
    let n: usize = c.setrange("s", 6, "Redis").await.unwrap();
    assert_eq!(n, 11);
    let n: usize = c.setrange("pad", 3, "x").await.unwrap();
    assert_eq!(n, 4);
    let v: Vec<u8> = c.get("pad").await.unwrap();
    assert_eq!(v, b"\0\0\0x");

    // Keys.
    let t: String = redis::cmd("TYPE")
        .arg("s")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(t, "string");
    let t: String = redis::cmd("TYPE")
        .arg("none")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(t, "none");
    let e = c
        .rename::<_, _, ()>("{r}src", "{r}dst")
        .await
        .expect_err("RENAME of a missing key");
    assert!(e.to_string().contains("no such key"), "{e}");
    let () = c.set("{r}src", "v").await.unwrap();
    let () = c.rename("{r}src", "{r}dst").await.unwrap();
    let v: Option<String> = c.get("{r}dst").await.unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    let n: usize = c
        .exists(&["{u}a", "{u}b", "{u}nope", "{u}a"])
        .await
        .unwrap();
    assert_eq!(n, 3, "EXISTS counts repeated keys");
    let n: usize = c.del(&["{u}a", "{u}b", "{u}nope"]).await.unwrap();
    assert_eq!(n, 2);
    let n: usize = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(
        n, 10,
        "keys left: empty, bin, big, fresh?, {{u}}c, ctr, maxed, word, s, pad, {{r}}dst"
    );
}

async fn pipelines(resp3: bool) {
    let server = start();
    let mut c = connect(&server, resp3).await;
    let mut p = redis::pipe();
    for i in 0..1000 {
        p.set(format!("p:{i}"), i).ignore();
    }
    p.incr("p:0", 10).get("p:999").get("p:nope");
    let (n, last, missing): (i64, i64, Option<String>) = p.query_async(&mut c).await.unwrap();
    assert_eq!((n, last, missing), (10, 999, None));
    let size: usize = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, 1000);

    // An error in the middle of a pipeline does not disturb the replies around it.
    let mut p = redis::pipe();
    p.set("pe", "a")
        .cmd("INCR")
        .arg("pe")
        .get("pe")
        .cmd("NOSUCHCOMMAND")
        .arg("x")
        .cmd("PING")
        .ignore_errors();
    let replies: Vec<RedisResult<Value>> = p.query_async(&mut c).await.unwrap_or_else(|e| {
        panic!("pipeline failed as a whole: {e}");
    });
    assert_eq!(replies.len(), 5);
    assert!(
        replies[0].is_ok() && replies[2].is_ok() && replies[4].is_ok(),
        "{replies:?}"
    );
    let e1 = replies[1].as_ref().expect_err("INCR on a word");
    assert!(e1.to_string().contains("value is not an integer"), "{e1}");
    let e3 = replies[3].as_ref().expect_err("unknown command");
    assert!(
        e3.to_string().contains("unknown command 'NOSUCHCOMMAND'"),
        "{e3}"
    );

    // Many concurrent pipelined requests on one multiplexed connection.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let k = format!("t{t}:{i}");
                let () = c.set(&k, i).await.unwrap();
                let v: i64 = c.get(&k).await.unwrap();
                assert_eq!(v, i);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let size: usize = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, 1000 + 1 + 1600);
}

async fn expiry(resp3: bool) {
    let server = start();
    let mut c = connect(&server, resp3).await;
    let () = c.set_ex("ex", "v", 100).await.unwrap();
    let ttl: i64 = c.ttl("ex").await.unwrap();
    assert!((98..=100).contains(&ttl), "ttl {ttl}");
    let pttl: i64 = c.pttl("ex").await.unwrap();
    assert!((97_000..=100_000).contains(&pttl), "pttl {pttl}");
    let ttl: i64 = c.ttl("nokey").await.unwrap();
    assert_eq!(ttl, -2);
    let () = c.set("plain", "v").await.unwrap();
    let ttl: i64 = c.ttl("plain").await.unwrap();
    assert_eq!(ttl, -1);

    // EXPIRE options: NX only when no TTL, XX only with one, GT/LT compare.
    let r: bool = redis::cmd("EXPIRE")
        .arg("plain")
        .arg(50)
        .arg("XX")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!r);
    let r: bool = redis::cmd("EXPIRE")
        .arg("plain")
        .arg(50)
        .arg("NX")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(r);
    let r: bool = redis::cmd("EXPIRE")
        .arg("plain")
        .arg(40)
        .arg("GT")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!r);
    let r: bool = redis::cmd("EXPIRE")
        .arg("plain")
        .arg(40)
        .arg("LT")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(r);
    let ttl: i64 = c.ttl("plain").await.unwrap();
    assert!((38..=40).contains(&ttl), "ttl {ttl}");
    let r: bool = c.persist("plain").await.unwrap();
    assert!(r);
    let ttl: i64 = c.ttl("plain").await.unwrap();
    assert_eq!(ttl, -1);

    // Short expiries really expire, and expired keys disappear from every reply.
    let () = c.pset_ex("{e}short", "v", 100).await.unwrap();
    let () = c.set("{e}keep", "v").await.unwrap();
    let r: bool = c.pexpire("{e}keep2", 100).await.unwrap();
    assert!(!r, "PEXPIRE on a missing key");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v: Option<String> = c.get("{e}short").await.unwrap();
    assert_eq!(v, None);
    let n: usize = c.exists("{e}short").await.unwrap();
    assert_eq!(n, 0);
    let vals: Vec<Option<String>> = c.mget(&["{e}short", "{e}keep"]).await.unwrap();
    assert_eq!(vals, vec![None, Some("v".into())]);
    let keys: Vec<String> = c.keys("{e}*").await.unwrap();
    assert_eq!(keys, vec!["{e}keep".to_string()]);

    // Absolute expiry in the past deletes; EXPIRETIME reports what was set.
    let () = c.set("abs", "v").await.unwrap();
    let at = 4_000_000_000i64;
    let r: bool = redis::cmd("EXPIREAT")
        .arg("abs")
        .arg(at)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(r);
    let et: i64 = redis::cmd("EXPIRETIME")
        .arg("abs")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(et, at);
    let pet: i64 = redis::cmd("PEXPIRETIME")
        .arg("abs")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(pet, at * 1000);
    let r: bool = redis::cmd("EXPIREAT")
        .arg("abs")
        .arg(1)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(r);
    let v: Option<String> = c.get("abs").await.unwrap();
    assert_eq!(v, None);

    // SET KEEPTTL keeps it, a plain SET clears it; GETEX changes it.
    let () = c.set_ex("kt", "a", 100).await.unwrap();
    let () = redis::cmd("SET")
        .arg("kt")
        .arg("b")
        .arg("KEEPTTL")
        .query_async(&mut c)
        .await
        .unwrap();
    let ttl: i64 = c.ttl("kt").await.unwrap();
    assert!(ttl > 0, "KEEPTTL kept {ttl}");
    let () = c.set("kt", "c").await.unwrap();
    let ttl: i64 = c.ttl("kt").await.unwrap();
    assert_eq!(ttl, -1);
    let v: String = redis::cmd("GETEX")
        .arg("kt")
        .arg("EX")
        .arg(77)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(v, "c");
    let ttl: i64 = c.ttl("kt").await.unwrap();
    assert!((75..=77).contains(&ttl), "ttl {ttl}");
    let () = redis::cmd("GETEX")
        .arg("kt")
        .arg("PERSIST")
        .query_async::<String>(&mut c)
        .await
        .map(|_| ())
        .unwrap();
    let ttl: i64 = c.ttl("kt").await.unwrap();
    assert_eq!(ttl, -1);
}

async fn resp3_types(resp3: bool) {
    let server = start();
    let mut c = connect(&server, resp3).await;
    let hello: Value = redis::cmd("HELLO")
        .arg(if resp3 { 3 } else { 2 })
        .query_async(&mut c)
        .await
        .unwrap();
    let pairs: Vec<(Value, Value)> = match hello {
        Value::Map(m) => m,
        Value::Array(a) => a.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect(),
        other => panic!("HELLO reply {other:?}"),
    };
    let proto = pairs
        .iter()
        .find(|(k, _)| matches!(k, Value::BulkString(b) if b == b"proto"))
        .map(|(_, v)| v.clone());
    assert_eq!(proto, Some(Value::Int(if resp3 { 3 } else { 2 })));
    let v: Value = redis::cmd("GET")
        .arg("missing")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(v, Value::Nil);
    let v: Value = redis::cmd("EXISTS")
        .arg("missing")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(v, Value::Int(0));
}

#[tokio::test]
async fn strings_round_trip_resp2() {
    strings_round_trip(false).await;
}

#[tokio::test]
async fn strings_round_trip_resp3() {
    strings_round_trip(true).await;
}

#[tokio::test]
async fn pipelines_resp2() {
    pipelines(false).await;
}

#[tokio::test]
async fn pipelines_resp3() {
    pipelines(true).await;
}

#[tokio::test]
async fn expiry_resp2() {
    expiry(false).await;
}

#[tokio::test]
async fn expiry_resp3() {
    expiry(true).await;
}

#[tokio::test]
async fn hello_and_nulls_resp2() {
    resp3_types(false).await;
}

#[tokio::test]
async fn hello_and_nulls_resp3() {
    resp3_types(true).await;
}

/// DUMP → RESTORE round trip in the server's own payload format; a corrupted payload is refused.
async fn dump_restore(resp3: bool) {
    let server = start();
    let mut c = connect(&server, resp3).await;
    let value: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let () = c.set_ex("{x}src", &value, 1000).await.unwrap();
    let payload: Vec<u8> = redis::cmd("DUMP")
        .arg("{x}src")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!payload.is_empty());
    let () = redis::cmd("RESTORE")
        .arg("{x}dst")
        .arg(0)
        .arg(&payload)
        .query_async(&mut c)
        .await
        .unwrap();
    let v: Vec<u8> = c.get("{x}dst").await.unwrap();
    assert_eq!(v, value);
    let ttl: i64 = c.ttl("{x}dst").await.unwrap();
    assert_eq!(ttl, -1, "RESTORE with ttl 0 sets no expiry");
    let e = redis::cmd("RESTORE")
        .arg("{x}dst")
        .arg(0)
        .arg(&payload)
        .query_async::<()>(&mut c)
        .await
        .expect_err("RESTORE onto an existing key without REPLACE");
    assert!(
        e.to_string().contains("Target key name already exists"),
        "{e}"
    );
    let () = redis::cmd("RESTORE")
        .arg("{x}dst")
        .arg(5_000)
        .arg(&payload)
        .arg("REPLACE")
        .query_async(&mut c)
        .await
        .unwrap();
    let pttl: i64 = c.pttl("{x}dst").await.unwrap();
    assert!((1..=5_000).contains(&pttl), "pttl {pttl}");
    let mut bad = payload.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    let e = redis::cmd("RESTORE")
        .arg("{x}bad")
        .arg(0)
        .arg(&bad)
        .query_async::<()>(&mut c)
        .await
        .expect_err("a corrupted payload must be refused");
    assert!(
        e.to_string()
            .contains("DUMP payload version or checksum are wrong"),
        "{e}"
    );
    let missing: Option<Vec<u8>> = redis::cmd("DUMP")
        .arg("{x}nope")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(missing, None);
}

#[tokio::test]
async fn dump_restore_resp2() {
    dump_restore(false).await;
}

#[tokio::test]
async fn dump_restore_resp3() {
    dump_restore(true).await;
}
