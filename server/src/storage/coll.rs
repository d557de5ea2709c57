//! Shared machinery of the collection types (hashes, sets): versioned sub-keys, reads at a
//! snapshot, copy on RENAME/COPY, and the dispatch of collection write ops.
//!
//! A collection is its metadata record (`version · size`) plus one sub-key per element at
//! `sub_key(key, version, element)`. A new collection takes a fresh version from the apply
//! state (the Raft log index later), so a deleted or overwritten collection's sub-keys are
//! unreachable at once (O(1) DEL) and the compaction filter drops them.

use super::apply::Tx;
use super::encoding::{self, KeyType, Meta, StrEnc};
use super::write::WriteOp;
use super::{dump, hash, list, set, stream, zset, zset_ops, Db, ReadView, Result};
use bytes::Bytes;
use pinnacle_resp::Reply;
use std::ops::Bound;

/// `StrEnc::Raw` in a collection's metadata: Redis would hold it in its big encoding.
pub const BIG: StrEnc = StrEnc::Raw;

/// An empty collection of `kind` with `version` (compact encoding).
pub fn new_meta(kind: KeyType, version: u64) -> Meta {
    Meta {
        kind,
        expire_at: 0,
        version,
        size: 0,
        value: Bytes::new(),
        enc: StrEnc::Auto,
        head: if kind == KeyType::List { LIST_MID } else { 0 },
    }
}

/// Head index of a new list: the middle of the index space, room to grow on both ends.
pub const LIST_MID: u64 = 1 << 63;

impl Tx<'_> {
    /// Hands out a new collection version.
    pub(super) fn alloc_version(&mut self) -> u64 {
        let v = self.next_version;
        self.next_version += 1;
        v
    }

    /// The collection at `key` if it has type `kind`: `Ok(None)` when absent, `Err(WRONGTYPE)`
    /// when another type.
    pub(super) fn get_coll(
        &mut self,
        key: &Bytes,
        kind: KeyType,
    ) -> Result<std::result::Result<Option<Meta>, Reply>> {
        Ok(match self.get(key)? {
            Some(m) if m.kind != kind => Err(Reply::error(super::apply::WRONGTYPE)),
            other => Ok(other),
        })
    }

    /// Like [`Tx::get_coll`] but creates an empty collection when absent.
    pub(super) fn get_or_new(
        &mut self,
        key: &Bytes,
        kind: KeyType,
    ) -> Result<std::result::Result<Meta, Reply>> {
        Ok(match self.get_coll(key, kind)? {
            Err(r) => Err(r),
            Ok(Some(m)) => Ok(m),
            Ok(None) => {
                let v = self.alloc_version();
                Ok(new_meta(kind, v))
            }
        })
    }

    /// Writes a collection's metadata, deleting the key when it became empty.
    pub(super) fn put_coll(&mut self, key: &Bytes, meta: Meta) {
        if meta.size == 0 {
            self.delete(key);
        } else {
            self.put(key, meta);
        }
    }

    /// One element's stored value, seeing this command's own writes.
    pub(super) fn sub_get(
        &mut self,
        key: &[u8],
        version: u64,
        field: &[u8],
    ) -> Result<Option<Bytes>> {
        self.sub_get_key(&encoding::sub_key(key, version, field))
    }

    /// [`Tx::sub_get`] of an encoded sub-key.
    pub(super) fn sub_get_key(&mut self, sk: &Bytes) -> Result<Option<Bytes>> {
        if let Some(v) = self.subs().get(sk) {
            return Ok(v.clone());
        }
        Ok(self.db.inner.engine.get(sk)?)
    }

    /// Stores one element.
    pub(super) fn sub_put(&mut self, key: &[u8], version: u64, field: &[u8], value: Bytes) {
        self.pend_put(encoding::sub_key(key, version, field), value);
    }

    /// Removes one element.
    pub(super) fn sub_del(&mut self, key: &[u8], version: u64, field: &[u8]) {
        self.pend_del(encoding::sub_key(key, version, field));
    }

    /// Every element of a collection, with this Tx's earlier writes (a transaction's earlier
    /// commands) applied.
    pub(super) fn sub_all(&self, key: &[u8], version: u64) -> Result<Vec<(Bytes, Bytes)>> {
        let start = encoding::sub_prefix(key, version);
        let plen = start.len();
        let end = encoding::sub_prefix(key, version.wrapping_add(1));
        Ok(self
            .scan_merged(start, end)?
            .into_iter()
            .map(|(k, v)| (k.slice(plen..), v))
            .collect())
    }

    /// Puts `meta` (read from `src`) at `dst`; a collection's elements are rewritten under
    /// `dst` with a new version.
    pub(super) fn put_copy(&mut self, src: &Bytes, dst: &Bytes, meta: Meta) -> Result<()> {
        if meta.kind == KeyType::String {
            self.put(dst, meta);
            return Ok(());
        }
        let elems = self.sub_all(src, meta.version)?;
        let version = self.alloc_version();
        for (f, v) in elems {
            if meta.kind == KeyType::ZSet {
                if let Some(s) = zset::stored_score(&v) {
                    self.batch
                        .put(zset::score_key(dst, version, s, &f), Bytes::new());
                }
            }
            self.sub_put(dst, version, &f, v);
        }
        self.put(dst, Meta { version, ..meta });
        Ok(())
    }
}

