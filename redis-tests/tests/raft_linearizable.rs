//! Linearizability under faults (issue 4): client threads run SET/GET/INCR with unique values on
//! a few keys of a 3-node cluster while a nemesis SIGKILLs and restarts the leader, SIGSTOPs it,
//! and cuts it (or another node) off with the bus proxies. Every operation is recorded with
//! `pinnacle_linearizability::Recorder` and the history is checked: zero violations, and enough
//! successful operations that the check says something.
//!
//! Knobs: `LIN_FAULTS` (default `kill,stop,isolate-leader,isolate,kill-all`),
//! `LIN_SECS` (fault period, default 30), `LIN_CLIENTS` (default 4), `LIN_MIN_OK`
//! (default 1000), `LIN_SEED` (printed; default the fixed [`LIN_SEED`] so CI replays one
//! schedule, reliability.md §6), `LIN_DUMP_DIR` (where a failing history is written,
//! default the system temp dir), `LIN_SERVER_ARGS` (extra pinnacle arguments, space-separated,
//! e.g. `--raft-read lease`).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use pinnacle_linearizability::{check, dump, Op, Recorder, Ret, Verdict};
use redis_tests::cluster::{Cluster, LeaderClient, Outcome};
use redis_tests::frame::Value;
use redis_tests::rng::Rng;
use redis_tests::{tools, Builder, RawConn};

/// Keys in use at a time; all clients share them so operations contend.
const KEYS: u64 = 3;
/// Operations (all clients together) before moving to fresh keys: keeps each key's history, and
/// the indeterminate operations left open in it, small enough to check quickly.
const OPS_PER_KEY_SET: u64 = 600;

/// One test at a time: the control's busy redis-servers would starve the cluster's heartbeats.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How long the cluster may go without an agreed leader (faults healed) before the test fails.
const LEADERLESS_LIMIT: Duration = Duration::from_secs(15);

/// A reply as the checker's `Ret`; `None` for an error reply that means "not applied".
fn to_ret(op: &Op, v: &Value) -> Result<Option<Ret>, String> {
    Ok(Some(match v {
        Value::Simple(s) if s == b"OK" => Ret::Ok,
        Value::Bulk(b) => Ret::Value(Some(b.clone().into())),
        Value::Null => Ret::Value(None),
        Value::Int(n) => Ret::Int(*n),
        // INCR's value errors depend on the value, so they are checked like replies.
        Value::Error(e)
            if *op == Op::Incr
                && (e.starts_with(b"ERR value is not an integer")
                    || e.starts_with(b"ERR increment or decrement would overflow")) =>
        {
            Ret::NotInteger
        }
        Value::Error(_) => return Ok(None),
        other => return Err(format!("unexpected reply to {op}: {other:?}")),
    }))
}

