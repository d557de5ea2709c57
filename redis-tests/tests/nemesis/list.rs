//! MULTI/EXEC list-append workload (Jepsen's Redis-Raft workload): each transaction is 1–3
//! `RPUSH k v` (unique v) / `LRANGE k 0 -1` on keys sharing one hash tag, sent pipelined as
//! `MULTI … EXEC` to the node the client believes owns the slot (following `-MOVED`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pinnacle_linearizability::list_append::{
    append, bars, check_list_append, history_json_lines, read, ListRecorder, Mop,
};
use redis_tests::encode_command;
use redis_tests::frame::{self, Value};
use redis_tests::nemesis::Nemesis;
use redis_tests::raw::RawConn;
use redis_tests::rng::Rng;

use super::support::{
    heal, nodes_agree, reopen_all, report_failure, start_cluster, Run, HEAL_SECS,
};

/// Hash tags: a transaction uses the keys of one.
pub const TAGS: [&str; 4] = ["{la0}", "{la1}", "{la2}", "{la3}"];
/// Appends (all clients) to one generation of keys before moving on (keeps lists short).
const APPENDS_PER_GEN: u64 = 300;
/// Reply timeout once EXEC is sent (then: indeterminate).
const REPLY_TIMEOUT: Duration = Duration::from_secs(6);

/// How a transaction ended.
pub enum TxnEnd {
    /// EXEC's array: the result of each read, in order.
    Ok(Vec<Vec<u64>>),
    /// Definitely not applied (why).
    Fail(String),
    /// Maybe applied (why).
    Indeterminate(String),
}

/// A MULTI/EXEC client that follows `-MOVED` (remembering the node per hash tag) and never
/// retries a sent EXEC.
pub struct TxnClient {
    addrs: Vec<SocketAddr>,
    conns: HashMap<SocketAddr, RawConn>,
    next: usize,
    routes: HashMap<String, SocketAddr>,
}

impl TxnClient {
    /// A client of the nodes at `addrs`.
    pub fn new(addrs: Vec<SocketAddr>) -> TxnClient {
        TxnClient {
            addrs,
            conns: HashMap::new(),
            next: 0,
            routes: HashMap::new(),
        }
    }

