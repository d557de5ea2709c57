//! The memtable's ordered map: sorted leaves of up to [`LEAF`] entries, chained in key order
//! and indexed by a `BTreeMap` from each leaf's lower fence, plus a finger on the leaf of the
//! last insert.
//!
//! Why not a plain `BTreeMap<MemKey, Bytes>`: std's B-tree searches each node linearly, so a
//! key above every key on its path (a list push appends at the list's tail, a pop's tombstone
//! follows the earlier pops') compared against every key of each node, ~31 compares of a
//! 30-byte common prefix per insert. Here consecutive writes near one another (a pipelined run
//! of pushes to one list) find their leaf through the finger with two fence compares, an
//! append to the end of a leaf costs one more, and other positions a binary search; the index
//! holds one entry per leaf, so a miss of the finger searches a tree ~50 times smaller.

use crate::key::{compare, MemKey, MemKeyRef};
use bytes::Bytes;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

/// Most entries a leaf holds; one more splits it.
const LEAF: usize = 64;
/// "No leaf" in a chain link.
const NONE: u32 = u32::MAX;

struct Leaf {
    keys: Vec<MemKey>,
    vals: Vec<Bytes>,
    /// Every key of this leaf is `>=` its fence; `None` (below everything) for the first leaf.
    lo: Option<MemKey>,
    /// The next leaf in key order (its fence bounds this leaf's keys from above).
    next: u32,
}

impl Leaf {
    fn with_capacity(lo: Option<MemKey>, next: u32) -> Leaf {
        Leaf {
            keys: Vec::with_capacity(LEAF + 1),
            vals: Vec::with_capacity(LEAF + 1),
            lo,
            next,
        }
    }
}

/// An ordered map of internal keys to values (see the module doc).
pub(crate) struct LeafMap {
    leaves: Vec<Leaf>,
    /// Fence → leaf for every leaf but the first.
    index: BTreeMap<MemKey, u32>,
    /// The leaf of the last insert.
    finger: u32,
    len: usize,
}

impl Default for LeafMap {
    fn default() -> Self {
        LeafMap::new()
    }
}

impl LeafMap {
    /// An empty map.
    pub(crate) fn new() -> LeafMap {
        LeafMap {
            leaves: vec![Leaf::with_capacity(None, NONE)],
            index: BTreeMap::new(),
            finger: 0,
            len: 0,
        }
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when the map holds nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when `k` belongs in leaf `li` (between its fence and the next leaf's).
    #[inline]
    fn fits(&self, li: u32, k: &[u8]) -> bool {
        let leaf = &self.leaves[li as usize];
        let above_lo = match &leaf.lo {
            None => true,
            Some(lo) => compare(lo.as_slice(), k) != Ordering::Greater,
        };
        above_lo
            && (leaf.next == NONE
                || match &self.leaves[leaf.next as usize].lo {
                    Some(hi) => compare(k, hi.as_slice()) == Ordering::Less,
                    None => false,
                })
    }

    /// The leaf whose key range holds `k`, from the index.
    fn find_leaf(&self, k: &[u8]) -> u32 {
        let upto: (Bound<&MemKeyRef>, Bound<&MemKeyRef>) =
            (Bound::Unbounded, Bound::Included(MemKeyRef::new(k)));
        self.index
            .range::<MemKeyRef, _>(upto)
            .next_back()
            .map_or(0, |(_, &li)| li)
    }

    /// Inserts `k → v`; an equal key keeps its key and takes the new value.
    pub(crate) fn insert(&mut self, k: MemKey, v: Bytes) {
        let ks = k.as_slice();
        let li = if self.fits(self.finger, ks) {
            self.finger
        } else {
            let li = self.find_leaf(ks);
            self.finger = li;
            li
        };
        let leaf = &mut self.leaves[li as usize];
        // Appends (ascending keys) and prepends (descending: LPUSH) skip the binary search.
        let pos = match (leaf.keys.first(), leaf.keys.last()) {
            (Some(_), Some(last)) if compare(last.as_slice(), ks) == Ordering::Less => {
                leaf.keys.len()
            }
            (Some(first), _) if compare(ks, first.as_slice()) == Ordering::Less => 0,
            (None, _) | (_, None) => 0,
            _ => match leaf.keys.binary_search_by(|e| compare(e.as_slice(), ks)) {
                Ok(i) => {
                    leaf.vals[i] = v;
                    return;
                }
                Err(i) => i,
            },
        };
        leaf.keys.insert(pos, k);
        leaf.vals.insert(pos, v);
        self.len += 1;
        if leaf.keys.len() > LEAF {
            // An append splits off just the new key and a prepend keeps just the new key, so
            // ascending and descending inserts leave full leaves behind them (and a prepend
            // then shifts a short leaf); anywhere else the leaf splits in half.
            let at = match pos {
                0 => 1,
                LEAF => LEAF,
                _ => LEAF / 2,
            };
            self.split(li, at);
        }
    }

    /// Moves the entries of leaf `li` from `at` on into a new leaf chained after it.
    fn split(&mut self, li: u32, at: usize) {
        let ni = u32::try_from(self.leaves.len()).unwrap_or(NONE);
        debug_assert!(ni != NONE, "memtable leaf count overflow");
        let leaf = &mut self.leaves[li as usize];
        let lo = leaf.keys[at].clone();
        let mut new = Leaf::with_capacity(Some(lo.clone()), leaf.next);
        new.keys.extend(leaf.keys.drain(at..));
        new.vals.extend(leaf.vals.drain(at..));
        leaf.next = ni;
        self.leaves.push(new);
        self.index.insert(lo, ni);
    }

    /// Entries from `lower` on, up to `upper`, in key order.
    pub(crate) fn range<'a>(
        &'a self,
        lower: Bound<&MemKeyRef>,
        upper: Bound<&'a MemKeyRef>,
    ) -> Range<'a> {
        let (leaf, pos) = match lower {
            Bound::Unbounded => (0, 0),
            Bound::Included(l) => {
                let li = self.find_leaf(&l.0);
                let keys = &self.leaves[li as usize].keys;
                let pos = keys.partition_point(|e| compare(e.as_slice(), &l.0) == Ordering::Less);
                (li, pos)
            }
            Bound::Excluded(l) => {
                let li = self.find_leaf(&l.0);
                let keys = &self.leaves[li as usize].keys;
                let pos =
                    keys.partition_point(|e| compare(e.as_slice(), &l.0) != Ordering::Greater);
                (li, pos)
            }
        };
        Range {
            map: self,
            leaf,
            pos,
            upper,
        }
    }
}

