//! Concurrent writers over a slot range, and the checks run after the migrations: every
//! acknowledged write present exactly once, counters within their bounds, the recorded history
//! linearizable, one owner per slot on every node.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use pinnacle_linearizability::{check, Op, Recorder, Ret, Verdict};
use redis_tests::cluster::{Cluster, Outcome};
use redis_tests::frame::Value;
use redis_tests::rng::Rng;

use super::client::ClusterClient;
use super::support::{assert_slots_agree, text, wait_spread};

/// How one write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Acked,
    Failed,
    Indeterminate,
}

/// What one writer thread did.
#[derive(Default)]
struct Log {
    /// Register key → its writes in issue order (each register has one writer).
    sets: HashMap<String, Vec<(String, Status)>>,
    /// Counter key → (acknowledged, indeterminate) INCRs.
    incrs: HashMap<String, (i64, i64)>,
    /// Replies that were neither expected values nor redirects.
    unexpected: Vec<String>,
    /// Redirect replies the client followed, by kind.
    redirects: HashMap<&'static str, u64>,
}

/// Writer threads running until [`Writers::finish`].
pub struct Writers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Log>>,
    rec: Recorder,
    counters: Vec<String>,
    lin_keys: Vec<String>,
}

/// Register, counter and linearizability keys of the workload, one tag per slot.
fn register(writer: usize, tag: &str) -> String {
    format!("r{writer}:{{{tag}}}")
}

