//! Cluster-wide PUBLISH: a message published on one node reaches the subscribers of every
//! node, as in Redis Cluster (where the cluster bus carries it).
//!
//! Each node forwards what its clients publish to every other node's client port as
//! `PINN.PUBLISHLOCAL channel message`, which delivers there without forwarding again. With
//! `tls-cluster yes` (see [`set_tls_client`]) it dials peers' TLS ports with the node's bus
//! certificate, as Redis's TLS bus carries PUBLISH encrypted; otherwise their plain ports. One
//! connection and one bounded queue per peer: publishers never wait for a peer, and order is
//! kept per publishing node. Like pub/sub itself this is at most once: a peer that is down, or
//! so slow that its queue is full, misses messages (counted in [`Relay::dropped`]).

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::rustls;

/// Another node's client ports (0: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its client host (an IP; IPv6 without brackets).
    pub host: String,
    /// Plain client port.
    pub port: u16,
    /// TLS client port.
    pub tls_port: u16,
}

/// Where a link dials: `host:port`, over TLS or not.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Target {
    addr: String,
    host: String,
    tls: bool,
}

impl Peer {
    /// The TLS port when this node relays over TLS and the peer has one, else the plain port.
    fn target(&self, tls: bool) -> Option<Target> {
        let (port, tls) = match (tls && self.tls_port != 0, self.port) {
            (true, _) => (self.tls_port, true),
            (false, 0) => return None,
            (false, p) => (p, false),
        };
        let addr = if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        };
        Some(Target {
            addr,
            host: self.host.clone(),
            tls,
        })
    }
}

/// The other nodes, asked again every second.
pub type PeerList = Box<dyn Fn() -> Vec<Peer> + Send + Sync>;
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

/// The client side of the bus's mutual TLS, once set: links then dial TLS ports.
static TLS_CLIENT: std::sync::OnceLock<tokio_rustls::TlsConnector> = std::sync::OnceLock::new();

/// Relays over TLS with `config` (the bus's client configuration under `tls-cluster yes`: it
/// presents this node's certificate, which peers' client ports accept as a CA-signed client).
pub fn set_tls_client(config: Arc<rustls::ClientConfig>) {
    let _ = TLS_CLIENT.set(tokio_rustls::TlsConnector::from(config));
}

/// A link's byte stream: plain TCP or TLS over it.
pub trait LinkIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> LinkIo for T {}

/// Forwards published messages to the other nodes.
#[derive(Default)]
pub struct Relay {
    links: Mutex<HashMap<Target, mpsc::Sender<Bytes>>>,
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
                let tls = TLS_CLIENT.get().is_some();
                let want: Vec<Target> = peers().iter().filter_map(|p| p.target(tls)).collect();
                let mut links = relay.links.lock();
                // Dropping a sender ends that link's task.
                links.retain(|t, _| want.contains(t));
                for t in want {
                    if links.contains_key(&t) {
                        continue;
                    }
                    let (tx, rx) = mpsc::channel(QUEUE);
                    links.insert(t.clone(), tx);
                    tokio::spawn(run_link(t, rx, password.clone(), Arc::downgrade(&relay)));
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
    to: Target,
    mut rx: mpsc::Receiver<Bytes>,
    password: Password,
    relay: std::sync::Weak<Relay>,
) {
    let addr = &to.addr;
    loop {
        match connect(&to, password().as_deref()).await {
            Ok(stream) => {
                let (rd, mut wr) = tokio::io::split(stream);
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

/// Connects to `to` (with the TLS handshake if it is a TLS port) and authenticates with
/// `password`, if any.
async fn connect(to: &Target, password: Option<&str>) -> std::io::Result<Box<dyn LinkIo>> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&to.addr))
        .await
        .map_err(|_| timed_out())??;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn LinkIo> = match (to.tls, TLS_CLIENT.get()) {
        (true, Some(connector)) => {
            let name = rustls_pki_types::ServerName::try_from(to.host.clone())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
                .await
                .map_err(|_| timed_out())??;
            Box::new(tls)
        }
        _ => Box::new(tcp),
    };
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
    fn links_dial_tls_ports_only_when_relaying_over_tls() {
        let p = |port, tls_port| Peer {
            host: "127.0.0.2".into(),
            port,
            tls_port,
        };
        let t = |addr: &str, tls| {
            Some(Target {
                addr: addr.into(),
                host: "127.0.0.2".into(),
                tls,
            })
        };
        assert_eq!(p(7001, 7101).target(false), t("127.0.0.2:7001", false));
        assert_eq!(p(7001, 7101).target(true), t("127.0.0.2:7101", true));
        assert_eq!(p(7001, 0).target(true), t("127.0.0.2:7001", false));
        assert_eq!(p(0, 7101).target(false), None);
        let v6 = Peer {
            host: "::1".into(),
            port: 7001,
            tls_port: 0,
        };
        assert_eq!(v6.target(false).map(|t| t.addr), Some("[::1]:7001".into()));
    }

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
