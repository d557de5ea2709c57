//! A `Version`: the immutable set of open tables per level that readers pin with an `Arc`.
//!
//! A table replaced by compaction is marked obsolete and its file is deleted when the last
//! `Arc` of its handle drops, i.e. when no version (and so no reader, iterator or get) holds it.

use crate::iterators::InternalIterator;
use crate::key::{self, RangeTombstone};
use crate::manifest::VersionEdit;
use crate::memtable::Found;
use crate::sstable::reader::{Table, TableIter};
use crate::sstable::FileMeta;
use crate::vfs::Vfs;
use crate::{KeyRange, Result};
use bytes::Bytes;
use std::collections::HashMap;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

// Tables a point lookup considers at most on the fast path.
const MAX_CANDIDATES: usize = 32;

/// An open table plus what the manifest knows about it.
pub(crate) struct TableHandle {
    pub(crate) meta: FileMeta,
    pub(crate) table: Arc<Table>,
    path: PathBuf,
    vfs: Arc<dyn Vfs>,
    obsolete: AtomicBool,
}

impl TableHandle {
    pub(crate) fn new(
        meta: FileMeta,
        table: Table,
        path: PathBuf,
        vfs: Arc<dyn Vfs>,
    ) -> TableHandle {
        TableHandle {
            meta,
            table: Arc::new(table),
            path,
            vfs,
            obsolete: AtomicBool::new(false),
        }
    }

    /// Deletes the file once the last reader lets go.
    pub(crate) fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }
}

impl Drop for TableHandle {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            if let Err(e) = self.vfs.remove(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "removing obsolete table");
            }
        }
    }
}

/// Tables per level: L0 newest first (may overlap), L1+ sorted and non-overlapping.
#[derive(Clone, Default)]
pub(crate) struct Version {
    pub(crate) levels: Vec<Vec<Arc<TableHandle>>>,
}

impl Version {
    pub(crate) fn new(levels: usize) -> Version {
        Version {
            levels: vec![Vec::new(); levels.max(2)],
        }
    }

    /// The metas per level (what the compaction controller sees).
    pub(crate) fn metas(&self) -> Vec<Vec<FileMeta>> {
        self.levels
            .iter()
            .map(|l| l.iter().map(|h| h.meta.clone()).collect())
            .collect()
    }

    /// A new version with `edit` applied; added files come from `added`.
    pub(crate) fn apply(
        &self,
        edit: &VersionEdit,
        added: &HashMap<u64, Arc<TableHandle>>,
    ) -> Version {
        let mut v = self.clone();
        for (level, id) in &edit.removed {
            if let Some(l) = v.levels.get_mut(*level) {
                l.retain(|h| h.meta.id != *id);
            }
        }
        for (level, f) in &edit.added {
            while v.levels.len() <= *level {
                v.levels.push(Vec::new());
            }
            if let Some(h) = added.get(&f.id) {
                v.levels[*level].push(h.clone());
            }
        }
        if let Some(l0) = v.levels.first_mut() {
            l0.sort_by(|a, b| {
                b.meta
                    .max_seq
                    .cmp(&a.meta.max_seq)
                    .then(b.meta.id.cmp(&a.meta.id))
            });
        }
        for l in v.levels.iter_mut().skip(1) {
            l.sort_by(|a, b| a.meta.smallest.cmp(&b.meta.smallest));
        }
        v
    }

    /// The one table of sorted level `level` whose range holds `user`.
    pub(crate) fn file_for(&self, level: usize, user: &[u8]) -> Option<&Arc<TableHandle>> {
        let files = self.levels.get(level)?;
        let i = files.partition_point(|h| h.meta.before(user));
        files.get(i).filter(|h| h.meta.contains(user))
    }

