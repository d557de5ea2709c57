//! Register and counter workload: `GET`, `SET` with unique values, `SET … GET` swaps on
//! register keys and `INCR`/`GET` on counter keys, checked for linearizability per key.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pinnacle_linearizability::{
    bars_of, check, list_append::register_json_lines, Op, Recorder, Ret, Verdict,
};
use redis_tests::cluster::{LeaderClient, Outcome};
use redis_tests::frame::Value;
use redis_tests::nemesis::Nemesis;
use redis_tests::rng::Rng;

use super::support::{
    heal, nodes_agree, reopen_all, report_failure, start_cluster, Run, HEAL_SECS,
};

/// Hash tags of the workload's keys (migrations move their slots).
pub const TAGS: [&str; 4] = ["{r0}", "{r1}", "{r2}", "{r3}"];
/// Operations (all clients) on one generation of keys before moving on: keeps each key's
/// history, and its open indeterminate operations, small enough to check quickly.
const OPS_PER_GEN: u64 = 500;

fn key(generation: u64, slot: u64, counter: bool) -> String {
    let kind = if counter { "c" } else { "r" };
    format!("{}:{kind}:{generation}", TAGS[slot as usize % TAGS.len()])
}

fn to_ret(op: &Op, v: &Value) -> Result<Option<Ret>, String> {
    Ok(Some(match v {
        Value::Simple(s) if s == b"OK" => Ret::Ok,
        Value::Bulk(b) => Ret::Value(Some(b.clone().into())),
        Value::Null => Ret::Value(None),
        Value::Int(n) => Ret::Int(*n),
        Value::Error(e) if *op == Op::Incr && e.starts_with(b"ERR value is not an integer") => {
            Ret::NotInteger
        }
        // Any other error reply means "not applied" (the server's contract).
        Value::Error(_) => return Ok(None),
        other => return Err(format!("unexpected reply to {op}: {other:?}")),
    }))
}

