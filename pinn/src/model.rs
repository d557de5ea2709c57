//! The PINN `u(t, x)`: a tanh MLP 2→64→64→64→64→1 with residual middle layers, whose forward
//! pass also carries the tangents `u_t`, `u_x`, `u_xx` as ordinary tensor ops (forward-mode
//! differentiation), so one `backward()` of a loss built from them gives every parameter's
//! gradient. Inputs are in model units: `t ∈ [0, 1]` over the model's time span and `x ∈ [0, 1]`
//! around the slot ring; the first layer reads them through an [`InputMap`] (normalised to
//! `[-1, 1]`, or `t` and Fourier features of `x`).

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var};

use crate::error::Result;
use crate::fourier::{Encoded, InputMap};

/// Width of every hidden layer.
pub const HIDDEN: usize = 64;
/// Residual 64→64 layers between the input and output layers.
pub const RESIDUAL_LAYERS: usize = 3;

/// tanh by a rational approximation for f32 (about 20× faster than libm on our machine,
/// within 1e-6 of the exact value); f64 uses the exact `tanh`, which the derivative tests need.
#[derive(Debug, Clone, Copy)]
pub struct FastTanh;

/// The f32 rational approximation behind [`FastTanh`] (odd degree-13 over even degree-6).
#[inline]
pub fn fast_tanh_f32(x: f32) -> f32 {
    // Beyond ±7.9 tanh is 1 to f32 precision.
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16_f32;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 - 8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    let mut q = 1.198_258_4e-6_f32;
    q = q * x2 + 1.185_347e-4;
    q = q * x2 + 2.268_434_6e-3;
    q = q * x2 + 4.893_525e-3;
    let r = (x * p / q).clamp(-1.0, 1.0);
    // Near 0 tanh(x) = x to f32 precision. A select rather than an early return keeps the
    // function branch-free, so loops over it vectorise.
    if x.abs() < 4e-4 {
        x
    } else {
        r
    }
}

impl CustomOp1 for FastTanh {
    fn name(&self) -> &'static str {
        "fast-tanh"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            return Err(candle_core::Error::Msg(
                "fast-tanh needs a contiguous input".into(),
            ));
        };
        let out = match storage {
            CpuStorage::F32(v) => {
                CpuStorage::F32(v[start..end].iter().map(|&x| fast_tanh_f32(x)).collect())
            }
            CpuStorage::F64(v) => CpuStorage::F64(v[start..end].iter().map(|x| x.tanh()).collect()),
            _ => {
                return Err(candle_core::Error::Msg(
                    "fast-tanh supports f32 and f64".into(),
                ))
            }
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // d tanh(z)/dz = 1 − tanh², from the saved output.
        let d = (1.0 - res.sqr()?)?;
        Ok(Some(grad_res.mul(&d)?))
    }
}

fn tanh(z: &Tensor) -> Result<Tensor> {
    Ok(z.contiguous()?.apply_op1(FastTanh)?)
}

/// The network's output at a batch of points with its derivatives in model units.
#[derive(Debug, Clone)]
pub struct Tangents {
    /// `u`, shape (N, 1).
    pub u: Tensor,
    /// `∂u/∂t`, shape (N, 1).
    pub u_t: Tensor,
    /// `∂u/∂x`, shape (N, 1).
    pub u_x: Tensor,
    /// `∂²u/∂x²`, shape (N, 1).
    pub u_xx: Tensor,
}

/// The MLP's weights: `w[l]` is (in, out), `b[l]` is (out). Layer 0 is (input width)→64,
/// layers 1..=3 are residual 64→64, the last is 64→1.
#[derive(Debug, Clone)]
pub struct Mlp {
    w: Vec<Tensor>,
    b: Vec<Tensor>,
    map: InputMap,
}

/// Shapes (in, out) of every layer of a network with input map `map`.
pub(crate) fn layer_shapes(map: InputMap) -> Vec<(usize, usize)> {
    let mut s = vec![(map.width(), HIDDEN)];
    s.extend(std::iter::repeat_n((HIDDEN, HIDDEN), RESIDUAL_LAYERS));
    s.push((HIDDEN, 1));
    s
}

