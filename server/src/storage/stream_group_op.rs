//! The consumer-group write operations ([`GroupOp`]) and their frozen binary form, carried by
//! `WriteOp::XGroup` (one opcode; the first byte here says which operation). Every value a
//! replica needs is in the op; the only time source at apply is the entry's `now_ms`.

use crate::storage::stream::StreamId;
use crate::storage::write::DecodeError;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Where XGROUP CREATE / SETID puts the group's last delivered id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupStart {
    /// `$`: the stream's last id at apply.
    Last,
    /// An explicit id.
    Id(StreamId),
}

/// The delivery time XCLAIM sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimTime {
    /// Neither IDLE nor TIME: now.
    Now,
    /// `IDLE ms`: now minus ms.
    Idle(i64),
    /// `TIME unix-ms`.
    Time(i64),
}

/// One consumer-group write (arguments already validated by the handler).
#[derive(Clone, Debug, PartialEq)]
pub enum GroupOp {
    /// XGROUP CREATE.
    Create {
        /// Stream key.
        key: Bytes,
        /// Group name.
        group: Bytes,
        /// Last delivered id.
        start: GroupStart,
        /// MKSTREAM.
        mkstream: bool,
        /// ENTRIESREAD (-1 = unknown).
        entries_read: i64,
    },
    /// XGROUP SETID.
    SetId {
        /// Stream key.
        key: Bytes,
        /// Group name.
        group: Bytes,
        /// New last delivered id.
        start: GroupStart,
        /// ENTRIESREAD (-1 = unknown).
        entries_read: i64,
    },
    /// XGROUP DESTROY.
    Destroy {
        /// Stream key.
        key: Bytes,
        /// Group name.
        group: Bytes,
    },
    /// XGROUP CREATECONSUMER.
    CreateConsumer {
        /// Stream key.
        key: Bytes,
        /// Group name.
        group: Bytes,
        /// Consumer name.
        consumer: Bytes,
    },
    /// XGROUP DELCONSUMER.
    DelConsumer {
        /// Stream key.
        key: Bytes,
        /// Group name.
        group: Bytes,
        /// Consumer name.
        consumer: Bytes,
    },
    /// XREADGROUP (reply in RESP2 shape: `[[key, entries], ...]` or a null array).
    ReadGroup {
        /// Group name.
        group: Bytes,
        /// Consumer name.
        consumer: Bytes,
        /// COUNT (0 = no limit).
        count: u64,
        /// NOACK.
        noack: bool,
        /// Keys with their id: `None` = `>`, else history after this id.
        streams: Vec<(Bytes, Option<StreamId>)>,
    },
    /// XACK.
    Ack {
        /// Stream key.
        key: Bytes,
        /// Group name.
        group: Bytes,
        /// Ids to acknowledge.
        ids: Vec<StreamId>,
    },
    /// XCLAIM.
    Claim {
        /// Stream key.
        key: Bytes,
        /// Group name.
        group: Bytes,
        /// Claiming consumer.
        consumer: Bytes,
        /// min-idle-time (ms, >= 0).
        min_idle: i64,
        /// Ids to claim.
        ids: Vec<StreamId>,
        /// IDLE / TIME.
        time: ClaimTime,
        /// RETRYCOUNT (-1 = not given).
        retry: i64,
        /// FORCE.
        force: bool,
        /// JUSTID.
        justid: bool,
        /// LASTID (0-0 = not given).
        last_id: StreamId,
    },
    /// XAUTOCLAIM.
    AutoClaim {
        /// Stream key.
        key: Bytes,
        /// Group name.
        group: Bytes,
        /// Claiming consumer.
        consumer: Bytes,
        /// min-idle-time (ms, >= 0).
        min_idle: i64,
        /// First PEL id to look at.
        start: StreamId,
        /// COUNT (>= 1).
        count: u64,
        /// JUSTID.
        justid: bool,
    },
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

fn put_id(out: &mut BytesMut, id: StreamId) {
    out.put_u64(id.ms);
    out.put_u64(id.seq);
}

fn put_start(out: &mut BytesMut, s: GroupStart) {
    match s {
        GroupStart::Last => {
            out.put_u8(0);
            put_id(out, StreamId::default());
        }
        GroupStart::Id(id) => {
            out.put_u8(1);
            put_id(out, id);
        }
    }
}

fn put_ids(out: &mut BytesMut, ids: &[StreamId]) {
    out.put_u32(ids.len() as u32);
    for id in ids {
        put_id(out, *id);
    }
}

fn need(r: &Bytes, n: usize) -> Result<(), DecodeError> {
    if r.remaining() < n {
        return Err(DecodeError::Truncated);
    }
    Ok(())
}

fn u8_(r: &mut Bytes) -> Result<u8, DecodeError> {
    need(r, 1)?;
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
    need(r, 8)?;
    Ok(r.get_u64())
}

fn bytes_(r: &mut Bytes) -> Result<Bytes, DecodeError> {
    need(r, 4)?;
    let n = r.get_u32() as usize;
    need(r, n)?;
    Ok(r.split_to(n))
}

fn id_(r: &mut Bytes) -> Result<StreamId, DecodeError> {
    Ok(StreamId {
        ms: u64_(r)?,
        seq: u64_(r)?,
    })
}

fn start_(r: &mut Bytes) -> Result<GroupStart, DecodeError> {
    let tag = u8_(r)?;
    let id = id_(r)?;
    match tag {
        0 => Ok(GroupStart::Last),
        1 => Ok(GroupStart::Id(id)),
        _ => Err(DecodeError::Field("group start")),
    }
}

fn ids_(r: &mut Bytes) -> Result<Vec<StreamId>, DecodeError> {
    need(r, 4)?;
    let n = r.get_u32() as usize;
    if n > r.remaining() / 16 {
        return Err(DecodeError::Truncated);
    }
    (0..n).map(|_| id_(r)).collect()
}

impl GroupOp {
    /// Appends the frozen binary form: `kind:u8 · fields` (never renumber the kinds).
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            GroupOp::Create {
                key,
                group,
                start,
                mkstream,
                entries_read,
            } => {
                out.put_u8(1);
                put_bytes(out, key);
                put_bytes(out, group);
                put_start(out, *start);
                out.put_u8(u8::from(*mkstream));
                out.put_i64(*entries_read);
            }
            GroupOp::SetId {
                key,
                group,
                start,
                entries_read,
            } => {
                out.put_u8(2);
                put_bytes(out, key);
                put_bytes(out, group);
                put_start(out, *start);
                out.put_i64(*entries_read);
            }
            GroupOp::Destroy { key, group } => {
                out.put_u8(3);
                put_bytes(out, key);
                put_bytes(out, group);
            }
            GroupOp::CreateConsumer {
                key,
                group,
                consumer,
            } => {
                out.put_u8(4);
                put_bytes(out, key);
                put_bytes(out, group);
                put_bytes(out, consumer);
            }
            GroupOp::DelConsumer {
                key,
                group,
                consumer,
            } => {
                out.put_u8(5);
                put_bytes(out, key);
                put_bytes(out, group);
                put_bytes(out, consumer);
            }
            GroupOp::ReadGroup {
                group,
                consumer,
                count,
                noack,
                streams,
            } => {
                out.put_u8(6);
                put_bytes(out, group);
                put_bytes(out, consumer);
                out.put_u64(*count);
                out.put_u8(u8::from(*noack));
                out.put_u32(streams.len() as u32);
                for (k, id) in streams {
                    put_bytes(out, k);
                    match id {
                        None => {
                            out.put_u8(0);
                            put_id(out, StreamId::default());
                        }
                        Some(id) => {
                            out.put_u8(1);
                            put_id(out, *id);
                        }
                    }
                }
            }
            GroupOp::Ack { key, group, ids } => {
                out.put_u8(7);
                put_bytes(out, key);
                put_bytes(out, group);
                put_ids(out, ids);
            }
            GroupOp::Claim {
                key,
                group,
                consumer,
                min_idle,
                ids,
                time,
                retry,
                force,
                justid,
                last_id,
            } => {
                out.put_u8(8);
                put_bytes(out, key);
                put_bytes(out, group);
                put_bytes(out, consumer);
                out.put_i64(*min_idle);
                put_ids(out, ids);
                let (tag, v) = match time {
                    ClaimTime::Now => (0, 0),
                    ClaimTime::Idle(v) => (1, *v),
                    ClaimTime::Time(v) => (2, *v),
                };
                out.put_u8(tag);
                out.put_i64(v);
                out.put_i64(*retry);
                out.put_u8(u8::from(*force));
                out.put_u8(u8::from(*justid));
                put_id(out, *last_id);
            }
            GroupOp::AutoClaim {
                key,
                group,
                consumer,
                min_idle,
                start,
                count,
                justid,
            } => {
                out.put_u8(9);
                put_bytes(out, key);
                put_bytes(out, group);
                put_bytes(out, consumer);
                out.put_i64(*min_idle);
                put_id(out, *start);
                out.put_u64(*count);
                out.put_u8(u8::from(*justid));
            }
        }
    }

    /// Parses the form written by [`GroupOp::encode`].
    pub fn decode(r: &mut Bytes) -> Result<GroupOp, DecodeError> {
        Ok(match u8_(r)? {
            1 => GroupOp::Create {
                key: bytes_(r)?,
                group: bytes_(r)?,
                start: start_(r)?,
                mkstream: bool_(r)?,
                entries_read: u64_(r)? as i64,
            },
            2 => GroupOp::SetId {
                key: bytes_(r)?,
                group: bytes_(r)?,
                start: start_(r)?,
                entries_read: u64_(r)? as i64,
            },
            3 => GroupOp::Destroy {
                key: bytes_(r)?,
                group: bytes_(r)?,
            },
            4 => GroupOp::CreateConsumer {
                key: bytes_(r)?,
                group: bytes_(r)?,
                consumer: bytes_(r)?,
            },
            5 => GroupOp::DelConsumer {
                key: bytes_(r)?,
                group: bytes_(r)?,
                consumer: bytes_(r)?,
            },
            6 => {
                let group = bytes_(r)?;
                let consumer = bytes_(r)?;
                let count = u64_(r)?;
                let noack = bool_(r)?;
                need(r, 4)?;
                let n = r.get_u32() as usize;
                if n > r.remaining() / 21 {
                    return Err(DecodeError::Truncated);
                }
                let mut streams = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = bytes_(r)?;
                    let tag = u8_(r)?;
                    let id = id_(r)?;
                    streams.push((
                        k,
                        match tag {
                            0 => None,
                            1 => Some(id),
                            _ => return Err(DecodeError::Field("read group id")),
                        },
                    ));
                }
                GroupOp::ReadGroup {
                    group,
                    consumer,
                    count,
                    noack,
                    streams,
                }
            }
            7 => GroupOp::Ack {
                key: bytes_(r)?,
                group: bytes_(r)?,
                ids: ids_(r)?,
            },
            8 => {
                let key = bytes_(r)?;
                let group = bytes_(r)?;
                let consumer = bytes_(r)?;
                let min_idle = u64_(r)? as i64;
                let ids = ids_(r)?;
                let tag = u8_(r)?;
                let v = u64_(r)? as i64;
                let time = match tag {
                    0 => ClaimTime::Now,
                    1 => ClaimTime::Idle(v),
                    2 => ClaimTime::Time(v),
                    _ => return Err(DecodeError::Field("claim time")),
                };
                GroupOp::Claim {
                    key,
                    group,
                    consumer,
                    min_idle,
                    ids,
                    time,
                    retry: u64_(r)? as i64,
                    force: bool_(r)?,
                    justid: bool_(r)?,
                    last_id: id_(r)?,
                }
            }
            9 => GroupOp::AutoClaim {
                key: bytes_(r)?,
                group: bytes_(r)?,
                consumer: bytes_(r)?,
                min_idle: u64_(r)? as i64,
                start: id_(r)?,
                count: u64_(r)?,
                justid: bool_(r)?,
            },
            _ => return Err(DecodeError::Field("stream group operation")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// One example of every kind, in kind order.
    pub(crate) fn examples() -> Vec<GroupOp> {
        vec![
            GroupOp::Create {
                key: b("s"),
                group: b("g"),
                start: GroupStart::Last,
                mkstream: true,
                entries_read: -1,
            },
            GroupOp::SetId {
                key: b("s"),
                group: b("g"),
                start: GroupStart::Id(id(1, 2)),
                entries_read: 7,
            },
            GroupOp::Destroy {
                key: b("s"),
                group: b("g"),
            },
            GroupOp::CreateConsumer {
                key: b("s"),
                group: b("g"),
                consumer: b("c"),
            },
            GroupOp::DelConsumer {
                key: b("s"),
                group: b("g"),
                consumer: b("c"),
            },
            GroupOp::ReadGroup {
                group: b("g"),
                consumer: b("c"),
                count: 3,
                noack: true,
                streams: vec![(b("s"), None), (b("t"), Some(id(4, 5)))],
            },
            GroupOp::Ack {
                key: b("s"),
                group: b("g"),
                ids: vec![id(1, 1), id(2, 0)],
            },
            GroupOp::Claim {
                key: b("s"),
                group: b("g"),
                consumer: b("c"),
                min_idle: 10,
                ids: vec![id(1, 1)],
                time: ClaimTime::Idle(5),
                retry: -1,
                force: true,
                justid: false,
                last_id: id(9, 9),
            },
            GroupOp::AutoClaim {
                key: b("s"),
                group: b("g"),
                consumer: b("c"),
                min_idle: 0,
                start: id(0, 1),
                count: 100,
                justid: true,
            },
        ]
    }

    #[test]
    fn round_trips_and_kinds_are_frozen() {
        for (i, op) in examples().into_iter().enumerate() {
            let mut out = BytesMut::new();
            op.encode(&mut out);
            assert_eq!(out[0] as usize, i + 1, "kind of {op:?}");
            let mut r = out.clone().freeze();
            assert_eq!(GroupOp::decode(&mut r), Ok(op));
            assert!(r.is_empty());
            // Every truncation is refused, never a panic.
            for cut in 0..out.len() {
                let mut short = out.clone().freeze().slice(..cut);
                assert!(GroupOp::decode(&mut short).is_err(), "cut {cut}");
            }
        }
    }

    #[test]
    fn bytes_are_frozen() {
        let mut out = BytesMut::new();
        GroupOp::Destroy {
            key: b("k"),
            group: b("g"),
        }
        .encode(&mut out);
        assert_eq!(&out[..], b"\x03\x00\x00\x00\x01k\x00\x00\x00\x01g");
    }
}
