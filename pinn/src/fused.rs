//! The training loss and its gradient by a hand-written pass over plain f32 buffers.
//!
//! It computes the same loss as [`crate::loss::loss`] (data + λ_r·PDE + λ_b·BC + λ_i·IC with the
//! Burgers' residual from forward-mode tangents `u_t`, `u_x`, `u_xx`) and the gradient of every
//! parameter by reverse mode through those tangents, but: the value stream and the three tangent
//! streams of all points sit stacked in one buffer, so each 64→64 layer is one matmul forward and
//! two backward; the tanh and tangent rules of a layer are one fused loop; and every buffer is
//! reused from step to step. Profiling the candle version of a step showed about 60 % of the time
//! in per-op allocation, page faults and single-purpose elementwise passes, 25 % in matmuls.
//!
//! Row layout of a stacked buffer (each row is one point's 64 activations): `[0, N)` the
//! collocation points' values, `[N, V)` the value-only points (data, left boundary, right
//! boundary, initial condition), then `N` rows each of `∂/∂t`, `∂/∂x`, `∂²/∂x²` of the
//! collocation points.
//!
//! The first layer reads the network's input rows (see [`crate::fourier::InputMap`]: plain
//! `(t, x)` or `t` and Fourier features of `x`); it is in [`crate::fused_first`].

use crate::fourier::InputMap;
use crate::fused_first::FirstLayer;
use crate::loss::{source_bin, LossConfig, LossTerms, Points};
use crate::model::{fast_tanh_f32, RESIDUAL_LAYERS};
use crate::params::H;
pub use crate::params::{Adam, Layout, Params, SOURCE_BINS};

/// Buffers of one step, kept between steps (sizes follow the point counts).
#[derive(Debug, Default)]
pub struct Workspace {
    /// The input rows and layer 0's per-point tangents.
    first: FirstLayer,
    /// Stacked activations after layer 0 and each residual layer, (R, H) each.
    s: Vec<Vec<f32>>,
    /// Per residual layer: `tanh` of the value rows and the tangent pre-activations, (R, H).
    zg: Vec<Vec<f32>>,
    /// Network output per stacked row, and its adjoint.
    u: Vec<f32>,
    du: Vec<f32>,
    /// Adjoint of the current layer's output, and of its pre-activations, (R, H).
    g: Vec<f32>,
    dz: Vec<f32>,
}

/// Point counts of one step and the derived row counts.
#[derive(Debug, Clone, Copy)]
struct Rows {
    /// Collocation points.
    n: usize,
    /// Value rows (collocation + value-only points).
    v: usize,
    /// All stacked rows: `v + 3n`.
    r: usize,
}

impl Workspace {
    fn prepare(&mut self, rows: Rows, map: InputMap) {
        let fit = |b: &mut Vec<f32>, len: usize| {
            if b.len() != len {
                *b = vec![0.0; len];
            }
        };
        self.first.prepare(map, rows.n, rows.v);
        self.s.resize_with(RESIDUAL_LAYERS + 1, Vec::new);
        self.zg.resize_with(RESIDUAL_LAYERS, Vec::new);
        for b in self.s.iter_mut().chain(self.zg.iter_mut()) {
            fit(b, rows.r * H);
        }
        fit(&mut self.u, rows.r);
        fit(&mut self.du, rows.r);
        fit(&mut self.g, rows.r * H);
        fit(&mut self.dz, rows.r * H);
    }
}

