//! Reads queued in a `MULTI` together with writes, on a Raft node: run at apply time.
//!
//! A transaction's writes are one atomic item applied as one batch on every replica (see
//! [`super::shard_ctl::atomic`]). In Redis a read queued after a write of the same transaction
//! sees that write, so such reads travel in the item too ([`WriteOp::TxRead`]) and run while it
//! is applied: the command's own read handler runs with this thread's reads of the keyspace
//! seeing the batch built so far, through an overlay on the engine. It runs on every replica
//! (the reply matters only where the client waits) and writes nothing. The handler comes from
//! the command layer through [`Db::set_tx_reader`], so storage does not depend on it.
//!
//! [`WriteOp::TxRead`]: super::write::WriteOp::TxRead

use super::Db;
use bytes::Bytes;
use pinnacle_lsm::{BatchOp, DbIter, Engine, KeyRange, Options, Snapshot, Stats, WriteBatch};
use pinnacle_resp::Reply;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Runs one read command (`args`, in RESP3 if the flag says so) against `db` and answers it.
pub type TxReader = Box<dyn Fn(&Db, bool, &[Bytes]) -> Reply + Send + Sync>;

/// The pending effects of the transaction being applied, as the engine's reads see them.
struct Overlay {
    /// The [`OverlayEngine`] it applies to (another keyspace read meanwhile is unaffected).
    engine: usize,
    /// Keys put (`Some`) or deleted (`None`), after the range deletes below.
    entries: BTreeMap<Bytes, Option<Bytes>>,
    /// `[start, end)` ranges deleted; an entry above was written after them.
    ranges: Vec<(Bytes, Bytes)>,
}

impl Overlay {
    fn from_ops(engine: usize, ops: &[BatchOp]) -> Overlay {
        let mut o = Overlay {
            engine,
            entries: BTreeMap::new(),
            ranges: Vec::new(),
        };
        for op in ops {
            match op {
                BatchOp::Put(k, v) => {
                    o.entries.insert(k.clone(), Some(v.clone()));
                }
                BatchOp::Delete(k) => {
                    o.entries.insert(k.clone(), None);
                }
                BatchOp::DeleteRange(a, b) => {
                    if a < b {
                        let doomed: Vec<Bytes> = o
                            .entries
                            .range::<Bytes, _>((Bound::Included(a), Bound::Excluded(b)))
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            o.entries.remove(&k);
                        }
                        o.ranges.push((a.clone(), b.clone()));
                    }
                }
            }
        }
        o
    }

    /// `Some(value or None)` if the overlay decides `key`; `None` to read the engine.
    fn lookup(&self, key: &[u8]) -> Option<Option<Bytes>> {
        if let Some(v) = self.entries.get(key) {
            return Some(v.clone());
        }
        in_ranges(&self.ranges, key).then_some(None)
    }
}

fn in_ranges(ranges: &[(Bytes, Bytes)], key: &[u8]) -> bool {
    ranges.iter().any(|(a, b)| key >= &a[..] && key < &b[..])
}

thread_local! {
    static OVERLAY: RefCell<Option<Rc<Overlay>>> = const { RefCell::new(None) };
}

/// The overlay for engine `id`, if this thread is running a transaction read on it.
fn current(id: usize) -> Option<Rc<Overlay>> {
    OVERLAY.with(|o| o.borrow().as_ref().filter(|o| o.engine == id).cloned())
}

/// True while this thread runs a transaction read (nothing may be written or proposed).
pub fn active() -> bool {
    OVERLAY.with(|o| o.borrow().is_some())
}

/// The keyspace's engine: every call goes to the real engine, except that reads on a thread
/// running a transaction read see that transaction's pending batch first.
pub(super) struct OverlayEngine {
    inner: Arc<dyn Engine>,
    id: usize,
}

impl OverlayEngine {
    /// Wraps `inner`; also returns the wrapper's id (what an overlay names).
    pub(super) fn wrap(inner: Arc<dyn Engine>) -> (Arc<dyn Engine>, usize) {
        let id = next_id();
        (Arc::new(OverlayEngine { inner, id }), id)
    }
}

