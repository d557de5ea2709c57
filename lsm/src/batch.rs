//! Atomic write batches.

use bytes::Bytes;

/// One operation inside a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    /// Set `key` to `value` (an empty value is a real value).
    Put(Bytes, Bytes),
    /// Delete `key`.
    Delete(Bytes),
    /// Delete every key in `[start, end)`.
    DeleteRange(Bytes, Bytes),
}

/// Puts, deletes and range deletes applied all-or-nothing, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a put.
    pub fn put(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> &mut Self {
        self.ops.push(BatchOp::Put(key.into(), value.into()));
        self
    }
    /// Adds a point delete.
    pub fn delete(&mut self, key: impl Into<Bytes>) -> &mut Self {
        self.ops.push(BatchOp::Delete(key.into()));
        self
    }
    /// Adds a delete of `[start, end)`.
    pub fn delete_range(&mut self, start: impl Into<Bytes>, end: impl Into<Bytes>) -> &mut Self {
        self.ops
            .push(BatchOp::DeleteRange(start.into(), end.into()));
        self
    }
    /// The operations in order.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }
    /// Consumes the batch into its operations.
    pub fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }
    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// Bytes of keys and values carried, for write-amplification accounting.
    pub fn payload_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| match op {
                BatchOp::Put(k, v) => k.len() + v.len(),
                BatchOp::Delete(k) => k.len(),
                BatchOp::DeleteRange(s, e) => s.len() + e.len(),
            } as u64)
            .sum()
    }
}
