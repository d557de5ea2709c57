//! Sorted-set storage: member sub-keys (`sub_key(key, version, member)` → score as f64 bits,
//! big-endian) plus a score index `slot · 0x02 · keylen · key · version · score · member` with
//! an order-preserving score encoding, so LSM order is (score, member) order: ranges by score
//! seek straight to their first element.

use super::apply::Tx;
use super::coll::BIG;
use super::encoding::{KeyType, Meta, KIND_SCORE};
use super::hash::try_reply;
use super::slot::key_slot;
use super::write::WriteOp;
use super::{ReadView, Result};
use bytes::{BufMut, Bytes, BytesMut};
use pinnacle_resp::Reply;
use std::ops::Bound;

/// `zset-max-listpack-entries` default.
pub const MAX_LISTPACK_ENTRIES: u64 = 128;
/// `zset-max-listpack-value` default.
pub const MAX_LISTPACK_VALUE: usize = 64;

/// ZADD flag: only add new members.
pub const ZADD_NX: u8 = 1;
/// ZADD flag: only update existing members.
pub const ZADD_XX: u8 = 2;
/// ZADD flag: only update when the score grows.
pub const ZADD_GT: u8 = 4;
/// ZADD flag: only update when the score shrinks.
pub const ZADD_LT: u8 = 8;
/// ZADD flag: reply counts changed members too.
pub const ZADD_CH: u8 = 16;
/// ZADD flag: increment (one pair; reply the new score).
pub const ZADD_INCR: u8 = 32;

/// Order-preserving 8-byte encoding of a score (-0 sorts as 0, like Redis compares).
pub fn encode_score(s: f64) -> [u8; 8] {
    let s = if s == 0.0 { 0.0 } else { s };
    let bits = s.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    ordered.to_be_bytes()
}

/// Inverse of [`encode_score`].
pub fn decode_score(b: [u8; 8]) -> f64 {
    let ordered = u64::from_be_bytes(b);
    let bits = if ordered >> 63 == 1 {
        ordered & !(1 << 63)
    } else {
        !ordered
    };
    f64::from_bits(bits)
}

/// Prefix of every score-index record of `key` at `version`.
pub fn score_prefix(key: &[u8], version: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(15 + key.len());
    out.put_u16(key_slot(key));
    out.put_u8(KIND_SCORE);
    out.put_u32(key.len() as u32);
    out.put_slice(key);
    out.put_u64(version);
    out.freeze()
}

/// A score-index record's key.
pub fn score_key(key: &[u8], version: u64, score: f64, member: &[u8]) -> Bytes {
    let mut out = BytesMut::from(&score_prefix(key, version)[..]);
    out.put_slice(&encode_score(score));
    out.put_slice(member);
    out.freeze()
}

fn decode_entry(prefix_len: usize, k: &[u8]) -> Option<(f64, Bytes)> {
    let s: [u8; 8] = k.get(prefix_len..prefix_len + 8)?.try_into().ok()?;
    Some((
        decode_score(s),
        Bytes::copy_from_slice(&k[prefix_len + 8..]),
    ))
}

fn scan_index(
    engine: &dyn pinnacle_lsm::Engine,
    snap: Option<&pinnacle_lsm::Snapshot>,
    key: &[u8],
    version: u64,
) -> Result<Vec<(f64, Bytes)>> {
    let start = score_prefix(key, version);
    let plen = start.len();
    let end = score_prefix(key, version.wrapping_add(1));
    let iter = engine.scan((Bound::Included(start), Bound::Excluded(end)), snap)?;
    let mut out = Vec::new();
    for item in iter {
        let (k, _) = item?;
        if let Some(e) = decode_entry(plen, &k) {
            out.push(e);
        }
    }
    Ok(out)
}

/// Visits `(score, member)` in order from the first entry with a score >= `from` (or the
/// start) until `f` returns false; reads only the records it visits.
fn visit_index(
    engine: &dyn pinnacle_lsm::Engine,
    snap: Option<&pinnacle_lsm::Snapshot>,
    key: &[u8],
    version: u64,
    from: Option<f64>,
    mut f: impl FnMut(f64, Bytes) -> bool,
) -> Result<()> {
    let prefix = score_prefix(key, version);
    let plen = prefix.len();
    let start = match from {
        None => prefix,
        Some(s) => {
            let mut b = BytesMut::from(&prefix[..]);
            b.put_slice(&encode_score(s));
            b.freeze()
        }
    };
    let end = score_prefix(key, version.wrapping_add(1));
    let iter = engine.scan((Bound::Included(start), Bound::Excluded(end)), snap)?;
    for item in iter {
        let (k, _) = item?;
        if let Some((s, m)) = decode_entry(plen, &k) {
            if !f(s, m) {
                break;
            }
        }
    }
    Ok(())
}

