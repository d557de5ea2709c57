//! Process-wide state: the keyspace, configuration, client registry, counters, slow log,
//! MONITOR feed and the shutdown signal.

use super::client::{Client, ClientHandle};
use super::table::table;
use crate::config::Config;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, Notify};

/// Process-wide state shared by every connection.
pub struct Server {
    /// The keyspace on the storage engine (in Raft mode: shard 0's).
    pub db: crate::storage::Db,
    /// One keyspace per shard (Raft mode); just `db` on a single node.
    pub dbs: Vec<crate::storage::Db>,
    /// Run-time configuration (`CONFIG GET/SET`).
    pub config: Config,
    /// This node's 40-hex cluster node id (persisted in the data dir).
    pub node_id: String,
    /// This node's 40-hex shard id (CLUSTER MYSHARDID, CLUSTER SHARDS).
    pub shard_id: String,
    /// Connected clients by id.
    pub clients: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
    next_client_id: AtomicU64,
    /// Counters for INFO.
    pub stats: Stats,
    /// SLOWLOG entries.
    pub slowlog: SlowLog,
    monitor_count: AtomicUsize,
    monitor_tx: broadcast::Sender<Bytes>,
    /// Start time.
    pub started: Instant,
    /// Random id of this process run (INFO run_id).
    pub run_id: String,
    /// The `--config` file the process started with (INFO config_file).
    pub config_file: Option<std::path::PathBuf>,
    shutdown: AtomicBool,
    shutdown_notify: Notify,
    /// Pub/sub channels, patterns and shard channels with their subscribers.
    pub pubsub: crate::pubsub::PubSub,
    /// Single node: every request runs holding this shared, EXEC exclusively, so nothing
    /// runs in the middle of a transaction.
    pub exec_gate: parking_lot::RwLock<()>,
    /// Clients blocked on keys (BLPOP and friends), woken by writes that fill them.
    pub waiters: Arc<super::blocking::KeyWaiters>,
    /// Raft mode (`--cluster-peers`): set once at start-up, before clients connect.
    pub replication: std::sync::OnceLock<Arc<crate::replication::Replication>>,
    /// ACL users and the ACL LOG (node-local, never replicated).
    pub acl: crate::acl::Acl,
}

impl Server {
    /// State for a node serving `db` with `config`.
    pub fn new(db: crate::storage::Db, config: Config, ids: NodeIds) -> Server {
        Server::with_shards(vec![db], config, ids)
    }

    /// State for a node serving one keyspace per shard (`dbs` is never empty).
    pub fn with_shards(dbs: Vec<crate::storage::Db>, config: Config, ids: NodeIds) -> Server {
        let db = dbs[0].clone();
        let (monitor_tx, _) = broadcast::channel(4096);
        let slowlog = SlowLog::default();
        let config_file = config.config_file().cloned();
        let acl = crate::acl::Acl::new(
            config.requirepass(),
            config
                .get("aclfile")
                .filter(|f| !f.is_empty())
                .map(Into::into),
        );
        slowlog.set_max_len(config.get_i64("slowlog-max-len").unwrap_or(128).max(0) as usize);
        let waiters = Arc::new(super::blocking::KeyWaiters::default());
        for d in &dbs {
            let w = waiters.clone();
            d.set_write_listener(Box::new(move |keys| w.notify(keys)));
        }
        Server {
            exec_gate: parking_lot::RwLock::new(()),
            waiters,
            db,
            dbs,
            config,
            node_id: ids.node_id,
            shard_id: ids.shard_id,
            clients: Mutex::new(BTreeMap::new()),
            next_client_id: AtomicU64::new(1),
            stats: Stats::new(table().entries.len()),
            slowlog,
            monitor_count: AtomicUsize::new(0),
            monitor_tx,
            started: Instant::now(),
            run_id: random_hex40(),
            config_file,
            shutdown: AtomicBool::new(false),
            shutdown_notify: Notify::new(),
            pubsub: crate::pubsub::PubSub::default(),
            replication: std::sync::OnceLock::new(),
            acl,
        }
    }

    /// The keyspace of shard `i` (shard 0's if there is no such shard).
    pub fn shard_db(&self, i: usize) -> &crate::storage::Db {
        self.dbs.get(i).unwrap_or(&self.db)
    }

    /// The shard holding `key` (0 on a single node).
    pub fn shard_of_key(&self, key: &[u8]) -> usize {
        self.shard_of_slot(crate::storage::slot::key_slot(key))
    }

    /// The shard owning `slot` (0 on a single node).
    pub fn shard_of_slot(&self, slot: u16) -> usize {
        match self.replication.get() {
            Some(r) => r.shard_of(slot),
            None => 0,
        }
    }

