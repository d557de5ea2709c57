//! Record layout on the LSM (Kvrocks-style, slot-prefixed).
//!
//! Every record of a user key starts with the key's 2-byte big-endian hash slot, so one slot is
//! one contiguous key range (count, list, migrate, delete by range). The byte after the slot
//! says what kind of record it is:
//!
//! | record | LSM key | LSM value |
//! |---|---|---|
//! | metadata (one per user key) | `slot:u16be · 0x00 · key` | `type:u8 · expire_at_ms:u64be · payload` |
//! | sub-key (hash field, set member, list element, zset member) | `slot:u16be · 0x01 · keylen:u32be · key · version:u64be · field` | type-specific |
//! | zset score index | `slot:u16be · 0x02 · keylen:u32be · key · version:u64be · score(order-preserving) · member` | empty |
//! | node state (not keyspace) | `0xFF · name` | see [`crate::storage`] |
//!
//! The `type` byte holds the type tag in its low 6 bits; for strings, the top 2 bits record how
//! Redis would have encoded the object ([`StrEnc`], reported by `OBJECT ENCODING`).
//!
//! Metadata payload: for a string, the value bytes themselves (inline, any length, may be
//! empty); for collections, `version:u64be · size:u64be`, and for lists also `head:u64be`
//! (the index of the first element; list sub-keys' field is the element's index as u64be, so
//! LSM order is list order, and pushes on either end only move `head` or the tail). `expire_at_ms` is absolute Unix
//! milliseconds, 0 = no expiry. Overwriting or deleting a collection writes new metadata with a
//! new version (the Raft log index once replication lands); sub-keys of older versions are then
//! unreachable and the compaction filter drops them. Slots are < 0x4000, so the node-state area
//! at `0xFF` never overlaps the keyspace and survives `FLUSHALL`.

use bytes::{BufMut, Bytes, BytesMut};

use super::slot::key_slot;

/// Record kind byte after the slot: metadata.
pub const KIND_META: u8 = 0x00;
/// Record kind byte after the slot: collection sub-key.
pub const KIND_SUBKEY: u8 = 0x01;
/// Record kind byte after the slot: sorted-set score index.
pub const KIND_SCORE: u8 = 0x02;
/// First byte of node-state records (outside every slot's range).
pub const SYSTEM_PREFIX: u8 = 0xFF;
/// Bytes of the metadata header before the payload (type + expiry).
pub const META_HEADER: usize = 9;

/// Data type of a user key. The numbers are stored on disk: never renumber (a test freezes them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum KeyType {
    /// Redis string.
    String = 1,
    /// Redis hash.
    Hash = 2,
    /// Redis set.
    Set = 3,
    /// Redis list.
    List = 4,
    /// Redis sorted set.
    ZSet = 5,
    /// Redis stream.
    Stream = 6,
}

impl KeyType {
    /// Decodes a stored type tag.
    pub fn from_tag(tag: u8) -> Option<KeyType> {
        Some(match tag {
            1 => KeyType::String,
            2 => KeyType::Hash,
            3 => KeyType::Set,
            4 => KeyType::List,
            5 => KeyType::ZSet,
            6 => KeyType::Stream,
            _ => return None,
        })
    }
    /// The name `TYPE` replies with.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::Hash => "hash",
            KeyType::Set => "set",
            KeyType::List => "list",
            KeyType::ZSet => "zset",
            KeyType::Stream => "stream",
        }
    }
    /// Parses a `SCAN ... TYPE name` argument (case-insensitive, like Redis).
    pub fn from_name(name: &[u8]) -> Option<KeyType> {
        let lower = name.to_ascii_lowercase();
        Some(match lower.as_slice() {
            b"string" => KeyType::String,
            b"hash" => KeyType::Hash,
            b"set" => KeyType::Set,
            b"list" => KeyType::List,
            b"zset" => KeyType::ZSet,
            b"stream" => KeyType::Stream,
            _ => return None,
        })
    }
}

