//! The memtable: an ordered map of internal keys plus a side list of range tombstones, and a
//! hash index of each user key's newest version for point lookups.
//!
//! A search of a full memtable's ordered map costs many cache misses; profiles of GET put
//! ~40% of server CPU in it. The index answers most point lookups with one or two misses: when
//! a key's newest version is visible at the reader's snapshot it is the answer, and a key
//! absent from the index has no version in this memtable at all. Only a reader whose snapshot
//! predates the newest version searches the ordered map.
//!
//! The ordered map ([`LeafMap`]: sorted leaves under a B-tree index) sits behind a read-write
//! lock rather than being a lock-free skiplist: there is one writer at a time (the WAL
//! group-commit leader), point reads go to the index, and iterators copy small batches under
//! the read lock. An insert touches a few contiguous nodes where a skiplist insert chased ~20
//! scattered ones (crossbeam's `search_position` was 23-30% of server CPU under SET).

use crate::batch::BatchOp;
use crate::iterators::InternalIterator;
use crate::key::{self, Kind, MemKey, MemKeyRef, RangeTombstone};
use crate::leafmap::LeafMap;
use crate::sstable::bloom;
use crate::Result;
use bytes::Bytes;
use hashbrown::HashTable;
use parking_lot::RwLock;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

// The value of a point delete.
static EMPTY: Bytes = Bytes::new();

// Per-entry overhead charged against the memtable size (skiplist node + key/value headers).
const ENTRY_OVERHEAD: usize = 48;
// Charge for a user key's first entry in the hash index (slot, key allocation header).
const INDEX_OVERHEAD: usize = 64;
// Index shards (a power of two): readers take a shard's read lock, the writer its write lock.
const INDEX_SHARDS: usize = 64;

/// The newest version of one user key in this memtable.
struct Newest {
    hash: u64,
    user: Box<[u8]>,
    seq: u64,
    kind: Kind,
    value: Bytes,
}

/// The newest visible point version found in one source.
pub(crate) struct Found {
    pub(crate) seq: u64,
    pub(crate) kind: Kind,
    pub(crate) value: Bytes,
}

