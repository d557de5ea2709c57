//! Snapshot durability: an install survives a crash half-way, and a target that lost data it
//! never synced is restored from the newest snapshot when the state machine opens.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize};

use openraft::type_config::alias::{CommittedLeaderIdOf, LeaderIdOf};
use openraft::vote::RaftLeaderId;

use super::*;
use crate::apply::MemTarget;
use crate::types::{Entry, Payload};

/// A [`MemTarget`] that counts installs and can fail one half-way (the "crash").
#[derive(Default)]
struct Probe {
    mem: MemTarget,
    installs: AtomicUsize,
    fail_install: AtomicBool,
}

impl ApplyTarget for Probe {
    fn apply(&self, cmds: &[Command<'_>], meta: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        self.mem.apply(cmds, meta)
    }
    fn applied_meta(&self) -> io::Result<Option<Vec<u8>>> {
        self.mem.applied_meta()
    }
    fn snapshot(&self, out: &mut dyn Write) -> io::Result<Vec<u8>> {
        self.mem.snapshot(out)
    }
    fn install(&self, input: &mut dyn Read, meta: &[u8]) -> io::Result<()> {
        if self.fail_install.load(Ordering::SeqCst) {
            // Reads a little, then dies; an atomic install leaves the old data.
            let mut buf = [0u8; 4];
            input.read_exact(&mut buf)?;
            return Err(io::Error::other("crashed mid-install"));
        }
        self.installs.fetch_add(1, Ordering::SeqCst);
        self.mem.install(input, meta)
    }
}

fn log_id(index: u64) -> LogId {
    let c: CommittedLeaderIdOf<TypeConfig> = LeaderIdOf::<TypeConfig>::new(1, 1).to_committed();
    LogId::new(c, index)
}

async fn apply_range<A: ApplyTarget>(sm: &mut StateMachine<A>, from: u64, to: u64) {
    let ents: Vec<_> = (from..=to)
        .map(|i| {
            let e = Entry {
                log_id: log_id(i),
                payload: EntryPayload::Normal(Payload(format!("v{i}").into_bytes())),
            };
            Ok((e, None))
        })
        .collect();
    sm.apply(futures_util::stream::iter(ents)).await.unwrap();
}

fn expected(to: u64) -> Vec<(u64, Vec<u8>)> {
    (1..=to)
        .map(|i| (i, format!("v{i}").into_bytes()))
        .collect()
}

async fn last_applied<A: ApplyTarget>(sm: &mut StateMachine<A>) -> Option<u64> {
    sm.applied_state().await.unwrap().0.map(|l| l.index)
}

fn snap_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("snap"))
        .collect()
}

#[tokio::test]
async fn a_target_that_forgets_is_restored_from_the_newest_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(Probe::default());
    let mut sm = StateMachine::open(dir.path(), first.clone()).unwrap();
    apply_range(&mut sm, 1, 10).await;
    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(10)));
    apply_range(&mut sm, 11, 12).await;
    drop(sm);

    // Lost everything (no meta at all): the snapshot comes back.
    let empty = Arc::new(Probe::default());
    let mut sm = StateMachine::open(dir.path(), empty.clone()).unwrap();
    assert_eq!(empty.installs.load(Ordering::SeqCst), 1);
    assert_eq!(empty.mem.applied(), expected(10));
    assert_eq!(last_applied(&mut sm).await, Some(10));
    drop(sm);

    // Kept some but not all of what the snapshot covers: behind, so re-installed.
    let behind = Arc::new(Probe::default());
    let other = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(other.path(), behind.clone()).unwrap();
    apply_range(&mut sm, 1, 4).await;
    drop(sm);
    let mut sm = StateMachine::open(dir.path(), behind.clone()).unwrap();
    assert_eq!(behind.installs.load(Ordering::SeqCst), 1);
    assert_eq!(behind.mem.applied(), expected(10));
    assert_eq!(last_applied(&mut sm).await, Some(10));
    drop(sm);

    // Ahead of the snapshot: untouched, the log replays from 13.
    let mut sm = StateMachine::open(dir.path(), first.clone()).unwrap();
    assert_eq!(first.installs.load(Ordering::SeqCst), 0);
    assert_eq!(first.mem.applied(), expected(12));
    assert_eq!(last_applied(&mut sm).await, Some(12));
}

#[tokio::test]
async fn a_crash_during_install_is_finished_when_the_state_machine_reopens() {
    // The leader's side: a snapshot of entries 1..=20.
    let src_dir = tempfile::tempdir().unwrap();
    let mut src = StateMachine::open(src_dir.path(), Arc::new(MemTarget::default())).unwrap();
    apply_range(&mut src, 1, 20).await;
    let snap = src
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    // The follower has applied 1..=3 and receives the snapshot into a temporary file.
    let dir = tempfile::tempdir().unwrap();
    let target = Arc::new(Probe::default());
    let mut sm = StateMachine::open(dir.path(), target.clone()).unwrap();
    apply_range(&mut sm, 1, 3).await;
    let incoming = sm.temp_path();
    std::fs::copy(&snap.snapshot.path, &incoming).unwrap();
    target.fail_install.store(true, Ordering::SeqCst);
    let err = sm
        .install_snapshot(&snap.meta, SnapshotFile { path: incoming })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("crashed"), "{err}");
    // The snapshot was made durable before the target was touched.
    assert_eq!(snap_files(dir.path()).len(), 1);
    assert_eq!(target.mem.applied(), expected(3));
    drop(sm);

    // "Restart": the same (old) data, and the install completes before anything else runs.
    target.fail_install.store(false, Ordering::SeqCst);
    let mut sm = StateMachine::open(dir.path(), target.clone()).unwrap();
    assert_eq!(target.installs.load(Ordering::SeqCst), 1);
    assert_eq!(target.mem.applied(), expected(20));
    assert_eq!(last_applied(&mut sm).await, Some(20));
    let cur = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(cur.meta, snap.meta);
}

#[tokio::test]
async fn a_snapshot_installed_normally_becomes_current_and_replaces_the_data() {
    let src_dir = tempfile::tempdir().unwrap();
    let mut src = StateMachine::open(src_dir.path(), Arc::new(MemTarget::default())).unwrap();
    apply_range(&mut src, 1, 8).await;
    let snap = src
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let target = Arc::new(Probe::default());
    let mut sm = StateMachine::open(dir.path(), target.clone()).unwrap();
    let incoming = sm.temp_path();
    std::fs::copy(&snap.snapshot.path, &incoming).unwrap();
    sm.install_snapshot(
        &snap.meta,
        SnapshotFile {
            path: incoming.clone(),
        },
    )
    .await
    .unwrap();
    assert!(!incoming.exists(), "renamed into place");
    assert_eq!(snap_files(dir.path()).len(), 1);
    assert_eq!(target.mem.applied(), expected(8));
    assert_eq!(last_applied(&mut sm).await, Some(8));
    drop(sm);
    // Up to date: reopening installs nothing.
    StateMachine::open(dir.path(), target.clone()).unwrap();
    assert_eq!(target.installs.load(Ordering::SeqCst), 1);
}
