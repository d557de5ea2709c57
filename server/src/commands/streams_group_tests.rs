//! Consumer groups in-process: a property test against an in-memory model of the PELs,
//! determinism of the apply (replayed log entries give the same state), the group records
//! under DEL / RENAME / COPY / DUMP+RESTORE, and entry reads never seeing group records.

use super::diff_tests::run;
use crate::storage::stream::group_op::GroupOp;
use crate::storage::stream::StreamId;
use crate::storage::{Db, WriteCommand, WriteOp};
use bytes::Bytes;
use pinnacle_resp::{Protocol, Reply};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn r2(db: &Db, cmd: &str) -> Reply {
    let argv: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
    run(db, Protocol::Resp2, &argv)
}

fn text(db: &Db, cmd: &str) -> String {
    String::from_utf8_lossy(&r2(db, cmd).to_bytes(Protocol::Resp2)).into_owned()
}

#[test]
fn group_records_stay_out_of_entry_reads() {
    let db = Db::in_memory();
    r2(&db, "XADD s 1-1 f v");
    r2(&db, "XADD s 18446744073709551615-18446744073709551615 f w");
    assert_eq!(r2(&db, "XGROUP CREATE s g 0"), Reply::ok());
    assert_eq!(r2(&db, "XGROUP CREATECONSUMER s g c"), Reply::Integer(1));
    let got = text(&db, "XREADGROUP GROUP g c STREAMS s >");
    assert!(
        got.contains("18446744073709551615-18446744073709551615"),
        "{got}"
    );
    assert_eq!(r2(&db, "XLEN s"), Reply::Integer(2));
    let all = text(&db, "XRANGE s - +");
    assert!(all.starts_with("*2\r\n"), "{all}");
    assert!(
        text(&db, "XREVRANGE s + - COUNT 1").contains("18446744073709551615-18446744073709551615")
    );
    assert!(text(&db, "XREAD STREAMS s 0").starts_with("*1\r\n*2\r\n$1\r\ns\r\n*2\r\n"));
    // Trimming everything leaves the groups (and their PEL) in place.
    assert_eq!(r2(&db, "XTRIM s MAXLEN 0"), Reply::Integer(2));
    assert_eq!(r2(&db, "XLEN s"), Reply::Integer(0));
    assert!(text(&db, "XPENDING s g").starts_with("*4\r\n:2\r\n"));
    // History of deleted entries: the id with a nil body.
    assert_eq!(
        text(&db, "XREADGROUP GROUP g c COUNT 1 STREAMS s 0"),
        "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*-1\r\n"
    );
}

#[test]
fn del_rename_copy_dump_restore_carry_the_groups() {
    let db = Db::in_memory();
    r2(&db, "XADD {k}s 1-1 f v");
    r2(&db, "XADD {k}s 2-1 f v");
    r2(&db, "XGROUP CREATE {k}s g 0 ENTRIESREAD 0");
    r2(&db, "XREADGROUP GROUP g alice COUNT 1 STREAMS {k}s >");
    let full = text(&db, "XINFO STREAM {k}s FULL");
    assert_eq!(r2(&db, "COPY {k}s {k}c"), Reply::Integer(1));
    assert_eq!(text(&db, "XINFO STREAM {k}c FULL"), full);
    let Reply::Bulk(payload) = r2(&db, "DUMP {k}s") else {
        panic!("DUMP of a stream");
    };
    let argv: Vec<&[u8]> = vec![b"RESTORE", b"{k}r", b"0", &payload];
    assert_eq!(run(&db, Protocol::Resp2, &argv), Reply::ok());
    assert_eq!(text(&db, "XINFO STREAM {k}r FULL"), full);
    // A damaged payload is refused.
    let mut bad = payload.to_vec();
    bad[3] ^= 1;
    let argv: Vec<&[u8]> = vec![b"RESTORE", b"{k}x", b"0", &bad];
    assert!(matches!(run(&db, Protocol::Resp2, &argv), Reply::Error(_)));
    assert_eq!(r2(&db, "RENAME {k}s {k}n"), Reply::ok());
    assert_eq!(text(&db, "XINFO STREAM {k}n FULL"), full);
    // DEL drops the groups with the version: a new stream at the name has none.
    assert_eq!(r2(&db, "DEL {k}n"), Reply::Integer(1));
    r2(&db, "XADD {k}n 5-5 f v");
    assert_eq!(text(&db, "XINFO GROUPS {k}n"), "*0\r\n");
    assert_eq!(r2(&db, "TYPE {k}r"), Reply::simple("stream"));
    assert_eq!(r2(&db, "OBJECT ENCODING {k}r"), Reply::bulk("stream"));
}

