//! Training: the synchronous round (`TrainState::round`: 200 warm-started Adam steps on the
//! current window) and the background `Trainer` thread that runs a round every interval and
//! publishes the result by an atomic pointer swap, so forecasts never wait for training.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::error::{PinnError, Result};
use crate::fused::{loss_and_grad, Adam, Params, Workspace};
use crate::loss::{sample_points, LossConfig, LossTerms, Units};
use crate::model::Mlp;
use crate::params::UNIT_VELOCITY;
use crate::telemetry::{HeatSeries, Window};

/// Everything the trainer can be configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Loss weights and point counts.
    pub loss: LossConfig,
    /// Adam learning rate.
    pub lr: f64,
    /// Adam steps per round.
    pub steps_per_round: usize,
    /// Pause between rounds of the background trainer (bounds its CPU use).
    pub interval: Duration,
    /// Seconds per model time unit.
    pub t_span: f64,
    /// Forecast horizon in seconds; collocation points extend this far past the window.
    pub horizon: f64,
    /// A round whose final loss exceeds this factor times the last accepted one is rejected.
    pub max_loss_growth: f32,
    /// Fewest rows a window needs before training.
    pub min_rows: usize,
    /// Seed of the weight initialisation and the point sampling.
    pub seed: u64,
    /// Train the PDE's velocity units `(a, b)` with the weights (see [`Params`]); when false
    /// (the default, the residual) they stay `(0, 1)`: Burgers' on `u` itself.
    pub learn_velocity: bool,
    /// Learning rate of the velocity units relative to `lr` (4: at 1 the offline hot spot's
    /// `a` took ~4,000 steps to reach its speed).
    pub velocity_lr_scale: f32,
    /// Learning rate of the forced residual's source bins relative to `lr` (Adam moves a value
    /// by about the learning rate per step; a storm's source is tens of `u` per model unit).
    pub source_lr_scale: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            loss: LossConfig::default(),
            lr: 1e-3,
            steps_per_round: 200,
            interval: Duration::from_secs(5),
            t_span: 80.0,
            horizon: 10.0,
            max_loss_growth: 10.0,
            min_rows: 5,
            seed: 0x5eed,
            learn_velocity: false,
            velocity_lr_scale: 4.0,
            source_lr_scale: 20.0,
        }
    }
}

/// What one training round did.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundReport {
    /// Round number, from 1.
    pub round: u64,
    /// Steps taken in this round.
    pub steps: usize,
    /// Adam steps accumulated by the served weights (warm starts add up).
    pub total_steps: u64,
    /// Loss terms averaged over the last steps of the round.
    pub terms: LossTerms,
    /// Loss at the first step (before this round's updates).
    pub first_loss: f32,
    /// Wall time of the round.
    pub duration: Duration,
    /// Mean wall time of one Adam step, in milliseconds.
    pub ms_per_step: f64,
    /// Whether the new weights replaced the served model.
    pub accepted: bool,
    /// The PDE's velocity units `(a, b)` after the round (`v = a + b·u`, model units).
    pub velocity: [f32; 2],
    /// The forced residual's largest source bin after the round, in heat per second (0 when
    /// not forced).
    pub source_max: f32,
    /// Why the round was rejected, if it was.
    pub rejected_because: Option<String>,
}

/// A trained model frozen for serving: weights copied out of the optimiser.
#[derive(Debug, Clone)]
pub struct Forecaster {
    mlp: Mlp,
    units: Units,
    /// The round that produced it.
    pub report: RoundReport,
}

impl Forecaster {
    /// Predicted heat of each of `buckets` buckets at absolute second `at`.
    pub fn forecast(&self, at: f64, buckets: usize) -> Result<Vec<f32>> {
        let u = self.mlp.row(self.units.time(at), buckets)?;
        Ok(u.into_iter()
            .map(|v| (v * self.units.u_scale).max(0.0))
            .collect())
    }

