//! Engine errors.

use std::path::PathBuf;

/// Every way an engine operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Stored data failed a checksum or structural check.
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged record or block.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The disk is full: the write was refused before anything of it was stored or made
    /// visible, and the engine keeps running (a later write succeeds once space returns).
    #[error("no space left on device for {path}: {source}")]
    NoSpace {
        /// The file that could not grow.
        path: PathBuf,
        /// The OS error (`ENOSPC` or `EDQUOT`).
        #[source]
        source: std::io::Error,
    },
    /// An earlier fsync or write failed; the engine no longer accepts writes.
    #[error("engine stopped after a fatal error: {0}")]
    Stopped(String),
    /// The caller passed something the engine cannot store or do.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    /// Like [`Error::io`], but a full disk becomes [`Error::NoSpace`]. Only for failures
    /// that left nothing half-written (a refused reservation, a file removed again).
    pub fn io_or_no_space(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        if is_no_space(&source) {
            Error::NoSpace {
                path: path.into(),
                source,
            }
        } else {
            Error::io(path, source)
        }
    }
    /// True for [`Error::NoSpace`].
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::NoSpace { .. })
    }
    /// True for [`Error::NoSpace`] and for I/O errors saying the disk is full (which may
    /// have left a file half written: only for files that are discarded on failure).
    pub(crate) fn out_of_space(&self) -> bool {
        match self {
            Error::NoSpace { .. } => true,
            Error::Io { source, .. } => is_no_space(source),
            _ => false,
        }
    }
    /// A corruption error at `offset` of `path`.
    pub fn corruption(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

/// True when `e` says the disk (or the user's quota) is full.
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Result alias for engine operations.
pub type Result<T> = std::result::Result<T, Error>;
