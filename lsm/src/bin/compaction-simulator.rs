//! Drives the pure compaction controller without I/O: simulated flushes of random keys,
//! simulated merges, and a per-level write-amplification report.
//!
//! Usage: `compaction-simulator [--flushes N] [--keys K] [--entry-bytes B]
//!         [--memtable-bytes M] [--base-bytes L1] [--file-bytes F] [--l0-trigger T] [--seed S]`

use bytes::Bytes;
use pinnacle_lsm::compact::{
    apply, controller::levels_are_disjoint, pick, ControllerOptions, FileMeta, LevelsState,
};
use std::collections::HashMap;

struct Args {
    flushes: usize,
    keys: u64,
    entry_bytes: u64,
    memtable_bytes: u64,
    base_bytes: u64,
    file_bytes: u64,
    l0_trigger: usize,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        flushes: 400,
        keys: 1_000_000,
        entry_bytes: 116,
        memtable_bytes: 4 << 20,
        base_bytes: 16 << 20,
        file_bytes: 2 << 20,
        l0_trigger: 4,
        seed: 42,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: u64 = v
            .parse()
            .map_err(|_| format!("{flag}: not a number: {v}"))?;
        match flag.as_str() {
            "--flushes" => a.flushes = n as usize,
            "--keys" => a.keys = n.max(1),
            "--entry-bytes" => a.entry_bytes = n.max(1),
            "--memtable-bytes" => a.memtable_bytes = n.max(1),
            "--base-bytes" => a.base_bytes = n.max(1),
            "--file-bytes" => a.file_bytes = n.max(1),
            "--l0-trigger" => a.l0_trigger = n.max(1) as usize,
            "--seed" => a.seed = n,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

// xorshift64*: deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

struct Sim {
    a: Args,
    state: LevelsState,
    files: HashMap<u64, Vec<u64>>,
    next_id: u64,
    seq: u64,
    written: Vec<u64>,
}

impl Sim {
    fn meta(&mut self, keys: Vec<u64>) -> FileMeta {
        let id = self.next_id;
        self.next_id += 1;
        let m = FileMeta {
            id,
            size: keys.len() as u64 * self.a.entry_bytes,
            smallest: Bytes::copy_from_slice(&keys[0].to_be_bytes()),
            largest: Bytes::copy_from_slice(&keys[keys.len() - 1].to_be_bytes()),
            largest_exclusive: false,
            min_seq: self.seq,
            max_seq: self.seq,
        };
        self.seq += 1;
        self.files.insert(id, keys);
        m
    }

    fn flush(&mut self, rng: &mut Rng) {
        let n = (self.a.memtable_bytes / self.a.entry_bytes).max(1);
        let mut keys: Vec<u64> = (0..n).map(|_| rng.next() % self.a.keys).collect();
        keys.sort_unstable();
        keys.dedup();
        let m = self.meta(keys);
        self.written[0] += m.size;
        self.state.levels[0].insert(0, m);
    }

    fn compact_all(&mut self, opts: &ControllerOptions) -> usize {
        let mut n = 0;
        while let Some(task) = pick(opts, &self.state) {
            n += 1;
            let mut merged: Vec<u64> = task
                .upper
                .iter()
                .chain(&task.lower)
                .flat_map(|f| self.files.get(&f.id).cloned().unwrap_or_default())
                .collect();
            merged.sort_unstable();
            merged.dedup();
            let per_file = (self.a.file_bytes / self.a.entry_bytes).max(1) as usize;
            // A lone file with nothing below only changes level (as the engine does).
            let outputs = if task.upper.len() == 1 && task.lower.is_empty() {
                vec![task.upper[0].clone()]
            } else {
                let chunks: Vec<Vec<u64>> = merged.chunks(per_file).map(<[u64]>::to_vec).collect();
                let outs: Vec<FileMeta> = chunks.into_iter().map(|c| self.meta(c)).collect();
                self.written[task.output_level] += outs.iter().map(|m| m.size).sum::<u64>();
                outs
            };
            let kept: Vec<u64> = outputs.iter().map(|m| m.id).collect();
            let (next, deleted) = apply(&self.state, &task, outputs);
            for id in deleted {
                if !kept.contains(&id) {
                    self.files.remove(&id);
                }
            }
            self.state = next;
            assert!(levels_are_disjoint(&self.state), "sorted levels overlap");
        }
        n
    }
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let opts = ControllerOptions {
        l0_trigger: a.l0_trigger,
        level_base_bytes: a.base_bytes,
        ratio: 10,
        max_levels: 7,
    };
    let mut rng = Rng(a.seed.max(1));
    let flushes = a.flushes;
    println!(
        "compaction-simulator: {} flushes of {} MiB, {} distinct keys, {} B entries, L1 target {} MiB, files {} MiB, L0 trigger {}",
        flushes,
        a.memtable_bytes >> 20,
        a.keys,
        a.entry_bytes,
        a.base_bytes >> 20,
        a.file_bytes >> 20,
        a.l0_trigger
    );
    let mut sim = Sim {
        a,
        state: LevelsState {
            levels: vec![Vec::new(); 7],
        },
        files: HashMap::new(),
        next_id: 1,
        seq: 1,
        written: vec![0; 7],
    };
    let mut compactions = 0;
    for _ in 0..flushes {
        sim.flush(&mut rng);
        compactions += sim.compact_all(&opts);
    }
    let user = sim.written[0].max(1);
    println!(
        "{:>5} {:>7} {:>12} {:>12} {:>14} {:>8}",
        "level", "files", "bytes", "target", "bytes written", "w-amp"
    );
    for (l, files) in sim.state.levels.iter().enumerate() {
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        let target = if l == 0 { 0 } else { opts.target(l) };
        println!(
            "{:>5} {:>7} {:>12} {:>12} {:>14} {:>8.2}",
            format!("L{l}"),
            files.len(),
            bytes,
            target,
            sim.written[l],
            sim.written[l] as f64 / user as f64
        );
    }
    let total: u64 = sim.written.iter().sum();
    let live: u64 = sim.state.levels.iter().flatten().map(|f| f.size).sum();
    println!("compactions run: {compactions}");
    println!(
        "write amplification (flush + compaction bytes / flushed bytes): {:.2}",
        total as f64 / user as f64
    );
    println!(
        "space amplification (bytes on disk / unique live data): {:.2}",
        live as f64
            / (sim
                .files
                .values()
                .flatten()
                .collect::<std::collections::HashSet<_>>()
                .len() as u64
                * sim.a.entry_bytes)
                .max(1) as f64
    );
}
