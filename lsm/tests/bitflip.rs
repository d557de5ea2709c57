//! Exhaustive single-byte damage: every byte of a small SSTable, WAL and manifest is flipped in
//! turn. Each time the engine must either report `Error::Corruption` naming the damaged file,
//! or (only where the damage can pass for a torn write at the very end of a log) open with a
//! state that loses nothing that was durable before that last record. It must never return
//! wrong data or panic.

mod common;

use bytes::Bytes;
use common::b;
use pinnacle_lsm::{Engine, Error, Lsm, Options, SimFs, SyncPolicy, Vfs, WriteBatch};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DIR: &str = "/db";

fn opts(fs: &SimFs) -> Options {
    Options {
        sync: SyncPolicy::Always,
        background_work: false,
        memtable_size: 1 << 20,
        block_size: 256,
        vfs: Arc::new(fs.process()),
        ..Options::small_for_tests()
    }
}

fn key(i: usize) -> Bytes {
    b(format!("key{i:04}"))
}

fn val(i: usize) -> Bytes {
    b(format!("v{i}-").repeat(3))
}

fn put(e: &Lsm, i: usize) {
    let mut wb = WriteBatch::new();
    wb.put(key(i), val(i));
    e.write(wb).unwrap();
}

fn kill(fs: &SimFs, e: Lsm) {
    fs.power_cut();
    drop(e);
    fs.crash(0);
}

fn only_file(fs: &SimFs, suffix: &str) -> PathBuf {
    let v: Vec<PathBuf> = fs
        .files()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            p.to_string_lossy().ends_with(suffix) && fs.contents(p).is_ok_and(|c| !c.is_empty())
        })
        .collect();
    assert_eq!(v.len(), 1, "{suffix}: {v:?}");
    v[0].clone()
}

fn is_corruption_of(err: &Error, file: &Path) -> bool {
    matches!(err, Error::Corruption { path, .. } if path.file_name() == file.file_name())
}

/// Reads every key and a full scan; each answer must be right or a corruption of `file`.
/// Returns whether any corruption was reported.
fn read_all(e: &Lsm, n: usize, file: &Path, at: u64) -> bool {
    let mut reported = false;
    for i in 0..n {
        match e.get(&key(i)) {
            Ok(v) => assert_eq!(v, Some(val(i)), "byte {at}: wrong answer for key {i}"),
            Err(err) => {
                assert!(is_corruption_of(&err, file), "byte {at}: {err}");
                reported = true;
            }
        }
    }
    let it = e.scan((Bound::Unbounded, Bound::Unbounded), None);
    let mut seen = 0;
    match it {
        Err(err) => {
            assert!(is_corruption_of(&err, file), "byte {at}: {err}");
            reported = true;
        }
        Ok(it) => {
            for item in it {
                match item {
                    Ok((k, v)) => {
                        assert_eq!(
                            (k, v),
                            (key(seen), val(seen)),
                            "byte {at}: scan item {seen}"
                        );
                        seen += 1;
                    }
                    Err(err) => {
                        assert!(is_corruption_of(&err, file), "byte {at}: {err}");
                        reported = true;
                        break;
                    }
                }
            }
            if !reported {
                assert_eq!(seen, n, "byte {at}: scan silently missed keys");
            }
        }
    }
    reported
}

#[test]
fn every_byte_of_an_sstable() {
    const N: usize = 60;
    let fs = SimFs::new();
    fs.create_dir_all(Path::new(DIR)).unwrap();
    let e = Lsm::open(Path::new(DIR), opts(&fs)).unwrap();
    for i in 0..N {
        put(&e, i);
    }
    e.flush().unwrap();
    kill(&fs, e);
    let sst = only_file(&fs, ".sst");
    let len = fs.contents(&sst).unwrap().len() as u64;
    let (mut at_open, mut on_read, mut harmless) = (0, 0, 0);
    for at in 0..len {
        fs.flip_byte(&sst, at).unwrap();
        match Lsm::open(Path::new(DIR), opts(&fs)) {
            Err(err) => {
                assert!(is_corruption_of(&err, &sst), "byte {at}: {err}");
                at_open += 1;
            }
            Ok(e) => {
                if read_all(&e, N, &sst, at) {
                    on_read += 1;
                } else {
                    harmless += 1;
                }
                drop(e);
            }
        }
        fs.flip_byte(&sst, at).unwrap();
    }
    eprintln!("sstable of {len} bytes: {at_open} flips caught at open, {on_read} on read, {harmless} harmless");
    assert!(at_open + on_read > 0);
}