/// Decodes a member sub-key's stored score.
pub fn stored_score(v: &[u8]) -> Option<f64> {
    Some(f64::from_bits(u64::from_be_bytes(v.try_into().ok()?)))
}

impl ReadView<'_> {
    /// All `(score, member)` of a sorted set in order.
    pub fn zset_entries(&self, key: &[u8], meta: &Meta) -> Result<Vec<(f64, Bytes)>> {
        scan_index(&*self.db.inner.engine, Some(&self.snap), key, meta.version)
    }

    /// Visits entries in order from score `from` (or the start) while `f` returns true.
    pub fn zset_visit(
        &self,
        key: &[u8],
        meta: &Meta,
        from: Option<f64>,
        f: impl FnMut(f64, Bytes) -> bool,
    ) -> Result<()> {
        visit_index(
            &*self.db.inner.engine,
            Some(&self.snap),
            key,
            meta.version,
            from,
            f,
        )
    }

    /// One member's score.
    pub fn zscore(&self, key: &[u8], meta: &Meta, member: &[u8]) -> Result<Option<f64>> {
        Ok(self
            .sub_get(key, meta, member)?
            .and_then(|v| stored_score(&v)))
    }
}

impl Tx<'_> {
    fn zscore(&mut self, key: &[u8], version: u64, member: &[u8]) -> Result<Option<f64>> {
        Ok(self
            .sub_get(key, version, member)?
            .and_then(|v| stored_score(&v)))
    }

    /// Sets a member's score, keeping the index in step.
    pub(super) fn zset_put(
        &mut self,
        key: &[u8],
        m: &mut Meta,
        member: &[u8],
        old: Option<f64>,
        new: f64,
    ) {
        let big = m.enc == BIG
            || member.len() > MAX_LISTPACK_VALUE
            || (old.is_none() && m.size >= MAX_LISTPACK_ENTRIES);
        // A listpack stores -0 as the integer 0; only the skiplist keeps the sign.
        let new = if !big && new == 0.0 { 0.0 } else { new };
        if let Some(o) = old {
            self.pend_del(score_key(key, m.version, o, member));
        } else {
            m.size += 1;
        }
        self.sub_put(
            key,
            m.version,
            member,
            Bytes::copy_from_slice(&new.to_bits().to_be_bytes()),
        );
        self.pend_put(score_key(key, m.version, new, member), Bytes::new());
        if member.len() > MAX_LISTPACK_VALUE || m.size > MAX_LISTPACK_ENTRIES {
            m.enc = BIG;
        }
    }

    pub(super) fn zset_del(&mut self, key: &[u8], m: &mut Meta, member: &[u8], score: f64) {
        self.sub_del(key, m.version, member);
        self.pend_del(score_key(key, m.version, score, member));
        m.size -= 1;
    }

    /// All entries of a sorted set in score order, with this Tx's earlier writes applied.
    pub(super) fn zset_entries(&self, key: &[u8], version: u64) -> Result<Vec<(f64, Bytes)>> {
        let start = score_prefix(key, version);
        let plen = start.len();
        let end = score_prefix(key, version.wrapping_add(1));
        Ok(self
            .scan_merged(start, end)?
            .into_iter()
            .filter_map(|(k, _)| decode_entry(plen, &k))
            .collect())
    }

    /// True if this Tx wrote to the score index of `key`@`version` (a transaction's earlier
    /// command): index walks must then see the merged view.
    fn zset_pending(&self, key: &[u8], version: u64) -> bool {
        self.pending_in(
            &score_prefix(key, version),
            &score_prefix(key, version.wrapping_add(1)),
        )
    }
}

/// A parsed score bound (`(x` exclusive).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreBound {
    /// Value.
    pub v: f64,
    /// Exclusive.
    pub ex: bool,
}

/// Parses a ZRANGEBYSCORE bound like `zslParseRange` (strtod accepting `inf`).
pub fn parse_score_bound(arg: &[u8]) -> Option<ScoreBound> {
    let (ex, rest) = match arg.first() {
        Some(b'(') => (true, &arg[1..]),
        _ => (false, arg),
    };
    let v = parse_strtod(rest)?;
    Some(ScoreBound { v, ex })
}

