//! [`Lsm`]: the engine that ties WAL, memtables, tables, manifest and compaction together.
//!
//! State is an `Arc<State>` (active memtable, immutable memtables, current `Version`) swapped
//! atomically; readers load it without locking. Every read-modify-write of the state holds
//! `swap_lock` (never across I/O). `structure` serialises manifest edits (flush and
//! compaction installs), `writer` serialises WAL appends and memtable inserts (group commit).

mod background;
mod open;
mod write;

use crate::counters::Counters;
use crate::iterators::{InternalIterator, MergeIter, UserIter};
use crate::key::{self, MAX_SEQ};
use crate::manifest::{ManifestState, ManifestWriter};
use crate::memtable::{MemIter, MemTable};
use crate::space::Reservation;
use crate::sstable::{bloom, cache::BlockCache, table_name};
use crate::version::{resolve, Version};
use crate::wal::WalWriter;
use crate::{
    DbIter, Engine, Error, KeyRange, LevelStats, Options, Result, Snapshot, Stats, WriteBatch,
};
use arc_swap::ArcSwap;
use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What readers see: memtables newest first, then the tables.
pub(crate) struct State {
    pub(crate) mem: Arc<MemTable>,
    /// Frozen memtables waiting for flush, newest first.
    pub(crate) imms: Vec<Arc<MemTable>>,
    pub(crate) version: Arc<Version>,
}

struct Writer {
    last_seq: u64,
    // Framed WAL records of writes up to `last_seq` not yet appended to `wal` (in seq order).
    pending: Vec<u8>,
    // Reused encoding buffer.
    payload: Vec<u8>,
    // Disk space reserved for the active WAL segment; a record is framed only once its
    // bytes fit, so a full disk refuses a write before it is applied (see `crate::space`).
    space: Reservation,
    // Bytes framed into the active segment (appended plus pending).
    wal_end: u64,
    // The active segment's path (for errors).
    wal_path: PathBuf,
    // Size of the last record refused for lack of space: what `probe_space` must find room
    // for before writes are taken again.
    refused_len: u64,
}

/// The open WAL segment; held across WAL I/O (never while waiting for `writer`'s holders
/// to do I/O: the lock order is `wal_io`, then `writer`).
struct WalIo {
    wal: WalWriter,
    // Appended since the last fsync.
    dirty: bool,
    // An empty buffer swapped in for `Writer::pending`, so appending does not allocate.
    spare: Vec<u8>,
}

struct Structure {
    manifest: ManifestWriter,
    meta: ManifestState,
}

/// Live snapshot sequence numbers (with counts).
#[derive(Default)]
pub(crate) struct SnapshotList {
    seqs: Mutex<BTreeMap<u64, usize>>,
}

impl SnapshotList {
    fn list(&self) -> Vec<u64> {
        self.seqs.lock().keys().copied().collect()
    }
}

struct SnapGuard {
    list: Arc<SnapshotList>,
    seq: u64,
}

impl Drop for SnapGuard {
    fn drop(&mut self) {
        let mut m = self.list.seqs.lock();
        if let Some(c) = m.get_mut(&self.seq) {
            *c -= 1;
            if *c == 0 {
                m.remove(&self.seq);
            }
        }
    }
}

pub(crate) struct Inner {
    dir: PathBuf,
    opts: Options,
    state: ArcSwap<State>,
    swap_lock: Mutex<()>,
    writer: Mutex<Writer>,
    wal_io: Mutex<WalIo>,
    // Every write up to this sequence number is durable per the sync policy.
    durable_seq: AtomicU64,
    structure: Mutex<Structure>,
    flush_lock: Mutex<()>,
    compaction_lock: Mutex<()>,
    next_file: AtomicU64,
    visible_seq: AtomicU64,
    // Bumped before each compaction install; readers without a snapshot retry if it moved.
    compaction_epoch: AtomicU64,
    snapshots: Arc<SnapshotList>,
    counters: Arc<Counters>,
    cache: Arc<BlockCache>,
    stopped: AtomicBool,
    stop_reason: Mutex<String>,
    // The last write was refused for lack of disk space (cleared by the next accepted one).
    write_refused: AtomicBool,
    // Writes wait for space instead of being refused (see `Engine::wait_for_space`).
    wait_for_space: AtomicBool,
    // The last flush (compaction) ran out of disk space; cleared by the next that succeeds.
    flush_no_space: AtomicBool,
    compact_no_space: AtomicBool,
    shutdown: AtomicBool,
    // Wakes background threads (work may be available) and stalled writers (progress made).
    bg_lock: Mutex<()>,
    bg_cv: Condvar,
}

