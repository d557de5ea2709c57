//! A subscriber's bounded queue of encoded push frames, and the output-buffer limit that
//! disconnects a subscriber that doesn't read (`client-output-buffer-limit pubsub`).

use crate::command::ClientHandle;
use crate::config::parse_memory;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The `pubsub` class of `client-output-buffer-limit`: 0 disables a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Undelivered bytes that disconnect the subscriber at once.
    pub hard: usize,
    /// Undelivered bytes that disconnect it once exceeded for `soft_secs`.
    pub soft: usize,
    /// How long the soft limit may be exceeded.
    pub soft_secs: u64,
}

impl Default for Limits {
    /// Redis's default: `pubsub 32mb 8mb 60`.
    fn default() -> Limits {
        Limits {
            hard: 32 << 20,
            soft: 8 << 20,
            soft_secs: 60,
        }
    }
}

impl Limits {
    /// The `pubsub` class from a `client-output-buffer-limit` value
    /// (`<class> <hard> <soft> <seconds>` repeated); Redis's default when it is absent.
    pub fn parse(value: &str) -> Limits {
        let words: Vec<&str> = value.split_whitespace().collect();
        let mut limits = Limits::default();
        for group in words.chunks(4) {
            let [class, hard, soft, secs] = group else {
                break;
            };
            if !class.eq_ignore_ascii_case("pubsub") {
                continue;
            }
            if let (Some(h), Some(s), Ok(t)) =
                (parse_memory(hard), parse_memory(soft), secs.parse::<u64>())
            {
                limits = Limits {
                    hard: usize::try_from(h).unwrap_or(usize::MAX),
                    soft: usize::try_from(s).unwrap_or(usize::MAX),
                    soft_secs: t,
                };
            }
        }
        limits
    }
}

/// Frames waiting for the connection task to write them.
#[derive(Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// When the soft limit was first seen exceeded (reset once back under it).
    soft_since: Option<Instant>,
    /// Over a limit: the client is being disconnected; nothing more is queued.
    closed: bool,
}

/// One client's queue of push frames (confirmations and messages), filled by publishers and
/// drained by the connection task. Frames are encoded when queued, in the protocol the client
/// speaks then, like Redis's output buffer.
pub struct Outbox {
    /// The client's id.
    pub id: u64,
    handle: Arc<ClientHandle>,
    resp3: AtomicBool,
    queue: Mutex<Queue>,
    notify: Notify,
}

impl Outbox {
    /// An empty outbox for the client behind `handle`.
    pub fn new(handle: Arc<ClientHandle>, resp3: bool) -> Outbox {
        Outbox {
            id: handle.id,
            handle,
            resp3: AtomicBool::new(resp3),
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
        }
    }

    /// True if frames for this client are encoded as RESP3.
    pub fn resp3(&self) -> bool {
        self.resp3.load(Ordering::Relaxed)
    }

    /// Follows a protocol switch (HELLO, RESET).
    pub fn set_resp3(&self, on: bool) {
        self.resp3.store(on, Ordering::Relaxed);
    }

    /// Queues a frame the client itself caused (a subscription confirmation): never limited.
    pub fn push_own(&self, frame: Bytes) {
        let mut q = self.queue.lock();
        if q.closed {
            return;
        }
        q.bytes += frame.len();
        q.frames.push_back(frame);
        drop(q);
        self.notify.notify_one();
    }

    /// Queues a published message. Past the hard limit, or past the soft limit for too long,
    /// the queue is dropped and the client killed; returns false then (or if already closed).
    pub fn push(&self, frame: Bytes, limits: Limits, now: Instant) -> bool {
        let mut q = self.queue.lock();
        if q.closed {
            return false;
        }
        q.bytes += frame.len();
        q.frames.push_back(frame);
        let over_hard = limits.hard > 0 && q.bytes >= limits.hard;
        let mut over_soft = false;
        if limits.soft > 0 && q.bytes >= limits.soft {
            match q.soft_since {
                None => q.soft_since = Some(now),
                Some(t) => {
                    over_soft = now.duration_since(t) > Duration::from_secs(limits.soft_secs)
                }
            }
        } else {
            q.soft_since = None;
        }
        if over_hard || over_soft {
            let bytes = q.bytes;
            q.closed = true;
            q.frames = VecDeque::new();
            q.bytes = 0;
            drop(q);
            tracing::warn!(
                "Client id={} addr={} scheduled to be closed ASAP for overcoming of output buffer limits ({} bytes pending).",
                self.id,
                self.handle.addr,
                bytes
            );
            self.handle.kill();
            return false;
        }
        drop(q);
        self.notify.notify_one();
        true
    }

