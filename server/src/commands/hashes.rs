//! Hash commands: HSET and friends, counters, HRANDFIELD, HSCAN.
//!
//! Reads go through one snapshot ([`Db::view`]) and touch only the sub-keys they need (HGET,
//! HEXISTS, HSTRLEN, HMGET are point lookups); writes become logical [`WriteOp`]s.

use super::strings::{failed, int_arg, is, syntax_error, write, write_then};
use crate::command::Handler;
use crate::storage::{glob, random_u64, Db, KeyType, Meta, WriteOp, BIG};
use bytes::Bytes;
use pinnacle_resp::{Protocol, Reply};

/// Registers `name => fn(&Db, Protocol, &[Bytes]) -> Reply` handlers (and, in tests, a table
/// callable with just a `Db` and a protocol).
macro_rules! coll_handlers {
    ($($name:literal => $f:path),* $(,)?) => {
        /// Handlers of this family.
        pub const HANDLERS: &[(&str, Handler)] = &[
            $(($name, |ctx: &mut crate::command::Ctx<'_>, args: &[Bytes]| {
                $f(ctx.db(), ctx.client.protocol, args)
            })),*
        ];
        /// The same handlers, callable with a `Db` and a protocol (in-process tests).
        #[cfg(test)]
        pub(crate) const PDB_HANDLERS: &[(&str, fn(&Db, Protocol, &[Bytes]) -> Reply)] =
            &[$(($name, $f)),*];
    };
}
pub(crate) use coll_handlers;

coll_handlers! {
    "hset" => hset,
    "hmset" => hset,
    "hsetnx" => hsetnx,
    "hget" => hget,
    "hmget" => hmget,
    "hgetall" => hgetall,
    "hkeys" => hkeys,
    "hvals" => hvals,
    "hdel" => hdel,
    "hexists" => hexists,
    "hlen" => hlen,
    "hstrlen" => hstrlen,
    "hincrby" => hincrby,
    "hincrbyfloat" => hincrbyfloat,
    "hrandfield" => hrandfield,
    "hscan" => hscan,
}

/// `ERR wrong number of arguments for '<cmd>' command` (lower-case name as sent).
pub(crate) fn wrong_args(a: &[Bytes]) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{}' command",
        String::from_utf8_lossy(&a[0]).to_ascii_lowercase()
    ))
}

/// Reads the hash at `key` and calls `f` with it (`None` = missing); WRONGTYPE for others.
fn with_hash(
    db: &Db,
    key: &[u8],
    f: impl FnOnce(&crate::storage::ReadView<'_>, Option<Meta>) -> crate::storage::Result<Reply>,
) -> Reply {
    let view = db.view();
    let r = view.coll(key, KeyType::Hash).and_then(|m| match m {
        Err(r) => Ok(r),
        Ok(m) => f(&view, m),
    });
    r.unwrap_or_else(failed)
}

fn hset(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    if !a.len().is_multiple_of(2) {
        return wrong_args(a);
    }
    let pairs = a[2..]
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect();
    let op = WriteOp::HSet {
        key: a[1].clone(),
        pairs,
        nx: false,
    };
    if !is(&a[0], "hmset") {
        return write(db, db.now_ms(), op);
    }
    write_then(db, db.now_ms(), op, |r| {
        if r.is_error() {
            r
        } else {
            Reply::ok()
        }
    })
}

fn hsetnx(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let op = WriteOp::HSet {
        key: a[1].clone(),
        pairs: vec![(a[2].clone(), a[3].clone())],
        nx: true,
    };
    write(db, db.now_ms(), op)
}

fn hget(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    with_hash(db, &a[1], |v, m| {
        Ok(match m {
            None => Reply::Null,
            Some(m) => v
                .sub_get(&a[1], &m, &a[2])?
                .map_or(Reply::Null, Reply::Bulk),
        })
    })
}

fn hmget(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    with_hash(db, &a[1], |v, m| {
        let mut out = Vec::with_capacity(a.len() - 2);
        for f in &a[2..] {
            out.push(match &m {
                None => Reply::Null,
                Some(m) => v.sub_get(&a[1], m, f)?.map_or(Reply::Null, Reply::Bulk),
            });
        }
        Ok(Reply::Array(out))
    })
}

fn all_fields(db: &Db, key: &[u8]) -> Result<Vec<(Bytes, Bytes)>, Reply> {
    let view = db.view();
    match view.coll(key, KeyType::Hash) {
        Err(e) => Err(failed(e)),
        Ok(Err(r)) => Err(r),
        Ok(Ok(None)) => Ok(Vec::new()),
        Ok(Ok(Some(m))) => view.sub_all(key, &m).map_err(failed),
    }
}

fn hgetall(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    match all_fields(db, &a[1]) {
        Err(r) => r,
        Ok(all) => Reply::Map(
            all.into_iter()
                .map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v)))
                .collect(),
        ),
    }
}

