//! Reads SSTables: checksum-verified blocks, bloom-filtered point lookups, iterators.

use super::block::{Block, BlockIter};
use super::cache::BlockCache;
use super::{bloom, Handle, FOOTER_LEN, FORMAT_VERSION, MAGIC};
use crate::coding::{get_bytes, get_u32, get_u64, get_varint};
use crate::counters::Counters;
use crate::iterators::InternalIterator;
use crate::key::{self, Fragments, Kind, RangeTombstone};
use crate::memtable::Found;
use crate::vfs::{RandomAccessFile, Vfs};
use crate::{Error, Result};
use bytes::Bytes;
use fastbloom::BloomFilter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open table.
pub(crate) struct Table {
    pub(crate) id: u64,
    path: PathBuf,
    file: Arc<dyn RandomAccessFile>,
    index: Arc<Block>,
    /// `None` for a table whose filter uses another hash (see [`bloom::decode`]).
    bloom: Option<BloomFilter>,
    tombs: Vec<RangeTombstone>,
    // The same tombstones, fragmented for O(log n) point checks.
    frags: Fragments,
    cache: Arc<BlockCache>,
    counters: Arc<Counters>,
}

fn read_checked(file: &dyn RandomAccessFile, path: &Path, h: Handle) -> Result<Bytes> {
    let fits = h
        .len
        .checked_add(4)
        .and_then(|l| h.offset.checked_add(l))
        .is_some_and(|end| end <= file.len());
    let len = usize::try_from(h.len)
        .ok()
        .and_then(|l| l.checked_add(4))
        .filter(|_| fits)
        .ok_or_else(|| Error::corruption(path, h.offset, "block handle beyond end of file"))?;
    let raw = file.read_at(h.offset, len).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::corruption(path, h.offset, "short block read")
        } else {
            Error::io(path, e)
        }
    })?;
    let n = raw.len() - 4;
    let want = get_u32(&raw, n).unwrap_or(0);
    if crc32c::crc32c(&raw[..n]) != want {
        return Err(Error::corruption(path, h.offset, "block checksum mismatch"));
    }
    let mut b = Bytes::from(raw);
    b.truncate(n);
    Ok(b)
}

fn decode_handle(v: &[u8]) -> Option<Handle> {
    let mut p = 0;
    Some(Handle {
        offset: get_varint(v, &mut p)?,
        len: get_varint(v, &mut p)?,
    })
}

impl Table {
    /// Opens table `id` at `path`, verifying the footer and every meta block.
    pub(crate) fn open(
        vfs: &dyn Vfs,
        path: &Path,
        id: u64,
        cache: Arc<BlockCache>,
        counters: Arc<Counters>,
    ) -> Result<Table> {
        let file = vfs.open(path).map_err(|e| Error::io(path, e))?;
        let size = file.len();
        if size < FOOTER_LEN as u64 {
            return Err(Error::corruption(path, 0, "file shorter than the footer"));
        }
        let foff = size - FOOTER_LEN as u64;
        let footer = file
            .read_at(foff, FOOTER_LEN)
            .map_err(|e| Error::io(path, e))?;
        let bad = |why: &str| Error::corruption(path, foff, why.to_string());
        if get_u64(&footer, 72) != Some(MAGIC) {
            return Err(bad("bad magic number"));
        }
        if get_u32(&footer, 68) != Some(crc32c::crc32c(&footer[..68])) {
            return Err(bad("footer checksum mismatch"));
        }
        if get_u32(&footer, 64) != Some(FORMAT_VERSION) {
            return Err(bad("unsupported format version"));
        }
        let h = |i: usize| Handle {
            offset: get_u64(&footer, i * 16).unwrap_or(0),
            len: get_u64(&footer, i * 16 + 8).unwrap_or(0),
        };
        let (index_h, bloom_h, tomb_h) = (h(0), h(1), h(2));

        let index_data = read_checked(&*file, path, index_h)?;
        let index = Block::decode(index_data)
            .ok_or_else(|| Error::corruption(path, index_h.offset, "malformed index block"))?;
        let bloom_data = read_checked(&*file, path, bloom_h)?;
        let bloom = bloom::decode(&bloom_data)
            .ok_or_else(|| Error::corruption(path, bloom_h.offset, "malformed bloom filter"))?;
        let tomb_data = read_checked(&*file, path, tomb_h)?;
        let tombs = decode_tombs(&tomb_data)
            .ok_or_else(|| Error::corruption(path, tomb_h.offset, "malformed range tombstones"))?;
        // Properties are checked for integrity; the manifest holds the copy the engine uses.
        read_checked(&*file, path, h(3))?;
        Ok(Table {
            id,
            path: path.to_path_buf(),
            file,
            index: Arc::new(index),
            bloom,
            frags: Fragments::new(&tombs),
            tombs,
            cache,
            counters,
        })
    }