/// Runs `op` through `client` and records it.
fn record(
    rec: &Recorder,
    client: &mut LeaderClient,
    id: u64,
    key: &str,
    op: Op,
    args: &[String],
) -> Result<bool, String> {
    let pending = rec.invoke(id, key.to_string(), op.clone());
    match client.call(args) {
        Outcome::Reply(v) => match to_ret(&op, &v)? {
            Some(ret) => {
                pending.ok(ret);
                return Ok(true);
            }
            None => pending.fail(),
        },
        Outcome::Indeterminate(_) => pending.indeterminate(),
        Outcome::Unavailable(_) => {
            pending.fail();
            thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(false)
}

fn client_loop(
    id: u64,
    addrs: Vec<SocketAddr>,
    rec: Recorder,
    stop: Arc<AtomicBool>,
    issued: Arc<AtomicU64>,
    seed: u64,
) -> Result<(), String> {
    let mut client = LeaderClient::new(addrs)
        .reply_timeout(Duration::from_secs(6))
        .retry_for(Duration::from_secs(1));
    let mut rng = Rng::new(seed ^ (id + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = issued.fetch_add(1, Ordering::Relaxed);
        let generation = n / OPS_PER_GEN;
        let slot = rng.below(TAGS.len() as u64);
        seq += 1;
        let roll = rng.below(100);
        let counter = roll >= 70;
        let key = key(generation, slot, counter);
        // Unique values, far apart so a counter never runs into another's value.
        let v = ((id + 1) * 1_000_000_000 + seq * 1_000).to_string();
        let (op, args): (Op, Vec<String>) = match roll {
            0..=29 => (Op::Get, vec!["GET".into(), key.clone()]),
            30..=54 => (
                Op::Set(v.clone().into()),
                vec!["SET".into(), key.clone(), v],
            ),
            55..=69 => (
                Op::SetGet(v.clone().into()),
                vec!["SET".into(), key.clone(), v, "GET".into()],
            ),
            70..=79 => (Op::Get, vec!["GET".into(), key.clone()]),
            _ => (Op::Incr, vec!["INCR".into(), key.clone()]),
        };
        record(&rec, &mut client, id, &key, op, &args)?;
    }
    Ok(())
}

/// One run; returns the problems found (empty: pass).
pub fn run_once(run: &Run) -> Vec<String> {
    eprintln!(
        "=== {} NEMESIS_SEED={} secs={} shards={} faults={:?}",
        run.name, run.seed, run.secs, run.shards, run.faults
    );
    let mut c = start_cluster(run);
    let start = Instant::now();
    let rec = Recorder::starting_at(start);
    let mut nem = Nemesis::new(run.seed, run.faults.clone(), start)
        .shards(run.shards)
        .first(run.first.clone())
        .tags(TAGS.iter().map(|t| t.to_string()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..run.clients)
        .map(|id| {
            let (addrs, rec, stop, issued) = (c.addrs(), rec.clone(), stop.clone(), issued.clone());
            let seed = run.seed;
            thread::spawn(move || client_loop(id, addrs, rec, stop, issued, seed))
        })
        .collect();
    thread::sleep(Duration::from_secs(1));
    let mut problems = Vec::new();
    if let Err(e) = nem.run(&mut c, Instant::now() + Duration::from_secs(run.secs)) {
        problems.push(format!("nemesis: {e}"));
    }
    problems.extend(heal(&mut c, &mut nem));
    let ok_before_tail = rec.counts().ok;
    thread::sleep(Duration::from_secs(HEAL_SECS));
    let ok_in_tail = rec.counts().ok - ok_before_tail;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("client: {e}")),
            Err(_) => problems.push("a client thread panicked".into()),
        }
    }
    nem.note("clients stopped; final reads");
    // Final reads of every key through the leader, recorded: an acknowledged write missing
    // after the heal makes the history non-linearizable.
    let keys: Vec<String> = rec
        .history()
        .keys()
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let mut client = c.client().retry_for(Duration::from_secs(20));
    for k in &keys {
        match record(
            &rec,
            &mut client,
            1000,
            k,
            Op::Get,
            &["GET".to_string(), k.clone()],
        ) {
            Ok(true) => {}
            Ok(false) => problems.push(format!("final GET {k} got no reply")),
            Err(e) => problems.push(e),
        }
    }
    let gets: Vec<Vec<String>> = keys.iter().map(|k| vec!["GET".into(), k.clone()]).collect();
    if let Err(e) = nodes_agree(&c, &gets, Duration::from_secs(20)) {
        problems.push(e);
    } else if let Err(e) = reopen_all(&mut c, &mut nem, &gets) {
        problems.push(e);
    }
    nem.check_exits(&mut c);
    problems.extend(nem.exits().iter().cloned());

    let history = rec.history();
    let counts = rec.counts();
    let t = Instant::now();
    let verdict = check(&history);
    eprintln!(
        "{}: {} ok, {} failed, {} indeterminate over {} keys; {ok_in_tail} ok after healing; checked in {:?}: {}",
        run.name,
        counts.ok,
        counts.failed,
        counts.indeterminate,
        keys.len(),
        t.elapsed(),
        match &verdict {
            Verdict::Ok => "linearizable",
            Verdict::Violation(_) => "VIOLATION",
            Verdict::Unknown { .. } => "unknown",
        }
    );
    if !verdict.is_ok() {
        problems.push(verdict.to_string());
    }
    if ok_in_tail == 0 {
        problems.push(format!(
            "no operation succeeded in the {HEAL_SECS} s after healing"
        ));
    }
    if counts.ok < run.min_ok {
        problems.push(format!(
            "only {} ok operations (want {})",
            counts.ok, run.min_ok
        ));
    }
    if !problems.is_empty() {
        report_failure(
            run,
            &mut c,
            &nem,
            &bars_of(&history),
            &register_json_lines(&history),
            &mut problems,
        );
    }
    problems
}