/// Fresh trainable parameters (Glorot-uniform weights, zero biases), in the order
/// `w0, b0, w1, b1, …`, for a network with input map `map`.
pub fn init_vars(seed: u64, map: InputMap, dtype: DType) -> Result<Vec<Var>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut vars = Vec::new();
    for (i, (fan_in, fan_out)) in layer_shapes(map).into_iter().enumerate() {
        let mut limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
        if i > 0 && fan_out == HIDDEN {
            // Residual branches start small so the stack begins close to the identity.
            limit *= 0.5;
        }
        let w: Vec<f64> = (0..fan_in * fan_out)
            .map(|_| (rng.f64() * 2.0 - 1.0) * limit)
            .collect();
        let w = Tensor::from_vec(w, (fan_in, fan_out), &Device::Cpu)?.to_dtype(dtype)?;
        vars.push(Var::from_tensor(&w)?);
        vars.push(Var::zeros(fan_out, dtype, &Device::Cpu)?);
    }
    Ok(vars)
}

/// Moves the time origin of the parameters `vars` later by `delta` model units without
/// changing the function in absolute time: `f_new(t) = f_old(t + delta)`.
pub fn shift_time(vars: &[Var], delta: f64) -> Result<()> {
    // The input is normalised as 2t − 1, so the shift is absorbed by the first bias.
    let w0_t = vars[0].as_tensor().get(0)?;
    let b0 = (vars[1].as_tensor() + (w0_t * (2.0 * delta))?)?;
    vars[1].set(&b0)?;
    Ok(())
}

impl Mlp {
    /// A view of trainable parameters (shares their storage: it follows the optimiser) of a
    /// network with input map `map`.
    pub fn from_vars(vars: &[Var], map: InputMap) -> Self {
        let w = vars
            .iter()
            .step_by(2)
            .map(|v| v.as_tensor().clone())
            .collect();
        let b = vars
            .iter()
            .skip(1)
            .step_by(2)
            .map(|v| v.as_tensor().clone())
            .collect();
        Self { w, b, map }
    }

    /// An MLP from its weight and bias tensors, layer by layer.
    pub(crate) fn from_parts(w: Vec<Tensor>, b: Vec<Tensor>, map: InputMap) -> Self {
        Self { w, b, map }
    }

    /// The input map its first layer reads.
    pub fn input_map(&self) -> InputMap {
        self.map
    }

    /// A deep copy, detached from the parameters (what the serving side holds).
    pub fn snapshot(vars: &[Var], map: InputMap) -> Result<Self> {
        let copy = |v: &Var| -> Result<Tensor> { Ok(v.as_tensor().detach().copy()?) };
        let w = vars.iter().step_by(2).map(copy).collect::<Result<_>>()?;
        let b = vars
            .iter()
            .skip(1)
            .step_by(2)
            .map(copy)
            .collect::<Result<_>>()?;
        Ok(Self { w, b, map })
    }

    /// Number of scalar parameters.
    pub fn parameter_count(&self) -> usize {
        self.w.iter().chain(&self.b).map(Tensor::elem_count).sum()
    }

    fn affine(&self, l: usize, a: &Tensor) -> Result<Tensor> {
        Ok(a.matmul(&self.w[l])?.broadcast_add(&self.b[l])?)
    }

    /// `u` at the input rows `inp` (N, input width; see [`InputMap::inputs`]), shape (N, 1).
    pub fn forward(&self, inp: &Tensor) -> Result<Tensor> {
        let mut h = tanh(&self.affine(0, inp)?)?;
        for l in 1..=RESIDUAL_LAYERS {
            h = (&h + tanh(&self.affine(l, &h)?)?)?;
        }
        self.affine(RESIDUAL_LAYERS + 1, &h)
    }

