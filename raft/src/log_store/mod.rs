//! The durable Raft log of one group: segment files with a CRC32C per entry, a two-slot vote file
//! (one fsync per vote, see `votefile.rs`), and small atomically-replaced files for the committed
//! id and the purge point.
//!
//! All writes go, in order, to one writer thread. It drains whatever is queued, writes it, fsyncs
//! once and only then calls openraft's flush callbacks: entries from many proposals share one
//! fsync (group commit), and nothing is acknowledged before it is on disk. `save_vote` waits for
//! its own fsync. Once an fsync (or any write, for a reason other than a full disk) fails the
//! store is poisoned and fails every later operation: after a failed fsync the kernel may have
//! dropped the dirty pages, so retrying could "succeed" with data lost (fail-stop, as
//! PostgreSQL does). A full disk is not fatal: see `space.rs`.
//!
//! Entries since the last purge are also kept in memory for the log readers (replication); the
//! snapshot policy bounds them.

pub(crate) mod metafile;
mod segment;
pub(crate) mod space;
mod votefile;
mod writer;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use parking_lot::{Mutex, RwLock};
use serde::{de::DeserializeOwned, Serialize};

use self::segment::encode_record;
pub use self::segment::RecoveryError;
use self::writer::Writer;
use crate::types::{Entry, LogId, TypeConfig, Vote};
pub(crate) use metafile::sync_dir;

/// Tuning for a [`LogStore`].
#[derive(Debug, Clone)]
pub struct LogStoreOptions {
    /// Start a new segment once the current one reaches this many bytes.
    pub segment_bytes: u64,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            segment_bytes: 64 << 20,
        }
    }
}

/// What readers see: everything appended so far, whether or not it is synced yet.
#[derive(Default)]
struct Mem {
    purged: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

pub(crate) struct Shared {
    mem: RwLock<Mem>,
    /// Set by the writer on the first failed write/fsync; the store is dead from then on.
    poisoned: Mutex<Option<String>>,
    /// Set while the disk is full: a reservation or write failed for lack of space and has
    /// not succeeded since (cleared by the writer once it does).
    disk_full: AtomicBool,
    /// Set when the store is dropped: a write waiting for space gives up.
    closing: AtomicBool,
    /// Test hook: the next fsync of log data fails.
    #[cfg(test)]
    fail_next_sync: AtomicBool,
    /// Test hook: appends fail with ENOSPC while set.
    #[cfg(test)]
    fail_writes_no_space: AtomicBool,
}

impl Shared {
    fn check(&self) -> io::Result<()> {
        match &*self.poisoned.lock() {
            Some(why) => Err(io::Error::other(format!("raft log is failed: {why}"))),
            None => Ok(()),
        }
    }
}

pub(crate) enum Cmd {
    Append {
        bytes: Vec<u8>,
        lens: Vec<usize>,
        first: u64,
        cb: IOFlushed<TypeConfig>,
    },
    Truncate {
        from: u64,
    },
    Purge {
        upto: u64,
        body: Vec<u8>,
    },
    Vote {
        body: Vec<u8>,
        done: tokio::sync::oneshot::Sender<io::Result<()>>,
    },
    Committed {
        body: Vec<u8>,
    },
}

/// The log store of one Raft group (implements openraft's `RaftLogStorage`).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    writer: Arc<WriterHandle>,
}

/// Owns the writer thread: when the last clone of the store goes, the queue closes and the
/// thread is joined, so a store reopened on the same folder never races a stale writer.
struct WriterHandle {
    tx: Option<mpsc::Sender<Cmd>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    shared: Arc<Shared>,
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        // A writer waiting for space would never return: let it fail what it holds.
        self.shared.closing.store(true, Ordering::SeqCst);
        self.tx.take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

/// Observes a [`LogStore`]'s failure state (see [`LogStore::failure`]).
#[derive(Clone)]
pub struct LogHealth {
    shared: Arc<Shared>,
}

impl LogHealth {
    /// The reason the store failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.poisoned.lock().clone()
    }

    /// True while the log cannot grow for lack of disk space: appends already queued wait
    /// (unacknowledged) until space returns, and the node should refuse new writes.
    pub fn disk_full(&self) -> bool {
        self.shared.disk_full.load(Ordering::Relaxed)
    }

    /// Test hook: makes the next fsync of log data fail.
    #[cfg(test)]
    pub(crate) fn fail_next_sync(&self) {
        self.shared.fail_next_sync.store(true, Ordering::SeqCst);
    }
}

/// Reader handed to openraft's replication tasks.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

fn enc<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    bincode::serialize(v).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn dec<T: DeserializeOwned>(b: &[u8], what: &str) -> io::Result<T> {
    bincode::deserialize(b)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}")))
}

