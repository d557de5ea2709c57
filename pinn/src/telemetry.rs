//! Per-slot traffic counters, the once-a-second fold into ring buckets, the 60 s window of rows,
//! and a Space-Saving heavy-hitters sketch for the hottest keys.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Number of Redis Cluster hash slots.
pub const SLOTS: usize = 16384;
/// Default number of buckets along the slot ring.
pub const DEFAULT_BUCKETS: usize = 64;
/// Default window length in rows (one row per second).
pub const DEFAULT_WINDOW: usize = 60;

/// What an operation did to a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A command that only reads.
    Read,
    /// A command that writes.
    Write,
}

/// One slot's counters, kept together so counting touches a single cache line.
#[repr(align(32))]
#[derive(Default)]
struct SlotCell {
    reads: AtomicU64,
    writes: AtomicU64,
    bytes: AtomicU64,
}

/// Lock-free per-slot counters; `record` is one or two relaxed atomic adds, off any lock.
pub struct SlotCounters {
    cells: Box<[SlotCell]>,
}

impl Default for SlotCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl SlotCounters {
    /// Counters for all 16384 slots, all zero.
    pub fn new() -> Self {
        Self {
            cells: (0..SLOTS).map(|_| SlotCell::default()).collect(),
        }
    }

    /// Counts one operation of `kind` moving `bytes` on `slot` (slots wrap modulo 16384).
    #[inline]
    pub fn record(&self, slot: u16, kind: OpKind, bytes: u64) {
        let cell = &self.cells[slot as usize & (SLOTS - 1)];
        let ops = match kind {
            OpKind::Read => &cell.reads,
            OpKind::Write => &cell.writes,
        };
        ops.fetch_add(1, Ordering::Relaxed);
        if bytes > 0 {
            cell.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Takes (and zeroes) every counter and sums them into `buckets` equal arcs of the slot ring.
    ///
    /// Each counter is swapped to zero individually, so an operation recorded concurrently lands
    /// in this row or the next, never in neither.
    pub fn fold(&self, t: u64, buckets: usize) -> Row {
        self.fold_slots(t, buckets, &mut [])
    }

    /// Like [`fold`](Self::fold), and also writes each slot's operations (reads + writes) into
    /// `per_slot[slot]` (ignored when `per_slot` is shorter than 16384), so a planner can pick
    /// single hot slots without a second pass over the atomics.
    pub fn fold_slots(&self, t: u64, buckets: usize, per_slot: &mut [u64]) -> Row {
        let buckets = buckets.clamp(1, SLOTS);
        let keep = per_slot.len() >= SLOTS;
        let mut row = Row::zeros(t, buckets);
        for (s, cell) in self.cells.iter().enumerate() {
            let b = bucket_of(s as u16, buckets);
            let (r, w) = (take(&cell.reads), take(&cell.writes));
            row.reads[b] += r;
            row.writes[b] += w;
            row.bytes[b] += take(&cell.bytes);
            if let Some(p) = per_slot.get_mut(s).filter(|_| keep) {
                *p = r + w;
            }
        }
        row
    }
}

/// Swaps a counter to zero, skipping the write when it already is (most slots are idle, and a
/// load does not take the cache line away from a thread counting on it).
#[inline]
fn take(c: &AtomicU64) -> u64 {
    if c.load(Ordering::Relaxed) == 0 {
        0
    } else {
        c.swap(0, Ordering::Relaxed)
    }
}

/// The bucket a slot falls into when the ring is cut into `buckets` equal arcs.
pub fn bucket_of(slot: u16, buckets: usize) -> usize {
    (slot as usize & (SLOTS - 1)) * buckets / SLOTS
}

/// The slots `[first, last]` that make up bucket `b` of `buckets`.
pub fn bucket_slots(b: usize, buckets: usize) -> (u16, u16) {
    let first = (b * SLOTS).div_ceil(buckets);
    let last = ((b + 1) * SLOTS).div_ceil(buckets) - 1;
    (first as u16, last as u16)
}

/// One second of traffic folded into buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Time of the row in whole seconds (any fixed epoch).
    pub t: u64,
    /// Read operations per bucket.
    pub reads: Vec<u64>,
    /// Write operations per bucket.
    pub writes: Vec<u64>,
    /// Bytes per bucket.
    pub bytes: Vec<u64>,
}

impl Row {
    /// A row of `buckets` zero counts.
    pub fn zeros(t: u64, buckets: usize) -> Self {
        Self {
            t,
            reads: vec![0; buckets],
            writes: vec![0; buckets],
            bytes: vec![0; buckets],
        }
    }

    /// A row whose heat is `heat` (counted as reads), for traces and tests.
    pub fn from_heat(t: u64, heat: &[f32]) -> Self {
        let mut row = Self::zeros(t, heat.len());
        for (r, h) in row.reads.iter_mut().zip(heat) {
            *r = h.max(0.0).round() as u64;
        }
        row
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.reads.len()
    }

