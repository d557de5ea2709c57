//! The keyspace on the LSM: key encoding, metadata records, logical write commands, expiry.
//!
//! Commands talk to storage through two doors only: reads ([`Db::get`], [`Db::view`], scans)
//! and [`Db::apply`] of a logical [`WriteCommand`]. Replication (Raft) goes behind `apply`
//! later without touching command code: the leader proposes the command, every replica applies
//! it, and the client's reply is what applying returned.

pub mod apply;
mod coll;
pub mod deferred;
pub mod dump;
pub mod encoding;
pub mod expire;
pub mod glob;
pub mod hash;
pub mod list;
pub mod lru;
pub mod num;
mod raft_target;
pub mod run;
pub mod shard_ctl;
pub use raft_target::encode_proposal as raft_target_proposal;
pub mod reply_codec;
mod scan;
pub mod set;
pub mod slot;
pub mod stream;
pub mod tx_read;
mod tx_scan;
pub mod write;
pub mod zset;
pub mod zset_ops;

pub use coll::BIG;
pub use encoding::{KeyType, Meta, StrEnc};
pub use scan::random_u64;
pub use scan::ScanPage;
pub use write::{ExpireCond, ExpireSpec, SetCond, SetOpKind, WriteCommand, WriteOp};

use bytes::Bytes;
use parking_lot::Mutex;
use pinnacle_lsm::{Engine, Lsm, MemEngine, Options, Snapshot, SyncPolicy};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Memtable size the keyspace runs with.
const MEMTABLE_BYTES: usize = 16 << 20;
/// Block cache size the keyspace runs with.
const BLOCK_CACHE_BYTES: usize = 16 << 20;

/// Access-time slots (2^18 × 4 bytes = 1 MiB) of a served keyspace.
const LRU_BITS: u32 = 18;
/// Access-time slots of an in-memory test keyspace.
const TEST_LRU_BITS: u32 = 10;

/// Largest string value (Redis's default `proto-max-bulk-len`, 512 MB).
pub const MAX_STRING_LEN: u64 = 512 * 1024 * 1024;

/// Storage failures (the engine's, or records that do not decode).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The engine failed.
    #[error("storage engine: {0}")]
    Engine(#[from] pinnacle_lsm::Error),
    /// A stored record did not decode.
    #[error("corrupt record: {0}")]
    Corrupt(&'static str),
}

/// Result alias for storage calls.
pub type Result<T> = std::result::Result<T, StorageError>;

/// Node-state record holding an upper bound of the apply clock and the next collection version.
const APPLIED_STATE: &[u8] = b"applied";

/// How far ahead of the apply clock the persisted bound is written, so the state record is
/// rewritten at most every this many ms of leader time instead of on every write.
const CLOCK_SLACK_MS: u64 = 100;

/// State owned by the single applier.
struct ApplyState {
    /// Highest leader time applied so far; apply never runs "before" it.
    clock: u64,
    /// Next collection version to hand out (becomes the Raft log index later).
    next_version: u64,
    /// The clock bound last persisted (always >= `clock`).
    persisted_clock: u64,
    /// The `next_version` last persisted.
    persisted_version: u64,
}

impl ApplyState {
    fn new(clock: u64, next_version: u64) -> ApplyState {
        ApplyState {
            clock,
            next_version,
            persisted_clock: clock,
            persisted_version: next_version,
        }
    }
}

pub(crate) struct DbInner {
    engine: Arc<dyn Engine>,
    /// Serialises read-modify-write application of logical commands.
    apply: Mutex<ApplyState>,
    /// Mirror of `ApplyState::clock` for readers and the compaction filter.
    clock: Arc<AtomicU64>,
    scan: scan::CursorTable,
    /// Keys deleted because they expired (lazily on write access or by the sweep).
    expired: AtomicU64,
    /// Approximate last-access times (OBJECT IDLETIME).
    lru: lru::AccessClock,
    /// Highest engine sequence number written by apply (what a snapshot must make durable).
    last_seq: AtomicU64,
    /// Set on a Raft node: `apply` defers writes, and this proposes those made off a
    /// connection (the expiry sweeper) without waiting.
    replicated: OnceLock<BackgroundProposer>,
    /// Told the keys a write filled ([`WriteOp::filled_keys`]) once the write is visible.
    write_listener: OnceLock<WriteListener>,
    /// Bumped for every slot a write touches, and `flushes` for keyspace-wide deletes: WATCH
    /// compares them (slot granularity: a write to another key of the same slot also counts).
    slot_versions: Box<[AtomicU64]>,
    flushes: AtomicU64,
    /// Raft apply progress `(log index, command within the entry)` of the last applied write,
    /// stored with that write's batch: a replayed entry skips what it already applied.
    raft_progress: Mutex<(u64, u32)>,
    /// Slots whose client writes this shard refuses (slot migration; see [`shard_ctl`]).
    fences: shard_ctl::Fences,
    /// `engine`'s id for [`tx_read`] overlays.
    engine_id: usize,
    /// Runs the reads of a transaction at apply time (Raft mode; see [`tx_read`]).
    tx_reader: OnceLock<tx_read::TxReader>,
}

/// Called with the keys a visible write filled (wakes blocked clients).
pub type WriteListener = Box<dyn Fn(&[Bytes]) + Send + Sync>;

/// Proposes an encoded `WriteCommand` without waiting for its outcome.
pub type BackgroundProposer = Box<dyn Fn(Bytes) + Send + Sync>;

/// The node's keyspace. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct Db {
    inner: Arc<DbInner>,
}

