//! Shared parts of the nemesis tests: run settings from the environment, the cluster under a
//! nemesis, per-node final reads, and the failure dump.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis_tests::cluster::Cluster;
use redis_tests::frame::Value;
use redis_tests::nemesis::{Fault, Nemesis};
use redis_tests::process::workspace_root;

/// One nemesis run at a time (the machine has 2 cores).
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the run lock.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Settings of one run.
#[derive(Clone, Debug)]
pub struct Run {
    /// Test name (dump folder prefix).
    pub name: &'static str,
    /// Seed of the nemesis and the workload.
    pub seed: u64,
    /// Seconds of faults.
    pub secs: u64,
    /// `--shards`.
    pub shards: usize,
    /// Faults drawn from.
    pub faults: Vec<Fault>,
    /// Client threads.
    pub clients: u64,
    /// Successful operations (or transactions) required.
    pub min_ok: u64,
    /// List-append: transactions mix appends and reads (Jepsen's workload); otherwise each
    /// is appends only or a single read (see `list_append_mixed_txns_under_nemesis`).
    pub mixed_txns: bool,
    /// List-append: most micro-operations in one transaction (1: single RPUSH / LRANGE).
    pub max_mops: u64,
    /// Faults injected first (then random ones).
    pub first: Vec<Fault>,
}

/// The runs of a test: `NEMESIS_SEED` replays one seed; otherwise the CI tier's fixed `seeds`
/// with `secs` each, or (`soak`) `NEMESIS_SEEDS` seeds (a number: that many from the clock; or
/// a comma list) of `NEMESIS_SECS` (default 300) each. `NEMESIS_FAULTS` overrides the faults.
pub fn runs(name: &'static str, seeds: &[u64], secs: u64, soak: bool, base: Run) -> Vec<Run> {
    let faults = match std::env::var("NEMESIS_FAULTS") {
        Ok(spec) => Fault::parse_list(&spec).expect("NEMESIS_FAULTS"),
        Err(_) => base.faults.clone(),
    };
    let secs = env_u64("NEMESIS_SECS").unwrap_or(if soak { 300 } else { secs });
    let seeds: Vec<u64> = if let Some(s) = env_u64("NEMESIS_SEED") {
        vec![s]
    } else if soak {
        match std::env::var("NEMESIS_SEEDS") {
            Ok(v) if v.contains(',') => {
                v.split(',').filter_map(|s| s.trim().parse().ok()).collect()
            }
            Ok(v) => {
                let n = v.trim().parse().unwrap_or(5);
                let t = redis_tests::rng::Rng::seed_from_env("__none__");
                (0..n).map(|i| t.wrapping_add(i * 7919)).collect()
            }
            Err(_) => {
                let t = redis_tests::rng::Rng::seed_from_env("__none__");
                (0..5).map(|i| t.wrapping_add(i * 7919)).collect()
            }
        }
    } else {
        seeds.to_vec()
    };
    let scale = secs as f64 / 25.0;
    seeds
        .into_iter()
        .map(|seed| Run {
            name,
            seed,
            secs,
            faults: faults.clone(),
            min_ok: env_u64("NEMESIS_MIN_OK")
                .unwrap_or(((base.min_ok as f64) * scale.max(1.0)) as u64),
            ..base.clone()
        })
        .collect()
}

/// Starts the 3-node cluster of a run (bus proxies on, `--shards`).
pub fn start_cluster(run: &Run) -> Cluster {
    let c = Cluster::builder(3)
        .with_proxies()
        .shards(run.shards)
        .start()
        .expect("cluster");
    c.leader_within(Duration::from_secs(30)).expect("leader");
    c
}

/// How long clients keep running after the heal before the final reads: reliability.md §6 T6
/// "then heal + 10 s + final reads on every node" (T7 runs the same schedule).
pub const HEAL_SECS: u64 = 10;

/// After the nemesis: heal everything, wait for a leader and for migrations to finish.
pub fn heal(c: &mut Cluster, nem: &mut Nemesis) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = nem.heal_all(c) {
        problems.push(format!("healing: {e}"));
    }
    if let Err(e) = c.leader_within(Duration::from_secs(30)) {
        problems.push(format!("no leader 30 s after healing: {e}"));
    }
    if let Err(e) = nem.wait_migrations(c, Duration::from_secs(60)) {
        problems.push(format!("{e}"));
    }
    // Reliability T8: no term of any group had two leaders, through every fault so far.
    match c.check_one_leader_per_term() {
        Ok(0) => problems.push("no node logged a leadership: the term check saw nothing".into()),
        Ok(n) => eprintln!("{n} (group, term) leaderships in the logs, one leader each"),
        Err(e) => problems.push(e.to_string()),
    }
    problems
}

