//! The background trainer: one thread that runs [`TrainState::round`] every interval (or on
//! request) on a copy of the telemetry window and publishes each accepted model by an atomic
//! pointer swap, at a lowered scheduling priority so serving threads win the CPU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use arc_swap::ArcSwapOption;

use super::{Forecaster, RoundReport, TrainConfig, TrainState};
use crate::error::{PinnError, Result};
use crate::telemetry::Window;

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
    // Boxed: a config is far larger than the other messages.
    Configure(Box<TrainConfig>),
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
                            let _ = state.set_config(*cfg);
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
            .send(Msg::Configure(Box::new(cfg)))
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
    use crate::trainer::tests::{small_cfg, wave};
    use std::time::Duration;

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
