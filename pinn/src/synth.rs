//! Synthetic heat traces for the offline evaluation. They are generated from their own physics
//! or statistics, never fitted to the model: a hot spot travelling around the ring, a
//! numerically solved viscous Burgers' field, a sudden hot-key storm, a diurnal sine, and noise.

use crate::telemetry::HeatSeries;

/// Gaussian noise by Box–Muller.
fn gauss(rng: &mut fastrand::Rng) -> f32 {
    let u1 = rng.f32().max(1e-7);
    let u2 = rng.f32();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Circular distance between positions in `[0, 1)`.
fn ring_dist(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(1.0);
    d.min(1.0 - d)
}

/// A Gaussian hot spot (width 3/64 of the ring, peak 10× the background of 100) moving around
/// the ring at one turn per 120 s, with 2 % multiplicative noise.
pub fn travelling_hot_spot(seconds: usize, buckets: usize, seed: u64) -> HeatSeries {
    let mut rng = fastrand::Rng::with_seed(seed);
    let sigma = 3.0 / 64.0;
    let rows = (0..seconds)
        .map(|t| {
            let centre = 0.2 + t as f32 / 120.0;
            (0..buckets)
                .map(|b| {
                    let x = (b as f32 + 0.5) / buckets as f32;
                    let d = ring_dist(x, centre);
                    let v = 100.0 + 900.0 * (-d * d / (2.0 * sigma * sigma)).exp();
                    v * (1.0 + 0.02 * gauss(&mut rng))
                })
                .collect()
        })
        .collect();
    HeatSeries { t0: 0, rows }
}

/// Viscous Burgers' `u_t + u·u_x = ν·u_xx` on the periodic unit ring, solved by finite volumes
/// (central flux of u²/2, central diffusion, Heun steps) on 512 cells from
/// `u₀ = 1 + 0.5·sin 2πx + 0.2·sin(4πx + 1)`. Time runs in units of `t_span` seconds; heat is
/// 100·u averaged over each bucket, with 1 % noise. The wave steepens into a front.
pub fn burgers_field(
    seconds: usize,
    buckets: usize,
    nu: f64,
    t_span: f64,
    seed: u64,
) -> HeatSeries {
    let mut rng = fastrand::Rng::with_seed(seed);
    let cells = 512usize.max(buckets).div_ceil(buckets) * buckets;
    let dx = 1.0 / cells as f64;
    let mut u: Vec<f64> = (0..cells)
        .map(|i| {
            let x = (i as f64 + 0.5) * dx;
            1.0 + 0.5 * (std::f64::consts::TAU * x).sin()
                + 0.2 * (2.0 * std::f64::consts::TAU * x + 1.0).sin()
        })
        .collect();
    let umax = 2.0;
    let dt_limit = (0.4 * dx / umax).min(0.2 * dx * dx / nu.max(1e-9));
    let rhs = |u: &[f64]| -> Vec<f64> {
        let n = u.len();
        (0..n)
            .map(|i| {
                let (l, r) = (u[(i + n - 1) % n], u[(i + 1) % n]);
                let adv = (r * r - l * l) / (4.0 * dx);
                let diff = nu * (r - 2.0 * u[i] + l) / (dx * dx);
                diff - adv
            })
            .collect()
    };
    let per = cells / buckets;
    let mut rows = Vec::with_capacity(seconds);
    for _ in 0..seconds {
        rows.push(
            (0..buckets)
                .map(|b| {
                    let m = u[b * per..(b + 1) * per].iter().sum::<f64>() / per as f64;
                    (100.0 * m) as f32 * (1.0 + 0.01 * gauss(&mut rng))
                })
                .collect(),
        );
        // Advance one second = 1/t_span model units.
        let step_total = 1.0 / t_span;
        let steps = (step_total / dt_limit).ceil() as usize;
        let dt = step_total / steps as f64;
        for _ in 0..steps {
            let k1 = rhs(&u);
            let mid: Vec<f64> = u.iter().zip(&k1).map(|(u, k)| u + dt * k).collect();
            let k2 = rhs(&mid);
            for ((u, a), b) in u.iter_mut().zip(&k1).zip(&k2) {
                *u += 0.5 * dt * (a + b);
            }
        }
    }
    HeatSeries { t0: 0, rows }
}

/// Background 100 ± 5 % everywhere; from second `start` one bucket's heat ramps linearly to
/// 20× over 20 s and stays there (a hot-key storm).
pub fn hot_key_storm(seconds: usize, buckets: usize, start: usize, seed: u64) -> HeatSeries {
    let mut rng = fastrand::Rng::with_seed(seed);
    let hot = buckets / 3;
    let rows = (0..seconds)
        .map(|t| {
            (0..buckets)
                .map(|b| {
                    let mut v = 100.0;
                    if b == hot && t >= start {
                        v += 1900.0 * ((t - start) as f32 / 20.0).min(1.0);
                    }
                    v * (1.0 + 0.05 * gauss(&mut rng))
                })
                .collect()
        })
        .collect();
    HeatSeries { t0: 0, rows }
}

/// Background 100 ± 2 %; from second `start` a Gaussian bump (width 3/64 of the ring, centred
/// at 0.5) grows linearly by 20 heat per second at its peak and keeps growing (a storm still
/// building up: what a forecast must extrapolate to move slots before the overload).
pub fn growing_bump(seconds: usize, buckets: usize, start: usize, seed: u64) -> HeatSeries {
    let mut rng = fastrand::Rng::with_seed(seed);
    let sigma = 3.0 / 64.0;
    let rows = (0..seconds)
        .map(|t| {
            let peak = 20.0 * t.saturating_sub(start) as f32;
            (0..buckets)
                .map(|b| {
                    let x = (b as f32 + 0.5) / buckets as f32;
                    let d = ring_dist(x, 0.5);
                    let v = 100.0 + peak * (-d * d / (2.0 * sigma * sigma)).exp();
                    v * (1.0 + 0.02 * gauss(&mut rng))
                })
                .collect()
        })
        .collect();
    HeatSeries { t0: 0, rows }
}

/// A slow sine in time (period 120 s) whose phase varies along the ring, ±50 % around 100,
/// with 3 % noise.
pub fn diurnal(seconds: usize, buckets: usize, seed: u64) -> HeatSeries {
    let mut rng = fastrand::Rng::with_seed(seed);
    let rows = (0..seconds)
        .map(|t| {
            (0..buckets)
                .map(|b| {
                    let x = b as f32 / buckets as f32;
                    let phase =
                        std::f32::consts::TAU * (t as f32 / 120.0) + std::f32::consts::PI * x;
                    (100.0 + 50.0 * phase.sin()) * (1.0 + 0.03 * gauss(&mut rng))
                })
                .collect()
        })
        .collect();
    HeatSeries { t0: 0, rows }
}

/// Independent noise: 100 ± 20 everywhere, nothing to forecast beyond the mean.
pub fn noise(seconds: usize, buckets: usize, seed: u64) -> HeatSeries {
    let mut rng = fastrand::Rng::with_seed(seed);
    let rows = (0..seconds)
        .map(|_| {
            (0..buckets)
                .map(|_| (100.0 + 20.0 * gauss(&mut rng)).max(0.0))
                .collect()
        })
        .collect();
    HeatSeries { t0: 0, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burgers_conserves_mass_and_steepens() {
        let s = burgers_field(40, 16, 0.01, 80.0, 1);
        let mass = |r: &Vec<f32>| r.iter().sum::<f32>() / r.len() as f32;
        assert!(
            (mass(&s.rows[0]) - mass(&s.rows[39])).abs() < 3.0,
            "mean heat stays ~100"
        );
        let max_jump = |r: &Vec<f32>| {
            (0..r.len())
                .map(|b| (r[(b + 1) % r.len()] - r[b]).abs())
                .fold(0.0f32, f32::max)
        };
        assert!(
            max_jump(&s.rows[39]) > 1.3 * max_jump(&s.rows[0]),
            "the front steepens"
        );
    }

    #[test]
    fn hot_spot_moves() {
        let s = travelling_hot_spot(61, 64, 1);
        let argmax = |r: &Vec<f32>| {
            (0..r.len())
                .max_by(|&a, &b| r[a].total_cmp(&r[b]))
                .unwrap_or(0)
        };
        // Half a turn in 60 s: 32 buckets.
        let moved = (argmax(&s.rows[60]) + 64 - argmax(&s.rows[0])) % 64;
        assert!((31..=33).contains(&moved), "moved {moved}");
    }
}
