//! In-process tests of the string commands (replies compared with redis-server 7.0.15).

use super::{DB_HANDLERS, HANDLERS as STRING_HANDLERS};
use crate::commands::keys::DB_HANDLERS as KEY_HANDLERS;
use crate::storage::{Db, ExpireSpec, SetCond, WriteCommand, WriteOp};
use bytes::Bytes;
use pinnacle_resp::{Protocol, Reply};

/// Runs one command (binary-safe argv) through this crate's string and key handlers.
pub(crate) fn run_bin(db: &Db, args: &[&[u8]]) -> Reply {
    let argv: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
    let mut name = String::from_utf8_lossy(args[0]).to_ascii_lowercase();
    if name == "object" {
        name = format!(
            "object|{}",
            String::from_utf8_lossy(args[1]).to_ascii_lowercase()
        );
    }
    let handler = DB_HANDLERS
        .iter()
        .chain(KEY_HANDLERS.iter())
        .find(|(n, _)| *n == name)
        .map(|(_, h)| *h)
        .unwrap_or_else(|| panic!("no handler for {name}"));
    handler(db, &argv)
}

/// Runs a space-separated command.
pub(crate) fn run(db: &Db, cmd: &str) -> Reply {
    let parts: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
    run_bin(db, &parts)
}

/// The RESP2 wire form of a command's reply, as a string.
pub(crate) fn wire(db: &Db, cmd: &str) -> String {
    String::from_utf8_lossy(&run(db, cmd).to_bytes(Protocol::Resp2)).into_owned()
}

/// The RESP3 wire form of a command's reply.
pub(crate) fn wire3(db: &Db, cmd: &str) -> String {
    String::from_utf8_lossy(&run(db, cmd).to_bytes(Protocol::Resp3)).into_owned()
}

pub(crate) fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

pub(crate) fn err(s: &str) -> Reply {
    Reply::error(s)
}

const NOT_INT: &str = "ERR value is not an integer or out of range";
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

#[test]
fn handler_names_are_lowercase_and_unique() {
    let mut names: Vec<&str> = STRING_HANDLERS.iter().map(|(n, _)| *n).collect();
    names.extend(KEY_HANDLERS.iter().map(|(n, _)| *n));
    for n in &names {
        assert_eq!(*n, n.to_ascii_lowercase());
    }
    let count = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count);
}

#[test]
fn get_set_basic() {
    let db = Db::in_memory();
    assert_eq!(run(&db, "GET k"), Reply::Null);
    assert_eq!(wire(&db, "GET k"), "$-1\r\n");
    assert_eq!(wire3(&db, "GET k"), "_\r\n");
    assert_eq!(wire(&db, "SET k v"), "+OK\r\n");
    assert_eq!(wire(&db, "GET k"), "$1\r\nv\r\n");
    assert_eq!(run(&db, "set k v2"), Reply::ok());
    assert_eq!(run(&db, "GET k"), bulk("v2"));
}

#[test]
fn set_binary_and_empty() {
    let db = Db::in_memory();
    let key: &[u8] = b"\x00\xff{\r\n}";
    let val: &[u8] = b"\x00\x01\x02\r\n\xff";
    assert_eq!(run_bin(&db, &[b"SET", key, val]), Reply::ok());
    assert_eq!(
        run_bin(&db, &[b"GET", key]),
        Reply::Bulk(Bytes::from_static(val))
    );
    assert_eq!(run_bin(&db, &[b"SET", b"", b""]), Reply::ok());
    assert_eq!(run_bin(&db, &[b"GET", b""]), Reply::Bulk(Bytes::new()));
    assert_eq!(run_bin(&db, &[b"EXISTS", b""]), Reply::Integer(1));
    assert_eq!(run_bin(&db, &[b"STRLEN", b""]), Reply::Integer(0));
    let big = vec![b'x'; 1 << 20];
    assert_eq!(run_bin(&db, &[b"SET", b"big", &big]), Reply::ok());
    assert_eq!(run(&db, "STRLEN big"), Reply::Integer(1 << 20));
}

