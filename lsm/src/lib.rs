//! `pinnacle-lsm`: Pinnacle's storage engine.
//!
//! One [`Engine`] trait with two implementations: [`Lsm`] (WAL, skiplist memtable,
//! SSTables, leveled compaction, manifest) and [`MemEngine`], a `BTreeMap` reference model
//! that the conformance and property tests compare the LSM against.
//!
//! Layout of the LSM: `key` (internal keys: user key + sequence number + kind), `wal`
//! (batch records, segments), `memtable` (B-tree + newest-version hash index + range tombstones),
//! `sstable` (blocks, builder, reader, bloom filters, block cache), `iterators` (heap merge,
//! snapshot-aware user iterator), `version` (the pinned table set per level), `manifest`
//! (version edits, `CURRENT`), `compact` (the pure controller and the merge executor) and
//! `db` (the engine: write path with group commit, reads, background flush and compaction,
//! recovery). Every file access goes through the [`Vfs`] in [`Options`].

mod batch;
mod coding;
pub mod compact;
mod counters;
mod db;
mod error;
mod iterators;
mod key;
mod leafmap;
mod manifest;
mod mem_engine;
mod memtable;
mod options;
pub mod sim_fs;
mod space;
mod sstable;
mod version;
pub mod vfs;
mod wal;

pub use batch::{BatchOp, WriteBatch};
pub use db::Lsm;
pub use error::{is_no_space, Error, Result};
pub use mem_engine::MemEngine;
pub use options::{CompactionFilter, FilterDecision, Options, SyncPolicy};
pub use sim_fs::{SimFs, SimOp};
pub use vfs::{RandomAccessFile, RealFs, Vfs, WritableFile};

use bytes::Bytes;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

/// A key range with owned bounds, as accepted by [`Engine::scan`].
pub type KeyRange = (Bound<Bytes>, Bound<Bytes>);

/// An ordered iterator over `(key, value)` pairs; yields an error and stops on corruption.
pub type DbIter = Box<dyn Iterator<Item = Result<(Bytes, Bytes)>> + Send>;

/// A consistent point-in-time view: reads at it ignore every later write.
///
/// While a snapshot is alive, compaction keeps every version it can see.
#[derive(Clone)]
pub struct Snapshot {
    seq: u64,
    // Keeps the snapshot registered with its engine until the last clone is dropped.
    _guard: Arc<dyn Send + Sync>,
}

impl Snapshot {
    /// Builds a snapshot at `seq`; `guard` unregisters it from its engine when dropped.
    pub fn new(seq: u64, guard: Arc<dyn Send + Sync>) -> Self {
        Snapshot { seq, _guard: guard }
    }
    /// The highest sequence number visible through this snapshot.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("seq", &self.seq).finish()
    }
}

/// Per-level file counts and sizes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Number of SSTables in the level.
    pub files: usize,
    /// Total bytes of those SSTables.
    pub bytes: u64,
}

/// Engine counters, as reported by [`Engine::stats`].
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// One entry per level, L0 first.
    pub levels: Vec<LevelStats>,
    /// Bytes in the active and immutable memtables.
    pub memtable_bytes: u64,
    /// Number of immutable memtables waiting to be flushed.
    pub immutable_memtables: usize,
    /// Bytes of user data accepted by `write` (keys + values), the denominator of write amplification.
    pub user_bytes_written: u64,
    /// Bytes appended to the WAL.
    pub wal_bytes_written: u64,
    /// Bytes of SSTables written by memtable flushes.
    pub flush_bytes_written: u64,
    /// Bytes of SSTables written by compactions.
    pub compaction_bytes_written: u64,
    /// Point lookups answered "absent" by a bloom filter without reading a block.
    pub bloom_negatives: u64,
    /// Point lookups a bloom filter let through but the table did not hold the key.
    pub bloom_false_positives: u64,
    /// Block cache hits.
    pub block_cache_hits: u64,
    /// Block cache misses.
    pub block_cache_misses: u64,
    /// Times a writer was slowed or paused by a write stall.
    pub write_stalls: u64,
    /// True while writes are refused because the disk is full (the last write attempt was
    /// refused; the next one that fits clears it).
    pub write_refused: bool,
    /// Last sequence number assigned.
    pub last_seq: u64,
    /// Bytes in the WAL segments not yet flushed (what a restart would replay).
    pub wal_live_bytes: u64,
    /// Bytes compaction still has to move down to bring every level within its target.
    pub compaction_debt_bytes: u64,
}

