//! Whole-cluster power loss (reliability.md T9): a 3-node cluster keeps its data on an
//! in-memory FUSE file system ([`lazyfs`]) that remembers what was fsynced. Each cycle: clients
//! write unique values (and read), every node is SIGKILLed mid-load, everything not fsynced is
//! dropped (a random prefix of unsynced appends may survive, like pages the kernel had written
//! back), the nodes restart. Pass: the history (writes, reads before the crash, and reads of every
//! key after the restart) is linearizable, so no acknowledged write is missing; every node holds
//! the same keys; values settled in earlier cycles are unchanged; no node fails to restart.
//!
//! Knobs: `POWER_LOSS_CYCLES` (CI default 20, as T9 asks), `POWER_LOSS_SEED` (fixed default, printed),
//! `POWER_LOSS_DUMP_DIR` (where a failing history and the surviving data go, default the temp
//! dir). Needs `/dev/fuse` and `fusermount3` (Debian `fuse3`): without them the test fails under
//! `REDIS_TESTS_STRICT=1` and is skipped (with a message) otherwise.

#[path = "power_loss/lazyfs.rs"]
mod lazyfs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use pinnacle_linearizability::{check, dump, Op, Recorder, Ret, Verdict};
use redis_tests::cluster::{Cluster, LeaderClient, Outcome};
use redis_tests::frame::Value;
use redis_tests::rng::Rng;

/// Keys written per cycle (fresh keys each cycle keep the histories small).
const KEYS: u64 = 6;
const CLIENTS: u64 = 4;

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

/// Mounts a fresh lazy file system, or explains why it cannot (None: skip).
fn mount(seed: u64) -> Option<(tempfile::TempDir, lazyfs::LazyFs, lazyfs::Mounted)> {
    let strict = std::env::var("REDIS_TESTS_STRICT").is_ok_and(|v| v == "1");
    let missing = if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing".to_string())
    } else if !Path::new("/usr/bin/fusermount3").exists() && !Path::new("/bin/fusermount3").exists()
    {
        Some("fusermount3 is missing (apt-get install fuse3)".to_string())
    } else {
        None
    };
    let tmp = tempfile::Builder::new()
        .prefix("pinnacle-lazyfs")
        .tempdir()
        .expect("tempdir");
    let fs = lazyfs::LazyFs::new(seed);
    let res = match missing {
        Some(why) => Err(why),
        None => fs.mount(tmp.path()).map_err(|e| format!("mount: {e}")),
    };
    match res {
        Ok(m) => Some((tmp, fs, m)),
        Err(why) if strict => panic!("power-loss test needs FUSE: {why}"),
        Err(why) => {
            eprintln!("SKIPPED power-loss test: {why} (REDIS_TESTS_STRICT=1 makes this a failure)");
            None
        }
    }
}

fn to_ret(v: &Value) -> Option<Ret> {
    Some(match v {
        Value::Simple(s) if s == b"OK" => Ret::Ok,
        Value::Bulk(b) => Ret::Value(Some(b.clone().into())),
        Value::Null => Ret::Value(None),
        _ => return None,
    })
}

