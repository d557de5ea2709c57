//! Expiry beyond lazy checks: the compaction filter that drops expired metadata, and the
//! active sweep that deletes expired keys through the logical write path.

use super::encoding::{decode_meta_key, keyspace_end, keyspace_start, raw_expire_at};
use super::write::{WriteCommand, WriteOp};
use super::{Db, DbInner};
use bytes::Bytes;
use pinnacle_lsm::{CompactionFilter, FilterDecision};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Drops metadata records whose expiry is at or before the apply clock.
///
/// The apply clock (the largest leader time applied) is used rather than the local wall clock:
/// every later command applies at a time at or after it and would treat the record as absent
/// anyway, so dropping it can never change a reply or diverge replicas. Stale collection
/// versions will be dropped here too once collections land.
pub struct ExpiryFilter {
    clock: Arc<AtomicU64>,
}

impl ExpiryFilter {
    /// A filter reading the shared apply clock.
    pub fn new(clock: Arc<AtomicU64>) -> Self {
        ExpiryFilter { clock }
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
        }
        FilterDecision::Keep
    }
}

/// Metadata records examined per sweep step.
const SAMPLE: usize = 200;
/// Pause between sweep cycles.
const INTERVAL: Duration = Duration::from_millis(100);
/// Longest a cycle keeps stepping while it finds many expired keys.
const CYCLE_BUDGET: Duration = Duration::from_millis(25);

/// Where the sweep resumes: the last metadata key it examined.
#[derive(Default)]
pub struct SweepCursor {
    last: Option<Bytes>,
}

impl Db {
    /// One active-expiry step: examines up to `SAMPLE` metadata records after `cursor`,
    /// deletes the expired ones through [`Db::apply`] (a proposal once Raft lands: only the
    /// leader sweeps), and returns `(examined, deleted)`.
    pub fn sweep_step(&self, cursor: &mut SweepCursor) -> super::Result<(usize, usize)> {
        let now = self.now_ms();
        let start = match cursor.last.take() {
            Some(k) => Bound::Excluded(k),
            None => Bound::Included(keyspace_start()),
        };
        let iter = self
            .inner
            .engine
            .scan((start, Bound::Excluded(keyspace_end())), None)?;
        let mut examined = 0;
        let mut expired = Vec::new();
        let mut last = None;
        for item in iter {
            let (k, v) = item?;
            let Some((_, user_key)) = decode_meta_key(&k) else {
                continue;
            };
            examined += 1;
            if matches!(raw_expire_at(&v), Some(at) if at != 0 && at <= now) {
                expired.push(Bytes::copy_from_slice(user_key));
            }
            last = Some(k);
            if examined >= SAMPLE {
                break;
            }
        }
        // A short page means we reached the end: start over next time.
        cursor.last = if examined >= SAMPLE { last } else { None };
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
            loop {
                std::thread::sleep(INTERVAL);
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
            }
        });
    if let Err(e) = spawned {
        tracing::error!("could not start the expiry sweeper: {e}");
    }
}
