//! Iterators over internal keys: the common trait, the heap merge, and the user-facing
//! iterator that applies a snapshot, hides shadowed versions and tombstones.

mod merge;
mod user;

pub(crate) use merge::MergeIter;
pub(crate) use user::UserIter;

use crate::Result;
use bytes::Bytes;
use std::ops::Bound;

/// A cursor over internal-key-ordered records.
///
/// A new iterator is unpositioned (invalid) until `seek` is called.
pub(crate) trait InternalIterator: Send {
    /// True when positioned on a record.
    fn valid(&self) -> bool;
    /// The current internal key (only when valid).
    fn key(&self) -> &[u8];
    /// The current value (only when valid).
    fn value(&self) -> &[u8];
    /// The current value as shared bytes (zero-copy when the source allows it).
    fn value_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.value())
    }
    /// Like [`InternalIterator::value_bytes`], for a caller that reads the current value no
    /// more and moves on: a buffering source may hand over its copy instead of cloning it.
    fn take_value(&mut self) -> Bytes {
        self.value_bytes()
    }
    /// Advances to the next record.
    fn next(&mut self) -> Result<()>;
    /// True when the source itself stops before any user key past `end` (it was built with
    /// that bound), so a merge ending there need not check its records.
    fn bounded_by(&self, _end: &Bound<Bytes>) -> bool {
        false
    }
    /// Advances past every record of the current record's user key (only when valid);
    /// `scratch` is the caller's buffer for a copy of that key, which a source that can
    /// compare in place never makes.
    fn skip_user(&mut self, scratch: &mut Vec<u8>) -> Result<()> {
        scratch.clear();
        scratch.extend_from_slice(crate::key::user_key(self.key()));
        self.next()?;
        while self.valid() && crate::key::same_user(self.key(), scratch) {
            self.next()?;
        }
        Ok(())
    }
    /// Positions on the first record `>= ikey`.
    fn seek(&mut self, ikey: &[u8]) -> Result<()>;
}

/// An iterator over a sorted list of records (used in tests and for small sources).
#[cfg(test)]
pub(crate) struct VecIter {
    items: Vec<(Vec<u8>, Vec<u8>)>,
    pos: usize,
}

#[cfg(test)]
impl VecIter {
    pub(crate) fn new(mut items: Vec<(Vec<u8>, Vec<u8>)>) -> VecIter {
        items.sort_by(|a, b| crate::key::compare(&a.0, &b.0));
        let pos = items.len();
        VecIter { items, pos }
    }
}

#[cfg(test)]
impl InternalIterator for VecIter {
    fn valid(&self) -> bool {
        self.pos < self.items.len()
    }
    fn key(&self) -> &[u8] {
        &self.items[self.pos].0
    }
    fn value(&self) -> &[u8] {
        &self.items[self.pos].1
    }
    fn next(&mut self) -> Result<()> {
        self.pos += 1;
        Ok(())
    }
    fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        self.pos = self
            .items
            .partition_point(|(k, _)| crate::key::compare(k, ikey).is_lt());
        Ok(())
    }
}