#[test]
fn replayed_entries_give_the_same_state() {
    // The same log applied on two replicas (and through the binary form) at the
    // leader's times: identical replies and identical XINFO FULL, times included.
    let (a, b) = (Db::in_memory(), Db::in_memory());
    let b_ = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    let id = |ms, seq| StreamId { ms, seq };
    let log: Vec<WriteOp> = vec![
        WriteOp::XAdd {
            key: b_("s"),
            id: crate::storage::stream::IdSpec::Auto,
            nomkstream: false,
            fields: vec![b_("f"), b_("v")],
            trim: None,
        },
        WriteOp::XGroup {
            op: GroupOp::Create {
                key: b_("s"),
                group: b_("g"),
                start: crate::storage::stream::group_op::GroupStart::Id(id(0, 0)),
                mkstream: false,
                entries_read: -1,
            },
        },
        WriteOp::XGroup {
            op: GroupOp::ReadGroup {
                group: b_("g"),
                consumer: b_("c1"),
                count: 0,
                noack: false,
                streams: vec![(b_("s"), None)],
            },
        },
        WriteOp::XGroup {
            op: GroupOp::AutoClaim {
                key: b_("s"),
                group: b_("g"),
                consumer: b_("c2"),
                min_idle: 0,
                start: id(0, 0),
                count: 10,
                justid: false,
            },
        },
    ];
    for (i, op) in log.into_iter().enumerate() {
        let cmd = WriteCommand {
            now_ms: 1_000_000 + i as u64 * 7,
            op,
        };
        let ra = a.apply(&cmd);
        let rb = b.apply_encoded(cmd.encode()).expect("decodes");
        assert_eq!(ra, rb);
    }
    let fa = text(&a, "XINFO STREAM s FULL");
    assert_eq!(fa, text(&b, "XINFO STREAM s FULL"));
    assert!(fa.contains("1000021"), "delivery time is the entry's: {fa}");
}

/// The model: group PEL id → (owner, deliveries); the stream's ids; the group's last id.
#[derive(Default)]
struct Model {
    entries: Vec<u64>,
    last: u64,
    pel: BTreeMap<u64, (String, u64)>,
    consumers: BTreeMap<String, ()>,
}

#[derive(Clone, Debug)]
enum Op {
    Add,
    Read(usize, u64),
    History(usize),
    Ack(u64),
    Claim(usize, u64),
    Del(u64),
    DelConsumer(usize),
}

