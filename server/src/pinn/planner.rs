//! The migration planners: which shard is hot, which of its slots move, and where to. Both
//! planners share the trigger (threshold relative to the mean shard heat, confirmation over
//! consecutive seconds, hysteresis on the destination, a per-slot cool-down); they differ only
//! in the heat they look at — the forecast at now + horizon, or what is observed now — so they
//! can be compared in the same benchmark.

use super::mover::{in_flight, MigrationRecord, ShardInfo};
use super::settings::Settings;
use std::collections::HashMap;

/// What the service knows when a planner runs: heat per slot in operations per second.
pub struct View<'a> {
    /// Observed heat of every slot (smoothed over the last seconds).
    pub observed: &'a [f32],
    /// Forecast heat of every slot at now + horizon (the most accurate model lately), if any.
    pub predicted: Option<&'a [f32]>,
    /// Every shard's heat of this second is in: each other shard's leader is known and its
    /// counts are at most a second old. A node missing a peer's seconds sees that peer's
    /// shard cooler than it is (and its own hotter), so the trigger acts only on complete views.
    pub complete: bool,
    /// Slots any node moved within the cool-down (from the replicated migration history), so
    /// the receiving shard's leader does not move them straight back or on.
    pub cooling: &'a [(u16, u16)],
}

/// Slots of `records` that are still cooling down at Unix millisecond `now_ms`: migrations in
/// flight, and those that ended (or started, if no end is known) under `cooldown_s` ago.
pub fn cooling_ranges(
    records: &[MigrationRecord],
    now_ms: u64,
    cooldown_s: u64,
) -> Vec<(u16, u16)> {
    records
        .iter()
        .filter(|m| {
            let ended = m.started_ms + m.duration_ms.unwrap_or(0);
            in_flight(m) || ended + cooldown_s * 1000 > now_ms
        })
        .flat_map(|m| m.slots.iter().copied())
        .collect()
}

fn in_ranges(ranges: &[(u16, u16)], s: u16) -> bool {
    ranges.iter().any(|&(a, b)| a <= s && s <= b)
}

/// A planner: chooses the per-slot heat the shared trigger acts on.
pub trait Planner: Send + Sync {
    /// `pinn` or `reactive` (shown in decisions and migration records).
    fn name(&self) -> &'static str;
    /// The heat of every slot this planner acts on.
    fn slot_heat<'a>(&self, view: &View<'a>) -> &'a [f32];
}

/// Acts on the forecast at now + horizon (observed heat until a forecast exists).
pub struct PinnPlanner;

impl Planner for PinnPlanner {
    fn name(&self) -> &'static str {
        "pinn"
    }
    fn slot_heat<'a>(&self, view: &View<'a>) -> &'a [f32] {
        view.predicted.unwrap_or(view.observed)
    }
}

/// Acts on the observed heat.
pub struct ReactivePlanner;

impl Planner for ReactivePlanner {
    fn name(&self) -> &'static str {
        "reactive"
    }
    fn slot_heat<'a>(&self, view: &View<'a>) -> &'a [f32] {
        view.observed
    }
}

/// Sum of `per_slot` over inclusive slot ranges.
pub fn range_heat(ranges: &[(u16, u16)], per_slot: &[f32]) -> f64 {
    ranges
        .iter()
        .flat_map(|&(a, b)| a as usize..=b as usize)
        .filter_map(|s| per_slot.get(s))
        .map(|&h| h as f64)
        .sum()
}