/// The LSM key of `key`'s metadata record.
pub fn meta_key(key: &[u8]) -> Bytes {
    meta_key_in_slot(key_slot(key), key)
}

/// The metadata LSM key of `key`, whose slot is already known.
pub fn meta_key_in_slot(slot: u16, key: &[u8]) -> Bytes {
    // A `Vec` of the exact size: `BytesMut`'s `put_*` calls each checked capacity and called
    // `memcpy` (they showed in pipelined write profiles).
    let mut out = Vec::with_capacity(3 + key.len());
    out.extend_from_slice(&slot.to_be_bytes());
    out.push(KIND_META);
    out.extend_from_slice(key);
    Bytes::from(out)
}

/// Splits a metadata LSM key into `(slot, user key)`; `None` for any other record kind.
pub fn decode_meta_key(lsm_key: &[u8]) -> Option<(u16, &[u8])> {
    if lsm_key.len() < 3 || lsm_key[2] != KIND_META || lsm_key[0] >= 0x40 {
        return None;
    }
    Some((u16::from_be_bytes([lsm_key[0], lsm_key[1]]), &lsm_key[3..]))
}

/// Start of slot `slot`'s metadata range (inclusive).
pub fn slot_meta_start(slot: u16) -> Bytes {
    let mut out = BytesMut::with_capacity(3);
    out.put_u16(slot);
    out.put_u8(KIND_META);
    out.freeze()
}

/// End of slot `slot`'s metadata range (exclusive).
pub fn slot_meta_end(slot: u16) -> Bytes {
    let mut out = BytesMut::with_capacity(3);
    out.put_u16(slot);
    out.put_u8(KIND_META + 1);
    out.freeze()
}

/// Start of the whole keyspace (slot 0).
pub fn keyspace_start() -> Bytes {
    Bytes::from_static(&[0x00, 0x00])
}

/// End of the whole keyspace (exclusive: one past slot 16383).
pub fn keyspace_end() -> Bytes {
    Bytes::from_static(&[0x40, 0x00])
}

/// The LSM key of node-state record `name`.
pub fn system_key(name: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(1 + name.len());
    out.put_u8(SYSTEM_PREFIX);
    out.put_slice(name);
    out.freeze()
}

/// A collection sub-key: `slot · 0x01 · keylen · key · version · field` (used by the data-types issue).
pub fn sub_key(key: &[u8], version: u64, field: &[u8]) -> Bytes {
    // Built like `meta_key_in_slot`: one exact allocation, fixed-size parts copied inline.
    let mut out = Vec::with_capacity(15 + key.len() + field.len());
    out.extend_from_slice(&key_slot(key).to_be_bytes());
    out.push(KIND_SUBKEY);
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(field);
    Bytes::from(out)
}

/// Splits a sub-key or score-index record (same layout up to the version) into
/// `(slot, user key, version, rest)`; `None` for other records.
pub fn decode_sub_key(lsm_key: &[u8]) -> Option<(u16, &[u8], u64, &[u8])> {
    if lsm_key.len() < 7
        || !(lsm_key[2] == KIND_SUBKEY || lsm_key[2] == KIND_SCORE)
        || lsm_key[0] >= 0x40
    {
        return None;
    }
    let klen = u32::from_be_bytes(lsm_key[3..7].try_into().ok()?) as usize;
    let key = lsm_key.get(7..7 + klen)?;
    let ver = lsm_key.get(7 + klen..15 + klen)?;
    let version = u64::from_be_bytes(ver.try_into().ok()?);
    Some((
        u16::from_be_bytes([lsm_key[0], lsm_key[1]]),
        key,
        version,
        &lsm_key[15 + klen..],
    ))
}

/// The prefix of every sub-key of `key` at `version` (see [`sub_key`]).
pub fn sub_prefix(key: &[u8], version: u64) -> Bytes {
    sub_key(key, version, b"")
}

/// Mask of the type tag inside the stored type byte.
pub const TYPE_MASK: u8 = 0x3F;