const NAMES: [&str; 3] = ["a", "b", "c"];

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Add),
        3 => (0..3usize, 0..3u64).prop_map(|(c, n)| Op::Read(c, n)),
        1 => (0..3usize).prop_map(Op::History),
        2 => (1..12u64).prop_map(Op::Ack),
        2 => (0..3usize, 1..12u64).prop_map(|(c, i)| Op::Claim(c, i)),
        1 => (1..12u64).prop_map(Op::Del),
        1 => (0..3usize).prop_map(Op::DelConsumer),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn pel_matches_a_model(ops in proptest::collection::vec(arb_op(), 1..40)) {
        let db = Db::in_memory();
        let mut m = Model::default();
        let mut next = 1u64;
        r2(&db, "XGROUP CREATE s g 0 MKSTREAM");
        for op in ops {
            match op {
                Op::Add => {
                    r2(&db, &format!("XADD s {next}-0 f v"));
                    m.entries.push(next);
                    next += 1;
                }
                Op::Read(c, n) => {
                    let name = NAMES[c];
                    let got = r2(&db, &format!("XREADGROUP GROUP g {name} COUNT {n} STREAMS s >"));
                    let new: Vec<u64> = m.entries.iter().copied().filter(|&e| e > m.last)
                        .take(if n == 0 { usize::MAX } else { n as usize }).collect();
                    if new.is_empty() {
                        prop_assert_eq!(got, Reply::NullArray);
                    } else {
                        m.consumers.insert(name.to_string(), ());
                        for e in &new {
                            m.pel.insert(*e, (name.to_string(), 1));
                        }
                        m.last = *new.last().unwrap_or(&m.last);
                        let t = String::from_utf8_lossy(&got.to_bytes(Protocol::Resp2)).into_owned();
                        prop_assert!(t.contains(&format!("*{}\r\n*2\r\n$", new.len())), "{}", t);
                    }
                }
                Op::History(c) => {
                    let name = NAMES[c];
                    let got = r2(&db, &format!("XREADGROUP GROUP g {name} STREAMS s 0"));
                    m.consumers.insert(name.to_string(), ());
                    let mine: Vec<u64> = m.pel.iter().filter(|(_, (o, _))| o == name).map(|(k, _)| *k).collect();
                    for e in &mine {
                        if let Some(x) = m.pel.get_mut(e) { x.1 += 1; }
                    }
                    let Reply::Array(outer) = got else { return Err(TestCaseError::fail("array")) };
                    let Some(Reply::Array(kv)) = outer.first() else { return Err(TestCaseError::fail("kv")) };
                    let Some(Reply::Array(items)) = kv.get(1) else { return Err(TestCaseError::fail("items")) };
                    prop_assert_eq!(items.len(), mine.len());
                }
                Op::Ack(i) => {
                    let got = r2(&db, &format!("XACK s g {i}-0"));
                    let was = m.pel.remove(&i).is_some();
                    prop_assert_eq!(got, Reply::Integer(i64::from(was)));
                }
                Op::Claim(c, i) => {
                    let name = NAMES[c];
                    let got = r2(&db, &format!("XCLAIM s g {name} 0 {i}-0 JUSTID"));
                    let exists = m.entries.contains(&i);
                    let claimed = exists && m.pel.contains_key(&i);
                    if !exists {
                        m.pel.remove(&i);
                    }
                    if claimed {
                        m.consumers.insert(name.to_string(), ());
                        if let Some(x) = m.pel.get_mut(&i) { x.0 = name.to_string(); }
                    }
                    prop_assert_eq!(got, Reply::Array(if claimed {
                        vec![Reply::Bulk(Bytes::from(format!("{i}-0")))]
                    } else {
                        vec![]
                    }));
                }
                Op::Del(i) => {
                    r2(&db, &format!("XDEL s {i}-0"));
                    m.entries.retain(|&e| e != i);
                }
                Op::DelConsumer(c) => {
                    let name = NAMES[c];
                    let got = r2(&db, &format!("XGROUP DELCONSUMER s g {name}"));
                    let owned = m.pel.values().filter(|(o, _)| o == name).count();
                    m.pel.retain(|_, (o, _)| o != name);
                    m.consumers.remove(name);
                    prop_assert_eq!(got, Reply::Integer(owned as i64));
                }
            }
            // The whole PEL, owners and counts agree with the model; so do the consumers.
            let Reply::Array(rows) = r2(&db, "XPENDING s g - + 1000") else {
                return Err(TestCaseError::fail("XPENDING"));
            };
            let ours: Vec<(u64, String, i64)> = rows.iter().filter_map(|r| match r {
                Reply::Array(e) => match (&e[0], &e[1], &e[3]) {
                    (Reply::Bulk(id), Reply::Bulk(c), Reply::Integer(n)) => Some((
                        String::from_utf8_lossy(id).split('-').next()?.parse().ok()?,
                        String::from_utf8_lossy(c).into_owned(),
                        *n,
                    )),
                    _ => None,
                },
                _ => None,
            }).collect();
            let model: Vec<(u64, String, i64)> = m.pel.iter().map(|(k, (c, n))| (*k, c.clone(), *n as i64)).collect();
            // Claims add a delivery each: compare owners exactly and counts as at least one.
            prop_assert_eq!(ours.iter().map(|x| (x.0, x.1.clone())).collect::<Vec<_>>(),
                model.iter().map(|x| (x.0, x.1.clone())).collect::<Vec<_>>());
            prop_assert!(ours.iter().all(|x| x.2 >= 1));
            let summary = text(&db, "XPENDING s g");
            prop_assert!(summary.starts_with(&format!("*4\r\n:{}\r\n", m.pel.len())), "{}", summary);
            let groups = text(&db, "XINFO GROUPS s");
            prop_assert!(groups.contains(&format!("$9\r\nconsumers\r\n:{}\r\n", m.consumers.len())), "{}", groups);
        }
    }
}