    /// Persistence plus the model's predicted change: `last` (the observed row of second
    /// `from`) plus `u(at) − u(from)`. A model with no dynamics gives persistence, and the
    /// network's misfit of the current field cancels out; only its predicted motion is used.
    pub fn forecast_change(&self, last: &[f32], from: f64, at: f64) -> Result<Vec<f32>> {
        let b = last.len();
        let now = self.mlp.row(self.units.time(from), b)?;
        let later = self.mlp.row(self.units.time(at), b)?;
        Ok(last
            .iter()
            .zip(now.iter().zip(&later))
            .map(|(&h, (&u0, &u1))| (h + (u1 - u0) * self.units.u_scale).max(0.0))
            .collect())
    }

    /// The mapping between seconds/heat and model units.
    pub fn units(&self) -> Units {
        self.units
    }
}

/// The training state carried from round to round (weights, optimiser, time origin).
/// Steps run on the hand-written pass of [`crate::fused`] (same loss as
/// [`crate::loss::loss`], about 3× faster than candle at these sizes).
pub struct TrainState {
    cfg: TrainConfig,
    params: Params,
    opt: Adam,
    ws: Workspace,
    grad: Vec<f32>,
    units: Option<Units>,
    last_loss: Option<f32>,
    total_steps: u64,
    rounds: u64,
    rng: fastrand::Rng,
}

