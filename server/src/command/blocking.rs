//! Clients blocked on keys (BLPOP, BLMOVE, BZPOPMIN, ...): what they wait for and the wake-ups.
//!
//! A blocking command first tries its non-blocking form. If every key is empty it sets
//! [`BlockSpec`] on the client; the connection then queues it with [`KeyWaiters`], runs the
//! command once more (so a write that landed in between is not missed), and otherwise waits
//! for its turn on one of the keys, its deadline, or a kill, and runs it again. On a
//! Raft node the retry goes through the normal routing: a node that lost leadership answers
//! `MOVED` instead.

use bytes::Bytes;
use parking_lot::Mutex;
use pinnacle_resp::Reply;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why and until when a client is blocked.
#[derive(Debug, Clone)]
pub struct BlockSpec {
    /// Keys whose filling wakes the client.
    pub keys: Vec<Bytes>,
    /// `None` = block forever (timeout 0).
    pub deadline: Option<Instant>,
    /// The reply when the deadline passes (`*-1` or `$-1`).
    pub timeout_reply: Reply,
    /// The request to run on wake-up, if not the original (XREAD with `$` resolved).
    pub rerun: Option<Vec<Bytes>>,
}

/// Parses a blocking timeout in seconds (a float since Redis 6), as Redis does.
pub fn parse_timeout(arg: &[u8]) -> Result<Option<Instant>, Reply> {
    let secs: f64 = std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| Reply::error("ERR timeout is not a float or out of range"))?;
    if secs < 0.0 {
        return Err(Reply::error("ERR timeout is negative"));
    }
    if secs == 0.0 {
        return Ok(None);
    }
    let d = Duration::try_from_secs_f64(secs)
        .map_err(|_| Reply::error("ERR timeout is out of range"))?;
    Ok(Some(Instant::now().checked_add(d).ok_or_else(|| {
        Reply::error("ERR timeout is out of range")
    })?))
}

/// Wake-ups by key, first come first served: a write that fills a key wakes only the oldest
/// client waiting on it; when that client leaves (served, timed out, gone) the next oldest is
/// woken to try, so elements go to blocked clients in arrival order, as in Redis.
#[derive(Default)]
pub struct KeyWaiters {
    queues: Mutex<HashMap<Bytes, VecDeque<Waiter>>>,
    next_ticket: AtomicU64,
    /// Clients currently blocked (INFO `blocked_clients`; writes skip the map when 0).
    blocked: AtomicUsize,
}

#[derive(Clone)]
struct Waiter {
    ticket: u64,
    wake: Arc<Notify>,
}

impl KeyWaiters {
    /// Wakes the oldest client waiting on each of `keys`.
    pub fn notify(&self, keys: &[Bytes]) {
        if self.blocked.load(Ordering::Acquire) == 0 {
            return;
        }
        let queues = self.queues.lock();
        for k in keys {
            if let Some(w) = queues.get(k).and_then(|q| q.front()) {
                // A stored permit: a wake-up before the client waits is not lost.
                w.wake.notify_one();
            }
        }
    }

    /// Wakes every client blocked on a key of `slots` (they moved to another shard: the
    /// client re-runs its command and gets `MOVED`, as Redis unblocks it).
    pub fn notify_slots(&self, slots: &[u16]) {
        if self.blocked.load(Ordering::Acquire) == 0 {
            return;
        }
        let queues = self.queues.lock();
        for (k, q) in queues.iter() {
            if slots.contains(&crate::storage::slot::key_slot(k)) {
                for w in q {
                    w.wake.notify_one();
                }
            }
        }
    }

    /// Number of blocked clients.
    pub fn blocked(&self) -> usize {
        self.blocked.load(Ordering::Acquire)
    }

    /// Queues a client on `keys`; keep the registration until the request completes so it
    /// keeps its place.
    pub fn register(self: &Arc<Self>, keys: &[Bytes]) -> Registration {
        self.blocked.fetch_add(1, Ordering::AcqRel);
        let me = Waiter {
            ticket: self.next_ticket.fetch_add(1, Ordering::Relaxed),
            wake: Arc::new(Notify::new()),
        };
        let mut queues = self.queues.lock();
        for k in keys {
            queues.entry(k.clone()).or_default().push_back(me.clone());
        }
        Registration {
            waiters: self.clone(),
            keys: keys.to_vec(),
            me,
        }
    }

    fn release(&self, keys: &[Bytes], ticket: u64) {
        let mut queues = self.queues.lock();
        for k in keys {
            let Some(q) = queues.get_mut(k) else { continue };
            let was_front = q.front().is_some_and(|w| w.ticket == ticket);
            q.retain(|w| w.ticket != ticket);
            if q.is_empty() {
                queues.remove(k);
            } else if was_front {
                // Pass the turn on: the key may still hold elements for the next client.
                if let Some(next) = q.front() {
                    next.wake.notify_one();
                }
            }
        }
        drop(queues);
        self.blocked.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A blocked client's place in the queues of its keys; dropping it leaves them.
pub struct Registration {
    waiters: Arc<KeyWaiters>,
    keys: Vec<Bytes>,
    me: Waiter,
}

impl Registration {
    /// The keys this client waits on.
    pub fn keys(&self) -> &[Bytes] {
        &self.keys
    }

    /// Resolves once this client's turn comes for one of its keys.
    pub async fn wait(&mut self) {
        self.me.wake.notified().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.waiters.release(&self.keys, self.me.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fill_after_registration_wakes_and_release_cleans_up() {
        let w = Arc::new(KeyWaiters::default());
        let k = Bytes::from_static(b"q");
        let mut r = w.register(std::slice::from_ref(&k));
        assert_eq!(w.blocked(), 1);
        w.notify(std::slice::from_ref(&k));
        tokio::time::timeout(Duration::from_secs(1), r.wait())
            .await
            .expect("woken");
        drop(r);
        assert_eq!(w.blocked(), 0);
        assert!(w.queues.lock().is_empty());
    }

    #[tokio::test]
    async fn other_keys_do_not_wake() {
        let w = Arc::new(KeyWaiters::default());
        let mut r = w.register(&[Bytes::from_static(b"a")]);
        w.notify(&[Bytes::from_static(b"b")]);
        assert!(tokio::time::timeout(Duration::from_millis(50), r.wait())
            .await
            .is_err());
    }

    #[tokio::test]
    async fn the_oldest_waiter_goes_first_and_passes_the_turn_on() {
        let w = Arc::new(KeyWaiters::default());
        let k = Bytes::from_static(b"q");
        let mut first = w.register(std::slice::from_ref(&k));
        let mut second = w.register(std::slice::from_ref(&k));
        w.notify(std::slice::from_ref(&k));
        let quick = Duration::from_millis(50);
        assert!(tokio::time::timeout(quick, second.wait()).await.is_err());
        tokio::time::timeout(quick, first.wait())
            .await
            .expect("first woken");
        // The first one leaves (served): the second gets its turn.
        drop(first);
        tokio::time::timeout(quick, second.wait())
            .await
            .expect("second woken");
    }

    #[test]
    fn timeouts_parse_like_redis() {
        assert!(matches!(parse_timeout(b"0"), Ok(None)));
        assert!(matches!(parse_timeout(b"0.5"), Ok(Some(_))));
        assert_eq!(
            parse_timeout(b"-1").unwrap_err(),
            Reply::error("ERR timeout is negative")
        );
        assert_eq!(
            parse_timeout(b"abc").unwrap_err(),
            Reply::error("ERR timeout is not a float or out of range")
        );
    }
}