/// One client: random SET (unique integer values, so INCR can count from them), GET and INCR.
fn client_loop(
    id: u64,
    addrs: Vec<SocketAddr>,
    rec: Recorder,
    stop: Arc<AtomicBool>,
    issued: Arc<AtomicU64>,
    seed: u64,
) -> Result<(), String> {
    let mut client = LeaderClient::new(addrs)
        // Longer than any pause, so a paused leader's late answers are seen and checked.
        .reply_timeout(Duration::from_secs(5))
        .retry_for(Duration::from_secs(1));
    let mut rng = Rng::new(seed ^ (id + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = issued.fetch_add(1, Ordering::Relaxed);
        let key = format!("lin:{}:{}", n / OPS_PER_KEY_SET, rng.below(KEYS));
        seq += 1;
        let roll = rng.below(100);
        let (op, args): (Op, Vec<String>) = if roll < 45 {
            (Op::Get, vec!["GET".into(), key.clone()])
        } else if roll < 80 {
            // Unique, and far apart so INCRs from one never reach another.
            let v = ((id + 1) * 1_000_000_000 + seq * 1_000).to_string();
            (
                Op::Set(v.clone().into()),
                vec!["SET".into(), key.clone(), v],
            )
        } else {
            (Op::Incr, vec!["INCR".into(), key.clone()])
        };
        let pending = rec.invoke(id, key, op.clone());
        match client.call(&args) {
            Outcome::Reply(v) => match to_ret(&op, &v)? {
                Some(ret) => pending.ok(ret),
                None => pending.fail(),
            },
            Outcome::Indeterminate(_) => pending.indeterminate(),
            Outcome::Unavailable(_) => {
                pending.fail();
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
    Ok(())
}

/// Injects faults until `until`; returns a log of what it did (recorder clock, in ms).
/// A fault the nemesis can inject (`LIN_FAULTS` names, comma-separated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// `kill`: SIGKILL the leader, restart it after a while.
    KillLeader,
    /// `stop`: SIGSTOP the leader, SIGCONT it after a while.
    StopLeader,
    /// `isolate-leader`: cut the leader's bus links, heal after a while.
    IsolateLeader,
    /// `isolate`: cut a random node's bus links, heal after a while.
    IsolateAny,
    /// `kill-all`: SIGKILL every node, restart them all (it caught a crashed leader resuming in
    /// its old term and reusing log indexes).
    KillAll,
}

fn faults_from_env() -> Vec<Fault> {
    let spec = std::env::var("LIN_FAULTS")
        .unwrap_or_else(|_| "kill,stop,isolate-leader,isolate,kill-all".into());
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|name| match name.trim() {
            "kill" => Fault::KillLeader,
            "stop" => Fault::StopLeader,
            "isolate-leader" => Fault::IsolateLeader,
            "isolate" => Fault::IsolateAny,
            "kill-all" => Fault::KillAll,
            other => panic!("LIN_FAULTS: unknown fault {other:?} (kill, stop, isolate-leader, isolate, kill-all)"),
        })
        .collect()
}

fn nemesis(
    c: &mut Cluster,
    rec: &Recorder,
    rng: &mut Rng,
    faults: &[Fault],
    until: Instant,
) -> String {
    let mut log = String::new();
    let ms = |rec: &Recorder| rec.now() as f64 / 1e6;
    let mut led_at = Instant::now();
    while Instant::now() < until {
        thread::sleep(Duration::from_millis(300 + rng.below(900)));
        let Some(leader) = c.current_leader() else {
            if led_at.elapsed() > LEADERLESS_LIMIT {
                // Faults on a cluster that does not recover prove nothing more; the caller's
                // leader check reports the node states.
                let _ = writeln!(
                    log,
                    "{:>10.1} ms  no agreed leader for {LEADERLESS_LIMIT:?}: stopping faults",
                    ms(rec)
                );
                break;
            }
            continue;
        };
        led_at = Instant::now();
        let hold = Duration::from_millis(800 + rng.below(2200));
        let fault = *rng.pick(faults);
        let _ = write!(log, "{:>10.1} ms  ", ms(rec));
        match fault {
            Fault::KillLeader => {
                let _ = writeln!(log, "SIGKILL leader node{leader} for {hold:?}");
                c.kill9(leader).expect("kill");
                thread::sleep(hold);
                c.restart(leader).expect("restart");
            }
            Fault::StopLeader => {
                let _ = writeln!(log, "SIGSTOP leader node{leader} for {hold:?}");
                c.sigstop(leader).expect("sigstop");
                thread::sleep(hold);
                c.sigcont(leader).expect("sigcont");
            }
            Fault::IsolateLeader => {
                let _ = writeln!(log, "isolate leader node{leader} for {hold:?}");
                c.isolate(leader).expect("isolate");
                thread::sleep(hold);
                c.heal().expect("heal");
            }
            Fault::IsolateAny => {
                let other = *rng.pick(&c.ids());
                let _ = writeln!(log, "isolate node{other} for {hold:?}");
                c.isolate(other).expect("isolate");
                thread::sleep(hold);
                c.heal().expect("heal");
            }
            Fault::KillAll => {
                let _ = writeln!(log, "SIGKILL every node for {hold:?}");
                c.kill_all().expect("kill all");
                thread::sleep(hold);
                c.restart_stopped().expect("restart all");
            }
        }
        let _ = writeln!(log, "{:>10.1} ms  healed", ms(rec));
    }
    log
}

/// The fault schedule's seed unless `$LIN_SEED` is set.
const LIN_SEED: u64 = 20_261_207;

#[test]
fn histories_under_kills_pauses_and_partitions_are_linearizable() {
    let _serial = serial();
    let secs = env_u64("LIN_SECS", 30);
    let clients = env_u64("LIN_CLIENTS", 4);
    let min_ok = env_u64("LIN_MIN_OK", 1000);
    let fault_kinds = faults_from_env();
    let seed = Rng::seed_from_env_or("LIN_SEED", LIN_SEED);
    eprintln!("LIN_SEED={seed} LIN_SECS={secs} LIN_CLIENTS={clients} faults {fault_kinds:?}");
    let mut rng = Rng::new(seed);

    let extra = std::env::var("LIN_SERVER_ARGS").unwrap_or_default();
    let mut c = Cluster::builder(3)
        .with_proxies()
        .args(extra.split_whitespace())
        .start()
        .expect("cluster");
    c.leader().expect("leader");
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..clients)
        .map(|id| {
            let (addrs, rec, stop, issued) = (c.addrs(), rec.clone(), stop.clone(), issued.clone());
            thread::spawn(move || client_loop(id, addrs, rec, stop, issued, seed))
        })
        .collect();

    // A quiet second first, then faults, then quiet again so the tail of the history is served.
    thread::sleep(Duration::from_secs(1));
    let faults = nemesis(
        &mut c,
        &rec,
        &mut rng,
        &fault_kinds,
        Instant::now() + Duration::from_secs(secs),
    );
    c.heal().expect("heal");
    // With every fault healed the cluster must elect a leader and serve again.
    let recovered = c.leader_within(LEADERLESS_LIMIT);
    let ok_before_tail = rec.counts().ok;
    thread::sleep(Duration::from_secs(3));
    let ok_in_tail = rec.counts().ok - ok_before_tail;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("client: {e}"),
            Err(_) => panic!("a client thread panicked"),
        }
    }

    let history = rec.history();
    let counts = rec.counts();
    let keys = history.keys().len();
    let started = Instant::now();
    let verdict = check(&history);
    eprintln!(
        "faults:\n{faults}{} ok, {} failed (not applied), {} indeterminate over {keys} keys; \
         {ok_in_tail} ok after healing; checked in {:?}: {}",
        counts.ok,
        counts.failed,
        counts.indeterminate,
        started.elapsed(),
        match &verdict {
            Verdict::Ok => "linearizable",
            Verdict::Violation(_) => "VIOLATION",
            Verdict::Unknown { .. } => "unknown",
        }
    );
    let mut problems = Vec::new();
    if !verdict.is_ok() {
        problems.push(verdict.to_string());
    }
    if let Err(e) = &recovered {
        problems.push(format!("after the faults healed: {e}"));
    }
    if ok_in_tail == 0 {
        problems.push("no operation succeeded in the 3 s after the faults healed".into());
    }
    if counts.ok < min_ok {
        problems.push(format!(
            "only {} successful operations (want {min_ok})",
            counts.ok
        ));
    }
    if !problems.is_empty() {
        let dir = std::env::var_os("LIN_DUMP_DIR")
            .map(Into::into)
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("pinnacle-lin-{seed}"));
        let written = dump(&dir, "raft", &history, &verdict).expect("dump");
        let _ = std::fs::write(dir.join("faults.txt"), &faults);
        let data = c.keep_dir();
        panic!(
            "{}\nLIN_SEED={seed}; history: {written:?}; node data and logs: {data:?}",
            problems.join("\n")
        );
    }
}