    fn read_block(&self, h: Handle, fill_cache: bool) -> Result<Arc<Block>> {
        if let Some(b) = self.cache.get(self.id, h.offset) {
            Counters::add(&self.counters.cache_hits, 1);
            return Ok(b);
        }
        Counters::add(&self.counters.cache_misses, 1);
        let data = read_checked(&*self.file, &self.path, h)?;
        let block = Arc::new(
            Block::decode(data)
                .ok_or_else(|| Error::corruption(&self.path, h.offset, "malformed data block"))?,
        );
        if fill_cache {
            self.cache.insert(self.id, h.offset, block.clone());
        }
        Ok(block)
    }

    fn corrupt(&self, offset: u64, why: &str) -> Error {
        Error::corruption(&self.path, offset, why.to_string())
    }

    /// The range tombstones stored in the table.
    pub(crate) fn range_tombstones(&self) -> &[RangeTombstone] {
        &self.tombs
    }

    /// Highest covering range tombstone seq `<= snap` for `user` (0 if none).
    pub(crate) fn max_tomb_seq(&self, user: &[u8], snap: u64) -> u64 {
        if self.frags.is_empty() {
            return 0;
        }
        self.frags.max_covering(user, snap)
    }

    /// Loads the filter word of the first bloom probe for `hash`. Calling this for every
    /// candidate table before probing any lets the CPU overlap their cache misses.
    #[inline]
    pub(crate) fn touch_bloom(&self, hash: u64) -> u64 {
        let Some(bloom) = &self.bloom else {
            return 0;
        };
        let bits = bloom.num_bits();
        // fastbloom's first probe is bit `(hash * num_bits) >> 64`.
        let idx = ((u128::from(hash) * bits as u128) >> 64) as usize;
        bloom.as_slice().get(idx / 64).copied().unwrap_or(0)
    }

    /// Newest point version of `user` with seq `<= snap`; `hash` is [`bloom::hash`] of `user`.
    #[cfg(test)]
    pub(crate) fn get(&self, user: &[u8], snap: u64, hash: u64) -> Result<Option<Found>> {
        self.get_lk(&key::LookupKey::new(user, snap), hash)
    }

    /// Newest point version of the lookup key's user key at its snapshot.
    pub(crate) fn get_lk(&self, lk: &key::LookupKey, hash: u64) -> Result<Option<Found>> {
        if self.bloom.as_ref().is_some_and(|b| !b.contains_hash(hash)) {
            Counters::add(&self.counters.bloom_negatives, 1);
            return Ok(None);
        }
        let user = lk.user();
        let target = lk.ikey();
        let mut idx = BlockIter::new(self.index.clone());
        idx.seek(target);
        if !idx.valid() {
            if idx.corrupt() {
                return Err(self.corrupt(0, "malformed index entry"));
            }
            Counters::add(&self.counters.bloom_false_positives, 1);
            return Ok(None);
        }
        let h =
            decode_handle(idx.value()).ok_or_else(|| self.corrupt(0, "malformed block handle"))?;
        let mut it = BlockIter::new(self.read_block(h, true)?);
        it.seek(target);
        if !it.valid() {
            if it.corrupt() {
                return Err(self.corrupt(h.offset, "malformed block entry"));
            }
            Counters::add(&self.counters.bloom_false_positives, 1);
            return Ok(None);
        }
        let (u, seq, kind) = key::split(it.key());
        if u != user {
            Counters::add(&self.counters.bloom_false_positives, 1);
            return Ok(None);
        }
        let kind =
            Kind::from_u8(kind).ok_or_else(|| self.corrupt(h.offset, "unknown record kind"))?;
        Ok(Some(Found {
            seq,
            kind,
            value: it.value_bytes(),
        }))
    }
}