/// One client: SET (unique values) and GET on this cycle's keys until `stop`.
fn client(id: u64, cycle: u64, c: LeaderClient, rec: Recorder, stop: Arc<AtomicBool>, seed: u64) {
    let mut c = c;
    let mut rng = Rng::new(seed ^ (id + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let key = format!("pl:{cycle}:{}", rng.below(KEYS));
        let (op, args) = if rng.chance(70) {
            let v = format!("c{cycle}-p{id}-{seq}");
            (
                Op::Set(v.clone().into()),
                vec!["SET".to_string(), key.clone(), v],
            )
        } else {
            (Op::Get, vec!["GET".to_string(), key.clone()])
        };
        let pending = rec.invoke(id, key, op);
        match c.call(&args) {
            Outcome::Reply(v) => match to_ret(&v) {
                Some(r) => pending.ok(r),
                None => pending.fail(),
            },
            Outcome::Indeterminate(_) => pending.indeterminate(),
            Outcome::Unavailable(_) => {
                pending.fail();
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::create_dir_all(to);
    let Ok(rd) = std::fs::read_dir(from) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let dst = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &dst);
        } else {
            let _ = std::fs::copy(&p, &dst);
        }
    }
}

/// Writes the history and the surviving data directories somewhere a developer can look.
fn dump_failure(name: &str, c: &mut Cluster, data: &Path, rec: &Recorder, verdict: &Verdict) {
    let dir = std::env::var_os("POWER_LOSS_DUMP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("{name}-{}", std::process::id()));
    let _ = dump(&dir, name, &rec.history(), verdict);
    copy_tree(data, &dir.join("data"));
    if let Some(logs) = c.keep_dir() {
        eprintln!("node logs kept in {}", logs.display());
    }
    eprintln!("history and data directories dumped to {}", dir.display());
}

/// Every node's keys (local SCAN) are the same; returns them.
fn same_keys_everywhere(c: &Cluster) -> Result<usize, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sets: Vec<_> = c.ids().iter().map(|&i| c.keys(i)).collect();
        let ok = sets.iter().all(|s| s.is_ok())
            && sets
                .windows(2)
                .all(|w| w[0].as_ref().ok() == w[1].as_ref().ok());
        if ok {
            return Ok(sets[0].as_ref().map(|s| s.len()).unwrap_or(0));
        }
        if Instant::now() > deadline {
            let sizes: Vec<String> = sets
                .iter()
                .map(|s| match s {
                    Ok(s) => s.len().to_string(),
                    Err(e) => e.to_string(),
                })
                .collect();
            return Err(format!("nodes disagree on their keys: sizes {sizes:?}"));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn run(cycles: u64) {
    let seed = env_u64("POWER_LOSS_SEED", 0x90E4_1055);
    eprintln!("power_loss: seed {seed} (POWER_LOSS_SEED), {cycles} cycles");
    let Some((mnt, fs, mut mounted)) = mount(seed) else {
        return;
    };
    let data = mnt.path().join("data");
    let mut c = Cluster::builder(3)
        .data_root(&data)
        // Snapshots and log purges happen within the run, so they meet power losses too.
        .args(["--raft-snapshot-after", "300"])
        .start()
        .expect("start cluster");
    let addrs = c.addrs();
    let mut rng = Rng::new(seed);
    let mut settled: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    let started = Instant::now();
    let (mut acked_total, mut lost_bytes) = (0u64, 0u64);
    for cycle in 0..cycles {
        c.leader_within(Duration::from_secs(60))
            .expect("a leader before the load");
        let rec = Recorder::new();
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let lc = LeaderClient::new(addrs.clone())
                    .reply_timeout(Duration::from_secs(3))
                    .retry_for(Duration::from_secs(1));
                let (rec, stop) = (rec.clone(), stop.clone());
                thread::spawn(move || client(id, cycle, lc, rec, stop, seed ^ cycle))
            })
            .collect();
        // Let some writes be acknowledged, then cut the power at a random moment.
        let t0 = Instant::now();
        while rec.counts().ok < 40 && t0.elapsed() < Duration::from_secs(20) {
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(100 + rng.below(900)));
        c.kill_all().expect("kill all");
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("client thread");
        }
        let before = fs.stats();
        mounted.power_loss().expect("power loss");
        let after = fs.stats();
        lost_bytes += after.dropped_bytes - before.dropped_bytes;
        c.restart_stopped()
            .expect("every node restarts after the power loss");
        c.leader_within(Duration::from_secs(60))
            .expect("a leader after the power loss");
        // Read every key of this cycle through the leader, as part of the history.
        let mut reader = LeaderClient::new(addrs.clone())
            .reply_timeout(Duration::from_secs(10))
            .retry_for(Duration::from_secs(30));
        for k in 0..KEYS {
            let key = format!("pl:{cycle}:{k}");
            let p = rec.invoke(100, key.clone(), Op::Get);
            match reader.call(&["GET", &key]) {
                Outcome::Reply(v) => match to_ret(&v) {
                    Some(r) => {
                        if let Ret::Value(v) = &r {
                            settled.insert(key, v.as_ref().map(|b| b.to_vec()));
                        }
                        p.ok(r)
                    }
                    None => panic!("cycle {cycle}: GET {key}: {v:?}"),
                },
                other => panic!("cycle {cycle}: GET {key} after restart: {other:?}"),
            }
        }
        let counts = rec.counts();
        acked_total += counts.ok;
        let history = rec.history();
        let verdict = check(&history);
        if !verdict.is_ok() {
            dump_failure("power_loss", &mut c, &data, &rec, &verdict);
            panic!("cycle {cycle} (seed {seed}): history not linearizable across the power loss: {verdict}");
        }
        // Earlier cycles' keys were not written since: their values must still be there.
        for (key, want) in &settled {
            match reader.call(&["GET", key]) {
                Outcome::Reply(v) => {
                    let got = match &v {
                        Value::Bulk(b) => Some(b.clone()),
                        Value::Null => None,
                        other => panic!("GET {key}: {other:?}"),
                    };
                    assert_eq!(
                        &got, want,
                        "cycle {cycle} (seed {seed}): {key} changed after a later power loss"
                    );
                }
                other => panic!("GET {key}: {other:?}"),
            }
        }
        let applied = c
            .wait_converged(Duration::from_secs(60))
            .expect("applied indices converge");
        let keys = same_keys_everywhere(&c).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        eprintln!(
            "cycle {cycle}: {counts:?}; after restart: applied {applied}, {keys} keys on every node"
        );
    }
    let st = fs.stats();
    eprintln!(
        "power_loss: {cycles} cycles in {:.1?}, {acked_total} ops acknowledged, {lost_bytes} unsynced bytes dropped, \
         {} names reverted, {} fsyncs, {} dir fsyncs",
        started.elapsed(),
        st.reverted_names,
        st.fsyncs,
        st.dir_fsyncs
    );
    drop(c);
    drop(mounted);
}

