use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn ok(at: u64) -> TxnOutcome {
    TxnOutcome::Ok { at }
}

fn r(key: &str, v: &[u64]) -> Mop {
    read(key, Some(v.to_vec()))
}

fn verdict(h: &ListHistory) -> ListVerdict {
    let v = check_list_append(h);
    eprintln!("{v}");
    v
}

#[test]
fn concurrent_appends_with_consistent_reads_pass() {
    let mut h = ListHistory::new();
    h.push(1, 0, vec![append("x", 1), r("x", &[1])], ok(10));
    h.push(2, 5, vec![append("x", 2), append("y", 3)], ok(15));
    h.push(3, 6, vec![r("x", &[1]), r("y", &[])], ok(12));
    h.push(1, 20, vec![r("x", &[1, 2]), r("y", &[3])], ok(30));
    let v = verdict(&h);
    assert!(v.is_ok(), "{v}");
    assert!(v.graph_txns >= 3);
}

#[test]
fn indeterminate_appends_may_or_may_not_land() {
    let mut h = ListHistory::new();
    h.push(1, 0, vec![append("x", 1)], TxnOutcome::Indeterminate);
    h.push(2, 0, vec![append("x", 2)], TxnOutcome::Indeterminate);
    h.push(3, 1, vec![append("x", 3)], TxnOutcome::Fail { at: 2 });
    h.push(4, 50, vec![r("x", &[2])], ok(60));
    assert!(verdict(&h).is_ok());
}

#[test]
fn split_brain_is_incompatible() {
    let mut h = ListHistory::new();
    h.push(1, 0, vec![append("x", 1)], ok(10));
    h.push(2, 0, vec![append("x", 2)], ok(10));
    h.push(3, 0, vec![append("x", 3)], ok(10));
    h.push(1, 20, vec![r("x", &[1, 2])], ok(30));
    h.push(2, 20, vec![r("x", &[1, 3])], ok(30));
    let v = verdict(&h);
    assert!(v.has(|a| matches!(a, Anomaly::Incompatible { key, .. } if key == "x")));
}

#[test]
fn lost_append_is_caught() {
    let mut h = ListHistory::new();
    h.push(1, 0, vec![append("x", 1)], ok(10));
    h.push(2, 0, vec![append("x", 2)], ok(10));
    h.push(3, 20, vec![r("x", &[2])], ok(30));
    let v = verdict(&h);
    assert!(
        v.has(|a| matches!(
            a,
            Anomaly::Lost {
                value: 1,
                writer: 0,
                reader: 2,
                ..
            }
        )),
        "{v}"
    );
}

#[test]
fn duplicate_is_caught() {
    let mut h = ListHistory::new();
    h.push(1, 0, vec![append("x", 1)], ok(10));
    h.push(2, 20, vec![r("x", &[1, 1])], ok(30));
    assert!(verdict(&h).has(|a| matches!(a, Anomaly::Duplicate { value: 1, .. })));
}

#[test]
fn garbage_is_caught() {
    let mut h = ListHistory::new();
    h.push(1, 0, vec![append("x", 1)], ok(10));
    h.push(2, 20, vec![r("x", &[1, 99])], ok(30));
    // 99 appended to another key is still garbage in x.
    h.push(3, 0, vec![append("y", 99)], ok(10));
    assert!(verdict(&h).has(|a| matches!(a, Anomaly::Garbage { value: 99, .. })));
}

#[test]
fn aborted_read_is_caught() {
    // redisraft #23: a write answered with an error (NOLEADER) was committed anyway.
    let mut h = ListHistory::new();
    h.push(1, 0, vec![append("x", 1)], TxnOutcome::Fail { at: 10 });
    h.push(2, 20, vec![r("x", &[1])], ok(30));
    let v = verdict(&h);
    assert!(v.has(|a| matches!(
        a,
        Anomaly::AbortedRead {
            value: 1,
            writer: 0,
            reader: 1,
            ..
        }
    )));
}

#[test]
fn stale_read_is_a_realtime_cycle() {
    // redisraft #19: after [1] was read, a later read (by real time) sees the older [].
    let mut h = ListHistory::new();
    h.push(1, 0, vec![append("x", 1)], ok(10));
    h.push(2, 20, vec![r("x", &[1])], ok(30));
    h.push(3, 40, vec![r("x", &[])], ok(50));
    let v = verdict(&h);
    assert!(
        v.has(|a| matches!(a, Anomaly::Cycle { name, .. } if name == "G-single-realtime")),
        "{v}"
    );
    // Concurrent with the append, the same empty read is fine.
    let mut h = ListHistory::new();
    h.push(1, 0, vec![append("x", 1)], ok(10));
    h.push(3, 5, vec![r("x", &[])], ok(8));
    h.push(2, 20, vec![r("x", &[1])], ok(30));
    assert!(verdict(&h).is_ok());
}

#[test]
fn write_cycle_is_g0() {
    let mut h = ListHistory::new();
    h.push(1, 0, vec![append("x", 1), append("y", 2)], ok(10));
    h.push(2, 0, vec![append("x", 3), append("y", 4)], ok(10));
    h.push(3, 20, vec![r("x", &[1, 3]), r("y", &[4, 2])], ok(30));
    let v = verdict(&h);
    assert!(
        v.has(|a| matches!(a, Anomaly::Cycle { name, .. } if name == "G0")),
        "{v}"
    );
}

