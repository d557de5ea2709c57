//! A full disk under the Raft log: which errors mean "no space", and reserving room ahead.
//!
//! A `write`/`fallocate` that fails with ENOSPC or EDQUOT leaves nothing the log relies on:
//! records are written at fixed offsets and only counted once written whole, so the writer
//! retries the same write once space returns instead of failing the store (openraft cannot
//! survive a failed append: it stops the group for good). Meanwhile the node refuses new
//! writes with Redis's `-MISCONF` reply ([`super::LogHealth::disk_full`]). Segments reserve
//! space ahead (`fallocate` with `FALLOC_FL_KEEP_SIZE`), so the store notices a full disk while
//! the entries already in flight still fit, and those become durable and are acknowledged as
//! usual. An fsync failure, whatever its errno, is not retried: the kernel may have dropped
//! the dirty pages (PostgreSQL's fsyncgate), so the store fails and the node fail-stops.
//!
//! Why wait rather than fail: openraft treats an error from `append` or its flush callback
//! as permanent (the group's core stops with a `StorageError`), so failing is fail-stop. A
//! held flush callback is simply not acknowledged: a full follower does not ack what it could
//! not store and the leader commits with the others; a full leader's entries commit once a
//! follower quorum stores them (openraft applies what the cluster committed). One limit:
//! openraft awaits `save_vote` inline, and a vote is ordered behind the appends queued before
//! it, so a node whose write is actually waiting (its reserve used up) stalls its Raft core if
//! it must vote; it then behaves like a paused node (the others elect) until space returns.
//! So does a replica whose apply waits for space (its LSM has no reserve left either: the
//! state machine's queue fills and openraft's core waits on it); seen on a full follower
//! under load in redis-tests/tests/disk_full_raft.rs, which then catches up.
//!
//! A full leader keeps leading and refuses writes until space returns (TiKV likewise rejects
//! proposals on a full store) instead of handing leadership over: it keeps serving reads,
//! which need a quorum round but no disk write, and while its reserve lasts it never stalls.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Room kept reserved past the end of the active segment, and the step it grows by: entries
/// in flight when the disk fills (a pipelined batch, a blank entry) must fit in it.
pub(crate) const RESERVE_STEP: u64 = 1 << 20;

/// How often a writer that found the disk full checks, while idle, whether space returned.
pub(crate) const PROBE_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// How long a write that found the disk full waits before trying again.
pub(crate) const RETRY_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// True for the errors of a full disk or quota (retryable writes), false for anything else.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Allocates `len` bytes of `file` from `offset` without changing its size (blocks past the
/// end stay reserved for later appends; recovery never sees them).
pub(crate) fn reserve(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "reservation out of range",
        ));
    };
    loop {
        // SAFETY: fallocate on an open descriptor we own; no memory is passed.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, off, len) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_full_disk_or_quota_is_no_space() {
        assert!(is_no_space(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_no_space(&io::Error::from_raw_os_error(libc::EDQUOT)));
        assert!(is_no_space(&io::ErrorKind::StorageFull.into()));
        assert!(is_no_space(&io::ErrorKind::QuotaExceeded.into()));
        // EIO (a failed fsync or a bad disk) and the rest fail the store.
        assert!(!is_no_space(&io::Error::from_raw_os_error(libc::EIO)));
        assert!(!is_no_space(&io::Error::from_raw_os_error(libc::EROFS)));
        assert!(!is_no_space(&io::Error::other("injected fsync failure")));
        assert!(!is_no_space(&io::ErrorKind::InvalidData.into()));
    }

    #[test]
    fn reserving_keeps_the_file_size() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("f")).unwrap();
        match reserve(&f, 0, 1 << 16) {
            Ok(()) => assert_eq!(f.metadata().unwrap().len(), 0),
            // A file system without fallocate: the writer then relies on write's ENOSPC.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{e}"),
        }
    }
}
