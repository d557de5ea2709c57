//! The compaction controller. Pure: state in → task out; task + outputs in → new state +
//! files to delete. No I/O, so the `compaction-simulator` binary can drive it.
//!
//! Policy: leveled, size ratio `ratio`. L0 holds overlapping flush outputs; when it has
//! `l0_trigger` files they all move to L1 together with the L1 files they overlap (taking all
//! L0 files keeps "a lower level only holds older versions"). Level L ≥ 1 targets
//! `base × ratio^(L-1)` bytes; the level with the highest size/target score ≥ 1 pushes the
//! one file whose overlap with the next level is smallest relative to its size.

use crate::sstable::FileMeta;
use bytes::Bytes;

/// Knobs the controller needs (a subset of [`crate::Options`]).
#[derive(Clone, Copy, Debug)]
pub struct ControllerOptions {
    /// L0 file count that triggers L0→L1.
    pub l0_trigger: usize,
    /// Target size of L1 in bytes.
    pub level_base_bytes: u64,
    /// Size ratio between adjacent levels.
    pub ratio: u64,
    /// Number of levels.
    pub max_levels: usize,
}

impl ControllerOptions {
    /// The controller knobs of an engine's options.
    pub fn from_options(o: &crate::Options) -> ControllerOptions {
        ControllerOptions {
            l0_trigger: o.l0_compaction_trigger.max(1),
            level_base_bytes: o.level_base_bytes.max(1),
            ratio: o.level_size_ratio.max(2),
            max_levels: o.max_levels.max(2),
        }
    }

    /// Target bytes of level `level` (≥ 1).
    pub fn target(&self, level: usize) -> u64 {
        let mut t = self.level_base_bytes;
        for _ in 1..level {
            t = t.saturating_mul(self.ratio);
        }
        t
    }
}

/// The file set per level as the controller sees it.
#[derive(Clone, Debug, Default)]
pub struct LevelsState {
    /// L0 newest first; L1+ sorted by smallest key and non-overlapping.
    pub levels: Vec<Vec<FileMeta>>,
}

/// One compaction: merge `upper` (from `input_level`) with `lower` (from `output_level`).
#[derive(Clone, Debug)]
pub struct CompactionTask {
    /// Level the upper inputs come from.
    pub input_level: usize,
    /// Level the outputs go to.
    pub output_level: usize,
    /// Files taken from `input_level`.
    pub upper: Vec<FileMeta>,
    /// Overlapping files taken from `output_level`.
    pub lower: Vec<FileMeta>,
    /// No level below `output_level` holds data in the task's key range, so tombstones
    /// that every snapshot sees can be dropped.
    pub bottommost: bool,
}

impl CompactionTask {
    /// Bytes read by the task.
    pub fn input_bytes(&self) -> u64 {
        self.upper.iter().chain(&self.lower).map(|f| f.size).sum()
    }
    /// Ids of every input file.
    pub fn input_ids(&self) -> Vec<u64> {
        self.upper.iter().chain(&self.lower).map(|f| f.id).collect()
    }
}

// A key span [lo, hi] (hi exclusive when `hi_excl`).
#[derive(Clone, Debug)]
struct Span {
    lo: Bytes,
    hi: Bytes,
    hi_excl: bool,
}

impl Span {
    fn of(f: &FileMeta) -> Span {
        Span {
            lo: f.smallest.clone(),
            hi: f.largest.clone(),
            hi_excl: f.largest_exclusive,
        }
    }
    fn union(&mut self, o: &Span) {
        if o.lo < self.lo {
            self.lo = o.lo.clone();
        }
        if o.hi > self.hi {
            self.hi = o.hi.clone();
            self.hi_excl = o.hi_excl;
        } else if o.hi == self.hi {
            self.hi_excl &= o.hi_excl;
        }
    }
    // True when every key of `self` is below `k`.
    fn before(&self, k: &[u8]) -> bool {
        if self.hi_excl {
            self.hi.as_ref() <= k
        } else {
            self.hi.as_ref() < k
        }
    }
    fn overlaps(&self, o: &Span) -> bool {
        !self.before(&o.lo) && !o.before(&self.lo)
    }
}

