//! Scoring forecasts once the future arrives, and the offline evaluation that replays a trace
//! through the same rounds the live trainer would run.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::baselines::{Ewma, Forecast, LinearStencil, Persistence};
use crate::error::Result;
use crate::telemetry::HeatSeries;
use crate::trainer::{TrainConfig, TrainState};

/// Mean squared error between two rows.
pub fn mse(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len()).max(1);
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / n as f64
}

/// Forecasts waiting for their target second, and each model's error once it arrived.
#[derive(Debug, Default, Clone)]
pub struct Scoreboard {
    pending: VecDeque<(u64, String, Vec<f32>)>,
    totals: BTreeMap<String, (f64, u64)>,
    recent: BTreeMap<String, f64>,
    alpha: Option<f64>,
    newest_scored: Option<u64>,
}

impl Scoreboard {
    /// Weight of the newest error in the recent-error average.
    const RECENT_ALPHA: f64 = 0.2;

    /// An empty board whose recent-error average weighs the newest error by `alpha`.
    pub fn with_alpha(alpha: f64) -> Self {
        Self {
            alpha: Some(alpha.clamp(0.0, 1.0)),
            ..Self::default()
        }
    }

    /// Records `model`'s forecast for second `target`.
    pub fn submit(&mut self, target: u64, model: &str, forecast: Vec<f32>) {
        self.pending
            .push_back((target, model.to_string(), forecast));
    }

    /// The observed row of second `t` arrived: scores every forecast that targeted it and drops
    /// the ones whose target has passed.
    pub fn observe(&mut self, t: u64, heat: &[f32]) {
        self.pending.retain(|(target, model, f)| {
            if *target == t {
                let e = mse(f, heat);
                let tot = self.totals.entry(model.clone()).or_insert((0.0, 0));
                tot.0 += e;
                tot.1 += 1;
                let alpha = self.alpha.unwrap_or(Self::RECENT_ALPHA);
                let r = self.recent.entry(model.clone()).or_insert(e);
                *r += alpha * (e - *r);
                self.newest_scored = Some(self.newest_scored.map_or(t, |n| n.max(t)));
            }
            *target > t
        });
    }

    /// Mean squared error of `model` over every scored forecast, and how many there were.
    pub fn mse(&self, model: &str) -> Option<(f64, u64)> {
        self.totals
            .get(model)
            .map(|&(s, n)| (s / n.max(1) as f64, n))
    }

    /// The newest target second at which any forecast was scored: a board that chooses a
    /// forecast at second `now` must not have scored anything at or after `now`.
    pub fn newest_scored(&self) -> Option<u64> {
        self.newest_scored
    }

    /// The recent (exponentially weighted) error of `model`.
    pub fn recent(&self, model: &str) -> Option<f64> {
        self.recent.get(model).copied()
    }

    /// Of `models`, the one with the lowest recent error (the first if none was scored).
    pub fn best_of<'a>(&self, models: &[&'a str]) -> Option<&'a str> {
        models.iter().copied().min_by(|a, b| {
            let e = |m: &str| self.recent(m).unwrap_or(f64::INFINITY);
            e(a).total_cmp(&e(b))
        })
    }

    /// The model with the lowest recent error (what the planner should act on).
    pub fn best(&self) -> Option<(&str, f64)> {
        self.recent
            .iter()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(m, &e)| (m.as_str(), e))
    }

    /// Every model scored so far.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.totals.keys().map(String::as_str)
    }
}

/// The PINN's field `u(t + h)` as a forecast.
pub const PINN_FIELD: &str = "pinn";
/// The last observed row plus the PINN's predicted change ([`Forecaster::forecast_change`]).
///
/// [`Forecaster::forecast_change`]: crate::trainer::Forecaster::forecast_change
pub const PINN_CHANGE: &str = "pinn-change";
/// Whichever of the two had the lower recent error.
pub const PINN_SERVED: &str = "pinn-served";
/// Whichever of the field and the change had the lower recent error, the recent error
/// forgetting faster ([`EvalConfig::fast_alpha`]) so the early rounds' misfit fades sooner.
pub const PINN_FAST: &str = "pinn-fast";
/// Per bucket, whichever of the field and the change had the lower recent error there.
pub const PINN_BUCKET: &str = "pinn-bucket";

