//! The first layer of the hand-written pass in [`crate::fused`]: the input rows of every point
//! (through the network's [`InputMap`]), layer 0 forward with its tangents, and its backward.
//!
//! Unlike the later layers, its tangent seeds are the input rows' own derivatives: constant for
//! the plain map (`∂x̃/∂x = (0, 2)`), per point for Fourier features (`∂ sin(2πkx)/∂x =
//! 2πk·cos(2πkx)`, …), so `z_x = x_x·w0` and `z_xx = x_xx·w0` are computed for each
//! collocation point and kept for the backward pass.

use crate::fourier::InputMap;
use crate::fused::{rows_of, rows_of_mut};
use crate::loss::Points;
use crate::model::fast_tanh_f32;
use crate::params::H;

/// Layer 0's buffers of one step, kept between steps.
#[derive(Debug, Default)]
pub(crate) struct FirstLayer {
    map: InputMap,
    /// Collocation points (their rows come first).
    n: usize,
    /// Value rows.
    v: usize,
    /// Input rows of the value rows, (V, D) for the input width D.
    inp: Vec<f32>,
    /// `∂/∂x` and `∂²/∂x²` of the collocation points' input rows, (N, D) each.
    inp_x: Vec<f32>,
    inp_xx: Vec<f32>,
    /// The tangent pre-activations `z_x`, `z_xx` of the collocation points, (N, H) each.
    z_x: Vec<f32>,
    z_xx: Vec<f32>,
}

impl FirstLayer {
    /// Sizes the buffers for `n` collocation points among `v` value rows.
    pub(crate) fn prepare(&mut self, map: InputMap, n: usize, v: usize) {
        let fit = |b: &mut Vec<f32>, len: usize| {
            if b.len() != len {
                *b = vec![0.0; len];
            }
        };
        let d = map.width();
        (self.map, self.n, self.v) = (map, n, v);
        fit(&mut self.inp, v * d);
        fit(&mut self.inp_x, n * d);
        fit(&mut self.inp_xx, n * d);
        fit(&mut self.z_x, n * H);
        fit(&mut self.z_xx, n * H);
    }

    /// The input rows of every value row (collocation, data, left and right boundary, initial
    /// condition, in the stacked order) and the collocation points' x-derivatives of them.
    pub(crate) fn encode(&mut self, pts: &Points) {
        let (map, d) = (self.map, self.map.width());
        let coords = pts
            .colloc_t
            .iter()
            .zip(&pts.colloc_x)
            .chain(pts.data_t.iter().zip(&pts.data_x))
            .chain(pts.bc_t.iter().zip(std::iter::repeat(&0.0)))
            .chain(pts.bc_t.iter().zip(std::iter::repeat(&1.0)))
            .chain(pts.ic_t.iter().zip(&pts.ic_x));
        for (dst, (&t, &x)) in self.inp.chunks_exact_mut(d).zip(coords) {
            map.encode(t, x, dst);
        }
        for ((dx, dxx), &x) in self
            .inp_x
            .chunks_exact_mut(d)
            .zip(self.inp_xx.chunks_exact_mut(d))
            .zip(&pts.colloc_x)
        {
            map.encode_dx(x, dx, dxx);
        }
    }

