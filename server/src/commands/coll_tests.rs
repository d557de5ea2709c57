//! In-process tests of the hash and set commands (expected replies taken from redis-server
//! 7.0.15), plus storage properties: O(1) DEL by version, RENAME/COPY of sub-keys, the
//! compaction filter dropping stale sub-keys.

use crate::commands::{hashes, keys, lists, sets, strings, zsets};
use crate::storage::{Db, WriteCommand, WriteOp};
use bytes::Bytes;
use pinnacle_resp::{Protocol, Reply};

/// Runs one command through the string, key, hash and set handlers.
pub(crate) fn run_p(db: &Db, proto: Protocol, args: &[&[u8]]) -> Reply {
    let argv: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
    let mut name = String::from_utf8_lossy(args[0]).to_ascii_lowercase();
    if name == "object" {
        name = format!(
            "object|{}",
            String::from_utf8_lossy(args[1]).to_ascii_lowercase()
        );
    }
    if name == "xread" {
        return crate::commands::streams::xread(db, proto, &argv);
    }
    if let Some((_, h)) = hashes::PDB_HANDLERS
        .iter()
        .chain(sets::PDB_HANDLERS.iter())
        .chain(lists::PDB_HANDLERS.iter())
        .chain(zsets::PDB_HANDLERS.iter())
        .chain(crate::commands::zset_algebra::PDB_HANDLERS.iter())
        .chain(crate::commands::streams::PDB_HANDLERS.iter())
        .find(|(n, _)| *n == name)
    {
        return h(db, proto, &argv);
    }
    let h = strings::DB_HANDLERS
        .iter()
        .chain(keys::DB_HANDLERS.iter())
        .find(|(n, _)| *n == name)
        .map(|(_, h)| *h)
        .unwrap_or_else(|| panic!("no handler for {name}"));
    h(db, &argv)
}

fn w2(db: &Db, cmd: &str) -> String {
    let parts: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
    String::from_utf8_lossy(&run_p(db, Protocol::Resp2, &parts).to_bytes(Protocol::Resp2))
        .into_owned()
}

fn w3(db: &Db, cmd: &str) -> String {
    let parts: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
    String::from_utf8_lossy(&run_p(db, Protocol::Resp3, &parts).to_bytes(Protocol::Resp3))
        .into_owned()
}

const WT: &str = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

