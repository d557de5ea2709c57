//! Model-based property test: random operation sequences run against the engine under test
//! and against `MemEngine` (the reference), comparing every read and the whole content after
//! every step.
//!
//! Keys come from a small alphabet so overwrites, deletes of live keys and range deletes that
//! hit something are frequent; values are sized so `Options::small_for_tests()` really
//! flushes and compacts within one sequence.

mod common;

use bytes::Bytes;
use common::{collect, dump};
use pinnacle_lsm::{Engine, KeyRange, MemEngine, Options, SimFs, Snapshot, WriteBatch};
use proptest::prelude::*;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

/// One write operation inside a batch.
#[derive(Clone, Debug)]
enum W {
    Put(Bytes, Bytes),
    Delete(Bytes),
    DeleteRange(Bytes, Bytes),
}

/// One step of a sequence.
#[derive(Clone, Debug)]
enum Step {
    Write(Vec<W>),
    Get(Bytes),
    Scan(Bound<Bytes>, Bound<Bytes>),
    TakeSnapshot,
    DropSnapshot(usize),
    GetAt(usize, Bytes),
    ScanAt(usize, Bound<Bytes>, Bound<Bytes>),
    Flush,
    Compact(Option<Bytes>, Option<Bytes>),
    Reopen,
}

fn key() -> impl Strategy<Value = Bytes> {
    // 1-3 letters from "abcd" (84 keys), plus the empty key now and then.
    prop_oneof![
        30 => proptest::collection::vec(prop::sample::select(b"abcd".to_vec()), 1..=3)
            .prop_map(Bytes::from),
        1 => Just(Bytes::new()),
    ]
}

fn value() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        2 => Just(Bytes::new()),
        10 => (any::<u8>(), 0usize..40).prop_map(|(b, n)| Bytes::from(vec![b; n])),
        6 => (any::<u8>(), 200usize..1500).prop_map(|(b, n)| Bytes::from(vec![b; n])),
    ]
}

fn bound() -> impl Strategy<Value = Bound<Bytes>> {
    prop_oneof![
        1 => Just(Bound::Unbounded),
        3 => key().prop_map(Bound::Included),
        3 => key().prop_map(Bound::Excluded),
    ]
}