impl LeafMap {
    /// Appends clones of up to `n` entries of [`LeafMap::range`]`(lower, upper)` to `out`, a
    /// leaf's run at a time: `upper` is compared once per leaf instead of once per entry (the
    /// per-entry check and step of [`Range`] were ~60 instructions of every record a memtable
    /// scan copied).
    pub(crate) fn copy_range(
        &self,
        lower: Bound<&MemKeyRef>,
        upper: Bound<&MemKeyRef>,
        n: usize,
        out: &mut Vec<(MemKey, Bytes)>,
    ) {
        let start = self.range(lower, upper);
        let (mut li, mut pos, mut left) = (start.leaf, start.pos, n);
        while li != NONE && left > 0 {
            let leaf = &self.leaves[li as usize];
            let keys = leaf.keys.get(pos..).unwrap_or(&[]);
            let mut take = keys.len().min(left);
            let ends_here = keys[..take].last().is_some_and(|k| past(k, upper));
            if ends_here {
                take = keys[..take].partition_point(|k| !past(k, upper));
            }
            let vals = &leaf.vals[pos..pos + take];
            out.extend(
                keys[..take]
                    .iter()
                    .zip(vals)
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            if ends_here {
                return;
            }
            left -= take;
            li = leaf.next;
            pos = 0;
        }
    }
}

/// True when `k` is above `upper`.
#[inline]
fn past(k: &MemKey, upper: Bound<&MemKeyRef>) -> bool {
    match upper {
        Bound::Unbounded => false,
        Bound::Included(u) => compare(k.as_slice(), &u.0) == Ordering::Greater,
        Bound::Excluded(u) => compare(k.as_slice(), &u.0) != Ordering::Less,
    }
}

/// Iterator of [`LeafMap::range`].
pub(crate) struct Range<'a> {
    map: &'a LeafMap,
    leaf: u32,
    pos: usize,
    upper: Bound<&'a MemKeyRef>,
}

impl<'a> Iterator for Range<'a> {
    type Item = (&'a MemKey, &'a Bytes);

