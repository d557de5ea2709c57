//! The physics-informed loss `L = L_data + λ_r·L_PDE + λ_b·L_BC + λ_i·L_IC` with the viscous
//! Burgers' residual `u_t + u·u_x − ν·u_xx`, and the sampling of its points from a heat window.
//!
//! Optionally forced ([`LossConfig::forced`]): the residual is `u_t + u·u_x − ν·u_xx − f(t, x)`
//! with a learned source `f(t, x) = s(x)·w(t)`, `s` one value per ring bin
//! ([`crate::params::SOURCE_BINS`]) and `w(t) = exp(min(0, t − t_now)/memory)` (1 from the
//! window's last row on, so through the forecast horizon), plus `λ_f·mean(s²)`. Unforced
//! Burgers' on the periodic ring conserves total heat, so a PINN under it cannot carry a
//! ramp (a storm building up) past the window; a positive source can.
//!
//! Everything is nondimensional: time in units of the model's time span, position in units of
//! the ring, heat divided by the window's mean heat, so `u` is of order one and the PDE term is
//! of the same order as the data term (in physical units it is ~1e-4 and would barely act).

use candle_core::{DType, Device, Tensor};

use crate::error::Result;
use crate::fourier::{Encoded, InputMap};
use crate::model::Mlp;
use crate::params::SOURCE_BINS;
use crate::telemetry::HeatSeries;

/// Weights and sizes of the loss.
#[derive(Debug, Clone, PartialEq)]
pub struct LossConfig {
    /// Viscosity ν of Burgers' equation (model units).
    pub nu: f64,
    /// Weight of the PDE residual.
    pub lambda_r: f64,
    /// Weight of the periodic boundary condition.
    pub lambda_b: f64,
    /// Weight of the initial condition.
    pub lambda_i: f64,
    /// Data points sampled from the window per step.
    pub n_data: usize,
    /// Latin-hypercube collocation points per step.
    pub n_colloc: usize,
    /// Boundary points per step.
    pub n_boundary: usize,
    /// Fraction of the data points drawn from the window's last `recent_rows` rows (the rest
    /// uniformly from the whole window): the forecast extrapolates from the window's end, so
    /// that is where the fit matters most. 0 samples the window uniformly.
    pub recent_fraction: f64,
    /// Rows counted as recent by `recent_fraction`.
    pub recent_rows: usize,
    /// Forced Burgers': subtract the learned source `f(t, x) = s(x)·w(t)` in the residual.
    pub forced: bool,
    /// Weight of the source regulariser `mean(s²)` (forced only).
    pub lambda_f: f64,
    /// Seconds over which the source fades into the window's past (`w(t)` above); 0 keeps it
    /// constant over the whole window.
    pub source_memory: f64,
    /// Fourier features of `x` the network reads instead of raw `x` (see [`InputMap`]); 0 is
    /// the plain input. Part of the network's shape: changing it starts from fresh weights.
    pub fourier: usize,
}

impl LossConfig {
    /// The network's input map.
    pub fn input_map(&self) -> InputMap {
        InputMap::new(self.fourier)
    }
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            nu: 0.01,
            lambda_r: 1.0,
            lambda_b: 0.1,
            lambda_i: 10.0,
            n_data: 512,
            // 2048 is the design figure; with 1024 a 200-step round takes ~1.1 s of CPU, with
            // 2048 ~2.0 s (BENCHMARKS.md, "PINN live wiring").
            n_colloc: 1024,
            n_boundary: 64,
            recent_fraction: 0.0,
            recent_rows: 10,
            forced: false,
            lambda_f: 1e-3,
            source_memory: 0.0,
            // Off: 4 pairs were better offline on diurnal and noise but not across the traces
            // (hot spot worse in 2 of 3 seeds, the wave mixed; BENCHMARKS.md, "Session 10:
            // Fourier features").
            fourier: 0,
        }
    }
}

/// Each term of the loss (unweighted) and the weighted total, as plain numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossTerms {
    /// Mean squared error on the observed data.
    pub data: f32,
    /// Mean squared Burgers' residual at the collocation points.
    pub pde: f32,
    /// Mean squared periodic-boundary mismatch `u(t,0) − u(t,1)`.
    pub bc: f32,
    /// Mean squared error against the first row of the window.
    pub ic: f32,
    /// Mean squared source bin `mean(s²)` (0 unless forced).
    pub source: f32,
    /// `data + λ_r·pde + λ_b·bc + λ_i·ic + λ_f·source`.
    pub total: f32,
}