/// `cmd` run on node `i` with READONLY (followers serve from their own data), retried for
/// `timeout` while the node is unreachable or not ready.
pub fn read_on(
    c: &Cluster,
    i: usize,
    cmds: &[Vec<String>],
    timeout: Duration,
) -> Option<Vec<Value>> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut conn) = c.conn(i) {
            if conn.call_value(&["READONLY"]).is_ok() {
                let replies: Result<Vec<Value>, _> =
                    cmds.iter().map(|args| conn.call_value(args)).collect();
                if let Ok(r) = replies {
                    if !r.iter().any(Value::is_error) {
                        return Some(r);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Waits until every node gives the same replies to `cmds` (read locally); returns the
/// differences left after `timeout`.
pub fn nodes_agree(c: &Cluster, cmds: &[Vec<String>], timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let per: Vec<Option<Vec<Value>>> = c
            .ids()
            .into_iter()
            .map(|i| read_on(c, i, cmds, Duration::from_secs(5)))
            .collect();
        let all_same = per.iter().all(|p| p.is_some() && *p == per[0]);
        if all_same {
            return Ok(());
        }
        if Instant::now() > deadline {
            let mut why = String::from("final reads differ between nodes:\n");
            for (k, cmd) in cmds.iter().enumerate() {
                let got: Vec<Option<&Value>> =
                    per.iter().map(|p| p.as_ref().map(|v| &v[k])).collect();
                if got.iter().any(|g| *g != got[0]) {
                    why.push_str(&format!("  {cmd:?}: {got:?}\n"));
                }
            }
            return Err(why);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Where failing runs are dumped: `target/nemesis/<name>-<seed>/`.
pub fn dump_dir(run: &Run) -> PathBuf {
    workspace_root()
        .join("target")
        .join("nemesis")
        .join(format!("{}-{}", run.name, run.seed))
}

/// For a failing run: writes the dump (with the HTML timeline of `bars` and the nemesis steps)
/// and adds the replay line to `problems`.
pub fn report_failure(
    run: &Run,
    c: &mut Cluster,
    nem: &Nemesis,
    bars: &[pinnacle_linearizability::Bar],
    history_jsonl: &str,
    problems: &mut Vec<String>,
) {
    let events: Vec<(u64, String)> = nem
        .events()
        .iter()
        .map(|e| (e.t_ns, e.what.clone()))
        .collect();
    let html = pinnacle_linearizability::render_html(
        &format!("{} seed {}", run.name, run.seed),
        bars,
        &events,
    );
    let dir = dump(run, c, nem, history_jsonl, &problems.join("\n"), &html);
    problems.push(format!(
        "NEMESIS_SEED={} dumped to {}",
        run.seed,
        dir.display()
    ));
}

/// Writes the dump of a failing run and returns its folder: `history.jsonl` (client events
/// and nemesis steps), `nemesis.txt`, `verdict.txt`, `timeline.html`, and `cluster/` (every
/// node's log and data dir).
pub fn dump(
    run: &Run,
    c: &mut Cluster,
    nem: &Nemesis,
    history_jsonl: &str,
    verdict: &str,
    html: &str,
) -> PathBuf {
    let dir = dump_dir(run);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    let mut lines: Vec<(u64, String)> = history_jsonl
        .lines()
        .chain(nem.log_json_lines().lines())
        .map(|l| (t_of(l), l.to_string()))
        .collect();
    lines.sort_by_key(|l| l.0);
    let body: String = lines.into_iter().map(|(_, l)| l + "\n").collect();
    let _ = std::fs::write(dir.join("history.jsonl"), body);
    let _ = std::fs::write(dir.join("nemesis.txt"), nem.log_text());
    let _ = std::fs::write(
        dir.join("verdict.txt"),
        format!("seed {} ({:?})\n{verdict}\n", run.seed, run),
    );
    let _ = std::fs::write(dir.join("timeline.html"), html);
    c.kill_all().ok();
    if let Some(root) = c.keep_dir() {
        copy_dir(&root, &dir.join("cluster"));
    }
    dir
}

fn t_of(line: &str) -> u64 {
    line.rsplit("\"t_mono_ns\":")
        .next()
        .and_then(|t| t.trim_end_matches('}').parse().ok())
        .unwrap_or(u64::MAX)
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = Command::new("cp").arg("-a").arg(from).arg(to).status();
}

/// The data dirs reopen cleanly: SIGKILL every node, restart them all, and every node must
/// answer `cmds` as node 1 did before (nothing acknowledged lost across a whole-cluster restart).
pub fn reopen_all(c: &mut Cluster, nem: &mut Nemesis, cmds: &[Vec<String>]) -> Result<(), String> {
    let before = read_on(c, 1, cmds, Duration::from_secs(10))
        .ok_or_else(|| "node1 unreadable before the restart".to_string())?;
    nem.note("reopen: SIGKILL every node, restart all");
    c.kill_all().map_err(|e| e.to_string())?;
    c.restart_stopped()
        .map_err(|e| format!("restart after the run: {e}"))?;
    c.leader_within(Duration::from_secs(30))
        .map_err(|e| format!("no leader after the whole-cluster restart: {e}"))?;
    nodes_agree(c, cmds, Duration::from_secs(30))?;
    let after = read_on(c, 1, cmds, Duration::from_secs(10))
        .ok_or_else(|| "node1 unreadable after the restart".to_string())?;
    if after != before {
        let diff: Vec<String> = cmds
            .iter()
            .zip(before.iter().zip(&after))
            .filter(|(_, (b, a))| b != a)
            .take(10)
            .map(|(cmd, (b, a))| format!("  {cmd:?}: {b:?} before, {a:?} after"))
            .collect();
        return Err(format!(
            "state changed across the whole-cluster restart:\n{}",
            diff.join("\n")
        ));
    }
    nem.note("reopen: same state on every node");
    Ok(())
}
