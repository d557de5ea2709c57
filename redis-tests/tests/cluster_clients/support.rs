//! What `cluster_clients.rs` shares: the cluster under test (Pinnacle `--shards 3`, or a real
//! 3-master Redis Cluster with `REDIS_TESTS_SUBJECT=redis`), CLUSTER SLOTS parsing and the wait
//! for spread leaders, the key -> slot function, redis-rs cluster clients, and the external
//! client scripts (redis-py, ioredis).

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::cluster::ClusterClient;
use redis::ProtocolVersion;
use redis_tests::cluster::Cluster;
use redis_tests::process::{free_port, subject_kind};
use redis_tests::{Kind, RawConn, Value};

/// Nodes in every cluster these tests start.
pub const NODES: usize = 3;
/// How long the shard leaders may take to spread over the nodes after start or a restart.
pub const SPREAD_TIMEOUT: Duration = Duration::from_secs(20);
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// One CLUSTER SLOTS range and its master (layout (a) of redis-wire §10: no replica entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub start: u16,
    pub end: u16,
    pub ip: String,
    pub port: u16,
    pub id: String,
}

impl Range {
    /// `ip:port` of the master.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// Master id -> (`ip:port`, its slot ranges in order).
pub fn masters(ranges: &[Range]) -> BTreeMap<String, (String, Vec<(u16, u16)>)> {
    let mut m: BTreeMap<String, (String, Vec<(u16, u16)>)> = BTreeMap::new();
    for r in ranges {
        m.entry(r.id.clone())
            .or_insert_with(|| (r.addr(), Vec::new()))
            .1
            .push((r.start, r.end));
    }
    m
}

/// One cluster test at a time: each starts 3 nodes × 4 Raft groups, and on a 2-core machine
/// several at once starve the groups' heartbeats into elections (CLUSTERDOWN for clients).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cluster under test.
pub enum Target {
    Pinnacle(Cluster),
    Redis(RedisCluster),
}

impl Target {
    /// A 3-node Pinnacle cluster with 3 shards, or a 3-master Redis Cluster when
    /// `REDIS_TESTS_SUBJECT=redis` (to check that the tests encode Redis Cluster's behaviour).
    pub fn start() -> Target {
        match subject_kind() {
            Kind::Pinnacle => Target::Pinnacle(
                Cluster::builder(NODES)
                    .shards(NODES)
                    .start()
                    .expect("start pinnacle cluster"),
            ),
            _ => Target::Redis(RedisCluster::start(NODES)),
        }
    }

    /// Client address of node `i` (1-based).
    pub fn addr(&self, i: usize) -> SocketAddr {
        match self {
            Target::Pinnacle(c) => c.addr(i),
            Target::Redis(r) => SocketAddr::from(([127, 0, 0, 1], r.ports[i - 1])),
        }
    }

    /// Every node's client address, node 1 first.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        (1..=NODES).map(|i| self.addr(i)).collect()
    }