#[test]
fn set_nx_xx_get() {
    let db = Db::in_memory();
    assert_eq!(run(&db, "SET k v XX"), Reply::Null);
    assert_eq!(run(&db, "SET k v NX"), Reply::ok());
    assert_eq!(run(&db, "SET k w NX"), Reply::Null);
    assert_eq!(run(&db, "GET k"), bulk("v"));
    assert_eq!(run(&db, "SET k w XX"), Reply::ok());
    assert_eq!(run(&db, "SET k x GET"), bulk("w"));
    assert_eq!(run(&db, "SET n x GET"), Reply::Null);
    assert_eq!(run(&db, "GET n"), bulk("x"));
    // NX + GET (Redis 7): the old value, and no write when the key exists.
    assert_eq!(run(&db, "SET k y NX GET"), bulk("x"));
    assert_eq!(run(&db, "GET k"), bulk("x"));
    assert_eq!(run(&db, "SET m y NX GET"), Reply::Null);
    assert_eq!(run(&db, "GET m"), bulk("y"));
    assert_eq!(run(&db, "SET z y XX GET"), Reply::Null);
    assert_eq!(run(&db, "EXISTS z"), Reply::Integer(0));
    assert_eq!(run(&db, "SET k v NX XX"), err("ERR syntax error"));
    assert_eq!(run(&db, "SET k v XX NX"), err("ERR syntax error"));
    assert_eq!(run(&db, "SET k v NX NX"), Reply::Null);
    assert_eq!(run(&db, "SET k v FOO"), err("ERR syntax error"));
    assert_eq!(run(&db, "SET k v EX"), err("ERR syntax error"));
}

#[test]
fn set_get_on_wrong_type() {
    let db = Db::in_memory();
    let now = db.now_ms();
    // No other type is writable yet: plant a hash metadata record directly.
    plant_hash(&db, b"h");
    assert_eq!(run(&db, "SET h v GET"), err(WRONGTYPE));
    assert_eq!(run(&db, "GET h"), err(WRONGTYPE));
    assert_eq!(run(&db, "GETSET h v"), err(WRONGTYPE));
    assert_eq!(run(&db, "GETDEL h"), err(WRONGTYPE));
    assert_eq!(run(&db, "GETEX h PERSIST"), err(WRONGTYPE));
    assert_eq!(run(&db, "GETEX h"), err(WRONGTYPE));
    assert_eq!(run(&db, "INCR h"), err(WRONGTYPE));
    assert_eq!(run(&db, "INCRBYFLOAT h 1"), err(WRONGTYPE));
    assert_eq!(run(&db, "INCRBYFLOAT h x"), err(WRONGTYPE));
    assert_eq!(run(&db, "APPEND h x"), err(WRONGTYPE));
    assert_eq!(run(&db, "STRLEN h"), err(WRONGTYPE));
    assert_eq!(run(&db, "GETRANGE h 0 1"), err(WRONGTYPE));
    assert_eq!(run(&db, "SETRANGE h 0 x"), err(WRONGTYPE));
    assert_eq!(run(&db, "SETRANGE h 0 "), err(WRONGTYPE));
    assert_eq!(run(&db, "MGET h"), Reply::Array(vec![Reply::Null]));
    assert_eq!(
        run(&db, "LCS h k"),
        err("ERR The specified keys must contain string values")
    );
    assert_eq!(run(&db, "TYPE h"), Reply::simple("hash"));
    // Plain SET overwrites any type.
    assert_eq!(run(&db, "SET h v"), Reply::ok());
    assert_eq!(run(&db, "TYPE h"), Reply::simple("string"));
    let _ = now;
}

/// Writes a hash metadata record for `key` (tests of type checks before hashes exist).
pub(crate) fn plant_hash(db: &Db, key: &[u8]) {
    use crate::storage::encoding::{meta_key, KeyType, Meta};
    let meta = Meta {
        kind: KeyType::Hash,
        expire_at: 0,
        version: 1,
        size: 1,
        value: Bytes::new(),
        enc: Default::default(),
        head: 0,
    };
    let mut batch = pinnacle_lsm::WriteBatch::new();
    batch.put(meta_key(key), meta.encode());
    db.engine().write(batch).expect("write");
}

