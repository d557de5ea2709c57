//! openraft's `RaftStateMachine` on top of an [`ApplyTarget`]: Raft's applied state travels as the
//! opaque `meta` stored atomically with the data; snapshots are [`SnapshotFile`]s in the group's
//! `snapshots/` folder.
//!
//! Crash safety: an installed snapshot is made current (renamed, directory fsynced) before the
//! target is touched, and [`StateMachine::open`] re-installs the newest snapshot into a target
//! whose applied log id is behind it (an interrupted install, or data the target never synced).
//! openraft 0.10.0-alpha.37 also restores from the current snapshot at start-up; doing it in
//! `open` makes the target consistent before any caller (or openraft version) looks at it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::type_config::alias::SnapshotOf;
use openraft::EntryPayload;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::apply::{ApplyTarget, Command};
use crate::log_store::sync_dir;
use crate::snapshot_file::SnapshotFile;
use crate::types::{LogId, Reply, SnapshotMeta, StoredMembership, TypeConfig};

/// Version tag of the encoded applied state; bump when [`AppliedMeta`] changes.
const META_V1: u8 = 1;

/// Raft's applied state, stored by the target next to its data.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct AppliedMeta {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

fn encode_meta(m: &AppliedMeta) -> io::Result<Vec<u8>> {
    let mut out = vec![META_V1];
    out.extend(bincode::serialize(m).map_err(io::Error::other)?);
    Ok(out)
}

fn decode_meta(b: &[u8]) -> io::Result<AppliedMeta> {
    match b.split_first() {
        None => Ok(AppliedMeta::default()),
        Some((&META_V1, rest)) => {
            bincode::deserialize(rest).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }
        Some((v, _)) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown applied-state version {v}"),
        )),
    }
}

/// Opens the data of `f` after checking its checksum and that it is snapshot `meta`.
fn open_checked(f: &SnapshotFile, meta: &SnapshotMeta) -> io::Result<impl io::Read> {
    let (file_meta, reader) = f.data_reader()?;
    if &file_meta != meta {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "snapshot meta does not match its file",
        ));
    }
    Ok(reader)
}

struct Inner<A> {
    target: Arc<A>,
    snap_dir: PathBuf,
    current: Mutex<Option<(SnapshotMeta, SnapshotFile)>>,
    applied: Mutex<AppliedMeta>,
    seq: AtomicU64,
}

/// The state machine of one group.
pub struct StateMachine<A> {
    inner: Arc<Inner<A>>,
}

impl<A> Clone for StateMachine<A> {
    fn clone(&self) -> Self {
        StateMachine {
            inner: self.inner.clone(),
        }
    }
}

impl<A: ApplyTarget> StateMachine<A> {
    /// Opens the state machine over `target`, keeping snapshots under `dir/snapshots`.
    pub fn open(dir: &Path, target: Arc<A>) -> io::Result<StateMachine<A>> {
        let snap_dir = dir.join("snapshots");
        std::fs::create_dir_all(&snap_dir)?;
        let mut best: Option<(SnapshotMeta, SnapshotFile)> = None;
        for ent in std::fs::read_dir(&snap_dir)? {
            let path = ent?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("snap") {
                // Leftover of an unfinished build or transfer.
                std::fs::remove_file(&path)?;
                continue;
            }
            let f = SnapshotFile { path };
            let (meta, _, _) = f.verify()?;
            let newer = best
                .as_ref()
                .is_none_or(|(m, _)| meta.last_log_id > m.last_log_id);
            if newer {
                best = Some((meta, f));
            }
        }
        let applied = decode_meta(&target.applied_meta()?.unwrap_or_default())?;
        let sm = StateMachine {
            inner: Arc::new(Inner {
                target,
                snap_dir,
                current: Mutex::new(None),
                applied: Mutex::new(applied),
                seq: AtomicU64::new(0),
            }),
        };
        if let Some((meta, f)) = best {
            let (meta, f) = sm.set_current(meta, f)?;
            // The target is behind the newest snapshot: a crash interrupted an install (the
            // file is made current before the target is touched), or the target lost data it
            // had not synced (apply never fsyncs: the log is the durability point) and the log
            // it would replay from may already be purged. Either way the snapshot is the
            // newest state this node has durably, so the target restarts from it.
            let behind = sm.inner.applied.lock().last_applied < meta.last_log_id;
            if behind {
                tracing::info!(
                    "state machine behind snapshot {:?}: re-installing {}",
                    meta.last_log_id,
                    f.path.display()
                );
                sm.install_into_target(&meta, &f)?;
            }
        }
        Ok(sm)
    }

