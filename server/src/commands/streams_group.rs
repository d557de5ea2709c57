//! Consumer-group commands: XGROUP (CREATE SETID DESTROY CREATECONSUMER DELCONSUMER HELP),
//! XACK, XPENDING, XCLAIM, XAUTOCLAIM (XREADGROUP is in `streams_readgroup.rs`).
//!
//! Handlers check arguments and state in Redis's order (so errors match), then send one
//! `WriteOp::XGroup`; the apply re-checks the state and does the work (see
//! `storage::stream::group_apply`). XINFO is in `streams_info.rs`.

use super::{interval_id, strict_id, with_stream, INVALID_ID};
use crate::commands::strings::{failed, int_arg, is, syntax_error, write};
use crate::storage::stream::group_apply::{nogroup_for_key, nogroup_key_or_group, NEED_KEY};
use crate::storage::stream::group_op::{ClaimTime, GroupOp, GroupStart};
use crate::storage::stream::{parse_id, StreamId, MAX_ID};
use crate::storage::{Db, KeyType, Meta, ReadView, WriteOp};
use bytes::Bytes;
use pinnacle_resp::{Protocol, Reply};

/// True when state read now is what the write will see (applied in place). On a Raft node
/// earlier pipelined writes may still be queued for the log, so the handler leaves the state
/// checks to the apply, which makes the same ones (only the order of a state error and an
/// argument error can then differ from Redis).
pub(super) fn state_is_current(db: &Db) -> bool {
    !db.is_replicated()
}

fn group_write(db: &Db, op: GroupOp) -> Reply {
    write(db, db.now_ms(), WriteOp::XGroup { op })
}

/// `addReplySubcommandSyntaxError`: names the subcommand as typed.
pub(super) fn subcommand_error(a: &[Bytes], cmd: &str) -> Reply {
    Reply::error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {cmd} HELP.",
        String::from_utf8_lossy(&a[1])
    ))
}

/// `getLongLongFromObjectOrReply` with Redis's custom message.
fn int_or(arg: &[u8], msg: &str) -> Result<i64, Reply> {
    int_arg(arg).map_err(|_| Reply::error(format!("ERR {msg}")))
}

/// The stream at `key` for XGROUP: WRONGTYPE, or the missing-key error unless `mkstream`.
fn xgroup_stream(view: &ReadView<'_>, key: &[u8], mkstream: bool) -> Result<Option<Meta>, Reply> {
    match view.coll(key, KeyType::Stream) {
        Err(e) => Err(failed(e)),
        Ok(Err(r)) => Err(r),
        Ok(Ok(None)) if !mkstream => Err(Reply::error(NEED_KEY)),
        Ok(Ok(m)) => Ok(m),
    }
}

/// The stream and the existence of `group` (the XGROUP SETID/CREATECONSUMER/DELCONSUMER checks).
fn xgroup_existing(db: &Db, key: &[u8], group: &[u8]) -> Result<(), Reply> {
    let view = db.view();
    let m = xgroup_stream(&view, key, false)?;
    let Some(m) = m else {
        return Err(Reply::error(NEED_KEY));
    };
    match view.stream_group(key, &m, group) {
        Err(e) => Err(failed(e)),
        Ok(None) => Err(nogroup_for_key(group, key)),
        Ok(Some(_)) => Ok(()),
    }
}

/// ENTRIESREAD's value: an integer >= 0 or -1.
fn entries_read_arg(arg: &[u8]) -> Result<i64, Reply> {
    let n = int_arg(arg)?;
    if n < -1 {
        return Err(Reply::error(
            "ERR value for ENTRIESREAD must be positive or -1",
        ));
    }
    Ok(n)
}

