//! The cluster bus: tokio TCP between nodes, one connection per peer pair carrying every group.
//!
//! Both ends of a connection may send requests on it (frames carry a request id and a group id),
//! so a connection dialed by either node serves both directions. A node dials a peer only when
//! it has no live connection to it. Outgoing sockets bind to the node's own IP so tests can
//! partition 127.0.0.x addresses. A failed dial puts the peer in exponential backoff
//! (50 ms doubling to 1 s) during which calls fail fast as unreachable.
//!
//! With [`BusSecurity`] other than `Open`, every connection is authenticated (shared-secret
//! handshake or mutual TLS, see [`auth`]) before its first frame is read.

pub mod auth;
pub mod frame;
pub mod probe;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use self::auth::{BusSecurity, BusTls, Secret};
use self::frame::{read_frame, Frame, RpcRequest, RpcResponse};
use crate::types::{GroupId, NodeId};

/// The group id under which an application registers the [`GroupService`] that answers
/// [`frame::RpcRequest::App`] (no Raft group has it).
pub const APP_GROUP: GroupId = u64::MAX;

/// Why a call to a peer failed.
#[derive(Debug, Error)]
pub enum CallError {
    /// Could not connect (or the peer is in backoff after failing to).
    #[error("node {0} unreachable: {1}")]
    Unreachable(NodeId, String),
    /// No answer in time.
    #[error("call to node {0} timed out after {1:?}")]
    Timeout(NodeId, Duration),
    /// The connection broke while waiting.
    #[error("connection to node {0} closed")]
    Closed(NodeId),
}

/// A boxed future answering one request.
pub type HandlerFuture = Pin<Box<dyn Future<Output = RpcResponse> + Send>>;

/// Serves incoming RPCs of one group.
pub trait GroupService: Send + Sync + 'static {
    /// Handles `req` from node `from`. Called on the connection's reader in arrival order; the
    /// returned future runs on its own task, so the synchronous part must be short.
    fn handle(&self, from: NodeId, req: RpcRequest) -> HandlerFuture;
}

/// A request on the wire whose answer has not been collected yet.
pub struct PendingCall {
    peer: NodeId,
    id: u64,
    conn: Arc<Conn>,
    rx: oneshot::Receiver<RpcResponse>,
    timeout: Duration,
}

impl PendingCall {
    /// Waits for the answer, up to the call's timeout from now.
    pub async fn wait(self) -> Result<RpcResponse, CallError> {
        let deadline = Instant::now() + self.timeout;
        self.wait_until(deadline).await
    }

    async fn wait_until(self, deadline: Instant) -> Result<RpcResponse, CallError> {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(CallError::Closed(self.peer)),
            Err(_) => {
                self.conn.pending.lock().remove(&self.id);
                Err(CallError::Timeout(self.peer, self.timeout))
            }
        }
    }
}

/// Initial and maximum reconnect backoff.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

