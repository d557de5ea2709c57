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
use std::collections::VecDeque;
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

/// Elements of one list read ahead for this Tx's pops, as stored in the LSM: indexes
/// `lo .. lo + vals.len()` of `key` at `version`. A pop takes from either end with no hashing
/// (the sub-key map cost ~600 instructions per pop: key hash, insert, lookup, key clone).
///
/// Invariant: no pending write of the Tx touches these indexes. It holds because the cache
/// lies inside the list's `head .. head + size` at fill time, pops take elements only from
/// the ends (so the cache shrinks with the list), pushes write outside `head .. head + size`,
/// and every other command clears the cache before it runs (see [`keeps_ahead`]).
pub(super) struct Ahead {
    key: Bytes,
    version: u64,
    lo: u64,
    vals: VecDeque<Bytes>,
}

/// True for the commands that may run with a filled [`Ahead`]: the pushes and pops, which
/// keep its invariant. Any other command clears it first.
pub(super) fn keeps_ahead(op: &WriteOp) -> bool {
    matches!(
        op,
        WriteOp::LPush { .. }
            | WriteOp::LPop { .. }
            | WriteOp::LMove { .. }
            | WriteOp::LMPop { .. }
    )
}

/// The element at `at` from the Tx's [`Ahead`], if it holds `at` at one of its ends.
fn take_ahead(tx: &mut Tx<'_>, key: &Bytes, version: u64, at: u64) -> Option<Bytes> {
    let a = tx.ahead.as_mut()?;
    if a.version != version || a.vals.is_empty() || a.key != *key {
        return None;
    }
    if at == a.lo {
        a.lo += 1;
        a.vals.pop_front()
    } else if at == a.lo + a.vals.len() as u64 - 1 {
        a.vals.pop_back()
    } else {
        None
    }
}

/// The index range a pop at `at` reads ahead: up to `tx.pop_ahead` elements from `at` inward.
fn ahead_range(tx: &Tx<'_>, m: &Meta, left: bool, at: u64) -> (u64, u64) {
    let n = tx.pop_ahead.min(m.size);
    if left {
        (at, at + n)
    } else {
        (at + 1 - n, at + 1)
    }
}

/// Fills the Tx's [`Ahead`] with the stored elements the pops of this Tx will take, with one
/// range scan (one point lookup per pop cost ~1 µs of LSM search; a scan's next is a fraction
/// of that). False, leaving it as it was, when a pending write of the Tx lies in the range or
/// the range is not all stored (then [`read_ahead`] merges with the pending writes).
fn fill_ahead(tx: &mut Tx<'_>, key: &Bytes, m: &Meta, left: bool, at: u64) -> Result<bool> {
    let (lo, hi) = ahead_range(tx, m, left, at);
    let from = encoding::sub_key(key, m.version, &idx(lo));
    let to = encoding::sub_key(key, m.version, &idx(hi));
    if tx.pending_in(&from, &to) {
        return Ok(false);
    }
    let n = (hi - lo) as usize;
    let iter = tx
        .db
        .inner
        .engine
        .scan_values((Bound::Included(from), Bound::Excluded(to)), None)?;
    let mut vals = VecDeque::with_capacity(n);
    for item in iter {
        vals.push_back(item?.1);
        if vals.len() > n {
            break;
        }
    }
    if vals.len() != n {
        return Ok(false);
    }
    tx.ahead = Some(Ahead {
        key: key.clone(),
        version: m.version,
        lo,
        vals,
    });
    Ok(true)
}