pub(super) fn xgroup_create(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let (mut mkstream, mut entries_read) = (false, -1);
    let mut i = 5;
    while i < a.len() {
        if is(&a[i], "mkstream") {
            mkstream = true;
            i += 1;
        } else if is(&a[i], "entriesread") && i + 1 < a.len() {
            entries_read = match entries_read_arg(&a[i + 1]) {
                Ok(n) => n,
                Err(r) => return r,
            };
            i += 2;
        } else {
            return subcommand_error(a, "XGROUP");
        }
    }
    if state_is_current(db) {
        if let Err(r) = xgroup_stream(&db.view(), &a[2], mkstream) {
            return r;
        }
    }
    if a.len() > 8 {
        return subcommand_error(a, "XGROUP");
    }
    let start = if a[4].as_ref() == b"$" {
        GroupStart::Last
    } else {
        match strict_id(&a[4]) {
            Ok(id) => GroupStart::Id(id),
            Err(r) => return r,
        }
    };
    group_write(
        db,
        GroupOp::Create {
            key: a[2].clone(),
            group: a[3].clone(),
            start,
            mkstream,
            entries_read,
        },
    )
}

pub(super) fn xgroup_setid(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    // ENTRIESREAD is parsed before the key is looked at.
    let mut entries_read = -1;
    if a.len() == 7 && is(&a[5], "entriesread") {
        entries_read = match entries_read_arg(&a[6]) {
            Ok(n) => n,
            Err(r) => return r,
        };
    } else if a.len() != 5 {
        return subcommand_error(a, "XGROUP");
    }
    if state_is_current(db) {
        if let Err(r) = xgroup_existing(db, &a[2], &a[3]) {
            return r;
        }
    }
    // Not strict: `-` and `+` are accepted here.
    let start = if a[4].as_ref() == b"$" {
        GroupStart::Last
    } else {
        match interval_id(&a[4], true) {
            Ok(id) if !a[4].starts_with(b"(") => GroupStart::Id(id),
            _ => return Reply::error(INVALID_ID),
        }
    };
    group_write(
        db,
        GroupOp::SetId {
            key: a[2].clone(),
            group: a[3].clone(),
            start,
            entries_read,
        },
    )
}

pub(super) fn xgroup_destroy(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    if state_is_current(db) {
        if let Err(r) = xgroup_stream(&db.view(), &a[2], false) {
            return r;
        }
    }
    group_write(
        db,
        GroupOp::Destroy {
            key: a[2].clone(),
            group: a[3].clone(),
        },
    )
}

pub(super) fn xgroup_createconsumer(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    if state_is_current(db) {
        if let Err(r) = xgroup_existing(db, &a[2], &a[3]) {
            return r;
        }
    }
    group_write(
        db,
        GroupOp::CreateConsumer {
            key: a[2].clone(),
            group: a[3].clone(),
            consumer: a[4].clone(),
        },
    )
}

pub(super) fn xgroup_delconsumer(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    if state_is_current(db) {
        if let Err(r) = xgroup_existing(db, &a[2], &a[3]) {
            return r;
        }
    }
    group_write(
        db,
        GroupOp::DelConsumer {
            key: a[2].clone(),
            group: a[3].clone(),
            consumer: a[4].clone(),
        },
    )
}

const XGROUP_HELP: &[&str] = &[
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
];

/// Help lines as status replies.
pub(super) fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(
        lines
            .iter()
            .map(|l| Reply::Simple(Bytes::from_static(l.as_bytes())))
            .collect(),
    )
}

pub(super) fn xgroup_help(_db: &Db, _p: Protocol, _a: &[Bytes]) -> Reply {
    help(XGROUP_HELP)
}

pub(super) fn xack(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    // A missing key or group acknowledges nothing, before the ids are looked at.
    let t = with_stream(db, &a[1], |v, m| {
        Ok(match m {
            Some(m) if v.stream_group(&a[1], &m, &a[2])?.is_some() => Reply::Null,
            _ => Reply::Integer(0),
        })
    });
    if t != Reply::Null && state_is_current(db) {
        return t;
    }
    let mut ids = Vec::with_capacity(a.len() - 3);
    for x in &a[3..] {
        match strict_id(x) {
            Ok(id) => ids.push(id),
            Err(r) => return r,
        }
    }
    group_write(
        db,
        GroupOp::Ack {
            key: a[1].clone(),
            group: a[2].clone(),
            ids,
        },
    )
}

