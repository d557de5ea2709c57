//! Hand-written histories with known verdicts.

use crate::{check, dump, render_svg, render_text, Checker, History, Op, Ret, Verdict};
use bytes::Bytes;

fn set(v: &str) -> Op {
    Op::Set(Bytes::copy_from_slice(v.as_bytes()))
}
fn setget(v: &str) -> Op {
    Op::SetGet(Bytes::copy_from_slice(v.as_bytes()))
}
fn val(v: &str) -> Ret {
    Ret::Value(Some(Bytes::copy_from_slice(v.as_bytes())))
}
const NIL: Ret = Ret::Value(None);

/// `(client, key, op, invoke, completion or None for indeterminate, reply)`.
type Row<'a> = (u64, &'a str, Op, u64, Option<u64>, Ret);

/// Builds a history from rows.
fn hist(rows: &[Row]) -> History {
    let mut h = History::new();
    for (c, k, op, t0, t1, ret) in rows.iter().cloned() {
        let k = Bytes::copy_from_slice(k.as_bytes());
        match t1 {
            Some(t1) => h.push_ok(c, k, op, t0, t1, ret),
            None => h.push_indeterminate(c, k, op, t0),
        };
    }
    h
}

fn assert_ok(h: &History) {
    let v = check(h);
    assert_eq!(v, Verdict::Ok, "{v}\n{}", render_text(h));
}

/// Asserts a violation and returns its culprit's id.
fn assert_bad(h: &History) -> u64 {
    match check(h) {
        Verdict::Violation(v) => {
            println!("{v}");
            v.culprit.id
        }
        other => panic!("expected a violation, got {other}\n{}", render_text(h)),
    }
}

#[test]
fn accepts_sequential_and_concurrent_good_histories() {
    assert_ok(&History::new());
    assert_ok(&hist(&[
        (1, "k", Op::Get, 0, Some(5), NIL),
        (1, "k", set("1"), 10, Some(20), Ret::Ok),
        (2, "k", Op::Get, 30, Some(40), val("1")),
    ]));
    // Reads concurrent with a write may see either side, old before new.
    assert_ok(&hist(&[
        (1, "k", set("2"), 0, Some(100), Ret::Ok),
        (2, "k", Op::Get, 10, Some(20), NIL),
        (3, "k", Op::Get, 30, Some(40), val("2")),
        (2, "k", Op::Get, 50, Some(60), val("2")),
    ]));
    // Touching intervals count as concurrent.
    assert_ok(&hist(&[
        (1, "k", set("a"), 0, Some(10), Ret::Ok),
        (2, "k", Op::Get, 10, Some(20), NIL),
    ]));
    // Overlapping INCRs answer 1, 2, 3 in any completion order.
    assert_ok(&hist(&[
        (1, "k", Op::Incr, 0, Some(50), Ret::Int(3)),
        (2, "k", Op::Incr, 5, Some(30), Ret::Int(1)),
        (3, "k", Op::Incr, 10, Some(40), Ret::Int(2)),
        (1, "k", Op::Get, 60, Some(70), val("3")),
    ]));
    assert_ok(&hist(&[
        (1, "k", set("a"), 0, Some(10), Ret::Ok),
        (2, "k", setget("b"), 20, Some(30), val("a")),
        (1, "k", Op::Get, 40, Some(50), val("b")),
        (1, "k", Op::Del, 60, Some(70), Ret::Int(1)),
        (2, "k", Op::Del, 80, Some(90), Ret::Int(0)),
        (2, "k", setget("c"), 100, Some(110), NIL),
        (1, "k", Op::Incr, 120, Some(130), Ret::NotInteger),
        (1, "k", Op::Get, 140, Some(150), val("c")),
        (1, "k", set("41"), 160, Some(170), Ret::Ok),
        (2, "k", Op::Incr, 180, Some(190), Ret::Int(42)),
        (3, "k", set("9223372036854775807"), 200, Some(210), Ret::Ok),
        (3, "k", Op::Incr, 220, Some(230), Ret::NotInteger),
    ]));
    // Keys are independent.
    assert_ok(&hist(&[
        (1, "a", set("1"), 0, Some(10), Ret::Ok),
        (2, "b", Op::Get, 20, Some(30), NIL),
        (2, "a", Op::Get, 40, Some(50), val("1")),
    ]));
}