/// Current time in Unix milliseconds, on the cluster's clock: this node's wall clock plus the
/// correction its cluster-bus peers' clocks suggest (none on a single node). Expiry follows
/// the leader's time, so a leader whose clock runs ahead must not expire keys early (T12).
///
/// While a command runs this is the time it started at, as Redis 7.2's command time snapshot:
/// every expiry check and timestamp of one command agrees, and the clock is read once per
/// command instead of at each use (three `clock_gettime` calls per GET were 8 % of its CPU).
pub fn wall_ms() -> u64 {
    match COMMAND_MS.get() {
        0 => pinnacle_raft::clock::cluster_wall_ms(),
        ms => ms,
    }
}

thread_local! {
    // The running command's start time on the cluster's clock; 0 while none runs.
    static COMMAND_MS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Fixes [`wall_ms`] on this thread to a command's start time until dropped (restoring the
/// enclosing command's, for the commands EXEC runs).
pub struct CommandTime {
    prev: u64,
}

impl CommandTime {
    /// Starts a command that read this node's wall clock at `started`.
    pub fn enter(started: std::time::SystemTime) -> CommandTime {
        // 0 means "no command": a clock before 1970 reads the clock at each use instead.
        let ms = pinnacle_raft::clock::cluster_ms_at(started);
        CommandTime {
            prev: COMMAND_MS.replace(ms),
        }
    }
}

impl Drop for CommandTime {
    fn drop(&mut self) {
        COMMAND_MS.set(self.prev);
    }
}

impl Db {
    /// Opens (or creates) the keyspace stored in `dir`, fsyncing the WAL per `sync`
    /// (`--appendfsync always` → `SyncPolicy::Always`, `everysec` → `SyncPolicy::EveryMillis(1000)`,
    /// `no` → `SyncPolicy::Never`), and starts the active-expiry sweeper thread, which stops
    /// when the last handle to the `Db` is dropped.
    ///
    /// Signature for main.rs: `Db::open(dir: &Path, sync: SyncPolicy) -> storage::Result<Db>`.
    pub fn open(dir: &Path, sync: SyncPolicy) -> Result<Db> {
        let clock = Arc::new(AtomicU64::new(0));
        let filter = Arc::new(expire::ExpiryFilter::new(clock.clone()));
        let opts = Options {
            sync,
            compaction_filter: Some(filter.clone()),
            // Smaller than the engine defaults: resident memory is a target (at most half of
            // redis-server's for the same data), and a smaller skiplist is also faster to search.
            memtable_size: MEMTABLE_BYTES,
            max_immutable_memtables: 2,
            block_cache_size: BLOCK_CACHE_BYTES,
            ..Options::default()
        };
        let engine: Arc<dyn Engine> = Arc::new(Lsm::open(dir, opts)?);
        filter.attach(Arc::downgrade(&engine));
        let db = Db::with_engine(engine, clock)?;
        expire::start_sweeper(Arc::downgrade(&db.inner));
        Ok(db)
    }

    /// A fresh keyspace in memory (tests); no background sweeper.
    pub fn in_memory() -> Db {
        let engine: Arc<dyn Engine> = Arc::new(MemEngine::in_memory());
        Db::from_parts(
            engine,
            Arc::new(AtomicU64::new(0)),
            ApplyState::new(0, 1),
            TEST_LRU_BITS,
        )
    }

    /// Wraps an opened engine; `clock` is the one its compaction filter reads.
    pub fn with_engine(engine: Arc<dyn Engine>, clock: Arc<AtomicU64>) -> Result<Db> {
        let key = encoding::system_key(APPLIED_STATE);
        // The stored clock is an upper bound of the last applied time: starting from it keeps
        // the apply clock monotonic across restarts.
        let state = match engine.get(&key)? {
            Some(raw) if raw.len() == 16 => ApplyState::new(
                u64::from_be_bytes(raw[0..8].try_into().unwrap_or([0; 8])),
                u64::from_be_bytes(raw[8..16].try_into().unwrap_or([0; 8])),
            ),
            Some(_) => return Err(StorageError::Corrupt("apply state")),
            None => ApplyState::new(0, 1),
        };
        clock.store(state.clock, Ordering::Release);
        Ok(Db::from_parts(engine, clock, state, LRU_BITS))
    }

    fn from_parts(
        engine: Arc<dyn Engine>,
        clock: Arc<AtomicU64>,
        state: ApplyState,
        lru_bits: u32,
    ) -> Db {
        let (engine, engine_id) = tx_read::OverlayEngine::wrap(engine);
        Db {
            inner: Arc::new(DbInner {
                engine,
                apply: Mutex::new(state),
                clock,
                scan: scan::CursorTable::default(),
                expired: AtomicU64::new(0),
                lru: lru::AccessClock::new(wall_ms(), lru_bits),
                last_seq: AtomicU64::new(0),
                replicated: OnceLock::new(),
                write_listener: OnceLock::new(),
                slot_versions: (0..slot::SLOTS).map(|_| AtomicU64::new(0)).collect(),
                flushes: AtomicU64::new(0),
                raft_progress: Mutex::new((0, 0)),
                fences: shard_ctl::Fences::default(),
                engine_id,
                tx_reader: OnceLock::new(),
            }),
        }
    }

    pub(crate) fn from_inner(inner: Arc<DbInner>) -> Db {
        Db { inner }
    }

    /// What WATCH remembers about `key`'s slot: compare with a later call to see whether a
    /// write may have touched the key since.
    pub fn watch_version(&self, key: &[u8]) -> (u64, u64) {
        let slot = slot::key_slot(key) as usize;
        (
            self.inner.flushes.load(Ordering::Acquire),
            self.inner.slot_versions[slot].load(Ordering::Acquire),
        )
    }

    /// Records that `batch` was written: bumps the version of every slot it touches.
    pub(crate) fn note_written(&self, batch: &pinnacle_lsm::WriteBatch) {
        use pinnacle_lsm::BatchOp;
        let mut last = usize::MAX;
        for op in batch.ops() {
            let key = match op {
                BatchOp::Put(k, _) | BatchOp::Delete(k) => k,
                BatchOp::DeleteRange(..) => {
                    self.inner.flushes.fetch_add(1, Ordering::AcqRel);
                    continue;
                }
            };
            // Keyspace records start with their slot; node-state records don't.
            if key.len() >= 2 && key[0] < 0x40 {
                let slot = u16::from_be_bytes([key[0], key[1]]) as usize;
                if slot != last && slot < self.inner.slot_versions.len() {
                    self.inner.slot_versions[slot].fetch_add(1, Ordering::AcqRel);
                    last = slot;
                }
            }
        }
    }

    /// Installs the listener told about keys that writes filled (once; later calls are ignored).
    pub fn set_write_listener(&self, l: WriteListener) {
        let _ = self.inner.write_listener.set(l);
    }

    /// Tells the listener about the keys `op` filled; call once its write is visible.
    pub(crate) fn notify_filled(&self, op: &WriteOp) {
        let keys = op.filled_keys();
        if keys.is_empty() {
            return;
        }
        if let Some(l) = self.inner.write_listener.get() {
            l(keys);
        }
    }

    /// Number of keys removed because they expired (INFO stats `expired_keys`).
    pub fn expired_keys(&self) -> u64 {
        self.inner.expired.load(Ordering::Relaxed)
    }

    /// The storage engine (for INFO and stats).
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.inner.engine
    }

    /// The time a leader stamps into a new command, and the clock reads use for lazy expiry:
    /// wall-clock ms, never below the last applied leader time.
    pub fn now_ms(&self) -> u64 {
        wall_ms().max(self.inner.clock.load(Ordering::Acquire))
    }

    /// The live metadata (with a string's value) of `key` at time `now`; expired keys are
    /// absent. Counts as an access (`lookupKeyRead`).
    pub fn get(&self, key: &[u8], now: u64) -> Result<Option<Meta>> {
        let found = self.peek(key, now)?;
        if found.is_some() {
            self.inner.lru.touch(key, now);
        }
        Ok(found)
    }

    /// Like [`Db::get`] without counting as an access (`LOOKUP_NOTOUCH`: TTL, TYPE, OBJECT).
    pub fn peek(&self, key: &[u8], now: u64) -> Result<Option<Meta>> {
        let raw = self.inner.engine.get(&encoding::meta_key(key))?;
        decode_live(raw, now)
    }

    /// Seconds since `key` was last read or written (approximate; OBJECT IDLETIME).
    pub fn idle_secs(&self, key: &[u8], now: u64) -> u64 {
        self.inner.lru.idle_secs(key, now)
    }

    /// Marks `key` as last accessed `idle_secs` ago (RESTORE ... IDLETIME).
    pub fn set_idle(&self, key: &[u8], now: u64, idle_secs: u64) {
        self.inner.lru.set_idle(key, now, idle_secs);
    }

    /// False while the disk is full and writes are refused (probes for returned space).
    pub fn has_space(&self) -> bool {
        self.inner.engine.has_space()
    }

    /// Keeps replicated entries from being applied while the guard lives: reads made under
    /// it see one state between two applies (a read-only `EXEC` on a Raft node).
    pub fn hold_applies(&self) -> parking_lot::MutexGuard<'_, (u64, u32)> {
        self.inner.raft_progress.lock()
    }

    /// A consistent read view at the current state (multi-key reads).
    pub fn view(&self) -> ReadView<'_> {
        ReadView {
            db: self,
            snap: self.inner.engine.snapshot(),
            now: self.now_ms(),
        }
    }

    /// Number of live keys and of live keys with an expiry (INFO keyspace; exact, scans).
    pub fn key_counts(&self) -> Result<(u64, u64)> {
        let now = self.now_ms();
        let mut keys = 0;
        let mut expires = 0;
        self.for_each_meta(
            encoding::keyspace_start(),
            encoding::keyspace_end(),
            |_, _, raw| {
                if let Some(at) = encoding::raw_expire_at(raw) {
                    if at == 0 {
                        keys += 1;
                    } else if at > now {
                        keys += 1;
                        expires += 1;
                    }
                }
                true
            },
        )?;
        Ok((keys, expires))
    }

    /// Number of live keys (DBSIZE). Exact: scans the metadata records and skips expired ones.
    pub fn dbsize(&self) -> Result<u64> {
        Ok(self.key_counts()?.0)
    }

    /// Live keys in hash slot `slot` (CLUSTER COUNTKEYSINSLOT).
    pub fn count_keys_in_slot(&self, slot: u16) -> Result<u64> {
        let now = self.now_ms();
        let mut n = 0;
        self.for_each_meta(
            encoding::slot_meta_start(slot),
            encoding::slot_meta_end(slot),
            |_, _, raw| {
                if live_raw(raw, now) {
                    n += 1;
                }
                true
            },
        )?;
        Ok(n)
    }

    /// Up to `count` live keys of hash slot `slot`, in key order (CLUSTER GETKEYSINSLOT).
    pub fn keys_in_slot(&self, slot: u16, count: usize) -> Result<Vec<Bytes>> {
        let now = self.now_ms();
        let mut out = Vec::new();
        if count == 0 {
            return Ok(out);
        }
        self.for_each_meta(
            encoding::slot_meta_start(slot),
            encoding::slot_meta_end(slot),
            |lsm_key, _, raw| {
                if live_raw(raw, now) {
                    out.push(lsm_key.slice(3..));
                }
                out.len() < count
            },
        )?;
        Ok(out)
    }

    /// Approximate bytes `key` occupies (MEMORY USAGE): its records plus per-record overhead.
    pub fn memory_usage(&self, key: &[u8]) -> Result<Option<u64>> {
        // Per-record cost of the memtable/SSTable entry (skiplist node, sequence, lengths).
        const RECORD_OVERHEAD: u64 = 48;
        let now = self.now_ms();
        let mk = encoding::meta_key(key);
        let raw = self.inner.engine.get(&mk)?;
        let Some(raw) = raw.filter(|raw| live_raw(raw, now)) else {
            return Ok(None);
        };
        let mut total = mk.len() as u64 + raw.len() as u64 + RECORD_OVERHEAD;
        if let Some(m) = Meta::decode(&raw).filter(|m| m.kind != KeyType::String) {
            // Every element's sub-key (and, for sorted sets, its score-index record).
            let per_elem = if m.kind == KeyType::ZSet { 2 } else { 1 };
            let prefix = encoding::sub_prefix(key, m.version).len() as u64;
            for (f, v) in self.view().sub_all(key, &m)? {
                total += per_elem * (prefix + f.len() as u64 + RECORD_OVERHEAD) + v.len() as u64;
            }
        }
        Ok(Some(total))
    }

    /// Calls `f(lsm_key, slot, raw_meta)` for every metadata record in `[start, end)`, stopping
    /// when `f` returns false.
    pub(crate) fn for_each_meta(
        &self,
        start: Bytes,
        end: Bytes,
        mut f: impl FnMut(&Bytes, u16, &Bytes) -> bool,
    ) -> Result<()> {
        let iter = self
            .inner
            .engine
            .scan((Bound::Included(start), Bound::Excluded(end)), None)?;
        for item in iter {
            let (k, v) = item?;
            let Some((slot, _)) = encoding::decode_meta_key(&k) else {
                continue;
            };
            if !f(&k, slot, &v) {
                break;
            }
        }
        Ok(())
    }
}

