//! Fault injection: fsync and write errors are fatal for the engine, and a returned checkpoint
//! is durable.

mod common;

use bytes::Bytes;
use common::sim::{dump_lsm, key, opts, random_batch, Rng, DIR};
use common::{b, Model};
use pinnacle_lsm::{Engine, Error, Lsm, SimFs, SimOp, WriteBatch};
use std::path::Path;

/// A sync error on the WAL fails that write and stops the engine for good.
#[test]
fn fsync_error_is_fatal() {
    let fs = SimFs::new();
    let dir = Path::new(DIR);
    let e = Lsm::open(dir, opts(&fs, false)).unwrap();
    let mut model = Model::default();
    for i in 0..20 {
        let mut wb = WriteBatch::new();
        wb.put(key(i), b(format!("v{i}")));
        model.apply(&wb);
        e.write(wb).unwrap();
    }
    fs.fail_nth(SimOp::Sync, 1);
    let mut doomed = WriteBatch::new();
    doomed.put(key(100), b("never acknowledged")).delete(key(0));
    let mut with_doomed = model.clone();
    with_doomed.apply(&doomed);
    assert!(
        e.write(doomed).is_err(),
        "write whose fsync failed must fail"
    );
    let mut later = WriteBatch::new();
    later.put(key(101), b("after the error"));
    match e.write(later.clone()) {
        Err(Error::Stopped(_)) => {}
        other => panic!("writes after an fsync error must be refused with Stopped, got {other:?}"),
    }
    assert!(
        matches!(e.write(later), Err(Error::Stopped(_))),
        "stays stopped"
    );
    drop(e);
    // Reboot a few times: the first crash decides what survived, later ones must not change it.
    for seed in 0..3 {
        fs.crash(seed);
        let e = Lsm::open(dir, opts(&fs, false)).unwrap();
        let got = dump_lsm(&e).unwrap();
        assert!(
            got == model.map || got == with_doomed.map,
            "after reopen: every acknowledged write and nothing half-applied"
        );
        assert_eq!(
            e.get(&key(101)).unwrap(),
            None,
            "a refused write never appears"
        );
        drop(e);
    }
}

/// A failed WAL append is fatal too, and a sync error while flushing a memtable stops the
/// engine without losing acknowledged writes.
#[test]
fn append_and_flush_sync_errors_are_fatal() {
    let fs = SimFs::new();
    let dir = Path::new(DIR);
    let e = Lsm::open(dir, opts(&fs, false)).unwrap();
    fs.fail_nth(SimOp::Append, 1);
    let mut wb = WriteBatch::new();
    wb.put(b("a"), b("1"));
    assert!(e.write(wb.clone()).is_err());
    assert!(matches!(e.write(wb), Err(Error::Stopped(_))));
    drop(e);
    fs.crash(1);

    let e = Lsm::open(dir, opts(&fs, false)).unwrap();
    let mut model = Model::default();
    for i in 0..100 {
        let mut wb = WriteBatch::new();
        wb.put(key(i), Bytes::from(vec![i as u8; 300]));
        model.apply(&wb);
        e.write(wb).unwrap();
    }
    let syncs = fs.op_count(SimOp::Sync);
    fs.fail_nth(SimOp::Sync, 1);
    assert!(
        e.flush().is_err(),
        "flush whose SSTable sync failed must fail"
    );
    assert!(fs.op_count(SimOp::Sync) > syncs);
    let mut wb = WriteBatch::new();
    wb.put(b("late"), b("x"));
    assert!(matches!(e.write(wb), Err(Error::Stopped(_))));
    drop(e);
    fs.crash(2);
    let e = Lsm::open(dir, opts(&fs, false)).unwrap();
    assert_eq!(dump_lsm(&e).unwrap(), model.map);
}

/// A checkpoint that returned is durable: after a power loss right after it, it opens with
/// exactly the content it was taken at.
#[test]
fn checkpoint_survives_power_loss() {
    for (round, bg) in [(0u64, false), (1, true), (2, false)] {
        let fs = SimFs::new();
        let e = Lsm::open(Path::new(DIR), opts(&fs, bg)).unwrap();
        let mut model = Model::default();
        let mut rng = Rng(round);
        for id in 0..150 {
            let wb = random_batch(&mut rng, id);
            model.apply(&wb);
            e.write(wb).unwrap();
            if id == 70 {
                e.flush().unwrap();
            }
        }
        let ck = Path::new("/ck");
        e.checkpoint(ck).unwrap();
        fs.power_cut();
        drop(e);
        fs.crash(round);
        let c = Lsm::open(ck, opts(&fs, false)).unwrap();
        assert_eq!(dump_lsm(&c).unwrap(), model.map, "round {round}");
        drop(c);
        let e = Lsm::open(Path::new(DIR), opts(&fs, false)).unwrap();
        assert_eq!(dump_lsm(&e).unwrap(), model.map, "round {round}: source");
    }
}

/// After an fsync error the engine can be dropped and reopened without a crash; everything
/// acknowledged is there and the refused writes are not.
#[test]
fn reopen_after_fatal_error_without_power_loss() {
    let fs = SimFs::new();
    let dir = Path::new(DIR);
    let e = Lsm::open(dir, opts(&fs, true)).unwrap();
    let mut model = Model::default();
    let mut rng = Rng(9);
    for id in 0..200 {
        let wb = random_batch(&mut rng, id);
        model.apply(&wb);
        e.write(wb).unwrap();
    }
    fs.fail_nth(SimOp::Sync, 1);
    let doomed = random_batch(&mut rng, 1000);
    let mut with_doomed = model.clone();
    with_doomed.apply(&doomed);
    assert!(e.write(doomed).is_err());
    let refused = random_batch(&mut rng, 1001);
    assert!(matches!(e.write(refused), Err(Error::Stopped(_))));
    drop(e);
    let e = Lsm::open(dir, opts(&fs, true)).unwrap();
    let got = dump_lsm(&e).unwrap();
    assert!(got == model.map || got == with_doomed.map);
    assert_ne!(got.get(&b("marker")), Some(&b(1001u64.to_le_bytes())));
}
