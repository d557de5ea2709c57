//! Durability after SIGKILL: writers write (SET, SET EX, DEL, INCR) and record what was
//! acknowledged and when; the server is SIGKILLed mid-stream and restarted on the same data
//! directory. Under `--appendfsync always` (several cycles) every acknowledged write must be
//! there afterwards; under `everysec` only writes acknowledged in the last ~1 s may be missing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use redis_tests::frame::Value;
use redis_tests::{show, Builder, RawConn, Server};

const WRITERS: usize = 4;
const CYCLES: usize = 3;

/// What one writer knows after a kill.
#[derive(Default)]
struct Log {
    /// key -> Some(value) if its last acked write set it, None if acked deleted.
    acked: BTreeMap<String, Option<String>>,
    /// The last write sent but not acknowledged (it may or may not have survived).
    in_flight: Option<(String, Option<String>)>,
    /// Acked INCRs of this writer's counter, and whether one more was in flight.
    incr_acked: i64,
    incr_in_flight: bool,
    /// Keys set with an expiry (must keep a positive TTL).
    with_ttl: Vec<String>,
    /// When each key's last write was acknowledged, and each INCR.
    acked_at: BTreeMap<String, Instant>,
    incr_times: Vec<Instant>,
}

fn writer(port: u16, w: usize, cycle: usize, stop: Arc<AtomicBool>, mut log: Log) -> Log {
    let Ok(mut c) = RawConn::connect(port) else {
        return log;
    };
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let key = format!("w{w}:c{cycle}:{i}");
        let (cmd, effect): (Vec<String>, Option<(String, Option<String>)>) = match i % 10 {
            3 => (vec!["INCR".into(), format!("w{w}:counter")], None),
            7 if i > 5 => {
                let victim = format!("w{w}:c{cycle}:{}", i - 5);
                (vec!["DEL".into(), victim.clone()], Some((victim, None)))
            }
            5 => {
                let v = format!("ttl-{w}-{cycle}-{i}");
                let cmd = vec![
                    "SET".into(),
                    key.clone(),
                    v.clone(),
                    "EX".into(),
                    "100000".into(),
                ];
                (cmd, Some((key.clone(), Some(v))))
            }
            _ => {
                let v = format!("value-{w}-{cycle}-{i}-{}", "x".repeat((i % 50) as usize));
                (
                    vec!["SET".into(), key.clone(), v.clone()],
                    Some((key.clone(), Some(v))),
                )
            }
        };
        if effect.is_none() {
            log.incr_in_flight = true;
        }
        log.in_flight = effect.clone();
        match c.call(&cmd) {
            Ok(r) if !r.starts_with(b"-") => {
                match effect {
                    Some((k, v)) => {
                        if i % 10 == 5 {
                            log.with_ttl.push(k.clone());
                        }
                        log.acked_at.insert(k.clone(), Instant::now());
                        log.acked.insert(k, v);
                    }
                    None => {
                        log.incr_acked += 1;
                        log.incr_times.push(Instant::now());
                    }
                }
                log.in_flight = None;
                log.incr_in_flight = false;
            }
            // The server was killed (or refused): stop; the last write stays "in flight".
            _ => break,
        }
    }
    log
}

