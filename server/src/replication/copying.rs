//! How client requests meet a slot copy that a migration driver on this node runs (see
//! [`super::migrate`]): keys missing at the source are answered at once (`ASK`); reads of keys
//! the source holds are served from its copy until the flip is near, as Redis's source serves
//! the keys it has; a write's keys are copied to the target ahead of the slot's scan
//! ("pulled") and deleted here, then the client is sent there with `ASK`. Only requests that
//! cannot be answered so (inside `MULTI`, or when a pull fails) wait for the slot's copy.

use super::migrate::{ingest_created, restore};
use super::Replication;
use crate::storage::{shard_ctl, WriteCommand, WriteOp};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// This node's part in migrations.
#[derive(Default)]
pub struct Local {
    /// Slots being copied by a driver on this node, and how far.
    copying: Mutex<HashMap<u16, SlotCopy>>,
    any_copying: AtomicBool,
    /// Signalled when a slot's copy ends or becomes ready for pulls.
    copy_done: tokio::sync::Notify,
    /// Requests that waited for a copy here (`INFO replication`: `migration_copy_waits`).
    copy_waits: AtomicU64,
    /// Keys copied ahead of their slot's scan for waiting requests (`migration_key_pulls`).
    key_pulls: AtomicU64,
    /// Keys and bytes pulled per slot, not yet added to a migration's record.
    pulled: Mutex<HashMap<u16, (u64, u64)>>,
    /// Migrations this node drives now.
    pub(super) driving: Mutex<HashSet<u64>>,
}

/// Where the copy of one slot driven by this node stands.
#[derive(Default)]
struct SlotCopy {
    /// The target shard once the slot is fenced and read: from then on a request's keys may
    /// be pulled ahead of the scan ([`Replication::pull_keys`]).
    ready: Option<usize>,
    /// Set before the flip is proposed: reads of keys the source holds are served here only
    /// before it (once it commits, the target serves writes to them).
    flipping: bool,
    /// Reads being served here from the source's copy ([`CopyRead`]); the flip waits for them.
    readers: usize,
}

/// A read served by the source while its slot is copied; the flip waits until it is dropped.
pub struct CopyRead<'a> {
    local: &'a Local,
    slot: u16,
}

impl Drop for CopyRead<'_> {
    fn drop(&mut self) {
        let mut c = self.local.copying.lock();
        if let Some(sc) = c.get_mut(&self.slot) {
            sc.readers = sc.readers.saturating_sub(1);
        }
        drop(c);
        self.local.copy_done.notify_waiters();
    }
}

/// Marks a slot as being copied for as long as it lives.
pub(super) struct CopyGuard<'a> {
    local: &'a Local,
    slot: u16,
}

impl<'a> CopyGuard<'a> {
    pub(super) fn new(local: &'a Local, slot: u16) -> CopyGuard<'a> {
        let mut c = local.copying.lock();
        c.insert(slot, SlotCopy::default());
        local.any_copying.store(true, Ordering::Release);
        CopyGuard { local, slot }
    }
}

impl Drop for CopyGuard<'_> {
    fn drop(&mut self) {
        let mut c = self.local.copying.lock();
        c.remove(&self.slot);
        self.local
            .any_copying
            .store(!c.is_empty(), Ordering::Release);
        drop(c);
        self.local.copy_done.notify_waiters();
    }
}

impl Local {
    /// The driver fenced and read `slots` (moving to shard `to`): waiting requests may now
    /// pull their keys ahead of the scan.
    pub(super) fn ready_for_pulls(&self, slots: &[u16], to: usize) {
        let mut c = self.copying.lock();
        for s in slots {
            if let Some(sc) = c.get_mut(s) {
                sc.ready = Some(to);
            }
        }
        drop(c);
        self.copy_done.notify_waiters();
    }

    /// Stops serving reads of `slots` from the source's copy and waits for those being
    /// served: called before the flip is proposed.
    pub(super) async fn end_reads(&self, slots: &[u16]) {
        loop {
            let done = self.copy_done.notified();
            let reading = {
                let mut c = self.copying.lock();
                slots.iter().fold(0, |n, s| match c.get_mut(s) {
                    Some(sc) => {
                        sc.flipping = true;
                        n + sc.readers
                    }
                    None => n,
                })
            };
            if reading == 0 {
                return;
            }
            // Reads hold it only while they run (no await): this is brief.
            let _ = tokio::time::timeout(Duration::from_millis(50), done).await;
        }
    }

    /// Keys and bytes pulled from `slots` so far (counted once, in their move's record).
    pub(super) fn take_pulled(&self, slots: &[u16]) -> (u64, u64) {
        let mut p = self.pulled.lock();
        slots
            .iter()
            .filter_map(|s| p.remove(s))
            .fold((0, 0), |(k, b), (k2, b2)| (k + k2, b + b2))
    }
}

impl Replication {
    /// True if a driver on this node is copying `slot` (writes to it should wait).
    pub fn is_copying(&self, slot: u16) -> bool {
        self.migrations.any_copying.load(Ordering::Acquire)
            && self.migrations.copying.lock().contains_key(&slot)
    }

