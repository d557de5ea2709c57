//! Set commands: membership, random picks (SPOP's choice travels in the log entry), algebra
//! (SINTER/SUNION/SDIFF and their STORE forms, SINTERCARD), SSCAN.

use super::hashes::{
    coll_handlers, distinct_indexes, rand_below, rand_count, random_pick, scan_elements,
};
use super::strings::{failed, int_arg, is, syntax_error, write};
use crate::command::Handler;
use crate::storage::set::combine;
use crate::storage::{Db, KeyType, Meta, SetOpKind, WriteOp};
use bytes::Bytes;
use pinnacle_resp::{Protocol, Reply};
use std::collections::BTreeSet;

coll_handlers! {
    "sadd" => sadd,
    "srem" => srem,
    "smembers" => smembers,
    "sismember" => sismember,
    "smismember" => smismember,
    "scard" => scard,
    "spop" => spop,
    "srandmember" => srandmember,
    "smove" => smove,
    "sinter" => sinter,
    "sintercard" => sintercard,
    "sunion" => sunion,
    "sdiff" => sdiff,
    "sinterstore" => sinterstore,
    "sunionstore" => sunionstore,
    "sdiffstore" => sdiffstore,
    "sscan" => sscan,
}

/// The set at `key` read at one snapshot: `Ok(None)` when missing, `Err(reply)` on WRONGTYPE
/// or failure, else the meta and all members.
fn members(db: &Db, key: &[u8]) -> Result<Option<(Meta, Vec<Bytes>)>, Reply> {
    let view = db.view();
    match view.coll(key, KeyType::Set) {
        Err(e) => Err(failed(e)),
        Ok(Err(r)) => Err(r),
        Ok(Ok(None)) => Ok(None),
        Ok(Ok(Some(m))) => {
            let all = view.sub_all(key, &m).map_err(failed)?;
            Ok(Some((m, all.into_iter().map(|(f, _)| f).collect())))
        }
    }
}

fn bulk_set(items: impl IntoIterator<Item = Bytes>) -> Reply {
    Reply::Set(items.into_iter().map(Reply::Bulk).collect())
}

fn sadd(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let op = WriteOp::SAdd {
        key: a[1].clone(),
        members: a[2..].to_vec(),
    };
    write(db, db.now_ms(), op)
}

fn srem(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let op = WriteOp::SRem {
        key: a[1].clone(),
        members: a[2..].to_vec(),
    };
    write(db, db.now_ms(), op)
}

fn smembers(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    match members(db, &a[1]) {
        Err(r) => r,
        Ok(None) => Reply::Set(Vec::new()),
        Ok(Some((_, all))) => bulk_set(all),
    }
}

fn is_member(db: &Db, key: &[u8], members: &[Bytes]) -> Result<Vec<bool>, Reply> {
    let view = db.view();
    let m = match view.coll(key, KeyType::Set) {
        Err(e) => return Err(failed(e)),
        Ok(Err(r)) => return Err(r),
        Ok(Ok(m)) => m,
    };
    let mut out = Vec::with_capacity(members.len());
    for x in members {
        out.push(match &m {
            None => false,
            Some(m) => view.sub_get(key, m, x).map_err(failed)?.is_some(),
        });
    }
    Ok(out)
}

fn sismember(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    match is_member(db, &a[1], &a[2..3]) {
        Err(r) => r,
        Ok(v) => Reply::Integer(i64::from(v[0])),
    }
}

fn smismember(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    match is_member(db, &a[1], &a[2..]) {
        Err(r) => r,
        Ok(v) => Reply::Array(
            v.into_iter()
                .map(|b| Reply::Integer(i64::from(b)))
                .collect(),
        ),
    }
}

fn scard(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    match db.view().coll(&a[1], KeyType::Set) {
        Err(e) => failed(e),
        Ok(Err(r)) => r,
        Ok(Ok(m)) => Reply::Integer(m.map_or(0, |m| m.size as i64)),
    }
}

fn spop(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    if a.len() > 3 {
        return syntax_error();
    }
    let count = if a.len() == 3 {
        match int_arg(&a[2]) {
            Err(r) => return r,
            Ok(c) if c < 0 => return Reply::error("ERR value is out of range, must be positive"),
            Ok(c) => Some(c as u64),
        }
    } else {
        None
    };
    let now = db.now_ms();
    if count != Some(0) && crate::storage::deferred::collecting() {
        // A Raft node: what the set holds when this entry is applied may include writes not
        // applied yet (an earlier SADD of the same EXEC or pipeline), so the members are
        // chosen then, with this seed, identically on every replica.
        let op = WriteOp::SPopAt {
            key: a[1].clone(),
            count,
            seed: crate::storage::random_u64(),
        };
        return write(db, now, op);
    }
    let all = match members(db, &a[1]) {
        Err(r) => return r,
        Ok(None) => {
            return if count.is_some() {
                Reply::Set(Vec::new())
            } else {
                Reply::Null
            }
        }
        Ok(Some((_, all))) => all,
    };
    // The leader chooses; the entry carries the choice so every replica removes the same.
    let chosen: Vec<Bytes> = match count {
        None => vec![all[rand_below(all.len())].clone()],
        Some(0) => return Reply::Set(Vec::new()),
        Some(c) if c as usize >= all.len() => all,
        Some(c) => distinct_indexes(all.len(), c as usize)
            .into_iter()
            .map(|i| all[i].clone())
            .collect(),
    };
    let op = WriteOp::SPop {
        key: a[1].clone(),
        members: chosen,
        count: count.is_some(),
    };
    write(db, now, op)
}