#[test]
fn hash_basics() {
    let db = Db::in_memory();
    assert_eq!(w2(&db, "HSET h a 1 b 2"), ":2\r\n");
    assert_eq!(w2(&db, "HSET h a 3 c 4"), ":1\r\n");
    assert_eq!(w2(&db, "HGET h a"), "$1\r\n3\r\n");
    assert_eq!(w2(&db, "HGET h z"), "$-1\r\n");
    assert_eq!(w3(&db, "HGET h z"), "_\r\n");
    assert_eq!(w2(&db, "HLEN h"), ":3\r\n");
    assert_eq!(w2(&db, "HMGET h a z"), "*2\r\n$1\r\n3\r\n$-1\r\n");
    assert_eq!(w2(&db, "HSETNX h a 9"), ":0\r\n");
    assert_eq!(w2(&db, "HSETNX h d 9"), ":1\r\n");
    assert_eq!(w2(&db, "HMSET h e 5"), "+OK\r\n");
    assert_eq!(
        w2(&db, "HSET h x"),
        "-ERR wrong number of arguments for 'hset' command\r\n"
    );
    assert_eq!(w2(&db, "HEXISTS h a"), ":1\r\n");
    assert_eq!(w2(&db, "HSTRLEN h d"), ":1\r\n");
    assert_eq!(w2(&db, "HDEL h a b z"), ":2\r\n");
    assert_eq!(
        w2(&db, "HKEYS h"),
        "*3\r\n$1\r\nc\r\n$1\r\nd\r\n$1\r\ne\r\n"
    );
    assert!(w3(&db, "HGETALL h").starts_with("%3\r\n"));
    assert_eq!(w2(&db, "HGETALL nx"), "*0\r\n");
    assert_eq!(w3(&db, "HGETALL nx"), "%0\r\n");
    assert_eq!(w2(&db, "HINCRBY h c 10"), ":14\r\n");
    assert_eq!(w2(&db, "HINCRBY h n -1"), ":-1\r\n");
    assert_eq!(w2(&db, "HSET h s abc"), ":1\r\n");
    assert_eq!(
        w2(&db, "HINCRBY h s 1"),
        "-ERR hash value is not an integer\r\n"
    );
    assert_eq!(
        w2(&db, "HINCRBYFLOAT h s 1"),
        "-ERR hash value is not a float\r\n"
    );
    assert_eq!(w2(&db, "HINCRBYFLOAT h f 1.5"), "$3\r\n1.5\r\n");
    assert_eq!(
        w2(&db, "HINCRBYFLOAT h f inf"),
        "-ERR value is NaN or Infinity\r\n"
    );
    assert_eq!(w2(&db, "HSET h big 9223372036854775807"), ":1\r\n");
    assert_eq!(
        w2(&db, "HINCRBY h big 1"),
        "-ERR increment or decrement would overflow\r\n"
    );
    assert_eq!(w2(&db, "OBJECT ENCODING h"), "$8\r\nlistpack\r\n");
    assert_eq!(w2(&db, "TYPE h"), "+hash\r\n");
    assert_eq!(w2(&db, "SET str v"), "+OK\r\n");
    assert_eq!(w2(&db, "HGET str a"), WT);
    assert_eq!(w2(&db, "HSET str a b"), WT);
    assert_eq!(w2(&db, "GET h"), WT);
    assert_eq!(w2(&db, "HSCAN h 0 COUNT 0"), "-ERR syntax error\r\n");
    assert_eq!(w2(&db, "HSCAN nx 0 COUNT 0"), "*2\r\n$1\r\n0\r\n*0\r\n");
    assert_eq!(w2(&db, "HRANDFIELD nx"), "$-1\r\n");
    assert_eq!(w2(&db, "HRANDFIELD nx 3"), "*0\r\n");
    assert_eq!(w2(&db, "HRANDFIELD h 1 x"), "-ERR syntax error\r\n");
    assert!(w2(&db, "HRANDFIELD h -5").starts_with("*5\r\n"));
    assert!(w3(&db, "HRANDFIELD h -2 WITHVALUES").starts_with("*2\r\n*2\r\n"));
    assert!(w2(&db, "HRANDFIELD h -2 WITHVALUES").starts_with("*4\r\n"));
}

#[test]
fn hash_encoding_converts_once() {
    let db = Db::in_memory();
    let long = "x".repeat(65);
    assert_eq!(w2(&db, &format!("HSET h a {long}")), ":1\r\n");
    assert_eq!(w2(&db, "OBJECT ENCODING h"), "$9\r\nhashtable\r\n");
    assert_eq!(w2(&db, "HSET h a short"), ":0\r\n");
    assert_eq!(w2(&db, "OBJECT ENCODING h"), "$9\r\nhashtable\r\n");
    for i in 0..129 {
        w2(&db, &format!("HSET g f{i} v"));
    }
    assert_eq!(w2(&db, "OBJECT ENCODING g"), "$9\r\nhashtable\r\n");
    // A big hash scans in pages; every field comes back exactly once.
    let mut cursor = "0".to_string();
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let r = run_p(
            &db,
            Protocol::Resp2,
            &[b"HSCAN", b"g", cursor.as_bytes(), b"COUNT", b"7"],
        );
        let Reply::Array(parts) = r else {
            panic!("{r:?}")
        };
        let (Reply::Bulk(c), Reply::Array(items)) = (&parts[0], &parts[1]) else {
            panic!()
        };
        for pair in items.chunks(2) {
            if let Reply::Bulk(f) = &pair[0] {
                assert!(seen.insert(f.clone()));
            }
        }
        cursor = String::from_utf8_lossy(c).into_owned();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 129);
}