impl Stats {
    /// (flush + compaction bytes) / user bytes; 0 when nothing was written.
    pub fn write_amplification(&self) -> f64 {
        if self.user_bytes_written == 0 {
            return 0.0;
        }
        (self.flush_bytes_written + self.compaction_bytes_written) as f64
            / self.user_bytes_written as f64
    }
    /// Total bytes in SSTables.
    pub fn sst_bytes(&self) -> u64 {
        self.levels.iter().map(|l| l.bytes).sum()
    }
}

/// The storage seam: everything above the LSM talks to this trait.
pub trait Engine: Send + Sync {
    /// Opens (or creates) an engine in `dir`.
    fn open(dir: &Path, opts: Options) -> Result<Self>
    where
        Self: Sized;
    /// Latest value of `key`, or `None` if absent or deleted.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;
    /// Value of `key` as of `snap`.
    fn get_at(&self, key: &[u8], snap: &Snapshot) -> Result<Option<Bytes>>;
    /// Applies every operation of `batch` atomically (all or nothing, also across a crash);
    /// returns the sequence number of the batch's last operation.
    fn write(&self, batch: WriteBatch) -> Result<u64>;
    /// Applies `batch` (visible to readers at once) but leaves its WAL record buffered in
    /// memory; returns the batch's last sequence number. Durable only after
    /// [`Engine::sync_to`] of that number returns `Ok`.
    fn write_deferred(&self, batch: WriteBatch) -> Result<u64> {
        self.write(batch)
    }
    /// Makes every write up to `seq` durable per the sync policy (one WAL append, and one
    /// fsync under `SyncPolicy::Always`, shared by concurrent callers).
    fn sync_to(&self, seq: u64) -> Result<()> {
        let _ = seq;
        Ok(())
    }
    /// The sequence number of the last write visible to readers, durable or not (0 for an
    /// engine whose writes are durable once visible).
    fn visible_seq(&self) -> u64 {
        0
    }
    /// A consistent view of the current state.
    fn snapshot(&self) -> Snapshot;
    /// Ordered iteration over `range`, at `snap` or (if `None`) at a fresh snapshot.
    fn scan(&self, range: KeyRange, snap: Option<&Snapshot>) -> Result<DbIter>;
    /// Like [`Engine::scan`] for a caller that wants only the values: the yielded keys may be
    /// empty (the engine then skips copying each key out).
    fn scan_values(&self, range: KeyRange, snap: Option<&Snapshot>) -> Result<DbIter> {
        self.scan(range, snap)
    }
    /// Writes every memtable to SSTables and waits until that is durable.
    fn flush(&self) -> Result<()>;
    /// Compacts every file overlapping `[start, end)` (`None` = unbounded) down the levels.
    fn compact_range(&self, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<()>;
    /// Writes a consistent, openable copy of the engine into the new directory `dir`.
    fn checkpoint(&self, dir: &Path) -> Result<()>;
    /// Current counters.
    fn stats(&self) -> Stats;
    /// False while writes are refused for lack of disk space and a fresh attempt to reserve
    /// room for one still fails (how a caller refuses writes up front, and learns that space
    /// returned without writing).
    fn has_space(&self) -> bool {
        true
    }
    /// With `on`, a write that finds the disk full waits until space returns instead of
    /// being refused (still `has_space() == false` meanwhile): a Raft replica's apply must
    /// not skip a committed entry. Engines that never run out of space ignore it.
    fn wait_for_space(&self, on: bool) {
        let _ = on;
    }
}