fn span_of(files: &[FileMeta]) -> Option<Span> {
    let mut it = files.iter();
    let mut s = Span::of(it.next()?);
    for f in it {
        s.union(&Span::of(f));
    }
    Some(s)
}

fn overlapping(files: &[FileMeta], s: &Span) -> Vec<FileMeta> {
    files
        .iter()
        .filter(|f| Span::of(f).overlaps(s))
        .cloned()
        .collect()
}

fn is_bottommost(
    state: &LevelsState,
    output_level: usize,
    upper: &[FileMeta],
    lower: &[FileMeta],
) -> bool {
    let mut all: Vec<FileMeta> = upper.to_vec();
    all.extend_from_slice(lower);
    let Some(s) = span_of(&all) else {
        return true;
    };
    state
        .levels
        .iter()
        .skip(output_level + 1)
        .all(|l| overlapping(l, &s).is_empty())
}

fn task(state: &LevelsState, input_level: usize, upper: Vec<FileMeta>) -> Option<CompactionTask> {
    let output_level = input_level + 1;
    let s = span_of(&upper)?;
    let lower = state
        .levels
        .get(output_level)
        .map(|l| overlapping(l, &s))
        .unwrap_or_default();
    let bottommost = is_bottommost(state, output_level, &upper, &lower);
    Some(CompactionTask {
        input_level,
        output_level,
        upper,
        lower,
        bottommost,
    })
}

fn level_bytes(l: &[FileMeta]) -> u64 {
    l.iter().map(|f| f.size).sum()
}

/// Compaction debt: bytes that must still move down a level before no level is over its
/// target (all of L0 once it holds `l0_trigger` files, plus each deeper level's excess, the
/// last level excepted). `levels` is `(files, bytes)` per level, L0 first.
pub fn debt(opts: &ControllerOptions, levels: &[(usize, u64)]) -> u64 {
    let last = opts.max_levels.min(levels.len()).saturating_sub(1);
    levels
        .iter()
        .enumerate()
        .take(last)
        .map(|(l, &(files, bytes))| match l {
            0 if files >= opts.l0_trigger => bytes,
            0 => 0,
            l => bytes.saturating_sub(opts.target(l)),
        })
        .sum()
}

/// The next compaction to run, if any level is over its target.
pub fn pick(opts: &ControllerOptions, state: &LevelsState) -> Option<CompactionTask> {
    let last = opts.max_levels.min(state.levels.len()).saturating_sub(1);
    let mut best: Option<(f64, usize)> = None;
    if let Some(l0) = state.levels.first() {
        if l0.len() >= opts.l0_trigger && last >= 1 {
            best = Some((l0.len() as f64 / opts.l0_trigger as f64, 0));
        }
    }
    for level in 1..last {
        let score = level_bytes(&state.levels[level]) as f64 / opts.target(level) as f64;
        if score >= 1.0 && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, level));
        }
    }
    let (_, level) = best?;
    if level == 0 {
        return task(state, 0, state.levels[0].clone());
    }
    // The file of `level` that drags the fewest next-level bytes along per byte it moves.
    let next = state
        .levels
        .get(level + 1)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let f = state.levels[level]
        .iter()
        .min_by(|a, b| {
            let ra = level_bytes(&overlapping(next, &Span::of(a))) as f64 / a.size.max(1) as f64;
            let rb = level_bytes(&overlapping(next, &Span::of(b))) as f64 / b.size.max(1) as f64;
            ra.total_cmp(&rb).then(a.id.cmp(&b.id))
        })?
        .clone();
    task(state, level, vec![f])
}

