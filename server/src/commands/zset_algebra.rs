//! Sorted-set algebra and multi-key pops: ZUNION ZINTER ZDIFF (WEIGHTS, AGGREGATE, WITHSCORES),
//! their STORE forms, ZINTERCARD (LIMIT) and ZMPOP. Argument checks follow
//! `zunionInterDiffGenericCommand`: numkeys, then the keys' types, then the options.

use super::hashes::coll_handlers;
use super::strings::{failed, int_arg, is, syntax_error, write};
use super::zsets::with_scores;
use crate::command::Handler;
use crate::storage::zset::{parse_lex_bound, parse_score, parse_score_bound, RemRange};
use crate::storage::zset_ops::{combine, inter_card, Aggregate, ZOpKind};
use crate::storage::{Db, KeyType, WriteOp};
use bytes::Bytes;
use pinnacle_resp::{Protocol, Reply};

coll_handlers! {
    "zunion" => zunion,
    "zinter" => zinter,
    "zdiff" => zdiff,
    "zunionstore" => zunionstore,
    "zinterstore" => zinterstore,
    "zdiffstore" => zdiffstore,
    "zintercard" => zintercard,
    "zmpop" => zmpop,
    "zrangestore" => zrangestore,
}

/// What the generic command produces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    /// Reply the members (ZUNION, ZINTER, ZDIFF).
    Members,
    /// Store into `argv[1]` (the STORE forms).
    Store,
    /// Reply the intersection's size (ZINTERCARD).
    Card,
}

fn zunion(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    generic(db, p, a, ZOpKind::Union, Output::Members, "zunion")
}
fn zinter(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    generic(db, p, a, ZOpKind::Inter, Output::Members, "zinter")
}
fn zdiff(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    generic(db, p, a, ZOpKind::Diff, Output::Members, "zdiff")
}
fn zunionstore(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    generic(db, p, a, ZOpKind::Union, Output::Store, "zunionstore")
}
fn zinterstore(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    generic(db, p, a, ZOpKind::Inter, Output::Store, "zinterstore")
}
fn zdiffstore(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    generic(db, p, a, ZOpKind::Diff, Output::Store, "zdiffstore")
}
fn zintercard(db: &Db, p: Protocol, a: &[Bytes]) -> Reply {
    generic(db, p, a, ZOpKind::Inter, Output::Card, "zintercard")
}

