//! Start and stop real server processes (`pinnacle`, reference `redis-server`)
//! on free loopback ports with temporary data directories.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::frame::{self, Value};
use crate::raw::RawConn;
use crate::tools;
use crate::Error;

/// How long a server may take to answer its first PING (debug builds on a busy machine are slow).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Which server a [`Server`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The `pinnacle` binary under test.
    Pinnacle,
    /// A standalone reference `redis-server`.
    Redis,
    /// A reference `redis-server` in cluster mode that owns all 16384 slots, like a single pinnacle node.
    RedisCluster,
}

impl Kind {
    /// Short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pinnacle => "pinnacle",
            Kind::Redis => "redis-server",
            Kind::RedisCluster => "redis-server(cluster)",
        }
    }
}

/// Path of the pinnacle binary: `$PINNACLE_BIN`, else `<workspace>/target/debug/pinnacle`.
pub fn pinnacle_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PINNACLE_BIN") {
        return PathBuf::from(p);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t),
        None => workspace_root().join("target"),
    };
    target.join("debug").join("pinnacle")
}

/// The cargo workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A free loopback port that is not 6379 and whose +10000 cluster-bus twin is free too.
///
/// Ports come from below the kernel's ephemeral range when it leaves room (both the port and its
/// twin): a port taken from the ephemeral range and released until the server binds it can be
/// taken meanwhile as the source port of some outgoing connection, which a cluster's nodes make
/// by the dozen while its later nodes start (CI saw `address in use` that way). A process-wide
/// cursor never hands out the same port twice, so ports picked together are distinct.
pub fn free_port() -> Result<u16, Error> {
    if let Some(p) = free_port_below_ephemeral()? {
        return Ok(p);
    }
    for _ in 0..200 {
        let l = TcpListener::bind(("127.0.0.1", 0))?;
        let port = l.local_addr()?.port();
        if port == 6379 || port > 55535 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10000)).is_err() {
            continue;
        }
        return Ok(port);
    }
    Err(Error::Start("no free port found".into()))
}

/// The first port of the kernel's ephemeral range (`ip_local_port_range`, read once); 32768 if
/// unreadable.
fn ephemeral_start() -> u16 {
    static START: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
            .unwrap_or(32768)
    })
}

/// A free port from `[10000, ephemeral start - 10000)` whose twin is free too, or `None` when that
/// range is too small (then the caller falls back to the ephemeral range).
fn free_port_below_ephemeral() -> Result<Option<u16>, Error> {
    next_port_below_ephemeral(|port| {
        TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok()
    })
}

/// A free port on `ip`, with the listener that reserves it; below the ephemeral range when it
/// leaves room (see [`free_port`]).
pub fn free_port_on(ip: std::net::Ipv4Addr) -> Result<(u16, TcpListener), Error> {
    let mut held = None;
    let below = next_port_below_ephemeral(|port| match TcpListener::bind((ip, port)) {
        Ok(l) => {
            held = Some(l);
            true
        }
        Err(_) => false,
    })?;
    if let (Some(port), Some(l)) = (below, held) {
        return Ok((port, l));
    }
    let l = TcpListener::bind((ip, 0))?;
    Ok((l.local_addr()?.port(), l))
}

/// The next port from the process-wide cursor over `[10000, ephemeral start - 10000)` that `free`
/// accepts; `None` when that range is too small.
fn next_port_below_ephemeral(mut free: impl FnMut(u16) -> bool) -> Result<Option<u16>, Error> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);
    let high = u32::from(ephemeral_start()).saturating_sub(10_000);
    if high < LOW + 1000 {
        return Ok(None);
    }
    let span = high - LOW;
    // Start each test process at a different place so that consecutive test binaries do not
    // reuse the ports whose sockets the previous one left in TIME_WAIT.
    let _ = CURSOR.compare_exchange(
        u32::MAX,
        std::process::id() % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = (LOW + CURSOR.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if free(port) {
            return Ok(Some(port));
        }
    }
    Err(Error::Start(
        "no free port found below the ephemeral range".into(),
    ))
}

/// Environment variable choosing the server under test (`pinnacle`, default, or `redis`).
pub const SUBJECT_ENV: &str = "REDIS_TESTS_SUBJECT";

/// The kind of server under test (see [`SUBJECT_ENV`]).
pub fn subject_kind() -> Kind {
    match std::env::var(SUBJECT_ENV).as_deref() {
        Ok("redis") => Kind::RedisCluster,
        _ => Kind::Pinnacle,
    }
}

/// Configures a server before starting it.
#[derive(Debug, Clone)]
pub struct Builder {
    kind: Kind,
    args: Vec<String>,
    port: Option<u16>,
    password: Option<String>,
}

impl Builder {
    /// A pinnacle server (`--port --bind 127.0.0.1 --dir` are added by the harness).
    pub fn pinnacle() -> Builder {
        Builder::of(Kind::Pinnacle)
    }