impl Writers {
    /// Starts `n` writers over the slots whose tags are `tags` (slot → tag).
    pub fn start(c: &Cluster, tags: &BTreeMap<u16, String>, n: usize, seed: u64) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let rec = Recorder::new();
        let tag_list: Vec<String> = tags.values().cloned().collect();
        let counters: Vec<String> = tag_list.iter().map(|t| format!("c:{{{t}}}")).collect();
        // A few contended registers spread over the range, for the linearizability check.
        let step = (tag_list.len() / 8).max(1);
        let lin_keys: Vec<String> = tag_list
            .iter()
            .step_by(step)
            .map(|t| format!("l:{{{t}}}"))
            .collect();
        let threads = (0..n)
            .map(|w| {
                let (stop, rec, addrs) = (stop.clone(), rec.clone(), c.addrs());
                let (tags, counters, lin) = (tag_list.clone(), counters.clone(), lin_keys.clone());
                thread::spawn(move || writer(w, addrs, &tags, &counters, &lin, &rec, &stop, seed))
            })
            .collect();
        Writers {
            stop,
            threads,
            rec,
            counters,
            lin_keys,
        }
    }

    /// Stops the writers and checks everything; `filler` keys were loaded before and never
    /// touched. Returns a one-line summary.
    pub fn finish(self, c: &Cluster, filler: usize) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let logs: Vec<Log> = self
            .threads
            .into_iter()
            .map(|t| t.join().expect("writer panicked"))
            .collect();
        for l in &logs {
            assert!(
                l.unexpected.is_empty(),
                "unexpected replies: {:?}",
                l.unexpected
            );
        }
        wait_spread(c, Duration::from_secs(60));
        let mut reader = ClusterClient::new(c.addrs());
        let mut get = |k: &str| -> Option<String> {
            match reader.call(&["GET", k]) {
                Outcome::Reply(Value::Bulk(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                Outcome::Reply(Value::Null) => None,
                other => panic!("GET {k} after the migrations: {other:?}"),
            }
        };
        let mut existing = 0usize;
        let (mut acked_sets, mut indet) = (0u64, 0u64);
        for l in &logs {
            for (key, writes) in &l.sets {
                let got = get(key);
                existing += usize::from(got.is_some());
                let last_ack = writes.iter().rposition(|(_, s)| *s == Status::Acked);
                acked_sets += writes.iter().filter(|w| w.1 == Status::Acked).count() as u64;
                indet += writes
                    .iter()
                    .filter(|w| w.1 == Status::Indeterminate)
                    .count() as u64;
                // Allowed: the last acknowledged value, or a later write whose reply was lost.
                let from = last_ack.unwrap_or(0);
                let allowed: Vec<&str> = writes[from..]
                    .iter()
                    .enumerate()
                    .filter(|(j, (_, s))| {
                        (*j == 0 && *s == Status::Acked) || *s == Status::Indeterminate
                    })
                    .map(|(_, (v, _))| v.as_str())
                    .collect();
                let ok = match &got {
                    Some(v) => allowed.contains(&v.as_str()),
                    None => last_ack.is_none(),
                };
                assert!(
                    ok,
                    "{key}: read {got:?}, but the last acknowledged write is {:?}; allowed {allowed:?}",
                    last_ack.map(|i| &writes[i].0)
                );
            }
        }
        let mut incr_acked = 0i64;
        for key in &self.counters {
            let (acked, maybe) = logs.iter().fold((0, 0), |(a, m), l| {
                let (x, y) = l.incrs.get(key).copied().unwrap_or((0, 0));
                (a + x, m + y)
            });
            incr_acked += acked;
            let got = get(key);
            existing += usize::from(got.is_some());
            let n: i64 = got.as_deref().map_or(0, |v| v.parse().expect("counter"));
            assert!(
                n >= acked && n <= acked + maybe,
                "{key} = {n}: {acked} acknowledged INCRs, {maybe} indeterminate"
            );
        }
        for key in &self.lin_keys {
            // Recorded: the final state must follow from the history too.
            let pending = self.rec.invoke(u64::MAX, key.clone(), Op::Get);
            let got = get(key);
            existing += usize::from(got.is_some());
            pending.ok(Ret::Value(got.map(|v| v.into_bytes().into())));
        }
        let mut redirects: BTreeMap<&str, u64> = BTreeMap::new();
        for l in &logs {
            for (k, n) in &l.redirects {
                *redirects.entry(k).or_default() += n;
            }
        }
        let history = self.rec.history();
        let counts = self.rec.counts();
        let verdict = check(&history);
        assert!(
            verdict == Verdict::Ok,
            "linearizability: {verdict:?} ({counts:?})"
        );
        // Each node's DBSIZE counts the one shard it leads: a key left behind in a shard that
        // no longer owns its slot would make the sum exceed the keys that exist.
        let total: i64 = c
            .ids()
            .into_iter()
            .map(|i| match c.call(i, &["DBSIZE"]) {
                Ok(Value::Int(n)) => n,
                other => panic!("node{i} DBSIZE: {other:?}"),
            })
            .sum();
        assert_eq!(
            total as usize,
            existing + filler,
            "sum of DBSIZE over the shard leaders vs keys that exist ({existing} written + {filler} filler)"
        );
        assert_slots_agree(c);
        // Liveness: a node that leads both the source and the target shard (e.g. after a leader
        // kill) must serve `ASKING` requests, not send the client back to itself.
        let loops = redirects
            .get("ASK after ASKING, to itself")
            .copied()
            .unwrap_or(0);
        assert_eq!(
            loops, 0,
            "ASKING + command answered -ASK to the same node {loops} times (a redirect loop \
             that redis-py ends after 16 hops); see the writers' last ASK loop lines above; \
             {redirects:?}"
        );
        format!(
            "{acked_sets} acked SETs ({indet} indeterminate), {incr_acked} acked INCRs, \
             {} linearizability ops ({counts:?}), {total} keys; redirects followed {redirects:?}",
            history.ops.len()
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn writer(
    w: usize,
    addrs: Vec<std::net::SocketAddr>,
    tags: &[String],
    counters: &[String],
    lin: &[String],
    rec: &Recorder,
    stop: &AtomicBool,
    seed: u64,
) -> Log {
    let mut client = ClusterClient::new(addrs);
    let mut rng = Rng::new(seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut log = Log::default();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let roll = rng.below(100);
        let i = rng.below(tags.len() as u64) as usize;
        if roll < 50 {
            let key = register(w, &tags[i]);
            let value = format!("w{w}-{seq}");
            let status = match client.call(&["SET", &key, &value]) {
                Outcome::Reply(Value::Simple(s)) if s == b"OK" => Status::Acked,
                Outcome::Reply(v) => {
                    log.unexpected.push(format!("SET {key}: {v:?}"));
                    Status::Failed
                }
                Outcome::Indeterminate(_) => Status::Indeterminate,
                Outcome::Unavailable(_) => Status::Failed,
            };
            log.sets.entry(key).or_default().push((value, status));
        } else if roll < 80 {
            let key = &counters[i];
            let e = log.incrs.entry(key.clone()).or_default();
            match client.call(&["INCR", key]) {
                Outcome::Reply(Value::Int(_)) => e.0 += 1,
                Outcome::Reply(v) => log.unexpected.push(format!("INCR {key}: {v:?}")),
                Outcome::Indeterminate(_) => e.1 += 1,
                Outcome::Unavailable(_) => {}
            }
        } else {
            let key = &lin[rng.below(lin.len() as u64) as usize];
            let r = rng.below(4);
            let value = ((w as u64 + 1) * 1_000_000_000 + seq * 1_000).to_string();
            // DEL makes keys go missing at the source mid-migration while other writers'
            // writes to them are in flight: the race that once lost an acknowledged INCR.
            let (op, args): (Op, Vec<&str>) = match r {
                0 => (Op::Get, vec!["GET", key]),
                1 => (Op::Set(value.clone().into()), vec!["SET", key, &value]),
                2 => (Op::Incr, vec!["INCR", key]),
                _ => (Op::Del, vec!["DEL", key]),
            };
            let pending = rec.invoke(w as u64, key.clone(), op);
            match client.call(&args) {
                Outcome::Reply(Value::Simple(s)) if s == b"OK" => pending.ok(Ret::Ok),
                Outcome::Reply(Value::Bulk(b)) => pending.ok(Ret::Value(Some(b.into()))),
                Outcome::Reply(Value::Null) => pending.ok(Ret::Value(None)),
                Outcome::Reply(Value::Int(n)) => pending.ok(Ret::Int(n)),
                Outcome::Reply(v) => {
                    log.unexpected.push(format!("{args:?}: {}", text(&v)));
                    pending.fail();
                }
                Outcome::Indeterminate(_) => pending.indeterminate(),
                Outcome::Unavailable(_) => pending.fail(),
            }
        }
    }
    log.redirects = client.redirects;
    if let Some(l) = client.last_loop {
        eprintln!("writer {w}: last ASK loop: {l}");
    }
    log
}
