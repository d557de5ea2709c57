//! The crate's error type.

/// Errors from the PINN crate.
#[derive(Debug, thiserror::Error)]
pub enum PinnError {
    /// A tensor operation failed.
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    /// Fitting a baseline failed.
    #[error("baseline fit: {0}")]
    Fit(String),
    /// The window holds too few rows for the requested operation.
    #[error("not enough data: need {need} rows, have {have}")]
    NotEnoughData {
        /// Rows needed.
        need: usize,
        /// Rows available.
        have: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid config: {0}")]
    Config(String),
}

/// Result with [`PinnError`].
pub type Result<T> = std::result::Result<T, PinnError>;
