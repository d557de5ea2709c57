//! Stream storage: entries are sub-keys `sub_key(key, version, id)` with the 128-bit id
//! big-endian (`ms · seq`), so LSM order is id order; the value is the field/value list. The
//! metadata's payload carries the stream state ([`StreamState`]): last id, first id,
//! max deleted id and entries added.
//!
//! Auto ids are derived at apply from the entry's leader-stamped `now_ms` and the last id,
//! so every replica assigns the same ids. Consumer groups live in records after the entries
//! (see [`group`]); entry scans stop before them.

use super::apply::Tx;
use super::encoding::{KeyType, Meta};
use super::hash::try_reply;
use super::write::WriteOp;
use super::{ReadView, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use pinnacle_resp::Reply;
use std::ops::Bound;

#[path = "stream_group.rs"]
pub mod group;
#[path = "stream_group_apply.rs"]
pub mod group_apply;
#[path = "stream_group_op.rs"]
pub mod group_op;
#[path = "stream_group_read.rs"]
pub mod group_read;
#[path = "stream_group_state.rs"]
mod group_state;

/// A stream entry id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

/// The largest id.
pub const MAX_ID: StreamId = StreamId {
    ms: u64::MAX,
    seq: u64::MAX,
};

impl StreamId {
    /// The 16-byte big-endian sub-key field.
    pub fn to_field(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.ms.to_be_bytes());
        b[8..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }
    /// Parses a sub-key field.
    pub fn from_field(f: &[u8]) -> Option<StreamId> {
        Some(StreamId {
            ms: u64::from_be_bytes(f.get(..8)?.try_into().ok()?),
            seq: u64::from_be_bytes(f.get(8..16)?.try_into().ok()?),
        })
    }
    /// `ms-seq` text.
    pub fn text(self) -> Bytes {
        Bytes::from(format!("{}-{}", self.ms, self.seq))
    }
    /// The next id (None at the maximum).
    pub fn incr(self) -> Option<StreamId> {
        if self.seq == u64::MAX {
            if self.ms == u64::MAX {
                return None;
            }
            return Some(StreamId {
                ms: self.ms + 1,
                seq: 0,
            });
        }
        Some(StreamId {
            ms: self.ms,
            seq: self.seq + 1,
        })
    }
    /// The previous id (None at 0-0).
    pub fn decr(self) -> Option<StreamId> {
        if self.seq == 0 {
            if self.ms == 0 {
                return None;
            }
            return Some(StreamId {
                ms: self.ms - 1,
                seq: u64::MAX,
            });
        }
        Some(StreamId {
            ms: self.ms,
            seq: self.seq - 1,
        })
    }
}

/// Parses `ms[-seq]`; a missing seq becomes `missing_seq`.
pub fn parse_id(s: &[u8], missing_seq: u64) -> Option<StreamId> {
    let text = std::str::from_utf8(s).ok()?;
    let (ms, seq) = match text.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let num = |x: &str| -> Option<u64> {
        if x.is_empty() || !x.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        x.parse().ok()
    };
    Some(StreamId {
        ms: num(ms)?,
        seq: match seq {
            Some(q) => num(q)?,
            None => missing_seq,
        },
    })
}

/// The stream state kept in the metadata payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamState {
    /// Last id ever added.
    pub last: StreamId,
    /// First live entry's id (0-0 when empty).
    pub first: StreamId,
    /// Largest id ever deleted.
    pub max_deleted: StreamId,
    /// Entries ever added.
    pub added: u64,
}

impl StreamState {
    /// Encodes into a metadata payload.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(STATE_LEN);
        for id in [self.last, self.first, self.max_deleted] {
            b.put_u64(id.ms);
            b.put_u64(id.seq);
        }
        b.put_u64(self.added);
        b.freeze()
    }
    /// Decodes a metadata payload (default when empty).
    pub fn decode(mut v: &[u8]) -> StreamState {
        if v.len() < STATE_LEN {
            return StreamState::default();
        }
        let id = |v: &mut &[u8]| StreamId {
            ms: v.get_u64(),
            seq: v.get_u64(),
        };
        let last = id(&mut v);
        let first = id(&mut v);
        let max_deleted = id(&mut v);
        StreamState {
            last,
            first,
            max_deleted,
            added: v.get_u64(),
        }
    }
}

/// Bytes of an encoded [`StreamState`].
pub const STATE_LEN: usize = 56;

/// How XADD chooses the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdSpec {
    /// `*`.
    Auto,
    /// `<ms>-*`.
    AutoSeq(u64),
    /// An explicit id.
    Explicit(StreamId),
}

