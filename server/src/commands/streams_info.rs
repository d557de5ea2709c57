//! XINFO STREAM [FULL [COUNT n]], XINFO GROUPS, XINFO CONSUMERS, XINFO HELP: fields in
//! Redis 7.0's order, maps in RESP3.
//!
//! `radix-tree-keys` / `radix-tree-nodes` describe Redis's memory layout; we report the
//! count of 100-entry nodes the stream would need and that plus one.

use super::groups::{help, subcommand_error};
use crate::commands::strings::{failed, int_arg, is};
use crate::storage::stream::group::{lag, GroupRec};
use crate::storage::stream::group_apply::nogroup_for_key;
use crate::storage::stream::{entry_reply, StreamId, StreamState, MAX_ID};
use crate::storage::{Db, KeyType, Meta, ReadView, Result};
use bytes::Bytes;
use pinnacle_resp::{Protocol, Reply};

fn b(s: &'static str) -> Reply {
    Reply::Bulk(Bytes::from_static(s.as_bytes()))
}

/// The stream for XINFO: `ERR no such key` when missing.
fn info_stream(view: &ReadView<'_>, key: &[u8]) -> std::result::Result<Meta, Reply> {
    match view.coll(key, KeyType::Stream) {
        Err(e) => Err(failed(e)),
        Ok(Err(r)) => Err(r),
        Ok(Ok(None)) => Err(Reply::error("ERR no such key")),
        Ok(Ok(Some(m))) => Ok(m),
    }
}

fn lag_reply(st: &StreamState, len: u64, g: &GroupRec) -> Reply {
    lag(st, len, g).map_or(Reply::Null, Reply::Integer)
}

fn entries_read_reply(g: &GroupRec) -> Reply {
    if g.entries_read == -1 {
        Reply::Null
    } else {
        Reply::Integer(g.entries_read)
    }
}

pub(super) fn xinfo_groups(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let view = db.view();
    let m = match info_stream(&view, &a[2]) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let st = StreamState::decode(&m.value);
    match view.stream_groups(&a[2], &m) {
        Err(e) => failed(e),
        Ok(groups) => Reply::Array(
            groups
                .into_iter()
                .map(|(name, g)| {
                    Reply::Map(vec![
                        (b("name"), Reply::Bulk(name)),
                        (b("consumers"), Reply::Integer(g.consumers as i64)),
                        (b("pending"), Reply::Integer(g.pel as i64)),
                        (b("last-delivered-id"), Reply::Bulk(g.last.text())),
                        (b("entries-read"), entries_read_reply(&g)),
                        (b("lag"), lag_reply(&st, m.size, &g)),
                    ])
                })
                .collect(),
        ),
    }
}

pub(super) fn xinfo_consumers(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let view = db.view();
    let m = match info_stream(&view, &a[2]) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let now = db.now_ms() as i64;
    let r = (|| -> Result<Reply> {
        if view.stream_group(&a[2], &m, &a[3])?.is_none() {
            return Ok(nogroup_for_key(&a[3], &a[2]));
        }
        Ok(Reply::Array(
            view.stream_consumers(&a[2], &m, &a[3])?
                .into_iter()
                .map(|(name, c)| {
                    Reply::Map(vec![
                        (b("name"), Reply::Bulk(name)),
                        (b("pending"), Reply::Integer(c.pel as i64)),
                        (b("idle"), Reply::Integer((now - c.seen as i64).max(0))),
                    ])
                })
                .collect(),
        ))
    })();
    r.unwrap_or_else(failed)
}

const XINFO_HELP: &[&str] = &[
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Prints this help.",
];

pub(super) fn xinfo_help(_db: &Db, _p: Protocol, _a: &[Bytes]) -> Reply {
    help(XINFO_HELP)
}

/// The newest entry (the last id is usually still there: one lookup).
fn last_entry(view: &ReadView<'_>, key: &[u8], m: &Meta, st: &StreamState) -> Result<Reply> {
    if m.size == 0 {
        return Ok(Reply::Null);
    }
    if let Some(v) = view.sub_get(key, m, &st.last.to_field())? {
        return Ok(entry_reply(st.last, &v));
    }
    let Some(last) = view.stream_last_entry_id(key, m)? else {
        return Ok(Reply::Null);
    };
    Ok(match view.sub_get(key, m, &last.to_field())? {
        Some(v) => entry_reply(last, &v),
        None => Reply::Null,
    })
}

