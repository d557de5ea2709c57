//! A fault-injecting TCP proxy for network partitions between cluster nodes.
//!
//! A [`Proxy`] listens on `127.0.0.1:<free port>` and forwards every accepted connection to one
//! target address. What happens to a connection depends on a [`Mode`] chosen per SOURCE IP of
//! the accepted connection (nodes bind their outgoing sockets to their own `127.0.0.x`, so the
//! source IP names the calling node). Mode changes apply to connections that already exist.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::rng::Rng;
use crate::Error;

/// How often an idle pump wakes up to notice a mode change.
const POLL: Duration = Duration::from_millis(20);
/// How long the proxy waits to connect to its target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the proxy does with the connections from one source IP.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Accept and hold connections but forward nothing in either direction (bytes are read and
    /// discarded, like lost packets). A connection that lost bytes is closed when the mode goes
    /// back to a forwarding one, so no peer ever sees a stream with a hole in it.
    Blackhole,
    /// Close existing connections and close new ones right after accepting them.
    Drop,
    /// Forward every chunk this long after it was read.
    Delay(Duration),
    /// Close the connection with this probability for every chunk read (0.0..=1.0).
    Loss(f64),
}

impl Mode {
    fn forwards(self) -> bool {
        matches!(self, Mode::Pass | Mode::Delay(_) | Mode::Loss(_))
    }
}

/// Counters of a proxy's activity, for tests and diagnostics.
#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicU64,
    forwarded_bytes: AtomicU64,
    discarded_bytes: AtomicU64,
}

struct Shared {
    modes: Mutex<HashMap<IpAddr, Mode>>,
    default: Mutex<Mode>,
    stop: AtomicBool,
    stats: Stats,
    seed: AtomicU64,
    conns: Mutex<Vec<Arc<Conn>>>,
}

impl Shared {
    fn mode(&self, ip: IpAddr) -> Mode {
        if let Some(m) = lock(&self.modes).get(&ip) {
            return *m;
        }
        *lock(&self.default)
    }
}

/// Locks a mutex, recovering from poisoning (a panicking pump must not wedge the proxy).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One proxied connection: the accepted socket and the socket to the target.
struct Conn {
    src: IpAddr,
    client: TcpStream,
    upstream: TcpStream,
    closed: AtomicBool,
    /// Bytes were discarded (blackhole): the stream has a hole, so it must never forward again.
    tainted: AtomicBool,
}