    /// A pinnacle node `id` that starts empty with `--cluster-join` and `--shards shards` on
    /// free client and bus ports, to be added with `CLUSTER MEET 127.0.0.1 <port> <bus>`;
    /// returns the builder (more flags may follow) and the two ports.
    pub fn pinnacle_joining(id: u64, shards: usize) -> Result<(Builder, u16, u16), Error> {
        let port = free_port()?;
        let bus = free_port()?;
        let b = Builder::pinnacle().port(port).args([
            "--node-id".to_string(),
            id.to_string(),
            "--cluster-join".to_string(),
            "--shards".to_string(),
            shards.to_string(),
            "--cluster-port".to_string(),
            bus.to_string(),
        ]);
        Ok((b, port, bus))
    }

    /// A standalone redis-server with persistence off (`--save '' --appendonly no`).
    pub fn redis() -> Builder {
        Builder::of(Kind::Redis)
    }

    /// A cluster-mode redis-server owning every slot.
    pub fn redis_cluster() -> Builder {
        Builder::of(Kind::RedisCluster)
    }

    /// A builder of the given kind.
    pub fn of(kind: Kind) -> Builder {
        Builder {
            kind,
            args: Vec::new(),
            port: None,
            password: None,
        }
    }

    /// The server under test: pinnacle, or the cluster-mode redis-server when
    /// `REDIS_TESTS_SUBJECT=redis` (used to check that the tests themselves encode Redis's behaviour).
    pub fn subject() -> Builder {
        Builder::of(subject_kind())
    }

    /// Require this password (`--requirepass`).
    pub fn requirepass(mut self, pass: &str) -> Builder {
        self.password = Some(pass.to_string());
        self.args(["--requirepass", pass])
    }

    /// Accept at most `n` clients (`--maxclients`).
    pub fn maxclients(self, n: u32) -> Builder {
        self.args(["--maxclients".to_string(), n.to_string()])
    }

    /// Close clients idle for `secs` seconds (`--timeout`).
    pub fn timeout(self, secs: u32) -> Builder {
        self.args(["--timeout".to_string(), secs.to_string()])
    }

    /// Durable log with the given fsync policy (`always`, `everysec`, `no`). For redis-server this
    /// also turns the append-only file on.
    pub fn appendfsync(self, policy: &str) -> Builder {
        let b = match self.kind {
            Kind::Pinnacle => self,
            Kind::Redis | Kind::RedisCluster => self.args(["--appendonly", "yes"]),
        };
        b.args(["--appendfsync", policy])
    }

    /// Add one command-line argument (after the harness's own).
    pub fn arg(mut self, a: impl Into<String>) -> Builder {
        self.args.push(a.into());
        self
    }

    /// Add several command-line arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Builder {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    /// Use this port instead of a free one.
    pub fn port(mut self, p: u16) -> Builder {
        self.port = Some(p);
        self
    }

    /// Start the server in a new temporary data directory and wait until it answers PING.
    pub fn start(self) -> Result<Server, Error> {
        let data = tempfile::Builder::new()
            .prefix("pinnacle-test-data")
            .tempdir()?;
        let logs = tempfile::Builder::new()
            .prefix("pinnacle-test-log")
            .tempdir()?;
        let mut server = Server {
            kind: self.kind,
            args: self.args,
            port: self.port.unwrap_or(0),
            fixed_port: self.port.is_some(),
            password: self.password,
            child: None,
            data,
            logs,
            starts: 0,
        };
        server.launch()?;
        Ok(server)
    }
}

/// A running server process; killed (SIGKILL) and reaped on drop, even when a test panics.
pub struct Server {
    kind: Kind,
    args: Vec<String>,
    port: u16,
    fixed_port: bool,
    password: Option<String>,
    child: Option<Child>,
    data: TempDir,
    logs: TempDir,
    starts: u32,
}

impl Server {
    /// Start the default server under test (see [`Builder::subject`]).
    pub fn subject() -> Result<Server, Error> {
        Builder::subject().start()
    }

    /// Start a default pinnacle.
    pub fn pinnacle() -> Result<Server, Error> {
        Builder::pinnacle().start()
    }

    /// Start a default standalone redis-server.
    pub fn redis() -> Result<Server, Error> {
        Builder::redis().start()
    }

    /// Start a cluster-mode redis-server that owns all slots.
    pub fn redis_cluster() -> Result<Server, Error> {
        Builder::redis_cluster().start()
    }

    /// Which server this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its data directory (kept across [`Server::kill9`] / [`Server::restart`]).
    pub fn dir(&self) -> &Path {
        self.data.path()
    }

    /// Process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// A new raw connection.
    pub fn conn(&self) -> Result<RawConn, Error> {
        RawConn::connect(self.port)
    }

    /// Resident set size in KiB (`VmRSS` from /proc/<pid>/status).
    pub fn rss_kib(&self) -> Result<u64, Error> {
        let pid = self
            .pid()
            .ok_or_else(|| Error::Start("server not running".into()))?;
        rss_kib(pid)
    }

    /// SIGKILL the process and reap it; the data directory stays.
    pub fn kill9(&mut self) -> Result<(), Error> {
        if let Some(mut c) = self.child.take() {
            // kill() is SIGKILL on Unix; an already-exited child is fine.
            let _ = c.kill();
            c.wait()?;
        }
        Ok(())
    }