#[test]
fn set_basics() {
    let db = Db::in_memory();
    assert_eq!(w2(&db, "SADD s 1 2 3 2"), ":3\r\n");
    assert_eq!(w2(&db, "OBJECT ENCODING s"), "$6\r\nintset\r\n");
    assert_eq!(w2(&db, "SADD s a"), ":1\r\n");
    assert_eq!(w2(&db, "OBJECT ENCODING s"), "$9\r\nhashtable\r\n");
    assert_eq!(w2(&db, "SREM s a z"), ":1\r\n");
    assert_eq!(w2(&db, "OBJECT ENCODING s"), "$9\r\nhashtable\r\n");
    assert_eq!(w2(&db, "SCARD s"), ":3\r\n");
    assert_eq!(w2(&db, "SISMEMBER s 1"), ":1\r\n");
    assert_eq!(w2(&db, "SMISMEMBER s 1 9"), "*2\r\n:1\r\n:0\r\n");
    assert_eq!(
        w3(&db, "SMEMBERS s"),
        "~3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n"
    );
    assert_eq!(w3(&db, "SMEMBERS nx"), "~0\r\n");
    assert_eq!(w2(&db, "SADD t 3 4"), ":2\r\n");
    assert_eq!(w2(&db, "SINTER s t"), "*1\r\n$1\r\n3\r\n");
    assert_eq!(w2(&db, "SINTER s t nx"), "*0\r\n");
    assert!(w2(&db, "SUNION s t nx").starts_with("*4\r\n"));
    assert_eq!(w2(&db, "SDIFF s t"), "*2\r\n$1\r\n1\r\n$1\r\n2\r\n");
    assert_eq!(w2(&db, "SINTERCARD 2 s t"), ":1\r\n");
    assert_eq!(w2(&db, "SINTERCARD 1 s LIMIT 2"), ":2\r\n");
    assert_eq!(
        w2(&db, "SINTERCARD 0 s"),
        "-ERR numkeys should be greater than 0\r\n"
    );
    assert_eq!(w2(&db, "SUNIONSTORE d s t"), ":4\r\n");
    assert_eq!(w2(&db, "OBJECT ENCODING d"), "$6\r\nintset\r\n");
    assert_eq!(w2(&db, "SINTERSTORE d s nx"), ":0\r\n");
    assert_eq!(w2(&db, "EXISTS d"), ":0\r\n");
    assert_eq!(w2(&db, "SDIFFSTORE s s t"), ":2\r\n");
    assert_eq!(w2(&db, "SMEMBERS s"), "*2\r\n$1\r\n1\r\n$1\r\n2\r\n");
    assert_eq!(w2(&db, "SMOVE s t 1"), ":1\r\n");
    assert_eq!(w2(&db, "SMOVE s t 1"), ":0\r\n");
    assert_eq!(w2(&db, "SMOVE s s 2"), ":1\r\n");
    assert_eq!(w2(&db, "SET str v"), "+OK\r\n");
    assert_eq!(w2(&db, "SMOVE s str 2"), WT);
    assert_eq!(w2(&db, "SADD str 1"), WT);
    assert_eq!(w2(&db, "SINTER s str"), WT);
    assert_eq!(w2(&db, "SPOP s 1 2"), "-ERR syntax error\r\n");
    assert_eq!(
        w2(&db, "SPOP s -1"),
        "-ERR value is out of range, must be positive\r\n"
    );
    assert_eq!(w3(&db, "SPOP nx 2"), "~0\r\n");
    assert_eq!(w2(&db, "SPOP nx"), "$-1\r\n");
    assert_eq!(w2(&db, "SRANDMEMBER nx 2"), "*0\r\n");
    assert_eq!(w2(&db, "SPOP s"), "$1\r\n2\r\n");
    assert_eq!(w2(&db, "EXISTS s"), ":0\r\n");
    assert!(w2(&db, "SRANDMEMBER t -5").starts_with("*5\r\n"));
    assert_eq!(
        w3(&db, "SPOP t 10"),
        "~3\r\n$1\r\n1\r\n$1\r\n3\r\n$1\r\n4\r\n"
    );
    assert_eq!(w2(&db, "EXISTS t"), ":0\r\n");
}

#[test]
fn spop_entry_carries_the_choice() {
    // Replaying the same entry on two replicas removes the same members.
    let a = Db::in_memory();
    let b = Db::in_memory();
    for db in [&a, &b] {
        w2(db, "SADD s x y z");
    }
    let cmd = WriteCommand {
        now_ms: 1,
        op: WriteOp::SPop {
            key: Bytes::from_static(b"s"),
            members: vec![Bytes::from_static(b"y")],
            count: false,
        },
    };
    let entry = cmd.encode();
    for db in [&a, &b] {
        let r = db.apply_encoded(entry.clone()).expect("decodes");
        assert_eq!(r, Reply::Bulk(Bytes::from_static(b"y")));
        assert_eq!(w2(db, "SMEMBERS s"), "*2\r\n$1\r\nx\r\n$1\r\nz\r\n");
    }
}

