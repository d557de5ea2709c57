//! Wing–Gong/Lowe search over one key's operations, as in Porcupine: a linked list of call and
//! return events in time order; linearize one call at a time, memoise (linearized set, state),
//! and backtrack when a return is reached whose call is not linearized yet.

use crate::model::{step, MOp, MRet, State};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// One operation of a key, normalised for the search.
#[derive(Clone, Debug)]
pub(crate) struct KeyOp {
    /// Index of the operation in the caller's slice of the history.
    pub index: usize,
    pub call: u64,
    /// `u64::MAX` for an indeterminate operation.
    pub ret_at: u64,
    pub op: MOp,
    pub ret: MRet,
}

/// What a search found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Linearizable,
    /// No order exists. `partial` is the longest prefix of an order the search built
    /// (positions in the `ops` slice), when asked for. `furthest` is the op whose reply is the
    /// latest at which the search got stuck: every op that replied before it was ordered
    /// then, so the history up to just before that reply is linearizable.
    NotLinearizable {
        partial: Vec<usize>,
        furthest: Option<usize>,
    },
    /// The step budget ran out first.
    Budget,
}

/// The event list: node 0 is the head sentinel, node `2n + 1` the tail sentinel; the
/// nodes between are the events sorted by time.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each node: the op position, and whether it is the call (else the return).
    op_of: Vec<usize>,
    is_call: Vec<bool>,
    /// For each op position: its call node and return node.
    call_node: Vec<usize>,
    ret_node: Vec<usize>,
}

impl Events {
    fn new(ops: &[KeyOp]) -> Self {
        // (time, kind, op): at equal times calls sort before returns, so operations that touch
        // are concurrent (Porcupine's rule); the op position breaks remaining ties.
        let mut evs: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, o) in ops.iter().enumerate() {
            evs.push((o.call, 0, i));
            evs.push((o.ret_at, 1, i));
        }
        evs.sort_unstable();
        let nodes = evs.len() + 2;
        let mut e = Events {
            next: (1..=nodes).collect(),
            prev: (0..nodes).map(|k| k.saturating_sub(1)).collect(),
            op_of: vec![usize::MAX; nodes],
            is_call: vec![false; nodes],
            call_node: vec![0; ops.len()],
            ret_node: vec![0; ops.len()],
        };
        for (k, &(_, kind, i)) in evs.iter().enumerate() {
            let node = k + 1;
            e.op_of[node] = i;
            e.is_call[node] = kind == 0;
            if kind == 0 {
                e.call_node[i] = node;
            } else {
                e.ret_node[i] = node;
            }
        }
        e
    }

    fn tail(&self) -> usize {
        self.next.len() - 1
    }

    fn unlink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = x;
        self.prev[x] = p;
    }

    fn relink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = n;
        self.prev[x] = n;
    }

    /// Removes op `i`'s call and return (dancing-links style: the nodes keep their pointers).
    fn lift(&mut self, i: usize) {
        self.unlink(self.call_node[i]);
        self.unlink(self.ret_node[i]);
    }

    /// Undoes `lift`, in reverse order.
    fn unlift(&mut self, i: usize) {
        self.relink(self.ret_node[i]);
        self.relink(self.call_node[i]);
    }
}

/// The set of linearized op positions, with the first completed op not in it (`low`) and an
/// upper bound of the positions in it (`high`), so it packs small.
struct Bits {
    words: Vec<u64>,
    /// Positions of indeterminate ops, ascending: open ones must not pin `low`.
    indet: Vec<usize>,
    is_indet: Vec<bool>,
    low: usize,
    high: usize,
}

impl Bits {
    fn new(ops: &[KeyOp]) -> Self {
        let is_indet: Vec<bool> = ops.iter().map(|o| o.ret == MRet::Any).collect();
        let mut b = Bits {
            words: vec![0; ops.len().div_ceil(64) + 1],
            indet: (0..ops.len()).filter(|&i| is_indet[i]).collect(),
            is_indet,
            low: 0,
            high: 0,
        };
        b.advance();
        b
    }
    fn contains(&self, i: usize) -> bool {
        self.words[i / 64] & (1 << (i % 64)) != 0
    }
    fn advance(&mut self) {
        while self.contains(self.low) || self.is_indet.get(self.low) == Some(&true) {
            self.low += 1;
        }
    }
    fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
        self.high = self.high.max(i);
        self.advance();
    }
    fn clear(&mut self, i: usize) {
        self.words[i / 64] &= !(1 << (i % 64));
        if !self.is_indet[i] {
            self.low = self.low.min(i);
        }
    }
    /// Every completed position below `low`, plus the listed ones. The search orders ops
    /// roughly by position, so this is a handful of numbers where a bitset would be n bits.
    fn pack(&self, completed: usize) -> Packed {
        let mut extra: Vec<u32> = self
            .indet
            .iter()
            .take_while(|&&i| i < self.low)
            .filter(|&&i| self.contains(i))
            .map(|&i| i as u32)
            .collect();
        for w in self.low / 64..=self.high / 64 {
            let mut word = self.words[w];
            while word != 0 {
                let b = w * 64 + word.trailing_zeros() as usize;
                if b > self.low {
                    extra.push(b as u32);
                }
                word &= word - 1;
            }
        }
        Packed {
            low: self.low as u32,
            completed: completed as u32,
            extra: extra.into_boxed_slice(),
        }
    }
}

