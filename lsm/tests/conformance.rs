//! One conformance suite for every [`Engine`]: the real LSM and the `BTreeMap` reference.
//!
//! Each check is a generic function in `suite`; `conformance!` instantiates all of them for
//! one engine type.

mod common;

use bytes::Bytes;
use common::{b, collect, dump, scan_vec, Model};
use pinnacle_lsm::{Engine, Lsm, MemEngine, Options, WriteBatch};
use std::collections::BTreeMap;
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::path::Path;

/// What a suite function needs to know about the engine under test.
#[derive(Clone, Copy)]
pub struct Kind {
    /// Options to open it with.
    pub opts: fn() -> Options,
    /// Writes survive close + reopen without an explicit flush (WAL replay).
    pub durable_without_flush: bool,
    /// `stats()` reports levels and SST bytes.
    pub has_levels: bool,
}

fn open<E: Engine>(kind: Kind, dir: &Path) -> E {
    E::open(dir, (kind.opts)()).expect("open")
}

fn put1<E: Engine>(e: &E, k: impl AsRef<[u8]>, v: impl AsRef<[u8]>) -> u64 {
    let mut wb = WriteBatch::new();
    wb.put(b(k), b(v));
    e.write(wb).expect("write")
}

fn del1<E: Engine>(e: &E, k: impl AsRef<[u8]>) {
    let mut wb = WriteBatch::new();
    wb.delete(b(k));
    e.write(wb).expect("write");
}

fn get<E: Engine>(e: &E, k: impl AsRef<[u8]>) -> Option<Bytes> {
    e.get(k.as_ref()).expect("get")
}

fn key(i: usize) -> Bytes {
    b(format!("key{i:06}"))
}

fn value(i: usize, round: usize) -> Bytes {
    b(format!("value-{i}-{round}-").repeat(1 + i % 7))
}

/// Writes `n` keys in batches of 50, returning the model.
fn fill<E: Engine>(e: &E, n: usize, round: usize) -> Model {
    let mut model = Model::default();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let mut wb = WriteBatch::new();
        for &i in chunk {
            wb.put(key(i), value(i, round));
        }
        model.apply(&wb);
        e.write(wb).expect("write");
    }
    model
}

mod suite {
    use super::*;

    pub fn put_get_overwrite_delete<E: Engine>(kind: Kind) {
        let dir = tempfile::tempdir().unwrap();
        let e: E = open(kind, dir.path());
        assert_eq!(get(&e, "a"), None);
        let s1 = put1(&e, "a", "1");
        assert_eq!(get(&e, "a"), Some(b("1")));
        let s2 = put1(&e, "a", "2");
        assert!(s2 > s1, "sequence numbers grow");
        assert_eq!(get(&e, "a"), Some(b("2")));
        put1(&e, "b", "3");
        del1(&e, "a");
        assert_eq!(get(&e, "a"), None);
        assert_eq!(get(&e, "b"), Some(b("3")));
        // Deleting an absent key is fine; re-putting a deleted key resurrects it.
        del1(&e, "zzz");
        put1(&e, "a", "4");
        assert_eq!(get(&e, "a"), Some(b("4")));
        assert_eq!(dump(&e, None), vec![(b("a"), b("4")), (b("b"), b("3"))]);
    }

    pub fn empty_values_are_values<E: Engine>(kind: Kind) {
        let dir = tempfile::tempdir().unwrap();
        let e: E = open(kind, dir.path());
        put1(&e, "empty", "");
        put1(&e, "x", "y");
        assert_eq!(get(&e, "empty"), Some(Bytes::new()));
        e.flush().unwrap();
        assert_eq!(get(&e, "empty"), Some(Bytes::new()), "after flush");
        e.compact_range(None, None).unwrap();
        assert_eq!(get(&e, "empty"), Some(Bytes::new()), "after compaction");
        assert_eq!(dump(&e, None)[0], (b("empty"), Bytes::new()));
        del1(&e, "empty");
        assert_eq!(get(&e, "empty"), None);
        // The empty key is a key too.
        put1(&e, "", "empty key");
        assert_eq!(get(&e, ""), Some(b("empty key")));
        assert_eq!(dump(&e, None)[0].0, Bytes::new());
    }

