//! Set writes on versioned sub-keys: `sub_key(key, version, member)` → empty value.
//!
//! Encoding bookkeeping follows Redis 7.0: a set is an `intset` while every member is a
//! canonical 64-bit integer and it holds at most `set-max-intset-entries` (512) members, then
//! a `hashtable` for good ([`super::coll::BIG`]).

use super::apply::Tx;
use super::coll::BIG;
use super::encoding::{KeyType, Meta, StrEnc};
use super::hash::try_reply;
use super::write::{SetOpKind, WriteOp};
use super::{num, Result};
use bytes::Bytes;
use pinnacle_resp::Reply;
use std::collections::BTreeSet;

/// `set-max-intset-entries` default.
pub const MAX_INTSET_ENTRIES: u64 = 512;

/// True when `member` could live in an intset.
pub fn intset_member(member: &[u8]) -> bool {
    num::parse_i64(member).is_some()
}

fn add_member(tx: &mut Tx<'_>, key: &Bytes, m: &mut Meta, member: &[u8]) -> Result<bool> {
    if tx.sub_get(key, m.version, member)?.is_some() {
        return Ok(false);
    }
    tx.sub_put(key, m.version, member, Bytes::new());
    m.size += 1;
    if !intset_member(member) || m.size > MAX_INTSET_ENTRIES {
        m.enc = BIG;
    }
    Ok(true)
}

/// Removes members that exist; returns those removed.
fn remove_members(tx: &mut Tx<'_>, key: &Bytes, members: &[Bytes]) -> Result<Option<Vec<Bytes>>> {
    let Some(mut m) = tx.get_coll(key, KeyType::Set)?.ok().flatten() else {
        return Ok(None);
    };
    let mut removed = Vec::new();
    for x in members {
        if tx.sub_get(key, m.version, x)?.is_some() {
            tx.sub_del(key, m.version, x);
            m.size -= 1;
            removed.push(x.clone());
        }
    }
    if !removed.is_empty() {
        tx.put_coll(key, m);
    }
    Ok(Some(removed))
}