/// A memoised linearized set: the completed positions below `low` and `extra`; `completed` of
/// them completed.
struct Packed {
    low: u32,
    completed: u32,
    extra: Box<[u32]>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn state_hash(s: &State) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Memo of visited configurations (linearized set, state), bucketed by a hash of the
/// completed ops linearized and the state.
///
/// Indeterminate ops are optional and unconstrained, so a configuration that used a superset
/// of another's indeterminate ops, with the same completed ops and state, can do nothing the
/// other cannot: it is dominated, and pruned like an exact repeat.
#[derive(Default)]
struct Memo {
    buckets: HashMap<u64, Vec<(Packed, State)>>,
}

impl Memo {
    /// Inserts the configuration (`bits`, of which `completed` completed ops, and `state`);
    /// false when it, or one that dominates it, was seen already.
    fn insert(&mut self, hash: u64, bits: &Bits, completed: usize, state: &State) -> bool {
        // `seen` dominates us when its set is a subset of ours with the same completed ops:
        // subset via `low` (every completed op below ours is in ours) and `extra`, then equal
        // completed counts make the completed parts equal.
        let dominated_by = |seen: &Packed| {
            seen.completed as usize == completed
                && seen.low as usize <= bits.low
                && seen.extra.iter().all(|&i| bits.contains(i as usize))
        };
        let bucket = self.buckets.entry(hash).or_default();
        if bucket.iter().any(|(p, s)| s == state && dominated_by(p)) {
            return false;
        }
        bucket.push((bits.pack(completed), state.clone()));
        true
    }
}

/// A frame of the search stack.
enum Frame {
    /// The op was linearized; the state before it.
    Linearized(usize, State),
    /// The indeterminate op was passed over without linearizing it; on backtrack, try it.
    Skipped(usize),
}

/// The search's mutable configuration.
struct Search<'a> {
    ops: &'a [KeyOp],
    ev: Events,
    zobrist: Vec<u64>,
    bits: Bits,
    /// Zobrist hash of the completed ops linearized.
    hash: u64,
    memo: Memo,
    state: State,
    stack: Vec<Frame>,
    /// Completed ops in all, and not linearized yet.
    completed: usize,
    remaining: usize,
    linearized: usize,
    best: Vec<usize>,
    track_partial: bool,
}