fn decode_tombs(data: &[u8]) -> Option<Vec<RangeTombstone>> {
    let mut p = 0;
    let n = get_varint(data, &mut p)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let start = Bytes::copy_from_slice(get_bytes(data, &mut p)?);
        let end = Bytes::copy_from_slice(get_bytes(data, &mut p)?);
        let seq = get_varint(data, &mut p)?;
        out.push(RangeTombstone { start, end, seq });
    }
    Some(out)
}

/// Iterates one table in internal-key order.
pub(crate) struct TableIter {
    table: Arc<Table>,
    index: BlockIter,
    block: Option<BlockIter>,
    block_off: u64,
    fill_cache: bool,
}

impl TableIter {
    pub(crate) fn new(table: Arc<Table>) -> TableIter {
        Self::with_cache_fill(table, true)
    }

    /// An iterator whose block reads do not displace cached blocks (for compactions).
    pub(crate) fn with_cache_fill(table: Arc<Table>, fill_cache: bool) -> TableIter {
        let index = BlockIter::new(table.index.clone());
        TableIter {
            table,
            index,
            block: None,
            block_off: 0,
            fill_cache,
        }
    }

    // Loads the block the index points at (the index must be valid).
    fn load_block(&mut self) -> Result<()> {
        let h = decode_handle(self.index.value())
            .ok_or_else(|| self.table.corrupt(0, "malformed block handle"))?;
        self.block = Some(BlockIter::new(self.table.read_block(h, self.fill_cache)?));
        self.block_off = h.offset;
        Ok(())
    }

    fn check(&self) -> Result<()> {
        if self.index.corrupt() {
            return Err(self.table.corrupt(0, "malformed index entry"));
        }
        if self.block.as_ref().is_some_and(|b| b.corrupt()) {
            return Err(self.table.corrupt(self.block_off, "malformed block entry"));
        }
        Ok(())
    }

    // Moves forward over exhausted blocks until positioned or at the end.
    fn skip_empty(&mut self) -> Result<()> {
        while self.block.as_ref().is_some_and(|b| !b.valid()) {
            self.check()?;
            self.index.next();
            if !self.index.valid() {
                self.block = None;
                return self.check();
            }
            self.load_block()?;
            if let Some(b) = self.block.as_mut() {
                b.seek_to_first();
            }
        }
        self.check()
    }
}

impl InternalIterator for TableIter {
    fn valid(&self) -> bool {
        self.block.as_ref().is_some_and(|b| b.valid())
    }
    fn key(&self) -> &[u8] {
        self.block.as_ref().map_or(&[][..], |b| b.key())
    }
    fn value(&self) -> &[u8] {
        self.block.as_ref().map_or(&[][..], |b| b.value())
    }
    fn value_bytes(&self) -> Bytes {
        self.block
            .as_ref()
            .map_or_else(Bytes::new, |b| b.value_bytes())
    }
    fn next(&mut self) -> Result<()> {
        if let Some(b) = self.block.as_mut() {
            b.next();
        }
        self.skip_empty()
    }
    fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        self.index.seek(ikey);
        if !self.index.valid() {
            self.block = None;
            return self.check();
        }
        self.load_block()?;
        if let Some(b) = self.block.as_mut() {
            b.seek(ikey);
        }
        self.skip_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sstable::builder::TableBuilder;
    use crate::vfs::RealFs;

