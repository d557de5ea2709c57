//! Keyspace iteration: SCAN cursors, KEYS, RANDOMKEY.
//!
//! SCAN walks the metadata records in LSM order (slot, then key bytes). A cursor is
//! `id · 16384 + slot`: `id` names the last key returned, remembered in a bounded table; if
//! the entry was evicted (or the node restarted) the scan resumes at the start of `slot`, so a
//! key present for the whole scan is still returned at least once (possibly twice).

use super::encoding::{self, decode_meta_key, keyspace_end, slot_meta_start, KeyType, META_HEADER};
use super::{glob, Db, Result};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

/// Remembered cursors before the oldest is forgotten.
const MAX_CURSORS: usize = 65536;

/// Remembered SCAN positions.
#[derive(Default)]
pub struct CursorTable {
    inner: Mutex<Cursors>,
}

#[derive(Default)]
struct Cursors {
    next_id: u64,
    positions: HashMap<u64, Bytes>,
    order: VecDeque<u64>,
}

impl CursorTable {
    fn remember(&self, lsm_key: Bytes, slot: u16) -> u64 {
        let mut c = self.inner.lock();
        c.next_id = (c.next_id % (1 << 49)) + 1;
        let id = c.next_id;
        c.positions.insert(id, lsm_key);
        c.order.push_back(id);
        while c.order.len() > MAX_CURSORS {
            if let Some(old) = c.order.pop_front() {
                c.positions.remove(&old);
            }
        }
        id * u64::from(encoding_slots()) + u64::from(slot)
    }

    fn resume(&self, cursor: u64) -> Bound<Bytes> {
        let slot = (cursor % u64::from(encoding_slots())) as u16;
        let id = cursor / u64::from(encoding_slots());
        match self.inner.lock().positions.get(&id) {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Included(slot_meta_start(slot)),
        }
    }
}

fn encoding_slots() -> u16 {
    super::slot::SLOTS
}

/// One SCAN reply: the next cursor (0 = done) and the keys found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// Cursor to pass next; 0 when the scan is complete.
    pub cursor: u64,
    /// Matching live keys.
    pub keys: Vec<Bytes>,
}

fn type_of(raw: &[u8]) -> Option<KeyType> {
    raw.first()
        .and_then(|&t| KeyType::from_tag(t & encoding::TYPE_MASK))
}

impl Db {
    /// One SCAN step: examines about `count` keys from `cursor`, keeps live ones matching
    /// `pattern` and `type_name` (compared case-insensitively, unknown names match nothing).
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        pattern: Option<&[u8]>,
        type_name: Option<&[u8]>,
    ) -> Result<ScanPage> {
        let now = self.now_ms();
        let start = if cursor == 0 {
            Bound::Included(encoding::keyspace_start())
        } else {
            self.inner.scan.resume(cursor)
        };
        let iter = self
            .inner
            .engine
            .scan((start, Bound::Excluded(keyspace_end())), None)?;
        let mut keys = Vec::new();
        let mut examined = 0;
        let mut last: Option<(Bytes, u16)> = None;
        let mut more = false;
        for item in iter {
            let (k, v) = item?;
            let Some((slot, user_key)) = decode_meta_key(&k) else {
                continue;
            };
            if examined >= count.max(1) {
                more = true;
                break;
            }
            examined += 1;
            if v.len() >= META_HEADER && super::live_raw(&v, now) {
                let type_ok = match type_name {
                    None => true,
                    Some(t) => {
                        type_of(&v).is_some_and(|kt| t.eq_ignore_ascii_case(kt.name().as_bytes()))
                    }
                };
                let pat_ok = pattern.is_none_or(|p| glob::matches(p, user_key));
                if type_ok && pat_ok {
                    keys.push(Bytes::copy_from_slice(user_key));
                }
            }
            last = Some((k.clone(), slot));
        }
        let cursor = match (more, last) {
            (true, Some((k, slot))) => self.inner.scan.remember(k, slot),
            _ => 0,
        };
        Ok(ScanPage { cursor, keys })
    }

    /// Every live key matching `pattern` (KEYS).
    pub fn keys(&self, pattern: &[u8]) -> Result<Vec<Bytes>> {
        let now = self.now_ms();
        let all = pattern == b"*";
        let mut out = Vec::new();
        self.for_each_meta(encoding::keyspace_start(), keyspace_end(), |k, _, raw| {
            let user_key = &k[3..];
            if super::live_raw(raw, now) && (all || glob::matches(pattern, user_key)) {
                out.push(k.slice(3..));
            }
            true
        })?;
        Ok(out)
    }

    /// A random live key, or `None` when the keyspace is empty (RANDOMKEY).
    pub fn random_key(&self) -> Result<Option<Bytes>> {
        let now = self.now_ms();
        let r = random_u64();
        let slot = (r % u64::from(encoding_slots())) as u16;
        let mut pivot = slot_meta_start(slot).to_vec();
        pivot.extend_from_slice(&(r >> 14).to_be_bytes()[..3]);
        let pivot = Bytes::from(pivot);
        let mut found = None;
        self.for_each_meta(pivot.clone(), keyspace_end(), |k, _, raw| {
            if super::live_raw(raw, now) {
                found = Some(k.slice(3..));
                return false;
            }
            true
        })?;
        if found.is_none() {
            self.for_each_meta(encoding::keyspace_start(), pivot, |k, _, raw| {
                if super::live_raw(raw, now) {
                    found = Some(k.slice(3..));
                    return false;
                }
                true
            })?;
        }
        Ok(found)
    }
}

/// A fast non-cryptographic random number (splitmix64 over a time-seeded counter).
pub fn random_u64() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut s = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    if s == 0 {
        s = super::wall_ms().wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
        STATE.store(s, Ordering::Relaxed);
    }
    let mut z = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
