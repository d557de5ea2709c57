//! Tests of forced Burgers' ([`LossConfig::forced`]): the source term's gradient, the points it
//! is sampled on, and that it forecasts growth the unforced residual cannot.

use crate::autograd_reference::{autograd_reference, perturbed_params};
use crate::fourier::InputMap;
use crate::fused::{loss_and_grad, Params, Workspace, SOURCE_BINS};
use crate::loss::{sample_points, source_bin, LossConfig, Points, Units};
use crate::telemetry::HeatSeries;
use crate::trainer::{TrainConfig, TrainState};

/// Random points with a source time weight in (0, 1] at every collocation point.
fn forced_points(rng: &mut fastrand::Rng) -> Points {
    let f = |rng: &mut fastrand::Rng, k: usize| (0..k).map(|_| rng.f32()).collect::<Vec<_>>();
    Points {
        data_t: f(rng, 13),
        data_x: f(rng, 13),
        data_u: f(rng, 13).into_iter().map(|u| 2.0 * u).collect(),
        colloc_t: f(rng, 40),
        colloc_x: f(rng, 40),
        colloc_w: f(rng, 40).into_iter().map(|w| 0.2 + 0.8 * w).collect(),
        bc_t: f(rng, 5),
        ic_t: vec![0.05; 8],
        ic_x: (0..8).map(|b| (b as f32 + 0.5) / 8.0).collect(),
        ic_u: f(rng, 8),
    }
}

/// Parameters with nonzero biases, velocity units away from (0, 1) and a nonzero source.
fn forced_params() -> Params {
    let mut p = perturbed_params(InputMap::default());
    let lay = p.layout();
    let mut rng = fastrand::Rng::with_seed(5);
    p.values[lay.velocity()] = 0.3;
    p.values[lay.velocity() + 1] = 0.7;
    for s in &mut p.values[lay.source()..] {
        *s = 2.0 * rng.f32() - 1.0;
    }
    p
}

fn forced_cfg() -> LossConfig {
    LossConfig {
        nu: 0.05,
        forced: true,
        lambda_f: 0.3,
        ..LossConfig::default()
    }
}

#[test]
fn forced_gradients_match_candle_autograd() {
    let p = forced_params();
    let pts = forced_points(&mut fastrand::Rng::with_seed(1));
    let cfg = forced_cfg();
    // Reference: candle's forward-mode tangents and backward(), in f64.
    let (want, expect) = autograd_reference(&p, &pts, &cfg, true);

    let (mut ws, mut grad) = (Workspace::default(), Vec::new());
    let got = loss_and_grad(&p, &pts, &cfg, &mut ws, &mut grad);
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * (1.0 + b.abs());
    assert!(close(got.pde, want.pde), "{got:?} vs {want:?}");
    assert!(close(got.source, want.source), "{got:?} vs {want:?}");
    assert!(close(got.total, want.total), "{got:?} vs {want:?}");
    assert!(got.source > 0.1, "the regulariser is exercised: {got:?}");

    assert_eq!(grad.len(), expect.len());
    let scale = expect.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    for (i, (&g, &e)) in grad.iter().zip(&expect).enumerate() {
        assert!(
            (g as f64 - e).abs() <= 1e-4 * scale + 1e-4 * e.abs(),
            "value {i}: {g} vs {e}"
        );
    }
    // The source bins with collocation points get more than the regulariser's share.
    let hit = source_bin(pts.colloc_x[0]);
    let reg_only = 2.0 * cfg.lambda_f as f32 / SOURCE_BINS as f32 * p.source()[hit];
    assert!((grad[p.layout().source() + hit] - reg_only).abs() > 1e-3);
}

#[test]
fn source_gradient_matches_finite_differences() {
    let p = forced_params();
    let pts = forced_points(&mut fastrand::Rng::with_seed(2));
    let cfg = forced_cfg();
    let mut ws = Workspace::default();
    let (mut grad, mut scratch) = (Vec::new(), Vec::new());
    loss_and_grad(&p, &pts, &cfg, &mut ws, &mut grad);
    // The loss is quadratic in each source bin, so a central difference is exact up to f32
    // rounding; check the bins of the first few collocation points and one empty bin.
    let mut bins: Vec<usize> = pts.colloc_x[..4].iter().map(|&x| source_bin(x)).collect();
    if let Some(empty) =
        (0..SOURCE_BINS).find(|&k| pts.colloc_x.iter().all(|&x| source_bin(x) != k))
    {
        bins.push(empty);
    }
    let h = 1e-2f32;
    for k in bins {
        let at = |d: f32, ws: &mut Workspace, scratch: &mut Vec<f32>| {
            let mut q = p.clone();
            let at = q.layout().source() + k;
            q.values[at] += d;
            loss_and_grad(&q, &pts, &cfg, ws, scratch).total as f64
        };
        let fd = (at(h, &mut ws, &mut scratch) - at(-h, &mut ws, &mut scratch)) / (2.0 * h as f64);
        let g = grad[p.layout().source() + k] as f64;
        assert!(
            (fd - g).abs() <= 2e-3 * (1.0 + g.abs()),
            "bin {k}: finite difference {fd} vs gradient {g}"
        );
    }
}

