//! Sorted string tables.
//!
//! Layout: `data blocks | bloom | range tombstones | properties | index | footer`. Every block
//! is followed by its CRC32C. The index holds, per data block, the block's last internal key
//! and its handle. The 80-byte footer holds the four meta handles, the format version, a
//! CRC32C of the footer and the magic number.

pub(crate) mod block;
pub(crate) mod bloom;
pub(crate) mod builder;
pub(crate) mod cache;
pub(crate) mod reader;

use bytes::Bytes;

/// Identifies Pinnacle tables ("PINNLSM1").
pub(crate) const MAGIC: u64 = u64::from_be_bytes(*b"PINNLSM1");
/// On-disk format version.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Footer size in bytes.
pub(crate) const FOOTER_LEN: usize = 80;

/// Where a block lives in its file (length excludes the 4-byte checksum).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Handle {
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// What the engine remembers about one table (also stored in the manifest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// File number.
    pub id: u64,
    /// File size in bytes.
    pub size: u64,
    /// Smallest user key of any record or range tombstone.
    pub smallest: Bytes,
    /// Largest user key; exclusive when it is only the end of a range tombstone.
    pub largest: Bytes,
    /// Whether `largest` itself is outside the file's range.
    pub largest_exclusive: bool,
    /// Lowest sequence number stored.
    pub min_seq: u64,
    /// Highest sequence number stored.
    pub max_seq: u64,
}

impl FileMeta {
    /// True when `key` is inside the file's key range.
    #[inline]
    pub fn contains(&self, key: &[u8]) -> bool {
        self.smallest.as_ref() <= key && !self.before(key)
    }

    /// True when every key of the file is below `key`.
    #[inline]
    pub fn before(&self, key: &[u8]) -> bool {
        if self.largest_exclusive {
            self.largest.as_ref() <= key
        } else {
            self.largest.as_ref() < key
        }
    }
}

/// The on-disk name of table `id`.
pub(crate) fn table_name(id: u64) -> String {
    format!("{id:06}.sst")
}
