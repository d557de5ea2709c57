//! Data and index blocks: prefix-compressed entries with restart points.
//!
//! Entry: `varint shared | varint unshared | varint value_len | key[shared..] | value`.
//! Trailer: `u32 restart offsets... | u32 restart count` (little endian). Keys at restart points
//! are stored whole, so a seek binary-searches the restarts and scans forward from one.

use crate::coding::{get_u32, get_varint, put_varint};
use crate::key;
use bytes::Bytes;
use std::sync::Arc;

/// Builds one block.
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    interval: usize,
    counter: usize,
    last_key: Vec<u8>,
}

impl BlockBuilder {
    pub(crate) fn new(restart_interval: usize) -> BlockBuilder {
        BlockBuilder {
            buf: Vec::new(),
            restarts: Vec::new(),
            interval: restart_interval.max(1),
            counter: 0,
            last_key: Vec::new(),
        }
    }

    /// Appends an entry; keys must arrive in increasing order.
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) {
        let shared = if self.counter.is_multiple_of(self.interval) {
            self.restarts.push(self.buf.len() as u32);
            0
        } else {
            self.last_key
                .iter()
                .zip(key)
                .take_while(|(a, b)| a == b)
                .count()
        };
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, (key.len() - shared) as u64);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(&key[shared..]);
        self.counter += 1;
    }

    /// Bytes the finished block would take.
    pub(crate) fn estimated_size(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    /// True when no entry was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.counter == 0
    }

    /// The last key added.
    pub(crate) fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Finishes the block and resets the builder.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        if self.restarts.is_empty() {
            self.restarts.push(0);
        }
        for r in &self.restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts.clear();
        self.counter = 0;
        self.last_key.clear();
        out
    }
}

/// A decoded, checksum-verified block.
pub(crate) struct Block {
    data: Bytes,
    restarts_off: usize,
    num_restarts: usize,
}

impl Block {
    /// Validates the trailer of `data`; `None` when malformed.
    pub(crate) fn decode(data: Bytes) -> Option<Block> {
        let n = data.len();
        let num = get_u32(&data, n.checked_sub(4)?)? as usize;
        let restarts_off = n.checked_sub(4)?.checked_sub(num.checked_mul(4)?)?;
        if num == 0 {
            return None;
        }
        for i in 0..num {
            if get_u32(&data, restarts_off + 4 * i)? as usize > restarts_off {
                return None;
            }
        }
        Some(Block {
            data,
            restarts_off,
            num_restarts: num,
        })
    }

    /// Memory charged to the block cache.
    pub(crate) fn size(&self) -> usize {
        self.data.len()
    }

    fn restart(&self, i: usize) -> usize {
        get_u32(&self.data, self.restarts_off + 4 * i).unwrap_or(0) as usize
    }
}

/// Cursor over one block.
pub(crate) struct BlockIter {
    block: Arc<Block>,
    key: Vec<u8>,
    value: (usize, usize),
    // Offset of the entry after the current one; `restarts_off` when at the end.
    next_off: usize,
    valid: bool,
    corrupt: bool,
}

impl BlockIter {
    pub(crate) fn new(block: Arc<Block>) -> BlockIter {
        BlockIter {
            block,
            key: Vec::new(),
            value: (0, 0),
            next_off: 0,
            valid: false,
            corrupt: false,
        }
    }

