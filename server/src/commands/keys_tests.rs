//! In-process tests of the key commands (replies compared with redis-server 7.0.15).

use crate::commands::strings::tests::{bulk, err, plant_hash, run, run_bin, wire, wire3};
use crate::storage::{dump, Db, ExpireCond, WriteCommand, WriteOp};
use bytes::Bytes;
use pinnacle_resp::Reply;

const NOT_INT: &str = "ERR value is not an integer or out of range";

fn int(n: i64) -> Reply {
    Reply::Integer(n)
}

fn sorted_keys(r: Reply) -> Vec<String> {
    let Reply::Array(items) = r else {
        panic!("not an array: {r:?}")
    };
    let mut out: Vec<String> = items
        .into_iter()
        .map(|i| match i {
            Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("not a bulk: {other:?}"),
        })
        .collect();
    out.sort();
    out
}

#[test]
fn del_unlink_exists_touch() {
    let db = Db::in_memory();
    run(&db, "MSET a 1 b 2 c 3");
    assert_eq!(run(&db, "EXISTS a a b nokey"), int(3));
    assert_eq!(run(&db, "TOUCH a a b nokey"), int(3));
    assert_eq!(run(&db, "DEL a a nokey"), int(1));
    assert_eq!(run(&db, "UNLINK b c"), int(2));
    assert_eq!(run(&db, "EXISTS a b c"), int(0));
    assert_eq!(run(&db, "DEL a"), int(0));
}

#[test]
fn type_cmd() {
    let db = Db::in_memory();
    assert_eq!(wire(&db, "TYPE k"), "+none\r\n");
    run(&db, "SET k v");
    assert_eq!(wire(&db, "TYPE k"), "+string\r\n");
    plant_hash(&db, b"h");
    assert_eq!(wire3(&db, "TYPE h"), "+hash\r\n");
}

#[test]
fn expire_family() {
    let db = Db::in_memory();
    assert_eq!(run(&db, "EXPIRE k 10"), int(0));
    run(&db, "SET k v");
    assert_eq!(run(&db, "TTL k"), int(-1));
    assert_eq!(run(&db, "PTTL k"), int(-1));
    assert_eq!(run(&db, "EXPIRETIME k"), int(-1));
    assert_eq!(run(&db, "PEXPIRETIME k"), int(-1));
    assert_eq!(run(&db, "EXPIRE k 100"), int(1));
    assert_eq!(run(&db, "TTL k"), int(100));
    assert!(matches!(
        run(&db, "PTTL k"),
        Reply::Integer(99_000..=100_000)
    ));
    assert_eq!(run(&db, "PEXPIRE k 50000"), int(1));
    assert_eq!(run(&db, "TTL k"), int(50));
    let at = db.now_ms() / 1000 + 1000;
    assert_eq!(run(&db, &format!("EXPIREAT k {at}")), int(1));
    assert_eq!(run(&db, "EXPIRETIME k"), int(at as i64));
    assert_eq!(run(&db, "PEXPIRETIME k"), int(at as i64 * 1000));
    assert_eq!(run(&db, &format!("PEXPIREAT k {}", at * 1000 + 5)), int(1));
    assert_eq!(run(&db, "PEXPIRETIME k"), int(at as i64 * 1000 + 5));
    assert_eq!(run(&db, "EXPIRETIME k"), int(at as i64));
    assert_eq!(run(&db, "PERSIST k"), int(1));
    assert_eq!(run(&db, "PERSIST k"), int(0));
    assert_eq!(run(&db, "PERSIST nokey"), int(0));
    assert_eq!(run(&db, "TTL nokey"), int(-2));
    assert_eq!(run(&db, "PTTL nokey"), int(-2));
    assert_eq!(run(&db, "EXPIRETIME nokey"), int(-2));
    assert_eq!(run(&db, "PEXPIRETIME nokey"), int(-2));
    // Past and negative times delete.
    assert_eq!(run(&db, "EXPIRE k -1"), int(1));
    assert_eq!(run(&db, "EXISTS k"), int(0));
    run(&db, "SET k v");
    assert_eq!(run(&db, "EXPIREAT k 1"), int(1));
    assert_eq!(run(&db, "GET k"), Reply::Null);
    run(&db, "SET k v");
    assert_eq!(run(&db, "PEXPIRE k 0"), int(1));
    assert_eq!(run(&db, "EXISTS k"), int(0));
}