fn srandmember(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    if a.len() > 3 {
        return syntax_error();
    }
    if a.len() == 2 {
        return match members(db, &a[1]) {
            Err(r) => r,
            Ok(None) => Reply::Null,
            Ok(Some((_, mut all))) => Reply::Bulk(all.swap_remove(rand_below(all.len()))),
        };
    }
    let l = match rand_count(&a[2]) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let all = match members(db, &a[1]) {
        Err(r) => return r,
        Ok(None) => return Reply::Array(Vec::new()),
        Ok(Some((_, all))) => all,
    };
    let picked: Vec<Bytes> = random_pick(all, l);
    Reply::Array(picked.into_iter().map(Reply::Bulk).collect())
}

fn smove(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let op = WriteOp::SMove {
        src: a[1].clone(),
        dst: a[2].clone(),
        member: a[3].clone(),
    };
    write(db, db.now_ms(), op)
}

/// Reads every key's members at one snapshot (`None` = missing); WRONGTYPE for any non-set.
fn read_sets(db: &Db, keys: &[Bytes]) -> Result<Vec<Option<BTreeSet<Bytes>>>, Reply> {
    let view = db.view();
    let mut metas = Vec::with_capacity(keys.len());
    for k in keys {
        match view.coll(k, KeyType::Set) {
            Err(e) => return Err(failed(e)),
            Ok(Err(r)) => return Err(r),
            Ok(Ok(m)) => metas.push(m),
        }
    }
    let mut out = Vec::with_capacity(keys.len());
    for (k, m) in keys.iter().zip(metas) {
        out.push(match m {
            None => None,
            Some(m) => Some(
                view.sub_all(k, &m)
                    .map_err(failed)?
                    .into_iter()
                    .map(|(f, _)| f)
                    .collect(),
            ),
        });
    }
    Ok(out)
}

fn algebra(db: &Db, keys: &[Bytes], kind: SetOpKind) -> Reply {
    match read_sets(db, keys) {
        Err(r) => r,
        Ok(sets) => bulk_set(combine(kind, &sets)),
    }
}

fn sinter(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    algebra(db, &a[1..], SetOpKind::Inter)
}

fn sunion(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    algebra(db, &a[1..], SetOpKind::Union)
}

fn sdiff(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    algebra(db, &a[1..], SetOpKind::Diff)
}

fn sintercard(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let numkeys = match int_arg(&a[1]) {
        Ok(n) if n > 0 => n as usize,
        _ => return Reply::error("ERR numkeys should be greater than 0"),
    };
    if numkeys > a.len() - 2 {
        return Reply::error("ERR Number of keys can't be greater than number of args");
    }
    let mut limit = 0usize;
    let mut i = 2 + numkeys;
    while i < a.len() {
        if is(&a[i], "limit") && i + 1 < a.len() {
            limit = match int_arg(&a[i + 1]) {
                Ok(l) if l >= 0 => l as usize,
                _ => return Reply::error("ERR LIMIT can't be negative"),
            };
            i += 2;
        } else {
            return syntax_error();
        }
    }
    match read_sets(db, &a[2..2 + numkeys]) {
        Err(r) => r,
        Ok(sets) => {
            let n = combine(SetOpKind::Inter, &sets).len();
            Reply::Integer(if limit > 0 { n.min(limit) } else { n } as i64)
        }
    }
}

fn store(db: &Db, a: &[Bytes], kind: SetOpKind) -> Reply {
    let op = WriteOp::SStore {
        kind,
        dst: a[1].clone(),
        keys: a[2..].to_vec(),
    };
    write(db, db.now_ms(), op)
}

fn sinterstore(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    store(db, a, SetOpKind::Inter)
}

fn sunionstore(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    store(db, a, SetOpKind::Union)
}

fn sdiffstore(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    store(db, a, SetOpKind::Diff)
}

fn sscan(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    scan_elements(a, KeyType::Set, db, None)
}

#[cfg(test)]
#[path = "coll_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "coll_diff_tests.rs"]
mod diff_tests;
