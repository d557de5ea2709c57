//! Cluster-wide PUBLISH: a message published on one node reaches the subscribers of every
//! node, as in Redis Cluster (where the cluster bus carries it).
//!
//! Each node forwards what its clients publish to every other node's client port as
//! `PINN.PUBLISHLOCAL channel message`, which delivers there without forwarding again. One
//! connection and one bounded queue per peer: publishers never wait for a peer, and order is
//! kept per publishing node. Like pub/sub itself this is at most once: a peer that is down, or
//! so slow that its queue is full, misses messages (counted in [`Relay::dropped`]).

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The other nodes' client addresses (`host:port`), asked again every second.
pub type PeerList = Box<dyn Fn() -> Vec<String> + Send + Sync>;
/// The password to send with `AUTH` (`requirepass`), asked at every connect.
pub type Password = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Messages waiting for one peer; beyond this they are dropped.
const QUEUE: usize = 65_536;
/// Bytes written to a peer in one go at most.
const MAX_WRITE: usize = 1 << 20;
/// Connect and AUTH time limit, and the pause before reconnecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_millis(200);
/// How often the peer list is refreshed.
const REFRESH: Duration = Duration::from_secs(1);

/// Forwards published messages to the other nodes.
#[derive(Default)]
pub struct Relay {
    links: Mutex<HashMap<String, mpsc::Sender<Bytes>>>,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

impl Relay {
    /// Queues `channel`/`message` for every peer (never blocks).
    pub fn forward(&self, channel: &[u8], message: &[u8]) {
        let links = self.links.lock();
        if links.is_empty() {
            return;
        }
        let cmd = encode(channel, message);
        for tx in links.values() {
            match tx.try_send(cmd.clone()) {
                Ok(()) => self.forwarded.fetch_add(1, Ordering::Relaxed),
                Err(_) => self.dropped.fetch_add(1, Ordering::Relaxed),
            };
        }
    }

    /// Messages handed to a peer's queue so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    /// Messages a peer missed (its queue was full or it was unreachable).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Keeps one link per peer in `peers` (refreshed every second) until the runtime stops.
    pub fn start(self: &Arc<Self>, peers: PeerList, password: Password) {
        let relay = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH);
            loop {
                tick.tick().await;
                let Some(relay) = relay.upgrade() else { return };
                let want = peers();
                let mut links = relay.links.lock();
                // Dropping a sender ends that link's task.
                links.retain(|addr, _| want.contains(addr));
                for addr in want {
                    if links.contains_key(&addr) {
                        continue;
                    }
                    let (tx, rx) = mpsc::channel(QUEUE);
                    links.insert(addr.clone(), tx);
                    tokio::spawn(run_link(addr, rx, password.clone(), Arc::downgrade(&relay)));
                }
            }
        });
    }
}

/// `PINN.PUBLISHLOCAL channel message` in RESP.
fn encode(channel: &[u8], message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(48 + channel.len() + message.len());
    b.extend_from_slice(b"*3\r\n$17\r\nPINN.PUBLISHLOCAL\r\n");
    for part in [channel, message] {
        b.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        b.extend_from_slice(part);
        b.extend_from_slice(b"\r\n");
    }
    b.freeze()
}

/// Sends `rx`'s messages to `addr`, reconnecting as needed, until the relay drops the link.
async fn run_link(
    addr: String,
    mut rx: mpsc::Receiver<Bytes>,
    password: Password,
    relay: std::sync::Weak<Relay>,
) {
    loop {
        match connect(&addr, password().as_deref()).await {
            Ok(stream) => {
                let (rd, mut wr) = stream.into_split();
                // The peer's replies are read and thrown away, so its output never backs up.
                let reader = tokio::spawn(async move {
                    let mut rd = rd;
                    let mut sink = vec![0u8; 16 << 10];
                    while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
                });
                let closed = loop {
                    let Some(first) = rx.recv().await else {
                        break true;
                    };
                    let mut buf = BytesMut::from(&first[..]);
                    while buf.len() < MAX_WRITE {
                        match rx.try_recv() {
                            Ok(m) => buf.extend_from_slice(&m),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = wr.write_all(&buf).await {
                        tracing::debug!("pub/sub relay to {addr}: {e}");
                        break false;
                    }
                };
                reader.abort();
                if closed {
                    return;
                }
            }
            Err(e) => tracing::debug!("pub/sub relay: connecting to {addr}: {e}"),
        }
        tokio::time::sleep(RETRY).await;
        // What queued while the peer was unreachable is lost to it (pub/sub is at most once).
        let mut missed = 0;
        loop {
            match rx.try_recv() {
                Ok(_) => missed += 1,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        if let Some(r) = relay.upgrade() {
            r.dropped.fetch_add(missed, Ordering::Relaxed);
        }
    }
}

/// Connects to `addr` and authenticates with `password`, if any.
async fn connect(addr: &str, password: Option<&str>) -> std::io::Result<TcpStream> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out())??;
    stream.set_nodelay(true)?;
    let Some(pw) = password else {
        return Ok(stream);
    };
    let mut stream = BufReader::new(stream);
    let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{pw}\r\n", pw.len());
    stream.get_mut().write_all(auth.as_bytes()).await?;
    let mut line = String::new();
    tokio::time::timeout(CONNECT_TIMEOUT, stream.read_line(&mut line))
        .await
        .map_err(|_| timed_out())??;
    if !line.starts_with("+OK") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("AUTH refused: {}", line.trim_end()),
        ));
    }
    // Nothing else was sent, so nothing is left buffered.
    Ok(stream.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_command_is_valid_resp() {
        let cmd = encode(b"news", b"hello\r\nworld");
        let mut buf = BytesMut::from(&cmd[..]);
        let args = pinnacle_resp::RequestDecoder::new()
            .decode(&mut buf, true)
            .expect("valid")
            .expect("complete");
        assert!(buf.is_empty());
        assert_eq!(args, ["PINN.PUBLISHLOCAL", "news", "hello\r\nworld"]);
        assert_eq!(
            &cmd[..],
            b"*3\r\n$17\r\nPINN.PUBLISHLOCAL\r\n$4\r\nnews\r\n$12\r\nhello\r\nworld\r\n"
        );
    }
}