    /// Layer 0: `a = tanh(x·w0 + b0)` on value rows; its tangents from the input rows' own:
    /// `z_t = 2w0[0]` (only the first input depends on `t`), `z_x = x_x·w0`, `z_xx = x_xx·w0` per
    /// collocation point, then `a_t = a'·z_t`, `a_x = a'·z_x`, `a_xx = a''·z_x² + a'·z_xx`.
    #[inline(always)]
    pub(crate) fn forward(&mut self, th: &[f32], s0: &mut [f32]) {
        let (n, v, d) = (self.n, self.v, self.map.width());
        let w = &th[..d * H];
        let b: &[f32; H] = th[d * H..d * H + H].try_into().expect("H biases");
        let w_row = |k: usize| -> &[f32; H] { w[k * H..k * H + H].try_into().expect("H weights") };
        let s = rows_of_mut(s0);
        for (a, x) in s[..v].iter_mut().zip(self.inp.chunks_exact(d)) {
            // Summed in the order x0·w0 + x1·w1 + … + b (so the plain map's sums are unchanged).
            let mut z = [0.0f32; H];
            let w0 = w_row(0);
            for j in 0..H {
                z[j] = x[0] * w0[j];
            }
            for (k, &xk) in x.iter().enumerate().skip(1) {
                let wk = w_row(k);
                for j in 0..H {
                    z[j] += xk * wk[j];
                }
            }
            for j in 0..H {
                a[j] = fast_tanh_f32(z[j] + b[j]);
            }
        }
        let zx = rows_of_mut(&mut self.z_x);
        let zxx = rows_of_mut(&mut self.z_xx);
        for (i, (dx, dxx)) in self
            .inp_x
            .chunks_exact(d)
            .zip(self.inp_xx.chunks_exact(d))
            .enumerate()
        {
            let (zx, zxx) = (&mut zx[i], &mut zxx[i]);
            zx.fill(0.0);
            zxx.fill(0.0);
            for k in 0..d {
                let wk = w_row(k);
                for j in 0..H {
                    zx[j] += dx[k] * wk[j];
                    zxx[j] += dxx[k] * wk[j];
                }
            }
        }
        let (vals, tang) = s.split_at_mut(v);
        let (st, rest) = tang.split_at_mut(n);
        let (sx, sxx) = rest.split_at_mut(n);
        let w0 = w_row(0);
        for i in 0..n {
            let (a, at, ax, axx) = (&vals[i], &mut st[i], &mut sx[i], &mut sxx[i]);
            let (cx, cxx) = (&zx[i], &zxx[i]);
            for j in 0..H {
                let ct = 2.0 * w0[j];
                let d1 = 1.0 - a[j] * a[j];
                let d2 = -2.0 * a[j] * d1;
                at[j] = d1 * ct;
                ax[j] = d1 * cx[j];
                axx[j] = d2 * (cx[j] * cx[j]) + d1 * cxx[j];
            }
        }
    }

    /// Layer 0 backward: gradients of `w0`, `b0` (`grad` is their slice) from the adjoints `g` of
    /// its stacked outputs `s0`.
    #[inline(always)]
    pub(crate) fn backward(&self, th: &[f32], s0: &[f32], g: &[f32], grad: &mut [f32]) {
        let (n, v, d) = (self.n, self.v, self.map.width());
        let w0: &[f32; H] = th[..H].try_into().expect("H weights");
        let (gw, gb) = grad.split_at_mut(d * H);
        let (a, gi) = (rows_of(s0), rows_of(g));
        let (gv, gt) = gi.split_at(v);
        let (gt, gr) = gt.split_at(n);
        let (gx, gxx) = gr.split_at(n);
        let (zx, zxx) = (rows_of(&self.z_x), rows_of(&self.z_xx));
        let mut dz = [0.0f32; H];
        let (mut dzx, mut dzxx) = ([0.0f32; H], [0.0f32; H]);
        for (r, (a, x)) in a[..v].iter().zip(self.inp.chunks_exact(d)).enumerate() {
            if r < n {
                let (gh, gt, gx, gxx) = (&gv[r], &gt[r], &gx[r], &gxx[r]);
                let (cx, cxx) = (&zx[r], &zxx[r]);
                for j in 0..H {
                    let ct = 2.0 * w0[j];
                    let y = a[j];
                    let d1 = 1.0 - y * y;
                    let d2 = -2.0 * y * d1;
                    // Adjoints of the tangent pre-activations z_t = 2w0[0], z_x = x_x·w0,
                    // z_xx = x_xx·w0; they go to the weights below.
                    gw[j] += 2.0 * (gt[j] * d1);
                    dzx[j] = gx[j] * d1 + 2.0 * gxx[j] * d2 * cx[j];
                    dzxx[j] = gxx[j] * d1;
                    let a1 = gt[j] * ct + gx[j] * cx[j] + gxx[j] * cxx[j];
                    let a2 = gxx[j] * cx[j] * cx[j];
                    dz[j] = (gh[j] - 2.0 * y * a1 + (6.0 * y * y - 2.0) * a2) * d1;
                }
                let (sx, sxx) = (
                    &self.inp_x[r * d..(r + 1) * d],
                    &self.inp_xx[r * d..(r + 1) * d],
                );
                for k in 0..d {
                    let gwk = &mut gw[k * H..(k + 1) * H];
                    for j in 0..H {
                        gwk[j] += sx[k] * dzx[j] + sxx[k] * dzxx[j];
                    }
                }
            } else {
                let gh = &gv[r];
                for j in 0..H {
                    dz[j] = gh[j] * (1.0 - a[j] * a[j]);
                }
            }
            for (k, &xk) in x.iter().enumerate() {
                let gwk = &mut gw[k * H..(k + 1) * H];
                for j in 0..H {
                    gwk[j] += xk * dz[j];
                }
            }
            for j in 0..H {
                gb[j] += dz[j];
            }
        }
    }
}