#[test]
fn set_expire_options() {
    let db = Db::in_memory();
    assert_eq!(run(&db, "SET k v EX 100"), Reply::ok());
    assert_eq!(run(&db, "TTL k"), Reply::Integer(100));
    assert_eq!(run(&db, "SET k v PX 100000"), Reply::ok());
    assert_eq!(run(&db, "TTL k"), Reply::Integer(100));
    let at = db.now_ms() / 1000 + 200;
    assert_eq!(run(&db, &format!("SET k v EXAT {at}")), Reply::ok());
    assert!(matches!(run(&db, "TTL k"), Reply::Integer(199..=200)));
    assert_eq!(
        run(&db, &format!("SET k v PXAT {}", at * 1000)),
        Reply::ok()
    );
    assert_eq!(run(&db, "EXPIRETIME k"), Reply::Integer(at as i64));
    assert_eq!(run(&db, "SET k v2 KEEPTTL"), Reply::ok());
    assert_eq!(run(&db, "EXPIRETIME k"), Reply::Integer(at as i64));
    assert_eq!(run(&db, "SET k v3"), Reply::ok());
    assert_eq!(run(&db, "TTL k"), Reply::Integer(-1));
    // Past absolute time: accepted, and the key is gone.
    assert_eq!(run(&db, "SET k v PXAT 1"), Reply::ok());
    assert_eq!(run(&db, "GET k"), Reply::Null);
    for bad in [
        "EX 0",
        "EX -1",
        "PX 0",
        "EXAT 0",
        "PXAT -5",
        "EX 9223372036854776",
    ] {
        assert_eq!(
            run(&db, &format!("SET k v {bad}")),
            err("ERR invalid expire time in 'set' command"),
            "{bad}"
        );
    }
    assert_eq!(
        run(&db, "SET k v PX 9223372036854775807"),
        err("ERR invalid expire time in 'set' command")
    );
    assert_eq!(run(&db, "SET k v EX abc"), err(NOT_INT));
    assert_eq!(run(&db, "SET k v EX 1.5"), err(NOT_INT));
    for bad in [
        "EX 10 PX 10",
        "EX 10 KEEPTTL",
        "KEEPTTL EX 10",
        "PXAT 10 EXAT 10",
        "PERSIST",
    ] {
        assert_eq!(
            run(&db, &format!("SET k v {bad}")),
            err("ERR syntax error"),
            "{bad}"
        );
    }
    // The same expire option twice: last one wins.
    assert_eq!(run(&db, "SET k v EX 10 EX 20"), Reply::ok());
    assert_eq!(run(&db, "TTL k"), Reply::Integer(20));
    // Syntax is checked before the expire value.
    assert_eq!(run(&db, "SET k v EX abc FOO"), err("ERR syntax error"));
}

#[test]
fn setnx_setex_psetex_getset() {
    let db = Db::in_memory();
    assert_eq!(run(&db, "SETNX k v"), Reply::Integer(1));
    assert_eq!(run(&db, "SETNX k w"), Reply::Integer(0));
    assert_eq!(run(&db, "GET k"), bulk("v"));
    assert_eq!(run(&db, "SETEX k 10 x"), Reply::ok());
    assert_eq!(run(&db, "TTL k"), Reply::Integer(10));
    assert_eq!(run(&db, "PSETEX k 10000 y"), Reply::ok());
    assert!(matches!(run(&db, "PTTL k"), Reply::Integer(9000..=10000)));
    assert_eq!(
        run(&db, "SETEX k 0 x"),
        err("ERR invalid expire time in 'setex' command")
    );
    assert_eq!(
        run(&db, "PSETEX k -1 x"),
        err("ERR invalid expire time in 'psetex' command")
    );
    assert_eq!(run(&db, "SETEX k x x"), err(NOT_INT));
    assert_eq!(run(&db, "GETSET k z"), bulk("y"));
    assert_eq!(run(&db, "TTL k"), Reply::Integer(-1));
    assert_eq!(run(&db, "GETSET new z"), Reply::Null);
    assert_eq!(run(&db, "GET new"), bulk("z"));
}

