//! Sorted-set algebra (ZUNION/ZINTER/ZDIFF and their STORE forms, ZINTERCARD) and ZMPOP.
//!
//! Inputs may be sorted sets or plain sets (members score 1, like Redis). The combination is
//! a pure function of the inputs, so the STORE forms compute it at apply time from the keys'
//! state in the log order (deterministic on every replica).

use super::apply::Tx;
use super::encoding::KeyType;
use super::hash::try_reply;
use super::num::parse_i64;
use super::write::WriteOp;
use super::zset::{in_lex, parse_lex_bound, parse_score_bound, rank_range, RemRange};
use super::{ReadView, Result};
use bytes::Bytes;
use pinnacle_resp::Reply;
use std::collections::HashMap;

/// Which algebra (stored in the log: never renumber).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZOpKind {
    /// Union.
    Union = 0,
    /// Intersection.
    Inter = 1,
    /// Difference (first minus the others).
    Diff = 2,
}

/// How scores of a member present in several inputs combine (stored: never renumber).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// Sum of weighted scores.
    Sum = 0,
    /// Smallest weighted score.
    Min = 1,
    /// Largest weighted score.
    Max = 2,
}

impl ZOpKind {
    /// Decodes a stored kind.
    pub fn from_u8(v: u8) -> Option<ZOpKind> {
        Some(match v {
            0 => ZOpKind::Union,
            1 => ZOpKind::Inter,
            2 => ZOpKind::Diff,
            _ => return None,
        })
    }
}

impl Aggregate {
    /// Decodes a stored aggregate.
    pub fn from_u8(v: u8) -> Option<Aggregate> {
        Some(match v {
            0 => Aggregate::Sum,
            1 => Aggregate::Min,
            2 => Aggregate::Max,
            _ => return None,
        })
    }
}

/// One input: `None` for a missing key, else its `(score, member)` entries.
pub type Input = Option<Vec<(f64, Bytes)>>;

fn aggregate(agg: Aggregate, acc: &mut f64, v: f64) {
    match agg {
        Aggregate::Sum => {
            *acc += v;
            // -inf + inf: Redis turns the NaN into 0.
            if acc.is_nan() {
                *acc = 0.0;
            }
        }
        Aggregate::Min => {
            if v < *acc {
                *acc = v;
            }
        }
        Aggregate::Max => {
            if v > *acc {
                *acc = v;
            }
        }
    }
}

fn weighted(s: f64, w: f64) -> f64 {
    let v = s * w;
    // 0 * inf is NaN; Redis scores it 0.
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

/// Combines the inputs like `zunionInterDiffGenericCommand`; the result is in (score, member)
/// order. `weights` has one entry per input (ignored by DIFF).
pub fn combine(
    kind: ZOpKind,
    inputs: &[Input],
    weights: &[f64],
    agg: Aggregate,
) -> Vec<(f64, Bytes)> {
    let w = |i: usize| weights.get(i).copied().unwrap_or(1.0);
    let mut out: Vec<(f64, Bytes)> = match kind {
        ZOpKind::Union => {
            let mut acc: HashMap<Bytes, f64> = HashMap::new();
            let mut order = Vec::new();
            for (i, inp) in inputs.iter().enumerate() {
                for (s, m) in inp.iter().flatten() {
                    let v = weighted(*s, w(i));
                    match acc.get_mut(m) {
                        Some(a) => aggregate(agg, a, v),
                        None => {
                            acc.insert(m.clone(), v);
                            order.push(m.clone());
                        }
                    }
                }
            }
            order
                .into_iter()
                .map(|m| {
                    let s = acc.get(&m).copied().unwrap_or(0.0);
                    (s, m)
                })
                .collect()
        }
        ZOpKind::Inter => {
            if inputs.iter().any(Option::is_none) {
                return Vec::new();
            }
            // Smallest input first, like Redis (the sum order follows it).
            let mut idx: Vec<usize> = (0..inputs.len()).collect();
            idx.sort_by_key(|&i| inputs[i].as_ref().map_or(0, Vec::len));
            let maps: Vec<HashMap<&Bytes, f64>> = inputs
                .iter()
                .map(|inp| inp.iter().flatten().map(|(s, m)| (m, *s)).collect())
                .collect();
            let first = idx[0];
            let mut res = Vec::new();
            'member: for (s, m) in inputs[first].iter().flatten() {
                let mut a = weighted(*s, w(first));
                for &j in &idx[1..] {
                    let Some(o) = maps[j].get(m) else {
                        continue 'member;
                    };
                    // Only the first input's product is NaN-checked, like Redis: a later
                    // NaN reaches the aggregate (SUM turns it into 0, MIN/MAX ignore it).
                    aggregate(agg, &mut a, *o * w(j));
                }
                res.push((a, m.clone()));
            }
            res
        }
        ZOpKind::Diff => {
            let Some(Some(first)) = inputs.first() else {
                return Vec::new();
            };
            let rest: Vec<HashMap<&Bytes, ()>> = inputs[1..]
                .iter()
                .map(|inp| inp.iter().flatten().map(|(_, m)| (m, ())).collect())
                .collect();
            first
                .iter()
                .filter(|(_, m)| !rest.iter().any(|r| r.contains_key(m)))
                .cloned()
                .collect()
        }
    };
    // `<` order like Redis (-0 ties with 0, then member order); scores are never NaN here.
    out.sort_by(|a, b| {
        a.0.partial_cmp(&b.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.1.cmp(&b.1))
    });
    out
}