fn hkeys(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    match all_fields(db, &a[1]) {
        Err(r) => r,
        Ok(all) => Reply::Array(all.into_iter().map(|(f, _)| Reply::Bulk(f)).collect()),
    }
}

fn hvals(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    match all_fields(db, &a[1]) {
        Err(r) => r,
        Ok(all) => Reply::Array(all.into_iter().map(|(_, v)| Reply::Bulk(v)).collect()),
    }
}

fn hdel(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let op = WriteOp::HDel {
        key: a[1].clone(),
        fields: a[2..].to_vec(),
    };
    write(db, db.now_ms(), op)
}

fn hexists(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    with_hash(db, &a[1], |v, m| {
        Ok(Reply::Integer(match m {
            None => 0,
            Some(m) => i64::from(v.sub_get(&a[1], &m, &a[2])?.is_some()),
        }))
    })
}

fn hlen(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    with_hash(db, &a[1], |_, m| {
        Ok(Reply::Integer(m.map_or(0, |m| m.size as i64)))
    })
}

fn hstrlen(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    with_hash(db, &a[1], |v, m| {
        Ok(Reply::Integer(match m {
            None => 0,
            Some(m) => v.sub_get(&a[1], &m, &a[2])?.map_or(0, |v| v.len() as i64),
        }))
    })
}

fn hincrby(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let delta = match int_arg(&a[3]) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let op = WriteOp::HIncrBy {
        key: a[1].clone(),
        field: a[2].clone(),
        delta,
    };
    write(db, db.now_ms(), op)
}

fn hincrbyfloat(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    match crate::storage::num::LongDouble::parse(&a[3]) {
        None => return Reply::error(crate::storage::num::ERR_NOT_FLOAT),
        Some(v) if !v.is_finite() => return Reply::error("ERR value is NaN or Infinity"),
        Some(_) => {}
    }
    let op = WriteOp::HIncrByFloat {
        key: a[1].clone(),
        field: a[2].clone(),
        delta: a[3].clone(),
    };
    write(db, db.now_ms(), op)
}

/// A random index below `n` (n > 0).
pub(crate) fn rand_below(n: usize) -> usize {
    (random_u64() % n as u64) as usize
}

/// Picks `count` distinct random indexes below `n` (count < n), in random order.
pub(crate) fn distinct_indexes(n: usize, count: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..count {
        let j = i + rand_below(n - i);
        idx.swap(i, j);
    }
    idx.truncate(count);
    idx
}

/// Redis's pick rule for SRANDMEMBER/HRANDFIELD/ZRANDMEMBER with a count: negative means
/// `|count|` picks that may repeat, a count covering the collection returns all of it, otherwise
/// `count` distinct elements in random order.
pub(crate) fn random_pick<T: Clone>(all: Vec<T>, count: i64) -> Vec<T> {
    if all.is_empty() || count == 0 {
        return Vec::new();
    }
    if count < 0 {
        (0..count.unsigned_abs())
            .map(|_| all[rand_below(all.len())].clone())
            .collect()
    } else if count as usize >= all.len() {
        all
    } else {
        distinct_indexes(all.len(), count as usize)
            .into_iter()
            .map(|i| all[i].clone())
            .collect()
    }
}

