//! Blocking commands: BLPOP BRPOP BLMOVE BRPOPLPUSH BLMPOP BZPOPMIN BZPOPMAX BZMPOP, and
//! XREAD BLOCK (XREADGROUP BLOCK's glue is in `streams_group.rs`).
//!
//! Each tries its non-blocking form (LMPOP, LMOVE, ZMPOP) on the first non-empty key; if
//! every key is empty it marks the client blocked (see [`crate::command::blocking`]) and the
//! connection runs it again when a write fills one of the keys, or answers the timeout reply.

use super::lists::{lmpop_args, side};
use super::strings::{write_then, wrongtype};
use super::zset_algebra::zmpop_args;
use crate::command::blocking::{parse_timeout, BlockSpec};
use crate::command::{Ctx, Handler};
use crate::storage::{KeyType, WriteOp};
use bytes::Bytes;
use pinnacle_resp::Reply;
use tokio::time::Instant;

/// Handlers of this family.
pub const HANDLERS: &[(&str, Handler)] = &[
    ("blpop", blpop),
    ("brpop", brpop),
    ("blmove", blmove),
    ("brpoplpush", brpoplpush),
    ("blmpop", blmpop),
    ("bzpopmin", bzpopmin),
    ("bzpopmax", bzpopmax),
    ("bzmpop", bzmpop),
    ("xread", xread),
    ("xreadgroup", super::streams::xreadgroup),
];

/// XREAD, blocking with `BLOCK ms` when no stream has entries after the given ids.
fn xread(ctx: &mut Ctx<'_>, a: &[Bytes]) -> Reply {
    let db = ctx.db().clone();
    match super::streams::xread_or_block(&db, ctx.client.protocol, a) {
        Ok(reply) => reply,
        Err(b) => {
            let deadline = (b.timeout_ms > 0)
                .then(|| Instant::now() + std::time::Duration::from_millis(b.timeout_ms));
            ctx.client.blocked = Some(BlockSpec {
                keys: b.keys,
                deadline: ctx.client.rerun_deadline.take().unwrap_or(deadline),
                timeout_reply: Reply::NullArray,
                rerun: Some(b.rerun),
            });
            Reply::NullArray
        }
    }
}

/// Runs `attempt` on the first key of `keys` that holds a `kind`; blocks the client if none
/// does (or, applied in place, the attempt found it emptied meanwhile). `WRONGTYPE` for a key
/// of another type, like Redis.
fn pop_or_block(
    ctx: &mut Ctx<'_>,
    keys: &[Bytes],
    kind: KeyType,
    deadline: Option<Instant>,
    timeout_reply: Reply,
    attempt: impl FnOnce(&Bytes) -> Reply,
) -> Reply {
    let db = ctx.db();
    let now = db.now_ms();
    let mut found = None;
    for k in keys {
        match db.get(k, now) {
            Err(e) => return super::strings::failed(e),
            Ok(Some(m)) if m.kind != kind => return wrongtype(),
            Ok(Some(_)) => {
                found = Some(k);
                break;
            }
            Ok(None) => {}
        }
    }
    if let Some(k) = found {
        let r = attempt(k);
        // Applied in place and nothing was there after all: someone else popped it first.
        // (A Raft node's placeholder reply can't tell; its attempt answers as the apply does.)
        let emptied = !db.is_replicated() && matches!(r, Reply::Null | Reply::NullArray);
        if !emptied {
            return r;
        }
    }
    ctx.client.blocked = Some(BlockSpec {
        keys: keys.to_vec(),
        deadline: ctx.client.rerun_deadline.take().unwrap_or(deadline),
        timeout_reply,
        rerun: None,
    });
    // Not sent: the connection answers once the client is woken or times out.
    Reply::NullArray
}

fn timeout_at(arg: &[u8]) -> Result<Option<Instant>, Reply> {
    parse_timeout(arg)
}

fn bpop(ctx: &mut Ctx<'_>, a: &[Bytes], left: bool) -> Reply {
    let deadline = match timeout_at(&a[a.len() - 1]) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let keys = &a[1..a.len() - 1];
    let db = ctx.db().clone();
    pop_or_block(ctx, keys, KeyType::List, deadline, Reply::NullArray, |k| {
        let op = WriteOp::LMPop {
            keys: vec![k.clone()],
            left,
            count: 1,
        };
        // LMPOP's `[key, [value]]` becomes `[key, value]`.
        write_then(&db, db.now_ms(), op, |r| match r {
            Reply::Array(mut kv) if kv.len() == 2 => match kv.pop() {
                Some(Reply::Array(mut vals)) if vals.len() == 1 => {
                    kv.extend(vals.pop());
                    Reply::Array(kv)
                }
                _ => Reply::NullArray,
            },
            other => other,
        })
    })
}

