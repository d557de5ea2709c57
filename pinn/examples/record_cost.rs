//! Hot-path and trainer timings for BENCHMARKS.md: the cost of counting one command (the same
//! code path as `pinnacle_server::pinn::record`: a `OnceLock` load, then relaxed atomic adds),
//! the once-a-second fold, and one live-sized training round.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p pinnacle-pinn --example record_cost`
//! (`-- --rounds-only` for the training rounds alone; `--n-colloc N` to change N_r; `--fourier K`
//! for K Fourier features of `x`; `--candle` also times the same steps through candle's
//! autograd and `AdamW`, the trainer before the hand-written pass, for a before/after on the
//! same machine at the same time).

use candle_core::DType;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use pinnacle_pinn::loss::{loss, sample_batch, Units};
use pinnacle_pinn::model::{init_vars, Mlp};
use pinnacle_pinn::{synth, OpKind, SlotCounters, TrainConfig, TrainState, SLOTS};
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Instant;

static COUNTERS: OnceLock<SlotCounters> = OnceLock::new();

#[inline(never)]
fn record(slot: u16, write: bool, bytes: usize) {
    let kind = if write { OpKind::Write } else { OpKind::Read };
    COUNTERS
        .get_or_init(SlotCounters::new)
        .record(slot, kind, bytes as u64);
}

fn per_call(threads: usize, calls: u64, slot_of: fn(u64) -> u16) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..calls {
                    record(black_box(slot_of(i + t as u64)), i % 4 == 0, 64);
                }
            });
        }
    });
    start.elapsed().as_nanos() as f64 / calls as f64
}

/// CPU time of the calling thread (robust to other processes competing for the cores).
fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--rounds-only") {
        return rounds();
    }
    const CALLS: u64 = 50_000_000;
    let spread: fn(u64) -> u16 = |i| (i.wrapping_mul(2654435761) % SLOTS as u64) as u16;
    let hot: fn(u64) -> u16 = |_| 4242;
    per_call(1, 1_000_000, spread); // warm-up and allocation of the counters
    println!(
        "record(), 1 thread, slots spread : {:.2} ns/call",
        per_call(1, CALLS, spread)
    );
    println!(
        "record(), 1 thread, one hot slot : {:.2} ns/call",
        per_call(1, CALLS, hot)
    );
    println!(
        "record(), 2 threads, spread      : {:.2} ns/call per thread",
        per_call(2, CALLS, spread)
    );
    println!(
        "record(), 2 threads, one hot slot: {:.2} ns/call per thread",
        per_call(2, CALLS, hot)
    );

    let counters = COUNTERS.get_or_init(SlotCounters::new);
    let mut per_slot = vec![0u64; SLOTS];
    let folds = 200;
    let start = Instant::now();
    for t in 0..folds {
        for i in 0..10_000u64 {
            counters.record(spread(i), OpKind::Read, 10);
        }
        black_box(counters.fold_slots(t, 64, &mut per_slot));
    }
    let with_traffic = start.elapsed();
    let start = Instant::now();
    for t in 0..folds {
        black_box(counters.fold_slots(t, 64, &mut per_slot));
    }
    println!(
        "fold_slots (64 buckets): {:.1} µs idle, {:.1} µs incl. recording 10k ops",
        start.elapsed().as_secs_f64() * 1e6 / folds as f64,
        with_traffic.as_secs_f64() * 1e6 / folds as f64
    );

    rounds()
}

fn rounds() -> anyhow::Result<()> {
    // Live-sized rounds: 60 rows × 64 buckets, default TrainConfig (200 steps, N_d 512,
    // N_r 1024), warm-started, as the trainer thread runs them every 5 s.
    let trace = synth::travelling_hot_spot(120, 64, 7);
    let mut cfg = TrainConfig::default();
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args
        .iter()
        .position(|a| a == "--n-colloc")
        .and_then(|i| args.get(i + 1))
    {
        cfg.loss.n_colloc = n.parse()?;
    }
    if let Some(k) = args
        .iter()
        .position(|a| a == "--fourier")
        .and_then(|i| args.get(i + 1))
    {
        cfg.loss.fourier = k.parse()?;
    }
    println!(
        "N_d {}, N_r {}, {} steps per round, Fourier K {}",
        cfg.loss.n_data, cfg.loss.n_colloc, cfg.steps_per_round, cfg.loss.fourier
    );
    if args.iter().any(|a| a == "--candle") {
        candle_rounds(&trace, &cfg)?;
    }
    let mut state = TrainState::new(cfg)?;
    for k in 0..4 {
        let window = trace.slice(k * 5, 60 + k * 5);
        let cpu = thread_cpu();
        let (r, _) = state.round(&window)?;
        let cpu = thread_cpu() - cpu;
        println!(
            "training round {}: {:.0} ms wall, {:.0} ms CPU ({:.1} ms/step, {} steps, accepted {})",
            r.round,
            r.duration.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3,
            r.ms_per_step,
            r.steps,
            r.accepted
        );
    }
    Ok(())
}

/// The same rounds through candle's autograd and `AdamW` (weight decay 0): the previous trainer.
fn candle_rounds(trace: &pinnacle_pinn::HeatSeries, cfg: &TrainConfig) -> anyhow::Result<()> {
    let vars = init_vars(cfg.seed, cfg.loss.input_map(), DType::F32)?;
    let mlp = Mlp::from_vars(&vars, cfg.loss.input_map());
    let params = ParamsAdamW {
        lr: cfg.lr,
        weight_decay: 0.0,
        ..ParamsAdamW::default()
    };
    let mut opt = AdamW::new(vars.clone(), params)?;
    let mut rng = fastrand::Rng::with_seed(cfg.seed);
    for k in 0..4 {
        let window = trace.slice(k * 5, 60 + k * 5);
        let n: usize = window.rows.iter().map(Vec::len).sum();
        let units = Units {
            origin: window.t0,
            t_span: cfg.t_span,
            u_scale: (window.rows.iter().flatten().sum::<f32>() / n as f32).max(1e-3),
        };
        let (cpu, wall) = (thread_cpu(), Instant::now());
        for _ in 0..cfg.steps_per_round {
            let batch = sample_batch(
                &window,
                &units,
                cfg.horizon,
                &cfg.loss,
                DType::F32,
                &mut rng,
            )?;
            let (total, _) = loss(&mlp, &batch, &cfg.loss)?;
            opt.backward_step(&total)?;
        }
        let cpu = thread_cpu() - cpu;
        println!(
            "candle round {}: {:.0} ms wall, {:.0} ms CPU",
            k + 1,
            wall.elapsed().as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