/// How window rows map to model units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Units {
    /// Second that model time 0 stands for.
    pub origin: u64,
    /// Seconds per model time unit.
    pub t_span: f64,
    /// Heat per model `u` unit.
    pub u_scale: f32,
}

impl Units {
    /// Model time of absolute second `t`.
    pub fn time(&self, t: f64) -> f32 {
        ((t - self.origin as f64) / self.t_span) as f32
    }
}

/// The points of one training step.
#[derive(Debug)]
pub struct Batch {
    data_in: Tensor,
    data_u: Tensor,
    colloc: Encoded,
    /// (N, SOURCE_BINS): each collocation point's source weight `w(t)` in its bin's column.
    colloc_src: Option<Tensor>,
    bc_left: Tensor,
    bc_right: Tensor,
    ic_in: Tensor,
    ic_u: Tensor,
}

/// Latin hypercube in `[0, t_end] × [0, 1]`: one point per row and column stratum.
pub fn latin_hypercube(n: usize, t_end: f32, rng: &mut fastrand::Rng) -> (Vec<f32>, Vec<f32>) {
    let mut pt: Vec<usize> = (0..n).collect();
    let mut px: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut pt);
    rng.shuffle(&mut px);
    let t = pt
        .iter()
        .map(|&i| (i as f32 + rng.f32()) / n as f32 * t_end)
        .collect();
    let x = px
        .iter()
        .map(|&i| (i as f32 + rng.f32()) / n as f32)
        .collect();
    (t, x)
}

fn column(v: Vec<f32>, dtype: DType) -> Result<Tensor> {
    let n = v.len();
    Ok(Tensor::from_vec(v, (n, 1), &Device::Cpu)?.to_dtype(dtype)?)
}

/// One step's points as plain model-unit coordinates (what both the candle loss and the
/// hand-written pass in [`crate::fused`] consume).
#[derive(Debug, Clone, Default)]
pub struct Points {
    /// Data points: time, position, observed `u`.
    pub data_t: Vec<f32>,
    /// See `data_t`.
    pub data_x: Vec<f32>,
    /// See `data_t`.
    pub data_u: Vec<f32>,
    /// Collocation points (time, position).
    pub colloc_t: Vec<f32>,
    /// See `colloc_t`.
    pub colloc_x: Vec<f32>,
    /// The source's time weight `w(t)` at each collocation point; empty when not forced.
    pub colloc_w: Vec<f32>,
    /// Times of the boundary pairs `u(t, 0)`, `u(t, 1)`.
    pub bc_t: Vec<f32>,
    /// Initial-condition points: time, position, observed `u`.
    pub ic_t: Vec<f32>,
    /// See `ic_t`.
    pub ic_x: Vec<f32>,
    /// See `ic_t`.
    pub ic_u: Vec<f32>,
}

/// Samples one step's points: `n_data` observations from `series`, collocation points over the
/// window plus `horizon` seconds (where the forecast is read), boundary points, and the
/// window's first row as the initial condition.
pub fn sample_points(
    series: &HeatSeries,
    units: &Units,
    horizon: f64,
    cfg: &LossConfig,
    rng: &mut fastrand::Rng,
) -> Points {
    let n_rows = series.rows.len();
    let buckets = series.buckets();
    let total = n_rows * buckets;
    let xb = |b: usize| (b as f32 + 0.5) / buckets as f32;
    let t_row = |i: usize| units.time((series.t0 + i as u64) as f64);
    let picks: Vec<usize> = if cfg.n_data >= total {
        (0..total).collect()
    } else {
        let recent_rows = cfg.recent_rows.clamp(1, n_rows);
        let n_recent = (cfg.n_data as f64 * cfg.recent_fraction.clamp(0.0, 1.0)).round() as usize;
        let recent_start = (n_rows - recent_rows) * buckets;
        (0..cfg.n_data)
            .map(|k| {
                if k < n_recent {
                    rng.usize(recent_start..total)
                } else {
                    rng.usize(0..total)
                }
            })
            .collect()
    };
    let mut pts = Points::default();
    for p in picks {
        let (i, b) = (p / buckets, p % buckets);
        pts.data_t.push(t_row(i));
        pts.data_x.push(xb(b));
        pts.data_u.push(series.rows[i][b] / units.u_scale);
    }
    let t_end = t_row(n_rows - 1) + (horizon / units.t_span) as f32;
    // Collocation (and boundary) points cover the window *and* the forecast horizon: the PDE
    // is what constrains the network where the forecast is read.
    (pts.colloc_t, pts.colloc_x) = latin_hypercube(cfg.n_colloc.max(1), t_end, rng);
    if cfg.forced {
        let t_now = t_row(n_rows - 1);
        let memory = (cfg.source_memory / units.t_span) as f32;
        pts.colloc_w = pts
            .colloc_t
            .iter()
            .map(|&t| {
                if memory > 0.0 {
                    ((t - t_now).min(0.0) / memory).exp()
                } else {
                    1.0
                }
            })
            .collect();
    }
    pts.bc_t = (0..cfg.n_boundary.max(1))
        .map(|_| rng.f32() * t_end)
        .collect();
    pts.ic_t = vec![t_row(0); buckets];
    pts.ic_x = (0..buckets).map(xb).collect();
    pts.ic_u = series.rows[0].iter().map(|h| h / units.u_scale).collect();
    pts
}

