//! A local Raft cluster of real `pinnacle` processes for failover tests.
//!
//! Node `i` (1-based) listens only on `127.0.0.<base+i>` (client port and cluster-bus port), so
//! its outgoing bus connections carry that source IP. With [`ClusterBuilder::with_proxies`] every
//! node's announced bus port is a fault-injecting [`Proxy`] in front of its real bus port, and
//! [`Cluster::partition`] / [`Cluster::isolate`] / [`Cluster::heal`] cut links by source IP.
//!
//! Every process is SIGKILLed and reaped on drop (also when the test panics, in which case each
//! node's log tail is printed), and dies with the harness if the test process is killed.

mod client;
mod faults;
mod info;
mod spawn;
mod strace;
mod terms;

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use client::{LeaderClient, Outcome};
pub use info::RaftInfo;
use spawn::Spawner;
pub use strace::Strace;

use crate::frame::Value;
use crate::process::{free_port_on, pinnacle_bin, START_TIMEOUT};
use crate::proxy::Proxy;
use crate::raw::RawConn;
use crate::Error;

/// How long one poll of a node may take before it counts as unreachable.
const POLL_TIMEOUT: Duration = Duration::from_millis(1000);
/// Default time [`Cluster::leader`] waits for an agreed leader.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// Bytes of each node's log printed when a test panics (`CLUSTER_LOG_BYTES` overrides).
const LOG_DUMP_BYTES: usize = 6000;

/// Options of a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    n: usize,
    proxies: bool,
    ip_base: u8,
    args: Vec<String>,
    shards: usize,
    bin: Option<PathBuf>,
    data_root: Option<PathBuf>,
}

impl ClusterBuilder {
    /// Run this binary instead of [`pinnacle_bin`] (e.g. a build with `--features failpoints`).
    pub fn bin(mut self, path: impl Into<PathBuf>) -> ClusterBuilder {
        self.bin = Some(path.into());
        self
    }

    /// Put node `i`'s data directory at `<root>/node<i>` (e.g. on a test file system); the logs
    /// stay in the cluster's temporary folder.
    pub fn data_root(mut self, root: impl Into<PathBuf>) -> ClusterBuilder {
        self.data_root = Some(root.into());
        self
    }

    /// Number of shard Raft groups (`--shards`). Default 1: the failover tests reason about one
    /// group; cluster tests ask for 3 (the server's own default) so that leaders spread.
    pub fn shards(mut self, n: usize) -> ClusterBuilder {
        self.shards = n;
        self
    }

    /// Put a fault-injecting proxy in front of every node's cluster-bus port.
    pub fn with_proxies(mut self) -> ClusterBuilder {
        self.proxies = true;
        self
    }

    /// Node `i` gets IP `127.0.0.<base+i>` (default 10: nodes on 127.0.0.11, .12, ...).
    pub fn ip_base(mut self, base: u8) -> ClusterBuilder {
        self.ip_base = base;
        self
    }

    /// `--appendfsync <policy>` on every node.
    pub fn appendfsync(self, policy: &str) -> ClusterBuilder {
        self.args(["--appendfsync", policy])
    }

    /// One extra argument for every node (after the harness's own).
    pub fn arg(mut self, a: impl Into<String>) -> ClusterBuilder {
        self.args.push(a.into());
        self
    }

    /// Several extra arguments for every node.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> ClusterBuilder {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    /// Mutual TLS on the cluster bus (`--tls-cluster yes`): every node presents `cert`/`key`
    /// (which must be signed by `ca` and valid for client and server use). The client port
    /// the harness polls stays plain.
    pub fn tls_cluster(self, ca: &Path, cert: &Path, key: &Path) -> ClusterBuilder {
        let s = |p: &Path| p.display().to_string();
        self.args(["--tls-cluster".to_string(), "yes".to_string()])
            .args(["--tls-ca-cert-file".to_string(), s(ca)])
            .args(["--tls-cert-file".to_string(), s(cert)])
            .args(["--tls-key-file".to_string(), s(key)])
    }