/// Sorted slots as inclusive ranges of consecutive slots.
pub fn to_ranges(slots: &[u16]) -> Vec<(u16, u16)> {
    let mut sorted = slots.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for s in sorted {
        match out.last_mut() {
            Some((_, last)) if *last as u32 + 1 == s as u32 => *last = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// One move the trigger chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Source shard index.
    pub from: usize,
    /// Destination shard index.
    pub to: usize,
    /// Slots to move, as inclusive ranges.
    pub slots: Vec<(u16, u16)>,
    /// The planner's heat of the source before the move.
    pub heat_from: f64,
    /// The planner's heat of the destination before the move.
    pub heat_to: f64,
    /// The planner's heat of the slots moved.
    pub moved: f64,
    /// The threshold in operations per second (`threshold` × mean).
    pub threshold: f64,
}

/// The trigger's memory between seconds: how long each shard has been hot, how long the
/// cluster-wide view has been complete, and which slots this node moved lately (the history
/// in [`View::cooling`] covers every node's moves once the metadata group has them).
#[derive(Debug, Default)]
pub struct Trigger {
    hot_for: HashMap<usize, u32>,
    cooling: HashMap<u16, u64>,
    complete_for: u64,
    skipped: u64,
}

/// Below this mean shard heat (operations per second) nothing is hot: no moves on an idle
/// cluster.
const MIN_MEAN: f64 = 1.0;
/// Consecutive complete seconds before the trigger counts heat again after a gap: the observed
/// rate is smoothed with weight ½ per second, so after 3 s a missing second weighs ≤ 1/8.
pub const SETTLE: u64 = 3;
/// Most slots one move takes.
const MAX_SLOTS: usize = 1024;

impl Trigger {
    /// Runs the trigger for second `t` with `in_flight` migrations running; returns the move to
    /// start, if any (at most one per second).
    pub fn plan(
        &mut self,
        t: u64,
        planner: &dyn Planner,
        view: &View<'_>,
        shards: &[ShardInfo],
        settings: &Settings,
        in_flight: usize,
    ) -> Option<Plan> {
        self.cooling.retain(|_, until| *until > t);
        let heat = planner.slot_heat(view);
        let n = shards.len();
        if n < 2 {
            self.hot_for.clear();
            return None;
        }
        if !view.complete {
            self.hot_for.clear();
            self.complete_for = 0;
            self.skipped += 1;
            return None;
        }
        self.complete_for += 1;
        if self.complete_for < SETTLE {
            self.hot_for.clear();
            return None;
        }
        let sh: Vec<f64> = shards.iter().map(|s| range_heat(&s.slots, heat)).collect();
        let mean = sh.iter().sum::<f64>() / n as f64;
        if mean < MIN_MEAN {
            self.hot_for.clear();
            return None;
        }
        let threshold = settings.threshold * mean;
        for (i, &h) in sh.iter().enumerate() {
            // Relative to the mean alone, a few ops/s on one shard of a quiet cluster is "hot".
            if h > threshold && h > settings.min_heat {
                *self.hot_for.entry(i).or_default() += 1;
            } else {
                self.hot_for.remove(&i);
            }
        }
        if in_flight >= settings.max_migrations {
            return None;
        }
        // Only a shard's leader moves its slots: every node runs the trigger on the same
        // cluster-wide heat, and exactly one of them acts for each hot shard.
        let mut hot: Vec<usize> = (0..n)
            .filter(|i| self.hot_for.get(i).is_some_and(|&c| c >= settings.confirm))
            .filter(|&i| shards[i].local_leader)
            .collect();
        hot.sort_by(|&a, &b| sh[b].total_cmp(&sh[a]));
        let calm = threshold * (1.0 - settings.hysteresis);
        for from in hot {
            let Some(to) = (0..n)
                .filter(|&j| j != from)
                .min_by(|&a, &b| sh[a].total_cmp(&sh[b]))
            else {
                continue;
            };
            // The destination must stay under the threshold (less the hysteresis margin).
            let room = calm - sh[to];
            let excess = sh[from] - calm;
            if room <= 0.0 || excess <= 0.0 {
                continue;
            }
            let mut slots: Vec<u16> = shards[from]
                .slots
                .iter()
                .flat_map(|&(a, b)| a..=b)
                // Slots carrying under 1 % of the excess are not worth a migration.
                .filter(|s| {
                    heat.get(*s as usize)
                        .is_some_and(|&h| h > 0.0 && h as f64 >= excess / 100.0)
                })
                .filter(|s| !self.cooling.contains_key(s) && !in_ranges(view.cooling, *s))
                .collect();
            slots.sort_by(|&a, &b| heat[b as usize].total_cmp(&heat[a as usize]));
            let (mut chosen, mut moved) = (Vec::new(), 0.0f64);
            for s in slots {
                let h = heat[s as usize] as f64;
                if moved + h > room {
                    continue; // too hot for the destination; a cooler slot may still fit
                }
                chosen.push(s);
                moved += h;
                if moved >= excess || chosen.len() >= MAX_SLOTS {
                    break;
                }
            }
            if chosen.is_empty() {
                continue;
            }
            for &s in &chosen {
                self.cooling.insert(s, t + settings.cooldown);
            }
            self.hot_for.remove(&from);
            return Some(Plan {
                from,
                to,
                slots: to_ranges(&chosen),
                heat_from: sh[from],
                heat_to: sh[to],
                moved,
                threshold,
            });
        }
        None
    }

    /// Slots cooling down after a move, with the second each becomes movable again.
    pub fn cooling(&self) -> usize {
        self.cooling.len()
    }

    /// Seconds skipped because the cluster-wide view was incomplete.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: usize, a: u16, b: u16) -> ShardInfo {
        ShardInfo {
            index,
            id: format!("{index:040x}"),
            slots: vec![(a, b)],
            leader_node: None,
            leader_addr: None,
            local_leader: true,
        }
    }

    fn three() -> Vec<ShardInfo> {
        vec![
            shard(0, 0, 5460),
            shard(1, 5461, 10922),
            shard(2, 10923, 16383),
        ]
    }

    fn uniform(v: f32) -> Vec<f32> {
        vec![v; 16384]
    }

    /// A trigger that has seen `SETTLE` complete, balanced seconds (up to second 99).
    fn settled() -> Trigger {
        let mut tr = Trigger::default();
        let obs = uniform(1.0);
        let view = View {
            observed: &obs,
            predicted: None,
            complete: true,
            cooling: &[],
        };
        for t in 100 - SETTLE..100 {
            assert_eq!(
                tr.plan(
                    t,
                    &ReactivePlanner,
                    &view,
                    &three(),
                    &Settings::default(),
                    0
                ),
                None
            );
        }
        tr
    }

    #[test]
    fn ranges_merge_consecutive_slots() {
        assert_eq!(
            to_ranges(&[5, 3, 4, 9, 16383, 10]),
            vec![(3, 5), (9, 10), (16383, 16383)]
        );
        assert_eq!(range_heat(&[(0, 1), (3, 3)], &[1.0, 2.0, 4.0, 8.0]), 11.0);
    }

    #[test]
    fn balanced_or_idle_clusters_do_not_move() {
        let mut tr = Trigger::default();
        let s = Settings::default();
        let obs = uniform(1.0);
        let view = View {
            observed: &obs,
            predicted: None,
            complete: true,
            cooling: &[],
        };
        for t in 0..5 {
            assert_eq!(tr.plan(t, &ReactivePlanner, &view, &three(), &s, 0), None);
        }
        let idle = uniform(0.0);
        let view = View {
            observed: &idle,
            predicted: None,
            complete: true,
            cooling: &[],
        };
        assert_eq!(tr.plan(9, &ReactivePlanner, &view, &three(), &s, 0), None);
        let one = vec![shard(0, 0, 16383)];
        assert_eq!(tr.plan(10, &ReactivePlanner, &view, &one, &s, 0), None);
    }

    #[test]
    fn a_hot_shard_moves_its_hottest_slots_after_confirmation() {
        let mut tr = settled();
        let s = Settings::default();
        let mut obs = uniform(0.01);
        // Shard 1 carries 300 ops/s in three slots; the others ~55 ops/s each.
        obs[6000] = 100.0;
        obs[6001] = 100.0;
        obs[7000] = 100.0;
        let view = View {
            observed: &obs,
            predicted: None,
            complete: true,
            cooling: &[],
        };
        assert_eq!(tr.plan(101, &ReactivePlanner, &view, &three(), &s, 0), None);
        let p = tr
            .plan(102, &ReactivePlanner, &view, &three(), &s, 0)
            .expect("second hot second moves");
        assert_eq!((p.from, p.to), (1, 0));
        assert_eq!(p.slots, vec![(6000, 6000)], "{p:?}");
        // The moved slot cools down; the in-flight limit holds further moves.
        assert_eq!(tr.plan(103, &ReactivePlanner, &view, &three(), &s, 1), None);
        let p2 = tr.plan(104, &ReactivePlanner, &view, &three(), &s, 0);
        assert!(p2.is_none_or(|p| !p.slots.contains(&(6000, 6000))));
    }

    #[test]
    fn the_pinn_planner_acts_on_the_forecast_first() {
        let s = Settings::default();
        let obs = uniform(1.0);
        let mut pred = uniform(1.0);
        for p in pred.iter_mut().skip(11000).take(100) {
            *p = 200.0;
        }
        let view = View {
            observed: &obs,
            predicted: Some(&pred),
            complete: true,
            cooling: &[],
        };
        let (mut a, mut b) = (settled(), settled());
        for t in 100..103 {
            assert_eq!(a.plan(t, &ReactivePlanner, &view, &three(), &s, 0), None);
        }
        let _ = b.plan(100, &PinnPlanner, &view, &three(), &s, 0);
        let p = b
            .plan(101, &PinnPlanner, &view, &three(), &s, 0)
            .expect("forecast hot spot moves");
        assert_eq!(p.from, 2);
        assert!(p.moved > 0.0 && p.heat_to + p.moved <= p.threshold);
    }

    #[test]
    fn only_the_hot_shards_leader_moves_it() {
        let s = Settings::default();
        let mut obs = uniform(0.01);
        obs[6000] = 100.0;
        obs[6001] = 100.0;
        let view = View {
            observed: &obs,
            predicted: None,
            complete: true,
            cooling: &[],
        };
        let mut remote = three();
        remote[1].local_leader = false;
        let mut tr = Trigger::default();
        for t in 0..5 {
            assert_eq!(tr.plan(t, &ReactivePlanner, &view, &remote, &s, 0), None);
        }
    }

    #[test]
    fn a_slot_too_hot_for_any_destination_stays() {
        let mut tr = Trigger::default();
        let s = Settings::default();
        let mut obs = uniform(0.0);
        obs[42] = 1000.0;
        let view = View {
            observed: &obs,
            predicted: None,
            complete: true,
            cooling: &[],
        };
        for t in 0..5 {
            assert_eq!(tr.plan(t, &ReactivePlanner, &view, &three(), &s, 0), None);
        }
    }

    /// Shard 1 carries `hot` ops/s spread over slots 6000-6005; the rest of the ring ~0.
    fn hot_view(obs: &mut Vec<f32>, hot: f32) {
        *obs = uniform(0.0001);
        for h in &mut obs[6000..6006] {
            *h = hot / 6.0;
        }
    }

    #[test]
    fn a_few_ops_on_a_quiet_cluster_are_not_hot() {
        let mut obs = Vec::new();
        // 6 ops/s on one shard is 3× the mean, but under the 100 ops/s floor.
        hot_view(&mut obs, 6.0);
        let view = View {
            observed: &obs,
            predicted: None,
            complete: true,
            cooling: &[],
        };
        let s = Settings::default();
        let mut tr = settled();
        for t in 100..110 {
            assert_eq!(tr.plan(t, &ReactivePlanner, &view, &three(), &s, 0), None);
        }
        // The floor is what holds it: without it the same view moves.
        let no_floor = Settings {
            min_heat: 0.0,
            ..Settings::default()
        };
        let mut tr = settled();
        let moved =
            (100..110).find_map(|t| tr.plan(t, &ReactivePlanner, &view, &three(), &no_floor, 0));
        assert!(moved.is_some_and(|p| p.from == 1));
    }

    #[test]
    fn no_decision_on_an_incomplete_view() {
        let s = Settings::default();
        let mut obs = Vec::new();
        hot_view(&mut obs, 600.0);
        let view = |complete| View {
            observed: &obs,
            predicted: None,
            complete,
            cooling: &[],
        };
        let mut tr = settled();
        for t in 100..110 {
            assert_eq!(
                tr.plan(t, &ReactivePlanner, &view(false), &three(), &s, 0),
                None
            );
        }
        assert_eq!(tr.skipped(), 10);
        // Complete again: SETTLE seconds to let the smoothed rates recover, then the usual
        // confirmation; an incomplete second in between starts over.
        let mut first = None;
        for t in 110..130 {
            let complete = t != 112;
            if let Some(p) = tr.plan(t, &ReactivePlanner, &view(complete), &three(), &s, 0) {
                first = Some((t, p));
                break;
            }
        }
        let (t, p) = first.expect("a complete view moves");
        assert_eq!(p.from, 1);
        assert_eq!(
            t,
            113 + SETTLE - 1 + s.confirm as u64 - 1,
            "settle, then confirm"
        );
    }

    #[test]
    fn slots_moved_by_any_node_cool_down_from_the_history() {
        let rec = |id: u64, slots: Vec<(u16, u16)>, started_ms: u64, duration_ms: Option<u64>| {
            MigrationRecord {
                id,
                state: if duration_ms.is_some() {
                    "done"
                } else {
                    "running"
                }
                .into(),
                slots,
                from: 0,
                to: 1,
                keys: 0,
                bytes: 0,
                started_ms,
                duration_ms,
                planner: "reactive".into(),
                error: None,
            }
        };
        let history = vec![
            rec(1, vec![(10, 12)], 1_000, Some(500)), // ended at 1.5 s
            rec(2, vec![(6000, 6000)], 50_000, Some(1_000)), // ended at 51 s
            rec(3, vec![(7000, 7001)], 30_000, None), // still running
        ];
        let cooling = cooling_ranges(&history, 100_000, 60);
        assert_eq!(cooling, vec![(6000, 6000), (7000, 7001)]);
        assert!(cooling_ranges(&history, 112_000, 60)
            .iter()
            .all(|&(a, _)| a == 7000));
        // The leader of the shard that received slot 6000 (a fresh trigger on another node)
        // leaves it where it is and moves the next hottest slot.
        let s = Settings::default();
        let mut obs = Vec::new();
        hot_view(&mut obs, 600.0);
        obs[6000] = 400.0;
        obs[6001] = 100.0;
        obs[6002] = 100.0;
        let view = View {
            observed: &obs,
            predicted: None,
            complete: true,
            cooling: &cooling,
        };
        let mut tr = settled();
        let p = (100..110)
            .find_map(|t| tr.plan(t, &ReactivePlanner, &view, &three(), &s, 0))
            .expect("moves what is not cooling");
        assert!(
            !p.slots.iter().any(|&(a, b)| a <= 6000 && 6000 <= b),
            "{p:?}"
        );
    }
}