/// A MAXLEN / MINID trimming request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trim {
    /// MINID (else MAXLEN).
    pub minid: bool,
    /// `~`.
    pub approx: bool,
    /// The MAXLEN length (MAXLEN) .
    pub maxlen: u64,
    /// The MINID id (MINID).
    pub min_id: StreamId,
    /// LIMIT (0 = none).
    pub limit: u64,
}

/// `stream-node-max-entries`: approximate trimming removes only whole nodes of this many.
const NODE_ENTRIES: u64 = 100;

/// Encodes an entry's field/value list.
pub fn encode_fields(fv: &[Bytes]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u32(fv.len() as u32);
    for x in fv {
        b.put_u32(x.len() as u32);
        b.put_slice(x);
    }
    b.freeze()
}

/// Decodes an entry's field/value list.
pub fn decode_fields(v: &Bytes) -> Vec<Bytes> {
    let mut r = v.clone();
    let mut out = Vec::new();
    if r.remaining() < 4 {
        return out;
    }
    let n = r.get_u32();
    for _ in 0..n {
        if r.remaining() < 4 {
            break;
        }
        let len = r.get_u32() as usize;
        if r.remaining() < len {
            break;
        }
        out.push(r.split_to(len));
    }
    out
}

/// An entry as a reply: `[id, [f, v, ...]]`.
pub fn entry_reply(id: StreamId, v: &Bytes) -> Reply {
    Reply::Array(vec![
        Reply::Bulk(id.text()),
        Reply::Array(decode_fields(v).into_iter().map(Reply::Bulk).collect()),
    ])
}

impl ReadView<'_> {
    /// Entries with `lo <= id <= hi` in order (reversed with `rev`), at most `count`.
    pub fn stream_range(
        &self,
        key: &[u8],
        meta: &Meta,
        lo: StreamId,
        hi: StreamId,
        rev: bool,
        count: Option<usize>,
    ) -> Result<Vec<(StreamId, Bytes)>> {
        if lo > hi {
            return Ok(Vec::new());
        }
        // The upper bound is exclusive in `sub_range`: one past `hi`, or past every id but
        // before the group records (`AUX · tag`; the MAX id's field is `AUX` itself).
        let to: Vec<u8> = match hi.incr() {
            Some(n) => n.to_field().to_vec(),
            None => {
                let mut v = group::AUX.to_vec();
                v.push(0);
                v
            }
        };
        let start = super::encoding::sub_key(key, meta.version, &lo.to_field());
        let end = super::encoding::sub_key(key, meta.version, &to);
        let plen = super::encoding::sub_prefix(key, meta.version).len();
        let iter = self.db.inner.engine.scan(
            (Bound::Included(start), Bound::Excluded(end)),
            Some(&self.snap),
        )?;
        let mut out = Vec::new();
        for item in iter {
            // A forward range with COUNT stops reading at its last entry.
            if !rev && count.is_some_and(|c| out.len() >= c) {
                break;
            }
            let (k, v) = item?;
            if k.len() != plen + 16 {
                continue;
            }
            if let Some(id) = StreamId::from_field(&k[plen..]) {
                out.push((id, v));
            }
        }
        if rev {
            out.reverse();
        }
        if let Some(c) = count {
            out.truncate(c);
        }
        Ok(out)
    }
}

/// True when a dumped stream's records are well formed: entries (16-byte fields) in order
/// first, then group records that decode (RESTORE refuses anything else).
pub fn valid_records(state: &[u8], records: &[(Bytes, Bytes)]) -> bool {
    if state.len() != STATE_LEN {
        return false;
    }
    let mut prev: Option<&Bytes> = None;
    for (f, v) in records {
        if prev.is_some_and(|p| p >= f) {
            return false;
        }
        prev = Some(f);
        if f.len() == 16 {
            continue;
        }
        let ok = f.starts_with(&group::AUX)
            && match f.get(16) {
                Some(1) => group::GroupRec::decode(v).is_some(),
                Some(2) => group::ConsumerRec::decode(v).is_some() && f.len() >= 21,
                Some(3) => group::Nack::decode(v).is_some() && f.len() >= 37,
                Some(4) => f.len() >= 41,
                _ => false,
            };
        if !ok {
            return false;
        }
    }
    true
}

/// The metadata of a restored stream: entries are the records with a 16-byte field.
pub fn restored_meta(version: u64, state: &Bytes, records: &[(Bytes, Bytes)]) -> Meta {
    let mut m = super::coll::new_meta(KeyType::Stream, version);
    m.size = records.iter().filter(|(f, _)| f.len() == 16).count() as u64;
    m.value = state.clone();
    m
}