#[test]
fn getdel_getex() {
    let db = Db::in_memory();
    assert_eq!(run(&db, "GETDEL k"), Reply::Null);
    run(&db, "SET k v");
    assert_eq!(run(&db, "GETDEL k"), bulk("v"));
    assert_eq!(run(&db, "EXISTS k"), Reply::Integer(0));
    assert_eq!(run(&db, "GETEX k EX 10"), Reply::Null);
    assert_eq!(run(&db, "EXISTS k"), Reply::Integer(0));
    run(&db, "SET k v");
    assert_eq!(run(&db, "GETEX k"), bulk("v"));
    assert_eq!(run(&db, "GETEX k EX 100"), bulk("v"));
    assert_eq!(run(&db, "TTL k"), Reply::Integer(100));
    assert_eq!(run(&db, "GETEX k PX 50000"), bulk("v"));
    assert_eq!(run(&db, "TTL k"), Reply::Integer(50));
    assert_eq!(run(&db, "GETEX k PERSIST"), bulk("v"));
    assert_eq!(run(&db, "TTL k"), Reply::Integer(-1));
    let at = db.now_ms() / 1000 + 300;
    assert_eq!(run(&db, &format!("GETEX k EXAT {at}")), bulk("v"));
    assert_eq!(run(&db, "EXPIRETIME k"), Reply::Integer(at as i64));
    // A time in the past deletes the key but still returns the value.
    assert_eq!(run(&db, "GETEX k PXAT 1"), bulk("v"));
    assert_eq!(run(&db, "EXISTS k"), Reply::Integer(0));
    run(&db, "SET k v");
    for bad in [
        "EX 10 PERSIST",
        "PERSIST EX 10",
        "KEEPTTL",
        "NX",
        "GET",
        "EX 1 PX 1",
        "FOO",
    ] {
        assert_eq!(
            run(&db, &format!("GETEX k {bad}")),
            err("ERR syntax error"),
            "{bad}"
        );
    }
    assert_eq!(
        run(&db, "GETEX k EX 0"),
        err("ERR invalid expire time in 'getex' command")
    );
    assert_eq!(run(&db, "GETEX k EX x"), err(NOT_INT));
    // The key is looked up before the time is validated.
    assert_eq!(run(&db, "GETEX nokey EX 0"), Reply::Null);
    assert_eq!(run(&db, "GETEX nokey PXAT abc"), Reply::Null);
    plant_hash(&db, b"h");
    assert_eq!(run(&db, "GETEX h EX 0"), err(WRONGTYPE));
    assert_eq!(run(&db, "GETEX k PERSIST PERSIST"), bulk("v"));
}

#[test]
fn mget_mset_msetnx() {
    let db = Db::in_memory();
    assert_eq!(run(&db, "MSET a 1 b 2"), Reply::ok());
    assert_eq!(
        run(&db, "MGET a b c a"),
        Reply::Array(vec![bulk("1"), bulk("2"), Reply::Null, bulk("1")])
    );
    assert_eq!(wire(&db, "MGET c"), "*1\r\n$-1\r\n");
    assert_eq!(wire3(&db, "MGET c"), "*1\r\n_\r\n");
    assert_eq!(
        run(&db, "MSET a 1 b"),
        err("ERR wrong number of arguments for 'mset' command")
    );
    assert_eq!(
        run(&db, "MSETNX a 1 b"),
        err("ERR wrong number of arguments for 'msetnx' command")
    );
    assert_eq!(run(&db, "MSET a 3 a 4"), Reply::ok());
    assert_eq!(run(&db, "GET a"), bulk("4"));
    assert_eq!(run(&db, "MSETNX a 1 x 1"), Reply::Integer(0));
    assert_eq!(run(&db, "EXISTS x"), Reply::Integer(0));
    assert_eq!(run(&db, "MSETNX x 1 y 2 x 3"), Reply::Integer(1));
    assert_eq!(
        run(&db, "MGET x y"),
        Reply::Array(vec![bulk("3"), bulk("2")])
    );
    run(&db, "SET t v EX 100");
    run(&db, "MSET t w");
    assert_eq!(run(&db, "TTL t"), Reply::Integer(-1));
}

