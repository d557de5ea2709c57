//! Faults a [`Cluster`] injects: SIGKILL / restart, SIGSTOP / SIGCONT, and bus partitions
//! through the per-node proxies.

use super::Cluster;
use crate::proxy::{Mode, Proxy};
use crate::Error;

impl Cluster {
    /// SIGKILL node `i` and reap it; its data directory stays.
    pub fn kill9(&mut self, i: usize) -> Result<(), Error> {
        let n = self.node_mut(i);
        n.paused = false;
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            c.wait()?;
        }
        Ok(())
    }

    /// True when node `i` was started and has exited without the harness killing it (its
    /// status is left for `kill9`/`restart` to reap).
    pub fn has_exited(&mut self, i: usize) -> bool {
        self.node_mut(i)
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// SIGKILL every node.
    pub fn kill_all(&mut self) -> Result<(), Error> {
        for i in self.ids() {
            self.kill9(i)?;
        }
        Ok(())
    }

    /// Starts node `i` again with the same arguments, ports and directory (SIGKILLs it first if
    /// it still runs) and waits until it answers PING.
    pub fn restart(&mut self, i: usize) -> Result<(), Error> {
        self.kill9(i)?;
        self.spawn(i)?;
        self.wait_ready(i)
    }

    /// Sets the extra environment node `i` gets from its next start on (empty: none).
    pub fn set_env(&mut self, i: usize, env: Vec<(String, String)>) {
        self.node_mut(i).env = env;
    }

    /// Restarts node `i` (SIGKILL first) with `env` added to its environment from now on,
    /// e.g. libfaketime's `LD_PRELOAD` + `FAKETIME` for clock faults.
    pub fn restart_with_env(&mut self, i: usize, env: Vec<(String, String)>) -> Result<(), Error> {
        self.set_env(i, env);
        self.restart(i)
    }

    /// True when node `i` starts with extra environment.
    pub fn has_env(&self, i: usize) -> bool {
        !self.node(i).env.is_empty()
    }

    /// SIGKILLs node `i`, deletes its data directory and starts it empty with `--cluster-join`
    /// (same id, address and ports), waiting for PING: the leader must `CLUSTER MEET` it.
    pub fn restart_wiped_joining(&mut self, i: usize) -> Result<(), Error> {
        self.kill9(i)?;
        let dir = self.node(i).dir.clone();
        std::fs::remove_dir_all(&dir)?;
        std::fs::create_dir_all(&dir)?;
        self.node_mut(i).join = true;
        self.spawn(i)?;
        self.wait_ready(i)
    }

    /// SIGKILLs node `i`, deletes its data directory and starts it again with its usual
    /// arguments (`--cluster-peers`, not `--cluster-join`): a voter that lost its disk and was
    /// restarted under its old id without `CLUSTER FORGET`. Waits for PING.
    pub fn restart_wiped(&mut self, i: usize) -> Result<(), Error> {
        self.kill9(i)?;
        let dir = self.node(i).dir.clone();
        std::fs::remove_dir_all(&dir)?;
        std::fs::create_dir_all(&dir)?;
        self.spawn(i)?;
        self.wait_ready(i)
    }

    /// The bus port other nodes reach node `i` on (its proxy's when there are proxies).
    pub fn announced_bus_port(&self, i: usize) -> u16 {
        self.proxies
            .get(i - 1)
            .map_or(self.node(i).bus_port, Proxy::port)
    }

    /// Starts every node that is not running (all spawned before any is waited for).
    pub fn restart_stopped(&mut self) -> Result<(), Error> {
        let down: Vec<usize> = self
            .ids()
            .into_iter()
            .filter(|&i| self.node(i).child.is_none())
            .collect();
        for &i in &down {
            self.spawn(i)?;
        }
        for &i in &down {
            self.wait_ready(i)?;
        }
        Ok(())
    }

    /// Pauses node `i` (SIGSTOP).
    pub fn sigstop(&mut self, i: usize) -> Result<(), Error> {
        self.signal(i, libc::SIGSTOP)?;
        self.node_mut(i).paused = true;
        Ok(())
    }

    /// Resumes node `i` (SIGCONT).
    pub fn sigcont(&mut self, i: usize) -> Result<(), Error> {
        self.signal(i, libc::SIGCONT)?;
        self.node_mut(i).paused = false;
        Ok(())
    }

    fn signal(&self, i: usize, sig: libc::c_int) -> Result<(), Error> {
        let pid = self
            .pid(i)
            .ok_or_else(|| Error::Start(format!("node{i} is not running")))?;
        // SAFETY: kill(2) on a pid we spawned and have not reaped yet (so it cannot be recycled).
        if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    fn proxies(&self) -> Result<&[Proxy], Error> {
        if self.proxies.is_empty() {
            return Err(Error::Start(
                "the cluster was started without proxies (ClusterBuilder::with_proxies)".into(),
            ));
        }
        Ok(&self.proxies)
    }

    /// Sets the mode of bus connections that node `from` opens to node `to` (both directions of
    /// those connections; connections `to` opens to `from` are unaffected).
    pub fn set_link(&self, from: usize, to: usize, mode: Mode) -> Result<(), Error> {
        let p = &self.proxies()?[to - 1];
        p.set_mode(self.ip(from), mode);
        Ok(())
    }

    /// Cuts every bus link between a node of `a` and a node of `b`, in both directions
    /// (blackhole: nothing arrives, connections stall).
    pub fn partition(&self, a: &[usize], b: &[usize]) -> Result<(), Error> {
        self.partition_with(a, b, Mode::Blackhole)
    }

    /// Like [`Cluster::partition`] with another mode (e.g. [`Mode::Drop`] for fast failures).
    pub fn partition_with(&self, a: &[usize], b: &[usize], mode: Mode) -> Result<(), Error> {
        for &x in a {
            for &y in b {
                self.set_link(x, y, mode)?;
                self.set_link(y, x, mode)?;
            }
        }
        Ok(())
    }

    /// Cuts node `i` off from every other node.
    pub fn isolate(&self, i: usize) -> Result<(), Error> {
        let others: Vec<usize> = self.ids().into_iter().filter(|&j| j != i).collect();
        self.partition(&[i], &others)
    }

    /// Restores every link.
    pub fn heal(&self) -> Result<(), Error> {
        for p in self.proxies()? {
            p.heal();
        }
        Ok(())
    }
}
