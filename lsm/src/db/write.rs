//! The write path: write stalls, group commit into the WAL, memtable inserts, and freezing a
//! full memtable into a new WAL segment.

use super::{Inner, State, Writer};
use crate::batch::{BatchOp, WriteBatch};
use crate::counters::Counters;
use crate::key::{Kind, RangeTombstone};
use crate::memtable::MemTable;
use crate::options::SyncPolicy;
use crate::wal::{self, WalWriter};
use crate::{Error, Result};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

// Encoding buffers up to this capacity are kept between groups.
const REUSE_LIMIT: usize = 4 << 20;

/// Inserts the operations of `batch` into `mem`, numbering them from `first_seq` (values
/// move into the memtable without copies).
pub(crate) fn apply_batch(mem: &MemTable, first_seq: u64, batch: WriteBatch) {
    // Even a batch of empty range deletes uses up its sequence numbers.
    mem.note_seq(first_seq + batch.len().saturating_sub(1) as u64);
    for (seq, op) in (first_seq..).zip(batch.into_ops()) {
        match op {
            BatchOp::Put(k, v) => mem.put(&k, seq, Kind::Put, v),
            BatchOp::Delete(k) => mem.put(&k, seq, Kind::Delete, Bytes::new()),
            BatchOp::DeleteRange(start, end) => {
                if start < end {
                    mem.delete_range(RangeTombstone { start, end, seq });
                }
            }
        }
    }
}

impl Inner {
    /// Applies `batch` atomically; returns the sequence number of its last operation.
    pub(crate) fn write(&self, batch: WriteBatch) -> Result<u64> {
        self.check_stopped()?;
        if batch.is_empty() {
            return Ok(self.visible_seq.load(Ordering::SeqCst));
        }
        self.maybe_stall();
        let mut q = self.queue.lock();
        let id = q.next_id;
        q.next_id += 1;
        q.pending.push((id, batch));
        loop {
            if let Some(r) = q.done.remove(&id) {
                return r;
            }
            if !q.leader {
                // Become the leader: commit everything queued with one append and one fsync.
                q.leader = true;
                let spare = std::mem::take(&mut q.spare);
                let mut group = std::mem::replace(&mut q.pending, spare);
                drop(q);
                let results = self.commit_group(&mut group);
                let mut mine = None;
                q = self.queue.lock();
                q.leader = false;
                if group.capacity() <= 1024 {
                    q.spare = group;
                }
                for (i, r) in results {
                    if i == id {
                        mine = Some(r);
                    } else {
                        q.done.insert(i, r);
                    }
                }
                if !q.done.is_empty() || !q.pending.is_empty() {
                    self.queue_cv.notify_all();
                }
                match mine {
                    Some(r) => return r,
                    None => continue,
                }
            }
            self.queue_cv.wait(&mut q);
        }
    }