struct Conn {
    peer: NodeId,
    /// Which end opened the connection; both ends prefer the one the lower id dialed.
    dialer: NodeId,
    out: mpsc::UnboundedSender<Vec<u8>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<RpcResponse>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Conn {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Dropping the senders wakes every waiter with an error.
        self.pending.lock().clear();
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

#[derive(Default)]
struct DialState {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

struct Inner {
    id: NodeId,
    bind_ip: IpAddr,
    conns: Mutex<HashMap<NodeId, Arc<Conn>>>,
    /// Connections that lost the tie-break to another one for the same peer. They stay open
    /// (in-flight requests and replies still use them) but carry no new calls.
    spares: Mutex<Vec<Arc<Conn>>>,
    dial: Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<DialState>>>>,
    groups: parking_lot::RwLock<HashMap<GroupId, Arc<dyn GroupService>>>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
    stopped: AtomicBool,
    dials: AtomicU64,
    security: BusSecurity,
    /// Connections refused by authentication (no secret, bad certificate).
    refused: AtomicU64,
    /// Where every bus task runs and every bus socket is registered (see [`Transport::bind_on`]).
    rt: Handle,
}

/// A byte stream a connection runs on (plain TCP or TLS over it).
trait BusIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> BusIo for T {}
type BoxedIo = Box<dyn BusIo>;

/// One node's end of the cluster bus.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
}

impl Transport {
    /// Listens on `listen` (its IP is also the source address of outgoing connections),
    /// accepting any peer that can reach it.
    pub async fn bind(id: NodeId, listen: SocketAddr) -> io::Result<Transport> {
        Transport::bind_secure(id, listen, BusSecurity::Open).await
    }

    /// Like [`Transport::bind`], authenticating every connection with `security`.
    pub async fn bind_secure(
        id: NodeId,
        listen: SocketAddr,
        security: BusSecurity,
    ) -> io::Result<Transport> {
        Transport::bind_on(id, listen, security, Handle::current())
    }

    /// Like [`Transport::bind_secure`], with every socket and task of the bus on `rt`: the
    /// node's Raft runtime, so that heartbeats and votes are not queued behind client work on
    /// the caller's runtime.
    pub fn bind_on(
        id: NodeId,
        listen: SocketAddr,
        security: BusSecurity,
        rt: Handle,
    ) -> io::Result<Transport> {
        // The listener registers with the I/O driver of the runtime entered here.
        let _entered = rt.enter();
        let sock = if listen.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // A restarted node must get its port back while old connections sit in TIME_WAIT.
        sock.set_reuseaddr(true)?;
        sock.bind(listen)?;
        let listener = sock.listen(1024)?;
        let local_addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            id,
            bind_ip: listen.ip(),
            conns: Mutex::new(HashMap::new()),
            spares: Mutex::new(Vec::new()),
            dial: Mutex::new(HashMap::new()),
            groups: parking_lot::RwLock::new(HashMap::new()),
            accept_task: Mutex::new(None),
            stopped: AtomicBool::new(false),
            dials: AtomicU64::new(0),
            security,
            refused: AtomicU64::new(0),
            rt: rt.clone(),
        });
        let t = Transport {
            inner: inner.clone(),
            local_addr,
        };
        let acc = rt.spawn(accept_loop(Arc::downgrade(&inner), listener));
        *inner.accept_task.lock() = Some(acc);
        Ok(t)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The address peers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The runtime the bus's tasks run on.
    pub fn runtime(&self) -> &Handle {
        &self.inner.rt
    }

    /// How many outgoing connections this node has opened (successful handshakes).
    pub fn dial_count(&self) -> u64 {
        self.inner.dials.load(Ordering::Relaxed)
    }

    /// How many incoming connections failed authentication.
    pub fn refused_count(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Routes incoming requests for `group` to `svc`.
    pub fn register(&self, group: GroupId, svc: Arc<dyn GroupService>) {
        self.inner.groups.write().insert(group, svc);
    }

    /// Stops routing requests for `group`.
    pub fn unregister(&self, group: GroupId) {
        self.inner.groups.write().remove(&group);
    }

    /// Closes the listener and every connection; later calls fail.
    /// Returns once the listening socket is closed, so the port can be bound again at once.
    pub async fn shutdown(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        let accept = self.inner.accept_task.lock().take();
        if let Some(t) = accept {
            t.abort();
            // The listener is dropped when the cancelled task finishes.
            let _ = t.await;
        }
        let mut conns: Vec<_> = self.inner.conns.lock().drain().map(|(_, c)| c).collect();
        conns.append(&mut self.inner.spares.lock());
        for c in conns {
            c.close();
        }
        self.inner.groups.write().clear();
    }

    /// Sends `req` for `group` to node `peer` at `addr` and waits up to `timeout` for the answer.
    /// `addr` is a bus address or Redis's `ip:port@cport` (dialed at `ip:cport`).
    pub async fn call(
        &self,
        peer: NodeId,
        addr: &str,
        group: GroupId,
        req: RpcRequest,
        timeout: Duration,
    ) -> Result<RpcResponse, CallError> {
        let deadline = Instant::now() + timeout;
        let pending = self.start_call(peer, addr, group, req, timeout).await?;
        pending.wait_until(deadline).await
    }

    /// Sends `req` without waiting for the answer: requests sent one after another on the
    /// same peer leave in that order (pipelining); [`PendingCall::wait`] collects the answer.
    pub async fn start_call(
        &self,
        peer: NodeId,
        addr: &str,
        group: GroupId,
        req: RpcRequest,
        timeout: Duration,
    ) -> Result<PendingCall, CallError> {
        let conn = self.connection(peer, addr, timeout).await?;
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = Frame::Request {
            id,
            group,
            sent_ms: crate::clock::own_wall_ms(),
            body: req,
        }
        .encode()
        .map_err(|e| CallError::Unreachable(peer, e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().insert(id, tx);
        if conn.closed.load(Ordering::SeqCst) || conn.out.send(bytes).is_err() {
            conn.pending.lock().remove(&id);
            return Err(CallError::Closed(peer));
        }
        Ok(PendingCall {
            peer,
            id,
            conn,
            rx,
            timeout,
        })
    }

    /// A live connection to `peer`, dialing if there is none (one dial at a time per peer).
    async fn connection(
        &self,
        peer: NodeId,
        addr: &str,
        timeout: Duration,
    ) -> Result<Arc<Conn>, CallError> {
        if let Some(c) = self.live(peer) {
            return Ok(c);
        }
        if self.inner.stopped.load(Ordering::SeqCst) {
            return Err(CallError::Unreachable(peer, "transport stopped".into()));
        }
        let state = self.inner.dial.lock().entry(peer).or_default().clone();
        let mut st = state.lock().await;
        // Someone else may have connected (or been accepted) while we waited.
        if let Some(c) = self.live(peer) {
            return Ok(c);
        }
        if let Some(at) = st.retry_at {
            if Instant::now() < at {
                return Err(CallError::Unreachable(
                    peer,
                    format!("backing off: {}", st.last_error),
                ));
            }
        }
        // Dialed on the bus runtime, so the socket belongs to its I/O driver whoever calls.
        let mut dial = {
            let (me, addr) = (self.clone(), addr.to_string());
            self.inner
                .rt
                .spawn(async move { me.dial(peer, &addr).await })
        };
        let res = tokio::time::timeout(timeout.min(HELLO_TIMEOUT), &mut dial).await;
        let err = match res {
            Ok(Ok(Ok(c))) => {
                *st = DialState::default();
                return Ok(c);
            }
            Ok(Ok(Err(e))) => e.to_string(),
            Ok(Err(e)) => format!("dial task failed: {e}"),
            Err(_) => {
                dial.abort();
                "connect timed out".to_string()
            }
        };
        st.failures += 1;
        let backoff = BACKOFF_MIN
            .saturating_mul(1 << st.failures.min(8))
            .min(BACKOFF_MAX);
        st.retry_at = Some(Instant::now() + backoff);
        st.last_error = err.clone();
        Err(CallError::Unreachable(peer, err))
    }

    fn live(&self, peer: NodeId) -> Option<Arc<Conn>> {
        let conns = self.inner.conns.lock();
        conns
            .get(&peer)
            .filter(|c| !c.closed.load(Ordering::SeqCst))
            .cloned()
    }

    /// Connects to the bus address `addr` and authenticates (secret or TLS).
    async fn open(&self, addr: &str) -> io::Result<BoxedIo> {
        let target: SocketAddr = tokio::net::lookup_host(addr)
            .await?
            .find(|a| a.is_ipv4() == self.inner.bind_ip.is_ipv4())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no address for {addr}"))
            })?;
        let sock = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        sock.bind(SocketAddr::new(self.inner.bind_ip, 0))?;
        let tcp = sock.connect(target).await?;
        tcp.set_nodelay(true)?;
        Ok(match &self.inner.security {
            BusSecurity::Open => Box::new(tcp),
            BusSecurity::Secret(secret) => {
                let mut tcp = tcp;
                auth::dial_handshake(&mut tcp, secret).await?;
                Box::new(tcp)
            }
            BusSecurity::Tls(tls) => {
                let name =
                    tokio_rustls::rustls::pki_types::ServerName::IpAddress(target.ip().into());
                let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
                Box::new(connector.connect(name, tcp).await?)
            }
        })
    }

    async fn dial(&self, peer: NodeId, addr: &str) -> io::Result<Arc<Conn>> {
        // `ip:port@cport` (Redis form) is dialed at `ip:cport`; a bare address as-is.
        let bus = crate::addr::bus_addr(addr);
        let addr = bus.as_str();
        let mut stream = self.open(addr).await?;
        stream
            .write_all(
                &Frame::Hello {
                    from: self.inner.id,
                    to: peer,
                }
                .encode()?,
            )
            .await?;
        match read_frame(&mut stream).await? {
            Some(Frame::HelloAck { id }) if id == peer => {}
            Some(Frame::HelloAck { id }) => {
                return Err(io::Error::other(format!(
                    "{addr} is node {id}, expected node {peer}"
                )));
            }
            other => {
                return Err(io::Error::other(format!(
                    "bad handshake from {addr}: {other:?}"
                )))
            }
        }
        self.inner.dials.fetch_add(1, Ordering::Relaxed);
        let mine = start_conn(&self.inner, peer, self.inner.id, stream);
        // If the peer's own connection won the tie-break, call through that one.
        Ok(self.live(peer).unwrap_or(mine))
    }
}

async fn accept_loop(inner: std::sync::Weak<Inner>, listener: TcpListener) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("cluster bus accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        inner.rt.clone().spawn(async move {
            if let Err(e) = accept_one(inner, stream).await {
                tracing::debug!("cluster bus: rejected connection from {from}: {e}");
            }
        });
    }
}

