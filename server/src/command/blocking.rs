//! Clients blocked on keys (BLPOP, BLMOVE, BZPOPMIN, ...): what they wait for and the wake-ups.
//!
//! A blocking command first tries its non-blocking form. If every key is empty it sets
//! [`BlockSpec`] on the client; the connection then registers with [`KeyWaiters`], runs the
//! command once more (so a write that landed in between is not missed), and otherwise waits
//! for a write that fills one of the keys, its deadline, or a kill, and runs it again. On a
//! Raft node the retry goes through the normal routing: a node that lost leadership answers
//! `MOVED` instead.

use bytes::Bytes;
use parking_lot::Mutex;
use pinnacle_resp::Reply;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::futures::OwnedNotified;
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

/// Wake-ups by key.
#[derive(Default)]
pub struct KeyWaiters {
    map: Mutex<HashMap<Bytes, Arc<Notify>>>,
    /// Clients currently blocked (INFO `blocked_clients`; writes skip the map when 0).
    blocked: AtomicUsize,
}

impl KeyWaiters {
    /// Wakes every client waiting on one of `keys`.
    pub fn notify(&self, keys: &[Bytes]) {
        if self.blocked.load(Ordering::Acquire) == 0 {
            return;
        }
        let map = self.map.lock();
        for k in keys {
            if let Some(n) = map.get(k) {
                n.notify_waiters();
            }
        }
    }

    /// Number of blocked clients.
    pub fn blocked(&self) -> usize {
        self.blocked.load(Ordering::Acquire)
    }

    /// Registers interest in `keys`: the returned guard's [`Registration::wait`] resolves
    /// after any of them is filled from now on.
    pub fn register(self: &Arc<Self>, keys: &[Bytes]) -> Registration {
        self.blocked.fetch_add(1, Ordering::AcqRel);
        let notifies: Vec<Arc<Notify>> = {
            let mut map = self.map.lock();
            keys.iter()
                .map(|k| map.entry(k.clone()).or_default().clone())
                .collect()
        };
        let futures = notifies
            .into_iter()
            .map(|n| {
                let mut f = Box::pin(n.notified_owned());
                // Enabled now: a fill between here and the first poll is not lost.
                f.as_mut().enable();
                f
            })
            .collect();
        Registration {
            waiters: self.clone(),
            keys: keys.to_vec(),
            futures,
        }
    }

    fn release(&self, keys: &[Bytes]) {
        let mut map = self.map.lock();
        for k in keys {
            // Only the map holds it: nobody else waits on this key.
            if map.get(k).is_some_and(|n| Arc::strong_count(n) == 1) {
                map.remove(k);
            }
        }
        drop(map);
        self.blocked.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A blocked client's registration; dropping it unregisters.
pub struct Registration {
    waiters: Arc<KeyWaiters>,
    keys: Vec<Bytes>,
    futures: Vec<Pin<Box<OwnedNotified>>>,
}

impl Registration {
    /// Resolves once one of the keys was filled after registration.
    pub async fn wait(&mut self) {
        if self.futures.is_empty() {
            return std::future::pending().await;
        }
        let futures = &mut self.futures;
        std::future::poll_fn(|cx| {
            for f in futures.iter_mut() {
                if f.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        })
        .await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The futures hold the notifies: drop them before counting references.
        self.futures.clear();
        self.waiters.release(&self.keys);
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
        assert!(w.map.lock().is_empty());
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
