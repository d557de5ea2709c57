//! The compaction filter hook: removed records behave as deleted, older versions never come
//! back, and a snapshot never sees the effect of a removal.

mod common;

use common::{b, dump};
use pinnacle_lsm::{CompactionFilter, Engine, FilterDecision, Lsm, Options, WriteBatch};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Removes every record whose value starts with "expired".
#[derive(Default)]
struct DropExpired {
    offered: AtomicU64,
}

impl CompactionFilter for DropExpired {
    fn filter(&self, _level: usize, _key: &[u8], value: &[u8]) -> FilterDecision {
        self.offered.fetch_add(1, Ordering::Relaxed);
        if value.starts_with(b"expired") {
            FilterDecision::Remove
        } else {
            FilterDecision::Keep
        }
    }
}

fn put(e: &Lsm, k: &str, v: &str) {
    let mut wb = WriteBatch::new();
    wb.put(b(k), b(v));
    e.write(wb).unwrap();
}

fn open(dir: &std::path::Path, filter: Arc<DropExpired>, background: bool) -> Lsm {
    Lsm::open(
        dir,
        Options {
            compaction_filter: Some(filter),
            background_work: background,
            ..Options::small_for_tests()
        },
    )
    .unwrap()
}

#[test]
fn removed_records_read_as_deleted_and_never_resurrect_older_versions() {
    for background in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let filter = Arc::new(DropExpired::default());
        let e = open(dir.path(), filter.clone(), background);
        // Older live versions sit in a lower level than the expired newer ones.
        for i in 0..50 {
            put(&e, &format!("k{i:02}"), "old live value");
        }
        e.flush().unwrap();
        e.compact_range(None, None).unwrap();
        for i in 0..50 {
            let v = if i % 2 == 0 {
                "expired newer value"
            } else {
                "fresh newer value"
            };
            put(&e, &format!("k{i:02}"), v);
        }
        e.flush().unwrap();
        e.compact_range(None, None).unwrap();
        assert!(filter.offered.load(Ordering::Relaxed) > 0);
        for i in 0..50 {
            let got = e.get(format!("k{i:02}").as_bytes()).unwrap();
            if i % 2 == 0 {
                assert_eq!(
                    got, None,
                    "k{i:02}: removed record resurrected an older version"
                );
            } else {
                assert_eq!(got, Some(b("fresh newer value")));
            }
        }
        assert_eq!(dump(&e, None).len(), 25);
        drop(e);
        let e = open(dir.path(), filter, background);
        assert_eq!(dump(&e, None).len(), 25, "after reopen");
        assert_eq!(e.get(b"k00").unwrap(), None);
    }
}

#[test]
fn snapshots_never_see_a_filter_removal() {
    let dir = tempfile::tempdir().unwrap();
    let filter = Arc::new(DropExpired::default());
    let e = open(dir.path(), filter, false);
    put(&e, "a", "expired soon");
    put(&e, "b", "kept");
    let snap = e.snapshot();
    e.flush().unwrap();
    e.compact_range(None, None).unwrap();
    assert_eq!(
        e.get_at(b"a", &snap).unwrap(),
        Some(b("expired soon")),
        "snapshot pinned it"
    );
    assert_eq!(dump(&e, Some(&snap)).len(), 2);
    drop(snap);
    e.compact_range(None, None).unwrap();
    assert_eq!(
        e.get(b"a").unwrap(),
        None,
        "removed once no snapshot needs it"
    );
    assert_eq!(e.get(b"b").unwrap(), Some(b("kept")));
}
