//! Generic key commands: DEL, EXISTS, TYPE, expiry, RENAME, COPY, KEYS, SCAN, OBJECT,
//! DUMP/RESTORE, DBSIZE, FLUSHDB/FLUSHALL.

use super::strings::{
    db_handlers, failed, int_arg, invalid_expire, is, syntax_error, write, write_then,
};
use crate::command::Handler;
use crate::storage::{dump, num, Db, ExpireCond, KeyType, StrEnc, WriteOp};
use bytes::Bytes;
use pinnacle_resp::Reply;

db_handlers! {
    "del" => del,
    "unlink" => del,
    "exists" => exists,
    "type" => type_,
    "expire" => expire,
    "pexpire" => pexpire,
    "expireat" => expireat,
    "pexpireat" => pexpireat,
    "ttl" => ttl,
    "pttl" => pttl,
    "expiretime" => expiretime,
    "pexpiretime" => pexpiretime,
    "persist" => persist,
    "rename" => rename,
    "renamenx" => renamenx,
    "copy" => copy,
    "keys" => keys,
    "scan" => scan,
    "randomkey" => randomkey,
    "touch" => touch,
    "object|encoding" => object_encoding,
    "object|refcount" => object_refcount,
    "object|idletime" => object_idletime,
    "object|freq" => object_freq,
    "object|help" => object_help,
    "dump" => dump_cmd,
    "restore" => restore,
    "dbsize" => dbsize,
    "flushdb" => flush,
    "flushall" => flush,
}

fn del(db: &Db, a: &[Bytes]) -> Reply {
    write(
        db,
        db.now_ms(),
        WriteOp::Del {
            keys: a[1..].to_vec(),
        },
    )
}

/// EXISTS: the number of keys that exist, repeats counted (not an access).
fn exists(db: &Db, a: &[Bytes]) -> Reply {
    count_existing(db, a, false)
}

/// TOUCH: like EXISTS, but each found key counts as accessed.
fn touch(db: &Db, a: &[Bytes]) -> Reply {
    count_existing(db, a, true)
}

fn count_existing(db: &Db, a: &[Bytes], access: bool) -> Reply {
    let view = db.view();
    let mut n = 0;
    for key in &a[1..] {
        let found = if access {
            view.get(key)
        } else {
            view.peek(key)
        };
        match found {
            Ok(Some(_)) => n += 1,
            Ok(None) => {}
            Err(e) => return failed(e),
        }
    }
    Reply::Integer(n)
}

fn type_(db: &Db, a: &[Bytes]) -> Reply {
    match db.peek(&a[1], db.now_ms()) {
        Ok(Some(m)) => Reply::Simple(Bytes::from_static(m.kind.name().as_bytes())),
        Ok(None) => Reply::simple("none"),
        Err(e) => failed(e),
    }
}

/// An error reply that embeds a client argument the way Redis's `addReplyErrorFormat("%s")`
/// does: raw bytes up to the first NUL, `\r`/`\n` trimmed from the ends, inner ones as spaces.
fn error_with_arg(prefix: &str, arg: &[u8]) -> Reply {
    let arg = arg.split(|&b| b == 0).next().unwrap_or_default();
    let mut msg = prefix.as_bytes().to_vec();
    msg.extend_from_slice(arg);
    let is_nl = |b: &u8| *b == b'\r' || *b == b'\n';
    let start = msg.iter().position(|b| !is_nl(b)).unwrap_or(msg.len());
    let end = msg.iter().rposition(|b| !is_nl(b)).map_or(start, |e| e + 1);
    let msg: Vec<u8> = msg[start..end]
        .iter()
        .map(|&b| if is_nl(&b) { b' ' } else { b })
        .collect();
    Reply::Error(Bytes::from(msg))
}