    /// Starts every node and waits until each answers PING (not until a leader exists: see
    /// [`Cluster::leader`]).
    pub fn start(self) -> Result<Cluster, Error> {
        if self.n == 0 || self.n + usize::from(self.ip_base) > 254 {
            return Err(Error::Start(format!("bad cluster size {}", self.n)));
        }
        let bin = self.bin.clone().unwrap_or_else(pinnacle_bin);
        if !bin.exists() {
            return Err(Error::Start(format!(
                "pinnacle binary not found at {} (cargo build -p pinnacle-server --bin pinnacle, or set PINNACLE_BIN)",
                bin.display()
            )));
        }
        let root = tempfile::Builder::new()
            .prefix("pinnacle-cluster")
            .tempdir()?;
        let mut nodes = Vec::with_capacity(self.n);
        // Hold every picked port until all are picked so no two nodes get the same one.
        let mut held = Vec::new();
        for i in 1..=self.n {
            let ip = Ipv4Addr::new(127, 0, 0, self.ip_base + i as u8);
            let (port, l1) = free_port_on(ip)?;
            let (bus_port, l2) = free_port_on(ip)?;
            held.push(l1);
            held.push(l2);
            let dir = (self.data_root.as_deref())
                .unwrap_or(root.path())
                .join(format!("node{i}"));
            std::fs::create_dir_all(&dir)?;
            nodes.push(Node {
                id: i,
                ip,
                port,
                bus_port,
                dir,
                log: root.path().join(format!("node{i}.log")),
                child: None,
                paused: false,
                starts: 0,
                env: Vec::new(),
                join: false,
            });
        }
        drop(held);
        let mut proxies = Vec::new();
        if self.proxies {
            for n in &nodes {
                let listen = SocketAddr::new(IpAddr::V4(n.ip), 0);
                let target = SocketAddr::new(IpAddr::V4(n.ip), n.bus_port);
                proxies.push(Proxy::start_on(listen, target)?);
            }
        }
        let peers = nodes
            .iter()
            .map(|n| {
                let cport = proxies.get(n.id - 1).map_or(n.bus_port, Proxy::port);
                format!("{}@{}:{}@{}", n.id, n.ip, n.port, cport)
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut args = vec!["--shards".to_string(), self.shards.to_string()];
        args.extend(self.args);
        let mut cluster = Cluster {
            nodes,
            proxies,
            peers,
            args,
            spawner: Spawner::new()?,
            root: Some(root),
            bin,
        };
        for i in 1..=cluster.len() {
            cluster.spawn(i)?;
        }
        for i in 1..=cluster.len() {
            cluster.wait_ready(i)?;
        }
        Ok(cluster)
    }
}

struct Node {
    id: usize,
    ip: Ipv4Addr,
    port: u16,
    bus_port: u16,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
    starts: u32,
    /// Extra environment of the next starts (e.g. libfaketime), see `Cluster::set_env`.
    env: Vec<(String, String)>,
    /// Start with `--cluster-join` instead of `--cluster-peers` (re-added by CLUSTER MEET).
    join: bool,
}

/// A running cluster; see the module docs.
pub struct Cluster {
    nodes: Vec<Node>,
    proxies: Vec<Proxy>,
    peers: String,
    args: Vec<String>,
    spawner: Spawner,
    /// None once kept (see [`Cluster::keep_dir`]).
    root: Option<TempDir>,
    /// The server binary every node runs.
    bin: PathBuf,
}

impl Cluster {
    /// A builder for an `n`-node cluster.
    pub fn builder(n: usize) -> ClusterBuilder {
        ClusterBuilder {
            n,
            proxies: false,
            ip_base: 10,
            args: Vec::new(),
            shards: 1,
            bin: None,
            data_root: None,
        }
    }

    /// Starts an `n`-node cluster with default options.
    pub fn start(n: usize) -> Result<Cluster, Error> {
        Cluster::builder(n).start()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false (a cluster has at least one node); for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node ids, `1..=len`.
    pub fn ids(&self) -> Vec<usize> {
        (1..=self.len()).collect()
    }

    /// Votes needed for a majority.
    pub fn majority(&self) -> usize {
        self.len() / 2 + 1
    }

    fn node(&self, i: usize) -> &Node {
        assert!(i >= 1 && i <= self.nodes.len(), "no node {i}");
        &self.nodes[i - 1]
    }

    fn node_mut(&mut self, i: usize) -> &mut Node {
        assert!(i >= 1 && i <= self.nodes.len(), "no node {i}");
        &mut self.nodes[i - 1]
    }

    /// Node `i`'s IP (`127.0.0.<base+i>`).
    pub fn ip(&self, i: usize) -> IpAddr {
        IpAddr::V4(self.node(i).ip)
    }

    /// Node `i`'s client address.
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.ip(i), self.node(i).port)
    }

    /// The id of the node whose client address is `addr`.
    pub fn id_of(&self, addr: SocketAddr) -> Option<usize> {
        self.ids().into_iter().find(|&i| self.addr(i) == addr)
    }

    /// Node `i`'s client port.
    pub fn port(&self, i: usize) -> u16 {
        self.node(i).port
    }

    /// Node `i`'s real cluster-bus listen port.
    pub fn bus_port(&self, i: usize) -> u16 {
        self.node(i).bus_port
    }

    /// `redis://<ip>:<port>/` of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("redis://{}/", self.addr(i))
    }

