//! The log's writer thread: applies queued commands in order and fsyncs once per batch.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;

use openraft::storage::IOFlushed;

use super::metafile::{self, sync_dir};
use super::segment::Segment;
use super::space::{is_no_space, PROBE_EVERY, RESERVE_STEP, RETRY_EVERY};
use super::votefile::VoteFile;
use super::{Cmd, LogStoreOptions, Shared, COMMITTED, PURGED};
use crate::types::TypeConfig;

/// Owns the files; runs on its own thread so fsync never blocks the async runtime.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) opts: LogStoreOptions,
    pub(super) segments: Vec<Segment>,
    pub(super) shared: Arc<Shared>,
    pub(super) vote_file: VoteFile,
    pub(super) dir_dirty: bool,
    /// Latest committed id seen in this batch; written once, after the batch's fsync, so it
    /// never points past entries that are not durable here.
    pub(super) committed: Option<Vec<u8>>,
    /// When `committed` was last written: it is rewritten at most every
    /// [`COMMITTED_EVERY`] (an open + write + rename per flush cost ~8% of a busy leader).
    pub(super) committed_at: Option<std::time::Instant>,
}

/// Minimum time between rewrites of the committed-id file. The file only lets a restart
/// re-apply sooner; a stale value is safe.
const COMMITTED_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

impl Writer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        loop {
            let first = if self.shared.disk_full.load(Ordering::Relaxed) {
                // Nothing may come (the node refuses writes): look for space now and then.
                match rx.recv_timeout(PROBE_EVERY) {
                    Ok(c) => c,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.probe_space();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match rx.recv() {
                    Ok(c) => c,
                    Err(_) => return,
                }
            };
            let mut batch = vec![first];
            while batch.len() < 4096 {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.process(batch) {
                tracing::error!("raft log write failed, failing the store: {e}");
                // Fail everything still queued, then stop.
                while let Ok(cmd) = rx.try_recv() {
                    fail(cmd, &e);
                }
                return;
            }
        }
    }

