//! Offline evaluation of the PINN against its baselines on synthetic traces.
//!
//! `cargo run --release -p pinnacle-pinn --example eval -- [--rounds N] [--steps N]
//!  [--colloc N] [--lambda-r X] [--buckets N] [--warmup N] [--learn-velocity] [--frame-speed]
//!  [--frame-speed-delay N]
//!  [--velocity-lr X] [--recent F] [--recent-rows N] [--fast-alpha X]
//!  [--forced] [--lambda-f X] [--source-lr X] [--source-memory S]
//!  [--lr X] [--seed N] [--fourier K] [--lambda-i X] [--lambda-b X]
//!  [--lr-boost X] [--lr-boost-rounds N] [--lr-warmup N] [--lr-min F]
//!  [--trace NAME]...`
//!
//! `--forced` trains forced Burgers' (a learned source `s(x)`, see `pinnacle_pinn::loss`);
//! `--seed` changes the weight initialisation and point sampling only, never the traces;
//! `--frame-speed` trains only Burgers' frame speed `a` (residual `u_t + (u + a)·u_x − ν·u_xx`),
//! once `--frame-speed-delay` rounds (default 0) have been accepted;
//! `--fourier K` feeds the network `t` and K Fourier pairs of `x` (default 0: raw `x`).
//! `--lr-*` set the learning-rate schedule (`pinnacle_pinn::LrSchedule`; default constant):
//! the first rounds at `--lr-boost` × lr fading over `--lr-boost-rounds`, a linear warm-up over
//! each round's first `--lr-warmup` steps, a half cosine down to `--lr-min` × within a round.
//! Traces: hot-spot, burgers, storm, diurnal, noise (the default five) and ramp (a storm still
//! building up, `synth::growing_bump`).
//!
//! Each trace is replayed as the live trainer would see it: a round of Adam steps every 5 s on
//! the last 60 s, warm-started, then a +10 s forecast scored when that second arrives. Prints
//! forecast MSE relative to persistence on the same forecasts: the PINN's field ("pinn warm"),
//! the last row plus its predicted change ("change"), the one of those two with the lower
//! recent error ("served", what the server offers the planner as the PINN), the same choice
//! with a faster-forgetting error average ("fast", `--fast-alpha`), the per-bucket choice
//! between the two ("bucket"), the baselines, and "selected" (the model with the lowest recent
//! error of all, what the planner acts on). Every choice learns a forecast's error only once
//! its target second is observed, as a live server does (until 2026-12-06 "served" and
//! "selected" also saw the previous round's error at a second still ahead).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use pinnacle_pinn::eval::{evaluate, EvalConfig};
use pinnacle_pinn::synth;
use pinnacle_pinn::trainer::TrainState;
use pinnacle_pinn::HeatSeries;

fn parse<T: std::str::FromStr>(v: Option<String>, flag: &str) -> Result<T> {
    v.with_context(|| format!("{flag} needs a value"))?
        .parse()
        .map_err(|_| anyhow::anyhow!("bad value for {flag}"))
}

