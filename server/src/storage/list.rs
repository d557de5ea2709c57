//! List writes: elements at `sub_key(key, version, index:u64be)` for `index` in
//! `head .. head + size`, so pushes and pops at either end touch one sub-key and the metadata.
//! Middle edits (LREM, LINSERT) rewrite the list under a new version (the old sub-keys become
//! stale and compaction drops them).

use super::apply::Tx;
use super::coll::LIST_MID;
use super::encoding::{self, KeyType, Meta};
use super::hash::try_reply;
use super::write::WriteOp;
use super::{ReadView, Result};
use bytes::Bytes;
use pinnacle_resp::{BulkArray, Reply};
use std::ops::Bound;

fn idx(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// Pushes one element on an end.
fn push(tx: &mut Tx<'_>, key: &Bytes, m: &mut Meta, left: bool, v: Bytes) {
    let at = if left {
        m.head -= 1;
        m.head
    } else {
        m.head + m.size
    };
    tx.sub_put(key, m.version, &idx(at), v);
    m.size += 1;
}

/// Most elements a pop reads ahead.
const MAX_POP_AHEAD: u64 = 256;

/// How many list elements `cmds` pop at most (a run of pipelined LPOPs, or LPOP with a count).
pub(super) fn pops(cmds: &[super::write::WriteCommand]) -> u64 {
    cmds.iter()
        .map(|c| match &c.op {
            WriteOp::LPop { count, .. } => count.unwrap_or(1),
            WriteOp::LMove { .. } => 1,
            _ => 0,
        })
        .fold(0u64, u64::saturating_add)
        .min(MAX_POP_AHEAD)
}

/// Reads up to `tx.pop_ahead` elements from index `at` inward with one range scan into the
/// Tx's sub-key view, so the next pops of this list find them there (one point lookup each
/// cost ~1 µs of LSM search; a scan's next is a fraction of that). Pending writes of the Tx
/// are newer than the stored elements and stay.
fn read_ahead(tx: &mut Tx<'_>, key: &Bytes, m: &Meta, left: bool, at: u64) -> Result<()> {
    let n = tx.pop_ahead.min(m.size);
    let (lo, hi) = if left {
        (at, at + n)
    } else {
        (at + 1 - n, at + 1)
    };
    let from = encoding::sub_key(key, m.version, &idx(lo));
    let to = encoding::sub_key(key, m.version, &idx(hi));
    let iter = tx
        .db
        .inner
        .engine
        .scan((Bound::Included(from), Bound::Excluded(to)), None)?;
    let subs = tx.subs();
    for item in iter {
        let (k, v) = item?;
        subs.entry(k).or_insert(Some(v));
    }
    Ok(())
}

/// Pops one element from an end (the list must not be empty).
fn pop(tx: &mut Tx<'_>, key: &Bytes, m: &mut Meta, left: bool) -> Result<Bytes> {
    let at = if left { m.head } else { m.head + m.size - 1 };
    // Encoded once for the look-ahead check, the read and the delete.
    let sk = encoding::sub_key(key, m.version, &idx(at));
    if tx.pop_ahead > 1 && !tx.subs().contains_key(&sk) {
        read_ahead(tx, key, m, left, at)?;
    }
    // Pops left to this Tx (a later pop of another list reads ahead only as far).
    tx.pop_ahead = tx.pop_ahead.saturating_sub(1);
    let v = tx.sub_get_key(&sk)?.unwrap_or_default();
    tx.pend_del(sk);
    if left {
        m.head += 1;
    }
    m.size -= 1;
    Ok(v)
}

/// All elements in order.
fn elements(tx: &Tx<'_>, key: &Bytes, m: &Meta) -> Result<Vec<Bytes>> {
    Ok(tx
        .sub_all(key, m.version)?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}

/// Replaces the list with `elems` under a new version.
fn rewrite(tx: &mut Tx<'_>, key: &Bytes, m: &Meta, elems: Vec<Bytes>) {
    let version = tx.alloc_version();
    let mut nm = Meta {
        version,
        size: 0,
        head: LIST_MID,
        ..m.clone()
    };
    for e in elems {
        push(tx, key, &mut nm, false, e);
    }
    tx.put_coll(key, nm);
}

impl ReadView<'_> {
    /// Elements at offsets `s..=e` of the list `meta` as an array reply (LRANGE): one range
    /// scan, each value framed straight into the reply's buffer (no `Reply` per element).
    pub fn list_range(&self, key: &[u8], meta: &Meta, s: u64, e: u64) -> Result<Reply> {
        let from = encoding::sub_key(key, meta.version, &idx(meta.head + s));
        let to = encoding::sub_key(key, meta.version, &idx(meta.head + e + 1));
        let iter = self.db.inner.engine.scan_values(
            (Bound::Included(from), Bound::Excluded(to)),
            Some(&self.snap),
        )?;
        // A short value frames to about 16 bytes; the buffer grows past that when needed.
        let mut out = BulkArray::builder((e - s + 1).saturating_mul(16).min(1 << 20) as usize);
        for item in iter {
            out.push(&item?.1);
        }
        Ok(out.finish())
    }
}

/// Converts a Redis index (negative from the tail) into an offset, if in range.
pub fn offset(index: i64, len: u64) -> Option<u64> {
    let i = if index < 0 {
        index.checked_add(len as i64)?
    } else {
        index
    };
    (i >= 0 && (i as u64) < len).then_some(i as u64)
}

/// Clamps `start..=stop` like LRANGE/LTRIM; `None` when empty.
pub fn range(start: i64, stop: i64, len: u64) -> Option<(u64, u64)> {
    let len = len as i64;
    let mut s = if start < 0 {
        start.saturating_add(len)
    } else {
        start
    };
    let mut e = if stop < 0 {
        stop.saturating_add(len)
    } else {
        stop
    };
    if s < 0 {
        s = 0;
    }
    if s > e || s >= len {
        return None;
    }
    if e >= len {
        e = len - 1;
    }
    Some((s as u64, e as u64))
}

/// Applies a list write op.
pub(super) fn apply(tx: &mut Tx<'_>, op: &WriteOp) -> Result<Reply> {
    Ok(match op {
        WriteOp::LPush {
            key,
            elems,
            left,
            xx,
        } => {
            let mut m = if *xx {
                match try_reply!(tx.get_coll(key, KeyType::List)?) {
                    None => return Ok(Reply::Integer(0)),
                    Some(m) => m,
                }
            } else {
                try_reply!(tx.get_or_new(key, KeyType::List)?)
            };
            for e in elems {
                push(tx, key, &mut m, *left, e.clone());
            }
            let n = m.size as i64;
            tx.put_coll(key, m);
            Reply::Integer(n)
        }
        WriteOp::LPop { key, left, count } => {
            let Some(mut m) = try_reply!(tx.get_coll(key, KeyType::List)?) else {
                return Ok(if count.is_some() {
                    Reply::NullArray
                } else {
                    Reply::Null
                });
            };
            let n = count.unwrap_or(1).min(m.size);
            let mut out = Vec::with_capacity(n as usize);
            for _ in 0..n {
                out.push(Reply::Bulk(pop(tx, key, &mut m, *left)?));
            }
            if n > 0 {
                tx.put_coll(key, m);
            }
            match count {
                Some(_) => Reply::Array(out),
                None => out.pop().unwrap_or(Reply::Null),
            }
        }
        WriteOp::LSet { key, index, value } => {
            let Some(m) = try_reply!(tx.get_coll(key, KeyType::List)?) else {
                return Ok(Reply::error("ERR no such key"));
            };
            let Some(off) = offset(*index, m.size) else {
                return Ok(Reply::error("ERR index out of range"));
            };
            tx.sub_put(key, m.version, &idx(m.head + off), value.clone());
            tx.put(key, m);
            Reply::ok()
        }
        WriteOp::LRem { key, count, elem } => {
            let Some(m) = try_reply!(tx.get_coll(key, KeyType::List)?) else {
                return Ok(Reply::Integer(0));
            };
            let mut all = elements(tx, key, &m)?;
            let limit = if *count == 0 {
                u64::MAX
            } else {
                count.unsigned_abs()
            };
            let mut removed = 0u64;
            let mut keep = vec![true; all.len()];
            let order: Box<dyn Iterator<Item = usize>> = if *count < 0 {
                Box::new((0..all.len()).rev())
            } else {
                Box::new(0..all.len())
            };
            for i in order {
                if removed >= limit {
                    break;
                }
                if all[i] == *elem {
                    keep[i] = false;
                    removed += 1;
                }
            }
            if removed > 0 {
                let mut k = keep.iter();
                all.retain(|_| *k.next().unwrap_or(&true));
                rewrite(tx, key, &m, all);
            }
            Reply::Integer(removed as i64)
        }
        WriteOp::LTrim { key, start, stop } => {
            let Some(mut m) = try_reply!(tx.get_coll(key, KeyType::List)?) else {
                return Ok(Reply::ok());
            };
            let (s, e) = match range(*start, *stop, m.size) {
                Some(r) => r,
                None => (m.size, m.size),
            };
            let keep_end = if s >= m.size { s } else { e + 1 };
            for i in (0..s).chain(keep_end..m.size) {
                tx.sub_del(key, m.version, &idx(m.head + i));
            }
            m.head += s;
            m.size = keep_end - s;
            tx.put_coll(key, m);
            Reply::ok()
        }
        WriteOp::LInsert {
            key,
            before,
            pivot,
            elem,
        } => {
            let Some(m) = try_reply!(tx.get_coll(key, KeyType::List)?) else {
                return Ok(Reply::Integer(0));
            };
            let mut all = elements(tx, key, &m)?;
            let Some(p) = all.iter().position(|x| x == pivot) else {
                return Ok(Reply::Integer(-1));
            };
            all.insert(if *before { p } else { p + 1 }, elem.clone());
            let n = all.len() as i64;
            rewrite(tx, key, &m, all);
            Reply::Integer(n)
        }
        WriteOp::LMove {
            src,
            dst,
            from_left,
            to_left,
        } => {
            let Some(mut sm) = try_reply!(tx.get_coll(src, KeyType::List)?) else {
                return Ok(Reply::Null);
            };
            try_reply!(tx.get_coll(dst, KeyType::List)?);
            let v = pop(tx, src, &mut sm, *from_left)?;
            tx.put_coll(src, sm);
            let mut dm = try_reply!(tx.get_or_new(dst, KeyType::List)?);
            push(tx, dst, &mut dm, *to_left, v.clone());
            tx.put_coll(dst, dm);
            Reply::Bulk(v)
        }
        WriteOp::LMPop { keys, left, count } => {
            for key in keys {
                let Some(mut m) = try_reply!(tx.get_coll(key, KeyType::List)?) else {
                    continue;
                };
                let n = (*count).min(m.size);
                let mut out = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    out.push(Reply::Bulk(pop(tx, key, &mut m, *left)?));
                }
                tx.put_coll(key, m);
                return Ok(Reply::Array(vec![
                    Reply::Bulk(key.clone()),
                    Reply::Array(out),
                ]));
            }
            Reply::NullArray
        }
        _ => Reply::error("ERR not a list operation"),
    })
}