    /// Loads snapshot `f` (whose meta must be `meta`) into the target and records it as applied.
    fn install_into_target(&self, meta: &SnapshotMeta, f: &SnapshotFile) -> io::Result<()> {
        let mut reader = open_checked(f, meta)?;
        self.install_reader(meta, &mut reader)
    }

    /// Loads the snapshot data `reader` (of snapshot `meta`) into the target, then records it
    /// as applied.
    fn install_reader(&self, meta: &SnapshotMeta, reader: &mut dyn io::Read) -> io::Result<()> {
        let applied = AppliedMeta {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        self.inner.target.install(reader, &encode_meta(&applied)?)?;
        *self.inner.applied.lock() = applied;
        Ok(())
    }

    /// True if nothing was ever applied or installed: no snapshot and no applied entry.
    pub fn is_empty(&self) -> bool {
        self.inner.current.lock().is_none() && self.inner.applied.lock().last_applied.is_none()
    }

    /// The application's target.
    pub fn target(&self) -> &Arc<A> {
        &self.inner.target
    }

    /// A fresh path in the snapshot folder for an incoming or new snapshot (not yet `.snap`).
    pub(crate) fn temp_path(&self) -> PathBuf {
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        self.inner
            .snap_dir
            .join(format!("incoming-{}-{n}.tmp", std::process::id()))
    }

    /// Makes `f` the current snapshot: renamed to its final name, older ones deleted.
    fn set_current(
        &self,
        meta: SnapshotMeta,
        f: SnapshotFile,
    ) -> io::Result<(SnapshotMeta, SnapshotFile)> {
        // Held throughout: a build and an install finishing together must not delete each
        // other's file or let an older snapshot replace a newer one.
        let mut current = self.inner.current.lock();
        if let Some((cur_meta, cur_file)) = current.as_ref() {
            if cur_meta.last_log_id > meta.last_log_id && cur_file.path != f.path {
                let _ = std::fs::remove_file(&f.path);
                return Ok((cur_meta.clone(), cur_file.clone()));
            }
        }
        let idx = meta.last_log_id.map_or(0, |l| l.index);
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("snap-{idx:020}-{}-{n}.snap", std::process::id());
        let dst = self.inner.snap_dir.join(name);
        let f = if f.path.extension().and_then(|e| e.to_str()) == Some("snap") {
            f
        } else {
            std::fs::rename(&f.path, &dst)?;
            SnapshotFile { path: dst }
        };
        *current = Some((meta.clone(), f.clone()));
        sync_dir(&self.inner.snap_dir)?;
        // Older snapshots go once the new one is durable; an open reader keeps its copy alive.
        for ent in std::fs::read_dir(&self.inner.snap_dir)? {
            let p = ent?.path();
            if p != f.path && p.extension().and_then(|e| e.to_str()) == Some("snap") {
                let _ = std::fs::remove_file(&p);
            }
        }
        Ok((meta, f))
    }

    fn build(&self) -> io::Result<SnapshotOf<TypeConfig, SnapshotFile>> {
        fail::fail_point!("raft::snapshot::before_build");
        let mut waiting = false;
        let (f, meta) = loop {
            let tmp = self.temp_path();
            let target = self.inner.target.clone();
            let res = SnapshotFile::create(
                &tmp,
                |w| target.snapshot(w),
                |raw| {
                    let m = decode_meta(raw)?;
                    Ok(SnapshotMeta {
                        last_log_id: m.last_applied,
                        last_membership: m.membership,
                    })
                },
            );
            match res {
                Ok(v) => break v,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    // openraft stops the group when a build fails: on a full disk, wait for
                    // space like the log does (the half-written file is gone; the old
                    // snapshot and the log stay valid meanwhile).
                    if !crate::log_store::space::is_no_space(&e) {
                        return Err(e);
                    }
                    if !waiting {
                        tracing::warn!("snapshot build: disk full; retrying until space returns");
                        waiting = true;
                    }
                    std::thread::sleep(crate::log_store::space::RETRY_EVERY);
                }
            }
        };
        fail::fail_point!("raft::snapshot::mid_build");
        let (meta, f) = self.set_current(meta, f)?;
        fail::fail_point!("raft::snapshot::after_build");
        Ok(Snapshot { meta, snapshot: f })
    }
}