    fn build_table(dir: &Path, n: u32) -> (PathBuf, super::super::FileMeta) {
        let path = dir.join("000001.sst");
        let f = RealFs.create(&path).unwrap();
        let mut b = TableBuilder::new(f, path.clone(), 256, 4, 0.01);
        for i in 0..n {
            let k = key::encode(
                format!("k{:06}", i).as_bytes(),
                u64::from(i) + 10,
                Kind::Put,
            );
            b.add(&k, format!("value-{i}").as_bytes()).unwrap();
        }
        b.add_tombstone(RangeTombstone {
            start: Bytes::from_static(b"k000100"),
            end: Bytes::from_static(b"zzz"),
            seq: 5,
        });
        let meta = b.finish(1).unwrap();
        (path, meta)
    }

    fn open(path: &Path) -> Result<Arc<Table>> {
        Table::open(
            &RealFs,
            path,
            1,
            Arc::new(BlockCache::new(1 << 20)),
            Arc::new(Counters::default()),
        )
        .map(Arc::new)
    }

    #[test]
    fn build_get_iterate() {
        let dir = tempfile::tempdir().unwrap();
        let (path, meta) = build_table(dir.path(), 1000);
        assert_eq!(&meta.smallest[..], b"k000000");
        assert_eq!(
            (&meta.largest[..], meta.largest_exclusive),
            (&b"zzz"[..], true)
        );
        assert_eq!((meta.min_seq, meta.max_seq), (5, 1009));
        let t = open(&path).unwrap();
        for i in (0..1000u32).step_by(7) {
            let k = format!("k{:06}", i);
            let f = t
                .get(k.as_bytes(), u64::MAX >> 8, bloom::hash(k.as_bytes()))
                .unwrap()
                .unwrap();
            assert_eq!(f.value, format!("value-{i}").as_bytes());
            // Not visible below its own sequence number.
            assert!(t
                .get(k.as_bytes(), u64::from(i) + 9, bloom::hash(k.as_bytes()))
                .unwrap()
                .is_none());
        }
        assert!(t
            .get(b"nope", 1 << 40, bloom::hash(b"nope"))
            .unwrap()
            .is_none());
        assert_eq!(t.max_tomb_seq(b"k000500", 100), 5);
        assert_eq!(t.max_tomb_seq(b"k000050", 100), 0);
        let mut it = TableIter::new(t.clone());
        it.seek(&key::encode(b"", key::MAX_SEQ, Kind::Put)).unwrap();
        let mut n = 0;
        while it.valid() {
            n += 1;
            it.next().unwrap();
        }
        assert_eq!(n, 1000);
        it.seek(&key::encode(b"k000500", key::MAX_SEQ, Kind::Put))
            .unwrap();
        assert_eq!(key::user_key(it.key()), b"k000500");
    }

    #[test]
    fn flipped_byte_is_reported_with_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = build_table(dir.path(), 1000);
        let mut data = std::fs::read(&path).unwrap();
        data[300] ^= 0x40;
        std::fs::write(&path, &data).unwrap();
        let t = open(&path).unwrap();
        let mut it = TableIter::new(t);
        let mut res = it.seek(&key::encode(b"", key::MAX_SEQ, Kind::Put));
        while res.is_ok() && it.valid() {
            res = it.next();
        }
        match res {
            Err(Error::Corruption { offset, .. }) => assert!(offset <= 300),
            other => panic!("expected corruption, got {other:?}"),
        }
        // A damaged footer fails open.
        let n = data.len();
        data[n - 1] ^= 1;
        std::fs::write(&path, &data).unwrap();
        assert!(matches!(open(&path), Err(Error::Corruption { .. })));
    }
}
