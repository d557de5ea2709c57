//! Logical write commands: what a client's write becomes before it is applied (and, later,
//! what enters the Raft log).
//!
//! Each entry carries the leader-stamped time and only absolute expiries, so applying it is
//! deterministic on every replica. The opcodes and the binary encoding are stable: a test
//! freezes the numbers, and the leading format byte lets a future reader decode old logs.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Version byte of the binary encoding.
pub const FORMAT_VERSION: u8 = 1;

/// A logical write: the time the leader stamped and the operation.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteCommand {
    /// Leader wall-clock time in Unix ms when the command was proposed.
    pub now_ms: u64,
    /// What to do.
    pub op: WriteOp,
}

/// Which condition a `SET` must meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetCond {
    /// Always set.
    Always = 0,
    /// Only if the key does not exist (`NX`).
    Nx = 1,
    /// Only if the key exists (`XX`).
    Xx = 2,
}

/// What happens to a key's expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireSpec {
    /// Remove any expiry (plain `SET`, `PERSIST` of `GETEX`).
    Clear,
    /// Keep the current expiry (`KEEPTTL`; `GETEX` without options).
    Keep,
    /// Expire at this absolute Unix time in ms.
    At(u64),
}

/// Condition flags of `EXPIRE` and friends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireCond {
    /// No condition.
    Always = 0,
    /// Only when the key has no expiry.
    Nx = 1,
    /// Only when the key has an expiry.
    Xx = 2,
    /// Only when the new expiry is greater (no expiry counts as infinite).
    Gt = 3,
    /// Only when the new expiry is smaller (no expiry counts as infinite).
    Lt = 4,
    /// `XX` and `GT` together.
    XxGt = 5,
    /// `XX` and `LT` together.
    XxLt = 6,
}