/// The source bin of ring position `x` (periodic).
#[inline]
pub fn source_bin(x: f32) -> usize {
    ((x.rem_euclid(1.0) * SOURCE_BINS as f32) as usize).min(SOURCE_BINS - 1)
}

impl Batch {
    /// The points as candle tensors of `dtype`, encoded by the network's input map `map`.
    pub fn new(pts: &Points, map: InputMap, dtype: DType) -> Result<Self> {
        let n_b = pts.bc_t.len();
        let colloc_src = if pts.colloc_w.is_empty() {
            None
        } else {
            let n = pts.colloc_x.len();
            let mut m = vec![0.0f32; n * SOURCE_BINS];
            for (i, (&x, &w)) in pts.colloc_x.iter().zip(&pts.colloc_w).enumerate() {
                m[i * SOURCE_BINS + source_bin(x)] = w;
            }
            Some(Tensor::from_vec(m, (n, SOURCE_BINS), &Device::Cpu)?.to_dtype(dtype)?)
        };
        Ok(Batch {
            data_in: map.inputs(&pts.data_t, &pts.data_x, dtype)?,
            data_u: column(pts.data_u.clone(), dtype)?,
            colloc: map.encode_batch(&pts.colloc_t, &pts.colloc_x, dtype)?,
            colloc_src,
            bc_left: map.inputs(&pts.bc_t, &vec![0.0; n_b], dtype)?,
            bc_right: map.inputs(&pts.bc_t, &vec![1.0; n_b], dtype)?,
            ic_in: map.inputs(&pts.ic_t, &pts.ic_x, dtype)?,
            ic_u: column(pts.ic_u.clone(), dtype)?,
        })
    }
}

/// [`sample_points`] as candle tensors.
pub fn sample_batch(
    series: &HeatSeries,
    units: &Units,
    horizon: f64,
    cfg: &LossConfig,
    dtype: DType,
    rng: &mut fastrand::Rng,
) -> Result<Batch> {
    let pts = sample_points(series, units, horizon, cfg, rng);
    Batch::new(&pts, cfg.input_map(), dtype)
}

fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok((a - b)?.sqr()?.mean_all()?)
}

/// The total loss as a tensor (for `backward()`) and its terms as numbers, with Burgers' on
/// `u` itself (velocity units `a = 0`, `b = 1`).
pub fn loss(mlp: &Mlp, batch: &Batch, cfg: &LossConfig) -> Result<(Tensor, LossTerms)> {
    let dtype = batch.data_u.dtype();
    let a = Tensor::new(0.0f64, &Device::Cpu)?.to_dtype(dtype)?;
    let b = Tensor::new(1.0f64, &Device::Cpu)?.to_dtype(dtype)?;
    loss_with_velocity(mlp, batch, cfg, &a, &b)
}

/// [`loss`] with Burgers' holding for the velocity `v = a + b·u` (scalar tensors `a`, `b`; see
/// [`crate::params::Params`]): residual `u_t + (a + b·u)·u_x − ν·u_xx`.
pub fn loss_with_velocity(
    mlp: &Mlp,
    batch: &Batch,
    cfg: &LossConfig,
    a: &Tensor,
    b: &Tensor,
) -> Result<(Tensor, LossTerms)> {
    loss_forced(mlp, batch, cfg, a, b, None)
}