impl TrainState {
    /// Fresh weights (f32) and optimiser.
    pub fn new(cfg: TrainConfig) -> Result<Self> {
        if cfg.t_span <= 0.0 || cfg.steps_per_round == 0 || cfg.min_rows < 2 {
            return Err(PinnError::Config(
                "t_span > 0, steps_per_round > 0 and min_rows ≥ 2 are required".into(),
            ));
        }
        let params = Params::init(cfg.seed, cfg.loss.input_map())?;
        let opt = Adam::new(params.layout().trainable(), cfg.lr);
        let rng = fastrand::Rng::with_seed(cfg.seed);
        Ok(Self {
            cfg,
            params,
            opt,
            ws: Workspace::default(),
            grad: Vec::new(),
            units: None,
            last_loss: None,
            total_steps: 0,
            rounds: 0,
            rng,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Replaces the configuration between rounds (loss weights, ν, steps, interval, horizon,
    /// learning rate); the weights and the optimiser's moments are kept, except when the
    /// input map (`loss.fourier`) changes the network's shape: then training starts afresh.
    pub fn set_config(&mut self, cfg: TrainConfig) -> Result<()> {
        if cfg.t_span != self.cfg.t_span || cfg.steps_per_round == 0 || cfg.min_rows < 2 {
            return Err(PinnError::Config(
                "t_span cannot change; steps_per_round > 0 and min_rows ≥ 2 are required".into(),
            ));
        }
        if cfg.loss.input_map() != self.params.map {
            self.params = Params::init(cfg.seed, cfg.loss.input_map())?;
            self.opt = Adam::new(self.params.layout().trainable(), cfg.lr);
            self.units = None;
            self.last_loss = None;
            self.total_steps = 0;
        } else if cfg.lr != self.cfg.lr {
            self.opt.set_learning_rate(cfg.lr);
        }
        self.cfg = cfg;
        Ok(())
    }

    /// Moves the time origin to the window's first row and the heat scale to its mean,
    /// adjusting the weights so the function in seconds and heat is unchanged.
    fn rebase(&mut self, series: &HeatSeries) -> Result<Units> {
        let n: usize = series.rows.iter().map(Vec::len).sum();
        let mean = series.rows.iter().flatten().sum::<f32>() / n.max(1) as f32;
        let u_scale = mean.max(1e-3);
        let new = Units {
            origin: series.t0,
            t_span: self.cfg.t_span,
            u_scale,
        };
        if let Some(old) = self.units {
            self.params
                .shift_time((new.origin as f64 - old.origin as f64) / self.cfg.t_span);
            self.params.scale_output(old.u_scale / new.u_scale);
        }
        let lay = self.params.layout();
        if !self.cfg.learn_velocity {
            // Burgers' on `u` itself, in this window's units.
            self.params.values[lay.velocity()..lay.velocity() + 2].copy_from_slice(&UNIT_VELOCITY);
        }
        if !self.cfg.loss.forced {
            self.params.values[lay.source()..].fill(0.0);
        }
        self.units = Some(new);
        Ok(new)
    }

    /// Runs one round of `steps_per_round` Adam steps on `series`, warm-started from the
    /// previous weights. Returns the report and, if the round was accepted, the new model.
    /// A round that ends in NaN or with a loss above `max_loss_growth` × the last accepted
    /// loss restores the previous weights.
    pub fn round(&mut self, series: &HeatSeries) -> Result<(RoundReport, Option<Forecaster>)> {
        if series.rows.len() < self.cfg.min_rows || series.buckets() == 0 {
            return Err(PinnError::NotEnoughData {
                need: self.cfg.min_rows,
                have: series.rows.len(),
            });
        }
        let start = Instant::now();
        let backup = self.params.clone();
        let backup_units = self.units;
        let units = self.rebase(series)?;
        let steps = self.cfg.steps_per_round;
        let tail = (steps / 10).max(1);
        let (mut first_loss, mut acc, mut acc_n) = (f32::NAN, LossTerms::default(), 0.0f32);
        let mut failure = None;
        let (vel, src) = (
            self.params.layout().velocity(),
            self.params.layout().source(),
        );
        for step in 0..steps {
            let pts = sample_points(
                series,
                &units,
                self.cfg.horizon,
                &self.cfg.loss,
                &mut self.rng,
            );
            let terms = loss_and_grad(
                &self.params,
                &pts,
                &self.cfg.loss,
                &mut self.ws,
                &mut self.grad,
            );
            if !terms.total.is_finite() {
                failure = Some(format!("loss is {} at step {step}", terms.total));
                break;
            }
            if step == 0 {
                first_loss = terms.total;
            }
            if !self.cfg.learn_velocity {
                self.grad[vel..vel + 2].fill(0.0);
            }
            if !self.cfg.loss.forced {
                self.grad[src..].fill(0.0);
            }
            if step + tail >= steps {
                acc.data += terms.data;
                acc.pde += terms.pde;
                acc.bc += terms.bc;
                acc.ic += terms.ic;
                acc.source += terms.source;
                acc.total += terms.total;
                acc_n += 1.0;
            }
            let before = self.params.velocity();
            let before_src = self.params.source().to_vec();
            self.opt.step(&mut self.params.values, &self.grad);
            let k = self.cfg.velocity_lr_scale;
            if k != 1.0 {
                for (v, b) in self.params.values[vel..].iter_mut().zip(before) {
                    *v = b + k * (*v - b);
                }
            }
            let k = self.cfg.source_lr_scale;
            if k != 1.0 && self.cfg.loss.forced {
                for (v, b) in self.params.values[src..].iter_mut().zip(before_src) {
                    *v = b + k * (*v - b);
                }
            }
        }
        let n = acc_n.max(1.0);
        let terms = LossTerms {
            data: acc.data / n,
            pde: acc.pde / n,
            bc: acc.bc / n,
            ic: acc.ic / n,
            source: acc.source / n,
            total: acc.total / n,
        };
        if failure.is_none() {
            if let Some(prev) = self.last_loss {
                if terms.total > self.cfg.max_loss_growth * prev {
                    failure = Some(format!("loss rose from {prev:.4} to {:.4}", terms.total));
                }
            }
        }
        self.rounds += 1;
        let duration = start.elapsed();
        let accepted = failure.is_none();
        if accepted {
            self.total_steps += steps as u64;
            self.last_loss = Some(terms.total);
        } else {
            self.params = backup;
            self.units = backup_units;
            // The moments saw the diverging steps; start them afresh.
            self.opt = Adam::new(self.params.layout().trainable(), self.cfg.lr);
        }
        let report = RoundReport {
            round: self.rounds,
            steps,
            total_steps: self.total_steps,
            terms,
            first_loss,
            duration,
            ms_per_step: duration.as_secs_f64() * 1e3 / steps as f64,
            accepted,
            velocity: self.params.velocity(),
            source_max: self.params.source().iter().fold(0.0f32, |m, &s| m.max(s)) * units.u_scale
                / units.t_span as f32,
            rejected_because: failure,
        };
        let model = if accepted {
            Some(Forecaster {
                mlp: self.params.to_mlp()?,
                units,
                report: report.clone(),
            })
        } else {
            None
        };
        Ok((report, model))
    }
}

/// Recent round reports and totals.
#[derive(Default)]
struct History {
    recent: std::collections::VecDeque<RoundReport>,
    accepted: u64,
    rejected: u64,
}

impl History {
    const KEEP: usize = 32;

    fn push(&mut self, r: RoundReport) {
        if r.accepted {
            self.accepted += 1;
        } else {
            self.rejected += 1;
        }
        if self.recent.len() == Self::KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back(r);
    }
}

enum Msg {
    TrainNow(mpsc::Sender<Result<RoundReport>>),
    Configure(TrainConfig),
    Stop,
}

/// Decides before each timed round whether to run it (e.g. "enabled, and traffic arrived since
/// the last round"); explicit [`Trainer::train_now`] requests always run.
pub type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

/// How the trainer thread behaves besides its [`TrainConfig`].
#[derive(Clone, Default)]
pub struct TrainerOptions {
    /// Checked before every timed round; `None` trains every interval.
    pub gate: Option<Gate>,
    /// Nice value for the trainer thread (Linux; 0 leaves it alone), so serving threads win
    /// the CPU when both want it.
    pub nice: i32,
    /// Run the trainer thread under `SCHED_IDLE` (Linux): it gets a core only when no normal
    /// thread wants it, so training never takes CPU from serving, and rounds stretch (or
    /// wait) while the machine is busy. Applied after `nice`; falls back to `nice` if refused.
    pub sched_idle: bool,
}

/// candle splits every matmul over `RAYON_NUM_THREADS` threads (default: every core), read from
/// the environment at each product. Sets it to 1 unless the operator set it. Call it at process
/// start, before other threads exist (changing the environment races with C code reading it).
pub fn single_threaded_matmul() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
}

/// Applies [`TrainerOptions`]' `nice` and `sched_idle` to the calling thread.
fn lower_priority(nice: i32, sched_idle: bool) {
    renice_current_thread(nice);
    if sched_idle && !sched_idle_current_thread() {
        eprintln!("pinn-trainer: SCHED_IDLE refused; running at nice {nice}");
    }
}

/// Moves the calling thread to `SCHED_IDLE` (Linux); false if that was refused.
fn sched_idle_current_thread() -> bool {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain syscalls on the calling thread's own id; `param` outlives the call.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
            libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param)
        };
        rc == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Lowers the calling thread's scheduling priority (Linux `setpriority` on the thread id).
fn renice_current_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice != 0 {
        // SAFETY: plain syscalls on the calling thread's own id; no memory is passed.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice)
        };
        if rc != 0 {
            // Not fatal: training still works at normal priority.
            eprintln!("pinn-trainer: setpriority({nice}) failed");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// The background trainer: one thread, one round per interval, models published by atomic swap.
pub struct Trainer {
    served: Arc<ArcSwapOption<Forecaster>>,
    last: Arc<Mutex<History>>,
    tx: mpsc::Sender<Msg>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Trainer {
    /// Starts the trainer thread reading rows from `window`.
    ///
    /// Training steps run on this one thread (the hand-written pass calls `gemm` without
    /// parallelism). candle's CPU matmul, still used for forecasts, splits each product over
    /// `RAYON_NUM_THREADS` threads (default: every core) whatever pool it runs in; set
    /// `RAYON_NUM_THREADS=1` at process start, before any thread exists.
    pub fn spawn(window: Arc<Mutex<Window>>, cfg: TrainConfig) -> Result<Self> {
        Self::spawn_with(window, cfg, TrainerOptions::default())
    }

    /// [`spawn`](Self::spawn) with a gate on timed rounds and a thread priority.
    pub fn spawn_with(
        window: Arc<Mutex<Window>>,
        cfg: TrainConfig,
        opts: TrainerOptions,
    ) -> Result<Self> {
        let mut state = TrainState::new(cfg)?;
        let served: Arc<ArcSwapOption<Forecaster>> = Arc::new(ArcSwapOption::empty());
        let last = Arc::new(Mutex::new(History::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        // A one-thread pool keeps candle's matmuls on this thread: training uses one core.
        // The rounds run on the pool's worker thread, not on `pinn-trainer`: that worker gets
        // the low priority (before, only `pinn-trainer`, which just waits, was reniced).
        let (nice, idle) = (opts.nice, opts.sched_idle);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "pinn-train".into())
            .start_handler(move |_| lower_priority(nice, idle))
            .build()
            .map_err(|e| PinnError::Config(format!("trainer thread pool: {e}")))?;
        let (s, l, st) = (served.clone(), last.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("pinn-trainer".into())
            .spawn(move || {
                lower_priority(opts.nice, opts.sched_idle);
                let mut next = Instant::now() + state.config().interval;
                loop {
                    let wait = next.saturating_duration_since(Instant::now());
                    let reply = match rx.recv_timeout(wait) {
                        Ok(Msg::TrainNow(reply)) => Some(reply),
                        Ok(Msg::Configure(cfg)) => {
                            // A bad config is refused by the caller's validation; keep the old.
                            let _ = state.set_config(cfg);
                            next = Instant::now() + state.config().interval;
                            continue;
                        }
                        Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                        Err(RecvTimeoutError::Timeout) => {
                            next = Instant::now() + state.config().interval;
                            None
                        }
                    };
                    if st.load(Ordering::Relaxed) {
                        break;
                    }
                    if reply.is_none() && opts.gate.as_ref().is_some_and(|g| !g()) {
                        continue;
                    }
                    // Copy the rows out so the window lock is held for microseconds.
                    let series = window.lock().ok().and_then(|w| w.heat());
                    let result = match series {
                        Some(series) => pool.install(|| state.round(&series)),
                        None => Err(PinnError::NotEnoughData { need: 1, have: 0 }),
                    };
                    if let Ok((report, model)) = &result {
                        if let Some(model) = model {
                            s.store(Some(Arc::new(model.clone())));
                        }
                        if let Ok(mut last) = l.lock() {
                            last.push(report.clone());
                        }
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(result.map(|(r, _)| r));
                    }
                }
            })
            .map_err(|e| PinnError::Config(format!("spawn trainer: {e}")))?;
        Ok(Self {
            served,
            last,
            tx,
            stop,
            handle: Some(handle),
        })
    }

    /// The model currently served (None before the first accepted round).
    pub fn forecaster(&self) -> Option<Arc<Forecaster>> {
        self.served.load_full()
    }

    /// The report of the most recent round, accepted or not.
    pub fn last_report(&self) -> Option<RoundReport> {
        self.last.lock().ok().and_then(|l| l.recent.back().cloned())
    }

    /// The most recent rounds (oldest first, at most 32) and the accepted/rejected totals.
    pub fn history(&self) -> (Vec<RoundReport>, u64, u64) {
        self.last
            .lock()
            .map(|h| (h.recent.iter().cloned().collect(), h.accepted, h.rejected))
            .unwrap_or_default()
    }

    /// Replaces the configuration from the next round on (the weights are kept).
    pub fn reconfigure(&self, cfg: TrainConfig) -> Result<()> {
        self.tx
            .send(Msg::Configure(cfg))
            .map_err(|_| PinnError::Config("trainer thread has stopped".into()))
    }

    /// Runs a round now (after any round in progress) and returns its report.
    pub fn train_now(&self) -> Result<RoundReport> {
        let (tx, rx) = mpsc::channel();
        let gone = || PinnError::Config("trainer thread has stopped".into());
        self.tx.send(Msg::TrainNow(tx)).map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}

impl Drop for Trainer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.tx.send(Msg::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Row;

    fn small_cfg() -> TrainConfig {
        TrainConfig {
            loss: LossConfig {
                n_data: 64,
                n_colloc: 64,
                n_boundary: 8,
                ..LossConfig::default()
            },
            steps_per_round: 10,
            interval: Duration::from_secs(3600),
            lr: 1e-2,
            ..TrainConfig::default()
        }
    }

    fn wave(t0: u64, rows: usize, buckets: usize) -> HeatSeries {
        let rows = (0..rows)
            .map(|i| {
                (0..buckets)
                    .map(|b| {
                        let phase = (b as f32 / buckets as f32 - (t0 as f32 + i as f32) / 40.0)
                            * std::f32::consts::TAU;
                        100.0 + 50.0 * phase.sin()
                    })
                    .collect()
            })
            .collect();
        HeatSeries { t0, rows }
    }

    #[test]
    fn warm_started_rounds_reduce_the_loss() {
        let mut st = TrainState::new(small_cfg()).unwrap();
        let (r1, m1) = st.round(&wave(0, 10, 16)).unwrap();
        assert!(r1.accepted && m1.is_some());
        let mut last = r1;
        for k in 1..4 {
            let (r, _) = st.round(&wave(k, 10, 16)).unwrap();
            assert!(r.accepted, "{r:?}");
            last = r;
        }
        assert_eq!(last.total_steps, 40);
        assert!(
            last.terms.total < 0.5 * last_first(&mut st),
            "loss did not drop: {last:?}"
        );
    }

    fn last_first(st: &mut TrainState) -> f32 {
        // A fresh state's first loss on the same data, for comparison.
        let mut fresh = TrainState::new(st.config().clone()).unwrap();
        fresh.round(&wave(3, 10, 16)).unwrap().0.first_loss
    }

    #[test]
    fn rebase_keeps_the_forecast_in_absolute_time() {
        let mut st = TrainState::new(small_cfg()).unwrap();
        let (_, m) = st.round(&wave(0, 10, 8)).unwrap();
        let before = m.unwrap().forecast(12.0, 8).unwrap();
        // A window two seconds later with double the heat: origin and scale both move.
        let mut later = wave(2, 10, 8);
        later.rows.iter_mut().flatten().for_each(|v| *v *= 2.0);
        st.rebase(&later).unwrap();
        let units = st.units.unwrap();
        let mlp = st.params.to_mlp().unwrap();
        let after: Vec<f32> = mlp
            .row(units.time(12.0), 8)
            .unwrap()
            .into_iter()
            .map(|u| (u * units.u_scale).max(0.0))
            .collect();
        for (a, b) in before.iter().zip(&after) {
            assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn the_change_forecast_adds_the_models_motion_to_the_last_row() {
        let mut st = TrainState::new(small_cfg()).unwrap();
        let (_, m) = st.round(&wave(0, 10, 8)).unwrap();
        let m = m.unwrap();
        let last = vec![500.0f32; 8];
        // No time passes: no change.
        assert_eq!(m.forecast_change(&last, 9.0, 9.0).unwrap(), last);
        let field_now = m.forecast(9.0, 8).unwrap();
        let field_later = m.forecast(19.0, 8).unwrap();
        let change = m.forecast_change(&last, 9.0, 19.0).unwrap();
        for b in 0..8 {
            let want = 500.0 + field_later[b] - field_now[b];
            assert!((change[b] - want).abs() < 1e-2, "{change:?}");
        }
    }

    #[test]
    fn velocity_units_train_only_when_asked() {
        let mut st = TrainState::new(small_cfg()).unwrap();
        let (r, _) = st.round(&wave(0, 10, 8)).unwrap();
        assert_eq!(r.velocity, UNIT_VELOCITY);
        let cfg = TrainConfig {
            learn_velocity: true,
            ..small_cfg()
        };
        let mut st = TrainState::new(cfg).unwrap();
        let (r, _) = st.round(&wave(0, 10, 8)).unwrap();
        assert!(r.accepted);
        assert_ne!(r.velocity, UNIT_VELOCITY, "the PDE's units moved");
    }

    #[test]
    fn a_diverging_round_keeps_the_old_model() {
        let mut st = TrainState::new(small_cfg()).unwrap();
        let (r, _) = st.round(&wave(0, 10, 8)).unwrap();
        assert!(r.accepted);
        let kept = st.params.to_mlp().unwrap().row(0.1, 8).unwrap();
        // Heat with an infinite value makes the data loss NaN/inf.
        let mut bad = wave(1, 10, 8);
        bad.rows[3][2] = f32::INFINITY;
        let (r, m) = st.round(&bad).unwrap();
        assert!(!r.accepted && m.is_none());
        assert!(r.rejected_because.is_some());
        let now = st.params.to_mlp().unwrap().row(0.1, 8).unwrap();
        assert_eq!(kept, now);
        assert_eq!(r.total_steps, 10);
    }

    #[test]
    fn a_closed_gate_skips_timed_rounds() {
        let window = Arc::new(Mutex::new(Window::new(60)));
        {
            let mut w = window.lock().unwrap();
            for (i, row) in wave(0, 10, 8).rows.iter().enumerate() {
                w.push(Row::from_heat(i as u64, row));
            }
        }
        let cfg = TrainConfig {
            interval: Duration::from_millis(20),
            ..small_cfg()
        };
        let open = Arc::new(AtomicBool::new(false));
        let o = open.clone();
        let gate: Gate = Arc::new(move || o.load(Ordering::Relaxed));
        // Not SCHED_IDLE here: on a busy test machine the round could wait for minutes.
        let opts = TrainerOptions {
            gate: Some(gate),
            nice: 5,
            sched_idle: false,
        };
        let trainer = Trainer::spawn_with(window, cfg, opts).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(trainer.last_report().is_none(), "gate closed: no round");
        open.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        while trainer.last_report().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(trainer.last_report().is_some(), "gate open: rounds run");
        // The thread that runs the rounds (the pool's worker) has the lower priority.
        #[cfg(target_os = "linux")]
        {
            let nices: Vec<String> = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|t| {
                    let p = t.ok()?.path();
                    let comm = std::fs::read_to_string(p.join("comm")).ok()?;
                    let stat = std::fs::read_to_string(p.join("stat")).ok()?;
                    // Field 19 is the nice value; the name in field 2 has no spaces here.
                    let nice = stat.split_whitespace().nth(18)?.to_string();
                    (comm.trim() == "pinn-train").then_some(nice)
                })
                .collect();
            assert!(nices.iter().any(|n| n == "5"), "pinn-train nice: {nices:?}");
        }
        let mut cfg = small_cfg();
        cfg.loss.nu = 0.05;
        trainer.reconfigure(cfg).unwrap();
        assert!(trainer.train_now().unwrap().accepted);
    }

    #[test]
    fn background_trainer_publishes_models() {
        let window = Arc::new(Mutex::new(Window::new(60)));
        let trainer = Trainer::spawn(window.clone(), small_cfg()).unwrap();
        assert!(trainer.forecaster().is_none());
        assert!(trainer.train_now().is_err(), "an empty window cannot train");
        {
            let mut w = window.lock().unwrap();
            for (i, row) in wave(0, 10, 8).rows.iter().enumerate() {
                w.push(Row::from_heat(i as u64, row));
            }
        }
        let r = trainer.train_now().unwrap();
        assert!(r.accepted);
        let f = trainer.forecaster().expect("published");
        assert_eq!(f.forecast(15.0, 8).unwrap().len(), 8);
        assert_eq!(trainer.last_report().unwrap().round, 1);
        assert_eq!(trainer.history().1, 1);
        drop(trainer);
    }
}
