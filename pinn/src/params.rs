//! The MLP's parameters as one flat f32 vector, and Adam over it: what the hand-written
//! training pass of [`crate::fused`] updates, convertible to and from candle tensors.

use candle_core::{DType, Device, Tensor, Var};

use crate::error::{PinnError, Result};
use crate::fourier::InputMap;
use crate::model::{init_vars, layer_shapes, Mlp, HIDDEN, RESIDUAL_LAYERS};

pub(crate) const H: usize = HIDDEN;
/// Bins of the learned source `s(x)` of the forced residual (piecewise constant around the
/// ring; 64 = the default bucket count, so one bin per bucket there).
pub const SOURCE_BINS: usize = 64;
/// The velocity units `(a, b)` a fresh model starts from: Burgers' on `u` itself.
pub const UNIT_VELOCITY: [f32; 2] = [0.0, 1.0];

/// Offsets into [`Params::values`] for a network whose first layer reads `d` inputs (see
/// [`InputMap::width`]): `w0` (d×H), `b0`, the residual layers, the output layer, then the
/// velocity units and the source bins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    d: usize,
}

impl Layout {
    /// The layout of a network with input map `map`.
    pub const fn new(map: InputMap) -> Self {
        Self { d: map.width() }
    }

    /// Offset of `w0` (d×H).
    pub const fn w0(self) -> usize {
        0
    }

    /// Offset of `b0`.
    pub const fn b0(self) -> usize {
        self.d * H
    }

    /// Offset of `w_l` (H×H) for a residual layer `l` in `1..=RESIDUAL_LAYERS`.
    pub const fn w_res(self, l: usize) -> usize {
        self.b0() + H + (l - 1) * (H * H + H)
    }

    /// Offset of `b_l` for a residual layer.
    pub const fn b_res(self, l: usize) -> usize {
        self.w_res(l) + H * H
    }

    /// Offset of the output weights (H×1).
    pub const fn w_out(self) -> usize {
        self.w_res(RESIDUAL_LAYERS + 1)
    }

    /// Offset of the output bias.
    pub const fn b_out(self) -> usize {
        self.w_out() + H
    }

    /// Number of parameters of the MLP.
    pub const fn params(self) -> usize {
        self.b_out() + 1
    }

    /// Offset of the PDE's velocity units `(a, b)` after the MLP's parameters.
    pub const fn velocity(self) -> usize {
        self.params()
    }

    /// Offset of the source bins after the velocity units.
    pub const fn source(self) -> usize {
        self.velocity() + 2
    }

    /// Number of trained values: the MLP's parameters, the velocity units and the source bins.
    pub const fn trainable(self) -> usize {
        self.source() + SOURCE_BINS
    }
}

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
    /// The values ([`Layout::trainable`] of them).
    pub values: Vec<f32>,
    /// The network's input map (decides the first layer's width, so the layout).
    pub map: InputMap,
}

impl Params {
    /// The same initial weights as [`init_vars`] with `seed`, for input map `map`.
    pub fn init(seed: u64, map: InputMap) -> Result<Self> {
        Self::from_vars(&init_vars(seed, map, DType::F32)?, map)
    }

    /// Copies candle parameters (in `init_vars` order, any float dtype) of a network with
    /// input map `map`.
    pub fn from_vars(vars: &[Var], map: InputMap) -> Result<Self> {
        let n = Layout::new(map).params();
        let mut values = Vec::with_capacity(n);
        for v in vars {
            let t = v.as_tensor().flatten_all()?.to_dtype(DType::F32)?;
            values.extend(t.to_vec1::<f32>()?);
        }
        if values.len() != n {
            return Err(PinnError::Config(format!(
                "expected {n} parameters, got {}",
                values.len()
            )));
        }
        values.extend(UNIT_VELOCITY);
        values.extend([0.0; SOURCE_BINS]);
        Ok(Self { values, map })
    }

    /// Where each block sits in `values`.
    pub fn layout(&self) -> Layout {
        Layout::new(self.map)
    }

    /// The parameters as candle tensors of `dtype`, in `init_vars` order.
    pub fn to_tensors(&self, dtype: DType) -> Result<Vec<Tensor>> {
        let mut out = Vec::new();
        let mut at = 0;
        for (fan_in, fan_out) in layer_shapes(self.map) {
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
        Ok(Mlp::from_parts(w, b, self.map))
    }

    /// Moves the time origin later by `delta` model units without changing the function in
    /// absolute time (see [`crate::model::shift_time`]): the first input is `2t − 1` in every
    /// input map, so the first bias absorbs `2·delta·w0[t]`.
    pub fn shift_time(&mut self, delta: f64) {
        let b0 = self.layout().b0();
        let (w, b) = self.values.split_at_mut(b0);
        for (b, &w) in b[..H].iter_mut().zip(&w[..H]) {
            *b += (2.0 * delta) as f32 * w;
        }
    }

    /// Multiplies the output layer (so `u`) by `factor`; the velocity per unit of `u` is
    /// divided by it and the source (`u` per time) multiplied, so the PDE the weights satisfy
    /// is unchanged.
    pub fn scale_output(&mut self, factor: f32) {
        let l = self.layout();
        for v in &mut self.values[l.w_out()..l.params()] {
            *v *= factor;
        }
        if factor != 0.0 {
            self.values[l.velocity() + 1] /= factor;
        }
        for s in &mut self.values[l.source()..] {
            *s *= factor;
        }
    }

    /// The forced residual's source bins `s(x)`.
    pub fn source(&self) -> &[f32] {
        let at = self.layout().source();
        &self.values[at..at + SOURCE_BINS]
    }

    /// The velocity units `(a, b)`.
    pub fn velocity(&self) -> [f32; 2] {
        let at = self.layout().velocity();
        [self.values[at], self.values[at + 1]]
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

    /// The current learning rate.
    pub fn learning_rate(&self) -> f64 {
        self.lr
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