    /// Searches the tables newest first. `tomb` carries the highest covering range tombstone
    /// seen in newer sources. Returns `Some(result)` once decided.
    pub(crate) fn get(
        &self,
        lk: &key::LookupKey,
        hash: u64,
        tomb: &mut u64,
    ) -> Result<Option<Option<Bytes>>> {
        let (user, snap) = (lk.user(), lk.seq());
        let mut probe = |h: &TableHandle| -> Result<Option<Option<Bytes>>> {
            *tomb = (*tomb).max(h.table.max_tomb_seq(user, snap));
            let found = h.table.get_lk(lk, hash)?;
            Ok(resolve(found, *tomb))
        };
        // The candidate tables, newest first: overlapping L0 files, then one file per level.
        let mut cands: [Option<&Arc<TableHandle>>; MAX_CANDIDATES] = [None; MAX_CANDIDATES];
        let mut n = 0;
        let mut overflow = false;
        let l0 = self.levels.first().into_iter().flatten();
        let deeper = (1..self.levels.len()).filter_map(|l| self.file_for(l, user));
        for h in l0.filter(|h| h.meta.contains(user)).chain(deeper) {
            if n == MAX_CANDIDATES {
                overflow = true;
                break;
            }
            cands[n] = Some(h);
            n += 1;
        }
        if overflow {
            // Rare (a very deep L0): take the plain path.
            return self.get_slow(lk, hash, tomb);
        }
        // Issue the first bloom load of every candidate up front so the misses overlap.
        let mut acc = 0u64;
        for h in cands[..n].iter().flatten() {
            acc ^= h.table.touch_bloom(hash);
        }
        std::hint::black_box(acc);
        for h in cands[..n].iter().flatten() {
            if let Some(r) = probe(h)? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    fn get_slow(
        &self,
        lk: &key::LookupKey,
        hash: u64,
        tomb: &mut u64,
    ) -> Result<Option<Option<Bytes>>> {
        let (user, snap) = (lk.user(), lk.seq());
        let mut probe = |h: &TableHandle| -> Result<Option<Option<Bytes>>> {
            *tomb = (*tomb).max(h.table.max_tomb_seq(user, snap));
            Ok(resolve(h.table.get_lk(lk, hash)?, *tomb))
        };
        for h in self.levels.first().into_iter().flatten() {
            if h.meta.contains(user) {
                if let Some(r) = probe(h)? {
                    return Ok(Some(r));
                }
            }
        }
        for level in 1..self.levels.len() {
            if let Some(h) = self.file_for(level, user) {
                if let Some(r) = probe(h)? {
                    return Ok(Some(r));
                }
            }
        }
        Ok(None)
    }

    /// Range tombstones of every table overlapping `[start, end]` (`None` = unbounded).
    pub(crate) fn range_tombstones(&self, out: &mut Vec<RangeTombstone>) {
        for l in &self.levels {
            for h in l {
                out.extend_from_slice(h.table.range_tombstones());
            }
        }
    }

    /// One iterator per L0 table and one concatenating iterator per sorted level, over the
    /// tables whose key range overlaps `range` only: a table outside it yields nothing in
    /// range, yet its seek cost an index search and a block read, and its first key then sat
    /// in the merge heap and was compared on every step (a short LRANGE touches one table).
    pub(crate) fn iterators(&self, range: &KeyRange, out: &mut Vec<Box<dyn InternalIterator>>) {
        for h in self.levels.first().into_iter().flatten() {
            if overlaps(&h.meta, range) {
                out.push(Box::new(TableIter::new(h.table.clone())));
            }
        }
        for l in self.levels.iter().skip(1) {
            let files: Vec<Arc<TableHandle>> = l
                .iter()
                .filter(|h| overlaps(&h.meta, range))
                .cloned()
                .collect();
            if !files.is_empty() {
                out.push(Box::new(LevelIter::new(files)));
            }
        }
    }
}

/// False only when no user key of the file can be inside `range` (a range tombstone's
/// exclusive end is treated as included, which only keeps a table in).
fn overlaps(meta: &FileMeta, range: &KeyRange) -> bool {
    let below = match &range.0 {
        Bound::Unbounded => false,
        Bound::Included(s) => meta.largest.as_ref() < s.as_ref(),
        Bound::Excluded(s) => meta.largest.as_ref() <= s.as_ref(),
    };
    let above = match &range.1 {
        Bound::Unbounded => false,
        Bound::Included(e) => meta.smallest.as_ref() > e.as_ref(),
        Bound::Excluded(e) => meta.smallest.as_ref() >= e.as_ref(),
    };
    !below && !above
}

/// Decides a lookup from the newest point version of one source and the highest covering
/// range tombstone seen so far: `Some(answer)` when decided, `None` to keep searching.
///
/// Older sources only hold older sequence numbers, so a covering tombstone decides too.
pub(crate) fn resolve(found: Option<Found>, tomb: u64) -> Option<Option<Bytes>> {
    match found {
        Some(f) if f.seq > tomb => match f.kind {
            key::Kind::Put => Some(Some(f.value)),
            key::Kind::Delete => Some(None),
        },
        Some(_) => Some(None),
        None if tomb > 0 => Some(None),
        None => None,
    }
}

/// Iterates a sorted, non-overlapping level, opening one table at a time.
pub(crate) struct LevelIter {
    files: Vec<Arc<TableHandle>>,
    idx: usize,
    cur: Option<TableIter>,
    fill_cache: bool,
}

impl LevelIter {
    pub(crate) fn new(files: Vec<Arc<TableHandle>>) -> LevelIter {
        Self::with_cache_fill(files, true)
    }

    /// A level iterator whose reads do not displace cached blocks (for compactions).
    pub(crate) fn with_cache_fill(files: Vec<Arc<TableHandle>>, fill_cache: bool) -> LevelIter {
        LevelIter {
            files,
            idx: 0,
            cur: None,
            fill_cache,
        }
    }

    fn settle(&mut self) -> Result<()> {
        while self.cur.as_ref().is_some_and(|c| !c.valid()) {
            self.idx += 1;
            match self.files.get(self.idx) {
                Some(h) => {
                    let mut it = TableIter::with_cache_fill(h.table.clone(), self.fill_cache);
                    it.seek(&key::encode(b"", key::MAX_SEQ, key::Kind::Put))?;
                    self.cur = Some(it);
                }
                None => self.cur = None,
            }
        }
        Ok(())
    }
}

impl InternalIterator for LevelIter {
    fn valid(&self) -> bool {
        self.cur.as_ref().is_some_and(|c| c.valid())
    }
    fn key(&self) -> &[u8] {
        self.cur.as_ref().map_or(&[][..], |c| c.key())
    }
    fn value(&self) -> &[u8] {
        self.cur.as_ref().map_or(&[][..], |c| c.value())
    }
    fn value_bytes(&self) -> Bytes {
        self.cur
            .as_ref()
            .map_or_else(Bytes::new, |c| c.value_bytes())
    }
    fn next(&mut self) -> Result<()> {
        if let Some(c) = self.cur.as_mut() {
            c.next()?;
        }
        self.settle()
    }
    fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        let user = key::user_key(ikey);
        self.idx = self.files.partition_point(|h| h.meta.before(user));
        match self.files.get(self.idx) {
            Some(h) => {
                let mut it = TableIter::with_cache_fill(h.table.clone(), self.fill_cache);
                it.seek(ikey)?;
                self.cur = Some(it);
            }
            None => self.cur = None,
        }
        self.settle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_keeps_every_table_that_can_hold_a_key_in_range() {
        let meta = |lo: &'static [u8], hi: &'static [u8], hi_excl: bool| FileMeta {
            id: 1,
            size: 0,
            smallest: Bytes::from_static(lo),
            largest: Bytes::from_static(hi),
            largest_exclusive: hi_excl,
            min_seq: 0,
            max_seq: 0,
        };
        let b = |s: &'static [u8]| Bytes::from_static(s);
        let f = meta(b"d", b"g", false);
        let cases = [
            ((Bound::Unbounded, Bound::Unbounded), true),
            ((Bound::Included(b(b"a")), Bound::Excluded(b(b"d"))), false),
            ((Bound::Included(b(b"a")), Bound::Included(b(b"d"))), true),
            ((Bound::Included(b(b"g")), Bound::Unbounded), true),
            ((Bound::Excluded(b(b"g")), Bound::Unbounded), false),
            ((Bound::Included(b(b"h")), Bound::Unbounded), false),
            ((Bound::Included(b(b"e")), Bound::Excluded(b(b"f"))), true),
            ((Bound::Unbounded, Bound::Excluded(b(b"c"))), false),
            // A range spanning the whole table.
            ((Bound::Included(b(b"a")), Bound::Included(b(b"z"))), true),
        ];
        for (range, want) in cases {
            assert_eq!(overlaps(&f, &range), want, "{range:?}");
        }
        // An exclusive largest (a range tombstone's end) is kept conservatively.
        let t = meta(b"d", b"g", true);
        assert!(overlaps(&t, &(Bound::Included(b(b"g")), Bound::Unbounded)));
    }
}