impl Conn {
    fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            // Zero linger turns the close into an RST, like a dropped link, and wakes blocked reads.
            set_linger_zero(&self.client);
            set_linger_zero(&self.upstream);
            let _ = self.client.shutdown(Shutdown::Both);
            let _ = self.upstream.shutdown(Shutdown::Both);
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

fn set_linger_zero(s: &TcpStream) {
    use std::os::unix::io::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `linger` (a valid, correctly sized struct) for the duration of the call.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// A running proxy; stops accepting and closes every connection on drop.
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on `127.0.0.1:<free port>` and forwards to `target` (every source starts in [`Mode::Pass`]).
    pub fn start(target: SocketAddr) -> Result<Proxy, Error> {
        Proxy::start_on(
            "127.0.0.1:0"
                .parse()
                .map_err(|_| Error::Start("addr".into()))?,
            target,
        )
    }

    /// Listens on `listen` (port 0 = a free port) and forwards to `target`.
    pub fn start_on(listen: SocketAddr, target: SocketAddr) -> Result<Proxy, Error> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            modes: Mutex::new(HashMap::new()),
            default: Mutex::new(Mode::Pass),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
            seed: AtomicU64::new(0x5eed_0000 ^ u64::from(addr.port())),
            conns: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        let acceptor = thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || accept_loop(listener, target, sh))?;
        Ok(Proxy {
            addr,
            target,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address clients dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where connections are forwarded.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Sets the mode for connections from `src` (existing ones included).
    pub fn set_mode(&self, src: IpAddr, mode: Mode) {
        lock(&self.shared.modes).insert(src, mode);
    }

    /// Sets the mode for sources without their own mode.
    pub fn set_default(&self, mode: Mode) {
        *lock(&self.shared.default) = mode;
    }

    /// The mode that applies to `src` now.
    pub fn mode(&self, src: IpAddr) -> Mode {
        self.shared.mode(src)
    }

    /// Back to [`Mode::Pass`] for every source.
    pub fn heal(&self) {
        lock(&self.shared.modes).clear();
        *lock(&self.shared.default) = Mode::Pass;
    }

    /// Seed of the random choices made by [`Mode::Loss`] (for reproducible runs).
    pub fn set_seed(&self, seed: u64) {
        self.shared.seed.store(seed, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.stats.accepted.load(Ordering::SeqCst)
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        let mut conns = lock(&self.shared.conns);
        conns.retain(|c| !c.is_closed());
        conns.len()
    }

    /// Bytes forwarded (both directions).
    pub fn forwarded_bytes(&self) -> u64 {
        self.shared.stats.forwarded_bytes.load(Ordering::SeqCst)
    }

    /// Bytes read and thrown away by [`Mode::Blackhole`].
    pub fn discarded_bytes(&self) -> u64 {
        self.shared.stats.discarded_bytes.load(Ordering::SeqCst)
    }

    /// Closes every open connection now (whatever the modes; new ones are still accepted).
    pub fn reset_connections(&self) {
        for c in lock(&self.shared.conns).drain(..) {
            c.close();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        self.reset_connections();
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    let mut next_seed = 0u64;
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let client = match stream {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // Out of fds or similar: back off rather than spin.
            Err(_) => {
                thread::sleep(POLL);
                continue;
            }
        };
        let Ok(peer) = client.peer_addr() else {
            continue;
        };
        shared.stats.accepted.fetch_add(1, Ordering::SeqCst);
        if shared.mode(peer.ip()) == Mode::Drop {
            set_linger_zero(&client);
            drop(client);
            continue;
        }
        next_seed += 1;
        let seed = shared.seed.load(Ordering::SeqCst) ^ next_seed.wrapping_mul(0x9e37_79b9);
        let sh = shared.clone();
        // Connecting may take up to CONNECT_TIMEOUT; do it off the accept thread.
        let _ = thread::Builder::new()
            .name("proxy-conn".into())
            .spawn(move || serve(client, peer.ip(), target, sh, seed));
    }
}

fn serve(client: TcpStream, src: IpAddr, target: SocketAddr, shared: Arc<Shared>, seed: u64) {
    let upstream = match TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(_) => {
            set_linger_zero(&client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let conn = Arc::new(Conn {
        src,
        client,
        upstream,
        closed: AtomicBool::new(false),
        tainted: AtomicBool::new(false),
    });
    lock(&shared.conns).push(conn.clone());
    let (c_read, u_read) = (c2, u2);
    let a = {
        let (conn, shared) = (conn.clone(), shared.clone());
        thread::spawn(move || pump(conn, shared, c_read, Dir::ToUpstream, seed))
    };
    pump(conn.clone(), shared, u_read, Dir::ToClient, seed ^ 0xabcdef);
    let _ = a.join();
    conn.close();
}

#[derive(Clone, Copy)]
enum Dir {
    ToUpstream,
    ToClient,
}

/// Reads one direction of a connection and hands chunks to a writer thread (which applies delay).
fn pump(conn: Arc<Conn>, shared: Arc<Shared>, mut from: TcpStream, dir: Dir, seed: u64) {
    let mut rng = Rng::new(seed);
    let _ = from.set_read_timeout(Some(POLL));
    let to = match dir {
        Dir::ToUpstream => conn.upstream.try_clone(),
        Dir::ToClient => conn.client.try_clone(),
    };
    let Ok(to) = to else {
        conn.close();
        return;
    };
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = {
        let (conn, shared) = (conn.clone(), shared.clone());
        thread::spawn(move || write_loop(conn, shared, to, rx))
    };
    let mut buf = vec![0u8; 64 * 1024];
    while !conn.is_closed() && !shared.stop.load(Ordering::SeqCst) {
        let mode = shared.mode(conn.src);
        if mode == Mode::Drop {
            conn.close();
            break;
        }
        if mode.forwards() && conn.tainted.load(Ordering::SeqCst) {
            conn.close();
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        // The mode may have changed while we were blocked in read.
        match shared.mode(conn.src) {
            Mode::Pass | Mode::Delay(_) => {}
            Mode::Blackhole => {
                conn.tainted.store(true, Ordering::SeqCst);
                shared
                    .stats
                    .discarded_bytes
                    .fetch_add(n as u64, Ordering::SeqCst);
                continue;
            }
            Mode::Drop => {
                conn.close();
                break;
            }
            Mode::Loss(p) => {
                // 53 random bits give a uniform float in [0, 1).
                let roll = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                if roll < p {
                    conn.close();
                    break;
                }
            }
        }
        if conn.tainted.load(Ordering::SeqCst) {
            conn.close();
            break;
        }
        if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
    // EOF in one direction ends the whole connection: simpler than half-close and what a node's
    // transport does anyway.
    conn.close();
}

fn write_loop(
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    mut to: TcpStream,
    rx: mpsc::Receiver<(Instant, Vec<u8>)>,
) {
    while let Ok((read_at, chunk)) = rx.recv() {
        if let Mode::Delay(d) = shared.mode(conn.src) {
            let due = read_at + d;
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
        if conn.is_closed() {
            return;
        }
        if to.write_all(&chunk).is_err() {
            conn.close();
            return;
        }
        shared
            .stats
            .forwarded_bytes
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
    }
}

/// Connects to `dst` from the local address `src` (port chosen by the kernel), the way a node
/// bound to its own `127.0.0.x` dials its peers.
pub fn connect_from(src: IpAddr, dst: SocketAddr, timeout: Duration) -> Result<TcpStream, Error> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(dst), Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(src, 0).into())?;
    sock.connect_timeout(&dst.into(), timeout)?;
    let s: TcpStream = sock.into();
    s.set_nodelay(true)?;
    Ok(s)
}

#[cfg(test)]
mod tests;
