//! Engine options and the compaction filter hook.

use std::sync::Arc;

/// When the WAL is fsynced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fsync before `write` returns (concurrent writers share one fsync).
    Always,
    /// fsync from a background thread at most this many milliseconds after a write.
    EveryMillis(u64),
    /// Never fsync the WAL (the OS flushes when it likes).
    Never,
}

/// What a [`CompactionFilter`] decides for one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterDecision {
    /// Keep the record.
    Keep,
    /// Drop the record (as if it had been deleted).
    Remove,
}

/// Lets the layer above drop records during compaction (expired keys, stale collection versions).
///
/// Only the newest version of a key that no live snapshot can see below is offered, so removing
/// it never changes what a snapshot reads.
pub trait CompactionFilter: Send + Sync {
    /// Decides whether to keep `key` → `value`.
    fn filter(&self, level: usize, key: &[u8], value: &[u8]) -> FilterDecision;

    /// Called once a compaction's inputs are fixed, before its first [`Self::filter`] call:
    /// every record it will see was written before this call.
    fn begin_compaction(&self) {}
}

/// Engine tuning.
#[derive(Clone)]
pub struct Options {
    /// WAL fsync policy.
    pub sync: SyncPolicy,
    /// Size at which the active memtable is frozen and flushed (default 64 MiB).
    pub memtable_size: usize,
    /// Target data block size (default 4 KiB).
    pub block_size: usize,
    /// Keys between restart points inside a block (default 16).
    pub block_restart_interval: usize,
    /// Bloom filter false-positive rate (default 0.01).
    pub bloom_fp_rate: f64,
    /// Block cache capacity in bytes (default 64 MiB).
    pub block_cache_size: usize,
    /// Number of L0 files that triggers an L0→L1 compaction (default 4).
    pub l0_compaction_trigger: usize,
    /// L0 files at which writers are slowed (default 12).
    pub l0_slowdown_trigger: usize,
    /// L0 files at which writers wait for compaction (default 20).
    pub l0_stop_trigger: usize,
    /// Immutable memtables at which writers wait for a flush (default 4).
    pub max_immutable_memtables: usize,
    /// Target size of L1; level L targets base × ratio^(L-1) (default 64 MiB).
    pub level_base_bytes: u64,
    /// Size ratio between adjacent levels (default 10).
    pub level_size_ratio: u64,
    /// Number of levels (default 7).
    pub max_levels: usize,
    /// Target SSTable size for compaction outputs (default 32 MiB).
    pub target_file_size: u64,
    /// Run flushes and compactions on background threads (default true). When false they run
    /// only inside `flush`/`compact_range` calls, which makes tests deterministic.
    pub background_work: bool,
    /// Optional compaction filter.
    pub compaction_filter: Option<Arc<dyn CompactionFilter>>,
    /// The file system the engine stores through (the OS by default; a simulated one in crash tests).
    pub vfs: Arc<dyn crate::Vfs>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncPolicy::EveryMillis(1000),
            memtable_size: 64 << 20,
            block_size: 4096,
            block_restart_interval: 16,
            bloom_fp_rate: 0.01,
            block_cache_size: 64 << 20,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 12,
            l0_stop_trigger: 20,
            max_immutable_memtables: 4,
            level_base_bytes: 64 << 20,
            level_size_ratio: 10,
            max_levels: 7,
            target_file_size: 32 << 20,
            background_work: true,
            compaction_filter: None,
            vfs: Arc::new(crate::RealFs),
        }
    }
}

impl Options {
    /// Small sizes so tests exercise flushes and compactions with little data.
    pub fn small_for_tests() -> Self {
        Options {
            sync: SyncPolicy::Never,
            memtable_size: 16 << 10,
            block_size: 512,
            block_cache_size: 256 << 10,
            level_base_bytes: 64 << 10,
            target_file_size: 32 << 10,
            ..Options::default()
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("sync", &self.sync)
            .field("memtable_size", &self.memtable_size)
            .field("block_size", &self.block_size)
            .field("block_cache_size", &self.block_cache_size)
            .field("level_base_bytes", &self.level_base_bytes)
            .field("background_work", &self.background_work)
            .field("compaction_filter", &self.compaction_filter.is_some())
            .finish()
    }
}