    /// `u` and its derivatives `u_t`, `u_x`, `u_xx` (model units) at encoded input rows
    /// (see [`InputMap::encode_batch`]).
    pub fn forward_tangents(&self, enc: &Encoded) -> Result<Tangents> {
        // First layer: the tangent seeds are the input rows' own derivatives, so
        // z_t = x_t·W0, z_x = x_x·W0, z_xx = x_xx·W0 (0 for the plain map, whose x_x is
        // constant; not for Fourier features).
        let w0 = &self.w[0];
        let z = self.affine(0, &enc.value)?;
        let z_t = enc.dt.matmul(w0)?;
        let z_x = enc.dx.matmul(w0)?;
        let z_xx = enc.dxx.matmul(w0)?;
        let h = tanh(&z)?;
        let d1 = (1.0 - h.sqr()?)?;
        let d2 = ((&h * &d1)? * -2.0)?;
        let mut h_t = (&d1 * z_t)?;
        let mut h_x = (&d1 * &z_x)?;
        let mut h_xx = ((d2 * z_x.sqr()?)? + (d1 * z_xx)?)?;
        let mut h = h;
        for l in 1..=RESIDUAL_LAYERS {
            let w = &self.w[l];
            let z = self.affine(l, &h)?;
            let z_t = h_t.matmul(w)?;
            let z_x = h_x.matmul(w)?;
            let z_xx = h_xx.matmul(w)?;
            let g = tanh(&z)?;
            let d1 = (1.0 - g.sqr()?)?;
            let d2 = ((&g * &d1)? * -2.0)?;
            // Residual: values and tangents add.
            h_t = (h_t + (&d1 * &z_t)?)?;
            h_xx = ((h_xx + (d2 * z_x.sqr()?)?)? + (&d1 * z_xx)?)?;
            h_x = (h_x + (d1 * z_x)?)?;
            h = (h + g)?;
        }
        let out = RESIDUAL_LAYERS + 1;
        let w = &self.w[out];
        Ok(Tangents {
            u: self.affine(out, &h)?,
            u_t: h_t.matmul(w)?,
            u_x: h_x.matmul(w)?,
            u_xx: h_xx.matmul(w)?,
        })
    }

