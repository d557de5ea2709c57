//! Single-node write runs: a pipelined batch's consecutive plain writes applied as one.
//!
//! With `-P 16`, sixteen LPUSHes to one list each took the apply mutex, read the list's
//! metadata from the engine, and wrote one WAL record and one memtable batch holding the
//! element and a new metadata record. The connection instead opens a run around commands
//! whose handlers only build one write (see `net::conn`): [`super::Db::apply`] queues the
//! command here and returns a placeholder, and before anything else of the batch runs (or
//! at its end) [`super::Db::apply_run`] applies the queue under one lock as one atomic batch.
//! Each command still sees the earlier ones' effects (one `Tx`, as EXEC), the replies come
//! back in order, and a key rewritten by several commands is written once
//! (`WriteBatch::drop_shadowed`). Other clients see the run's writes all at once, which is
//! one of the orders Redis could have run them in.

use super::deferred::ReplyMap;
use super::deferred::Scope;
use super::write::WriteCommand;
use super::Db;
use pinnacle_resp::Reply;
use std::cell::RefCell;

/// One queued write of a run.
pub struct RunWrite {
    db: Db,
    cmd: WriteCommand,
    map: Option<ReplyMap>,
}

thread_local! {
    static RUN: RefCell<Option<Vec<RunWrite>>> = const { RefCell::new(None) };
    // An emptied queue kept for the next command: a fresh one cost an allocation and a free
    // per pipelined command.
    static SPARE: RefCell<Vec<RunWrite>> = const { RefCell::new(Vec::new()) };
}

/// True while this thread queues writes into a run.
pub fn collecting() -> bool {
    RUN.with(|r| r.borrow().is_some())
}

/// Starts queueing this thread's writes (a no-op if already queueing); keep the returned
/// scope alive until [`end`] (it drops the run if the handler panics).
pub fn begin() -> Scope {
    RUN.with(|r| {
        let mut r = r.borrow_mut();
        if r.is_none() {
            *r = Some(SPARE.with(|s| std::mem::take(&mut *s.borrow_mut())));
        }
    });
    Scope(|| {
        let _ = RUN.with(|r| r.try_borrow_mut().map(|mut r| r.take()));
    })
}

/// Stops queueing and returns what the current command queued.
pub fn end() -> Vec<RunWrite> {
    RUN.with(|r| r.borrow_mut().take()).unwrap_or_default()
}

/// Hands back a queue returned by [`end`] once its writes were moved out, for reuse.
pub fn recycle(mut v: Vec<RunWrite>) {
    v.clear();
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.capacity() == 0 {
            *s = v;
        }
    });
}

/// Queues one write of the current command.
pub(super) fn push(db: &Db, cmd: WriteCommand, map: Option<ReplyMap>) {
    RUN.with(|r| {
        if let Some(v) = r.borrow_mut().as_mut() {
            v.push(RunWrite {
                db: db.clone(),
                cmd,
                map,
            });
        }
    });
}

impl Db {
    /// Applies a run's queued writes in order (each sees the earlier ones' effects) as one
    /// batch per database, and returns their replies in order. The writes are visible on
    /// return; inside [`Db::group_durable`] their WAL sync is left to the end of the group.
    pub fn apply_run(writes: Vec<RunWrite>) -> Vec<Reply> {
        let mut replies = Vec::with_capacity(writes.len());
        let mut rest = writes.into_iter().peekable();
        while let Some(first) = rest.next() {
            let db = first.db.clone();
            let mut group = Vec::with_capacity(rest.len() + 1);
            group.push(first);
            while let Some(w) = rest.next_if(|w| Db::same(&w.db, &db)) {
                group.push(w);
            }
            db.apply_group(group, &mut replies);
        }
        replies
    }

    /// True when `a` and `b` are the same database.
    fn same(a: &Db, b: &Db) -> bool {
        std::sync::Arc::ptr_eq(&a.inner, &b.inner)
    }

    /// [`Db::apply_run`] for writes to this database.
    fn apply_group(&self, group: Vec<RunWrite>, replies: &mut Vec<Reply>) {
        let (cmds, maps): (Vec<WriteCommand>, Vec<Option<ReplyMap>>) =
            group.into_iter().map(|w| (w.cmd, w.map)).unzip();
        let outcome = self
            .apply_core_all(&cmds, None, None)
            .and_then(|(rs, written)| {
                if let super::apply::Written::Seq(seq) = written {
                    for c in &cmds {
                        // Visible in the memtable now (durability follows).
                        self.notify_filled(&c.op);
                    }
                    self.sync_or_group(seq)?;
                }
                Ok(rs)
            });
        match outcome {
            Ok(rs) => {
                for (r, m) in rs.into_iter().zip(maps) {
                    replies.push(match m {
                        Some(f) => f(r),
                        None => r,
                    });
                }
            }
            // Nothing of the run was applied (or its sync failed): each command says so.
            Err(e) => {
                let err = super::apply::storage_error(&e);
                replies.extend(std::iter::repeat_n(err, maps.len()));
            }
        }
    }
}