/// True when a raw metadata record is live at `now`.
fn live_raw(raw: &[u8], now: u64) -> bool {
    matches!(encoding::raw_expire_at(raw), Some(at) if at == 0 || at > now)
}

fn decode_live(raw: Option<Bytes>, now: u64) -> Result<Option<Meta>> {
    match raw {
        None => Ok(None),
        Some(raw) => {
            let meta = Meta::decode(&raw).ok_or(StorageError::Corrupt("metadata record"))?;
            Ok(if meta.is_expired(now) {
                None
            } else {
                Some(meta)
            })
        }
    }
}

/// Reads at one snapshot and one time, so a multi-key read is consistent.
pub struct ReadView<'a> {
    db: &'a Db,
    snap: Snapshot,
    now: u64,
}

impl ReadView<'_> {
    /// The live metadata of `key` in this view; counts as an access.
    pub fn get(&self, key: &[u8]) -> Result<Option<Meta>> {
        let found = self.peek(key)?;
        if found.is_some() {
            self.db.inner.lru.touch(key, self.now);
        }
        Ok(found)
    }

    /// The live metadata of `key` in this view, without counting as an access.
    pub fn peek(&self, key: &[u8]) -> Result<Option<Meta>> {
        let raw = self
            .db
            .inner
            .engine
            .get_at(&encoding::meta_key(key), &self.snap)?;
        decode_live(raw, self.now)
    }
    /// The time this view judges expiry by.
    pub fn now(&self) -> u64 {
        self.now
    }
}