#[test]
fn expire_conditions() {
    let db = Db::in_memory();
    run(&db, "SET k v");
    assert_eq!(run(&db, "EXPIRE k 100 XX"), int(0));
    assert_eq!(run(&db, "EXPIRE k 100 GT"), int(0));
    assert_eq!(run(&db, "EXPIRE k 100 LT"), int(1));
    assert_eq!(run(&db, "EXPIRE k 200 NX"), int(0));
    assert_eq!(run(&db, "EXPIRE k 200 LT"), int(0));
    assert_eq!(run(&db, "EXPIRE k 200 GT"), int(1));
    assert_eq!(run(&db, "TTL k"), int(200));
    assert_eq!(run(&db, "EXPIRE k 300 XX GT"), int(1));
    assert_eq!(run(&db, "EXPIRE k 100 xx lt"), int(1));
    assert_eq!(run(&db, "TTL k"), int(100));
    run(&db, "PERSIST k");
    assert_eq!(run(&db, "EXPIRE k 100 NX"), int(1));
    assert_eq!(run(&db, "EXPIRE nokey 100 NX"), int(0));
    let incompatible = "ERR NX and XX, GT or LT options at the same time are not compatible";
    assert_eq!(run(&db, "EXPIRE k 10 NX XX"), err(incompatible));
    assert_eq!(run(&db, "EXPIRE k 10 NX GT"), err(incompatible));
    assert_eq!(run(&db, "PEXPIRE k 10 LT NX"), err(incompatible));
    assert_eq!(
        run(&db, "EXPIRE k 10 GT LT"),
        err("ERR GT and LT options at the same time are not compatible")
    );
    assert_eq!(
        run(&db, "EXPIRE k 10 foo"),
        err("ERR Unsupported option foo")
    );
    // Arguments go into the message as Redis's %s does: raw bytes, cut at NUL, no CR/LF.
    assert_eq!(
        run_bin(&db, &[b"EXPIRE", b"k", b"10", b"\xff\r\x99"]),
        Reply::Error(Bytes::from_static(b"ERR Unsupported option \xff \x99"))
    );
    assert_eq!(
        run_bin(&db, &[b"EXPIRE", b"k", b"10", b"\r\n"]),
        Reply::Error(Bytes::from_static(b"ERR Unsupported option "))
    );
    assert_eq!(
        run_bin(&db, &[b"EXPIRE", b"k", b"10", b"ab\x00cd"]),
        Reply::Error(Bytes::from_static(b"ERR Unsupported option ab"))
    );
    // Flags are checked before the number.
    assert_eq!(
        run(&db, "EXPIRE k x foo"),
        err("ERR Unsupported option foo")
    );
    assert_eq!(run(&db, "EXPIRE k x"), err(NOT_INT));
    assert_eq!(
        run(&db, "EXPIRE k 9223372036854775807"),
        err("ERR invalid expire time in 'expire' command")
    );
    assert_eq!(
        run(&db, "PEXPIRE k 9223372036854775807"),
        err("ERR invalid expire time in 'pexpire' command")
    );
    assert_eq!(
        run(&db, "EXPIREAT k -9223372036854775808"),
        err("ERR invalid expire time in 'expireat' command")
    );
    assert_eq!(run(&db, "PEXPIREAT k 9223372036854775807"), int(1));
    assert_eq!(run(&db, "PEXPIRETIME k"), int(i64::MAX));
}

#[test]
fn expire_gt_lt_with_explicit_time() {
    // Determinism: the same entries at the same stamped times give the same results.
    let db = Db::in_memory();
    let t = 5_000_000u64;
    let exp = |at: i64, cond| {
        db.apply(&WriteCommand {
            now_ms: t,
            op: WriteOp::Expire {
                key: Bytes::from_static(b"k"),
                at_ms: at,
                cond,
            },
        })
    };
    db.apply(&WriteCommand {
        now_ms: t,
        op: WriteOp::MSet {
            pairs: vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v"))],
        },
    });
    assert_eq!(exp(t as i64 + 100, ExpireCond::Always), int(1));
    assert_eq!(exp(t as i64 + 50, ExpireCond::Gt), int(0));
    assert_eq!(exp(t as i64 + 50, ExpireCond::Lt), int(1));
    assert_eq!(exp(t as i64 + 50, ExpireCond::Lt), int(0));
    assert_eq!(
        db.get(b"k", t + 49).expect("read").map(|m| m.expire_at),
        Some(t + 50)
    );
    assert!(db.get(b"k", t + 50).expect("read").is_none());
    assert_eq!(exp(t as i64, ExpireCond::Always), int(1));
    assert!(db.get(b"k", t).expect("read").is_none());
}