    fn connect(&mut self, addr: SocketAddr) -> Result<&mut RawConn, String> {
        match self.conns.entry(addr) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                let c = RawConn::connect_addr(addr, Duration::from_millis(500))
                    .map_err(|e| format!("connect {addr}: {e}"))?;
                Ok(e.insert(c))
            }
        }
    }

    /// Where `tag` goes: its known node, else the next node round-robin.
    fn route(&mut self, tag: &str) -> SocketAddr {
        if let Some(a) = self.routes.get(tag) {
            return *a;
        }
        self.next += 1;
        self.addrs[self.next % self.addrs.len()]
    }

    /// Handles an error reply: `-MOVED` updates the route; anything else forgets it.
    fn redirected(&mut self, tag: &str, addr: SocketAddr, text: &str) {
        self.conns.remove(&addr);
        match text
            .strip_prefix("MOVED ")
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|a| a.parse().ok())
        {
            Some(to) => {
                self.routes.insert(tag.to_string(), to);
            }
            None => {
                self.routes.remove(tag);
                thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Runs one transaction on keys of hash tag `tag`.
    pub fn run(&mut self, tag: &str, mops: &[Mop]) -> TxnEnd {
        let addr = self.route(tag);
        let conn = match self.connect(addr) {
            Ok(c) => c,
            Err(e) => {
                self.routes.remove(tag);
                thread::sleep(Duration::from_millis(20));
                return TxnEnd::Fail(e);
            }
        };
        let mut bytes = encode_command(&["MULTI"]);
        for m in mops {
            match m {
                Mop::Append { key, value } => {
                    bytes.extend(encode_command(&["RPUSH", key, &value.to_string()]))
                }
                Mop::Read { key, .. } => {
                    bytes.extend(encode_command(&["LRANGE", key.as_str(), "0", "-1"]))
                }
            }
        }
        bytes.extend(encode_command(&["EXEC"]));
        if let Err(e) = conn.send(&bytes) {
            // EXEC is the last bytes: a failed write never delivered all of it.
            self.conns.remove(&addr);
            self.routes.remove(tag);
            return TxnEnd::Fail(format!("send: {e}"));
        }
        let mut replies = Vec::new();
        for _ in 0..mops.len() + 2 {
            match conn
                .read_reply_timeout(REPLY_TIMEOUT)
                .map_err(|e| e.to_string())
                .and_then(|raw| frame::parse_one(&raw).map_err(|e| e.to_string()))
            {
                Ok(v) => replies.push(v),
                Err(e) => {
                    self.conns.remove(&addr);
                    self.routes.remove(tag);
                    return TxnEnd::Indeterminate(e);
                }
            }
        }
        let queued_error = replies[..replies.len() - 1].iter().find_map(|v| match v {
            Value::Error(e) => Some(String::from_utf8_lossy(e).into_owned()),
            _ => None,
        });
        if let Some(text) = &queued_error {
            self.redirected(tag, addr, text);
        }
        match replies.pop() {
            Some(Value::Array(items)) if items.len() == mops.len() => {
                let mut reads = Vec::new();
                for (m, v) in mops.iter().zip(items) {
                    match (m, v) {
                        (Mop::Append { .. }, Value::Int(_)) => {}
                        (Mop::Read { .. }, Value::Array(els)) => {
                            // A non-integer element is garbage: u64::MAX is never appended.
                            let els = els
                                .iter()
                                .map(|e| {
                                    e.as_bytes()
                                        .and_then(|b| std::str::from_utf8(b).ok())
                                        .and_then(|s| s.parse().ok())
                                        .unwrap_or(u64::MAX)
                                })
                                .collect();
                            reads.push(els);
                        }
                        (m, v) => {
                            return TxnEnd::Indeterminate(format!(
                                "EXEC item for {m:?} is {v:?} (partially applied?)"
                            ))
                        }
                    }
                }
                TxnEnd::Ok(reads)
            }
            // -EXECABORT, -MOVED, -CLUSTERDOWN ...: an error reply means "not applied".
            Some(Value::Error(e)) => {
                let text = String::from_utf8_lossy(&e).into_owned();
                if queued_error.is_none() {
                    self.redirected(tag, addr, &text);
                }
                TxnEnd::Fail(text)
            }
            Some(Value::Null) => TxnEnd::Fail("EXEC aborted".into()),
            other => {
                self.conns.remove(&addr);
                self.routes.remove(tag);
                TxnEnd::Indeterminate(format!("EXEC reply {other:?}"))
            }
        }
    }
}

fn key(tag: &str, generation: u64, name: char) -> String {
    format!("{tag}:l:{generation}:{name}")
}

/// Runs `mops` through `client` and records the outcome: `Some(true)` ok, `Some(false)`
/// failed, `None` indeterminate.
fn record(
    rec: &ListRecorder,
    client: &mut TxnClient,
    id: u64,
    tag: &str,
    mops: Vec<Mop>,
) -> Option<bool> {
    let pending = rec.invoke(id, mops.clone());
    match client.run(tag, &mops) {
        TxnEnd::Ok(reads) => {
            pending.ok(reads);
            Some(true)
        }
        TxnEnd::Fail(why) => {
            pending.fail();
            verbose(id, "failed", &why);
            Some(false)
        }
        TxnEnd::Indeterminate(why) => {
            pending.indeterminate();
            verbose(id, "indeterminate", &why);
            None
        }
    }
}

/// With `NEMESIS_VERBOSE=1`, why each transaction did not succeed.
fn verbose(id: u64, what: &str, why: &str) {
    if std::env::var_os("NEMESIS_VERBOSE").is_some() {
        eprintln!("txn of process {id} {what}: {why}");
    }
}

fn client_loop(
    id: u64,
    addrs: Vec<SocketAddr>,
    rec: ListRecorder,
    stop: Arc<AtomicBool>,
    appended: Arc<AtomicU64>,
    seed: u64,
    (mixed, max_mops): (bool, u64),
) {
    let mut client = TxnClient::new(addrs);
    let mut rng = Rng::new(seed ^ (id + 7).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (mut seq, mut process) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let generation = appended.load(Ordering::Relaxed) / APPENDS_PER_GEN;
        let tag = *rng.pick(&TAGS);
        let appends = rng.chance(50);
        // Unless mixed (see `Run::mixed_txns`): 1..=max_mops appends, or one read.
        let n = if mixed || appends {
            1 + rng.below(max_mops)
        } else {
            1
        };
        let mut mops = Vec::new();
        for _ in 0..n {
            let k = key(tag, generation, *rng.pick(&['a', 'b']));
            let append_now = if mixed { rng.chance(50) } else { appends };
            if append_now {
                seq += 1;
                appended.fetch_add(1, Ordering::Relaxed);
                mops.push(append(&k, (id + 1) * 1_000_000_000 + seq));
            } else {
                mops.push(read(&k, None));
            }
        }
        // A client whose transaction is indeterminate carries on under a new process id,
        // as in Jepsen (the old one may still be running it).
        if record(&rec, &mut client, id * 1_000 + process, tag, mops).is_none() {
            process += 1;
        }
    }
}

/// One run; returns the problems found (empty: pass).
pub fn run_once(run: &Run) -> Vec<String> {
    eprintln!(
        "=== {} NEMESIS_SEED={} secs={} shards={} faults={:?}",
        run.name, run.seed, run.secs, run.shards, run.faults
    );
    let mut c = start_cluster(run);
    let start = Instant::now();
    let rec = ListRecorder::starting_at(start);
    let mut nem = Nemesis::new(run.seed, run.faults.clone(), start)
        .shards(run.shards)
        .first(run.first.clone())
        .tags(TAGS.iter().map(|t| t.to_string()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..run.clients)
        .map(|id| {
            let (addrs, rec, stop, appended) =
                (c.addrs(), rec.clone(), stop.clone(), appended.clone());
            let (seed, shape) = (run.seed, (run.mixed_txns, run.max_mops));
            thread::spawn(move || client_loop(id, addrs, rec, stop, appended, seed, shape))
        })
        .collect();
    thread::sleep(Duration::from_secs(1));
    let mut problems = Vec::new();
    if let Err(e) = nem.run(&mut c, Instant::now() + Duration::from_secs(run.secs)) {
        problems.push(format!("nemesis: {e}"));
    }
    problems.extend(heal(&mut c, &mut nem));
    let ok_before = rec.history().counts().0;
    thread::sleep(Duration::from_secs(HEAL_SECS));
    let ok_in_tail = rec.history().counts().0 - ok_before;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        if t.join().is_err() {
            problems.push("a client thread panicked".into());
        }
    }
    nem.note("clients stopped; final reads");
    // Final reads of every key, one transaction per tag, retried until one is ok.
    let mut keys: Vec<String> = rec
        .history()
        .txns
        .iter()
        .flat_map(|t| t.mops.iter().map(|m| m.key().to_string()))
        .collect();
    keys.sort();
    keys.dedup();
    let mut client = TxnClient::new(c.addrs());
    for tag in TAGS {
        let mine: Vec<&String> = keys.iter().filter(|k| k.starts_with(tag)).collect();
        for chunk in mine.chunks(16) {
            let mops: Vec<Mop> = chunk.iter().map(|k| read(k, None)).collect();
            let deadline = Instant::now() + Duration::from_secs(30);
            while record(&rec, &mut client, 9_999_000, tag, mops.clone()) != Some(true) {
                if Instant::now() > deadline {
                    problems.push(format!("final read of {chunk:?} never succeeded"));
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let lranges: Vec<Vec<String>> = keys
        .iter()
        .map(|k| vec!["LRANGE".into(), k.clone(), "0".into(), "-1".into()])
        .collect();
    if let Err(e) = nodes_agree(&c, &lranges, Duration::from_secs(20)) {
        problems.push(e);
    } else if let Err(e) = reopen_all(&mut c, &mut nem, &lranges) {
        problems.push(e);
    }
    nem.check_exits(&mut c);
    problems.extend(nem.exits().iter().cloned());

    let history = rec.history();
    let (ok, failed, info) = history.counts();
    let t = Instant::now();
    let verdict = check_list_append(&history);
    eprintln!(
        "{}: {ok} ok, {failed} failed, {info} indeterminate txns over {} keys; {ok_in_tail} ok after healing; checked in {:?}: {verdict}",
        run.name,
        keys.len(),
        t.elapsed()
    );
    if !verdict.is_ok() {
        problems.push(verdict.to_string());
    }
    if ok_in_tail == 0 {
        problems.push(format!(
            "no transaction succeeded in the {HEAL_SECS} s after healing"
        ));
    }
    if (ok as u64) < run.min_ok {
        problems.push(format!("only {ok} ok transactions (want {})", run.min_ok));
    }
    if !problems.is_empty() {
        report_failure(
            run,
            &mut c,
            &nem,
            &bars(&history),
            &history_json_lines(&history),
            &mut problems,
        );
    }
    problems
}