    /// `redis://ip:port/` of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("redis://{}/", self.addr(i))
    }

    /// Every node's URL, node `first` first (a cluster client's startup nodes).
    pub fn urls_from(&self, first: usize) -> Vec<String> {
        let mut u: Vec<String> = (1..=NODES).map(|i| self.url(i)).collect();
        u.rotate_left(first - 1);
        u
    }

    /// The Pinnacle cluster, for fault injection.
    pub fn pinnacle(&mut self) -> Option<&mut Cluster> {
        match self {
            Target::Pinnacle(c) => Some(c),
            Target::Redis(_) => None,
        }
    }

    /// Waits until every live node answers `cluster_state:ok` and the same CLUSTER SLOTS naming
    /// `want` distinct masters; returns that map. Panics (a failure, never a skip) unless at
    /// least 2 masters own slots by the deadline: a single master is not a multi-shard cluster.
    pub fn spread(&self, want: usize) -> Vec<Range> {
        let live: Vec<SocketAddr> = match self {
            Target::Pinnacle(c) => c.live().into_iter().map(|i| c.addr(i)).collect(),
            Target::Redis(_) => self.addrs(),
        };
        let deadline = Instant::now() + SPREAD_TIMEOUT;
        let mut last: String;
        loop {
            match agreed_slots(&live) {
                Ok(r) if masters(&r).len() >= want => return r,
                Ok(r) if Instant::now() > deadline && masters(&r).len() >= 2 => {
                    eprintln!(
                        "WARNING: {} master(s) after {SPREAD_TIMEOUT:?}, expected {want}",
                        masters(&r).len()
                    );
                    return r;
                }
                Ok(r) => last = format!("{} master(s): {r:?}", masters(&r).len()),
                Err(e) => last = e,
            }
            assert!(
                Instant::now() <= deadline,
                "no multi-shard topology within {SPREAD_TIMEOUT:?} (need >= 2 masters owning slots, all nodes agreeing, cluster_state:ok): {last}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// CLUSTER SLOTS of every node in `addrs` once they all say `cluster_state:ok` and agree.
fn agreed_slots(addrs: &[SocketAddr]) -> Result<Vec<Range>, String> {
    let mut first: Option<Vec<Range>> = None;
    for a in addrs {
        let info = text(&call(*a, &["CLUSTER", "INFO"])?)?;
        if !info.starts_with("cluster_state:ok\r\n") {
            return Err(format!("{a}: {}", info.lines().next().unwrap_or("")));
        }
        let r = parse_slots(&call(*a, &["CLUSTER", "SLOTS"])?)?;
        match &first {
            None => first = Some(r),
            Some(f) if *f != r => return Err(format!("nodes disagree: {f:?} vs {a}: {r:?}")),
            Some(_) => {}
        }
    }
    first.ok_or_else(|| "no node".to_string())
}

/// One command on a fresh connection to `addr`.
pub fn call(addr: SocketAddr, args: &[&str]) -> Result<Value, String> {
    RawConn::connect_addr(addr, IO_TIMEOUT)
        .and_then(|mut c| c.call_value(args))
        .map_err(|e| format!("{addr} {args:?}: {e}"))
}

/// The text of a bulk or verbatim reply (verbatim without its `txt:` prefix).
pub fn text(v: &Value) -> Result<String, String> {
    match v {
        Value::Bulk(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::Verbatim(b) => {
            Ok(String::from_utf8_lossy(b.strip_prefix(b"txt:").unwrap_or(b)).into_owned())
        }
        other => Err(format!("expected a string, got {other:?}")),
    }
}

/// Parses CLUSTER SLOTS (RESP2 or RESP3) into ranges, checking the per-node shape clients need:
/// integer start/end, then nodes of exactly `[ip bulk, port int, id bulk(40), map/array]`.
pub fn parse_slots(v: &Value) -> Result<Vec<Range>, String> {
    let ranges = v.as_list().ok_or_else(|| format!("CLUSTER SLOTS: {v:?}"))?;
    ranges
        .iter()
        .map(|r| {
            let bad = || format!("CLUSTER SLOTS range: {r:?}");
            let items = r.as_list().ok_or_else(bad)?;
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(master)) =
                (items.first(), items.get(1), items.get(2))
            else {
                return Err(bad());
            };
            let node = master.as_list().ok_or_else(bad)?;
            let [Value::Bulk(ip), Value::Int(port), Value::Bulk(id), _extra] = node else {
                return Err(bad());
            };
            Ok(Range {
                start: u16::try_from(*start).map_err(|_| bad())?,
                end: u16::try_from(*end).map_err(|_| bad())?,
                ip: String::from_utf8_lossy(ip).into_owned(),
                port: u16::try_from(*port).map_err(|_| bad())?,
                id: String::from_utf8_lossy(id).into_owned(),
            })
        })
        .collect()
}

/// CRC16-XMODEM hash slot with the `{tag}` rule (redis-wire §1).
pub fn slot(key: &[u8]) -> u16 {
    let mut k = key;
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                k = &key[open + 1..open + 1 + len];
            }
        }
    }
    let mut crc: u16 = 0;
    for &b in k {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc & 0x3fff
}

/// A key named `<prefix><n>` whose slot lies in `[start, end]`.
pub fn key_in(prefix: &str, start: u16, end: u16) -> String {
    (0u32..)
        .map(|n| format!("{prefix}{n}"))
        .find(|k| (start..=end).contains(&slot(k.as_bytes())))
        .unwrap_or_default()
}

/// A redis-rs cluster client whose startup nodes are `urls`, with retries sized for a Raft
/// election (redis-rs's default minimum wait between retries is 1.28 s).
pub fn rs_client(urls: &[String], proto: ProtocolVersion) -> ClusterClient {
    ClusterClient::builder(urls.to_vec())
        .use_protocol(proto)
        .retries(30)
        .min_retry_wait(50)
        .max_retry_wait(1000)
        .retry_wait_formula(20, 2)
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(5))
        .build()
        .expect("redis-rs ClusterClient")
}