#[test]
fn rename_renamenx() {
    let db = Db::in_memory();
    assert_eq!(run(&db, "RENAME nokey x"), err("ERR no such key"));
    assert_eq!(run(&db, "RENAMENX nokey x"), err("ERR no such key"));
    assert_eq!(run(&db, "RENAME nokey nokey"), err("ERR no such key"));
    run(&db, "SET a 1 EX 100");
    assert_eq!(run(&db, "RENAME a b"), Reply::ok());
    assert_eq!(run(&db, "EXISTS a"), int(0));
    assert_eq!(run(&db, "GET b"), bulk("1"));
    assert_eq!(run(&db, "TTL b"), int(100));
    assert_eq!(run(&db, "RENAME b b"), Reply::ok());
    assert_eq!(run(&db, "RENAMENX b b"), int(0));
    run(&db, "SET c 3");
    assert_eq!(run(&db, "RENAMENX b c"), int(0));
    assert_eq!(run(&db, "RENAMENX b d"), int(1));
    assert_eq!(run(&db, "RENAME d c"), Reply::ok());
    assert_eq!(run(&db, "GET c"), bulk("1"));
    assert_eq!(run(&db, "DBSIZE"), int(1));
}

#[test]
fn copy_cmd() {
    let db = Db::in_memory();
    assert_eq!(run(&db, "COPY nokey x"), int(0));
    run(&db, "SET a 1 EX 100");
    assert_eq!(run(&db, "COPY a b"), int(1));
    assert_eq!(run(&db, "GET b"), bulk("1"));
    assert_eq!(run(&db, "TTL b"), int(100));
    run(&db, "SET a 2");
    assert_eq!(run(&db, "COPY a b"), int(0));
    assert_eq!(run(&db, "COPY a b REPLACE"), int(1));
    assert_eq!(run(&db, "GET b"), bulk("2"));
    assert_eq!(run(&db, "TTL b"), int(-1));
    assert_eq!(run(&db, "COPY a b DB 0 REPLACE"), int(1));
    assert_eq!(
        run(&db, "COPY a a"),
        err("ERR source and destination objects are the same")
    );
    assert_eq!(
        run(&db, "COPY a b DB 1"),
        err("ERR Copying to another database is not allowed in cluster mode")
    );
    assert_eq!(
        run(&db, "COPY a b DB 16"),
        err("ERR DB index is out of range")
    );
    assert_eq!(
        run(&db, "COPY a b DB -1"),
        err("ERR DB index is out of range")
    );
    assert_eq!(run(&db, "COPY a b DB x"), err(NOT_INT));
    assert_eq!(
        run(&db, "COPY a b DB 99999999999"),
        err("ERR value is out of range, value must between -2147483648 and 2147483647")
    );
    assert_eq!(run(&db, "COPY a b DB"), err("ERR syntax error"));
    assert_eq!(run(&db, "COPY a b FOO"), err("ERR syntax error"));
}

#[test]
fn keys_glob() {
    let db = Db::in_memory();
    run(
        &db,
        "MSET hello 1 hallo 2 hxllo 3 hllo 4 heeeello 5 h*llo 6",
    );
    run_bin(&db, &[b"SET", b"", b"empty"]);
    assert_eq!(
        sorted_keys(run(&db, "KEYS h?llo")),
        ["h*llo", "hallo", "hello", "hxllo"]
    );
    assert_eq!(sorted_keys(run(&db, "KEYS h*llo")).len(), 6);
    assert_eq!(sorted_keys(run(&db, "KEYS h[ae]llo")), ["hallo", "hello"]);
    assert_eq!(
        sorted_keys(run(&db, "KEYS h[^e]llo")),
        ["h*llo", "hallo", "hxllo"]
    );
    assert_eq!(sorted_keys(run(&db, "KEYS h[a-b]llo")), ["hallo"]);
    assert_eq!(sorted_keys(run(&db, "KEYS h\\*llo")), ["h*llo"]);
    assert_eq!(sorted_keys(run(&db, "KEYS *")).len(), 7);
    assert_eq!(sorted_keys(run(&db, "KEYS nomatch*")).len(), 0);
}

