//! Cluster-wide heat: every node counts only the commands it serves, so once a second each
//! node pulls the other shard leaders' last-second per-slot counts (`PINN.HEAT` on their
//! client port) and folds them into its own window. Every node then forecasts the same
//! cluster-wide field, and the leader of a hot shard is the one that moves its slots.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long a pull may take per peer (the tick thread waits for it).
const TIMEOUT: Duration = Duration::from_millis(300);
/// Remote counts older than this are not merged.
const FRESH: Duration = Duration::from_secs(3);
/// A peer's counts are current for the planner when they are at most this many seconds
/// behind this node's: peers fold at the same instant as this node, so the one before is
/// often the newest there is.
const MAX_LAG: u64 = 1;
/// Largest `PINN.HEAT` reply accepted (every slot active is ~200 KB).
const MAX_REPLY: usize = 4 << 20;

/// One node's counts for one second: `(second, [(slot, operations)])`.
pub type SlotCounts = (u64, Vec<(u16, u32)>);

/// `PINN.HEAT`'s payload: `"<second> <slot>:<ops> ..."` for every slot with traffic.
pub fn format(t: u64, slots: &[(u16, u32)]) -> String {
    let mut out = t.to_string();
    for (s, c) in slots {
        out.push(' ');
        out.push_str(&s.to_string());
        out.push(':');
        out.push_str(&c.to_string());
    }
    out
}