fn parse_strtod(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    let t = text.trim_start();
    if t.is_empty() {
        return None;
    }
    let v: f64 = t.parse().ok()?;
    if v.is_nan() {
        return None;
    }
    Some(v)
}

/// Parses a score argument like `getDoubleFromObject` (no spaces, no NaN, no overflow).
pub fn parse_score(s: &[u8]) -> Option<f64> {
    if s.is_empty() || s[0].is_ascii_whitespace() {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let v: f64 = text.parse().ok()?;
    if v.is_nan() {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    if v.is_infinite() && !lower.contains("inf") {
        return None; // ERANGE overflow
    }
    let mantissa = lower.split('e').next().unwrap_or("");
    if v == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return None; // ERANGE underflow to zero
    }
    Some(v)
}

impl ScoreBound {
    /// True when `s` is at or above this lower bound.
    pub fn above(&self, s: f64) -> bool {
        if self.ex {
            s > self.v
        } else {
            s >= self.v
        }
    }
    /// True when `s` is at or below this upper bound.
    pub fn below(&self, s: f64) -> bool {
        if self.ex {
            s < self.v
        } else {
            s <= self.v
        }
    }
}

/// A parsed lex bound.
#[derive(Clone, Debug, PartialEq)]
pub enum LexBound {
    /// `-`.
    Min,
    /// `+`.
    Max,
    /// `[x` / `(x`.
    At(Bytes, bool),
}

/// Parses a ZRANGEBYLEX bound.
pub fn parse_lex_bound(arg: &Bytes) -> Option<LexBound> {
    match arg.first() {
        Some(b'-') if arg.len() == 1 => Some(LexBound::Min),
        Some(b'+') if arg.len() == 1 => Some(LexBound::Max),
        Some(b'[') => Some(LexBound::At(arg.slice(1..), false)),
        Some(b'(') => Some(LexBound::At(arg.slice(1..), true)),
        _ => None,
    }
}

/// True when `m` is inside `[min, max]` (lex).
pub fn in_lex(min: &LexBound, max: &LexBound, m: &[u8]) -> bool {
    let lo = match min {
        LexBound::Min => true,
        LexBound::Max => false,
        LexBound::At(x, ex) => {
            if *ex {
                m > &x[..]
            } else {
                m >= &x[..]
            }
        }
    };
    let hi = match max {
        LexBound::Min => false,
        LexBound::Max => true,
        LexBound::At(x, ex) => {
            if *ex {
                m < &x[..]
            } else {
                m <= &x[..]
            }
        }
    };
    lo && hi
}

/// What ZREMRANGEBY* removes (re-parsed at apply; the handler validated it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemRange {
    /// By rank.
    Rank = 0,
    /// By score.
    Score = 1,
    /// By lex.
    Lex = 2,
}

/// Indexes `[start, end]` of a rank range over `len` items, like `zrangeGeneric`.
pub fn rank_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut s = if start < 0 { start + len } else { start };
    let mut e = if end < 0 { end + len } else { end };
    if s < 0 {
        s = 0;
    }
    if s > e || s >= len {
        return None;
    }
    if e >= len {
        e = len - 1;
    }
    Some((s as usize, e as usize))
}