/// Runs a client script and returns its output; panics with stdout/stderr if it fails.
pub fn run_script(what: &str, cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `python3 tests/py/cluster_clients.py <args>`.
pub fn python(args: &[String]) -> Command {
    let mut c = Command::new("python3");
    c.arg(manifest().join("tests/py/cluster_clients.py"))
        .args(args);
    c
}

/// `node <dir>/cluster_clients.js <args>` with ioredis installed beside the script (see
/// [`ioredis_dir`]).
pub fn node(args: &[String]) -> Command {
    let mut c = Command::new("node");
    c.arg(ioredis_dir().join("cluster_clients.js")).args(args);
    c
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A folder under cargo's per-target scratch dir holding tests/js (script, package.json,
/// package-lock.json) and `node_modules/ioredis`, installed once with `npm ci` (the lock pins
/// ioredis). Files are re-copied when they changed, under a lock: two tests of this file use it
/// at the same time, and `npm ci` starts by deleting `node_modules`.
pub fn ioredis_dir() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cluster-clients-js");
    std::fs::create_dir_all(&dir).expect("create js dir");
    let src = manifest().join("tests/js");
    let mut lock_changed = false;
    for f in ["cluster_clients.js", "package.json", "package-lock.json"] {
        let want = std::fs::read(src.join(f)).unwrap_or_else(|e| panic!("read tests/js/{f}: {e}"));
        if std::fs::read(dir.join(f)).ok().as_ref() != Some(&want) {
            std::fs::write(dir.join(f), &want).unwrap_or_else(|e| panic!("copy {f}: {e}"));
            lock_changed |= f != "cluster_clients.js";
        }
    }
    if lock_changed || !dir.join("node_modules/ioredis/package.json").exists() {
        run_script(
            "npm ci (ioredis)",
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir),
        );
    }
    dir
}

/// A real Redis Cluster of `n` masters (no replicas) on 127.0.0.1, for `REDIS_TESTS_SUBJECT=redis`.
pub struct RedisCluster {
    children: Vec<Child>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    fn start(n: usize) -> RedisCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        // Built first so that Drop kills whatever started if a later step panics.
        let mut rc = RedisCluster {
            children: Vec::new(),
            ports: Vec::new(),
            _dir: dir,
        };
        while rc.ports.len() < n {
            let p = free_port().expect("free port");
            if !rc.ports.contains(&p) {
                rc.ports.push(p);
            }
        }
        for &p in &rc.ports.clone() {
            let d = root.join(p.to_string());
            std::fs::create_dir_all(&d).expect("node dir");
            let log = File::create(d.join("log")).expect("log");
            let child = Command::new("redis-server")
                .args(["--port", &p.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&d)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("spawn redis-server");
            rc.children.push(child);
        }
        for &p in &rc.ports {
            wait_ping(SocketAddr::from(([127, 0, 0, 1], p)));
        }
        let nodes: Vec<String> = rc.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        run_script(
            "redis-cli --cluster create",
            Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&nodes)
                .arg("--cluster-yes"),
        );
        rc
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_ping(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(call(addr, &["PING"]), Ok(Value::Simple(ref s)) if s == b"PONG") {
        assert!(Instant::now() < deadline, "{addr} never answered PING");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The summary line a `write`-mode client script prints.
#[derive(Debug)]
pub struct WriterReport {
    pub name: String,
    pub prefix: String,
    pub attempts: u64,
    pub acked: Vec<u64>,
    pub error_count: u64,
    pub errors: Vec<String>,
    /// Writes the writer itself retried after a connection error its client gave up on.
    pub reconnects: u64,
    /// Longest time (s) from such a connection error to the next acknowledged write.
    pub max_outage: f64,
    /// Slowest acknowledged write (s), the client's own retries included.
    pub max_latency: f64,
}

/// Reads a script writer's acknowledged indices from `ackfile` and its JSON summary from stdout
/// (only the numbers and messages are needed, so a tiny field scan does instead of a JSON crate).
pub fn script_report(name: &str, prefix: &str, out: &Output, ackfile: &Path) -> WriterReport {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let float = |field: &str| -> f64 {
        line.split(&format!("\"{field}\":"))
            .nth(1)
            .and_then(|r| r.trim_start().split([',', '}']).next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name}: no {field} in {line:?}"))
    };
    let num = |field: &str| float(field) as u64;
    let acked: Vec<u64> = std::fs::read_to_string(ackfile)
        .unwrap_or_else(|e| panic!("{name}: ack file: {e}"))
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().expect("ack index"))
        .collect();
    assert_eq!(
        acked.len() as u64,
        num("acked"),
        "{name}: ack file vs summary"
    );
    let errors = line
        .split("\"errors\":")
        .nth(1)
        .map(|r| vec![r.to_string()])
        .unwrap_or_default();
    WriterReport {
        name: name.into(),
        prefix: prefix.into(),
        attempts: num("attempts"),
        acked,
        error_count: num("error_count"),
        errors,
        reconnects: num("reconnects"),
        max_outage: float("max_outage"),
        max_latency: float("max_latency"),
    }
}
