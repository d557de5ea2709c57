//! The process-wide PINN service: lock-free per-slot counters on the hot path, the
//! once-a-second fold into the 60 s window, forecasts of every model scored once the future
//! arrives, the background trainer, and the planner acting through the slot mover.

use super::exchange::Exchange;
use super::mover::{self, in_flight, MoveTarget, ShardInfo, SlotMover};
use super::planner::{
    cooling_ranges, range_heat, PinnPlanner, Plan, Planner, ReactivePlanner, Trigger, View,
};
use super::settings::{PlannerKind, Settings};
use crate::command::Server;
use arc_swap::ArcSwap;
use pinnacle_pinn::{
    bucket_of, Ewma, Forecast, Forecaster, HeatSeries, HeavyHitter, LinearStencil, OpKind,
    Persistence, RoundReport, Row, Scoreboard, SlotCounters, SpaceSaving, Trainer, TrainerOptions,
    Window, PINN_CHANGE, PINN_FIELD, SLOTS,
};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Rows the window keeps (one per second).
const WINDOW: usize = pinnacle_pinn::DEFAULT_WINDOW;
/// Hot keys kept per shard this node leads.
const HOT_KEYS_PER_SHARD: usize = 100;
/// Decisions remembered for PINN.MIGRATIONS.
const DECISIONS_KEPT: usize = 256;
/// Forecasts kept for the dashboard (two windows' worth of target seconds).
const FORECASTS_KEPT: usize = 2 * WINDOW;
/// Weight of the newest second in the smoothed per-slot rate.
const SMOOTHING: f32 = 0.5;
/// Nice value of the trainer thread.
const TRAINER_NICE: i32 = 10;
/// The tick thread pulls the other leaders' counts this long after folding its own, so they
/// have folded the same second (all nodes fold on the second boundary).
const PULL_DELAY: Duration = Duration::from_millis(200);

/// An observed row for the dashboard: `(second, heat per bucket)`.
pub type ObservedRow = (u64, Vec<f32>);
/// A forecast row for the dashboard: `(target second, model, heat per bucket)`.
pub type ForecastRow = (u64, String, Vec<f32>);

/// One planner decision, kept for PINN.MIGRATIONS and logged when made.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Decision number, from 1.
    pub id: u64,
    /// Second the decision was made (Unix).
    pub t: u64,
    /// Planner that made it.
    pub planner: &'static str,
    /// Model whose forecast the planner used (`observed` for the reactive planner).
    pub model: String,
    /// The move.
    pub plan: Plan,
    /// The source shard's slots when the decision was made.
    pub from_slots: Vec<(u16, u16)>,
    /// Observed heat of the source shard at the decision.
    pub observed_now: f64,
    /// Every model's forecast of the source shard's heat at `target_t`.
    pub predictions: Vec<(String, f64)>,
    /// Second the forecast was for.
    pub target_t: u64,
    /// Observed heat of the source's slots (as they were) at `target_t`, once it arrived.
    pub observed_later: Option<f64>,
    /// Migration id from the mover.
    pub migration: Option<u64>,
    /// Why the mover refused, if it did.
    pub error: Option<String>,
}

/// Every model's forecast of every slot at one horizon, and the observed rates.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Last folded second (Unix; 0 before the first).
    pub t: u64,
    /// Forecast horizon, seconds.
    pub horizon: u64,
    /// Buckets of the telemetry window.
    pub buckets: usize,
    /// Rows in the window.
    pub rows: usize,
    /// Smoothed observed operations per second of every slot.
    pub observed: Vec<f32>,
    /// Each model's forecast of every slot (bucket forecasts spread over the bucket's slots in
    /// proportion to their observed rates).
    pub models: Vec<(String, Vec<f32>)>,
    /// The model with the lowest recent error (what the PINN planner acts on).
    pub selected: Option<String>,
}

impl Snapshot {
    /// The selected model's per-slot forecast.
    pub fn predicted(&self) -> Option<&[f32]> {
        let name = self.selected.as_deref()?;
        self.model(name)
    }