#[test]
fn forced_points_weight_the_source_and_cover_the_horizon() {
    let series = HeatSeries {
        t0: 0,
        rows: (0..30).map(|_| vec![100.0; 8]).collect(),
    };
    let units = Units {
        origin: 0,
        t_span: 80.0,
        u_scale: 100.0,
    };
    let t_now = units.time(29.0);
    let t_end = units.time(39.0);
    let mut rng = fastrand::Rng::with_seed(3);
    let plain = sample_points(&series, &units, 10.0, &LossConfig::default(), &mut rng);
    assert!(plain.colloc_w.is_empty(), "unforced: no source weights");
    // The PDE is imposed past the window, where the +10 s forecast is read.
    let ahead = plain.colloc_t.iter().filter(|&&t| t > t_now).count();
    assert!(ahead > plain.colloc_t.len() / 8, "{ahead} points past now");
    assert!(plain.colloc_t.iter().all(|&t| t <= t_end + 1e-6));
    let cfg = LossConfig {
        forced: true,
        source_memory: 5.0,
        ..LossConfig::default()
    };
    let pts = sample_points(&series, &units, 10.0, &cfg, &mut rng);
    assert_eq!(pts.colloc_w.len(), pts.colloc_t.len());
    for (&t, &w) in pts.colloc_t.iter().zip(&pts.colloc_w) {
        let want = if t >= t_now {
            1.0
        } else {
            ((t - t_now) * 80.0 / 5.0).exp()
        };
        assert!((w - want).abs() < 1e-5, "t {t}: {w} vs {want}");
    }
}

/// Background 100 on `buckets` buckets with a Gaussian bump (width 0.08 ring, centred at 0.5)
/// whose peak grows by `rate` heat per second from second 0.
fn growing_bump(rows: usize, buckets: usize, rate: f32) -> HeatSeries {
    let rows = (0..rows)
        .map(|t| {
            (0..buckets)
                .map(|b| {
                    let d = (b as f32 + 0.5) / buckets as f32 - 0.5;
                    100.0 + rate * t as f32 * (-d * d / (2.0 * 0.08 * 0.08)).exp()
                })
                .collect()
        })
        .collect();
    HeatSeries { t0: 0, rows }
}

fn mse(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64
}

/// MSE of the change forecast at +10 s, and persistence's, after `rounds` rounds on the
/// first 30 s of a bump growing by 10 heat per second.
fn change_error(forced: bool, rounds: usize) -> (f64, f64) {
    let (rows, buckets, horizon) = (30usize, 16usize, 10usize);
    let trace = growing_bump(rows + horizon, buckets, 10.0);
    let window = trace.slice(0, rows);
    let cfg = TrainConfig {
        loss: LossConfig {
            n_data: 128,
            n_colloc: 128,
            n_boundary: 16,
            forced,
            ..LossConfig::default()
        },
        steps_per_round: 100,
        ..TrainConfig::default()
    };
    let mut st = TrainState::new(cfg).unwrap();
    let mut model = None;
    for _ in 0..rounds {
        model = st.round(&window).unwrap().1.or(model);
    }
    let m = model.expect("a round was accepted");
    let last = &window.rows[rows - 1];
    let f = m
        .forecast_change(last, (rows - 1) as f64, (rows - 1 + horizon) as f64)
        .unwrap();
    let actual = &trace.rows[rows - 1 + horizon];
    (mse(&f, actual), mse(last, actual))
}

// About 1,200 Adam steps: seconds in release, minutes unoptimised.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow unoptimised; cargo test --release runs it"
)]
fn forced_burgers_forecasts_a_growing_bump_better_than_unforced() {
    // Unforced Burgers' on the ring conserves heat, so its network cannot keep growing past
    // the window; the learned source can.
    let (forced, persistence) = change_error(true, 6);
    let (unforced, _) = change_error(false, 6);
    let (rf, ru) = (forced / persistence, unforced / persistence);
    assert!(ru > 0.9, "unforced ≈ persistence: {ru:.3}");
    assert!(rf < 0.85, "forced beats persistence: {rf:.3}");
    assert!(
        rf < 0.9 * ru,
        "forced {rf:.3} vs unforced {ru:.3} of persistence"
    );
}
