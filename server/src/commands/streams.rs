//! Stream commands: XADD (auto, `<ms>-*` and explicit ids, NOMKSTREAM, MAXLEN/MINID with
//! `=`/`~` and LIMIT), XLEN, XRANGE, XREVRANGE, XDEL, XTRIM and XREAD (COUNT, STREAMS, `$`,
//! BLOCK: the waiting is in `blocking.rs`); consumer groups in [`groups`], XINFO in [`info`].

use super::hashes::coll_handlers;
use super::strings::{failed, int_arg, is, syntax_error, write};
use crate::command::Handler;
use crate::storage::stream::{entry_reply, parse_id, IdSpec, StreamId, StreamState, Trim, MAX_ID};
use crate::storage::{Db, KeyType, Meta, ReadView, WriteOp};
use bytes::Bytes;
use pinnacle_resp::{Protocol, Reply};

#[cfg(test)]
#[path = "stream_diff_tests.rs"]
mod diff_tests;
#[cfg(test)]
#[path = "streams_group_tests.rs"]
mod group_tests;
#[path = "streams_group.rs"]
pub mod groups;
#[path = "streams_info.rs"]
pub mod info;
#[path = "streams_readgroup.rs"]
pub mod readgroup;

pub(crate) use readgroup::xreadgroup;

coll_handlers! {
    "xadd" => xadd,
    "xlen" => xlen,
    "xrange" => xrange,
    "xrevrange" => xrevrange,
    "xdel" => xdel,
    "xsetid" => xsetid,
    "xtrim" => xtrim,
    "xgroup|create" => groups::xgroup_create,
    "xgroup|setid" => groups::xgroup_setid,
    "xgroup|destroy" => groups::xgroup_destroy,
    "xgroup|createconsumer" => groups::xgroup_createconsumer,
    "xgroup|delconsumer" => groups::xgroup_delconsumer,
    "xgroup|help" => groups::xgroup_help,
    "xack" => groups::xack,
    "xpending" => groups::xpending,
    "xclaim" => groups::xclaim,
    "xautoclaim" => groups::xautoclaim,
    "xinfo|stream" => info::xinfo_stream,
    "xinfo|groups" => info::xinfo_groups,
    "xinfo|consumers" => info::xinfo_consumers,
    "xinfo|help" => info::xinfo_help,
}

const INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";

/// `approx_trim` default LIMIT: 100 × `stream-node-max-entries`.
const DEFAULT_APPROX_LIMIT: u64 = 10_000;

