//! The checker: partition a history by key, search each key, explain a failure.

use crate::history::{History, Operation};
use crate::model::{well_formed, MOp, MRet, Value};
use crate::search::{search, KeyOp, Outcome};
use bytes::Bytes;
use std::collections::BTreeMap;

/// Default search steps allowed per key before answering `Unknown`.
pub const DEFAULT_STEP_BUDGET: u64 = 10_000_000;

/// How many operations completed just before the culprit a violation report shows.
const CONTEXT_BEFORE: usize = 4;

/// The checker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history is linearizable.
    Ok,
    /// One key's history is not (the first such key in key order).
    Violation(Box<Violation>),
    /// No violation found, but these keys ran out of steps.
    Unknown {
        /// The keys whose search hit the budget.
        keys: Vec<Bytes>,
    },
}

impl Verdict {
    /// True for `Verdict::Ok`.
    pub fn is_ok(&self) -> bool {
        *self == Verdict::Ok
    }

    /// True for `Verdict::Violation`.
    pub fn is_violation(&self) -> bool {
        matches!(self, Verdict::Violation(_))
    }
}

/// A readable account of a non-linearizable key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: Bytes,
    /// Why, in words.
    pub reason: String,
    /// The operation whose reply no ordering explains: the history is linearizable up to just
    /// before that reply arrived, and not after (the smallest failing prefix).
    pub culprit: Operation,
    /// The culprit, the operations overlapping it, the last few completed before it and the
    /// writer of the value it read; sorted by invoke time.
    pub window: Vec<Operation>,
    /// Op ids of the longest order the search could build for the failing prefix.
    pub partial: Vec<u64>,
}

/// Checks histories; `check` uses the defaults.
#[derive(Clone, Debug)]
pub struct Checker {
    step_budget: u64,
}

impl Default for Checker {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks `history` with the default step budget.
pub fn check(history: &History) -> Verdict {
    Checker::new().check(history)
}

impl Checker {
    /// A checker with `DEFAULT_STEP_BUDGET`.
    pub fn new() -> Self {
        Checker {
            step_budget: DEFAULT_STEP_BUDGET,
        }
    }

    /// Sets the search steps allowed per key.
    pub fn step_budget(mut self, steps: u64) -> Self {
        self.step_budget = steps.max(1);
        self
    }

    /// Checks every key; a violation wins over `Unknown`.
    pub fn check(&self, history: &History) -> Verdict {
        let mut by_key: BTreeMap<&Bytes, Vec<&Operation>> = BTreeMap::new();
        for op in &history.ops {
            by_key.entry(&op.key).or_default().push(op);
        }
        let mut unknown = Vec::new();
        for (key, ops) in by_key {
            match self.check_key(&ops) {
                KeyVerdict::Ok => {}
                KeyVerdict::Unknown => unknown.push(key.clone()),
                KeyVerdict::Violation(v) => return Verdict::Violation(v),
            }
        }
        if unknown.is_empty() {
            Verdict::Ok
        } else {
            Verdict::Unknown { keys: unknown }
        }
    }

    fn check_key(&self, ops: &[&Operation]) -> KeyVerdict {
        let mut key_ops = Vec::with_capacity(ops.len());
        for (index, o) in ops.iter().enumerate() {
            // An indeterminate read constrains nothing.
            if o.ret().is_none() && o.op.is_read_only() {
                continue;
            }
            let op = MOp::from(&o.op);
            let ret = o.ret().map_or(MRet::Any, MRet::from);
            let bad = if !well_formed(&op, &ret) {
                Some("this command cannot give this reply")
            } else if o.completion() < o.invoke {
                Some("the reply is recorded before the invoke")
            } else {
                None
            };
            if let Some(reason) = bad {
                return KeyVerdict::Violation(Box::new(Violation {
                    key: o.key.clone(),
                    reason: format!("{}: {reason}", o),
                    culprit: (*o).clone(),
                    window: vec![(*o).clone()],
                    partial: Vec::new(),
                }));
            }
            key_ops.push(KeyOp {
                index,
                call: o.invoke,
                ret_at: o.completion(),
                op,
                ret,
            });
        }
        let mut steps = 0;
        let r = search(&key_ops, self.step_budget, false, &mut steps);
        match r {
            Outcome::Linearizable => KeyVerdict::Ok,
            Outcome::Budget => KeyVerdict::Unknown,
            Outcome::NotLinearizable { furthest, .. } => {
                KeyVerdict::Violation(Box::new(self.explain(ops, &key_ops, furthest)))
            }
        }
    }

