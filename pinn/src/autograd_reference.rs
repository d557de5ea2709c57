//! Test reference for the hand-written gradient pass in `fused`: the same loss built from
//! candle ops in f64 and differentiated by `backward()`, and the parameters both are checked at.

use candle_core::{DType, Device, Tensor, Var};

use crate::fourier::InputMap;
use crate::fused::Params;
use crate::loss::{loss_forced, Batch, LossConfig, LossTerms, Points};
use crate::model::{layer_shapes, Mlp};

/// Fresh parameters for input map `map` with random nonzero biases, so no term of the loss
/// sits at a symmetric point.
pub(crate) fn perturbed_params(map: InputMap) -> Params {
    let mut p = Params::init(9, map).unwrap();
    let mut rng = fastrand::Rng::with_seed(4);
    let mut at = 0;
    for (fan_in, fan_out) in layer_shapes(map) {
        at += fan_in * fan_out;
        for b in &mut p.values[at..at + fan_out] {
            *b = rng.f32() - 0.5;
        }
        at += fan_out;
    }
    p
}

/// The loss terms and every value's gradient (network, velocity, then the source when
/// `with_source`) in the order of `Params::values`.
pub(crate) fn autograd_reference(
    p: &Params,
    pts: &Points,
    cfg: &LossConfig,
    with_source: bool,
) -> (LossTerms, Vec<f64>) {
    let dev = Device::Cpu;
    let vars: Vec<Var> = p
        .to_tensors(DType::F64)
        .unwrap()
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let mlp = Mlp::from_parts(
        vars.iter()
            .step_by(2)
            .map(|v| v.as_tensor().clone())
            .collect(),
        vars.iter()
            .skip(1)
            .step_by(2)
            .map(|v| v.as_tensor().clone())
            .collect(),
        p.map,
    );
    let vel: Vec<Var> = p
        .velocity()
        .iter()
        .map(|&c| Var::new(c as f64, &dev).unwrap())
        .collect();
    let src = with_source.then(|| {
        let s: Vec<f64> = p.source().iter().map(|&s| s as f64).collect();
        Var::from_tensor(&Tensor::new(s.as_slice(), &dev).unwrap()).unwrap()
    });
    let (total, terms) = loss_forced(
        &mlp,
        &Batch::new(pts, p.map, DType::F64).unwrap(),
        cfg,
        vel[0].as_tensor(),
        vel[1].as_tensor(),
        src.as_ref().map(Var::as_tensor),
    )
    .unwrap();
    let grads = total.backward().unwrap();
    let mut expect = Vec::new();
    for v in vars.iter().chain(&vel).chain(src.as_ref()) {
        let g = grads
            .get(v.as_tensor())
            .expect("every value has a gradient");
        expect.extend(g.flatten_all().unwrap().to_vec1::<f64>().unwrap());
    }
    (terms, expect)
}
