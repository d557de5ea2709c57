//! A full disk (SimFs with a capacity): a write that does not fit is refused whole with
//! `Error::NoSpace` (never applied, never visible, never acknowledged), reads go on, the engine
//! keeps running, and writes are accepted again as soon as space returns — no restart.
//! Flushes and compactions that run out of space leave nothing behind and are retried.
//! After a power loss every acknowledged write is there and no refused one is.

mod common;

use bytes::Bytes;
use common::sim::{dump_lsm, key, opts, opts_with, Rng, DIR};
use common::{b, Model};
use pinnacle_lsm::{Engine, Error, Lsm, SimFs, SyncPolicy, WriteBatch};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn put(k: Bytes, v: Bytes) -> WriteBatch {
    let mut wb = WriteBatch::new();
    wb.put(k, v);
    wb
}

/// Reopens after a power loss and checks the state is exactly `model`.
fn crash_and_check(fs: &SimFs, seed: u64, model: &Model) {
    fs.crash(seed);
    let e = Lsm::open(Path::new(DIR), opts(fs, false)).expect("reopen");
    assert_eq!(
        dump_lsm(&e).expect("scan"),
        model.map,
        "after a power loss: every acknowledged write, no refused one"
    );
}

#[test]
fn a_write_that_does_not_fit_is_refused_whole_and_writes_resume_when_space_returns() {
    let fs = SimFs::new();
    let dir = Path::new(DIR);
    let e = Lsm::open(dir, opts(&fs, false)).unwrap();
    let mut model = Model::default();
    for i in 0..20 {
        let wb = put(key(i), b(format!("v{i}")));
        model.apply(&wb);
        e.write(wb).unwrap();
    }
    // The disk fills up: nothing beyond what is taken (and reserved) now.
    fs.set_capacity(Some(fs.used_bytes()));
    let big = Bytes::from(vec![b'x'; 3000]);
    let mut refused = None;
    for i in 100..10_000u64 {
        let mut wb = put(key(i), big.clone());
        wb.delete(key(i % 20));
        match e.write(wb.clone()) {
            Ok(_) => model.apply(&wb),
            Err(err) => {
                refused = Some((i, err));
                break;
            }
        }
    }
    let (i, err) = refused.expect("a full disk refused nothing");
    assert!(matches!(err, Error::NoSpace { .. }), "{err:?}");
    assert!(e.stats().write_refused);
    // Not applied: neither its put nor its delete is visible; reads are served.
    assert_eq!(e.get(&key(i)).unwrap(), None);
    assert_eq!(dump_lsm(&e).unwrap(), model.map);
    // Still refused while the disk is full (not stopped: the error stays NoSpace).
    assert!(matches!(
        e.write(put(key(i), big.clone())),
        Err(Error::NoSpace { .. })
    ));
    // A manual flush on a full disk fails cleanly too (no room for a new WAL segment).
    match e.flush() {
        Err(Error::NoSpace { .. }) => {}
        other => panic!("flush on a full disk: {other:?}"),
    }
    assert_eq!(dump_lsm(&e).unwrap(), model.map);
    // The probe a server asks before taking a write says so too, and keeps refusing.
    assert!(!e.has_space());
    assert!(e.stats().write_refused);
    // Space returns: the probe sees it without any write, then the next write succeeds.
    fs.set_capacity(None);
    assert!(e.has_space());
    assert!(!e.stats().write_refused);
    let wb = put(key(i), b("after"));
    model.apply(&wb);
    e.write(wb).expect("write after space returned");
    assert!(!e.stats().write_refused);
    e.flush().expect("flush after space returned");
    assert_eq!(dump_lsm(&e).unwrap(), model.map);
    drop(e);
    for seed in 0..3 {
        crash_and_check(&fs, seed, &model);
    }
}

