//! Reads of consumer groups at a snapshot (XPENDING, XINFO, the XREADGROUP pre-checks):
//! point lookups and range scans over the group records, never a load of the stream.

use super::group::{self, ConsumerRec, GroupRec, Nack};
use super::StreamId;
use crate::storage::encoding::{self, Meta};
use crate::storage::{ReadView, Result, StorageError};
use bytes::Bytes;
use std::ops::Bound;

impl ReadView<'_> {
    /// Visits `(field, value)` of `key`'s records with `from <= field < to` while `f` is true.
    fn aux_scan(
        &self,
        key: &[u8],
        meta: &Meta,
        from: &[u8],
        to: &[u8],
        mut f: impl FnMut(&[u8], Bytes) -> Result<bool>,
    ) -> Result<()> {
        let plen = encoding::sub_prefix(key, meta.version).len();
        let iter = self.db.inner.engine.scan(
            (
                Bound::Included(encoding::sub_key(key, meta.version, from)),
                Bound::Excluded(encoding::sub_key(key, meta.version, to)),
            ),
            Some(&self.snap),
        )?;
        for item in iter {
            let (k, v) = item?;
            if !f(&k[plen..], v)? {
                break;
            }
        }
        Ok(())
    }

    /// The group `name` of the stream, if it exists.
    pub fn stream_group(&self, key: &[u8], meta: &Meta, name: &[u8]) -> Result<Option<GroupRec>> {
        match self.sub_get(key, meta, &group::group_field(name))? {
            None => Ok(None),
            Some(raw) => Ok(Some(
                GroupRec::decode(&raw).ok_or(StorageError::Corrupt("stream group record"))?,
            )),
        }
    }

    /// Every group in name order.
    pub fn stream_groups(&self, key: &[u8], meta: &Meta) -> Result<Vec<(Bytes, GroupRec)>> {
        let p = group::groups_prefix();
        let mut out = Vec::new();
        self.aux_scan(key, meta, &p, &group::prefix_end(&p), |f, v| {
            let g = GroupRec::decode(&v).ok_or(StorageError::Corrupt("stream group record"))?;
            out.push((Bytes::copy_from_slice(&f[p.len()..]), g));
            Ok(true)
        })?;
        Ok(out)
    }

    /// The consumer `name` of `group`, if it exists.
    pub fn stream_consumer(
        &self,
        key: &[u8],
        meta: &Meta,
        group: &[u8],
        name: &[u8],
    ) -> Result<Option<ConsumerRec>> {
        match self.sub_get(key, meta, &group::consumer_field(group, name))? {
            None => Ok(None),
            Some(raw) => Ok(Some(
                ConsumerRec::decode(&raw).ok_or(StorageError::Corrupt("stream consumer record"))?,
            )),
        }
    }

    /// Every consumer of `group` in name order.
    pub fn stream_consumers(
        &self,
        key: &[u8],
        meta: &Meta,
        group: &[u8],
    ) -> Result<Vec<(Bytes, ConsumerRec)>> {
        let p = group::consumers_prefix(group);
        let mut out = Vec::new();
        self.aux_scan(key, meta, &p, &group::prefix_end(&p), |f, v| {
            let c =
                ConsumerRec::decode(&v).ok_or(StorageError::Corrupt("stream consumer record"))?;
            out.push((Bytes::copy_from_slice(&f[p.len()..]), c));
            Ok(true)
        })?;
        Ok(out)
    }

    /// The pending entry `id` of `group`.
    pub fn stream_nack(
        &self,
        key: &[u8],
        meta: &Meta,
        group: &[u8],
        id: StreamId,
    ) -> Result<Option<Nack>> {
        match self.sub_get(key, meta, &group::pel_field(group, id))? {
            None => Ok(None),
            Some(raw) => Ok(Some(
                Nack::decode(&raw).ok_or(StorageError::Corrupt("stream PEL record"))?,
            )),
        }
    }

    /// Visits the pending entries with `lo <= id <= hi` of `group` (or only those of
    /// `consumer`) in id order while `f` is true.
    #[allow(clippy::too_many_arguments)]
    pub fn stream_pel(
        &self,
        key: &[u8],
        meta: &Meta,
        group: &[u8],
        consumer: Option<&[u8]>,
        lo: StreamId,
        hi: StreamId,
        mut f: impl FnMut(StreamId, Nack) -> bool,
    ) -> Result<()> {
        if lo > hi {
            return Ok(());
        }
        let p = match consumer {
            Some(c) => group::cpel_prefix(group, c),
            None => group::pel_prefix(group),
        };
        let mut from = p.clone();
        from.extend_from_slice(&lo.to_field());
        self.aux_scan(key, meta, &from, &group::prefix_end(&p), |field, v| {
            let Some(id) = group::id_suffix(field) else {
                return Ok(true);
            };
            if id > hi {
                return Ok(false);
            }
            let nack = match consumer {
                None => Nack::decode(&v).ok_or(StorageError::Corrupt("stream PEL record"))?,
                Some(_) => match self.stream_nack(key, meta, group, id)? {
                    Some(n) => n,
                    None => return Ok(true),
                },
            };
            Ok(f(id, nack))
        })
    }

    /// The largest id among records `prefix · id` below `to`, found by a descent over the
    /// id's 128 bits (one-record seeks: no reverse scan, no load of the range).
    fn last_id_under(
        &self,
        key: &[u8],
        meta: &Meta,
        prefix: &[u8],
        to: &[u8],
    ) -> Result<Option<StreamId>> {
        let at = |id: u128| {
            let mut f = prefix.to_vec();
            f.extend_from_slice(&id.to_be_bytes());
            f
        };
        let any_from = |id: u128| -> Result<bool> {
            let mut found = false;
            self.aux_scan(key, meta, &at(id), to, |_, _| {
                found = true;
                Ok(false)
            })?;
            Ok(found)
        };
        if !any_from(0)? {
            return Ok(None);
        }
        // Invariant: some record has an id >= lo.
        let mut lo: u128 = 0;
        for bit in (0..128).rev() {
            let probe = lo | (1u128 << bit);
            if any_from(probe)? {
                lo = probe;
            }
        }
        Ok(Some(StreamId {
            ms: (lo >> 64) as u64,
            seq: lo as u64,
        }))
    }

    /// The largest pending id of `group`.
    pub fn stream_pel_last(
        &self,
        key: &[u8],
        meta: &Meta,
        group: &[u8],
    ) -> Result<Option<StreamId>> {
        let p = group::pel_prefix(group);
        self.last_id_under(key, meta, &p, &group::prefix_end(&p))
    }

    /// The newest entry's id.
    pub fn stream_last_entry_id(&self, key: &[u8], meta: &Meta) -> Result<Option<StreamId>> {
        // Entries end where the group records (`AUX · tag`) begin.
        let mut to = group::AUX.to_vec();
        to.push(0);
        self.last_id_under(key, meta, &[], &to)
    }

    /// True when the stream has an entry with an id greater than `id`.
    pub fn stream_has_after(&self, key: &[u8], meta: &Meta, id: StreamId) -> Result<bool> {
        let Some(lo) = id.incr() else {
            return Ok(false);
        };
        Ok(!self
            .stream_range(key, meta, lo, super::MAX_ID, false, Some(1))?
            .is_empty())
    }
}
