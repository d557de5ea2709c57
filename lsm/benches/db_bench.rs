//! `db_bench`-style workloads against Pinnacle's engine and against `fjall`, in one process.
//!
//! `cargo bench -p pinnacle-lsm --bench db_bench -- [--num N] [--seeks S] [--engine pinnacle,fjall]`
//!
//! Workloads (16-byte keys, 100-byte values, one client thread, no fsync per write):
//! fillseq, fillrandom (a shuffled permutation of N keys), overwrite (N random keys),
//! readrandom (N random hits), readmissing (N random misses), seekrandom (S seeks, each
//! followed by 100 `next`). Each prints ops/s and p99 latency; each engine also reports
//! write amplification, space amplification and the bytes it passed to `write(2)`.

use hdrhistogram::Histogram;
use pinnacle_lsm::{Engine, Options, SyncPolicy, WriteBatch};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 100;
const SEEK_NEXTS: usize = 100;
/// Memtable and block-cache sizes used by both engines.
const MEMTABLE: usize = 64 << 20;
const CACHE: usize = 64 << 20;

/// The engine under test as the bench sees it.
trait Db {
    fn put(&self, key: &[u8], value: &[u8]);
    fn get(&self, key: &[u8]) -> bool;
    /// Seeks to `key` and reads up to `n` entries; returns how many it read.
    fn seek_next(&self, key: &[u8], n: usize) -> usize;
    /// Writes memtables out so on-disk size can be measured.
    fn flush(&self);
    /// Engine-reported write amplification, if the engine reports one.
    fn write_amp(&self) -> Option<f64>;
}

struct Pinnacle<E: Engine>(E);

impl<E: Engine> Db for Pinnacle<E> {
    fn put(&self, key: &[u8], value: &[u8]) {
        let mut wb = WriteBatch::new();
        wb.put(
            bytes::Bytes::copy_from_slice(key),
            bytes::Bytes::copy_from_slice(value),
        );
        self.0.write(wb).expect("pinnacle write");
    }
    fn get(&self, key: &[u8]) -> bool {
        self.0.get(key).expect("pinnacle get").is_some()
    }
    fn seek_next(&self, key: &[u8], n: usize) -> usize {
        let start = Bound::Included(bytes::Bytes::copy_from_slice(key));
        let it = self
            .0
            .scan((start, Bound::Unbounded), None)
            .expect("pinnacle scan");
        let mut read = 0;
        for item in it.take(n) {
            let (k, v) = item.expect("pinnacle next");
            std::hint::black_box((k, v));
            read += 1;
        }
        read
    }
    fn flush(&self) {
        self.0.flush().expect("pinnacle flush");
    }
    fn write_amp(&self) -> Option<f64> {
        Some(self.0.stats().write_amplification())
    }
}

struct Fjall {
    _db: fjall::Database,
    ks: fjall::Keyspace,
}

impl Db for Fjall {
    fn put(&self, key: &[u8], value: &[u8]) {
        self.ks.insert(key, value).expect("fjall insert");
    }
    fn get(&self, key: &[u8]) -> bool {
        self.ks.get(key).expect("fjall get").is_some()
    }
    fn seek_next(&self, key: &[u8], n: usize) -> usize {
        let mut read = 0;
        for guard in self.ks.range(key..).take(n) {
            std::hint::black_box(guard.into_inner().expect("fjall next"));
            read += 1;
        }
        read
    }
    fn flush(&self) {
        self.ks.rotate_memtable_and_wait().expect("fjall flush");
    }
    fn write_amp(&self) -> Option<f64> {
        None
    }
}

fn open_pinnacle(dir: &Path) -> Box<dyn Db> {
    let opts = Options {
        sync: SyncPolicy::Never,
        memtable_size: MEMTABLE,
        block_cache_size: CACHE,
        ..Options::default()
    };
    Box::new(Pinnacle(pinnacle_engine(dir, opts)))
}

