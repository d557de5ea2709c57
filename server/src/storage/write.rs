//! Logical write commands: what a client's write becomes before it is applied (and, later,
//! what enters the Raft log).
//!
//! Each entry carries the leader-stamped time and only absolute expiries, so applying it is
//! deterministic on every replica. The opcodes and the binary encoding are stable: a test
//! freezes the numbers, and the leading format byte lets a future reader decode old logs.

use bytes::Bytes;

mod codec;
pub use codec::DecodeError;

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
    /// `HSET`/`HMSET` (reply: new fields), `HSETNX` (`nx`: reply 1/0, one pair).
    HSet {
        /// Key.
        key: Bytes,
        /// Field/value pairs in order (later pairs win).
        pairs: Vec<(Bytes, Bytes)>,
        /// Only set fields that do not exist.
        nx: bool,
    },
    /// `HDEL`: reply the number of fields removed.
    HDel {
        /// Key.
        key: Bytes,
        /// Fields.
        fields: Vec<Bytes>,
    },
    /// `HINCRBY`.
    HIncrBy {
        /// Key.
        key: Bytes,
        /// Field.
        field: Bytes,
        /// Increment.
        delta: i64,
    },
    /// `HINCRBYFLOAT`; the increment travels as validated text.
    HIncrByFloat {
        /// Key.
        key: Bytes,
        /// Field.
        field: Bytes,
        /// Increment as sent.
        delta: Bytes,
    },
    /// `SADD`: reply the number of members added.
    SAdd {
        /// Key.
        key: Bytes,
        /// Members.
        members: Vec<Bytes>,
    },
    /// `SREM`: reply the number of members removed.
    SRem {
        /// Key.
        key: Bytes,
        /// Members.
        members: Vec<Bytes>,
    },
    /// `SPOP`: removes the members the leader chose; replies with those removed.
    SPop {
        /// Key.
        key: Bytes,
        /// Members chosen by the leader.
        members: Vec<Bytes>,
        /// `SPOP key count` form (set reply) rather than a single bulk.
        count: bool,
    },
    /// `SPOP` on a Raft node: the members are chosen when the entry is applied, from the set
    /// as the transaction sees it (an earlier `SADD` of the same `EXEC` or pipeline included),
    /// with the leader's `seed`, so every replica removes the same ones.
    SPopAt {
        /// Key.
        key: Bytes,
        /// `SPOP key count` form: how many (set reply); `None`: one (bulk reply).
        count: Option<u64>,
        /// The leader's random seed.
        seed: u64,
    },
    /// `SMOVE`.
    SMove {
        /// Source key.
        src: Bytes,
        /// Destination key.
        dst: Bytes,
        /// Member.
        member: Bytes,
    },
    /// `SINTERSTORE` / `SUNIONSTORE` / `SDIFFSTORE`: reply the result's cardinality.
    SStore {
        /// Which operation.
        kind: SetOpKind,
        /// Destination key.
        dst: Bytes,
        /// Source keys.
        keys: Vec<Bytes>,
    },
    /// `LPUSH`/`RPUSH` (`left`), `LPUSHX`/`RPUSHX` (`xx`): reply the new length.
    LPush {
        /// Key.
        key: Bytes,
        /// Elements in argument order.
        elems: Vec<Bytes>,
        /// Push on the head.
        left: bool,
        /// Only if the list exists.
        xx: bool,
    },
    /// `LPOP`/`RPOP`, with an optional count (array reply).
    LPop {
        /// Key.
        key: Bytes,
        /// Pop from the head.
        left: bool,
        /// `Some(n)`: the count form.
        count: Option<u64>,
    },
    /// `LSET`.
    LSet {
        /// Key.
        key: Bytes,
        /// Index (negative from the tail).
        index: i64,
        /// New element.
        value: Bytes,
    },
    /// `LREM`.
    LRem {
        /// Key.
        key: Bytes,
        /// How many and from which end (0 = all).
        count: i64,
        /// Element to remove.
        elem: Bytes,
    },
    /// `LTRIM`.
    LTrim {
        /// Key.
        key: Bytes,
        /// Start index.
        start: i64,
        /// Stop index (inclusive).
        stop: i64,
    },
    /// `LINSERT`.
    LInsert {
        /// Key.
        key: Bytes,
        /// `BEFORE` (else `AFTER`).
        before: bool,
        /// Pivot element.
        pivot: Bytes,
        /// Element to insert.
        elem: Bytes,
    },
    /// `LMOVE` / `RPOPLPUSH`.
    LMove {
        /// Source key.
        src: Bytes,
        /// Destination key.
        dst: Bytes,
        /// Pop from the source's head.
        from_left: bool,
        /// Push on the destination's head.
        to_left: bool,
    },
    /// `LMPOP`: pops up to `count` from the first non-empty list.
    LMPop {
        /// Keys in order.
        keys: Vec<Bytes>,
        /// Pop from the head.
        left: bool,
        /// Most elements to pop.
        count: u64,
    },
    /// `ZADD` / `ZINCRBY` (flags `super::zset::ZADD_*`; scores already validated).
    ZAdd {
        /// Key.
        key: Bytes,
        /// NX XX GT LT CH INCR bits.
        flags: u8,
        /// Score/member pairs.
        pairs: Vec<(f64, Bytes)>,
    },
    /// `ZREM`.
    ZRem {
        /// Key.
        key: Bytes,
        /// Members.
        members: Vec<Bytes>,
    },
    /// `ZPOPMIN` / `ZPOPMAX`: reply flat `[member, score, ...]`.
    ZPop {
        /// Key.
        key: Bytes,
        /// Pop the highest scores.
        max: bool,
        /// How many.
        count: u64,
    },
    /// `ZREMRANGEBYRANK` / `ZREMRANGEBYSCORE` / `ZREMRANGEBYLEX` (bounds as sent).
    ZRemRange {
        /// Key.
        key: Bytes,
        /// Which kind of range.
        kind: super::zset::RemRange,
        /// Lower bound text.
        min: Bytes,
        /// Upper bound text.
        max: Bytes,
    },
    /// `ZUNIONSTORE` / `ZINTERSTORE` / `ZDIFFSTORE`: reply the result's cardinality.
    ZStore {
        /// Which operation.
        kind: super::zset_ops::ZOpKind,
        /// Destination key.
        dst: Bytes,
        /// Source keys (sorted sets or sets).
        keys: Vec<Bytes>,
        /// One weight per source (empty = all 1).
        weights: Vec<f64>,
        /// SUM / MIN / MAX.
        agg: super::zset_ops::Aggregate,
    },
    /// `ZMPOP`: pops up to `count` from the first non-empty sorted set.
    ZMPop {
        /// Keys in order.
        keys: Vec<Bytes>,
        /// Pop the highest scores.
        max: bool,
        /// Most members to pop.
        count: u64,
    },
    /// `ZRANGESTORE`: bounds as sent (low-high even with `rev`), re-parsed at apply.
    ZRangeStore {
        /// Destination key.
        dst: Bytes,
        /// Source key.
        src: Bytes,
        /// Rank, BYSCORE or BYLEX.
        kind: super::zset::RemRange,
        /// `REV`.
        rev: bool,
        /// Lower bound text.
        min: Bytes,
        /// Upper bound text.
        max: Bytes,
        /// `LIMIT` offset.
        offset: i64,
        /// `LIMIT` count (negative = all).
        limit: i64,
    },
    /// `XADD`: reply the new id (nil with NOMKSTREAM on a missing key).
    XAdd {
        /// Key.
        key: Bytes,
        /// How the id is chosen (auto ids come from `now_ms`).
        id: super::stream::IdSpec,
        /// `NOMKSTREAM`.
        nomkstream: bool,
        /// Field/value list.
        fields: Vec<Bytes>,
        /// MAXLEN / MINID.
        trim: Option<super::stream::Trim>,
    },
    /// `XTRIM`: reply the number of entries removed.
    XTrim {
        /// Key.
        key: Bytes,
        /// MAXLEN / MINID.
        trim: super::stream::Trim,
    },
    /// `XDEL`: reply the number of entries removed (ids validated by the handler).
    XDel {
        /// Key.
        key: Bytes,
        /// Ids as sent.
        ids: Vec<Bytes>,
    },
    /// Consumer groups: XGROUP, XREADGROUP, XACK, XCLAIM, XAUTOCLAIM (one opcode; the op
    /// carries its own frozen kind byte).
    XGroup {
        /// The group operation.
        op: super::stream::group_op::GroupOp,
    },
    /// `XSETID key last-id [ENTRIESADDED n] [MAXDELETEDID id]` (options validated by the
    /// handler; the checks against the stream happen at apply).
    XSetId {
        /// Key.
        key: Bytes,
        /// The new last id.
        last: super::stream::StreamId,
        /// ENTRIESADDED.
        added: Option<u64>,
        /// MAXDELETEDID.
        max_deleted: Option<super::stream::StreamId>,
    },
    /// A read-only command queued in a `MULTI` with writes (Raft mode): run at apply time
    /// against the transaction's state so far, so it sees the earlier writes (see
    /// [`super::tx_read`]). Writes nothing.
    TxRead {
        /// The reply protocol of the client that queued it.
        resp3: bool,
        /// The command as sent.
        args: Vec<Bytes>,
    },
}