/// [`loss_with_velocity`] with the forced residual `… − s(bin(x))·w(t)` when the batch was
/// sampled forced and `source` (shape `(SOURCE_BINS,)`) is given, plus `λ_f·mean(s²)`.
pub fn loss_forced(
    mlp: &Mlp,
    batch: &Batch,
    cfg: &LossConfig,
    a: &Tensor,
    b: &Tensor,
    source: Option<&Tensor>,
) -> Result<(Tensor, LossTerms)> {
    let data = mse(&mlp.forward(&batch.data_in)?, &batch.data_u)?;
    let tg = mlp.forward_tangents(&batch.colloc)?;
    let velocity = tg.u.broadcast_mul(b)?.broadcast_add(a)?;
    let mut residual = ((tg.u_t + (&velocity * &tg.u_x)?)? - (tg.u_xx * cfg.nu)?)?;
    let mut src_term = None;
    if let (Some(m), Some(s)) = (&batch.colloc_src, source) {
        residual = (residual - m.matmul(&s.reshape((SOURCE_BINS, 1))?)?)?;
        src_term = Some(s.sqr()?.mean_all()?);
    }
    let pde = residual.sqr()?.mean_all()?;
    let bc = mse(
        &mlp.forward(&batch.bc_left)?,
        &mlp.forward(&batch.bc_right)?,
    )?;
    let ic = mse(&mlp.forward(&batch.ic_in)?, &batch.ic_u)?;
    let mut total =
        (((&data + (&pde * cfg.lambda_r)?)? + (&bc * cfg.lambda_b)?)? + (&ic * cfg.lambda_i)?)?;
    if let Some(st) = &src_term {
        total = (total + (st * cfg.lambda_f)?)?;
    }
    let num = |t: &Tensor| -> Result<f32> { Ok(t.to_dtype(DType::F32)?.to_scalar::<f32>()?) };
    let terms = LossTerms {
        data: num(&data)?,
        pde: num(&pde)?,
        bc: num(&bc)?,
        ic: num(&ic)?,
        source: src_term.as_ref().map_or(Ok(0.0), num)?,
        total: num(&total)?,
    };
    Ok((total, terms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init_vars;

    #[test]
    fn latin_hypercube_has_one_point_per_stratum() {
        let mut rng = fastrand::Rng::with_seed(5);
        let (t, x) = latin_hypercube(50, 2.0, &mut rng);
        let mut ts: Vec<usize> = t.iter().map(|v| (v / 2.0 * 50.0) as usize).collect();
        let mut xs: Vec<usize> = x.iter().map(|v| (v * 50.0) as usize).collect();
        ts.sort_unstable();
        xs.sort_unstable();
        assert_eq!(ts, (0..50).collect::<Vec<_>>());
        assert_eq!(xs, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn loss_terms_are_finite_and_weighted() {
        let map = LossConfig::default().input_map();
        let vars = init_vars(1, map, DType::F32).unwrap();
        let mlp = Mlp::from_vars(&vars, map);
        let series = HeatSeries {
            t0: 100,
            rows: (0..10)
                .map(|i| (0..8).map(|b| (i + b) as f32).collect())
                .collect(),
        };
        let units = Units {
            origin: 100,
            t_span: 20.0,
            u_scale: 5.0,
        };
        let cfg = LossConfig {
            n_data: 30,
            n_colloc: 40,
            n_boundary: 8,
            ..LossConfig::default()
        };
        let mut rng = fastrand::Rng::with_seed(2);
        let batch = sample_batch(&series, &units, 5.0, &cfg, DType::F32, &mut rng).unwrap();
        let (total, t) = loss(&mlp, &batch, &cfg).unwrap();
        assert!(t.data.is_finite() && t.pde.is_finite() && t.bc.is_finite() && t.ic.is_finite());
        let expect = t.data + t.pde + 0.1 * t.bc + 10.0 * t.ic;
        assert!((t.total - expect).abs() <= 1e-4 * expect.abs().max(1.0));
        assert!(
            t.data > 0.0 && t.ic > 0.0,
            "an untrained net does not fit the data"
        );
        assert!(total.backward().is_ok());
    }

    #[test]
    fn recent_fraction_draws_from_the_window_end() {
        let series = HeatSeries {
            t0: 0,
            rows: (0..60).map(|i| vec![i as f32; 8]).collect(),
        };
        let units = Units {
            origin: 0,
            t_span: 80.0,
            u_scale: 1.0,
        };
        let cfg = LossConfig {
            n_data: 200,
            recent_fraction: 0.5,
            recent_rows: 10,
            ..LossConfig::default()
        };
        let mut rng = fastrand::Rng::with_seed(3);
        let pts = sample_points(&series, &units, 10.0, &cfg, &mut rng);
        // The row index is the observed value here.
        let recent = pts.data_u.iter().filter(|&&u| u >= 50.0).count();
        assert!(recent >= 100, "{recent} of 200 from the last 10 rows");
        assert!(recent < 200, "the rest spread over the window");
    }
}
