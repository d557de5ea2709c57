//! The write path: write stalls, group commit into the WAL, memtable inserts, and freezing a
//! full memtable into a new WAL segment.

use super::{Inner, State, WalIo, Writer};
use crate::batch::{BatchOp, WriteBatch};
use crate::counters::Counters;
use crate::key::RangeTombstone;
use crate::memtable::MemTable;
use crate::options::SyncPolicy;
use crate::wal::{self, WalWriter};
use crate::{Error, Result};
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
    let mut ops = batch.into_ops();
    mem.put_batch(first_seq, &mut ops);
    for (seq, op) in (first_seq..).zip(ops) {
        if let BatchOp::DeleteRange(start, end) = op {
            if start < end {
                mem.delete_range(RangeTombstone { start, end, seq });
            }
        }
    }
}

impl Inner {
    /// Applies `batch` atomically and durably; returns the sequence number of its last
    /// operation.
    pub(crate) fn write(&self, batch: WriteBatch) -> Result<u64> {
        let seq = self.write_deferred(batch)?;
        self.sync_to(seq)?;
        Ok(seq)
    }

    /// Numbers `batch`, inserts it into the memtable and frames its WAL record into the
    /// in-memory buffer; returns its last sequence number (durable after `sync_to`). On a
    /// full disk the batch is refused whole, or, in wait-for-space mode (a Raft replica's
    /// apply, which must not skip a committed entry), written once space returns.
    pub(crate) fn write_deferred(&self, batch: WriteBatch) -> Result<u64> {
        let mut batch = Some(batch);
        loop {
            match self.write_deferred_once(&mut batch) {
                Err(e)
                    if e.is_no_space()
                        && batch.is_some()
                        && self.wait_for_space.load(Ordering::Relaxed)
                        && !self.shutdown.load(Ordering::Acquire) =>
                {
                    // Refused before anything was applied: the same batch goes in later.
                    std::thread::sleep(Duration::from_millis(100));
                }
                r => return r,
            }
        }
    }

    /// One try of [`Inner::write_deferred`]; takes the batch only once it is applied.
    fn write_deferred_once(&self, batch: &mut Option<WriteBatch>) -> Result<u64> {
        self.check_stopped()?;
        let empty = batch.as_ref().is_none_or(WriteBatch::is_empty);
        if empty {
            return Ok(self.visible_seq.load(Ordering::SeqCst));
        }
        self.maybe_stall()?;
        let mut w = self.writer.lock();
        self.check_stopped()?;
        let mut payload = std::mem::take(&mut w.payload);
        payload.clear();
        if let Some(b) = batch.as_ref() {
            wal::encode_batch(&mut payload, b);
        }
        let first = w.last_seq + 1;
        let record = (wal::HEADER + payload.len()) as u64;
        let end = w.wal_end + record;
        // The record's space is reserved before anything is applied: on a full disk the
        // batch is refused whole (no sequence number, not visible, nothing in the WAL).
        let framed = match w.space.ensure(end) {
            Ok(()) => wal::frame_record(&mut w.pending, first, &payload),
            Err(e) => Err(Error::NoSpace {
                path: w.wal_path.clone(),
                source: e,
            }),
        };
        let wal_bytes = payload.len() as u64;
        if payload.capacity() <= REUSE_LIMIT {
            w.payload = payload;
        }
        // A batch that cannot be framed uses no sequence numbers.
        if let Err(e) = framed {
            if e.is_no_space() {
                w.refused_len = record;
            }
            if e.is_no_space() && !self.write_refused.swap(true, Ordering::Relaxed) {
                tracing::error!(error = %e, "disk full: refusing writes until space returns");
            }
            return Err(e);
        }
        // In wait mode (Raft) a step of room beyond this record is kept: without it the
        // engine reports itself full (the server refuses new writes) while the writes
        // already committed still fit and go in, so applying them never waits.
        let headroom = !self.wait_for_space.load(Ordering::Relaxed)
            || w.space.ensure(end + self.wal_reserve_step()).is_ok();
        if headroom {
            if self.write_refused.swap(false, Ordering::Relaxed) {
                tracing::warn!("disk space available again: accepting writes");
            }
        } else if !self.write_refused.swap(true, Ordering::Relaxed) {
            tracing::error!("disk almost full: no reserve left; refusing new writes");
        }
        let Some(batch) = batch.take() else {
            return Ok(self.visible_seq.load(Ordering::SeqCst));
        };
        w.wal_end = end;
        let seq = first + batch.len() as u64 - 1;
        let user_bytes = batch.payload_bytes();
        let mem = self.state.load().mem.clone();
        apply_batch(&mem, first, batch);
        w.last_seq = seq;
        self.visible_seq.store(seq, Ordering::SeqCst);
        Counters::add(&self.counters.user_bytes, user_bytes);
        Counters::add(&self.counters.wal_bytes, wal_bytes + 20);
        drop(w);
        if mem.approx_size() >= self.opts.memtable_size {
            let mut io = self.wal_io.lock();
            let mut w = self.writer.lock();
            // Another writer may have rotated meanwhile.
            if self.state.load().mem.approx_size() >= self.opts.memtable_size {
                match self.rotate(&mut io, &mut w) {
                    Ok(()) => {}
                    // No new segment could be created: nothing changed; the memtable stays
                    // active and the next write tries again (debug: that is every write).
                    Err(e) if e.is_no_space() => {
                        tracing::debug!(error = %e, "no space for a new WAL segment");
                    }
                    Err(e) => self.stop(&format!("starting a new memtable failed: {e}")),
                }
            }
        }
        Ok(seq)
    }

