//! Helpers for tests that run the `Lsm` on a simulated file system.

use super::b;
use bytes::Bytes;
use pinnacle_lsm::{Engine, Lsm, Options, SimFs, SyncPolicy, WriteBatch};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

pub const DIR: &str = "/db";

/// splitmix64, so every cycle replays from the seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub fn opts(fs: &SimFs, background: bool) -> Options {
    opts_with(fs, background, SyncPolicy::Always)
}

pub fn opts_with(fs: &SimFs, background: bool, sync: SyncPolicy) -> Options {
    Options {
        sync,
        background_work: background,
        vfs: Arc::new(fs.process()),
        ..Options::small_for_tests()
    }
}

pub fn dump_lsm(e: &Lsm) -> pinnacle_lsm::Result<BTreeMap<Bytes, Bytes>> {
    e.scan((Bound::Unbounded, Bound::Unbounded), None)?
        .collect::<pinnacle_lsm::Result<BTreeMap<Bytes, Bytes>>>()
}

pub fn key(i: u64) -> Bytes {
    b(format!("k{i:03}"))
}

/// A random batch; every batch also sets `marker` to its id so distinct prefixes differ.
pub fn random_batch(rng: &mut Rng, id: u64) -> WriteBatch {
    let mut wb = WriteBatch::new();
    for _ in 0..1 + rng.below(5) {
        match rng.below(20) {
            0 => {
                let a = rng.below(200);
                wb.delete_range(key(a), key(a + 1 + rng.below(15)));
            }
            1..=4 => {
                wb.delete(key(rng.below(200)));
            }
            _ => {
                let len = if rng.chance(10) {
                    0
                } else {
                    10 + rng.below(400)
                } as usize;
                let fill = (id as u8).wrapping_add(rng.below(7) as u8);
                wb.put(key(rng.below(200)), Bytes::from(vec![fill; len]));
            }
        }
    }
    wb.put(b("marker"), b(id.to_le_bytes()));
    wb
}