    fn next(&mut self) -> Option<Self::Item> {
        while self.leaf != NONE {
            let leaf = &self.map.leaves[self.leaf as usize];
            let Some(k) = leaf.keys.get(self.pos) else {
                self.leaf = leaf.next;
                self.pos = 0;
                continue;
            };
            if past(k, self.upper) {
                self.leaf = NONE;
                return None;
            }
            let v = &leaf.vals[self.pos];
            self.pos += 1;
            return Some((k, v));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Kind;

    // xorshift: deterministic keys without a dev-dependency.
    fn rng(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    fn key(user: u64, long: bool, seq: u64) -> MemKey {
        let mut u = b"slot-prefix-common-".to_vec();
        if long {
            u.extend_from_slice(&[b'x'; 40]);
        }
        u.extend_from_slice(&user.to_be_bytes());
        MemKey::new(&u, seq, Kind::Put)
    }

    fn bound(s: &mut u64, model: &[MemKey]) -> Bound<MemKey> {
        let k = if model.is_empty() || rng(s).is_multiple_of(3) {
            key(rng(s) % 3000, rng(s).is_multiple_of(2), rng(s) % 50)
        } else {
            model[(rng(s) % model.len() as u64) as usize].clone()
        };
        match rng(s) % 3 {
            0 => Bound::Unbounded,
            1 => Bound::Included(k),
            _ => Bound::Excluded(k),
        }
    }

    #[test]
    fn matches_a_btreemap_under_mixed_insert_orders() {
        for seed in 1..=4u64 {
            let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut m = LeafMap::new();
            let mut model = BTreeMap::new();
            for step in 0..6000u64 {
                // Phases: ascending, descending, random, and repeats (equal keys).
                let (user, seq) = match (step / 500) % 4 {
                    0 => (step, 1),
                    1 => (100_000 - step, 2),
                    2 => (rng(&mut s) % 3000, rng(&mut s) % 50),
                    _ => (rng(&mut s) % 40, rng(&mut s) % 3),
                };
                let k = key(user, rng(&mut s).is_multiple_of(5), seq);
                let v = Bytes::from(step.to_string());
                m.insert(k.clone(), v.clone());
                model.insert(k, v);
                assert_eq!(m.len(), model.len());
                if step.is_multiple_of(251) {
                    let keys: Vec<MemKey> = model.keys().cloned().collect();
                    for _ in 0..20 {
                        let (lo, hi) = (bound(&mut s, &keys), bound(&mut s, &keys));
                        let lo_r = lo.as_ref().map(|k| MemKeyRef::new(k.as_slice()));
                        let hi_r = hi.as_ref().map(|k| MemKeyRef::new(k.as_slice()));
                        let got: Vec<_> = m.range(lo_r, hi_r).collect();
                        let want: Vec<_> = model
                            .iter()
                            .filter(|(k, _)| {
                                let above = match lo_r {
                                    Bound::Unbounded => true,
                                    Bound::Included(l) => {
                                        compare(k.as_slice(), &l.0) != Ordering::Less
                                    }
                                    Bound::Excluded(l) => {
                                        compare(k.as_slice(), &l.0) == Ordering::Greater
                                    }
                                };
                                let below = match hi_r {
                                    Bound::Unbounded => true,
                                    Bound::Included(u) => {
                                        compare(k.as_slice(), &u.0) != Ordering::Greater
                                    }
                                    Bound::Excluded(u) => {
                                        compare(k.as_slice(), &u.0) == Ordering::Less
                                    }
                                };
                                above && below
                            })
                            .collect();
                        assert_eq!(got.len(), want.len(), "seed {seed} step {step}");
                        for ((gk, gv), (wk, wv)) in got.iter().zip(&want) {
                            assert_eq!(gk.as_slice(), wk.as_slice());
                            assert_eq!(gv, wv);
                        }
                        // The batched copy returns the same entries, cut at its limit.
                        let limit = (rng(&mut s) % 200) as usize;
                        let mut copied = Vec::new();
                        m.copy_range(lo_r, hi_r, limit, &mut copied);
                        assert_eq!(
                            copied.len(),
                            want.len().min(limit),
                            "seed {seed} step {step}"
                        );
                        for ((ck, cv), (wk, wv)) in copied.iter().zip(&want) {
                            assert_eq!(ck.as_slice(), wk.as_slice());
                            assert_eq!(cv, *wv);
                        }
                    }
                }
            }
            let all: Vec<_> = m.range(Bound::Unbounded, Bound::Unbounded).collect();
            assert!(all
                .iter()
                .map(|(k, _)| k.as_slice())
                .eq(model.keys().map(|k| k.as_slice())));
            assert!(all.iter().map(|(_, v)| *v).eq(model.values()));
        }
    }

    #[test]
    fn empty_map_and_ranges_past_the_end() {
        let mut m = LeafMap::new();
        assert!(m.is_empty());
        assert_eq!(m.range(Bound::Unbounded, Bound::Unbounded).count(), 0);
        for i in 0..200 {
            m.insert(key(i, false, 1), Bytes::new());
        }
        let last = key(199, false, 1);
        let r = MemKeyRef::new(last.as_slice());
        assert_eq!(m.range(Bound::Excluded(r), Bound::Unbounded).count(), 0);
        assert_eq!(m.range(Bound::Included(r), Bound::Unbounded).count(), 1);
        let mut d = LeafMap::new();
        for i in (0..200).rev() {
            d.insert(key(i, false, 1), Bytes::new());
        }
        assert!(
            d.leaves.len() <= 200 / LEAF + 2,
            "{} leaves",
            d.leaves.len()
        );
        let got: Vec<_> = d.range(Bound::Unbounded, Bound::Unbounded).collect();
        assert_eq!(got.len(), 200);
        assert!(got
            .windows(2)
            .all(|w| compare(w[0].0.as_slice(), w[1].0.as_slice()).is_lt()));
        // Ascending and descending inserts leave full leaves behind them.
        assert!(
            m.leaves.len() <= 200 / LEAF + 1,
            "{} leaves",
            m.leaves.len()
        );
    }
}
