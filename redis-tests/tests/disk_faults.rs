//! T10 disk faults (reliability.md §2, §6 item 9) on unmodified `pinnacle` processes:
//! - fsync EIO on the leader's Raft log segment (`strace -P <segment> -e inject=fdatasync:
//!   error=EIO`) → that node fail-stops (exits); a write it acknowledged must survive on the
//!   others, and the cluster goes on with a new leader;
//! - ENOSPC on the leader's Raft log writes (`inject=pwrite64:error=ENOSPC`) → no exit: the
//!   leader refuses writes with `-MISCONF`, acknowledges nothing its log could not store, and
//!   goes on once the fault is removed (a real full disk, on tmpfs: `disk_full_raft.rs`);
//! - slow fsync (500 ms per `fdatasync` of the leader's segment, reliability.md §6 item 9) →
//!   the register history stays linearizable, and writes are fast again once the fault is
//!   removed (the probe's p99 in the 5 s after is printed, not asserted);
//! - disk full (a small tmpfs as a standalone node's data dir) → writes get Redis's
//!   `-MISCONF` reply and are not applied, reads are served, and writes succeed again once
//!   space is freed, without a restart.
//!
//! Needs strace (scripts/test.sh installs it) and root for the tmpfs mount; with
//! `REDIS_TESTS_STRICT=1` a missing tool fails the test instead of skipping it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use pinnacle_linearizability::{check, Op, Recorder, Ret};
use redis_tests::cluster::{Cluster, Outcome};
use redis_tests::frame::Value;
use redis_tests::tmpfs::{can_mount, fs_free, Tmpfs};
use redis_tests::{tools, Builder, RawConn};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Segments of every group of node `i`, newest per folder.
fn active_segments(dir: &Path) -> Vec<PathBuf> {
    let mut by_dir: std::collections::BTreeMap<PathBuf, PathBuf> = Default::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "seg") {
                let parent = d.clone();
                let newer = by_dir.get(&parent).is_none_or(|q| p > *q);
                if newer {
                    by_dir.insert(parent, p);
                }
            }
        }
    }
    by_dir.into_values().collect()
}

fn strace_available(test: &str) -> bool {
    tools::available(test, &["strace"])
}

fn set(conn: &mut RawConn, k: &str, v: &str, timeout: Duration) -> Result<Value, String> {
    conn.send_command(&["SET", k, v])
        .map_err(|e| e.to_string())?;
    let raw = conn
        .read_reply_timeout(timeout)
        .map_err(|e| e.to_string())?;
    redis_tests::frame::parse_one(&raw).map_err(|e| e.to_string())
}

