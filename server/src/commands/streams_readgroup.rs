//! XREADGROUP: `>` delivers new entries to the consumer (and its PEL unless NOACK), an id
//! re-reads the consumer's own pending entries; with `BLOCK ms` and nothing new it waits
//! like XREAD (`crate::command::blocking`) and is released with an error when its group or
//! stream goes away.

use super::groups::state_is_current;
use super::strict_id;
use crate::command::blocking::BlockSpec;
use crate::command::Ctx;
use crate::commands::strings::{failed, int_arg, is, syntax_error, write_then};
use crate::storage::stream::group_op::GroupOp;
use crate::storage::stream::{StreamId, MAX_ID};
use crate::storage::{Db, KeyType, ReadView, WriteOp};
use bytes::Bytes;
use pinnacle_resp::{Protocol, Reply};

/// A parsed XREADGROUP.
struct ReadGroupArgs {
    group: Bytes,
    consumer: Bytes,
    count: u64,
    noack: bool,
    block: Option<u64>,
    streams: Vec<(Bytes, Option<StreamId>)>,
}

/// `getTimeoutFromObjectOrReply` in milliseconds.
pub(super) fn block_ms(arg: &[u8]) -> Result<u64, Reply> {
    let ms =
        int_arg(arg).map_err(|_| Reply::error("ERR timeout is not an integer or out of range"))?;
    if ms < 0 {
        return Err(Reply::error("ERR timeout is negative"));
    }
    Ok(ms as u64)
}