/// The stream and group of XPENDING/XCLAIM/XAUTOCLAIM: WRONGTYPE, or NOGROUP.
fn claim_target(view: &ReadView<'_>, key: &[u8], group: &[u8]) -> Result<Meta, Reply> {
    let m = match view.coll(key, KeyType::Stream) {
        Err(e) => return Err(failed(e)),
        Ok(r) => r?,
    };
    let Some(m) = m else {
        return Err(nogroup_key_or_group(key, group));
    };
    match view.stream_group(key, &m, group) {
        Err(e) => Err(failed(e)),
        Ok(None) => Err(nogroup_key_or_group(key, group)),
        Ok(Some(_)) => Ok(m),
    }
}

/// An exclusive-capable interval id of XPENDING/XAUTOCLAIM.
fn range_id(arg: &[u8], start: bool) -> Result<StreamId, Reply> {
    interval_id(arg, start)
}

pub(super) fn xpending(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let argc = a.len();
    if argc != 3 && !(6..=9).contains(&argc) {
        return syntax_error();
    }
    let mut range = None;
    if argc >= 6 {
        let mut at = 3;
        let mut min_idle = 0;
        if is(&a[3], "idle") {
            min_idle = match int_arg(&a[4]) {
                Ok(n) => n,
                Err(r) => return r,
            };
            if argc < 8 {
                return syntax_error();
            }
            at += 2;
        }
        let count = match int_arg(&a[at + 2]) {
            Ok(n) => n.max(0) as u64,
            Err(r) => return r,
        };
        let lo = match range_id(&a[at], true) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let hi = match range_id(&a[at + 1], false) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let consumer = a.get(at + 3).cloned();
        range = Some((min_idle, lo, hi, count, consumer));
    }
    let view = db.view();
    let m = match claim_target(&view, &a[1], &a[2]) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let key = &a[1];
    let group = &a[2];
    let now = db.now_ms() as i64;
    let r = (|| -> crate::storage::Result<Reply> {
        let Some((min_idle, lo, hi, count, consumer)) = range else {
            let g = view
                .stream_group(key, &m, group)?
                .ok_or(crate::storage::StorageError::Corrupt("stream group record"))?;
            if g.pel == 0 {
                return Ok(Reply::Array(vec![
                    Reply::Integer(0),
                    Reply::Null,
                    Reply::Null,
                    Reply::NullArray,
                ]));
            }
            let (mut first, mut last) = (None, StreamId::default());
            view.stream_pel(
                key,
                &m,
                group,
                None,
                StreamId::default(),
                MAX_ID,
                |id, _| {
                    first.get_or_insert(id);
                    last = id;
                    true
                },
            )?;
            let owners = view
                .stream_consumers(key, &m, group)?
                .into_iter()
                .filter(|(_, c)| c.pel > 0)
                .map(|(name, c)| {
                    Reply::Array(vec![
                        Reply::Bulk(name),
                        Reply::Bulk(Bytes::from(c.pel.to_string())),
                    ])
                })
                .collect();
            return Ok(Reply::Array(vec![
                Reply::Integer(g.pel as i64),
                Reply::Bulk(first.unwrap_or_default().text()),
                Reply::Bulk(last.text()),
                Reply::Array(owners),
            ]));
        };
        if let Some(c) = &consumer {
            if view.stream_consumer(key, &m, group, c)?.is_none() {
                return Ok(Reply::Array(Vec::new()));
            }
        }
        let mut out = Vec::new();
        let mut left = count;
        if left > 0 {
            view.stream_pel(key, &m, group, consumer.as_deref(), lo, hi, |id, n| {
                let idle = now - n.time as i64;
                if min_idle != 0 && idle < min_idle {
                    return true;
                }
                out.push(Reply::Array(vec![
                    Reply::Bulk(id.text()),
                    Reply::Bulk(n.consumer),
                    Reply::Integer(idle.max(0)),
                    Reply::Integer(n.count as i64),
                ]));
                left -= 1;
                left > 0
            })?;
        }
        Ok(Reply::Array(out))
    })();
    r.unwrap_or_else(failed)
}

