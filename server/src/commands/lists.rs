//! List commands: pushes and pops at both ends, ranges, index access, LREM/LTRIM/LINSERT,
//! LPOS, LMOVE/RPOPLPUSH, LMPOP. LINDEX and LRANGE read only the sub-keys they return.

use super::hashes::coll_handlers;
use super::strings::{failed, int_arg, is, syntax_error, write};
use crate::command::Handler;
use crate::storage::list::{offset, range};
use crate::storage::{Db, KeyType, Meta, WriteOp};
use bytes::Bytes;
use pinnacle_resp::{Protocol, Reply};

coll_handlers! {
    "lpush" => lpush,
    "rpush" => rpush,
    "lpushx" => lpushx,
    "rpushx" => rpushx,
    "lpop" => lpop,
    "rpop" => rpop,
    "llen" => llen,
    "lrange" => lrange,
    "lindex" => lindex,
    "lset" => lset,
    "lrem" => lrem,
    "ltrim" => ltrim,
    "linsert" => linsert,
    "lpos" => lpos,
    "lmove" => lmove,
    "rpoplpush" => rpoplpush,
    "lmpop" => lmpop,
}

fn push(db: &Db, a: &[Bytes], left: bool, xx: bool) -> Reply {
    let op = WriteOp::LPush {
        key: a[1].clone(),
        elems: a[2..].to_vec(),
        left,
        xx,
    };
    write(db, db.now_ms(), op)
}

fn lpush(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    push(db, a, true, false)
}

fn rpush(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    push(db, a, false, false)
}

fn lpushx(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    push(db, a, true, true)
}

fn rpushx(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    push(db, a, false, true)
}

fn pop(db: &Db, a: &[Bytes], left: bool) -> Reply {
    if a.len() > 3 {
        return super::hashes::wrong_args(a);
    }
    let count = if a.len() == 3 {
        match int_arg(&a[2]) {
            Ok(c) if c >= 0 => Some(c as u64),
            _ => return Reply::error("ERR value is out of range, must be positive"),
        }
    } else {
        None
    };
    let op = WriteOp::LPop {
        key: a[1].clone(),
        left,
        count,
    };
    write(db, db.now_ms(), op)
}

fn lpop(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    pop(db, a, true)
}

fn rpop(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    pop(db, a, false)
}