/// How Redis would encode a string object; stored in the top bits of the type byte.
/// The numbers are stored on disk: never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StrEnc {
    /// `tryObjectEncoding`: `int` for a canonical integer, else `embstr`/`raw` by length
    /// (SET, MSET, INCR, RESTORE, ...).
    #[default]
    Auto = 0,
    /// `createStringObject`: `embstr` up to 44 bytes, else `raw`, never `int` (INCRBYFLOAT).
    NoInt = 1,
    /// Always `raw` (APPEND to an existing string, SETRANGE).
    Raw = 2,
}

impl StrEnc {
    fn from_bits(b: u8) -> StrEnc {
        match b {
            1 => StrEnc::NoInt,
            2 => StrEnc::Raw,
            _ => StrEnc::Auto,
        }
    }
}

/// A decoded metadata record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Data type.
    pub kind: KeyType,
    /// Absolute expiry in Unix ms; 0 = never.
    pub expire_at: u64,
    /// Collection version (0 for strings).
    pub version: u64,
    /// Number of elements (collections) or bytes (strings).
    pub size: u64,
    /// The inline value of a string (empty for collections).
    pub value: Bytes,
    /// How Redis would encode this string (strings only).
    pub enc: StrEnc,
    /// A list's head index (its first element's sub-key index); 0 for other types.
    pub head: u64,
}

impl Meta {
    /// A string record.
    pub fn string(value: Bytes, expire_at: u64) -> Meta {
        Meta {
            kind: KeyType::String,
            expire_at,
            version: 0,
            size: value.len() as u64,
            value,
            enc: StrEnc::Auto,
            head: 0,
        }
    }
    /// The same record with encoding hint `enc`.
    pub fn with_enc(mut self, enc: StrEnc) -> Meta {
        self.enc = enc;
        self
    }
    /// True when the key is logically gone at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at != 0 && self.expire_at <= now_ms
    }
    /// The stored form.
    pub fn encode(&self) -> Bytes {
        // The exact size, so `Bytes::from` keeps the allocation (a spare capacity would cost
        // a second one), and `Vec` pushes rather than `BytesMut::put_*` calls (see `sub_key`).
        let len = META_HEADER
            + match self.kind {
                KeyType::String => self.value.len(),
                KeyType::List => 24,
                KeyType::Stream => 16 + self.value.len(),
                _ => 16,
            };
        let mut out = Vec::with_capacity(len);
        // Collections reuse the top bits: `StrEnc::Raw` marks one Redis would have converted to
        // its big encoding (hashtable/skiplist), which it never converts back.
        let enc = (self.enc as u8) << 6;
        out.push(self.kind as u8 | enc);
        out.extend_from_slice(&self.expire_at.to_be_bytes());
        if self.kind == KeyType::String {
            out.extend_from_slice(&self.value);
        } else {
            out.extend_from_slice(&self.version.to_be_bytes());
            out.extend_from_slice(&self.size.to_be_bytes());
            if self.kind == KeyType::List {
                out.extend_from_slice(&self.head.to_be_bytes());
            }
            if self.kind == KeyType::Stream {
                // The stream state (see `storage::stream`).
                out.extend_from_slice(&self.value);
            }
        }
        Bytes::from(out)
    }
    /// Parses a stored record; `None` when it is malformed.
    pub fn decode(raw: &Bytes) -> Option<Meta> {
        if raw.len() < META_HEADER {
            return None;
        }
        let kind = KeyType::from_tag(raw[0] & TYPE_MASK)?;
        let enc = StrEnc::from_bits(raw[0] >> 6);
        let expire_at = u64::from_be_bytes(raw[1..9].try_into().ok()?);
        if kind == KeyType::String {
            let value = raw.slice(META_HEADER..);
            return Some(Meta {
                kind,
                expire_at,
                version: 0,
                size: value.len() as u64,
                value,
                enc,
                head: 0,
            });
        }
        let payload = match kind {
            KeyType::List => 24,
            KeyType::Stream => 16 + super::stream::STATE_LEN,
            _ => 16,
        };
        if raw.len() != META_HEADER + payload {
            return None;
        }
        let value = if kind == KeyType::Stream {
            raw.slice(25..)
        } else {
            Bytes::new()
        };
        let head = if kind == KeyType::List {
            u64::from_be_bytes(raw[25..33].try_into().ok()?)
        } else {
            0
        };
        Some(Meta {
            kind,
            expire_at,
            version: u64::from_be_bytes(raw[9..17].try_into().ok()?),
            size: u64::from_be_bytes(raw[17..25].try_into().ok()?),
            value,
            enc,
            head,
        })
    }
}