fn state_of(m: &Meta) -> StreamState {
    StreamState::decode(&m.value)
}

/// Removes entries per `trim` from the in-order `entries`; returns how many went.
fn trim_entries(
    tx: &mut Tx<'_>,
    key: &Bytes,
    m: &mut Meta,
    entries: &[(StreamId, Bytes)],
    trim: &Trim,
) -> u64 {
    let mut n = if trim.minid {
        entries
            .iter()
            .take_while(|(id, _)| *id < trim.min_id)
            .count() as u64
    } else {
        m.size.saturating_sub(trim.maxlen)
    };
    if trim.approx {
        // Redis drops only whole radix-tree nodes (of up to 100 entries, oldest first) when
        // trimming approximately, and no more than LIMIT entries.
        let mut whole = 0;
        for chunk in entries.chunks(NODE_ENTRIES as usize) {
            let next = whole + chunk.len() as u64;
            if next > n || (trim.limit > 0 && next > trim.limit) {
                break;
            }
            whole = next;
        }
        n = whole;
    }
    let n = n.min(entries.len() as u64);
    for (id, _) in &entries[..n as usize] {
        tx.sub_del(key, m.version, &id.to_field());
    }
    m.size -= n;
    let mut st = state_of(m);
    st.first = entries.get(n as usize).map_or(StreamId::default(), |e| e.0);
    m.value = st.encode();
    n
}

/// The oldest ids as stored before this command, read in order while `more(ids so far)`.
fn head_ids(
    tx: &Tx<'_>,
    key: &[u8],
    version: u64,
    mut more: impl FnMut(&[(StreamId, Bytes)]) -> bool,
) -> Result<Vec<(StreamId, Bytes)>> {
    let start = super::encoding::sub_prefix(key, version);
    let plen = start.len();
    let end = super::encoding::sub_prefix(key, version.wrapping_add(1));
    let iter = tx
        .db
        .inner
        .engine
        .scan((Bound::Included(start), Bound::Excluded(end)), None)?;
    let mut out = Vec::new();
    for item in iter {
        if !more(&out) {
            break;
        }
        let (k, _) = item?;
        // Group records follow the entries.
        if k.len() != plen + 16 {
            break;
        }
        if let Some(id) = StreamId::from_field(&k[plen..]) {
            out.push((id, Bytes::new()));
        }
    }
    Ok(out)
}

/// The oldest entries a trim of a stream of `size` entries needs to look at (plus one, to
/// know the new first id): only those are read.
fn trim_candidates(
    tx: &Tx<'_>,
    key: &[u8],
    version: u64,
    size: u64,
    trim: &Trim,
) -> Result<Vec<(StreamId, Bytes)>> {
    if trim.minid {
        head_ids(tx, key, version, |got| {
            got.last().is_none_or(|(id, _)| *id < trim.min_id)
        })
    } else {
        let need = size.saturating_sub(trim.maxlen) as usize + 1;
        head_ids(tx, key, version, |got| got.len() < need)
    }
}