/// T9, CI tier: 20 whole-cluster power losses with a fixed seed.
#[test]
fn whole_cluster_power_loss_keeps_every_acked_write() {
    let _g = serial();
    run(env_u64("POWER_LOSS_CYCLES", 20));
}

/// T9, soak tier: 100 cycles (`POWER_LOSS_CYCLES` overrides), random seed unless set.
#[test]
#[ignore]
fn whole_cluster_power_loss_soak() {
    let _g = serial();
    if std::env::var("POWER_LOSS_SEED").is_err() {
        let s = Rng::seed_from_env("POWER_LOSS_SEED");
        std::env::set_var("POWER_LOSS_SEED", s.to_string());
    }
    run(env_u64("POWER_LOSS_CYCLES", 100));
}

/// The layer itself: synced bytes and fsynced names survive, nothing else does (a torn tail is
/// at most a prefix of what was appended).
#[test]
fn lazyfs_keeps_only_what_was_synced() {
    use std::io::Write;
    let _g = serial();
    let Some((mnt, _fs, mut mounted)) = mount(7) else {
        return;
    };
    let dir = mnt.path().join("d");
    std::fs::create_dir(&dir).expect("mkdir");
    let mut a = std::fs::File::create(dir.join("a")).expect("create a");
    a.write_all(b"synced").expect("write");
    a.sync_data().expect("fsync");
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .expect("dir fsync");
    a.write_all(b"+lost").expect("write");
    std::fs::write(dir.join("b"), b"never synced, name not durable").expect("write b");
    let mut c = std::fs::File::create(dir.join("c")).expect("create c");
    c.write_all(b"synced data, name not durable")
        .expect("write c");
    c.sync_all().expect("fsync c");
    drop((a, c));
    mounted.power_loss().expect("power loss");
    let a = std::fs::read(dir.join("a")).expect("a survives");
    assert!(
        a.starts_with(b"synced") && b"synced+lost".starts_with(&a),
        "{a:?}"
    );
    assert!(!dir.join("b").exists(), "b's name was never fsynced");
    assert!(!dir.join("c").exists(), "c's name was never fsynced");
}
