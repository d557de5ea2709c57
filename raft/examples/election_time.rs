//! Time to a new leader after the leader dies, over many trials, in one process.
//!
//! Three nodes over localhost TCP. Each trial waits for a settled cluster (every node applied
//! the latest entry), sleeps a pseudo-random 0-99 ms so the kill lands at a random point of the
//! heartbeat cycle, then shuts the leader's node down (transport and Raft: its peers see the
//! connections close, as after SIGKILL) and measures until a survivor (a) reports itself leader
//! and (b) passes a ReadIndex barrier (can serve). The killed node is restarted from its disk.
//!
//! `cargo run -p pinnacle-raft --example election_time -- [trials] [min_ms max_ms]`
//! (defaults: 50 trials, `NodeOptions::new`'s election timeout).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinnacle_raft::{Group, MemTarget, NodeId, NodeOptions, RaftNode};

const G: u64 = 0;

struct Live {
    node: RaftNode,
    group: Group<MemTarget>,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

async fn open(o: &NodeOptions, members: &BTreeMap<NodeId, String>) -> Res<Live> {
    let node = RaftNode::start(o.clone()).await?;
    let group = node.open_group(G, Arc::new(MemTarget::default())).await?;
    group.initialize(members).await?;
    Ok(Live { node, group })
}

/// A confirmed leader among `live`, waiting up to `limit`.
async fn leader(live: &BTreeMap<NodeId, Live>, limit: Duration) -> Res<NodeId> {
    let start = Instant::now();
    while start.elapsed() < limit {
        for (id, l) in live {
            if l.group.is_leader() && l.group.read_barrier().await.is_ok() {
                return Ok(*id);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err("no leader".into())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} min={:.0} p50={:.0} p90={:.0} p99={:.0} max={:.0} ms",
        v.len(),
        v[0],
        pct(&v, 50.0),
        pct(&v, 90.0),
        pct(&v, 99.0),
        v[v.len() - 1]
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Res<()> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let trials = args.first().copied().unwrap_or(50);
    let root = tempfile::tempdir()?;
    let mut opts = Vec::new();
    let mut live = BTreeMap::new();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let mut o = NodeOptions::new(
            id,
            "127.0.0.1:0".parse()?,
            root.path().join(format!("n{id}")),
        );
        if let [_, lo, hi] = args[..] {
            o.election_timeout = (Duration::from_millis(lo), Duration::from_millis(hi));
        }
        let node = RaftNode::start(o.clone()).await?;
        o.listen = node.addr();
        opts.push(o);
        nodes.push(node);
    }
    println!(
        "heartbeat {:?}, election_timeout {:?}",
        opts[0].heartbeat, opts[0].election_timeout
    );
    let members: BTreeMap<NodeId, String> = opts
        .iter()
        .map(|o| {
            (
                o.id,
                format!("127.0.0.1:{}@{}", 7000 + o.id, o.listen.port()),
            )
        })
        .collect();
    for node in nodes {
        let group = node.open_group(G, Arc::new(MemTarget::default())).await?;
        group.initialize(&members).await?;
        live.insert(node.id(), Live { node, group });
    }

    let (mut elected, mut serving) = (Vec::new(), Vec::new());
    for trial in 0..trials {
        let old = leader(&live, Duration::from_secs(10)).await?;
        // Settled: every node applied the newest entry and follows the leader.
        live[&old]
            .group
            .propose(format!("t{trial}").into_bytes())
            .await?;
        let want = live[&old].group.target().applied().len();
        let start = Instant::now();
        while live
            .values()
            .any(|l| l.group.target().applied().len() < want)
        {
            if start.elapsed() > Duration::from_secs(10) {
                return Err("replicas did not converge".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let old_term = live[&old].group.metrics().current_term;
        let jitter = Instant::now().elapsed().subsec_nanos() as u64 ^ (trial * 7919);
        tokio::time::sleep(Duration::from_millis(jitter % 100)).await;

        let killed = live.remove(&old).ok_or("leader vanished")?;
        let t0 = Instant::now();
        killed.node.shutdown().await;
        drop(killed);
        let (t_elected, new) = loop {
            let found = live
                .iter()
                .find(|(_, l)| l.group.is_leader() && l.group.metrics().current_term > old_term);
            if let Some((id, _)) = found {
                break (t0.elapsed(), *id);
            }
            if t0.elapsed() > Duration::from_secs(10) {
                return Err("no new leader within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        // Any survivor that leads and passes a quorum round trip (normally `new`).
        let t_serving = 'serving: loop {
            for l in live.values() {
                if l.group.is_leader() && l.group.read_barrier().await.is_ok() {
                    break 'serving t0.elapsed();
                }
            }
            if t0.elapsed() > Duration::from_secs(10) {
                return Err("new leader cannot serve".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        // More than +1: a round failed (split vote) before this one won.
        let terms = live[&new].group.metrics().current_term - old_term;
        println!(
            "trial {trial:2}: killed {old}, node {new} leader after {:.0} ms, serving after {:.0} ms, term +{terms}",
            ms(t_elected),
            ms(t_serving)
        );
        elected.push(ms(t_elected));
        serving.push(ms(t_serving));
        let o = &opts[(old - 1) as usize];
        live.insert(old, open(o, &members).await?);
    }
    summary("new leader elected", elected);
    summary("new leader serving (ReadIndex ok)", serving);
    for (_, l) in live {
        l.node.shutdown().await;
    }
    Ok(())
}
