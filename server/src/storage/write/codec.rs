//! The frozen binary form of a [`WriteCommand`]: `format:u8 · opcode:u8 · now_ms:u64be ·
//! fields`, byte strings as `len:u32be · data`. What enters the Raft log, so it never changes
//! meaning: new operations get new opcodes.

use super::*;
use bytes::{Buf, BufMut, BytesMut};

/// Why a log entry could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The entry ended early.
    #[error("write command truncated")]
    Truncated,
    /// A format version this build does not know.
    #[error("unknown write command format version {0}")]
    Version(u8),
    /// An opcode this build does not know.
    #[error("unknown write opcode {0}")]
    Opcode(u8),
    /// A field held an impossible value.
    #[error("bad field in write command: {0}")]
    Field(&'static str),
    /// Bytes were left after the last field.
    #[error("trailing bytes after write command")]
    Trailing,
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

fn put_expire(out: &mut BytesMut, e: ExpireSpec) {
    match e {
        ExpireSpec::Clear => out.put_u8(0),
        ExpireSpec::Keep => out.put_u8(1),
        ExpireSpec::At(ms) => {
            out.put_u8(2);
            out.put_u64(ms);
        }
    }
}

fn put_list(out: &mut BytesMut, keys: &[Bytes]) {
    out.put_u32(keys.len() as u32);
    for k in keys {
        put_bytes(out, k);
    }
}

fn put_pairs(out: &mut BytesMut, pairs: &[(Bytes, Bytes)]) {
    out.put_u32(pairs.len() as u32);
    for (k, v) in pairs {
        put_bytes(out, k);
        put_bytes(out, v);
    }
}

impl WriteCommand {
    /// Binary form: `format:u8 · opcode:u8 · now_ms:u64be · fields` (bytes as `len:u32be · data`).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        out.put_u8(FORMAT_VERSION);
        out.put_u8(self.op.opcode());
        out.put_u64(self.now_ms);
        match &self.op {
            WriteOp::Set {
                key,
                value,
                cond,
                get,
                expire,
            } => {
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
                out.put_u8(*cond as u8);
                out.put_u8(u8::from(*get));
                put_expire(&mut out, *expire);
            }
            WriteOp::SetNx { key, value } | WriteOp::Append { key, value } => {
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            WriteOp::GetDel { key } | WriteOp::Persist { key } => put_bytes(&mut out, key),
            WriteOp::GetEx { key, expire } => {
                put_bytes(&mut out, key);
                put_expire(&mut out, *expire);
            }
            WriteOp::MSet { pairs } | WriteOp::MSetNx { pairs } => put_pairs(&mut out, pairs),
            WriteOp::IncrBy { key, delta } => {
                put_bytes(&mut out, key);
                out.put_i64(*delta);
            }
            WriteOp::IncrByFloat { key, delta } => {
                put_bytes(&mut out, key);
                put_bytes(&mut out, delta);
            }
            WriteOp::SetRange { key, offset, value } => {
                put_bytes(&mut out, key);
                out.put_u64(*offset);
                put_bytes(&mut out, value);
            }
            WriteOp::Del { keys } | WriteOp::DelExpired { keys } => put_list(&mut out, keys),
            WriteOp::Expire { key, at_ms, cond } => {
                put_bytes(&mut out, key);
                out.put_i64(*at_ms);
                out.put_u8(*cond as u8);
            }
            WriteOp::Rename { src, dst, nx } => {
                put_bytes(&mut out, src);
                put_bytes(&mut out, dst);
                out.put_u8(u8::from(*nx));
            }
            WriteOp::Copy { src, dst, replace } => {
                put_bytes(&mut out, src);
                put_bytes(&mut out, dst);
                out.put_u8(u8::from(*replace));
            }
            WriteOp::Restore {
                key,
                payload,
                expire_at,
                replace,
            } => {
                put_bytes(&mut out, key);
                put_bytes(&mut out, payload);
                out.put_u64(*expire_at);
                out.put_u8(u8::from(*replace));
            }
            WriteOp::FlushAll => {}
            WriteOp::HSet { key, pairs, nx } => {
                put_bytes(&mut out, key);
                put_pairs(&mut out, pairs);
                out.put_u8(u8::from(*nx));
            }
            WriteOp::HDel { key, fields: list }
            | WriteOp::SAdd { key, members: list }
            | WriteOp::SRem { key, members: list } => {
                put_bytes(&mut out, key);
                put_list(&mut out, list);
            }
            WriteOp::HIncrBy { key, field, delta } => {
                put_bytes(&mut out, key);
                put_bytes(&mut out, field);
                out.put_i64(*delta);
            }
            WriteOp::HIncrByFloat { key, field, delta } => {
                put_bytes(&mut out, key);
                put_bytes(&mut out, field);
                put_bytes(&mut out, delta);
            }
            WriteOp::SPop {
                key,
                members,
                count,
            } => {
                put_bytes(&mut out, key);
                put_list(&mut out, members);
                out.put_u8(u8::from(*count));
            }
            WriteOp::SPopAt { key, count, seed } => {
                put_bytes(&mut out, key);
                match count {
                    None => out.put_u8(0),
                    Some(n) => {
                        out.put_u8(1);
                        out.put_u64(*n);
                    }
                }
                out.put_u64(*seed);
            }
            WriteOp::SMove { src, dst, member } => {
                put_bytes(&mut out, src);
                put_bytes(&mut out, dst);
                put_bytes(&mut out, member);
            }
            WriteOp::SStore { kind, dst, keys } => {
                out.put_u8(*kind as u8);
                put_bytes(&mut out, dst);
                put_list(&mut out, keys);
            }
            WriteOp::LPush {
                key,
                elems,
                left,
                xx,
            } => {
                put_bytes(&mut out, key);
                put_list(&mut out, elems);
                out.put_u8(u8::from(*left));
                out.put_u8(u8::from(*xx));
            }
            WriteOp::LPop { key, left, count } => {
                put_bytes(&mut out, key);
                out.put_u8(u8::from(*left));
                match count {
                    None => out.put_u8(0),
                    Some(n) => {
                        out.put_u8(1);
                        out.put_u64(*n);
                    }
                }
            }
            WriteOp::LSet { key, index, value } => {
                put_bytes(&mut out, key);
                out.put_i64(*index);
                put_bytes(&mut out, value);
            }
            WriteOp::LRem { key, count, elem } => {
                put_bytes(&mut out, key);
                out.put_i64(*count);
                put_bytes(&mut out, elem);
            }
            WriteOp::LTrim { key, start, stop } => {
                put_bytes(&mut out, key);
                out.put_i64(*start);
                out.put_i64(*stop);
            }
            WriteOp::LInsert {
                key,
                before,
                pivot,
                elem,
            } => {
                put_bytes(&mut out, key);
                out.put_u8(u8::from(*before));
                put_bytes(&mut out, pivot);
                put_bytes(&mut out, elem);
            }
            WriteOp::LMove {
                src,
                dst,
                from_left,
                to_left,
            } => {
                put_bytes(&mut out, src);
                put_bytes(&mut out, dst);
                out.put_u8(u8::from(*from_left));
                out.put_u8(u8::from(*to_left));
            }
            WriteOp::LMPop { keys, left, count } => {
                put_list(&mut out, keys);
                out.put_u8(u8::from(*left));
                out.put_u64(*count);
            }
            WriteOp::ZAdd { key, flags, pairs } => {
                put_bytes(&mut out, key);
                out.put_u8(*flags);
                out.put_u32(pairs.len() as u32);
                for (s, m) in pairs {
                    out.put_u64(s.to_bits());
                    put_bytes(&mut out, m);
                }
            }
            WriteOp::ZRem { key, members } => {
                put_bytes(&mut out, key);
                put_list(&mut out, members);
            }
            WriteOp::ZPop { key, max, count } => {
                put_bytes(&mut out, key);
                out.put_u8(u8::from(*max));
                out.put_u64(*count);
            }
            WriteOp::ZRemRange {
                key,
                kind,
                min,
                max,
            } => {
                put_bytes(&mut out, key);
                out.put_u8(*kind as u8);
                put_bytes(&mut out, min);
                put_bytes(&mut out, max);
            }
            WriteOp::ZStore {
                kind,
                dst,
                keys,
                weights,
                agg,
            } => {
                out.put_u8(*kind as u8);
                put_bytes(&mut out, dst);
                put_list(&mut out, keys);
                out.put_u32(weights.len() as u32);
                for w in weights {
                    out.put_u64(w.to_bits());
                }
                out.put_u8(*agg as u8);
            }
            WriteOp::ZMPop { keys, max, count } => {
                put_list(&mut out, keys);
                out.put_u8(u8::from(*max));
                out.put_u64(*count);
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
                put_bytes(&mut out, dst);
                put_bytes(&mut out, src);
                out.put_u8(*kind as u8);
                out.put_u8(u8::from(*rev));
                put_bytes(&mut out, min);
                put_bytes(&mut out, max);
                out.put_i64(*offset);
                out.put_i64(*limit);
            }
            WriteOp::XAdd {
                key,
                id,
                nomkstream,
                fields,
                trim,
            } => {
                put_bytes(&mut out, key);
                put_id_spec(&mut out, *id);
                out.put_u8(u8::from(*nomkstream));
                put_list(&mut out, fields);
                match trim {
                    None => out.put_u8(0),
                    Some(t) => {
                        out.put_u8(1);
                        put_trim(&mut out, t);
                    }
                }
            }
            WriteOp::XTrim { key, trim } => {
                put_bytes(&mut out, key);
                put_trim(&mut out, trim);
            }
            WriteOp::XDel { key, ids } => {
                put_bytes(&mut out, key);
                put_list(&mut out, ids);
            }
            WriteOp::XGroup { op } => op.encode(&mut out),
            WriteOp::TxRead { resp3, args } => {
                out.put_u8(u8::from(*resp3));
                put_list(&mut out, args);
            }
            WriteOp::XSetId {
                key,
                last,
                added,
                max_deleted,
            } => {
                put_bytes(&mut out, key);
                out.put_u64(last.ms);
                out.put_u64(last.seq);
                out.put_u8(u8::from(added.is_some()));
                out.put_u64(added.unwrap_or(0));
                out.put_u8(u8::from(max_deleted.is_some()));
                let d = max_deleted.unwrap_or_default();
                out.put_u64(d.ms);
                out.put_u64(d.seq);
            }
        }
        out.freeze()
    }

    /// Parses the binary form produced by [`WriteCommand::encode`].
    pub fn decode(mut buf: Bytes) -> Result<WriteCommand, DecodeError> {
        let r = &mut buf;
        let version = u8_(r)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        let opcode = u8_(r)?;
        let now_ms = u64_(r)?;
        let op = match opcode {
            1 => WriteOp::Set {
                key: bytes_(r)?,
                value: bytes_(r)?,
                cond: match u8_(r)? {
                    0 => SetCond::Always,
                    1 => SetCond::Nx,
                    2 => SetCond::Xx,
                    _ => return Err(DecodeError::Field("set condition")),
                },
                get: bool_(r)?,
                expire: expire_(r)?,
            },
            2 => WriteOp::SetNx {
                key: bytes_(r)?,
                value: bytes_(r)?,
            },
            3 => WriteOp::GetDel { key: bytes_(r)? },
            4 => WriteOp::GetEx {
                key: bytes_(r)?,
                expire: expire_(r)?,
            },
            5 => WriteOp::MSet { pairs: pairs_(r)? },
            6 => WriteOp::MSetNx { pairs: pairs_(r)? },
            7 => WriteOp::IncrBy {
                key: bytes_(r)?,
                delta: u64_(r)? as i64,
            },
            8 => WriteOp::IncrByFloat {
                key: bytes_(r)?,
                delta: bytes_(r)?,
            },
            9 => WriteOp::Append {
                key: bytes_(r)?,
                value: bytes_(r)?,
            },
            10 => WriteOp::SetRange {
                key: bytes_(r)?,
                offset: u64_(r)?,
                value: bytes_(r)?,
            },
            11 => WriteOp::Del { keys: list_(r)? },
            12 => WriteOp::Expire {
                key: bytes_(r)?,
                at_ms: u64_(r)? as i64,
                cond: match u8_(r)? {
                    0 => ExpireCond::Always,
                    1 => ExpireCond::Nx,
                    2 => ExpireCond::Xx,
                    3 => ExpireCond::Gt,
                    4 => ExpireCond::Lt,
                    5 => ExpireCond::XxGt,
                    6 => ExpireCond::XxLt,
                    _ => return Err(DecodeError::Field("expire condition")),
                },
            },
            13 => WriteOp::Persist { key: bytes_(r)? },
            14 => WriteOp::Rename {
                src: bytes_(r)?,
                dst: bytes_(r)?,
                nx: bool_(r)?,
            },
            15 => WriteOp::Copy {
                src: bytes_(r)?,
                dst: bytes_(r)?,
                replace: bool_(r)?,
            },
            16 => WriteOp::Restore {
                key: bytes_(r)?,
                payload: bytes_(r)?,
                expire_at: u64_(r)?,
                replace: bool_(r)?,
            },
            17 => WriteOp::FlushAll,
            18 => WriteOp::DelExpired { keys: list_(r)? },
            19 => WriteOp::HSet {
                key: bytes_(r)?,
                pairs: pairs_(r)?,
                nx: bool_(r)?,
            },
            20 => WriteOp::HDel {
                key: bytes_(r)?,
                fields: list_(r)?,
            },
            21 => WriteOp::HIncrBy {
                key: bytes_(r)?,
                field: bytes_(r)?,
                delta: u64_(r)? as i64,
            },
            22 => WriteOp::HIncrByFloat {
                key: bytes_(r)?,
                field: bytes_(r)?,
                delta: bytes_(r)?,
            },
            23 => WriteOp::SAdd {
                key: bytes_(r)?,
                members: list_(r)?,
            },
            24 => WriteOp::SRem {
                key: bytes_(r)?,
                members: list_(r)?,
            },
            25 => WriteOp::SPop {
                key: bytes_(r)?,
                members: list_(r)?,
                count: bool_(r)?,
            },
            26 => WriteOp::SMove {
                src: bytes_(r)?,
                dst: bytes_(r)?,
                member: bytes_(r)?,
            },
            27 => WriteOp::SStore {
                kind: match u8_(r)? {
                    0 => SetOpKind::Inter,
                    1 => SetOpKind::Union,
                    2 => SetOpKind::Diff,
                    _ => return Err(DecodeError::Field("set operation")),
                },
                dst: bytes_(r)?,
                keys: list_(r)?,
            },
            28 => WriteOp::LPush {
                key: bytes_(r)?,
                elems: list_(r)?,
                left: bool_(r)?,
                xx: bool_(r)?,
            },
            29 => WriteOp::LPop {
                key: bytes_(r)?,
                left: bool_(r)?,
                count: if bool_(r)? { Some(u64_(r)?) } else { None },
            },
            30 => WriteOp::LSet {
                key: bytes_(r)?,
                index: u64_(r)? as i64,
                value: bytes_(r)?,
            },
            31 => WriteOp::LRem {
                key: bytes_(r)?,
                count: u64_(r)? as i64,
                elem: bytes_(r)?,
            },
            32 => WriteOp::LTrim {
                key: bytes_(r)?,
                start: u64_(r)? as i64,
                stop: u64_(r)? as i64,
            },
            33 => WriteOp::LInsert {
                key: bytes_(r)?,
                before: bool_(r)?,
                pivot: bytes_(r)?,
                elem: bytes_(r)?,
            },
            34 => WriteOp::LMove {
                src: bytes_(r)?,
                dst: bytes_(r)?,
                from_left: bool_(r)?,
                to_left: bool_(r)?,
            },
            35 => WriteOp::LMPop {
                keys: list_(r)?,
                left: bool_(r)?,
                count: u64_(r)?,
            },
            36 => {
                let key = bytes_(r)?;
                let flags = u8_(r)?;
                let n = u32_(r)? as usize;
                if n > r.remaining() / 12 {
                    return Err(DecodeError::Truncated);
                }
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    pairs.push((f64::from_bits(u64_(r)?), bytes_(r)?));
                }
                WriteOp::ZAdd { key, flags, pairs }
            }
            37 => WriteOp::ZRem {
                key: bytes_(r)?,
                members: list_(r)?,
            },
            38 => WriteOp::ZPop {
                key: bytes_(r)?,
                max: bool_(r)?,
                count: u64_(r)?,
            },
            39 => WriteOp::ZRemRange {
                key: bytes_(r)?,
                kind: match u8_(r)? {
                    0 => crate::storage::zset::RemRange::Rank,
                    1 => crate::storage::zset::RemRange::Score,
                    2 => crate::storage::zset::RemRange::Lex,
                    _ => return Err(DecodeError::Field("range kind")),
                },
                min: bytes_(r)?,
                max: bytes_(r)?,
            },
            40 => {
                let kind = crate::storage::zset_ops::ZOpKind::from_u8(u8_(r)?)
                    .ok_or(DecodeError::Field("zset operation"))?;
                let dst = bytes_(r)?;
                let keys = list_(r)?;
                let n = u32_(r)? as usize;
                if n > r.remaining() / 8 {
                    return Err(DecodeError::Truncated);
                }
                let mut weights = Vec::with_capacity(n);
                for _ in 0..n {
                    weights.push(f64::from_bits(u64_(r)?));
                }
                let agg = crate::storage::zset_ops::Aggregate::from_u8(u8_(r)?)
                    .ok_or(DecodeError::Field("aggregate"))?;
                WriteOp::ZStore {
                    kind,
                    dst,
                    keys,
                    weights,
                    agg,
                }
            }
            41 => WriteOp::ZMPop {
                keys: list_(r)?,
                max: bool_(r)?,
                count: u64_(r)?,
            },
            42 => WriteOp::ZRangeStore {
                dst: bytes_(r)?,
                src: bytes_(r)?,
                kind: match u8_(r)? {
                    0 => crate::storage::zset::RemRange::Rank,
                    1 => crate::storage::zset::RemRange::Score,
                    2 => crate::storage::zset::RemRange::Lex,
                    _ => return Err(DecodeError::Field("range kind")),
                },
                rev: bool_(r)?,
                min: bytes_(r)?,
                max: bytes_(r)?,
                offset: u64_(r)? as i64,
                limit: u64_(r)? as i64,
            },
            43 => WriteOp::XAdd {
                key: bytes_(r)?,
                id: id_spec_(r)?,
                nomkstream: bool_(r)?,
                fields: list_(r)?,
                trim: if bool_(r)? { Some(trim_(r)?) } else { None },
            },
            44 => WriteOp::XTrim {
                key: bytes_(r)?,
                trim: trim_(r)?,
            },
            45 => WriteOp::XDel {
                key: bytes_(r)?,
                ids: list_(r)?,
            },
            46 => WriteOp::XGroup {
                op: crate::storage::stream::group_op::GroupOp::decode(r)?,
            },
            47 => {
                use crate::storage::stream::StreamId;
                let key = bytes_(r)?;
                let last = StreamId {
                    ms: u64_(r)?,
                    seq: u64_(r)?,
                };
                let has_added = bool_(r)?;
                let added = u64_(r)?;
                let has_deleted = bool_(r)?;
                let deleted = StreamId {
                    ms: u64_(r)?,
                    seq: u64_(r)?,
                };
                WriteOp::XSetId {
                    key,
                    last,
                    added: has_added.then_some(added),
                    max_deleted: has_deleted.then_some(deleted),
                }
            }
            49 => WriteOp::SPopAt {
                key: bytes_(r)?,
                count: if bool_(r)? { Some(u64_(r)?) } else { None },
                seed: u64_(r)?,
            },
            48 => WriteOp::TxRead {
                resp3: bool_(r)?,
                args: list_(r)?,
            },
            other => return Err(DecodeError::Opcode(other)),
        };
        if buf.has_remaining() {
            return Err(DecodeError::Trailing);
        }
        Ok(WriteCommand { now_ms, op })
    }
}

