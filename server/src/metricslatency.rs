//! Per-command latency histograms: the layout of Redis 7's `hdr_histogram` (1 ns to 1 s, two
//! significant figures), kept as relaxed atomic counters so recording is one add and a few
//! shifts. `INFO latencystats` reads percentiles from them exactly as Redis does, and the
//! Prometheus endpoint folds the same counts into its `le` buckets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Smallest and largest recorded value in nanoseconds (Redis's `LATENCY_HISTOGRAM_*_VALUE`).
pub const MIN_NS: u64 = 1;
/// Largest recorded value; longer runs are counted here.
pub const MAX_NS: u64 = 1_000_000_000;
/// log2 of half the sub-bucket count: two significant figures need 256 sub-buckets.
const HALF_MAG: u32 = 7;
const HALF_COUNT: u64 = 1 << HALF_MAG;
const SUB_MASK: u64 = (HALF_COUNT << 1) - 1;
/// Buckets needed to reach [`MAX_NS`] (`256 << 22 > 1e9`), as hdr_init computes them.
const BUCKETS: usize = 23;
/// Counters per histogram.
pub const COUNTS: usize = (BUCKETS + 1) * HALF_COUNT as usize;

/// The counts slot of value `v` (`counts_index_for` in hdr_histogram).
fn index_of(v: u64) -> usize {
    let bucket = 64 - (v | SUB_MASK).leading_zeros() - HALF_MAG - 1;
    let sub = v >> bucket;
    (((bucket as u64 + 1) << HALF_MAG) + sub - HALF_COUNT) as usize
}

/// The smallest value counted in slot `i` (`hdr_value_at_index`).
pub fn lowest_at(i: usize) -> u64 {
    let mut bucket = (i as i64 >> HALF_MAG) - 1;
    let mut sub = (i as u64 & (HALF_COUNT - 1)) + HALF_COUNT;
    if bucket < 0 {
        sub -= HALF_COUNT;
        bucket = 0;
    }
    sub << bucket
}

/// The largest value counted in slot `i` (`highest_equivalent_value`).
pub fn highest_at(i: usize) -> u64 {
    let v = lowest_at(i);
    let bucket = 64 - (v | SUB_MASK).leading_zeros() - HALF_MAG - 1;
    v + (1u64 << bucket) - 1
}

