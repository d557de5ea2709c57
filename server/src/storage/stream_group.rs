//! Consumer groups on the LSM: records under the stream's version, after every entry.
//!
//! Entry sub-keys have a 16-byte field (the id). Group records have fields starting with
//! [`AUX`] (16 × `0xFF`) and a tag, so they sort after every entry (even id `MAX-MAX`, whose
//! field is exactly `AUX`) and a DEL/overwrite drops them with the stream's version:
//!
//! | record | field | value |
//! |---|---|---|
//! | group | `AUX · 1 · group` | [`GroupRec`] |
//! | consumer | `AUX · 2 · glen:u32 · group · consumer` | [`ConsumerRec`] |
//! | group PEL | `AUX · 3 · glen:u32 · group · id` | [`Nack`] |
//! | consumer PEL | `AUX · 4 · glen:u32 · group · clen:u32 · consumer · id` | empty |
//!
//! So groups and consumers are in name order (Redis keeps them in a rax), and the PELs are
//! in id order: XPENDING, XAUTOCLAIM and history reads are range scans.

use super::{StreamId, StreamState};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// First 16 bytes of every group record's field.
pub const AUX: [u8; 16] = [0xFF; 16];
const T_GROUP: u8 = 1;
const T_CONSUMER: u8 = 2;
const T_PEL: u8 = 3;
const T_CPEL: u8 = 4;

fn with_group(tag: u8, group: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(16 + 1 + 4 + group.len() + 24);
    b.put_slice(&AUX);
    b.put_u8(tag);
    b.put_u32(group.len() as u32);
    b.put_slice(group);
    b
}

/// Field of group `group`'s record.
pub fn group_field(group: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(17 + group.len());
    b.extend_from_slice(&AUX);
    b.push(T_GROUP);
    b.extend_from_slice(group);
    b
}

/// Prefix of every group record.
pub fn groups_prefix() -> Vec<u8> {
    let mut b = AUX.to_vec();
    b.push(T_GROUP);
    b
}

/// Prefix of `group`'s consumer records.
pub fn consumers_prefix(group: &[u8]) -> Vec<u8> {
    with_group(T_CONSUMER, group).to_vec()
}

/// Field of a consumer record.
pub fn consumer_field(group: &[u8], consumer: &[u8]) -> Vec<u8> {
    let mut b = with_group(T_CONSUMER, group);
    b.put_slice(consumer);
    b.to_vec()
}

/// Prefix of `group`'s PEL.
pub fn pel_prefix(group: &[u8]) -> Vec<u8> {
    with_group(T_PEL, group).to_vec()
}

/// Field of a group PEL entry.
pub fn pel_field(group: &[u8], id: StreamId) -> Vec<u8> {
    let mut b = with_group(T_PEL, group);
    b.put_slice(&id.to_field());
    b.to_vec()
}

/// Prefix of every consumer PEL of `group`.
pub fn cpels_prefix(group: &[u8]) -> Vec<u8> {
    with_group(T_CPEL, group).to_vec()
}

/// Prefix of one consumer's PEL.
pub fn cpel_prefix(group: &[u8], consumer: &[u8]) -> Vec<u8> {
    let mut b = with_group(T_CPEL, group);
    b.put_u32(consumer.len() as u32);
    b.put_slice(consumer);
    b.to_vec()
}

/// Field of a consumer PEL entry.
pub fn cpel_field(group: &[u8], consumer: &[u8], id: StreamId) -> Vec<u8> {
    let mut b = cpel_prefix(group, consumer);
    b.extend_from_slice(&id.to_field());
    b
}

/// The smallest field greater than every field starting with `p` (exclusive scan end).
pub fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut v = p.to_vec();
    while let Some(last) = v.pop() {
        if last < 0xFF {
            v.push(last + 1);
            return v;
        }
    }
    // Only an all-0xFF prefix: nothing in a sub-key range is past it plus more 0xFF.
    let mut v = p.to_vec();
    v.extend_from_slice(&[0xFF; 8]);
    v
}

/// A consumer group's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupRec {
    /// Last delivered id.
    pub last: StreamId,
    /// Entries read (`-1` = unknown, Redis's `SCG_INVALID_ENTRIES_READ`).
    pub entries_read: i64,
    /// Entries in the group PEL.
    pub pel: u64,
    /// Consumers.
    pub consumers: u64,
}

impl GroupRec {
    /// Stored form.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(40);
        b.put_u64(self.last.ms);
        b.put_u64(self.last.seq);
        b.put_i64(self.entries_read);
        b.put_u64(self.pel);
        b.put_u64(self.consumers);
        b.freeze()
    }
    /// Parses the stored form.
    pub fn decode(mut v: &[u8]) -> Option<GroupRec> {
        if v.len() != 40 {
            return None;
        }
        Some(GroupRec {
            last: StreamId {
                ms: v.get_u64(),
                seq: v.get_u64(),
            },
            entries_read: v.get_i64(),
            pel: v.get_u64(),
            consumers: v.get_u64(),
        })
    }
}

/// A consumer's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsumerRec {
    /// Last time it was seen (ms; `seen-time`).
    pub seen: u64,
    /// Entries in its PEL.
    pub pel: u64,
}

impl ConsumerRec {
    /// Stored form.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16);
        b.put_u64(self.seen);
        b.put_u64(self.pel);
        b.freeze()
    }
    /// Parses the stored form.
    pub fn decode(mut v: &[u8]) -> Option<ConsumerRec> {
        if v.len() != 16 {
            return None;
        }
        Some(ConsumerRec {
            seen: v.get_u64(),
            pel: v.get_u64(),
        })
    }
}