fn put_id_spec(out: &mut BytesMut, id: crate::storage::stream::IdSpec) {
    use crate::storage::stream::IdSpec;
    let (tag, ms, seq) = match id {
        IdSpec::Auto => (0, 0, 0),
        IdSpec::AutoSeq(ms) => (1, ms, 0),
        IdSpec::Explicit(e) => (2, e.ms, e.seq),
    };
    out.put_u8(tag);
    out.put_u64(ms);
    out.put_u64(seq);
}

fn id_spec_(r: &mut Bytes) -> Result<crate::storage::stream::IdSpec, DecodeError> {
    use crate::storage::stream::{IdSpec, StreamId};
    let tag = u8_(r)?;
    let (ms, seq) = (u64_(r)?, u64_(r)?);
    Ok(match tag {
        0 => IdSpec::Auto,
        1 => IdSpec::AutoSeq(ms),
        2 => IdSpec::Explicit(StreamId { ms, seq }),
        _ => return Err(DecodeError::Field("stream id spec")),
    })
}

fn put_trim(out: &mut BytesMut, t: &crate::storage::stream::Trim) {
    out.put_u8(u8::from(t.minid));
    out.put_u8(u8::from(t.approx));
    out.put_u64(t.maxlen);
    out.put_u64(t.min_id.ms);
    out.put_u64(t.min_id.seq);
    out.put_u64(t.limit);
}