    fn process(&mut self, batch: Vec<Cmd>) -> io::Result<()> {
        let mut pending: Vec<IOFlushed<TypeConfig>> = Vec::new();
        let mut dirty = false;
        let mut iter = batch.into_iter();
        while let Some(cmd) = iter.next() {
            let res = self.one(cmd, &mut pending, &mut dirty);
            if let Err(e) = res {
                self.poison(&e);
                for cb in pending {
                    cb.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                }
                for cmd in iter {
                    fail(cmd, &e);
                }
                return Err(e);
            }
        }
        if let Err(e) = self.sync(&mut dirty) {
            self.poison(&e);
            for cb in pending {
                cb.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
            }
            return Err(e);
        }
        for cb in pending {
            cb.io_completed(Ok(()));
        }
        let due = self
            .committed_at
            .is_none_or(|at| at.elapsed() >= COMMITTED_EVERY);
        if let Some(body) = self.committed.take_if(|_| due) {
            self.committed_at = Some(std::time::Instant::now());
            match metafile::write(&self.dir, COMMITTED, &body, false) {
                Ok(()) => {}
                // Only an optimisation (a stale value is safe): skip it on a full disk.
                Err(e) if is_no_space(&e) => {
                    tracing::debug!(error = %e, "committed id not written: disk full");
                }
                Err(e) => {
                    self.poison(&e);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Reserves room in the active segment for `need` bytes plus [`RESERVE_STEP`]. Without
    /// that headroom the disk counts as full (the node refuses new writes) but the record
    /// still goes in if its own bytes fit; if not even they do, this waits for space.
    fn reserve_for(&mut self, need: u64) -> io::Result<()> {
        let Some(seg) = self.segments.last_mut() else {
            return Ok(());
        };
        let ahead = (need + RESERVE_STEP).div_ceil(RESERVE_STEP) * RESERVE_STEP;
        match seg.reserve(ahead) {
            Ok(()) => {
                space_returned(&self.shared);
                Ok(())
            }
            Err(e) => {
                mark_full(&self.shared, &e);
                loop {
                    match seg.reserve(need) {
                        Ok(()) => return Ok(()),
                        Err(e) => wait_for_space(&self.shared, e)?,
                    }
                }
            }
        }
    }

    /// While the disk is full and nothing is queued: is the headroom back?
    fn probe_space(&mut self) {
        let Some(seg) = self.segments.last_mut() else {
            space_returned(&self.shared);
            return;
        };
        let ahead = (seg.len + RESERVE_STEP).div_ceil(RESERVE_STEP) * RESERVE_STEP;
        if seg.reserve(ahead).is_ok() {
            space_returned(&self.shared);
        }
    }

    /// Marks the store failed before anyone hears about the failure.
    fn poison(&self, e: &io::Error) {
        self.shared
            .poisoned
            .lock()
            .get_or_insert_with(|| e.to_string());
    }

    fn sync(&mut self, dirty: &mut bool) -> io::Result<()> {
        #[cfg(test)]
        if *dirty
            && self
                .shared
                .fail_next_sync
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(io::Error::other("injected fsync failure"));
        }
        if *dirty {
            fail::fail_point!("raft::log::before_fsync");
            if let Some(seg) = self.segments.last() {
                seg.file.sync_data()?;
            }
            fail::fail_point!("raft::log::after_fsync");
            *dirty = false;
        }
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    fn one(
        &mut self,
        cmd: Cmd,
        pending: &mut Vec<IOFlushed<TypeConfig>>,
        dirty: &mut bool,
    ) -> io::Result<()> {
        match cmd {
            Cmd::Append {
                bytes,
                lens,
                first,
                cb,
            } => {
                let need_new = match self.segments.last() {
                    None => true,
                    Some(s) => s.len >= self.opts.segment_bytes && !s.offsets.is_empty(),
                };
                if need_new {
                    // Seal the current segment before starting the next: only the last segment
                    // may ever have an unsynced (torn) tail.
                    self.sync(dirty)?;
                    let seg = loop {
                        match Segment::create(&self.dir, first) {
                            Ok(s) => break s,
                            Err(e) => wait_for_space(&self.shared, e)?,
                        }
                    };
                    self.segments.push(seg);
                    self.dir_dirty = true;
                }
                let seg = self
                    .segments
                    .last_mut()
                    .ok_or_else(|| io::Error::other("no segment"))?;
                if seg.end_index() != first && !seg.offsets.is_empty() {
                    return Err(io::Error::other(format!(
                        "append at {first} but the log ends before {}",
                        seg.end_index()
                    )));
                }
                if seg.offsets.is_empty() && seg.first_index != first {
                    // An empty segment left by truncation: rename it to its new first index.
                    let new = loop {
                        match Segment::create(&self.dir, first) {
                            Ok(s) => break s,
                            Err(e) => wait_for_space(&self.shared, e)?,
                        }
                    };
                    let old = std::mem::replace(seg, new);
                    std::fs::remove_file(&old.path)?;
                    self.dir_dirty = true;
                }
                let end = self
                    .segments
                    .last()
                    .ok_or_else(|| io::Error::other("no segment"))?
                    .len
                    + bytes.len() as u64;
                self.reserve_for(end)?;
                let seg = self
                    .segments
                    .last_mut()
                    .ok_or_else(|| io::Error::other("no segment"))?;
                fail::fail_point!("raft::log::before_write");
                // A write that ran out of space wrote nothing the log counts (the record is
                // counted once written whole, at a fixed offset): the same write is retried.
                loop {
                    #[cfg(test)]
                    if self.shared.fail_writes_no_space.load(Ordering::SeqCst) {
                        wait_for_space(&self.shared, io::ErrorKind::StorageFull.into())?;
                        continue;
                    }
                    match seg.append(&bytes, &lens) {
                        Ok(()) => break,
                        Err(e) => wait_for_space(&self.shared, e)?,
                    }
                }
                fail::fail_point!("raft::log::after_write");
                *dirty = true;
                pending.push(cb);
            }
            Cmd::Truncate { from } => {
                // Remove from the end backwards so a crash midway never leaves a hole.
                loop {
                    let n = self.segments.len();
                    let Some(seg) = self.segments.last_mut() else {
                        break;
                    };
                    if seg.first_index >= from && n > 1 {
                        let seg = self
                            .segments
                            .pop()
                            .ok_or_else(|| io::Error::other("no segment"))?;
                        std::fs::remove_file(&seg.path)?;
                        self.dir_dirty = true;
                        continue;
                    }
                    seg.truncate_from(from)?;
                    *dirty = true;
                    break;
                }
                if self.dir_dirty {
                    // A deleted later segment must not reappear after a crash: it would leave a
                    // hole behind the shortened one.
                    sync_dir(&self.dir)?;
                    self.dir_dirty = false;
                }
            }
            Cmd::Purge { upto, body } => {
                // Persist the purge point first: recovery skips purged entries, so deleting files
                // afterwards can be interrupted safely.
                fail::fail_point!("raft::log::before_purge");
                self.sync(dirty)?;
                match metafile::write(&self.dir, PURGED, &body, true) {
                    Ok(()) => {}
                    // Deferred, not waited for (appends queue behind it): the files stay and
                    // the next purge, which also covers them, persists its point first.
                    Err(e) if is_no_space(&e) => {
                        tracing::debug!(error = %e, "raft log purge deferred: disk full");
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
                fail::fail_point!("raft::log::mid_purge");
                let keep_last = self.segments.len();
                let mut removed = 0;
                for (i, seg) in self.segments.iter().enumerate() {
                    // A segment is gone once every index in it is <= upto; keep the last one (the
                    // active file) unless it is wholly purged and empty of newer entries.
                    let next_first = self.segments.get(i + 1).map(|s| s.first_index);
                    let all_purged = match next_first {
                        Some(nf) => nf <= upto + 1,
                        None => {
                            i + 1 == keep_last
                                && seg.end_index() <= upto + 1
                                && seg.end_index() > seg.first_index
                        }
                    };
                    if !all_purged {
                        break;
                    }
                    removed += 1;
                }
                for seg in self.segments.drain(..removed) {
                    std::fs::remove_file(&seg.path)?;
                    self.dir_dirty = true;
                }
                fail::fail_point!("raft::log::after_purge");
            }
            Cmd::Vote { body, done } => {
                fail::fail_point!("raft::vote::before_save");
                // Everything queued before the vote becomes durable before the vote does:
                // openraft's I/O progress is one ordered cursor (a flushed vote stands for every
                // I/O submitted before it), and a candidate counts its own vote once it is
                // saved, so the log it campaigned with must be durable by then. Costs one extra
                // fsync only when appends are still queued.
                // A vote is rewritten whole (slot and its fsync) on every try, so retrying
                // after a full disk cannot rely on pages a failed fsync dropped.
                let r = self.sync(dirty).and_then(|_| loop {
                    match self.vote_file.save(&body) {
                        Ok(()) => break Ok(()),
                        Err(e) => wait_for_space(&self.shared, e)?,
                    }
                });
                let failed = r
                    .as_ref()
                    .err()
                    .map(|e| io::Error::new(e.kind(), e.to_string()));
                if let Some(e) = &failed {
                    self.poison(e);
                }
                fail::fail_point!("raft::vote::after_save");
                let _ = done.send(r);
                if let Some(e) = failed {
                    return Err(e);
                }
                for cb in pending.drain(..) {
                    cb.io_completed(Ok(()));
                }
            }
            Cmd::Committed { body } => self.committed = Some(body),
        }
        Ok(())
    }
}

/// Marks the disk full (logged once per episode).
fn mark_full(shared: &Shared, e: &io::Error) {
    if !shared.disk_full.swap(true, Ordering::SeqCst) {
        tracing::error!(
            error = %e,
            "disk full: the raft log cannot grow; refusing writes until space returns"
        );
    }
}

/// Clears the disk-full mark (logged once per episode).
fn space_returned(shared: &Shared) {
    if shared.disk_full.swap(false, Ordering::SeqCst) {
        tracing::warn!("disk space available again: the raft log accepts writes");
    }
}

/// After a failed write: `Ok` (retry it) after a short wait if the disk was full, else the
/// error (anything but "no space" fails the store; so does a store being dropped).
fn wait_for_space(shared: &Shared, e: io::Error) -> io::Result<()> {
    if !is_no_space(&e) || shared.closing.load(Ordering::SeqCst) {
        return Err(e);
    }
    mark_full(shared, &e);
    std::thread::sleep(RETRY_EVERY);
    Ok(())
}

fn fail(cmd: Cmd, e: &io::Error) {
    let err = || io::Error::new(e.kind(), e.to_string());
    match cmd {
        Cmd::Append { cb, .. } => cb.io_completed(Err(err())),
        Cmd::Vote { done, .. } => {
            let _ = done.send(Err(err()));
        }
        _ => {}
    }
}