/// The engine type the bench measures.
fn pinnacle_engine(dir: &Path, opts: Options) -> pinnacle_lsm::Lsm {
    pinnacle_lsm::Lsm::open(dir, opts).expect("open pinnacle")
}

fn open_fjall(dir: &Path) -> Box<dyn Db> {
    // Default journal mode: each write goes to the OS, no fsync (like SyncPolicy::Never).
    let db = fjall::Database::builder(dir)
        .cache_size(CACHE as u64)
        .open()
        .expect("open fjall");
    let ks = db
        .keyspace("bench", || {
            fjall::KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE as u64)
        })
        .expect("fjall keyspace");
    Box::new(Fjall { _db: db, ks })
}

/// splitmix64: reproducible key orders without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn key(i: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(format!("{i:016}").as_bytes());
    k
}

/// Same length and distribution as `key`, never present.
fn missing_key(i: u64) -> [u8; KEY_LEN] {
    let mut k = key(i);
    k[KEY_LEN - 1] = b'x';
    k
}

fn value(rng: &mut Rng) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    for chunk in v.chunks_mut(8) {
        let r = rng.next().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    v
}

/// Bytes this process has passed to write(2) so far (`wchar` in /proc/self/io).
fn wchar() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("wchar: ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// One measured workload.
struct Row {
    engine: &'static str,
    workload: &'static str,
    ops: u64,
    elapsed: Duration,
    p99_ns: u64,
    note: String,
}

impl Row {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

/// Times `ops` calls of `f(i)`, recording each call's latency.
fn measure(ops: u64, mut f: impl FnMut(u64)) -> (Duration, u64) {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let start = Instant::now();
    for i in 0..ops {
        let t = Instant::now();
        f(i);
        let _ = hist.record(t.elapsed().as_nanos().max(1) as u64);
    }
    (start.elapsed(), hist.value_at_quantile(0.99))
}

struct Config {
    num: u64,
    seeks: u64,
    engines: Vec<&'static str>,
    root: PathBuf,
}

fn run_engine(name: &'static str, cfg: &Config, rows: &mut Vec<Row>) {
    let open = |dir: &Path| -> Box<dyn Db> {
        match name {
            "fjall" => open_fjall(dir),
            _ => open_pinnacle(dir),
        }
    };
    let n = cfg.num;
    let user_bytes = n * (KEY_LEN + VALUE_LEN) as u64;
    let mut rng = Rng(42);

    // fillseq in its own database.
    {
        let dir = cfg.root.join(format!("{name}-seq"));
        let db = open(&dir);
        let w0 = wchar();
        let (t, p99) = measure(n, |i| db.put(&key(i), &value(&mut rng)));
        db.flush();
        let note = amp_note(db.as_ref(), &dir, user_bytes, wchar() - w0);
        rows.push(Row {
            engine: name,
            workload: "fillseq",
            ops: n,
            elapsed: t,
            p99_ns: p99,
            note,
        });
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    let dir = cfg.root.join(format!("{name}-rand"));
    let db = open(&dir);
    // fillrandom: every key once, in shuffled order.
    let mut order: Vec<u64> = (0..n).collect();
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let w0 = wchar();
    let (t, p99) = measure(n, |i| db.put(&key(order[i as usize]), &value(&mut rng)));
    db.flush();
    let note = amp_note(db.as_ref(), &dir, user_bytes, wchar() - w0);
    rows.push(Row {
        engine: name,
        workload: "fillrandom",
        ops: n,
        elapsed: t,
        p99_ns: p99,
        note,
    });
    drop(order);

    let w0 = wchar();
    let (t, p99) = measure(n, |_| db.put(&key(rng.below(n)), &value(&mut rng)));
    db.flush();
    let note = amp_note(db.as_ref(), &dir, user_bytes, wchar() - w0);
    rows.push(Row {
        engine: name,
        workload: "overwrite",
        ops: n,
        elapsed: t,
        p99_ns: p99,
        note,
    });

    let mut found = 0u64;
    let (t, p99) = measure(n, |_| found += db.get(&key(rng.below(n))) as u64);
    assert_eq!(found, n, "{name}: readrandom must hit every key");
    rows.push(Row {
        engine: name,
        workload: "readrandom",
        ops: n,
        elapsed: t,
        p99_ns: p99,
        note: String::new(),
    });

    let mut found = 0u64;
    let (t, p99) = measure(n, |_| found += db.get(&missing_key(rng.below(n))) as u64);
    assert_eq!(found, 0, "{name}: readmissing must miss");
    rows.push(Row {
        engine: name,
        workload: "readmissing",
        ops: n,
        elapsed: t,
        p99_ns: p99,
        note: String::new(),
    });

    let mut read = 0u64;
    let seeks = cfg.seeks;
    let (t, p99) = measure(seeks, |_| {
        read += db.seek_next(&key(rng.below(n)), SEEK_NEXTS) as u64
    });
    let note = format!("{:.1} entries/seek", read as f64 / seeks.max(1) as f64);
    rows.push(Row {
        engine: name,
        workload: "seekrandom+100next",
        ops: seeks,
        elapsed: t,
        p99_ns: p99,
        note,
    });
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

fn amp_note(db: &dyn Db, dir: &Path, user_bytes: u64, written: u64) -> String {
    let space = dir_bytes(dir) as f64 / user_bytes as f64;
    let io = written as f64 / user_bytes as f64;
    match db.write_amp() {
        Some(wa) => format!("WA {wa:.2} (engine), write(2) {io:.2}x, space {space:.2}x"),
        None => format!("write(2) {io:.2}x, space {space:.2}x"),
    }
}

fn parse_args() -> Config {
    let mut num = 1_000_000u64;
    let mut seeks = None;
    let mut engines = vec!["pinnacle", "fjall"];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_default();
        match a.as_str() {
            "--num" => num = val().parse().expect("--num N"),
            "--seeks" => seeks = Some(val().parse().expect("--seeks S")),
            "--engine" => {
                // A comma-separated list, run in the given order ("fjall,pinnacle" swaps them).
                engines = val()
                    .split(',')
                    .filter_map(|e| match e {
                        "pinnacle" => Some("pinnacle"),
                        "fjall" => Some("fjall"),
                        _ => None,
                    })
                    .collect();
            }
            _ => {} // cargo passes --bench
        }
    }
    let root = std::env::var_os("DB_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("db_bench-{}", std::process::id()));
    Config {
        num,
        seeks: seeks.unwrap_or((num / 100).max(1)),
        engines,
        root,
    }
}

fn main() {
    let cfg = parse_args();
    std::fs::create_dir_all(&cfg.root).expect("bench dir");
    println!(
        "db_bench: {} keys of {KEY_LEN} B, values of {VALUE_LEN} B, {} seeks x {SEEK_NEXTS} next; dir {}",
        cfg.num,
        cfg.seeks,
        cfg.root.display()
    );
    let mut rows = Vec::new();
    for &engine in &cfg.engines {
        run_engine(engine, &cfg, &mut rows);
    }
    let _ = std::fs::remove_dir_all(&cfg.root);

    println!();
    println!("| workload | engine | ops/s | p99 µs | notes |");
    println!("|---|---|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.1} | {} |",
            r.workload,
            r.engine,
            r.ops_per_sec(),
            r.p99_ns as f64 / 1000.0,
            r.note
        );
    }
    if cfg.engines.len() == 2 {
        println!();
        println!("| workload | pinnacle ops/s | fjall ops/s | pinnacle/fjall |");
        println!("|---|---:|---:|---:|");
        for p in rows.iter().filter(|r| r.engine == "pinnacle") {
            if let Some(f) = rows
                .iter()
                .find(|r| r.engine == "fjall" && r.workload == p.workload)
            {
                println!(
                    "| {} | {:.0} | {:.0} | {:.2}x |",
                    p.workload,
                    p.ops_per_sec(),
                    f.ops_per_sec(),
                    p.ops_per_sec() / f.ops_per_sec()
                );
            }
        }
    }
}