fn next_id() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Engine for OverlayEngine {
    fn open(dir: &Path, opts: Options) -> pinnacle_lsm::Result<Self> {
        Ok(OverlayEngine {
            inner: Arc::new(pinnacle_lsm::Lsm::open(dir, opts)?),
            id: next_id(),
        })
    }

    fn get(&self, key: &[u8]) -> pinnacle_lsm::Result<Option<Bytes>> {
        match current(self.id).and_then(|o| o.lookup(key)) {
            Some(v) => Ok(v),
            None => self.inner.get(key),
        }
    }

    fn get_at(&self, key: &[u8], snap: &Snapshot) -> pinnacle_lsm::Result<Option<Bytes>> {
        // The pending batch is newer than any snapshot a read takes.
        match current(self.id).and_then(|o| o.lookup(key)) {
            Some(v) => Ok(v),
            None => self.inner.get_at(key, snap),
        }
    }

    fn write(&self, batch: WriteBatch) -> pinnacle_lsm::Result<u64> {
        self.inner.write(batch)
    }

    fn write_deferred(&self, batch: WriteBatch) -> pinnacle_lsm::Result<u64> {
        self.inner.write_deferred(batch)
    }

    fn sync_to(&self, seq: u64) -> pinnacle_lsm::Result<()> {
        self.inner.sync_to(seq)
    }

    fn visible_seq(&self) -> u64 {
        self.inner.visible_seq()
    }

    fn snapshot(&self) -> Snapshot {
        self.inner.snapshot()
    }

    fn scan(&self, range: KeyRange, snap: Option<&Snapshot>) -> pinnacle_lsm::Result<DbIter> {
        let Some(o) = current(self.id) else {
            return self.inner.scan(range, snap);
        };
        let over: Vec<(Bytes, Option<Bytes>)> = o
            .entries
            .range::<Bytes, _>(range.clone())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let base = self.inner.scan(range, snap)?;
        Ok(Box::new(Merged {
            base: base.peekable(),
            over: over.into_iter().peekable(),
            ranges: o.ranges.clone(),
        }))
    }

    fn scan_values(
        &self,
        range: KeyRange,
        snap: Option<&Snapshot>,
    ) -> pinnacle_lsm::Result<DbIter> {
        match current(self.id) {
            None => self.inner.scan_values(range, snap),
            // The merge with the overlay needs the keys.
            Some(_) => self.scan(range, snap),
        }
    }

    fn flush(&self) -> pinnacle_lsm::Result<()> {
        self.inner.flush()
    }

    fn compact_range(&self, start: Option<&[u8]>, end: Option<&[u8]>) -> pinnacle_lsm::Result<()> {
        self.inner.compact_range(start, end)
    }

    fn checkpoint(&self, dir: &Path) -> pinnacle_lsm::Result<()> {
        self.inner.checkpoint(dir)
    }

    fn stats(&self) -> Stats {
        self.inner.stats()
    }

    fn has_space(&self) -> bool {
        self.inner.has_space()
    }

    fn wait_for_space(&self, on: bool) {
        self.inner.wait_for_space(on);
    }
}

/// The engine's ordered scan with the pending batch laid over it.
struct Merged {
    base: Peekable<DbIter>,
    over: Peekable<std::vec::IntoIter<(Bytes, Option<Bytes>)>>,
    ranges: Vec<(Bytes, Bytes)>,
}

impl Iterator for Merged {
    type Item = pinnacle_lsm::Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let base_key = match self.base.peek() {
                Some(Ok((k, _))) => Some(k.clone()),
                // An engine error ends the scan; pass it on.
                Some(Err(_)) => return self.base.next(),
                None => None,
            };
            let over_first = match (&base_key, self.over.peek()) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(b), Some((o, _))) => o <= b,
            };
            if over_first {
                let (k, v) = self.over.next()?;
                if base_key.as_ref() == Some(&k) {
                    // The pending write replaces the stored record.
                    self.base.next();
                }
                match v {
                    Some(v) => return Some(Ok((k, v))),
                    None => continue,
                }
            }
            let item = self.base.next()?;
            if base_key.is_some_and(|k| in_ranges(&self.ranges, &k)) {
                continue;
            }
            return Some(item);
        }
    }
}