#[test]
fn scan_visits_every_key() {
    let db = Db::in_memory();
    for i in 0..500 {
        run(&db, &format!("SET key:{i} v"));
    }
    plant_hash(&db, b"key:hash");
    let mut seen = std::collections::HashSet::new();
    let mut cursor = "0".to_string();
    let mut rounds = 0;
    loop {
        let r = run(&db, &format!("SCAN {cursor} COUNT 37"));
        let Reply::Array(parts) = r else { panic!() };
        let Reply::Bulk(c) = &parts[0] else { panic!() };
        for k in sorted_keys(parts[1].clone()) {
            seen.insert(k);
        }
        // Keys added and removed mid-scan must not make it skip the others.
        if rounds == 3 {
            run(&db, "DEL key:499 key:0");
            run(&db, "SET key:new v");
        }
        rounds += 1;
        cursor = String::from_utf8_lossy(c).into_owned();
        if cursor == "0" {
            break;
        }
    }
    for i in 1..499 {
        assert!(seen.contains(&format!("key:{i}")), "missing key:{i}");
    }
    assert!(seen.contains("key:hash"));
    assert!(rounds >= 500 / 37);
}

#[test]
fn scan_options() {
    let db = Db::in_memory();
    run(&db, "MSET a1 1 a2 2 b1 3");
    plant_hash(&db, b"a3");
    let all = |cmd: &str| {
        let Reply::Array(parts) = run(&db, cmd) else {
            panic!()
        };
        assert_eq!(parts[0], bulk("0"));
        sorted_keys(parts[1].clone())
    };
    assert_eq!(all("SCAN 0 COUNT 100 MATCH a*"), ["a1", "a2", "a3"]);
    assert_eq!(all("SCAN 0 COUNT 100 TYPE string"), ["a1", "a2", "b1"]);
    assert_eq!(all("SCAN 0 COUNT 100 TYPE HASH"), ["a3"]);
    assert_eq!(all("SCAN 0 COUNT 100 TYPE foo").len(), 0);
    assert_eq!(all("SCAN 0 COUNT 100 MATCH a* TYPE string"), ["a1", "a2"]);
    assert_eq!(all("SCAN 0 COUNT 100 MATCH *").len(), 4);
    assert_eq!(all("SCAN  COUNT 100").len(), 4);
    assert_eq!(all("SCAN +0 COUNT 100").len(), 4);
    assert_eq!(all("SCAN -1 COUNT 100").len(), 0);
    assert_eq!(run(&db, "SCAN abc"), err("ERR invalid cursor"));
    assert_eq!(run(&db, "SCAN 1-"), err("ERR invalid cursor"));
    assert_eq!(
        run(&db, "SCAN 18446744073709551616"),
        err("ERR invalid cursor")
    );
    assert_eq!(run_bin(&db, &[b"SCAN", b" 1"]), err("ERR invalid cursor"));
    assert_eq!(run(&db, "SCAN 0 COUNT 0"), err("ERR syntax error"));
    assert_eq!(run(&db, "SCAN 0 COUNT x"), err(NOT_INT));
    assert_eq!(run(&db, "SCAN 0 MATCH"), err("ERR syntax error"));
    assert_eq!(run(&db, "SCAN 0 FOO bar"), err("ERR syntax error"));
    assert_eq!(
        wire(&db, "SCAN 0 MATCH b*"),
        "*2\r\n$1\r\n0\r\n*1\r\n$2\r\nb1\r\n"
    );
}

#[test]
fn randomkey_dbsize_flush() {
    let db = Db::in_memory();
    assert_eq!(run(&db, "RANDOMKEY"), Reply::Null);
    assert_eq!(run(&db, "DBSIZE"), int(0));
    run(&db, "MSET a 1 b 2 c 3");
    assert_eq!(run(&db, "DBSIZE"), int(3));
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let Reply::Bulk(k) = run(&db, "RANDOMKEY") else {
            panic!()
        };
        seen.insert(k);
    }
    assert!(seen.len() >= 2, "RANDOMKEY should not always pick one key");
    assert_eq!(run(&db, "FLUSHDB foo"), err("ERR syntax error"));
    assert_eq!(run(&db, "FLUSHALL SYNC ASYNC"), err("ERR syntax error"));
    assert_eq!(run(&db, "FLUSHALL ASYNC"), Reply::ok());
    assert_eq!(run(&db, "DBSIZE"), int(0));
    run(&db, "SET a 1");
    assert_eq!(run(&db, "FLUSHDB sync"), Reply::ok());
    assert_eq!(run(&db, "FLUSHDB"), Reply::ok());
    assert_eq!(run(&db, "EXISTS a"), int(0));
    // Node state survives a flush: the apply clock is still there.
    assert!(db
        .engine()
        .get(&crate::storage::encoding::system_key(b"applied"))
        .expect("read")
        .is_some());
}