#[test]
fn delete_rename_copy_move_sub_keys() {
    let db = Db::in_memory();
    w2(&db, "HSET h a 1 b 2");
    assert_eq!(w2(&db, "DEL h"), ":1\r\n");
    // A recreated hash has a new version: the old fields are gone.
    w2(&db, "HSET h c 3");
    assert_eq!(w2(&db, "HGETALL h"), "*2\r\n$1\r\nc\r\n$1\r\n3\r\n");
    assert_eq!(w2(&db, "RENAME h h2"), "+OK\r\n");
    assert_eq!(w2(&db, "HGETALL h"), "*0\r\n");
    assert_eq!(w2(&db, "HGETALL h2"), "*2\r\n$1\r\nc\r\n$1\r\n3\r\n");
    assert_eq!(w2(&db, "COPY h2 h3"), ":1\r\n");
    w2(&db, "HSET h2 c 4");
    assert_eq!(w2(&db, "HGET h3 c"), "$1\r\n3\r\n");
    w2(&db, "SADD s m");
    assert_eq!(w2(&db, "RENAME s h3"), "+OK\r\n");
    assert_eq!(w2(&db, "TYPE h3"), "+set\r\n");
    assert_eq!(w2(&db, "SMEMBERS h3"), "*1\r\n$1\r\nm\r\n");
    assert_eq!(w2(&db, "SET h3 v"), "+OK\r\n");
    assert_eq!(w2(&db, "SMEMBERS h3"), WT);
    assert_eq!(
        w2(&db, "SCAN 0 TYPE hash"),
        "*2\r\n$1\r\n0\r\n*1\r\n$2\r\nh2\r\n"
    );
    assert_eq!(w2(&db, "FLUSHALL"), "+OK\r\n");
    assert_eq!(w2(&db, "HGETALL h2"), "*0\r\n");
}

#[test]
fn expired_collection_is_gone() {
    let db = Db::in_memory();
    w2(&db, "SADD s a");
    assert_eq!(w2(&db, "PEXPIRE s 1"), ":1\r\n");
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(w2(&db, "SCARD s"), ":0\r\n");
    assert_eq!(w2(&db, "SADD s b"), ":1\r\n");
    assert_eq!(w2(&db, "SMEMBERS s"), "*1\r\n$1\r\nb\r\n");
}

#[test]
fn compaction_drops_stale_sub_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), pinnacle_lsm::SyncPolicy::Never).expect("open");
    for i in 0..50 {
        w2(&db, &format!("HSET dead f{i} v"));
        w2(&db, &format!("HSET live f{i} v"));
    }
    w2(&db, "DEL dead");
    let engine = db.engine().clone();
    engine.flush().expect("flush");
    engine.compact_range(None, None).expect("compact");
    let start = crate::storage::encoding::sub_prefix(b"dead", 0);
    let live = crate::storage::encoding::sub_prefix(b"live", 0);
    let count = |prefix: &Bytes, key: &[u8]| {
        let end = crate::storage::encoding::keyspace_end();
        engine
            .scan(
                (
                    std::ops::Bound::Included(prefix.slice(..3)),
                    std::ops::Bound::Excluded(end),
                ),
                None,
            )
            .expect("scan")
            .filter_map(Result::ok)
            .filter(|(k, _)| {
                crate::storage::encoding::decode_sub_key(k).is_some_and(|(_, uk, _, _)| uk == key)
            })
            .count()
    };
    assert_eq!(count(&start, b"dead"), 0);
    assert_eq!(count(&live, b"live"), 50);
    assert_eq!(w2(&db, "HLEN live"), ":50\r\n");
}