/// Reads the list at `key` and calls `f` with the view and its meta (`None` = missing).
fn with_list(
    db: &Db,
    key: &[u8],
    f: impl FnOnce(&crate::storage::ReadView<'_>, Option<Meta>) -> crate::storage::Result<Reply>,
) -> Reply {
    let view = db.view();
    let r = view.coll(key, KeyType::List).and_then(|m| match m {
        Err(r) => Ok(r),
        Ok(m) => f(&view, m),
    });
    r.unwrap_or_else(failed)
}

fn llen(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    with_list(db, &a[1], |_, m| {
        Ok(Reply::Integer(m.map_or(0, |m| m.size as i64)))
    })
}

fn lrange(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let (start, stop) = match (int_arg(&a[2]), int_arg(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    with_list(db, &a[1], |v, m| {
        let Some(m) = m else {
            return Ok(Reply::Array(Vec::new()));
        };
        let Some((s, e)) = range(start, stop, m.size) else {
            return Ok(Reply::Array(Vec::new()));
        };
        v.list_range(&a[1], &m, s, e)
    })
}

fn lindex(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let index = match int_arg(&a[2]) {
        Ok(i) => i,
        Err(r) => return r,
    };
    with_list(db, &a[1], |v, m| {
        let Some(m) = m else {
            return Ok(Reply::Null);
        };
        Ok(match offset(index, m.size) {
            None => Reply::Null,
            Some(off) => v
                .sub_get(&a[1], &m, &(m.head + off).to_be_bytes())?
                .map_or(Reply::Null, Reply::Bulk),
        })
    })
}

fn lset(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let index = match int_arg(&a[2]) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let op = WriteOp::LSet {
        key: a[1].clone(),
        index,
        value: a[3].clone(),
    };
    write(db, db.now_ms(), op)
}

fn lrem(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let count = match int_arg(&a[2]) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let op = WriteOp::LRem {
        key: a[1].clone(),
        count,
        elem: a[3].clone(),
    };
    write(db, db.now_ms(), op)
}

fn ltrim(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let (start, stop) = match (int_arg(&a[2]), int_arg(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let op = WriteOp::LTrim {
        key: a[1].clone(),
        start,
        stop,
    };
    write(db, db.now_ms(), op)
}

fn linsert(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let before = if is(&a[2], "before") {
        true
    } else if is(&a[2], "after") {
        false
    } else {
        return syntax_error();
    };
    let op = WriteOp::LInsert {
        key: a[1].clone(),
        before,
        pivot: a[3].clone(),
        elem: a[4].clone(),
    };
    write(db, db.now_ms(), op)
}

fn lpos(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let mut rank: i64 = 1;
    let mut count: Option<u64> = None;
    let mut maxlen: u64 = 0;
    let mut j = 3;
    while j < a.len() {
        let more = j + 1 < a.len();
        if is(&a[j], "rank") && more {
            rank = match int_arg(&a[j + 1]) {
                Ok(r) => r,
                Err(r) => return r,
            };
            if rank == 0 {
                return Reply::error(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                );
            }
        } else if is(&a[j], "count") && more {
            count = match int_arg(&a[j + 1]) {
                Ok(c) if c >= 0 => Some(c as u64),
                _ => return Reply::error("ERR COUNT can't be negative"),
            };
        } else if is(&a[j], "maxlen") && more {
            maxlen = match int_arg(&a[j + 1]) {
                Ok(c) if c >= 0 => c as u64,
                _ => return Reply::error("ERR MAXLEN can't be negative"),
            };
        } else {
            return syntax_error();
        }
        j += 2;
    }
    with_list(db, &a[1], |v, m| {
        let Some(m) = m else {
            return Ok(if count.is_some() {
                Reply::Array(Vec::new())
            } else {
                Reply::Null
            });
        };
        let all = v.sub_all(&a[1], &m)?;
        let len = all.len();
        let from_tail = rank < 0;
        // i64::MIN has no positive counterpart; Redis 7.0 then takes the first match.
        let skip = rank.unsigned_abs().saturating_sub(1);
        let want = match count {
            None => 1,
            Some(0) => u64::MAX,
            Some(c) => c,
        };
        let mut matches = 0u64;
        let mut found = Vec::new();
        for step in 0..len {
            if maxlen != 0 && step as u64 >= maxlen {
                break;
            }
            let i = if from_tail { len - 1 - step } else { step };
            if all[i].1 == a[2] {
                matches += 1;
                if matches > skip {
                    found.push(Reply::Integer(i as i64));
                    if found.len() as u64 >= want {
                        break;
                    }
                }
            }
        }
        Ok(match count {
            Some(_) => Reply::Array(found),
            None => found.pop().unwrap_or(Reply::Null),
        })
    })
}

fn lmove(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let (Some(from_left), Some(to_left)) = (side(&a[3]), side(&a[4])) else {
        return syntax_error();
    };
    let op = WriteOp::LMove {
        src: a[1].clone(),
        dst: a[2].clone(),
        from_left,
        to_left,
    };
    write(db, db.now_ms(), op)
}

fn rpoplpush(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let op = WriteOp::LMove {
        src: a[1].clone(),
        dst: a[2].clone(),
        from_left: false,
        to_left: true,
    };
    write(db, db.now_ms(), op)
}

fn lmpop(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let (keys, left, count) = match lmpop_args(a) {
        Ok(v) => v,
        Err(r) => return r,
    };
    write(db, db.now_ms(), WriteOp::LMPop { keys, left, count })
}

/// `numkeys key... LEFT|RIGHT [COUNT n]` from `a[1]` on (LMPOP; BLMPOP after its timeout).
pub(crate) fn lmpop_args(a: &[Bytes]) -> Result<(Vec<Bytes>, bool, u64), Reply> {
    mpop_args(a, side)
}

/// `numkeys key... <where> [COUNT n]` from `a[1]` on, shared by LMPOP and ZMPOP: the keys,
/// `<where>` as `parse_where` reads it, and the count (default 1), with Redis's errors in
/// Redis's order.
pub(crate) fn mpop_args<T>(
    a: &[Bytes],
    parse_where: impl Fn(&[u8]) -> Option<T>,
) -> Result<(Vec<Bytes>, T, u64), Reply> {
    let numkeys = match int_arg(&a[1]) {
        Ok(n) if n > 0 => n as usize,
        _ => return Err(Reply::error("ERR numkeys should be greater than 0")),
    };
    let where_idx = match numkeys.checked_add(2) {
        Some(w) if w < a.len() => w,
        _ => return Err(syntax_error()),
    };
    let which = parse_where(&a[where_idx]).ok_or_else(syntax_error)?;
    let count = mpop_count(a, where_idx + 1)?;
    Ok((a[2..where_idx].to_vec(), which, count))
}

/// `LEFT` → true, `RIGHT` → false.
pub(crate) fn side(arg: &[u8]) -> Option<bool> {
    if is(arg, "left") {
        Some(true)
    } else if is(arg, "right") {
        Some(false)
    } else {
        None
    }
}

/// The optional `COUNT n` tail of LMPOP/ZMPOP starting at `a[from]` (default 1), with Redis's
/// errors.
fn mpop_count(a: &[Bytes], from: usize) -> Result<u64, Reply> {
    let mut count: Option<u64> = None;
    let mut j = from;
    while j < a.len() {
        if is(&a[j], "count") && j + 1 < a.len() && count.is_none() {
            count = match int_arg(&a[j + 1]) {
                Ok(c) if c > 0 => Some(c as u64),
                _ => return Err(Reply::error("ERR count should be greater than 0")),
            };
            j += 2;
        } else {
            return Err(syntax_error());
        }
    }
    Ok(count.unwrap_or(1))
}
