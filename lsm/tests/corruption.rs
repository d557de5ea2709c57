//! Damaged files are reported, never silently read: a flipped byte in an SSTable block, in a
//! WAL record followed by valid ones, or in the manifest gives `Error::Corruption` naming the
//! file and the offset of the damaged block or record. A torn last WAL record (a crash in
//! the middle of an append) is dropped and everything before it kept.

mod common;

use bytes::Bytes;
use common::{b, Model};
use pinnacle_lsm::{Engine, Error, Lsm, Options, SimFs, SyncPolicy, Vfs, WriteBatch};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DIR: &str = "/db";

fn opts(fs: &SimFs) -> Options {
    Options {
        sync: SyncPolicy::Always,
        background_work: false,
        memtable_size: 1 << 20,
        vfs: Arc::new(fs.process()),
        ..Options::small_for_tests()
    }
}

fn open(fs: &SimFs) -> pinnacle_lsm::Result<Lsm> {
    Lsm::open(Path::new(DIR), opts(fs))
}

fn key(i: usize) -> Bytes {
    b(format!("key{i:05}"))
}

fn val(i: usize) -> Bytes {
    b(format!("value {i} ").repeat(8))
}

/// Stops the engine without a clean close (everything was synced), then reboots.
fn kill(fs: &SimFs, e: Lsm) {
    fs.power_cut();
    drop(e);
    fs.crash(0);
}

/// Files in `DIR` whose name ends with `suffix`, sorted by name.
fn files_ending(fs: &SimFs, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs
        .files()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Asserts `err` is a corruption report for `file` at an offset no later than `at`.
fn assert_corruption(err: &Error, file: &Path, at: u64) {
    match err {
        Error::Corruption { path, offset, .. } => {
            assert_eq!(
                path.file_name(),
                file.file_name(),
                "wrong file named: {err}"
            );
            assert!(
                *offset <= at,
                "offset {offset} is past the flipped byte {at}: {err}"
            );
        }
        other => panic!(
            "expected a corruption error for {}, got {other}",
            file.display()
        ),
    }
}

/// Writes `n` single-put batches and returns the model.
fn write_batches(e: &Lsm, range: std::ops::Range<usize>) -> Model {
    let mut m = Model::default();
    for i in range {
        let mut wb = WriteBatch::new();
        wb.put(key(i), val(i));
        m.apply(&wb);
        e.write(wb).unwrap();
    }
    m
}

/// A database whose only data sits in one WAL segment; returns the segment.
fn wal_only(fs: &SimFs, n: usize) -> PathBuf {
    fs.create_dir_all(Path::new(DIR)).unwrap();
    let e = open(fs).unwrap();
    write_batches(&e, 0..n);
    kill(fs, e);
    let wals = files_ending(fs, ".wal");
    let (path, len) = wals
        .iter()
        .map(|p| (p.clone(), fs.contents(p).unwrap().len()))
        .max_by_key(|(_, len)| *len)
        .expect("a WAL segment");
    assert!(len > 0);
    path
}

#[test]
fn flipped_byte_in_a_middle_wal_record_fails_open() {
    for at in [2u64, 10, 25, 60] {
        let fs = SimFs::new();
        let wal = wal_only(&fs, 10);
        fs.flip_byte(&wal, at).unwrap();
        match open(&fs) {
            Ok(e) => panic!(
                "open succeeded over a damaged WAL record at {at}; {} keys visible",
                e.scan((Bound::Unbounded, Bound::Unbounded), None)
                    .unwrap()
                    .count()
            ),
            Err(err) => assert_corruption(&err, &wal, at),
        }
    }
}

#[test]
fn torn_last_wal_record_is_dropped() {
    for cut in [1u64, 3, 15, 30] {
        let fs = SimFs::new();
        let wal = wal_only(&fs, 10);
        let len = fs.contents(&wal).unwrap().len() as u64;
        fs.truncate(&wal, len - cut).unwrap();
        let e = open(&fs)
            .unwrap_or_else(|err| panic!("cut {cut}: torn tail must not fail open: {err}"));
        for i in 0..9 {
            assert_eq!(
                e.get(&key(i)).unwrap(),
                Some(val(i)),
                "cut {cut}: record {i} kept"
            );
        }
        assert_eq!(
            e.get(&key(9)).unwrap(),
            None,
            "cut {cut}: torn record dropped"
        );
        // The engine keeps working and the next recovery sees the new write after the old ones.
        let mut wb = WriteBatch::new();
        wb.put(key(100), b("after"));
        e.write(wb).unwrap();
        kill(&fs, e);
        let e = open(&fs).unwrap();
        assert_eq!(e.get(&key(100)).unwrap(), Some(b("after")));
        assert_eq!(e.get(&key(8)).unwrap(), Some(val(8)));
    }
}

/// One flushed table holding keys 0..n; returns it.
fn one_table(fs: &SimFs, n: usize) -> PathBuf {
    fs.create_dir_all(Path::new(DIR)).unwrap();
    let e = open(fs).unwrap();
    write_batches(&e, 0..n);
    e.flush().unwrap();
    kill(fs, e);
    let ssts = files_ending(fs, ".sst");
    assert_eq!(ssts.len(), 1, "one flush, one table: {ssts:?}");
    ssts[0].clone()
}

#[test]
fn flipped_byte_in_an_sstable_data_block_is_reported_on_read() {
    let fs = SimFs::new();
    let sst = one_table(&fs, 300);
    fs.flip_byte(&sst, 5).unwrap();
    let e = match open(&fs) {
        Ok(e) => e,
        Err(err) => return assert_corruption(&err, &sst, 5),
    };
    // Every read either returns the right value or reports the damaged block; key 0 lives
    // in the first block, so at least that one must fail.
    let mut failures = 0;
    for i in 0..300 {
        match e.get(&key(i)) {
            Ok(v) => assert_eq!(v, Some(val(i)), "silently wrong value for key {i}"),
            Err(err) => {
                assert_corruption(&err, &sst, 5);
                failures += 1;
            }
        }
    }
    assert!(failures >= 1, "the damaged block was never reported");
    let mut it = e.scan((Bound::Unbounded, Bound::Unbounded), None).unwrap();
    match it.next() {
        Some(Err(err)) => assert_corruption(&err, &sst, 5),
        other => panic!("scan over a damaged first block yielded {other:?}"),
    }
}

#[test]
fn flipped_byte_in_an_sstable_footer_or_index_is_reported() {
    for from_end in [1u64, 20, 90] {
        let fs = SimFs::new();
        let sst = one_table(&fs, 300);
        let len = fs.contents(&sst).unwrap().len() as u64;
        let at = len - from_end;
        fs.flip_byte(&sst, at).unwrap();
        let err = match open(&fs) {
            Err(err) => err,
            Ok(e) => match e.get(&key(150)) {
                Err(err) => err,
                Ok(v) => panic!("{from_end} bytes from the end: damaged table read as {v:?}"),
            },
        };
        assert_corruption(&err, &sst, at);
    }
}

#[test]
fn flipped_byte_in_the_manifest_fails_open() {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new(DIR)).unwrap();
    let e = open(&fs).unwrap();
    for round in 0..4 {
        write_batches(&e, round * 50..round * 50 + 50);
        e.flush().unwrap();
    }
    kill(&fs, e);
    let current = fs.contents(&Path::new(DIR).join("CURRENT")).unwrap();
    let name = String::from_utf8_lossy(&current).trim().to_string();
    let manifest = Path::new(DIR).join(&name);
    let len = fs.contents(&manifest).unwrap().len() as u64;
    assert!(len > 40, "manifest {name} holds several records");
    for at in [1u64, 14] {
        let probe = fs.clone();
        probe.flip_byte(&manifest, at).unwrap();
        match open(&fs) {
            Ok(_) => panic!("open succeeded over a damaged manifest (byte {at})"),
            Err(err) => assert_corruption(&err, &manifest, at),
        }
        probe.flip_byte(&manifest, at).unwrap(); // undo
    }
    // Undamaged again: opens with everything.
    let e = open(&fs).unwrap();
    assert_eq!(e.get(&key(199)).unwrap(), Some(val(199)));
}

