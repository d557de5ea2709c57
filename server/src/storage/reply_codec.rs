//! A compact, versionless binary form of [`Reply`] for replies that cross the Raft seam
//! (applied on the leader's state machine, returned to the proposing connection).
//!
//! Unlike RESP3 it keeps every distinction the encoder needs (`Null` vs `NullArray`, the
//! exact `f64` bits of a double), so a decoded reply encodes to the same bytes in RESP2 and
//! RESP3 as the original.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use pinnacle_resp::Reply;

const SIMPLE: u8 = 1;
const ERROR: u8 = 2;
const INTEGER: u8 = 3;
const BULK: u8 = 4;
const NULL: u8 = 5;
const NULL_ARRAY: u8 = 6;
const ARRAY: u8 = 7;
const MAP: u8 = 8;
const SET: u8 = 9;
const DOUBLE: u8 = 10;
const BOOLEAN: u8 = 11;
const VERBATIM: u8 = 12;
const BIG_NUMBER: u8 = 13;
const PUSH: u8 = 14;

/// Appends `r` to `out`.
pub fn encode(r: &Reply, out: &mut BytesMut) {
    match r {
        Reply::Simple(b) => bytes(out, SIMPLE, b),
        Reply::Error(b) => bytes(out, ERROR, b),
        Reply::Integer(n) => {
            out.put_u8(INTEGER);
            out.put_i64(*n);
        }
        Reply::Bulk(b) => bytes(out, BULK, b),
        Reply::Null => out.put_u8(NULL),
        Reply::NullArray => out.put_u8(NULL_ARRAY),
        Reply::Array(v) => list(out, ARRAY, v),
        Reply::BulkArray(a) => {
            out.put_u8(ARRAY);
            out.put_u32(a.len() as u32);
            for b in a.items() {
                bytes(out, BULK, &b);
            }
        }
        Reply::Set(v) => list(out, SET, v),
        Reply::Push(v) => list(out, PUSH, v),
        Reply::Map(pairs) => {
            out.put_u8(MAP);
            out.put_u32(pairs.len() as u32);
            for (k, v) in pairs {
                encode(k, out);
                encode(v, out);
            }
        }
        Reply::Double(d) => {
            out.put_u8(DOUBLE);
            out.put_u64(d.to_bits());
        }
        Reply::Boolean(b) => {
            out.put_u8(BOOLEAN);
            out.put_u8(*b as u8);
        }
        Reply::Verbatim(fmt, b) => {
            out.put_u8(VERBATIM);
            out.put_u8(if *fmt == "mkd" { 1 } else { 0 });
            out.put_u32(b.len() as u32);
            out.put_slice(b);
        }
        Reply::BigNumber(b) => bytes(out, BIG_NUMBER, b),
    }
}

