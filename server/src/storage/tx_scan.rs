//! Range reads inside a [`Tx`] that see the Tx's own pending writes.
//!
//! A Tx may hold several commands: a Raft node applies a whole `MULTI`/`EXEC` (and a single
//! node a pipeline's run) as one Tx, so that readers see all of it or none. Point reads already
//! look at `Tx::subs` first; range reads (a whole collection, a sorted set's score index, a
//! stream range) merge the LSM's records with the pending ones here, so `ZADD` then
//! `ZPOPMIN` in one transaction pops what the `ZADD` added, as in Redis.

use super::apply::{FastMap, Tx};
use super::Result;
use bytes::Bytes;
use pinnacle_lsm::BatchOp;
use std::collections::BTreeMap;
use std::ops::Bound;

impl Tx<'_> {
    /// Writes `k` = `v` in this Tx's batch; later reads of this Tx see it.
    pub(super) fn pend_put(&mut self, k: Bytes, v: Bytes) {
        self.unindexed.push(self.batch.len());
        self.batch.put(k, v);
    }

    /// Deletes `k` in this Tx's batch; later reads of this Tx see it gone.
    pub(super) fn pend_del(&mut self, k: Bytes) {
        self.unindexed.push(self.batch.len());
        self.batch.delete(k);
    }

    /// The pending sub-key writes by key, after indexing those written since the last call.
    pub(super) fn subs(&mut self) -> &mut FastMap<Bytes, Option<Bytes>> {
        let ops = self.batch.ops();
        for i in self.unindexed.drain(..) {
            match ops.get(i) {
                Some(BatchOp::Put(k, v)) => self.subs.insert(k.clone(), Some(v.clone())),
                Some(BatchOp::Delete(k)) => self.subs.insert(k.clone(), None),
                _ => None,
            };
        }
        &mut self.subs
    }

    /// The pending sub-key writes not yet in `subs`, oldest first.
    fn unindexed_ops(&self) -> impl Iterator<Item = (&Bytes, Option<&Bytes>)> {
        let ops = self.batch.ops();
        self.unindexed.iter().filter_map(|&i| match ops.get(i) {
            Some(BatchOp::Put(k, v)) => Some((k, Some(v))),
            Some(BatchOp::Delete(k)) => Some((k, None)),
            _ => None,
        })
    }

    /// True if this Tx holds a pending record in `[start, end)`.
    pub(super) fn pending_in(&self, start: &[u8], end: &[u8]) -> bool {
        let within = |k: &Bytes| k.as_ref() >= start && k.as_ref() < end;
        self.subs.keys().any(within) || self.unindexed_ops().any(|(k, _)| within(k))
    }

    /// Every record in `[start, end)` as this Tx sees it: the LSM's, with the Tx's pending
    /// writes applied over them, in key order.
    pub(super) fn scan_merged(&self, start: Bytes, end: Bytes) -> Result<Vec<(Bytes, Bytes)>> {
        let within = |k: &Bytes| k.as_ref() >= start.as_ref() && k.as_ref() < end.as_ref();
        // The indexed writes, then the newer unindexed ones in order (a later one wins).
        let pending: Vec<(&Bytes, Option<&Bytes>)> = self
            .subs
            .iter()
            .map(|(k, v)| (k, v.as_ref()))
            .chain(self.unindexed_ops())
            .filter(|(k, _)| within(k))
            .collect();
        let iter = self
            .db
            .inner
            .engine
            .scan((Bound::Included(start), Bound::Excluded(end)), None)?;
        if pending.is_empty() {
            return iter.map(|item| Ok(item?)).collect();
        }
        let mut all = BTreeMap::new();
        for item in iter {
            let (k, v) = item?;
            all.insert(k, v);
        }
        for (k, v) in pending {
            match v {
                Some(v) => all.insert(k.clone(), v.clone()),
                None => all.remove(k),
            };
        }
        Ok(all.into_iter().collect())
    }
}
