//! Writes one SSTable through the VFS.

use super::block::BlockBuilder;
use super::{bloom, FileMeta, Handle, FORMAT_VERSION, MAGIC};
use crate::coding::{put_bytes, put_varint};
use crate::key::{self, RangeTombstone};
use crate::vfs::WritableFile;
use crate::{Error, Result};
use bytes::Bytes;
use std::path::PathBuf;

const WRITE_BUFFER: usize = 256 << 10;

/// Accepts records in internal-key order and writes a table.
pub(crate) struct TableBuilder {
    file: Box<dyn WritableFile>,
    path: PathBuf,
    offset: u64,
    // Finished blocks not yet handed to the file.
    out: Vec<u8>,
    block: BlockBuilder,
    index: BlockBuilder,
    block_size: usize,
    fp_rate: f64,
    hashes: Vec<u64>,
    first_user: Option<Vec<u8>>,
    last_user: Vec<u8>,
    tombs: Vec<RangeTombstone>,
    entries: u64,
    min_seq: u64,
    max_seq: u64,
}

impl TableBuilder {
    /// A builder writing to `file` (already created at `path`).
    pub(crate) fn new(
        file: Box<dyn WritableFile>,
        path: PathBuf,
        block_size: usize,
        restart_interval: usize,
        fp_rate: f64,
    ) -> TableBuilder {
        TableBuilder {
            file,
            path,
            offset: 0,
            out: Vec::new(),
            block: BlockBuilder::new(restart_interval),
            index: BlockBuilder::new(1),
            block_size: block_size.max(64),
            fp_rate,
            hashes: Vec::new(),
            first_user: None,
            last_user: Vec::new(),
            tombs: Vec::new(),
            entries: 0,
            min_seq: u64::MAX,
            max_seq: 0,
        }
    }

    /// Adds a point record; internal keys must be strictly increasing.
    pub(crate) fn add(&mut self, ikey: &[u8], value: &[u8]) -> Result<()> {
        let (user, seq, _) = key::split(ikey);
        if self.first_user.is_none() {
            self.first_user = Some(user.to_vec());
            self.hashes.push(bloom::hash(user));
        } else if self.last_user != user {
            self.hashes.push(bloom::hash(user));
        }
        if self.last_user != user {
            self.last_user.clear();
            self.last_user.extend_from_slice(user);
        }
        self.min_seq = self.min_seq.min(seq);
        self.max_seq = self.max_seq.max(seq);
        self.entries += 1;
        self.block.add(ikey, value);
        if self.block.estimated_size() >= self.block_size {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Adds a range tombstone (any order).
    pub(crate) fn add_tombstone(&mut self, t: RangeTombstone) {
        self.min_seq = self.min_seq.min(t.seq);
        self.max_seq = self.max_seq.max(t.seq);
        self.tombs.push(t);
    }

    /// True when neither a record nor a tombstone was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries == 0 && self.tombs.is_empty()
    }

    /// Bytes written so far plus the pending block.
    pub(crate) fn estimated_size(&self) -> u64 {
        self.offset + self.block.estimated_size() as u64
    }

    /// The last user key added.
    pub(crate) fn last_user_key(&self) -> &[u8] {
        &self.last_user
    }

    fn write_block(&mut self, data: &[u8]) -> Result<Handle> {
        let h = Handle {
            offset: self.offset,
            len: data.len() as u64,
        };
        let crc = crc32c::crc32c(data);
        self.out.extend_from_slice(data);
        self.out.extend_from_slice(&crc.to_le_bytes());
        self.offset += data.len() as u64 + 4;
        if self.out.len() >= WRITE_BUFFER {
            self.drain()?;
        }
        Ok(h)
    }

    // Hands buffered bytes to the file (one append per ~256 KiB rather than per block).
    fn drain(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.file
                .append(&self.out)
                .map_err(|e| Error::io(&self.path, e))?;
            self.out.clear();
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let last = self.block.last_key().to_vec();
        let data = self.block.finish();
        let h = self.write_block(&data)?;
        let mut hv = Vec::with_capacity(16);
        put_varint(&mut hv, h.offset);
        put_varint(&mut hv, h.len);
        self.index.add(&last, &hv);
        Ok(())
    }

    /// Writes the meta blocks and the footer, fsyncs, and describes the table as file `id`.
    pub(crate) fn finish(mut self, id: u64) -> Result<FileMeta> {
        self.flush_block()?;
        let filter = bloom::build(&self.hashes, self.fp_rate);
        let bloom_h = self.write_block(&filter)?;

        self.tombs
            .sort_by(|a, b| a.start.cmp(&b.start).then(b.seq.cmp(&a.seq)));
        let mut tb = Vec::new();
        put_varint(&mut tb, self.tombs.len() as u64);
        for t in &self.tombs {
            put_bytes(&mut tb, &t.start);
            put_bytes(&mut tb, &t.end);
            put_varint(&mut tb, t.seq);
        }
        let tomb_h = self.write_block(&tb)?;

        // Key range covers records and tombstones.
        let mut smallest: Option<&[u8]> = self.first_user.as_deref();
        let mut largest: Option<(&[u8], bool)> = self
            .first_user
            .as_ref()
            .map(|_| (&self.last_user[..], false));
        for t in &self.tombs {
            if smallest.is_none_or(|s| t.start.as_ref() < s) {
                smallest = Some(&t.start);
            }
            if largest.is_none_or(|(l, _)| t.end.as_ref() > l) {
                largest = Some((&t.end, true));
            }
        }
        let smallest = Bytes::copy_from_slice(smallest.unwrap_or(&[]));
        let (largest, largest_exclusive) = largest.unwrap_or((&[], false));
        let largest = Bytes::copy_from_slice(largest);
        let (min_seq, max_seq) = if self.min_seq == u64::MAX {
            (0, 0)
        } else {
            (self.min_seq, self.max_seq)
        };

        let mut props = Vec::new();
        put_varint(&mut props, self.entries);
        put_varint(&mut props, self.tombs.len() as u64);
        put_varint(&mut props, min_seq);
        put_varint(&mut props, max_seq);
        put_bytes(&mut props, &smallest);
        put_bytes(&mut props, &largest);
        props.push(u8::from(largest_exclusive));
        let props_h = self.write_block(&props)?;

        let index = self.index.finish();
        let index_h = self.write_block(&index)?;

        let mut footer = Vec::with_capacity(super::FOOTER_LEN);
        for h in [index_h, bloom_h, tomb_h, props_h] {
            footer.extend_from_slice(&h.offset.to_le_bytes());
            footer.extend_from_slice(&h.len.to_le_bytes());
        }
        footer.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let crc = crc32c::crc32c(&footer);
        footer.extend_from_slice(&crc.to_le_bytes());
        footer.extend_from_slice(&MAGIC.to_le_bytes());
        debug_assert_eq!(footer.len(), super::FOOTER_LEN);
        self.out.extend_from_slice(&footer);
        self.drain()?;
        self.file.sync().map_err(|e| Error::io(&self.path, e))?;
        self.offset += footer.len() as u64;
        Ok(FileMeta {
            id,
            size: self.offset,
            smallest,
            largest,
            largest_exclusive,
            min_seq,
            max_seq,
        })
    }
}