#[test]
fn object_subcommands() {
    let db = Db::in_memory();
    run(&db, "SET i 12345");
    run(&db, "SET s hello");
    run(&db, &format!("SET r {}", "x".repeat(45)));
    run(&db, &format!("SET e {}", "x".repeat(44)));
    run(&db, "SET lz 0123");
    run(&db, "SET big 123456789012345678901");
    assert_eq!(run(&db, "OBJECT ENCODING i"), bulk("int"));
    assert_eq!(run(&db, "OBJECT ENCODING s"), bulk("embstr"));
    assert_eq!(run(&db, "OBJECT ENCODING e"), bulk("embstr"));
    assert_eq!(run(&db, "OBJECT ENCODING r"), bulk("raw"));
    assert_eq!(run(&db, "OBJECT ENCODING lz"), bulk("embstr"));
    assert_eq!(run(&db, "OBJECT ENCODING big"), bulk("embstr"));
    assert_eq!(run(&db, "OBJECT ENCODING nokey"), Reply::Null);
    run(&db, "SET small 123");
    assert_eq!(run(&db, "OBJECT REFCOUNT small"), int(2147483647));
    assert_eq!(run(&db, "OBJECT REFCOUNT i"), int(1));
    assert_eq!(run(&db, "OBJECT REFCOUNT s"), int(1));
    assert_eq!(run(&db, "OBJECT REFCOUNT nokey"), Reply::Null);
    assert_eq!(run(&db, "OBJECT IDLETIME s"), int(0));
    assert_eq!(run(&db, "OBJECT IDLETIME nokey"), Reply::Null);
    assert!(
        matches!(run(&db, "OBJECT FREQ s"), Reply::Error(e) if e.starts_with(b"ERR An LFU maxmemory policy is not selected"))
    );
    let Reply::Array(help) = run(&db, "OBJECT HELP") else {
        panic!()
    };
    assert_eq!(help.len(), 15);
    assert_eq!(help[14], Reply::simple("    Prints this help."));
}

