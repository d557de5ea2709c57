//! The network's input map: from model coordinates `(t, x)` to the first layer's input row,
//! with the row's derivatives in `x` (the tangent seeds of forward-mode differentiation).
//!
//! Plain (`k = 0`): `[2t − 1, 2x − 1]`. Fourier (`k ≥ 1`): `[2t − 1, sin(2πx), cos(2πx), …,
//! sin(2πkx), cos(2πkx)]`. The ring has length 1 in model units, so every Fourier feature is
//! periodic in `x` and `u(t, 0) = u(t, 1)` holds exactly for any weights; the `k`-th pair lets
//! the first layer resolve features 1/k of the ring wide without steep weights.

use std::f32::consts::TAU;

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// Which input map a network uses (part of its architecture: the first layer's width).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InputMap {
    /// Fourier frequencies in `x`; 0 feeds the raw (normalised) `x`.
    pub fourier: usize,
}

/// The first layer's input rows of a batch and their derivatives, as candle tensors.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Input rows, (N, width).
    pub value: Tensor,
    /// `∂/∂t` of each row, (N, width).
    pub dt: Tensor,
    /// `∂/∂x` of each row, (N, width).
    pub dx: Tensor,
    /// `∂²/∂x²` of each row, (N, width).
    pub dxx: Tensor,
}

impl InputMap {
    /// The map with `fourier` frequencies.
    pub const fn new(fourier: usize) -> Self {
        Self { fourier }
    }

    /// Width of the input row.
    pub const fn width(self) -> usize {
        if self.fourier == 0 {
            2
        } else {
            1 + 2 * self.fourier
        }
    }

    /// Writes the input row of `(t, x)` into `out` (`width()` long).
    #[inline]
    pub fn encode(self, t: f32, x: f32, out: &mut [f32]) {
        out[0] = 2.0 * t - 1.0;
        if self.fourier == 0 {
            out[1] = 2.0 * x - 1.0;
            return;
        }
        // sin/cos of kθ by the angle-addition recurrence from θ = 2πx: one libm call per
        // point instead of k (the error grows ~k·ε, far below the network's f32 noise).
        let (s1, c1) = (TAU * x).sin_cos();
        let (mut s, mut c) = (s1, c1);
        for k in 1..=self.fourier {
            out[2 * k - 1] = s;
            out[2 * k] = c;
            (s, c) = (s * c1 + c * s1, c * c1 - s * s1);
        }
    }

    /// Writes `∂/∂x` and `∂²/∂x²` of the input row at `x` into `dx` and `dxx`. (`∂/∂t` is the
    /// constant row `[2, 0, …]`.)
    #[inline]
    pub fn encode_dx(self, x: f32, dx: &mut [f32], dxx: &mut [f32]) {
        dx[0] = 0.0;
        dxx[0] = 0.0;
        if self.fourier == 0 {
            dx[1] = 2.0;
            dxx[1] = 0.0;
            return;
        }
        let (s1, c1) = (TAU * x).sin_cos();
        let (mut s, mut c) = (s1, c1);
        for k in 1..=self.fourier {
            let w = TAU * k as f32;
            // d sin(wx) = w·cos(wx), d cos(wx) = −w·sin(wx); d² of either is −w² times itself.
            dx[2 * k - 1] = w * c;
            dx[2 * k] = -w * s;
            dxx[2 * k - 1] = -w * w * s;
            dxx[2 * k] = -w * w * c;
            (s, c) = (s * c1 + c * s1, c * c1 - s * s1);
        }
    }

    /// The input rows of the points `(t[i], x[i])`, (N, width).
    pub fn inputs(self, t: &[f32], x: &[f32], dtype: DType) -> Result<Tensor> {
        let d = self.width();
        let mut v = vec![0.0f32; t.len() * d];
        for ((row, &t), &x) in v.chunks_exact_mut(d).zip(t).zip(x) {
            self.encode(t, x, row);
        }
        Ok(Tensor::from_vec(v, (t.len(), d), &Device::Cpu)?.to_dtype(dtype)?)
    }

    /// The input rows with their derivatives (what the candle tangent pass needs).
    pub fn encode_batch(self, t: &[f32], x: &[f32], dtype: DType) -> Result<Encoded> {
        let (n, d) = (t.len(), self.width());
        let mut dt = vec![0.0f32; n * d];
        let mut dx = vec![0.0f32; n * d];
        let mut dxx = vec![0.0f32; n * d];
        for (((row_t, row_x), row_xx), &x) in dt
            .chunks_exact_mut(d)
            .zip(dx.chunks_exact_mut(d))
            .zip(dxx.chunks_exact_mut(d))
            .zip(x)
        {
            row_t[0] = 2.0;
            self.encode_dx(x, row_x, row_xx);
        }
        let tensor = |v: Vec<f32>| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, (n, d), &Device::Cpu)?.to_dtype(dtype)?)
        };
        Ok(Encoded {
            value: self.inputs(t, x, dtype)?,
            dt: tensor(dt)?,
            dx: tensor(dx)?,
            dxx: tensor(dxx)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourier_rows_are_periodic_and_their_derivatives_match_differences() {
        for map in [InputMap::new(0), InputMap::new(3)] {
            let d = map.width();
            let row = |t: f32, x: f32| {
                let mut r = vec![0.0; d];
                map.encode(t, x, &mut r);
                r
            };
            if map.fourier > 0 {
                let (a, b) = (row(0.3, 0.0), row(0.3, 1.0));
                assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-5));
            }
            let (x, h) = (0.37f32, 1e-3f32);
            let (mut dx, mut dxx) = (vec![0.0; d], vec![0.0; d]);
            map.encode_dx(x, &mut dx, &mut dxx);
            let (lo, mid, hi) = (row(0.5, x - h), row(0.5, x), row(0.5, x + h));
            for j in 0..d {
                let fd1 = (hi[j] - lo[j]) / (2.0 * h);
                let fd2 = (hi[j] - 2.0 * mid[j] + lo[j]) / (h * h);
                assert!((fd1 - dx[j]).abs() < 2e-2 * (1.0 + dx[j].abs()), "{j}");
                assert!((fd2 - dxx[j]).abs() < 5e-2 * (1.0 + dxx[j].abs()), "{j}");
            }
        }
    }
}