/// Flips each byte of `log` in its own copy of `fs`; `ends` are the ends of the log's records
/// as observed after each synced append. Returns how many damaged copies still opened.
fn flip_log_bytes(
    fs: &SimFs,
    log: &Path,
    ends: &[u64],
    check: impl Fn(u64, usize, Result<Lsm, Error>),
) -> u64 {
    let len = *ends.last().unwrap();
    let mut opened = 0;
    for at in 0..len {
        let record = ends.iter().position(|&end| at < end).unwrap();
        let copy = fs.fork();
        copy.flip_byte(log, at).unwrap();
        let result = Lsm::open(Path::new(DIR), opts(&copy));
        opened += result.is_ok() as u64;
        check(at, record, result);
    }
    eprintln!(
        "{}: {len} bytes in {} records, {} flips failed open, {opened} opened",
        log.display(),
        ends.len(),
        len - opened
    );
    opened
}

fn dump(e: &Lsm) -> BTreeMap<Bytes, Bytes> {
    e.scan((Bound::Unbounded, Bound::Unbounded), None)
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn every_byte_of_a_wal() {
    const N: usize = 6;
    let fs = SimFs::new();
    fs.create_dir_all(Path::new(DIR)).unwrap();
    let e = Lsm::open(Path::new(DIR), opts(&fs)).unwrap();
    put(&e, 0);
    let wal = only_file(&fs, ".wal");
    let mut ends = vec![fs.contents(&wal).unwrap().len() as u64];
    for i in 1..N {
        put(&e, i);
        ends.push(fs.contents(&wal).unwrap().len() as u64);
    }
    kill(&fs, e);
    let opened = flip_log_bytes(&fs, &wal, &ends, |at, record, opened| match opened {
        Err(err) => assert!(
            is_corruption_of(&err, &wal),
            "byte {at} (record {record}): {err}"
        ),
        Ok(e) => {
            assert_eq!(
                record,
                N - 1,
                "byte {at}: damage in record {record} of {N} went unnoticed"
            );
            let got = dump(&e);
            let want: BTreeMap<Bytes, Bytes> = (0..N - 1).map(|i| (key(i), val(i))).collect();
            assert_eq!(
                got, want,
                "byte {at}: damaged last record must be dropped whole"
            );
        }
    });
    assert!(
        opened > 0,
        "some damage to the last record passes for a torn write"
    );
}

#[test]
fn every_byte_of_a_manifest() {
    const FLUSHES: usize = 4;
    let fs = SimFs::new();
    fs.create_dir_all(Path::new(DIR)).unwrap();
    let e = Lsm::open(Path::new(DIR), opts(&fs)).unwrap();
    let manifest_path = || {
        let cur = fs.contents(&Path::new(DIR).join("CURRENT")).unwrap();
        Path::new(DIR).join(String::from_utf8_lossy(&cur).trim())
    };
    let manifest = manifest_path();
    let mut ends = vec![fs.contents(&manifest).unwrap().len() as u64];
    for f in 0..FLUSHES {
        for i in f * 10..f * 10 + 10 {
            put(&e, i);
        }
        e.flush().unwrap();
        assert_eq!(manifest_path(), manifest, "the manifest was not rewritten");
        ends.push(fs.contents(&manifest).unwrap().len() as u64);
    }
    kill(&fs, e);
    ends.dedup();
    let all: BTreeMap<Bytes, Bytes> = (0..FLUSHES * 10).map(|i| (key(i), val(i))).collect();
    let last = ends.len() - 1;
    let _ = flip_log_bytes(&fs, &manifest, &ends, |at, record, opened| match opened {
        Err(err) => assert!(
            is_corruption_of(&err, &manifest),
            "byte {at} (record {record}): {err}"
        ),
        Ok(e) => {
            assert_eq!(
                record, last,
                "byte {at}: damage in manifest record {record} went unnoticed"
            );
            assert_eq!(
                dump(&e),
                all,
                "byte {at}: dropping the damaged last record lost data"
            );
        }
    });
}