#[test]
fn last_ids_are_found_without_scanning() {
    let db = Db::in_memory();
    r2(&db, "XGROUP CREATE s g 0 MKSTREAM");
    for (ms, seq) in [(1u64, 0u64), (7, 3), (7, 9), (300, 1), (u64::MAX, 5)] {
        r2(&db, &format!("XADD s {ms}-{seq} f v"));
    }
    r2(&db, "XREADGROUP GROUP g c STREAMS s >");
    r2(&db, "XACK s g 18446744073709551615-5");
    assert_eq!(
        text(&db, "XPENDING s g"),
        "*4\r\n:4\r\n$3\r\n1-0\r\n$5\r\n300-1\r\n*1\r\n*2\r\n$1\r\nc\r\n$1\r\n4\r\n"
    );
    // The newest entry was deleted: XINFO finds the one before it.
    r2(&db, "XDEL s 18446744073709551615-5");
    assert!(text(&db, "XINFO STREAM s")
        .ends_with("$10\r\nlast-entry\r\n*2\r\n$5\r\n300-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"));
    r2(&db, "XADD s 18446744073709551615-18446744073709551615 f v");
    r2(&db, "XDEL s 18446744073709551615-18446744073709551615");
    assert!(text(&db, "XINFO STREAM s").contains("last-entry\r\n*2\r\n$5\r\n300-1\r\n"));
    r2(&db, "XTRIM s MAXLEN 0");
    assert!(text(&db, "XINFO STREAM s").ends_with("$10\r\nlast-entry\r\n$-1\r\n"));
}

#[test]
fn destroy_and_del_leave_nothing_after_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), pinnacle_lsm::SyncPolicy::Never).expect("open");
    for i in 1..=30 {
        r2(&db, &format!("XADD dead {i}-0 f v"));
        r2(&db, &format!("XADD live {i}-0 f v"));
    }
    for k in ["dead", "live"] {
        r2(&db, &format!("XGROUP CREATE {k} g 0"));
        r2(&db, &format!("XGROUP CREATE {k} h 0"));
        r2(
            &db,
            &format!("XREADGROUP GROUP g c1 COUNT 10 STREAMS {k} >"),
        );
        r2(&db, &format!("XREADGROUP GROUP g c2 STREAMS {k} >"));
        r2(&db, &format!("XREADGROUP GROUP h c1 COUNT 5 STREAMS {k} >"));
    }
    // DESTROY is range tombstones: a group created again under the name starts empty and
    // its new records are not hidden by them.
    assert_eq!(r2(&db, "XGROUP DESTROY live g"), Reply::Integer(1));
    assert_eq!(r2(&db, "XGROUP CREATE live g 25"), Reply::ok());
    assert_eq!(
        text(&db, "XPENDING live g"),
        "*4\r\n:0\r\n$-1\r\n$-1\r\n*-1\r\n"
    );
    r2(&db, "XREADGROUP GROUP g c9 STREAMS live >");
    assert!(text(&db, "XPENDING live g").starts_with("*4\r\n:5\r\n$4\r\n26-0\r\n$4\r\n30-0\r\n"));
    assert_eq!(r2(&db, "DEL dead"), Reply::Integer(1));
    let engine = db.engine().clone();
    engine.flush().expect("flush");
    engine.compact_range(None, None).expect("compact");
    let count = |key: &[u8]| {
        engine
            .scan(
                (
                    std::ops::Bound::Included(crate::storage::encoding::keyspace_start()),
                    std::ops::Bound::Excluded(crate::storage::encoding::keyspace_end()),
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
    assert_eq!(count(b"dead"), 0);
    // live: 30 entries; group h (record, 1 consumer, 5+5 PEL); group g (record, 1 consumer,
    // 5+5 PEL).
    assert_eq!(count(b"live"), 30 + (1 + 1 + 10) * 2);
    assert!(text(&db, "XINFO GROUPS live").contains("$7\r\npending\r\n:5\r\n"));
}
