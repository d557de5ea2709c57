//! Pinnacle's predictive rebalancing: per-slot traffic telemetry, a physics-informed neural
//! network (viscous Burgers' equation) that forecasts heat along the slot ring, its background
//! trainer, and the baselines it is always measured against. See ARCHITECTURE.md, "PINN".

pub mod telemetry;
pub mod trainer;

pub use telemetry::{
    HeatSeries, HeavyHitter, OpKind, Row, SlotCounters, SpaceSaving, Window, DEFAULT_BUCKETS,
    DEFAULT_WINDOW, SLOTS,
};

pub mod error;
pub mod loss;
pub mod model;

pub use error::{PinnError, Result};