    /// Heat per bucket: operations (reads + writes) in the second.
    pub fn heat(&self) -> Vec<f32> {
        self.reads
            .iter()
            .zip(&self.writes)
            .map(|(r, w)| (r + w) as f32)
            .collect()
    }
}

/// A ring buffer of the most recent rows (default 60, one per second).
#[derive(Debug, Clone)]
pub struct Window {
    cap: usize,
    rows: VecDeque<Row>,
}

impl Window {
    /// An empty window that keeps at most `cap` rows.
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            rows: VecDeque::with_capacity(cap.max(1)),
        }
    }

    /// Appends a row, dropping the oldest when full. A row with another bucket count than the
    /// rows already held clears the window first (the bucket layout changed).
    pub fn push(&mut self, row: Row) {
        if self
            .rows
            .front()
            .is_some_and(|r| r.buckets() != row.buckets())
        {
            self.rows.clear();
        }
        if self.rows.len() == self.cap {
            self.rows.pop_front();
        }
        self.rows.push_back(row);
    }

    /// Rows held, oldest first.
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter()
    }

    /// Number of rows held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when no row is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Maximum number of rows kept.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The newest row.
    pub fn latest(&self) -> Option<&Row> {
        self.rows.back()
    }

    /// The heat of every row, oldest first, with the time of the first row.
    pub fn heat(&self) -> Option<HeatSeries> {
        let t0 = self.rows.front()?.t;
        Some(HeatSeries {
            t0,
            rows: self.rows.iter().map(Row::heat).collect(),
        })
    }
}

/// Heat rows one second apart, starting at second `t0`: the input of the model and baselines.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatSeries {
    /// Time of the first row, in seconds.
    pub t0: u64,
    /// `rows[i][b]`: heat of bucket `b` at second `t0 + i`.
    pub rows: Vec<Vec<f32>>,
}

impl HeatSeries {
    /// Number of buckets (0 when empty).
    pub fn buckets(&self) -> usize {
        self.rows.first().map_or(0, Vec::len)
    }

    /// The rows `[start, end)` as a new series.
    pub fn slice(&self, start: usize, end: usize) -> HeatSeries {
        HeatSeries {
            t0: self.t0 + start as u64,
            rows: self.rows[start..end].to_vec(),
        }
    }
}

/// A heavy hitter with its estimated count and the most it may be over-counted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeavyHitter {
    /// The key.
    pub key: Vec<u8>,
    /// Estimated count (never below the true count).
    pub count: u64,
    /// Upper bound of the over-estimate.
    pub error: u64,
}

/// Space-Saving sketch (Metwally et al.): keeps `k` counters; any key whose true count exceeds
/// `total / k` is guaranteed to be held.
#[derive(Debug, Clone)]
pub struct SpaceSaving {
    k: usize,
    counters: HashMap<Vec<u8>, (u64, u64)>,
    total: u64,
}

impl SpaceSaving {
    /// A sketch with `k` counters (k = 100 by the design).
    pub fn new(k: usize) -> Self {
        Self {
            k: k.max(1),
            counters: HashMap::with_capacity(k.max(1)),
            total: 0,
        }
    }

    /// Adds `weight` to `key`, evicting the smallest counter when all `k` are taken.
    pub fn offer(&mut self, key: &[u8], weight: u64) {
        self.total += weight;
        if let Some(c) = self.counters.get_mut(key) {
            c.0 += weight;
            return;
        }
        if self.counters.len() < self.k {
            self.counters.insert(key.to_vec(), (weight, 0));
            return;
        }
        // O(k) scan for the minimum: k is 100 and eviction happens only for new keys.
        let Some((victim, &(min, _))) = self.counters.iter().min_by_key(|(_, c)| c.0) else {
            return;
        };
        let victim = victim.clone();
        self.counters.remove(&victim);
        self.counters.insert(key.to_vec(), (min + weight, min));
    }

    /// The `n` hottest keys, hottest first.
    pub fn top(&self, n: usize) -> Vec<HeavyHitter> {
        let mut v: Vec<HeavyHitter> = self
            .counters
            .iter()
            .map(|(key, &(count, error))| HeavyHitter {
                key: key.clone(),
                count,
                error,
            })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        v.truncate(n);
        v
    }

    /// Total weight offered so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Forgets everything (e.g. at the start of a new window).
    pub fn clear(&mut self) {
        self.counters.clear();
        self.total = 0;
    }
}

/// One node's telemetry: the per-slot counters, the window of folded rows the trainer reads,
/// and the hottest keys.
pub struct Telemetry {
    counters: SlotCounters,
    buckets: usize,
    window: Arc<Mutex<Window>>,
    hot: Mutex<SpaceSaving>,
}

impl Telemetry {
    /// Telemetry folding into `buckets` buckets, keeping `window` rows and `k` hot keys.
    pub fn new(buckets: usize, window: usize, k: usize) -> Self {
        Self {
            counters: SlotCounters::new(),
            buckets: buckets.clamp(1, SLOTS),
            window: Arc::new(Mutex::new(Window::new(window))),
            hot: Mutex::new(SpaceSaving::new(k)),
        }
    }

    /// Counts one operation (two relaxed atomic adds).
    #[inline]
    pub fn record(&self, slot: u16, kind: OpKind, bytes: u64) {
        self.counters.record(slot, kind, bytes);
    }

