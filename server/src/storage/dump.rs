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
    fn format_is_frozen() {
        let p = encode_string(b"ab");
        assert_eq!(&p[..5], &[1, b'a', b'b', 1, 0]);
        assert_eq!(p.len(), 9);
    }
}
