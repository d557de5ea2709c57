//! String commands: GET, SET and friends, counters, ranges, LCS.
//!
//! Each handler parses its arguments into typed values first (a bad argument never reaches
//! storage), then either reads through the `Db` read API or builds a logical
//! [`WriteOp`] and applies it.

use crate::command::Handler;
use crate::storage::apply::{storage_error, WRONGTYPE};
use crate::storage::num::{self, LongDouble, ERR_NOT_FLOAT, ERR_NOT_INTEGER};
use crate::storage::{Db, ExpireSpec, KeyType, Meta, SetCond, StorageError, WriteCommand, WriteOp};
use bytes::Bytes;
use pinnacle_resp::Reply;

/// Registers `name => fn(&Db, &[Bytes]) -> Reply` handlers as command-table handlers (and, in
/// tests, as a table callable with just a `Db`).
macro_rules! db_handlers {
    ($($name:literal => $f:path),* $(,)?) => {
        /// Handlers of this family.
        pub const HANDLERS: &[(&str, Handler)] = &[
            $(($name, |ctx: &mut crate::command::Ctx<'_>, args: &[Bytes]| $f(ctx.db(), args))),*
        ];
        /// The same handlers, callable with only a `Db` (in-process tests).
        #[cfg(test)]
        pub(crate) const DB_HANDLERS: &[(&str, fn(&Db, &[Bytes]) -> Reply)] = &[$(($name, $f)),*];
    };
}
pub(crate) use db_handlers;

db_handlers! {
    "get" => get,
    "set" => set,
    "setnx" => setnx,
    "setex" => setex,
    "psetex" => psetex,
    "getset" => getset,
    "getdel" => getdel,
    "getex" => getex,
    "mget" => mget,
    "mset" => mset,
    "msetnx" => msetnx,
    "incr" => incr,
    "decr" => decr,
    "incrby" => incrby,
    "decrby" => decrby,
    "incrbyfloat" => incrbyfloat,
    "append" => append,
    "strlen" => strlen,
    "getrange" => getrange,
    "substr" => getrange,
    "setrange" => setrange,
    "lcs" => lcs::lcs,
}

/// `-WRONGTYPE ...`.
pub(crate) fn wrongtype() -> Reply {
    Reply::error(WRONGTYPE)
}

/// `-ERR syntax error`.
pub(crate) fn syntax_error() -> Reply {
    Reply::error("ERR syntax error")
}

/// A reply for a storage failure.
pub(crate) fn failed(e: StorageError) -> Reply {
    storage_error(&e)
}

/// Parses an integer argument (`string2ll`), or the Redis error reply.
pub(crate) fn int_arg(arg: &[u8]) -> Result<i64, Reply> {
    num::parse_i64(arg).ok_or_else(|| Reply::error(ERR_NOT_INTEGER))
}

/// Case-insensitive comparison of an argument with an option name.
pub(crate) fn is(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

/// Applies `op` stamped with `now` and returns the reply.
pub(crate) fn write(db: &Db, now: u64, op: WriteOp) -> Reply {
    db.apply_owned(WriteCommand { now_ms: now, op }, None)
}

/// [`write`], then `map` on the reply. On a Raft node the reply arrives after the handler
/// returns, so a handler that adjusts its write's reply must do it here, not on the result.
pub(crate) fn write_then(
    db: &Db,
    now: u64,
    op: WriteOp,
    map: impl FnOnce(Reply) -> Reply + Send + 'static,
) -> Reply {
    db.apply_owned(WriteCommand { now_ms: now, op }, Some(Box::new(map)))
}

/// `ERR invalid expire time in '<cmd>' command`.
pub(crate) fn invalid_expire(cmd: &str) -> Reply {
    Reply::error(format!("ERR invalid expire time in '{cmd}' command"))
}

fn string_reply(meta: Option<Meta>) -> Reply {
    match meta {
        None => Reply::Null,
        Some(m) if m.kind == KeyType::String => Reply::Bulk(m.value),
        Some(_) => wrongtype(),
    }
}

fn get(db: &Db, a: &[Bytes]) -> Reply {
    match db.get(&a[1], db.now_ms()) {
        Ok(m) => string_reply(m),
        Err(e) => failed(e),
    }
}

/// Expiry units and bases of the SET/GETEX options.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExpireOpt {
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// Converts an expire argument into absolute ms like `getExpireMillisecondsOrReply`.
fn expire_ms(now: u64, opt: ExpireOpt, arg: &[u8], cmd: &str) -> Result<u64, Reply> {
    let v = int_arg(arg)?;
    let seconds = matches!(opt, ExpireOpt::Ex | ExpireOpt::ExAt);
    if v <= 0 || (seconds && v > i64::MAX / 1000) {
        return Err(invalid_expire(cmd));
    }
    let mut ms = if seconds { v * 1000 } else { v };
    if matches!(opt, ExpireOpt::Ex | ExpireOpt::Px) {
        ms = ms
            .checked_add(now as i64)
            .ok_or_else(|| invalid_expire(cmd))?;
    }
    Ok(ms as u64)
}

/// Parsed `SET`/`GETEX` options (`parseExtendedStringArgumentsOrReply`).
#[derive(Default)]
struct StringOpts {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    expire: Option<(ExpireOpt, Bytes)>,
}

fn parse_string_opts(a: &[Bytes], first: usize, is_set: bool) -> Result<StringOpts, Reply> {
    let mut o = StringOpts::default();
    let mut j = first;
    while j < a.len() {
        let opt = &a[j][..];
        let next = a.get(j + 1);
        let has_expire = o.expire.is_some();
        let expire_kind = o.expire.as_ref().map(|(k, _)| *k);
        let other_expire = |k: ExpireOpt| expire_kind.is_some_and(|e| e != k);
        if is(opt, "nx") && !o.xx && is_set {
            o.nx = true;
        } else if is(opt, "xx") && !o.nx && is_set {
            o.xx = true;
        } else if is(opt, "get") && is_set {
            o.get = true;
        } else if is(opt, "keepttl") && !o.persist && !has_expire && is_set {
            o.keepttl = true;
        } else if is(opt, "persist") && !is_set && !has_expire && !o.keepttl {
            o.persist = true;
        } else if let (Some(kind), Some(next)) = (
            if is(opt, "ex") {
                Some(ExpireOpt::Ex)
            } else if is(opt, "px") {
                Some(ExpireOpt::Px)
            } else if is(opt, "exat") {
                Some(ExpireOpt::ExAt)
            } else if is(opt, "pxat") {
                Some(ExpireOpt::PxAt)
            } else {
                None
            },
            next,
        ) {
            // The same option twice is accepted (last wins); mixing kinds is a syntax error.
            if o.keepttl || o.persist || other_expire(kind) {
                return Err(syntax_error());
            }
            o.expire = Some((kind, next.clone()));
            j += 1;
        } else {
            return Err(syntax_error());
        }
        j += 1;
    }
    Ok(o)
}

fn set(db: &Db, a: &[Bytes]) -> Reply {
    let o = match parse_string_opts(a, 3, true) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let now = db.now_ms();
    let expire = match &o.expire {
        Some((kind, arg)) => match expire_ms(now, *kind, arg, "set") {
            Ok(ms) => ExpireSpec::At(ms),
            Err(r) => return r,
        },
        None if o.keepttl => ExpireSpec::Keep,
        None => ExpireSpec::Clear,
    };
    let cond = if o.nx {
        SetCond::Nx
    } else if o.xx {
        SetCond::Xx
    } else {
        SetCond::Always
    };
    write(
        db,
        now,
        WriteOp::Set {
            key: a[1].clone(),
            value: a[2].clone(),
            cond,
            get: o.get,
            expire,
        },
    )
}

fn setnx(db: &Db, a: &[Bytes]) -> Reply {
    write(
        db,
        db.now_ms(),
        WriteOp::SetNx {
            key: a[1].clone(),
            value: a[2].clone(),
        },
    )
}

fn setex_generic(db: &Db, a: &[Bytes], opt: ExpireOpt, cmd: &str) -> Reply {
    let now = db.now_ms();
    let at = match expire_ms(now, opt, &a[2], cmd) {
        Ok(ms) => ms,
        Err(r) => return r,
    };
    write(
        db,
        now,
        WriteOp::Set {
            key: a[1].clone(),
            value: a[3].clone(),
            cond: SetCond::Always,
            get: false,
            expire: ExpireSpec::At(at),
        },
    )
}

fn setex(db: &Db, a: &[Bytes]) -> Reply {
    setex_generic(db, a, ExpireOpt::Ex, "setex")
}

fn psetex(db: &Db, a: &[Bytes]) -> Reply {
    setex_generic(db, a, ExpireOpt::Px, "psetex")
}

fn getset(db: &Db, a: &[Bytes]) -> Reply {
    write(
        db,
        db.now_ms(),
        WriteOp::Set {
            key: a[1].clone(),
            value: a[2].clone(),
            cond: SetCond::Always,
            get: true,
            expire: ExpireSpec::Clear,
        },
    )
}

fn getdel(db: &Db, a: &[Bytes]) -> Reply {
    write(db, db.now_ms(), WriteOp::GetDel { key: a[1].clone() })
}

fn getex(db: &Db, a: &[Bytes]) -> Reply {
    let o = match parse_string_opts(a, 2, false) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let now = db.now_ms();
    let expire = match &o.expire {
        Some((kind, arg)) => match expire_ms(now, *kind, arg, "getex") {
            Ok(ms) => ExpireSpec::At(ms),
            // Redis looks the key up before validating the time: a missing key is nil and a
            // wrong type is WRONGTYPE even with a bad expire value.
            Err(r) => {
                return match db.get(&a[1], now) {
                    Ok(None) => Reply::Null,
                    Ok(Some(m)) if m.kind != KeyType::String => wrongtype(),
                    Ok(Some(_)) => r,
                    Err(e) => failed(e),
                }
            }
        },
        None if o.persist => ExpireSpec::Clear,
        // Without options GETEX is a plain read.
        None => return get(db, a),
    };
    write(
        db,
        now,
        WriteOp::GetEx {
            key: a[1].clone(),
            expire,
        },
    )
}

fn mget(db: &Db, a: &[Bytes]) -> Reply {
    let view = db.view();
    let mut out = Vec::with_capacity(a.len() - 1);
    for key in &a[1..] {
        match view.get(key) {
            Ok(Some(m)) if m.kind == KeyType::String => out.push(Reply::Bulk(m.value)),
            Ok(_) => out.push(Reply::Null),
            Err(e) => return failed(e),
        }
    }
    Reply::Array(out)
}

fn pairs(a: &[Bytes], cmd: &str) -> Result<Vec<(Bytes, Bytes)>, Reply> {
    if a.len().is_multiple_of(2) {
        return Err(Reply::error(format!(
            "ERR wrong number of arguments for '{cmd}' command"
        )));
    }
    Ok(a[1..]
        .chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect())
}

fn mset(db: &Db, a: &[Bytes]) -> Reply {
    match pairs(a, "mset") {
        Ok(pairs) => write(db, db.now_ms(), WriteOp::MSet { pairs }),
        Err(r) => r,
    }
}

fn msetnx(db: &Db, a: &[Bytes]) -> Reply {
    match pairs(a, "msetnx") {
        Ok(pairs) => write(db, db.now_ms(), WriteOp::MSetNx { pairs }),
        Err(r) => r,
    }
}

fn incr_by(db: &Db, key: &Bytes, delta: i64) -> Reply {
    write(
        db,
        db.now_ms(),
        WriteOp::IncrBy {
            key: key.clone(),
            delta,
        },
    )
}

fn incr(db: &Db, a: &[Bytes]) -> Reply {
    incr_by(db, &a[1], 1)
}

fn decr(db: &Db, a: &[Bytes]) -> Reply {
    incr_by(db, &a[1], -1)
}

fn incrby(db: &Db, a: &[Bytes]) -> Reply {
    match int_arg(&a[2]) {
        Ok(d) => incr_by(db, &a[1], d),
        Err(r) => r,
    }
}

fn decrby(db: &Db, a: &[Bytes]) -> Reply {
    match int_arg(&a[2]) {
        Ok(i64::MIN) => Reply::error("ERR decrement would overflow"),
        Ok(d) => incr_by(db, &a[1], -d),
        Err(r) => r,
    }
}

fn incrbyfloat(db: &Db, a: &[Bytes]) -> Reply {
    if LongDouble::parse(&a[2]).is_none() {
        // Redis checks the key's type before parsing the increment.
        return match db.get(&a[1], db.now_ms()) {
            Ok(Some(m)) if m.kind != KeyType::String => wrongtype(),
            Ok(_) => Reply::error(ERR_NOT_FLOAT),
            Err(e) => failed(e),
        };
    }
    write(
        db,
        db.now_ms(),
        WriteOp::IncrByFloat {
            key: a[1].clone(),
            delta: a[2].clone(),
        },
    )
}

fn append(db: &Db, a: &[Bytes]) -> Reply {
    write(
        db,
        db.now_ms(),
        WriteOp::Append {
            key: a[1].clone(),
            value: a[2].clone(),
        },
    )
}

fn strlen(db: &Db, a: &[Bytes]) -> Reply {
    match db.get(&a[1], db.now_ms()) {
        Ok(None) => Reply::Integer(0),
        Ok(Some(m)) if m.kind == KeyType::String => Reply::Integer(m.value.len() as i64),
        Ok(Some(_)) => wrongtype(),
        Err(e) => failed(e),
    }
}

/// The byte range `GETRANGE` returns for a string of `len` bytes (Redis 7.0 rules).
pub(crate) fn range_of(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    if start < 0 {
        start = 0;
    }
    if end < 0 {
        end = 0;
    }
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return None;
    }
    Some((start as usize, end as usize + 1))
}

fn getrange(db: &Db, a: &[Bytes]) -> Reply {
    let (start, end) = match (int_arg(&a[2]), int_arg(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match db.get(&a[1], db.now_ms()) {
        Ok(None) => Reply::Bulk(Bytes::new()),
        Ok(Some(m)) if m.kind == KeyType::String => match range_of(m.value.len(), start, end) {
            Some((s, e)) => Reply::Bulk(m.value.slice(s..e)),
            None => Reply::Bulk(Bytes::new()),
        },
        Ok(Some(_)) => wrongtype(),
        Err(e) => failed(e),
    }
}

fn setrange(db: &Db, a: &[Bytes]) -> Reply {
    let offset = match int_arg(&a[2]) {
        Ok(o) => o,
        Err(r) => return r,
    };
    if offset < 0 {
        return Reply::error("ERR offset is out of range");
    }
    write(
        db,
        db.now_ms(),
        WriteOp::SetRange {
            key: a[1].clone(),
            offset: offset as u64,
            value: a[3].clone(),
        },
    )
}

#[path = "strings_lcs.rs"]
mod lcs;

#[cfg(test)]
#[path = "strings_tests.rs"]
pub(crate) mod tests;