    pub fn large_values_and_keys<E: Engine>(kind: Kind) {
        let dir = tempfile::tempdir().unwrap();
        let big: Bytes = (0..5 << 20)
            .map(|i: u32| (i * 7 % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let big_key: Bytes = vec![b'k'; 300 << 10].into();
        {
            let e: E = open(kind, dir.path());
            put1(&e, "big", &big);
            put1(&e, &big_key, "v");
            put1(&e, "small", "s");
            assert_eq!(get(&e, "big").as_deref(), Some(&big[..]));
            e.flush().unwrap();
            assert_eq!(get(&e, "big").as_deref(), Some(&big[..]));
            assert_eq!(get(&e, &big_key), Some(b("v")));
            let all = dump(&e, None);
            assert_eq!(all.len(), 3);
            assert_eq!(all[0].1.len(), big.len());
        }
        let e: E = open(kind, dir.path());
        assert_eq!(get(&e, "big").as_deref(), Some(&big[..]), "after reopen");
        assert_eq!(get(&e, &big_key), Some(b("v")));
    }

    pub fn binary_keys_sort_bytewise<E: Engine>(kind: Kind) {
        let dir = tempfile::tempdir().unwrap();
        let e: E = open(kind, dir.path());
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![0, 0xff],
            vec![1],
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"a\0\0".to_vec(),
            b"ab".to_vec(),
            vec![0x7f],
            vec![0x80],
            vec![0xff],
            vec![0xff, 0xff],
            vec![0xff, 0xff, 0xff],
        ];
        let mut wb = WriteBatch::new();
        for (i, k) in keys.iter().rev().enumerate() {
            wb.put(b(k), b(format!("{i}")));
        }
        e.write(wb).unwrap();
        let mut sorted = keys.clone();
        sorted.sort();
        let check = |e: &E, what: &str| {
            let got: Vec<Vec<u8>> = dump(e, None).into_iter().map(|(k, _)| k.to_vec()).collect();
            assert_eq!(got, sorted, "{what}");
            for k in &keys {
                assert!(get(e, k).is_some(), "{what}: {k:?}");
            }
            assert_eq!(get(e, [0, 1]), None);
            assert_eq!(get(e, [0xff, 0xfe]), None);
        };
        check(&e, "memtable");
        e.flush().unwrap();
        check(&e, "flushed");
        e.compact_range(None, None).unwrap();
        check(&e, "compacted");
    }

    pub fn batch_is_ordered_and_atomic<E: Engine>(kind: Kind) {
        let dir = tempfile::tempdir().unwrap();
        let e: E = open(kind, dir.path());
        let mut wb = WriteBatch::new();
        wb.put(b("k1"), b("v1"))
            .delete(b("k1")) // later op wins: absent
            .delete(b("k2"))
            .put(b("k2"), b("v2")) // present
            .put(b("r1"), b("x"))
            .put(b("r2"), b("x"))
            .delete_range(b("r"), b("s"))
            .put(b("r3"), b("after range")); // a put after the range delete survives
        let before = e.snapshot();
        let seq = e.write(wb).unwrap();
        assert!(seq > before.seq());
        assert!(e.snapshot().seq() >= seq);
        assert_eq!(get(&e, "k1"), None);
        assert_eq!(get(&e, "k2"), Some(b("v2")));
        assert_eq!(get(&e, "r1"), None);
        assert_eq!(get(&e, "r3"), Some(b("after range")));
        assert!(dump(&e, Some(&before)).is_empty(), "no part visible before");

        // Concurrent readers never see half of a batch.
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|sc| {
            let reader = sc.spawn(|| {
                let mut checks = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || checks < 10 {
                    let snap = e.snapshot();
                    let a = e.get_at(b"pair-a", &snap).unwrap();
                    let z = e.get_at(b"pair-z", &snap).unwrap();
                    assert_eq!(a, z, "half-applied batch seen at {snap:?}");
                    let pairs = collect(e.scan((Unbounded, Unbounded), None).unwrap());
                    let a = pairs
                        .iter()
                        .find(|(k, _)| &k[..] == b"pair-a")
                        .map(|p| &p.1);
                    let z = pairs
                        .iter()
                        .find(|(k, _)| &k[..] == b"pair-z")
                        .map(|p| &p.1);
                    assert_eq!(a, z, "half-applied batch seen by scan");
                    checks += 1;
                }
                checks
            });
            for i in 0..300 {
                let mut wb = WriteBatch::new();
                if i % 5 == 4 {
                    wb.delete(b("pair-a")).delete(b("pair-z"));
                } else {
                    wb.put(b("pair-a"), b(format!("{i}")));
                    wb.put(b("filler"), b(vec![b'f'; 200]));
                    wb.put(b("pair-z"), b(format!("{i}")));
                }
                e.write(wb).unwrap();
                if i % 100 == 50 {
                    e.flush().unwrap();
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().unwrap() >= 10);
        });
    }

    pub fn delete_range_is_half_open<E: Engine>(kind: Kind) {
        let dir = tempfile::tempdir().unwrap();
        let e: E = open(kind, dir.path());
        let mut model = fill(&e, 100, 0);
        e.flush().unwrap(); // part of the data in SSTables, part in the memtable
        let mut more = WriteBatch::new();
        more.put(key(1000), b("m")).put(key(1001), b("m"));
        model.apply(&more);
        e.write(more).unwrap();
        let cases: Vec<(Bytes, Bytes)> = vec![
            (key(10), key(20)),         // inside: 10..19 gone, 20 kept
            (key(50), key(50)),         // empty range: no-op
            (key(70), key(60)),         // inverted: no-op
            (b("key000030x"), key(32)), // start between keys
            (key(95), b("key0010005")), // spans SSTable and memtable keys
            (b("a"), b("b")),           // covers nothing
        ];
        for (s, end) in cases {
            let mut wb = WriteBatch::new();
            wb.delete_range(s.clone(), end.clone());
            model.apply(&wb);
            e.write(wb).unwrap();
            assert_eq!(
                dump(&e, None),
                model.pairs(),
                "after delete_range {s:?}..{end:?}"
            );
        }
        assert_eq!(get(&e, key(10)), None);
        assert_eq!(get(&e, key(19)), None);
        assert_eq!(get(&e, key(20)), Some(value(20, 0)), "end is exclusive");
        assert_eq!(get(&e, key(50)), Some(value(50, 0)));
        assert_eq!(get(&e, key(31)), None);
        assert_eq!(get(&e, key(32)), Some(value(32, 0)));
        // Keys written after a range delete are visible again.
        put1(&e, key(15), "back");
        assert_eq!(get(&e, key(15)), Some(b("back")));
        model.map.insert(key(15), b("back"));
        e.flush().unwrap();
        e.compact_range(None, None).unwrap();
        assert_eq!(dump(&e, None), model.pairs(), "after compaction");
        // Everything.
        let mut wb = WriteBatch::new();
        wb.delete_range(Bytes::new(), b(vec![0xff; 8]));
        e.write(wb).unwrap();
        assert!(dump(&e, None).is_empty());
    }

    fn expected(
        map: &BTreeMap<Bytes, Bytes>,
        lo: &Bound<Bytes>,
        hi: &Bound<Bytes>,
    ) -> Vec<(Bytes, Bytes)> {
        map.iter()
            .filter(|(k, _)| {
                let above = match lo {
                    Included(s) => *k >= s,
                    Excluded(s) => *k > s,
                    Unbounded => true,
                };
                let below = match hi {
                    Included(s) => *k <= s,
                    Excluded(s) => *k < s,
                    Unbounded => true,
                };
                above && below
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn scan_honours_every_bound<E: Engine>(kind: Kind) {
        scan_bounds::<E>(kind, false)
    }

    /// Inverted and empty ranges yield nothing (and must not panic).
    pub fn scan_of_empty_or_inverted_range_is_empty<E: Engine>(kind: Kind) {
        scan_bounds::<E>(kind, true)
    }

    fn scan_bounds<E: Engine>(kind: Kind, want_empty: bool) {
        let dir = tempfile::tempdir().unwrap();
        let e: E = open(kind, dir.path());
        let mut model = fill(&e, 40, 0);
        e.flush().unwrap();
        // Overwrite and delete some in the memtable so scans merge sources.
        let mut wb = WriteBatch::new();
        wb.put(key(5), b("new5"))
            .delete(key(6))
            .put(key(100), b("late"));
        model.apply(&wb);
        e.write(wb).unwrap();
        let points = [
            Bytes::new(),
            key(0),
            key(5),
            key(6),
            b("key000010a"),
            key(39),
            key(100),
            b("zzz"),
        ];
        let mut bounds = vec![Unbounded];
        for p in &points {
            bounds.push(Included(p.clone()));
            bounds.push(Excluded(p.clone()));
        }
        for lo in &bounds {
            for hi in &bounds {
                if empty_or_inverted(lo, hi) != want_empty {
                    continue;
                }
                let got = scan_vec(&e, (lo.clone(), hi.clone()));
                assert_eq!(got, expected(&model.map, lo, hi), "scan {lo:?} .. {hi:?}");
            }
        }
    }

    /// True for ranges no key can fall into by construction (`lo > hi`, or `lo == hi` with an
    /// excluded end).
    fn empty_or_inverted(lo: &Bound<Bytes>, hi: &Bound<Bytes>) -> bool {
        let (l, l_inc) = match lo {
            Included(s) => (s, true),
            Excluded(s) => (s, false),
            Unbounded => return false,
        };
        let (h, h_inc) = match hi {
            Included(s) => (s, true),
            Excluded(s) => (s, false),
            Unbounded => return false,
        };
        l > h || (l == h && !(l_inc && h_inc))
    }

    pub fn scan_sees_one_snapshot_while_writes_continue<E: Engine>(kind: Kind) {
        let dir = tempfile::tempdir().unwrap();
        let e: E = open(kind, dir.path());
        let model = fill(&e, 300, 0);
        let mut it = e.scan((Unbounded, Unbounded), None).unwrap();
        let mut got = vec![it.next().unwrap().unwrap()];
        // Rewrite everything, delete a range, add keys in between, flush and compact.
        fill(&e, 300, 1);
        let mut wb = WriteBatch::new();
        wb.delete_range(key(100), key(200))
            .put(b("key000150a"), b("new"));
        e.write(wb).unwrap();
        e.flush().unwrap();
        e.compact_range(None, None).unwrap();
        got.extend(collect(it));
        assert_eq!(got, model.pairs(), "iterator saw later writes");
    }

    pub fn snapshot_reads_ignore_later_writes<E: Engine>(kind: Kind) {
        let dir = tempfile::tempdir().unwrap();
        let e: E = open(kind, dir.path());
        let m0 = fill(&e, 200, 0);
        let s0 = e.snapshot();
        let mut m1 = fill(&e, 200, 1);
        let mut wb = WriteBatch::new();
        wb.delete(key(3))
            .delete_range(key(50), key(150))
            .put(b("extra"), b("e"));
        m1.apply(&wb);
        e.write(wb).unwrap();
        let s1 = e.snapshot();
        put1(&e, key(4), "latest");
        for stage in ["memtable", "flushed", "compacted"] {
            match stage {
                "flushed" => e.flush().unwrap(),
                "compacted" => e.compact_range(None, None).unwrap(),
                _ => {}
            }
            assert_eq!(dump(&e, Some(&s0)), m0.pairs(), "{stage}: s0 scan");
            assert_eq!(dump(&e, Some(&s1)), m1.pairs(), "{stage}: s1 scan");
            assert_eq!(
                e.get_at(&key(3), &s0).unwrap(),
                Some(value(3, 0)),
                "{stage}"
            );
            assert_eq!(e.get_at(&key(3), &s1).unwrap(), None, "{stage}");
            assert_eq!(
                e.get_at(&key(4), &s1).unwrap(),
                Some(value(4, 1)),
                "{stage}"
            );
            assert_eq!(e.get_at(b"extra", &s0).unwrap(), None, "{stage}");
            assert_eq!(get(&e, key(4)), Some(b("latest")), "{stage}");
            let part = collect(
                e.scan((Included(key(140)), Excluded(key(160))), Some(&s1))
                    .unwrap(),
            );
            assert_eq!(part.len(), 10, "{stage}: 150..160 survive at s1");
        }
        // A dropped snapshot no longer pins versions; the live state is unaffected.
        drop(s0);
        e.compact_range(None, None).unwrap();
        assert_eq!(e.get_at(&key(3), &s1).unwrap(), None);
        assert_eq!(dump(&e, Some(&s1)), m1.pairs());
    }

    pub fn flush_and_compaction_preserve_content<E: Engine>(kind: Kind) {
        let dir = tempfile::tempdir().unwrap();
        let e: E = open(kind, dir.path());
        let mut model = Model::default();
        for round in 0..4 {
            let m = fill(&e, 400, round);
            model.map.extend(m.map);
            let mut wb = WriteBatch::new();
            for i in (round..400).step_by(9) {
                wb.delete(key(i));
            }
            wb.delete_range(key(100 + round * 50), key(120 + round * 50));
            model.apply(&wb);
            e.write(wb).unwrap();
            e.flush().unwrap();
            assert_eq!(dump(&e, None), model.pairs(), "round {round} after flush");
        }
        e.compact_range(Some(&key(100)), Some(&key(200))).unwrap();
        assert_eq!(dump(&e, None), model.pairs(), "after partial compaction");
        e.compact_range(None, None).unwrap();
        assert_eq!(dump(&e, None), model.pairs(), "after full compaction");
        for i in 0..400 {
            assert_eq!(get(&e, key(i)), model.map.get(&key(i)).cloned(), "get {i}");
        }
    }

    pub fn checkpoint_is_an_openable_copy<E: Engine>(kind: Kind) {
        let root = tempfile::tempdir().unwrap();
        let (dir, ck) = (root.path().join("db"), root.path().join("ck"));
        let e: E = open(kind, &dir);
        let mut model = fill(&e, 300, 0);
        e.flush().unwrap();
        let mut wb = WriteBatch::new();
        wb.delete_range(key(10), key(20))
            .put(b("memtable-only"), b("m"));
        model.apply(&wb);
        e.write(wb).unwrap();
        e.checkpoint(&ck).unwrap();
        // Later writes to the source do not leak into the checkpoint, and vice versa.
        fill(&e, 300, 1);
        e.compact_range(None, None).unwrap();
        let c: E = open(kind, &ck);
        assert_eq!(dump(&c, None), model.pairs());
        put1(&c, "only-in-checkpoint", "x");
        assert_eq!(get(&e, "only-in-checkpoint"), None);
        assert_eq!(get(&e, key(0)), Some(value(0, 1)));
        drop(e);
        drop(c);
        let c: E = open(kind, &ck);
        assert_eq!(get(&c, key(0)), Some(value(0, 0)));
    }

    pub fn reopen_preserves_content<E: Engine>(kind: Kind) {
        let dir = tempfile::tempdir().unwrap();
        let mut model;
        {
            let e: E = open(kind, dir.path());
            model = fill(&e, 500, 0);
            e.flush().unwrap();
            let mut wb = WriteBatch::new();
            wb.delete_range(key(0), key(100))
                .put(key(7), b("seven"))
                .put(b("e"), b(""));
            model.apply(&wb);
            e.write(wb).unwrap();
            if !kind.durable_without_flush {
                e.flush().unwrap();
            }
        }
        let e: E = open(kind, dir.path());
        assert_eq!(dump(&e, None), model.pairs(), "first reopen");
        put1(&e, key(8), "eight");
        model.map.insert(key(8), b("eight"));
        e.flush().unwrap();
        drop(e);
        let e: E = open(kind, dir.path());
        assert_eq!(dump(&e, None), model.pairs(), "second reopen");
        // Sequence numbers keep growing across reopen, so new writes shadow old ones.
        put1(&e, key(200), "newer");
        assert_eq!(get(&e, key(200)), Some(b("newer")));
        if !kind.durable_without_flush {
            e.flush().unwrap();
        }
        drop(e);
        let e: E = open(kind, dir.path());
        e.compact_range(None, None).unwrap();
        assert_eq!(get(&e, key(200)), Some(b("newer")));
    }

    pub fn stats_are_sane<E: Engine>(kind: Kind) {
        let dir = tempfile::tempdir().unwrap();
        let e: E = open(kind, dir.path());
        let s0 = e.stats();
        let mut payload = 0;
        for i in 0..200 {
            let mut wb = WriteBatch::new();
            wb.put(key(i), value(i, 0));
            payload += wb.payload_bytes();
            e.write(wb).unwrap();
        }
        let s1 = e.stats();
        assert_eq!(s1.user_bytes_written - s0.user_bytes_written, payload);
        assert!(s1.last_seq >= s0.last_seq + 200);
        e.flush().unwrap();
        let s2 = e.stats();
        if kind.has_levels {
            assert!(s2.flush_bytes_written > 0);
            assert!(s2.sst_bytes() > 0);
            assert!(s2.levels.iter().map(|l| l.files).sum::<usize>() >= 1);
            assert!(s2.write_amplification() > 0.0);
            assert!(s1.memtable_bytes > 0);
            e.compact_range(None, None).unwrap();
            let s3 = e.stats();
            assert_eq!(s3.levels[0].files, 0, "full compaction empties L0");
            assert!(s3.sst_bytes() > 0);
        }
        for i in 0..50 {
            get(&e, key(i));
            get(&e, format!("missing{i}"));
        }
    }
}

macro_rules! conformance {
    ($name:ident, $engine:ty, $kind:expr) => {
        mod $name {
            use super::*;
            const KIND: Kind = $kind;
            #[test]
            fn put_get_overwrite_delete() {
                suite::put_get_overwrite_delete::<$engine>(KIND)
            }
            #[test]
            fn empty_values_are_values() {
                suite::empty_values_are_values::<$engine>(KIND)
            }
            #[test]
            fn large_values_and_keys() {
                suite::large_values_and_keys::<$engine>(KIND)
            }
            #[test]
            fn binary_keys_sort_bytewise() {
                suite::binary_keys_sort_bytewise::<$engine>(KIND)
            }
            #[test]
            fn batch_is_ordered_and_atomic() {
                suite::batch_is_ordered_and_atomic::<$engine>(KIND)
            }
            #[test]
            fn delete_range_is_half_open() {
                suite::delete_range_is_half_open::<$engine>(KIND)
            }
            #[test]
            fn scan_honours_every_bound() {
                suite::scan_honours_every_bound::<$engine>(KIND)
            }
            #[test]
            fn scan_of_empty_or_inverted_range_is_empty() {
                suite::scan_of_empty_or_inverted_range_is_empty::<$engine>(KIND)
            }
            #[test]
            fn scan_sees_one_snapshot_while_writes_continue() {
                suite::scan_sees_one_snapshot_while_writes_continue::<$engine>(KIND)
            }
            #[test]
            fn snapshot_reads_ignore_later_writes() {
                suite::snapshot_reads_ignore_later_writes::<$engine>(KIND)
            }
            #[test]
            fn flush_and_compaction_preserve_content() {
                suite::flush_and_compaction_preserve_content::<$engine>(KIND)
            }
            #[test]
            fn checkpoint_is_an_openable_copy() {
                suite::checkpoint_is_an_openable_copy::<$engine>(KIND)
            }
            #[test]
            fn reopen_preserves_content() {
                suite::reopen_preserves_content::<$engine>(KIND)
            }
            #[test]
            fn stats_are_sane() {
                suite::stats_are_sane::<$engine>(KIND)
            }
        }
    };
}

const MEM: Kind = Kind {
    opts: Options::default,
    durable_without_flush: false,
    has_levels: false,
};

conformance!(mem_engine, MemEngine, MEM);

fn lsm_foreground() -> Options {
    Options {
        background_work: false,
        ..Options::small_for_tests()
    }
}

/// One simulated file system for every test in this binary (paths are unique temp dirs), so a
/// reopen inside a test finds what the test wrote.
fn lsm_on_sim_fs() -> Options {
    static FS: std::sync::OnceLock<pinnacle_lsm::SimFs> = std::sync::OnceLock::new();
    Options {
        vfs: std::sync::Arc::new(FS.get_or_init(pinnacle_lsm::SimFs::new).clone()),
        ..Options::small_for_tests()
    }
}

const LSM: Kind = Kind {
    opts: Options::small_for_tests,
    durable_without_flush: true,
    has_levels: true,
};

conformance!(lsm, Lsm, LSM);
conformance!(
    lsm_foreground_work,
    Lsm,
    Kind {
        opts: lsm_foreground,
        ..LSM
    }
);
conformance!(
    lsm_sim_fs,
    Lsm,
    Kind {
        opts: lsm_on_sim_fs,
        ..LSM
    }
);
