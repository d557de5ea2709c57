//! Disk-space reservation for append-only files (WAL segments, the manifest).
//!
//! A write(2) that runs out of space midway leaves a torn record, and after a failed append
//! the state of the file is only known up to its last good record. Reserving space ahead
//! (`fallocate` with `FALLOC_FL_KEEP_SIZE`) moves "no space" to a point where nothing was
//! written yet: the record is refused whole and the engine goes on (RocksDB preallocates its
//! WAL the same way). Each refused reservation is retried by the next write, so writes are
//! accepted again as soon as space returns.

use crate::error::is_no_space;
use crate::vfs::{Allocator, WritableFile};
use std::io;

/// The reserved extent of one append-only file.
pub(crate) struct Reservation {
    alloc: Option<Box<dyn Allocator>>,
    /// Bytes of the file, from offset 0, whose space is reserved.
    reserved: u64,
    /// Space is reserved in steps of this many bytes (the last step before a full disk may
    /// be smaller: exactly what the record needs).
    step: u64,
}

impl Reservation {
    /// Reservations for `file` in steps of `step` bytes (none if its file system cannot
    /// reserve).
    pub(crate) fn for_file(file: &dyn WritableFile, step: u64) -> Reservation {
        Reservation {
            alloc: file.allocator(),
            reserved: file.len(),
            step: step.max(1),
        }
    }

    /// No reservation: appends may run out of space (used before a file exists).
    pub(crate) fn none() -> Reservation {
        Reservation {
            alloc: None,
            reserved: 0,
            step: 1,
        }
    }

    /// Makes sure the file can grow to `end` bytes without running out of space. Errors are
    /// "no space" ones only: a file system that cannot reserve makes this a no-op (its appends
    /// keep their old failure mode), and so does any other reservation error.
    pub(crate) fn ensure(&mut self, end: u64) -> io::Result<()> {
        if end <= self.reserved {
            return Ok(());
        }
        let Some(alloc) = &self.alloc else {
            return Ok(());
        };
        let from = self.reserved;
        let stepped = end.div_ceil(self.step).saturating_mul(self.step);
        let mut res = alloc.allocate(from, stepped - from);
        if res.as_ref().is_err_and(is_no_space) && stepped > end {
            // Not a whole step left: take exactly what this record needs.
            res = alloc.allocate(from, end - from);
            if res.is_ok() {
                self.reserved = end;
                return Ok(());
            }
        }
        match res {
            Ok(()) => {
                self.reserved = stepped;
                Ok(())
            }
            Err(e) if is_no_space(&e) => Err(e),
            Err(e) => {
                // EOPNOTSUPP and the like: reserving is not possible here; stop trying.
                tracing::debug!(error = %e, "disk space reservation unavailable");
                self.alloc = None;
                Ok(())
            }
        }
    }
}
