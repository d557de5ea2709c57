//! The baselines every PINN forecast is measured against, on the same window: persistence,
//! an exponentially weighted moving average, and a linear stencil on recent lags fitted with
//! linfa (direct regression of the value `h` seconds ahead on neighbouring buckets' lags).

use linfa::traits::Fit;
use linfa::Dataset;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};

use crate::error::{PinnError, Result};
use crate::telemetry::HeatSeries;

/// A forecaster of every bucket's heat `horizon` seconds after the window's last row.
pub trait Forecast {
    /// Short name for tables and `PINN.STATS`.
    fn name(&self) -> &'static str;
    /// The forecast row for second `t_last + horizon`.
    fn forecast(&self, series: &HeatSeries, horizon: usize) -> Result<Vec<f32>>;
}

fn last_row(series: &HeatSeries) -> Result<&Vec<f32>> {
    series
        .rows
        .last()
        .ok_or(PinnError::NotEnoughData { need: 1, have: 0 })
}

/// `u(t + h) = u(t)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Persistence;

impl Forecast for Persistence {
    fn name(&self) -> &'static str {
        "persistence"
    }

    fn forecast(&self, series: &HeatSeries, _horizon: usize) -> Result<Vec<f32>> {
        Ok(last_row(series)?.clone())
    }
}

/// Exponentially weighted moving average per bucket: `s ← α·u + (1 − α)·s`.
#[derive(Debug, Clone, Copy)]
pub struct Ewma {
    /// Weight of the newest row.
    pub alpha: f32,
}

impl Default for Ewma {
    fn default() -> Self {
        Self { alpha: 0.3 }
    }
}

impl Forecast for Ewma {
    fn name(&self) -> &'static str {
        "ewma"
    }

    fn forecast(&self, series: &HeatSeries, _horizon: usize) -> Result<Vec<f32>> {
        let mut s = series
            .rows
            .first()
            .ok_or(PinnError::NotEnoughData { need: 1, have: 0 })?
            .clone();
        for row in &series.rows[1..] {
            for (s, u) in s.iter_mut().zip(row) {
                *s = self.alpha * u + (1.0 - self.alpha) * *s;
            }
        }
        Ok(s)
    }
}

/// Linear regression of `u(t + h, b)` on `u(t − l, b + d)` for `l < lags`, `|d| ≤ radius`
/// (the ring wraps), plus an intercept: 4 lags × 3 neighbours + 1 = 13 coefficients by default,
/// shared by all buckets and fitted on the window itself.
#[derive(Debug, Clone, Copy)]
pub struct LinearStencil {
    /// Number of past rows used (the newest first).
    pub lags: usize,
    /// Neighbours on each side.
    pub radius: usize,
}

impl Default for LinearStencil {
    fn default() -> Self {
        Self { lags: 4, radius: 1 }
    }
}

impl LinearStencil {
    fn features(&self, series: &HeatSeries, i: usize, b: usize, scale: f64, out: &mut Vec<f64>) {
        let buckets = series.buckets();
        for l in 0..self.lags {
            let row = &series.rows[i - l];
            for d in 0..=2 * self.radius {
                let bb = (b + buckets + d - self.radius) % buckets;
                out.push(row[bb] as f64 / scale);
            }
        }
    }

    /// The fitted stencil coefficients and intercept (in units of the window's mean heat).
    pub fn fit(&self, series: &HeatSeries, horizon: usize) -> Result<(Vec<f64>, f64)> {
        let n = series.rows.len();
        let buckets = series.buckets();
        let width = self.lags * (2 * self.radius + 1);
        let need = self.lags + horizon + 1;
        if n < need || buckets == 0 || self.radius * 2 + 1 > buckets {
            return Err(PinnError::NotEnoughData { need, have: n });
        }
        let scale = mean(series).max(1e-6);
        let samples = (n - horizon - (self.lags - 1)) * buckets;
        let mut x = Vec::with_capacity(samples * width);
        let mut y = Vec::with_capacity(samples);
        for i in self.lags - 1..n - horizon {
            for b in 0..buckets {
                self.features(series, i, b, scale, &mut x);
                y.push(series.rows[i + horizon][b] as f64 / scale);
            }
        }
        let x = Array2::from_shape_vec((samples, width), x)
            .map_err(|e| PinnError::Fit(e.to_string()))?;
        let model = LinearRegression::new()
            .fit(&Dataset::new(x, Array1::from(y)))
            .map_err(|e| PinnError::Fit(e.to_string()))?;
        Ok((model.params().to_vec(), model.intercept()))
    }
}

fn mean(series: &HeatSeries) -> f64 {
    let n: usize = series.rows.iter().map(Vec::len).sum();
    series.rows.iter().flatten().map(|&v| v as f64).sum::<f64>() / n.max(1) as f64
}

impl Forecast for LinearStencil {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn forecast(&self, series: &HeatSeries, horizon: usize) -> Result<Vec<f32>> {
        let (coef, intercept) = self.fit(series, horizon)?;
        let scale = mean(series).max(1e-6);
        let last = series.rows.len() - 1;
        let mut feats = Vec::with_capacity(coef.len());
        let mut out = Vec::with_capacity(series.buckets());
        for b in 0..series.buckets() {
            feats.clear();
            self.features(series, last, b, scale, &mut feats);
            let v: f64 = intercept + feats.iter().zip(&coef).map(|(f, c)| f * c).sum::<f64>();
            if !v.is_finite() {
                return Err(PinnError::Fit("non-finite prediction".into()));
            }
            out.push((v * scale).max(0.0) as f32);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shifting(rows: usize, buckets: usize) -> HeatSeries {
        // A pattern that moves one bucket to the right every second.
        let base: Vec<f32> = (0..buckets)
            .map(|b| 10.0 + (b * 7 % 5) as f32 * 3.0)
            .collect();
        let rows = (0..rows)
            .map(|i| {
                (0..buckets)
                    .map(|b| base[(b + buckets - i % buckets) % buckets])
                    .collect()
            })
            .collect();
        HeatSeries { t0: 0, rows }
    }

    #[test]
    fn persistence_and_ewma() {
        let s = HeatSeries {
            t0: 0,
            rows: vec![vec![0.0, 10.0], vec![10.0, 10.0]],
        };
        assert_eq!(Persistence.forecast(&s, 5).unwrap(), vec![10.0, 10.0]);
        assert_eq!(
            Ewma { alpha: 0.5 }.forecast(&s, 5).unwrap(),
            vec![5.0, 10.0]
        );
    }

    #[test]
    fn the_stencil_learns_a_one_step_shift() {
        let s = shifting(30, 12);
        let got = LinearStencil { lags: 1, radius: 1 }
            .forecast(&s, 1)
            .unwrap();
        let want: Vec<f32> = shifting(31, 12).rows[30].clone();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-3, "{got:?} vs {want:?}");
        }
        assert_ne!(Persistence.forecast(&s, 1).unwrap(), want);
    }

    #[test]
    fn the_stencil_needs_enough_rows() {
        let s = shifting(5, 12);
        assert!(matches!(
            LinearStencil::default().forecast(&s, 10),
            Err(PinnError::NotEnoughData { .. })
        ));
    }
}