    /// True unless writes are refused for lack of space and reserving room for the record
    /// that was refused (at least a small one) still fails; a success ends the refusal. Like
    /// Redis, which refuses every write until its failed AOF write goes through.
    pub(crate) fn probe_space(&self) -> bool {
        // A record's header plus a small batch.
        const PROBE: u64 = 4096;
        if !self.write_refused.load(Ordering::Relaxed) {
            return true;
        }
        let mut w = self.writer.lock();
        let end = if self.wait_for_space.load(Ordering::Relaxed) {
            // The headroom wait mode keeps (see `write_deferred_once`).
            w.wal_end + self.wal_reserve_step()
        } else {
            w.wal_end + w.refused_len.max(PROBE)
        };
        if w.space.ensure(end).is_err() {
            return false;
        }
        if self.write_refused.swap(false, Ordering::Relaxed) {
            tracing::warn!("disk space available again: accepting writes");
        }
        true
    }

    /// Makes every write up to `seq` durable per the sync policy. The first caller appends
    /// (and under `Always` fsyncs) everything buffered so far for all; later callers whose
    /// `seq` is already covered return at once.
    pub(crate) fn sync_to(&self, seq: u64) -> Result<()> {
        if self.durable_seq.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let mut io = self.wal_io.lock();
        if self.durable_seq.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        self.check_stopped()?;
        self.write_pending(&mut io, None, self.opts.sync == SyncPolicy::Always)
    }