fn write_op() -> impl Strategy<Value = W> {
    prop_oneof![
        8 => (key(), value()).prop_map(|(k, v)| W::Put(k, v)),
        3 => key().prop_map(W::Delete),
        1 => (key(), key()).prop_map(|(a, b)| W::DeleteRange(a, b)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => write_op().prop_map(|w| Step::Write(vec![w])),
        4 => proptest::collection::vec(write_op(), 1..8).prop_map(Step::Write),
        5 => key().prop_map(Step::Get),
        2 => (bound(), bound()).prop_map(|(a, b)| Step::Scan(a, b)),
        2 => Just(Step::TakeSnapshot),
        1 => (0usize..4).prop_map(Step::DropSnapshot),
        3 => ((0usize..4), key()).prop_map(|(i, k)| Step::GetAt(i, k)),
        1 => ((0usize..4), bound(), bound()).prop_map(|(i, a, b)| Step::ScanAt(i, a, b)),
        1 => Just(Step::Flush),
        1 => (proptest::option::of(key()), proptest::option::of(key()))
            .prop_map(|(a, b)| Step::Compact(a, b)),
        1 => Just(Step::Reopen),
    ]
}

/// True when no key can fall into the range; `MemEngine` panics on such ranges, so the
/// expected answer is computed here instead.
fn empty_range(lo: &Bound<Bytes>, hi: &Bound<Bytes>) -> bool {
    use Bound::*;
    match (lo, hi) {
        (Included(l), Included(h)) => l > h,
        (Included(l), Excluded(h)) | (Excluded(l), Included(h)) | (Excluded(l), Excluded(h)) => {
            l >= h
        }
        _ => false,
    }
}

fn reference_scan(m: &MemEngine, range: KeyRange, snap: Option<&Snapshot>) -> Vec<(Bytes, Bytes)> {
    if empty_range(&range.0, &range.1) {
        return Vec::new();
    }
    collect(m.scan(range, snap).expect("reference scan"))
}

/// Runs `steps` against a fresh `E` opened in `dir` with `opts()` and against the reference.
fn run<E: Engine>(
    dir: &Path,
    opts: &dyn Fn() -> Options,
    steps: &[Step],
) -> Result<(), TestCaseError> {
    let reference = MemEngine::in_memory();
    let mut engine: Option<E> = Some(E::open(dir, opts()).map_err(|e| fail(format!("open: {e}")))?);
    // (engine snapshot, reference snapshot); cleared on reopen.
    let mut snaps: Vec<(Snapshot, Snapshot)> = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let e = engine.as_ref().expect("engine is open");
        let ctx = |what: &str| format!("step {n} {step:?}: {what}");
        match step {
            Step::Write(ws) => {
                let mut wb = WriteBatch::new();
                for w in ws {
                    match w {
                        W::Put(k, v) => wb.put(k.clone(), v.clone()),
                        W::Delete(k) => wb.delete(k.clone()),
                        W::DeleteRange(a, b) => wb.delete_range(a.clone(), b.clone()),
                    };
                }
                reference.write(wb.clone()).expect("reference write");
                e.write(wb)
                    .map_err(|err| fail(ctx(&format!("write: {err}"))))?;
            }
            Step::Get(k) => {
                let got = e.get(k).map_err(|err| fail(ctx(&format!("get: {err}"))))?;
                prop_assert_eq!(got, reference.get(k).expect("ref"), "{}", ctx("get"));
            }
            Step::Scan(lo, hi) => {
                let r = (lo.clone(), hi.clone());
                let got = e
                    .scan(r.clone(), None)
                    .map_err(|err| fail(ctx(&format!("scan: {err}"))))?;
                let got: Result<Vec<_>, _> = got.collect();
                let got = got.map_err(|err| fail(ctx(&format!("scan item: {err}"))))?;
                prop_assert_eq!(got, reference_scan(&reference, r, None), "{}", ctx("scan"));
            }
            Step::TakeSnapshot => {
                if snaps.len() >= 4 {
                    snaps.remove(0);
                }
                snaps.push((e.snapshot(), reference.snapshot()));
            }
            Step::DropSnapshot(i) => {
                if !snaps.is_empty() {
                    snaps.remove(i % snaps.len());
                }
            }
            Step::GetAt(i, k) => {
                if let Some((se, sr)) = snaps.get(i % snaps.len().max(1)) {
                    let got = e
                        .get_at(k, se)
                        .map_err(|err| fail(ctx(&format!("get_at: {err}"))))?;
                    prop_assert_eq!(
                        got,
                        reference.get_at(k, sr).expect("ref"),
                        "{}",
                        ctx("get_at")
                    );
                }
            }
            Step::ScanAt(i, lo, hi) => {
                if let Some((se, sr)) = snaps.get(i % snaps.len().max(1)) {
                    let r = (lo.clone(), hi.clone());
                    let got = e
                        .scan(r.clone(), Some(se))
                        .map_err(|err| fail(ctx(&format!("scan: {err}"))))?;
                    let got: Result<Vec<_>, _> = got.collect();
                    let got = got.map_err(|err| fail(ctx(&format!("scan item: {err}"))))?;
                    prop_assert_eq!(
                        got,
                        reference_scan(&reference, r, Some(sr)),
                        "{}",
                        ctx("scan at snapshot")
                    );
                }
            }
            Step::Flush => e
                .flush()
                .map_err(|err| fail(ctx(&format!("flush: {err}"))))?,
            Step::Compact(a, b) => e
                .compact_range(a.as_deref(), b.as_deref())
                .map_err(|err| fail(ctx(&format!("compact: {err}"))))?,
            Step::Reopen => {
                snaps.clear();
                drop(engine.take());
                engine =
                    Some(E::open(dir, opts()).map_err(|err| fail(ctx(&format!("reopen: {err}"))))?);
            }
        }
        let e = engine.as_ref().expect("engine is open");
        prop_assert_eq!(dump(e, None), dump(&reference, None), "{}", ctx("content"));
    }
    Ok(())
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

/// Options for a deterministic engine on a fresh simulated file system.
fn sim_opts(background: bool) -> impl Fn() -> Options {
    let fs = Arc::new(SimFs::new());
    move || Options {
        background_work: background,
        vfs: fs.clone(),
        ..Options::small_for_tests()
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

mod mem_engine_self_check {
    //! The harness itself, run with the reference engine as the subject (flushing before
    //! each reopen, since `MemEngine` is only durable after `flush`).
    use super::*;

    proptest! {
        #![proptest_config(config(16))]
        #[test]
        fn matches_reference(steps in proptest::collection::vec(step(), 1..80)) {
            let steps: Vec<Step> = steps
                .into_iter()
                .flat_map(|s| match s {
                    Step::Reopen => vec![Step::Flush, Step::Reopen],
                    // The subject is MemEngine, which panics on these (see conformance.rs).
                    Step::Scan(lo, hi) | Step::ScanAt(_, lo, hi) if empty_range(&lo, &hi) => vec![],
                    s => vec![s],
                })
                .collect();
            let dir = tempfile::tempdir().unwrap();
            run::<MemEngine>(dir.path(), &Options::small_for_tests, &steps)?;
        }
    }

    #[test]
    fn sim_options_share_one_file_system() {
        let opts = sim_opts(false);
        assert!(Arc::ptr_eq(&opts().vfs, &opts().vfs));
    }
}
