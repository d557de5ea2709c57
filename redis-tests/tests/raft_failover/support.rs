//! Helpers of `raft_failover.rs`: reply helpers, leader-finding writes, convergence checks and
//! a background writer of unique keys.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use redis_tests::cluster::{Cluster, LeaderClient, Outcome};
use redis_tests::frame::{self, Value};

pub const ELECTION: Duration = Duration::from_secs(10);
pub const CONVERGE: Duration = Duration::from_secs(20);

/// A reply as readable text for assertion messages.
pub fn show(v: &Value) -> String {
    match v {
        Value::Simple(b) => format!("+{}", String::from_utf8_lossy(b)),
        Value::Error(b) => format!("-{}", String::from_utf8_lossy(b)),
        Value::Bulk(b) => format!("{:?}", String::from_utf8_lossy(b)),
        other => format!("{other:?}"),
    }
}

pub fn bulk(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Bulk(b) => Some(b),
        _ => None,
    }
}

pub fn error_text(v: &Value) -> Option<String> {
    match v {
        Value::Error(e) => Some(String::from_utf8_lossy(e).into_owned()),
        _ => None,
    }
}

/// The tests run one at a time: three-node clusters side by side on two cores starve each
/// other's heartbeats and turn every test into an election storm.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// `SET key value` through a leader-finding client: retried after an indeterminate outcome
/// (SET of the same value is idempotent), must end acknowledged.
pub fn write(client: &mut LeaderClient, key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.call(&["SET", key, value]) {
            o if o.is_ok() => return,
            Outcome::Indeterminate(e) if Instant::now() < deadline => {
                eprintln!("SET {key}: indeterminate ({e}), retrying");
            }
            other => panic!("SET {key}: {other:?}"),
        }
    }
}

/// The client addresses of every node but `except`.
pub fn others(c: &Cluster, except: usize) -> Vec<SocketAddr> {
    c.ids()
        .into_iter()
        .filter(|&i| i != except)
        .map(|i| c.addr(i))
        .collect()
}

/// Every node id but `except`.
pub fn others_ids(c: &Cluster, except: usize) -> Vec<usize> {
    c.ids().into_iter().filter(|&i| i != except).collect()
}

/// `SET key value` through a fresh leader-finding client; returns the node that acknowledged
/// it (the leader). A just-elected leader may refuse writes until its first entry commits.
pub fn write_leader(c: &Cluster, key: &str, value: &str) -> usize {
    let mut client = c.client();
    write(&mut client, key, value);
    let addr = client.connected_to().expect("connected");
    c.id_of(addr).expect("a node's address")
}

pub fn get_on(c: &Cluster, i: usize, key: &str) -> Value {
    c.call(i, &["GET", key]).expect("GET")
}

/// Every live node applied the same index and holds the same keys (followers serve SCAN and
/// DBSIZE locally); returns the key set.
pub fn assert_nodes_agree(c: &Cluster) -> BTreeSet<Vec<u8>> {
    let applied = c.wait_converged(CONVERGE).expect("converge");
    let live = c.live();
    let first = live[0];
    let keys = c.keys(first).expect("scan");
    let size = c.dbsize(first).expect("dbsize");
    assert_eq!(size as usize, keys.len(), "node{first}: DBSIZE vs SCAN");
    for &i in &live[1..] {
        let other = c.keys(i).expect("scan");
        if other != keys {
            let missing: Vec<_> = keys
                .difference(&other)
                .take(5)
                .map(|k| String::from_utf8_lossy(k))
                .collect();
            let extra: Vec<_> = other
                .difference(&keys)
                .take(5)
                .map(|k| String::from_utf8_lossy(k))
                .collect();
            let states: Vec<String> = c
                .ids()
                .into_iter()
                .map(|n| match c.info(n) {
                    Ok(inf) => format!(
                        "node{n}: {} term {} last_log {} commit {} applied {} snapshot {}",
                        inf.role,
                        inf.term,
                        inf.fields
                            .get("raft_last_log_index")
                            .map_or("?", String::as_str),
                        inf.commit_index,
                        inf.applied_index,
                        inf.fields
                            .get("raft_snapshot_index")
                            .map_or("?", String::as_str),
                    ),
                    Err(e) => format!("node{n}: {e}"),
                })
                .collect();
            panic!(
                "node{i} keys differ from node{first} at applied index {applied}: missing {missing:?}, extra {extra:?}\n{}",
                states.join("\n")
            );
        }
        assert_eq!(c.dbsize(i).expect("dbsize"), size, "node{i} DBSIZE");
    }
    keys
}