impl Search<'_> {
    /// Linearizes op `i` next if the model allows it and the configuration is new.
    fn try_linearize(&mut self, i: usize) -> bool {
        let Some(next_state) = step(&self.state, &self.ops[i].op, &self.ops[i].ret) else {
            return false;
        };
        let completed = self.ops[i].ret != MRet::Any;
        let h = if completed {
            self.hash ^ self.zobrist[i]
        } else {
            self.hash
        };
        self.bits.set(i);
        let done = self.completed - self.remaining + usize::from(completed);
        if !self
            .memo
            .insert(h ^ state_hash(&next_state), &self.bits, done, &next_state)
        {
            self.bits.clear(i);
            return false;
        }
        self.hash = h;
        let before = std::mem::replace(&mut self.state, next_state);
        self.stack.push(Frame::Linearized(i, before));
        self.ev.lift(i);
        self.remaining -= usize::from(completed);
        self.linearized += 1;
        if self.track_partial && self.linearized > self.best.len() {
            self.best = self
                .stack
                .iter()
                .filter_map(|f| match f {
                    Frame::Linearized(i, _) => Some(*i),
                    Frame::Skipped(_) => None,
                })
                .collect();
        }
        true
    }

    /// Whether ordering indeterminate op `j` next can explain anything.
    ///
    /// Any linearization can be rewritten so that every run of indeterminate ops it keeps is
    /// the first op then only INCRs, right before a completed op that could not follow the
    /// state before the run but can follow the run: if that op could follow either state, it
    /// is a blind write (drop the run), a read (move the run after it) or an INCR that proves
    /// the run changed nothing (drop it). The same holds for every suffix of a run. So `j` is
    /// worth trying only if some candidate completed op fails now and succeeds after `j`
    /// plus up to as many INCRs as there are other open indeterminate INCRs.
    fn useful(&self, j: usize) -> bool {
        let Some(after) = step(&self.state, &self.ops[j].op, &MRet::Any) else {
            return false;
        };
        if after == self.state {
            return false;
        }
        let tail = self.ev.tail();
        let window = || {
            let mut e = self.ev.next[0];
            std::iter::from_fn(move || {
                if e == tail || !self.ev.is_call[e] {
                    return None;
                }
                let i = self.ev.op_of[e];
                e = self.ev.next[e];
                Some(i)
            })
        };
        let incrs = window()
            .filter(|&i| i != j && self.ops[i].ret == MRet::Any && self.ops[i].op == MOp::Incr)
            .count();
        let mut reachable = vec![after];
        for _ in 0..incrs {
            let last = &reachable[reachable.len() - 1];
            match step(last, &MOp::Incr, &MRet::Any) {
                Some(next) if next != *last => reachable.push(next),
                _ => break,
            }
        }
        window().any(|i| {
            let c = &self.ops[i];
            c.ret != MRet::Any
                && step(&self.state, &c.op, &c.ret).is_none()
                && reachable.iter().any(|s| step(s, &c.op, &c.ret).is_some())
        })
    }

    /// Undoes frames until an alternative is found; returns the entry to continue from, or
    /// None when the stack is empty (no linearization).
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            match self.stack.pop()? {
                Frame::Linearized(j, before) => {
                    self.bits.clear(j);
                    if self.ops[j].ret != MRet::Any {
                        self.hash ^= self.zobrist[j];
                        self.remaining += 1;
                    }
                    self.linearized -= 1;
                    self.state = before;
                    self.ev.unlift(j);
                    return Some(self.ev.next[self.ev.call_node[j]]);
                }
                // Everything after passing over it is explored; now linearize it here, if that
                // can matter. (Passing over it again would repeat that exploration.)
                Frame::Skipped(j) => {
                    if self.useful(j) && self.try_linearize(j) {
                        return Some(self.ev.next[0]);
                    }
                }
            }
        }
    }
}

/// Searches for a linearization of `ops` starting from an absent key, within `budget` steps.
/// `steps` accumulates the steps taken.
///
/// Indeterminate ops are tried "not yet" before "now", so configurations without them are
/// memoised first and dominate the ones with them; the search succeeds as soon as every
/// completed op is ordered (the rest may never have taken effect).
pub(crate) fn search(ops: &[KeyOp], budget: u64, track_partial: bool, steps: &mut u64) -> Outcome {
    let n = ops.len();
    let completed = ops.iter().filter(|o| o.ret != MRet::Any).count();
    let ev = Events::new(ops);
    let tail = ev.tail();
    let mut s = Search {
        ops,
        ev,
        zobrist: (0..n as u64).map(splitmix).collect(),
        bits: Bits::new(ops),
        hash: 0,
        memo: Memo::default(),
        state: None,
        stack: Vec::new(),
        completed,
        remaining: completed,
        linearized: 0,
        best: Vec::new(),
        track_partial,
    };
    let mut taken = 0u64;
    let mut furthest_node: Option<usize> = None;
    let mut entry = s.ev.next[0];
    while s.remaining > 0 {
        taken += 1;
        if taken > budget {
            *steps += taken;
            return Outcome::Budget;
        }
        let is_call = entry != tail && s.ev.is_call[entry];
        if is_call {
            let i = s.ev.op_of[entry];
            if ops[i].ret == MRet::Any {
                s.stack.push(Frame::Skipped(i));
                entry = s.ev.next[entry];
            } else if s.try_linearize(i) {
                entry = s.ev.next[0];
            } else {
                entry = s.ev.next[entry];
            }
            continue;
        }
        // A return whose call is not linearized (the tail cannot come first while completed
        // ops remain, as their returns are in the list): undo the last choice.
        if entry != tail {
            furthest_node = furthest_node.max(Some(entry));
        }
        match s.backtrack() {
            Some(e) => entry = e,
            None => {
                *steps += taken;
                return Outcome::NotLinearizable {
                    partial: s.best,
                    furthest: furthest_node.map(|node| s.ev.op_of[node]),
                };
            }
        }
    }
    *steps += taken;
    Outcome::Linearizable
}
