//! Leveled compaction: a pure controller (`controller`) that picks tasks and applies their
//! results to a file-set description, and the executor (`run`) that merges tables.

pub mod controller;
pub(crate) mod run;

pub use crate::sstable::FileMeta;
pub use controller::{
    apply, pick, pick_manual, pick_manual_in_place, CompactionTask, ControllerOptions, LevelsState,
};