/// Reads only the expiry of a stored metadata record (for the compaction filter and sweep).
pub fn raw_expire_at(raw: &[u8]) -> Option<u64> {
    raw.get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_tags_are_frozen() {
        // On-disk numbers: changing any of these breaks every existing data directory.
        assert_eq!(KeyType::String as u8, 1);
        assert_eq!(KeyType::Hash as u8, 2);
        assert_eq!(KeyType::Set as u8, 3);
        assert_eq!(KeyType::List as u8, 4);
        assert_eq!(KeyType::ZSet as u8, 5);
        assert_eq!(KeyType::Stream as u8, 6);
        for tag in 0..=255u8 {
            if let Some(t) = KeyType::from_tag(tag) {
                assert_eq!(t as u8, tag);
            }
        }
        assert_eq!(KIND_META, 0);
        assert_eq!(KIND_SUBKEY, 1);
        assert_eq!(KIND_SCORE, 2);
        assert_eq!(SYSTEM_PREFIX, 0xFF);
        assert_eq!(StrEnc::Auto as u8, 0);
        assert_eq!(StrEnc::NoInt as u8, 1);
        assert_eq!(StrEnc::Raw as u8, 2);
        let raw = Meta::string(Bytes::new(), 0).with_enc(StrEnc::Raw).encode();
        assert_eq!(raw[0], 0x81);
    }

    #[test]
    fn meta_key_layout() {
        let k = meta_key(b"foo");
        assert_eq!(&k[..], &[0x2F, 0x96, 0x00, b'f', b'o', b'o']); // 12182 = 0x2F96
        assert_eq!(decode_meta_key(&k), Some((12182, &b"foo"[..])));
        let empty = meta_key(b"");
        assert_eq!(&empty[..], &[0, 0, 0]);
        assert_eq!(decode_meta_key(&empty), Some((0, &b""[..])));
        assert!(decode_meta_key(&system_key(b"x")).is_none());
        assert!(slot_meta_start(12182) <= k && k < slot_meta_end(12182));
        assert!(keyspace_start() <= k && k < keyspace_end());
        assert!(system_key(b"applied") > keyspace_end());
    }

    #[test]
    fn meta_round_trip_binary() {
        let bin = Bytes::from((0..=255u8).collect::<Vec<_>>());
        for m in [
            Meta::string(Bytes::new(), 0),
            Meta::string(bin.clone(), u64::MAX),
            Meta::string(Bytes::from_static(b"\x00\r\n"), 12345),
            Meta {
                kind: KeyType::Hash,
                expire_at: 7,
                version: 99,
                size: 3,
                value: Bytes::new(),
                enc: StrEnc::Auto,
                head: 0,
            },
            Meta {
                kind: KeyType::List,
                expire_at: 0,
                version: 5,
                size: 2,
                value: Bytes::new(),
                enc: StrEnc::Auto,
                head: 1 << 63,
            },
            Meta::string(Bytes::from_static(b"12"), 5).with_enc(StrEnc::Raw),
            Meta::string(Bytes::from_static(b"12"), 5).with_enc(StrEnc::NoInt),
        ] {
            let enc = m.encode();
            assert_eq!(Meta::decode(&enc), Some(m.clone()));
            assert_eq!(raw_expire_at(&enc), Some(m.expire_at));
        }
        assert_eq!(Meta::decode(&Bytes::from_static(b"\x01abc")), None);
        assert_eq!(
            Meta::decode(&Bytes::from_static(b"\x09\0\0\0\0\0\0\0\0")),
            None
        );
    }
}
