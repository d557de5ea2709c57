//! Pinnacle's predictive rebalancing: per-slot traffic telemetry, a physics-informed neural
//! network (viscous Burgers' equation) that forecasts heat along the slot ring, its background
//! trainer, and the baselines it is always measured against. See ARCHITECTURE.md, "PINN".

pub mod telemetry;
pub mod trainer;

pub use telemetry::{
    HeatSeries, HeavyHitter, OpKind, Row, SlotCounters, SpaceSaving, Window, DEFAULT_BUCKETS,
    DEFAULT_WINDOW, SLOTS,
};

pub mod baselines;
pub mod error;
pub mod eval;
pub mod loss;
pub mod model;
pub mod synth;

pub use error::{PinnError, Result};