/// Applies a sorted-set write op.
pub(super) fn apply(tx: &mut Tx<'_>, op: &WriteOp) -> Result<Reply> {
    Ok(match op {
        WriteOp::ZAdd { key, flags, pairs } => {
            let f = |x: u8| flags & x != 0;
            let existing = try_reply!(tx.get_coll(key, KeyType::ZSet)?);
            let mut m = match existing {
                Some(m) => m,
                None if f(ZADD_XX) => {
                    return Ok(if f(ZADD_INCR) {
                        Reply::Null
                    } else {
                        Reply::Integer(0)
                    })
                }
                None => {
                    let v = tx.alloc_version();
                    super::coll::new_meta(KeyType::ZSet, v)
                }
            };
            let (mut added, mut changed) = (0, 0);
            let mut incr_reply = Reply::Null;
            for (score, member) in pairs {
                let old = tx.zscore(key, m.version, member)?;
                let mut new = *score;
                match old {
                    Some(o) => {
                        if f(ZADD_NX) {
                            continue;
                        }
                        if f(ZADD_INCR) {
                            new += o;
                            if new.is_nan() {
                                return Ok(Reply::error(
                                    "ERR resulting score is not a number (NaN)",
                                ));
                            }
                        }
                        if (f(ZADD_GT) && new <= o) || (f(ZADD_LT) && new >= o) {
                            continue;
                        }
                        if f(ZADD_INCR) {
                            incr_reply = Reply::Double(new);
                        }
                        if new != o {
                            tx.zset_put(key, &mut m, member, Some(o), new);
                            changed += 1;
                        }
                    }
                    None => {
                        if f(ZADD_XX) {
                            continue;
                        }
                        tx.zset_put(key, &mut m, member, None, new);
                        added += 1;
                        if f(ZADD_INCR) {
                            incr_reply = Reply::Double(new);
                        }
                    }
                }
            }
            if added + changed > 0 {
                tx.put_coll(key, m);
            }
            if f(ZADD_INCR) {
                incr_reply
            } else if f(ZADD_CH) {
                Reply::Integer(added + changed)
            } else {
                Reply::Integer(added)
            }
        }
        WriteOp::ZRem { key, members } => {
            let Some(mut m) = try_reply!(tx.get_coll(key, KeyType::ZSet)?) else {
                return Ok(Reply::Integer(0));
            };
            let mut n = 0;
            for x in members {
                if let Some(s) = tx.zscore(key, m.version, x)? {
                    tx.zset_del(key, &mut m, x, s);
                    n += 1;
                }
            }
            if n > 0 {
                tx.put_coll(key, m);
            }
            Reply::Integer(n)
        }
        WriteOp::ZPop { key, max, count } => {
            let Some(mut m) = try_reply!(tx.get_coll(key, KeyType::ZSet)?) else {
                return Ok(Reply::Array(Vec::new()));
            };
            let all = if *max {
                let mut all = tx.zset_entries(key, m.version)?;
                all.reverse();
                all
            } else if tx.zset_pending(key, m.version) {
                tx.zset_entries(key, m.version)?
            } else {
                // The lowest scores are the first index records: read only those.
                let mut first = Vec::new();
                visit_index(&*tx.db.inner.engine, None, key, m.version, None, |s, x| {
                    first.push((s, x));
                    (first.len() as u64) < *count
                })?;
                first
            };
            let n = (*count as usize).min(all.len());
            let mut out = Vec::with_capacity(2 * n);
            for (s, x) in all.into_iter().take(n) {
                tx.zset_del(key, &mut m, &x, s);
                out.push(Reply::Bulk(x));
                out.push(Reply::Double(s));
            }
            if n > 0 {
                tx.put_coll(key, m);
            }
            Reply::Array(out)
        }
        WriteOp::ZRemRange {
            key,
            kind,
            min,
            max,
        } => {
            let Some(mut m) = try_reply!(tx.get_coll(key, KeyType::ZSet)?) else {
                return Ok(Reply::Integer(0));
            };
            let all = tx.zset_entries(key, m.version)?;
            let doomed: Vec<(f64, Bytes)> = match kind {
                RemRange::Rank => {
                    let (Some(s), Some(e)) =
                        (super::num::parse_i64(min), super::num::parse_i64(max))
                    else {
                        return Ok(Reply::error(super::num::ERR_NOT_INTEGER));
                    };
                    match rank_range(s, e, all.len()) {
                        None => Vec::new(),
                        Some((s, e)) => all[s..=e].to_vec(),
                    }
                }
                RemRange::Score => {
                    let (Some(lo), Some(hi)) = (parse_score_bound(min), parse_score_bound(max))
                    else {
                        return Ok(Reply::error("ERR min or max is not a float"));
                    };
                    all.into_iter()
                        .filter(|(s, _)| lo.above(*s) && hi.below(*s))
                        .collect()
                }
                RemRange::Lex => {
                    let (Some(lo), Some(hi)) = (parse_lex_bound(min), parse_lex_bound(max)) else {
                        return Ok(Reply::error("ERR min or max not valid string range item"));
                    };
                    all.into_iter()
                        .filter(|(_, x)| in_lex(&lo, &hi, x))
                        .collect()
                }
            };
            let n = doomed.len();
            for (s, x) in doomed {
                tx.zset_del(key, &mut m, &x, s);
            }
            if n > 0 {
                tx.put_coll(key, m);
            }
            Reply::Integer(n as i64)
        }
        _ => Reply::error("ERR not a sorted set operation"),
    })
}