    /// Start the process again on the same data directory and port.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill9()?;
        self.fixed_port = true;
        self.launch()
    }

    /// The last `max` bytes of the server's stdout+stderr log.
    pub fn log_tail(&self, max: usize) -> String {
        let mut s = String::new();
        for name in ["stdout.log", "stderr.log"] {
            let mut buf = Vec::new();
            if let Ok(mut f) = File::open(self.logs.path().join(name)) {
                let _ = f.read_to_end(&mut buf);
            }
            let start = buf.len().saturating_sub(max);
            s.push_str(&String::from_utf8_lossy(&buf[start..]));
        }
        s
    }

    /// The `Error:` / `panicked` lines of the whole log `full` (which a backtrace would push out
    /// of a tail), then the last `max` bytes of each log.
    fn log_failure(&self, full: &str, max: usize) -> String {
        let mut s: String = full
            .lines()
            .filter(|l| l.starts_with("Error:") || l.contains("panicked at"))
            .take(5)
            .flat_map(|l| [l, "\n"])
            .collect();
        s.push_str(&self.log_tail(max));
        s
    }

    fn command(&self) -> Result<Command, Error> {
        let dir = self.data.path().display().to_string();
        let port = self.port.to_string();
        let mut cmd = match self.kind {
            Kind::Pinnacle => {
                let bin = pinnacle_bin();
                if !bin.exists() {
                    return Err(Error::Start(format!(
                        "pinnacle binary not found at {} (build it with `cargo build -p pinnacle-server --bin pinnacle` or set PINNACLE_BIN)",
                        bin.display()
                    )));
                }
                let mut c = Command::new(bin);
                c.args(["--port", &port, "--bind", "127.0.0.1", "--dir", &dir]);
                c
            }
            Kind::Redis | Kind::RedisCluster => {
                let bin = tools::require("redis-server")?;
                let mut c = Command::new(bin);
                c.args([
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]);
                c.args(["--daemonize", "no", "--dir", &dir]);
                if self.kind == Kind::RedisCluster {
                    let conf = self.data.path().join("nodes.conf").display().to_string();
                    c.args(["--cluster-enabled", "yes", "--cluster-config-file", &conf]);
                    // Without it a lone node reports an empty ip in CLUSTER SLOTS/NODES.
                    c.args(["--cluster-announce-ip", "127.0.0.1"]);
                }
                c
            }
        };
        cmd.args(&self.args);
        let out = File::create(self.logs.path().join("stdout.log"))?;
        let err = File::create(self.logs.path().join("stderr.log"))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // If the test process dies without running Drop (SIGKILL, a `timeout` wrapper), the kernel
        // kills the server too, so no orphan keeps a port and memory.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(cmd)
    }

    fn launch(&mut self) -> Result<(), Error> {
        let mut last_err = None;
        for _ in 0..5 {
            if !self.fixed_port {
                self.port = free_port()?;
            }
            self.starts += 1;
            let mut cmd = self.command()?;
            self.child = Some(cmd.spawn()?);
            match self.wait_ready() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.kill9()?;
                    // The whole log decides the retry: with RUST_BACKTRACE set, the backtrace
                    // after `Error: ... in use` fills any tail.
                    let full = self.log_tail(usize::MAX);
                    let retry = !self.fixed_port && full.contains("in use");
                    let log = self.log_failure(&full, 2000);
                    last_err = Some(Error::Start(format!(
                        "{} on port {} did not start: {e}\n--- log ---\n{log}",
                        self.kind.name(),
                        self.port
                    )));
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| Error::Start("start failed".into())))
    }

    fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(Error::Start(format!("process exited: {status}")));
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Start("no PONG before the start timeout".into()));
            }
            if let Ok(mut c) = RawConn::connect(self.port) {
                if let Ok(reply) = c.call(&["PING"]) {
                    // NOAUTH also proves the server is serving (started with a password).
                    if reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH") {
                        if self.kind == Kind::RedisCluster {
                            if let Some(p) = &self.password {
                                c.call(&["AUTH", p.as_str()])?;
                            }
                            claim_all_slots(&mut c)?;
                        }
                        return Ok(());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Make a fresh cluster-mode redis-server own slots 0-16383 and wait for `cluster_state:ok`.
fn claim_all_slots(c: &mut RawConn) -> Result<(), Error> {
    let info = cluster_info(c)?;
    if !info.contains("cluster_slots_assigned:16384") {
        let r = c.call(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])?;
        if r != b"+OK\r\n" {
            return Err(Error::Start(format!("ADDSLOTSRANGE: {}", frame::show(&r))));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster_info(c)?.contains("cluster_state:ok") {
        if Instant::now() > deadline {
            return Err(Error::Start("cluster_state never became ok".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn cluster_info(c: &mut RawConn) -> Result<String, Error> {
    match c.call_value(&["CLUSTER", "INFO"])? {
        Value::Bulk(b) | Value::Verbatim(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        other => Err(Error::Start(format!("CLUSTER INFO: {other:?}"))),
    }
}

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::Protocol(format!("no VmRSS for pid {pid}")))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
