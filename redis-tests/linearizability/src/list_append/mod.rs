//! List-append histories ("mini-Elle"): transactions of `RPUSH k v` (unique integer `v`) and
//! `LRANGE k 0 -1` run in one MULTI/EXEC, recorded from concurrent clients and checked for
//! lost, duplicated and garbage elements, non-prefix reads (split brain), aborted reads and
//! cycles in the ww/wr/rw + real-time dependency graph (a stale read is a real-time cycle).
//!
//! Outcomes as in Jepsen: `ok` (EXEC answered every command), `fail` (definitely not applied:
//! an error before EXEC ran, `-EXECABORT`, `-MOVED` ...) and `info`/indeterminate (no reply:
//! maybe applied, at any time after its invoke).

mod check;
mod json;

pub use check::{check_list_append, Anomaly, EdgeKind, ListVerdict};
pub use json::{history_json_lines, register_json_lines, txn_json};

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// One micro-operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mop {
    /// `RPUSH key value`.
    Append {
        /// The list key.
        key: String,
        /// The element, unique within the history.
        value: u64,
    },
    /// `LRANGE key 0 -1`; `result` is `None` until the transaction returns.
    Read {
        /// The list key.
        key: String,
        /// The elements read (after an `ok`).
        result: Option<Vec<u64>>,
    },
}

impl Mop {
    /// The key it touches.
    pub fn key(&self) -> &str {
        match self {
            Mop::Append { key, .. } | Mop::Read { key, .. } => key,
        }
    }
}

/// How a transaction ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TxnOutcome {
    /// EXEC replied (every read's result is filled in) at `at` ns.
    Ok {
        /// Completion time in ns.
        at: u64,
    },
    /// Definitely not applied.
    Fail {
        /// When the failure was seen, in ns.
        at: u64,
    },
    /// No reply: maybe applied.
    Indeterminate,
}

/// One transaction of a history.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Txn {
    /// Unique id within the history.
    pub id: u64,
    /// The client that ran it (one transaction at a time per client).
    pub client: u64,
    /// Invoke time in ns.
    pub invoke: u64,
    /// The micro-operations, in order.
    pub mops: Vec<Mop>,
    /// How it ended.
    pub outcome: TxnOutcome,
}

impl Txn {
    /// True for an `ok` transaction.
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, TxnOutcome::Ok { .. })
    }

    /// Completion time; `u64::MAX` when indeterminate.
    pub fn completion(&self) -> u64 {
        match self.outcome {
            TxnOutcome::Ok { at } | TxnOutcome::Fail { at } => at,
            TxnOutcome::Indeterminate => u64::MAX,
        }
    }
}

impl fmt::Display for Txn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.outcome {
            TxnOutcome::Ok { .. } => "ok",
            TxnOutcome::Fail { .. } => "fail",
            TxnOutcome::Indeterminate => "info",
        };
        write!(f, "T{} c{} {status} [", self.id, self.client)?;
        for (i, m) in self.mops.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match m {
                Mop::Append { key, value } => write!(f, "append {key} {value}")?,
                Mop::Read { key, result: None } => write!(f, "r {key} ?")?,
                Mop::Read {
                    key,
                    result: Some(r),
                } => write!(f, "r {key} {r:?}")?,
            }
        }
        f.write_str("]")
    }
}

/// A list-append history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListHistory {
    /// The transactions, in any order.
    pub txns: Vec<Txn>,
}

impl ListHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a transaction; returns its id (its index). For hand-written histories.
    pub fn push(&mut self, client: u64, invoke: u64, mops: Vec<Mop>, outcome: TxnOutcome) -> u64 {
        let id = self.txns.len() as u64;
        self.txns.push(Txn {
            id,
            client,
            invoke,
            mops,
            outcome,
        });
        id
    }

    /// Count of (ok, fail, indeterminate) transactions.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for t in &self.txns {
            match t.outcome {
                TxnOutcome::Ok { .. } => c.0 += 1,
                TxnOutcome::Fail { .. } => c.1 += 1,
                TxnOutcome::Indeterminate => c.2 += 1,
            }
        }
        c
    }
}