#[test]
fn dump_restore() {
    let db = Db::in_memory();
    assert_eq!(run(&db, "DUMP nokey"), Reply::Null);
    run_bin(&db, &[b"SET", b"k", b"\x00bin\r\nary"]);
    let Reply::Bulk(payload) = run(&db, "DUMP k") else {
        panic!()
    };
    assert!(dump::verify(&payload));
    let restore = |args: &[&[u8]]| {
        let mut argv: Vec<&[u8]> = vec![b"RESTORE"];
        argv.extend_from_slice(args);
        run_bin(&db, &argv)
    };
    let busy = err("BUSYKEY Target key name already exists.");
    assert_eq!(restore(&[b"k", b"0", &payload]), busy);
    // BUSYKEY wins over a bad TTL or payload, as in Redis.
    assert_eq!(restore(&[b"k", b"-1", b"xxx"]), busy);
    assert_eq!(restore(&[b"k", b"x", b"xxx"]), busy);
    assert_eq!(
        restore(&[b"k", b"0", b"xxx", b"foo"]),
        err("ERR syntax error")
    );
    let bad_payload = err("ERR DUMP payload version or checksum are wrong");
    assert_eq!(restore(&[b"k", b"0", b"xxx", b"REPLACE"]), bad_payload);
    assert_eq!(restore(&[b"n", b"0", b"xxx"]), bad_payload);
    assert_eq!(
        restore(&[b"n", b"-1", &payload]),
        err("ERR Invalid TTL value, must be >= 0")
    );
    assert_eq!(restore(&[b"n", b"x", &payload]), err(NOT_INT));
    assert_eq!(
        restore(&[b"n", b"0", &payload, b"IDLETIME", b"-1"]),
        err("ERR Invalid IDLETIME value, must be >= 0")
    );
    assert_eq!(
        restore(&[b"n", b"0", &payload, b"FREQ", b"256"]),
        err("ERR Invalid FREQ value, must be >= 0 and <= 255")
    );
    assert_eq!(
        restore(&[b"n", b"0", &payload, b"IDLETIME", b"1", b"FREQ", b"1"]),
        err("ERR syntax error")
    );
    let mut damaged = payload.to_vec();
    damaged[2] ^= 1;
    assert_eq!(restore(&[b"n", b"0", &damaged]), bad_payload);
    assert_eq!(restore(&[b"n", b"0", &payload]), Reply::ok());
    assert_eq!(
        run(&db, "GET n"),
        Reply::Bulk(Bytes::from_static(b"\x00bin\r\nary"))
    );
    assert_eq!(run(&db, "TTL n"), int(-1));
    assert_eq!(
        restore(&[b"k", b"5000", &payload, b"REPLACE", b"IDLETIME", b"10"]),
        Reply::ok()
    );
    assert_eq!(run(&db, "TTL k"), int(5));
    assert_eq!(run(&db, "OBJECT IDLETIME k"), int(10));
    assert_eq!(run(&db, "TTL k"), int(5));
    assert_eq!(
        run(&db, "OBJECT IDLETIME k"),
        int(10),
        "TTL is not an access"
    );
    run(&db, "GET k");
    assert_eq!(run(&db, "OBJECT IDLETIME k"), int(0), "GET is an access");
    let at = (db.now_ms() + 100_000).to_string();
    assert_eq!(
        restore(&[b"a", at.as_bytes(), &payload, b"ABSTTL", b"FREQ", b"5"]),
        Reply::ok()
    );
    assert_eq!(run(&db, "TTL a"), int(100));
    // An absolute TTL in the past: OK, but the key is not created (and REPLACE deletes).
    assert_eq!(restore(&[b"p", b"1", &payload, b"ABSTTL"]), Reply::ok());
    assert_eq!(run(&db, "EXISTS p"), int(0));
    assert_eq!(
        restore(&[b"a", b"1", &payload, b"ABSTTL", b"REPLACE"]),
        Reply::ok()
    );
    assert_eq!(run(&db, "EXISTS a"), int(0));
}

#[test]
fn slot_helpers_and_memory() {
    let db = Db::in_memory();
    run(&db, "MSET {user1000}.a 1 {user1000}.b 2 user1000 3 foo 4");
    assert_eq!(db.count_keys_in_slot(3443).expect("count"), 3);
    assert_eq!(db.count_keys_in_slot(12182).expect("count"), 1);
    assert_eq!(db.count_keys_in_slot(0).expect("count"), 0);
    let keys = db.keys_in_slot(3443, 2).expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!(db.keys_in_slot(3443, 10).expect("keys").len(), 3);
    assert_eq!(db.key_counts().expect("counts"), (4, 0));
    run(&db, "EXPIRE foo 100");
    assert_eq!(db.key_counts().expect("counts"), (4, 1));
    let usage = db.memory_usage(b"foo").expect("usage").expect("exists");
    assert!(usage > 3 && usage < 200, "{usage}");
    assert_eq!(db.memory_usage(b"nokey").expect("usage"), None);
}

#[test]
fn sweep_deletes_expired_through_apply() {
    let db = Db::in_memory();
    let now = db.now_ms();
    for i in 0..450 {
        let at = if i % 3 == 0 { now - 1 } else { 0 };
        db.apply(&WriteCommand {
            now_ms: now - 10,
            op: WriteOp::Set {
                key: Bytes::from(format!("k{i}")),
                value: Bytes::from_static(b"v"),
                cond: crate::storage::SetCond::Always,
                get: false,
                expire: if at == 0 {
                    crate::storage::ExpireSpec::Clear
                } else {
                    crate::storage::ExpireSpec::At(at)
                },
            },
        });
    }
    let mut cursor = crate::storage::expire::SweepCursor::default();
    let mut deleted = 0;
    loop {
        let (examined, d) = db.sweep_step(&mut cursor).expect("sweep");
        deleted += d;
        if examined < 200 {
            break;
        }
    }
    assert_eq!(deleted, 150);
    assert_eq!(db.expired_keys(), 150);
    // Physically gone, not just hidden.
    let mut physical = 0;
    db.for_each_meta(
        crate::storage::encoding::keyspace_start(),
        crate::storage::encoding::keyspace_end(),
        |_, _, _| {
            physical += 1;
            true
        },
    )
    .expect("scan");
    assert_eq!(physical, 300);
}

