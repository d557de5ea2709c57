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

fn reference_scan(m: &MemEngine, range: KeyRange, snap: Option<&Snapshot>) -> Vec<(Bytes, Bytes)> {
    collect(m.scan(range, snap).expect("reference scan"))
}

/// Runs `steps` against a fresh `E` opened in `dir` with `opts()` and against the reference.
fn run<E: Engine>(
    dir: &Path,
    opts: &dyn Fn() -> Options,
    steps: &[Step],
) -> Result<Seen, TestCaseError> {
    let mut seen = Seen::default();
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
        let st = e.stats();
        seen.flushed |= st.flush_bytes_written > 0;
        seen.compacted |= st.compaction_bytes_written > 0;
        seen.below_l1 |= st.levels.iter().skip(2).any(|l| l.files > 0);
        seen.reopened |= matches!(step, Step::Reopen);
    }
    Ok(seen)
}

/// What a sequence made the engine do.
#[derive(Default)]
struct Seen {
    flushed: bool,
    compacted: bool,
    below_l1: bool,
    reopened: bool,
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

/// Test options with levels so small that a few dozen keys already reach L2 and beyond.
fn tiny_levels(background: bool) -> Options {
    Options {
        background_work: background,
        memtable_size: 8 << 10,
        level_base_bytes: 8 << 10,
        target_file_size: 4 << 10,
        ..Options::small_for_tests()
    }
}

/// [`tiny_levels`] on a fresh simulated file system (shared by every reopen of one sequence).
fn sim_opts(background: bool) -> impl Fn() -> Options {
    let fs = Arc::new(SimFs::new());
    move || Options {
        vfs: fs.clone(),
        ..tiny_levels(background)
    }
}

/// `cases` test cases, or `PROPTEST_CASES` from the environment for longer hunts.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
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

/// Runs `cases` random sequences against `Lsm` (deterministic on `SimFs` without background
/// work, or with background threads on the real file system) and checks that, across them, flushes,
/// compactions and reopens really happened (so the comparison covered SSTables and levels).
fn check_lsm(cases: u32, background: bool) {
    use pinnacle_lsm::Lsm;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    let (flushed, compacted, deep, reopened) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let cfg = config(cases);
    let cases = cfg.cases;
    let mut runner = proptest::test_runner::TestRunner::new(cfg);
    let strategy = proptest::collection::vec(step(), 1..150);
    let result = runner.run(&strategy, |steps| {
        let tmp = tempfile::tempdir().unwrap();
        let seen = if background {
            run::<Lsm>(tmp.path(), &|| tiny_levels(true), &steps)?
        } else {
            run::<Lsm>(Path::new("/db"), &sim_opts(false), &steps)?
        };
        flushed.fetch_add(seen.flushed as u64, Relaxed);
        compacted.fetch_add(seen.compacted as u64, Relaxed);
        deep.fetch_add(seen.below_l1 as u64, Relaxed);
        reopened.fetch_add(seen.reopened as u64, Relaxed);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let counts = [&flushed, &compacted, &reopened].map(|c| c.load(Relaxed));
    // With background_work = false only compact_range compacts, and it stops at L1.
    // Reaching L2 depends on background timing (about one sequence in five does), so only
    // a run long enough to make missing it implausible insists on it.
    if background && cases >= 100 {
        assert!(deep.load(Relaxed) > 0, "no sequence reached L2");
    }
    eprintln!(
        "model test ({cases} cases, background {background}): flushed in {}, compacted in {}, \
         files below L1 in {}, reopened in {}",
        counts[0],
        counts[1],
        deep.load(Relaxed),
        counts[2]
    );
    assert!(
        counts.iter().all(|&c| c >= u64::from(cases) / 4),
        "{counts:?}"
    );
}

#[test]
fn lsm_foreground_matches_reference() {
    check_lsm(64, false);
}

#[test]
fn lsm_background_matches_reference() {
    check_lsm(32, true);
}