    /// Appends the buffered records to the WAL (and fsyncs if `sync`), then marks them
    /// durable. `w` is the writer if the caller holds it; otherwise the buffer is taken
    /// under a short lock so writers keep buffering during the I/O. An I/O error stops the
    /// engine, since the records may be half written.
    pub(super) fn write_pending(
        &self,
        io: &mut WalIo,
        w: Option<&mut Writer>,
        sync: bool,
    ) -> Result<()> {
        let spare = std::mem::take(&mut io.spare);
        let (mut buf, upto) = match w {
            Some(w) => (std::mem::replace(&mut w.pending, spare), w.last_seq),
            None => {
                let mut w = self.writer.lock();
                (std::mem::replace(&mut w.pending, spare), w.last_seq)
            }
        };
        if !buf.is_empty() {
            let res = io
                .wal
                .append(&buf)
                .and_then(|_| if sync { io.wal.sync() } else { Ok(()) });
            if let Err(e) = res {
                // Never retry and acknowledge: the engine stops accepting writes.
                let msg = format!("WAL write failed: {e}");
                self.stop(&msg);
                return Err(Error::Stopped(msg));
            }
            io.dirty = !sync;
            if buf.capacity() <= REUSE_LIMIT {
                buf.clear();
                io.spare = buf;
            }
        } else if sync && io.dirty {
            if let Err(e) = io.wal.sync() {
                let msg = format!("WAL fsync failed: {e}");
                self.stop(&msg);
                return Err(Error::Stopped(msg));
            }
            io.dirty = false;
        }
        self.durable_seq.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    /// How far ahead WAL space is reserved: a quarter memtable (a segment holds about one
    /// memtable of records), between 4 KiB and 1 MiB.
    pub(super) fn wal_reserve_step(&self) -> u64 {
        (self.opts.memtable_size as u64 / 4).clamp(4 << 10, 1 << 20)
    }

    /// Freezes the active memtable and starts a new one with a new WAL segment.
    /// `Error::NoSpace` means the new segment could not be created and nothing changed;
    /// any other error leaves the engine to be stopped by the caller.
    pub(super) fn rotate(&self, io: &mut WalIo, w: &mut Writer) -> Result<()> {
        if self.state.load().mem.is_empty() {
            return Ok(());
        }
        let id = self.alloc_file();
        let new_wal = WalWriter::create(&*self.opts.vfs, &self.dir, id)?;
        // The old segment must be complete on disk before records land in the next one.
        self.write_pending(io, Some(w), self.opts.sync == SyncPolicy::Always)?;
        if self.opts.sync != SyncPolicy::Never && io.dirty {
            io.wal.sync()?;
        }
        io.dirty = false;
        w.space = new_wal.reservation(self.wal_reserve_step());
        w.wal_end = 0;
        w.wal_path = new_wal.path().to_path_buf();
        io.wal = new_wal;
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
    /// files are at their limits, until background work catches up. Fails them only when
    /// that work is blocked by a full disk (waiting could take forever).
    fn maybe_stall(&self) -> Result<()> {
        if !self.opts.background_work {
            return Ok(());
        }
        let max_imm = self.opts.max_immutable_memtables.max(1);
        let stop = self.opts.l0_stop_trigger.max(1);
        let mut slowed = false;
        let mut counted = false;
        loop {
            if self.stopped.load(Ordering::Acquire) || self.shutdown.load(Ordering::Acquire) {
                return Ok(());
            }
            let st = self.state.load();
            let l0 = st.version.levels.first().map_or(0, Vec::len);
            if st.imms.len() >= max_imm || l0 >= stop {
                let blocked = (st.imms.len() >= max_imm
                    && self.flush_no_space.load(Ordering::Acquire))
                    || (l0 >= stop && self.compact_no_space.load(Ordering::Acquire));
                if blocked {
                    if !self.write_refused.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            "disk full: flushes or compactions cannot run; refusing writes"
                        );
                    }
                    return Err(Error::NoSpace {
                        path: self.dir.clone(),
                        source: std::io::ErrorKind::StorageFull.into(),
                    });
                }
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
            return Ok(());
        }
    }

    /// Background fsync for `SyncPolicy::EveryMillis`.
    pub(super) fn sync_wal_if_dirty(&self) {
        let mut io = self.wal_io.lock();
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        // Records nobody asked to sync yet are still bounded by the interval.
        if self
            .write_pending(&mut io, None, self.opts.sync == SyncPolicy::Always)
            .is_err()
        {
            return;
        }
        if io.dirty {
            if let Err(e) = io.wal.sync() {
                self.stop(&format!("WAL fsync failed: {e}"));
            }
            io.dirty = false;
        }
    }
}