pub(super) fn xclaim(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    if state_is_current(db) {
        if let Err(r) = claim_target(&db.view(), &a[1], &a[2]) {
            return r;
        }
    }
    let min_idle = match int_or(&a[4], "Invalid min-idle-time argument for XCLAIM") {
        Ok(n) => n.max(0),
        Err(r) => return r,
    };
    let mut j = 5;
    let mut ids = Vec::new();
    while j < a.len() {
        match parse_id(&a[j], 0) {
            Some(id) => ids.push(id),
            None => break,
        }
        j += 1;
    }
    let (mut time, mut retry, mut force, mut justid, mut last_id) =
        (ClaimTime::Now, -1, false, false, StreamId::default());
    while j < a.len() {
        let more = a.len() - 1 - j;
        let opt = &a[j];
        if is(opt, "force") {
            force = true;
        } else if is(opt, "justid") {
            justid = true;
        } else if is(opt, "idle") && more > 0 {
            j += 1;
            match int_or(&a[j], "Invalid IDLE option argument for XCLAIM") {
                Ok(n) => time = ClaimTime::Idle(n),
                Err(r) => return r,
            }
        } else if is(opt, "time") && more > 0 {
            j += 1;
            match int_or(&a[j], "Invalid TIME option argument for XCLAIM") {
                Ok(n) => time = ClaimTime::Time(n),
                Err(r) => return r,
            }
        } else if is(opt, "retrycount") && more > 0 {
            j += 1;
            match int_or(&a[j], "Invalid RETRYCOUNT option argument for XCLAIM") {
                Ok(n) => retry = n,
                Err(r) => return r,
            }
        } else if is(opt, "lastid") && more > 0 {
            j += 1;
            match strict_id(&a[j]) {
                Ok(id) => last_id = id,
                Err(r) => return r,
            }
        } else {
            return Reply::error(format!(
                "ERR Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(opt)
            ));
        }
        j += 1;
    }
    group_write(
        db,
        GroupOp::Claim {
            key: a[1].clone(),
            group: a[2].clone(),
            consumer: a[3].clone(),
            min_idle,
            ids,
            time,
            retry,
            force,
            justid,
            last_id,
        },
    )
}

pub(super) fn xautoclaim(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let min_idle = match int_or(&a[4], "Invalid min-idle-time argument for XAUTOCLAIM") {
        Ok(n) => n.max(0),
        Err(r) => return r,
    };
    let start = match range_id(&a[5], true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (mut count, mut justid) = (100u64, false);
    let mut j = 6;
    while j < a.len() {
        let more = a.len() - 1 - j;
        if is(&a[j], "count") && more > 0 {
            // LONG_MAX / max(sizeof(streamID), attempts factor 10).
            let max = i64::MAX / 16;
            match int_arg(&a[j + 1]) {
                Ok(n) if (1..=max).contains(&n) => count = n as u64,
                _ => return Reply::error("ERR COUNT must be > 0"),
            }
            j += 1;
        } else if is(&a[j], "justid") {
            justid = true;
        } else {
            return syntax_error();
        }
        j += 1;
    }
    if state_is_current(db) {
        if let Err(r) = claim_target(&db.view(), &a[1], &a[2]) {
            return r;
        }
    }
    group_write(
        db,
        GroupOp::AutoClaim {
            key: a[1].clone(),
            group: a[2].clone(),
            consumer: a[3].clone(),
            min_idle,
            start,
            count,
            justid,
        },
    )
}