    /// Registers a new connection and returns its client state.
    pub fn register_client(&self, addr: String, laddr: String) -> Client {
        let id = self.next_client_id.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(ClientHandle::new(id, addr, laddr));
        handle.touch();
        self.clients.lock().insert(id, handle.clone());
        let authed = !self.acl_auth_required();
        Client::new(handle, authed)
    }

    /// True if connections must AUTH (the `default` user is off or has passwords), after
    /// applying a `CONFIG SET requirepass` to the default user.
    pub fn acl_auth_required(&self) -> bool {
        self.acl.sync_requirepass(self.config.requirepass());
        self.acl.auth_required()
    }

    /// Removes a closed connection.
    pub fn unregister_client(&self, client: &Client) {
        self.clients.lock().remove(&client.id);
        self.pubsub.remove_client(client);
        if client.monitor {
            self.monitor_count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Number of connected clients.
    pub fn client_count(&self) -> usize {
        self.clients.lock().len()
    }

    /// Asks the process to shut down (SHUTDOWN).
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.shutdown_notify.notify_waiters();
        for c in self.clients.lock().values() {
            c.kill();
        }
    }

    /// True once shutdown was requested.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown is requested.
    pub async fn wait_shutdown(&self) {
        loop {
            let notified = self.shutdown_notify.notified();
            if self.shutting_down() {
                return;
            }
            notified.await;
        }
    }

    /// Turns `client` into a MONITOR and returns its feed.
    pub fn add_monitor(&self, client: &mut Client) -> broadcast::Receiver<Bytes> {
        if !client.monitor {
            client.monitor = true;
            self.monitor_count.fetch_add(1, Ordering::Relaxed);
        }
        self.monitor_tx.subscribe()
    }

    /// Ends MONITOR mode for `client` (RESET); the connection drops its feed.
    pub fn remove_monitor(&self, client: &mut Client) {
        if client.monitor {
            client.monitor = false;
            client.monitor_rx = None;
            self.monitor_count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// True if any MONITOR is connected (checked before formatting a feed line).
    pub fn monitors_active(&self) -> bool {
        self.monitor_count.load(Ordering::Relaxed) > 0
    }

    /// Sends `args` to every MONITOR in Redis's format:
    /// `+1339518083.107412 [0 127.0.0.1:60866] "keys" "*"`.
    pub fn feed_monitors(&self, client: &Client, args: &[Bytes]) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = format!(
            "+{}.{:06} [0 {}]",
            now.as_secs(),
            now.subsec_micros(),
            client.handle.addr
        );
        for a in args {
            line.push(' ');
            line.push_str(&repr(a));
        }
        line.push_str("\r\n");
        // No receivers is fine: the last monitor may just have left.
        let _ = self.monitor_tx.send(Bytes::from(line));
    }

    /// Unix time in milliseconds.
    pub fn unix_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A node's stable identifiers.
#[derive(Clone, Debug)]
pub struct NodeIds {
    /// 40 lower-case hex characters.
    pub node_id: String,
    /// 40 lower-case hex characters.
    pub shard_id: String,
}

impl NodeIds {
    /// Reads the ids from `<dir>/node-id`, creating them on first start, so the cluster node
    /// id survives restarts. A corrupt file is an error, never silently replaced.
    pub fn load_or_create(dir: &std::path::Path) -> std::io::Result<NodeIds> {
        let path = dir.join("node-id");
        let valid = |s: &str| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut parts = text.split_whitespace();
                match (parts.next(), parts.next()) {
                    (Some(n), Some(s)) if valid(n) && valid(s) => Ok(NodeIds {
                        node_id: n.to_ascii_lowercase(),
                        shard_id: s.to_ascii_lowercase(),
                    }),
                    _ => Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is corrupt; expected two 40-hex ids", path.display()),
                    )),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ids = NodeIds {
                    node_id: random_hex40(),
                    shard_id: random_hex40(),
                };
                // Write-then-rename so a crash never leaves a half-written id.
                let tmp = dir.join("node-id.tmp");
                std::fs::write(&tmp, format!("{} {}\n", ids.node_id, ids.shard_id))?;
                std::fs::rename(&tmp, &path)?;
                Ok(ids)
            }
            Err(e) => Err(e),
        }
    }
}