#[test]
fn incr_family() {
    let db = Db::in_memory();
    assert_eq!(run(&db, "INCR n"), Reply::Integer(1));
    assert_eq!(wire(&db, "INCR n"), ":2\r\n");
    assert_eq!(run(&db, "DECR n"), Reply::Integer(1));
    assert_eq!(run(&db, "INCRBY n 10"), Reply::Integer(11));
    assert_eq!(run(&db, "DECRBY n 20"), Reply::Integer(-9));
    assert_eq!(run(&db, "INCRBY n -1"), Reply::Integer(-10));
    assert_eq!(run(&db, "GET n"), bulk("-10"));
    assert_eq!(run(&db, "INCRBY n x"), err(NOT_INT));
    assert_eq!(run(&db, "INCRBY n 1.5"), err(NOT_INT));
    assert_eq!(run(&db, "INCRBY n 99999999999999999999"), err(NOT_INT));
    assert_eq!(
        run(&db, "DECRBY n -9223372036854775808"),
        err("ERR decrement would overflow")
    );
    run(&db, "SET n 9223372036854775807");
    assert_eq!(
        run(&db, "INCR n"),
        err("ERR increment or decrement would overflow")
    );
    run(&db, "SET n -9223372036854775808");
    assert_eq!(
        run(&db, "DECR n"),
        err("ERR increment or decrement would overflow")
    );
    assert_eq!(run(&db, "INCRBY n 9223372036854775807"), Reply::Integer(-1));
    for bad in ["abc", " 1", "1 ", "+1", "01", "-0", "1.0", ""] {
        run_bin(&db, &[b"SET", b"s", bad.as_bytes()]);
        assert_eq!(run(&db, "INCR s"), err(NOT_INT), "{bad:?}");
    }
    // INCR keeps the TTL.
    run(&db, "SET t 5 EX 100");
    assert_eq!(run(&db, "INCR t"), Reply::Integer(6));
    assert_eq!(run(&db, "TTL t"), Reply::Integer(100));
}

