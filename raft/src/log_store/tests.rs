use std::sync::Arc;

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::alias::{CommittedLeaderIdOf, LeaderIdOf};
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderId;
use openraft::{EntryPayload, StorageError};
use tempfile::TempDir;

use super::*;
use crate::apply::MemTarget;
use crate::state_machine::StateMachine;
use crate::types::Payload;

struct Builder {
    segment_bytes: u64,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine<MemTarget>, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachine<MemTarget>), StorageError<TypeConfig>> {
        let dir =
            tempfile::tempdir().map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        let opts = LogStoreOptions {
            segment_bytes: self.segment_bytes,
        };
        let log = LogStore::open(&dir.path().join("log"), opts)
            .map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        let sm = StateMachine::open(dir.path(), Arc::new(MemTarget::default()))
            .map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(Builder {
        segment_bytes: 64 << 20,
    })
    .await
    .expect("suite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_tiny_segments() {
    // Every few entries roll a segment: truncate and purge cross segment boundaries.
    Suite::test_all(Builder { segment_bytes: 120 })
        .await
        .expect("suite");
}

fn log_id(term: u64, node: u64, index: u64) -> LogId {
    let leader = LeaderIdOf::<TypeConfig>::new(term, node);
    let c: CommittedLeaderIdOf<TypeConfig> = leader.to_committed();
    LogId::new(c, index)
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(Payload(format!("v{index}").into_bytes())),
    }
}

async fn read_all(store: &mut LogStore) -> Vec<u64> {
    let mut r = store.get_log_reader().await;
    r.try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.index())
        .collect()
}

#[tokio::test]
async fn survives_restart_with_truncate_purge_and_vote() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogStoreOptions { segment_bytes: 200 };
    {
        let mut s = LogStore::open(dir.path(), opts.clone()).unwrap();
        s.blocking_append((0..30).map(|i| entry(1, i)))
            .await
            .unwrap();
        s.truncate_after(Some(log_id(1, 1, 19))).await.unwrap();
        s.blocking_append((20..25).map(|i| entry(2, i)))
            .await
            .unwrap();
        s.purge(log_id(1, 1, 7)).await.unwrap();
        let vote = Vote::new(2, 1);
        s.save_vote(&vote).await.unwrap();
        s.save_committed(Some(log_id(2, 1, 22))).await.unwrap();
        // Flush through the same ordered queue before "crashing".
        s.blocking_append([entry(2, 25)]).await.unwrap();
    }
    let mut s = LogStore::open(dir.path(), opts).unwrap();
    assert_eq!(read_all(&mut s).await, (8..26).collect::<Vec<_>>());
    let state = s.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 7)));
    assert_eq!(state.last_log_id, Some(log_id(2, 1, 25)));
    assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
    assert_eq!(s.read_committed().await.unwrap(), Some(log_id(2, 1, 22)));
    let mut r = s.get_log_reader().await;
    let e = r.try_get_log_entries(20..21).await.unwrap();
    assert_eq!(e[0].log_id, log_id(2, 1, 20));
}

#[tokio::test]
async fn torn_tail_after_crash_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
        s.blocking_append((0..10).map(|i| entry(1, i)))
            .await
            .unwrap();
    }
    // Simulate a write that reached the disk only partly.
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mut extra = Vec::new();
    segment::encode_record(10, b"never synced", &mut extra);
    bytes.extend_from_slice(&extra[..extra.len() - 4]);
    std::fs::write(&seg, bytes).unwrap();
    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    assert_eq!(read_all(&mut s).await, (0..10).collect::<Vec<_>>());
    // And the log keeps working after the cut.
    s.blocking_append([entry(1, 10)]).await.unwrap();
    drop(s);
    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    assert_eq!(read_all(&mut s).await, (0..11).collect::<Vec<_>>());
}

#[tokio::test]
async fn many_concurrent_appends_share_fsyncs_and_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    let mut waits = Vec::new();
    for i in 0..500u64 {
        let (tx, rx) = TypeConfig::oneshot();
        s.append([entry(1, i)], IOFlushed::signal(tx))
            .await
            .unwrap();
        waits.push(rx);
    }
    for w in waits {
        w.await.unwrap().unwrap();
    }
    drop(s);
    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    assert_eq!(read_all(&mut s).await.len(), 500);
}