impl Tx<'_> {
    /// Writes a RESTOREd value at `key` (a collection gets a new version), replacing any value.
    pub(super) fn restore_value(&mut self, key: &Bytes, value: dump::Value, expire_at: u64) {
        let kind = match &value {
            dump::Value::String(s) => {
                self.put(key, Meta::string(s.clone(), expire_at));
                return;
            }
            dump::Value::Hash(_) => KeyType::Hash,
            dump::Value::Set(_) => KeyType::Set,
            dump::Value::List(_) => KeyType::List,
            dump::Value::ZSet(_) => KeyType::ZSet,
            dump::Value::Stream { state, records } => {
                // Entries and consumer groups are sub-keys copied as they are.
                let version = self.alloc_version();
                let mut m = stream::restored_meta(version, state, records);
                m.expire_at = expire_at;
                for (f, v) in records {
                    self.sub_put(key, version, f, v.clone());
                }
                self.put(key, m);
                return;
            }
        };
        let version = self.alloc_version();
        let mut m = new_meta(kind, version);
        m.expire_at = expire_at;
        let mut big = false;
        match value {
            dump::Value::String(_) => {}
            dump::Value::Hash(pairs) => {
                for (f, v) in pairs {
                    big |= f.len() > hash::MAX_LISTPACK_VALUE || v.len() > hash::MAX_LISTPACK_VALUE;
                    if self.sub_get(key, version, &f).ok().flatten().is_none() {
                        m.size += 1;
                    }
                    self.sub_put(key, version, &f, v);
                }
                big |= m.size > hash::MAX_LISTPACK_ENTRIES;
            }
            dump::Value::Set(items) => {
                for x in items {
                    big |= !set::intset_member(&x);
                    if self.sub_get(key, version, &x).ok().flatten().is_none() {
                        m.size += 1;
                    }
                    self.sub_put(key, version, &x, Bytes::new());
                }
                big |= m.size > set::MAX_INTSET_ENTRIES;
            }
            dump::Value::List(items) => {
                for (i, x) in items.into_iter().enumerate() {
                    self.sub_put(key, version, &(LIST_MID + i as u64).to_be_bytes(), x);
                    m.size += 1;
                }
            }
            dump::Value::Stream { .. } => {}
            dump::Value::ZSet(items) => {
                for (s, x) in items {
                    let old = self
                        .sub_get(key, version, &x)
                        .ok()
                        .flatten()
                        .and_then(|v| zset::stored_score(&v));
                    self.zset_put(key, &mut m, &x, old, s);
                }
            }
        }
        if big {
            m.enc = BIG;
        }
        self.put_coll(key, m);
    }
}

/// Applies a collection write op (opcodes from [`hash::FIRST_OPCODE`] on).
pub(super) fn apply_coll_op(tx: &mut Tx<'_>, op: &WriteOp) -> Result<Reply> {
    match op {
        WriteOp::HSet { .. }
        | WriteOp::HDel { .. }
        | WriteOp::HIncrBy { .. }
        | WriteOp::HIncrByFloat { .. } => hash::apply(tx, op),
        WriteOp::LPush { .. }
        | WriteOp::LPop { .. }
        | WriteOp::LSet { .. }
        | WriteOp::LRem { .. }
        | WriteOp::LTrim { .. }
        | WriteOp::LInsert { .. }
        | WriteOp::LMove { .. }
        | WriteOp::LMPop { .. } => list::apply(tx, op),
        WriteOp::ZAdd { .. }
        | WriteOp::ZRem { .. }
        | WriteOp::ZPop { .. }
        | WriteOp::ZRemRange { .. } => zset::apply(tx, op),
        WriteOp::XAdd { .. }
        | WriteOp::XTrim { .. }
        | WriteOp::XDel { .. }
        | WriteOp::XSetId { .. }
        | WriteOp::XGroup { .. } => stream::apply(tx, op),
        WriteOp::ZStore { .. } | WriteOp::ZMPop { .. } | WriteOp::ZRangeStore { .. } => {
            zset_ops::apply(tx, op)
        }
        _ => set::apply(tx, op),
    }
}