    /// Finds the smallest failing prefix (linearizability is prefix-closed) and builds the
    /// report around its last reply. The refuting search already proves every prefix before
    /// its furthest stuck reply linearizable, so the search gallops up from there.
    fn explain(&self, ops: &[&Operation], key_ops: &[KeyOp], furthest: Option<usize>) -> Violation {
        let mut returns: Vec<usize> = (0..key_ops.len())
            .filter(|&p| key_ops[p].ret != MRet::Any)
            .collect();
        returns.sort_by_key(|&p| (key_ops[p].ret_at, key_ops[p].index));
        if returns.is_empty() {
            // Unreachable (ops without replies constrain nothing), but never panic on input.
            let culprit = ops[key_ops.first().map_or(0, |o| o.index)];
            return Violation {
                key: culprit.key.clone(),
                reason: "no order explains the history".to_string(),
                culprit: culprit.clone(),
                window: vec![culprit.clone()],
                partial: Vec::new(),
            };
        }
        // The prefix ending at reply `j`, and the longest order found when it fails.
        let attempt = |j: usize| {
            let prefix = prefix_ops(key_ops, &key_ops[returns[j]]);
            let mut steps = 0;
            let r = search(&prefix, self.step_budget, true, &mut steps);
            match r {
                Outcome::NotLinearizable { partial, .. } => Some(
                    partial
                        .iter()
                        .map(|&p| ops[prefix[p].index].id)
                        .collect::<Vec<u64>>(),
                ),
                // Linearizable, or out of budget: not proven to fail.
                _ => None,
            }
        };
        // The whole history fails, so its last reply's prefix does (ops invoked after it
        // can only be indeterminate, and those may be ordered last).
        let mut hi = returns.len().saturating_sub(1);
        let mut lo = returns
            .iter()
            .position(|&p| Some(p) == furthest)
            .unwrap_or(0)
            .min(hi);
        let mut found: Option<(usize, Vec<u64>)> = None;
        let mut stride = 1;
        let mut probe = lo;
        while lo < hi {
            match attempt(probe) {
                Some(partial) => {
                    hi = probe;
                    found = Some((probe, partial));
                    break;
                }
                None => {
                    lo = probe + 1;
                    probe = (lo + stride).min(hi);
                    stride *= 2;
                }
            }
        }
        while lo < hi {
            let mid = (lo + hi) / 2;
            match attempt(mid) {
                Some(partial) => {
                    hi = mid;
                    found = Some((mid, partial));
                }
                None => lo = mid + 1,
            }
        }
        let partial = match found {
            Some((j, partial)) if j == hi => partial,
            _ => attempt(hi).unwrap_or_default(),
        };
        let cut = &key_ops[returns[hi]];
        let culprit = ops[cut.index];
        Violation {
            key: culprit.key.clone(),
            reason: format!(
                "no order of the operations up to the reply of #{} explains that reply",
                culprit.id
            ),
            culprit: culprit.clone(),
            window: window(ops, key_ops, cut),
            partial,
        }
    }
}

enum KeyVerdict {
    Ok,
    Unknown,
    Violation(Box<Violation>),
}

/// The history up to and including `cut`'s reply, in the event order the search uses: ops
/// invoked by then, with replies that came later made indeterminate.
fn prefix_ops(key_ops: &[KeyOp], cut: &KeyOp) -> Vec<KeyOp> {
    let cut_key = (cut.ret_at, cut.index);
    key_ops
        .iter()
        .filter(|o| o.call <= cut.ret_at)
        .map(|o| {
            let mut o = o.clone();
            if o.ret != MRet::Any && (o.ret_at, o.index) > cut_key {
                o.ret = MRet::Any;
                o.ret_at = u64::MAX;
            }
            o
        })
        .collect()
}

/// The operations a reader needs to see why `cut` fails.
fn window(ops: &[&Operation], key_ops: &[KeyOp], cut: &KeyOp) -> Vec<Operation> {
    let mut picked: Vec<usize> = Vec::new();
    // Everything in the prefix that overlaps the culprit.
    picked.extend(
        key_ops
            .iter()
            .filter(|o| o.call <= cut.ret_at && o.ret_at >= cut.call)
            .map(|o| o.index),
    );
    // The last few completed before it.
    let mut before: Vec<&KeyOp> = key_ops.iter().filter(|o| o.ret_at < cut.call).collect();
    before.sort_by_key(|o| (o.ret_at, o.index));
    picked.extend(before.iter().rev().take(CONTEXT_BEFORE).map(|o| o.index));
    // Whoever wrote the value the culprit saw.
    if let MRet::Value(Some(seen)) = &cut.ret {
        let writers = key_ops.iter().filter(|o| match &o.op {
            MOp::Set(v) | MOp::SetGet(v) => v == seen,
            MOp::Incr => matches!((seen, &o.ret), (Value::Int(n), MRet::Int(m)) if n == m),
            _ => false,
        });
        picked.extend(writers.take(2).map(|o| o.index));
    }
    picked.sort_unstable();
    picked.dedup();
    let mut out: Vec<Operation> = picked.into_iter().map(|i| ops[i].clone()).collect();
    out.sort_by_key(|o| (o.invoke, o.id));
    out
}