/// One logical write operation. Opcodes are in [`WriteOp::opcode`] and frozen by a test.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    /// `SET` (also `SETEX`, `PSETEX`, `GETSET`): reply `+OK`/nil, or the old value with `get`.
    Set {
        /// Key.
        key: Bytes,
        /// New value.
        value: Bytes,
        /// NX / XX.
        cond: SetCond,
        /// Reply with the old value (`GET`, `GETSET`).
        get: bool,
        /// Expiry of the new value.
        expire: ExpireSpec,
    },
    /// `SETNX`: reply `:1`/`:0`.
    SetNx {
        /// Key.
        key: Bytes,
        /// Value.
        value: Bytes,
    },
    /// `GETDEL`.
    GetDel {
        /// Key.
        key: Bytes,
    },
    /// `GETEX` with an expiry change.
    GetEx {
        /// Key.
        key: Bytes,
        /// New expiry (`Clear` = `PERSIST`).
        expire: ExpireSpec,
    },
    /// `MSET`.
    MSet {
        /// Key/value pairs in order.
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// `MSETNX`.
    MSetNx {
        /// Key/value pairs in order.
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// `INCR`, `DECR`, `INCRBY`, `DECRBY`.
    IncrBy {
        /// Key.
        key: Bytes,
        /// Signed increment.
        delta: i64,
    },
    /// `INCRBYFLOAT`; the increment travels as its validated text so every replica parses it alike.
    IncrByFloat {
        /// Key.
        key: Bytes,
        /// Increment as sent by the client.
        delta: Bytes,
    },
    /// `APPEND`.
    Append {
        /// Key.
        key: Bytes,
        /// Bytes to append.
        value: Bytes,
    },
    /// `SETRANGE`.
    SetRange {
        /// Key.
        key: Bytes,
        /// Byte offset (non-negative).
        offset: u64,
        /// Bytes to write.
        value: Bytes,
    },
    /// `DEL`, `UNLINK`: reply the number of keys removed.
    Del {
        /// Keys.
        keys: Vec<Bytes>,
    },
    /// `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`; a time at or before `now_ms` deletes.
    Expire {
        /// Key.
        key: Bytes,
        /// Absolute time in ms (may be negative or in the past).
        at_ms: i64,
        /// NX / XX / GT / LT.
        cond: ExpireCond,
    },
    /// `PERSIST`.
    Persist {
        /// Key.
        key: Bytes,
    },
    /// `RENAME` / `RENAMENX`.
    Rename {
        /// Source key.
        src: Bytes,
        /// Destination key.
        dst: Bytes,
        /// `RENAMENX`.
        nx: bool,
    },
    /// `COPY`.
    Copy {
        /// Source key.
        src: Bytes,
        /// Destination key.
        dst: Bytes,
        /// `REPLACE`.
        replace: bool,
    },
    /// `RESTORE` of a verified `DUMP` payload.
    Restore {
        /// Key.
        key: Bytes,
        /// The payload (already verified by the handler; applying checks again).
        payload: Bytes,
        /// Absolute expiry in ms, 0 = none.
        expire_at: u64,
        /// `REPLACE`.
        replace: bool,
    },
    /// `FLUSHALL` / `FLUSHDB`: delete the whole keyspace.
    FlushAll,
    /// Active expiry: delete those of `keys` that are expired at `now_ms`.
    DelExpired {
        /// Candidate keys.
        keys: Vec<Bytes>,
    },
}

impl WriteOp {
    /// The stable opcode stored in the log.
    pub fn opcode(&self) -> u8 {
        match self {
            WriteOp::Set { .. } => 1,
            WriteOp::SetNx { .. } => 2,
            WriteOp::GetDel { .. } => 3,
            WriteOp::GetEx { .. } => 4,
            WriteOp::MSet { .. } => 5,
            WriteOp::MSetNx { .. } => 6,
            WriteOp::IncrBy { .. } => 7,
            WriteOp::IncrByFloat { .. } => 8,
            WriteOp::Append { .. } => 9,
            WriteOp::SetRange { .. } => 10,
            WriteOp::Del { .. } => 11,
            WriteOp::Expire { .. } => 12,
            WriteOp::Persist { .. } => 13,
            WriteOp::Rename { .. } => 14,
            WriteOp::Copy { .. } => 15,
            WriteOp::Restore { .. } => 16,
            WriteOp::FlushAll => 17,
            WriteOp::DelExpired { .. } => 18,
        }
    }
}

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
            other => return Err(DecodeError::Opcode(other)),
        };
        if buf.has_remaining() {
            return Err(DecodeError::Trailing);
        }
        Ok(WriteCommand { now_ms, op })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use pinnacle_resp::Reply;
    use proptest::prelude::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// One example of every operation, in opcode order.
    fn examples() -> Vec<WriteOp> {
        vec![
            WriteOp::Set {
                key: b("k"),
                value: b("v"),
                cond: SetCond::Nx,
                get: true,
                expire: ExpireSpec::At(5),
            },
            WriteOp::SetNx {
                key: b("k"),
                value: b("v"),
            },
            WriteOp::GetDel { key: b("k") },
            WriteOp::GetEx {
                key: b("k"),
                expire: ExpireSpec::Clear,
            },
            WriteOp::MSet {
                pairs: vec![(b("a"), b("1"))],
            },
            WriteOp::MSetNx {
                pairs: vec![(b("a"), b("1"))],
            },
            WriteOp::IncrBy {
                key: b("k"),
                delta: -3,
            },
            WriteOp::IncrByFloat {
                key: b("k"),
                delta: b("1.5"),
            },
            WriteOp::Append {
                key: b("k"),
                value: b("x"),
            },
            WriteOp::SetRange {
                key: b("k"),
                offset: 3,
                value: b("x"),
            },
            WriteOp::Del {
                keys: vec![b("a"), b("b")],
            },
            WriteOp::Expire {
                key: b("k"),
                at_ms: -1,
                cond: ExpireCond::XxGt,
            },
            WriteOp::Persist { key: b("k") },
            WriteOp::Rename {
                src: b("a"),
                dst: b("b"),
                nx: true,
            },
            WriteOp::Copy {
                src: b("a"),
                dst: b("b"),
                replace: false,
            },
            WriteOp::Restore {
                key: b("k"),
                payload: b("p"),
                expire_at: 9,
                replace: true,
            },
            WriteOp::FlushAll,
            WriteOp::DelExpired { keys: vec![b("x")] },
        ]
    }

    #[test]
    fn opcodes_are_frozen() {
        // Stored in Raft logs: never renumber, only append.
        let codes: Vec<u8> = examples().iter().map(WriteOp::opcode).collect();
        assert_eq!(codes, (1..=18).collect::<Vec<u8>>());
        assert_eq!(FORMAT_VERSION, 1);
        assert_eq!(SetCond::Xx as u8, 2);
        assert_eq!(ExpireCond::XxLt as u8, 6);
    }

    #[test]
    fn encoding_is_frozen() {
        let cmd = WriteCommand {
            now_ms: 0x0102,
            op: WriteOp::Set {
                key: b("k"),
                value: b("v"),
                cond: SetCond::Xx,
                get: false,
                expire: ExpireSpec::At(7),
            },
        };
        let expect: &[u8] = &[
            1, 1, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 1, b'k', 0, 0, 0, 1, b'v', 2, 0, 2, 0, 0, 0, 0,
            0, 0, 0, 7,
        ];
        assert_eq!(&cmd.encode()[..], expect);
    }

    #[test]
    fn bad_input_is_an_error() {
        for op in examples() {
            let enc = WriteCommand { now_ms: 1, op }.encode();
            for cut in 0..enc.len() {
                assert!(WriteCommand::decode(enc.slice(..cut)).is_err());
            }
            let mut long = enc.to_vec();
            long.push(0);
            assert_eq!(
                WriteCommand::decode(Bytes::from(long)),
                Err(DecodeError::Trailing)
            );
        }
        assert_eq!(
            WriteCommand::decode(Bytes::from_static(&[2, 1])),
            Err(DecodeError::Version(2))
        );
        assert_eq!(
            WriteCommand::decode(Bytes::from_static(&[1, 99, 0, 0, 0, 0, 0, 0, 0, 0])),
            Err(DecodeError::Opcode(99))
        );
    }

    fn arb_bytes() -> BoxedStrategy<Bytes> {
        proptest::collection::vec(any::<u8>(), 0..16)
            .prop_map(Bytes::from)
            .boxed()
    }

    fn arb_expire() -> impl Strategy<Value = ExpireSpec> {
        prop_oneof![
            Just(ExpireSpec::Clear),
            Just(ExpireSpec::Keep),
            any::<u64>().prop_map(ExpireSpec::At)
        ]
    }

    fn arb_op() -> impl Strategy<Value = WriteOp> {
        let keys = proptest::collection::vec(arb_bytes(), 0..4);
        let pairs = proptest::collection::vec((arb_bytes(), arb_bytes()), 0..4);
        let cond = prop_oneof![Just(SetCond::Always), Just(SetCond::Nx), Just(SetCond::Xx)];
        let econd = (0u8..7).prop_map(|c| match c {
            0 => ExpireCond::Always,
            1 => ExpireCond::Nx,
            2 => ExpireCond::Xx,
            3 => ExpireCond::Gt,
            4 => ExpireCond::Lt,
            5 => ExpireCond::XxGt,
            _ => ExpireCond::XxLt,
        });
        prop_oneof![
            (arb_bytes(), arb_bytes(), cond, any::<bool>(), arb_expire()).prop_map(
                |(key, value, cond, get, expire)| WriteOp::Set {
                    key,
                    value,
                    cond,
                    get,
                    expire
                }
            ),
            (arb_bytes(), arb_bytes()).prop_map(|(key, value)| WriteOp::SetNx { key, value }),
            arb_bytes().prop_map(|key| WriteOp::GetDel { key }),
            (arb_bytes(), arb_expire()).prop_map(|(key, expire)| WriteOp::GetEx { key, expire }),
            pairs.clone().prop_map(|pairs| WriteOp::MSet { pairs }),
            pairs.prop_map(|pairs| WriteOp::MSetNx { pairs }),
            (arb_bytes(), any::<i64>()).prop_map(|(key, delta)| WriteOp::IncrBy { key, delta }),
            (arb_bytes(), arb_bytes()).prop_map(|(key, delta)| WriteOp::IncrByFloat { key, delta }),
            (arb_bytes(), arb_bytes()).prop_map(|(key, value)| WriteOp::Append { key, value }),
            (arb_bytes(), any::<u64>(), arb_bytes())
                .prop_map(|(key, offset, value)| WriteOp::SetRange { key, offset, value }),
            keys.clone().prop_map(|keys| WriteOp::Del { keys }),
            (arb_bytes(), any::<i64>(), econd).prop_map(|(key, at_ms, cond)| WriteOp::Expire {
                key,
                at_ms,
                cond
            }),
            arb_bytes().prop_map(|key| WriteOp::Persist { key }),
            (arb_bytes(), arb_bytes(), any::<bool>()).prop_map(|(src, dst, nx)| WriteOp::Rename {
                src,
                dst,
                nx
            }),
            (arb_bytes(), arb_bytes(), any::<bool>())
                .prop_map(|(src, dst, replace)| WriteOp::Copy { src, dst, replace }),
            (arb_bytes(), arb_bytes(), any::<u64>(), any::<bool>()).prop_map(
                |(key, payload, expire_at, replace)| WriteOp::Restore {
                    key,
                    payload,
                    expire_at,
                    replace
                }
            ),
            Just(WriteOp::FlushAll),
            keys.prop_map(|keys| WriteOp::DelExpired { keys }),
        ]
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(now_ms in any::<u64>(), op in arb_op()) {
            let cmd = WriteCommand { now_ms, op };
            prop_assert_eq!(WriteCommand::decode(cmd.encode()), Ok(cmd));
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = WriteCommand::decode(Bytes::from(data));
        }
    }

    #[test]
    fn replaying_the_log_on_another_replica_gives_the_same_state_and_replies() {
        use crate::storage::Db;
        let t = 1_700_000_000_000u64;
        let entries: Vec<WriteCommand> = vec![
            WriteCommand {
                now_ms: t,
                op: WriteOp::MSet {
                    pairs: vec![(b("a"), b("1")), (b("b"), b("x"))],
                },
            },
            WriteCommand {
                now_ms: t + 1,
                op: WriteOp::IncrBy {
                    key: b("a"),
                    delta: 41,
                },
            },
            WriteCommand {
                now_ms: t + 2,
                op: WriteOp::IncrByFloat {
                    key: b("f"),
                    delta: b("0.1"),
                },
            },
            WriteCommand {
                now_ms: t + 3,
                op: WriteOp::Expire {
                    key: b("b"),
                    at_ms: (t + 10) as i64,
                    cond: ExpireCond::Always,
                },
            },
            // Stamped by a leader whose clock is behind: still applied at t + 3 or later.
            WriteCommand {
                now_ms: t - 100,
                op: WriteOp::Append {
                    key: b("b"),
                    value: b("y"),
                },
            },
            WriteCommand {
                now_ms: t + 20,
                op: WriteOp::SetNx {
                    key: b("b"),
                    value: b("new"),
                },
            },
            WriteCommand {
                now_ms: t + 21,
                op: WriteOp::Rename {
                    src: b("a"),
                    dst: b("c"),
                    nx: false,
                },
            },
            WriteCommand {
                now_ms: t + 22,
                op: WriteOp::DelExpired { keys: vec![b("c")] },
            },
        ];
        let leader = Db::in_memory();
        let follower = Db::in_memory();
        let mut replies = Vec::new();
        for e in &entries {
            replies.push(leader.apply(e));
        }
        for (e, want) in entries.iter().zip(&replies) {
            let got = follower.apply_encoded(e.encode()).expect("decodes");
            assert_eq!(&got, want, "{e:?}");
        }
        assert_eq!(replies[1], Reply::Integer(42));
        assert_eq!(
            replies[5],
            Reply::Integer(1),
            "b expired at t+10, so SETNX at t+20 wins"
        );
        let at = t + 30;
        for key in ["a", "b", "c", "f"] {
            assert_eq!(
                leader.get(key.as_bytes(), at).expect("read"),
                follower.get(key.as_bytes(), at).expect("read"),
                "{key}"
            );
        }
        assert!(follower.get(b"c", at).expect("read").is_some());
    }
}
