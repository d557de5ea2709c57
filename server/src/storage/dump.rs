//! `DUMP` / `RESTORE` payloads: Pinnacle's own format, versioned and checksummed.
//!
//! Layout: `type:u8 · body · format_version:u16le · crc32(type · body · version):u32le`.
//! For a string the body is the value bytes. Like Redis's payload (RDB object, RDB version,
//! CRC64) the trailer lets `RESTORE` reject payloads from another version or damaged in transit.

use super::encoding::KeyType;
use bytes::{BufMut, Bytes, BytesMut};

/// Version of the payload format written by this build.
pub const DUMP_VERSION: u16 = 1;
const TRAILER: usize = 6;

/// Serializes a string value.
pub fn encode_string(value: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(1 + value.len() + TRAILER);
    out.put_u8(KeyType::String as u8);
    out.put_slice(value);
    out.put_u16_le(DUMP_VERSION);
    let crc = crc32fast::hash(&out);
    out.put_u32_le(crc);
    out.freeze()
}

/// A dumped value of any type.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// String bytes.
    String(Bytes),
    /// Hash field/value pairs.
    Hash(Vec<(Bytes, Bytes)>),
    /// Set members.
    Set(Vec<Bytes>),
    /// List elements in order.
    List(Vec<Bytes>),
    /// Sorted-set `(score, member)` entries.
    ZSet(Vec<(f64, Bytes)>),
    /// A stream: its state record and every sub-key record (entries, then the consumer
    /// groups' records; see `storage::stream::group`), fields relative to the stream.
    Stream {
        /// The encoded `StreamState`.
        state: Bytes,
        /// `(field, value)` in field order.
        records: Vec<(Bytes, Bytes)>,
    },
}

