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
    /// An empty batch with room for `n` operations.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            ops: Vec::with_capacity(n),
        }
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
    /// Operation `i`, to overwrite in place (a writer that reserved a key's place in the
    /// order and settles its value later).
    pub fn op_mut(&mut self, i: usize) -> Option<&mut BatchOp> {
        self.ops.get_mut(i)
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
    /// Drops every put or delete shadowed by a later put or delete of the same key (a list's
    /// metadata rewritten by each of a pipeline's pushes): readers see a batch whole, so only
    /// the last write of a key is ever visible, and the others would only be logged, inserted
    /// and flushed. A batch with a range delete is left as it is (order matters there).
    pub fn drop_shadowed(&mut self) {
        if self.ops.len() < 3 {
            return;
        }
        let mut seen: std::collections::HashSet<&[u8], foldhash::fast::RandomState> =
            std::collections::HashSet::with_capacity_and_hasher(self.ops.len(), Default::default());
        let mut keep = Vec::with_capacity(self.ops.len());
        for op in self.ops.iter().rev() {
            match op {
                BatchOp::Put(k, _) | BatchOp::Delete(k) => keep.push(seen.insert(k.as_ref())),
                BatchOp::DeleteRange(..) => return,
            }
        }
        drop(seen);
        if keep.iter().all(|k| *k) {
            return;
        }
        // `keep` runs from the last op to the first.
        let mut it = keep.into_iter().rev();
        self.ops.retain(|_| it.next().unwrap_or(true));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_shadowed_keeps_the_last_write_of_each_key_in_order() {
        let mut b = WriteBatch::new();
        b.put("m", "1")
            .put("a", "x")
            .put("m", "2")
            .delete("a")
            .put("b", "y");
        b.put("m", "3");
        b.drop_shadowed();
        assert_eq!(
            b.ops(),
            &[
                BatchOp::Delete(Bytes::from("a")),
                BatchOp::Put(Bytes::from("b"), Bytes::from("y")),
                BatchOp::Put(Bytes::from("m"), Bytes::from("3")),
            ]
        );
    }

    #[test]
    fn drop_shadowed_leaves_batches_with_range_deletes() {
        let mut b = WriteBatch::new();
        b.put("a", "1").delete_range("a", "b").put("a", "2");
        let before = b.clone();
        b.drop_shadowed();
        assert_eq!(b, before);
    }
}
