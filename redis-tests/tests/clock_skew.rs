//! T12's dedicated run (specs/reliability.md): one node of a 3-node cluster restarted under
//! libfaketime at `+2s x2` (its clock 2 s ahead and running twice as fast), made the leader,
//! and asked to expire keys. Key expiry follows the leader's time, so without the cluster
//! clock (`pinnacle_raft::clock`) such a leader expires a 3 s key after 1.5 s of real time.
//! Pass: no key is ever read as expired before its TTL has passed in real time, `PTTL` right
//! after `SET … PX` is not shortened, the key does expire, and the fast node reports the
//! correction it applies in `INFO replication`.
//!
//! Knob: `CLOCK_SECS` (how long the fast node runs, default T12's 60 s).

use std::thread;
use std::time::{Duration, Instant};

use redis_tests::cluster::Cluster;
use redis_tests::frame::Value;
use redis_tests::nemesis::{strict, LIBFAKETIME};

fn info_field(c: &Cluster, i: usize, field: &str) -> Option<String> {
    let v = c.call(i, &["INFO", "replication"]).ok()?;
    let Value::Bulk(b) = v else { return None };
    String::from_utf8_lossy(&b)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(str::to_string))
}

fn text(v: &Value) -> String {
    match v {
        Value::Bulk(b) | Value::Simple(b) | Value::Error(b) => String::from_utf8_lossy(b).into(),
        Value::Int(n) => n.to_string(),
        Value::Null => "(nil)".into(),
        other => format!("{other:?}"),
    }
}

/// Pauses the leader until `fast` wins an election (its timers run twice as fast).
fn make_leader(c: &mut Cluster, fast: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = c.leader_within(Duration::from_secs(10)).expect("leader");
        if l == fast {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node{fast} never won an election"
        );
        c.sigstop(l).expect("sigstop");
        let _ = c.wait_leader_change(l, Duration::from_secs(5));
        c.sigcont(l).expect("sigcont");
        thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_leader_with_a_fast_clock_expires_nothing_early() {
    if !std::path::Path::new(LIBFAKETIME).exists() {
        assert!(
            !strict(),
            "{LIBFAKETIME} is missing (apt-get install faketime)"
        );
        eprintln!("SKIPPED: libfaketime is not installed");
        return;
    }
    let secs: u64 = std::env::var("CLOCK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut c = Cluster::start(3).expect("cluster");
    let l = c.leader().expect("leader");
    let fast = c.ids().into_iter().find(|&i| i != l).expect("follower");
    c.restart_with_env(
        fast,
        vec![
            ("LD_PRELOAD".into(), LIBFAKETIME.into()),
            ("FAKETIME".into(), "+2s x2".into()),
        ],
    )
    .expect("restart under faketime");
    let started = Instant::now();
    make_leader(&mut c, fast);
    eprintln!("node{fast} (+2s x2) leads after {:?}", started.elapsed());
    let correction: i64 = info_field(&c, fast, "cluster_clock_correction_ms")
        .and_then(|v| v.parse().ok())
        .expect("cluster_clock_correction_ms in INFO");
    assert!(
        correction < -1_500,
        "node{fast} runs at least 2 s ahead but corrects by {correction} ms"
    );
    let mut rounds = 0;
    let mut reads = 0;
    while started.elapsed() < Duration::from_secs(secs) || rounds == 0 {
        rounds += 1;
        let key = format!("ttl:{rounds}");
        // Leadership may move (the fast node's timers also run fast): write where it leads.
        let leader = c.leader_within(Duration::from_secs(10)).expect("leader");
        let set_at = Instant::now();
        let r = c
            .call(leader, &["SET", &key, "v", "PX", "3000"])
            .expect("SET");
        if !matches!(&r, Value::Simple(s) if s == b"OK") {
            eprintln!("SET on node{leader}: {} (retrying)", text(&r));
            continue;
        }
        let pttl = c.call(leader, &["PTTL", &key]).expect("PTTL");
        if let Value::Int(ms) = pttl {
            let left = 3000 - set_at.elapsed().as_millis() as i64;
            assert!(
                ms >= left - 300,
                "PTTL on node{leader} (fast node{fast}) is {ms} ms, {:?} after SET PX 3000",
                set_at.elapsed()
            );
        }
        // Read it on whoever leads until 2.7 s of real time have passed: always there.
        while set_at.elapsed() < Duration::from_millis(2_700) {
            let leader = c.leader_within(Duration::from_secs(10)).expect("leader");
            let r = c.call(leader, &["GET", &key]).expect("GET");
            let at = set_at.elapsed();
            match &r {
                Value::Bulk(_) => reads += 1,
                Value::Null if at < Duration::from_millis(2_700) => panic!(
                    "{key} read as expired on node{leader} {at:?} after SET PX 3000 (fast node{fast})"
                ),
                _ => {}
            }
            thread::sleep(Duration::from_millis(100));
        }
        // And it does expire, within a second or so of its real deadline.
        let deadline = set_at + Duration::from_millis(5_000);
        loop {
            let leader = c.leader_within(Duration::from_secs(10)).expect("leader");
            if matches!(c.call(leader, &["GET", &key]), Ok(Value::Null)) {
                break;
            }
            assert!(Instant::now() < deadline, "{key} never expired");
            thread::sleep(Duration::from_millis(100));
        }
    }
    let correction = info_field(&c, fast, "cluster_clock_correction_ms").unwrap_or_default();
    eprintln!(
        "{rounds} keys, {reads} reads before their deadline, all present; node{fast} corrects by \
         {correction} ms after {:?} at x2",
        started.elapsed()
    );
}