    pub(crate) fn valid(&self) -> bool {
        self.valid
    }
    /// True when a malformed entry stopped the iterator.
    pub(crate) fn corrupt(&self) -> bool {
        self.corrupt
    }
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }
    pub(crate) fn value(&self) -> &[u8] {
        &self.block.data[self.value.0..self.value.1]
    }
    pub(crate) fn value_bytes(&self) -> Bytes {
        self.block.data.slice(self.value.0..self.value.1)
    }

    // Decodes the entry at `next_off` into the current position.
    fn parse_next(&mut self) {
        if self.next_off >= self.block.restarts_off {
            self.valid = false;
            return;
        }
        let data = &self.block.data[..self.block.restarts_off];
        let mut p = self.next_off;
        let parsed = (|| {
            let shared = get_varint(data, &mut p)? as usize;
            let unshared = get_varint(data, &mut p)? as usize;
            let vlen = get_varint(data, &mut p)? as usize;
            if shared > self.key.len() {
                return None;
            }
            let kend = p.checked_add(unshared)?;
            let vend = kend.checked_add(vlen)?;
            if vend > data.len() || shared + unshared < 8 {
                return None;
            }
            self.key.truncate(shared);
            self.key.extend_from_slice(&data[p..kend]);
            Some((kend, vend))
        })();
        match parsed {
            Some((vs, ve)) => {
                self.value = (vs, ve);
                self.next_off = ve;
                self.valid = true;
            }
            None => {
                self.valid = false;
                self.corrupt = true;
            }
        }
    }

    pub(crate) fn seek_to_first(&mut self) {
        self.key.clear();
        self.next_off = 0;
        self.parse_next();
    }

    pub(crate) fn next(&mut self) {
        if self.valid {
            self.parse_next();
        }
    }

    fn key_at_restart(&self, i: usize) -> Option<&[u8]> {
        let data = &self.block.data[..self.block.restarts_off];
        let mut p = self.block.restart(i);
        let _shared = get_varint(data, &mut p)?;
        let unshared = get_varint(data, &mut p)? as usize;
        let _vlen = get_varint(data, &mut p)?;
        data.get(p..p.checked_add(unshared)?)
    }

    /// Positions on the first entry whose internal key is `>= target`.
    pub(crate) fn seek(&mut self, target: &[u8]) {
        // Find the last restart whose key is < target.
        let (mut lo, mut hi) = (0usize, self.block.num_restarts);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            match self.key_at_restart(mid) {
                Some(k) if k.len() >= 8 && key::compare(k, target).is_lt() => lo = mid,
                Some(_) => hi = mid,
                None => {
                    self.valid = false;
                    self.corrupt = true;
                    return;
                }
            }
        }
        self.key.clear();
        self.next_off = self.block.restart(lo);
        self.parse_next();
        while self.valid && key::compare(&self.key, target).is_lt() {
            self.parse_next();
        }
    }
}

impl Block {
    /// A block with no entries (a placeholder for evicted cache slots).
    pub(crate) fn empty() -> Block {
        let mut v = 0u32.to_le_bytes().to_vec();
        v.extend_from_slice(&1u32.to_le_bytes());
        Block {
            data: Bytes::from(v),
            restarts_off: 0,
            num_restarts: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{encode, Kind};

    fn build(n: u32, interval: usize) -> Arc<Block> {
        let mut b = BlockBuilder::new(interval);
        for i in 0..n {
            let k = encode(format!("key{:05}", i * 2).as_bytes(), 7, Kind::Put);
            b.add(&k, format!("v{i}").as_bytes());
        }
        Arc::new(Block::decode(Bytes::from(b.finish())).expect("valid block"))
    }

    #[test]
    fn iterate_and_seek() {
        for interval in [1, 3, 16] {
            let blk = build(100, interval);
            let mut it = BlockIter::new(blk.clone());
            it.seek_to_first();
            let mut n = 0;
            while it.valid() {
                assert_eq!(
                    key::user_key(it.key()),
                    format!("key{:05}", n * 2).as_bytes()
                );
                assert_eq!(it.value(), format!("v{n}").as_bytes());
                n += 1;
                it.next();
            }
            assert_eq!(n, 100);
            it.seek(&encode(b"key00051", 9, Kind::Put));
            assert_eq!(key::user_key(it.key()), b"key00052");
            it.seek(&encode(b"key00052", 9, Kind::Put));
            assert_eq!(key::user_key(it.key()), b"key00052");
            // Same user key, but the stored version (seq 7) is newer than the target seq 5.
            it.seek(&encode(b"key00052", 5, Kind::Put));
            assert_eq!(key::user_key(it.key()), b"key00054");
            it.seek(&encode(b"a", 9, Kind::Put));
            assert_eq!(key::user_key(it.key()), b"key00000");
            it.seek(&encode(b"z", 9, Kind::Put));
            assert!(!it.valid() && !it.corrupt());
        }
    }

    #[test]
    fn malformed_trailer_rejected() {
        assert!(Block::decode(Bytes::from_static(&[1, 2])).is_none());
        assert!(Block::decode(Bytes::from_static(&[0, 0, 0, 0, 9, 0, 0, 0])).is_none());
    }
}
