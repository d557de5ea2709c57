//! Opening an engine: read the manifest, open its tables, replay newer WAL segments into a
//! table, write a fresh manifest, remove files nothing references, start background threads.

use super::{Inner, Lsm, SnapshotList, State, Structure, WalIo, Writer};
use crate::counters::Counters;
use crate::manifest::{self, ManifestState, ManifestWriter, VersionEdit};
use crate::memtable::MemTable;
use crate::sstable::cache::BlockCache;
use crate::version::Version;
use crate::wal::{self, WalWriter};
use crate::{Error, Options, Result};
use arc_swap::ArcSwap;
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

fn parse_number(name: &str, suffix: &str) -> Option<u64> {
    name.strip_suffix(suffix)?.parse().ok()
}

pub(super) fn open(dir: &Path, mut opts: Options) -> Result<Lsm> {
    opts.max_levels = opts.max_levels.max(2);
    let vfs = opts.vfs.clone();
    vfs.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let loaded = manifest::load(&*vfs, dir, opts.max_levels)?;
    let old_manifest = loaded.as_ref().map(|(id, _)| *id);
    let mut meta = loaded.map_or_else(|| ManifestState::new(opts.max_levels), |(_, s)| s);
    while meta.levels.len() < opts.max_levels {
        meta.levels.push(Vec::new());
    }

    let names = vfs.list(dir).map_err(|e| Error::io(dir, e))?;
    let mut max_seen = 0u64;
    let mut wals: Vec<u64> = Vec::new();
    for n in &names {
        if let Some(id) = parse_number(n, ".wal") {
            wals.push(id);
            max_seen = max_seen.max(id);
        } else if let Some(id) = parse_number(n, ".sst") {
            max_seen = max_seen.max(id);
        } else if let Some(id) = n
            .strip_prefix("MANIFEST-")
            .and_then(|s| s.parse::<u64>().ok())
        {
            max_seen = max_seen.max(id);
        }
    }
    wals.sort_unstable();

    let inner = Arc::new(Inner {
        dir: dir.to_path_buf(),
        state: ArcSwap::from_pointee(State {
            mem: Arc::new(MemTable::new(0)),
            imms: Vec::new(),
            version: Arc::new(Version::new(opts.max_levels)),
        }),
        swap_lock: Mutex::new(()),
        // Replaced below once the real segment exists.
        writer: Mutex::new(Writer {
            last_seq: 0,
            pending: Vec::new(),
            payload: Vec::new(),
            space: crate::space::Reservation::none(),
            wal_end: 0,
            wal_path: dir.to_path_buf(),
            refused_len: 0,
        }),
        wal_io: Mutex::new(WalIo {
            wal: WalWriter::placeholder(),
            dirty: false,
            spare: Vec::new(),
        }),
        durable_seq: AtomicU64::new(0),
        structure: Mutex::new(Structure {
            manifest: ManifestWriter::placeholder(),
            meta: ManifestState::new(opts.max_levels),
        }),
        flush_lock: Mutex::new(()),
        compaction_lock: Mutex::new(()),
        next_file: AtomicU64::new(meta.next_file.max(max_seen + 1).max(1)),
        visible_seq: AtomicU64::new(0),
        compaction_epoch: AtomicU64::new(0),
        snapshots: Arc::new(SnapshotList::default()),
        counters: Arc::new(Counters::default()),
        cache: Arc::new(BlockCache::new(opts.block_cache_size)),
        stopped: AtomicBool::new(false),
        stop_reason: Mutex::new(String::new()),
        write_refused: AtomicBool::new(false),
        wait_for_space: AtomicBool::new(false),
        flush_no_space: AtomicBool::new(false),
        compact_no_space: AtomicBool::new(false),
        shutdown: AtomicBool::new(false),
        bg_lock: Mutex::new(()),
        bg_cv: Condvar::new(),
        opts,
    });

    // Open every table the manifest lists (a damaged table fails the open).
    let mut handles = HashMap::new();
    for f in meta.levels.iter().flatten() {
        handles.insert(f.id, inner.open_handle(f.clone())?);
    }

    // Replay WAL segments that were not flushed yet, oldest first.
    let recovered = Arc::new(MemTable::new(0));
    let mut last_seq = meta.last_seq;
    let live: Vec<u64> = wals
        .iter()
        .copied()
        .filter(|&w| w >= meta.log_number)
        .collect();
    // Sequence numbers are contiguous across segments; a gap means records were lost (a
    // segment that was not synced before the next one started), so replay stops there to
    // recover a prefix of the writes, never one with a hole.
    let mut expected = meta.last_seq + 1;
    let mut hole = false;
    for (i, &w) in live.iter().enumerate() {
        let path = dir.join(wal::segment_name(w));
        let len = vfs.read_all(&path).map_err(|e| Error::io(&path, e))?.len() as u64;
        let end = wal::replay(&*vfs, &path, |seq, batch| {
            let last = (seq + batch.len() as u64).saturating_sub(1);
            if hole || last <= meta.last_seq {
                // Already in a table (a flush finished but its WAL was not removed yet).
                return Ok(());
            }
            if seq != expected {
                tracing::warn!(path = %path.display(), seq, expected, "gap in WAL sequence numbers; ignoring later records");
                hole = true;
                return Ok(());
            }
            super::write::apply_batch(&recovered, seq, batch);
            last_seq = last_seq.max(last);
            expected = last + 1;
            Ok(())
        })?;
        if hole {
            break;
        }
        if end < len && i + 1 < live.len() {
            // A torn segment that is not the newest: later segments would leave a hole.
            tracing::warn!(path = %path.display(), "torn WAL segment before the newest; ignoring later segments");
            break;
        }
    }

    let mut edit = VersionEdit::default();
    if let Some(m) = inner.write_memtable(&recovered)? {
        handles.insert(m.id, inner.open_handle(m.clone())?);
        edit.added.push((0, m));
    }
    let wal_id = inner.alloc_file();
    let manifest_id = inner.alloc_file();
    edit.log_number = Some(wal_id);
    edit.last_seq = Some(last_seq);
    edit.next_file = Some(manifest_id + 1);
    meta.apply(&edit);

    let new_wal = WalWriter::create(&*vfs, dir, wal_id)?;
    let writer = ManifestWriter::create(&*vfs, dir, manifest_id, &meta)?;

    // Remove what the new manifest does not reference.
    let live_tables: HashSet<u64> = meta.levels.iter().flatten().map(|f| f.id).collect();
    for n in &names {
        let stale = if let Some(id) = parse_number(n, ".wal") {
            id < wal_id
        } else if let Some(id) = parse_number(n, ".sst") {
            !live_tables.contains(&id)
        } else if n.starts_with("MANIFEST-") {
            old_manifest.is_some_and(|o| *n == manifest::manifest_name(o))
                || n.strip_prefix("MANIFEST-")
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|id| id != manifest_id)
        } else {
            n == "CURRENT.tmp"
        };
        if stale {
            let p = dir.join(n);
            if let Err(e) = vfs.remove(&p) {
                tracing::warn!(path = %p.display(), error = %e, "removing stale file");
            }
        }
    }

    let version = Version::new(meta.levels.len()).apply(&meta.snapshot_edit(), &handles);
    inner.state.store(Arc::new(State {
        mem: Arc::new(MemTable::new(wal_id)),
        imms: Vec::new(),
        version: Arc::new(version),
    }));
    {
        let mut w = inner.writer.lock();
        w.last_seq = last_seq;
        w.space = new_wal.reservation(inner.wal_reserve_step());
        w.wal_end = 0;
        w.wal_path = new_wal.path().to_path_buf();
        drop(w);
        inner.wal_io.lock().wal = new_wal;
    }
    inner
        .durable_seq
        .store(last_seq, std::sync::atomic::Ordering::SeqCst);
    {
        let mut s = inner.structure.lock();
        s.manifest = writer;
        s.meta = meta;
    }
    inner
        .visible_seq
        .store(last_seq, std::sync::atomic::Ordering::SeqCst);

    let mut threads = Vec::new();
    if inner.opts.background_work {
        let spawn = |name: &str, f: fn(&Arc<Inner>)| {
            let i = inner.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || f(&i))
                .map_err(|e| Error::io(dir, e))
        };
        threads.push(spawn("lsm-flush", Inner::flush_loop)?);
        threads.push(spawn("lsm-compact", Inner::compaction_loop)?);
    }
    if matches!(inner.opts.sync, crate::SyncPolicy::EveryMillis(_)) {
        let i = inner.clone();
        threads.push(
            std::thread::Builder::new()
                .name("lsm-wal-sync".into())
                .spawn(move || i.sync_loop())
                .map_err(|e| Error::io(dir, e))?,
        );
    }
    Ok(Lsm {
        inner,
        threads: Mutex::new(threads),
    })
}
