//! The memtable: a lock-free skiplist of internal keys plus a side list of range tombstones.

use crate::iterators::InternalIterator;
use crate::key::{self, Kind, MemKey, MemKeyRef, RangeTombstone};
use crate::Result;
use bytes::Bytes;
use crossbeam_skiplist::SkipMap;
use parking_lot::RwLock;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

// Per-entry overhead charged against the memtable size (skiplist node + key/value headers).
const ENTRY_OVERHEAD: usize = 48;

/// The newest visible point version found in one source.
pub(crate) struct Found {
    pub(crate) seq: u64,
    pub(crate) kind: Kind,
    pub(crate) value: Bytes,
}

/// One memtable; its records are also in WAL segment `wal_id`.
pub(crate) struct MemTable {
    map: SkipMap<MemKey, Bytes>,
    tombs: RwLock<Vec<RangeTombstone>>,
    has_tombs: AtomicBool,
    size: AtomicUsize,
    max_seq: AtomicU64,
    /// The WAL segment holding this memtable's records.
    pub(crate) wal_id: u64,
}

impl MemTable {
    pub(crate) fn new(wal_id: u64) -> MemTable {
        MemTable {
            map: SkipMap::new(),
            tombs: RwLock::new(Vec::new()),
            has_tombs: AtomicBool::new(false),
            size: AtomicUsize::new(0),
            max_seq: AtomicU64::new(0),
            wal_id,
        }
    }

    /// Inserts a point record.
    pub(crate) fn put(&self, user: &[u8], seq: u64, kind: Kind, value: Bytes) {
        self.size.fetch_add(
            user.len() + 8 + value.len() + ENTRY_OVERHEAD,
            Ordering::Relaxed,
        );
        self.map.insert(MemKey::new(user, seq, kind), value);
        self.max_seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// Records that sequence numbers up to `seq` were used by this memtable's batches.
    pub(crate) fn note_seq(&self, seq: u64) {
        self.max_seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// Records a range delete.
    pub(crate) fn delete_range(&self, t: RangeTombstone) {
        self.size.fetch_add(
            t.start.len() + t.end.len() + ENTRY_OVERHEAD,
            Ordering::Relaxed,
        );
        self.max_seq.fetch_max(t.seq, Ordering::Relaxed);
        self.tombs.write().push(t);
        self.has_tombs.store(true, Ordering::Release);
    }

    /// Approximate bytes held.
    pub(crate) fn approx_size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    /// True when nothing was written.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty() && !self.has_tombs.load(Ordering::Acquire)
    }

    /// Highest sequence number stored.
    pub(crate) fn max_seq(&self) -> u64 {
        self.max_seq.load(Ordering::Relaxed)
    }

    /// Highest covering range tombstone seq `<= snap` for `user` (0 if none).
    pub(crate) fn max_tomb_seq(&self, user: &[u8], snap: u64) -> u64 {
        if !self.has_tombs.load(Ordering::Acquire) {
            return 0;
        }
        self.tombs
            .read()
            .iter()
            .filter(|t| t.seq <= snap && t.covers(user))
            .map(|t| t.seq)
            .max()
            .unwrap_or(0)
    }

    /// All range tombstones.
    pub(crate) fn range_tombstones(&self) -> Vec<RangeTombstone> {
        if !self.has_tombs.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.tombs.read().clone()
    }

    /// Newest point version of `user` with seq `<= snap`.
    #[cfg(test)]
    pub(crate) fn get(&self, user: &[u8], snap: u64) -> Option<Found> {
        self.get_lk(&key::LookupKey::new(user, snap))
    }

    /// Newest point version of the lookup key's user key at its snapshot.
    pub(crate) fn get_lk(&self, lk: &key::LookupKey) -> Option<Found> {
        let user = lk.user();
        let e = self
            .map
            .lower_bound(Bound::Included(MemKeyRef::new(lk.ikey())))?;
        let (u, seq, kind) = key::split(e.key().as_slice());
        if u != user {
            return None;
        }
        Some(Found {
            seq,
            kind: Kind::from_u8(kind)?,
            value: e.value().clone(),
        })
    }

    /// Calls `f(internal_key, value)` for every point record in order (used by flush; no
    /// per-record copies).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        for e in self.map.iter() {
            f(e.key().as_slice(), e.value())?;
        }
        Ok(())
    }

    /// Up to `n` entries strictly after (or from, when `inclusive`) `from`.
    fn fetch(&self, from: &[u8], inclusive: bool, n: usize, out: &mut Vec<(MemKey, Bytes)>) {
        let lower = if inclusive {
            Bound::Included(MemKeyRef::new(from))
        } else {
            Bound::Excluded(MemKeyRef::new(from))
        };
        let mut e = self.map.lower_bound(lower);
        while let Some(en) = e {
            if out.len() >= n {
                break;
            }
            out.push((en.key().clone(), en.value().clone()));
            e = en.next();
        }
    }
}