/// One memtable; its records are also in WAL segment `wal_id`.
pub(crate) struct MemTable {
    map: RwLock<LeafMap>,
    index: Box<[RwLock<HashTable<Newest>>]>,
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
            map: RwLock::new(LeafMap::new()),
            index: (0..INDEX_SHARDS)
                .map(|_| RwLock::new(HashTable::new()))
                .collect(),
            tombs: RwLock::new(Vec::new()),
            has_tombs: AtomicBool::new(false),
            size: AtomicUsize::new(0),
            max_seq: AtomicU64::new(0),
            wal_id,
        }
    }

    /// Inserts a point record (tests; the write path uses [`MemTable::put_many`]).
    #[cfg(test)]
    pub(crate) fn put(&self, user: &[u8], seq: u64, kind: Kind, value: Bytes) {
        let mut charge = user.len() + 8 + value.len() + ENTRY_OVERHEAD;
        if self.index_put(user, seq, kind, &value) {
            charge += user.len() + INDEX_OVERHEAD;
        }
        self.size.fetch_add(charge, Ordering::Relaxed);
        self.map.write().insert(MemKey::new(user, seq, kind), value);
        self.max_seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// Inserts the point records of a batch numbered from `first_seq` (range deletes are
    /// skipped: the caller records them), with one lock of the ordered map and one update of
    /// the size and sequence counters for the whole batch (per-record locking bounced the
    /// lock's cache line between threads).
    pub(crate) fn put_batch(&self, first_seq: u64, ops: &mut [BatchOp]) {
        let mut charge = 0;
        let mut last = 0;
        for (seq, op) in (first_seq..).zip(ops.iter()) {
            let (user, kind, value) = match op {
                BatchOp::Put(k, v) => (k, Kind::Put, v),
                BatchOp::Delete(k) => (k, Kind::Delete, &EMPTY),
                BatchOp::DeleteRange(..) => continue,
            };
            charge += user.len() + 8 + value.len() + ENTRY_OVERHEAD;
            if self.index_put(user, seq, kind, value) {
                charge += user.len() + INDEX_OVERHEAD;
            }
            last = seq;
        }
        self.size.fetch_add(charge, Ordering::Relaxed);
        {
            let mut map = self.map.write();
            for (seq, op) in (first_seq..).zip(ops.iter_mut()) {
                match op {
                    BatchOp::Put(k, v) => {
                        map.insert(MemKey::new(k, seq, Kind::Put), std::mem::take(v));
                    }
                    BatchOp::Delete(k) => {
                        map.insert(MemKey::new(k, seq, Kind::Delete), Bytes::new());
                    }
                    BatchOp::DeleteRange(..) => {}
                }
            }
        }
        self.max_seq.fetch_max(last, Ordering::Relaxed);
    }

    fn shard(&self, hash: u64) -> &RwLock<HashTable<Newest>> {
        // The low bits pick the shard; hashbrown uses the high bits inside it.
        &self.index[hash as usize & (INDEX_SHARDS - 1)]
    }

    /// Records `(seq, kind, value)` as `user`'s newest version unless a newer one is there;
    /// true when `user` was not indexed yet.
    fn index_put(&self, user: &[u8], seq: u64, kind: Kind, value: &Bytes) -> bool {
        let hash = bloom::hash(user);
        let mut t = self.shard(hash).write();
        match t.entry(hash, |e| e.hash == hash && *e.user == *user, |e| e.hash) {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                let e = o.get_mut();
                if seq > e.seq {
                    e.seq = seq;
                    e.kind = kind;
                    e.value = value.clone();
                }
                false
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(Newest {
                    hash,
                    user: user.into(),
                    seq,
                    kind,
                    value: value.clone(),
                });
                true
            }
        }
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
        self.map.read().is_empty() && !self.has_tombs.load(Ordering::Acquire)
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
        self.get_lk(&key::LookupKey::new(user, snap), bloom::hash(user))
    }

    /// Newest point version of the lookup key's user key at its snapshot; `hash` is
    /// [`bloom::hash`] of the user key.
    pub(crate) fn get_lk(&self, lk: &key::LookupKey, hash: u64) -> Option<Found> {
        let user = lk.user();
        {
            let t = self.shard(hash).read();
            match t.find(hash, |e| e.hash == hash && *e.user == *user) {
                // No version of `user` in this memtable.
                None => return None,
                Some(e) if e.seq <= lk.seq() => {
                    return Some(Found {
                        seq: e.seq,
                        kind: e.kind,
                        value: e.value.clone(),
                    })
                }
                // The newest version is after the snapshot: search for an older one.
                Some(_) => {}
            }
        }
        self.get_older(lk)
    }

    /// Newest point version at the lookup key's snapshot, from the ordered map.
    fn get_older(&self, lk: &key::LookupKey) -> Option<Found> {
        let user = lk.user();
        let map = self.map.read();
        let (k, v) = map
            .range(Bound::Included(MemKeyRef::new(lk.ikey())), Bound::Unbounded)
            .next()?;
        let (u, seq, kind) = key::split(k.as_slice());
        if u != user {
            return None;
        }
        Some(Found {
            seq,
            kind: Kind::from_u8(kind)?,
            value: v.clone(),
        })
    }

    /// Calls `f(internal_key, value)` for every point record in order (used by flush). Copies
    /// batches out so no lock is held while `f` does I/O.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        const BATCH: usize = 1024;
        let mut buf = Vec::with_capacity(BATCH);
        let mut first = true;
        loop {
            let last = buf.last().map(|(k, _): &(MemKey, Bytes)| k.clone());
            buf.clear();
            match &last {
                None if first => {
                    self.fetch_bound(Bound::Unbounded, Bound::Unbounded, BATCH, &mut buf)
                }
                None => return Ok(()),
                Some(k) => self.fetch(k.as_slice(), false, Bound::Unbounded, BATCH, &mut buf),
            }
            first = false;
            for (k, v) in &buf {
                f(k.as_slice(), v)?;
            }
            if buf.len() < BATCH {
                return Ok(());
            }
        }
    }

    /// Up to `n` entries strictly after (or from, when `inclusive`) `from`, within `upper`.
    fn fetch(
        &self,
        from: &[u8],
        inclusive: bool,
        upper: Bound<&[u8]>,
        n: usize,
        out: &mut Vec<(MemKey, Bytes)>,
    ) {
        let lower = if inclusive {
            Bound::Included(MemKeyRef::new(from))
        } else {
            Bound::Excluded(MemKeyRef::new(from))
        };
        self.fetch_bound(lower, upper.map(MemKeyRef::new), n, out);
    }

    /// Up to `n` entries from `lower` on, up to `upper`.
    fn fetch_bound(
        &self,
        lower: Bound<&MemKeyRef>,
        upper: Bound<&MemKeyRef>,
        n: usize,
        out: &mut Vec<(MemKey, Bytes)>,
    ) {
        if empty_range(lower, upper) {
            return;
        }
        let room = n.saturating_sub(out.len());
        self.map.read().copy_range(lower, upper, room, out);
    }
}

