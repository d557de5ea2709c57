//! The history model: operations on string keys with their invoke and completion times.

use bytes::Bytes;
use std::fmt;

/// A command applied to one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `SET key value` → `Ret::Ok`.
    Set(Bytes),
    /// `SET key value GET` → `Ret::Value(old value or nil)`.
    SetGet(Bytes),
    /// `GET key` → `Ret::Value(value or nil)`.
    Get,
    /// `INCR key` → `Ret::Int(new value)` or `Ret::NotInteger`.
    Incr,
    /// `DEL key` → `Ret::Int(0 or 1)`.
    Del,
}

impl Op {
    /// True for operations that cannot change the key's value.
    pub fn is_read_only(&self) -> bool {
        matches!(self, Op::Get)
    }
}

/// What a command answered. An error reply that means "not applied" (`-MOVED`,
/// `-CLUSTERDOWN`, ...) is not a `Ret`: record it with `Pending::fail`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// `+OK`.
    Ok,
    /// A bulk string or nil (GET, SET ... GET).
    Value(Option<Bytes>),
    /// An integer reply (INCR, DEL).
    Int(i64),
    /// INCR's error for a value that is not an integer or would overflow
    /// (`-ERR value is not an integer or out of range`,
    /// `-ERR increment or decrement would overflow`): the value decides it, so it is checked.
    NotInteger,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A reply arrived at `at` (ns, same clock as `Operation::invoke`).
    Returned {
        /// Completion time in ns.
        at: u64,
        /// The reply.
        ret: Ret,
    },
    /// No reply (timeout, connection dropped): it took effect at some time after its invoke, or
    /// never. Checked as completing at +infinity with an unconstrained result.
    Indeterminate,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operation {
    /// Unique id within the history (the recorder's op id).
    pub id: u64,
    /// The client (connection/thread) that issued it; a client runs one operation at a time.
    pub client: u64,
    /// The key.
    pub key: Bytes,
    /// The command.
    pub op: Op,
    /// Invoke time in ns (any monotonic clock shared by all clients of the history).
    pub invoke: u64,
    /// Completion.
    pub outcome: Outcome,
}

impl Operation {
    /// Completion time, `u64::MAX` for an indeterminate operation.
    pub fn completion(&self) -> u64 {
        match self.outcome {
            Outcome::Returned { at, .. } => at,
            Outcome::Indeterminate => u64::MAX,
        }
    }

    /// The reply, if one arrived.
    pub fn ret(&self) -> Option<&Ret> {
        match &self.outcome {
            Outcome::Returned { ret, .. } => Some(ret),
            Outcome::Indeterminate => None,
        }
    }
}

/// A recorded history: operations in any order. Errors that mean "not applied" are
/// not part of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The operations.
    pub ops: Vec<Operation>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a completed operation (times in ns); returns its id (its index).
    pub fn push_ok(
        &mut self,
        client: u64,
        key: impl Into<Bytes>,
        op: Op,
        invoke: u64,
        at: u64,
        ret: Ret,
    ) -> u64 {
        self.push(
            client,
            key.into(),
            op,
            invoke,
            Outcome::Returned { at, ret },
        )
    }

    /// Appends an operation that never answered; returns its id (its index).
    pub fn push_indeterminate(
        &mut self,
        client: u64,
        key: impl Into<Bytes>,
        op: Op,
        invoke: u64,
    ) -> u64 {
        self.push(client, key.into(), op, invoke, Outcome::Indeterminate)
    }

    fn push(&mut self, client: u64, key: Bytes, op: Op, invoke: u64, outcome: Outcome) -> u64 {
        let id = self.ops.len() as u64;
        self.ops.push(Operation {
            id,
            client,
            key,
            op,
            invoke,
            outcome,
        });
        id
    }

    /// Number of operations that completed with a reply.
    pub fn completed(&self) -> usize {
        self.ops.iter().filter(|o| o.ret().is_some()).count()
    }

    /// The distinct keys, sorted.
    pub fn keys(&self) -> Vec<Bytes> {
        let mut keys: Vec<Bytes> = self.ops.iter().map(|o| o.key.clone()).collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// Shows bytes as a quoted string, escaping what is not printable ASCII.
pub(crate) struct Quoted<'a>(pub &'a [u8]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &b in self.0 {
            match b {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                0x20..=0x7e => write!(f, "{}", b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        f.write_str("\"")
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Set(v) => write!(f, "SET {}", Quoted(v)),
            Op::SetGet(v) => write!(f, "SET {} GET", Quoted(v)),
            Op::Get => f.write_str("GET"),
            Op::Incr => f.write_str("INCR"),
            Op::Del => f.write_str("DEL"),
        }
    }
}

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ret::Ok => f.write_str("OK"),
            Ret::Value(Some(v)) => write!(f, "{}", Quoted(v)),
            Ret::Value(None) => f.write_str("nil"),
            Ret::Int(n) => write!(f, "{n}"),
            Ret::NotInteger => f.write_str("ERR not an integer"),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} c{} ", self.id, self.client)?;
        let key = Quoted(&self.key);
        match &self.op {
            Op::Set(v) => write!(f, "SET {key} {}", Quoted(v))?,
            Op::SetGet(v) => write!(f, "SET {key} {} GET", Quoted(v))?,
            Op::Get => write!(f, "GET {key}")?,
            Op::Incr => write!(f, "INCR {key}")?,
            Op::Del => write!(f, "DEL {key}")?,
        }
        match &self.outcome {
            Outcome::Returned { ret, .. } => write!(f, " -> {ret}"),
            Outcome::Indeterminate => f.write_str(" -> ?"),
        }
    }
}
