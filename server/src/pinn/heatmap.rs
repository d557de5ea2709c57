//! The heatmap: observed and forecast heat per shard re-binned to `n` buckets along the slot
//! ring, and its text rendering (one row of shade characters per shard and series) that reads
//! at a glance in `redis-cli PINN.HEATMAP`.

use super::mover::ShardInfo;
use pinnacle_pinn::{bucket_of, SLOTS};

/// Shades from low to high heat (ASCII, so redis-cli prints them unescaped).
pub const SHADES: &[u8] = b":-=+*#%@";

/// One shard's row of the heatmap.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardRow {
    /// Observed operations per second in each bucket (0 where the shard owns nothing).
    pub observed: Vec<f64>,
    /// Forecast operations per second in each bucket at the horizon, if a forecast exists.
    pub predicted: Option<Vec<f64>>,
    /// Whether the shard owns any slot of each bucket.
    pub owned: Vec<bool>,
}

/// Sums `per_slot` over the slots `ranges` own, in `n` buckets along the ring.
pub fn rebin(per_slot: &[f32], ranges: &[(u16, u16)], n: usize) -> (Vec<f64>, Vec<bool>) {
    let n = n.clamp(1, SLOTS);
    let mut sums = vec![0.0f64; n];
    let mut owned = vec![false; n];
    for &(a, b) in ranges {
        for s in a as usize..=(b as usize).min(SLOTS - 1) {
            let k = bucket_of(s as u16, n);
            owned[k] = true;
            sums[k] += per_slot.get(s).copied().unwrap_or(0.0) as f64;
        }
    }
    (sums, owned)
}

/// The row of `shard` from per-slot observed and forecast heat.
pub fn shard_row(
    shard: &ShardInfo,
    observed: &[f32],
    predicted: Option<&[f32]>,
    n: usize,
) -> ShardRow {
    let (obs, owned) = rebin(observed, &shard.slots, n);
    ShardRow {
        observed: obs,
        predicted: predicted.map(|p| rebin(p, &shard.slots, n).0),
        owned,
    }
}

/// One character per bucket: blank where the shard owns nothing, `.` for no heat, then
/// [`SHADES`] scaled to `max`.
pub fn shade_line(values: &[f64], owned: &[bool], max: f64) -> String {
    values
        .iter()
        .zip(owned)
        .map(|(&v, &own)| {
            if !own {
                ' '
            } else if v <= 0.0 || max <= 0.0 {
                '.'
            } else {
                let i = ((v / max) * SHADES.len() as f64).ceil() as usize;
                SHADES[i.clamp(1, SHADES.len()) - 1] as char
            }
        })
        .collect()
}

/// The text rendering: a header, a legend, then per shard a row of observed heat and a row
/// of forecast heat, each with its total in operations per second.
pub fn render(
    shards: &[ShardInfo],
    rows: &[ShardRow],
    horizon: u64,
    model: Option<&str>,
) -> Vec<String> {
    let n = rows.first().map_or(0, |r| r.observed.len());
    let max = rows
        .iter()
        .flat_map(|r| r.observed.iter().chain(r.predicted.iter().flatten()))
        .fold(0.0f64, |m, &v| m.max(v));
    let forecast = match model {
        Some(m) => format!("forecast +{horizon}s by {m}"),
        None => "no forecast yet".to_string(),
    };
    let mut out = vec![
        format!(
            "PINN heatmap: {n} buckets over slots 0-16383, {forecast}, full shade = {max:.1} ops/s"
        ),
        format!(
            "legend: ' ' not owned, '.' idle, '{}' low to high",
            std::str::from_utf8(SHADES).unwrap_or("")
        ),
    ];
    let label_width = shards
        .iter()
        .map(|s| format!("shard {}", s.index).len())
        .max()
        .unwrap_or(7);
    for (shard, row) in shards.iter().zip(rows) {
        let label = format!("shard {}", shard.index);
        let node = shard
            .leader_node
            .as_deref()
            .map_or("-".to_string(), |n| n.chars().take(8).collect());
        let addr = shard.leader_addr.as_deref().unwrap_or("-");
        let local = if shard.local_leader {
            " (this node)"
        } else {
            ""
        };
        let total: f64 = row.observed.iter().sum();
        out.push(format!(
            "{label:<label_width$} now  |{}| {total:>10.1} ops/s  node {node} {addr}{local}",
            shade_line(&row.observed, &row.owned, max)
        ));
        let pred_line = match &row.predicted {
            Some(p) => format!(
                "|{}| {:>10.1} ops/s",
                shade_line(p, &row.owned, max),
                p.iter().sum::<f64>()
            ),
            None => format!("|{}|          - ops/s", " ".repeat(n)),
        };
        let tag = format!("+{horizon}s");
        out.push(format!("{:<label_width$} {tag:<4} {pred_line}", ""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: usize, slots: Vec<(u16, u16)>) -> ShardInfo {
        ShardInfo {
            index,
            id: "x".repeat(40),
            slots,
            leader_node: Some(format!("{index:040x}")),
            leader_addr: Some("127.0.0.1:7000".into()),
            local_leader: index == 0,
        }
    }

    #[test]
    fn rebin_sums_owned_slots() {
        let mut per_slot = vec![0.0f32; SLOTS];
        per_slot[0] = 1.0;
        per_slot[8191] = 2.0;
        per_slot[8192] = 4.0;
        let (sums, owned) = rebin(&per_slot, &[(0, 8191)], 2);
        assert_eq!(sums, vec![3.0, 0.0]);
        assert_eq!(owned, vec![true, false]);
        let (sums, _) = rebin(&per_slot, &[(0, 16383)], 4);
        assert_eq!(sums, vec![1.0, 2.0, 4.0, 0.0]);
    }

    #[test]
    fn shades_scale_to_the_maximum() {
        let line = shade_line(
            &[0.0, 1.0, 50.0, 100.0, 7.0],
            &[true, true, true, true, false],
            100.0,
        );
        assert_eq!(line, ".:+@ ");
    }

    #[test]
    fn render_has_two_rows_per_shard() {
        let shards = vec![shard(0, vec![(0, 8191)]), shard(1, vec![(8192, 16383)])];
        let mut obs = vec![0.0f32; SLOTS];
        obs[10] = 8.0;
        obs[9000] = 2.0;
        let rows: Vec<ShardRow> = shards
            .iter()
            .map(|s| shard_row(s, &obs, Some(&obs), 8))
            .collect();
        let text = render(&shards, &rows, 10, Some("linear"));
        assert_eq!(text.len(), 2 + 4, "{text:#?}");
        assert!(text[0].contains("8 buckets") && text[0].contains("+10s by linear"));
        assert!(
            text[2].starts_with("shard 0 now  |@...    |"),
            "{}",
            text[2]
        );
        assert!(text[2].contains("(this node)"));
        assert!(
            text[4].starts_with("shard 1 now  |    -...|"),
            "{}",
            text[4]
        );
        assert!(text[5].contains("2.0 ops/s"));
    }
}