/// Pinnacle's LSM-tree engine.
pub struct Lsm {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    fn alloc_file(&self) -> u64 {
        self.next_file.fetch_add(1, Ordering::SeqCst)
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Marks the engine stopped after a fatal error; later writes fail with `Error::Stopped`.
    fn stop(&self, why: &str) {
        let mut r = self.stop_reason.lock();
        if !self.stopped.swap(true, Ordering::SeqCst) {
            tracing::error!(reason = why, "storage engine stopped");
            *r = why.to_string();
        }
        drop(r);
        self.notify_bg();
    }

    fn check_stopped(&self) -> Result<()> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(Error::Stopped(self.stop_reason.lock().clone()));
        }
        Ok(())
    }

    fn notify_bg(&self) {
        let _g = self.bg_lock.lock();
        self.bg_cv.notify_all();
    }

    /// The state and a read sequence number that is consistent with it.
    fn read_view(&self) -> (Arc<State>, u64) {
        loop {
            let e1 = self.compaction_epoch.load(Ordering::SeqCst);
            let seq = self.visible_seq.load(Ordering::SeqCst);
            let st = self.state.load_full();
            if self.compaction_epoch.load(Ordering::SeqCst) == e1 {
                return (st, seq);
            }
        }
    }

    fn get_in(&self, st: &State, user: &[u8], snap: u64) -> Result<Option<Bytes>> {
        let lk = key::LookupKey::new(user, snap);
        let h = bloom::hash(user);
        let mut tomb = 0;
        for m in std::iter::once(&st.mem).chain(st.imms.iter()) {
            tomb = tomb.max(m.max_tomb_seq(user, snap));
            if let Some(r) = resolve(m.get_lk(&lk, h), tomb) {
                return Ok(r);
            }
        }
        Ok(st.version.get(&lk, h, &mut tomb)?.flatten())
    }

    fn scan_in(&self, st: Arc<State>, snap: u64, range: KeyRange) -> DbIter {
        Box::new(self.user_iter(st, snap, range))
    }

    fn user_iter(&self, st: Arc<State>, snap: u64, range: KeyRange) -> UserIter {
        let mut sources: Vec<Box<dyn InternalIterator>> = Vec::new();
        let mut tombs = Vec::new();
        for m in std::iter::once(&st.mem).chain(st.imms.iter()) {
            if !m.is_empty() {
                let end = range.1.as_ref().map(|e| &e[..]);
                sources.push(Box::new(MemIter::bounded(m.clone(), end)));
            }
            tombs.extend(m.range_tombstones());
        }
        st.version.iterators(&range, &mut sources);
        st.version.range_tombstones(&mut tombs);
        UserIter::new(MergeIter::new(sources), snap, tombs, range, Box::new(st))
    }

    fn stats(&self) -> Stats {
        let st = self.state.load_full();
        let c = &self.counters;
        Stats {
            levels: st
                .version
                .levels
                .iter()
                .map(|l| LevelStats {
                    files: l.len(),
                    bytes: l.iter().map(|h| h.meta.size).sum(),
                })
                .collect(),
            memtable_bytes: std::iter::once(&st.mem)
                .chain(st.imms.iter())
                .map(|m| m.approx_size() as u64)
                .sum(),
            immutable_memtables: st.imms.len(),
            user_bytes_written: Counters::get(&c.user_bytes),
            wal_bytes_written: Counters::get(&c.wal_bytes),
            flush_bytes_written: Counters::get(&c.flush_bytes),
            compaction_bytes_written: Counters::get(&c.compaction_bytes),
            bloom_negatives: Counters::get(&c.bloom_negatives),
            bloom_false_positives: Counters::get(&c.bloom_false_positives),
            block_cache_hits: Counters::get(&c.cache_hits),
            block_cache_misses: Counters::get(&c.cache_misses),
            write_stalls: Counters::get(&c.write_stalls),
            write_refused: self.write_refused.load(Ordering::Relaxed),
            last_seq: self.visible_seq.load(Ordering::SeqCst),
            wal_live_bytes: std::iter::once(&st.mem)
                .chain(st.imms.iter())
                .filter_map(|m| {
                    let path = self.path_of(&crate::wal::segment_name(m.wal_id));
                    self.opts.vfs.open(&path).ok().map(|f| f.len())
                })
                .sum(),
            compaction_debt_bytes: crate::compact::controller::debt(
                &crate::compact::controller::ControllerOptions::from_options(&self.opts),
                &st.version
                    .levels
                    .iter()
                    .map(|l| (l.len(), l.iter().map(|h| h.meta.size).sum()))
                    .collect::<Vec<_>>(),
            ),
        }
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        let vfs = &*self.opts.vfs;
        if vfs.exists(&dir.join("CURRENT")) {
            return Err(Error::InvalidArgument(format!(
                "checkpoint directory {} already holds a database",
                dir.display()
            )));
        }
        vfs.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        // Under `structure` the version and the manifest state describe the same files.
        let s = self.structure.lock();
        let st = self.state.load_full();
        for l in &st.version.levels {
            for h in l {
                let name = table_name(h.meta.id);
                let (from, to) = (self.path_of(&name), dir.join(&name));
                vfs.hard_link(&from, &to).map_err(|e| Error::io(&to, e))?;
            }
        }
        let mut meta = s.meta.clone();
        meta.log_number = 0;
        let id = self.alloc_file();
        meta.next_file = meta.next_file.max(id + 1);
        drop(s);
        ManifestWriter::create(vfs, dir, id, &meta)?;
        Ok(())
    }
}

