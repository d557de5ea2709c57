//! Property of the `lsm_recovery` target: the engine opened on an arbitrary directory (WAL
//! segments, SSTables, manifest, `CURRENT`) returns `Ok` or an error — never panics, never
//! allocates by a length the files declare — and an engine that opened can be read, written,
//! flushed and compacted without panicking.
//!
//! Used by `fuzz/fuzz_targets/lsm_recovery.rs` and, through `#[path]`, by
//! `lsm/tests/fuzz_corpus.rs` (which also writes the seeds: real engine directories).
//!
//! Input format, so a seed holds a whole directory: repeated
//! `name_len u8 | name | data_len u32 LE | data` (a length past the end takes the rest).
#![allow(dead_code)]

use pinnacle_lsm::{Engine, Lsm, Options, SimFs, SyncPolicy, Vfs, WriteBatch};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DIR: &str = "/db";
/// At most this many files per input (the rest of the input is ignored).
const MAX_FILES: usize = 16;

/// Largest single allocation allowed while recovering from `len` input bytes: the files
/// themselves (read whole), the engine's fixed buffers (block cache, memtable), and nothing
/// that a header merely declares.
pub fn alloc_bound(len: usize) -> usize {
    2 * len + (1 << 20)
}

/// Heap growth allowed while recovering from `len` input bytes (the files live in the
/// simulated file system, are read, replayed into a memtable and rewritten by a flush).
pub fn peak_bound(len: usize) -> usize {
    16 * len + (8 << 20)
}

/// Splits an input into `(file name, contents)` pairs.
pub fn files(mut data: &[u8]) -> Vec<(String, &[u8])> {
    let mut out = Vec::new();
    while let Some((&name_len, rest)) = data.split_first() {
        if out.len() == MAX_FILES {
            break;
        }
        let (name, rest) = rest.split_at(usize::from(name_len).min(rest.len()));
        let (len, rest) = rest.split_at(4.min(rest.len()));
        let mut len4 = [0u8; 4];
        len4[..len.len()].copy_from_slice(len);
        let (body, rest) = rest.split_at((u32::from_le_bytes(len4) as usize).min(rest.len()));
        let name: String = String::from_utf8_lossy(name)
            .chars()
            .map(|c| if c == '/' || c == '\0' { '_' } else { c })
            .collect();
        let name = match name.as_str() {
            "" | "." | ".." => format!("_{name}"),
            _ => name,
        };
        out.push((name, body));
        data = rest;
    }
    out
}

/// Encodes `(file name, contents)` pairs in the input format (for seeds).
pub fn pack(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, body) in files {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
    }
    out
}

fn options(fs: &SimFs) -> Options {
    Options {
        sync: SyncPolicy::Never,
        background_work: false,
        vfs: Arc::new(fs.clone()),
        ..Options::small_for_tests()
    }
}

/// Every file of the engine directory in `fs`, in the input format (for seeds).
pub fn snapshot_dir(fs: &SimFs) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = fs
        .files()
        .into_iter()
        .filter_map(|(path, _)| {
            let name = path.strip_prefix(DIR).ok()?.to_str()?.to_string();
            Some((name, fs.contents(&path).ok()?))
        })
        .collect();
    files.sort();
    pack(&files)
}

/// Builds real engine directories (WAL only; SSTables and WAL; after compaction; with
/// deletes and range deletes) and returns each in the input format.
pub fn seed_dirs() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for shape in 0..4u32 {
        let fs = SimFs::new();
        let db = Lsm::open(Path::new(DIR), options(&fs)).expect("open a fresh engine");
        for round in 0..3u32 {
            let mut b = WriteBatch::default();
            for i in 0..20u32 {
                b.put(
                    format!("key{:03}", i * 3 + round),
                    format!("value {round} {i}"),
                );
            }
            if shape >= 2 {
                b.delete(format!("key{:03}", round));
                b.delete_range(
                    format!("key{:03}", 10 + round),
                    format!("key{:03}", 14 + round),
                );
            }
            db.write(b).expect("write");
            if shape >= 1 && round < 2 {
                db.flush().expect("flush");
            }
        }
        if shape == 3 {
            db.compact_range(None, None).expect("compact");
        }
        seeds.push(snapshot_dir(&fs));
    }
    seeds
}

/// Writes the input's files into a simulated directory and opens the engine on it.
pub fn recover(data: &[u8]) {
    let fs = SimFs::new();
    let dir = PathBuf::from(DIR);
    fs.create_dir_all(&dir).expect("mkdir in SimFs");
    for (name, body) in files(data) {
        let mut f = fs.create(&dir.join(name)).expect("create in SimFs");
        f.append(body).expect("append in SimFs");
        f.sync().expect("sync in SimFs");
    }
    fs.sync_dir(&dir).expect("sync_dir in SimFs");
    let Ok(db) = Lsm::open(&dir, options(&fs)) else {
        return;
    };
    exercise(&db);
    drop(db);
    // What the engine left behind (it rewrote the manifest) must open again.
    if let Ok(db) = Lsm::open(&dir, options(&fs)) {
        exercise(&db);
    }
}

fn exercise(db: &Lsm) {
    if let Ok(it) = db.scan((Bound::Unbounded, Bound::Unbounded), None) {
        for item in it.take(10_000) {
            let Ok((k, _)) = item else { break };
            let _ = db.get(&k);
        }
    }
    let _ = db.get(b"key001");
    let mut b = WriteBatch::default();
    b.put("fuzz", "value");
    if db.write(b).is_ok() {
        let _ = db.flush();
    }
    let _ = db.compact_range(None, None);
}