    /// `name`'s per-slot forecast.
    pub fn model(&self, name: &str) -> Option<&[f32]> {
        self.models
            .iter()
            .find(|(m, _)| m == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Forecast errors as PINN.STATS shows them.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    /// `(model, mean squared error, forecasts scored)`, by model name.
    pub models: Vec<(String, f64, u64)>,
    /// The model with the lowest recent error.
    pub best: Option<String>,
    /// The PINN's last forward pass over one row of buckets, microseconds.
    pub forward_us: Option<f64>,
}

/// Whether the trainer's next timed round may run.
struct Gate {
    /// Operations folded since the last check.
    ops: AtomicU64,
    /// `pinn-enabled` and `pinn-train`.
    open: AtomicBool,
    /// Operations a round interval must have seen.
    min_ops: AtomicU64,
    /// The tick thread runs (timed rounds only happen in a live server, never in tests that
    /// drive ticks by hand).
    live: AtomicBool,
}

/// State the tick thread owns and the commands read.
struct State {
    t: u64,
    scratch: Vec<u64>,
    observed: Vec<f32>,
    idle_secs: u64,
    scoreboard: Scoreboard,
    forward_us: Option<f64>,
    trigger: Trigger,
    decisions: VecDeque<Decision>,
    next_decision: u64,
    /// This node's own per-slot counts of the last second (what `PINN.HEAT` exports).
    local_last: (u64, Vec<(u16, u32)>),
    hot_since: u64,
    hot_last: Vec<HeavyHitter>,
    /// The selected model's bucket forecasts by target second, for the dashboard.
    forecasts: VecDeque<(u64, String, Vec<f32>)>,
}

/// The PINN service (one per process; see [`super::service`]).
pub struct PinnService {
    counters: SlotCounters,
    sample_every: AtomicU32,
    hot: Mutex<SpaceSaving>,
    window: Arc<Mutex<Window>>,
    settings: ArcSwap<Settings>,
    state: parking_lot::Mutex<State>,
    trainer: OnceLock<Option<Trainer>>,
    gate: Arc<Gate>,
    server: parking_lot::Mutex<Option<Weak<Server>>>,
    started: AtomicBool,
    exchange: parking_lot::Mutex<Exchange>,
}

thread_local! {
    static KEY_TICK: Cell<u32> = const { Cell::new(0) };
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl PinnService {
    /// A service with `settings`, no threads running (see [`PinnService::start`]).
    pub fn new(settings: Settings) -> PinnService {
        let gate = Arc::new(Gate {
            ops: AtomicU64::new(0),
            open: AtomicBool::new(settings.enabled && settings.train),
            min_ops: AtomicU64::new(settings.train_min_ops * settings.train_interval),
            live: AtomicBool::new(false),
        });
        PinnService {
            counters: SlotCounters::new(),
            sample_every: AtomicU32::new(settings.key_sample.max(1)),
            hot: Mutex::new(SpaceSaving::new(HOT_KEYS_PER_SHARD)),
            window: Arc::new(Mutex::new(Window::new(WINDOW))),
            settings: ArcSwap::from_pointee(settings),
            state: parking_lot::Mutex::new(State {
                t: 0,
                scratch: vec![0; SLOTS],
                observed: vec![0.0; SLOTS],
                idle_secs: u64::MAX / 2,
                scoreboard: Scoreboard::default(),
                forward_us: None,
                trigger: Trigger::default(),
                decisions: VecDeque::new(),
                next_decision: 1,
                local_last: (0, Vec::new()),
                hot_since: 0,
                hot_last: Vec::new(),
                forecasts: VecDeque::new(),
            }),
            trainer: OnceLock::new(),
            gate,
            server: parking_lot::Mutex::new(None),
            started: AtomicBool::new(false),
            exchange: parking_lot::Mutex::new(Exchange::default()),
        }
    }

    /// Counts one keyed command on `slot` (relaxed atomic adds; no lock, no allocation).
    #[inline]
    pub fn record(&self, slot: u16, write: bool, bytes: usize) {
        let kind = if write { OpKind::Write } else { OpKind::Read };
        self.counters.record(slot, kind, bytes as u64);
    }

    /// Offers one in `pinn-key-sample` keys (per thread) to the heavy-hitters sketch; never
    /// waits for the sketch's lock.
    #[inline]
    pub fn record_key(&self, key: &[u8]) {
        let every = self.sample_every.load(Ordering::Relaxed);
        let take = KEY_TICK.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(if n >= every { 0 } else { n });
            n >= every
        });
        if take {
            if let Ok(mut hot) = self.hot.try_lock() {
                hot.offer(key, every as u64);
            }
        }
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// Replaces the settings (the trainer picks up its part at its next round).
    pub fn apply(&self, s: Settings) {
        let old = self.settings.load_full();
        if *old == s {
            return;
        }
        self.gate
            .open
            .store(s.enabled && s.train, Ordering::Relaxed);
        self.gate
            .min_ops
            .store(s.train_min_ops * s.train_interval, Ordering::Relaxed);
        self.sample_every
            .store(s.key_sample.max(1), Ordering::Relaxed);
        if old.train_config() != s.train_config() {
            if let Some(t) = self.trainer.get().and_then(Option::as_ref) {
                if let Err(e) = t.reconfigure(s.train_config()) {
                    tracing::warn!("PINN: reconfiguring the trainer: {e}");
                }
            }
        }
        tracing::info!("PINN settings: {s:?}");
        self.settings.store(Arc::new(s));
    }

    /// Reads the `pinn-*` parameters of the attached server's configuration.
    pub fn refresh(&self) {
        let server = self.server.lock().as_ref().and_then(Weak::upgrade);
        if let Some(server) = server {
            self.apply(Settings::from_config(&server.config));
        }
    }

    /// Follows `server`'s configuration from now on (read every second).
    pub fn attach(&self, server: &Arc<Server>) {
        *self.server.lock() = Some(Arc::downgrade(server));
        self.refresh();
    }

    /// Starts the once-a-second tick thread (once; later calls do nothing).
    pub fn start(&'static self) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("pinn-tick".into())
            .spawn(move || loop {
                // Wake just after each whole second so rows line up with wall-clock seconds.
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let into = now.subsec_nanos() as u64;
                std::thread::sleep(Duration::from_nanos(1_000_000_000 - into + 1_000_000));
                let t = unix_now().saturating_sub(1);
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.tick(t)));
                if r.is_err() {
                    tracing::error!("PINN tick panicked; telemetry continues next second");
                }
            });
        match spawned {
            Ok(_) => self.gate.live.store(true, Ordering::Relaxed),
            Err(e) => {
                tracing::error!("PINN: cannot start the tick thread: {e}");
                self.started.store(false, Ordering::SeqCst);
            }
        }
    }

