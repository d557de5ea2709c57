//! Generated histories: from real sequential executions with random overlaps (linearizable
//! by construction), with perturbed replies or timings, compared with stateright's
//! `LinearizabilityTester`; and a large history for speed.

use crate::{check, render_text, History, Op, Operation, Outcome, Ret, Verdict};
use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};
use std::collections::BTreeMap;
use std::time::Instant;

/// An independent reference for stateright: all keys in one map, Redis semantics written
/// directly on bytes.
#[derive(Clone, Debug, Default, PartialEq, Hash)]
struct Kv(BTreeMap<Bytes, Bytes>);

fn redis_int(b: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(b).ok()?;
    let n: i64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

impl SequentialSpec for Kv {
    type Op = (Bytes, Op);
    type Ret = Ret;
    fn invoke(&mut self, (key, op): &(Bytes, Op)) -> Ret {
        match op {
            Op::Set(v) => {
                self.0.insert(key.clone(), v.clone());
                Ret::Ok
            }
            Op::SetGet(v) => Ret::Value(self.0.insert(key.clone(), v.clone())),
            Op::Get => Ret::Value(self.0.get(key).cloned()),
            Op::Incr => {
                let cur = match self.0.get(key) {
                    None => Some(0),
                    Some(b) => redis_int(b),
                };
                match cur.and_then(|n| n.checked_add(1)) {
                    Some(n) => {
                        self.0.insert(key.clone(), Bytes::from(n.to_string()));
                        Ret::Int(n)
                    }
                    None => Ret::NotInteger,
                }
            }
            Op::Del => Ret::Int(i64::from(self.0.remove(key).is_some())),
        }
    }
}

/// stateright's verdict: events in time order (calls before returns at equal times, as the
/// checker does); completed ops on their client's thread, each indeterminate op on a thread
/// of its own that stays in flight.
fn stateright_linearizable(h: &History) -> bool {
    let mut events: Vec<(u64, u8, usize)> = Vec::new();
    for (i, o) in h.ops.iter().enumerate() {
        events.push((o.invoke, 0, i));
        if o.ret().is_some() {
            events.push((o.completion(), 1, i));
        }
    }
    events.sort_unstable();
    let thread = |i: usize, o: &Operation| match o.outcome {
        Outcome::Returned { .. } => o.client,
        Outcome::Indeterminate => 1_000_000 + i as u64,
    };
    let mut t = LinearizabilityTester::new(Kv::default());
    for (_, kind, i) in events {
        let o = &h.ops[i];
        let r = if kind == 0 {
            t.on_invoke(thread(i, o), (o.key.clone(), o.op.clone()))
                .map(|_| ())
        } else {
            let ret = o.ret().cloned().unwrap_or(Ret::Ok);
            t.on_return(thread(i, o), ret).map(|_| ())
        };
        if let Err(e) = r {
            panic!("malformed generated history: {e}\n{}", render_text(h));
        }
    }
    t.is_consistent()
}

/// One planned operation: who, where, what, whether it gets no reply (and whether it still
/// takes effect), and how far its interval stretches around its linearization point.
#[derive(Clone, Debug)]
struct Step {
    client: u64,
    key: u8,
    kind: u8,
    indeterminate: bool,
    took_effect: bool,
    before: u64,
    after: u64,
}

/// A step with a kind drawn from `kinds` (0 SET, 1 SET GET, 2 GET, 3 INCR, 4 DEL) and no reply
/// `indeterminate_pct` percent of the time.
fn step_strategy(
    clients: u64,
    keys: u8,
    kinds: &'static [u8],
    indeterminate_pct: u8,
) -> impl Strategy<Value = Step> {
    (
        0..clients,
        0..keys,
        proptest::sample::select(kinds),
        0..100u8,
        any::<bool>(),
        0..300u64,
        0..300u64,
    )
        .prop_map(
            move |(client, key, kind, roll, took_effect, before, after)| Step {
                client,
                key,
                kind,
                indeterminate: roll < indeterminate_pct,
                took_effect,
                before,
                after,
            },
        )
}

/// Executes the plan sequentially (op i takes effect at time `gap * (i + 1)`), then gives each
/// op an interval around that point that keeps each client's ops apart.
fn build(plan: &[Step], gap: u64) -> History {
    let mut state = Kv::default();
    let lin = |i: usize| gap * (i as u64 + 1);
    let mut ops = Vec::with_capacity(plan.len());
    for (i, s) in plan.iter().enumerate() {
        let key = Bytes::from(format!("k{}", s.key));
        // Unique values; every other one an integer so INCR has something to count from.
        let value = if i % 2 == 0 {
            Bytes::from((10 * i as i64 + 5).to_string())
        } else {
            Bytes::from(format!("s{i}"))
        };
        let op = match s.kind {
            0 => Op::Set(value),
            1 => Op::SetGet(value),
            2 => Op::Get,
            3 => Op::Incr,
            _ => Op::Del,
        };
        let applied = !s.indeterminate || s.took_effect;
        let ret = applied.then(|| state.invoke(&(key.clone(), op.clone())));
        ops.push((s, key, op, ret));
    }
    let mut last_end: BTreeMap<u64, u64> = BTreeMap::new();
    let mut h = History::new();
    for (i, (s, key, op, ret)) in ops.into_iter().enumerate() {
        let floor = last_end.get(&s.client).map_or(0, |e| e + 1);
        let invoke = lin(i).saturating_sub(s.before).max(floor);
        let next_own = plan[i + 1..]
            .iter()
            .position(|n| n.client == s.client)
            .map_or(u64::MAX, |p| lin(i + 1 + p));
        if s.indeterminate {
            last_end.insert(s.client, invoke);
            h.push_indeterminate(s.client, key, op, invoke);
        } else {
            let done = (lin(i) + s.after).min(next_own - 1);
            last_end.insert(s.client, done);
            h.push_ok(s.client, key, op, invoke, done, ret.unwrap_or(Ret::Ok));
        }
    }
    h
}

/// Changes one completed op: another reply, or a shorter interval (which may move it out of
/// reach of its linearization point).
fn perturb(h: &mut History, which: Index, how: u8) {
    let completed: Vec<usize> = (0..h.ops.len())
        .filter(|&i| h.ops[i].ret().is_some())
        .collect();
    if completed.is_empty() {
        return;
    }
    let o = &mut h.ops[completed[which.index(completed.len())]];
    let Outcome::Returned { at, ret } = &mut o.outcome else {
        return;
    };
    let other = |n: u64| Bytes::from((10 * n + 5).to_string());
    match (how, &o.op, ret.clone()) {
        (0, _, _) => *at = o.invoke + (*at - o.invoke) / 4,
        (_, Op::Get | Op::SetGet(_), Ret::Value(None)) => {
            *ret = Ret::Value(Some(other(u64::from(how))))
        }
        (1, Op::Get | Op::SetGet(_), Ret::Value(Some(_))) => *ret = Ret::Value(None),
        (_, Op::Get | Op::SetGet(_), Ret::Value(Some(_))) => {
            *ret = Ret::Value(Some(other(u64::from(how) - 2)))
        }
        (1, Op::Incr, Ret::Int(n)) => *ret = Ret::Int(n + 1),
        (2, Op::Incr, Ret::Int(n)) => *ret = Ret::Int(n - 1),
        (_, Op::Incr, Ret::Int(_)) => *ret = Ret::NotInteger,
        (_, Op::Incr, _) => *ret = Ret::Int(1),
        (_, Op::Del, Ret::Int(n)) => *ret = Ret::Int(1 - n),
        _ => *at = o.invoke + (*at - o.invoke) / 4,
    }
}

/// Case count: `default`, or `LIN_CASES` for a longer run.
fn cases(default: u32) -> u32 {
    std::env::var("LIN_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn plan_strategy() -> impl Strategy<Value = Vec<Step>> {
    (1..=3u64, 1..=2u8).prop_flat_map(|(clients, keys)| {
        proptest::collection::vec(step_strategy(clients, keys, &[0, 1, 2, 3, 4], 25), 1..=8)
    })
}

/// One key, mostly INCRs, many without a reply: chains of indeterminate INCRs.
fn incr_plan_strategy() -> impl Strategy<Value = Vec<Step>> {
    (1..=3u64).prop_flat_map(|clients| {
        proptest::collection::vec(step_strategy(clients, 1, &[0, 2, 3, 3, 3], 40), 1..=8)
    })
}

#[test]
fn executed_histories_are_linearizable_for_both_checkers() {
    let mut runner = TestRunner::new(Config::with_cases(cases(1500)));
    runner
        .run(&plan_strategy(), |plan| {
            let h = build(&plan, 100);
            let ours = check(&h);
            prop_assert_eq!(&ours, &Verdict::Ok, "{}\n{}", ours, render_text(&h));
            prop_assert!(
                stateright_linearizable(&h),
                "stateright disagrees\n{}",
                render_text(&h)
            );
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Runs perturbed histories from `plans` through both checkers; returns how many stateright
/// found linearizable and not.
fn compare_perturbed(plans: impl Strategy<Value = Vec<Step>>, n: u32) -> (u32, u32) {
    let mut runner = TestRunner::new(Config::with_cases(n));
    let verdicts = std::cell::Cell::new((0u32, 0u32));
    runner
        .run(&(plans, any::<Index>(), 0..4u8), |(plan, which, how)| {
            let mut h = build(&plan, 100);
            perturb(&mut h, which, how);
            let ours = check(&h);
            prop_assert!(!matches!(ours, Verdict::Unknown { .. }), "{}", ours);
            let theirs = stateright_linearizable(&h);
            prop_assert_eq!(ours.is_ok(), theirs, "ours: {}\n{}", ours, render_text(&h));
            let (good, bad) = verdicts.get();
            verdicts.set(if theirs {
                (good + 1, bad)
            } else {
                (good, bad + 1)
            });
            Ok::<(), TestCaseError>(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    verdicts.get()
}

#[test]
fn perturbed_histories_get_stateright_verdict() {
    let n = cases(3000);
    let (good, bad) = compare_perturbed(plan_strategy(), n);
    println!("perturbed: {good} linearizable, {bad} not");
    // Both outcomes must be well represented, or the comparison proves little.
    assert!(
        good > n / 10 && bad > n / 10,
        "{good} linearizable, {bad} not"
    );
}

#[test]
fn perturbed_incr_chains_get_stateright_verdict() {
    let n = cases(3000);
    let (good, bad) = compare_perturbed(incr_plan_strategy(), n);
    println!("INCR chains: {good} linearizable, {bad} not");
    assert!(
        good > n / 10 && bad > n / 10,
        "{good} linearizable, {bad} not"
    );
}

/// A small deterministic generator for the large history (SplitMix64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

fn big_history(seed: u64, n: usize, clients: u64, indeterminate_per_mille: u64) -> History {
    let mut rng = Rng(seed);
    let plan: Vec<Step> = (0..n)
        .map(|_| Step {
            client: rng.below(clients),
            key: 0,
            kind: rng.below(5) as u8,
            indeterminate: rng.below(1000) < indeterminate_per_mille,
            took_effect: rng.below(2) == 0,
            // Up to ~10 ops' worth of overlap on each side.
            before: rng.below(1000),
            after: rng.below(1000),
        })
        .collect();
    build(&plan, 100)
}

/// Makes a GET among the last 50 ops read the first value ever SET: a stale read.
fn with_stale_read(h: &History) -> (History, u64) {
    let mut bad = h.clone();
    let n = bad.ops.len();
    let target = (n.saturating_sub(50)..n)
        .find(|&i| bad.ops[i].op == Op::Get && bad.ops[i].ret().is_some())
        .expect("a GET near the end");
    let first_value = bad
        .ops
        .iter()
        .find_map(|o| match &o.op {
            Op::Set(v) => Some(v.clone()),
            _ => None,
        })
        .expect("a SET");
    bad.ops[target].outcome = Outcome::Returned {
        at: bad.ops[target].completion(),
        ret: Ret::Value(Some(first_value)),
    };
    let id = bad.ops[target].id;
    (bad, id)
}

#[test]
fn ten_thousand_ops_on_one_key_check_quickly() {
    let h = big_history(7, 10_000, 10, 2);
    let started = Instant::now();
    let verdict = check(&h);
    println!(
        "10,000 ops, 10 clients, 1 key ({} indeterminate): {} in {:?}",
        h.ops.len() - h.completed(),
        if verdict.is_ok() {
            "linearizable"
        } else {
            "NOT linearizable"
        },
        started.elapsed()
    );
    assert_eq!(verdict, Verdict::Ok);

    // Refuting is the expensive direction (every order must fail): a smaller history with
    // one stale read near the end is found, and the report points at that read.
    let (bad, target) = with_stale_read(&big_history(7, 2_000, 10, 0));
    let started = Instant::now();
    let verdict = check(&bad);
    println!(
        "2,000 ops with a stale read at #{target}: found in {:?}",
        started.elapsed()
    );
    match verdict {
        Verdict::Violation(v) => {
            println!("{v}");
            assert_eq!(v.culprit.id, target);
        }
        other => panic!("expected a violation, got {other}"),
    }
}

/// Timings over sizes and indeterminate rates:
/// `cargo test --release -p pinnacle-linearizability scaling -- --ignored --nocapture`
#[test]
#[ignore]
fn scaling() {
    for (n, clients, indet) in [
        (2_000, 10, 0),
        (2_000, 10, 2),
        (10_000, 10, 0),
        (10_000, 10, 2),
        (10_000, 10, 10),
        (100_000, 10, 0),
        (100_000, 10, 2),
    ] {
        let h = big_history(7, n, clients, indet);
        let started = Instant::now();
        let good = check(&h);
        let t_good = started.elapsed();
        let (bad, _) = with_stale_read(&h);
        let started = Instant::now();
        let refuted = check(&bad);
        let kind = |v: &Verdict| match v {
            Verdict::Ok => "ok",
            Verdict::Violation(_) => "violation",
            Verdict::Unknown { .. } => "unknown",
        };
        println!(
            "{n:>7} ops {clients} clients {:>3} indeterminate: good {} in {t_good:?}; stale read {} in {:?}",
            h.ops.len() - h.completed(),
            kind(&good),
            kind(&refuted),
            started.elapsed()
        );
    }
}