/// Number of members in the intersection, stopping at `limit` (0 = no limit).
pub fn inter_card(inputs: &[Input], limit: usize) -> usize {
    let n = combine(ZOpKind::Inter, inputs, &[], Aggregate::Sum).len();
    if limit > 0 {
        n.min(limit)
    } else {
        n
    }
}

fn set_scores(members: Vec<(Bytes, Bytes)>) -> Vec<(f64, Bytes)> {
    members.into_iter().map(|(m, _)| (1.0, m)).collect()
}

impl ReadView<'_> {
    /// Reads algebra inputs at this snapshot: `Err(WRONGTYPE)` if a key is neither zset nor set.
    pub fn zset_inputs(&self, keys: &[Bytes]) -> Result<std::result::Result<Vec<Input>, Reply>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(match self.get(k)? {
                None => None,
                Some(m) if m.kind == KeyType::ZSet => Some(self.zset_entries(k, &m)?),
                Some(m) if m.kind == KeyType::Set => Some(set_scores(self.sub_all(k, &m)?)),
                Some(_) => return Ok(Err(Reply::error(super::apply::WRONGTYPE))),
            });
        }
        Ok(Ok(out))
    }
}

impl Tx<'_> {
    fn zset_inputs(&mut self, keys: &[Bytes]) -> Result<std::result::Result<Vec<Input>, Reply>> {
        let mut metas = Vec::with_capacity(keys.len());
        for k in keys {
            match self.get(k)? {
                Some(m) if m.kind != KeyType::ZSet && m.kind != KeyType::Set => {
                    return Ok(Err(Reply::error(super::apply::WRONGTYPE)))
                }
                other => metas.push(other),
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for (k, m) in keys.iter().zip(metas) {
            out.push(match m {
                None => None,
                Some(m) if m.kind == KeyType::ZSet => Some(self.zset_entries(k, m.version)?),
                Some(m) => Some(set_scores(self.sub_all(k, m.version)?)),
            });
        }
        Ok(Ok(out))
    }

    /// Replaces `dst` with a sorted set of `entries` (deletes it when empty); replies the size.
    fn zset_store(&mut self, dst: &Bytes, entries: Vec<(f64, Bytes)>) -> Result<Reply> {
        let existed = self.get(dst)?.is_some();
        if entries.is_empty() {
            if existed {
                self.delete(dst);
            }
            return Ok(Reply::Integer(0));
        }
        let version = self.alloc_version();
        let mut m = super::coll::new_meta(KeyType::ZSet, version);
        // Redis builds the result as a skiplist and converts it only if it ends up small.
        if entries.len() as u64 > super::zset::MAX_LISTPACK_ENTRIES
            || entries
                .iter()
                .any(|(_, x)| x.len() > super::zset::MAX_LISTPACK_VALUE)
        {
            m.enc = super::coll::BIG;
        }
        for (s, x) in &entries {
            self.zset_put(dst, &mut m, x, None, *s);
        }
        let n = m.size as i64;
        self.put(dst, m);
        Ok(Reply::Integer(n))
    }
}

/// The part of a sorted set's `all` entries (in order) a ZRANGE-style range selects; `None`
/// when a bound does not parse. Score and lex bounds are given low-high even with `rev`.
#[allow(clippy::too_many_arguments)]
pub fn select_range(
    mut all: Vec<(f64, Bytes)>,
    kind: RemRange,
    rev: bool,
    min: &Bytes,
    max: &Bytes,
    offset: i64,
    limit: i64,
) -> Option<Vec<(f64, Bytes)>> {
    if rev {
        all.reverse();
    }
    let page = |it: Vec<(f64, Bytes)>| -> Vec<(f64, Bytes)> {
        if offset < 0 {
            return Vec::new();
        }
        let it = it.into_iter().skip(offset as usize);
        if limit < 0 {
            it.collect()
        } else {
            it.take(limit as usize).collect()
        }
    };
    Some(match kind {
        RemRange::Rank => {
            let (s, e) = (parse_i64(min)?, parse_i64(max)?);
            match rank_range(s, e, all.len()) {
                None => Vec::new(),
                Some((s, e)) => all.drain(s..=e).collect(),
            }
        }
        RemRange::Score => {
            let (lo, hi) = (parse_score_bound(min)?, parse_score_bound(max)?);
            page(
                all.into_iter()
                    .filter(|(s, _)| lo.above(*s) && hi.below(*s))
                    .collect(),
            )
        }
        RemRange::Lex => {
            let (lo, hi) = (parse_lex_bound(min)?, parse_lex_bound(max)?);
            page(
                all.into_iter()
                    .filter(|(_, x)| in_lex(&lo, &hi, x))
                    .collect(),
            )
        }
    })
}

/// Applies ZSTORE / ZMPOP / ZRANGESTORE.
pub(super) fn apply(tx: &mut Tx<'_>, op: &WriteOp) -> Result<Reply> {
    Ok(match op {
        WriteOp::ZStore {
            kind,
            dst,
            keys,
            weights,
            agg,
        } => {
            let inputs = try_reply!(tx.zset_inputs(keys)?);
            let result = combine(*kind, &inputs, weights, *agg);
            tx.zset_store(dst, result)?
        }
        WriteOp::ZMPop { keys, max, count } => {
            for key in keys {
                let Some(mut m) = try_reply!(tx.get_coll(key, KeyType::ZSet)?) else {
                    continue;
                };
                let mut all = tx.zset_entries(key, m.version)?;
                if *max {
                    all.reverse();
                }
                let n = (*count as usize).min(all.len());
                let mut out = Vec::with_capacity(n);
                for (s, x) in all.into_iter().take(n) {
                    tx.zset_del(key, &mut m, &x, s);
                    out.push(Reply::Array(vec![Reply::Bulk(x), Reply::Double(s)]));
                }
                tx.put_coll(key, m);
                return Ok(Reply::Array(vec![
                    Reply::Bulk(key.clone()),
                    Reply::Array(out),
                ]));
            }
            Reply::NullArray
        }
        WriteOp::ZRangeStore {
            dst,
            src,
            kind,
            rev,
            min,
            max,
            offset,
            limit,
        } => {
            let all = match try_reply!(tx.get_coll(src, KeyType::ZSet)?) {
                None => Vec::new(),
                Some(m) => tx.zset_entries(src, m.version)?,
            };
            let Some(picked) = select_range(all, *kind, *rev, min, max, *offset, *limit) else {
                return Ok(Reply::error("ERR min or max is not a float"));
            };
            tx.zset_store(dst, picked)?
        }
        _ => Reply::error("ERR not a sorted-set algebra operation"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn union_inter_diff_weights_and_aggregates() {
        let a = Some(vec![(1.0, b("x")), (2.0, b("y"))]);
        let s = Some(vec![(1.0, b("x")), (1.0, b("z"))]);
        let u = combine(
            ZOpKind::Union,
            &[a.clone(), s.clone()],
            &[2.0, 3.0],
            Aggregate::Sum,
        );
        assert_eq!(u, vec![(3.0, b("z")), (4.0, b("y")), (5.0, b("x"))]);
        let i = combine(ZOpKind::Inter, &[a.clone(), s.clone()], &[], Aggregate::Max);
        assert_eq!(i, vec![(1.0, b("x"))]);
        let d = combine(ZOpKind::Diff, &[a.clone(), s.clone()], &[], Aggregate::Sum);
        assert_eq!(d, vec![(2.0, b("y"))]);
        assert!(combine(ZOpKind::Inter, &[a.clone(), None], &[], Aggregate::Sum).is_empty());
        let inf = Some(vec![(f64::INFINITY, b("x"))]);
        let ninf = Some(vec![(f64::NEG_INFINITY, b("x"))]);
        assert_eq!(
            combine(ZOpKind::Union, &[inf, ninf], &[], Aggregate::Sum),
            vec![(0.0, b("x"))]
        );
        assert_eq!(inter_card(&[a.clone(), a], 1), 1);
    }
}
