//! The MLP's parameters as one flat f32 vector, and Adam over it: what the hand-written
//! training pass of [`crate::fused`] updates, convertible to and from candle tensors.

use candle_core::{DType, Device, Tensor, Var};

use crate::error::{PinnError, Result};
use crate::model::{init_vars, layer_shapes, Mlp, HIDDEN, RESIDUAL_LAYERS};

pub(crate) const H: usize = HIDDEN;
/// Offset of `w0` (2×H) in the flat parameters.
pub(crate) const W0: usize = 0;
/// Offset of `b0`.
pub(crate) const B0: usize = W0 + 2 * H;

/// Offset of `w_l` (H×H) for a residual layer `l` in `1..=RESIDUAL_LAYERS`.
pub(crate) const fn w_res(l: usize) -> usize {
    B0 + H + (l - 1) * (H * H + H)
}

/// Offset of `b_l` for a residual layer.
pub(crate) const fn b_res(l: usize) -> usize {
    w_res(l) + H * H
}

/// Offset of the output weights (H×1).
pub(crate) const W_OUT: usize = w_res(RESIDUAL_LAYERS + 1);
/// Offset of the output bias.
pub(crate) const B_OUT: usize = W_OUT + H;
/// Number of parameters of the MLP.
pub const PARAMS: usize = B_OUT + 1;
/// Offset of the PDE's velocity units `(a, b)` after the MLP's parameters (see [`Params`]).
pub const VELOCITY: usize = PARAMS;
/// Bins of the learned source `s(x)` of the forced residual (piecewise constant around the
/// ring; 64 = the default bucket count, so one bin per bucket there).
pub const SOURCE_BINS: usize = 64;
/// Offset of the source bins after the velocity units (see [`Params`]).
pub const SOURCE: usize = VELOCITY + 2;
/// Number of trained values: the MLP's parameters, the two velocity units and the source bins.
pub const TRAINABLE: usize = SOURCE + SOURCE_BINS;
/// The velocity units `(a, b)` a fresh model starts from: Burgers' on `u` itself.
pub const UNIT_VELOCITY: [f32; 2] = [0.0, 1.0];

/// The MLP's parameters as one flat vector, in the order `w0, b0, w1, b1, …` with every `w`
/// row-major (in, out), as in [`crate::model::Mlp`], followed by the velocity units `(a, b)`:
/// Burgers' equation holds for the velocity `v = a + b·u` (`v_t + v·v_x = ν·v_xx`, i.e.
/// `u_t + (a + b·u)·u_x − ν·u_xx = 0` per unit of `u`). `(0, 1)` is Burgers' on `u` itself;
/// which heat moves how fast around the ring is a unit the data decides, so they are trained
/// with the weights (a change of units and of Galilean frame of the same equation). Last, the
/// [`SOURCE_BINS`] values of the forced residual's source `s(x)` (`u` per model time unit; zero
/// and untrained unless [`crate::loss::LossConfig::forced`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// The values ([`TRAINABLE`] of them).
    pub values: Vec<f32>,
}

impl Params {
    /// The same initial weights as [`init_vars`] with `seed`.
    pub fn init(seed: u64) -> Result<Self> {
        Self::from_vars(&init_vars(seed, DType::F32)?)
    }

    /// Copies candle parameters (in `init_vars` order, any float dtype).
    pub fn from_vars(vars: &[Var]) -> Result<Self> {
        let mut values = Vec::with_capacity(PARAMS);
        for v in vars {
            let t = v.as_tensor().flatten_all()?.to_dtype(DType::F32)?;
            values.extend(t.to_vec1::<f32>()?);
        }
        if values.len() != PARAMS {
            return Err(PinnError::Config(format!(
                "expected {PARAMS} parameters, got {}",
                values.len()
            )));
        }
        values.extend(UNIT_VELOCITY);
        values.extend([0.0; SOURCE_BINS]);
        Ok(Self { values })
    }

    /// The parameters as candle tensors of `dtype`, in `init_vars` order.
    pub fn to_tensors(&self, dtype: DType) -> Result<Vec<Tensor>> {
        let mut out = Vec::new();
        let mut at = 0;
        for (fan_in, fan_out) in layer_shapes() {
            let w = &self.values[at..at + fan_in * fan_out];
            at += fan_in * fan_out;
            let b = &self.values[at..at + fan_out];
            at += fan_out;
            out.push(Tensor::from_slice(w, (fan_in, fan_out), &Device::Cpu)?.to_dtype(dtype)?);
            out.push(Tensor::from_slice(b, fan_out, &Device::Cpu)?.to_dtype(dtype)?);
        }
        Ok(out)
    }

