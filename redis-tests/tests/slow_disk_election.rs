//! Elections on a slow disk (issue 8, T10 "slow fsync" for the failover path): with every
//! `fsync`/`fdatasync` of both survivors delayed (`strace -e inject=fsync,fdatasync:delay_enter=`),
//! killing the leader must still elect a new one within a few terms, and a write must then be
//! acknowledged.
//!
//! Why this could fail: a voter answers a vote request only once its vote is fsynced, and
//! openraft 0.10.0-alpha.37 as released drops a vote response that takes longer than
//! `election_timeout_min` (75 ms here). With a slower fsync every round failed and the terms
//! climbed for as long as the fault lasted. Fixed by the vendored openraft changes
//! (vendor/PATCHES.md) and the one-fsync vote file (raft/src/log_store/votefile.rs).
//!
//! The bound is on the number of terms (election rounds), not on time: a liveness check, not a
//! benchmark. Knobs: `SLOW_FSYNC_MS` (default 150), `SLOW_DISK_TRIALS` (default 2).
//! Needs strace (scripts/test.sh installs it); `REDIS_TESTS_STRICT=1` fails instead of skipping.

use std::time::{Duration, Instant};

use redis_tests::cluster::{Cluster, LeaderClient};
use redis_tests::tools;

/// Election rounds allowed after the kill. Before the fix no round could succeed while every
/// fsync took longer than 75 ms (36-37 terms in 20 s, no leader). After it most failovers take
/// one term; a split vote still happens when both survivors time out within one fsync of each
/// other (1-4 terms measured with fsync +150 ms, BENCHMARKS.md). The bound is far below the
/// broken case and leaves room for a loaded machine.
const MAX_TERMS: u64 = 10;

/// How long to wait for a new leader before giving up (many rounds' worth).
const ELECTION_WAIT: Duration = Duration::from_secs(20);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn leader_killed_while_survivors_fsync_slowly_is_replaced_within_a_few_terms() {
    if !tools::available(
        "leader_killed_while_survivors_fsync_slowly_is_replaced_within_a_few_terms",
        &["strace"],
    ) {
        return;
    }
    let delay_ms = env_u64("SLOW_FSYNC_MS", 150);
    let trials = env_u64("SLOW_DISK_TRIALS", 2);
    let mut report = Vec::new();
    for trial in 0..trials {
        let r = one_trial(delay_ms);
        eprintln!(
            "trial {trial}: fsync +{delay_ms} ms on the survivors: {} term(s) after the kill, \
             new leader seen after {:?}, first write acknowledged after {:?}",
            r.terms, r.elected, r.first_write
        );
        report.push(r);
    }
    let worst = report.iter().map(|r| r.terms).max().unwrap_or(0);
    assert!(
        worst <= MAX_TERMS,
        "an election on a slow disk took {worst} terms (at most {MAX_TERMS} allowed)"
    );
}

struct Trial {
    terms: u64,
    elected: Duration,
    first_write: Duration,
}

fn one_trial(delay_ms: u64) -> Trial {
    let mut c = Cluster::builder(3).start().expect("cluster");
    let l = c.settled_leader().expect("leader");
    let term0 = c.info(l).expect("INFO on the leader").term;
    let survivors: Vec<usize> = c.ids().into_iter().filter(|&i| i != l).collect();
    let inject = format!("inject=fsync,fdatasync:delay_enter={delay_ms}ms");
    let argv = ["-e", "trace=fsync,fdatasync", "-e", inject.as_str()];
    let _traces: Vec<_> = survivors
        .iter()
        .map(|&i| c.strace(i, &argv).expect("strace"))
        .collect();
    // The fault is live: a write still commits (the leader's own disk is fast), just slowly.
    let mut client = LeaderClient::new(c.addrs())
        .reply_timeout(Duration::from_secs(10))
        .retry_for(Duration::from_secs(10));
    let pre = client.call(&["SET", "before-kill", "1"]);
    assert!(pre.is_ok(), "write before the kill: {pre:?}");

    c.kill9(l).expect("kill the leader");
    let t = Instant::now();
    let new = match c.wait_leader_change(l, ELECTION_WAIT) {
        Ok(n) => n,
        Err(e) => {
            let terms: Vec<String> = survivors
                .iter()
                .map(|&i| match c.info(i) {
                    Ok(inf) => format!("node{i} term {}", inf.term),
                    Err(e) => format!("node{i}: {e}"),
                })
                .collect();
            panic!(
                "no new leader {ELECTION_WAIT:?} after killing node{l} (term {term0} before; \
                 now {}): {e}",
                terms.join(", ")
            );
        }
    };
    let elected = t.elapsed();
    let term = c.info(new).expect("INFO on the new leader").term;
    let mut client = LeaderClient::new(c.addrs())
        .reply_timeout(Duration::from_secs(10))
        .retry_for(Duration::from_secs(20));
    let w = client.call(&["SET", "after-kill", "1"]);
    let first_write = t.elapsed();
    assert!(w.is_ok(), "write after the failover to node{new}: {w:?}");
    Trial {
        terms: term.saturating_sub(term0),
        elected,
        first_write,
    }
}
