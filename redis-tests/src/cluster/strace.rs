//! Syscall fault injection on a running node with `strace -p` (reliability.md §2: fsync EIO,
//! slow fsync, ENOSPC on one file, on the unmodified binary).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Cluster;
use crate::Error;

/// How long attaching may take.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

/// A `strace` attached to a node; detached (strace SIGKILLed, the node keeps running) on drop.
pub struct Strace {
    child: Option<Child>,
    pid: u32,
}

impl Strace {
    /// Detaches: SIGKILL strace and reap it (a killed tracer detaches its tracees).
    pub fn detach(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM lets strace detach cleanly (a SIGKILLed tracer may leave a tracee
            // group-stopped); fall back to SIGKILL.
            // SAFETY: kill(2) on our own unreaped child.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The traced node's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// True while strace runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        self.detach();
    }
}

/// True when every thread of `pid` has a tracer.
fn all_traced(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for t in tasks.flatten() {
        any = true;
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let traced = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|v| v.trim() != "0");
        if !traced {
            return false;
        }
    }
    any
}

impl Cluster {
    /// Attaches `strace -f -qq -o /dev/null <args>` to node `i` (every thread) and returns once
    /// all its threads are traced. `args` are e.g.
    /// `["-P", seg, "-e", "trace=fdatasync", "-e", "inject=fdatasync:error=EIO:when=3"]`.
    pub fn strace(&self, i: usize, args: &[&str]) -> Result<Strace, Error> {
        if crate::tools::which("strace").is_none() {
            return Err(Error::ToolMissing("strace (apt-get install strace)".into()));
        }
        let pid = self
            .pid(i)
            .ok_or_else(|| Error::Start(format!("node{i} is not running")))?;
        let log = self.root().map_or_else(
            || Path::new("/dev/null").to_path_buf(),
            |r| r.join(format!("strace{i}.log")),
        );
        let child = Command::new("strace")
            .args(["-f", "-qq", "-o"])
            .arg(&log)
            .args(args)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut s = Strace {
            child: Some(child),
            pid,
        };
        let deadline = Instant::now() + ATTACH_TIMEOUT;
        while !all_traced(pid) {
            if !s.is_running() || Instant::now() > deadline {
                s.detach();
                return Err(Error::Start(format!(
                    "strace did not attach to node{i} ({pid})"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(s)
    }
}