/// Check every acknowledged write; with `grace = Some((kill, d))`, writes acknowledged after
/// `kill - d` may be missing. Returns how many such recent writes were missing.
/// A write that was in flight at the kill and did land is folded into the log as acknowledged,
/// so later cycles expect it.
fn verify(server: &Server, logs: &mut [Log], grace: Option<(Instant, Duration)>) -> usize {
    let cutoff = grace.map(|(kill, d)| kill.checked_sub(d).unwrap_or(kill));
    let recent = |t: Option<&Instant>| match (cutoff, t) {
        (Some(c), Some(t)) => *t >= c,
        _ => false,
    };
    let mut forgiven = 0;
    let mut c = server.conn().expect("connect after restart");
    let mut lost = Vec::new();
    let mut checked = 0;
    for (w, log) in logs.iter_mut().enumerate() {
        let mut landed = None;
        for (key, want) in &log.acked {
            let got = c.call_value(&["GET", key.as_str()]).expect("GET");
            let got = match got {
                Value::Bulk(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                Value::Null => None,
                other => panic!("GET {key}: {other:?}"),
            };
            checked += 1;
            if &got != want {
                // The unacknowledged last write of this writer may have landed on top.
                let in_flight_ok = log
                    .in_flight
                    .as_ref()
                    .is_some_and(|(k, v)| k == key && v == &got);
                if in_flight_ok {
                    landed = Some((key.clone(), got.clone()));
                } else if recent(log.acked_at.get(key)) {
                    forgiven += 1;
                } else {
                    lost.push(format!("{key}: acked {want:?}, found {got:?}"));
                }
            }
        }
        let counter = c
            .call(&["GET", &format!("w{w}:counter")])
            .expect("GET counter");
        let n: i64 = match redis_tests::frame::parse_one(&counter).expect("parse") {
            Value::Bulk(b) => String::from_utf8_lossy(&b).parse().unwrap_or(-1),
            Value::Null => 0,
            other => panic!("counter: {other:?}"),
        };
        if let Some((k, v)) = landed {
            log.acked.insert(k, v);
        }
        log.in_flight = None;
        let max = log.incr_acked + i64::from(log.incr_in_flight);
        let min = log.incr_times.iter().filter(|t| !recent(Some(t))).count() as i64;
        if n < min || n > max {
            lost.push(format!(
                "w{w}:counter = {n}, acked INCRs {}, in flight {}",
                log.incr_acked, log.incr_in_flight
            ));
        }
        if log.incr_in_flight && n == max {
            log.incr_acked += 1;
            log.incr_times.push(Instant::now());
        }
        log.incr_in_flight = false;
        for key in &log.with_ttl {
            if log.acked.get(key).is_some_and(|v| v.is_some()) && !recent(log.acked_at.get(key)) {
                let ttl = c.call_value(&["TTL", key.as_str()]).expect("TTL");
                if !matches!(ttl, Value::Int(t) if t > 99_000) {
                    lost.push(format!("TTL {key}: {ttl:?} after restart"));
                }
            }
        }
    }
    assert!(checked > 0, "no write was acknowledged at all");
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost of {checked}:\n{}",
        lost.len(),
        lost.join("\n")
    );
    forgiven
}

#[test]
fn sigkill_loses_nothing_acknowledged_with_appendfsync_always() {
    let mut server = Builder::subject()
        .appendfsync("always")
        .start()
        .expect("start server under test");
    let mut logs: Vec<Log> = (0..WRITERS).map(|_| Log::default()).collect();
    let mut total = 0;
    for cycle in 0..CYCLES {
        let stop = Arc::new(AtomicBool::new(false));
        let port = server.port();
        let handles: Vec<_> = logs
            .drain(..)
            .enumerate()
            .map(|(w, log)| {
                let stop = stop.clone();
                thread::spawn(move || writer(port, w, cycle, stop, log))
            })
            .collect();
        thread::sleep(Duration::from_millis(700));
        // SIGKILL while the writers are still writing.
        server.kill9().expect("kill -9");
        stop.store(true, Ordering::Relaxed);
        logs = handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect();
        server
            .restart()
            .unwrap_or_else(|e| panic!("restart after SIGKILL: {e}"));
        verify(&server, &mut logs, None);
        let acked: usize = logs.iter().map(|l| l.acked.len()).sum();
        eprintln!("cycle {cycle}: {acked} keys acked so far, all present after SIGKILL + restart");
        total = acked;
    }
    assert!(
        total >= WRITERS,
        "too few writes were acknowledged ({total})"
    );
    // The server keeps working after the last recovery.
    let mut c = server.conn().expect("connect");
    let r = c.call(&["SET", "after", "ok"]).expect("SET");
    assert_eq!(r, b"+OK\r\n", "{}", show(&r));
}

/// `everysec`: after a SIGKILL, only writes acknowledged in the last ~1 s (1.5 s allowed) may be
/// missing; everything older must be there.
#[test]
fn sigkill_loses_at_most_the_last_second_with_appendfsync_everysec() {
    let mut server = Builder::subject()
        .appendfsync("everysec")
        .start()
        .expect("start server under test");
    let stop = Arc::new(AtomicBool::new(false));
    let port = server.port();
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let stop = stop.clone();
            thread::spawn(move || writer(port, w, 0, stop, Log::default()))
        })
        .collect();
    thread::sleep(Duration::from_millis(2500));
    let kill = Instant::now();
    server.kill9().expect("kill -9");
    stop.store(true, Ordering::Relaxed);
    let mut logs: Vec<Log> = handles
        .into_iter()
        .map(|h| h.join().expect("writer thread"))
        .collect();
    server
        .restart()
        .unwrap_or_else(|e| panic!("restart after SIGKILL: {e}"));
    let missing = verify(
        &server,
        &mut logs,
        Some((kill, Duration::from_millis(1500))),
    );
    let acked: usize = logs.iter().map(|l| l.acked.len()).sum();
    eprintln!("everysec: {acked} keys acked, {missing} of the last 1.5 s missing after SIGKILL");
}