/// Reads up to `tx.pop_ahead` elements from index `at` inward with one range scan into the
/// Tx's sub-key view, so the next pops of this list find them there. Pending writes of the Tx
/// are newer than the stored elements and stay. The fallback of [`fill_ahead`].
fn read_ahead(tx: &mut Tx<'_>, key: &Bytes, m: &Meta, left: bool, at: u64) -> Result<()> {
    let (lo, hi) = ahead_range(tx, m, left, at);
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
    let mut v = take_ahead(tx, key, m.version, at);
    if v.is_none() && tx.pop_ahead > 1 && fill_ahead(tx, key, m, left, at)? {
        v = take_ahead(tx, key, m.version, at);
    }
    // Encoded once for the look-ahead check, the read and the delete.
    let sk = encoding::sub_key(key, m.version, &idx(at));
    let v = match v {
        Some(v) => v,
        None => {
            if tx.pop_ahead > 1 && !tx.subs().contains_key(&sk) {
                read_ahead(tx, key, m, left, at)?;
            }
            tx.sub_get_key(&sk)?.unwrap_or_default()
        }
    };
    // Pops left to this Tx (a later pop of another list reads ahead only as far).
    tx.pop_ahead = tx.pop_ahead.saturating_sub(1);
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
            let Some(_) = count else {
                // The plain LPOP: no reply array to build.
                if m.size == 0 {
                    return Ok(Reply::Null);
                }
                let v = pop(tx, key, &mut m, *left)?;
                tx.put_coll(key, m);
                return Ok(Reply::Bulk(v));
            };
            let n = count.unwrap_or(1).min(m.size);
            let mut out = Vec::with_capacity(n as usize);
            for _ in 0..n {
                out.push(Reply::Bulk(pop(tx, key, &mut m, *left)?));
            }
            if n > 0 {
                tx.put_coll(key, m);
            }
            Reply::Array(out)
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

#[cfg(test)]
mod tests {
    use super::super::write::WriteCommand;
    use super::super::Db;
    use super::*;
    use proptest::prelude::*;

    const KEYS: [&str; 2] = ["a", "b"];

    fn key(i: usize) -> Bytes {
        Bytes::from_static(KEYS[i % KEYS.len()].as_bytes())
    }

    /// List ops on two keys, with the other commands that must clear the read-ahead.
    fn arb_op() -> impl Strategy<Value = WriteOp> {
        let val = (0u32..1000).prop_map(|v| Bytes::from(v.to_string()));
        prop_oneof![
            4 => (0..2usize, any::<bool>(), proptest::option::of(0u64..4)).prop_map(
                |(k, left, count)| WriteOp::LPop { key: key(k), left, count }
            ),
            2 => (0..2usize, any::<bool>(), proptest::collection::vec(val.clone(), 1..3))
                .prop_map(|(k, left, elems)| WriteOp::LPush {
                    key: key(k),
                    elems,
                    left,
                    xx: false,
                }),
            1 => (0..2usize, -6i64..6, val.clone()).prop_map(|(k, index, value)| WriteOp::LSet {
                key: key(k),
                index,
                value,
            }),
            1 => (0..2usize, -6i64..6, -6i64..6).prop_map(|(k, start, stop)| WriteOp::LTrim {
                key: key(k),
                start,
                stop,
            }),
            1 => (0..2usize, 0..2usize, any::<bool>(), any::<bool>()).prop_map(
                |(s, d, from_left, to_left)| WriteOp::LMove {
                    src: key(s),
                    dst: key(d),
                    from_left,
                    to_left,
                }
            ),
            1 => (0..2usize, val.clone()).prop_map(|(k, elem)| WriteOp::LRem {
                key: key(k),
                count: 0,
                elem,
            }),
            1 => (0..2usize).prop_map(|k| WriteOp::Del { keys: vec![key(k)] }),
        ]
    }

    fn cmd(op: WriteOp) -> WriteCommand {
        WriteCommand { now_ms: 1, op }
    }

    /// Both lists' elements, drained.
    fn drain(db: &Db) -> Vec<Reply> {
        (0..KEYS.len())
            .map(|k| {
                db.apply(&cmd(WriteOp::LPop {
                    key: key(k),
                    left: true,
                    count: Some(1 << 20),
                }))
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// A run of list commands applied as one Tx (pops read ahead, `Ahead`) gives the
        /// same replies and lists as the same commands applied one by one.
        #[test]
        fn a_run_of_list_commands_equals_one_by_one(
            fill in proptest::collection::vec(0u32..1000, 0..40),
            ops in proptest::collection::vec(arb_op(), 1..40),
        ) {
            let run = Db::in_memory();
            let one = Db::in_memory();
            for (i, v) in fill.iter().enumerate() {
                let push = cmd(WriteOp::LPush {
                    key: key(i),
                    elems: vec![Bytes::from(v.to_string())],
                    left: i % 3 == 0,
                    xx: false,
                });
                run.apply(&push);
                one.apply(&push);
            }
            let cmds: Vec<WriteCommand> = ops.into_iter().map(cmd).collect();
            let got = run.apply_core_all(&cmds, None, None).expect("apply").0;
            let want: Vec<Reply> = cmds.iter().map(|c| one.apply(c)).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(drain(&run), drain(&one));
        }
    }
}