/// Negative control: the same kind of workload against redis-server with every GET served by
/// its asynchronous replica must be caught (a read started after a write was acknowledged
/// returns the older value), so a clean verdict above means something.
#[test]
fn stale_reads_from_an_async_replica_are_caught() {
    let _serial = serial();
    if !tools::available(
        "stale_reads_from_an_async_replica_are_caught",
        &["redis-server"],
    ) {
        return;
    }
    let primary = Builder::redis().start().expect("primary");
    let replica = Builder::redis()
        .args(["--replicaof", "127.0.0.1", &primary.port().to_string()])
        .start()
        .expect("replica");
    let mut probe = replica.conn().expect("conn");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(
        probe.call_value(&["INFO", "replication"]),
        Ok(Value::Bulk(b)) if String::from_utf8_lossy(&b).contains("master_link_status:up")
    ) {
        assert!(Instant::now() < deadline, "replica never synced");
        thread::sleep(Duration::from_millis(50));
    }
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4u64)
        .map(|id| {
            let (rec, stop) = (rec.clone(), stop.clone());
            let (p, r) = (primary.port(), replica.port());
            thread::spawn(move || {
                let mut writes = RawConn::connect(p).expect("primary conn");
                let mut reads = RawConn::connect(r).expect("replica conn");
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let key = format!("ctl:{}", seq / 500);
                    let (op, conn, args): (Op, &mut RawConn, Vec<String>) = if seq & 1 == 0 {
                        (Op::Get, &mut reads, vec!["GET".into(), key.clone()])
                    } else {
                        let v = ((id + 1) * 1_000_000_000 + seq).to_string();
                        let args = vec!["SET".into(), key.clone(), v.clone()];
                        (Op::Set(v.into()), &mut writes, args)
                    };
                    let pending = rec.invoke(id, key, op.clone());
                    let reply = conn.call_value(&args).expect("call");
                    pending.ok(to_ret(&op, &reply).expect("reply").expect("applied"));
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client");
    }
    let history = rec.history();
    let verdict = check(&history);
    match &verdict {
        Verdict::Violation(v) => eprintln!("{} ops; caught as expected:\n{v}", history.ops.len()),
        other => panic!(
            "{} ops through an async replica judged {other}",
            history.ops.len()
        ),
    }
}