/// What a crash can leave after the last record on some file systems: the size was updated but
/// the data never arrived (zeros), or garbage. Both are a torn tail, not corruption.
#[test]
fn zero_or_garbage_tail_after_the_last_wal_record_is_dropped() {
    for tail in [
        vec![0u8; 100],
        vec![0u8; 7],
        (0..64u8).map(|i| i.wrapping_mul(37) ^ 0xA5).collect(),
    ] {
        let fs = SimFs::new();
        let wal = wal_only(&fs, 10);
        let mut data = fs.contents(&wal).unwrap();
        data.extend_from_slice(&tail);
        let mut f = fs.create(&wal).unwrap();
        f.append(&data).unwrap();
        f.sync().unwrap();
        drop(f);
        let e = open(&fs)
            .unwrap_or_else(|err| panic!("tail of {} bytes must not fail open: {err}", tail.len()));
        for i in 0..10 {
            assert_eq!(e.get(&key(i)).unwrap(), Some(val(i)), "record {i} kept");
        }
    }
}

#[test]
fn damaged_current_pointer_fails_open() {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new(DIR)).unwrap();
    let e = open(&fs).unwrap();
    write_batches(&e, 0..10);
    e.flush().unwrap();
    kill(&fs, e);
    let current = Path::new(DIR).join("CURRENT");
    fs.flip_byte(&current, 2).unwrap();
    match open(&fs) {
        Ok(_) => panic!("open succeeded with a damaged CURRENT"),
        Err(Error::Corruption { path, .. }) => assert_eq!(path.file_name(), current.file_name()),
        Err(other) => panic!("expected corruption naming CURRENT, got {other}"),
    }
}
