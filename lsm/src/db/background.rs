//! Flushes and compactions, run by background threads or inline from `flush`/`compact_range`.

use super::{Inner, State};
use crate::compact::controller::{self, CompactionTask, ControllerOptions, LevelsState};
use crate::compact::run::{merge, snapshot_in, MergePolicy};
use crate::counters::Counters;
use crate::iterators::InternalIterator;
use crate::key;
use crate::manifest::{ManifestWriter, VersionEdit};
use crate::memtable::MemTable;
use crate::sstable::builder::TableBuilder;
use crate::sstable::reader::{Table, TableIter};
use crate::sstable::{table_name, FileMeta};
use crate::version::{LevelIter, TableHandle};
use crate::wal::segment_name;
use crate::{Error, Result, SyncPolicy};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

// A flush or compaction that ran out of disk space is retried after this long.
const NO_SPACE_RETRY: Duration = Duration::from_secs(1);

// Rewrite the manifest from a snapshot once it grows past this.
const MANIFEST_ROLL_BYTES: u64 = 8 << 20;

/// A manual compaction request.
pub(super) struct Manual<'a> {
    level: usize,
    start: Option<&'a [u8]>,
    end: Option<&'a [u8]>,
    /// Rewrite the level into itself (only for the bottom level).
    in_place: bool,
}

impl Inner {
    fn new_builder(&self) -> Result<(u64, TableBuilder)> {
        let id = self.alloc_file();
        let path = self.path_of(&table_name(id));
        let file = self
            .opts
            .vfs
            .create(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok((
            id,
            TableBuilder::new(
                file,
                path,
                self.opts.block_size,
                self.opts.block_restart_interval,
                self.opts.bloom_fp_rate,
            ),
        ))
    }

    pub(super) fn open_handle(&self, meta: FileMeta) -> Result<Arc<TableHandle>> {
        let path = self.path_of(&table_name(meta.id));
        let table = Table::open(
            &*self.opts.vfs,
            &path,
            meta.id,
            self.cache.clone(),
            self.counters.clone(),
        )?;
        Ok(Arc::new(TableHandle::new(
            meta,
            table,
            path,
            self.opts.vfs.clone(),
        )))
    }

    fn sync_dir(&self) -> Result<()> {
        self.opts
            .vfs
            .sync_dir(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))
    }

