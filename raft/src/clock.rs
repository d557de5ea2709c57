//! The cluster's clock: how far this node's wall clock is from its peers', and the correction
//! that puts it on the median of the cluster's clocks.
//!
//! Key expiry is decided by the leader's time (stamped into each command and replicated), so a
//! leader whose clock runs ahead would expire keys early on every replica (T12 in the
//! reliability plan: a node restarted at ×2 rate or +5 s). Every cluster-bus request and
//! response carries its sender's wall-clock time; the receiver keeps, per peer, the recent
//! one-way samples `peer's send time − own receive time` (the true offset minus the transit
//! time, so the largest recent sample is the best estimate). The correction is the lower
//! median of `{0} ∪ {each peer's offset}`: a node alone, or with one peer, never moves its
//! clock ahead; with three or more, one wrong clock (this node's or a peer's) is outvoted.
//! Raft's safety never depends on it (reads use ReadIndex, elections their own timers).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::types::NodeId;

/// Samples older than this are not used: a drifting clock (×2) must be tracked closely.
const WINDOW_MS: i64 = 150;
/// A peer unheard of for this long no longer counts.
const STALE_MS: i64 = 3_000;
/// Samples kept per peer.
const KEEP: usize = 16;

/// Current wall-clock time in Unix milliseconds (this node's own clock, uncorrected).
pub fn own_wall_ms() -> i64 {
    unix_ms(SystemTime::now())
}

/// A reading of the wall clock in Unix milliseconds (0 before 1970).
fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One peer's recent samples: (own receive time, peer send time − own receive time).
#[derive(Default)]
struct Peer {
    samples: Vec<(i64, i64)>,
}

impl Peer {
    fn add(&mut self, at: i64, diff: i64) {
        if self.samples.len() >= KEEP {
            self.samples.remove(0);
        }
        self.samples.push((at, diff));
    }

    /// The offset estimate at `now`, if heard from recently.
    fn offset(&self, now: i64) -> Option<i64> {
        let &(last_at, last) = self.samples.last()?;
        if now - last_at > STALE_MS {
            return None;
        }
        let recent = self
            .samples
            .iter()
            .filter(|(at, _)| last_at - at <= WINDOW_MS)
            .map(|(_, d)| *d)
            .max();
        Some(recent.unwrap_or(last))
    }
}

/// Offsets to the peers this process hears from, and the resulting correction.
#[derive(Default)]
pub struct ClusterClock {
    peers: Mutex<HashMap<NodeId, Peer>>,
    correction: AtomicI64,
}

impl ClusterClock {
    /// Records that a frame `peer` stamped at `sent_ms` (its clock) arrived now.
    pub fn observe(&self, peer: NodeId, sent_ms: i64) {
        self.observe_at(peer, sent_ms, own_wall_ms());
    }

    fn observe_at(&self, peer: NodeId, sent_ms: i64, now: i64) {
        let mut peers = self.peers.lock();
        peers.entry(peer).or_default().add(now, sent_ms - now);
        let mut offsets: Vec<i64> = std::iter::once(0)
            .chain(peers.values().filter_map(|p| p.offset(now)))
            .collect();
        drop(peers);
        offsets.sort_unstable();
        let median = offsets[(offsets.len() - 1) / 2];
        self.correction.store(median, Ordering::Release);
    }

    /// Milliseconds to add to this node's wall clock to get the cluster's time.
    pub fn correction_ms(&self) -> i64 {
        self.correction.load(Ordering::Acquire)
    }

    /// Each peer's current offset estimate (peer clock − own clock), for INFO.
    pub fn offsets(&self) -> Vec<(NodeId, i64)> {
        let now = own_wall_ms();
        let mut v: Vec<(NodeId, i64)> = self
            .peers
            .lock()
            .iter()
            .filter_map(|(id, p)| p.offset(now).map(|o| (*id, o)))
            .collect();
        v.sort_unstable();
        v
    }
}

/// The process's cluster clock (one per process, shared by every transport in it).
pub fn global() -> &'static ClusterClock {
    static CLOCK: OnceLock<ClusterClock> = OnceLock::new();
    CLOCK.get_or_init(ClusterClock::default)
}

/// The cluster's time in Unix milliseconds: this node's wall clock plus the correction.
pub fn cluster_wall_ms() -> u64 {
    cluster_ms_at(SystemTime::now())
}

/// The cluster's time at `t`, a reading of this node's wall clock (so a caller that needs the
/// reading for something else as well reads the clock once).
pub fn cluster_ms_at(t: SystemTime) -> u64 {
    (unix_ms(t) + global().correction_ms()).max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alone_or_with_one_peer_the_clock_never_moves_ahead() {
        let c = ClusterClock::default();
        assert_eq!(c.correction_ms(), 0);
        // One peer 5 s ahead: min(0, 5000) = 0.
        c.observe_at(2, 10_000 + 5_000, 10_000);
        assert_eq!(c.correction_ms(), 0);
        // One peer 5 s behind: this node may be the fast one; the lower median follows it.
        let c = ClusterClock::default();
        c.observe_at(2, 10_000 - 5_000, 10_000);
        assert_eq!(c.correction_ms(), -5_000);
    }

    #[test]
    fn a_fast_node_follows_the_majority_and_a_fast_peer_is_outvoted() {
        // This node runs 5 s ahead of two peers that agree.
        let c = ClusterClock::default();
        c.observe_at(2, 10_000 - 5_000 - 1, 10_000);
        c.observe_at(3, 10_000 - 5_000 - 2, 10_000);
        assert_eq!(c.correction_ms(), -5_001);
        // This node is right; one peer runs 5 s ahead, the other is right.
        let c = ClusterClock::default();
        c.observe_at(2, 15_000, 10_000);
        c.observe_at(3, 9_999, 10_000);
        assert_eq!(c.correction_ms(), 0);
    }

    #[test]
    fn the_smallest_transit_in_the_window_wins_and_old_samples_expire() {
        let c = ClusterClock::default();
        // Transit 30 ms, then 2 ms: the estimate is the larger sample (less transit).
        c.observe_at(2, 10_000 - 1_000 - 30, 10_000);
        c.observe_at(2, 10_050 - 1_000 - 2, 10_050);
        c.observe_at(3, 10_050 - 1_000, 10_050);
        assert_eq!(c.correction_ms(), -1_000);
        // A sample beyond the window no longer counts.
        c.observe_at(2, 10_400 - 1_200, 10_400);
        c.observe_at(3, 10_400 - 1_200, 10_400);
        assert_eq!(c.correction_ms(), -1_200);
        // A peer unheard of for longer than STALE_MS drops out: alone again.
        let c = ClusterClock::default();
        c.observe_at(2, 0, 10_000);
        c.observe_at(3, 20_000 - 7, 20_000);
        assert_eq!(c.correction_ms(), -7);
    }
}
