//! The PINN service's settings: the `pinn-*` parameters of `CONFIG GET/SET` (and of the config
//! file), read into one immutable snapshot the service swaps in whenever they change.

use crate::config::Config;
use pinnacle_pinn::{LossConfig, TrainConfig};
use std::time::Duration;

/// Which planner drives migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlannerKind {
    /// Acts on the forecast at now + horizon of the most accurate model lately.
    Pinn,
    /// Acts on the observed heat.
    Reactive,
    /// Never moves anything (telemetry and forecasts still run).
    Off,
}

impl PlannerKind {
    /// The name `pinn-planner` takes.
    pub fn name(self) -> &'static str {
        match self {
            PlannerKind::Pinn => "pinn",
            PlannerKind::Reactive => "reactive",
            PlannerKind::Off => "off",
        }
    }
}

/// Every PINN parameter (the full `CONFIG` names).
pub const PARAMS: &[&str] = &[
    "pinn-enabled",
    "pinn-train",
    "pinn-planner",
    "pinn-threshold",
    "pinn-min-heat",
    "pinn-hysteresis",
    "pinn-horizon",
    "pinn-train-interval",
    "pinn-train-steps",
    "pinn-train-min-ops",
    "pinn-nu",
    "pinn-lambda-r",
    "pinn-lambda-b",
    "pinn-lambda-i",
    "pinn-learn-velocity",
    "pinn-forced",
    "pinn-fourier",
    "pinn-max-migrations",
    "pinn-cooldown",
    "pinn-confirm",
    "pinn-key-sample",
    "pinn-buckets",
];

/// A snapshot of the PINN parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Forecasting, training and planning run at all (telemetry always counts).
    pub enabled: bool,
    /// The background trainer runs rounds.
    pub train: bool,
    /// The planner that moves slots.
    pub planner: PlannerKind,
    /// A shard is hot above `threshold` × the mean shard heat.
    pub threshold: f64,
    /// ... and above this many operations per second (an absolute floor).
    pub min_heat: f64,
    /// A destination must stay under `(1 − hysteresis)` × the threshold after a move.
    pub hysteresis: f64,
    /// Forecast horizon, seconds.
    pub horizon: u64,
    /// Seconds between training rounds.
    pub train_interval: u64,
    /// Adam steps per round.
    pub train_steps: usize,
    /// A timed round runs only if the node served at least this many operations per second
    /// on average since the last round (an idle node burns no CPU on training).
    pub train_min_ops: u64,
    /// Burgers' viscosity ν.
    pub nu: f64,
    /// Weight of the PDE residual.
    pub lambda_r: f64,
    /// Weight of the boundary condition.
    pub lambda_b: f64,
    /// Weight of the initial condition.
    pub lambda_i: f64,
    /// Train Burgers' velocity units `v = a + b·u` with the weights (off: the issue's residual).
    pub learn_velocity: bool,
    /// Forced Burgers': the residual gets a learned per-bin source `s(x)` (off: the issue's
    /// residual; see BENCHMARKS.md "Forced Burgers'" for why it is not the default).
    pub forced: bool,
    /// Fourier frequencies of the ring position fed to the network (0: the raw position; see
    /// BENCHMARKS.md "Fourier features"). Changing it restarts training from fresh weights,
    /// since the network's first layer changes shape.
    pub fourier: usize,
    /// Most migrations in flight at once.
    pub max_migrations: usize,
    /// Seconds a moved slot stays put.
    pub cooldown: u64,
    /// Consecutive seconds a shard must be hot before the planner acts.
    pub confirm: u32,
    /// One keyed command in this many offers its key to the heavy-hitters sketch.
    pub key_sample: u32,
    /// Buckets along the slot ring.
    pub buckets: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            train: true,
            planner: PlannerKind::Off,
            threshold: 1.5,
            min_heat: 100.0,
            hysteresis: 0.1,
            horizon: 10,
            train_interval: 5,
            train_steps: 200,
            train_min_ops: 1000,
            nu: 0.01,
            lambda_r: 1.0,
            lambda_b: 0.1,
            lambda_i: 10.0,
            learn_velocity: false,
            forced: false,
            fourier: 0,
            max_migrations: 1,
            cooldown: 60,
            confirm: 2,
            key_sample: 16,
            buckets: pinnacle_pinn::DEFAULT_BUCKETS,
        }
    }
}