/// Applies a stream write op.
pub(super) fn apply(tx: &mut Tx<'_>, op: &WriteOp) -> Result<Reply> {
    let now = tx.now;
    Ok(match op {
        WriteOp::XAdd {
            key,
            id,
            nomkstream,
            fields,
            trim,
        } => {
            let existing = try_reply!(tx.get_coll(key, KeyType::Stream)?);
            let mut m = match existing {
                Some(m) => m,
                None if *nomkstream => return Ok(Reply::Null),
                None => {
                    let v = tx.alloc_version();
                    let mut m = super::coll::new_meta(KeyType::Stream, v);
                    m.value = StreamState::default().encode();
                    m
                }
            };
            let mut st = state_of(&m);
            let too_small = || {
                Reply::error(
                    "ERR The ID specified in XADD is equal or smaller than the target stream top item",
                )
            };
            let new_id = match *id {
                IdSpec::Auto => {
                    if now > st.last.ms {
                        StreamId { ms: now, seq: 0 }
                    } else {
                        match st.last.incr() {
                            Some(n) => n,
                            None => return Ok(too_small()),
                        }
                    }
                }
                IdSpec::AutoSeq(ms) => {
                    if ms > st.last.ms {
                        StreamId { ms, seq: 0 }
                    } else if ms == st.last.ms && st.last.seq < u64::MAX {
                        StreamId {
                            ms,
                            seq: st.last.seq + 1,
                        }
                    } else {
                        return Ok(too_small());
                    }
                }
                IdSpec::Explicit(e) => {
                    if e == StreamId::default() {
                        return Ok(Reply::error(
                            "ERR The ID specified in XADD must be greater than 0-0",
                        ));
                    }
                    if e <= st.last {
                        return Ok(too_small());
                    }
                    e
                }
            };
            tx.sub_put(key, m.version, &new_id.to_field(), encode_fields(fields));
            if m.size == 0 {
                st.first = new_id;
            }
            m.size += 1;
            st.last = new_id;
            st.added += 1;
            m.value = st.encode();
            if let Some(t) = trim {
                // The new entry is still pending (not in the engine): it is the newest, so it
                // belongs to the candidates only when every stored entry is one.
                let mut all = trim_candidates(tx, key, m.version, m.size, t)?;
                if all.len() as u64 == m.size - 1 {
                    all.push((new_id, Bytes::new()));
                }
                trim_entries(tx, key, &mut m, &all, t);
            }
            tx.put(key, m);
            Reply::Bulk(new_id.text())
        }
        WriteOp::XTrim { key, trim } => {
            let Some(mut m) = try_reply!(tx.get_coll(key, KeyType::Stream)?) else {
                return Ok(Reply::Integer(0));
            };
            let entries = trim_candidates(tx, key, m.version, m.size, trim)?;
            let n = trim_entries(tx, key, &mut m, &entries, trim);
            if n > 0 {
                tx.put(key, m);
            }
            Reply::Integer(n as i64)
        }
        WriteOp::XDel { key, ids } => {
            let Some(mut m) = try_reply!(tx.get_coll(key, KeyType::Stream)?) else {
                return Ok(Reply::Integer(0));
            };
            let mut st = state_of(&m);
            let mut n = 0;
            let mut seen = std::collections::HashSet::new();
            for raw in ids {
                let Some(id) = parse_id(raw, 0) else {
                    continue;
                };
                if !seen.insert(id) {
                    continue;
                }
                if tx.sub_get(key, m.version, &id.to_field())?.is_some() {
                    tx.sub_del(key, m.version, &id.to_field());
                    m.size -= 1;
                    n += 1;
                    if id > st.max_deleted {
                        st.max_deleted = id;
                    }
                }
            }
            if n > 0 {
                // The first entry may have gone: find the new one (deleted ones are pending).
                if seen.contains(&st.first) {
                    let head = head_ids(tx, key, m.version, |got| {
                        got.last().is_none_or(|(id, _)| seen.contains(id))
                    })?;
                    st.first = head
                        .iter()
                        .map(|(id, _)| *id)
                        .find(|id| !seen.contains(id))
                        .unwrap_or_default();
                }
                m.value = st.encode();
                // An emptied stream stays (Redis keeps empty streams).
                tx.put(key, m);
            }
            Reply::Integer(n)
        }
        WriteOp::XSetId {
            key,
            last,
            added,
            max_deleted,
        } => {
            // Redis 7.0's checks and order (t_stream.c xsetidCommand; the check against the
            // stream's own max_deleted_entry_id only came in 7.2).
            let Some(mut m) = try_reply!(tx.get_coll(key, KeyType::Stream)?) else {
                return Ok(Reply::error("ERR no such key"));
            };
            let mut st = state_of(&m);
            if m.size > 0 {
                // The top item: the last id added unless that entry was deleted (then a scan).
                let top = if tx.sub_get(key, m.version, &st.last.to_field())?.is_some() {
                    st.last
                } else {
                    head_ids(tx, key, m.version, |_| true)?
                        .last()
                        .map(|(id, _)| *id)
                        .unwrap_or_default()
                };
                if *last < top {
                    return Ok(Reply::error(
                        "ERR The ID specified in XSETID is smaller than the target stream top item",
                    ));
                }
                if added.is_some_and(|n| m.size > n) {
                    return Ok(Reply::error(
                        "ERR The entries_added specified in XSETID is smaller than the target stream length",
                    ));
                }
            }
            st.last = *last;
            if let Some(n) = added {
                st.added = *n;
            }
            if let Some(d) = max_deleted.filter(|d| *d != StreamId::default()) {
                st.max_deleted = d;
            }
            m.value = st.encode();
            tx.put(key, m);
            Reply::ok()
        }
        WriteOp::XGroup { op } => group_apply::apply(tx, op)?,
        _ => Reply::error("ERR not a stream operation"),
    })
}