/// Authenticates a new incoming connection; nothing is decoded before this succeeds.
async fn authenticate(inner: &Inner, mut tcp: TcpStream) -> io::Result<BoxedIo> {
    Ok(match &inner.security {
        BusSecurity::Open => Box::new(tcp),
        BusSecurity::Secret(secret) => {
            auth::accept_handshake(&mut tcp, secret).await?;
            Box::new(tcp)
        }
        BusSecurity::Tls(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
            Box::new(acceptor.accept(tcp).await?)
        }
    })
}

async fn accept_one(inner: Arc<Inner>, tcp: TcpStream) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    let from = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut stream = match tokio::time::timeout(HELLO_TIMEOUT, authenticate(&inner, tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            inner.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("cluster bus: refused an unauthenticated connection from {from}: {e}");
            return Err(e);
        }
        Err(_) => {
            inner.refused.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no authentication"));
        }
    };
    let hello = tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no hello"))??;
    let from = match hello {
        Some(Frame::Hello { from, to }) if to == inner.id => from,
        Some(Frame::Hello { to, .. }) => {
            // Tell the dialer who answered so its error names the mix-up, then hang up.
            stream
                .write_all(&Frame::HelloAck { id: inner.id }.encode()?)
                .await?;
            return Err(io::Error::other(format!(
                "hello for node {to}, this is node {}",
                inner.id
            )));
        }
        other => return Err(io::Error::other(format!("expected hello, got {other:?}"))),
    };
    stream
        .write_all(&Frame::HelloAck { id: inner.id }.encode()?)
        .await?;
    if inner.stopped.load(Ordering::SeqCst) {
        return Ok(());
    }
    start_conn(&inner, from, from, stream);
    Ok(())
}