fn with_stream(
    db: &Db,
    key: &[u8],
    f: impl FnOnce(&ReadView<'_>, Option<Meta>) -> crate::storage::Result<Reply>,
) -> Reply {
    let view = db.view();
    let r = view.coll(key, KeyType::Stream).and_then(|m| match m {
        Err(r) => Ok(r),
        Ok(m) => f(&view, m),
    });
    r.unwrap_or_else(failed)
}

/// A strict id (`ms[-seq]`, seq defaulting to 0) or the error reply.
fn strict_id(arg: &[u8]) -> Result<StreamId, Reply> {
    parse_id(arg, 0).ok_or_else(|| Reply::error(INVALID_ID))
}

/// The parsed XADD/XTRIM options: `(trim, nomkstream, index where parsing stopped)`.
type Parsed = (Option<Trim>, bool, usize);

/// `streamParseAddOrTrimArgsOrReply`.
fn parse_trim_args(a: &[Bytes], xadd: bool) -> Result<Parsed, Reply> {
    let mut trim: Option<Trim> = None;
    let (mut nomk, mut limit, mut limit_given) = (false, 0u64, false);
    let mut i = 2;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let opt = &a[i];
        if xadd && opt.as_ref() == b"*" {
            break;
        } else if (is(opt, "maxlen") || is(opt, "minid")) && more > 0 {
            if trim.is_some() {
                return Err(Reply::error(
                    "ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
                ));
            }
            let minid = is(opt, "minid");
            let mut approx = false;
            let next = &a[i + 1];
            if more >= 2 && next.as_ref() == b"~" {
                approx = true;
                i += 1;
            } else if more >= 2 && next.as_ref() == b"=" {
                i += 1;
            }
            let mut t = Trim {
                minid,
                approx,
                maxlen: 0,
                min_id: StreamId::default(),
                limit: 0,
            };
            if minid {
                t.min_id = strict_id(&a[i + 1])?;
            } else {
                let n = int_arg(&a[i + 1])?;
                if n < 0 {
                    return Err(Reply::error("ERR The MAXLEN argument must be >= 0."));
                }
                t.maxlen = n as u64;
            }
            trim = Some(t);
            i += 1;
        } else if is(opt, "limit") && more > 0 {
            let n = int_arg(&a[i + 1])?;
            if n < 0 {
                return Err(Reply::error("ERR value is not an integer or out of range"));
            }
            limit = n as u64;
            limit_given = true;
            i += 1;
        } else if xadd && is(opt, "nomkstream") {
            nomk = true;
        } else if xadd {
            break;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    if limit > 0 && trim.is_none() {
        return Err(Reply::error(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && trim.is_none() {
        return Err(Reply::error(
            "ERR syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    if let Some(t) = trim.as_mut() {
        if limit > 0 && !t.approx {
            return Err(Reply::error(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
        t.limit = if !t.approx {
            0
        } else if limit_given {
            limit
        } else {
            DEFAULT_APPROX_LIMIT
        };
    }
    Ok((trim, nomk, i))
}

fn xadd(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let (trim, nomkstream, i) = match parse_trim_args(a, true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if i >= a.len() {
        return Reply::error("ERR wrong number of arguments for 'xadd' command");
    }
    let raw = &a[i];
    let id = if raw.as_ref() == b"*" {
        IdSpec::Auto
    } else if let Some(ms) = raw.strip_suffix(b"-*") {
        match parse_id(ms, 0) {
            Some(x) if !ms.contains(&b'-') => IdSpec::AutoSeq(x.ms),
            _ => return Reply::error(INVALID_ID),
        }
    } else {
        match strict_id(raw) {
            Ok(x) if x == StreamId::default() => {
                return Reply::error("ERR The ID specified in XADD must be greater than 0-0")
            }
            Ok(x) => IdSpec::Explicit(x),
            Err(r) => return r,
        }
    };
    let fields = &a[i + 1..];
    if fields.len() < 2 || !fields.len().is_multiple_of(2) {
        return Reply::error("ERR wrong number of arguments for 'xadd' command");
    }
    let op = WriteOp::XAdd {
        key: a[1].clone(),
        id,
        nomkstream,
        fields: fields.to_vec(),
        trim,
    };
    write(db, db.now_ms(), op)
}

fn xtrim(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let (trim, _, i) = match parse_trim_args(a, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if i != a.len() {
        return syntax_error();
    }
    let Some(trim) = trim else {
        return syntax_error();
    };
    write(
        db,
        db.now_ms(),
        WriteOp::XTrim {
            key: a[1].clone(),
            trim,
        },
    )
}

fn xsetid(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let last = match strict_id(&a[2]) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let (mut added, mut max_deleted) = (None, None);
    let mut i = 3;
    while i < a.len() {
        let more = a.len() - 1 - i > 0;
        if more && a[i].eq_ignore_ascii_case(b"entriesadded") {
            match std::str::from_utf8(&a[i + 1])
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
            {
                Some(n) if n < 0 => return Reply::error("ERR entries_added must be positive"),
                Some(n) => added = Some(n as u64),
                None => return Reply::error("ERR value is not an integer or out of range"),
            }
        } else if more && a[i].eq_ignore_ascii_case(b"maxdeletedid") {
            let d = match strict_id(&a[i + 1]) {
                Ok(d) => d,
                Err(r) => return r,
            };
            if last < d {
                return Reply::error(
                    "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                );
            }
            max_deleted = Some(d);
        } else {
            return syntax_error();
        }
        i += 2;
    }
    write(
        db,
        db.now_ms(),
        WriteOp::XSetId {
            key: a[1].clone(),
            last,
            added,
            max_deleted,
        },
    )
}

fn xdel(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    // Redis checks the type, then validates every id before deleting any.
    // A missing key answers 0 before the ids are looked at.
    let t = with_stream(db, &a[1], |_, m| {
        Ok(if m.is_some() {
            Reply::Null
        } else {
            Reply::Integer(0)
        })
    });
    if t != Reply::Null && groups::state_is_current(db) {
        return t;
    }
    for id in &a[2..] {
        if let Err(r) = strict_id(id) {
            return r;
        }
    }
    write(
        db,
        db.now_ms(),
        WriteOp::XDel {
            key: a[1].clone(),
            ids: a[2..].to_vec(),
        },
    )
}

fn xlen(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    with_stream(db, &a[1], |_, m| {
        Ok(Reply::Integer(m.map_or(0, |m| m.size as i64)))
    })
}

/// An interval bound of XRANGE: `-`, `+`, `(id`, `id` (missing seq: 0 for a start, max for
/// an end).
fn interval_id(arg: &[u8], start: bool) -> Result<StreamId, Reply> {
    if arg == b"-" {
        return Ok(StreamId::default());
    }
    if arg == b"+" {
        return Ok(MAX_ID);
    }
    let (ex, body) = match arg.strip_prefix(b"(") {
        Some(rest) => (true, rest),
        None => (false, arg),
    };
    let id =
        parse_id(body, if start { 0 } else { u64::MAX }).ok_or_else(|| Reply::error(INVALID_ID))?;
    if !ex {
        return Ok(id);
    }
    if start {
        id.incr()
            .ok_or_else(|| Reply::error("ERR invalid start ID for the interval"))
    } else {
        id.decr()
            .ok_or_else(|| Reply::error("ERR invalid end ID for the interval"))
    }
}

fn range(db: &Db, a: &[Bytes], rev: bool) -> Reply {
    let (s_arg, e_arg) = if rev { (&a[3], &a[2]) } else { (&a[2], &a[3]) };
    let lo = match interval_id(s_arg, true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let hi = match interval_id(e_arg, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut count: Option<i64> = None;
    let mut j = 4;
    while j < a.len() {
        if is(&a[j], "count") && j + 1 < a.len() {
            count = match int_arg(&a[j + 1]) {
                Ok(c) => Some(c.max(0)),
                Err(r) => return r,
            };
            j += 2;
        } else {
            return syntax_error();
        }
    }
    with_stream(db, &a[1], |v, m| {
        let Some(m) = m else {
            return Ok(Reply::Array(Vec::new()));
        };
        if count == Some(0) {
            return Ok(Reply::NullArray);
        }
        let got = v.stream_range(&a[1], &m, lo, hi, rev, count.map(|c| c as usize))?;
        Ok(Reply::Array(
            got.iter().map(|(id, val)| entry_reply(*id, val)).collect(),
        ))
    })
}

fn xrange(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    range(db, a, false)
}

fn xrevrange(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    range(db, a, true)
}

/// XREAD without blocking (in-process tests; the server's XREAD is in `blocking.rs`).
#[cfg(test)]
pub(crate) fn xread(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    match xread_or_block(db, p, a) {
        Ok(r) => r,
        Err(_) => Reply::NullArray,
    }
}

/// What a blocking XREAD that found nothing waits for.
pub(crate) struct XreadBlock {
    /// `BLOCK` in ms; 0 = forever.
    pub(crate) timeout_ms: u64,
    /// The stream keys.
    pub(crate) keys: Vec<Bytes>,
    /// The request with every `$` replaced by the stream's last id now, so a retry reads
    /// only entries added after the first attempt.
    pub(crate) rerun: Vec<Bytes>,
}

/// XREAD: the reply, or (with `BLOCK` and nothing to read) what to wait for.
pub(crate) fn xread_or_block(db: &Db, p: Protocol, a: &[Bytes]) -> Result<Reply, XreadBlock> {
    let mut count = 0i64;
    let mut block: Option<i64> = None;
    let mut streams_at = 0;
    let mut i = 1;
    while i < a.len() {
        let more = a.len() - i - 1;
        if is(&a[i], "block") && more > 0 {
            match readgroup::block_ms(&a[i + 1]) {
                Err(r) => return Ok(r),
                Ok(ms) => block = Some(ms as i64),
            }
            i += 1;
        } else if is(&a[i], "count") && more > 0 {
            count = match int_arg(&a[i + 1]) {
                Ok(c) => c.max(0),
                Err(r) => return Ok(r),
            };
            i += 1;
        } else if is(&a[i], "streams") && more > 0 {
            streams_at = i + 1;
            if !(a.len() - streams_at).is_multiple_of(2) {
                return Ok(Reply::error(
                    "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
                ));
            }
            break;
        } else if is(&a[i], "group") && more >= 2 {
            return Ok(Reply::error(
                "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
            ));
        } else if is(&a[i], "noack") {
            return Ok(Reply::error(
                "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
            ));
        } else {
            return Ok(syntax_error());
        }
        i += 1;
    }
    if streams_at == 0 {
        return Ok(syntax_error());
    }
    let n = (a.len() - streams_at) / 2;
    let keys = &a[streams_at..streams_at + n];
    let ids = &a[streams_at + n..];
    let view = db.view();
    let mut metas = Vec::with_capacity(n);
    let mut starts = Vec::with_capacity(n);
    for (k, id) in keys.iter().zip(ids) {
        let m = match view.coll(k, KeyType::Stream) {
            Err(e) => return Ok(failed(e)),
            Ok(Err(r)) => return Ok(r),
            Ok(Ok(m)) => m,
        };
        if id.as_ref() == b">" {
            return Ok(Reply::error(
                "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
            ));
        }
        let from = if id.as_ref() == b"$" {
            m.as_ref()
                .map_or(StreamId::default(), |m| StreamState::decode(&m.value).last)
        } else {
            match interval_id(id, true) {
                Ok(x) => x,
                Err(_) => return Ok(Reply::error(INVALID_ID)),
            }
        };
        metas.push(m);
        starts.push(from);
    }
    let mut out = Vec::new();
    let resolved = starts.clone();
    for ((k, m), from) in keys.iter().zip(metas).zip(starts) {
        let Some(m) = m else { continue };
        // Entries strictly after `from`.
        let Some(lo) = from.incr() else { continue };
        let limit = (count > 0).then_some(count as usize);
        let got = match view.stream_range(k, &m, lo, MAX_ID, false, limit) {
            Ok(g) => g,
            Err(e) => return Ok(failed(e)),
        };
        if got.is_empty() {
            continue;
        }
        let entries = Reply::Array(got.iter().map(|(id, v)| entry_reply(*id, v)).collect());
        out.push((Reply::Bulk(k.clone()), entries));
    }
    if out.is_empty() {
        let Some(ms) = block else {
            return Ok(Reply::NullArray);
        };
        let mut rerun = a[..streams_at + n].to_vec();
        rerun.extend(
            resolved
                .iter()
                .map(|id| Bytes::from(format!("{}-{}", id.ms, id.seq))),
        );
        return Err(XreadBlock {
            timeout_ms: ms as u64,
            keys: keys.to_vec(),
            rerun,
        });
    }
    Ok(if p == Protocol::Resp3 {
        Reply::Map(out)
    } else {
        Reply::Array(
            out.into_iter()
                .map(|(k, e)| Reply::Array(vec![k, e]))
                .collect(),
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::commands::sets::tests::run_p;
    use crate::storage::Db;
    use pinnacle_resp::{Protocol, Reply};

    fn run(db: &Db, cmd: &str) -> Reply {
        let argv: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
        run_p(db, Protocol::Resp2, &argv)
    }

    #[test]
    fn trims_whole_nodes_approximately_and_exactly() {
        let db = Db::in_memory();
        for i in 1..=250 {
            run(&db, &format!("XADD s {i}-0 f v"));
        }
        // 251 entries in nodes of 100/100/51: `~ 120` may drop only the first node.
        run(&db, "XADD s MAXLEN ~ 120 251-0 f v");
        assert_eq!(run(&db, "XLEN s"), Reply::Integer(151));
        assert_eq!(run(&db, "XTRIM s MAXLEN 10"), Reply::Integer(141));
        let first = |db: &Db| match run(db, "XRANGE s - + COUNT 1") {
            Reply::Array(v) => match &v[0] {
                Reply::Array(e) => e[0].clone(),
                other => other.clone(),
            },
            other => other,
        };
        assert_eq!(first(&db), Reply::bulk("242-0"));
        assert_eq!(run(&db, "XDEL s 242-0 243-0 9-9"), Reply::Integer(2));
        assert_eq!(first(&db), Reply::bulk("244-0"));
        assert_eq!(run(&db, "XTRIM s MINID 250"), Reply::Integer(6));
        assert_eq!(run(&db, "XLEN s"), Reply::Integer(2));
        // Auto ids never go backwards, even when the clock is behind the last id.
        assert_eq!(
            run(&db, "XADD t 99999999999999-5 f v"),
            Reply::bulk("99999999999999-5")
        );
        assert_eq!(run(&db, "XADD t * f v"), Reply::bulk("99999999999999-6"));
        assert_eq!(
            run(&db, "XADD t 99999999999999-* f v"),
            Reply::bulk("99999999999999-7")
        );
    }

    #[test]
    fn generic_key_commands_cover_streams() {
        let db = Db::in_memory();
        run(&db, "XADD {a}x 1-1 f v");
        run(&db, "XADD {a}x 2-1 g w");
        assert_eq!(run(&db, "TYPE {a}x"), Reply::simple("stream"));
        assert_eq!(run(&db, "RENAME {a}x {a}y"), Reply::ok());
        assert_eq!(run(&db, "XLEN {a}y"), Reply::Integer(2));
        // The renamed stream keeps its last id: a smaller explicit id is refused.
        assert!(matches!(run(&db, "XADD {a}y 2-0 f v"), Reply::Error(_)));
        assert_eq!(run(&db, "COPY {a}y {a}z"), Reply::Integer(1));
        assert_eq!(run(&db, "XLEN {a}z"), Reply::Integer(2));
        assert_eq!(run(&db, "EXPIRE {a}z 100"), Reply::Integer(1));
        assert_eq!(run(&db, "DEL {a}y {a}z"), Reply::Integer(2));
        assert_eq!(run(&db, "XLEN {a}y"), Reply::Integer(0));
        assert!(matches!(run(&db, "XADD {a}x 3-1 f v"), Reply::Bulk(_)));
        assert!(matches!(run(&db, "DUMP {a}x"), Reply::Bulk(_)));
    }
}