/// Shorthand for an append micro-op.
pub fn append(key: &str, value: u64) -> Mop {
    Mop::Append {
        key: key.into(),
        value,
    }
}

/// Shorthand for a read micro-op with its result (`None`: not returned).
pub fn read(key: &str, result: Option<Vec<u64>>) -> Mop {
    Mop::Read {
        key: key.into(),
        result,
    }
}

/// Thread-safe recorder of list-append transactions; clone it into each client thread.
#[derive(Clone)]
pub struct ListRecorder {
    inner: Arc<Inner>,
}

struct Inner {
    start: Instant,
    next_id: AtomicU64,
    txns: Mutex<Vec<Txn>>,
}

impl Default for ListRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl ListRecorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self::starting_at(Instant::now())
    }

    /// A recorder whose clock starts at `start` (share it with a nemesis log).
    pub fn starting_at(start: Instant) -> Self {
        ListRecorder {
            inner: Arc::new(Inner {
                start,
                next_id: AtomicU64::new(0),
                txns: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Nanoseconds since the recorder's start.
    pub fn now(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Records that `client` is about to send the transaction `mops`.
    pub fn invoke(&self, client: u64, mops: Vec<Mop>) -> PendingTxn {
        PendingTxn {
            rec: self.clone(),
            txn: Some(Txn {
                id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
                client,
                invoke: self.now(),
                mops,
                outcome: TxnOutcome::Indeterminate,
            }),
        }
    }

    /// A copy of the history so far, by id.
    pub fn history(&self) -> ListHistory {
        let mut txns = self.lock().clone();
        txns.sort_by_key(|t| t.id);
        ListHistory { txns }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Txn>> {
        self.inner
            .txns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// An invoked transaction awaiting its outcome; dropped unfinished it is indeterminate.
#[must_use = "finish it with ok, fail or indeterminate"]
pub struct PendingTxn {
    rec: ListRecorder,
    txn: Option<Txn>,
}

impl PendingTxn {
    /// The micro-ops sent.
    pub fn mops(&self) -> &[Mop] {
        self.txn.as_ref().map_or(&[], |t| &t.mops)
    }

    /// EXEC replied: `reads` holds, in order, the result of each read micro-op.
    pub fn ok(mut self, reads: Vec<Vec<u64>>) {
        let at = self.rec.now();
        if let Some(mut t) = self.txn.take() {
            let mut it = reads.into_iter();
            for m in &mut t.mops {
                if let Mop::Read { result, .. } = m {
                    *result = it.next();
                }
            }
            t.outcome = TxnOutcome::Ok { at };
            self.rec.lock().push(t);
        }
    }

    /// Definitely not applied.
    pub fn fail(mut self) {
        let at = self.rec.now();
        if let Some(mut t) = self.txn.take() {
            t.outcome = TxnOutcome::Fail { at };
            self.rec.lock().push(t);
        }
    }

    /// No reply: maybe applied.
    pub fn indeterminate(mut self) {
        if let Some(t) = self.txn.take() {
            self.rec.lock().push(t);
        }
    }
}

impl Drop for PendingTxn {
    fn drop(&mut self) {
        if let Some(t) = self.txn.take() {
            self.rec.lock().push(t);
        }
    }
}

/// Bars of a list-append history for [`crate::render_html`] (one lane per client).
pub fn bars(h: &ListHistory) -> Vec<crate::Bar> {
    h.txns
        .iter()
        .map(|t| crate::Bar {
            lane: format!("client {}", t.client),
            start: t.invoke,
            end: match t.outcome {
                TxnOutcome::Indeterminate => None,
                _ => Some(t.completion()),
            },
            label: t.to_string(),
            kind: match t.outcome {
                TxnOutcome::Ok { .. } => crate::BarKind::Ok,
                TxnOutcome::Fail { .. } => crate::BarKind::Fail,
                TxnOutcome::Indeterminate => crate::BarKind::Info,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests;