    /// `u` at model time `t` for `buckets` bucket centres `x = (b + ½)/buckets`.
    pub fn row(&self, t: f32, buckets: usize) -> Result<Vec<f32>> {
        let ts = vec![t; buckets];
        let xs: Vec<f32> = (0..buckets)
            .map(|b| (b as f32 + 0.5) / buckets as f32)
            .collect();
        let dtype = self.w[0].dtype();
        let u = self.forward(&self.map.inputs(&ts, &xs, dtype)?)?;
        Ok(u.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(u: &Tensor, i: usize) -> f64 {
        u.flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()[i]
    }

    #[test]
    fn fast_tanh_matches_libm() {
        let mut worst = 0.0f64;
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.001;
            let err = (fast_tanh_f32(x) as f64 - (x as f64).tanh()).abs();
            worst = worst.max(err);
        }
        assert!(worst < 2e-6, "worst error {worst}");
    }

    #[test]
    fn tangents_match_finite_differences() {
        // The plain input map and Fourier features (whose x-tangents are not constant).
        for map in [InputMap::new(0), InputMap::new(4)] {
            tangents_match_finite_differences_for(map);
        }
    }

    fn tangents_match_finite_differences_for(map: InputMap) {
        let vars = init_vars(7, map, DType::F64).unwrap();
        // Perturb the biases so the check is not at a symmetric point.
        for (i, v) in vars.iter().enumerate().skip(1).step_by(2) {
            let n = v.as_tensor().elem_count();
            let b: Vec<f64> = (0..n)
                .map(|k| ((k * 7 + i) % 11) as f64 * 0.05 - 0.25)
                .collect();
            v.set(&Tensor::from_vec(b, n, &Device::Cpu).unwrap())
                .unwrap();
        }
        let mlp = Mlp::from_vars(&vars, map);
        let pts = [(0.3f64, 0.7f64), (0.9, 0.1), (0.5, 0.5)];
        // The input rows in f64 (the map's own encoder is f32, too coarse for differences).
        let row = |t: f64, x: f64| -> Vec<f64> {
            let mut r = vec![2.0 * t - 1.0];
            if map.fourier == 0 {
                r.push(2.0 * x - 1.0);
            }
            for k in 1..=map.fourier {
                let a = std::f64::consts::TAU * k as f64 * x;
                r.extend([a.sin(), a.cos()]);
            }
            r
        };
        let d = map.width();
        let at = |t: f64, x: f64| -> f64 {
            let inp = Tensor::from_vec(row(t, x), (1, d), &Device::Cpu).unwrap();
            scalar(&mlp.forward(&inp).unwrap(), 0)
        };
        let (ts, xs): (Vec<f32>, Vec<f32>) = pts.iter().map(|&(t, x)| (t as f32, x as f32)).unzip();
        let mut enc = map.encode_batch(&ts, &xs, DType::F64).unwrap();
        // Exact f64 values, so the value check below can be tight.
        let rows: Vec<f64> = pts.iter().flat_map(|&(t, x)| row(t, x)).collect();
        enc.value = Tensor::from_vec(rows, (pts.len(), d), &Device::Cpu).unwrap();
        let tg = mlp.forward_tangents(&enc).unwrap();
        let h = 1e-4;
        for (i, &(t, x)) in pts.iter().enumerate() {
            let u0 = at(t, x);
            assert!((scalar(&tg.u, i) - u0).abs() < 1e-12);
            let ut = (at(t + h, x) - at(t - h, x)) / (2.0 * h);
            let ux = (at(t, x + h) - at(t, x - h)) / (2.0 * h);
            let uxx = (at(t, x + h) - 2.0 * u0 + at(t, x - h)) / (h * h);
            // The seeds' f32 rounding (~1e-7 relative) bounds the agreement of u_x and u_xx.
            let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * (1.0 + b.abs());
            assert!(
                close(scalar(&tg.u_t, i), ut, 1e-6),
                "{map:?} u_t {} vs {ut}",
                scalar(&tg.u_t, i)
            );
            assert!(
                close(scalar(&tg.u_x, i), ux, 1e-5),
                "{map:?} u_x {} vs {ux}",
                scalar(&tg.u_x, i)
            );
            assert!(
                close(scalar(&tg.u_xx, i), uxx, 1e-4),
                "{map:?} u_xx {} vs {uxx}",
                scalar(&tg.u_xx, i)
            );
            assert!(
                scalar(&tg.u_xx, i).abs() > 1e-6,
                "u_xx is not trivially zero"
            );
        }
    }

    #[test]
    fn parameter_gradients_flow_through_the_tangents() {
        let map = InputMap::new(2);
        let vars = init_vars(3, map, DType::F64).unwrap();
        let mlp = Mlp::from_vars(&vars, map);
        let inp = map
            .encode_batch(&[0.2, 0.6], &[0.4, 0.8], DType::F64)
            .unwrap();
        let loss = mlp
            .forward_tangents(&inp)
            .unwrap()
            .u_xx
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        // Check d loss / d b0[j] against a finite difference for one coordinate.
        let g = grads.get(vars[1].as_tensor()).expect("grad of b0");
        let j = 5;
        let analytic = g.to_vec1::<f64>().unwrap()[j];
        let eval = |delta: f64| -> f64 {
            let mut b: Vec<f64> = vars[1].as_tensor().to_vec1().unwrap();
            b[j] += delta;
            let mut w = Mlp::from_vars(&vars, map);
            w.b[0] = Tensor::from_vec(b, HIDDEN, &Device::Cpu).unwrap();
            scalar(
                &w.forward_tangents(&inp)
                    .unwrap()
                    .u_xx
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap(),
                0,
            )
        };
        let fd = (eval(1e-6) - eval(-1e-6)) / 2e-6;
        assert!(
            (analytic - fd).abs() <= 1e-5 * (1.0 + fd.abs()),
            "{analytic} vs {fd}"
        );
        assert!(analytic.abs() > 1e-9);
    }

    #[test]
    fn shift_time_preserves_the_function() {
        let map = InputMap::default();
        let vars = init_vars(11, map, DType::F64).unwrap();
        let before = Mlp::from_vars(&vars, map).row(0.5, 8).unwrap();
        shift_time(&vars, 0.25).unwrap();
        let after = Mlp::from_vars(&vars, map).row(0.25, 8).unwrap();
        for (a, b) in before.iter().zip(&after) {
            assert!((a - b).abs() < 1e-6);
        }
        let snap = Mlp::snapshot(&vars, map).unwrap();
        assert_eq!(
            snap.parameter_count(),
            2 * 64 + 64 + 3 * (64 * 64 + 64) + 64 + 1
        );
    }
}
