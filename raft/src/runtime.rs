//! The Raft runtime: a tokio runtime of its own for the cluster bus and every group's Raft
//! tasks, so that heartbeats, votes and appends are never queued behind client work.
//!
//! On one shared runtime a follower's heartbeat answer waited for a worker busy with pipelined
//! client batches; under load that delay passed the 225-300 ms election timeout and leaders
//! were deposed while healthy (terms 13-19 in one `redis-benchmark --cluster` run, see the
//! issue notes). Separate worker threads are scheduled by the kernel beside the client
//! workers, and they ask for a higher priority (best effort: it needs `CAP_SYS_NICE`).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Nice value asked for the Raft threads (the default is 0; lower runs first).
pub const RAFT_NICE: i32 = -5;

/// Builds the Raft runtime with `threads` worker threads named `raft`.
pub fn build(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("raft")
        .on_thread_start(|| raise_priority(RAFT_NICE))
        .enable_all()
        .build()
}

/// Asks the kernel to run the calling thread at `nice`; refused without privileges, which is
/// logged once and otherwise ignored (the threads still run apart from the client's).
fn raise_priority(nice: i32) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread's own id; no memory is passed.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice)
        };
        if rc != 0 && !WARNED.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "raft threads run at the default priority (setpriority {nice}: {})",
                io::Error::last_os_error()
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (nice, &WARNED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_tasks_on_named_threads() {
        let rt = build(1).expect("runtime");
        let name = rt.block_on(async {
            tokio::spawn(async { std::thread::current().name().map(str::to_owned) })
                .await
                .expect("task")
        });
        assert_eq!(name.as_deref(), Some("raft"));
    }
}
