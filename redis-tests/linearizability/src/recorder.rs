//! Recording histories from concurrent client threads.

use crate::history::{History, Op, Operation, Outcome, Ret};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Thread-safe history recorder; clone it (cheap) into each client thread.
///
/// `invoke` stamps the time and hands out a `Pending` op; finish it with `ok`, `fail`
/// (an error reply meaning the command was not applied: dropped from the history) or
/// `indeterminate` (no reply). A `Pending` dropped unfinished counts as indeterminate.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    start: Instant,
    next_id: AtomicU64,
    failed: AtomicU64,
    ops: Mutex<Vec<Operation>>,
}

/// Counts of how recorded operations ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Completed with a reply.
    pub ok: u64,
    /// Error replies meaning "not applied" (not in the history).
    pub failed: u64,
    /// No reply.
    pub indeterminate: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self::starting_at(Instant::now())
    }

    /// A recorder whose clock starts at `start` (share it with a nemesis log).
    pub fn starting_at(start: Instant) -> Self {
        Recorder {
            inner: Arc::new(Inner {
                start,
                next_id: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                ops: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Nanoseconds since the recorder was created.
    pub fn now(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Records that `client` is about to send `op` on `key`. Call it just before sending.
    pub fn invoke(&self, client: u64, key: impl Into<Bytes>, op: Op) -> Pending {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        Pending {
            rec: self.clone(),
            op: Some(Operation {
                id,
                client,
                key: key.into(),
                op,
                invoke: self.now(),
                outcome: Outcome::Indeterminate,
            }),
        }
    }

    /// A copy of the history so far (unfinished `Pending` ops are not in it yet).
    pub fn history(&self) -> History {
        let mut ops = self.lock().clone();
        ops.sort_by_key(|o| o.id);
        History { ops }
    }

    /// How the finished operations ended.
    pub fn counts(&self) -> Counts {
        let ops = self.lock();
        let ok = ops.iter().filter(|o| o.ret().is_some()).count() as u64;
        Counts {
            ok,
            failed: self.inner.failed.load(Ordering::Relaxed),
            indeterminate: ops.len() as u64 - ok,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Operation>> {
        // A client thread that panicked while pushing leaves a valid Vec behind.
        self.inner
            .ops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// An invoked operation awaiting its outcome.
#[must_use = "finish it with ok, fail or indeterminate"]
pub struct Pending {
    rec: Recorder,
    op: Option<Operation>,
}

impl Pending {
    /// The op id (unique within the recorder).
    pub fn id(&self) -> u64 {
        self.op.as_ref().map_or(u64::MAX, |o| o.id)
    }

    /// The reply arrived. Call it right after reading the reply.
    pub fn ok(mut self, ret: Ret) {
        let at = self.rec.now();
        if let Some(mut op) = self.op.take() {
            op.outcome = Outcome::Returned { at, ret };
            self.rec.lock().push(op);
        }
    }

    /// An error reply that means the command was definitely not applied (`-MOVED`,
    /// `-CLUSTERDOWN`, `-NOREPLICAS`, ...): the operation leaves the history.
    pub fn fail(mut self) {
        self.op = None;
        self.rec.inner.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// No reply (timeout, connection lost): it may take effect at any later time, or never.
    pub fn indeterminate(mut self) {
        if let Some(op) = self.op.take() {
            self.rec.lock().push(op);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Unfinished (a panic, an early return): the safe assumption is "maybe applied".
        if let Some(op) = self.op.take() {
            self.rec.lock().push(op);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check;

    #[test]
    fn records_from_threads_and_checks() {
        let rec = Recorder::new();
        let shared = Arc::new(Mutex::new(0i64));
        let threads: Vec<_> = (0..4u64)
            .map(|c| {
                let rec = rec.clone();
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        // A real linearizable object: a counter under a mutex.
                        match i % 3 {
                            0 => {
                                let p = rec.invoke(c, "k", Op::Incr);
                                let n = {
                                    let mut g = shared.lock().unwrap();
                                    *g += 1;
                                    *g
                                };
                                p.ok(Ret::Int(n));
                            }
                            1 => {
                                let p = rec.invoke(c, "k", Op::Get);
                                let n = *shared.lock().unwrap();
                                let v = (n != 0).then(|| Bytes::from(n.to_string()));
                                p.ok(Ret::Value(v));
                            }
                            _ => rec.invoke(c, "k", Op::Incr).fail(),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let counts = rec.counts();
        assert_eq!(counts.failed, 4 * 66);
        assert_eq!(counts.ok, 4 * 134);
        let h = rec.history();
        assert_eq!(h.ops.len(), 4 * 134);
        assert!(h.ops.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(check(&h), crate::Verdict::Ok);
    }

    #[test]
    fn dropped_pending_is_indeterminate() {
        let rec = Recorder::new();
        let p = rec.invoke(1, "k", Op::Set(Bytes::from_static(b"v")));
        let id = p.id();
        drop(p);
        rec.invoke(1, "k", Op::Get).indeterminate();
        let h = rec.history();
        assert_eq!(h.ops.len(), 2);
        assert_eq!(h.ops[0].id, id);
        assert_eq!(h.ops[0].outcome, Outcome::Indeterminate);
        assert_eq!(rec.counts().indeterminate, 2);
    }
}