pub(super) fn xinfo_stream(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let view = db.view();
    let m = match info_stream(&view, &a[2]) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let opts = &a[3..];
    let mut count: Option<i64> = None;
    match opts.len() {
        0 => {}
        1 | 3 => {
            if !is(&opts[0], "full") {
                return subcommand_error(a, "XINFO");
            }
            count = Some(10);
            if opts.len() == 3 {
                if !is(&opts[1], "count") {
                    return subcommand_error(a, "XINFO");
                }
                match int_arg(&opts[2]) {
                    Ok(n) if n < 0 => count = Some(10),
                    Ok(n) => count = Some(n),
                    Err(r) => return r,
                }
            }
        }
        _ => return subcommand_error(a, "XINFO"),
    }
    stream_info(&view, db.now_ms(), &a[2], &m, count).unwrap_or_else(failed)
}

fn stream_info(
    view: &ReadView<'_>,
    _now: u64,
    key: &[u8],
    m: &Meta,
    full: Option<i64>,
) -> Result<Reply> {
    let st = StreamState::decode(&m.value);
    let nodes = m.size.div_ceil(100);
    let mut out = vec![
        (b("length"), Reply::Integer(m.size as i64)),
        (b("radix-tree-keys"), Reply::Integer(nodes as i64)),
        (b("radix-tree-nodes"), Reply::Integer(nodes as i64 + 1)),
        (b("last-generated-id"), Reply::Bulk(st.last.text())),
        (
            b("max-deleted-entry-id"),
            Reply::Bulk(st.max_deleted.text()),
        ),
        (b("entries-added"), Reply::Integer(st.added as i64)),
        (b("recorded-first-entry-id"), Reply::Bulk(st.first.text())),
    ];
    let groups = view.stream_groups(key, m)?;
    let Some(count) = full else {
        out.push((b("groups"), Reply::Integer(groups.len() as i64)));
        let first = view.stream_range(key, m, StreamId::default(), MAX_ID, false, Some(1))?;
        out.push((
            b("first-entry"),
            first
                .first()
                .map_or(Reply::Null, |(id, v)| entry_reply(*id, v)),
        ));
        out.push((b("last-entry"), last_entry(view, key, m, &st)?));
        return Ok(Reply::Map(out));
    };
    let limit = (count > 0).then_some(count as usize);
    let entries = view.stream_range(key, m, StreamId::default(), MAX_ID, false, limit)?;
    out.push((
        b("entries"),
        Reply::Array(entries.iter().map(|(id, v)| entry_reply(*id, v)).collect()),
    ));
    let within = |n: usize| limit.is_none_or(|l| n < l);
    let mut greplies = Vec::with_capacity(groups.len());
    for (name, g) in groups {
        let mut pending = Vec::new();
        view.stream_pel(key, m, &name, None, StreamId::default(), MAX_ID, |id, n| {
            if !within(pending.len()) {
                return false;
            }
            pending.push(Reply::Array(vec![
                Reply::Bulk(id.text()),
                Reply::Bulk(n.consumer),
                Reply::Integer(n.time as i64),
                Reply::Integer(n.count as i64),
            ]));
            within(pending.len())
        })?;
        let mut consumers = Vec::new();
        for (cname, c) in view.stream_consumers(key, m, &name)? {
            let mut cp = Vec::new();
            if within(0) {
                view.stream_pel(
                    key,
                    m,
                    &name,
                    Some(&cname),
                    StreamId::default(),
                    MAX_ID,
                    |id, n| {
                        cp.push(Reply::Array(vec![
                            Reply::Bulk(id.text()),
                            Reply::Integer(n.time as i64),
                            Reply::Integer(n.count as i64),
                        ]));
                        within(cp.len())
                    },
                )?;
            }
            consumers.push(Reply::Map(vec![
                (b("name"), Reply::Bulk(cname)),
                (b("seen-time"), Reply::Integer(c.seen as i64)),
                (b("pel-count"), Reply::Integer(c.pel as i64)),
                (b("pending"), Reply::Array(cp)),
            ]));
        }
        greplies.push(Reply::Map(vec![
            (b("name"), Reply::Bulk(name)),
            (b("last-delivered-id"), Reply::Bulk(g.last.text())),
            (b("entries-read"), entries_read_reply(&g)),
            (b("lag"), lag_reply(&st, m.size, &g)),
            (b("pel-count"), Reply::Integer(g.pel as i64)),
            (b("pending"), Reply::Array(pending)),
            (b("consumers"), Reply::Array(consumers)),
        ]));
    }
    out.push((b("groups"), Reply::Array(greplies)));
    Ok(Reply::Map(out))
}