#[test]
fn incrbyfloat() {
    let db = Db::in_memory();
    assert_eq!(run(&db, "INCRBYFLOAT f 10.5"), bulk("10.5"));
    assert_eq!(run(&db, "INCRBYFLOAT f 0.1"), bulk("10.6"));
    assert_eq!(run(&db, "INCRBYFLOAT f -10.6"), bulk("0"));
    run(&db, "SET f 5.0e3");
    assert_eq!(run(&db, "INCRBYFLOAT f 2.0e2"), bulk("5200"));
    run(&db, "SET f 1");
    assert_eq!(run(&db, "INCRBYFLOAT f 1.5"), bulk("2.5"));
    assert_eq!(
        run(&db, "INCRBYFLOAT f abc"),
        err("ERR value is not a valid float")
    );
    assert_eq!(
        run(&db, "INCRBYFLOAT f nan"),
        err("ERR value is not a valid float")
    );
    assert_eq!(
        run(&db, "INCRBYFLOAT f inf"),
        err("ERR increment would produce NaN or Infinity")
    );
    run(&db, "SET f abc");
    assert_eq!(
        run(&db, "INCRBYFLOAT f 1"),
        err("ERR value is not a valid float")
    );
    run(&db, "SET t 1 EX 100");
    assert_eq!(run(&db, "INCRBYFLOAT t 1"), bulk("2"));
    assert_eq!(run(&db, "TTL t"), Reply::Integer(100));
    // Long-double results, byte for byte as redis-server 7.0.15 on x86-64 prints them.
    assert_eq!(
        run(&db, "INCRBYFLOAT g 1e308"),
        bulk(concat!(
            "9999999999999999999668587965584564566056009984741556720779704799492173",
            "4868838061872100126921888539320446747225054013223152134749593960583597",
            "4208144301964187679591000196031907786631096045071066679391533957889389",
            "1456054356306126836490161863021708658925344488162379130085575731814242",
            "4510452728255046343928578048",
        ))
    );
    match run(&db, "INCRBYFLOAT h 1e4000") {
        Reply::Bulk(b) => {
            assert_eq!(b.len(), 4000);
            assert!(b.starts_with(b"999999999999999999996546387309962378493249258350695763130150"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(run(&db, "INCRBYFLOAT x 0.1"), bulk("0.1"));
    assert_eq!(run(&db, "INCRBYFLOAT x 0.2"), bulk("0.3"));
    assert_eq!(run(&db, "INCRBYFLOAT y 1e-20"), bulk("0"));
    assert_eq!(
        run(&db, "INCRBYFLOAT y 1.23456789012345678901"),
        bulk("1.23456789012345679")
    );
    assert_eq!(run(&db, "INCRBYFLOAT w 0x1p-2"), bulk("0.25"));
    assert_eq!(run(&db, "INCRBYFLOAT w 1e-4940"), bulk("0.25"));
    assert_eq!(run(&db, "INCRBYFLOAT q .5"), bulk("0.5"));
    assert_eq!(run(&db, "INCRBYFLOAT q 5."), bulk("5.5"));
    assert_eq!(
        run(&db, "INCRBYFLOAT q  1"),
        err("ERR value is not a valid float")
    );
}

#[test]
fn append_strlen() {
    let db = Db::in_memory();
    assert_eq!(run(&db, "STRLEN k"), Reply::Integer(0));
    assert_eq!(run(&db, "APPEND k foo"), Reply::Integer(3));
    assert_eq!(run(&db, "APPEND k bar"), Reply::Integer(6));
    assert_eq!(run(&db, "GET k"), bulk("foobar"));
    assert_eq!(run(&db, "STRLEN k"), Reply::Integer(6));
    run(&db, "SET t a EX 100");
    run(&db, "APPEND t b");
    assert_eq!(run(&db, "TTL t"), Reply::Integer(100));
}

#[test]
fn getrange_substr() {
    let db = Db::in_memory();
    run(&db, "SET k Hello");
    let cases = [
        ("0 -1", "Hello"),
        ("0 0", "H"),
        ("1 3", "ell"),
        ("-3 -1", "llo"),
        ("-1 -3", ""),
        ("10 20", ""),
        ("0 100", "Hello"),
        ("-100 1", "He"),
        ("3 1", ""),
        ("-100 -100", "H"),
        ("4 -100", ""),
    ];
    for (args, want) in cases {
        assert_eq!(
            run(&db, &format!("GETRANGE k {args}")),
            bulk(want),
            "{args}"
        );
        assert_eq!(run(&db, &format!("SUBSTR k {args}")), bulk(want), "{args}");
    }
    assert_eq!(run(&db, "GETRANGE nokey 0 -1"), bulk(""));
    assert_eq!(run(&db, "GETRANGE k a 1"), err(NOT_INT));
    assert_eq!(run(&db, "GETRANGE nokey 0 a"), err(NOT_INT));
    run(&db, "SET e ");
    assert_eq!(run(&db, "GETRANGE e 0 -1"), bulk(""));
}

#[test]
fn setrange() {
    let db = Db::in_memory();
    run(&db, "SET k Hello");
    assert_eq!(run(&db, "SETRANGE k 1 a"), Reply::Integer(5));
    assert_eq!(run(&db, "GET k"), bulk("Hallo"));
    assert_eq!(run(&db, "SETRANGE k 7 !"), Reply::Integer(8));
    assert_eq!(
        run(&db, "GET k"),
        Reply::Bulk(Bytes::from_static(b"Hallo\0\0!"))
    );
    assert_eq!(run(&db, "SETRANGE n 2 x"), Reply::Integer(3));
    assert_eq!(run(&db, "GET n"), Reply::Bulk(Bytes::from_static(b"\0\0x")));
    assert_eq!(
        run_bin(&db, &[b"SETRANGE", b"m", b"5", b""]),
        Reply::Integer(0)
    );
    assert_eq!(run(&db, "EXISTS m"), Reply::Integer(0));
    assert_eq!(
        run_bin(&db, &[b"SETRANGE", b"k", b"100", b""]),
        Reply::Integer(8)
    );
    assert_eq!(
        run(&db, "SETRANGE k -1 x"),
        err("ERR offset is out of range")
    );
    assert_eq!(run(&db, "SETRANGE k x x"), err(NOT_INT));
    let too_long = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
    assert_eq!(run(&db, "SETRANGE k 536870912 x"), err(too_long));
    assert_eq!(run(&db, "SETRANGE k 536870911 xx"), err(too_long));
    assert_eq!(run(&db, "SETRANGE k 9223372036854775807 x"), err(too_long));
    // Empty value on a missing key is 0 even beyond the limit (checked first in Redis).
    assert_eq!(
        run_bin(&db, &[b"SETRANGE", b"zz", b"536870912", b""]),
        Reply::Integer(0)
    );
}

#[test]
fn lcs() {
    let db = Db::in_memory();
    run(&db, "MSET key1 ohmytext key2 mynewtext");
    assert_eq!(run(&db, "LCS key1 key2"), bulk("mytext"));
    assert_eq!(run(&db, "LCS key1 key2 LEN"), Reply::Integer(6));
    assert_eq!(
        wire(&db, "LCS key1 key2 IDX"),
        "*4\r\n$7\r\nmatches\r\n*2\r\n*2\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n*2\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n$3\r\nlen\r\n:6\r\n"
    );
    assert_eq!(
        wire3(&db, "LCS key1 key2 IDX MINMATCHLEN 4 WITHMATCHLEN"),
        "%2\r\n$7\r\nmatches\r\n*1\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n$3\r\nlen\r\n:6\r\n"
    );
    assert_eq!(run(&db, "LCS key1 nokey"), bulk(""));
    assert_eq!(run(&db, "LCS nokey nokey2 LEN"), Reply::Integer(0));
    assert_eq!(
        run(&db, "LCS key1 key2 IDX LEN"),
        err("ERR If you want both the length and indexes, please just use IDX.")
    );
    assert_eq!(run(&db, "LCS key1 key2 FOO"), err("ERR syntax error"));
    // The DP table would exceed 512 MB: refused before allocating, like Redis.
    let big = vec![b'a'; 12000];
    run_bin(&db, &[b"SET", b"big1", &big]);
    run_bin(&db, &[b"SET", b"big2", &big]);
    assert_eq!(
        run(&db, "LCS big1 big2"),
        err("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")
    );
    assert_eq!(
        run(&db, "LCS key1 key2 MINMATCHLEN"),
        err("ERR syntax error")
    );
    assert_eq!(run(&db, "LCS key1 key2 MINMATCHLEN x"), err(NOT_INT));
    assert_eq!(
        run(&db, "LCS key1 key2 IDX MINMATCHLEN -5"),
        run(&db, "LCS key1 key2 IDX")
    );
}

#[test]
fn expired_keys_are_invisible() {
    let db = Db::in_memory();
    let t0 = 1_000_000u64;
    let set = |key: &str, at: u64| {
        db.apply(&WriteCommand {
            now_ms: t0,
            op: WriteOp::Set {
                key: Bytes::copy_from_slice(key.as_bytes()),
                value: Bytes::from_static(b"v"),
                cond: SetCond::Always,
                get: false,
                expire: ExpireSpec::At(at),
            },
        })
    };
    assert_eq!(set("a", t0 + 10), Reply::ok());
    assert_eq!(set("b", 0), Reply::ok());
    assert!(db.get(b"a", t0 + 9).expect("read").is_some());
    assert!(db.get(b"a", t0 + 10).expect("read").is_none());
    // The handlers read with the real clock, long after t0: `a` is gone everywhere.
    assert_eq!(run(&db, "GET a"), Reply::Null);
    assert_eq!(run(&db, "EXISTS a"), Reply::Integer(0));
    assert_eq!(run(&db, "TTL a"), Reply::Integer(-2));
    assert_eq!(run(&db, "TYPE a"), Reply::simple("none"));
    assert_eq!(run(&db, "DBSIZE"), Reply::Integer(1));
    assert_eq!(run(&db, "KEYS *"), Reply::Array(vec![bulk("b")]));
    assert_eq!(
        run(&db, "SCAN 0 COUNT 100"),
        Reply::Array(vec![bulk("0"), Reply::Array(vec![bulk("b")])])
    );
    assert_eq!(run(&db, "RANDOMKEY"), bulk("b"));
    assert_eq!(
        run(&db, "MGET a b"),
        Reply::Array(vec![Reply::Null, bulk("v")])
    );
    assert_eq!(run(&db, "STRLEN a"), Reply::Integer(0));
    assert_eq!(run(&db, "SETNX a x"), Reply::Integer(1));
    assert_eq!(run(&db, "TTL a"), Reply::Integer(-1));
}