    /// Every node's client address, in id order (for a [`LeaderClient`]).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.ids().into_iter().map(|i| self.addr(i)).collect()
    }

    /// A client that finds the leader by itself (see [`LeaderClient`]).
    pub fn client(&self) -> LeaderClient {
        LeaderClient::new(self.addrs())
    }

    /// The `--cluster-peers` value every node gets.
    pub fn peers(&self) -> &str {
        &self.peers
    }

    /// Node `i`'s data directory.
    pub fn dir(&self, i: usize) -> &Path {
        &self.node(i).dir
    }

    /// Node `i`'s process id, if running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.node(i).child.as_ref().map(Child::id)
    }

    /// True when node `i` runs and is not paused.
    pub fn is_live(&self, i: usize) -> bool {
        let n = self.node(i);
        n.child.is_some() && !n.paused
    }

    /// Ids of running, unpaused nodes.
    pub fn live(&self) -> Vec<usize> {
        self.ids()
            .into_iter()
            .filter(|&i| self.is_live(i))
            .collect()
    }

    /// The proxy in front of node `i`'s bus port (with [`ClusterBuilder::with_proxies`]).
    pub fn proxy(&self, i: usize) -> Option<&Proxy> {
        self.proxies.get(i - 1)
    }

    /// A new raw connection to node `i`.
    pub fn conn(&self, i: usize) -> Result<RawConn, Error> {
        RawConn::connect_addr(self.addr(i), POLL_TIMEOUT)
    }

    /// One command on a fresh connection to node `i`.
    pub fn call<A: AsRef<[u8]>>(&self, i: usize, args: &[A]) -> Result<Value, Error> {
        self.conn(i)?.call_value(args)
    }

    /// Node `i`'s `INFO replication`, within a short timeout.
    pub fn info(&self, i: usize) -> Result<RaftInfo, Error> {
        let mut c = self.conn(i)?;
        c.send_command(&["INFO", "replication"])?;
        let raw = c.read_reply_timeout(POLL_TIMEOUT)?;
        match crate::frame::parse_one(&raw)? {
            Value::Bulk(b) | Value::Verbatim(b) => RaftInfo::parse(&String::from_utf8_lossy(&b)),
            other => Err(Error::Protocol(format!("INFO replication: {other:?}"))),
        }
    }

    /// The leader once the first election has settled: a write through the leader-following
    /// client commits and every node applied it (a fresh leader may refuse writes before that).
    pub fn settled_leader(&self) -> Result<usize, Error> {
        let _ = self.client().call(&["SET", "settle", "1"]);
        self.wait_converged(Duration::from_secs(10))?;
        self.leader()
    }

    /// The leader that a majority of the cluster agrees on, waiting up to [`LEADER_TIMEOUT`].
    pub fn leader(&self) -> Result<usize, Error> {
        self.leader_within(LEADER_TIMEOUT)
    }

    /// Like [`Cluster::leader`] with an explicit timeout.
    pub fn leader_within(&self, timeout: Duration) -> Result<usize, Error> {
        self.wait_leader(timeout, |_| true)
    }

    /// Waits for an agreed leader other than `old` (e.g. after killing or isolating `old`).
    pub fn wait_leader_change(&self, old: usize, timeout: Duration) -> Result<usize, Error> {
        self.wait_leader(timeout, |l| l != old)
    }

    /// The agreed leader right now, if any: a live node that says it leads, with a majority of
    /// the whole cluster (itself included) naming it as leader in the same term.
    pub fn current_leader(&self) -> Option<usize> {
        let infos: Vec<(usize, RaftInfo)> = self
            .live()
            .into_iter()
            .filter_map(|i| self.info(i).ok().map(|inf| (i, inf)))
            .collect();
        // A deposed leader cut off from the others may still claim the role: check every claimant.
        infos
            .iter()
            .filter(|(_, inf)| inf.is_leader())
            .find(|(_, linfo)| {
                let votes = infos
                    .iter()
                    .filter(|(_, inf)| {
                        inf.leader_id == Some(linfo.node_id) && inf.term == linfo.term
                    })
                    .count();
                votes >= self.majority()
            })
            .map(|(l, _)| *l)
    }

    fn wait_leader(&self, timeout: Duration, ok: impl Fn(usize) -> bool) -> Result<usize, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.current_leader().filter(|&l| ok(l)) {
                return Ok(l);
            }
            if Instant::now() > deadline {
                let states: Vec<String> = self
                    .ids()
                    .into_iter()
                    .map(|i| match self.info(i) {
                        Ok(inf) => format!(
                            "node{i}: {} leader={:?} term={} last_log={} commit={} applied={}",
                            inf.role,
                            inf.leader_id,
                            inf.term,
                            inf.fields
                                .get("raft_last_log_index")
                                .map_or("?", String::as_str),
                            inf.commit_index,
                            inf.applied_index
                        ),
                        Err(e) => format!("node{i}: {e}"),
                    })
                    .collect();
                return Err(Error::Timeout(format!(
                    "no agreed leader within {timeout:?}: {}",
                    states.join("; ")
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every live node has applied the same index, at least the leader's commit
    /// index when called; returns that index.
    pub fn wait_converged(&self, timeout: Duration) -> Result<u64, Error> {
        let deadline = Instant::now() + timeout;
        let leader = self.leader_within(timeout)?;
        let target = self.info(leader)?.commit_index;
        loop {
            let applied: Vec<Result<u64, Error>> = self
                .live()
                .into_iter()
                .map(|i| self.info(i).map(|inf| inf.applied_index))
                .collect();
            if let Some(Ok(first)) = applied.first() {
                if *first >= target && applied.iter().all(|a| matches!(a, Ok(x) if x == first)) {
                    return Ok(*first);
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!(
                    "applied indices did not converge to >= {target} within {timeout:?}: {applied:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `DBSIZE` of node `i` (keyless, so a follower answers from its own data).
    pub fn dbsize(&self, i: usize) -> Result<i64, Error> {
        match self.call(i, &["DBSIZE"])? {
            Value::Int(n) => Ok(n),
            other => Err(Error::Protocol(format!("DBSIZE on node{i}: {other:?}"))),
        }
    }

    /// Every key of node `i` by a full `SCAN` (served locally by followers too).
    pub fn keys(&self, i: usize) -> Result<BTreeSet<Vec<u8>>, Error> {
        let mut c = self.conn(i)?;
        let mut cursor = b"0".to_vec();
        let mut keys = BTreeSet::new();
        loop {
            let cur = cursor.clone();
            let reply = c.call_value(&[b"SCAN".as_slice(), &cur, b"COUNT", b"1000"])?;
            let Value::Array(parts) = reply else {
                return Err(Error::Protocol(format!("SCAN on node{i}: {reply:?}")));
            };
            let [Value::Bulk(next), Value::Array(batch)] = parts.as_slice() else {
                return Err(Error::Protocol(format!("SCAN on node{i}: {parts:?}")));
            };
            for k in batch {
                match k {
                    Value::Bulk(k) => {
                        keys.insert(k.clone());
                    }
                    other => return Err(Error::Protocol(format!("SCAN key: {other:?}"))),
                }
            }
            if next.as_slice() == b"0" {
                return Ok(keys);
            }
            cursor = next.clone();
        }
    }

    /// The last `max` bytes of node `i`'s log (stdout + stderr of every start).
    pub fn log_tail(&self, i: usize, max: usize) -> String {
        let mut buf = Vec::new();
        if let Ok(mut f) = File::open(&self.node(i).log) {
            if let Ok(len) = f.seek(SeekFrom::End(0)) {
                let _ = f.seek(SeekFrom::Start(len.saturating_sub(max as u64)));
            }
            let _ = f.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Node `i`'s whole log since its latest start.
    pub fn log_since_start(&self, i: usize) -> String {
        let text = std::fs::read(&self.node(i).log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        match text.rfind("=== harness: start #") {
            Some(at) => text[at..].to_string(),
            None => text.into_owned(),
        }
    }

    /// Keeps the data and log folder after the cluster is dropped; returns its path.
    pub fn keep_dir(&mut self) -> Option<PathBuf> {
        self.root.take().map(TempDir::keep)
    }

    /// The folder holding every node's data (`node<i>/`) and log (`node<i>.log`).
    pub fn root(&self) -> Option<&Path> {
        self.root.as_ref().map(TempDir::path)
    }

    fn spawn(&mut self, i: usize) -> Result<(), Error> {
        let n = self.node(i);
        let mut log = OpenOptions::new().create(true).append(true).open(&n.log)?;
        writeln!(log, "=== harness: start #{} of node{i} ===", n.starts + 1)?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--node-id", &i.to_string()])
            .args(["--bind", &n.ip.to_string()])
            .args(["--port", &n.port.to_string()])
            .args(["--cluster-port", &n.bus_port.to_string()]);
        if n.join {
            cmd.arg("--cluster-join");
        } else {
            cmd.args(["--cluster-peers", &self.peers]);
        }
        cmd.envs(n.env.iter().map(|(k, v)| (k, v)))
            .arg("--dir")
            .arg(&n.dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = self.spawner.spawn(cmd)?;
        let n = self.node_mut(i);
        n.starts += 1;
        n.child = Some(child);
        n.paused = false;
        Ok(())
    }

    fn wait_ready(&mut self, i: usize) -> Result<(), Error> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = self.addr(i);
        loop {
            if let Some(child) = self.node_mut(i).child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.node_mut(i).child = None;
                    return Err(Error::Start(format!(
                        "node{i} exited: {status}\n--- log ---\n{}",
                        self.log_tail(i, 3000)
                    )));
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Start(format!(
                    "node{i} did not answer PING on {addr}\n--- log ---\n{}",
                    self.log_tail(i, 3000)
                )));
            }
            if let Ok(mut c) = RawConn::connect_addr(addr, POLL_TIMEOUT) {
                if c.send_command(&["PING"]).is_ok() {
                    if let Ok(r) = c.read_reply_timeout(POLL_TIMEOUT) {
                        // A node behind `requirepass` answers too, with NOAUTH.
                        if r == b"+PONG\r\n" || r.starts_with(b"-NOAUTH") {
                            return Ok(());
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                // SIGKILL also ends a SIGSTOPped process.
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            let max = std::env::var("CLUSTER_LOG_BYTES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(LOG_DUMP_BYTES);
            for i in self.ids() {
                eprintln!(
                    "----- node{i} ({}) log tail -----\n{}",
                    self.addr(i),
                    self.log_tail(i, max)
                );
            }
            if std::env::var_os("CLUSTER_KEEP").is_some() {
                if let Some(p) = self.keep_dir() {
                    eprintln!("cluster data kept in {}", p.display());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
