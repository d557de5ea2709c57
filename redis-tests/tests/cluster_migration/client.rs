//! A small cluster-aware blocking client for the migration tests: it routes by hash slot,
//! follows `MOVED` (learning the new owner) and `ASK` (one `ASKING` + the command on the named
//! node), and retries `TRYAGAIN` / `CLUSTERDOWN` after a short sleep. A reply that never comes
//! (connection lost or timed out after sending) is indeterminate: the write may have applied.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis_tests::cluster::Outcome;
use redis_tests::frame::{self, Value};
use redis_tests::RawConn;

/// CRC16-XMODEM of the key (or its `{hash tag}`) mod 16384, as Redis Cluster computes it.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// For each slot in `slots`, a hash tag (text between braces) whose slot it is.
pub fn tags_for(slots: std::ops::RangeInclusive<u16>) -> HashMap<u16, String> {
    let want = slots.clone().count();
    let mut out = HashMap::new();
    let mut n = 0u64;
    while out.len() < want {
        let tag = format!("t{n}");
        let s = key_slot(tag.as_bytes());
        if slots.contains(&s) {
            out.entry(s).or_insert(tag);
        }
        n += 1;
    }
    out
}

/// Follows redirects like a Redis Cluster client; see the module docs.
pub struct ClusterClient {
    addrs: Vec<SocketAddr>,
    conns: HashMap<SocketAddr, RawConn>,
    owner: HashMap<u16, SocketAddr>,
    next: usize,
    reply_timeout: Duration,
    retry_for: Duration,
    /// MOVED, ASK, TRYAGAIN and CLUSTERDOWN replies seen (for the report).
    pub redirects: HashMap<&'static str, u64>,
    /// The last ASK that pointed back at the node that had just been sent ASKING.
    pub last_loop: Option<String>,
}

impl ClusterClient {
    /// A client for the cluster whose nodes listen on `addrs`.
    pub fn new(addrs: Vec<SocketAddr>) -> ClusterClient {
        ClusterClient {
            addrs,
            conns: HashMap::new(),
            owner: HashMap::new(),
            next: 0,
            reply_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(20),
            redirects: HashMap::new(),
            last_loop: None,
        }
    }

    fn conn(&mut self, addr: SocketAddr) -> Result<&mut RawConn, String> {
        match self.conns.entry(addr) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                let c = RawConn::connect_addr(addr, Duration::from_millis(500))
                    .map_err(|err| format!("connect {addr}: {err}"))?;
                Ok(e.insert(c))
            }
        }
    }

    fn count(&mut self, what: &'static str) {
        *self.redirects.entry(what).or_default() += 1;
    }

    /// Sends `args` (whose first key is `args[1]`) to the slot's node and classifies the result.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Outcome {
        let slot = key_slot(args[1].as_ref());
        let args_text: Vec<String> = args
            .iter()
            .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
            .collect();
        let args_text = args_text.join(" ");
        let deadline = Instant::now() + self.retry_for;
        let mut ask: Option<SocketAddr> = None;
        let mut last = String::from("no attempt");
        loop {
            if Instant::now() > deadline {
                return Outcome::Unavailable(last);
            }
            let addr = match ask {
                Some(a) => a,
                None => match self.owner.get(&slot) {
                    Some(a) => *a,
                    None => {
                        self.next += 1;
                        self.addrs[self.next % self.addrs.len()]
                    }
                },
            };
            let asking = ask.take().is_some();
            let timeout = self.reply_timeout;
            let sent = match self.conn(addr) {
                Ok(c) => {
                    let mut bytes = Vec::new();
                    if asking {
                        bytes.extend(frame::encode_command(&["ASKING"]));
                    }
                    bytes.extend(frame::encode_command(args));
                    c.send(&bytes).map_err(|e| e.to_string())
                }
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                // Nothing complete reached a node that is gone: a torn frame is never run.
                last = format!("send to {addr}: {e}");
                self.conns.remove(&addr);
                self.owner.remove(&slot);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let reply = self.read(addr, asking, timeout);
            let value = match reply {
                Ok(v) => v,
                Err(e) => {
                    self.conns.remove(&addr);
                    self.owner.remove(&slot);
                    return Outcome::Indeterminate(format!("{addr}: {e}"));
                }
            };
            if let Value::Error(msg) = &value {
                let text = String::from_utf8_lossy(msg).into_owned();
                last = format!("{addr}: {text}");
                if let Some(rest) = text.strip_prefix("MOVED ") {
                    self.count("MOVED");
                    match rest.split_whitespace().nth(1).and_then(|a| a.parse().ok()) {
                        Some(to) => {
                            if to == addr {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            self.owner.insert(slot, to);
                        }
                        None => return Outcome::Reply(value),
                    }
                    continue;
                }
                if let Some(rest) = text.strip_prefix("ASK ") {
                    self.count("ASK");
                    match rest.split_whitespace().nth(1).and_then(|a| a.parse().ok()) {
                        Some(to) => {
                            if asking && to == addr {
                                // ASKING + the command answered ASK to this very node.
                                self.count("ASK after ASKING, to itself");
                                self.last_loop = Some(format!("{addr} {args_text}: {text}"));
                            }
                            ask = Some(to);
                        }
                        None => return Outcome::Reply(value),
                    }
                    continue;
                }
                if text.starts_with("TRYAGAIN") || text.starts_with("CLUSTERDOWN") {
                    self.count(if text.starts_with("TRYAGAIN") {
                        "TRYAGAIN"
                    } else {
                        "CLUSTERDOWN"
                    });
                    self.owner.remove(&slot);
                    std::thread::sleep(Duration::from_millis(25));
                    continue;
                }
            }
            return Outcome::Reply(value);
        }
    }

    /// Reads the reply (after `+OK` to ASKING when `asking`).
    fn read(&mut self, addr: SocketAddr, asking: bool, timeout: Duration) -> Result<Value, String> {
        let c = self.conn(addr)?;
        if asking {
            let raw = c.read_reply_timeout(timeout).map_err(|e| e.to_string())?;
            if raw != b"+OK\r\n" {
                return Err(format!("ASKING answered {}", frame::show(&raw)));
            }
        }
        let raw = c.read_reply_timeout(timeout).map_err(|e| e.to_string())?;
        frame::parse_one(&raw).map_err(|e| e.to_string())
    }
}

#[test]
fn slot_vectors() {
    // redis-wire.md §1 test vectors.
    assert_eq!(key_slot(b"123456789"), 12739);
    assert_eq!(key_slot(b"foo"), 12182);
    assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    // An empty tag hashes the whole key.
    assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
}