#[test]
fn sweep_finds_expired_keys_past_collection_elements() {
    // The sweep seeks past each slot's sub-keys: keys in the slots after a big collection, and
    // in its own slot, are still examined.
    let db = Db::in_memory();
    let now = db.now_ms();
    let mut expired = 0;
    for i in 0..60 {
        db.apply(&WriteCommand {
            now_ms: now - 10,
            op: WriteOp::HSet {
                key: Bytes::from(format!("{{t{i}}}big")),
                pairs: (0..40)
                    .map(|f| (Bytes::from(format!("f{f}")), Bytes::from_static(b"v")))
                    .collect(),
                nx: false,
            },
        });
        if i % 2 == 0 {
            expired += 1;
            db.apply(&WriteCommand {
                now_ms: now - 10,
                op: WriteOp::Set {
                    key: Bytes::from(format!("{{t{i}}}x")),
                    value: Bytes::from_static(b"v"),
                    cond: crate::storage::SetCond::Always,
                    get: false,
                    expire: crate::storage::ExpireSpec::At(now - 1),
                },
            });
        }
    }
    let mut cursor = crate::storage::expire::SweepCursor::default();
    let (examined, deleted) = db.sweep_step(&mut cursor).expect("sweep");
    assert_eq!((examined, deleted), (90, expired));
    assert_eq!(db.key_counts().expect("counts"), (60, 0));
    let view = db.view();
    let big = view
        .coll(b"{t7}big", crate::storage::KeyType::Hash)
        .expect("read")
        .expect("a hash")
        .expect("exists");
    assert_eq!(view.sub_all(b"{t7}big", &big).expect("fields").len(), 40);
}

#[test]
fn compaction_filter_drops_only_expired_metadata() {
    use crate::storage::encoding::{meta_key, system_key, Meta};
    use crate::storage::expire::ExpiryFilter;
    use pinnacle_lsm::{CompactionFilter, FilterDecision};
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    let clock = Arc::new(AtomicU64::new(1000));
    let f = ExpiryFilter::new(clock);
    let rec = |at| Meta::string(Bytes::from_static(b"v"), at).encode();
    assert_eq!(
        f.filter(0, &meta_key(b"k"), &rec(999)),
        FilterDecision::Remove
    );
    assert_eq!(
        f.filter(0, &meta_key(b"k"), &rec(1000)),
        FilterDecision::Remove
    );
    assert_eq!(
        f.filter(0, &meta_key(b"k"), &rec(1001)),
        FilterDecision::Keep
    );
    assert_eq!(f.filter(0, &meta_key(b"k"), &rec(0)), FilterDecision::Keep);
    assert_eq!(
        f.filter(0, &system_key(b"applied"), &rec(5)),
        FilterDecision::Keep
    );
}

#[test]
fn apply_clock_never_goes_back() {
    // A leader with a slow clock cannot resurrect a key an earlier entry saw expire.
    let db = Db::in_memory();
    let set = |now: u64, at: u64| {
        db.apply(&WriteCommand {
            now_ms: now,
            op: WriteOp::Set {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                cond: crate::storage::SetCond::Nx,
                get: false,
                expire: crate::storage::ExpireSpec::At(at),
            },
        })
    };
    assert_eq!(set(1000, 1500), Reply::ok());
    assert_eq!(set(2000, 2500), Reply::ok()); // k expired at 1500: NX succeeds
    assert_eq!(set(1200, 3000), Reply::Null); // stamped earlier, applied at 2000: k (till 2500) exists
}

#[test]
fn reopen_keeps_data_and_apply_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock;
    {
        let db = Db::open(dir.path(), pinnacle_lsm::SyncPolicy::Always).expect("open");
        run(&db, "SET k v");
        run(&db, "SET e v EX 1000");
        run(&db, "INCRBYFLOAT f 1.5");
        run(&db, "SET gone v");
        run(&db, "DEL gone");
        clock = db.now_ms();
        // No flush: the WAL alone must bring everything back.
    }
    let db = Db::open(dir.path(), pinnacle_lsm::SyncPolicy::Always).expect("reopen");
    assert_eq!(run(&db, "GET k"), bulk("v"));
    assert!(matches!(run(&db, "TTL e"), Reply::Integer(999..=1000)));
    assert_eq!(run(&db, "OBJECT ENCODING f"), bulk("embstr"));
    assert_eq!(run(&db, "EXISTS gone"), int(0));
    assert_eq!(run(&db, "DBSIZE"), int(3));
    assert!(db.now_ms() >= clock);
}

