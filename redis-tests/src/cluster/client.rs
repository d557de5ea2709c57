//! A blocking client that finds the Raft leader itself: follows `-MOVED`, waits out
//! `-CLUSTERDOWN`, and reports a lost connection after sending as an indeterminate outcome.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::frame::{self, Value};
use crate::raw::RawConn;
use crate::Error;

/// What became of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The leader (or a node that answered without redirecting) replied; an error reply here means
    /// the command was not applied.
    Reply(Value),
    /// The command was sent but no reply came (connection closed or reply timeout): it may or
    /// may not have been applied.
    Indeterminate(String),
    /// No node accepted the command before the deadline (only redirects, CLUSTERDOWN or refused
    /// connections): it was definitely not applied.
    Unavailable(String),
}

impl Outcome {
    /// The reply, if there was one.
    pub fn reply(&self) -> Option<&Value> {
        match self {
            Outcome::Reply(v) => Some(v),
            _ => None,
        }
    }

    /// True for a `+OK` reply.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Reply(Value::Simple(s)) if s == b"OK")
    }
}

/// Talks to whichever node leads; see the module docs.
pub struct LeaderClient {
    addrs: Vec<SocketAddr>,
    conn: Option<(SocketAddr, RawConn)>,
    next: usize,
    reply_timeout: Duration,
    retry_for: Duration,
    redirects: u64,
}

impl LeaderClient {
    /// A client for the cluster whose nodes listen on `addrs`.
    pub fn new(addrs: Vec<SocketAddr>) -> LeaderClient {
        LeaderClient {
            addrs,
            conn: None,
            next: 0,
            reply_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(10),
            redirects: 0,
        }
    }

    /// How long to wait for a reply once a command was sent (then: indeterminate).
    pub fn reply_timeout(mut self, t: Duration) -> LeaderClient {
        self.reply_timeout = t;
        self
    }

    /// How long to keep looking for a leader before giving up (then: unavailable).
    pub fn retry_for(mut self, t: Duration) -> LeaderClient {
        self.retry_for = t;
        self
    }

    /// The node the client is connected to, if any.
    pub fn connected_to(&self) -> Option<SocketAddr> {
        self.conn.as_ref().map(|(a, _)| *a)
    }

    /// MOVED/CLUSTERDOWN replies followed so far.
    pub fn redirects(&self) -> u64 {
        self.redirects
    }

    /// Drops the current connection (the next call reconnects).
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    fn connect(&mut self, preferred: Option<SocketAddr>) -> Result<(), Error> {
        let addr = match preferred {
            Some(a) => a,
            None => {
                let a = self.addrs[self.next % self.addrs.len()];
                self.next += 1;
                a
            }
        };
        let c = RawConn::connect_addr(addr, Duration::from_millis(500))?;
        self.conn = Some((addr, c));
        Ok(())
    }

    /// Sends one command to the leader and classifies the outcome.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Outcome {
        let deadline = Instant::now() + self.retry_for;
        let mut preferred = None;
        let mut last = String::from("no attempt");
        loop {
            if Instant::now() > deadline {
                return Outcome::Unavailable(last);
            }
            if self.conn.is_none() {
                if let Err(e) = self.connect(preferred.take()) {
                    last = format!("connect: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
            let Some((addr, conn)) = self.conn.as_mut() else {
                continue;
            };
            let addr = *addr;
            if let Err(e) = conn.send_command(args) {
                // Nothing (or a torn frame) reached a node that has closed on us: a torn frame is
                // never executed, so this is not applied.
                last = format!("send to {addr}: {e}");
                self.conn = None;
                continue;
            }
            let raw = match conn.read_reply_timeout(self.reply_timeout) {
                Ok(r) => r,
                Err(e) => {
                    self.conn = None;
                    return Outcome::Indeterminate(format!("{addr}: {e}"));
                }
            };
            let value = match frame::parse_one(&raw) {
                Ok(v) => v,
                Err(e) => {
                    self.conn = None;
                    return Outcome::Indeterminate(format!("{addr}: bad reply: {e}"));
                }
            };
            if let Value::Error(msg) = &value {
                let text = String::from_utf8_lossy(msg).into_owned();
                if let Some(rest) = text.strip_prefix("MOVED ") {
                    self.redirects += 1;
                    last = format!("{addr}: {text}");
                    preferred = rest.split_whitespace().nth(1).and_then(|a| a.parse().ok());
                    self.conn = None;
                    if preferred == Some(addr) {
                        // Redirected to itself (stale leader info): give the cluster a moment.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    continue;
                }
                if text.starts_with("CLUSTERDOWN") || text.starts_with("TRYAGAIN") {
                    self.redirects += 1;
                    last = format!("{addr}: {text}");
                    self.conn = None;
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
            return Outcome::Reply(value);
        }
    }
}