fn trim_(r: &mut Bytes) -> Result<crate::storage::stream::Trim, DecodeError> {
    Ok(crate::storage::stream::Trim {
        minid: bool_(r)?,
        approx: bool_(r)?,
        maxlen: u64_(r)?,
        min_id: crate::storage::stream::StreamId {
            ms: u64_(r)?,
            seq: u64_(r)?,
        },
        limit: u64_(r)?,
    })
}

fn u8_(r: &mut Bytes) -> Result<u8, DecodeError> {
    if r.remaining() < 1 {
        return Err(DecodeError::Truncated);
    }
    Ok(r.get_u8())
}

fn bool_(r: &mut Bytes) -> Result<bool, DecodeError> {
    match u8_(r)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Field("boolean")),
    }
}

fn u64_(r: &mut Bytes) -> Result<u64, DecodeError> {
    if r.remaining() < 8 {
        return Err(DecodeError::Truncated);
    }
    Ok(r.get_u64())
}

fn u32_(r: &mut Bytes) -> Result<u32, DecodeError> {
    if r.remaining() < 4 {
        return Err(DecodeError::Truncated);
    }
    Ok(r.get_u32())
}

fn bytes_(r: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = u32_(r)? as usize;
    if r.remaining() < len {
        return Err(DecodeError::Truncated);
    }
    Ok(r.split_to(len))
}

fn expire_(r: &mut Bytes) -> Result<ExpireSpec, DecodeError> {
    match u8_(r)? {
        0 => Ok(ExpireSpec::Clear),
        1 => Ok(ExpireSpec::Keep),
        2 => Ok(ExpireSpec::At(u64_(r)?)),
        _ => Err(DecodeError::Field("expire spec")),
    }
}

fn list_(r: &mut Bytes) -> Result<Vec<Bytes>, DecodeError> {
    let n = u32_(r)? as usize;
    // Each element needs at least its 4-byte length: refuse counts the buffer cannot hold.
    if n > r.remaining() / 4 {
        return Err(DecodeError::Truncated);
    }
    (0..n).map(|_| bytes_(r)).collect()
}

fn pairs_(r: &mut Bytes) -> Result<Vec<(Bytes, Bytes)>, DecodeError> {
    let n = u32_(r)? as usize;
    if n > r.remaining() / 8 {
        return Err(DecodeError::Truncated);
    }
    (0..n).map(|_| Ok((bytes_(r)?, bytes_(r)?))).collect()
}