/// A pending entry: delivered, not acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nack {
    /// Last delivery time (ms).
    pub time: u64,
    /// Deliveries.
    pub count: u64,
    /// Owner.
    pub consumer: Bytes,
}

impl Nack {
    /// Stored form.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16 + self.consumer.len());
        b.put_u64(self.time);
        b.put_u64(self.count);
        b.put_slice(&self.consumer);
        b.freeze()
    }
    /// Parses the stored form.
    pub fn decode(v: &Bytes) -> Option<Nack> {
        if v.len() < 16 {
            return None;
        }
        let mut r = &v[..];
        Some(Nack {
            time: r.get_u64(),
            count: r.get_u64(),
            consumer: v.slice(16..),
        })
    }
}

/// The id at the end of a PEL field.
pub fn id_suffix(field: &[u8]) -> Option<StreamId> {
    StreamId::from_field(field.get(field.len().checked_sub(16)?..)?)
}

/// `streamRangeHasTombstones(s, start, NULL)`: a deleted id at or after `start` may lie
/// inside the stream.
pub fn has_tombstones(st: &StreamState, len: u64, start: StreamId) -> bool {
    if len == 0 || st.max_deleted == StreamId::default() {
        return false;
    }
    if st.first > st.max_deleted {
        return false;
    }
    start <= st.max_deleted
}

/// `streamEstimateDistanceFromFirstEverEntry`: the logical read counter of `id`, if known.
pub fn estimate_distance(st: &StreamState, len: u64, id: StreamId) -> Option<i64> {
    if st.added == 0 {
        return Some(0);
    }
    if len == 0 && id <= st.last {
        return Some(st.added as i64);
    }
    if id == st.last {
        return Some(st.added as i64);
    }
    if id > st.last {
        return None;
    }
    if st.max_deleted == StreamId::default() || st.max_deleted < st.first {
        if id < st.first {
            return Some(st.added as i64 - len as i64);
        }
        if id == st.first {
            return Some(st.added as i64 - len as i64 + 1);
        }
    }
    None
}

/// `streamReplyWithCGLag`: entries not yet delivered to the group, if known.
pub fn lag(st: &StreamState, len: u64, g: &GroupRec) -> Option<i64> {
    if st.added == 0 {
        return Some(0);
    }
    if g.entries_read != -1 && !has_tombstones(st, len, g.last) {
        return Some(st.added as i64 - g.entries_read);
    }
    estimate_distance(st, len, g.last).map(|read| st.added as i64 - read)
}

/// The group's read counter after delivering `id` (newer than its last id).
pub fn advance_read(st: &StreamState, len: u64, g: &mut GroupRec, id: StreamId) {
    if g.entries_read != -1 && !has_tombstones(st, len, id) {
        g.entries_read += 1;
    } else if st.added != 0 {
        g.entries_read = estimate_distance(st, len, id).unwrap_or(-1);
    }
    g.last = id;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    #[test]
    fn group_records_sort_after_every_entry() {
        let max = super::super::MAX_ID.to_field();
        for f in [
            group_field(b""),
            consumer_field(b"g", b"c"),
            pel_field(b"g", id(0, 0)),
            cpel_field(b"g", b"", id(1, 1)),
        ] {
            assert!(f.as_slice() > &max[..]);
            assert!(f.len() > 16);
        }
        // Names order like Redis's rax: bytewise, a prefix first.
        assert!(group_field(b"a") < group_field(b"a\x00"));
        assert!(group_field(b"a\xff") < group_field(b"b"));
        assert!(consumer_field(b"g", b"ab") < consumer_field(b"g", b"b"));
        // One group's records never interleave with another's.
        assert!(prefix_end(&pel_prefix(b"g")) <= pel_prefix(b"g\x00"));
        assert!(pel_field(b"g", super::super::MAX_ID) < prefix_end(&pel_prefix(b"g")));
    }

    #[test]
    fn records_round_trip() {
        let g = GroupRec {
            last: id(5, 6),
            entries_read: -1,
            pel: 3,
            consumers: 2,
        };
        assert_eq!(GroupRec::decode(&g.encode()), Some(g));
        let c = ConsumerRec { seen: 9, pel: 1 };
        assert_eq!(ConsumerRec::decode(&c.encode()), Some(c));
        let n = Nack {
            time: 1,
            count: 2,
            consumer: Bytes::from_static(b"bob"),
        };
        assert_eq!(Nack::decode(&n.encode()), Some(n));
        assert_eq!(id_suffix(&cpel_field(b"g", b"c", id(7, 8))), Some(id(7, 8)));
    }

    #[test]
    fn lag_follows_redis() {
        // Two entries added, none deleted; a group created at 0 with no counter.
        let st = StreamState {
            last: id(2, 1),
            first: id(1, 1),
            max_deleted: StreamId::default(),
            added: 2,
        };
        let mut g = GroupRec {
            entries_read: -1,
            ..GroupRec::default()
        };
        assert_eq!(lag(&st, 2, &g), Some(2));
        advance_read(&st, 2, &mut g, id(1, 1));
        assert_eq!(g.entries_read, 1);
        advance_read(&st, 2, &mut g, id(2, 1));
        assert_eq!((g.entries_read, lag(&st, 2, &g)), (2, Some(0)));
        // A tombstone in the middle makes the counter of a middle id unknowable.
        let holed = StreamState {
            max_deleted: id(1, 5),
            last: id(3, 0),
            added: 3,
            ..st
        };
        assert_eq!(estimate_distance(&holed, 2, id(1, 1)), None);
        assert_eq!(estimate_distance(&holed, 2, id(3, 0)), Some(3));
        assert_eq!(estimate_distance(&holed, 2, id(4, 0)), None);
    }
}