    /// A candle MLP with a copy of these weights (what the serving side holds).
    pub fn to_mlp(&self) -> Result<Mlp> {
        let t = self.to_tensors(DType::F32)?;
        let w = t.iter().step_by(2).cloned().collect();
        let b = t.iter().skip(1).step_by(2).cloned().collect();
        Ok(Mlp::from_parts(w, b))
    }

    /// Moves the time origin later by `delta` model units without changing the function in
    /// absolute time (see [`crate::model::shift_time`]): the input is `2t − 1`, so the first
    /// bias absorbs `2·delta·w0[t]`.
    pub fn shift_time(&mut self, delta: f64) {
        let (w, b) = self.values.split_at_mut(B0);
        for (b, &w) in b[..H].iter_mut().zip(&w[..H]) {
            *b += (2.0 * delta) as f32 * w;
        }
    }

    /// Multiplies the output layer (so `u`) by `factor`; the velocity per unit of `u` is
    /// divided by it and the source (`u` per time) multiplied, so the PDE the weights satisfy
    /// is unchanged.
    pub fn scale_output(&mut self, factor: f32) {
        for v in &mut self.values[W_OUT..PARAMS] {
            *v *= factor;
        }
        if factor != 0.0 {
            self.values[VELOCITY + 1] /= factor;
        }
        for s in &mut self.values[SOURCE..] {
            *s *= factor;
        }
    }

    /// The forced residual's source bins `s(x)`.
    pub fn source(&self) -> &[f32] {
        &self.values[SOURCE..SOURCE + SOURCE_BINS]
    }

    /// The velocity units `(a, b)`.
    pub fn velocity(&self) -> [f32; 2] {
        [self.values[VELOCITY], self.values[VELOCITY + 1]]
    }
}

/// Adam (no weight decay) over flat parameters; the same update as `candle_nn::AdamW` with
/// `weight_decay = 0`.
#[derive(Debug, Clone)]
pub struct Adam {
    lr: f64,
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    /// Zero moments for `n` parameters.
    pub fn new(n: usize, lr: f64) -> Self {
        Self {
            lr,
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    /// Changes the learning rate (the moments are kept).
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// One update of `theta` by `grad`.
    pub fn step(&mut self, theta: &mut [f32], grad: &[f32]) {
        self.t += 1;
        let scale_m = (1.0 / (1.0 - Self::BETA1.powi(self.t))) as f32;
        let scale_v = (1.0 / (1.0 - Self::BETA2.powi(self.t))) as f32;
        let (b1, b2) = (Self::BETA1 as f32, Self::BETA2 as f32);
        let (c1, c2) = ((1.0 - Self::BETA1) as f32, (1.0 - Self::BETA2) as f32);
        let (lr, eps) = (self.lr as f32, Self::EPS as f32);
        for (((th, &g), m), v) in theta.iter_mut().zip(grad).zip(&mut self.m).zip(&mut self.v) {
            *m = *m * b1 + g * c1;
            *v = *v * b2 + g * g * c2;
            let adjusted = (*m * scale_m) / ((*v * scale_v).sqrt() + eps);
            *th -= adjusted * lr;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};

    #[test]
    fn adam_matches_candle_adamw_without_decay() {
        let start = vec![0.5f32, -1.0, 2.0, 0.0];
        let var = Var::from_tensor(&Tensor::new(start.as_slice(), &Device::Cpu).unwrap()).unwrap();
        let cfg = ParamsAdamW {
            lr: 0.01,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        };
        let mut reference = AdamW::new(vec![var.clone()], cfg).unwrap();
        let mut ours = Adam::new(4, 0.01);
        let mut theta = start;
        for _ in 0..5 {
            // Loss Σ θ³ has gradient 3θ².
            let loss = var.as_tensor().powf(3.0).unwrap().sum_all().unwrap();
            reference.backward_step(&loss).unwrap();
            let grad: Vec<f32> = theta.iter().map(|t| 3.0 * t * t).collect();
            ours.step(&mut theta, &grad);
        }
        let want = var.as_tensor().to_vec1::<f32>().unwrap();
        for (a, b) in theta.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{theta:?} vs {want:?}");
        }
    }
}