/// Parses a random-count argument like Redis (`-LONG_MAX..=LONG_MAX`).
pub(crate) fn rand_count(arg: &[u8]) -> Result<i64, Reply> {
    let l = int_arg(arg)?;
    if l == i64::MIN {
        return Err(Reply::error(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    Ok(l)
}

fn hrandfield(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    if a.len() == 2 {
        return match all_fields(db, &a[1]) {
            Err(r) => r,
            Ok(all) if all.is_empty() => Reply::Null,
            Ok(mut all) => Reply::Bulk(all.swap_remove(rand_below(all.len())).0),
        };
    }
    let withvalues = match a.len() {
        3 => false,
        4 if is(&a[3], "withvalues") => true,
        _ => return syntax_error(),
    };
    let l = match rand_count(&a[2]) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let all = match all_fields(db, &a[1]) {
        Err(r) => return r,
        Ok(all) => all,
    };
    if all.is_empty() || l == 0 {
        return Reply::Array(Vec::new());
    }
    let picked = random_pick(all, l);
    Reply::Array(pairs_reply(picked, withvalues, p))
}

/// Field(/value) replies: flat in RESP2, `[field, value]` pairs in RESP3.
pub(crate) fn pairs_reply(items: Vec<(Bytes, Bytes)>, withvalues: bool, p: Protocol) -> Vec<Reply> {
    let mut out = Vec::new();
    for (f, v) in items {
        if !withvalues {
            out.push(Reply::Bulk(f));
        } else if p == Protocol::Resp3 {
            out.push(Reply::Array(vec![Reply::Bulk(f), Reply::Bulk(v)]));
        } else {
            out.push(Reply::Bulk(f));
            out.push(Reply::Bulk(v));
        }
    }
    out
}

/// `HSCAN`/`SSCAN` over a collection's elements `(field, value)` in field order.
///
/// Like Redis, a collection in its compact encoding (listpack/intset) is returned whole with
/// cursor 0; a big one is paged by position (the cursor is the offset of the next element).
pub(crate) fn scan_elements(
    a: &[Bytes],
    kind: KeyType,
    db: &Db,
    with_values: Option<fn(&Bytes) -> Bytes>,
) -> Reply {
    let Some(cursor) = super::keys::parse_cursor(&a[2]) else {
        return Reply::error("ERR invalid cursor");
    };
    let view = db.view();
    let meta = match view.coll(&a[1], kind) {
        Err(e) => return failed(e),
        Ok(Err(r)) => return r,
        Ok(Ok(None)) => return empty_scan(),
        Ok(Ok(Some(m))) => m,
    };
    let mut count: i64 = 10;
    let mut pattern: Option<Bytes> = None;
    let mut i = 3;
    while i < a.len() {
        let left = a.len() - i;
        if is(&a[i], "count") && left >= 2 {
            count = match int_arg(&a[i + 1]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if count < 1 {
                return syntax_error();
            }
        } else if is(&a[i], "match") && left >= 2 {
            pattern = (a[i + 1][..] != b"*"[..]).then(|| a[i + 1].clone());
        } else {
            return syntax_error();
        }
        i += 2;
    }
    let all = match view.sub_all(&a[1], &meta) {
        Ok(all) => all,
        Err(e) => return failed(e),
    };
    let (page, next) = if meta.enc != BIG {
        (&all[..], 0)
    } else {
        let start = (cursor as usize).min(all.len());
        let end = start.saturating_add(count as usize).min(all.len());
        (
            &all[start..end],
            if end >= all.len() { 0 } else { end as u64 },
        )
    };
    let mut out = Vec::new();
    for (f, v) in page {
        if pattern.as_ref().is_some_and(|p| !glob::matches(p, f)) {
            continue;
        }
        out.push(Reply::Bulk(f.clone()));
        if let Some(fmt) = with_values {
            out.push(Reply::Bulk(fmt(v)));
        }
    }
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(next.to_string())),
        Reply::Array(out),
    ])
}

fn empty_scan() -> Reply {
    Reply::Array(vec![
        Reply::Bulk(Bytes::from_static(b"0")),
        Reply::Array(Vec::new()),
    ])
}

fn hscan(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    scan_elements(a, KeyType::Hash, db, Some(Bytes::clone))
}