impl Db {
    /// Installs how transaction reads run (the command layer's read handlers).
    pub fn set_tx_reader(&self, reader: TxReader) {
        let _ = self.inner.tx_reader.set(reader);
    }

    /// Runs the read `args` as if `batch` (the transaction's effects so far) were written.
    pub(super) fn run_tx_read(&self, batch: &WriteBatch, resp3: bool, args: &[Bytes]) -> Reply {
        let Some(reader) = self.inner.tx_reader.get() else {
            return Reply::error("ERR reads inside MULTI are not supported here");
        };
        let overlay = Rc::new(Overlay::from_ops(self.inner.engine_id, batch.ops()));
        // Cleared even if the handler panics, so later reads on this thread see the engine.
        struct Clear(Option<Rc<Overlay>>);
        impl Drop for Clear {
            fn drop(&mut self) {
                let prev = self.0.take();
                OVERLAY.with(|o| *o.borrow_mut() = prev);
            }
        }
        let prev = OVERLAY.with(|o| o.borrow_mut().replace(overlay));
        let _clear = Clear(prev);
        reader(self, resp3, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinnacle_lsm::MemEngine;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn scan_all(e: &dyn Engine) -> Vec<(Bytes, Bytes)> {
        e.scan((Bound::Unbounded, Bound::Unbounded), None)
            .expect("scan")
            .map(|r| r.expect("item"))
            .collect()
    }

    /// Reads through the wrapper see the stored data laid under the pending batch, like a
    /// `BTreeMap` model with the same operations applied.
    #[test]
    fn overlay_reads_match_a_model() {
        let base: Arc<dyn Engine> = Arc::new(MemEngine::in_memory());
        let mut seed = WriteBatch::new();
        for k in ["a", "b", "c", "d", "e", "f"] {
            seed.put(b(k), b(&format!("old-{k}")));
        }
        base.write(seed).expect("write");
        let (engine, id) = OverlayEngine::wrap(base.clone());
        let mut pending = WriteBatch::new();
        pending.put(b("b"), b("new-b"));
        pending.delete(b("c"));
        pending.delete_range(b("d"), b("f"));
        pending.put(b("dd"), b("new-dd"));
        pending.put(b("g"), b("new-g"));
        let mut model: BTreeMap<Bytes, Bytes> = scan_all(&*base).into_iter().collect();
        model.insert(b("b"), b("new-b"));
        model.remove(&b("c"));
        model.retain(|k, _| !(k >= &b("d") && k < &b("f")));
        model.insert(b("dd"), b("new-dd"));
        model.insert(b("g"), b("new-g"));

        // No overlay set: the stored state.
        assert_eq!(scan_all(&*engine), scan_all(&*base));
        OVERLAY.with(|o| {
            *o.borrow_mut() = Some(Rc::new(Overlay::from_ops(id, pending.ops())));
        });
        let want: Vec<(Bytes, Bytes)> = model.clone().into_iter().collect();
        assert_eq!(scan_all(&*engine), want);
        for k in ["a", "b", "c", "d", "dd", "e", "f", "g", "h"] {
            assert_eq!(
                engine.get(k.as_bytes()).expect("get"),
                model.get(&b(k)).cloned()
            );
        }
        let part: Vec<(Bytes, Bytes)> = engine
            .scan((Bound::Included(b("b")), Bound::Excluded(b("e"))), None)
            .expect("scan")
            .map(|r| r.expect("item"))
            .collect();
        assert_eq!(part, vec![(b("b"), b("new-b")), (b("dd"), b("new-dd"))]);
        // Another engine's reads are unaffected.
        let (other, _) = OverlayEngine::wrap(base.clone());
        assert_eq!(scan_all(&*other), scan_all(&*base));
        OVERLAY.with(|o| *o.borrow_mut() = None);
        assert_eq!(scan_all(&*engine), scan_all(&*base));
    }
}
