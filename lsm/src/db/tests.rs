//! Engine-level tests of the LSM (the black-box suites live in `lsm/tests/`).

use super::Lsm;
use crate::{Engine, Error, Options, SyncPolicy, WriteBatch};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Bound;

fn opts() -> Options {
    Options {
        background_work: false,
        ..Options::small_for_tests()
    }
}

fn put(e: &Lsm, k: &str, v: &str) -> u64 {
    let mut b = WriteBatch::new();
    b.put(k.to_string(), v.to_string());
    e.write(b).unwrap()
}

fn get(e: &Lsm, k: &str) -> Option<String> {
    e.get(k.as_bytes())
        .unwrap()
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
}

fn all(e: &Lsm) -> Vec<(String, String)> {
    e.scan((Bound::Unbounded, Bound::Unbounded), None)
        .unwrap()
        .map(|r| {
            let (k, v) = r.unwrap();
            (
                String::from_utf8(k.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn basic_ops_across_flush_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    {
        let e = Lsm::open(dir.path(), opts()).unwrap();
        for i in 0..3000 {
            let k = format!("k{:05}", (i * 7919) % 2000);
            let v = format!("v{i}");
            put(&e, &k, &v);
            model.insert(k, v);
            if i % 500 == 499 {
                e.flush().unwrap();
            }
        }
        let mut b = WriteBatch::new();
        b.delete("k00010")
            .delete_range("k00100", "k00200")
            .put("empty", "");
        e.write(b).unwrap();
        model.remove("k00010");
        model.retain(|k, _| !(k.as_str() >= "k00100" && k.as_str() < "k00200"));
        model.insert("empty".into(), String::new());
        assert_eq!(get(&e, "empty").as_deref(), Some(""));
        assert_eq!(get(&e, "k00150"), None);
        assert_eq!(all(&e), model.clone().into_iter().collect::<Vec<_>>());
        e.compact_range(None, None).unwrap();
        let s = e.stats();
        assert_eq!(s.levels[0].files, 0);
        assert!(s.compaction_bytes_written > 0);
        assert_eq!(all(&e), model.clone().into_iter().collect::<Vec<_>>());
        // Unflushed writes come back from the WAL.
        put(&e, "late", "x");
        model.insert("late".into(), "x".into());
    }
    let e = Lsm::open(dir.path(), opts()).unwrap();
    assert_eq!(all(&e), model.clone().into_iter().collect::<Vec<_>>());
    for (k, v) in model.iter().take(50) {
        assert_eq!(get(&e, k).as_ref(), Some(v));
    }
    assert_eq!(get(&e, "k00150"), None);
}

#[test]
fn snapshots_see_the_past_through_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let e = Lsm::open(dir.path(), opts()).unwrap();
    put(&e, "a", "1");
    put(&e, "b", "1");
    let snap = e.snapshot();
    put(&e, "a", "2");
    let mut b = WriteBatch::new();
    b.delete_range("a", "z");
    e.write(b).unwrap();
    e.flush().unwrap();
    e.compact_range(None, None).unwrap();
    assert_eq!(get(&e, "a"), None);
    assert_eq!(
        e.get_at(b"a", &snap).unwrap(),
        Some(Bytes::from_static(b"1"))
    );
    let seen: Vec<_> = e
        .scan((Bound::Unbounded, Bound::Unbounded), Some(&snap))
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(
        seen,
        vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
    );
    drop(snap);
    e.compact_range(None, None).unwrap();
    assert_eq!(
        e.stats().sst_bytes(),
        0,
        "everything was deleted at the bottom"
    );
}

#[test]
fn flush_drops_shadowed_versions_but_keeps_snapshot_ones() {
    let dir = tempfile::tempdir().unwrap();
    let one_memtable = Options {
        memtable_size: 1 << 20,
        ..opts()
    };
    let e = Lsm::open(dir.path(), one_memtable).unwrap();
    let big = "x".repeat(1000);
    put(&e, "a", &format!("old{big}"));
    let snap = e.snapshot();
    for i in 0..200 {
        put(&e, "a", &format!("{i}{big}"));
    }
    let mut b = WriteBatch::new();
    b.delete("b");
    e.write(b).unwrap();
    put(&e, "b", "live");
    e.flush().unwrap();
    // The snapshot's version and the newest survive; the 199 in between do not.
    assert!(e.stats().flush_bytes_written < 10_000);
    assert_eq!(get(&e, "a"), Some(format!("199{big}")));
    assert_eq!(get(&e, "b").as_deref(), Some("live"));
    assert_eq!(
        e.get_at(b"a", &snap).unwrap(),
        Some(Bytes::from(format!("old{big}")))
    );
    assert_eq!(e.get_at(b"b", &snap).unwrap(), None);
    drop(snap);
    drop(e);
    let e = Lsm::open(dir.path(), opts()).unwrap();
    assert_eq!(get(&e, "a"), Some(format!("199{big}")));
}

#[test]
fn scan_values_matches_scan() {
    let dir = tempfile::tempdir().unwrap();
    let e = Lsm::open(dir.path(), opts()).unwrap();
    for i in 0..600 {
        put(&e, &format!("k{:04}", i % 400), &format!("v{i}"));
        if i % 150 == 149 {
            e.flush().unwrap();
        }
    }
    let mut b = WriteBatch::new();
    b.delete("k0007").delete_range("k0100", "k0120");
    e.write(b).unwrap();
    let range = || {
        (
            Bound::Included(Bytes::from_static(b"k0005")),
            Bound::Excluded(Bytes::from_static(b"k0300")),
        )
    };
    let want: Vec<Bytes> = e
        .scan(range(), None)
        .unwrap()
        .map(|r| r.unwrap().1)
        .collect();
    let got: Vec<Bytes> = e
        .scan_values(range(), None)
        .unwrap()
        .map(|r| r.unwrap().1)
        .collect();
    assert_eq!(want.len(), 295 - 1 - 20);
    assert_eq!(got, want);
}

#[test]
fn iterator_pins_files_across_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let e = Lsm::open(dir.path(), opts()).unwrap();
    for i in 0..2000 {
        put(&e, &format!("k{i:05}"), "v");
    }
    e.flush().unwrap();
    let mut it = e.scan((Bound::Unbounded, Bound::Unbounded), None).unwrap();
    assert!(it.next().is_some());
    for i in 0..2000 {
        put(&e, &format!("k{i:05}"), "w");
    }
    e.compact_range(None, None).unwrap();
    assert_eq!(
        it.filter(|r| r.as_ref().is_ok_and(|(_, v)| &v[..] == b"v"))
            .count(),
        1999
    );
}

#[test]
fn background_work_and_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        sync: SyncPolicy::Always,
        ..Options::small_for_tests()
    };
    let e = std::sync::Arc::new(Lsm::open(dir.path(), o.clone()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                for i in 0..1500 {
                    put(&e, &format!("t{t}-{i:05}"), &format!("{i}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(all(&e).len(), 6000);
    assert_eq!(e.stats().last_seq, 6000);
    drop(e);
    let e = Lsm::open(dir.path(), o).unwrap();
    assert_eq!(all(&e).len(), 6000);
    assert_eq!(get(&e, "t3-01499").as_deref(), Some("1499"));
}

#[test]
fn checkpoint_opens_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let e = Lsm::open(dir.path(), opts()).unwrap();
    for i in 0..1000 {
        put(&e, &format!("k{i:05}"), "v");
    }
    let cp = dir.path().join("cp");
    e.checkpoint(&cp).unwrap();
    put(&e, "after", "x");
    let c = Lsm::open(&cp, opts()).unwrap();
    assert_eq!(all(&c).len(), 1000);
    assert_eq!(get(&c, "after"), None);
    assert!(matches!(e.checkpoint(&cp), Err(Error::InvalidArgument(_))));
}

mod faults {
    use super::*;
    use crate::{SimFs, SimOp};
    use std::path::Path;
    use std::sync::Arc;

    fn sim_opts(fs: &SimFs, background: bool) -> Options {
        Options {
            sync: SyncPolicy::Always,
            memtable_size: 2 << 10,
            background_work: background,
            l0_compaction_trigger: 2,
            level_base_bytes: 8 << 10,
            target_file_size: 4 << 10,
            vfs: Arc::new(fs.process()),
            ..Options::small_for_tests()
        }
    }

    #[test]
    fn failed_fsync_stops_the_engine() {
        let fs = SimFs::new();
        let e = Lsm::open(Path::new("/db"), sim_opts(&fs, false)).unwrap();
        put(&e, "a", "1");
        fs.fail_nth_matching(SimOp::Sync, 1, ".wal");
        let mut b = WriteBatch::new();
        b.put("b", "2");
        assert!(e.write(b.clone()).is_err());
        assert!(matches!(e.write(b), Err(Error::Stopped(_))));
        assert!(matches!(e.flush(), Err(Error::Stopped(_))));
        assert_eq!(get(&e, "a").as_deref(), Some("1"));
    }

    type Model = BTreeMap<String, String>;

    fn try_all(e: &Lsm) -> crate::Result<Model> {
        e.scan((Bound::Unbounded, Bound::Unbounded), None)?
            .map(|r| {
                r.map(|(k, v)| {
                    (
                        String::from_utf8(k.to_vec()).unwrap(),
                        String::from_utf8(v.to_vec()).unwrap(),
                    )
                })
            })
            .collect()
    }

    fn apply(m: &mut Model, b: &WriteBatch) {
        for op in b.ops() {
            let s = |x: &Bytes| String::from_utf8(x.to_vec()).unwrap();
            match op {
                crate::BatchOp::Put(k, v) => {
                    m.insert(s(k), s(v));
                }
                crate::BatchOp::Delete(k) => {
                    m.remove(&s(k));
                }
                crate::BatchOp::DeleteRange(a, z) => {
                    let (a, z) = (s(a), s(z));
                    m.retain(|k, _| !(*k >= a && *k < z));
                }
            }
        }
    }

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Power cuts at random points of writes, flushes, compactions and opens: every
    /// acknowledged batch survives, and the one in flight is all or nothing.
    #[test]
    fn power_cuts_keep_acknowledged_batches() {
        let fs = SimFs::new();
        let mut rng = Rng(0x1234_5678);
        let mut model = Model::new();
        let mut value = 0u64;
        for cycle in 0..120u64 {
            fs.power_cut_after(rng.below(400) + 1);
            let mut pending: Option<WriteBatch> = None;
            if let Ok(e) = Lsm::open(Path::new("/db"), sim_opts(&fs, cycle % 3 == 0)) {
                match try_all(&e) {
                    Ok(got) => assert_eq!(got, model, "cycle {cycle}: recovered state differs"),
                    Err(err) => assert!(fs.is_powered_off(), "cycle {cycle}: {err}"),
                }
                for _ in 0..200 {
                    let mut b = WriteBatch::new();
                    for _ in 0..rng.below(3) + 1 {
                        let k = format!("k{:02}", rng.below(40));
                        match rng.below(10) {
                            0 => {
                                b.delete(k);
                            }
                            1 => {
                                let z = format!("k{:02}", rng.below(40));
                                b.delete_range(k, z);
                            }
                            _ => {
                                value += 1;
                                b.put(k, format!("v{value}").repeat(1 + (value % 20) as usize));
                            }
                        }
                    }
                    match e.write(b.clone()) {
                        Ok(_) => apply(&mut model, &b),
                        Err(_) => {
                            pending = Some(b);
                            break;
                        }
                    }
                    let r = match rng.below(40) {
                        0 => e.flush(),
                        1 => e.compact_range(None, None),
                        _ => Ok(()),
                    };
                    if r.is_err() {
                        break;
                    }
                }
                drop(e);
            }
            fs.crash(cycle);
            // The batch in flight when the power went may or may not have landed.
            if let Some(b) = pending {
                let mut alt = model.clone();
                apply(&mut alt, &b);
                let e = loop {
                    fs.power_cut_after(u64::MAX);
                    if let Ok(e) = Lsm::open(Path::new("/db"), sim_opts(&fs, false)) {
                        break e;
                    }
                };
                let got: Model = all(&e).into_iter().collect();
                drop(e);
                if got == alt {
                    model = alt;
                } else {
                    assert_eq!(got, model, "cycle {cycle}: half-applied or lost batch");
                }
            }
        }
    }
}

/// Writers update pairs of keys in one batch while flushes and compactions run; every scan
/// and every snapshot read must see both keys of a pair with the same value.
#[test]
fn concurrent_readers_see_atomic_batches() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        memtable_size: 8 << 10,
        level_base_bytes: 32 << 10,
        target_file_size: 8 << 10,
        ..Options::small_for_tests()
    };
    let e = Arc::new(Lsm::open(dir.path(), o).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                for i in 0..3000u32 {
                    let p = (i * 7 + t) % 50;
                    let v = format!("{t}-{i}");
                    let mut b = WriteBatch::new();
                    b.put(format!("a{p:02}"), v.clone())
                        .put(format!("b{p:02}"), v);
                    if i % 97 == 0 {
                        b.delete_range(format!("a{p:02}"), format!("a{p:02}\0"))
                            .delete(format!("b{p:02}"));
                    }
                    e.write(b).unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (e, done) = (e.clone(), done.clone());
            std::thread::spawn(move || {
                let mut checks = 0;
                while !done.load(Ordering::Acquire) || checks < 5 {
                    let snap = e.snapshot();
                    let view: BTreeMap<String, String> = e
                        .scan((Bound::Unbounded, Bound::Unbounded), Some(&snap))
                        .unwrap()
                        .map(|r| {
                            let (k, v) = r.unwrap();
                            (
                                String::from_utf8(k.to_vec()).unwrap(),
                                String::from_utf8(v.to_vec()).unwrap(),
                            )
                        })
                        .collect();
                    for p in 0..50 {
                        let a = view.get(&format!("a{p:02}"));
                        let b = view.get(&format!("b{p:02}"));
                        assert_eq!(a, b, "pair {p} torn in a scan");
                        let ga = e.get_at(format!("a{p:02}").as_bytes(), &snap).unwrap();
                        assert_eq!(
                            ga.map(|v| String::from_utf8(v.to_vec()).unwrap()).as_ref(),
                            a
                        );
                    }
                    // A scan without a snapshot is one consistent view too.
                    let latest: BTreeMap<Bytes, Bytes> = e
                        .scan((Bound::Unbounded, Bound::Unbounded), None)
                        .unwrap()
                        .map(|r| r.unwrap())
                        .collect();
                    for p in 0..50 {
                        let a = latest.get(format!("a{p:02}").as_bytes());
                        let b = latest.get(format!("b{p:02}").as_bytes());
                        assert_eq!(a, b, "pair {p} torn in a latest scan");
                    }
                    checks += 1;
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    for r in readers {
        r.join().unwrap();
    }
    let s = e.stats();
    assert!(
        s.flush_bytes_written > 0 && s.compaction_bytes_written > 0,
        "{s:?}"
    );
}

#[test]
fn a_deferred_write_is_visible_before_it_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let e = Lsm::open(dir.path(), opts()).unwrap();
    let first = put(&e, "a", "1");
    assert_eq!(e.visible_seq(), first);
    let mut b = WriteBatch::new();
    b.put("b".to_string(), "2".to_string());
    let seq = e.write_deferred(b).unwrap();
    // Readers see it at once (the server makes it durable before answering them) ...
    assert_eq!(get(&e, "b").as_deref(), Some("2"));
    assert_eq!(e.visible_seq(), seq);
    assert!(
        e.inner
            .durable_seq
            .load(std::sync::atomic::Ordering::Acquire)
            < seq
    );
    // ... and `sync_to(visible_seq)` appends it.
    e.sync_to(e.visible_seq()).unwrap();
    assert_eq!(
        e.inner
            .durable_seq
            .load(std::sync::atomic::Ordering::Acquire),
        seq
    );
}