/// Registers a handshaken connection and starts its reader and writer tasks.
fn start_conn(inner: &Arc<Inner>, peer: NodeId, dialer: NodeId, stream: BoxedIo) -> Arc<Conn> {
    let (rd, wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let conn = Arc::new(Conn {
        peer,
        dialer,
        out: tx,
        pending: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        closed: AtomicBool::new(false),
        tasks: Mutex::new(Vec::new()),
    });
    let writer = {
        let conn = Arc::downgrade(&conn);
        inner.rt.spawn(async move {
            let mut w = BufWriter::with_capacity(256 << 10, wr);
            while let Some(first) = rx.recv().await {
                if w.write_all(&first).await.is_err() {
                    break;
                }
                // Coalesce whatever else is queued into the same flush.
                while let Ok(more) = rx.try_recv() {
                    if w.write_all(&more).await.is_err() {
                        break;
                    }
                }
                if w.flush().await.is_err() {
                    break;
                }
            }
            if let Some(c) = conn.upgrade() {
                c.close();
            }
        })
    };
    let reader = {
        let conn = Arc::downgrade(&conn);
        let rt = inner.rt.clone();
        let inner = Arc::downgrade(inner);
        rt.spawn(async move {
            let mut rd = tokio::io::BufReader::with_capacity(256 << 10, rd);
            loop {
                let frame = match read_frame(&mut rd).await {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!("cluster bus: connection to node {peer} failed: {e}");
                        break;
                    }
                };
                let Some(c) = conn.upgrade() else { break };
                if let Frame::Request { sent_ms, .. } | Frame::Response { sent_ms, .. } = &frame {
                    if *sent_ms != frame::NO_TIME {
                        crate::clock::global().observe(peer, *sent_ms);
                    }
                }
                match frame {
                    Frame::Response { id, body, .. } => {
                        if let Some(tx) = c.pending.lock().remove(&id) {
                            let _ = tx.send(body);
                        }
                    }
                    Frame::Request {
                        id, group, body, ..
                    } => {
                        let svc = inner
                            .upgrade()
                            .and_then(|i| i.groups.read().get(&group).cloned());
                        let out = c.out.clone();
                        // `handle` runs here, in arrival order, so a service can queue requests
                        // in order (pipelined appends); only the waiting is spawned.
                        let fut = svc.map(|s| s.handle(peer, body));
                        tokio::spawn(async move {
                            let resp = match fut {
                                Some(f) => f.await,
                                None => RpcResponse::NoGroup,
                            };
                            let frame = Frame::Response {
                                id,
                                sent_ms: crate::clock::own_wall_ms(),
                                body: resp,
                            };
                            match frame.encode() {
                                Ok(b) => {
                                    let _ = out.send(b);
                                }
                                Err(e) => {
                                    tracing::warn!("cluster bus: cannot encode response: {e}")
                                }
                            }
                        });
                    }
                    other => {
                        tracing::debug!("cluster bus: unexpected frame from node {peer}: {other:?}")
                    }
                }
            }
            if let Some(c) = conn.upgrade() {
                c.close();
            }
        })
    };
    conn.tasks.lock().extend([writer, reader]);
    register(inner, conn.clone());
    tracing::debug!(
        "cluster bus: node {} connected to node {}",
        inner.id,
        conn.peer
    );
    conn
}

/// Makes `new` the connection for its peer unless a live one that both ends prefer exists.
/// The loser is kept as a spare, never dropped: dropping it would close it under the other end,
/// which may have picked it before seeing the other connection.
fn register(inner: &Inner, new: Arc<Conn>) {
    let lo = inner.id.min(new.peer);
    let mut conns = inner.conns.lock();
    let mut spares = inner.spares.lock();
    spares.retain(|c| !c.closed.load(Ordering::SeqCst));
    match conns.get(&new.peer) {
        Some(old) if !old.closed.load(Ordering::SeqCst) && old.dialer == lo && new.dialer != lo => {
            spares.push(new);
        }
        _ => {
            if let Some(old) = conns.insert(new.peer, new) {
                if !old.closed.load(Ordering::SeqCst) {
                    spares.push(old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod auth_tests;
