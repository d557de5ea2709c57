//! One consumer group's state while an op applies ([`Group`]): its record, the consumers
//! it touched and the PEL moves, written back together; plus the pre-command scans the
//! group ops use.

use super::group::{self, ConsumerRec, GroupRec, Nack};
use super::StreamId;
use crate::storage::apply::Tx;
use crate::storage::encoding::{self, Meta};
use crate::storage::{Result, StorageError};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Bound;

/// One group's state during an apply: its record and the consumers touched, written back
/// by [`Group::flush`].
pub(in crate::storage::stream) struct Group {
    pub(in crate::storage::stream) key: Bytes,
    pub(in crate::storage::stream) version: u64,
    pub(in crate::storage::stream) name: Bytes,
    pub(in crate::storage::stream) rec: GroupRec,
    /// Consumer name → (record, exists, changed).
    pub(in crate::storage::stream) consumers: BTreeMap<Bytes, (ConsumerRec, bool, bool)>,
}

impl Group {
    pub(in crate::storage::stream) fn load(
        tx: &mut Tx<'_>,
        key: &Bytes,
        m: &Meta,
        name: &Bytes,
    ) -> Result<Option<Group>> {
        let Some(raw) = tx.sub_get(key, m.version, &group::group_field(name))? else {
            return Ok(None);
        };
        let rec = GroupRec::decode(&raw).ok_or(StorageError::Corrupt("stream group record"))?;
        Ok(Some(Group {
            key: key.clone(),
            version: m.version,
            name: name.clone(),
            rec,
            consumers: BTreeMap::new(),
        }))
    }

    /// The consumer's record if it exists.
    pub(in crate::storage::stream) fn consumer(
        &mut self,
        tx: &mut Tx<'_>,
        name: &Bytes,
    ) -> Result<Option<ConsumerRec>> {
        if let Some((c, exists, _)) = self.consumers.get(name) {
            return Ok(exists.then_some(*c));
        }
        let f = group::consumer_field(&self.name, name);
        let got = match tx.sub_get(&self.key, self.version, &f)? {
            Some(raw) => Some(
                ConsumerRec::decode(&raw).ok_or(StorageError::Corrupt("stream consumer record"))?,
            ),
            None => None,
        };
        self.consumers.insert(
            name.clone(),
            (got.unwrap_or_default(), got.is_some(), false),
        );
        Ok(got)
    }

    /// Looks the consumer up (refreshing its seen time, `SLC_DEFAULT`) or creates it.
    pub(in crate::storage::stream) fn touch_consumer(
        &mut self,
        tx: &mut Tx<'_>,
        name: &Bytes,
    ) -> Result<()> {
        let now = tx.now;
        let existed = self.consumer(tx, name)?.is_some();
        if !existed {
            self.rec.consumers += 1;
        }
        if let Some(e) = self.consumers.get_mut(name) {
            e.0.seen = now;
            e.1 = true;
            e.2 = true;
        }
        Ok(())
    }

    pub(in crate::storage::stream) fn adjust_pel(
        &mut self,
        tx: &mut Tx<'_>,
        consumer: &Bytes,
        up: bool,
    ) -> Result<()> {
        self.consumer(tx, consumer)?;
        if let Some(e) = self.consumers.get_mut(consumer) {
            e.0.pel = if up {
                e.0.pel + 1
            } else {
                e.0.pel.saturating_sub(1)
            };
            e.2 = true;
        }
        Ok(())
    }

    pub(in crate::storage::stream) fn nack(
        &self,
        tx: &mut Tx<'_>,
        id: StreamId,
    ) -> Result<Option<Nack>> {
        let f = group::pel_field(&self.name, id);
        match tx.sub_get(&self.key, self.version, &f)? {
            Some(raw) => Ok(Some(
                Nack::decode(&raw).ok_or(StorageError::Corrupt("stream PEL record"))?,
            )),
            None => Ok(None),
        }
    }

    /// Removes a pending entry from both PELs.
    pub(in crate::storage::stream) fn drop_nack(
        &mut self,
        tx: &mut Tx<'_>,
        id: StreamId,
        n: &Nack,
    ) -> Result<()> {
        tx.sub_del(&self.key, self.version, &group::pel_field(&self.name, id));
        tx.sub_del(
            &self.key,
            self.version,
            &group::cpel_field(&self.name, &n.consumer, id),
        );
        self.rec.pel = self.rec.pel.saturating_sub(1);
        self.adjust_pel(tx, &n.consumer, false)
    }

    /// Makes `consumer` own `id` (moving it from its old owner) with this time and count.
    pub(in crate::storage::stream) fn assign(
        &mut self,
        tx: &mut Tx<'_>,
        id: StreamId,
        old: Option<&Nack>,
        consumer: &Bytes,
        time: u64,
        count: u64,
    ) -> Result<()> {
        let moved = match old {
            Some(n) if n.consumer == *consumer => false,
            Some(n) => {
                tx.sub_del(
                    &self.key,
                    self.version,
                    &group::cpel_field(&self.name, &n.consumer, id),
                );
                self.adjust_pel(tx, &n.consumer, false)?;
                true
            }
            None => {
                self.rec.pel += 1;
                true
            }
        };
        if moved {
            tx.sub_put(
                &self.key,
                self.version,
                &group::cpel_field(&self.name, consumer, id),
                Bytes::new(),
            );
            self.adjust_pel(tx, consumer, true)?;
        }
        let nack = Nack {
            time,
            count,
            consumer: consumer.clone(),
        };
        tx.sub_put(
            &self.key,
            self.version,
            &group::pel_field(&self.name, id),
            nack.encode(),
        );
        Ok(())
    }

    pub(in crate::storage::stream) fn flush(self, tx: &mut Tx<'_>) {
        tx.sub_put(
            &self.key,
            self.version,
            &group::group_field(&self.name),
            self.rec.encode(),
        );
        for (name, (c, exists, changed)) in self.consumers {
            if exists && changed {
                tx.sub_put(
                    &self.key,
                    self.version,
                    &group::consumer_field(&self.name, &name),
                    c.encode(),
                );
            }
        }
    }
}

/// Records `(field, value)` of `key`@`version` with `from <= field < to`, with this Tx's
/// earlier writes applied, at most `limit`.
pub(in crate::storage::stream) fn scan(
    tx: &Tx<'_>,
    key: &[u8],
    version: u64,
    from: &[u8],
    to: &[u8],
    limit: usize,
) -> Result<Vec<(Bytes, Bytes)>> {
    let plen = encoding::sub_prefix(key, version).len();
    let start = encoding::sub_key(key, version, from);
    let end = encoding::sub_key(key, version, to);
    // A transaction's earlier commands may have written here: read the merged view.
    if tx.pending_in(&start, &end) {
        return Ok(tx
            .scan_merged(start, end)?
            .into_iter()
            .take(limit)
            .map(|(k, v)| (k.slice(plen..), v))
            .collect());
    }
    let iter = tx
        .db
        .inner
        .engine
        .scan((Bound::Included(start), Bound::Excluded(end)), None)?;
    let mut out = Vec::new();
    for item in iter {
        if out.len() >= limit {
            break;
        }
        let (k, v) = item?;
        out.push((k.slice(plen..), v));
    }
    Ok(out)
}

/// The stream entry `id`, if it exists.
pub(in crate::storage::stream) fn entry(
    tx: &mut Tx<'_>,
    key: &[u8],
    version: u64,
    id: StreamId,
) -> Result<Option<Bytes>> {
    tx.sub_get(key, version, &id.to_field())
}