/// Waits until nodes `a` and `b` hold the same keys at the same applied index of at least
/// `min_index` (writes must be paused: with entries still applying, the two never meet at one
/// index); returns that index and the key count, or why not within `timeout`.
pub fn wait_same_state(
    c: &Cluster,
    a: usize,
    b: usize,
    min_index: u64,
    timeout: Duration,
) -> Result<(u64, usize), String> {
    let deadline = Instant::now() + timeout;
    let applied = |i: usize| c.info(i).map(|inf| inf.applied_index).unwrap_or(0);
    loop {
        let last: String;
        let before = (applied(a), applied(b));
        if before.0 == before.1 && before.0 >= min_index {
            // The keys are read between two equal index readings, so both sets are at `before`.
            match (c.keys(a), c.keys(b)) {
                (Ok(ka), Ok(kb)) if (applied(a), applied(b)) == before => {
                    if ka == kb {
                        return Ok((before.0, ka.len()));
                    }
                    let diff: Vec<_> = ka
                        .symmetric_difference(&kb)
                        .take(5)
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect();
                    last = format!(
                        "at applied index {}: {} vs {} keys, e.g. {diff:?}",
                        before.0,
                        ka.len(),
                        kb.len()
                    );
                }
                (Err(e), _) | (_, Err(e)) => last = format!("SCAN: {e}"),
                _ => last = "entries applied during the comparison".into(),
            }
        } else {
            last = format!("applied indices {before:?}, want equal and >= {min_index}");
        }
        if Instant::now() > deadline {
            return Err(last);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Pipelined `GET`s on the leader: every key must hold exactly its expected value.
pub fn assert_values_on_leader(c: &Cluster, expect: &BTreeMap<String, String>) {
    let l = c.leader().expect("leader");
    let mut conn = c.conn(l).expect("conn");
    let pairs: Vec<_> = expect.iter().collect();
    for chunk in pairs.chunks(200) {
        let mut batch = Vec::new();
        for (k, _) in chunk {
            batch.extend_from_slice(&frame::encode_command(&["GET", k.as_str()]));
        }
        conn.send(&batch).expect("send");
        for (k, v) in chunk {
            let r = frame::parse_one(&conn.read_reply().expect("reply")).expect("parse");
            assert_eq!(
                bulk(&r),
                Some(v.as_bytes()),
                "acknowledged write {k}={v} is missing on leader node{l}: {}",
                show(&r)
            );
        }
    }
}

/// A writer of unique keys through a [`LeaderClient`]: records what was acknowledged and what
/// was merely attempted (indeterminate), and when and by which node each write was acknowledged
/// (`acks`, cleared by the kill loop every trial so it stays small).
pub struct Writer {
    pub acked: Arc<Mutex<BTreeMap<String, String>>>,
    pub attempted: Arc<Mutex<BTreeSet<String>>>,
    pub acks: Arc<Mutex<Vec<(Instant, SocketAddr)>>>,
    pub stop: Arc<AtomicBool>,
    /// While set, the writer sends nothing new (so the nodes can settle on one state).
    pub pause: Arc<AtomicBool>,
    pub handle: Option<thread::JoinHandle<(u64, u64, u64)>>,
    pub counts: (u64, u64, u64),
}

impl Writer {
    pub fn start(name: &str, addrs: Vec<SocketAddr>) -> Writer {
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let attempted = Arc::new(Mutex::new(BTreeSet::new()));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(AtomicBool::new(false));
        let (a, t, s, name) = (
            acked.clone(),
            attempted.clone(),
            stop.clone(),
            name.to_string(),
        );
        let (log, p) = (acks.clone(), pause.clone());
        let handle = thread::spawn(move || {
            let mut client = LeaderClient::new(addrs)
                .reply_timeout(Duration::from_secs(5))
                .retry_for(Duration::from_secs(2));
            let (mut ok, mut unknown, mut failed) = (0u64, 0u64, 0u64);
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) {
                if p.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let (k, v) = (format!("{name}:{n}"), format!("{name}-v{n}"));
                n += 1;
                t.lock().expect("lock").insert(k.clone());
                match client.call(&["SET", k.as_str(), v.as_str()]) {
                    o if o.is_ok() => {
                        let at = Instant::now();
                        if let Some(by) = client.connected_to() {
                            log.lock().expect("lock").push((at, by));
                        }
                        a.lock().expect("lock").insert(k, v);
                        ok += 1;
                    }
                    Outcome::Indeterminate(_) => unknown += 1,
                    Outcome::Unavailable(_) => failed += 1,
                    Outcome::Reply(r) => panic!("SET {k}: unexpected reply {}", show(&r)),
                }
            }
            (ok, unknown, failed)
        });
        Writer {
            acked,
            attempted,
            acks,
            stop,
            pause,
            handle: Some(handle),
            counts: (0, 0, 0),
        }
    }

    /// The first acknowledgement after `since` by a node other than `not_by`.
    pub fn first_ack(&self, since: Instant, not_by: SocketAddr) -> Option<Instant> {
        let acks = self.acks.lock().expect("lock");
        acks.iter()
            .find(|(at, by)| *at > since && *by != not_by)
            .map(|(at, _)| *at)
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().expect("lock").len()
    }

    /// Stops the writer; returns (acked, indeterminate, unavailable) counts.
    pub fn finish(&mut self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            self.counts = h.join().expect("writer panicked");
        }
        self.counts
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Stops the writers, then checks: at least `min_acked` acknowledged writes (not vacuous), every
/// node holds the same keys, every acknowledged write is on the leader with its value, and no
/// key exists that no writer attempted.
pub fn finish_writers(c: &Cluster, writers: &mut [Writer], min_acked: usize) {
    let mut acked = BTreeMap::new();
    let mut attempted = BTreeSet::new();
    for w in writers.iter_mut() {
        let (ok, unknown, failed) = w.finish();
        eprintln!("writer: {ok} acknowledged, {unknown} indeterminate, {failed} unavailable");
        acked.extend(w.acked.lock().expect("lock").clone());
        attempted.extend(w.attempted.lock().expect("lock").iter().cloned());
    }
    assert!(acked.len() >= min_acked, "too few writes: {}", acked.len());
    let keys = assert_nodes_agree(c);
    assert_values_on_leader(c, &acked);
    for k in &keys {
        let k = String::from_utf8_lossy(k);
        assert!(attempted.contains(k.as_ref()), "key {k} was never written");
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}