impl Engine for Lsm {
    fn open(dir: &Path, opts: Options) -> Result<Self> {
        open::open(dir, opts)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        // Same protocol as `read_view`, with a cheap arc-swap guard instead of an Arc clone
        // (no shared reference count to bounce between reader threads).
        let inner = &self.inner;
        loop {
            let e1 = inner.compaction_epoch.load(Ordering::SeqCst);
            let seq = inner.visible_seq.load(Ordering::SeqCst);
            let st = inner.state.load();
            if inner.compaction_epoch.load(Ordering::SeqCst) == e1 {
                return inner.get_in(&st, key, seq);
            }
        }
    }

    fn get_at(&self, key: &[u8], snap: &Snapshot) -> Result<Option<Bytes>> {
        let st = self.inner.state.load();
        self.inner.get_in(&st, key, snap.seq().min(MAX_SEQ))
    }

    fn write(&self, batch: WriteBatch) -> Result<u64> {
        self.inner.write(batch)
    }

    fn write_deferred(&self, batch: WriteBatch) -> Result<u64> {
        self.inner.write_deferred(batch)
    }

    fn sync_to(&self, seq: u64) -> Result<()> {
        self.inner.sync_to(seq)
    }

    fn visible_seq(&self) -> u64 {
        self.inner.visible_seq.load(Ordering::Acquire)
    }

    fn snapshot(&self) -> Snapshot {
        let list = self.inner.snapshots.clone();
        let mut m = list.seqs.lock();
        let seq = self.inner.visible_seq.load(Ordering::SeqCst);
        *m.entry(seq).or_insert(0) += 1;
        drop(m);
        Snapshot::new(seq, Arc::new(SnapGuard { list, seq }))
    }

    fn scan(&self, range: KeyRange, snap: Option<&Snapshot>) -> Result<DbIter> {
        let (st, seq) = match snap {
            Some(s) => (self.inner.state.load_full(), s.seq().min(MAX_SEQ)),
            None => self.inner.read_view(),
        };
        Ok(self.inner.scan_in(st, seq, range))
    }

    fn scan_values(&self, range: KeyRange, snap: Option<&Snapshot>) -> Result<DbIter> {
        let (st, seq) = match snap {
            Some(s) => (self.inner.state.load_full(), s.seq().min(MAX_SEQ)),
            None => self.inner.read_view(),
        };
        Ok(Box::new(self.inner.user_iter(st, seq, range).values_only()))
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush_all()
    }

    fn compact_range(&self, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<()> {
        self.inner.compact_range(start, end)
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        self.inner.flush_all()?;
        self.inner.checkpoint(dir)
    }

    fn stats(&self) -> Stats {
        self.inner.stats()
    }

    fn has_space(&self) -> bool {
        self.inner.probe_space()
    }

    fn wait_for_space(&self, on: bool) {
        self.inner.wait_for_space.store(on, Ordering::Relaxed);
    }
}

impl Lsm {
    /// Opens (or creates) an engine in `dir` (same as [`Engine::open`]).
    pub fn open(dir: &Path, opts: Options) -> Result<Lsm> {
        open::open(dir, opts)
    }
}

impl Drop for Lsm {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        self.inner.notify_bg();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        // A clean close makes the WAL durable even under relaxed sync policies.
        if !self.inner.stopped.load(Ordering::Acquire) {
            let mut io = self.inner.wal_io.lock();
            let buf = std::mem::take(&mut self.inner.writer.lock().pending);
            if !buf.is_empty() {
                if let Err(e) = io.wal.append(&buf) {
                    tracing::warn!(error = %e, "final WAL append failed");
                    return;
                }
                io.dirty = true;
            }
            if io.dirty {
                if let Err(e) = io.wal.sync() {
                    tracing::warn!(error = %e, "final WAL sync failed");
                }
                io.dirty = false;
            }
        }
    }
}

#[cfg(test)]
mod tests;