/// True when no internal key is inside `(lower, upper)`: a seek past a scan's end asks for
/// such a range, and this answers it without searching the map.
fn empty_range(lower: Bound<&MemKeyRef>, upper: Bound<&MemKeyRef>) -> bool {
    let (l, l_in, u, u_in) = match (lower, upper) {
        (Bound::Included(l), Bound::Included(u)) => (l, true, u, true),
        (Bound::Included(l), Bound::Excluded(u)) => (l, true, u, false),
        (Bound::Excluded(l), Bound::Included(u)) => (l, false, u, true),
        (Bound::Excluded(l), Bound::Excluded(u)) => (l, false, u, false),
        _ => return false,
    };
    match key::compare(&l.0, &u.0) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => !(l_in && u_in),
        std::cmp::Ordering::Greater => true,
    }
}

/// Iterator over a memtable that owns an `Arc` of it (refills a small buffer per step batch,
/// so no lock on the map outlives a call).
pub(crate) struct MemIter {
    mem: Arc<MemTable>,
    buf: Vec<(MemKey, Bytes)>,
    pos: usize,
    exhausted: bool,
    /// The internal key past which the scan wants nothing: a batch stops there instead of
    /// copying out entries the scan only reads to find it has ended (LRANGE 0 99 copied 128).
    upper: Bound<Box<[u8]>>,
    /// The user-key bound `upper` was built from.
    end: Bound<Box<[u8]>>,
}

const MEM_BATCH: usize = 128;

impl MemIter {
    /// Iterates the whole memtable.
    #[cfg(test)]
    pub(crate) fn new(mem: Arc<MemTable>) -> MemIter {
        MemIter::bounded(mem, Bound::Unbounded)
    }

    /// Iterates the records of user keys up to `end`.
    pub(crate) fn bounded(mem: Arc<MemTable>, end: Bound<&[u8]>) -> MemIter {
        let upper = match end {
            Bound::Unbounded => Bound::Unbounded,
            // The newest version of `e` sorts first of its versions: below it is below `e`.
            Bound::Excluded(e) => Bound::Excluded(key::encode(e, key::MAX_SEQ, Kind::Put).into()),
            // The oldest possible version of `e` sorts last.
            Bound::Included(e) => Bound::Included(key::encode(e, 0, Kind::Delete).into()),
        };
        MemIter {
            mem,
            buf: Vec::new(),
            pos: 0,
            exhausted: true,
            upper,
            end: end.map(Into::into),
        }
    }