    /// Writes `group` (drained) to the WAL and the memtable; returns each batch's outcome.
    fn commit_group(&self, group: &mut Vec<(u64, WriteBatch)>) -> Vec<(u64, Result<u64>)> {
        let mut w = self.writer.lock();
        if let Err(e) = self.check_stopped() {
            let msg = e.to_string();
            return group
                .drain(..)
                .map(|(id, _)| (id, Err(Error::Stopped(msg.clone()))))
                .collect();
        }
        let mut buf = std::mem::take(&mut w.buf);
        let mut payload = std::mem::take(&mut w.payload);
        buf.clear();
        let mut seq = w.last_seq;
        let mut results: Vec<(u64, Result<u64>)> = Vec::with_capacity(group.len());
        for (id, b) in group.iter() {
            payload.clear();
            wal::encode_batch(&mut payload, b);
            match wal::frame_record(&mut buf, seq + 1, &payload) {
                Ok(()) => {
                    seq += b.len() as u64;
                    results.push((*id, Ok(seq)));
                }
                Err(e) => results.push((*id, Err(e))),
            }
        }
        if !buf.is_empty() {
            let io = w.wal.append(&buf).and_then(|_| match self.opts.sync {
                SyncPolicy::Always => w.wal.sync(),
                _ => Ok(()),
            });
            if let Err(e) = io {
                // Never retry and acknowledge: the engine stops accepting writes.
                let msg = format!("WAL write failed: {e}");
                self.stop(&msg);
                return group
                    .drain(..)
                    .map(|(id, _)| (id, Err(Error::Stopped(msg.clone()))))
                    .collect();
            }
            if matches!(self.opts.sync, SyncPolicy::EveryMillis(_)) {
                w.dirty = true;
            }
        }
        let mem = self.state.load().mem.clone();
        let mut user_bytes = 0;
        for ((_, b), (_, r)) in group.drain(..).zip(&results) {
            // Batches that were not framed (too large) are skipped; they used no numbers.
            if let Ok(last) = r {
                user_bytes += b.payload_bytes();
                let first = last + 1 - b.len() as u64;
                apply_batch(&mem, first, b);
            }
        }
        w.last_seq = seq;
        self.visible_seq.store(seq, Ordering::SeqCst);
        Counters::add(&self.counters.user_bytes, user_bytes);
        Counters::add(&self.counters.wal_bytes, buf.len() as u64);
        // Keep modest buffers for the next group; drop huge ones.
        if buf.capacity() <= REUSE_LIMIT {
            w.buf = buf;
        }
        if payload.capacity() <= REUSE_LIMIT {
            w.payload = payload;
        }
        if mem.approx_size() >= self.opts.memtable_size {
            if let Err(e) = self.rotate(&mut w) {
                self.stop(&format!("starting a new memtable failed: {e}"));
            }
        }
        results
    }

    /// Freezes the active memtable and starts a new one with a new WAL segment.
    pub(super) fn rotate(&self, w: &mut Writer) -> Result<()> {
        if self.state.load().mem.is_empty() {
            return Ok(());
        }
        let id = self.alloc_file();
        let new_wal = WalWriter::create(&*self.opts.vfs, &self.dir, id)?;
        // The old segment must be complete on disk before records land in the next one.
        if self.opts.sync != SyncPolicy::Never || w.dirty {
            w.wal.sync()?;
        }
        w.dirty = false;
        w.wal = new_wal;
        {
            let _g = self.swap_lock.lock();
            let cur = self.state.load_full();
            let mut imms = Vec::with_capacity(cur.imms.len() + 1);
            imms.push(cur.mem.clone());
            imms.extend(cur.imms.iter().cloned());
            self.state.store(Arc::new(State {
                mem: Arc::new(MemTable::new(id)),
                imms,
                version: cur.version.clone(),
            }));
        }
        self.notify_bg();
        Ok(())
    }

    /// Slows writers when L0 files pile up and blocks them while immutable memtables or L0
    /// files are at their limits, until background work catches up. Never fails them.
    fn maybe_stall(&self) {
        if !self.opts.background_work {
            return;
        }
        let max_imm = self.opts.max_immutable_memtables.max(1);
        let stop = self.opts.l0_stop_trigger.max(1);
        let mut slowed = false;
        let mut counted = false;
        loop {
            if self.stopped.load(Ordering::Acquire) || self.shutdown.load(Ordering::Acquire) {
                return;
            }
            let st = self.state.load();
            let l0 = st.version.levels.first().map_or(0, Vec::len);
            if st.imms.len() >= max_imm || l0 >= stop {
                if !counted {
                    Counters::add(&self.counters.write_stalls, 1);
                    counted = true;
                }
                drop(st);
                let mut g = self.bg_lock.lock();
                self.bg_cv.wait_for(&mut g, Duration::from_millis(10));
                continue;
            }
            if l0 >= self.opts.l0_slowdown_trigger && !slowed {
                if !counted {
                    Counters::add(&self.counters.write_stalls, 1);
                    counted = true;
                }
                slowed = true;
                drop(st);
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            return;
        }
    }

    /// Background fsync for `SyncPolicy::EveryMillis`.
    pub(super) fn sync_wal_if_dirty(&self) {
        let mut w = self.writer.lock();
        if w.dirty && !self.stopped.load(Ordering::Acquire) {
            if let Err(e) = w.wal.sync() {
                self.stop(&format!("WAL fsync failed: {e}"));
            }
            w.dirty = false;
        }
    }
}