/// The compaction filter reuses a metadata lookup for the sub-keys that follow it, but only
/// within the compactions running when it looked: it may keep a sub-key that became stale
/// since (conservative), and a new compaction looks again.
#[test]
fn compaction_filter_reuses_a_lookup_only_within_its_compactions() {
    use crate::storage::encoding::{decode_sub_key, keyspace_end, keyspace_start, sub_key};
    use crate::storage::expire::ExpiryFilter;
    use pinnacle_lsm::{CompactionFilter, Engine, FilterDecision};
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(AtomicU64::new(0));
    let f = Arc::new(ExpiryFilter::new(clock.clone()));
    let opts = pinnacle_lsm::Options {
        sync: pinnacle_lsm::SyncPolicy::Never,
        background_work: false,
        compaction_filter: Some(f.clone()),
        ..pinnacle_lsm::Options::default()
    };
    let engine: Arc<dyn Engine> =
        Arc::new(pinnacle_lsm::Lsm::open(dir.path(), opts).expect("open lsm"));
    f.attach(Arc::downgrade(&engine));
    let db = Db::with_engine(engine.clone(), clock).expect("open");
    let version_of = |key: &[u8]| {
        engine
            .scan(
                (
                    std::ops::Bound::Included(keyspace_start()),
                    std::ops::Bound::Excluded(keyspace_end()),
                ),
                None,
            )
            .expect("scan")
            .filter_map(Result::ok)
            .filter_map(|(k, _)| {
                decode_sub_key(&k).and_then(|(_, uk, v, _)| (uk == key).then_some(v))
            })
            .max()
            .expect("a sub-key")
    };
    w2(&db, "HSET k f v");
    let v1 = version_of(b"k");
    let old = sub_key(b"k", v1, b"f");
    f.begin_compaction();
    assert_eq!(f.filter(1, &old, b"v"), FilterDecision::Keep);
    w2(&db, "DEL k");
    // The same compaction reuses its lookup: kept, never wrongly dropped.
    assert_eq!(f.filter(1, &old, b"v"), FilterDecision::Keep);
    f.begin_compaction();
    assert_eq!(f.filter(1, &old, b"v"), FilterDecision::Remove);
    // Re-created under a new version: the old sub-key stays stale, the new one is live.
    w2(&db, "HSET k g v");
    f.begin_compaction();
    let v2 = version_of(b"k");
    assert!(v2 > v1);
    assert_eq!(
        f.filter(1, &sub_key(b"k", v2, b"g"), b"v"),
        FilterDecision::Keep
    );
    assert_eq!(f.filter(1, &old, b"v"), FilterDecision::Remove);
    // End to end: a compaction drops the deleted version and keeps the new one.
    engine.flush().expect("flush");
    engine.compact_range(None, None).expect("compact");
    assert_eq!(w2(&db, "HGETALL k"), "*2\r\n$1\r\ng\r\n$1\r\nv\r\n");
}

#[test]
fn list_basics() {
    let db = Db::in_memory();
    assert_eq!(w2(&db, "RPUSH l a b c"), ":3\r\n");
    assert_eq!(w2(&db, "LPUSH l z"), ":4\r\n");
    assert_eq!(
        w2(&db, "LRANGE l 0 -1"),
        "*4\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
    );
    assert_eq!(w2(&db, "LINDEX l -1"), "$1\r\nc\r\n");
    assert_eq!(w2(&db, "LINDEX l 9"), "$-1\r\n");
    assert_eq!(w2(&db, "LPUSHX nx a"), ":0\r\n");
    assert_eq!(w2(&db, "LSET l 1 A"), "+OK\r\n");
    assert_eq!(w2(&db, "LSET l 9 A"), "-ERR index out of range\r\n");
    assert_eq!(w2(&db, "LSET nx 0 A"), "-ERR no such key\r\n");
    assert_eq!(w2(&db, "LINSERT l BEFORE b x"), ":5\r\n");
    assert_eq!(w2(&db, "LINSERT l AFTER q x"), ":-1\r\n");
    assert_eq!(w2(&db, "LREM l 0 x"), ":1\r\n");
    assert_eq!(w2(&db, "LPOS l c"), ":3\r\n");
    assert_eq!(w2(&db, "LTRIM l 1 -2"), "+OK\r\n");
    assert_eq!(w2(&db, "LRANGE l 0 -1"), "*2\r\n$1\r\nA\r\n$1\r\nb\r\n");
    assert_eq!(w2(&db, "LMOVE l l RIGHT LEFT"), "$1\r\nb\r\n");
    assert_eq!(w2(&db, "RPOPLPUSH l m"), "$1\r\nA\r\n");
    assert_eq!(
        w2(&db, "LMPOP 2 l m LEFT COUNT 5"),
        "*2\r\n$1\r\nl\r\n*1\r\n$1\r\nb\r\n"
    );
    assert_eq!(w2(&db, "LMPOP 2 l nx LEFT"), "*-1\r\n");
    assert_eq!(w3(&db, "LPOP nx 2"), "_\r\n");
    assert_eq!(w2(&db, "LPOP m 0"), "*0\r\n");
    assert_eq!(w2(&db, "RPOP m 5"), "*1\r\n$1\r\nA\r\n");
    assert_eq!(w2(&db, "EXISTS m"), ":0\r\n");
    assert_eq!(w2(&db, "OBJECT ENCODING nx"), "$-1\r\n");
    w2(&db, "RPUSH q 1");
    assert_eq!(w2(&db, "OBJECT ENCODING q"), "$9\r\nquicklist\r\n");
    assert_eq!(w2(&db, "SET s v"), "+OK\r\n");
    assert_eq!(w2(&db, "LPUSH s a"), WT);
    assert_eq!(w2(&db, "LMOVE q s LEFT LEFT"), WT);
    assert_eq!(w2(&db, "LLEN q"), ":1\r\n");
}

