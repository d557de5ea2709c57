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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Reserves up to `cap` bytes; counts calls.
    struct Fake {
        cap: Option<u64>,
        calls: Arc<AtomicU64>,
    }

    impl Allocator for Fake {
        fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            match self.cap {
                None => Err(io::ErrorKind::Unsupported.into()),
                Some(cap) if offset + len > cap => Err(io::ErrorKind::StorageFull.into()),
                Some(_) => Ok(()),
            }
        }
    }

    fn with(cap: Option<u64>, step: u64) -> (Reservation, Arc<AtomicU64>) {
        let calls = Arc::new(AtomicU64::new(0));
        let alloc = Fake {
            cap,
            calls: calls.clone(),
        };
        let r = Reservation {
            alloc: Some(Box::new(alloc)),
            reserved: 0,
            step,
        };
        (r, calls)
    }

    #[test]
    fn reserves_in_steps_then_exactly_then_refuses() {
        let (mut r, calls) = with(Some(1500), 1024);
        r.ensure(100).unwrap();
        assert_eq!(r.reserved, 1024);
        r.ensure(1000).unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 1, "within the step: no call");
        // A whole step does not fit any more: exactly what is needed does.
        r.ensure(1100).unwrap();
        assert_eq!(r.reserved, 1100);
        let e = r.ensure(1600).unwrap_err();
        assert!(is_no_space(&e));
        assert_eq!(r.reserved, 1100, "a refused reservation changes nothing");
        // Retried by the next call.
        let before = calls.load(Ordering::Relaxed);
        assert!(r.ensure(1600).is_err());
        assert!(calls.load(Ordering::Relaxed) > before);
    }

    #[test]
    fn a_file_system_that_cannot_reserve_is_not_a_full_disk() {
        let (mut r, calls) = with(None, 1024);
        r.ensure(10).unwrap();
        r.ensure(1 << 30).unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 1, "gives up after one try");
    }

    #[test]
    fn real_files_reserve_without_growing() {
        use crate::vfs::{RealFs, Vfs};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut f = RealFs.create(&p).unwrap();
        let mut r = Reservation::for_file(&*f, 1 << 20);
        r.ensure(10).unwrap();
        f.append(b"0123456789").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 10, "KEEP_SIZE");
        if r.alloc.is_some() {
            use std::os::unix::fs::MetadataExt;
            // 512-byte blocks: the whole step is allocated.
            assert!(std::fs::metadata(&p).unwrap().blocks() * 512 >= 1 << 20);
        }
    }
}
