//! Sorted-set commands: ZADD (NX XX GT LT CH INCR), ZINCRBY, ZREM, scores and ranks, the
//! ZRANGE family (rank, BYSCORE, BYLEX, REV, LIMIT, WITHSCORES), counts, pops, range removal,
//! ZRANDMEMBER, ZSCAN. ZSCORE/ZMSCORE are point lookups of the member sub-key.

use super::hashes::{coll_handlers, rand_below, rand_count, random_pick, scan_elements};
use super::strings::{failed, int_arg, is, syntax_error, write, write_then};
use crate::command::Handler;
use crate::storage::zset::{
    in_lex, parse_lex_bound, parse_score, parse_score_bound, rank_range, stored_score, LexBound,
    RemRange, ScoreBound, ZADD_CH, ZADD_GT, ZADD_INCR, ZADD_LT, ZADD_NX, ZADD_XX,
};
use crate::storage::{Db, KeyType, Meta, ReadView, WriteOp};
use bytes::Bytes;
use pinnacle_resp::{format_double, Protocol, Reply};

coll_handlers! {
    "zadd" => zadd,
    "zincrby" => zincrby,
    "zrem" => zrem,
    "zcard" => zcard,
    "zscore" => zscore,
    "zmscore" => zmscore,
    "zrank" => zrank,
    "zrevrank" => zrevrank,
    "zcount" => zcount,
    "zlexcount" => zlexcount,
    "zrange" => zrange,
    "zrangebyscore" => zrangebyscore,
    "zrevrangebyscore" => zrevrangebyscore,
    "zrangebylex" => zrangebylex,
    "zrevrangebylex" => zrevrangebylex,
    "zrevrange" => zrevrange,
    "zpopmin" => zpopmin,
    "zpopmax" => zpopmax,
    "zremrangebyrank" => zremrangebyrank,
    "zremrangebyscore" => zremrangebyscore,
    "zremrangebylex" => zremrangebylex,
    "zrandmember" => zrandmember,
    "zscan" => zscan,
}

const NOT_FLOAT: &str = "ERR value is not a valid float";
const BAD_SCORE_RANGE: &str = "ERR min or max is not a float";
const BAD_LEX_RANGE: &str = "ERR min or max not valid string range item";