#[test]
fn zset_basics() {
    let db = Db::in_memory();
    assert_eq!(w2(&db, "ZADD z 1 a 2 b -1.5 c"), ":3\r\n");
    assert_eq!(
        w2(&db, "ZRANGE z 0 -1"),
        "*3\r\n$1\r\nc\r\n$1\r\na\r\n$1\r\nb\r\n"
    );
    assert_eq!(w3(&db, "ZSCORE z c"), ",-1.5\r\n");
    assert_eq!(w2(&db, "ZSCORE z c"), "$4\r\n-1.5\r\n");
    assert_eq!(w2(&db, "ZADD z XX CH 5 a 9 q"), ":1\r\n");
    assert_eq!(w2(&db, "ZADD z GT 1 a"), ":0\r\n");
    assert_eq!(w2(&db, "ZADD z INCR 1 a"), "$1\r\n6\r\n");
    assert_eq!(w2(&db, "ZADD z NX INCR 1 a"), "$-1\r\n");
    assert_eq!(w2(&db, "ZINCRBY z 0.5 b"), "$3\r\n2.5\r\n");
    assert_eq!(w2(&db, "ZRANK z a"), ":2\r\n");
    assert_eq!(w2(&db, "ZREVRANK z a"), ":0\r\n");
    assert_eq!(w2(&db, "ZCOUNT z (2.5 +inf"), ":1\r\n");
    assert_eq!(
        w3(&db, "ZRANGE z +inf -inf BYSCORE REV LIMIT 0 2 WITHSCORES"),
        "*2\r\n*2\r\n$1\r\na\r\n,6\r\n*2\r\n$1\r\nb\r\n,2.5\r\n"
    );
    assert_eq!(
        w2(&db, "ZRANGEBYSCORE z -inf 2.5 WITHSCORES"),
        "*4\r\n$1\r\nc\r\n$4\r\n-1.5\r\n$1\r\nb\r\n$3\r\n2.5\r\n"
    );
    assert_eq!(w2(&db, "ZPOPMIN z"), "*2\r\n$1\r\nc\r\n$4\r\n-1.5\r\n");
    assert_eq!(w3(&db, "ZPOPMAX z 1"), "*1\r\n*2\r\n$1\r\na\r\n,6\r\n");
    assert_eq!(w2(&db, "ZCARD z"), ":1\r\n");
    assert_eq!(w2(&db, "OBJECT ENCODING z"), "$8\r\nlistpack\r\n");
    assert_eq!(w2(&db, "ZADD l 0 a 0 b 0 c 0 d"), ":4\r\n");
    assert_eq!(
        w2(&db, "ZRANGEBYLEX l (a [c"),
        "*2\r\n$1\r\nb\r\n$1\r\nc\r\n"
    );
    assert_eq!(w2(&db, "ZLEXCOUNT l - +"), ":4\r\n");
    assert_eq!(w2(&db, "ZREMRANGEBYLEX l - (b"), ":1\r\n");
    assert_eq!(w2(&db, "ZREMRANGEBYRANK l 0 0"), ":1\r\n");
    assert_eq!(w2(&db, "ZREMRANGEBYSCORE l -inf +inf"), ":2\r\n");
    assert_eq!(w2(&db, "EXISTS l"), ":0\r\n");
    assert_eq!(
        w2(&db, "ZADD z nan a"),
        "-ERR value is not a valid float\r\n"
    );
    assert_eq!(w2(&db, "ZADD z INCR +inf b"), "$3\r\ninf\r\n");
    assert_eq!(
        w2(&db, "ZADD z INCR -inf b"),
        "-ERR resulting score is not a number (NaN)\r\n"
    );
    assert_eq!(w2(&db, "ZMSCORE z b nx"), "*2\r\n$3\r\ninf\r\n$-1\r\n");
    assert_eq!(w2(&db, "SET s v"), "+OK\r\n");
    assert_eq!(w2(&db, "ZADD s 1 a"), WT);
    assert_eq!(w2(&db, "RENAME z z2"), "+OK\r\n");
    assert_eq!(
        w2(&db, "ZRANGE z2 0 -1 WITHSCORES"),
        "*2\r\n$1\r\nb\r\n$3\r\ninf\r\n"
    );
}