#[test]
fn flushall_and_many_keys_on_the_lsm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), pinnacle_lsm::SyncPolicy::Never).expect("open");
    for i in 0..3000 {
        run(&db, &format!("SET key:{i} {}", "x".repeat(i % 200)));
    }
    db.engine().flush().expect("flush");
    assert_eq!(run(&db, "DBSIZE"), int(3000));
    assert_eq!(run(&db, "GET key:7"), bulk(&"x".repeat(7)));
    assert_eq!(
        db.count_keys_in_slot(crate::storage::slot::key_slot(b"key:7"))
            .expect("count"),
        1
    );
    assert_eq!(run(&db, "FLUSHALL"), Reply::ok());
    assert_eq!(run(&db, "DBSIZE"), int(0));
    assert_eq!(run(&db, "GET key:7"), Reply::Null);
    db.engine().compact_range(None, None).expect("compact");
    assert_eq!(run(&db, "DBSIZE"), int(0));
    run(&db, "SET after v");
    assert_eq!(run(&db, "KEYS *"), Reply::Array(vec![bulk("after")]));
}

#[test]
fn compaction_drops_expired_records_on_the_lsm() {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    // No sweeper and no background compaction: only the filter may remove records, and no
    // concurrent scan holds a snapshot that would make compaction keep them.
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(AtomicU64::new(0));
    let opts = pinnacle_lsm::Options {
        sync: pinnacle_lsm::SyncPolicy::Never,
        background_work: false,
        compaction_filter: Some(Arc::new(crate::storage::expire::ExpiryFilter::new(
            clock.clone(),
        ))),
        ..pinnacle_lsm::Options::default()
    };
    let engine = pinnacle_lsm::Lsm::open(dir.path(), opts).expect("open lsm");
    let db = Db::with_engine(Arc::new(engine), clock).expect("open");
    let now = db.now_ms();
    for i in 0..100 {
        db.apply(&WriteCommand {
            now_ms: now,
            op: WriteOp::Set {
                key: Bytes::from(format!("t{i}")),
                value: Bytes::from_static(b"v"),
                cond: crate::storage::SetCond::Always,
                get: false,
                expire: crate::storage::ExpireSpec::At(now + 1 + (i % 2) * 1_000_000),
            },
        });
    }
    // Advance the apply clock past the short expiries with an unrelated write (an entry that
    // changes nothing does not move the clock).
    db.apply(&WriteCommand {
        now_ms: now + 10,
        op: WriteOp::MSet {
            pairs: vec![(Bytes::from_static(b"tick"), Bytes::from_static(b"v"))],
        },
    });
    db.engine().flush().expect("flush");
    db.engine().compact_range(None, None).expect("compact");
    let mut physical = 0;
    db.for_each_meta(
        crate::storage::encoding::keyspace_start(),
        crate::storage::encoding::keyspace_end(),
        |_, _, _| {
            physical += 1;
            true
        },
    )
    .expect("scan");
    assert_eq!(
        physical, 51,
        "50 long-lived keys and `tick` survive compaction"
    );
    assert_eq!(run(&db, "DBSIZE"), int(51));
}

#[test]
fn background_sweeper_runs_in_an_opened_db() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), pinnacle_lsm::SyncPolicy::Never).expect("open");
    let now = db.now_ms();
    for i in 0..50 {
        db.apply(&WriteCommand {
            now_ms: now,
            op: WriteOp::Set {
                key: Bytes::from(format!("s{i}")),
                value: Bytes::from_static(b"v"),
                cond: crate::storage::SetCond::Always,
                get: false,
                expire: crate::storage::ExpireSpec::At(now + 20),
            },
        });
    }
    run(&db, "SET keep v");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while db.expired_keys() < 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sweeper did not delete expired keys"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        db.keys_in_slot(crate::storage::slot::key_slot(b"s1"), 100)
            .expect("keys")
            .len(),
        0
    );
    assert_eq!(run(&db, "DBSIZE"), int(1));
}