/// Set algebra of `SSTORE` (stored: never renumber).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOpKind {
    /// Intersection.
    Inter = 0,
    /// Union.
    Union = 1,
    /// Difference (first minus the others).
    Diff = 2,
}

impl WriteOp {
    /// Keys this operation may add list, sorted-set or stream entries to: what clients blocked
    /// in BLPOP, BZPOPMIN, XREAD BLOCK and friends wait for.
    pub fn filled_keys(&self) -> &[Bytes] {
        match self {
            WriteOp::LPush { key, .. }
            | WriteOp::ZAdd { key, .. }
            | WriteOp::XAdd { key, .. }
            | WriteOp::Restore { key, .. } => std::slice::from_ref(key),
            WriteOp::LMove { dst, .. }
            | WriteOp::Rename { dst, .. }
            | WriteOp::Copy { dst, .. }
            | WriteOp::ZStore { dst, .. }
            | WriteOp::ZRangeStore { dst, .. } => std::slice::from_ref(dst),
            _ => &[],
        }
    }

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
            WriteOp::HSet { .. } => 19,
            WriteOp::HDel { .. } => 20,
            WriteOp::HIncrBy { .. } => 21,
            WriteOp::HIncrByFloat { .. } => 22,
            WriteOp::SAdd { .. } => 23,
            WriteOp::SRem { .. } => 24,
            WriteOp::SPop { .. } => 25,
            WriteOp::SMove { .. } => 26,
            WriteOp::SStore { .. } => 27,
            WriteOp::LPush { .. } => 28,
            WriteOp::LPop { .. } => 29,
            WriteOp::LSet { .. } => 30,
            WriteOp::LRem { .. } => 31,
            WriteOp::LTrim { .. } => 32,
            WriteOp::LInsert { .. } => 33,
            WriteOp::LMove { .. } => 34,
            WriteOp::LMPop { .. } => 35,
            WriteOp::ZAdd { .. } => 36,
            WriteOp::ZRem { .. } => 37,
            WriteOp::ZPop { .. } => 38,
            WriteOp::ZRemRange { .. } => 39,
            WriteOp::ZStore { .. } => 40,
            WriteOp::ZMPop { .. } => 41,
            WriteOp::ZRangeStore { .. } => 42,
            WriteOp::XAdd { .. } => 43,
            WriteOp::XTrim { .. } => 44,
            WriteOp::XDel { .. } => 45,
            WriteOp::XGroup { .. } => 46,
            WriteOp::XSetId { .. } => 47,
            WriteOp::TxRead { .. } => 48,
            WriteOp::SPopAt { .. } => 49,
        }
    }
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
