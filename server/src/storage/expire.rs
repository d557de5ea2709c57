//! Expiry beyond lazy checks: the compaction filter that drops expired metadata, and the
//! active sweep that deletes expired keys through the logical write path.

use super::encoding::{
    decode_meta_key, decode_sub_key, keyspace_end, keyspace_start, meta_key_in_slot, raw_expire_at,
    slot_meta_start, KeyType, Meta,
};
use super::write::{WriteCommand, WriteOp};
use super::{Db, DbInner};
use bytes::Bytes;
use parking_lot::Mutex;
use pinnacle_lsm::{CompactionFilter, Engine, FilterDecision};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Drops metadata records whose expiry is at or before the apply clock.
///
/// The apply clock (the largest leader time applied) is used rather than the local wall clock:
/// every later command applies at a time at or after it and would treat the record as absent
/// anyway, so dropping it can never change a reply or diverge replicas.
///
/// Collection sub-keys are checked against their key's current metadata (a point lookup in
/// the engine, attached after it opens): a sub-key is dropped when the metadata is gone,
/// expired, or carries another version (the collection was deleted or overwritten; versions
/// only grow, so an old version can never become current again).
pub struct ExpiryFilter {
    clock: Arc<AtomicU64>,
    engine: OnceLock<Weak<dyn Engine>>,
    /// The last metadata looked up, reused for the sub-keys that follow it (a compaction
    /// meets a collection's sub-keys one after another).
    last: Mutex<Option<LastMeta>>,
    /// Bumped when a compaction starts ([`CompactionFilter::begin_compaction`]).
    compactions: AtomicU64,
}

/// What a metadata lookup said about one key.
struct LastMeta {
    slot: u16,
    key: Vec<u8>,
    /// `None`: absent, a string, or expired (every sub-key written so far is stale);
    /// `Some(v)`: a live collection of version `v`.
    live: Option<u64>,
    /// [`ExpiryFilter::compactions`] read before the lookup.
    epoch: u64,
}

impl ExpiryFilter {
    /// A filter reading the shared apply clock.
    pub fn new(clock: Arc<AtomicU64>) -> Self {
        ExpiryFilter {
            clock,
            engine: OnceLock::new(),
            last: Mutex::new(None),
            compactions: AtomicU64::new(0),
        }
    }

    /// Lets the filter look metadata up, enabling stale sub-key removal.
    pub fn attach(&self, engine: Weak<dyn Engine>) {
        let _ = self.engine.set(engine);
    }

    fn stale_sub_key(&self, key: &[u8]) -> bool {
        let Some((slot, user_key, version, _)) = decode_sub_key(key) else {
            return false;
        };
        // A lookup made after the running compactions began holds for all of their records,
        // which were written before that: a sub-key stale then stays stale (a key deleted,
        // overwritten or expired never gets that version back; the apply clock never goes
        // back), and one live then may only become stale, so the reuse can keep a record a
        // fresh lookup would drop, never the reverse.
        let epoch = self.compactions.load(Ordering::SeqCst);
        let mut last = self.last.lock();
        if let Some(l) = last.as_ref() {
            let newer = matches!(l.live, Some(v) if version > v);
            if l.epoch == epoch && !newer && l.slot == slot && l.key == user_key {
                return l.live != Some(version);
            }
        }
        let Some(live) = self.lookup(slot, user_key) else {
            // Unsure: keep it (a later compaction decides again), and remember nothing.
            return false;
        };
        *last = Some(LastMeta {
            slot,
            key: user_key.to_vec(),
            live,
            epoch,
        });
        live != Some(version)
    }

    /// The live collection version of `user_key` now: `Some(None)` when every sub-key of it
    /// is stale, `None` when the engine cannot tell.
    fn lookup(&self, slot: u16, user_key: &[u8]) -> Option<Option<u64>> {
        let engine = self.engine.get().and_then(Weak::upgrade)?;
        let raw = match engine.get(&meta_key_in_slot(slot, user_key)) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Some(None),
            Err(_) => return None,
        };
        let m = Meta::decode(&raw)?;
        let dead = m.kind == KeyType::String || m.is_expired(self.clock.load(Ordering::Acquire));
        Some((!dead).then_some(m.version))
    }
}

