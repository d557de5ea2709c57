//! Approximate last-access times for `OBJECT IDLETIME` and `RESTORE ... IDLETIME`.
//!
//! Redis keeps a 24-bit LRU clock in every object. Writing an access time into the LSM on
//! every read would turn reads into writes, so instead a fixed table of second-resolution
//! timestamps is indexed by a hash of the key. Keys that share a slot share a timestamp (the
//! idle time reads low), which keeps the cost at one relaxed store per access and 4 bytes per
//! slot. Not persisted: after a restart every
//! key counts as accessed at startup, as Redis does after loading.

use std::sync::atomic::{AtomicU32, Ordering};

/// Offset that lets stored seconds go below the table's start time (RESTORE IDLETIME).
const BIAS: i64 = 1 << 31;

/// The access-time table.
pub struct AccessClock {
    slots: Box<[AtomicU32]>,
    mask: usize,
    base_ms: u64,
}

fn hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    h ^ (h >> 29)
}

impl AccessClock {
    /// A table of `2^bits` slots whose keys all count as accessed at `base_ms`.
    pub fn new(base_ms: u64, bits: u32) -> AccessClock {
        let n = 1usize << bits;
        let slots: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
        AccessClock {
            slots: slots.into_boxed_slice(),
            mask: n - 1,
            base_ms,
        }
    }

    fn slot(&self, key: &[u8]) -> &AtomicU32 {
        &self.slots[hash(key) as usize & self.mask]
    }

    fn rel_secs(&self, ms: u64) -> i64 {
        (ms as i64 - self.base_ms as i64).div_euclid(1000)
    }

    fn store(&self, key: &[u8], rel: i64) {
        let v = (rel + BIAS).clamp(1, i64::from(u32::MAX)) as u32;
        self.slot(key).store(v, Ordering::Relaxed);
    }

    /// Records an access to `key` at `now_ms`.
    pub fn touch(&self, key: &[u8], now_ms: u64) {
        self.store(key, self.rel_secs(now_ms));
    }

    /// Records that `key` was last accessed `idle_secs` before `now_ms`.
    pub fn set_idle(&self, key: &[u8], now_ms: u64, idle_secs: u64) {
        let idle = i64::try_from(idle_secs)
            .unwrap_or(i64::MAX / 2)
            .min(BIAS - 1);
        self.store(key, self.rel_secs(now_ms) - idle);
    }

    /// Seconds since `key` was last accessed, as of `now_ms`.
    pub fn idle_secs(&self, key: &[u8], now_ms: u64) -> u64 {
        let now = self.rel_secs(now_ms);
        let v = self.slot(key).load(Ordering::Relaxed);
        let last = if v == 0 { 0 } else { i64::from(v) - BIAS };
        (now - last).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_time_follows_touches() {
        let c = AccessClock::new(1_000_000, 4);
        assert_eq!(c.idle_secs(b"k", 1_005_000), 5);
        c.touch(b"k", 1_005_000);
        assert_eq!(c.idle_secs(b"k", 1_005_999), 0);
        assert_eq!(c.idle_secs(b"k", 1_012_000), 7);
        c.set_idle(b"k", 1_012_000, 100);
        assert_eq!(c.idle_secs(b"k", 1_012_000), 100);
        c.set_idle(b"k", 1_012_000, u64::MAX);
        assert!(c.idle_secs(b"k", 1_012_000) > 1 << 30);
    }
}