/// One command's histogram.
pub struct Histogram {
    counts: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: (0..COUNTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    /// Counts one run of `ns` nanoseconds (clamped to `[MIN_NS, MAX_NS]`, as Redis does).
    #[inline]
    pub fn record(&self, ns: u64) {
        let i = index_of(ns.clamp(MIN_NS, MAX_NS));
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A copy of the counts (one relaxed load each).
    pub fn snapshot(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    fn reset(&self) {
        for c in self.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// `hdr_value_at_percentile` over `counts`, in nanoseconds (0 for an empty histogram).
pub fn value_at_percentile(counts: &[u64], percentile: f64) -> u64 {
    let total: u64 = counts.iter().sum();
    let p = percentile.min(100.0);
    let want = (((p / 100.0) * total as f64) + 0.5) as u64;
    let want = want.max(1);
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= want {
            return if percentile == 0.0 {
                lowest_at(i)
            } else {
                highest_at(i)
            };
        }
    }
    0
}

/// Histograms for every command of the table, each allocated on its first run (24 KiB).
pub struct Latencies {
    per_cmd: Box<[OnceLock<Histogram>]>,
}

impl Latencies {
    /// Room for `n` commands (the table's entry count).
    pub fn new(n: usize) -> Latencies {
        Latencies {
            per_cmd: (0..n).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Counts one run of command `idx` taking `ns` nanoseconds.
    #[inline]
    pub fn record(&self, idx: usize, ns: u64) {
        if let Some(h) = self.per_cmd.get(idx) {
            h.get_or_init(Histogram::default).record(ns);
        }
    }

    /// The histogram of command `idx`, if it ever ran.
    pub fn get(&self, idx: usize) -> Option<&Histogram> {
        self.per_cmd.get(idx)?.get()
    }

    /// Zeroes every histogram (CONFIG RESETSTAT).
    pub fn reset(&self) {
        for h in self.per_cmd.iter().filter_map(OnceLock::get) {
            h.reset();
        }
    }
}

/// Parses `latency-tracking-info-percentiles`: numbers in `[0, 100]` separated by single
/// spaces (Redis splits on each space, so two in a row are an error). Errors are Redis's texts.
pub fn parse_percentiles(s: &str) -> Result<Vec<f64>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(' ')
        .map(|w| {
            let v: f64 = w
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or("Invalid latency-tracking-info-percentiles parameters")?;
            if !(0.0..=100.0).contains(&v) {
                return Err(
                    "latency-tracking-info-percentiles parameters should sit between [0.0,100.0]",
                );
            }
            Ok(v)
        })
        .collect::<Result<_, _>>()
        .map_err(str::to_string)
}

/// C's `%f` with trailing zeros (and a trailing dot) removed: Redis's `p99.9`, `p50`.
pub fn trim_double(v: f64) -> String {
    let s = format!("{v:.6}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The stored form of a valid percentile list: `50.50 1.0` is `50.5 1`.
pub fn canonical_percentiles(v: &[f64]) -> String {
    v.iter()
        .map(|&p| trim_double(p))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One `latency_percentiles_usec_<name>` value: `p50=1.003,p99=2.007,p99.9=3.007`.
pub fn percentile_line(counts: &[u64], percentiles: &[f64]) -> String {
    percentiles
        .iter()
        .map(|&p| {
            let v = value_at_percentile(counts, p) as f64 / 1000.0;
            format!("p{}={v:.3}", trim_double(p))
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_hdr_histogram() {
        // Redis 7 printed these for runs of exactly 7, 12, 24 and 80 µs, and 6 µs at p1.
        for (ns, usec) in [
            (7_000, "7.007"),
            (12_000, "12.031"),
            (24_000, "24.063"),
            (80_000, "80.383"),
            (6_000, "6.015"),
            (2_000, "2.007"),
        ] {
            let h = Histogram::default();
            h.record(ns);
            let c = h.snapshot();
            assert_eq!(
                format!("{:.3}", value_at_percentile(&c, 50.0) as f64 / 1000.0),
                usec
            );
        }
        // Every slot's range holds its own bounds and nothing of its neighbours.
        for i in 0..COUNTS - 1 {
            assert_eq!(index_of(lowest_at(i).max(1)), if i == 0 { 1 } else { i });
            assert_eq!(highest_at(i) + 1, lowest_at(i + 1), "slot {i}");
        }
        assert!(index_of(MAX_NS) < COUNTS);
        assert_eq!(index_of(1), 1);
    }

    #[test]
    fn percentiles_walk_the_counts() {
        let h = Histogram::default();
        for _ in 0..98 {
            h.record(1_000);
        }
        h.record(50_000);
        h.record(u64::MAX);
        let c = h.snapshot();
        assert_eq!(
            percentile_line(&c, &[50.0, 99.0, 99.9, 100.0]),
            "p50=1.003,p99=50.175,p99.9=1002438.655,p100=1002438.655"
        );
        assert_eq!(value_at_percentile(&c, 0.0), 1_000);
        assert_eq!(value_at_percentile(&[0; COUNTS], 50.0), 0);
    }

    #[test]
    fn percentile_config_parses_like_redis() {
        assert_eq!(parse_percentiles("50 99 99.9"), Ok(vec![50.0, 99.0, 99.9]));
        assert_eq!(parse_percentiles(""), Ok(vec![]));
        assert!(parse_percentiles("101")
            .unwrap_err()
            .contains("[0.0,100.0]"));
        assert!(parse_percentiles("abc").unwrap_err().starts_with("Invalid"));
        assert!(parse_percentiles("50  99")
            .unwrap_err()
            .starts_with("Invalid"));
        assert_eq!(parse_percentiles("1e1"), Ok(vec![10.0]));
        assert_eq!(trim_double(50.5), "50.5");
        assert_eq!(trim_double(99.0), "99");
        assert_eq!(trim_double(99.99), "99.99");
    }

    #[test]
    fn latencies_allocate_on_first_run_and_reset() {
        let l = Latencies::new(3);
        assert!(l.get(1).is_none());
        l.record(1, 5_000);
        l.record(7, 5_000);
        assert_eq!(l.get(1).map(|h| h.snapshot().iter().sum::<u64>()), Some(1));
        l.reset();
        assert_eq!(l.get(1).map(|h| h.snapshot().iter().sum::<u64>()), Some(0));
    }
}