fn bytes(out: &mut BytesMut, tag: u8, b: &[u8]) {
    out.put_u8(tag);
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

fn list(out: &mut BytesMut, tag: u8, v: &[Reply]) {
    out.put_u8(tag);
    out.put_u32(v.len() as u32);
    for r in v {
        encode(r, out);
    }
}

/// Decodes one reply from the front of `buf`; `None` if it is malformed or truncated.
pub fn decode(buf: &mut Bytes) -> Option<Reply> {
    if !buf.has_remaining() {
        return None;
    }
    Some(match buf.get_u8() {
        SIMPLE => Reply::Simple(take(buf)?),
        ERROR => Reply::Error(take(buf)?),
        INTEGER => Reply::Integer(get_u64(buf)? as i64),
        BULK => Reply::Bulk(take(buf)?),
        NULL => Reply::Null,
        NULL_ARRAY => Reply::NullArray,
        ARRAY => Reply::Array(items(buf)?),
        SET => Reply::Set(items(buf)?),
        PUSH => Reply::Push(items(buf)?),
        MAP => {
            let n = get_u32(buf)? as usize;
            // Every element takes at least one byte: a bogus count can't allocate much.
            let mut pairs = Vec::with_capacity(n.min(buf.remaining()));
            for _ in 0..n {
                let k = decode(buf)?;
                let v = decode(buf)?;
                pairs.push((k, v));
            }
            Reply::Map(pairs)
        }
        DOUBLE => Reply::Double(f64::from_bits(get_u64(buf)?)),
        BOOLEAN => {
            if !buf.has_remaining() {
                return None;
            }
            Reply::Boolean(buf.get_u8() != 0)
        }
        VERBATIM => {
            if !buf.has_remaining() {
                return None;
            }
            let fmt = if buf.get_u8() == 1 { "mkd" } else { "txt" };
            Reply::Verbatim(fmt, take(buf)?)
        }
        BIG_NUMBER => Reply::BigNumber(take(buf)?),
        _ => return None,
    })
}

fn get_u32(buf: &mut Bytes) -> Option<u32> {
    (buf.remaining() >= 4).then(|| buf.get_u32())
}

fn get_u64(buf: &mut Bytes) -> Option<u64> {
    (buf.remaining() >= 8).then(|| buf.get_u64())
}

fn take(buf: &mut Bytes) -> Option<Bytes> {
    let n = get_u32(buf)? as usize;
    (buf.remaining() >= n).then(|| buf.split_to(n))
}

fn items(buf: &mut Bytes) -> Option<Vec<Reply>> {
    let n = get_u32(buf)? as usize;
    let mut v = Vec::with_capacity(n.min(buf.remaining()));
    for _ in 0..n {
        v.push(decode(buf)?);
    }
    Some(v)
}

/// Encodes a list of replies (one per command of a proposal).
pub fn encode_list(replies: &[Reply]) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(16 * replies.len() + 4);
    out.put_u32(replies.len() as u32);
    for r in replies {
        encode(r, &mut out);
    }
    out.to_vec()
}

/// Decodes what [`encode_list`] produced.
pub fn decode_list(raw: Vec<u8>) -> Option<Vec<Reply>> {
    let mut buf = Bytes::from(raw);
    let n = get_u32(&mut buf)? as usize;
    let mut v = Vec::with_capacity(n.min(buf.remaining()));
    for _ in 0..n {
        v.push(decode(&mut buf)?);
    }
    buf.is_empty().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinnacle_resp::Protocol;
    use proptest::prelude::*;

    fn leaf() -> impl Strategy<Value = Reply> {
        prop_oneof![
            any::<Vec<u8>>().prop_map(|b| Reply::Simple(b.into())),
            any::<Vec<u8>>().prop_map(|b| Reply::Error(b.into())),
            any::<i64>().prop_map(Reply::Integer),
            any::<Vec<u8>>().prop_map(|b| Reply::Bulk(b.into())),
            Just(Reply::Null),
            Just(Reply::NullArray),
            any::<f64>().prop_map(Reply::Double),
            any::<bool>().prop_map(Reply::Boolean),
            any::<Vec<u8>>().prop_map(|b| Reply::Verbatim("txt", b.into())),
            any::<Vec<u8>>().prop_map(|b| Reply::BigNumber(b.into())),
        ]
    }

    fn reply() -> impl Strategy<Value = Reply> {
        leaf().prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Array),
                prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Set),
                prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Push),
                prop::collection::vec((inner.clone(), inner), 0..4).prop_map(Reply::Map),
            ]
        })
    }

    fn wire(r: &Reply, p: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        r.encode(p, &mut out);
        out.to_vec()
    }

    proptest! {
        #[test]
        fn round_trip_keeps_both_wire_forms(rs in prop::collection::vec(reply(), 0..5)) {
            let back = decode_list(encode_list(&rs)).expect("decodes");
            prop_assert_eq!(back.len(), rs.len());
            for (a, b) in rs.iter().zip(&back) {
                prop_assert_eq!(wire(a, Protocol::Resp2), wire(b, Protocol::Resp2));
                prop_assert_eq!(wire(a, Protocol::Resp3), wire(b, Protocol::Resp3));
            }
        }

        #[test]
        fn garbage_never_panics(raw in any::<Vec<u8>>()) {
            let _ = decode_list(raw);
        }
    }

    #[test]
    fn truncation_is_detected() {
        let raw = encode_list(&[Reply::Bulk("hello".into()), Reply::Integer(3)]);
        for cut in 0..raw.len() {
            assert!(decode_list(raw[..cut].to_vec()).is_none(), "cut at {cut}");
        }
    }
}