    /// Offers a key to the hot-key sketch. Never waits: if another thread holds the sketch the
    /// key is skipped, which only makes the (approximate) counts a sample.
    pub fn record_key(&self, key: &[u8]) {
        if let Ok(mut hot) = self.hot.try_lock() {
            hot.offer(key, 1);
        }
    }

    /// The once-a-second fold: takes the counters into a row for second `t` and appends it to
    /// the window.
    pub fn tick(&self, t: u64) -> Row {
        let row = self.counters.fold(t, self.buckets);
        if let Ok(mut w) = self.window.lock() {
            w.push(row.clone());
        }
        row
    }

    /// The window, shared with the trainer.
    pub fn window(&self) -> Arc<Mutex<Window>> {
        self.window.clone()
    }

    /// The `n` hottest keys seen since the last `clear_hot_keys`.
    pub fn hot_keys(&self, n: usize) -> Vec<HeavyHitter> {
        self.hot.lock().map(|h| h.top(n)).unwrap_or_default()
    }

    /// Starts a new hot-key period.
    pub fn clear_hot_keys(&self) {
        if let Ok(mut h) = self.hot.lock() {
            h.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_sums_slots_into_buckets_and_resets() {
        let c = SlotCounters::new();
        c.record(0, OpKind::Read, 10);
        c.record(255, OpKind::Write, 5);
        c.record(256, OpKind::Read, 1);
        c.record(16383, OpKind::Read, 0);
        let row = c.fold(7, 64);
        assert_eq!(row.t, 7);
        assert_eq!(row.reads[0], 1);
        assert_eq!(row.writes[0], 1);
        assert_eq!(row.bytes[0], 15);
        assert_eq!(row.reads[1], 1);
        assert_eq!(row.reads[63], 1);
        assert_eq!(row.heat()[0], 2.0);
        let again = c.fold(8, 64);
        assert!(again.reads.iter().chain(&again.writes).all(|&v| v == 0));
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let c = std::sync::Arc::new(SlotCounters::new());
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for n in 0..10_000u32 {
                        c.record((n % 16384) as u16 ^ i, OpKind::Write, 2);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        let row = c.fold(0, 8);
        assert_eq!(row.writes.iter().sum::<u64>(), 40_000);
        assert_eq!(row.bytes.iter().sum::<u64>(), 80_000);
    }

    #[test]
    fn bucket_slots_cover_the_ring_exactly() {
        for buckets in [1, 3, 64, 100] {
            let mut next = 0u32;
            for b in 0..buckets {
                let (first, last) = bucket_slots(b, buckets);
                assert_eq!(first as u32, next);
                assert_eq!(bucket_of(first, buckets), b);
                assert_eq!(bucket_of(last, buckets), b);
                next = last as u32 + 1;
            }
            assert_eq!(next, SLOTS as u32);
        }
    }

    #[test]
    fn window_keeps_the_newest_rows() {
        let mut w = Window::new(3);
        for t in 0..5 {
            w.push(Row::from_heat(t, &[t as f32, 1.0]));
        }
        assert_eq!(w.len(), 3);
        let h = w.heat().expect("rows");
        assert_eq!(h.t0, 2);
        assert_eq!(h.rows, vec![vec![2.0, 1.0], vec![3.0, 1.0], vec![4.0, 1.0]]);
        w.push(Row::from_heat(5, &[1.0, 1.0, 1.0]));
        assert_eq!(w.len(), 1, "a new bucket layout starts a new window");
    }

    #[test]
    fn telemetry_ticks_into_the_window() {
        let t = Telemetry::new(4, 2, 10);
        t.record(0, OpKind::Read, 3);
        t.record(16383, OpKind::Write, 0);
        t.record_key(b"k");
        t.record_key(b"k");
        let row = t.tick(1);
        assert_eq!(row.heat(), vec![1.0, 0.0, 0.0, 1.0]);
        t.tick(2);
        t.tick(3);
        let w = t.window();
        let w = w.lock().unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w.latest().map(|r| r.t), Some(3));
        assert_eq!(t.hot_keys(5)[0].count, 2);
    }

    #[test]
    fn space_saving_finds_the_heavy_keys() {
        let mut s = SpaceSaving::new(10);
        let mut rng = fastrand::Rng::with_seed(1);
        for i in 0..20_000u32 {
            // Three keys take 60 % of the stream; the rest is spread over 5,000 keys.
            let key = match i % 10 {
                0..=2 => b"hot-a".to_vec(),
                3..=4 => b"hot-b".to_vec(),
                5 => b"hot-c".to_vec(),
                _ => format!("cold-{}", rng.u32(0..5000)).into_bytes(),
            };
            s.offer(&key, 1);
        }
        let top = s.top(3);
        let keys: Vec<&[u8]> = top.iter().map(|h| h.key.as_slice()).collect();
        assert_eq!(keys, vec![&b"hot-a"[..], b"hot-b", b"hot-c"]);
        assert!(top[0].count >= 6000 && top[0].count - top[0].error <= 6000);
        assert_eq!(s.total(), 20_000);
    }
}