    /// Writes a memtable into one table; `None` when it holds nothing.
    pub(super) fn write_memtable(&self, mem: &Arc<MemTable>) -> Result<Option<FileMeta>> {
        if mem.is_empty() {
            return Ok(None);
        }
        let (id, mut b) = self.new_builder()?;
        // Versions shadowed by a newer version of the same key with no snapshot between them
        // are never read again (readers without a snapshot retry across the install, which
        // bumps the compaction epoch): a key overwritten many times (a list's metadata, a
        // counter) becomes one record instead of one per write.
        let snapshots = self.snapshots.list();
        let mut cur_user: Vec<u8> = Vec::new();
        let mut prev_seq = u64::MAX;
        let built = mem
            .for_each(|k, v| {
                let (u, s, _) = key::split(k);
                if prev_seq != u64::MAX && u == cur_user.as_slice() {
                    let needed = snapshot_in(&snapshots, s, prev_seq);
                    prev_seq = s;
                    if !needed {
                        return Ok(());
                    }
                } else {
                    cur_user.clear();
                    cur_user.extend_from_slice(u);
                    prev_seq = s;
                }
                b.add(k, v)
            })
            .and_then(|()| {
                for t in mem.range_tombstones() {
                    b.add_tombstone(t);
                }
                b.finish(id)
            });
        match built.and_then(|meta| self.sync_dir().map(|()| meta)) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) => {
                // Nothing refers to the table yet; the memtable (and its WAL) still hold it all.
                let _ = self.opts.vfs.remove(&self.path_of(&table_name(id)));
                Err(e)
            }
        }
    }

    /// Records `edit` in the manifest and installs the matching version. `mutate` may adjust
    /// the memtable list in the same atomic swap.
    fn install(
        &self,
        edit: VersionEdit,
        added: &HashMap<u64, Arc<TableHandle>>,
        is_compaction: bool,
        mutate: impl FnOnce(&State) -> Vec<Arc<MemTable>>,
    ) -> Result<()> {
        let mut s = self.structure.lock();
        let mut edit = edit;
        edit.next_file = Some(self.next_file.load(Ordering::SeqCst));
        if let Err(e) = s.manifest.write(&edit) {
            // `NoSpace`: refused before anything was written; the manifest is intact.
            if !e.is_no_space() {
                self.stop(&format!("manifest write failed: {e}"));
            }
            return Err(e);
        }
        s.meta.apply(&edit);
        if is_compaction {
            self.compaction_epoch.fetch_add(1, Ordering::SeqCst);
        }
        {
            let _g = self.swap_lock.lock();
            let cur = self.state.load_full();
            let imms = mutate(&cur);
            let version = Arc::new(cur.version.apply(&edit, added));
            self.state.store(Arc::new(State {
                mem: cur.mem.clone(),
                imms,
                version,
            }));
        }
        if s.manifest.len() > MANIFEST_ROLL_BYTES {
            let old = s.manifest.id;
            let id = self.alloc_file();
            s.meta.next_file = s.meta.next_file.max(id + 1);
            match ManifestWriter::create(&*self.opts.vfs, &self.dir, id, &s.meta) {
                Ok(m) => {
                    s.manifest = m;
                    let p = self.path_of(&crate::manifest::manifest_name(old));
                    let _ = self.opts.vfs.remove(&p);
                }
                // Refused before `CURRENT` moved: the old manifest (which holds this edit)
                // stays in use, and a later install tries the rewrite again.
                Err(e) if e.is_no_space() => {
                    tracing::warn!(error = %e, "no space to rewrite the manifest");
                    let p = self.path_of(&crate::manifest::manifest_name(id));
                    let _ = self.opts.vfs.remove(&p);
                }
                Err(e) => {
                    self.stop(&format!("manifest rewrite failed: {e}"));
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Flushes the oldest immutable memtable; false when there was none.
    pub(super) fn flush_one(&self) -> Result<bool> {
        let _f = self.flush_lock.lock();
        let Some(imm) = self.state.load().imms.last().cloned() else {
            return Ok(false);
        };
        let meta = match self.write_memtable(&imm) {
            Ok(m) => m,
            Err(e) if e.out_of_space() => {
                // The memtable stays queued; the flush loop retries once space returns.
                return Err(self.no_space(&self.flush_no_space, "flush", e));
            }
            Err(e) => {
                self.stop(&format!("flush failed: {e}"));
                return Err(e);
            }
        };
        let mut added = HashMap::new();
        let mut edit = VersionEdit {
            log_number: Some(imm.wal_id + 1),
            last_seq: Some(imm.max_seq()),
            ..Default::default()
        };
        let mut bytes = 0;
        if let Some(meta) = meta {
            bytes = meta.size;
            let h = self.open_handle(meta.clone())?;
            added.insert(meta.id, h);
            edit.added.push((0, meta));
        }
        // The table may lack versions the memtable had (see `write_memtable`): bump the
        // epoch like a compaction so readers without a snapshot retry.
        let installed = self.install(edit, &added, true, |cur| {
            cur.imms
                .iter()
                .filter(|m| !Arc::ptr_eq(m, &imm))
                .cloned()
                .collect()
        });
        if let Err(e) = installed {
            if e.is_no_space() {
                // Not in the manifest: the new table goes away with its handle.
                for h in added.values() {
                    h.mark_obsolete();
                }
                return Err(self.no_space(&self.flush_no_space, "flush", e));
            }
            return Err(e);
        }
        self.flush_no_space.store(false, Ordering::Release);
        Counters::add(&self.counters.flush_bytes, bytes);
        let wal = self.path_of(&segment_name(imm.wal_id));
        if let Err(e) = self.opts.vfs.remove(&wal) {
            tracing::warn!(path = %wal.display(), error = %e, "removing flushed WAL segment");
        }
        self.notify_bg();
        Ok(true)
    }

    /// Freezes the active memtable and flushes every memtable.
    pub(crate) fn flush_all(&self) -> Result<()> {
        self.check_stopped()?;
        {
            let mut io = self.wal_io.lock();
            let mut w = self.writer.lock();
            self.check_stopped()?;
            if let Err(e) = self.rotate(&mut io, &mut w) {
                if !e.is_no_space() {
                    self.stop(&format!("starting a new memtable failed: {e}"));
                    return Err(e);
                }
                // No room for a new segment: at least make everything written so far durable
                // in the current one (what a flush before exit is for).
                self.write_pending(&mut io, Some(&mut w), true)?;
                return Err(e);
            }
        }
        while self.flush_one()? {}
        Ok(())
    }

    fn controller_opts(&self) -> ControllerOptions {
        ControllerOptions::from_options(&self.opts)
    }

    /// Runs one compaction: the controller's pick, or `manual` (level, start, end).
    pub(super) fn compact_once(&self, manual: Option<Manual<'_>>) -> Result<bool> {
        let _c = self.compaction_lock.lock();
        let st = self.state.load_full();
        let levels = LevelsState {
            levels: st.version.metas(),
        };
        let task = match manual {
            None => controller::pick(&self.controller_opts(), &levels),
            Some(Manual {
                level,
                start,
                end,
                in_place: false,
            }) => controller::pick_manual(&levels, level, start, end),
            Some(Manual {
                level,
                start,
                end,
                in_place: true,
            }) => controller::pick_manual_in_place(&levels, level, start, end),
        };
        let Some(task) = task else {
            return Ok(false);
        };
        let handles: HashMap<u64, Arc<TableHandle>> = st
            .version
            .levels
            .iter()
            .flatten()
            .map(|h| (h.meta.id, h.clone()))
            .collect();
        drop(st);
        match self.run_task(&task, &handles, manual.is_some()) {
            Ok(()) => {
                self.compact_no_space.store(false, Ordering::Release);
                self.notify_bg();
                Ok(true)
            }
            // Its outputs are gone and its inputs untouched: retried once space returns.
            Err(e) if e.out_of_space() => {
                Err(self.no_space(&self.compact_no_space, "compaction", e))
            }
            Err(e) => {
                self.stop(&format!("compaction failed: {e}"));
                Err(e)
            }
        }
    }

    fn run_task(
        &self,
        task: &CompactionTask,
        handles: &HashMap<u64, Arc<TableHandle>>,
        manual: bool,
    ) -> Result<()> {
        let get = |f: &FileMeta| {
            handles.get(&f.id).cloned().ok_or_else(|| {
                Error::InvalidArgument(format!("compaction input {} not in version", f.id))
            })
        };
        let upper: Vec<Arc<TableHandle>> = task.upper.iter().map(get).collect::<Result<_>>()?;
        let lower: Vec<Arc<TableHandle>> = task.lower.iter().map(get).collect::<Result<_>>()?;
        let mut edit = VersionEdit::default();
        for f in &task.upper {
            edit.removed.push((task.input_level, f.id));
        }
        for f in &task.lower {
            edit.removed.push((task.output_level, f.id));
        }

        // A lone file with nothing below to merge with just changes level.
        if !manual && upper.len() == 1 && lower.is_empty() {
            let h = upper[0].clone();
            edit.added.push((task.output_level, h.meta.clone()));
            let added = HashMap::from([(h.meta.id, h)]);
            return self.install(edit, &added, true, |cur| cur.imms.clone());
        }

        let mut sources: Vec<Box<dyn InternalIterator>> = Vec::new();
        let mut tombs = Vec::new();
        if task.input_level == 0 {
            for h in &upper {
                sources.push(Box::new(TableIter::with_cache_fill(h.table.clone(), false)));
            }
        } else {
            sources.push(Box::new(LevelIter::with_cache_fill(upper.clone(), false)));
        }
        if !lower.is_empty() {
            sources.push(Box::new(LevelIter::with_cache_fill(lower.clone(), false)));
        }
        for h in upper.iter().chain(&lower) {
            tombs.extend_from_slice(h.table.range_tombstones());
        }
        let snapshots = self.snapshots.list();
        let filter = self.opts.compaction_filter.clone();
        if let Some(f) = &filter {
            f.begin_compaction();
        }
        let policy = MergePolicy {
            snapshots: &snapshots,
            bottommost: task.bottommost,
            filter: filter.as_deref(),
            level: task.output_level,
            target_file_size: self.opts.target_file_size.max(4096),
        };
        let mut created: Vec<u64> = Vec::new();
        let result = merge(sources, tombs, &policy, &mut || {
            let (id, b) = self.new_builder()?;
            created.push(id);
            Ok((id, b))
        })
        .and_then(|outs| {
            self.sync_dir()?;
            let mut added = HashMap::new();
            for m in &outs {
                added.insert(m.id, self.open_handle(m.clone())?);
            }
            Ok((outs, added))
        });
        let (outs, added) = match result {
            Ok(r) => r,
            Err(e) => {
                for id in created {
                    let _ = self.opts.vfs.remove(&self.path_of(&table_name(id)));
                }
                return Err(e);
            }
        };
        let bytes: u64 = outs.iter().map(|m| m.size).sum();
        for m in outs {
            edit.added.push((task.output_level, m));
        }
        if let Err(e) = self.install(edit, &added, true, |cur| cur.imms.clone()) {
            if e.is_no_space() {
                // Not in the manifest: the outputs go away with their handles.
                for h in added.values() {
                    h.mark_obsolete();
                }
            }
            return Err(e);
        }
        for h in upper.iter().chain(&lower) {
            h.mark_obsolete();
        }
        Counters::add(&self.counters.compaction_bytes, bytes);
        Ok(())
    }

    /// Flushes, then compacts every file overlapping `[start, end)` down to the bottom level.
    pub(crate) fn compact_range(&self, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<()> {
        self.flush_all()?;
        let st = self.state.load_full();
        let last_used = st
            .version
            .levels
            .iter()
            .rposition(|l| !l.is_empty())
            .unwrap_or(0);
        let bottom = last_used.max(1).min(st.version.levels.len() - 1);
        drop(st);
        for level in 0..bottom {
            // One task per level: it takes every file of the level overlapping the range.
            self.compact_once(Some(Manual {
                level,
                start,
                end,
                in_place: false,
            }))?;
        }
        if last_used >= 1 {
            // The bottom level had data of its own: rewrite it so its tombstones go away.
            self.compact_once(Some(Manual {
                level: bottom,
                start,
                end,
                in_place: true,
            }))?;
        }
        self.check_stopped()
    }

    /// Records that `what` ran out of disk space (sets `flag`); returns `e`.
    fn no_space(&self, flag: &AtomicBool, what: &str, e: Error) -> Error {
        // The half-written file was discarded: to callers this is a clean refusal.
        let e = match e {
            Error::Io { path, source } if crate::is_no_space(&source) => {
                Error::NoSpace { path, source }
            }
            e => e,
        };
        if !flag.swap(true, Ordering::AcqRel) {
            tracing::error!(error = %e, "disk full: {what} failed; retrying when space returns");
        }
        // Writers stalled on this work must notice that it cannot progress.
        self.notify_bg();
        e
    }

    /// Waits after a background step that did nothing (`idle`) or ran out of space (longer,
    /// so a full disk is not hammered with doomed table writes).
    fn bg_wait(&self, res: &Result<bool>, idle: Duration) -> bool {
        let wait = match res {
            Ok(true) => return true,
            Err(e) if e.out_of_space() => NO_SPACE_RETRY,
            _ => idle,
        };
        let mut g = self.bg_lock.lock();
        if self.shutdown.load(Ordering::Acquire) {
            return false;
        }
        self.bg_cv.wait_for(&mut g, wait);
        true
    }

    /// Background loop: flushes immutable memtables as they appear.
    pub(super) fn flush_loop(self: &Arc<Self>) {
        while !self.shutdown.load(Ordering::Acquire) {
            let res = if self.stopped.load(Ordering::Acquire) {
                Ok(false)
            } else {
                self.flush_one()
            };
            if !self.bg_wait(&res, Duration::from_millis(50)) {
                break;
            }
        }
    }

    /// Background loop: runs compactions while the controller has work.
    pub(super) fn compaction_loop(self: &Arc<Self>) {
        while !self.shutdown.load(Ordering::Acquire) {
            let res = if self.stopped.load(Ordering::Acquire) {
                Ok(false)
            } else {
                self.compact_once(None)
            };
            if !self.bg_wait(&res, Duration::from_millis(100)) {
                break;
            }
        }
    }

    /// Background loop for `SyncPolicy::EveryMillis`.
    pub(super) fn sync_loop(self: &Arc<Self>) {
        let SyncPolicy::EveryMillis(ms) = self.opts.sync else {
            return;
        };
        let period = Duration::from_millis(ms.max(1));
        while !self.shutdown.load(Ordering::Acquire) {
            {
                let mut g = self.bg_lock.lock();
                if self.shutdown.load(Ordering::Acquire) {
                    break;
                }
                self.bg_cv.wait_for(&mut g, period);
            }
            self.sync_wal_if_dirty();
        }
    }
}