/// A manual compaction of `level` into `level + 1` for the files overlapping
/// `[start, end)` (`None` = unbounded); all of L0 moves when `level` is 0.
pub fn pick_manual(
    state: &LevelsState,
    level: usize,
    start: Option<&[u8]>,
    end: Option<&[u8]>,
) -> Option<CompactionTask> {
    let files = state.levels.get(level)?;
    if level + 1 >= state.levels.len() {
        return None;
    }
    let in_range = |f: &FileMeta| {
        start.is_none_or(|s| !f.before(s)) && end.is_none_or(|e| f.smallest.as_ref() < e)
    };
    if !files.iter().any(in_range) {
        return None;
    }
    let upper: Vec<FileMeta> = if level == 0 {
        files.clone()
    } else {
        files.iter().filter(|f| in_range(f)).cloned().collect()
    };
    task(state, level, upper)
}

/// A manual rewrite of the files of `level` overlapping `[start, end)` into the same level,
/// for a level with nothing below it: drops every tombstone and shadowed version no snapshot
/// needs.
pub fn pick_manual_in_place(
    state: &LevelsState,
    level: usize,
    start: Option<&[u8]>,
    end: Option<&[u8]>,
) -> Option<CompactionTask> {
    if level == 0 {
        return None;
    }
    let upper: Vec<FileMeta> = state
        .levels
        .get(level)?
        .iter()
        .filter(|f| {
            start.is_none_or(|s| !f.before(s)) && end.is_none_or(|e| f.smallest.as_ref() < e)
        })
        .cloned()
        .collect();
    if upper.is_empty() {
        return None;
    }
    let bottommost = is_bottommost(state, level, &upper, &[]);
    Some(CompactionTask {
        input_level: level,
        output_level: level,
        upper,
        lower: Vec::new(),
        bottommost,
    })
}

/// Applies a finished task: removes its inputs, adds `outputs` to the output level.
/// Returns the new state and the ids of the files that are no longer referenced.
pub fn apply(
    state: &LevelsState,
    task: &CompactionTask,
    outputs: Vec<FileMeta>,
) -> (LevelsState, Vec<u64>) {
    let mut s = state.clone();
    let up: Vec<u64> = task.upper.iter().map(|f| f.id).collect();
    let low: Vec<u64> = task.lower.iter().map(|f| f.id).collect();
    if let Some(l) = s.levels.get_mut(task.input_level) {
        l.retain(|f| !up.contains(&f.id));
    }
    while s.levels.len() <= task.output_level {
        s.levels.push(Vec::new());
    }
    let out = &mut s.levels[task.output_level];
    out.retain(|f| !low.contains(&f.id));
    out.extend(outputs);
    out.sort_by(|a, b| a.smallest.cmp(&b.smallest));
    (s, task.input_ids())
}