#[test]
fn rejects_stale_read_after_completed_write() {
    let h = hist(&[
        (1, "k", set("1"), 0, Some(10), Ret::Ok),
        (1, "k", set("2"), 20, Some(30), Ret::Ok),
        (2, "k", Op::Get, 40, Some(50), val("1")),
    ]);
    assert_eq!(assert_bad(&h), 2);
    let Verdict::Violation(v) = check(&h) else {
        unreachable!()
    };
    assert_eq!(v.key, Bytes::from_static(b"k"));
    let ids: Vec<u64> = v.window.iter().map(|o| o.id).collect();
    assert_eq!(ids, [0, 1, 2]);
    assert_eq!(v.partial, [0, 1]);
}

#[test]
fn rejects_lost_writes() {
    assert_eq!(
        assert_bad(&hist(&[
            (1, "k", set("a"), 0, Some(10), Ret::Ok),
            (2, "k", Op::Get, 20, Some(30), NIL),
        ])),
        1
    );
    assert_eq!(
        assert_bad(&hist(&[
            (1, "k", Op::Incr, 0, Some(10), Ret::Int(1)),
            (2, "k", Op::Incr, 20, Some(30), Ret::Int(2)),
            (3, "k", Op::Get, 40, Some(50), val("1")),
        ])),
        2
    );
    // Both SET ... GET saw nil: one of the writes was lost.
    assert_bad(&hist(&[
        (1, "k", setget("a"), 0, Some(30), NIL),
        (2, "k", setget("b"), 5, Some(35), NIL),
    ]));
}

#[test]
fn rejects_read_of_never_written_value() {
    assert_bad(&hist(&[
        (1, "k", set("a"), 0, Some(10), Ret::Ok),
        (2, "k", Op::Get, 5, Some(15), val("zzz")),
    ]));
}

#[test]
fn rejects_duplicated_incr() {
    assert_bad(&hist(&[
        (1, "k", Op::Incr, 0, Some(10), Ret::Int(1)),
        (2, "k", Op::Incr, 5, Some(15), Ret::Int(1)),
    ]));
    // One INCR applied twice (a re-proposal behind the client's back).
    assert_eq!(
        assert_bad(&hist(&[
            (1, "k", Op::Incr, 0, Some(10), Ret::Int(1)),
            (2, "k", Op::Get, 20, Some(30), val("2")),
        ])),
        1
    );
}

#[test]
fn rejects_non_monotonic_reads_between_clients() {
    assert_eq!(
        assert_bad(&hist(&[
            (1, "k", set("new"), 0, Some(100), Ret::Ok),
            (2, "k", Op::Get, 10, Some(20), val("new")),
            (3, "k", Op::Get, 30, Some(40), NIL),
        ])),
        2
    );
}

#[test]
fn indeterminate_ops_may_or_may_not_take_effect() {
    // Took effect.
    assert_ok(&hist(&[
        (1, "k", set("a"), 0, None, NIL),
        (2, "k", Op::Get, 10, Some(20), val("a")),
    ]));
    // Never (or not yet).
    assert_ok(&hist(&[
        (1, "k", set("a"), 0, None, NIL),
        (2, "k", Op::Get, 10, Some(20), NIL),
        (2, "k", Op::Get, 30, Some(40), NIL),
    ]));
    // Late: long after the client gave up.
    assert_ok(&hist(&[
        (1, "k", Op::Incr, 0, None, NIL),
        (2, "k", Op::Get, 10, Some(20), NIL),
        (2, "k", Op::Incr, 30, Some(40), Ret::Int(1)),
        (3, "k", Op::Get, 1000, Some(1010), val("2")),
    ]));
    assert_ok(&hist(&[
        (1, "k", Op::Incr, 0, None, NIL),
        (2, "k", Op::Incr, 10, Some(20), Ret::Int(2)),
    ]));
    // A client keeps going after an indeterminate op.
    assert_ok(&hist(&[
        (1, "k", set("a"), 0, None, NIL),
        (1, "k", set("b"), 10, Some(20), Ret::Ok),
        (2, "k", Op::Get, 30, Some(40), val("a")),
    ]));
    // Indeterminate reads constrain nothing.
    assert_ok(&hist(&[(1, "k", Op::Get, 0, None, NIL)]));
}

#[test]
fn indeterminate_ops_cannot_explain_everything() {
    // Visible once, then gone without a write.
    assert_eq!(
        assert_bad(&hist(&[
            (1, "k", set("a"), 0, None, NIL),
            (2, "k", Op::Get, 10, Some(20), val("a")),
            (3, "k", Op::Get, 30, Some(40), NIL),
        ])),
        2
    );
    // Invoked after the read that saw it.
    assert_bad(&hist(&[
        (2, "k", Op::Get, 0, Some(10), val("a")),
        (1, "k", set("a"), 20, None, NIL),
    ]));
    // One indeterminate INCR explains one extra increment, not two.
    assert_bad(&hist(&[
        (1, "k", Op::Incr, 0, None, NIL),
        (2, "k", Op::Incr, 10, Some(20), Ret::Int(3)),
    ]));
}