fn main() -> Result<()> {
    // candle's CPU matmul splits over RAYON_NUM_THREADS threads (default: every core); on a
    // shared machine that made an Adam step slower, not faster. Set before any thread exists.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let mut cfg = EvalConfig::default();
    let mut buckets = 64usize;
    let mut traces: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => cfg.rounds = parse(args.next(), &a)?,
            "--steps" => cfg.train.steps_per_round = parse(args.next(), &a)?,
            "--colloc" => cfg.train.loss.n_colloc = parse(args.next(), &a)?,
            "--recent" => cfg.train.loss.recent_fraction = parse(args.next(), &a)?,
            "--recent-rows" => cfg.train.loss.recent_rows = parse(args.next(), &a)?,
            "--lambda-r" => cfg.train.loss.lambda_r = parse(args.next(), &a)?,
            "--buckets" => buckets = parse(args.next(), &a)?,
            "--warmup" => cfg.warmup_rounds = parse(args.next(), &a)?,
            "--learn-velocity" => cfg.train.learn_velocity = true,
            "--frame-speed" => cfg.train.learn_frame_speed = true,
            "--frame-speed-delay" => cfg.train.frame_speed_delay = parse(args.next(), &a)?,
            "--velocity-lr" => cfg.train.velocity_lr_scale = parse(args.next(), &a)?,
            "--fast-alpha" => cfg.fast_alpha = parse(args.next(), &a)?,
            "--forced" => cfg.train.loss.forced = true,
            "--lambda-f" => cfg.train.loss.lambda_f = parse(args.next(), &a)?,
            "--source-lr" => cfg.train.source_lr_scale = parse(args.next(), &a)?,
            "--source-memory" => cfg.train.loss.source_memory = parse(args.next(), &a)?,
            "--seed" => cfg.train.seed = parse(args.next(), &a)?,
            "--lr" => cfg.train.lr = parse(args.next(), &a)?,
            "--fourier" => cfg.train.loss.fourier = parse(args.next(), &a)?,
            "--lr-boost" => cfg.train.schedule.boost = parse(args.next(), &a)?,
            "--lr-boost-rounds" => cfg.train.schedule.boost_rounds = parse(args.next(), &a)?,
            "--lr-warmup" => cfg.train.schedule.warmup_steps = parse(args.next(), &a)?,
            "--lr-min" => cfg.train.schedule.min_scale = parse(args.next(), &a)?,
            "--lambda-i" => cfg.train.loss.lambda_i = parse(args.next(), &a)?,
            "--lambda-b" => cfg.train.loss.lambda_b = parse(args.next(), &a)?,
            "--trace" => traces.push(parse(args.next(), &a)?),
            other => bail!("unknown argument {other}"),
        }
    }
    if traces.is_empty() {
        traces = ["hot-spot", "burgers", "storm", "diurnal", "noise"]
            .map(String::from)
            .to_vec();
    }
    let secs = cfg.seconds();
    let make = |name: &str| -> Result<HeatSeries> {
        Ok(match name {
            "hot-spot" => synth::travelling_hot_spot(secs, buckets, 1),
            "burgers" => {
                synth::burgers_field(secs, buckets, cfg.train.loss.nu, cfg.train.t_span, 2)
            }
            "storm" => synth::hot_key_storm(secs, buckets, cfg.first_round_at + 10, 3),
            "diurnal" => synth::diurnal(secs, buckets, 4),
            "noise" => synth::noise(secs, buckets, 5),
            "ramp" => synth::growing_bump(secs, buckets, cfg.first_round_at - 10, 6),
            other => bail!("unknown trace {other}"),
        })
    };
    // One thread, as the live trainer runs.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    println!(
        "buckets {buckets}, window {} s, horizon +{} s, {} rounds × {} steps (every {} s), N_d {}, N_r {}, ν {}, λ_r {}, λ_b {}, λ_i {}; warm = rounds ≥ {} ({}+ accumulated steps)",
        cfg.window, cfg.horizon, cfg.rounds, cfg.train.steps_per_round, cfg.round_every,
        cfg.train.loss.n_data, cfg.train.loss.n_colloc, cfg.train.loss.nu, cfg.train.loss.lambda_r,
        cfg.train.loss.lambda_b, cfg.train.loss.lambda_i, cfg.warmup_rounds + 1,
        (cfg.warmup_rounds + 1) * cfg.train.steps_per_round
    );
    println!(
        "{:<10} {:>14} {:>10} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>12} {:>8} {:>8}",
        "trace",
        "pinn 1st round",
        "pinn warm",
        "change",
        "served",
        "bucket",
        "fast",
        "ewma",
        "linear",
        "selected",
        "persist MSE",
        "ms/step",
        "rejected"
    );
    let mut all_ms = Vec::new();
    for name in &traces {
        let trace = make(name)?;
        let t = Instant::now();
        let r = pool.install(|| evaluate(&trace, &cfg))?;
        let ratio = |b: &pinnacle_pinn::eval::Scoreboard, m: &str| -> String {
            match (b.mse(m), b.mse("persistence")) {
                (Some((e, _)), Some((p, _))) if p > 0.0 => format!("{:.3}", e / p),
                _ => "-".into(),
            }
        };
        let persist = r.warm.mse("persistence").map_or(f64::NAN, |p| p.0);
        println!(
            "{:<10} {:>14} {:>10} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>12.1} {:>8.2} {:>8}",
            name,
            ratio(&r.first, "pinn"),
            ratio(&r.warm, "pinn"),
            ratio(&r.warm, "pinn-change"),
            ratio(&r.warm, "pinn-served"),
            ratio(&r.warm, "pinn-bucket"),
            ratio(&r.warm, "pinn-fast"),
            ratio(&r.warm, "ewma"),
            ratio(&r.warm, "linear"),
            ratio(&r.warm, "selected"),
            persist,
            r.ms_per_step,
            r.rejected
        );
        eprintln!(
            "  {name}: {:.1} s, final loss terms data {:.4} pde {:.4} bc {:.4} ic {:.4}, velocity units a {:.3} b {:.3}, source max {:.1}/s",
            t.elapsed().as_secs_f64(),
            r.last_terms.data,
            r.last_terms.pde,
            r.last_terms.bc,
            r.last_terms.ic,
            r.last_velocity[0],
            r.last_velocity[1],
            r.last_source_max
        );
        all_ms.push(r.ms_per_step);
    }
    // Forward pass of the served model over 64 buckets.
    let trace = synth::travelling_hot_spot(40, buckets, 9);
    let mut state = TrainState::new(cfg.train.clone())?;
    let (_, model) = pool.install(|| state.round(&trace.slice(0, 30)))?;
    let model = model.context("first round rejected")?;
    let n = 200;
    let t = Instant::now();
    for i in 0..n {
        pool.install(|| model.forecast(30.0 + (i % 10) as f64, buckets))?;
    }
    println!(
        "forward pass ({buckets} points): {:.1} µs; mean Adam step {:.2} ms ({} steps/round ≈ {:.2} s)",
        t.elapsed().as_secs_f64() * 1e6 / n as f64,
        all_ms.iter().sum::<f64>() / all_ms.len().max(1) as f64,
        cfg.train.steps_per_round,
        all_ms.iter().sum::<f64>() / all_ms.len().max(1) as f64 * cfg.train.steps_per_round as f64 / 1e3
    );
    Ok(())
}
