//! Spawning node processes from one long-lived thread.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process. A test
//! that restarts a node from a short-lived nemesis thread would otherwise see that node killed as
//! soon as the thread ends, so every spawn goes through this thread, which lives as long as the
//! [`Cluster`](super::Cluster).

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;

use crate::Error;

type Request = (Command, mpsc::Sender<io::Result<Child>>);

/// Owner of the spawning thread.
pub(super) struct Spawner {
    // Mutex so the cluster can be shared between threads (`Sender` is not `Sync` on old toolchains).
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Spawner {
    pub(super) fn new() -> Result<Spawner, Error> {
        let (tx, rx) = mpsc::channel::<Request>();
        let thread = thread::Builder::new()
            .name("cluster-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })?;
        Ok(Spawner {
            tx: Mutex::new(Some(tx)),
            thread: Some(thread),
        })
    }

    /// Spawns `cmd` so that it is SIGKILLed if the harness dies without cleaning up.
    pub(super) fn spawn(&self, mut cmd: Command) -> Result<Child, Error> {
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (reply_tx, reply_rx) = mpsc::channel();
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|tx| tx.send((cmd, reply_tx)).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(Error::Start("spawner thread is gone".into()));
        }
        reply_rx
            .recv()
            .map_err(|_| Error::Start("spawner thread is gone".into()))?
            .map_err(Error::from)
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