impl CompactionFilter for ExpiryFilter {
    fn filter(&self, _level: usize, key: &[u8], value: &[u8]) -> FilterDecision {
        if decode_meta_key(key).is_some() {
            if let Some(at) = raw_expire_at(value) {
                if at != 0 && at <= self.clock.load(Ordering::Acquire) {
                    return FilterDecision::Remove;
                }
            }
        } else if self.stale_sub_key(key) {
            return FilterDecision::Remove;
        }
        FilterDecision::Keep
    }

    fn begin_compaction(&self) {
        self.compactions.fetch_add(1, Ordering::SeqCst);
    }
}

/// Metadata records examined per sweep step.
const SAMPLE: usize = 200;
/// Pause between sweep cycles.
const INTERVAL: Duration = Duration::from_millis(100);
/// The sweep thread's CPU use is kept under one core divided by this.
const MAX_SHARE: u32 = 10;
/// Longest pause between cycles however slow the last one was.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// Longest a cycle keeps stepping while it finds many expired keys.
const CYCLE_BUDGET: Duration = Duration::from_millis(25);

/// Where the sweep resumes: the last metadata key it examined.
#[derive(Default)]
pub struct SweepCursor {
    last: Option<Bytes>,
    /// [`EXPIRY_WRITES`] when the current pass over the keyspace started.
    pass_writes: u64,
    /// The current pass saw a key with an expiry.
    pass_saw_expiry: bool,
    /// Set when a whole pass saw no key with an expiry: the [`EXPIRY_WRITES`] at its start.
    /// Until a key with an expiry is written again there is nothing to sweep.
    quiet_since: Option<u64>,
}

/// Bumped by every write of a key with an expiry (any keyspace of the process: a sweeper
/// only compares it with itself, so other keyspaces' writes just make it look again).
static EXPIRY_WRITES: AtomicU64 = AtomicU64::new(0);

/// Records that a key with an expiry was written; call once the write is visible (a pass
/// that started after this sees the key).
pub(crate) fn note_expiry_written() {
    EXPIRY_WRITES.fetch_add(1, Ordering::SeqCst);
}

impl Db {
    /// One active-expiry step: examines up to `SAMPLE` metadata records after `cursor`,
    /// deletes the expired ones through [`Db::apply`] (a proposal once Raft lands: only the
    /// leader sweeps), and returns `(examined, deleted)`.
    pub fn sweep_step(&self, cursor: &mut SweepCursor) -> super::Result<(usize, usize)> {
        let now = self.now_ms();
        // On a single node every write goes through `apply`, which counts expiries; a Raft
        // node also ingests migrated records, so it always sweeps.
        let counted = self.inner.replicated.get().is_none();
        if cursor.last.is_none() {
            let writes = EXPIRY_WRITES.load(Ordering::SeqCst);
            if counted && cursor.quiet_since == Some(writes) {
                return Ok((0, 0));
            }
            cursor.pass_writes = writes;
            cursor.pass_saw_expiry = false;
        }
        let mut from = match cursor.last.take() {
            Some(k) => Bound::Excluded(k),
            None => Bound::Included(keyspace_start()),
        };
        let mut examined = 0;
        let mut expired = Vec::new();
        let mut last = None;
        'scan: loop {
            let iter = self
                .inner
                .engine
                .scan((from, Bound::Excluded(keyspace_end())), None)?;
            let mut next_slot = None;
            for item in iter {
                let (k, v) = item?;
                let Some((_, user_key)) = decode_meta_key(&k) else {
                    // A slot's metadata records come before its sub-keys (and their
                    // tombstones), which can be millions: seek to the next slot instead.
                    next_slot = k.get(..2).map(|s| u16::from_be_bytes([s[0], s[1]]) + 1);
                    break;
                };
                examined += 1;
                match raw_expire_at(&v) {
                    Some(at) if at != 0 && at <= now => {
                        cursor.pass_saw_expiry = true;
                        expired.push(Bytes::copy_from_slice(user_key));
                    }
                    Some(0) | None => {}
                    Some(_) => cursor.pass_saw_expiry = true,
                }
                last = Some(k);
                if examined >= SAMPLE {
                    break 'scan;
                }
            }
            match next_slot {
                Some(slot) if slot < super::slot::SLOTS => {
                    from = Bound::Included(slot_meta_start(slot))
                }
                _ => break,
            }
        }
        // A short page means we reached the end: start over next time.
        cursor.last = if examined >= SAMPLE { last } else { None };
        if cursor.last.is_none() {
            // A whole pass is done: with no key left to expire, rest until one is written.
            let rest = !cursor.pass_saw_expiry;
            cursor.quiet_since = rest.then_some(cursor.pass_writes);
        }
        let deleted = expired.len();
        if !expired.is_empty() {
            self.apply(&WriteCommand {
                now_ms: now,
                op: WriteOp::DelExpired { keys: expired },
            });
        }
        Ok((examined, deleted))
    }
}