fn blpop(ctx: &mut Ctx<'_>, a: &[Bytes]) -> Reply {
    bpop(ctx, a, true)
}

fn brpop(ctx: &mut Ctx<'_>, a: &[Bytes]) -> Reply {
    bpop(ctx, a, false)
}

fn bmove(
    ctx: &mut Ctx<'_>,
    src: &Bytes,
    dst: &Bytes,
    from_left: bool,
    to_left: bool,
    timeout: &[u8],
) -> Reply {
    let deadline = match timeout_at(timeout) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let db = ctx.db().clone();
    let keys = [src.clone()];
    // Redis answers a BLMOVE timeout with a null array, not a null bulk.
    pop_or_block(ctx, &keys, KeyType::List, deadline, Reply::NullArray, |k| {
        let op = WriteOp::LMove {
            src: k.clone(),
            dst: dst.clone(),
            from_left,
            to_left,
        };
        write_then(&db, db.now_ms(), op, |r| r)
    })
}

fn blmove(ctx: &mut Ctx<'_>, a: &[Bytes]) -> Reply {
    let (Some(from_left), Some(to_left)) = (side(&a[3]), side(&a[4])) else {
        return super::strings::syntax_error();
    };
    bmove(ctx, &a[1], &a[2], from_left, to_left, &a[5])
}

fn brpoplpush(ctx: &mut Ctx<'_>, a: &[Bytes]) -> Reply {
    bmove(ctx, &a[1], &a[2], false, true, &a[3])
}

fn blmpop(ctx: &mut Ctx<'_>, a: &[Bytes]) -> Reply {
    let deadline = match timeout_at(&a[1]) {
        Ok(d) => d,
        Err(r) => return r,
    };
    // `a[1..]` reads like LMPOP's arguments with the timeout in the command name's place.
    let (keys, left, count) = match lmpop_args(&a[1..]) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let db = ctx.db().clone();
    pop_or_block(ctx, &keys, KeyType::List, deadline, Reply::NullArray, |k| {
        let op = WriteOp::LMPop {
            keys: vec![k.clone()],
            left,
            count,
        };
        write_then(&db, db.now_ms(), op, |r| r)
    })
}

fn bzpop(ctx: &mut Ctx<'_>, a: &[Bytes], max: bool) -> Reply {
    let deadline = match timeout_at(&a[a.len() - 1]) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let keys = &a[1..a.len() - 1];
    let db = ctx.db().clone();
    pop_or_block(ctx, keys, KeyType::ZSet, deadline, Reply::NullArray, |k| {
        let op = WriteOp::ZMPop {
            keys: vec![k.clone()],
            max,
            count: 1,
        };
        // ZMPOP's `[key, [[member, score]]]` becomes `[key, member, score]`.
        write_then(&db, db.now_ms(), op, |r| match r {
            Reply::Array(mut kv) if kv.len() == 2 => match kv.pop() {
                Some(Reply::Array(mut pairs)) if pairs.len() == 1 => match pairs.pop() {
                    Some(Reply::Array(ms)) => {
                        kv.extend(ms);
                        Reply::Array(kv)
                    }
                    _ => Reply::NullArray,
                },
                _ => Reply::NullArray,
            },
            other => other,
        })
    })
}

fn bzpopmin(ctx: &mut Ctx<'_>, a: &[Bytes]) -> Reply {
    bzpop(ctx, a, false)
}

fn bzpopmax(ctx: &mut Ctx<'_>, a: &[Bytes]) -> Reply {
    bzpop(ctx, a, true)
}

fn bzmpop(ctx: &mut Ctx<'_>, a: &[Bytes]) -> Reply {
    let deadline = match timeout_at(&a[1]) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (keys, max, count) = match zmpop_args(&a[1..]) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let db = ctx.db().clone();
    pop_or_block(ctx, &keys, KeyType::ZSet, deadline, Reply::NullArray, |k| {
        let op = WriteOp::ZMPop {
            keys: vec![k.clone()],
            max,
            count,
        };
        write_then(&db, db.now_ms(), op, |r| r)
    })
}