    /// True if a request naming `keys` (`None`: unknown, e.g. `EXEC`) must wait for the copy
    /// of `slot`, which a driver on this node runs. It need not when it names keys and none
    /// exists at the source: they are not in the copy, so it is answered now as before the
    /// copy (`ASK`); nor once this node has applied the flip. A write is proposed guarded and
    /// refused as absent when applied, also after the fence (nothing creates a fenced slot's
    /// keys at the source any more); one that finds a key after all (created by a write in
    /// flight) is refused with `TRYAGAIN`. Waiting there held every write to the slot for the
    /// whole copy of its group (issue 5: SET p99 about 100 ms during any migration).
    pub fn copy_must_wait(&self, slot: u16, keys: Option<&[Bytes]>) -> bool {
        let Some(keys) = keys.filter(|k| !k.is_empty()) else {
            return true;
        };
        // No migration of it any more: the flip is applied here, routing answers `MOVED`.
        let Some(from) = self.meta_state().migration_of(slot).map(|m| m.from) else {
            return false;
        };
        let db = self.shards[from].group().target().clone();
        let now = db.now_ms();
        keys.iter().any(|k| !matches!(db.peek(k, now), Ok(None)))
    }

    /// Requests that waited for a slot copy on this node so far.
    pub fn copy_waits(&self) -> u64 {
        self.migrations.copy_waits.load(Ordering::Relaxed)
    }

    /// Lets a read of keys the source holds be served here while `slot` is copied: the
    /// source's copy of a key it holds is current until the flip, because a client writes a
    /// key at the target (through `ASK`) only once it is missing here, and a missing key is
    /// never created here again. `None` once the flip is near (the read waits for the copy).
    pub fn read_during_copy(&self, slot: u16) -> Option<CopyRead<'_>> {
        let mut c = self.migrations.copying.lock();
        let sc = c.get_mut(&slot).filter(|sc| !sc.flipping)?;
        sc.readers += 1;
        Some(CopyRead {
            local: &self.migrations,
            slot,
        })
    }

    /// Keys copied ahead of their slot's scan so far (`INFO replication`).
    pub fn key_pulls(&self) -> u64 {
        self.migrations.key_pulls.load(Ordering::Relaxed)
    }

    /// Moves `keys` (of `slot`, which a driver on this node copies) to the target now instead
    /// of waiting for the slot's whole copy: once the slot is fenced and read, each present
    /// key is copied (`RESTORE` without `REPLACE`, recorded as pulled so the scan's copy is
    /// skipped), then deleted here by an untagged write, which the fence lets through. Routing
    /// then finds the keys missing and answers `ASK`. `Err` if that could not be done in
    /// `limit` (the request then waits for the copy as before); nothing is deleted here
    /// unless the target holds the keys.
    pub async fn pull_keys(
        &self,
        slot: u16,
        keys: &[Bytes],
        limit: Duration,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + limit;
        let to = loop {
            let changed = self.migrations.copy_done.notified();
            match self.migrations.copying.lock().get(&slot).map(|c| c.ready) {
                None => return Err("not copying".into()),
                Some(Some(to)) => break to,
                Some(None) => {}
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err("slot not fenced yet".into());
            }
        };
        let from = self
            .meta_state()
            .migration_of(slot)
            .map(|m| m.from)
            .ok_or("not migrating")?;
        let db = self.shards[from].group().target().clone();
        let now = db.now_ms();
        let recs = db.dump_keys(keys).map_err(|e| e.to_string())?;
        if recs.is_empty() {
            return Ok(());
        }
        let present: Vec<Bytes> = recs.iter().map(|(k, _, _)| k.clone()).collect();
        let mut sizes = Vec::with_capacity(recs.len());
        let items = recs
            .into_iter()
            .map(|(key, meta, value)| {
                let (cmd, size) = restore(key, meta.expire_at, &value, now);
                sizes.push(size as u64);
                shard_ctl::pulled(slot, &cmd)
            })
            .collect();
        let work = async {
            let created = ingest_created(self, to, items).await?;
            let del = WriteCommand {
                now_ms: now,
                op: WriteOp::Del {
                    keys: present.clone(),
                },
            };
            self.propose_items(from, vec![del.encode()]).await?;
            Ok::<_, String>(created)
        };
        match tokio::time::timeout_at(deadline, work).await {
            Ok(Ok(created)) => {
                let n = present.len() as u64;
                self.migrations.key_pulls.fetch_add(n, Ordering::Relaxed);
                // Those it created count in the slot's move (approximately: a key whose
                // scan copy was read but not yet applied counts twice).
                let (keys, bytes) = created
                    .iter()
                    .zip(&sizes)
                    .filter(|(c, _)| **c)
                    .fold((0, 0), |(k, b), (_, s)| (k + 1, b + s));
                let mut p = self.migrations.pulled.lock();
                let e = p.entry(slot).or_default();
                e.0 += keys;
                e.1 += bytes;
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err("pull timed out".into()),
        }
    }

    /// Waits (up to `limit`) until no driver on this node copies `slot`.
    pub async fn wait_copied(&self, slot: u16, limit: Duration) {
        self.migrations.copy_waits.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let done = self.migrations.copy_done.notified();
            if !self.is_copying(slot) {
                return;
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                return;
            }
        }
    }
}
