//! Writes a replicated node proposes instead of applying in place.
//!
//! On a Raft node a command handler's `Db::apply` can't apply: the command must first be
//! committed by the group. The connection task opens a collector on its thread around the
//! commands of a batch; `Db::apply` then queues the encoded command (with an optional
//! transformation of its eventual reply) and returns a placeholder, and the connection
//! proposes everything queued as one Raft entry and splices the real replies in.

use bytes::Bytes;
use pinnacle_resp::Reply;
use std::cell::RefCell;

/// Turns the reply apply returned into the one the client gets (e.g. HMSET's `+OK`).
pub type ReplyMap = Box<dyn FnOnce(Reply) -> Reply + Send>;

/// One queued write.
pub struct DeferredWrite {
    /// The encoded `WriteCommand`.
    pub cmd: Bytes,
    /// Applied to the reply before it is sent.
    pub map: Option<ReplyMap>,
}

/// Builds one command's reply from the (mapped) replies of its several writes (EXEC).
pub type Combiner = Box<dyn FnOnce(Vec<Reply>) -> Reply + Send>;

thread_local! {
    static QUEUE: RefCell<Option<Vec<DeferredWrite>>> = const { RefCell::new(None) };
    static COMBINER: RefCell<Option<Combiner>> = const { RefCell::new(None) };
}

/// Says how the writes the current command queued make its one reply (EXEC's array).
pub fn set_combiner(c: Combiner) {
    COMBINER.with(|x| *x.borrow_mut() = Some(c));
}

/// Takes the combiner the current command set, if any.
pub fn take_combiner() -> Option<Combiner> {
    COMBINER.with(|x| x.borrow_mut().take())
}

/// True while this thread collects deferred writes (a Raft node's connection).
pub fn collecting() -> bool {
    QUEUE.with(|q| q.borrow().is_some())
}

/// Starts collecting deferred writes on this thread (a no-op if already collecting); keep the
/// returned scope alive until [`end`].
pub fn begin() -> Scope {
    QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        if q.is_none() {
            *q = Some(Vec::new());
        }
    });
    Scope(discard)
}

/// Drops this thread's queue and combiner (the handler that filled them panicked).
fn discard() {
    let _ = QUEUE.with(|q| q.try_borrow_mut().map(|mut q| q.take()));
    let _ = COMBINER.with(|c| c.try_borrow_mut().map(|mut c| c.take()));
}

/// Runs its discard function if dropped while the command handler panics: the thread lives
/// on (tokio catches the task's panic), and the next connection it serves must not propose or
/// apply a dead connection's writes as its own. Shared with [`super::run`].
#[must_use = "hold the scope until end()"]
pub struct Scope(pub(super) fn());

impl Drop for Scope {
    fn drop(&mut self) {
        if std::thread::panicking() {
            (self.0)();
        }
    }
}

/// Stops collecting and returns what is still queued.
pub fn end() -> Vec<DeferredWrite> {
    QUEUE.with(|q| q.borrow_mut().take()).unwrap_or_default()
}

/// Number of writes queued on this thread.
pub fn len() -> usize {
    QUEUE.with(|q| q.borrow().as_ref().map_or(0, Vec::len))
}

/// Takes every queued write, leaving the collector open.
pub fn take() -> Vec<DeferredWrite> {
    QUEUE.with(|q| {
        q.borrow_mut()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    })
}

/// The writes of one transaction as one write applied atomically (see
/// [`super::shard_ctl::atomic`]); its reply is the array of their (mapped) replies, or the
/// one error that refused them all.
pub fn atomic(writes: Vec<DeferredWrite>) -> DeferredWrite {
    let cmds: Vec<Bytes> = writes.iter().map(|w| w.cmd.clone()).collect();
    let maps: Vec<Option<ReplyMap>> = writes.into_iter().map(|w| w.map).collect();
    DeferredWrite {
        cmd: super::shard_ctl::atomic(&cmds),
        map: Some(Box::new(move |reply| match reply {
            Reply::Array(subs) if subs.len() == maps.len() => Reply::Array(
                subs.into_iter()
                    .zip(maps)
                    .map(|(r, m)| match m {
                        Some(f) => f(r),
                        None => r,
                    })
                    .collect(),
            ),
            other => other,
        })),
    }
}

/// Queues `w`; gives it back if this thread is not collecting.
pub(crate) fn push(w: DeferredWrite) -> Result<(), DeferredWrite> {
    QUEUE.with(|q| match q.borrow_mut().as_mut() {
        Some(v) => {
            v.push(w);
            Ok(())
        }
        None => Err(w),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_leaves_nothing_queued_for_the_next_connection() {
        std::thread::spawn(|| {
            let r = std::panic::catch_unwind(|| {
                let _scope = begin();
                let queued = push(DeferredWrite {
                    cmd: Bytes::from_static(b"w"),
                    map: None,
                });
                assert!(queued.is_ok() && len() == 1);
                set_combiner(Box::new(|_| Reply::Null));
                panic!("handler bug");
            });
            assert!(r.is_err());
            // The same thread serves the next connection: a fresh collector, empty.
            assert!(!collecting());
            assert!(take_combiner().is_none());
            let _scope = begin();
            assert_eq!(len(), 0);
            assert!(end().is_empty());
        })
        .join()
        .expect("test thread");
    }
}