#[tokio::test]
async fn failed_fsync_fails_the_append_and_every_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    s.blocking_append((0..3).map(|i| entry(1, i)))
        .await
        .unwrap();
    s.shared
        .fail_next_sync
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = s.blocking_append([entry(1, 3)]).await.unwrap_err();
    assert!(err.to_string().contains("injected fsync failure"), "{err}");
    // Fail-stop: no retry can succeed after a failed fsync, and a vote is refused too.
    assert!(s.failure().is_some());
    assert!(s.blocking_append([entry(1, 4)]).await.is_err());
    assert!(s.save_vote(&Vote::new(5, 1)).await.is_err());
    drop(s);
    // The synced prefix is intact after a restart.
    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    let got = read_all(&mut s).await;
    assert!(got.starts_with(&[0, 1, 2]), "{got:?}");
    assert_eq!(s.read_vote().await.unwrap(), None);
}

/// Power-loss model: after acknowledged appends, more entries are written but their fsync is
/// "lost": the file keeps an arbitrary prefix of the unsynced bytes, possibly followed by
/// garbage. Recovery must keep every acknowledged entry, return a gap-free prefix and never fail.
#[tokio::test]
async fn lost_unsynced_tail_never_loses_acknowledged_entries() {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let acked = 1 + next() % 20;
        let seg;
        let synced_len;
        {
            let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
            s.blocking_append((0..acked).map(|i| entry(1, i)))
                .await
                .unwrap();
            seg = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|e| e == "seg"))
                .unwrap();
            synced_len = std::fs::metadata(&seg).unwrap().len();
            let extra = 1 + next() % 10;
            s.blocking_append((acked..acked + extra).map(|i| entry(1, i)))
                .await
                .unwrap();
        }
        let mut bytes = std::fs::read(&seg).unwrap();
        let full = bytes.len() as u64;
        let keep = synced_len + next() % (full - synced_len + 1);
        bytes.truncate(keep as usize);
        if next() % 2 == 0 {
            // A torn write: junk where the next record would start.
            let junk: Vec<u8> = (0..(next() % 64)).map(|_| next() as u8).collect();
            bytes.extend_from_slice(&junk);
        }
        std::fs::write(&seg, &bytes).unwrap();
        let mut s = LogStore::open(dir.path(), LogStoreOptions::default())
            .unwrap_or_else(|e| panic!("round {round}: recovery failed: {e}"));
        let got = read_all(&mut s).await;
        assert!(
            got.len() as u64 >= acked,
            "round {round}: lost acknowledged entries: {got:?}"
        );
        assert_eq!(
            got,
            (0..got.len() as u64).collect::<Vec<_>>(),
            "round {round}"
        );
    }
}

/// A full disk is not a failure (unlike a failed fsync): the append waits, unacknowledged,
/// with the store marked disk-full; once space returns it completes, the mark clears, and
/// the entry is durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_holds_the_append_until_space_returns() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    s.blocking_append((0..3).map(|i| entry(1, i)))
        .await
        .unwrap();
    s.shared.fail_writes_no_space.store(true, SeqCst);
    let mut s2 = s.clone();
    let pending = tokio::spawn(async move { s2.blocking_append([entry(1, 3)]).await.map(|_| ()) });
    let t = Instant::now();
    while !s.disk_full() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "disk full not noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pending.is_finished(),
        "acknowledged an entry it could not write"
    );
    assert!(s.failure().is_none(), "{:?}", s.failure());
    s.shared.fail_writes_no_space.store(false, SeqCst);
    tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("append still waits after space returned")
        .unwrap()
        .unwrap();
    let t = Instant::now();
    while s.disk_full() {
        assert!(t.elapsed() < Duration::from_secs(5), "disk full mark stuck");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.blocking_append([entry(1, 4)]).await.unwrap();
    drop(s);
    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    assert_eq!(read_all(&mut s).await, (0..5).collect::<Vec<_>>());
}