fn with_zset(
    db: &Db,
    key: &[u8],
    f: impl FnOnce(&ReadView<'_>, Option<Meta>) -> crate::storage::Result<Reply>,
) -> Reply {
    let view = db.view();
    let r = view.coll(key, KeyType::ZSet).and_then(|m| match m {
        Err(r) => Ok(r),
        Ok(m) => f(&view, m),
    });
    r.unwrap_or_else(failed)
}

fn zadd(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let mut flags = 0u8;
    let mut i = 2;
    while i < a.len() {
        let bit = match &a[i] {
            x if is(x, "nx") => ZADD_NX,
            x if is(x, "xx") => ZADD_XX,
            x if is(x, "ch") => ZADD_CH,
            x if is(x, "incr") => ZADD_INCR,
            x if is(x, "gt") => ZADD_GT,
            x if is(x, "lt") => ZADD_LT,
            _ => break,
        };
        flags |= bit;
        i += 1;
    }
    let rest = &a[i..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return syntax_error();
    }
    let f = |x: u8| flags & x != 0;
    if f(ZADD_NX) && f(ZADD_XX) {
        return Reply::error("ERR XX and NX options at the same time are not compatible");
    }
    if (f(ZADD_GT) && f(ZADD_NX)) || (f(ZADD_LT) && f(ZADD_NX)) || (f(ZADD_GT) && f(ZADD_LT)) {
        return Reply::error("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if f(ZADD_INCR) && rest.len() > 2 {
        return Reply::error("ERR INCR option supports a single increment-element pair");
    }
    let mut pairs = Vec::with_capacity(rest.len() / 2);
    for c in rest.chunks(2) {
        let Some(s) = parse_score(&c[0]) else {
            return Reply::error(NOT_FLOAT);
        };
        pairs.push((s, c[1].clone()));
    }
    let op = WriteOp::ZAdd {
        key: a[1].clone(),
        flags,
        pairs,
    };
    write(db, db.now_ms(), op)
}

fn zincrby(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let Some(s) = parse_score(&a[2]) else {
        return Reply::error(NOT_FLOAT);
    };
    let op = WriteOp::ZAdd {
        key: a[1].clone(),
        flags: ZADD_INCR,
        pairs: vec![(s, a[3].clone())],
    };
    write(db, db.now_ms(), op)
}

fn zrem(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let op = WriteOp::ZRem {
        key: a[1].clone(),
        members: a[2..].to_vec(),
    };
    write(db, db.now_ms(), op)
}

fn zcard(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    with_zset(db, &a[1], |_, m| {
        Ok(Reply::Integer(m.map_or(0, |m| m.size as i64)))
    })
}

fn score_reply(s: Option<f64>) -> Reply {
    s.map_or(Reply::Null, Reply::Double)
}

fn zscore(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    with_zset(db, &a[1], |v, m| {
        Ok(match m {
            None => Reply::Null,
            Some(m) => score_reply(v.zscore(&a[1], &m, &a[2])?),
        })
    })
}

fn zmscore(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    with_zset(db, &a[1], |v, m| {
        let mut out = Vec::with_capacity(a.len() - 2);
        for x in &a[2..] {
            out.push(match &m {
                None => Reply::Null,
                Some(m) => score_reply(v.zscore(&a[1], m, x)?),
            });
        }
        Ok(Reply::Array(out))
    })
}

fn rank(db: &Db, a: &[Bytes], rev: bool) -> Reply {
    with_zset(db, &a[1], |v, m| {
        let Some(m) = m else {
            return Ok(Reply::Null);
        };
        let Some(score) = v.zscore(&a[1], &m, &a[2])? else {
            return Ok(Reply::Null);
        };
        let all = v.zset_entries(&a[1], &m)?;
        let pos = all
            .iter()
            .position(|(s, x)| *s == score && x == &a[2])
            .unwrap_or(0);
        Ok(Reply::Integer(
            if rev { all.len() - 1 - pos } else { pos } as i64
        ))
    })
}

fn zrank(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    rank(db, a, false)
}

fn zrevrank(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    rank(db, a, true)
}

fn zcount(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let (Some(lo), Some(hi)) = (parse_score_bound(&a[2]), parse_score_bound(&a[3])) else {
        return Reply::error(BAD_SCORE_RANGE);
    };
    with_zset(db, &a[1], |v, m| {
        let Some(m) = m else {
            return Ok(Reply::Integer(0));
        };
        let mut n = 0;
        let from = (lo.v > f64::NEG_INFINITY).then_some(lo.v);
        v.zset_visit(&a[1], &m, from, |s, _| {
            if !hi.below(s) {
                return false;
            }
            if lo.above(s) {
                n += 1;
            }
            true
        })?;
        Ok(Reply::Integer(n as i64))
    })
}

fn zlexcount(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let (Some(lo), Some(hi)) = (parse_lex_bound(&a[2]), parse_lex_bound(&a[3])) else {
        return Reply::error(BAD_LEX_RANGE);
    };
    with_zset(db, &a[1], |v, m| {
        let Some(m) = m else {
            return Ok(Reply::Integer(0));
        };
        let n = v
            .zset_entries(&a[1], &m)?
            .iter()
            .filter(|(_, x)| in_lex(&lo, &hi, x))
            .count();
        Ok(Reply::Integer(n as i64))
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeType {
    Rank,
    Score,
    Lex,
}

/// Members with optional scores: flat in RESP2, `[member, score]` pairs in RESP3.
pub(super) fn with_scores(items: Vec<(f64, Bytes)>, withscores: bool, p: Protocol) -> Reply {
    let mut out = Vec::with_capacity(items.len() * if withscores { 2 } else { 1 });
    for (s, x) in items {
        if !withscores {
            out.push(Reply::Bulk(x));
        } else if p == Protocol::Resp3 {
            out.push(Reply::Array(vec![Reply::Bulk(x), Reply::Double(s)]));
        } else {
            out.push(Reply::Bulk(x));
            out.push(Reply::Double(s));
        }
    }
    Reply::Array(out)
}

/// `zrangeGenericCommand`: `preset` fixes the range type and direction of the legacy forms.
fn zrange_generic(db: &Db, p: Protocol, a: &[Bytes], preset: Option<(RangeType, bool)>) -> Reply {
    let mut rtype = preset.map(|(t, _)| t);
    let mut rev = preset.map(|(_, r)| r);
    let mut withscores = false;
    let (mut offset, mut limit): (i64, i64) = (0, -1);
    let mut limit_given = false;
    let mut j = 4;
    while j < a.len() {
        let left = a.len() - j - 1;
        if is(&a[j], "withscores") {
            withscores = true;
        } else if is(&a[j], "limit") && left >= 2 {
            offset = match int_arg(&a[j + 1]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            limit = match int_arg(&a[j + 2]) {
                Ok(v) => v,
                Err(r) => return r,
            };
            limit_given = true;
            j += 2;
        } else if rev.is_none() && is(&a[j], "rev") {
            rev = Some(true);
        } else if rtype.is_none() && is(&a[j], "bylex") {
            rtype = Some(RangeType::Lex);
        } else if rtype.is_none() && is(&a[j], "byscore") {
            rtype = Some(RangeType::Score);
        } else {
            return syntax_error();
        }
        j += 1;
    }
    let rev = rev.unwrap_or(false);
    let rtype = rtype.unwrap_or(RangeType::Rank);
    if limit_given && rtype == RangeType::Rank {
        return Reply::error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    if withscores && rtype == RangeType::Lex {
        return Reply::error(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        );
    }
    let (mut min, mut max) = (&a[2], &a[3]);
    if rev && rtype != RangeType::Rank {
        std::mem::swap(&mut min, &mut max);
    }
    enum Range {
        Rank(i64, i64),
        Score(ScoreBound, ScoreBound),
        Lex(LexBound, LexBound),
    }
    let range = match rtype {
        RangeType::Rank => match (int_arg(min), int_arg(max)) {
            (Ok(s), Ok(e)) => Range::Rank(s, e),
            (Err(r), _) | (_, Err(r)) => return r,
        },
        RangeType::Score => match (parse_score_bound(min), parse_score_bound(max)) {
            (Some(lo), Some(hi)) => Range::Score(lo, hi),
            _ => return Reply::error(BAD_SCORE_RANGE),
        },
        RangeType::Lex => match (parse_lex_bound(min), parse_lex_bound(max)) {
            (Some(lo), Some(hi)) => Range::Lex(lo, hi),
            _ => return Reply::error(BAD_LEX_RANGE),
        },
    };
    with_zset(db, &a[1], |v, m| {
        let Some(m) = m else {
            return Ok(Reply::Array(Vec::new()));
        };
        if !rev {
            // Forward ranges read only the index records up to their end.
            match &range {
                Range::Rank(s, e) => {
                    let Some((s, e)) = rank_range(*s, *e, m.size as usize) else {
                        return Ok(Reply::Array(Vec::new()));
                    };
                    let mut got = Vec::with_capacity(e - s + 1);
                    let mut i = 0;
                    v.zset_visit(&a[1], &m, None, |sc, x| {
                        if i >= s {
                            got.push((sc, x));
                        }
                        i += 1;
                        i <= e
                    })?;
                    return Ok(with_scores(got, withscores, p));
                }
                Range::Score(lo, hi) => {
                    if offset < 0 {
                        return Ok(Reply::Array(Vec::new()));
                    }
                    let mut got = Vec::new();
                    let mut skip = offset;
                    let from = (lo.v > f64::NEG_INFINITY).then_some(lo.v);
                    v.zset_visit(&a[1], &m, from, |sc, x| {
                        if !hi.below(sc) {
                            return false;
                        }
                        if lo.above(sc) {
                            if skip > 0 {
                                skip -= 1;
                            } else {
                                got.push((sc, x));
                            }
                        }
                        limit < 0 || (got.len() as i64) < limit
                    })?;
                    if limit == 0 {
                        got.clear();
                    }
                    return Ok(with_scores(got, withscores, p));
                }
                Range::Lex(..) => {}
            }
        }
        let mut all = v.zset_entries(&a[1], &m)?;
        if rev {
            all.reverse();
        }
        let picked: Vec<(f64, Bytes)> = match range {
            Range::Rank(s, e) => match rank_range(s, e, all.len()) {
                None => Vec::new(),
                Some((s, e)) => all.drain(s..=e).collect(),
            },
            Range::Score(lo, hi) => {
                let it = all
                    .into_iter()
                    .filter(|(s, _)| lo.above(*s) && hi.below(*s));
                page(it, offset, limit)
            }
            Range::Lex(lo, hi) => {
                let it = all.into_iter().filter(|(_, x)| in_lex(&lo, &hi, x));
                page(it, offset, limit)
            }
        };
        Ok(with_scores(picked, withscores, p))
    })
}

/// Applies LIMIT offset count (a negative offset selects nothing, a negative count all).
fn page(it: impl Iterator<Item = (f64, Bytes)>, offset: i64, limit: i64) -> Vec<(f64, Bytes)> {
    if offset < 0 {
        return Vec::new();
    }
    let it = it.skip(offset as usize);
    if limit < 0 {
        it.collect()
    } else {
        it.take(limit as usize).collect()
    }
}

fn zrange(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    zrange_generic(db, p, a, None)
}

fn zrangebyscore(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    zrange_generic(db, p, a, Some((RangeType::Score, false)))
}

fn zrevrangebyscore(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    zrange_generic(db, p, a, Some((RangeType::Score, true)))
}

fn zrangebylex(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    zrange_generic(db, p, a, Some((RangeType::Lex, false)))
}

fn zrevrangebylex(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    zrange_generic(db, p, a, Some((RangeType::Lex, true)))
}

fn zrevrange(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    zrange_generic(db, p, a, Some((RangeType::Rank, true)))
}

fn zpop(db: &Db, p: Protocol, a: &[Bytes], max: bool) -> Reply {
    if a.len() > 3 {
        return syntax_error();
    }
    let count = if a.len() == 3 {
        match int_arg(&a[2]) {
            Err(r) => return r,
            Ok(c) if c < 0 => return Reply::error("ERR value is out of range, must be positive"),
            Ok(0) => {
                // Redis checks the key's type before honouring a zero count.
                return with_zset(db, &a[1], |_, _| Ok(Reply::Array(Vec::new())));
            }
            Ok(c) => Some(c as u64),
        }
    } else {
        None
    };
    let op = WriteOp::ZPop {
        key: a[1].clone(),
        max,
        count: count.unwrap_or(1),
    };
    let nest = count.is_some() && p == Protocol::Resp3;
    write_then(db, db.now_ms(), op, move |r| match r {
        // RESP3 nests [member, score] pairs only in the count form.
        Reply::Array(items) if nest => {
            Reply::Array(items.chunks(2).map(|c| Reply::Array(c.to_vec())).collect())
        }
        other => other,
    })
}

fn zpopmin(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    zpop(db, p, a, false)
}

fn zpopmax(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    zpop(db, p, a, true)
}

fn remrange(db: &Db, a: &[Bytes], kind: RemRange) -> Reply {
    let valid = match kind {
        RemRange::Rank => match (int_arg(&a[2]), int_arg(&a[3])) {
            (Ok(_), Ok(_)) => None,
            (Err(r), _) | (_, Err(r)) => Some(r),
        },
        RemRange::Score => (parse_score_bound(&a[2]).is_none()
            || parse_score_bound(&a[3]).is_none())
        .then(|| Reply::error(BAD_SCORE_RANGE)),
        RemRange::Lex => (parse_lex_bound(&a[2]).is_none() || parse_lex_bound(&a[3]).is_none())
            .then(|| Reply::error(BAD_LEX_RANGE)),
    };
    if let Some(err) = valid {
        return err;
    }
    let op = WriteOp::ZRemRange {
        key: a[1].clone(),
        kind,
        min: a[2].clone(),
        max: a[3].clone(),
    };
    write(db, db.now_ms(), op)
}

fn zremrangebyrank(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    remrange(db, a, RemRange::Rank)
}

fn zremrangebyscore(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    remrange(db, a, RemRange::Score)
}

fn zremrangebylex(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    remrange(db, a, RemRange::Lex)
}

fn entries(db: &Db, key: &[u8]) -> Result<Vec<(f64, Bytes)>, Reply> {
    let view = db.view();
    match view.coll(key, KeyType::ZSet) {
        Err(e) => Err(failed(e)),
        Ok(Err(r)) => Err(r),
        Ok(Ok(None)) => Ok(Vec::new()),
        Ok(Ok(Some(m))) => view.zset_entries(key, &m).map_err(failed),
    }
}

fn zrandmember(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    if a.len() == 2 {
        return match entries(db, &a[1]) {
            Err(r) => r,
            Ok(all) if all.is_empty() => Reply::Null,
            Ok(mut all) => Reply::Bulk(all.swap_remove(rand_below(all.len())).1),
        };
    }
    let withscores = match a.len() {
        3 => false,
        4 if is(&a[3], "withscores") => true,
        _ => return syntax_error(),
    };
    let l = match rand_count(&a[2]) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let all = match entries(db, &a[1]) {
        Err(r) => return r,
        Ok(all) => all,
    };
    if all.is_empty() || l == 0 {
        return Reply::Array(Vec::new());
    }
    let picked: Vec<(f64, Bytes)> = random_pick(all, l);
    with_scores(picked, withscores, p)
}

fn score_text(v: &Bytes) -> Bytes {
    Bytes::from(format_double(stored_score(v).unwrap_or(0.0)))
}

fn zscan(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    scan_elements(a, KeyType::ZSet, db, Some(score_text))
}