    /// The trainer, started on first use (None if its thread could not start).
    pub fn trainer(&self) -> Option<&Trainer> {
        self.trainer
            .get_or_init(|| {
                let gate = self.gate.clone();
                let opts = TrainerOptions {
                    gate: Some(Arc::new(move || {
                        let ops = gate.ops.swap(0, Ordering::Relaxed);
                        gate.open.load(Ordering::Relaxed)
                            && gate.live.load(Ordering::Relaxed)
                            && ops >= gate.min_ops.load(Ordering::Relaxed).max(1)
                    })),
                    nice: TRAINER_NICE,
                    sched_idle: false,
                };
                let cfg = self.settings().train_config();
                match Trainer::spawn_with(self.window.clone(), cfg, opts) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        tracing::error!("PINN: cannot start the trainer: {e}");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// The model being served, if a round was accepted.
    pub fn forecaster(&self) -> Option<Arc<Forecaster>> {
        self.trainer.get().and_then(Option::as_ref)?.forecaster()
    }

    /// Runs a training round now on the current window (blocks until it ends).
    pub fn train_now(&self) -> Result<RoundReport, String> {
        let t = self
            .trainer()
            .ok_or_else(|| "the trainer could not start".to_string())?;
        t.train_now().map_err(|e| e.to_string())
    }

    /// Recent rounds (oldest first) and the accepted / rejected totals.
    pub fn rounds(&self) -> (Vec<RoundReport>, u64, u64) {
        self.trainer
            .get()
            .and_then(Option::as_ref)
            .map(Trainer::history)
            .unwrap_or_default()
    }

    /// The once-a-second step for second `t`: fold, score, forecast, plan.
    pub fn tick(&self, t: u64) {
        self.tick_after(t, mover::mover().as_deref(), PULL_DELAY);
    }

    /// [`tick`](Self::tick) moving slots through `mover` (the installed one in production).
    pub fn tick_with(&self, t: u64, mover: Option<&dyn SlotMover>) {
        self.tick_after(t, mover, Duration::ZERO);
    }

    /// Folds this node's second, pulls the other leaders' `pull_delay` later, then merges,
    /// forecasts and plans.
    fn tick_after(&self, t: u64, mover: Option<&dyn SlotMover>, pull_delay: Duration) {
        self.refresh();
        let s = self.settings();
        let row = {
            let mut st = self.state.lock();
            self.fold_local(&mut st, t, &s)
        };
        if let Some(m) = mover {
            if m.shards().iter().any(|sh| !sh.local_leader) {
                std::thread::sleep(pull_delay);
            }
            self.pull_peers(m);
        }
        let plan = {
            let mut st = self.state.lock();
            self.fold(&mut st, t, &s, mover, row)
        };
        if let (Some((plan, decision)), Some(mover)) = (plan, mover) {
            self.start_move(mover, plan, decision);
        }
    }

    /// Folds this node's counters of second `t` (exported by `PINN.HEAT` from now on).
    fn fold_local(&self, st: &mut State, t: u64, s: &Settings) -> Row {
        let row = self.counters.fold_slots(t, s.buckets, &mut st.scratch);
        let local: Vec<(u16, u32)> = st
            .scratch
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(slot, &c)| (slot as u16, c.min(u32::MAX as u64) as u32))
            .collect();
        st.local_last = (t, local);
        row
    }

    /// Merges the other leaders' counts into this node's `row` of second `t`, pushes it into
    /// the window and runs the forecasts and the planner; returns a move to start once the
    /// state lock is released.
    fn fold(
        &self,
        st: &mut State,
        t: u64,
        s: &Settings,
        mover: Option<&dyn SlotMover>,
        mut row: Row,
    ) -> Option<(Plan, Decision)> {
        let total: u64 = row.reads.iter().chain(&row.writes).sum();
        // The other leaders' last second joins ours: the window is the cluster's heat.
        let mut remote_total = 0u64;
        self.exchange.lock().merge(|slot, c| {
            if let Some(x) = st.scratch.get_mut(slot as usize) {
                *x += c as u64;
                row.reads[bucket_of(slot, s.buckets.clamp(1, SLOTS))] += c as u64;
                remote_total += c as u64;
            }
        });
        let total_seen = total + remote_total;
        self.gate.ops.fetch_add(total, Ordering::Relaxed);
        st.idle_secs = if total_seen == 0 { st.idle_secs + 1 } else { 0 };
        if st.idle_secs <= 30 {
            for (o, &c) in st.observed.iter_mut().zip(st.scratch.iter()) {
                *o += SMOOTHING * (c as f32 - *o);
            }
        } else if st.idle_secs == 31 {
            st.observed.iter_mut().for_each(|o| *o = 0.0);
        }
        let heat = row.heat();
        if let Ok(mut w) = self.window.lock() {
            w.push(row);
        }
        st.t = t;
        self.rotate_hot_keys(st, t);
        if !s.enabled || st.idle_secs > WINDOW as u64 {
            return None;
        }
        st.scoreboard.observe(t, &heat);
        for d in st.decisions.iter_mut() {
            if d.observed_later.is_none() && d.target_t <= t {
                d.observed_later = Some(range_heat(&d.from_slots, &st.observed));
            }
        }
        let series = self.series()?;
        let forecaster = self.forecaster();
        let (models, fwd) = bucket_forecasts(&series, forecaster.as_deref(), s.horizon);
        if fwd.is_some() {
            st.forward_us = fwd;
        }
        for (m, f) in &models {
            st.scoreboard.submit(t + s.horizon, m, f.clone());
        }
        let selected = select(&st.scoreboard, &models);
        if let Some((m, f)) = selected
            .as_deref()
            .and_then(|m| models.iter().find(|(n, _)| n == m))
        {
            if st.forecasts.len() == FORECASTS_KEPT {
                st.forecasts.pop_front();
            }
            st.forecasts
                .push_back((t + s.horizon, m.clone(), f.clone()));
        }
        let planner: &dyn Planner = match s.planner {
            PlannerKind::Off => return None,
            PlannerKind::Pinn => &PinnPlanner,
            PlannerKind::Reactive => &ReactivePlanner,
        };
        let mover = mover?;
        let shards = mover.shards();
        let history = mover.migrations();
        let running = history.iter().filter(|m| in_flight(m)).count();
        let cooling = cooling_ranges(&history, (t + 1) * 1000, s.cooldown);
        let complete = {
            let ex = self.exchange.lock();
            shards.iter().all(|sh| {
                sh.local_leader
                    || sh
                        .leader_addr
                        .as_deref()
                        .is_some_and(|a| ex.is_current(a, t))
            })
        };
        if !complete {
            tracing::debug!("PINN: second {t}: a shard's heat is missing or stale; no decision");
        }
        let predicted = selected
            .as_deref()
            .and_then(|m| models.iter().find(|(n, _)| n == m))
            .map(|(_, f)| spread(f, &st.observed));
        let view = View {
            observed: &st.observed,
            predicted: predicted.as_deref(),
            complete,
            cooling: &cooling,
        };
        let plan = st.trigger.plan(t, planner, &view, &shards, s, running)?;
        let from_slots = shards[plan.from].slots.clone();
        let predictions = models
            .iter()
            .map(|(m, f)| (m.clone(), range_heat(&from_slots, &spread(f, &st.observed))))
            .collect();
        let decision = Decision {
            id: st.next_decision,
            t,
            planner: planner.name(),
            model: match s.planner {
                PlannerKind::Reactive => "observed".into(),
                _ => selected.unwrap_or_else(|| "observed".into()),
            },
            observed_now: range_heat(&from_slots, &st.observed),
            from_slots,
            predictions,
            target_t: t + s.horizon,
            observed_later: None,
            migration: None,
            error: None,
            plan: plan.clone(),
        };
        st.next_decision += 1;
        Some((plan, decision))
    }

    /// Pulls the last second of every other shard leader (their `PINN.HEAT`).
    fn pull_peers(&self, mover: &dyn SlotMover) {
        let mut peers: Vec<String> = mover
            .shards()
            .into_iter()
            .filter(|s| !s.local_leader)
            .filter_map(|s| s.leader_addr)
            .collect();
        peers.sort();
        peers.dedup();
        let password = self
            .server
            .lock()
            .as_ref()
            .and_then(Weak::upgrade)
            .and_then(|s| s.config.requirepass());
        self.exchange.lock().pull_all(&peers, password.as_deref());
    }

    /// `PINN.HEAT`'s payload: this node's own per-slot counts of the last folded second.
    pub fn export(&self) -> String {
        let st = self.state.lock();
        super::exchange::format(st.local_last.0, &st.local_last.1)
    }

    /// Stores another node's counts (what a pull does), for tests and other transports.
    pub fn ingest(&self, addr: &str, t: u64, slots: Vec<(u16, u32)>) {
        self.exchange.lock().ingest(addr, t, slots);
    }

    /// Starts a planned move through the mover and records the decision.
    fn start_move(&self, mover: &dyn SlotMover, plan: Plan, mut d: Decision) {
        match mover.start(plan.slots.clone(), MoveTarget::Shard(plan.to), d.planner) {
            Ok(id) => d.migration = Some(id),
            Err(e) => d.error = Some(e),
        }
        tracing::info!(
            planner = d.planner,
            model = %d.model,
            from = plan.from,
            to = plan.to,
            slots = ?plan.slots,
            heat_from = plan.heat_from,
            heat_to = plan.heat_to,
            moved = plan.moved,
            threshold = plan.threshold,
            observed_now = d.observed_now,
            predictions = ?d.predictions,
            migration = ?d.migration,
            error = ?d.error,
            "PINN decision {}",
            d.id
        );
        let mut st = self.state.lock();
        if st.decisions.len() == DECISIONS_KEPT {
            st.decisions.pop_front();
        }
        st.decisions.push_back(d);
    }

    /// Every `WINDOW` seconds the hot-key sketch starts afresh; the last period's top is kept.
    fn rotate_hot_keys(&self, st: &mut State, t: u64) {
        if t < st.hot_since + WINDOW as u64 {
            return;
        }
        st.hot_since = t;
        let led = mover::mover()
            .map(|m| m.shards().iter().filter(|s| s.local_leader).count())
            .unwrap_or(1)
            .max(1);
        if let Ok(mut hot) = self.hot.lock() {
            st.hot_last = hot.top(HOT_KEYS_PER_SHARD * led);
            *hot = SpaceSaving::new(HOT_KEYS_PER_SHARD * led);
        }
    }

    /// The window's heat rows.
    fn series(&self) -> Option<HeatSeries> {
        self.window.lock().ok().and_then(|w| w.heat())
    }

    /// The hottest keys: the current period's sketch, or the last period's when it is fuller.
    pub fn hot_keys(&self, n: usize) -> Vec<HeavyHitter> {
        let now = self.hot.lock().map(|h| h.top(n)).unwrap_or_default();
        let st = self.state.lock();
        if now.len() >= st.hot_last.len().min(n) {
            now
        } else {
            st.hot_last.iter().take(n).cloned().collect()
        }
    }

    /// Every model's forecast at `horizon` seconds past the last folded second.
    pub fn snapshot(&self, horizon: u64) -> Snapshot {
        let (t, observed, best) = {
            let st = self.state.lock();
            let best = st.scoreboard.best().map(|(m, _)| m.to_string());
            (st.t, st.observed.clone(), best)
        };
        let series = self.series();
        let rows = series.as_ref().map_or(0, |s| s.rows.len());
        let buckets = self.settings().buckets;
        let forecaster = self.forecaster();
        let models = match &series {
            Some(series) => bucket_forecasts(series, forecaster.as_deref(), horizon).0,
            None => Vec::new(),
        };
        let selected = best
            .filter(|b| models.iter().any(|(m, _)| m == b))
            .or_else(|| {
                models
                    .iter()
                    .any(|(m, _)| m == "persistence")
                    .then(|| "persistence".to_string())
            });
        let models = models
            .into_iter()
            .map(|(m, f)| {
                let per_slot = spread(&f, &observed);
                (m, per_slot)
            })
            .collect();
        Snapshot {
            t,
            horizon,
            buckets,
            rows,
            observed,
            models,
            selected,
        }
    }

    /// Every model's forecast error so far, the model with the lowest recent error, and the
    /// PINN's last forward time.
    pub fn scores(&self) -> Scores {
        let st = self.state.lock();
        let b = &st.scoreboard;
        let mut models: Vec<(String, f64, u64)> = b
            .models()
            .filter_map(|m| b.mse(m).map(|(e, n)| (m.to_string(), e, n)))
            .collect();
        models.sort_by(|a, b| a.0.cmp(&b.0));
        Scores {
            models,
            best: b.best().map(|(m, _)| m.to_string()),
            forward_us: st.forward_us,
        }
    }

    /// The planner's decisions, oldest first.
    pub fn decisions(&self) -> Vec<Decision> {
        self.state.lock().decisions.iter().cloned().collect()
    }

    /// Rows in the window and the last folded second.
    pub fn window_info(&self) -> (usize, u64) {
        let rows = self.window.lock().map_or(0, |w| w.len());
        (rows, self.state.lock().t)
    }

    /// The window's observed rows `(second, heat per bucket)` and the selected model's
    /// forecasts `(target second, model, heat per bucket)`, oldest first, for the dashboard.
    pub fn history(&self) -> (Vec<ObservedRow>, Vec<ForecastRow>) {
        let observed = self
            .window
            .lock()
            .map(|w| w.rows().map(|r| (r.t, r.heat())).collect())
            .unwrap_or_default();
        let forecasts = self.state.lock().forecasts.iter().cloned().collect();
        (observed, forecasts)
    }

    /// Slots cooling down after a move.
    pub fn cooling_slots(&self) -> usize {
        self.state.lock().trigger.cooling()
    }

    /// Seconds the planner skipped because a shard's heat was missing or stale.
    pub fn planner_skipped(&self) -> u64 {
        self.state.lock().trigger.skipped()
    }
}

/// The model the planner should follow: lowest recent error among those forecasting now,
/// persistence until anything was scored.
fn select(board: &Scoreboard, models: &[(String, Vec<f32>)]) -> Option<String> {
    let has = |m: &str| models.iter().any(|(n, _)| n == m);
    match board.best() {
        Some((m, _)) if has(m) => Some(m.to_string()),
        _ => has("persistence").then(|| "persistence".into()),
    }
}

/// Every model's forecast of each bucket at `horizon` seconds past the series' last row, and
/// the PINN's forward time in microseconds.
pub fn bucket_forecasts(
    series: &HeatSeries,
    forecaster: Option<&Forecaster>,
    horizon: u64,
) -> (Vec<(String, Vec<f32>)>, Option<f64>) {
    let buckets = series.buckets();
    let mut out = Vec::with_capacity(4);
    let mut fwd = None;
    if buckets == 0 || series.rows.is_empty() {
        return (out, fwd);
    }
    let last = series.t0 + series.rows.len() as u64 - 1;
    if let Some(f) = forecaster {
        let start = Instant::now();
        if let Ok(v) = f.forecast((last + horizon) as f64, buckets) {
            fwd = Some(start.elapsed().as_secs_f64() * 1e6);
            out.push((PINN_FIELD.to_string(), v));
        }
        // The last row plus the PINN's predicted change: persistence where the network sees
        // no motion, whatever its misfit of the current field (a hot-key storm's one-bucket
        // spike, which a smooth MLP under Burgers' cannot hold).
        if let Some(row) = series.rows.last() {
            if let Ok(v) = f.forecast_change(row, last as f64, (last + horizon) as f64) {
                out.push((PINN_CHANGE.to_string(), v));
            }
        }
    }
    let baselines: [&dyn Forecast; 3] = [&Persistence, &Ewma::default(), &LinearStencil::default()];
    for b in baselines {
        if let Ok(v) = b.forecast(series, horizon as usize) {
            out.push((b.name().to_string(), v));
        }
    }
    (out, fwd)
}

/// Spreads bucket forecasts over the slots of each bucket in proportion to the slots' observed
/// rates (evenly where a bucket saw nothing).
pub fn spread(bucket_values: &[f32], observed: &[f32]) -> Vec<f32> {
    let buckets = bucket_values.len().max(1);
    let mut sums = vec![0.0f64; buckets];
    let mut counts = vec![0u32; buckets];
    for s in 0..SLOTS {
        let b = bucket_of(s as u16, buckets);
        sums[b] += observed.get(s).copied().unwrap_or(0.0) as f64;
        counts[b] += 1;
    }
    (0..SLOTS)
        .map(|s| {
            let b = bucket_of(s as u16, buckets);
            let v = bucket_values.get(b).copied().unwrap_or(0.0) as f64;
            let share = if sums[b] > 0.0 {
                observed.get(s).copied().unwrap_or(0.0) as f64 / sums[b]
            } else {
                1.0 / counts[b].max(1) as f64
            };
            (v * share) as f32
        })
        .collect()
}

/// The shards as commands show them: the mover's, or this node alone owning every slot.
pub fn shards(server: &Server) -> Vec<ShardInfo> {
    if let Some(m) = mover::mover() {
        return m.shards();
    }
    let port = server.config.get("port").unwrap_or_else(|| "6379".into());
    let bind = server.config.get("bind").unwrap_or_default();
    let host = match bind
        .split_whitespace()
        .next()
        .map(|h| h.trim_start_matches('-'))
    {
        None | Some("*") | Some("0.0.0.0") => "127.0.0.1".to_string(),
        Some(h) => h.to_string(),
    };
    vec![ShardInfo {
        index: 0,
        id: server.shard_id.clone(),
        slots: vec![(0, (SLOTS - 1) as u16)],
        leader_node: Some(server.node_id.clone()),
        leader_addr: Some(format!("{host}:{port}")),
        local_leader: true,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pinn::MigrationRecord;

    fn load(svc: &PinnService, t: u64, hot: &[(u16, u32)]) {
        for &(slot, n) in hot {
            for _ in 0..n {
                svc.record(slot, n % 2 == 0, 10);
            }
        }
        svc.tick(t);
    }

    #[test]
    fn ticks_fold_counters_into_the_window_and_observed_rates() {
        let svc = PinnService::new(Settings::default());
        load(&svc, 100, &[(0, 10), (16383, 4)]);
        let (rows, t) = svc.window_info();
        assert_eq!((rows, t), (1, 100));
        let snap = svc.snapshot(10);
        assert_eq!(snap.observed[0], 5.0, "half-weight smoothing from zero");
        assert_eq!(snap.observed[16383], 2.0);
        assert_eq!(snap.selected.as_deref(), Some("persistence"));
        let p = snap.predicted().expect("persistence forecasts");
        assert_eq!(p[0], 10.0, "bucket 0's heat sits in slot 0");
        for k in 1..20 {
            load(&svc, 100 + k, &[(0, 10), (16383, 4)]);
        }
        let Scores {
            models: scores,
            best,
            ..
        } = svc.scores();
        let names: Vec<&str> = scores.iter().map(|s| s.0.as_str()).collect();
        assert!(
            names.contains(&"persistence") && names.contains(&"ewma"),
            "{names:?}"
        );
        assert!(best.is_some());
        let snap = svc.snapshot(5);
        assert!(
            snap.model("linear").is_some(),
            "enough rows for the stencil"
        );
    }

    #[test]
    fn disabled_service_still_counts_but_does_not_forecast() {
        let svc = PinnService::new(Settings {
            enabled: false,
            ..Settings::default()
        });
        for k in 0..12 {
            load(&svc, k, &[(7, 3)]);
        }
        assert!(svc.scores().models.is_empty());
        assert_eq!(svc.window_info().0, 12);
    }

    #[test]
    fn sampled_keys_reach_the_sketch() {
        let svc = PinnService::new(Settings {
            key_sample: 2,
            ..Settings::default()
        });
        for _ in 0..100 {
            svc.record_key(b"hot");
        }
        svc.record_key(b"cold");
        let top = svc.hot_keys(5);
        assert_eq!(top[0].key, b"hot".to_vec());
        assert_eq!(
            top[0].count, 100,
            "each sampled offer weighs the sampling rate"
        );
    }

    /// Records what the planner asks for; stands in for the Raft layer's mover, which is
    /// tested with the cluster.
    struct Recorder {
        started: parking_lot::Mutex<Vec<MigrationRecord>>,
        /// Address of shard 0's leader when another node leads it.
        remote_zero: Option<String>,
    }

    impl SlotMover for Recorder {
        fn shards(&self) -> Vec<ShardInfo> {
            let moved: Vec<(u16, u16)> = self
                .started
                .lock()
                .iter()
                .flat_map(|m| m.slots.clone())
                .collect();
            let owned_by_1: Vec<(u16, u16)> = (8192..=16383u16)
                .filter(|s| !moved.iter().any(|&(a, b)| a <= *s && *s <= b))
                .map(|s| (s, s))
                .collect();
            let mut zero = vec![(0, 8191)];
            zero.extend(moved);
            [zero, owned_by_1]
                .into_iter()
                .enumerate()
                .map(|(index, slots)| {
                    let remote = self.remote_zero.clone().filter(|_| index == 0);
                    ShardInfo {
                        index,
                        id: format!("{index:040x}"),
                        slots,
                        leader_node: None,
                        local_leader: remote.is_none(),
                        leader_addr: remote,
                    }
                })
                .collect()
        }
        fn start(
            &self,
            slots: Vec<(u16, u16)>,
            to: MoveTarget,
            planner: &str,
        ) -> Result<u64, String> {
            let MoveTarget::Shard(to) = to else {
                return Err("by shard only".into());
            };
            let mut started = self.started.lock();
            let id = started.len() as u64 + 1;
            started.push(MigrationRecord {
                id,
                state: "done".into(),
                slots,
                from: 1,
                to,
                keys: 0,
                bytes: 0,
                started_ms: 0,
                duration_ms: Some(1),
                planner: planner.into(),
                error: None,
            });
            Ok(id)
        }
        fn wait(&self, id: u64, _: Duration) -> Result<MigrationRecord, String> {
            self.started
                .lock()
                .iter()
                .find(|m| m.id == id)
                .cloned()
                .ok_or_else(|| "no such migration".into())
        }
        fn migrations(&self) -> Vec<MigrationRecord> {
            self.started.lock().clone()
        }
    }

    #[test]
    fn the_reactive_planner_moves_a_hot_slot_and_scores_it_later() {
        let svc = PinnService::new(Settings {
            planner: PlannerKind::Reactive,
            horizon: 3,
            ..Settings::default()
        });
        let mover = Recorder {
            started: parking_lot::Mutex::new(Vec::new()),
            remote_zero: None,
        };
        // Shard 1 (slots 8192-16383) serves two hot slots; shard 0 a little background.
        for k in 0..8u64 {
            for &(slot, n) in &[(9000u16, 300u32), (9001, 200), (100, 20), (12000, 10)] {
                for _ in 0..n {
                    svc.record(slot, false, 8);
                }
            }
            svc.tick_with(1000 + k, Some(&mover));
        }
        let moves = mover.migrations();
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!(
            moves[0].slots,
            vec![(9000, 9000)],
            "the hottest slot that fits"
        );
        assert_eq!((moves[0].to, moves[0].planner.as_str()), (0, "reactive"));
        let d = &svc.decisions()[0];
        assert_eq!(d.migration, Some(1));
        assert_eq!(d.model, "observed");
        assert!(d.plan.heat_from > d.plan.threshold, "{d:?}");
        assert!(d.observed_later.is_some(), "scored {} s later", 3);
        assert!(d.predictions.iter().any(|(m, _)| m == "persistence"));
    }

    #[test]
    fn no_move_while_another_leaders_counts_are_missing() {
        let svc = PinnService::new(Settings {
            planner: PlannerKind::Reactive,
            ..Settings::default()
        });
        // Shard 0 is led by a node nobody listens for (its pulls fail at once).
        let peer = "127.0.0.1:1".to_string();
        let mover = Recorder {
            started: parking_lot::Mutex::new(Vec::new()),
            remote_zero: Some(peer.clone()),
        };
        let hot = |svc: &PinnService| {
            for &(slot, n) in &[(9000u16, 300u32), (9001, 200), (12000, 10)] {
                for _ in 0..n {
                    svc.record(slot, false, 8);
                }
            }
        };
        for k in 0..10u64 {
            hot(&svc);
            svc.tick_with(1000 + k, Some(&mover));
        }
        assert!(mover.migrations().is_empty(), "shard 0's heat is unknown");
        // A report two seconds old is stale too.
        for k in 10..16u64 {
            svc.ingest(&peer, 1000 + k - 2, vec![(100, 20)]);
            hot(&svc);
            svc.tick_with(1000 + k, Some(&mover));
        }
        assert!(mover.migrations().is_empty(), "shard 0's heat is stale");
        // Current reports: after the settle and confirmation seconds, shard 1's leader moves.
        for k in 16..30u64 {
            svc.ingest(&peer, 1000 + k - 1, vec![(100, 20)]);
            hot(&svc);
            svc.tick_with(1000 + k, Some(&mover));
            if !mover.migrations().is_empty() {
                break;
            }
        }
        let moves = mover.migrations();
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!(
            (moves[0].to, moves[0].slots.clone()),
            (0, vec![(9000, 9000)])
        );
    }

    #[test]
    fn remote_counts_join_the_window_but_are_not_exported_again() {
        let a = PinnService::new(Settings::default());
        let b = PinnService::new(Settings::default());
        load(&a, 50, &[(7, 4), (9000, 2)]);
        assert_eq!(a.export(), "50 7:4 9000:2");
        let (t, slots) = super::super::exchange::parse(&a.export()).expect("payload");
        b.ingest("127.0.0.1:7001", t, slots);
        load(&b, 51, &[(7, 1)]);
        assert_eq!(b.export(), "51 7:1", "only b's own traffic is exported");
        let (rows, _) = b.history();
        assert_eq!(
            rows.last().map(|r| r.1[0]),
            Some(5.0),
            "bucket 0: 1 local + 4 remote"
        );
        assert_eq!(
            rows.last().map(|r| r.1[35]),
            Some(2.0),
            "slot 9000's bucket"
        );
    }

    #[test]
    fn spread_follows_observed_shares() {
        let mut obs = vec![0.0f32; SLOTS];
        obs[1] = 3.0;
        obs[2] = 1.0;
        let v = spread(&[8.0, 2.0], &obs);
        assert_eq!((v[1], v[2], v[0]), (6.0, 2.0, 0.0));
        let upper: f32 = v[8192..].iter().sum();
        assert!(
            (upper - 2.0).abs() < 1e-3,
            "an unseen bucket is spread evenly"
        );
    }

    #[test]
    fn the_gate_trains_only_a_live_busy_node() {
        let quiet = Settings {
            train_interval: 1,
            train_min_ops: 1000,
            train_steps: 1,
            ..Settings::default()
        };
        let svc = PinnService::new(quiet.clone());
        let trainer = svc.trainer().expect("trainer starts");
        for k in 0..6 {
            load(&svc, k, &[(1, 5), (9000, 2000)]);
        }
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            trainer.last_report().is_none(),
            "no tick thread: no timed round"
        );
        svc.gate.live.store(true, Ordering::Relaxed);
        for k in 6..9 {
            load(&svc, k, &[(1, 5)]);
        }
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            trainer.last_report().is_none(),
            "5 ops/s is below the minimum"
        );
        svc.apply(Settings {
            train_min_ops: 1,
            ..quiet
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while trainer.last_report().is_none() && Instant::now() < deadline {
            load(&svc, 100, &[(1, 5)]);
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(trainer.last_report().is_some(), "a busy live node trains");
    }
}