/// Under a relaxed sync policy, a flush (what the server does before exiting) that finds no
/// room for a new WAL segment still makes everything written so far durable.
#[test]
fn a_flush_on_a_full_disk_still_syncs_the_wal() {
    let fs = SimFs::new();
    let dir = Path::new(DIR);
    let lazy = opts_with(&fs, false, SyncPolicy::EveryMillis(3_600_000));
    let e = Lsm::open(dir, lazy).unwrap();
    let mut model = Model::default();
    for i in 0..50 {
        let wb = put(key(i), b(format!("v{i}")));
        model.apply(&wb);
        e.write(wb).unwrap();
    }
    fs.set_capacity(Some(fs.used_bytes()));
    assert!(matches!(e.flush(), Err(Error::NoSpace { .. })));
    // Every WAL byte is durable, whatever a power loss tears off now.
    let wals: Vec<_> = fs
        .files()
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    assert!(!wals.is_empty());
    for (p, len) in wals {
        assert_eq!(
            fs.durable_len(&p).unwrap(),
            len,
            "{} not synced",
            p.display()
        );
    }
    // The power goes out before anything else runs.
    fs.power_cut();
    drop(e);
    fs.set_capacity(None);
    for seed in 0..4 {
        crash_and_check(&fs, seed, &model);
    }
}

#[test]
fn flush_and_compaction_out_of_space_leave_nothing_behind_and_retry() {
    let fs = SimFs::new();
    let dir = Path::new(DIR);
    let e = Lsm::open(dir, opts(&fs, false)).unwrap();
    let mut model = Model::default();
    let mut rng = Rng(7);
    for round in 0..6u64 {
        for i in 0..150 {
            let wb = put(
                key(rng.below(400)),
                Bytes::from(vec![(round * 7 + i) as u8; 100 + rng.below(200) as usize]),
            );
            model.apply(&wb);
            e.write(wb).unwrap();
        }
        let files_before = fs.files();
        // Just enough for the WAL, not for a table.
        fs.set_capacity(Some(fs.used_bytes() + 2048));
        let flushed = e.flush();
        let compacted = e.compact_range(None, None);
        for r in [&flushed, &compacted] {
            match r {
                Ok(()) | Err(Error::NoSpace { .. }) => {}
                Err(other) => panic!("round {round}: {other:?}"),
            }
        }
        if flushed.is_err() {
            // The failed table write left no file behind.
            let tables = |f: &[(std::path::PathBuf, u64)]| {
                f.iter()
                    .filter(|(p, _)| p.extension().is_some_and(|x| x == "sst"))
                    .count()
            };
            assert!(tables(&fs.files()) <= tables(&files_before));
        }
        assert_eq!(dump_lsm(&e).unwrap(), model.map, "round {round}");
        fs.set_capacity(None);
        e.flush().expect("flush once space returned");
        e.compact_range(None, None)
            .expect("compaction once space returned");
        assert_eq!(dump_lsm(&e).unwrap(), model.map, "round {round}");
    }
    drop(e);
    crash_and_check(&fs, 1, &model);
}

