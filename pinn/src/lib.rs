//! Pinnacle's predictive rebalancing: per-slot traffic telemetry, a physics-informed neural
//! network (viscous Burgers' equation) that forecasts heat along the slot ring, its background
//! trainer, and the baselines it is always measured against. See ARCHITECTURE.md, "PINN".
//!
//! Flow: `Telemetry::record` on every command → `Telemetry::tick` once a second → the
//! `Trainer` thread reads the window every interval and publishes a `Forecaster` → forecasts
//! and the `baselines` are scored by a `Scoreboard` once the future arrives.

#[cfg(test)]
mod autograd_reference;
pub mod baselines;
pub mod error;
pub mod eval;
#[cfg(test)]
mod forced_tests;
pub mod fourier;
pub mod fused;
mod fused_first;
pub mod loss;
pub mod model;
pub mod params;
pub mod synth;
pub mod telemetry;
pub mod trainer;

pub use baselines::{Ewma, Forecast, LinearStencil, Persistence};
pub use error::{PinnError, Result};
pub use eval::{Scoreboard, PINN_BUCKET, PINN_CHANGE, PINN_FIELD, PINN_SERVED};
pub use loss::{LossConfig, LossTerms};
pub use telemetry::{
    bucket_of, bucket_slots, HeatSeries, HeavyHitter, OpKind, Row, SlotCounters, SpaceSaving,
    Telemetry, Window, DEFAULT_BUCKETS, DEFAULT_WINDOW, SLOTS,
};
pub use trainer::{
    single_threaded_matmul, Forecaster, Gate, LrSchedule, RoundReport, TrainConfig, TrainState,
    Trainer, TrainerOptions,
};
