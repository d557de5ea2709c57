//! A sharded LRU cache of decoded blocks, keyed by (table id, block offset).

use super::block::Block;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

const SHARDS: usize = 16;
const NIL: usize = usize::MAX;

type Key = (u64, u64);

/// A cheap multiplicative hasher for the (table, offset) keys; SipHash showed up in profiles.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Map = HashMap<Key, usize, BuildHasherDefault<KeyHasher>>;

struct Node {
    key: Key,
    val: Arc<Block>,
    charge: usize,
    prev: usize,
    next: usize,
}

// One LRU list in a slab: `head` is the most recently used.
struct Shard {
    map: Map,
    nodes: Vec<Node>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
    used: usize,
    capacity: usize,
}

impl Shard {
    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.nodes[i].prev, self.nodes[i].next);
        if p != NIL {
            self.nodes[p].next = n;
        } else {
            self.head = n;
        }
        if n != NIL {
            self.nodes[n].prev = p;
        } else {
            self.tail = p;
        }
    }

    fn push_front(&mut self, i: usize) {
        self.nodes[i].prev = NIL;
        self.nodes[i].next = self.head;
        if self.head != NIL {
            self.nodes[self.head].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    fn get(&mut self, key: &Key) -> Option<Arc<Block>> {
        let i = *self.map.get(key)?;
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
        Some(self.nodes[i].val.clone())
    }

    fn insert(&mut self, key: Key, val: Arc<Block>) {
        let charge = val.size() + 64;
        if charge > self.capacity {
            return;
        }
        if let Some(&i) = self.map.get(&key) {
            self.used -= self.nodes[i].charge;
            self.nodes[i].val = val;
            self.nodes[i].charge = charge;
            self.used += charge;
            self.unlink(i);
            self.push_front(i);
        } else {
            let node = Node {
                key,
                val,
                charge,
                prev: NIL,
                next: NIL,
            };
            let i = match self.free.pop() {
                Some(i) => {
                    self.nodes[i] = node;
                    i
                }
                None => {
                    self.nodes.push(node);
                    self.nodes.len() - 1
                }
            };
            self.map.insert(key, i);
            self.used += charge;
            self.push_front(i);
        }
        while self.used > self.capacity && self.tail != NIL {
            let t = self.tail;
            self.unlink(t);
            self.used -= self.nodes[t].charge;
            self.map.remove(&self.nodes[t].key);
            // Drop the block now rather than when the slot is reused.
            self.nodes[t].val = Arc::new(Block::empty());
            self.free.push(t);
        }
    }
}

/// Shared block cache with a byte capacity.
pub(crate) struct BlockCache {
    shards: Vec<Mutex<Shard>>,
}

impl BlockCache {
    pub(crate) fn new(capacity: usize) -> BlockCache {
        let per = capacity / SHARDS;
        BlockCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: Map::default(),
                        nodes: Vec::new(),
                        free: Vec::new(),
                        head: NIL,
                        tail: NIL,
                        used: 0,
                        capacity: per,
                    })
                })
                .collect(),
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        let h = key.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (key.1 >> 6).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        &self.shards[(h >> 32) as usize % SHARDS]
    }

    /// The cached block, if any (marks it most recently used).
    pub(crate) fn get(&self, table: u64, offset: u64) -> Option<Arc<Block>> {
        let k = (table, offset);
        self.shard(&k).lock().get(&k)
    }

    /// Caches a block, evicting least recently used ones beyond capacity.
    pub(crate) fn insert(&self, table: u64, offset: u64, block: Arc<Block>) {
        let k = (table, offset);
        self.shard(&k).lock().insert(k, block);
    }

    /// Bytes currently charged.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.shards.iter().map(|s| s.lock().used).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn blk(n: usize) -> Arc<Block> {
        let mut v = vec![0u8; n];
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        Arc::new(Block::decode(Bytes::from(v)).expect("block"))
    }

    #[test]
    fn evicts_least_recently_used() {
        let c = BlockCache::new(SHARDS * 1000);
        // Same table and offsets that land in one shard are not guaranteed, so check totals.
        for i in 0..100u64 {
            c.insert(1, i * 4096, blk(300));
        }
        assert!(c.used() <= SHARDS * 1000);
        assert!(c.get(1, 99 * 4096).is_some());
        let hits = (0..100u64).filter(|i| c.get(1, i * 4096).is_some()).count();
        assert!(hits < 100 && hits > 0);
    }

    #[test]
    fn get_refreshes_recency() {
        let c = BlockCache::new(SHARDS * 1000);
        let k = (7u64, 0u64);
        c.insert(k.0, k.1, blk(300));
        // Insert blocks into the same shard as k until it would be evicted, touching k each time.
        let mut n = 0;
        let mut off = 4096u64;
        while n < 10 {
            if std::ptr::eq(c.shard(&(7, off)), c.shard(&k)) {
                assert!(c.get(k.0, k.1).is_some());
                c.insert(7, off, blk(300));
                n += 1;
            }
            off += 4096;
        }
        assert!(c.get(k.0, k.1).is_some());
    }
}