#[test]
fn score_encoding_preserves_order() {
    use crate::storage::zset::{decode_score, encode_score};
    let xs = [
        f64::NEG_INFINITY,
        -1e300,
        -2.5,
        -1e-300,
        0.0,
        1e-300,
        1.0,
        2.5,
        1e300,
        f64::INFINITY,
    ];
    for w in xs.windows(2) {
        assert!(
            encode_score(w[0]) < encode_score(w[1]),
            "{} < {}",
            w[0],
            w[1]
        );
    }
    for x in xs {
        assert_eq!(decode_score(encode_score(x)), x);
    }
    assert_eq!(encode_score(-0.0), encode_score(0.0));
}

#[test]
fn dump_restore_every_type() {
    let db = Db::in_memory();
    w2(&db, "HSET h f v g w");
    w2(&db, "SADD s 1 2 x");
    w2(&db, "RPUSH l a b a");
    w2(&db, "ZADD z 1.5 a -2 b");
    for (k, check) in [
        ("h", "HGETALL"),
        ("s", "SMEMBERS"),
        ("l", "LRANGE"),
        ("z", "ZRANGE"),
    ] {
        let Reply::Bulk(payload) = run_p(&db, Protocol::Resp2, &[b"DUMP", k.as_bytes()]) else {
            panic!("dump {k}");
        };
        let read = |key: &str| {
            let cmd = match check {
                "LRANGE" | "ZRANGE" => format!("{check} {key} 0 -1"),
                _ => format!("{check} {key}"),
            };
            w2(&db, &cmd)
        };
        let before = read(k);
        let dst = format!("{k}2");
        let r = run_p(
            &db,
            Protocol::Resp2,
            &[b"RESTORE", dst.as_bytes(), b"0", &payload],
        );
        assert_eq!(r, Reply::ok(), "{k}");
        assert_eq!(read(&dst), before, "{k}");
        assert_eq!(
            w2(&db, &format!("TYPE {dst}")),
            w2(&db, &format!("TYPE {k}"))
        );
    }
    assert_eq!(w2(&db, "ZSCORE z2 a"), "$3\r\n1.5\r\n");
    assert_eq!(w2(&db, "OBJECT ENCODING s2"), "$9\r\nhashtable\r\n");
}

#[test]
fn memory_usage_counts_elements() {
    let db = Db::in_memory();
    w2(&db, "HSET small f v");
    let big = "x".repeat(1000);
    w2(&db, &format!("HSET big f {big} g {big}"));
    let small = db.memory_usage(b"small").expect("read").expect("exists");
    let large = db.memory_usage(b"big").expect("read").expect("exists");
    assert!(large > small + 2000, "{small} {large}");
    assert_eq!(db.memory_usage(b"none").expect("read"), None);
}