/// Parses a `PINN.HEAT` payload.
pub fn parse(text: &str) -> Option<SlotCounts> {
    let mut parts = text.split_ascii_whitespace();
    let t = parts.next()?.parse().ok()?;
    let slots = parts
        .map(|p| {
            let (s, c) = p.split_once(':')?;
            let s: u16 = s.parse().ok()?;
            ((s as usize) < pinnacle_pinn::SLOTS).then_some(())?;
            Some((s, c.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((t, slots))
}

struct Remote {
    received: Instant,
    t: u64,
    slots: Vec<(u16, u32)>,
    merged_t: u64,
}

/// Connections to the other leaders and their latest counts.
#[derive(Default)]
pub struct Exchange {
    conns: HashMap<String, BufReader<TcpStream>>,
    remote: HashMap<String, Remote>,
}

impl Exchange {
    /// Pulls the last second of every address in `peers` (failures are logged at debug and
    /// retried next second).
    pub fn pull_all(&mut self, peers: &[String], password: Option<&str>) {
        self.conns.retain(|a, _| peers.contains(a));
        self.remote.retain(|a, _| peers.contains(a));
        for addr in peers {
            match self.pull(addr, password) {
                Ok((t, slots)) => self.ingest(addr, t, slots),
                Err(e) => {
                    self.conns.remove(addr);
                    tracing::debug!("PINN: pulling heat from {addr}: {e}");
                }
            }
        }
    }

    /// Stores `addr`'s counts for second `t`.
    pub fn ingest(&mut self, addr: &str, t: u64, slots: Vec<(u16, u32)>) {
        let merged_t = self.remote.get(addr).map_or(0, |r| r.merged_t);
        self.remote.insert(
            addr.to_string(),
            Remote {
                received: Instant::now(),
                t,
                slots,
                merged_t,
            },
        );
    }

    /// Calls `f(slot, ops)` for every peer's latest fresh second (call once per tick).
    ///
    /// A peer's second is merged again when the peer has not folded a newer one yet: peers
    /// fold at the same instant as this node pulls, so the newest second is often not there
    /// yet, and skipping it left that peer's row empty, which made every leader see its own
    /// shard as the hot one. The previous second stands in for it.
    pub fn merge(&mut self, mut f: impl FnMut(u16, u32)) {
        for r in self.remote.values_mut() {
            if r.received.elapsed() < FRESH {
                r.merged_t = r.t;
                for &(s, c) in &r.slots {
                    f(s, c);
                }
            }
        }
    }

    /// True when `addr`'s latest counts were received lately and cover second `t` or the one
    /// before (what [`merge`](Self::merge) joins is then current enough to plan on).
    pub fn is_current(&self, addr: &str, t: u64) -> bool {
        self.remote
            .get(addr)
            .is_some_and(|r| r.received.elapsed() < FRESH && r.t + MAX_LAG >= t)
    }

    fn pull(&mut self, addr: &str, password: Option<&str>) -> Result<SlotCounts, String> {
        if !self.conns.contains_key(addr) {
            let sock: SocketAddr = addr
                .to_socket_addrs()
                .map_err(|e| e.to_string())?
                .next()
                .ok_or("no address")?;
            let s = TcpStream::connect_timeout(&sock, TIMEOUT).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            let mut conn = BufReader::new(s);
            if let Some(pw) = password.filter(|p| !p.is_empty()) {
                send(&mut conn, &["AUTH", pw])?;
                let line = read_line(&mut conn)?;
                if !line.starts_with('+') {
                    return Err(format!("AUTH: {line}"));
                }
            }
            self.conns.insert(addr.to_string(), conn);
        }
        let conn = self.conns.get_mut(addr).ok_or("no connection")?;
        send(conn, &["PINN.HEAT"])?;
        let head = read_line(conn)?;
        let len: usize = head
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .filter(|&n| n <= MAX_REPLY)
            .ok_or_else(|| format!("unexpected reply {head:?}"))?;
        let mut body = vec![0u8; len + 2];
        conn.read_exact(&mut body).map_err(|e| e.to_string())?;
        body.truncate(len);
        let text = String::from_utf8(body).map_err(|e| e.to_string())?;
        parse(&text).ok_or_else(|| "malformed PINN.HEAT payload".to_string())
    }
}

fn send(conn: &mut BufReader<TcpStream>, args: &[&str]) -> Result<(), String> {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.get_mut()
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())
}

fn read_line(conn: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut line = String::new();
    let n = conn
        .by_ref()
        .take(1024)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if n == 0 || !line.ends_with("\r\n") {
        return Err("connection closed".into());
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips() {
        let text = format(42, &[(0, 3), (16383, 7)]);
        assert_eq!(text, "42 0:3 16383:7");
        assert_eq!(parse(&text), Some((42, vec![(0, 3), (16383, 7)])));
        assert_eq!(parse("7"), Some((7, vec![])));
        assert_eq!(parse("7 16384:1"), None);
        assert_eq!(parse("x"), None);
    }

    #[test]
    fn latest_remote_second_joins_every_tick() {
        let mut ex = Exchange::default();
        ex.ingest("a:1", 10, vec![(5, 2)]);
        let mut got = Vec::new();
        ex.merge(|s, c| got.push((s, c)));
        // The peer has not folded second 11 yet: second 10 stands in for it.
        ex.merge(|s, c| got.push((s, c)));
        assert_eq!(got, vec![(5, 2), (5, 2)]);
        ex.ingest("a:1", 11, vec![(5, 4)]);
        ex.merge(|s, c| got.push((s, c)));
        assert_eq!(got, vec![(5, 2), (5, 2), (5, 4)]);
    }

    #[test]
    fn only_recent_seconds_are_current() {
        let mut ex = Exchange::default();
        assert!(!ex.is_current("a:1", 10), "never heard from");
        ex.ingest("a:1", 9, vec![(5, 2)]);
        assert!(ex.is_current("a:1", 9) && ex.is_current("a:1", 10));
        assert!(!ex.is_current("a:1", 11), "two seconds behind");
        assert!(!ex.is_current("b:1", 9));
    }

    #[test]
    fn pulls_over_resp() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let peer = std::thread::spawn(move || {
            let (s, _) = listener.accept().expect("accept");
            let mut r = BufReader::new(s);
            for _ in 0..2 {
                let mut req = [0u8; 19];
                r.read_exact(&mut req).expect("request");
                assert_eq!(&req, b"*1\r\n$9\r\nPINN.HEAT\r\n");
                let body = "9 1:2 300:4";
                let reply = format!("${}\r\n{body}\r\n", body.len());
                r.get_mut().write_all(reply.as_bytes()).expect("reply");
            }
        });
        let mut ex = Exchange::default();
        ex.pull_all(std::slice::from_ref(&addr), None);
        let mut got = Vec::new();
        ex.merge(|s, c| got.push((s, c)));
        assert_eq!(got, vec![(1, 2), (300, 4)]);
        // Same second again on the cached connection: it stands in for the next one.
        ex.pull_all(std::slice::from_ref(&addr), None);
        ex.merge(|s, c| got.push((s, c)));
        assert_eq!(got, vec![(1, 2), (300, 4), (1, 2), (300, 4)]);
        peer.join().expect("peer");
    }
}