/// `dst (rows×H) = a (rows×H) · w (H×H)` when `acc` is false, `dst += a · w` when true;
/// `w_t` reads `w` transposed.
fn matmul_rows(dst: &mut [f32], a: &[f32], w: &[f32], w_t: bool, acc: bool) {
    let rows = a.len() / H;
    assert!(dst.len() == rows * H && a.len() == rows * H && w.len() == H * H);
    let (w_rs, w_cs) = if w_t {
        (1, H as isize)
    } else {
        (H as isize, 1)
    };
    // SAFETY: the lengths are checked above, so every index gemm forms (row < rows, column and
    // depth < H, with the strides given) is inside its slice; dst does not alias a or w.
    unsafe {
        gemm::gemm(
            rows,
            H,
            H,
            dst.as_mut_ptr(),
            1,
            H as isize,
            acc,
            a.as_ptr(),
            1,
            H as isize,
            w.as_ptr(),
            w_cs,
            w_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `dst (H×H) = aᵀ · b` for `a`, `b` of shape (rows, H).
fn matmul_at_b(dst: &mut [f32], a: &[f32], b: &[f32]) {
    let rows = a.len() / H;
    assert!(dst.len() == H * H && a.len() == rows * H && b.len() == rows * H);
    // SAFETY: lengths checked above; aᵀ is read with row stride 1 and column stride H, which
    // stays inside `a` for row < H and depth < rows.
    unsafe {
        gemm::gemm(
            H,
            H,
            rows,
            dst.as_mut_ptr(),
            1,
            H as isize,
            false,
            a.as_ptr(),
            H as isize,
            1,
            b.as_ptr(),
            1,
            H as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

pub(crate) fn rows_of(b: &[f32]) -> &[[f32; H]] {
    b.as_chunks::<H>().0
}

pub(crate) fn rows_of_mut(b: &mut [f32]) -> &mut [[f32; H]] {
    b.as_chunks_mut::<H>().0
}

/// The loss terms at `pts` and, in `grad` (resized to [`Layout::trainable`]), the gradient of the
/// weighted total with respect to every parameter, then the velocity units `(a, b)`, then the
/// source bins (zero unless `pts` was sampled forced).
pub fn loss_and_grad(
    p: &Params,
    pts: &Points,
    cfg: &LossConfig,
    ws: &mut Workspace,
    grad: &mut Vec<f32>,
) -> LossTerms {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { loss_and_grad_avx2(p, pts, cfg, ws, grad) };
    }
    loss_and_grad_impl(p, pts, cfg, ws, grad)
}

/// The same code compiled for AVX2, so the fused loops run 8 lanes wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn loss_and_grad_avx2(
    p: &Params,
    pts: &Points,
    cfg: &LossConfig,
    ws: &mut Workspace,
    grad: &mut Vec<f32>,
) -> LossTerms {
    loss_and_grad_impl(p, pts, cfg, ws, grad)
}

#[inline(always)]
fn loss_and_grad_impl(
    p: &Params,
    pts: &Points,
    cfg: &LossConfig,
    ws: &mut Workspace,
    grad: &mut Vec<f32>,
) -> LossTerms {
    let n = pts.colloc_t.len();
    let (nd, nb, ni) = (pts.data_t.len(), pts.bc_t.len(), pts.ic_t.len());
    let v = n + nd + 2 * nb + ni;
    let lay = p.layout();
    let rows = Rows { n, v, r: v + 3 * n };
    ws.prepare(rows, p.map);
    grad.clear();
    grad.resize(lay.trainable(), 0.0);
    let th = &p.values;

    ws.first.encode(pts);
    ws.first.forward(th, &mut ws.s[0]);
    for l in 1..=RESIDUAL_LAYERS {
        let (before, after) = ws.s.split_at_mut(l);
        forward_residual(
            th,
            lay,
            l,
            &before[l - 1],
            &mut ws.zg[l - 1],
            &mut after[0],
            rows,
        );
    }

    // Output layer: u = h·w + b on value rows, tangents without the bias.
    let w_out: &[f32; H] = th[lay.w_out()..lay.w_out() + H]
        .try_into()
        .expect("H weights");
    let b_out = th[lay.b_out()];
    for (r, (u, h)) in
        ws.u.iter_mut()
            .zip(rows_of(&ws.s[RESIDUAL_LAYERS]))
            .enumerate()
    {
        let mut acc = 0.0f32;
        for j in 0..H {
            acc += h[j] * w_out[j];
        }
        *u = if r < v { acc + b_out } else { acc };
    }

    let (terms, gvel) = loss_terms(
        &ws.u,
        &mut ws.du,
        pts,
        cfg,
        (p.velocity(), p.source()),
        &mut grad[lay.source()..lay.source() + SOURCE_BINS],
        rows,
    );
    grad[lay.velocity()..lay.velocity() + 2].copy_from_slice(&gvel);

    // Output layer backward.
    let top = rows_of(&ws.s[RESIDUAL_LAYERS]);
    {
        let (gw, gb) = grad[lay.w_out()..].split_at_mut(H);
        for (r, (&du, h)) in ws.du.iter().zip(top).enumerate() {
            for j in 0..H {
                gw[j] += h[j] * du;
            }
            if r < v {
                gb[0] += du;
            }
        }
    }
    for (g, &du) in rows_of_mut(&mut ws.g).iter_mut().zip(&ws.du) {
        for j in 0..H {
            g[j] = du * w_out[j];
        }
    }

    for l in (1..=RESIDUAL_LAYERS).rev() {
        backward_residual(&ws.zg[l - 1], &ws.g, &mut ws.dz, rows);
        let (gw, rest) = grad[lay.w_res(l)..].split_at_mut(H * H);
        matmul_at_b(gw, &ws.s[l - 1], &ws.dz);
        let gb = &mut rest[..H];
        for dz in &rows_of(&ws.dz)[..v] {
            for j in 0..H {
                gb[j] += dz[j];
            }
        }
        matmul_rows(
            &mut ws.g,
            &ws.dz,
            &th[lay.w_res(l)..lay.b_res(l)],
            true,
            true,
        );
    }
    ws.first
        .backward(th, &ws.s[0], &ws.g, &mut grad[..lay.b0() + H]);
    terms
}

/// Residual layer `l`: `h' = h + tanh(h·w + b)` on value rows and the tangent rules
/// `h'_t = h_t + g'·z_t`, `h'_x = h_x + g'·z_x`, `h'_xx = h_xx + g''·z_x² + g'·z_xx`.
#[inline(always)]
fn forward_residual(
    th: &[f32],
    lay: Layout,
    l: usize,
    sin: &[f32],
    zg: &mut [f32],
    sout: &mut [f32],
    rows: Rows,
) {
    let Rows { n, v, .. } = rows;
    matmul_rows(zg, sin, &th[lay.w_res(l)..lay.b_res(l)], false, false);
    let b: &[f32; H] = th[lay.b_res(l)..lay.b_res(l) + H]
        .try_into()
        .expect("H biases");
    let (zi, si, so) = (rows_of_mut(zg), rows_of(sin), rows_of_mut(sout));
    for ((z, h), o) in zi[..v].iter_mut().zip(&si[..v]).zip(&mut so[..v]) {
        for j in 0..H {
            let g = fast_tanh_f32(z[j] + b[j]);
            z[j] = g;
            o[j] = h[j] + g;
        }
    }
    let (zv, zt) = zi.split_at(v);
    let (zt, zr) = zt.split_at(n);
    let (zx, zxx) = zr.split_at(n);
    let (_, st) = si.split_at(v);
    let (st, sr) = st.split_at(n);
    let (sx, sxx) = sr.split_at(n);
    let (_, ot) = so.split_at_mut(v);
    let (ot, or) = ot.split_at_mut(n);
    let (ox, oxx) = or.split_at_mut(n);
    for i in 0..n {
        let (g, zt, zx, zxx) = (&zv[i], &zt[i], &zx[i], &zxx[i]);
        let (ht, hx, hxx) = (&st[i], &sx[i], &sxx[i]);
        let (ot, ox, oxx) = (&mut ot[i], &mut ox[i], &mut oxx[i]);
        for j in 0..H {
            let d1 = 1.0 - g[j] * g[j];
            let d2 = -2.0 * g[j] * d1;
            ot[j] = ht[j] + d1 * zt[j];
            ox[j] = hx[j] + d1 * zx[j];
            oxx[j] = hxx[j] + d2 * (zx[j] * zx[j]) + d1 * zxx[j];
        }
    }
}

/// The loss terms from the stacked outputs `u`, their adjoints `du` (of the weighted total),
/// the gradient of the velocity units `(a, b)` (returned) and of the source bins (into
/// `gsrc`, which starts zeroed).
fn loss_terms(
    u: &[f32],
    du: &mut [f32],
    pts: &Points,
    cfg: &LossConfig,
    ([a, b], src): ([f32; 2], &[f32]),
    gsrc: &mut [f32],
    rows: Rows,
) -> (LossTerms, [f32; 2]) {
    let Rows { n, v, .. } = rows;
    let (nd, nb, ni) = (pts.data_t.len(), pts.bc_t.len(), pts.ic_t.len());
    let nu = cfg.nu as f32;
    let (lr, lb, li) = (
        cfg.lambda_r as f32,
        cfg.lambda_b as f32,
        cfg.lambda_i as f32,
    );
    // PDE residual at the collocation points.
    let mut pde = 0.0f64;
    let c_pde = 2.0 * lr / n as f32;
    let (mut ga, mut gb) = (0.0f64, 0.0f64);
    let forced = pts.colloc_w.len() == n && n > 0;
    for i in 0..n {
        let (uu, ut, ux, uxx) = (u[i], u[v + i], u[v + n + i], u[v + 2 * n + i]);
        let mut r = ut + (a + b * uu) * ux - nu * uxx;
        let bin = if forced {
            let k = source_bin(pts.colloc_x[i]);
            r -= src[k] * pts.colloc_w[i];
            Some(k)
        } else {
            None
        };
        pde += (r * r) as f64;
        let c = c_pde * r;
        if let Some(k) = bin {
            gsrc[k] -= c * pts.colloc_w[i];
        }
        du[i] = c * b * ux;
        du[v + i] = c;
        du[v + n + i] = c * (a + b * uu);
        du[v + 2 * n + i] = -nu * c;
        ga += (c * ux) as f64;
        gb += (c * uu * ux) as f64;
    }
    let mut at = n;
    let sq_err = |targets: &[f32], weight: f32, du: &mut [f32], at: &mut usize| -> f64 {
        let c = 2.0 * weight / targets.len().max(1) as f32;
        let mut sum = 0.0f64;
        for &y in targets {
            let e = u[*at] - y;
            sum += (e * e) as f64;
            du[*at] = c * e;
            *at += 1;
        }
        sum / targets.len().max(1) as f64
    };
    let data = sq_err(&pts.data_u, 1.0, du, &mut at);
    let mut bc = 0.0f64;
    let c_bc = 2.0 * lb / nb.max(1) as f32;
    for k in 0..nb {
        let (left, right) = (at + k, at + nb + k);
        let e = u[left] - u[right];
        bc += (e * e) as f64;
        du[left] = c_bc * e;
        du[right] = -c_bc * e;
    }
    at += 2 * nb;
    let ic = sq_err(&pts.ic_u, li, du, &mut at);
    debug_assert_eq!(at, n + nd + 2 * nb + ni);
    let pde = pde / n.max(1) as f64;
    let bc = bc / nb.max(1) as f64;
    // The source regulariser λ_f·mean(s²).
    let mut source = 0.0f64;
    if forced {
        let c = 2.0 * cfg.lambda_f as f32 / src.len() as f32;
        for (g, &s) in gsrc.iter_mut().zip(src) {
            source += (s * s) as f64;
            *g += c * s;
        }
        source /= src.len() as f64;
    }
    let total =
        data + cfg.lambda_r * pde + cfg.lambda_b * bc + cfg.lambda_i * ic + cfg.lambda_f * source;
    let terms = LossTerms {
        data: data as f32,
        pde: pde as f32,
        bc: bc as f32,
        ic: ic as f32,
        source: source as f32,
        total: total as f32,
    };
    (terms, [ga as f32, gb as f32])
}

/// Adjoints of a residual layer's pre-activations `dz` from those of its outputs `g` (the
/// skip path's share, `g` itself, is added by the caller's `dz·wᵀ` into `g`).
#[inline(always)]
fn backward_residual(zg: &[f32], g: &[f32], dz: &mut [f32], rows: Rows) {
    let Rows { n, v, .. } = rows;
    let (zi, gi, di) = (rows_of(zg), rows_of(g), rows_of_mut(dz));
    for ((d, gg), z) in di[n..v].iter_mut().zip(&gi[n..v]).zip(&zi[n..v]) {
        for j in 0..H {
            d[j] = gg[j] * (1.0 - z[j] * z[j]);
        }
    }
    let (zv, zt) = zi.split_at(v);
    let (zt, zr) = zt.split_at(n);
    let (zx, zxx) = zr.split_at(n);
    let (gv, gt) = gi.split_at(v);
    let (gt, gr) = gt.split_at(n);
    let (gx, gxx) = gr.split_at(n);
    let (dv, dt) = di.split_at_mut(v);
    let (dt, dr) = dt.split_at_mut(n);
    let (dx, dxx) = dr.split_at_mut(n);
    for i in 0..n {
        let (y, zt, zx, zxx) = (&zv[i], &zt[i], &zx[i], &zxx[i]);
        let (gh, gt, gx, gxx) = (&gv[i], &gt[i], &gx[i], &gxx[i]);
        let (dv, dt, dx, dxx) = (&mut dv[i], &mut dt[i], &mut dx[i], &mut dxx[i]);
        for j in 0..H {
            let y = y[j];
            let d1 = 1.0 - y * y;
            let d2 = -2.0 * y * d1;
            dt[j] = gt[j] * d1;
            dx[j] = gx[j] * d1 + 2.0 * gxx[j] * d2 * zx[j];
            dxx[j] = gxx[j] * d1;
            // Adjoints of g' and g'' (g' = 1 − g², g'' = −2g + 2g³), then of g, then of z.
            let a1 = gt[j] * zt[j] + gx[j] * zx[j] + gxx[j] * zxx[j];
            let a2 = gxx[j] * zx[j] * zx[j];
            let ag = gh[j] - 2.0 * y * a1 + (6.0 * y * y - 2.0) * a2;
            dv[j] = ag * d1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd_reference::{autograd_reference, perturbed_params};
    use crate::fourier::InputMap;

    fn points(rng: &mut fastrand::Rng) -> Points {
        let f = |rng: &mut fastrand::Rng, k: usize| (0..k).map(|_| rng.f32()).collect::<Vec<_>>();
        Points {
            data_t: f(rng, 13),
            data_x: f(rng, 13),
            data_u: f(rng, 13).into_iter().map(|u| 2.0 * u).collect(),
            colloc_t: f(rng, 17),
            colloc_x: f(rng, 17),
            bc_t: f(rng, 5),
            ic_t: vec![0.05; 8],
            ic_x: (0..8).map(|b| (b as f32 + 0.5) / 8.0).collect(),
            ic_u: f(rng, 8),
            colloc_w: Vec::new(),
        }
    }

    #[test]
    fn gradients_match_candle_autograd() {
        // The plain input map and Fourier features (per-point x-tangents in the first layer).
        for map in [InputMap::new(0), InputMap::new(4)] {
            gradients_match_candle_autograd_for(map);
        }
    }

    fn gradients_match_candle_autograd_for(map: InputMap) {
        let mut p = perturbed_params(map);
        let pts = points(&mut fastrand::Rng::with_seed(1));
        let cfg = LossConfig {
            nu: 0.05,
            ..LossConfig::default()
        };
        // Velocity units away from (0, 1), so their gradients and the u·u_x rule both show.
        let lay = p.layout();
        p.values[lay.velocity()] = 0.3;
        p.values[lay.velocity() + 1] = 0.7;
        // Reference: candle's forward-mode tangents and backward(), in f64.
        let (want, expect) = autograd_reference(&p, &pts, &cfg, false);

        let (mut ws, mut grad) = (Workspace::default(), Vec::new());
        let got = loss_and_grad(&p, &pts, &cfg, &mut ws, &mut grad);
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * (1.0 + b.abs());
        assert!(close(got.data, want.data), "{map:?} {got:?} vs {want:?}");
        assert!(close(got.pde, want.pde), "{map:?} {got:?} vs {want:?}");
        assert!(close(got.bc, want.bc), "{map:?} {got:?} vs {want:?}");
        assert!(close(got.ic, want.ic), "{map:?} {got:?} vs {want:?}");
        assert!(close(got.total, want.total), "{map:?} {got:?} vs {want:?}");
        assert!(got.pde > 1e-4, "the PDE term is exercised: {got:?}");
        if map.fourier == 0 {
            assert!(got.bc > 1e-6, "the boundary term is exercised: {got:?}");
        } else {
            // Fourier features are periodic: the boundary condition holds by construction.
            assert!(got.bc < 1e-8, "{got:?}");
        }

        // Unforced: the source bins (last) get no gradient; everything before them matches.
        assert_eq!(grad.len(), expect.len() + SOURCE_BINS);
        assert!(grad[lay.source()..].iter().all(|&g| g == 0.0));
        let scale = expect.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        for (i, (&g, &e)) in grad.iter().zip(&expect).enumerate() {
            let err = (g as f64 - e).abs();
            assert!(
                err <= 1e-4 * scale + 1e-4 * e.abs(),
                "{map:?} param {i}: {g} vs {e}"
            );
        }
        assert!(scale > 1e-3, "gradients are not trivially zero");
        // Every layer's weights and biases receive gradient (for Fourier, the last input row
        // of w0 too: the highest frequency's cosine).
        let last_w0_row = (map.width() - 1) * H;
        for (i, off) in [
            lay.w0(),
            last_w0_row,
            lay.b0(),
            lay.w_res(1),
            lay.b_res(3),
            lay.w_out(),
            lay.b_out(),
        ]
        .into_iter()
        .enumerate()
        {
            assert!(
                grad[off..].iter().take(H).any(|g| g.abs() > 0.0),
                "{map:?} block {i}"
            );
        }
        // Running again on the reused workspace gives the same numbers.
        let mut again = Vec::new();
        loss_and_grad(&p, &pts, &cfg, &mut ws, &mut again);
        assert_eq!(grad, again);
    }

    /// The frame speed `a` of the residual `u_t + (u + a)·u_x − ν·u_xx` for the exact
    /// travelling field `u = U0 + ε·sin(2π(x − s·t))`. No `a` zeroes that residual (the
    /// `ε·sin·u_x` part of `u·u_x` and the viscous term stay), but over a whole period both are
    /// orthogonal to `u_x`, so the least-squares `a` (where `∂L/∂a = 0`) is exactly `s − U0`:
    /// the pattern's speed minus the speed Burgers' itself carries the mean heat at.
    #[test]
    fn the_frame_speed_gradient_vanishes_at_the_pattern_speed_minus_the_mean() {
        let (u0, eps, nu, k) = (1.0f32, 0.5f32, 0.01f32, std::f32::consts::TAU);
        let cfg = LossConfig {
            nu: nu as f64,
            ..LossConfig::default()
        };
        for s in [2.0f32, -1.33, 0.0] {
            // 64 evenly spaced positions at each of 4 times.
            let mut pts = Points::default();
            for i in 0..4 {
                for j in 0..64 {
                    pts.colloc_t.push(0.1 + 0.2 * i as f32);
                    pts.colloc_x.push((j as f32 + 0.5) / 64.0);
                }
            }
            let n = pts.colloc_t.len();
            let rows = Rows { n, v: n, r: 4 * n };
            let mut u = vec![0.0f32; rows.r];
            for (i, (&t, &x)) in pts.colloc_t.iter().zip(&pts.colloc_x).enumerate() {
                let ph = k * (x - s * t);
                u[i] = u0 + eps * ph.sin();
                u[n + i] = -s * eps * k * ph.cos();
                u[2 * n + i] = eps * k * ph.cos();
                u[3 * n + i] = -eps * k * k * ph.sin();
            }
            let mut du = vec![0.0f32; rows.r];
            let (src, mut gsrc) = ([0.0f32; SOURCE_BINS], [0.0f32; SOURCE_BINS]);
            let mut at =
                |a: f32| loss_terms(&u, &mut du, &pts, &cfg, ([a, 1.0], &src), &mut gsrc, rows);
            // The residual is linear in `a`, so `∂L/∂a` is too: its root is the optimum.
            let ((t0, [g0, _]), (_, [g1, _])) = (at(0.0), at(1.0));
            let best = -g0 / (g1 - g0);
            assert!((best - (s - u0)).abs() < 1e-3, "s {s}: best a {best}");
            let (t_best, [g_best, _]) = at(s - u0);
            assert!(g_best.abs() < 1e-3 * g0.abs().max(1.0), "s {s}: {g_best}");
            // Below the optimum the descent direction raises `a`, above it lowers it.
            assert!(at(s - u0 - 0.5).1[0] < 0.0 && at(s - u0 + 0.5).1[0] > 0.0);
            // Not a zero residual: Burgers' steepening of the sine is left over.
            assert!(
                t_best.pde > 1e-3 && t_best.pde <= t0.pde,
                "{t_best:?} vs {t0:?}"
            );
        }
    }

    #[test]
    fn params_round_trip_and_rebase() {
        for map in [InputMap::new(0), InputMap::new(4)] {
            let p = perturbed_params(map);
            let mlp = p.to_mlp().unwrap();
            assert_eq!(mlp.parameter_count(), p.layout().params());
            let before = mlp.row(0.5, 8).unwrap();
            let mut q = p.clone();
            q.shift_time(0.25);
            q.scale_output(2.0);
            let after = q.to_mlp().unwrap().row(0.25, 8).unwrap();
            for (a, b) in before.iter().zip(&after) {
                assert!((2.0 * a - b).abs() < 1e-5, "{map:?} {a} vs {b}");
            }
            // Twice the u per unit of heat: half the velocity per unit of u, the same PDE.
            assert_eq!(q.velocity(), [0.0, 0.5]);
        }
    }
}