fn put_item(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

/// Serializes any value. A collection's body is `count:u32be` then its items, each byte string
/// as `len:u32be · bytes` (hash: field, value; zset: score bits u64be, member).
pub fn encode_value(v: &Value) -> Bytes {
    let (tag, body) = match v {
        Value::String(s) => return encode_string(s),
        Value::Hash(pairs) => {
            let mut b = BytesMut::new();
            b.put_u32(pairs.len() as u32);
            for (f, x) in pairs {
                put_item(&mut b, f);
                put_item(&mut b, x);
            }
            (KeyType::Hash, b)
        }
        Value::Set(items) | Value::List(items) => {
            let mut b = BytesMut::new();
            b.put_u32(items.len() as u32);
            for x in items {
                put_item(&mut b, x);
            }
            let tag = if matches!(v, Value::Set(_)) {
                KeyType::Set
            } else {
                KeyType::List
            };
            (tag, b)
        }
        Value::ZSet(items) => {
            let mut b = BytesMut::new();
            b.put_u32(items.len() as u32);
            for (s, m) in items {
                b.put_u64(s.to_bits());
                put_item(&mut b, m);
            }
            (KeyType::ZSet, b)
        }
        Value::Stream { state, records } => {
            // `count · state · (field, value)*count`.
            let mut b = BytesMut::new();
            b.put_u32(records.len() as u32);
            put_item(&mut b, state);
            for (f, x) in records {
                put_item(&mut b, f);
                put_item(&mut b, x);
            }
            (KeyType::Stream, b)
        }
    };
    let mut out = BytesMut::with_capacity(1 + body.len() + TRAILER);
    out.put_u8(tag as u8);
    out.put_slice(&body);
    out.put_u16_le(DUMP_VERSION);
    let crc = crc32fast::hash(&out);
    out.put_u32_le(crc);
    out.freeze()
}

fn take_u32(b: &mut &[u8]) -> Option<u32> {
    let (h, t) = b.split_first_chunk::<4>()?;
    *b = t;
    Some(u32::from_be_bytes(*h))
}

fn take_item(b: &mut &[u8]) -> Option<Bytes> {
    let n = take_u32(b)? as usize;
    if b.len() < n {
        return None;
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Some(Bytes::copy_from_slice(h))
}

/// Decodes a verified payload of any type; `None` for a bad payload.
pub fn decode_value(payload: &Bytes) -> Option<Value> {
    if !verify(payload) {
        return None;
    }
    let kind = KeyType::from_tag(payload[0])?;
    let mut b = &payload[1..payload.len() - TRAILER];
    if kind == KeyType::String {
        return Some(Value::String(Bytes::copy_from_slice(b)));
    }
    let n = take_u32(&mut b)? as usize;
    // Every item needs at least 4 bytes: refuse counts the payload cannot hold.
    if n > b.len() / 4 {
        return None;
    }
    let v = match kind {
        KeyType::Hash => Value::Hash(
            (0..n)
                .map(|_| Some((take_item(&mut b)?, take_item(&mut b)?)))
                .collect::<Option<_>>()?,
        ),
        KeyType::Set => Value::Set((0..n).map(|_| take_item(&mut b)).collect::<Option<_>>()?),
        KeyType::List => Value::List((0..n).map(|_| take_item(&mut b)).collect::<Option<_>>()?),
        KeyType::ZSet => Value::ZSet(
            (0..n)
                .map(|_| {
                    let (h, t) = b.split_first_chunk::<8>()?;
                    b = t;
                    let s = f64::from_bits(u64::from_be_bytes(*h));
                    Some((s, take_item(&mut b)?))
                })
                .collect::<Option<_>>()?,
        ),
        KeyType::Stream => {
            let state = take_item(&mut b)?;
            let records = (0..n)
                .map(|_| Some((take_item(&mut b)?, take_item(&mut b)?)))
                .collect::<Option<Vec<_>>>()?;
            if !super::stream::valid_records(&state, &records) {
                return None;
            }
            Value::Stream { state, records }
        }
        _ => return None,
    };
    b.is_empty().then_some(v)
}

/// True when the trailer's version is ours and the checksum matches (`verifyDumpPayload`).
pub fn verify(payload: &[u8]) -> bool {
    if payload.len() < 1 + TRAILER {
        return false;
    }
    let (body, crc) = payload.split_at(payload.len() - 4);
    let version = u16::from_le_bytes([body[body.len() - 2], body[body.len() - 1]]);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    version == DUMP_VERSION && crc32fast::hash(body) == stored
}

/// Decodes a verified payload into a string value; `None` for a bad or unsupported payload.
pub fn decode(payload: &Bytes) -> Option<Bytes> {
    if !verify(payload) {
        return None;
    }
    if KeyType::from_tag(payload[0]) != Some(KeyType::String) {
        return None;
    }
    Some(payload.slice(1..payload.len() - TRAILER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        for v in [&b""[..], b"hello", b"\x00\xff\r\n"] {
            let p = encode_string(v);
            assert!(verify(&p));
            assert_eq!(decode(&p).as_deref(), Some(v));
            for i in 0..p.len() {
                let mut bad = p.to_vec();
                bad[i] ^= 0x40;
                assert!(!verify(&bad), "flip at {i}");
            }
        }
        assert!(!verify(b""));
        assert!(!verify(b"\x01\x01\x00"));
    }

    #[test]
    fn collections_round_trip() {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        for v in [
            Value::Hash(vec![(b("f"), b("v")), (b(""), b("x"))]),
            Value::Set(vec![b("1"), b("a")]),
            Value::List(vec![b("a"), b("a"), b("")]),
            Value::ZSet(vec![(1.5, b("m")), (f64::NEG_INFINITY, b("n"))]),
            Value::String(b("s")),
            Value::Stream {
                state: crate::storage::stream::StreamState::default().encode(),
                records: vec![(Bytes::copy_from_slice(&[0; 16]), b("x"))],
            },
        ] {
            let p = encode_value(&v);
            assert_eq!(decode_value(&p), Some(v));
            let mut bad = p.to_vec();
            bad[1] ^= 1;
            assert_eq!(decode_value(&Bytes::from(bad)), None);
        }
    }

    #[test]
    fn format_is_frozen() {
        let p = encode_string(b"ab");
        assert_eq!(&p[..5], &[1, b'a', b'b', 1, 0]);
        assert_eq!(p.len(), 9);
    }
}