#[test]
fn read_skew_is_g_single() {
    // T1 appends to x and y atomically; T0 sees y's append but not x's.
    let mut h = ListHistory::new();
    h.push(0, 0, vec![r("x", &[]), r("y", &[2])], ok(10));
    h.push(1, 0, vec![append("x", 1), append("y", 2)], ok(10));
    h.push(2, 20, vec![r("x", &[1]), r("y", &[2])], ok(30));
    let v = verdict(&h);
    assert!(
        v.has(|a| matches!(a, Anomaly::Cycle { name, .. } if name == "G-single")),
        "{v}"
    );
}

#[test]
fn own_appends_must_be_visible() {
    let mut h = ListHistory::new();
    h.push(1, 0, vec![append("x", 1), r("x", &[])], ok(10));
    assert!(verdict(&h).has(|a| matches!(a, Anomaly::Internal { txn: 0, .. })));
}

#[test]
fn recorder_fills_reads_in_order() {
    let rec = ListRecorder::new();
    let p = rec.invoke(1, vec![append("x", 1), read("x", None), read("y", None)]);
    p.ok(vec![vec![1], vec![]]);
    rec.invoke(2, vec![append("y", 2)]).fail();
    drop(rec.invoke(3, vec![append("y", 3)]));
    let h = rec.history();
    assert_eq!(h.counts(), (1, 1, 1));
    assert_eq!(h.txns[0].mops[1], r("x", &[1]));
    assert_eq!(h.txns[0].mops[2], r("y", &[]));
    assert!(check_list_append(&h).is_ok());
    let lines = history_json_lines(&h);
    assert_eq!(lines.lines().count(), 6);
    assert!(lines.contains("\"type\":\"fail\""), "{lines}");
    assert!(lines.contains("[\"r\",\"x\",[1]]"), "{lines}");
}

/// What a generated transaction does to the model.
#[derive(Clone, Debug)]
enum Fate {
    Ok,
    Fail,
    InfoApplied,
    InfoLost,
}

fn arb_txn() -> impl Strategy<Value = (u64, Vec<(bool, u8)>, Fate)> {
    (
        0..4u64,
        prop::collection::vec((any::<bool>(), 0..3u8), 1..4),
        prop_oneof![
            6 => Just(Fate::Ok),
            1 => Just(Fate::Fail),
            1 => Just(Fate::InfoApplied),
            1 => Just(Fate::InfoLost),
        ],
    )
}

proptest! {
    /// Serial executions against a model (one transaction at a time, random fates, a final
    /// read of every key) always pass.
    #[test]
    fn serial_histories_pass(txns in prop::collection::vec(arb_txn(), 1..12)) {
        let mut model: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut h = ListHistory::new();
        let mut next = 1u64;
        for (i, (client, mops, fate)) in txns.iter().enumerate() {
            let t0 = i as u64 * 100;
            let applied = matches!(fate, Fate::Ok | Fate::InfoApplied);
            let mut scratch = model.clone();
            let mut out = Vec::new();
            for &(is_append, k) in mops {
                let key = format!("k{k}");
                if is_append {
                    scratch.entry(key.clone()).or_default().push(next);
                    out.push(append(&key, next));
                    next += 1;
                } else {
                    let seen = scratch.get(&key).cloned().unwrap_or_default();
                    out.push(read(&key, matches!(fate, Fate::Ok).then_some(seen)));
                }
            }
            if applied {
                model = scratch;
            }
            let outcome = match fate {
                Fate::Ok => ok(t0 + 50),
                Fate::Fail => TxnOutcome::Fail { at: t0 + 50 },
                _ => TxnOutcome::Indeterminate,
            };
            // An indeterminate transaction's client never runs another one.
            let client = if matches!(outcome, TxnOutcome::Indeterminate) { 100 + i as u64 } else { *client };
            h.push(client, t0, out, outcome);
        }
        let end = txns.len() as u64 * 100;
        let finals: Vec<Mop> = (0..3).map(|k| {
            let key = format!("k{k}");
            read(&key, Some(model.get(&key).cloned().unwrap_or_default()))
        }).collect();
        h.push(99, end, finals, ok(end + 50));
        let v = check_list_append(&h);
        prop_assert!(v.is_ok(), "{}\n{:#?}", v, h.txns);
    }
}

#[test]
fn html_timeline_has_every_txn_and_event() {
    let mut h = ListHistory::new();
    h.push(1, 0, vec![append("x", 1)], ok(1_000_000));
    h.push(
        2,
        0,
        vec![append("x", 2)],
        TxnOutcome::Fail { at: 2_000_000 },
    );
    h.push(3, 0, vec![append("x", 3)], TxnOutcome::Indeterminate);
    let html = crate::render_html("t <1>", &bars(&h), &[(500_000, "kill node<2>".to_string())]);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<rect").count(), 3);
    assert!(html.contains("#e06c75"), "a failed txn is red");
    assert!(html.contains("url(#fade)"), "an indeterminate txn fades");
    assert!(html.contains("kill node&lt;2&gt;"), "events are escaped");
    assert!(html.contains("t &lt;1&gt;"));
}