/// Writes through the leader-following client until one is acknowledged; returns the time.
fn write_ok(c: &Cluster, k: &str, v: &str, timeout: Duration) -> Duration {
    let t = Instant::now();
    let mut client = c.client().retry_for(timeout);
    loop {
        if client.call(&["SET", k, v]).is_ok() {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < timeout,
            "SET {k} not acknowledged within {timeout:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn get(c: &Cluster, k: &str) -> Value {
    match c
        .client()
        .retry_for(Duration::from_secs(20))
        .call(&["GET", k])
    {
        Outcome::Reply(v) => v,
        other => panic!("GET {k}: {other:?}"),
    }
}

#[test]
fn fsync_eio_on_the_leaders_log_fail_stops_it() {
    if !strace_available("fsync_eio_on_the_leaders_log_fail_stops_it") {
        return;
    }
    leader_log_fault_fail_stops_it("fdatasync,fsync", "fdatasync,fsync:error=EIO");
}

/// Raft mode, ENOSPC on every write to the leader's log segments (strace, so even the space
/// the log reserved ahead is of no use): the leader keeps running (a full disk is not a
/// failed fsync), refuses writes with Redis's `-MISCONF` text and serves reads; the write in
/// flight is acknowledged only once a quorum stored it (the followers: openraft applies what
/// the cluster committed), and then survives. Once the fault is removed writes are accepted
/// again and every node converges, also after a restart.
#[test]
fn enospc_on_the_leaders_log_refuses_writes_and_recovers() {
    if !strace_available("enospc_on_the_leaders_log_refuses_writes_and_recovers") {
        return;
    }
    let _g = serial();
    let mut c = Cluster::builder(3).start().expect("cluster");
    let l = c.settled_leader().expect("leader");
    for i in 0..50 {
        write_ok(&c, &format!("before:{i}"), "v", Duration::from_secs(10));
    }
    let mut args: Vec<String> = Vec::new();
    for s in &active_segments(c.dir(l)) {
        args.push("-P".into());
        args.push(s.display().to_string());
    }
    args.extend(
        [
            "-e",
            "trace=pwrite64,write,pwritev,writev",
            "-e",
            "inject=pwrite64,write,pwritev,writev:error=ENOSPC",
        ]
        .map(String::from),
    );
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let strace = c.strace(l, &argv).expect("strace");
    // The write in flight on the leader, whose own log cannot store it.
    let mut conn = c.conn(l).expect("conn");
    let inflight = set(&mut conn, "enospc:k", "in-flight", Duration::from_secs(3));
    eprintln!("leader's reply to the write in flight: {inflight:?}");
    // Later writes are refused up front, with Redis's text; the node does not exit.
    let misconf = "MISCONF Errors writing to the AOF file: No space left on device";
    let refused = set(
        &mut c.conn(l).expect("conn"),
        "enospc:2",
        "x",
        Duration::from_secs(3),
    );
    assert_eq!(
        refused,
        Ok(Value::Error(misconf.as_bytes().to_vec())),
        "log:\n{}",
        c.log_tail(l, 3000)
    );
    let read = c
        .conn(l)
        .and_then(|mut k| k.call_value(&["GET", "before:7"]));
    assert_eq!(read.ok(), Some(Value::Bulk(b"v".to_vec())), "read refused");
    assert!(!c.has_exited(l), "node{l} exited on ENOSPC");
    drop(strace);
    // Space is back: the held write is stored, new writes are accepted again.
    let t = write_ok(&c, "after", "1", Duration::from_secs(20));
    eprintln!("first write acknowledged {t:?} after the fault was removed");
    for i in 0..50 {
        assert_eq!(get(&c, &format!("before:{i}")), Value::Bulk(b"v".to_vec()));
    }
    let late = get(&c, "enospc:k");
    match &inflight {
        Ok(Value::Simple(s)) if s == b"OK" => {
            assert_eq!(
                late,
                Value::Bulk(b"in-flight".to_vec()),
                "acknowledged, lost"
            )
        }
        Ok(Value::Error(_)) => assert_eq!(late, Value::Null, "refused, applied"),
        _ => assert!(late == Value::Null || late == Value::Bulk(b"in-flight".to_vec())),
    }
    assert_eq!(get(&c, "enospc:2"), Value::Null, "refused write applied");
    c.wait_converged(Duration::from_secs(30))
        .expect("converged");
    c.restart(l).expect("restart");
    c.wait_converged(Duration::from_secs(30))
        .expect("converged after restart");
    assert_eq!(get(&c, "after"), Value::Bulk(b"1".to_vec()));
}

/// Injects `inject` into the `trace` syscalls on every active log segment of the leader, then
/// checks: the leader exits (fail-stop), acknowledged writes survive on the others, the
/// write in flight is acknowledged only if it survived, and the node rejoins after restart.
fn leader_log_fault_fail_stops_it(trace: &str, inject: &str) {
    let _g = serial();
    let mut c = Cluster::builder(3).start().expect("cluster");
    let l = c.settled_leader().expect("leader");
    for i in 0..50 {
        write_ok(&c, &format!("before:{i}"), "v", Duration::from_secs(10));
    }
    let segs = active_segments(c.dir(l));
    assert!(!segs.is_empty(), "no *.seg under {}", c.dir(l).display());
    // Every group's active segment of the leader: whichever the write lands in fails.
    let mut args: Vec<String> = Vec::new();
    for s in &segs {
        args.push("-P".into());
        args.push(s.display().to_string());
    }
    args.extend([
        "-e".to_string(),
        format!("trace={trace}"),
        "-e".to_string(),
        format!("inject={inject}"),
    ]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let _strace = c.strace(l, &argv).expect("strace");
    eprintln!("strace attached to leader node{l}: {inject} on {segs:?}");
    // The write in flight on the leader.
    let mut conn = c.conn(l).expect("conn");
    let reply = set(&mut conn, "eio:k", "in-flight", Duration::from_secs(15));
    eprintln!("leader's reply to the write in flight: {reply:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c.has_exited(l) {
        assert!(
            Instant::now() < deadline,
            "node{l} still runs 20 s after its log {inject} (reply {reply:?}); log:\n{}",
            c.log_tail(l, 3000)
        );
        thread::sleep(Duration::from_millis(100));
    }
    let log = c.log_tail(l, 3000);
    eprintln!("node{l} exited (fail-stop); log tail:\n{log}");
    c.kill9(l).expect("reap");
    // The others elect a new leader and keep every acknowledged write.
    let l2 = c
        .wait_leader_change(l, Duration::from_secs(20))
        .expect("new leader");
    eprintln!("new leader node{l2}");
    for i in 0..50 {
        assert_eq!(get(&c, &format!("before:{i}")), Value::Bulk(b"v".to_vec()));
    }
    match &reply {
        Ok(Value::Simple(s)) if s == b"OK" => {
            // Acknowledged (a follower quorum had it durably): it must be there.
            assert_eq!(get(&c, "eio:k"), Value::Bulk(b"in-flight".to_vec()));
        }
        Ok(Value::Error(e)) => {
            // An error reply means "not applied".
            assert_eq!(
                get(&c, "eio:k"),
                Value::Null,
                "failed write applied: {:?}",
                String::from_utf8_lossy(e)
            );
        }
        _ => {} // no reply: indeterminate, either is fine
    }
    write_ok(&c, "after", "1", Duration::from_secs(20));
    // The failed node restarts from its log (which holds no hole) and catches up.
    drop(_strace);
    c.restart(l).expect("restart");
    c.wait_converged(Duration::from_secs(30))
        .expect("converged");
}

#[test]
fn slow_fsync_on_the_leader_stays_linearizable() {
    if !strace_available("slow_fsync_on_the_leader_stays_linearizable") {
        return;
    }
    let _g = serial();
    let c = Cluster::builder(3).start().expect("cluster");
    let l = c.settled_leader().expect("leader");
    let segs = active_segments(c.dir(l));
    let mut args: Vec<String> = Vec::new();
    for s in &segs {
        args.push("-P".into());
        args.push(s.display().to_string());
    }
    args.extend(
        [
            "-e",
            "trace=fdatasync",
            "-e",
            "inject=fdatasync:delay_enter=500ms",
        ]
        .map(String::from),
    );
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();

    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..3u64)
        .map(|id| {
            let (addrs, rec, stop) = (c.addrs(), rec.clone(), stop.clone());
            thread::spawn(move || {
                let mut client = redis_tests::cluster::LeaderClient::new(addrs)
                    .reply_timeout(Duration::from_secs(8))
                    .retry_for(Duration::from_secs(1));
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let key = format!("slow:{}", seq % 3);
                    let (op, args) = if seq.is_multiple_of(2) {
                        (Op::Get, vec!["GET".to_string(), key.clone()])
                    } else {
                        let v = ((id + 1) * 1_000_000 + seq).to_string();
                        (
                            Op::Set(v.clone().into()),
                            vec!["SET".to_string(), key.clone(), v],
                        )
                    };
                    let p = rec.invoke(id, key, op);
                    match client.call(&args) {
                        Outcome::Reply(Value::Simple(s)) if s == b"OK" => p.ok(Ret::Ok),
                        Outcome::Reply(Value::Bulk(b)) => p.ok(Ret::Value(Some(b.into()))),
                        Outcome::Reply(Value::Null) => p.ok(Ret::Value(None)),
                        Outcome::Reply(_) | Outcome::Unavailable(_) => p.fail(),
                        Outcome::Indeterminate(_) => p.indeterminate(),
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(1));
    let strace = c.strace(l, &argv).expect("strace");
    let ok0 = rec.counts().ok;
    thread::sleep(Duration::from_secs(8));
    let ok_slow = rec.counts().ok - ok0;
    drop(strace);
    // Writes are fast again once the fault is gone (measured, not asserted: a loaded machine).
    let t = Instant::now();
    let mut lat = Vec::new();
    while t.elapsed() < Duration::from_secs(5) {
        lat.push(write_ok(&c, "probe", "x", Duration::from_secs(20)));
    }
    lat.sort();
    let ok1 = rec.counts().ok;
    thread::sleep(Duration::from_secs(3));
    let ok_after = rec.counts().ok - ok1;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client");
    }
    let h = rec.history();
    let verdict = check(&h);
    eprintln!(
        "slow fsync on node{l}: {ok_slow} ok ops in 8 s under the fault, {ok_after} in 3 s after; \
         probe SET p50 {:?} p99 {:?} after removal; {}",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        verdict
    );
    assert!(verdict.is_ok(), "{verdict}");
    assert!(
        ok_after > 0,
        "no operation succeeded after the slow fsync was removed"
    );
}

/// What a full disk did to a standalone node (`--appendfsync always`).
#[derive(Debug)]
struct DiskFull {
    /// Writes acknowledged (before the first refusal, and after space returned).
    acked: usize,
    /// The reply (`-` and the text of an error) or the failure to get one, of the first
    /// write not acknowledged.
    refusal: String,
    /// A GET answered on a new connection while the disk was full.
    reads_served: bool,
    /// The refused key read back (on a new connection, disk still full).
    refused_read: String,
    /// `aof_last_write_status` of INFO persistence while the disk was full, and after the
    /// write that succeeded once space returned.
    status_full: String,
    status_after: String,
    /// Once not even a small record fits: PING, and `MULTI; SET; EXEC` (SET's reply, EXEC's).
    ping_full: String,
    txn_full: (String, String),
    /// `aof_last_write_status` right after space returned, before any write.
    status_freed: String,
    /// A SET acknowledged (within 20 s) after space came back, before any restart.
    recovered: bool,
}

/// Fills a tmpfs data dir until a write is not acknowledged, probes reads, frees the space,
/// probes writes, then restarts the node and checks every acknowledged write is there.
fn disk_full_run(test: &str) -> Option<DiskFull> {
    if !can_mount(test) {
        return None;
    }
    let _g = serial();
    let mut s = Builder::pinnacle()
        .args(["--appendfsync", "always"])
        .start()
        .expect("server");
    // Restart it on a small tmpfs mounted over its (fresh) data dir.
    s.kill9().expect("kill");
    let mnt = s.dir().to_path_buf();
    let _fs = Tmpfs::mount(&mnt, "16m").expect("tmpfs");
    s.restart().expect("start on tmpfs");
    let mut conn = s.conn().expect("conn");
    assert_eq!(
        conn.call_value(&["SET", "early", "1"]).expect("set"),
        Value::Simple(b"OK".to_vec())
    );
    // Fill the disk with a file we can delete later, leaving a little room.
    let filler = mnt.join("filler");
    let free = fs_free(&mnt);
    let st = Command::new("fallocate")
        .args(["-l", &(free.saturating_sub(256 * 1024)).to_string()])
        .arg(&filler)
        .status()
        .expect("fallocate");
    assert!(st.success(), "fallocate failed");
    let big = "x".repeat(64 * 1024);
    let mut acked = vec!["early".to_string()];
    let mut refusal = None;
    for i in 0..200 {
        let k = format!("big:{i}");
        match set(&mut conn, &k, &big, Duration::from_secs(10)) {
            Ok(Value::Simple(r)) if r == b"OK" => acked.push(k),
            other => {
                let shown = match other {
                    Ok(Value::Error(e)) => format!("-{}", String::from_utf8_lossy(&e)),
                    other => format!("{other:?}"),
                };
                refusal = Some((k, shown));
                break;
            }
        }
    }
    let (refused_key, refusal) = refusal.unwrap_or_else(|| {
        panic!(
            "{} writes of 64 KiB acknowledged on a disk with ~256 KiB free",
            acked.len()
        )
    });
    let reads_served = matches!(
        s.conn().and_then(|mut c| c.call_value(&["GET", "early"])),
        Ok(Value::Bulk(b)) if b == b"1"
    );
    let refused_read = format!(
        "{:?}",
        s.conn()
            .and_then(|mut c| c.call_value(&["GET", refused_key.as_str()]))
    );
    let status_full = aof_status(&s);
    // Take the last bytes too, so not even a small record fits.
    let filler2 = mnt.join("filler2");
    let _ = Command::new("fallocate")
        .args(["-l", &fs_free(&mnt).max(4096).to_string()])
        .arg(&filler2)
        .status();
    let shown = |v: Result<Value, redis_tests::Error>| match v {
        Ok(Value::Error(e)) => format!("-{}", String::from_utf8_lossy(&e)),
        Ok(Value::Simple(b)) => format!("+{}", String::from_utf8_lossy(&b)),
        other => format!("{other:?}"),
    };
    let mut c = s.conn().expect("conn");
    let ping_full = shown(c.call_value(&["PING"]));
    let _ = c.call_value(&["MULTI"]);
    let queued = shown(c.call_value(&["SET", "in-txn", "1"]));
    let exec = shown(c.call_value(&["EXEC"]));
    let txn_full = (queued, exec);
    drop(c);
    std::fs::remove_file(&filler).expect("rm filler");
    let _ = std::fs::remove_file(&filler2);
    let status_freed = aof_status(&s);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut recovered = false;
    while Instant::now() < deadline {
        if let Ok(Value::Simple(r)) = s
            .conn()
            .and_then(|mut c| c.call_value(&["SET", "after", "1"]))
        {
            if r == b"OK" {
                recovered = true;
                acked.push("after".into());
                break;
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    let status_after = aof_status(&s);
    // Whatever the liveness: everything acknowledged survives a restart.
    drop(conn);
    s.restart().expect("restart");
    let mut conn = s.conn().expect("conn");
    for k in &acked {
        assert!(
            !matches!(
                conn.call_value(&["GET", k.as_str()]).expect("get"),
                Value::Null
            ),
            "{k} was acknowledged, lost after restart; log:\n{}",
            s.log_tail(3000)
        );
    }
    let r = DiskFull {
        acked: acked.len(),
        refusal,
        reads_served,
        refused_read,
        status_full,
        status_after,
        ping_full,
        txn_full,
        status_freed,
        recovered,
    };
    eprintln!("disk full: {r:?}");
    Some(r)
}

/// Safety on a full disk: no write is acknowledged that was not persisted, and every
/// acknowledged write survives a restart once space is back.
#[test]
fn disk_full_never_acknowledges_a_lost_write() {
    if let Some(r) = disk_full_run("disk_full_never_acknowledges_a_lost_write") {
        assert!(!r.refusal.contains("OK"), "{r:?}");
        assert!(r.acked >= 1, "{r:?}");
    }
}

/// Redis's behaviour on a full disk (reliability.md §6 item 9): writes refused with Redis's
/// error reply (`-MISCONF Errors writing to the AOF file: No space left on device`) and not
/// applied, reads served, `aof_last_write_status:err` in INFO persistence, and writes accepted
/// again once space returns — without a restart. (The LSM reserves WAL space ahead with
/// fallocate, so a write that does not fit is refused before it is applied.)
#[test]
fn disk_full_refuses_writes_serves_reads_and_recovers() {
    if let Some(r) = disk_full_run("disk_full_refuses_writes_serves_reads_and_recovers") {
        assert_eq!(
            r.refusal, "-MISCONF Errors writing to the AOF file: No space left on device",
            "refused without Redis's reply: {r:?}"
        );
        assert!(r.reads_served, "reads not served on a full disk: {r:?}");
        assert_eq!(r.refused_read, "Ok(Null)", "refused write applied: {r:?}");
        assert_eq!(r.status_full, "err", "{r:?}");
        assert!(
            r.recovered,
            "writes not accepted after space returned: {r:?}"
        );
        assert_eq!(r.status_after, "ok", "{r:?}");
        // As Redis: PING and writes refused up front, so a transaction is refused whole.
        let misconf = "-MISCONF Errors writing to the AOF file: No space left on device";
        assert_eq!(r.ping_full, misconf, "{r:?}");
        assert_eq!(
            r.txn_full,
            (
                misconf.to_string(),
                "-EXECABORT Transaction discarded because of previous errors.".to_string()
            ),
            "{r:?}"
        );
        assert_eq!(
            r.status_freed, "ok",
            "space returned, before any write: {r:?}"
        );
    }
}

/// `aof_last_write_status` from INFO persistence (or what went wrong asking for it).
fn aof_status(s: &redis_tests::Server) -> String {
    match s
        .conn()
        .and_then(|mut c| c.call_value(&["INFO", "persistence"]))
    {
        Ok(v) => v.info_field("aof_last_write_status"),
        Err(e) => format!("{e:?}"),
    }
}