/// 40 random lower-case hex characters (node ids, run ids), from the OS's random source.
pub fn random_hex40() -> String {
    use std::io::Read;
    let mut buf = [0u8; 20];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if filled.is_err() {
        // No OS randomness: mix the clock and pid, which is unique enough for an id.
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ ((std::process::id() as u128) << 64);
        let mut x = seed as u64 ^ (seed >> 64) as u64;
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Redis's `sdscatrepr`: a double-quoted string with C escapes.
pub fn repr(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() + 2);
    s.push('"');
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            7 => s.push_str("\\a"),
            8 => s.push_str("\\b"),
            c if c.is_ascii_graphic() || c == b' ' => s.push(c as char),
            c => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('"');
    s
}

/// Per-command counters (INFO commandstats) and server totals.
pub struct Stats {
    cmds: Vec<CmdStat>,
    /// Connections accepted.
    pub connections_received: AtomicU64,
    /// Connections refused by `maxclients`.
    pub rejected_connections: AtomicU64,
    /// Bytes read from clients.
    pub net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub net_output_bytes: AtomicU64,
    /// Error replies sent.
    pub error_replies: AtomicU64,
    /// Sampled rates: ops/s, input bytes/s, output bytes/s (INFO instantaneous_*).
    rates: Mutex<RateSampler>,
    /// Error replies by their first word (`ERR`, `WRONGTYPE`), for INFO errorstats.
    errors_by_code: Mutex<BTreeMap<String, u64>>,
    /// Run-time histogram per command (INFO latencystats, `/metrics`).
    pub latency: crate::metrics::latency::Latencies,
}

/// Counters of one command.
#[derive(Default)]
pub struct CmdStat {
    /// Times run.
    pub calls: AtomicU64,
    /// Total run time in microseconds.
    pub usec: AtomicU64,
    /// Refused before running (arity, auth, routing).
    pub rejected: AtomicU64,
    /// Ran and replied with an error.
    pub failed: AtomicU64,
}

impl Stats {
    fn new(n: usize) -> Stats {
        Stats {
            cmds: (0..n).map(|_| CmdStat::default()).collect(),
            connections_received: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
            error_replies: AtomicU64::new(0),
            errors_by_code: Mutex::new(BTreeMap::new()),
            rates: Mutex::new(RateSampler::default()),
            latency: crate::metrics::latency::Latencies::new(n),
        }
    }

    /// Takes one sample of the counters; call every ~100 ms (Redis's `trackInstantaneousMetric`).
    pub fn sample_rates(&self) {
        let now = Instant::now();
        let totals = [
            self.commands_processed(),
            self.net_input_bytes.load(Ordering::Relaxed),
            self.net_output_bytes.load(Ordering::Relaxed),
        ];
        self.rates.lock().sample(now, totals);
    }

    /// (ops/s, input bytes/s, output bytes/s), averaged over the last samples.
    pub fn instantaneous(&self) -> [f64; 3] {
        self.rates.lock().average()
    }

    /// Counts an error reply whose text is `msg` (`ERR ...`).
    pub fn record_error(&self, msg: &[u8]) {
        self.error_replies.fetch_add(1, Ordering::Relaxed);
        let code = msg.split(|&b| b == b' ').next().unwrap_or_default();
        let code = String::from_utf8_lossy(code).into_owned();
        *self.errors_by_code.lock().entry(code).or_insert(0) += 1;
    }

    /// Error counts by code.
    pub fn errors_by_code(&self) -> Vec<(String, u64)> {
        self.errors_by_code
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Commands run: the sum of every command's calls (one shared counter bumped per command
    /// was a cache line both worker threads wrote for every request).
    pub fn commands_processed(&self) -> u64 {
        self.cmds
            .iter()
            .map(|s| s.calls.load(Ordering::Relaxed))
            .sum()
    }

    /// Records one run of command `idx`.
    pub fn record(&self, idx: usize, usec: u64, failed: bool) {
        if let Some(s) = self.cmds.get(idx) {
            s.calls.fetch_add(1, Ordering::Relaxed);
            s.usec.fetch_add(usec, Ordering::Relaxed);
            if failed {
                s.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts a failure of command `idx` whose call was already recorded (a write of a
    /// pipelined run: its error reply is known only once the run is applied).
    pub fn mark_failed(&self, idx: usize) {
        if let Some(s) = self.cmds.get(idx) {
            s.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a command refused before it ran.
    pub fn reject(&self, idx: usize) {
        if let Some(s) = self.cmds.get(idx) {
            s.rejected.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counters of command `idx`.
    pub fn cmd(&self, idx: usize) -> Option<&CmdStat> {
        self.cmds.get(idx)
    }

    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        for s in &self.cmds {
            s.calls.store(0, Ordering::Relaxed);
            s.usec.store(0, Ordering::Relaxed);
            s.rejected.store(0, Ordering::Relaxed);
            s.failed.store(0, Ordering::Relaxed);
        }
        for c in [
            &self.connections_received,
            &self.rejected_connections,
            &self.net_input_bytes,
            &self.net_output_bytes,
            &self.error_replies,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.errors_by_code.lock().clear();
        self.latency.reset();
    }
}

/// Samples counters and averages their per-second rate over the last 16 samples.
#[derive(Default)]
struct RateSampler {
    last: Option<(Instant, [u64; 3])>,
    samples: VecDeque<[f64; 3]>,
}

impl RateSampler {
    fn sample(&mut self, now: Instant, totals: [u64; 3]) {
        if let Some((at, prev)) = self.last {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                let mut rate = [0.0; 3];
                for i in 0..3 {
                    rate[i] = totals[i].saturating_sub(prev[i]) as f64 / secs;
                }
                self.samples.push_back(rate);
                if self.samples.len() > 16 {
                    self.samples.pop_front();
                }
            }
        }
        self.last = Some((now, totals));
    }

    fn average(&self) -> [f64; 3] {
        let n = self.samples.len().max(1) as f64;
        let mut sum = [0.0; 3];
        for s in &self.samples {
            for i in 0..3 {
                sum[i] += s[i];
            }
        }
        sum.map(|v| v / n)
    }
}

/// One SLOWLOG entry.
#[derive(Clone)]
pub struct SlowEntry {
    /// Increasing id.
    pub id: u64,
    /// Unix seconds when it ran.
    pub time: u64,
    /// Duration in microseconds.
    pub usec: u64,
    /// The arguments, shortened as Redis does.
    pub args: Vec<Bytes>,
    /// Client address.
    pub addr: String,
    /// Client name.
    pub name: Bytes,
}

/// The slow log (newest first).
#[derive(Default)]
#[allow(clippy::len_without_is_empty)]
pub struct SlowLog {
    inner: Mutex<(u64, VecDeque<SlowEntry>)>,
    max_len: AtomicUsize,
}

const SLOWLOG_ARGS: usize = 32;
const SLOWLOG_ARG_LEN: usize = 128;

impl SlowLog {
    /// Records a slow command (Redis keeps at most 32 args of at most 128 bytes each).
    pub fn push(&self, args: &[Bytes], usec: u64, client: &Client) {
        let max = self.max_len.load(Ordering::Relaxed);
        let mut kept: Vec<Bytes> = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if i == SLOWLOG_ARGS - 1 && args.len() > SLOWLOG_ARGS {
                kept.push(Bytes::from(format!(
                    "... ({} more arguments)",
                    args.len() - i
                )));
                break;
            }
            if a.len() > SLOWLOG_ARG_LEN {
                let mut v = a[..SLOWLOG_ARG_LEN].to_vec();
                v.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - SLOWLOG_ARG_LEN).as_bytes(),
                );
                kept.push(Bytes::from(v));
            } else {
                kept.push(a.clone());
            }
        }
        let mut g = self.inner.lock();
        let id = g.0;
        g.0 += 1;
        g.1.push_front(SlowEntry {
            id,
            time: Server::unix_ms() / 1000,
            usec,
            args: kept,
            addr: client.handle.addr.clone(),
            name: client.name.clone().unwrap_or_default(),
        });
        while g.1.len() > max {
            g.1.pop_back();
        }
    }

    /// Sets the maximum length (`slowlog-max-len`).
    pub fn set_max_len(&self, n: usize) {
        self.max_len.store(n, Ordering::Relaxed);
        let mut g = self.inner.lock();
        while g.1.len() > n {
            g.1.pop_back();
        }
    }

    /// The newest `count` entries.
    pub fn get(&self, count: usize) -> Vec<SlowEntry> {
        self.inner.lock().1.iter().take(count).cloned().collect()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.lock().1.len()
    }

    /// SLOWLOG RESET.
    pub fn reset(&self) {
        self.inner.lock().1.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::{NodeIds, RateSampler};

    #[test]
    fn node_ids_persist_and_corruption_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = NodeIds::load_or_create(dir.path()).expect("create");
        assert_eq!(a.node_id.len(), 40);
        assert_ne!(a.node_id, a.shard_id);
        let b = NodeIds::load_or_create(dir.path()).expect("reload");
        assert_eq!((a.node_id, a.shard_id), (b.node_id, b.shard_id));
        std::fs::write(dir.path().join("node-id"), "garbage\n").expect("write");
        assert!(NodeIds::load_or_create(dir.path()).is_err());
    }
    use std::time::{Duration, Instant};

    #[test]
    fn rates_average_over_samples() {
        let mut r = RateSampler::default();
        let t0 = Instant::now();
        r.sample(t0, [0, 0, 0]);
        r.sample(t0 + Duration::from_millis(100), [10, 1000, 0]);
        r.sample(t0 + Duration::from_millis(200), [30, 1000, 0]);
        let [ops, input, _] = r.average();
        assert!((ops - 150.0).abs() < 1e-6, "{ops}");
        assert!((input - 5000.0).abs() < 1e-6, "{input}");
    }
}