    /// Refills the buffer from `from` on.
    fn refill(&mut self, from: &[u8], inclusive: bool) {
        self.buf.clear();
        self.pos = 0;
        // Room for a whole batch up front: growing to it reallocated six times per scan.
        self.buf.reserve(MEM_BATCH);
        let upper = self.upper.as_ref().map(|u| &u[..]);
        self.mem
            .fetch(from, inclusive, upper, MEM_BATCH, &mut self.buf);
        self.exhausted = self.buf.len() < MEM_BATCH;
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
    fn take_value(&mut self) -> Bytes {
        // The buffer's copy is not read again once the caller moves on.
        std::mem::take(&mut self.buf[self.pos].1)
    }
    fn next(&mut self) -> Result<()> {
        self.pos += 1;
        if self.pos >= self.buf.len() && !self.exhausted {
            let last = match self.buf.last() {
                Some(l) => l.0.clone(),
                None => return Ok(()),
            };
            self.refill(last.as_slice(), false);
        }
        Ok(())
    }
    fn skip_user(&mut self, scratch: &mut Vec<u8>) -> Result<()> {
        // Compares with the current key where it lies in the buffer: the generic skip copied
        // every key of a scan out first.
        let cur = self.pos;
        let Some((ck, _)) = self.buf.get(cur) else {
            return Ok(());
        };
        let user = key::user_key(ck.as_slice());
        self.pos += 1;
        while let Some((k, _)) = self.buf.get(self.pos) {
            if !key::same_user(k.as_slice(), user) {
                return Ok(());
            }
            self.pos += 1;
        }
        if self.exhausted {
            return Ok(());
        }
        // The batch ended inside this key's versions: carry the key across the refill.
        scratch.clear();
        scratch.extend_from_slice(user);
        let last = self.buf[self.buf.len() - 1].0.clone();
        self.refill(last.as_slice(), false);
        while self.valid() && key::same_user(self.key(), scratch) {
            self.next()?;
        }
        Ok(())
    }
    fn bounded_by(&self, end: &Bound<Bytes>) -> bool {
        match (&self.end, end) {
            (Bound::Unbounded, Bound::Unbounded) => true,
            (Bound::Included(a), Bound::Included(b)) | (Bound::Excluded(a), Bound::Excluded(b)) => {
                **a == **b
            }
            _ => false,
        }
    }
    fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        self.refill(ikey, true);
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
    fn index_keeps_the_newest_version_whatever_the_insert_order() {
        let m = MemTable::new(1);
        m.put(b"a", 7, Kind::Put, Bytes::from_static(b"new"));
        m.put(b"a", 4, Kind::Put, Bytes::from_static(b"old"));
        assert_eq!(&m.get(b"a", 9).expect("new").value[..], b"new");
        assert_eq!(&m.get(b"a", 6).expect("old").value[..], b"old");
        assert!(m.get(b"a", 3).is_none());
        // Many keys across shards: each answers with its own newest value.
        for i in 0..2000u32 {
            m.put(
                &i.to_be_bytes(),
                10 + u64::from(i),
                Kind::Put,
                Bytes::from(i.to_string()),
            );
        }
        for i in 0..2000u32 {
            let f = m.get(&i.to_be_bytes(), u64::MAX >> 8).expect("present");
            assert_eq!(f.value, Bytes::from(i.to_string()));
        }
        assert!(m.get(b"zz", 1 << 40).is_none());
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

    #[test]
    fn skip_user_crosses_batches() {
        let m = Arc::new(MemTable::new(1));
        // 300 versions of "a" span three batches; "b" and "c" follow.
        for seq in 1..=300u64 {
            m.put(b"a", seq, Kind::Put, Bytes::new());
        }
        m.put(b"b", 400, Kind::Put, Bytes::new());
        m.put(b"b", 401, Kind::Delete, Bytes::new());
        m.put(b"c", 500, Kind::Put, Bytes::new());
        let mut it = MemIter::new(m);
        it.seek(&key::encode(b"", key::MAX_SEQ, Kind::Put)).unwrap();
        let mut scratch = Vec::new();
        let mut users = Vec::new();
        while it.valid() {
            users.push(key::user_key(it.key()).to_vec());
            it.skip_user(&mut scratch).unwrap();
        }
        assert_eq!(users, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn bounded_iterator_stops_at_the_end_key_across_batches() {
        let m = Arc::new(MemTable::new(1));
        for i in 0..1000u32 {
            // Two versions of every key: the bound must keep or drop both.
            m.put(&i.to_be_bytes(), u64::from(i) + 1, Kind::Put, Bytes::new());
            m.put(
                &i.to_be_bytes(),
                u64::from(i) + 5000,
                Kind::Delete,
                Bytes::new(),
            );
        }
        let users = |end: Bound<&[u8]>, from: u32| {
            let mut it = MemIter::bounded(m.clone(), end);
            it.seek(&key::encode(&from.to_be_bytes(), key::MAX_SEQ, Kind::Put))
                .unwrap();
            let mut got = Vec::new();
            while it.valid() {
                got.push(key::user_key(it.key()).to_vec());
                it.next().unwrap();
            }
            got
        };
        let want = |r: std::ops::Range<u32>| -> Vec<Vec<u8>> {
            r.flat_map(|i| [i.to_be_bytes().to_vec(), i.to_be_bytes().to_vec()])
                .collect()
        };
        let e = 300u32.to_be_bytes();
        assert_eq!(users(Bound::Excluded(&e), 10), want(10..300));
        assert_eq!(users(Bound::Included(&e), 10), want(10..301));
        assert_eq!(users(Bound::Unbounded, 990), want(990..1000));
        // A seek at or past the end finds nothing (and must not panic in the B-tree).
        assert!(users(Bound::Excluded(&e), 300).is_empty());
        assert!(users(Bound::Included(&e), 301).is_empty());
        assert!(users(Bound::Excluded(&e), 700).is_empty());
        assert_eq!(users(Bound::Included(&e), 300), want(300..301));
    }
}