/// True when the sorted levels (L1+) are non-overlapping (a check for tests and the simulator).
pub fn levels_are_disjoint(state: &LevelsState) -> bool {
    state.levels.iter().skip(1).all(|l| {
        l.windows(2)
            .all(|w| w[0].before(&w[1].smallest) && w[0].smallest <= w[1].smallest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_counts_l0_over_trigger_and_excess_of_deeper_levels() {
        let o = ControllerOptions {
            l0_trigger: 4,
            level_base_bytes: 100,
            ratio: 10,
            max_levels: 4,
        };
        assert_eq!(debt(&o, &[(3, 50), (1, 100), (1, 1000)]), 0);
        // L0 at the trigger moves whole; L1 is 20 over its 100; L2 is within 1000; the last
        // level (L3) never owes anything.
        assert_eq!(debt(&o, &[(4, 50), (2, 120), (3, 900), (9, 1 << 40)]), 70);
        assert_eq!(debt(&o, &[]), 0);
    }

    fn f(id: u64, lo: &str, hi: &str, size: u64) -> FileMeta {
        FileMeta {
            id,
            size,
            smallest: Bytes::copy_from_slice(lo.as_bytes()),
            largest: Bytes::copy_from_slice(hi.as_bytes()),
            largest_exclusive: false,
            min_seq: id,
            max_seq: id,
        }
    }

    fn opts() -> ControllerOptions {
        ControllerOptions {
            l0_trigger: 4,
            level_base_bytes: 1000,
            ratio: 10,
            max_levels: 4,
        }
    }

    #[test]
    fn nothing_to_do_below_triggers() {
        let s = LevelsState {
            levels: vec![
                vec![f(1, "a", "z", 10); 3],
                vec![f(2, "a", "c", 500)],
                vec![],
                vec![],
            ],
        };
        assert!(pick(&opts(), &s).is_none());
    }

    #[test]
    fn l0_moves_with_overlapping_l1() {
        let s = LevelsState {
            levels: vec![
                vec![
                    f(10, "c", "e", 10),
                    f(11, "d", "f", 10),
                    f(12, "a", "b", 10),
                    f(13, "e", "g", 10),
                ],
                vec![
                    f(1, "a", "a", 100),
                    f(2, "b", "c", 100),
                    f(3, "h", "k", 100),
                ],
                vec![f(4, "x", "z", 100)],
                vec![],
            ],
        };
        let t = pick(&opts(), &s).expect("L0 over trigger");
        assert_eq!((t.input_level, t.output_level), (0, 1));
        assert_eq!(t.upper.len(), 4);
        assert_eq!(t.lower.iter().map(|f| f.id).collect::<Vec<_>>(), vec![1, 2]);
        assert!(t.bottommost);
        let (ns, del) = apply(&s, &t, vec![f(20, "a", "d", 200), f(21, "e", "g", 100)]);
        assert!(ns.levels[0].is_empty());
        assert_eq!(
            ns.levels[1].iter().map(|f| f.id).collect::<Vec<_>>(),
            vec![20, 21, 3]
        );
        assert_eq!(del.len(), 6);
        assert!(levels_are_disjoint(&ns));
    }

    #[test]
    fn oversized_level_pushes_least_overlapping_file() {
        let s = LevelsState {
            levels: vec![
                vec![],
                vec![f(1, "a", "c", 600), f(2, "d", "f", 600)],
                vec![f(3, "a", "b", 5000), f(4, "e", "e", 10)],
                vec![f(5, "a", "z", 1)],
            ],
        };
        let t = pick(&opts(), &s).expect("L1 over target");
        assert_eq!((t.input_level, t.output_level), (1, 2));
        assert_eq!(t.upper[0].id, 2);
        assert_eq!(t.lower.iter().map(|f| f.id).collect::<Vec<_>>(), vec![4]);
        assert!(!t.bottommost, "L3 overlaps");
    }

    #[test]
    fn exclusive_end_does_not_overlap() {
        let mut a = f(1, "a", "c", 1);
        a.largest_exclusive = true;
        assert!(!Span::of(&a).overlaps(&Span::of(&f(2, "c", "d", 1))));
        assert!(Span::of(&a).overlaps(&Span::of(&f(2, "b", "b", 1))));
    }

    #[test]
    fn manual_takes_range() {
        let s = LevelsState {
            levels: vec![
                vec![],
                vec![f(1, "a", "c", 1), f(2, "d", "f", 1), f(3, "g", "i", 1)],
                vec![],
            ],
        };
        let t = pick_manual(&s, 1, Some(b"e"), Some(b"h")).expect("task");
        assert_eq!(t.upper.iter().map(|f| f.id).collect::<Vec<_>>(), vec![2, 3]);
        assert!(pick_manual(&s, 1, Some(b"x"), None).is_none());
        assert!(pick_manual(&s, 0, None, None).is_none());
        let t = pick_manual_in_place(&s, 1, None, Some(b"e")).expect("in place");
        assert_eq!((t.input_level, t.output_level, t.bottommost), (1, 1, true));
        let (ns, del) = apply(&s, &t, vec![f(9, "a", "f", 1)]);
        assert_eq!(
            ns.levels[1].iter().map(|f| f.id).collect::<Vec<_>>(),
            vec![9, 3]
        );
        assert_eq!(del, vec![1, 2]);
    }
}