/// Iterator over a memtable that owns an `Arc` of it (refills a small buffer per step batch,
/// so no borrow of the skiplist outlives a call).
pub(crate) struct MemIter {
    mem: Arc<MemTable>,
    buf: Vec<(MemKey, Bytes)>,
    pos: usize,
    exhausted: bool,
}

const MEM_BATCH: usize = 128;

impl MemIter {
    pub(crate) fn new(mem: Arc<MemTable>) -> MemIter {
        MemIter {
            mem,
            buf: Vec::new(),
            pos: 0,
            exhausted: true,
        }
    }
}

impl InternalIterator for MemIter {
    fn valid(&self) -> bool {
        self.pos < self.buf.len()
    }
    fn key(&self) -> &[u8] {
        self.buf[self.pos].0.as_slice()
    }
    fn value(&self) -> &[u8] {
        &self.buf[self.pos].1
    }
    fn value_bytes(&self) -> Bytes {
        self.buf[self.pos].1.clone()
    }
    fn next(&mut self) -> Result<()> {
        self.pos += 1;
        if self.pos >= self.buf.len() && !self.exhausted {
            let last = match self.buf.last() {
                Some(l) => l.0.clone(),
                None => return Ok(()),
            };
            self.buf.clear();
            self.pos = 0;
            self.mem
                .fetch(last.as_slice(), false, MEM_BATCH, &mut self.buf);
            self.exhausted = self.buf.len() < MEM_BATCH;
        }
        Ok(())
    }
    fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        self.buf.clear();
        self.pos = 0;
        self.mem.fetch(ikey, true, MEM_BATCH, &mut self.buf);
        self.exhausted = self.buf.len() < MEM_BATCH;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_respects_snapshot_and_kind() {
        let m = MemTable::new(1);
        m.put(b"k", 1, Kind::Put, Bytes::from_static(b"v1"));
        m.put(b"k", 3, Kind::Delete, Bytes::new());
        m.put(b"k", 5, Kind::Put, Bytes::new());
        m.put(b"kk", 2, Kind::Put, Bytes::from_static(b"x"));
        assert_eq!(m.get(b"k", 0).map(|f| f.seq), None);
        let f = m.get(b"k", 2).expect("v1");
        assert_eq!((f.seq, f.kind, &f.value[..]), (1, Kind::Put, &b"v1"[..]));
        assert_eq!(m.get(b"k", 4).map(|f| f.kind), Some(Kind::Delete));
        assert_eq!(m.get(b"k", 9).map(|f| f.value.len()), Some(0));
        assert!(m.get(b"j", 9).is_none());
    }

    #[test]
    fn iterator_refills_across_batches() {
        let m = Arc::new(MemTable::new(1));
        for i in 0..1000u32 {
            m.put(&i.to_be_bytes(), u64::from(i) + 1, Kind::Put, Bytes::new());
        }
        let mut it = MemIter::new(m);
        it.seek(&key::encode(b"", key::MAX_SEQ, Kind::Put)).unwrap();
        let mut n = 0u32;
        while it.valid() {
            assert_eq!(key::user_key(it.key()), &n.to_be_bytes());
            n += 1;
            it.next().unwrap();
        }
        assert_eq!(n, 1000);
    }
}