/// Per-bucket choice between two forecasts (the PINN's field and its change) by each bucket's
/// recent squared error, scored only once a forecast's target second has been observed.
#[derive(Debug, Default, Clone)]
pub struct BucketChooser {
    pending: VecDeque<(u64, [Vec<f32>; 2])>,
    err: [Vec<f64>; 2],
}

impl BucketChooser {
    /// Weight of the newest error in each bucket's recent error.
    const ALPHA: f64 = 0.2;

    /// Scores the pending forecasts whose target is at or before `t`, reading rows by `row`.
    pub fn observe_until<'a>(&mut self, t: u64, row: impl Fn(u64) -> Option<&'a [f32]>) {
        while let Some((target, _)) = self.pending.front() {
            if *target > t {
                break;
            }
            let Some((target, f)) = self.pending.pop_front() else {
                break;
            };
            let Some(actual) = row(target) else {
                continue;
            };
            for (k, fk) in f.iter().enumerate() {
                if self.err[k].len() != actual.len() {
                    self.err[k] = fk
                        .iter()
                        .zip(actual)
                        .map(|(a, b)| ((a - b) as f64).powi(2))
                        .collect();
                    continue;
                }
                for ((e, a), b) in self.err[k].iter_mut().zip(fk).zip(actual) {
                    *e += Self::ALPHA * (((a - b) as f64).powi(2) - *e);
                }
            }
        }
    }

    /// The per-bucket pick between `a` and `b` (`a` where nothing was scored yet); remembers
    /// both for scoring at `target`.
    pub fn choose(&mut self, target: u64, a: &[f32], b: &[f32]) -> Vec<f32> {
        let out = (0..a.len())
            .map(|i| match (self.err[0].get(i), self.err[1].get(i)) {
                (Some(ea), Some(eb)) if eb < ea => b[i],
                _ => a[i],
            })
            .collect();
        self.pending.push_back((target, [a.to_vec(), b.to_vec()]));
        out
    }
}

/// How the offline evaluation replays a trace.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// Trainer settings, as live.
    pub train: TrainConfig,
    /// Rows the window keeps (60 live).
    pub window: usize,
    /// Seconds observed before the first round.
    pub first_round_at: usize,
    /// Seconds between rounds (5 live).
    pub round_every: usize,
    /// Rounds to run.
    pub rounds: usize,
    /// Forecast horizon in seconds.
    pub horizon: usize,
    /// Rounds before the PINN's forecasts count as warmed up.
    pub warmup_rounds: usize,
    /// Weight of the newest error in [`PINN_FAST`]'s choice.
    pub fast_alpha: f64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            train: TrainConfig::default(),
            window: 60,
            first_round_at: 30,
            round_every: 5,
            rounds: 10,
            horizon: 10,
            warmup_rounds: 4,
            fast_alpha: 0.5,
        }
    }
}

impl EvalConfig {
    /// Seconds of trace the evaluation needs.
    pub fn seconds(&self) -> usize {
        self.first_round_at + self.round_every * self.rounds + self.horizon
    }
}

/// What the boards that choose a forecast had learned when one round chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChoiceAudit {
    /// The round's `now`: its window ends at second `now - 1`, the newest row it can know.
    pub now: u64,
    /// The newest target second any choosing board had scored a forecast at.
    pub newest_scored: Option<u64>,
}

/// The outcome of one trace.
#[derive(Debug, Clone)]
pub struct EvalResult {
    /// Scores over the rounds after warm-up (all models on the same forecasts).
    pub warm: Scoreboard,
    /// Scores of the first round only (200 steps from scratch).
    pub first: Scoreboard,
    /// Scores of every forecast of every round (reporting only: no choice reads it).
    pub all: Scoreboard,
    /// Per round, what the choosing boards had seen when they chose.
    pub choices: Vec<ChoiceAudit>,
    /// Mean milliseconds per Adam step.
    pub ms_per_step: f64,
    /// Rounds the trainer rejected.
    pub rejected: usize,
    /// Final loss terms.
    pub last_terms: crate::loss::LossTerms,
    /// The PDE's velocity units `(a, b)` after the last round.
    pub last_velocity: [f32; 2],
    /// The largest source bin after the last round (heat per second; 0 unforced).
    pub last_source_max: f32,
}