/// `n` distinct members of `all` picked by a generator seeded with `seed` (all of them when
/// `n` covers the set): the same on every replica.
fn choose(mut all: Vec<Bytes>, n: u64, seed: u64) -> Vec<Bytes> {
    let n = (n.min(all.len() as u64)) as usize;
    let mut state = seed;
    // splitmix64: a small, well-mixed generator; the choice only needs to be deterministic.
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in 0..n {
        let j = i + (next() % (all.len() - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(n);
    all
}

/// Applies a set write op.
pub(super) fn apply(tx: &mut Tx<'_>, op: &WriteOp) -> Result<Reply> {
    Ok(match op {
        WriteOp::SAdd { key, members } => {
            let mut m = try_reply!(tx.get_or_new(key, KeyType::Set)?);
            let mut n = 0;
            for x in members {
                if add_member(tx, key, &mut m, x)? {
                    n += 1;
                }
            }
            if n > 0 {
                tx.put_coll(key, m);
            }
            Reply::Integer(n)
        }
        WriteOp::SRem { key, members } => {
            try_reply!(tx.get_coll(key, KeyType::Set)?);
            let removed = remove_members(tx, key, members)?.unwrap_or_default();
            Reply::Integer(removed.len() as i64)
        }
        WriteOp::SPop {
            key,
            members,
            count,
        } => {
            try_reply!(tx.get_coll(key, KeyType::Set)?);
            let removed = remove_members(tx, key, members)?.unwrap_or_default();
            if *count {
                Reply::Set(removed.into_iter().map(Reply::Bulk).collect())
            } else {
                removed.into_iter().next().map_or(Reply::Null, Reply::Bulk)
            }
        }
        WriteOp::SPopAt { key, count, seed } => {
            let Some(m) = try_reply!(tx.get_coll(key, KeyType::Set)?) else {
                return Ok(match count {
                    Some(_) => Reply::Set(Vec::new()),
                    None => Reply::Null,
                });
            };
            let all: Vec<Bytes> = tx
                .sub_all(key, m.version)?
                .into_iter()
                .map(|(member, _)| member)
                .collect();
            let chosen = choose(all, count.unwrap_or(1), *seed);
            let removed = remove_members(tx, key, &chosen)?.unwrap_or_default();
            if count.is_some() {
                Reply::Set(removed.into_iter().map(Reply::Bulk).collect())
            } else {
                removed.into_iter().next().map_or(Reply::Null, Reply::Bulk)
            }
        }
        WriteOp::SMove { src, dst, member } => {
            let srcm = tx.get_coll(src, KeyType::Set)?;
            let dstm = tx.get_coll(dst, KeyType::Set)?;
            let Some(mut sm) = try_reply!(srcm) else {
                return Ok(Reply::Integer(0));
            };
            let dm = try_reply!(dstm);
            if src == dst {
                let is = tx.sub_get(src, sm.version, member)?.is_some();
                return Ok(Reply::Integer(i64::from(is)));
            }
            if tx.sub_get(src, sm.version, member)?.is_none() {
                return Ok(Reply::Integer(0));
            }
            tx.sub_del(src, sm.version, member);
            sm.size -= 1;
            tx.put_coll(src, sm);
            let mut dm = match dm {
                Some(m) => m,
                None => {
                    let v = tx.alloc_version();
                    super::coll::new_meta(KeyType::Set, v)
                }
            };
            if add_member(tx, dst, &mut dm, member)? {
                tx.put_coll(dst, dm);
            }
            Reply::Integer(1)
        }
        WriteOp::SStore { kind, dst, keys } => {
            let sets = try_reply!(read_sets(tx, keys)?);
            let result = combine(*kind, &sets);
            let existed = tx.get(dst)?.is_some();
            if result.is_empty() {
                if existed {
                    tx.delete(dst);
                }
                return Ok(Reply::Integer(0));
            }
            let version = tx.alloc_version();
            let mut m = super::coll::new_meta(KeyType::Set, version);
            m.enc = StrEnc::Auto;
            for x in &result {
                add_member(tx, dst, &mut m, x)?;
            }
            tx.put(dst, m);
            Reply::Integer(result.len() as i64)
        }
        _ => Reply::error("ERR not a set operation"),
    })
}

/// Reads the members of each key (`None` for a missing key), or WRONGTYPE.
fn read_sets(
    tx: &mut Tx<'_>,
    keys: &[Bytes],
) -> Result<std::result::Result<Vec<Option<BTreeSet<Bytes>>>, Reply>> {
    let mut metas = Vec::with_capacity(keys.len());
    for k in keys {
        match tx.get_coll(k, KeyType::Set)? {
            Err(r) => return Ok(Err(r)),
            Ok(m) => metas.push(m),
        }
    }
    let mut out = Vec::with_capacity(keys.len());
    for (k, m) in keys.iter().zip(metas) {
        out.push(match m {
            None => None,
            Some(m) => Some(
                tx.sub_all(k, m.version)?
                    .into_iter()
                    .map(|(f, _)| f)
                    .collect(),
            ),
        });
    }
    Ok(Ok(out))
}

/// Intersection, union or difference of sets (`None` = missing key = empty set).
pub fn combine(kind: SetOpKind, sets: &[Option<BTreeSet<Bytes>>]) -> Vec<Bytes> {
    let empty = BTreeSet::new();
    fn or_empty<'a>(s: &'a Option<BTreeSet<Bytes>>, e: &'a BTreeSet<Bytes>) -> &'a BTreeSet<Bytes> {
        s.as_ref().unwrap_or(e)
    }
    let get = |s| or_empty(s, &empty);
    match kind {
        SetOpKind::Inter => {
            if sets.iter().any(Option::is_none) {
                return Vec::new();
            }
            let mut order: Vec<&BTreeSet<Bytes>> = sets.iter().map(get).collect();
            order.sort_by_key(|s| s.len());
            let Some((first, rest)) = order.split_first() else {
                return Vec::new();
            };
            first
                .iter()
                .filter(|x| rest.iter().all(|s| s.contains(*x)))
                .cloned()
                .collect()
        }
        SetOpKind::Union => {
            let mut all = BTreeSet::new();
            for s in sets {
                all.extend(get(s).iter().cloned());
            }
            all.into_iter().collect()
        }
        SetOpKind::Diff => {
            let Some((first, rest)) = sets.split_first() else {
                return Vec::new();
            };
            get(first)
                .iter()
                .filter(|x| rest.iter().all(|s| !get(s).contains(*x)))
                .cloned()
                .collect()
        }
    }
}