/// Writers race a disk that fills and empties, with background flushes and compactions on
/// a small memtable: every write either is acknowledged (and survives a power loss) or gets
/// `NoSpace` (and never appears).
#[test]
fn concurrent_writers_on_a_filling_disk_lose_nothing_acknowledged() {
    for seed in 0..4u64 {
        let fs = SimFs::new();
        let dir = Path::new(DIR);
        let e = Arc::new(Lsm::open(dir, opts(&fs, true)).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..3u64)
            .map(|t| {
                let (e, stop) = (e.clone(), stop.clone());
                thread::spawn(move || {
                    let mut acked = BTreeMap::new();
                    let mut refused = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let k = b(format!("t{t}:{n:06}"));
                        let v = Bytes::from(vec![(n % 251) as u8; 200 + (n % 5) as usize * 100]);
                        match e.write(put(k.clone(), v.clone())) {
                            Ok(_) => {
                                acked.insert(k, v);
                            }
                            Err(Error::NoSpace { .. }) => refused.push(k),
                            Err(other) => panic!("writer {t}: {other:?}"),
                        }
                    }
                    (acked, refused)
                })
            })
            .collect();
        let mut rng = Rng(seed);
        for _ in 0..12 {
            thread::sleep(Duration::from_millis(20 + rng.below(60)));
            if rng.chance(50) {
                fs.set_capacity(Some(fs.used_bytes() + rng.below(64 << 10)));
            } else {
                fs.set_capacity(None);
            }
        }
        // Space returns for good: writes are accepted again (flushes retry within ~1 s).
        fs.set_capacity(None);
        let t = Instant::now();
        loop {
            match e.write(put(b("final"), b("1"))) {
                Ok(_) => break,
                Err(Error::NoSpace { .. }) if t.elapsed() < Duration::from_secs(20) => {
                    thread::sleep(Duration::from_millis(50));
                }
                Err(other) => panic!("seed {seed}: no recovery: {other:?}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut model = Model::default();
        model.map.insert(b("final"), b("1"));
        let mut refused_all = Vec::new();
        let mut n_refused = 0;
        for w in writers {
            let (acked, refused) = w.join().expect("writer");
            n_refused += refused.len();
            model.map.extend(acked);
            refused_all.extend(refused);
        }
        for k in &refused_all {
            assert_eq!(
                e.get(k).unwrap(),
                None,
                "seed {seed}: refused {k:?} visible"
            );
        }
        assert_eq!(dump_lsm(&e).unwrap(), model.map, "seed {seed}");
        eprintln!(
            "seed {seed}: {} acknowledged, {n_refused} refused",
            model.map.len()
        );
        drop(e);
        crash_and_check(&fs, seed, &model);
    }
}

/// Wait-for-space mode (a Raft replica's apply, which cannot skip a committed entry): the
/// engine reports itself full while a reserve step is still left (so new writes can be
/// refused up front), a write that does not fit at all waits, unapplied and invisible, and
/// goes in once space returns.
#[test]
fn in_wait_mode_a_write_that_does_not_fit_waits_for_space() {
    let fs = SimFs::new();
    let e = Arc::new(Lsm::open(Path::new(DIR), opts(&fs, false)).unwrap());
    e.wait_for_space(true);
    e.write(put(key(1), b("v1"))).unwrap();
    fs.set_capacity(Some(fs.used_bytes()));
    let big = Bytes::from(vec![b'x'; 3000]);
    let done = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (e, done, big, written) = (e.clone(), done.clone(), big.clone(), written.clone());
        thread::spawn(move || loop {
            let n = written.load(Ordering::SeqCst);
            let r = e.write_deferred(put(key(100 + n), big.clone()));
            if r.is_err() {
                return r.map(|_| ());
            }
            written.fetch_add(1, Ordering::SeqCst);
            if done.load(Ordering::SeqCst) {
                return Ok(());
            }
        })
    };
    let t = Instant::now();
    while e.has_space() {
        assert!(t.elapsed() < Duration::from_secs(10), "never reported full");
        thread::sleep(Duration::from_millis(1));
    }
    let at_full = written.load(Ordering::SeqCst);
    // Reported full, then stuck in one write that does not fit: nothing of it visible.
    let stuck = loop {
        let n = written.load(Ordering::SeqCst);
        thread::sleep(Duration::from_millis(300));
        if written.load(Ordering::SeqCst) == n {
            break n;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "writes never waited");
    };
    done.store(true, Ordering::SeqCst);
    assert!(!writer.is_finished(), "a write on a full disk did not wait");
    assert_eq!(e.get(&key(100 + stuck)).unwrap(), None);
    assert!(!e.has_space());
    fs.set_capacity(None);
    writer
        .join()
        .expect("writer")
        .expect("the waiting write went in once space returned");
    assert!(e.has_space());
    let n = written.load(Ordering::SeqCst);
    assert!(n > stuck && stuck >= at_full, "{at_full} {stuck} {n}");
    for i in 0..n {
        assert_eq!(
            e.get(&key(100 + i)).unwrap(),
            Some(big.clone()),
            "write {i}"
        );
    }
}