mod model {
    //! Lists, sets and hashes against simple in-memory models.
    use super::{run_p, Db, Protocol, Reply};
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet, VecDeque};

    fn run(db: &Db, args: &[String]) -> Reply {
        let argv: Vec<&[u8]> = args.iter().map(String::as_bytes).collect();
        run_p(db, Protocol::Resp2, &argv)
    }

    fn bulks(r: Reply) -> Vec<Bytes> {
        match r {
            Reply::BulkArray(a) => a.items(),
            Reply::Array(items) | Reply::Set(items) => items
                .into_iter()
                .map(|x| match x {
                    Reply::Bulk(b) => b,
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    fn elem() -> impl Strategy<Value = String> {
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("1")].prop_map(String::from)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn list_matches_model(ops in proptest::collection::vec((0u8..9, elem(), -4i64..5, -4i64..5), 1..60)) {
            let db = Db::in_memory();
            let mut m: VecDeque<String> = VecDeque::new();
            let norm = |i: i64, len: usize| -> Option<usize> {
                let i = if i < 0 { i + len as i64 } else { i };
                (i >= 0 && (i as usize) < len).then_some(i as usize)
            };
            for (op, e, i, j) in ops {
                let s = |x: &str| x.to_string();
                match op {
                    0 => { run(&db, &[s("LPUSH"), s("l"), e.clone()]); m.push_front(e); }
                    1 => { run(&db, &[s("RPUSH"), s("l"), e.clone()]); m.push_back(e); }
                    2 => { run(&db, &[s("LPOP"), s("l")]); m.pop_front(); }
                    3 => { run(&db, &[s("RPOP"), s("l")]); m.pop_back(); }
                    4 => {
                        run(&db, &[s("LTRIM"), s("l"), i.to_string(), j.to_string()]);
                        let len = m.len() as i64;
                        let mut a = if i < 0 { i + len } else { i };
                        let mut b = if j < 0 { j + len } else { j };
                        a = a.max(0);
                        if a > b || a >= len { m.clear(); } else {
                            b = b.min(len - 1);
                            m = m.iter().skip(a as usize).take((b - a + 1) as usize).cloned().collect();
                        }
                    }
                    5 => {
                        run(&db, &[s("LSET"), s("l"), i.to_string(), e.clone()]);
                        if let Some(k) = norm(i, m.len()) { m[k] = e; }
                    }
                    6 => {
                        run(&db, &[s("LREM"), s("l"), i.to_string(), e.clone()]);
                        let limit = if i == 0 { usize::MAX } else { i.unsigned_abs() as usize };
                        let mut n = 0;
                        let idx: Vec<usize> = if i < 0 { (0..m.len()).rev().collect() } else { (0..m.len()).collect() };
                        let mut drop = BTreeSet::new();
                        for k in idx { if n < limit && m[k] == e { drop.insert(k); n += 1; } }
                        m = m.iter().enumerate().filter(|(k, _)| !drop.contains(k)).map(|(_, x)| x.clone()).collect();
                    }
                    7 => {
                        run(&db, &[s("LINSERT"), s("l"), s("BEFORE"), s("b"), e.clone()]);
                        if let Some(p) = m.iter().position(|x| x == "b") { m.insert(p, e); }
                    }
                    _ => {
                        run(&db, &[s("LMOVE"), s("l"), s("l"), s("RIGHT"), s("LEFT")]);
                        if let Some(x) = m.pop_back() { m.push_front(x); }
                    }
                }
                let got = bulks(run(&db, &[s("LRANGE"), s("l"), s("0"), s("-1")]));
                let want: Vec<Bytes> = m.iter().map(|x| Bytes::from(x.clone())).collect();
                prop_assert_eq!(got, want);
                prop_assert_eq!(run(&db, &[s("LLEN"), s("l")]), Reply::Integer(m.len() as i64));
            }
        }

        #[test]
        fn set_and_hash_match_model(ops in proptest::collection::vec((0u8..4, elem(), elem()), 1..60)) {
            let db = Db::in_memory();
            let mut set = BTreeSet::new();
            let mut hash = BTreeMap::new();
            for (op, a, b) in ops {
                let s = |x: &str| x.to_string();
                match op {
                    0 => { run(&db, &[s("SADD"), s("s"), a.clone(), b.clone()]); set.insert(a); set.insert(b); }
                    1 => { run(&db, &[s("SREM"), s("s"), a.clone()]); set.remove(&a); }
                    2 => { run(&db, &[s("HSET"), s("h"), a.clone(), b.clone()]); hash.insert(a, b); }
                    _ => { run(&db, &[s("HDEL"), s("h"), a.clone()]); hash.remove(&a); }
                }
                let got: BTreeSet<Bytes> = bulks(run(&db, &[s("SMEMBERS"), s("s")])).into_iter().collect();
                let want: BTreeSet<Bytes> = set.iter().map(|x| Bytes::from(x.clone())).collect();
                prop_assert_eq!(got, want);
                prop_assert_eq!(run(&db, &[s("SCARD"), s("s")]), Reply::Integer(set.len() as i64));
                let got: Vec<Bytes> = bulks(run(&db, &[s("HKEYS"), s("h")]));
                let want: Vec<Bytes> = hash.keys().map(|x| Bytes::from(x.clone())).collect();
                prop_assert_eq!(got, want);
                prop_assert_eq!(run(&db, &[s("HLEN"), s("h")]), Reply::Integer(hash.len() as i64));
            }
        }
    }
}