pub(crate) const VOTE: &str = "vote";
pub(crate) const COMMITTED: &str = "committed";
pub(crate) const PURGED: &str = "purged";

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering segments, vote and purge point.
    pub fn open(dir: &Path, opts: LogStoreOptions) -> Result<LogStore, RecoveryError> {
        std::fs::create_dir_all(dir)?;
        let purged: Option<LogId> = metafile::read(dir, PURGED)?
            .map(|b| dec(&b, "purged"))
            .transpose()?;
        let (vote_file, vote) = votefile::VoteFile::open(dir)?;
        let vote: Option<Vote> = vote.map(|b| dec(&b, "vote")).transpose()?;
        // `committed` is an optimisation (it lets a restart re-apply at once); it is written
        // without fsync, so a damaged copy is ignored rather than fatal.
        let committed: Option<LogId> = match metafile::read(dir, COMMITTED) {
            Ok(Some(b)) => dec::<Option<LogId>>(&b, "committed").ok().flatten(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("ignoring unreadable committed id: {e}");
                None
            }
        };
        let purge_idx = purged.as_ref().map(|l| l.index);

        let mut entries = BTreeMap::new();
        let mut segments = Vec::new();
        let mut prev_end: Option<u64> = None;
        for (seg, records) in segment::recover(dir)? {
            let stale = purge_idx.is_some_and(|p| seg.end_index() <= p + 1)
                && seg.end_index() > seg.first_index;
            if stale {
                // Wholly purged before a crash finished deleting it.
                std::fs::remove_file(&seg.path)?;
                continue;
            }
            if let Some(end) = prev_end {
                if seg.first_index != end {
                    return Err(RecoveryError::Corrupt {
                        path: seg.path.clone(),
                        offset: 0,
                        reason: format!("hole in raft log: previous segment ends before {end}"),
                    });
                }
            }
            prev_end = Some(seg.end_index());
            for (index, body) in records {
                if purge_idx.is_some_and(|p| index <= p) {
                    continue;
                }
                let ent: Entry = dec(&body, "entry").map_err(|e| RecoveryError::Corrupt {
                    path: seg.path.clone(),
                    offset: 0,
                    reason: e.to_string(),
                })?;
                entries.insert(index, ent);
            }
            segments.push(seg);
        }
        if let (Some(p), Some((&first, _))) = (purge_idx, entries.iter().next()) {
            if first != p + 1 {
                return Err(RecoveryError::Corrupt {
                    path: dir.to_path_buf(),
                    offset: 0,
                    reason: format!("log starts at {first} but purge point is {p}"),
                });
            }
        }
        let shared = Arc::new(Shared {
            mem: RwLock::new(Mem {
                purged,
                entries,
                vote,
                committed,
            }),
            poisoned: Mutex::new(None),
            disk_full: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            #[cfg(test)]
            fail_next_sync: AtomicBool::new(false),
            #[cfg(test)]
            fail_writes_no_space: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.to_path_buf(),
            opts,
            segments,
            shared: shared.clone(),
            vote_file,
            dir_dirty: false,
            committed: None,
            committed_at: None,
        };
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run(rx))?;
        let writer = Arc::new(WriterHandle {
            tx: Some(tx),
            thread: Mutex::new(Some(thread)),
            shared: shared.clone(),
        });
        Ok(LogStore { shared, writer })
    }

    /// True if nothing was ever stored here: no vote, no entry, no purge point.
    pub fn is_pristine(&self) -> bool {
        let m = self.shared.mem.read();
        m.vote.is_none() && m.entries.is_empty() && m.purged.is_none()
    }

    /// The reason the store failed, if it did (a failed write or fsync is permanent).
    pub fn failure(&self) -> Option<String> {
        self.shared.poisoned.lock().clone()
    }

    /// True while the log cannot grow for lack of disk space (see [`LogHealth::disk_full`]).
    pub fn disk_full(&self) -> bool {
        self.shared.disk_full.load(Ordering::Relaxed)
    }

    /// A handle that reports the store's health without keeping its writer alive.
    pub fn health(&self) -> LogHealth {
        LogHealth {
            shared: self.shared.clone(),
        }
    }

    fn send(&self, cmd: Cmd) -> io::Result<()> {
        self.shared.check()?;
        let tx = self.writer.tx.as_ref();
        tx.ok_or_else(|| io::Error::other("raft log writer has stopped"))?
            .send(cmd)
            .map_err(|_| io::Error::other("raft log writer has stopped"))
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.shared.check()?;
        let mem = self.shared.mem.read();
        Ok(mem.entries.range(range).map(|(_, e)| e.clone()).collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.mem.read().vote)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        LogReader {
            shared: self.shared.clone(),
        }
        .try_get_log_entries(range)
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.mem.read().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        self.shared.check()?;
        let mem = self.shared.mem.read();
        let last = mem
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id())
            .or(mem.purged);
        Ok(LogState {
            last_purged_log_id: mem.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(Cmd::Vote {
            body: enc(vote)?,
            done,
        })?;
        wait.await
            .map_err(|_| io::Error::other("raft log writer has stopped"))??;
        self.shared.mem.write().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.shared.mem.write().committed = committed;
        self.send(Cmd::Committed {
            body: enc(&committed)?,
        })
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.shared.mem.read().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        self.shared.check()?;
        let mut bytes = Vec::new();
        let mut lens = Vec::new();
        let mut first = None;
        let mut batch = Vec::new();
        for ent in entries {
            let start = bytes.len();
            encode_record(ent.index(), &enc(&ent)?, &mut bytes);
            lens.push(bytes.len() - start);
            first.get_or_insert(ent.index());
            batch.push(ent);
        }
        let Some(first) = first else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        {
            // Readable as soon as append returns (openraft's contract), durable at the callback.
            let mut mem = self.shared.mem.write();
            for ent in batch {
                mem.entries.insert(ent.index(), ent);
            }
        }
        self.send(Cmd::Append {
            bytes,
            lens,
            first,
            cb: callback,
        })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        {
            let mut mem = self.shared.mem.write();
            let _ = mem.entries.split_off(&from);
        }
        self.send(Cmd::Truncate { from })
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        {
            let mut mem = self.shared.mem.write();
            if mem.purged.as_ref().is_some_and(|p| p.index >= log_id.index) {
                return Ok(());
            }
            mem.purged = Some(log_id);
            let rest = mem.entries.split_off(&(log_id.index + 1));
            mem.entries = rest;
        }
        self.send(Cmd::Purge {
            upto: log_id.index,
            body: enc(&log_id)?,
        })
    }
}

#[cfg(test)]
mod tests;