    /// Moves queued frames into `out` until it holds `max` bytes; anything left re-arms the
    /// notification so the connection comes back for it.
    pub fn drain_into(&self, out: &mut BytesMut, max: usize) {
        let mut q = self.queue.lock();
        while out.len() < max {
            let Some(f) = q.frames.pop_front() else {
                break;
            };
            q.bytes -= f.len();
            out.extend_from_slice(&f);
        }
        let more = !q.frames.is_empty();
        drop(q);
        if more {
            self.notify.notify_one();
        }
    }

    /// Bytes queued and not yet taken by the connection (CLIENT LIST omem).
    pub fn pending_bytes(&self) -> usize {
        self.queue.lock().bytes
    }

    /// Resolves when frames may be waiting.
    pub async fn ready(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> Outbox {
        let h = Arc::new(ClientHandle::new(
            7,
            "127.0.0.1:1".into(),
            "127.0.0.1:2".into(),
        ));
        Outbox::new(h, false)
    }

    #[test]
    fn parses_the_pubsub_class() {
        let d =
            Limits::parse("normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60");
        assert_eq!(d, Limits::default());
        let l = Limits::parse("pubsub 1mb 512kb 5");
        assert_eq!(
            l,
            Limits {
                hard: 1 << 20,
                soft: 512 << 10,
                soft_secs: 5
            }
        );
        assert_eq!(Limits::parse("normal 0 0 0"), Limits::default());
        assert_eq!(Limits::parse("pubsub x 0 0"), Limits::default());
    }

    #[test]
    fn drains_in_order_and_in_chunks() {
        let o = outbox();
        o.push_own(Bytes::from_static(b"aaaa"));
        assert!(o.push(
            Bytes::from_static(b"bbbb"),
            Limits::default(),
            Instant::now()
        ));
        assert_eq!(o.pending_bytes(), 8);
        let mut out = BytesMut::new();
        o.drain_into(&mut out, 3);
        assert_eq!(&out[..], b"aaaa");
        o.drain_into(&mut out, 100);
        assert_eq!(&out[..], b"aaaabbbb");
        assert_eq!(o.pending_bytes(), 0);
    }

    #[test]
    fn hard_limit_kills_and_drops_the_queue() {
        let o = outbox();
        let l = Limits {
            hard: 10,
            soft: 0,
            soft_secs: 0,
        };
        let now = Instant::now();
        assert!(o.push(Bytes::from_static(b"12345"), l, now));
        assert!(!o.handle.is_killed());
        assert!(!o.push(Bytes::from_static(b"67890"), l, now));
        assert!(o.handle.is_killed());
        assert_eq!(o.pending_bytes(), 0);
        assert!(!o.push(Bytes::from_static(b"x"), l, now));
        assert_eq!(o.pending_bytes(), 0);
    }

    #[test]
    fn soft_limit_needs_to_last() {
        let o = outbox();
        let l = Limits {
            hard: 0,
            soft: 4,
            soft_secs: 2,
        };
        let t0 = Instant::now();
        assert!(o.push(Bytes::from_static(b"12345"), l, t0));
        assert!(o.push(Bytes::from_static(b"1"), l, t0 + Duration::from_secs(1)));
        // Back under the limit: the clock restarts.
        o.drain_into(&mut BytesMut::new(), 100);
        assert!(o.push(Bytes::from_static(b"1"), l, t0 + Duration::from_secs(2)));
        assert!(o.push(Bytes::from_static(b"12345"), l, t0 + Duration::from_secs(3)));
        assert!(o.push(Bytes::from_static(b"1"), l, t0 + Duration::from_secs(5)));
        assert!(!o.handle.is_killed());
        assert!(!o.push(Bytes::from_static(b"1"), l, t0 + Duration::from_secs(6)));
        assert!(o.handle.is_killed());
    }
}