/// Replays `trace` as the live system would: every `round_every` seconds a training round on
/// the last `window` rows (warm-started), then a forecast `horizon` seconds ahead by the PINN
/// and each baseline, scored when that second of the trace arrives.
pub fn evaluate(trace: &HeatSeries, cfg: &EvalConfig) -> Result<EvalResult> {
    let mut state = TrainState::new(cfg.train.clone())?;
    let mut warm = Scoreboard::default();
    let mut first = Scoreboard::default();
    let mut all = Scoreboard::default();
    // The boards that drive a choice ("pinn-served" and "selected" by `live`, "pinn-fast" by
    // `fast`) learn a forecast's error only once its target is a row before the choosing
    // round's `now`, as a live server does. Scoring at once (as `first`, `warm` and `all` do,
    // which gives the same numbers as scoring after the trace) would let round k see round
    // k - 1's error at second now + horizon - round_every - 1, still in the future whenever the
    // horizon exceeds the round interval (10 s vs 5 s): that flattered the PINN's choices.
    let mut live = Scoreboard::default();
    let mut choices = Vec::new();
    let baselines: Vec<Box<dyn Forecast>> = vec![
        Box::new(Persistence),
        Box::new(Ewma::default()),
        Box::new(LinearStencil::default()),
    ];
    let mut ms = Vec::new();
    let mut rejected = 0;
    let mut served = None;
    let mut chooser = BucketChooser::default();
    let mut fast = Scoreboard::with_alpha(cfg.fast_alpha);
    let mut seen = 0usize;
    let mut last_terms = Default::default();
    let mut last_velocity = [0.0; 2];
    let mut last_source_max = 0.0;
    for k in 0..cfg.rounds {
        let now = cfg.first_round_at + k * cfg.round_every;
        if now + cfg.horizon > trace.rows.len() {
            break;
        }
        let start = now.saturating_sub(cfg.window);
        let window = trace.slice(start, now);
        let t = Instant::now();
        let (report, model) = state.round(&window)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3 / report.steps as f64);
        last_terms = report.terms;
        last_velocity = report.velocity;
        last_source_max = report.source_max;
        if !report.accepted {
            rejected += 1;
        }
        if model.is_some() {
            served = model;
        }
        let target = trace.t0 + (now - 1 + cfg.horizon) as u64;
        let buckets = window.buckets();
        let mut forecasts: Vec<(&str, Vec<f32>)> = Vec::new();
        if let Some(m) = &served {
            forecasts.push((PINN_FIELD, m.forecast(target as f64, buckets)?));
            let last_t = window.t0 + window.rows.len() as u64 - 1;
            let last = &window.rows[window.rows.len() - 1];
            forecasts.push((
                PINN_CHANGE,
                m.forecast_change(last, last_t as f64, target as f64)?,
            ));
        }
        for b in &baselines {
            if let Ok(f) = b.forecast(&window, cfg.horizon) {
                forecasts.push((b.name(), f));
            }
        }
        for (t, row) in trace.rows.iter().enumerate().take(now).skip(seen) {
            live.observe(trace.t0 + t as u64, row);
            fast.observe(trace.t0 + t as u64, row);
        }
        seen = now;
        choices.push(ChoiceAudit {
            now: trace.t0 + now as u64,
            newest_scored: live.newest_scored().max(fast.newest_scored()),
        });
        // "pinn-served" is the PINN's own choice between its field and its change added to
        // the last row, by their recent errors on observed seconds, as the server serves it.
        if let Some(pick) = live.best_of(&[PINN_FIELD, PINN_CHANGE]) {
            if let Some((_, f)) = forecasts.iter().find(|(m, _)| *m == pick) {
                let f = f.clone();
                forecasts.push((PINN_SERVED, f));
            }
        }
        // "pinn-fast": the same choice with a faster-forgetting recent error.
        if let Some(pick) = fast.best_of(&[PINN_FIELD, PINN_CHANGE]) {
            if let Some((_, f)) = forecasts.iter().find(|(m, _)| *m == pick) {
                let f = f.clone();
                forecasts.push((PINN_FAST, f));
            }
        }
        // "pinn-bucket": per bucket, field or change by that bucket's recent error, scored
        // only on targets already observed (rows before `now`).
        chooser.observe_until(trace.t0 + now as u64 - 1, |t| {
            trace.rows.get((t - trace.t0) as usize).map(Vec::as_slice)
        });
        let field = forecasts
            .iter()
            .find(|(m, _)| *m == PINN_FIELD)
            .map(|f| f.1.clone());
        let change = forecasts
            .iter()
            .find(|(m, _)| *m == PINN_CHANGE)
            .map(|f| f.1.clone());
        if let (Some(a), Some(b)) = (field, change) {
            let f = chooser.choose(target, &a, &b);
            forecasts.push((PINN_BUCKET, f));
        }
        // "selected" follows whichever model has had the lowest recent error on the forecasts
        // scored so far (only the past: what the live planner can know), persistence at first.
        let pick = live.best().map_or("persistence", |b| b.0).to_string();
        if let Some((_, f)) = forecasts.iter().find(|(m, _)| *m == pick) {
            let f = f.clone();
            forecasts.push(("selected", f));
        }
        let actual = &trace.rows[(target - trace.t0) as usize];
        for (m, f) in &forecasts {
            // The choices themselves are not candidates ("selected" would follow itself).
            if *m != "selected" && *m != PINN_SERVED && *m != PINN_BUCKET && *m != PINN_FAST {
                live.submit(target, m, f.clone());
            }
            if *m == PINN_FIELD || *m == PINN_CHANGE {
                fast.submit(target, m, f.clone());
            }
            all.submit(target, m, f.clone());
        }
        all.observe(target, actual);

        let board = if k == 0 {
            &mut first
        } else if k >= cfg.warmup_rounds {
            &mut warm
        } else {
            continue;
        };
        for (m, f) in forecasts {
            board.submit(target, m, f);
        }
        board.observe(target, actual);
    }
    Ok(EvalResult {
        warm,
        first,
        all,
        choices,
        ms_per_step: ms.iter().sum::<f64>() / ms.len().max(1) as f64,
        rejected,
        last_terms,
        last_velocity,
        last_source_max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoreboard_scores_when_the_future_arrives() {
        let mut s = Scoreboard::default();
        s.submit(10, "a", vec![1.0, 1.0]);
        s.submit(10, "b", vec![0.0, 0.0]);
        s.submit(11, "a", vec![5.0, 5.0]);
        s.observe(9, &[1.0, 1.0]);
        assert!(s.mse("a").is_none());
        s.observe(10, &[1.0, 3.0]);
        assert_eq!(s.mse("a"), Some((2.0, 1)));
        assert_eq!(s.mse("b"), Some((5.0, 1)));
        assert_eq!(s.best().map(|b| b.0), Some("a"));
        s.observe(11, &[5.0, 5.0]);
        assert_eq!(s.mse("a"), Some((1.0, 2)));
        assert_eq!(s.models().count(), 2);
        assert_eq!(s.best_of(&["b", "a"]), Some("a"));
        assert_eq!(s.best_of(&["c", "b"]), Some("b"), "unscored models lose");
    }

    #[test]
    fn bucket_chooser_picks_per_bucket_after_scoring() {
        let mut c = BucketChooser::default();
        assert_eq!(c.choose(5, &[1.0, 1.0], &[2.0, 2.0]), vec![1.0, 1.0]);
        let actual = [1.0f32, 2.0];
        c.observe_until(4, |_| Some(&actual[..]));
        assert_eq!(
            c.choose(6, &[1.0, 1.0], &[2.0, 2.0]),
            vec![1.0, 1.0],
            "target 5 is not observed yet"
        );
        c.observe_until(5, |_| Some(&actual[..]));
        assert_eq!(c.choose(7, &[1.0, 1.0], &[2.0, 2.0]), vec![1.0, 2.0]);
    }

    #[test]
    fn fast_board_forgets_sooner() {
        let mut slow = Scoreboard::default();
        let mut fast = Scoreboard::with_alpha(0.9);
        for (t, e) in [(1u64, 10.0f32), (2, 0.0)] {
            for b in [&mut slow, &mut fast] {
                b.submit(t, "m", vec![e]);
                b.observe(t, &[0.0]);
            }
        }
        assert!(fast.recent("m") < slow.recent("m"));
    }

    /// A small, quick configuration whose horizon (10 s) exceeds the round interval (5 s), so
    /// a round's forecast targets a second after the next round's `now`.
    fn lookahead_prone(rounds: usize, warmup_rounds: usize) -> EvalConfig {
        EvalConfig {
            train: TrainConfig {
                steps_per_round: 3,
                loss: crate::loss::LossConfig {
                    n_data: 32,
                    n_colloc: 32,
                    n_boundary: 4,
                    ..Default::default()
                },
                ..TrainConfig::default()
            },
            first_round_at: 12,
            rounds,
            warmup_rounds,
            ..EvalConfig::default()
        }
    }

    #[test]
    fn choices_never_see_an_unobserved_second() {
        let cfg = lookahead_prone(4, 1);
        assert!(cfg.horizon > cfg.round_every);
        let trace = crate::synth::travelling_hot_spot(cfg.seconds(), 8, 1);
        let r = evaluate(&trace, &cfg).unwrap();
        assert_eq!(r.choices.len(), cfg.rounds);
        for c in &r.choices {
            assert!(
                c.newest_scored.is_none_or(|s| s < c.now),
                "a choice saw a second not yet observed: {c:?}"
            );
        }
        // Not vacuous: round 0's target (second 21) is observed by round 2 (now 22).
        assert!(r.choices.iter().any(|c| c.newest_scored.is_some()));
    }

    #[test]
    fn a_round_cannot_follow_the_previous_rounds_unarrived_error() {
        // Round 1 chooses at second 17; round 0's forecasts target second 21, so nothing is
        // scored yet and "selected" must still be persistence and "pinn-served" the field,
        // whatever round 0's errors turn out to be.
        let cfg = lookahead_prone(2, 1);
        let trace = crate::synth::travelling_hot_spot(cfg.seconds(), 8, 1);
        let r = evaluate(&trace, &cfg).unwrap();
        // Round 0's errors favour some model other than persistence, so a board that had
        // scored them (the old lookahead) would have chosen differently at round 1.
        let mse = |m: &str| r.first.mse(m).map(|s| s.0).unwrap_or(f64::INFINITY);
        let round0_best = ["pinn", "pinn-change", "persistence", "ewma", "linear"]
            .into_iter()
            .min_by(|a, b| mse(a).total_cmp(&mse(b)));
        assert_ne!(round0_best, Some("persistence"));
        assert_eq!(r.warm.mse("selected"), r.warm.mse("persistence"));
        assert_eq!(r.warm.mse(PINN_SERVED), r.warm.mse(PINN_FIELD));
        assert_eq!(r.warm.mse(PINN_FAST), r.warm.mse(PINN_FIELD));
    }

    #[test]
    fn offline_evaluation_runs_end_to_end() {
        let cfg = EvalConfig {
            train: TrainConfig {
                steps_per_round: 3,
                loss: crate::loss::LossConfig {
                    n_data: 32,
                    n_colloc: 32,
                    n_boundary: 4,
                    ..Default::default()
                },
                ..TrainConfig::default()
            },
            first_round_at: 12,
            rounds: 3,
            horizon: 2,
            warmup_rounds: 1,
            ..EvalConfig::default()
        };
        let trace = crate::synth::travelling_hot_spot(cfg.seconds(), 8, 1);
        let r = evaluate(&trace, &cfg).unwrap();
        for m in [
            PINN_FIELD,
            PINN_CHANGE,
            PINN_SERVED,
            PINN_FAST,
            PINN_BUCKET,
            "persistence",
            "ewma",
            "linear",
            "selected",
        ] {
            assert_eq!(r.warm.mse(m).map(|s| s.1), Some(2), "{m}");
            assert_eq!(r.first.mse(m).map(|s| s.1), Some(1), "{m}");
        }
    }
}