impl Settings {
    /// The `pinn-*` values of `config` (a missing or unparsable one keeps its default).
    pub fn from_config(config: &Config) -> Settings {
        let d = Settings::default();
        let get = |n: &str| config.get(n);
        let flag = |n: &str, d: bool| get(n).map_or(d, |v| v == "yes");
        let num = |n: &str, d: f64| get(n).and_then(|v| v.parse().ok()).unwrap_or(d);
        let int = |n: &str, d: u64| get(n).and_then(|v| v.parse().ok()).unwrap_or(d);
        Settings {
            enabled: flag("pinn-enabled", d.enabled),
            train: flag("pinn-train", d.train),
            planner: match get("pinn-planner").as_deref() {
                Some("reactive") => PlannerKind::Reactive,
                Some("off") => PlannerKind::Off,
                Some("pinn") => PlannerKind::Pinn,
                _ => d.planner,
            },
            threshold: num("pinn-threshold", d.threshold),
            min_heat: num("pinn-min-heat", d.min_heat),
            hysteresis: num("pinn-hysteresis", d.hysteresis),
            horizon: int("pinn-horizon", d.horizon).max(1),
            train_interval: int("pinn-train-interval", d.train_interval).max(1),
            train_steps: int("pinn-train-steps", d.train_steps as u64).max(1) as usize,
            train_min_ops: int("pinn-train-min-ops", d.train_min_ops),
            nu: num("pinn-nu", d.nu),
            lambda_r: num("pinn-lambda-r", d.lambda_r),
            lambda_b: num("pinn-lambda-b", d.lambda_b),
            lambda_i: num("pinn-lambda-i", d.lambda_i),
            learn_velocity: flag("pinn-learn-velocity", d.learn_velocity),
            forced: flag("pinn-forced", d.forced),
            fourier: int("pinn-fourier", d.fourier as u64).min(64) as usize,
            max_migrations: int("pinn-max-migrations", d.max_migrations as u64).max(1) as usize,
            cooldown: int("pinn-cooldown", d.cooldown),
            confirm: int("pinn-confirm", d.confirm as u64).max(1) as u32,
            key_sample: int("pinn-key-sample", d.key_sample as u64).clamp(1, u32::MAX as u64)
                as u32,
            buckets: int("pinn-buckets", d.buckets as u64).clamp(4, 1024) as usize,
        }
    }

    /// The trainer configuration these settings ask for.
    pub fn train_config(&self) -> TrainConfig {
        let base = TrainConfig::default();
        TrainConfig {
            loss: LossConfig {
                nu: self.nu,
                lambda_r: self.lambda_r,
                lambda_b: self.lambda_b,
                lambda_i: self.lambda_i,
                forced: self.forced,
                fourier: self.fourier,
                ..base.loss.clone()
            },
            steps_per_round: self.train_steps,
            interval: Duration::from_secs(self.train_interval),
            horizon: self.horizon as f64,
            learn_velocity: self.learn_velocity,
            ..base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Settings as ConfigSettings};

    fn config(values: &[(&str, &str)]) -> Config {
        Config::new(&ConfigSettings {
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            config_file: None,
        })
        .expect("valid config")
    }

    #[test]
    fn defaults_match_the_parameter_table() {
        assert_eq!(Settings::from_config(&config(&[])), Settings::default());
        for name in PARAMS {
            assert!(
                config(&[]).get(name).is_some(),
                "{name} is a CONFIG parameter"
            );
        }
    }

    #[test]
    fn config_values_are_read() {
        let c = config(&[
            ("pinn-planner", "reactive"),
            ("pinn-threshold", "2.5"),
            ("pinn-nu", "0.05"),
            ("pinn-train", "no"),
            ("pinn-learn-velocity", "yes"),
            ("pinn-forced", "yes"),
            ("pinn-fourier", "4"),
        ]);
        let s = Settings::from_config(&c);
        assert!(s.train_config().learn_velocity);
        assert!(s.train_config().loss.forced);
        assert_eq!(s.fourier, 4);
        assert_eq!(s.train_config().loss.fourier, 4);
        assert_eq!(s.train_config().loss.input_map().fourier, 4);
        assert_eq!(s.planner, PlannerKind::Reactive);
        assert_eq!(s.threshold, 2.5);
        assert!(!s.train);
        assert_eq!(s.train_config().loss.nu, 0.05);
        assert!(c.set_many(&[("pinn-threshold", "0.5")]).is_err());
        assert!(c.set_many(&[("pinn-nu", "abc")]).is_err());
        assert!(c.set_many(&[("pinn-buckets", "32")]).is_err(), "immutable");
        assert!(c.set_many(&[("pinn-fourier", "65")]).is_err(), "0..64");
        assert!(c.set_many(&[("pinn-fourier", "-1")]).is_err(), "0..64");
        assert!(c.set_many(&[("pinn-fourier", "8")]).is_ok());
        assert_eq!(Settings::from_config(&c).train_config().loss.fourier, 8);
    }
}