#[test]
fn failed_ops_are_not_applied() {
    let rec = crate::Recorder::new();
    rec.invoke(1, "k", set("a")).fail();
    rec.invoke(2, "k", Op::Get).ok(val("a"));
    assert_bad(&rec.history());
}

#[test]
fn impossible_replies_are_violations() {
    let h = hist(&[(1, "k", set("a"), 0, Some(10), Ret::Int(1))]);
    let Verdict::Violation(v) = check(&h) else {
        panic!("expected a violation")
    };
    assert!(v.reason.contains("cannot give"), "{}", v.reason);
    assert_bad(&hist(&[(1, "k", Op::Del, 0, Some(10), Ret::Int(2))]));
    assert_bad(&hist(&[(1, "k", Op::Get, 10, Some(5), NIL)]));
}

#[test]
fn culprit_is_the_end_of_the_smallest_failing_prefix() {
    // 200 good sequential ops, a stale read, then 200 more good ops.
    let mut h = History::new();
    let mut t = 0;
    let mut last = String::new();
    for i in 0..200 {
        last = format!("v{i}");
        h.push_ok(i % 3, "k", set(&last), t, t + 5, Ret::Ok);
        h.push_ok(i % 3 + 1, "k", Op::Get, t + 2, t + 8, val(&last));
        t += 10;
    }
    let stale = h.push_ok(7, "k", Op::Get, t, t + 5, val("v3"));
    t += 10;
    for i in 0..200 {
        h.push_ok(i % 3, "k", set(&format!("w{i}")), t, t + 5, Ret::Ok);
        t += 10;
    }
    let Verdict::Violation(v) = check(&h) else {
        panic!("expected a violation")
    };
    assert_eq!(v.culprit.id, stale);
    assert!(v.window.iter().any(|o| o.op == set("v3")), "{v}");
    assert!(v.window.iter().any(|o| o.op == set(&last)), "{v}");
    assert!(v.window.len() <= 8, "{v}");
}

#[test]
fn multi_key_violation_names_the_key() {
    let h = hist(&[
        (1, "a", set("1"), 0, Some(10), Ret::Ok),
        (2, "a", Op::Get, 20, Some(30), val("1")),
        (1, "b", set("1"), 0, Some(10), Ret::Ok),
        (2, "b", Op::Get, 20, Some(30), NIL),
    ]);
    let Verdict::Violation(v) = check(&h) else {
        panic!("expected a violation")
    };
    assert_eq!(v.key, Bytes::from_static(b"b"));
}

#[test]
fn budget_gives_unknown() {
    let mut h = History::new();
    for c in 0..6 {
        h.push_ok(c, "k", Op::Incr, c, 100, Ret::Int(c as i64 + 1));
    }
    let v = Checker::new().step_budget(3).check(&h);
    assert_eq!(
        v,
        Verdict::Unknown {
            keys: vec![Bytes::from_static(b"k")]
        }
    );
    assert!(v.to_string().contains("unknown"));
    assert_eq!(Checker::new().check(&h), Verdict::Ok);
}

#[test]
fn renders_and_dumps_a_violation() {
    let h = hist(&[
        (1, "k", set("1"), 0, Some(10_000_000), Ret::Ok),
        (1, "k", set("2"), 20_000_000, Some(30_000_000), Ret::Ok),
        (3, "k", Op::Incr, 25_000_000, None, NIL),
        (2, "k", Op::Get, 40_000_000, Some(50_000_000), val("1")),
    ]);
    let verdict = check(&h);
    let text = verdict.to_string();
    assert!(text.contains("culprit: #3 c2 GET \"k\" -> \"1\""), "{text}");
    assert!(text.contains(">|"), "{text}");
    let all = render_text(&h);
    assert_eq!(all.lines().count(), 4);
    assert!(all.contains("INCR \"k\" -> ?"), "{all}");
    let svg = render_svg(&h.ops, Some(3));
    assert!(svg.starts_with("<svg") && svg.contains("#e06c75"), "{svg}");
    let dir = tempfile::tempdir().unwrap();
    let paths = dump(dir.path(), "stale", &h, &verdict).unwrap();
    assert_eq!(paths.len(), 2);
    let body = std::fs::read_to_string(&paths[0]).unwrap();
    assert!(body.starts_with("not linearizable"), "{body}");
}