/// `parseExtendedExpireArgumentsOrReply`.
fn expire_flags(a: &[Bytes]) -> Result<ExpireCond, Reply> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &a[3..] {
        if is(opt, "nx") {
            nx = true;
        } else if is(opt, "xx") {
            xx = true;
        } else if is(opt, "gt") {
            gt = true;
        } else if is(opt, "lt") {
            lt = true;
        } else {
            return Err(error_with_arg("ERR Unsupported option ", opt));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(Reply::error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(Reply::error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    Ok(match (nx, xx, gt, lt) {
        (true, ..) => ExpireCond::Nx,
        (_, true, true, _) => ExpireCond::XxGt,
        (_, true, _, true) => ExpireCond::XxLt,
        (_, true, ..) => ExpireCond::Xx,
        (_, _, true, _) => ExpireCond::Gt,
        (_, _, _, true) => ExpireCond::Lt,
        _ => ExpireCond::Always,
    })
}

fn expire_generic(db: &Db, a: &[Bytes], seconds: bool, relative: bool, cmd: &str) -> Reply {
    let cond = match expire_flags(a) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut when = match int_arg(&a[2]) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if seconds {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            return invalid_expire(cmd);
        }
        when *= 1000;
    }
    let now = db.now_ms();
    let base = if relative { now as i64 } else { 0 };
    if when > i64::MAX - base {
        return invalid_expire(cmd);
    }
    when += base;
    write(
        db,
        now,
        WriteOp::Expire {
            key: a[1].clone(),
            at_ms: when,
            cond,
        },
    )
}

fn expire(db: &Db, a: &[Bytes]) -> Reply {
    expire_generic(db, a, true, true, "expire")
}

fn pexpire(db: &Db, a: &[Bytes]) -> Reply {
    expire_generic(db, a, false, true, "pexpire")
}

fn expireat(db: &Db, a: &[Bytes]) -> Reply {
    expire_generic(db, a, true, false, "expireat")
}

fn pexpireat(db: &Db, a: &[Bytes]) -> Reply {
    expire_generic(db, a, false, false, "pexpireat")
}

/// TTL family: `-2` missing, `-1` no expiry, else remaining time or absolute time.
fn ttl_generic(db: &Db, a: &[Bytes], ms: bool, absolute: bool) -> Reply {
    let now = db.now_ms();
    let m = match db.peek(&a[1], now) {
        Ok(Some(m)) => m,
        Ok(None) => return Reply::Integer(-2),
        Err(e) => return failed(e),
    };
    if m.expire_at == 0 {
        return Reply::Integer(-1);
    }
    let at = m.expire_at as i64;
    let t = if absolute {
        at
    } else {
        (at - now as i64).max(0)
    };
    // Seconds are rounded to the nearest, for EXPIRETIME too (Redis's ttlGenericCommand).
    Reply::Integer(if ms { t } else { t.saturating_add(500) / 1000 })
}

fn ttl(db: &Db, a: &[Bytes]) -> Reply {
    ttl_generic(db, a, false, false)
}

fn pttl(db: &Db, a: &[Bytes]) -> Reply {
    ttl_generic(db, a, true, false)
}

fn expiretime(db: &Db, a: &[Bytes]) -> Reply {
    ttl_generic(db, a, false, true)
}

fn pexpiretime(db: &Db, a: &[Bytes]) -> Reply {
    ttl_generic(db, a, true, true)
}

fn persist(db: &Db, a: &[Bytes]) -> Reply {
    write(db, db.now_ms(), WriteOp::Persist { key: a[1].clone() })
}

fn rename_generic(db: &Db, a: &[Bytes], nx: bool) -> Reply {
    write(
        db,
        db.now_ms(),
        WriteOp::Rename {
            src: a[1].clone(),
            dst: a[2].clone(),
            nx,
        },
    )
}

fn rename(db: &Db, a: &[Bytes]) -> Reply {
    rename_generic(db, a, false)
}

fn renamenx(db: &Db, a: &[Bytes]) -> Reply {
    rename_generic(db, a, true)
}

/// Databases a client could name in `COPY ... DB n` (Redis's default `databases 16`).
const DATABASES: i64 = 16;

fn copy(db: &Db, a: &[Bytes]) -> Reply {
    let mut replace = false;
    let mut dbid: i64 = 0;
    let mut j = 3;
    while j < a.len() {
        let additional = a.len() - j - 1;
        if is(&a[j], "replace") {
            replace = true;
        } else if is(&a[j], "db") && additional > 0 {
            dbid =
                match int_arg(&a[j + 1]) {
                    Ok(v) if i32::try_from(v).is_ok() => v,
                    Ok(_) => return Reply::error(
                        "ERR value is out of range, value must between -2147483648 and 2147483647",
                    ),
                    Err(r) => return r,
                };
            if !(0..DATABASES).contains(&dbid) {
                return Reply::error("ERR DB index is out of range");
            }
            j += 1;
        } else {
            return syntax_error();
        }
        j += 1;
    }
    if dbid != 0 {
        return Reply::error("ERR Copying to another database is not allowed in cluster mode");
    }
    if a[1] == a[2] {
        return Reply::error("ERR source and destination objects are the same");
    }
    write(
        db,
        db.now_ms(),
        WriteOp::Copy {
            src: a[1].clone(),
            dst: a[2].clone(),
            replace,
        },
    )
}

fn keys(db: &Db, a: &[Bytes]) -> Reply {
    match db.keys(&a[1]) {
        Ok(keys) => Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
        Err(e) => failed(e),
    }
}

/// `strtoul` as `parseScanCursorOrReply` uses it.
pub(crate) fn parse_cursor(s: &[u8]) -> Option<u64> {
    if s.first()
        .is_some_and(|c| c.is_ascii_whitespace() || *c == 0x0b || *c == 0x0c)
    {
        return None;
    }
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if s.is_empty() {
        return Some(0);
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

fn scan(db: &Db, a: &[Bytes]) -> Reply {
    let Some(cursor) = parse_cursor(&a[1]) else {
        return Reply::error("ERR invalid cursor");
    };
    let mut count: i64 = 10;
    let mut pattern: Option<Bytes> = None;
    let mut type_name: Option<Bytes> = None;
    let mut i = 2;
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
            // A lone "*" matches everything, including the empty key.
            pattern = (a[i + 1][..] != b"*"[..]).then(|| a[i + 1].clone());
        } else if is(&a[i], "type") && left >= 2 {
            type_name = Some(a[i + 1].clone());
        } else {
            return syntax_error();
        }
        i += 2;
    }
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    match db.scan(cursor, count, pattern.as_deref(), type_name.as_deref()) {
        Ok(page) => Reply::Array(vec![
            Reply::Bulk(Bytes::from(page.cursor.to_string())),
            Reply::Array(page.keys.into_iter().map(Reply::Bulk).collect()),
        ]),
        Err(e) => failed(e),
    }
}

fn randomkey(db: &Db, _a: &[Bytes]) -> Reply {
    match db.random_key() {
        Ok(Some(k)) => Reply::Bulk(k),
        Ok(None) => Reply::Null,
        Err(e) => failed(e),
    }
}

/// The encoding `OBJECT ENCODING` reports for a string value: for values Redis would pass
/// through `tryObjectEncoding`, `int` for a canonical integer of at most 20 chars, `embstr` up
/// to 44 bytes, else `raw`; values Redis modifies in place (APPEND, SETRANGE) are `raw`.
pub(crate) fn string_encoding(value: &[u8], enc: StrEnc) -> &'static str {
    match enc {
        StrEnc::Raw => "raw",
        StrEnc::Auto if value.len() <= 20 && num::parse_i64(value).is_some() => "int",
        _ if value.len() <= 44 => "embstr",
        _ => "raw",
    }
}

fn object_encoding(db: &Db, a: &[Bytes]) -> Reply {
    match db.peek(&a[2], db.now_ms()) {
        Ok(Some(m)) => Reply::bulk(match m.kind {
            KeyType::String => string_encoding(&m.value, m.enc),
            KeyType::Hash if m.enc == crate::storage::BIG => "hashtable",
            KeyType::Hash => "listpack",
            KeyType::Set if m.enc == crate::storage::BIG => "hashtable",
            KeyType::Set => "intset",
            KeyType::List => "quicklist",
            KeyType::ZSet if m.enc == crate::storage::BIG => "skiplist",
            KeyType::ZSet => "listpack",
            KeyType::Stream => "stream",
        }),
        Ok(None) => Reply::Null,
        Err(e) => failed(e),
    }
}

/// Redis shares the integer objects 0..9999; their refcount reads as `INT_MAX`.
fn object_refcount(db: &Db, a: &[Bytes]) -> Reply {
    match db.peek(&a[2], db.now_ms()) {
        Ok(Some(m)) => {
            let shared = m.kind == KeyType::String
                && m.enc == StrEnc::Auto
                && m.value.len() <= 20
                && num::parse_i64(&m.value).is_some_and(|v| (0..10000).contains(&v));
            Reply::Integer(if shared { i64::from(i32::MAX) } else { 1 })
        }
        Ok(None) => Reply::Null,
        Err(e) => failed(e),
    }
}

/// Seconds since the key was last read or written (approximate, see `storage::lru`).
fn object_idletime(db: &Db, a: &[Bytes]) -> Reply {
    let now = db.now_ms();
    match db.peek(&a[2], now) {
        Ok(Some(_)) => Reply::Integer(db.idle_secs(&a[2], now) as i64),
        Ok(None) => Reply::Null,
        Err(e) => failed(e),
    }
}

/// With the default `noeviction` policy Redis does not track access frequency either.
fn object_freq(db: &Db, a: &[Bytes]) -> Reply {
    match db.peek(&a[2], db.now_ms()) {
        Ok(Some(_)) => Reply::error("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust."),
        Ok(None) => Reply::Null,
        Err(e) => failed(e),
    }
}

fn object_help(_db: &Db, _a: &[Bytes]) -> Reply {
    const LINES: &[&str] = &[
        "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ENCODING <key>",
        "    Return the kind of internal representation used in order to store the value",
        "    associated with a <key>.",
        "FREQ <key>",
        "    Return the access frequency index of the <key>. The returned integer is",
        "    proportional to the logarithm of the recent access frequency of the key.",
        "IDLETIME <key>",
        "    Return the idle time of the <key>, that is the approximated number of",
        "    seconds elapsed since the last access to the key.",
        "REFCOUNT <key>",
        "    Return the number of references of the value associated with the specified",
        "    <key>.",
        "HELP",
        "    Prints this help.",
    ];
    Reply::Array(
        LINES
            .iter()
            .map(|l| Reply::Simple(Bytes::from_static(l.as_bytes())))
            .collect(),
    )
}

fn dump_cmd(db: &Db, a: &[Bytes]) -> Reply {
    match db.dump_value(&a[1]) {
        Ok(Some(v)) => Reply::Bulk(dump::encode_value(&v)),
        Ok(None) => Reply::Null,
        Err(e) => failed(e),
    }
}

fn restore(db: &Db, a: &[Bytes]) -> Reply {
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq): (i64, i64) = (-1, -1);
    let mut j = 4;
    while j < a.len() {
        let additional = a.len() - j - 1;
        if is(&a[j], "replace") {
            replace = true;
        } else if is(&a[j], "absttl") {
            absttl = true;
        } else if is(&a[j], "idletime") && additional >= 1 && freq == -1 {
            idle = match int_arg(&a[j + 1]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if idle < 0 {
                return Reply::error("ERR Invalid IDLETIME value, must be >= 0");
            }
            j += 1;
        } else if is(&a[j], "freq") && additional >= 1 && idle == -1 {
            freq = match int_arg(&a[j + 1]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if !(0..=255).contains(&freq) {
                return Reply::error("ERR Invalid FREQ value, must be >= 0 and <= 255");
            }
            j += 1;
        } else {
            return syntax_error();
        }
        j += 1;
    }
    let now = db.now_ms();
    let checked = int_arg(&a[2]).and_then(|ttl| {
        if ttl < 0 {
            Err(Reply::error("ERR Invalid TTL value, must be >= 0"))
        } else if !dump::verify(&a[3]) {
            Err(Reply::error(
                "ERR DUMP payload version or checksum are wrong",
            ))
        } else {
            Ok(ttl)
        }
    });
    let ttl = match checked {
        Ok(ttl) => ttl,
        Err(r) => {
            // Redis reports an existing key before looking at the TTL and payload.
            if !replace {
                match db.get(&a[1], now) {
                    Ok(Some(_)) => return Reply::error("BUSYKEY Target key name already exists."),
                    Ok(None) => {}
                    Err(e) => return failed(e),
                }
            }
            return r;
        }
    };
    let expire_at = if ttl == 0 {
        0
    } else if absttl {
        ttl as u64
    } else {
        (ttl as u64).saturating_add(now)
    };
    let idle_db = db.clone();
    let key = a[1].clone();
    write_then(
        db,
        now,
        WriteOp::Restore {
            key: a[1].clone(),
            payload: a[3].clone(),
            expire_at,
            replace,
        },
        move |reply| {
            if idle >= 0 && !reply.is_error() {
                idle_db.set_idle(&key, now, idle as u64);
            }
            reply
        },
    )
}

fn dbsize(db: &Db, _a: &[Bytes]) -> Reply {
    match db.dbsize() {
        Ok(n) => Reply::Integer(n as i64),
        Err(e) => failed(e),
    }
}

/// FLUSHDB / FLUSHALL `[ASYNC|SYNC]`: one range delete of the whole keyspace either way.
fn flush(db: &Db, a: &[Bytes]) -> Reply {
    if a.len() > 2 || (a.len() == 2 && !is(&a[1], "sync") && !is(&a[1], "async")) {
        return syntax_error();
    }
    write(db, db.now_ms(), WriteOp::FlushAll)
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "redis_diff_tests.rs"]
pub(crate) mod redis_diff;