/// Starts the background sweeper; it exits once the `Db` is dropped.
pub(crate) fn start_sweeper(db: Weak<DbInner>) {
    let spawned = std::thread::Builder::new()
        .name("expiry-sweep".into())
        .spawn(move || {
            let mut cursor = SweepCursor::default();
            let mut pause = INTERVAL;
            loop {
                std::thread::sleep(pause);
                let Some(inner) = db.upgrade() else { return };
                let db = Db::from_inner(inner);
                let started = Instant::now();
                loop {
                    match db.sweep_step(&mut cursor) {
                        // Like Redis: keep going while more than a quarter of the sample expired.
                        Ok((examined, deleted)) if deleted * 4 > examined && examined > 0 => {
                            if started.elapsed() > CYCLE_BUDGET {
                                break;
                            }
                        }
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!("expiry sweep failed: {e}");
                            break;
                        }
                    }
                }
                // A step walks the scan's skipped records too (tombstones of popped or deleted
                // elements until compaction drops them), so one can take far longer than the
                // sample suggests: keep the sweep under ~1/MAX_SHARE of a core.
                pause = (started.elapsed() * (MAX_SHARE - 1)).clamp(INTERVAL, MAX_PAUSE);
            }
        });
    if let Err(e) = spawned {
        tracing::error!("could not start the expiry sweeper: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{ExpireSpec, SetCond};

    fn set(db: &Db, now: u64, key: &str, expire: ExpireSpec) {
        db.apply(&WriteCommand {
            now_ms: now,
            op: WriteOp::Set {
                key: Bytes::from(key.to_string()),
                value: Bytes::from_static(b"v"),
                cond: SetCond::Always,
                get: false,
                expire,
            },
        });
    }

    #[test]
    fn sweep_rests_until_a_key_with_an_expiry_is_written() {
        let db = Db::in_memory();
        let now = db.now_ms() - 10;
        set(&db, now, "plain", ExpireSpec::Clear);
        let mut cursor = SweepCursor::default();
        assert_eq!(db.sweep_step(&mut cursor).expect("sweep"), (1, 0));
        // Nothing can expire: the next pass is skipped (unless another test's keyspace wrote
        // an expiry meanwhile, which only makes it look again).
        let before = EXPIRY_WRITES.load(Ordering::SeqCst);
        let got = db.sweep_step(&mut cursor).expect("sweep");
        if EXPIRY_WRITES.load(Ordering::SeqCst) == before {
            assert_eq!(got, (0, 0));
        }
        // A key with an expiry wakes it; it is swept once due, and the sweep rests again only
        // after a pass that saw no expiry.
        set(&db, now, "ttl", ExpireSpec::At(now + 5));
        assert_eq!(db.sweep_step(&mut cursor).expect("sweep"), (2, 1));
        assert_eq!(db.key_counts().expect("counts"), (1, 0));
        assert_eq!(db.sweep_step(&mut cursor).expect("sweep"), (1, 0));
        let before = EXPIRY_WRITES.load(Ordering::SeqCst);
        let got = db.sweep_step(&mut cursor).expect("sweep");
        if EXPIRY_WRITES.load(Ordering::SeqCst) == before {
            assert_eq!(got, (0, 0));
        }
    }
}