/// WRONGTYPE if any key holds neither a sorted set nor a set.
fn check_types(db: &Db, keys: &[Bytes]) -> Result<(), Reply> {
    let view = db.view();
    for k in keys {
        match view.get(k) {
            Err(e) => return Err(failed(e)),
            Ok(Some(m)) if m.kind != KeyType::ZSet && m.kind != KeyType::Set => {
                return Err(Reply::error(crate::storage::apply::WRONGTYPE))
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

fn generic(db: &Db, p: Protocol, a: &[Bytes], kind: ZOpKind, out: Output, name: &str) -> Reply {
    let nk_idx = if out == Output::Store { 2 } else { 1 };
    let numkeys = match int_arg(&a[nk_idx]) {
        Ok(n) => n,
        Err(r) => return r,
    };
    if numkeys < 1 {
        return Reply::error(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        ));
    }
    let first = nk_idx + 1;
    if numkeys as u64 > (a.len() - first) as u64 {
        return syntax_error();
    }
    let n = numkeys as usize;
    let keys = &a[first..first + n];
    if let Err(r) = check_types(db, keys) {
        return r;
    }
    let mut weights: Vec<f64> = Vec::new();
    let mut agg = Aggregate::Sum;
    let mut withscores = false;
    let mut limit = 0usize;
    let mut j = first + n;
    while j < a.len() {
        let remaining = a.len() - j;
        let algebra = kind != ZOpKind::Diff && out != Output::Card;
        if algebra && remaining > n && is(&a[j], "weights") {
            j += 1;
            weights.clear();
            for _ in 0..n {
                match parse_score(&a[j]) {
                    Some(w) => weights.push(w),
                    None => return Reply::error("ERR weight value is not a float"),
                }
                j += 1;
            }
        } else if algebra && remaining >= 2 && is(&a[j], "aggregate") {
            agg = match &a[j + 1] {
                x if is(x, "sum") => Aggregate::Sum,
                x if is(x, "min") => Aggregate::Min,
                x if is(x, "max") => Aggregate::Max,
                _ => return syntax_error(),
            };
            j += 2;
        } else if out == Output::Members && is(&a[j], "withscores") {
            withscores = true;
            j += 1;
        } else if out == Output::Card && remaining >= 2 && is(&a[j], "limit") {
            limit = match int_arg(&a[j + 1]) {
                Ok(l) if l >= 0 => l as usize,
                _ => return Reply::error("ERR LIMIT can't be negative"),
            };
            j += 2;
        } else {
            return syntax_error();
        }
    }
    match out {
        Output::Store => {
            let op = WriteOp::ZStore {
                kind,
                dst: a[1].clone(),
                keys: keys.to_vec(),
                weights,
                agg,
            };
            write(db, db.now_ms(), op)
        }
        Output::Members | Output::Card => {
            let inputs = match db.view().zset_inputs(keys) {
                Err(e) => return failed(e),
                Ok(Err(r)) => return r,
                Ok(Ok(i)) => i,
            };
            if out == Output::Card {
                Reply::Integer(inter_card(&inputs, limit) as i64)
            } else {
                with_scores(combine(kind, &inputs, &weights, agg), withscores, p)
            }
        }
    }
}

fn zmpop(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let (keys, max, count) = match zmpop_args(a) {
        Ok(v) => v,
        Err(r) => return r,
    };
    write(db, db.now_ms(), WriteOp::ZMPop { keys, max, count })
}

/// `numkeys key... MIN|MAX [COUNT n]` from `a[1]` on (ZMPOP; BZMPOP after its timeout).
pub(crate) fn zmpop_args(a: &[Bytes]) -> Result<(Vec<Bytes>, bool, u64), Reply> {
    super::lists::mpop_args(a, |x| {
        if is(x, "min") {
            Some(false)
        } else if is(x, "max") {
            Some(true)
        } else {
            None
        }
    })
}

/// `ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]`.
fn zrangestore(db: &Db, _p: Protocol, a: &[Bytes]) -> Reply {
    let (mut kind, mut rev) = (None, false);
    let (mut offset, mut limit, mut limit_given) = (0i64, -1i64, false);
    let mut j = 5;
    while j < a.len() {
        let left = a.len() - j - 1;
        if is(&a[j], "limit") && left >= 2 {
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
        } else if is(&a[j], "rev") {
            rev = true;
        } else if kind.is_none() && is(&a[j], "bylex") {
            kind = Some(RemRange::Lex);
        } else if kind.is_none() && is(&a[j], "byscore") {
            kind = Some(RemRange::Score);
        } else {
            return syntax_error();
        }
        j += 1;
    }
    let kind = kind.unwrap_or(RemRange::Rank);
    if limit_given && kind == RemRange::Rank {
        return Reply::error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    let (mut min, mut max) = (&a[3], &a[4]);
    if rev && kind != RemRange::Rank {
        std::mem::swap(&mut min, &mut max);
    }
    match kind {
        RemRange::Rank => {
            if let Err(r) = int_arg(min).and_then(|_| int_arg(max)) {
                return r;
            }
        }
        RemRange::Score => {
            if parse_score_bound(min).is_none() || parse_score_bound(max).is_none() {
                return Reply::error("ERR min or max is not a float");
            }
        }
        RemRange::Lex => {
            if parse_lex_bound(min).is_none() || parse_lex_bound(max).is_none() {
                return Reply::error("ERR min or max not valid string range item");
            }
        }
    }
    let op = WriteOp::ZRangeStore {
        dst: a[1].clone(),
        src: a[2].clone(),
        kind,
        rev,
        min: min.clone(),
        max: max.clone(),
        offset,
        limit,
    };
    write(db, db.now_ms(), op)
}