/// Builds snapshots on a blocking thread.
pub struct Builder<A> {
    sm: StateMachine<A>,
}

impl<A: ApplyTarget> RaftSnapshotBuilder<TypeConfig> for Builder<A> {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, SnapshotFile>, io::Error> {
        let sm = self.sm.clone();
        tokio::task::spawn_blocking(move || sm.build())
            .await
            .map_err(io::Error::other)?
    }
}

type Responder = openraft::storage::ApplyResponder<TypeConfig>;

impl<A: ApplyTarget> RaftStateMachine<TypeConfig> for StateMachine<A> {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = Builder<A>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let m = self.inner.applied.lock().clone();
        Ok((m.last_applied, m.membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        // Apply in chunks: one target call (one atomic write) per chunk.
        const CHUNK: usize = 1024;
        let mut buf: Vec<(crate::types::Entry, Option<Responder>)> = Vec::with_capacity(CHUNK);
        loop {
            let next = entries.next().await;
            let done = next.is_none();
            if let Some(item) = next {
                buf.push(item?);
            }
            if buf.len() >= CHUNK || (done && !buf.is_empty()) {
                if let Some(d) = self.inner.target.apply_delay() {
                    tokio::time::sleep(d).await;
                }
                self.apply_chunk(std::mem::take(&mut buf))?;
            }
            if done {
                return Ok(());
            }
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Builder { sm: self.clone() }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        tracing::info!(
            "installing snapshot up to {:?} from the leader",
            meta.last_log_id
        );
        let sm = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || {
            // Opened before the rename: the handle stays valid whatever `set_current` does.
            fail::fail_point!("raft::snapshot::before_install");
            let mut reader = open_checked(&snapshot, &meta)?;
            // The file becomes current (renamed, directory fsynced) BEFORE the target changes:
            // a crash mid-install finds it on restart and `open` installs it again.
            sm.set_current(meta.clone(), snapshot)?;
            sm.install_reader(&meta, &mut reader)?;
            fail::fail_point!("raft::snapshot::after_install");
            Ok(())
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, SnapshotFile>>, io::Error> {
        Ok(self.inner.current.lock().as_ref().map(|(m, f)| Snapshot {
            meta: m.clone(),
            snapshot: f.clone(),
        }))
    }
}

impl<A: ApplyTarget> StateMachine<A> {
    fn apply_chunk(&self, chunk: Vec<(crate::types::Entry, Option<Responder>)>) -> io::Result<()> {
        let mut meta = self.inner.applied.lock().clone();
        let mut cmds = Vec::new();
        // Which entries produced a command reply (the others reply empty).
        let mut has_cmd = Vec::with_capacity(chunk.len());
        for (ent, _) in &chunk {
            meta.last_applied = Some(ent.log_id());
            match &ent.payload {
                EntryPayload::Normal(p) => {
                    cmds.push(Command {
                        index: ent.index(),
                        payload: &p.0,
                    });
                    has_cmd.push(true);
                }
                EntryPayload::Membership(m) => {
                    meta.membership = StoredMembership::new(Some(ent.log_id()), m.clone());
                    has_cmd.push(false);
                }
                EntryPayload::Blank => has_cmd.push(false),
            }
        }
        fail::fail_point!("raft::apply::before");
        let replies = self.inner.target.apply(&cmds, &encode_meta(&meta)?)?;
        fail::fail_point!("raft::apply::after");
        if replies.len() != cmds.len() {
            return Err(io::Error::other(format!(
                "apply returned {} replies for {} commands",
                replies.len(),
                cmds.len()
            )));
        }
        *self.inner.applied.lock() = meta;
        let mut replies = replies.into_iter();
        for ((_, responder), cmd) in chunk.into_iter().zip(has_cmd) {
            let reply = if cmd {
                replies.next().unwrap_or_default()
            } else {
                Vec::new()
            };
            if let Some(r) = responder {
                r.send(Reply(reply));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