/// Parses XREADGROUP and checks every stream (WRONGTYPE, NOGROUP, the ids) in Redis's order.
fn parse_readgroup(
    view: &ReadView<'_>,
    a: &[Bytes],
    check_state: bool,
) -> Result<ReadGroupArgs, Reply> {
    let (mut count, mut block, mut noack) = (0u64, None, false);
    let mut group: Option<(Bytes, Bytes)> = None;
    let mut streams_at = 0;
    let mut i = 1;
    while i < a.len() {
        let more = a.len() - i - 1;
        if is(&a[i], "block") && more > 0 {
            block = Some(block_ms(&a[i + 1])?);
            i += 1;
        } else if is(&a[i], "count") && more > 0 {
            count = int_arg(&a[i + 1])?.max(0) as u64;
            i += 1;
        } else if is(&a[i], "streams") && more > 0 {
            streams_at = i + 1;
            if !(a.len() - streams_at).is_multiple_of(2) {
                return Err(Reply::error(
                    "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
                ));
            }
            break;
        } else if is(&a[i], "group") && more >= 2 {
            group = Some((a[i + 1].clone(), a[i + 2].clone()));
            i += 2;
        } else if is(&a[i], "noack") {
            noack = true;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    if streams_at == 0 {
        return Err(syntax_error());
    }
    let Some((group, consumer)) = group else {
        return Err(Reply::error("ERR Missing GROUP option for XREADGROUP"));
    };
    let n = (a.len() - streams_at) / 2;
    let mut streams = Vec::with_capacity(n);
    for j in 0..n {
        let (key, id) = (&a[streams_at + j], &a[streams_at + n + j]);
        if check_state {
            let m = match view.coll(key, KeyType::Stream) {
                Err(e) => return Err(failed(e)),
                Ok(r) => r?,
            };
            let has_group = match &m {
                Some(m) => view.stream_group(key, m, &group).map_err(failed)?.is_some(),
                None => false,
            };
            if !has_group {
                return Err(crate::storage::stream::group_apply::nogroup_readgroup(
                    key, &group,
                ));
            }
        }
        let from = match id.as_ref() {
            b"$" => return Err(Reply::error(
                "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
            )),
            // Redis marks `>` with the largest id: an explicit MAX-MAX reads new entries too.
            b">" => None,
            _ => match strict_id(id)? {
                x if x == MAX_ID => None,
                x => Some(x),
            },
        };
        streams.push((key.clone(), from));
    }
    Ok(ReadGroupArgs {
        group,
        consumer,
        count,
        noack,
        block,
        streams,
    })
}

/// What a blocking XREADGROUP that found nothing waits for.
pub(crate) struct ReadGroupBlock {
    /// `BLOCK` in ms; 0 = forever.
    pub(crate) timeout_ms: u64,
    /// The stream keys.
    pub(crate) keys: Vec<Bytes>,
}

/// XREADGROUP: the reply, or (with `BLOCK` and nothing to read) what to wait for.
pub(crate) fn xreadgroup_or_block(
    db: &Db,
    p: Protocol,
    a: &[Bytes],
) -> Result<Reply, ReadGroupBlock> {
    let view = db.view();
    let current = state_is_current(db);
    let args = match parse_readgroup(&view, a, current) {
        Ok(x) => x,
        Err(r) => return Ok(r),
    };
    // History reads always answer; `>` only when the group is behind the stream. On a Raft
    // node without BLOCK the apply decides; with BLOCK a stream or group not seen yet goes
    // to the apply too (its error or entries), and nothing new means waiting.
    let mut serve = !current && args.block.is_none();
    for (key, from) in &args.streams {
        if serve || from.is_some() {
            serve = true;
            break;
        }
        let m = match view.coll(key, KeyType::Stream) {
            Ok(Ok(Some(m))) => m,
            _ if !current => {
                serve = true;
                break;
            }
            _ => continue,
        };
        let last = match view.stream_group(key, &m, &args.group) {
            Ok(Some(g)) => g.last,
            _ if !current => {
                serve = true;
                break;
            }
            _ => continue,
        };
        match view.stream_has_after(key, &m, last) {
            Ok(true) => {
                serve = true;
                break;
            }
            Ok(false) => {}
            Err(e) => return Ok(failed(e)),
        }
    }
    drop(view);
    let keys: Vec<Bytes> = args.streams.iter().map(|(k, _)| k.clone()).collect();
    if !serve {
        return match args.block {
            Some(ms) => Err(ReadGroupBlock {
                timeout_ms: ms,
                keys,
            }),
            None => Ok(Reply::NullArray),
        };
    }
    let op = GroupOp::ReadGroup {
        group: args.group,
        consumer: args.consumer,
        count: args.count,
        noack: args.noack,
        streams: args.streams,
    };
    let r = write_then(db, db.now_ms(), WriteOp::XGroup { op }, move |r| {
        // The apply answers in RESP2 shape; RESP3 gets a map of key → entries.
        match r {
            Reply::Array(items) if p == Protocol::Resp3 => Reply::Map(
                items
                    .into_iter()
                    .filter_map(|kv| match kv {
                        Reply::Array(mut kv) if kv.len() == 2 => {
                            let v = kv.pop()?;
                            let k = kv.pop()?;
                            Some((k, v))
                        }
                        _ => None,
                    })
                    .collect(),
            ),
            other => other,
        }
    });
    // Applied in place and someone else took the entries first: wait for more.
    if args.block.is_some() && !db.is_replicated() && r == Reply::NullArray {
        return Err(ReadGroupBlock {
            timeout_ms: args.block.unwrap_or(0),
            keys,
        });
    }
    Ok(r)
}

/// XREADGROUP without blocking (in-process tests).
#[cfg(test)]
pub(crate) fn xreadgroup_now(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    xreadgroup_or_block(db, p, a).unwrap_or(Reply::NullArray)
}

/// A blocked XREADGROUP whose stream or group went away is released with an error, as
/// Redis 7 does; `None` while both are there.
fn blocked_target_gone(db: &Db, a: &[Bytes]) -> Option<Reply> {
    let group = a
        .iter()
        .position(|x| is(x, "group"))
        .and_then(|i| a.get(i + 1))?;
    let at = a.iter().position(|x| is(x, "streams"))? + 1;
    let n = (a.len() - at) / 2;
    let view = db.view();
    for key in &a[at..at + n] {
        match view.coll(key, KeyType::Stream) {
            Ok(Ok(Some(m))) => {
                if let Ok(None) = view.stream_group(key, &m, group) {
                    return Some(Reply::error(
                        "NOGROUP the consumer group this client was blocked on no longer exists",
                    ));
                }
            }
            Ok(_) => return Some(Reply::error("UNBLOCKED the stream key no longer exists")),
            Err(e) => return Some(failed(e)),
        }
    }
    None
}

/// XREADGROUP as the server runs it: blocks with `BLOCK ms` like XREAD.
pub(crate) fn xreadgroup(ctx: &mut Ctx<'_>, a: &[Bytes]) -> Reply {
    let db = ctx.db().clone();
    // A retry of a blocked request (the connection set its deadline).
    if ctx.client.rerun_deadline.is_some() {
        if let Some(r) = blocked_target_gone(&db, a) {
            return r;
        }
    }
    match xreadgroup_or_block(&db, ctx.client.protocol, a) {
        Ok(reply) => reply,
        Err(b) => {
            let deadline = (b.timeout_ms > 0).then(|| {
                tokio::time::Instant::now() + std::time::Duration::from_millis(b.timeout_ms)
            });
            ctx.client.blocked = Some(BlockSpec {
                keys: b.keys,
                deadline: ctx.client.rerun_deadline.take().unwrap_or(deadline),
                timeout_reply: Reply::NullArray,
                rerun: None,
            });
            Reply::NullArray
        }
    }
}