impl ReadView<'_> {
    /// The live collection at `key` if of `kind`: `Err(WRONGTYPE)` for another type.
    pub fn coll(
        &self,
        key: &[u8],
        kind: KeyType,
    ) -> Result<std::result::Result<Option<Meta>, Reply>> {
        Ok(match self.get(key)? {
            Some(m) if m.kind != kind => Err(Reply::error(super::apply::WRONGTYPE)),
            other => Ok(other),
        })
    }

    /// One element's stored value.
    pub fn sub_get(&self, key: &[u8], meta: &Meta, field: &[u8]) -> Result<Option<Bytes>> {
        Ok(self
            .db
            .inner
            .engine
            .get_at(&encoding::sub_key(key, meta.version, field), &self.snap)?)
    }

    /// Elements with `from <= field < to`, in field order.
    pub fn sub_range(
        &self,
        key: &[u8],
        meta: &Meta,
        from: &[u8],
        to: &[u8],
    ) -> Result<Vec<(Bytes, Bytes)>> {
        let start = encoding::sub_key(key, meta.version, from);
        let plen = encoding::sub_prefix(key, meta.version).len();
        let end = encoding::sub_key(key, meta.version, to);
        let iter = self.db.inner.engine.scan(
            (Bound::Included(start), Bound::Excluded(end)),
            Some(&self.snap),
        )?;
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            out.push((k.slice(plen..), v));
        }
        Ok(out)
    }

    /// All elements `(field, value)` in field order.
    pub fn sub_all(&self, key: &[u8], meta: &Meta) -> Result<Vec<(Bytes, Bytes)>> {
        let start = encoding::sub_prefix(key, meta.version);
        let plen = start.len();
        let end = encoding::sub_prefix(key, meta.version.wrapping_add(1));
        let iter = self.db.inner.engine.scan(
            (Bound::Included(start), Bound::Excluded(end)),
            Some(&self.snap),
        )?;
        let mut out = Vec::with_capacity(meta.size.min(1 << 16) as usize);
        for item in iter {
            let (k, v) = item?;
            out.push((k.slice(plen..), v));
        }
        Ok(out)
    }
}

impl Db {
    /// The value at `key` for DUMP (`None` when missing), read at one snapshot.
    pub fn dump_value(&self, key: &[u8]) -> Result<Option<dump::Value>> {
        let view = self.view();
        let Some(m) = view.get(key)? else {
            return Ok(None);
        };
        view.dump_of(key, &m).map(Some)
    }

    /// Those of `keys` that are live, each with its metadata and DUMP value, read at one
    /// snapshot (a migration copying a waiting client's keys ahead of its slot's scan).
    pub fn dump_keys(&self, keys: &[Bytes]) -> Result<Vec<(Bytes, Meta, dump::Value)>> {
        let view = self.view();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(m) = view.get(key)? {
                let value = view.dump_of(key, &m)?;
                out.push((key.clone(), m, value));
            }
        }
        Ok(out)
    }

    /// Up to `max_keys` live keys of `slot` (or `max_bytes` of keys and values, whichever
    /// comes first), in key order after `after`, each with its metadata and DUMP value, read
    /// at one snapshot: one scan of the slot's metadata records instead of a lookup per key
    /// (a migration's copy). The last element's key is where the next chunk starts.
    pub fn dump_slot_chunk(
        &self,
        slot: u16,
        after: Option<&Bytes>,
        max_keys: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Bytes, Meta, dump::Value)>> {
        let view = self.view();
        let start = match after {
            Some(k) => Bound::Excluded(encoding::meta_key_in_slot(slot, k)),
            None => Bound::Included(encoding::slot_meta_start(slot)),
        };
        let end = Bound::Excluded(encoding::slot_meta_end(slot));
        let iter = self.inner.engine.scan((start, end), Some(&view.snap))?;
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        for item in iter {
            let (k, raw) = item?;
            let meta = Meta::decode(&raw).ok_or(super::StorageError::Corrupt("metadata record"))?;
            if meta.is_expired(view.now) {
                continue;
            }
            let key = k.slice(3..);
            let value = view.dump_of(&key, &meta)?;
            bytes += key.len() + raw.len() + meta.size as usize;
            out.push((key, meta, value));
            if out.len() >= max_keys || bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }
}

impl ReadView<'_> {
    /// The DUMP value of `key`, whose live metadata is `m`.
    fn dump_of(&self, key: &[u8], m: &Meta) -> Result<dump::Value> {
        let all = || self.sub_all(key, m);
        Ok(match m.kind {
            KeyType::String => dump::Value::String(m.value.clone()),
            KeyType::Hash => dump::Value::Hash(all()?),
            KeyType::Set => dump::Value::Set(all()?.into_iter().map(|(f, _)| f).collect()),
            KeyType::List => dump::Value::List(all()?.into_iter().map(|(_, v)| v).collect()),
            KeyType::ZSet => dump::Value::ZSet(self.zset_entries(key, m)?),
            KeyType::Stream => dump::Value::Stream {
                state: m.value.clone(),
                records: all()?,
            },
        })
    }
}
