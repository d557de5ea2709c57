//! Deterministic application of logical write commands.
//!
//! One mutex serialises appliers; each command reads what it needs, builds one atomic
//! `WriteBatch` (plus the apply-state record), writes it, and returns the client's reply.
//! Time comes only from the command (`now_ms`, never below the last applied time), so every
//! replica applying the same sequence reaches the same state and the same replies.

use super::encoding::{self, KeyType, Meta, StrEnc};
use super::write::{DecodeError, ExpireCond, ExpireSpec, SetCond, WriteCommand, WriteOp};
use super::{num, Db, Result, StorageError, APPLIED_STATE, CLOCK_SLACK_MS, MAX_STRING_LEN};
use bytes::{Bytes, BytesMut};
use pinnacle_lsm::{BatchOp, WriteBatch};
use pinnacle_resp::Reply;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// `WRONGTYPE` error text.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// A `HashMap` with foldhash: a Tx's maps are short-lived and keyed by what one batch of
/// commands names, and SipHash was ~15 % of a pipelined LPUSH's instructions.
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

fn wrongtype() -> Reply {
    Reply::error(WRONGTYPE)
}

/// The pending effects of one command: reads see its own earlier writes.
pub(super) struct Tx<'a> {
    pub(super) db: &'a Db,
    pub(super) now: u64,
    pub(super) batch: WriteBatch,
    pub(super) overlay: FastMap<Bytes, Option<Meta>>,
    /// Batch position of each metadata record this Tx writes, whose value is the overlay's
    /// at the end (see `Tx::set_meta`).
    pub(super) meta_at: FastMap<Bytes, usize>,
    /// Pending sub-key writes (LSM key → value, `None` = deleted), so reads see them; only
    /// those up to the first of `unindexed` (see `Tx::subs`).
    pub(super) subs: FastMap<Bytes, Option<Bytes>>,
    /// Positions in `batch` of the pending sub-key writes not yet in `subs`: they are indexed
    /// on this Tx's first read of a sub-key, so a run of pushes that reads none never hashes
    /// (or clones) its elements' keys.
    pub(super) unindexed: Vec<usize>,
    /// Next collection version to hand out (copied back into the apply state).
    pub(super) next_version: u64,
    /// Expired records this command removes.
    pub(super) expired: u64,
    /// A key with an expiry was written (the expiry sweeper is told once it is visible).
    pub(super) expiry_written: bool,
    /// How many list elements this Tx's commands pop at most: a pop reads that many ahead
    /// with one range scan instead of one point lookup each (see `list::pop`).
    pub(super) pop_ahead: u64,
    /// Elements of one list read ahead for this Tx's pops (see `list::Ahead`).
    pub(super) ahead: Option<super::list::Ahead>,
}

impl Tx<'_> {
    pub(super) fn get(&mut self, key: &Bytes) -> Result<Option<Meta>> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        let mk = encoding::meta_key(key);
        let Some(raw) = self.db.inner.engine.get(&mk)? else {
            return Ok(None);
        };
        let meta = Meta::decode(&raw).ok_or(StorageError::Corrupt("metadata record"))?;
        if !meta.is_expired(self.now) {
            self.db.inner.lru.touch(key, self.now);
        }
        if meta.is_expired(self.now) {
            // Reclaim it while we are here; deterministic because `now` is the entry's time.
            self.batch.delete(mk);
            self.overlay.insert(key.clone(), None);
            self.expired += 1;
            return Ok(None);
        }
        Ok(Some(meta))
    }

    pub(super) fn put(&mut self, key: &Bytes, meta: Meta) {
        if meta.is_expired(self.now) {
            self.delete(key);
            return;
        }
        self.expiry_written |= meta.expire_at != 0;
        self.db.inner.lru.touch(key, self.now);
        self.set_meta(key, Some(meta));
    }

    pub(super) fn delete(&mut self, key: &Bytes) {
        self.set_meta(key, None);
    }

    /// Records `key`'s new metadata (`None`: deleted) in the overlay. Its record takes the
    /// batch position of the key's first write in this Tx and is encoded once, by
    /// [`Tx::settle_metas`]: a run of sixteen pushes to one list encoded sixteen records and
    /// dropped fifteen as shadowed.
    fn set_meta(&mut self, key: &Bytes, meta: Option<Meta>) {
        if !self.meta_at.contains_key(key) {
            self.meta_at.insert(key.clone(), self.batch.len());
            // A placeholder holding the record's key; its value is settled later.
            self.batch.delete(encoding::meta_key(key));
        }
        match self.overlay.get_mut(key) {
            Some(slot) => *slot = meta,
            None => {
                self.overlay.insert(key.clone(), meta);
            }
        }
    }

    /// Writes each pending metadata record's final value at its place in the batch. Called
    /// before anything reads the batch or writes a metadata record around `set_meta` (a
    /// range delete, a raw delete), so the order of writes to one key is kept.
    pub(super) fn settle_metas(&mut self) {
        for (key, i) in self.meta_at.drain() {
            let (Some(state), Some(op)) = (self.overlay.get(&key), self.batch.op_mut(i)) else {
                continue;
            };
            let mk = match op {
                BatchOp::Put(k, _) | BatchOp::Delete(k) => std::mem::take(k),
                BatchOp::DeleteRange(..) => continue,
            };
            *op = match state {
                Some(m) => BatchOp::Put(mk, m.encode()),
                None => BatchOp::Delete(mk),
            };
        }
    }

    /// The string at `key`: `Ok(None)` if absent, `Err(reply)` if another type.
    fn get_string(&mut self, key: &Bytes) -> Result<std::result::Result<Option<Meta>, Reply>> {
        Ok(match self.get(key)? {
            Some(m) if m.kind != KeyType::String => Err(wrongtype()),
            other => Ok(other),
        })
    }
}

fn expire_of(old: &Option<Meta>) -> u64 {
    old.as_ref().map_or(0, |m| m.expire_at)
}

impl Db {
    /// The write door every command uses: executes `cmd` and returns the client's reply.
    ///
    /// On a single node this is [`Db::apply_entry`]. With replication, this is where the
    /// leader proposes `cmd.encode()` to the shard's Raft group and returns the reply of
    /// applying the committed entry; command code does not change.
    ///
    /// Inside [`Db::group_durable`] on this thread, the WAL sync is left to the end of the
    /// group; otherwise the reply is returned only once the write is durable.
    pub fn apply(&self, cmd: &WriteCommand) -> Reply {
        self.apply_then(cmd, None)
    }

    /// [`Db::apply`], then `map` on the reply (on a Raft node, once the entry is applied).
    ///
    /// On a Raft node the command is queued on this thread's collector (see
    /// [`super::deferred`]) and a placeholder is returned; a thread that is not collecting
    /// (the expiry sweeper) hands it to the background proposer and forgets it.
    pub fn apply_then(&self, cmd: &WriteCommand, map: Option<super::deferred::ReplyMap>) -> Reply {
        if super::tx_read::active() {
            // A read run inside an entry being applied must not write (it runs on every
            // replica); read handlers never get here.
            return Reply::error("ERR a transaction read tried to write");
        }
        if let Some(background) = self.inner.replicated.get() {
            let w = super::deferred::DeferredWrite {
                cmd: cmd.encode(),
                map,
            };
            if let Err(w) = super::deferred::push(w) {
                background(w.cmd);
            }
            return Reply::Null;
        }
        if super::run::collecting() {
            // A pipelined run of plain writes on a single node: applied together by
            // `Db::apply_run` before anything else of the batch runs.
            super::run::push(self, cmd.clone(), map);
            return Reply::Null;
        }
        let reply = self.apply_direct(cmd);
        match map {
            Some(f) => f(reply),
            None => reply,
        }
    }

    /// [`Db::apply_then`] of a command the caller gives up: a pipelined run queues it
    /// without a copy (cloning its arguments cost an allocation per command).
    pub fn apply_owned(&self, cmd: WriteCommand, map: Option<super::deferred::ReplyMap>) -> Reply {
        if super::run::collecting()
            && !super::tx_read::active()
            && self.inner.replicated.get().is_none()
        {
            super::run::push(self, cmd, map);
            return Reply::Null;
        }
        self.apply_then(&cmd, map)
    }

    fn apply_direct(&self, cmd: &WriteCommand) -> Reply {
        let (reply, seq) = self.apply_deferred(cmd);
        let Some(seq) = seq else { return reply };
        // Visible in the memtable now (durability follows; a woken reader sees the data).
        self.notify_filled(&cmd.op);
        match self.sync_or_group(seq) {
            Ok(()) => reply,
            Err(e) => storage_error(&e),
        }
    }

    /// Inside [`Db::group_durable`], leaves the sync of `seq` to the end of the group;
    /// otherwise waits until `seq` is durable.
    pub(super) fn sync_or_group(&self, seq: u64) -> std::result::Result<(), StorageError> {
        let grouped = GROUP_SEQ.with(|g| match g.get() {
            Some(max) => {
                g.set(Some(max.max(seq)));
                true
            }
            None => false,
        });
        if grouped {
            return Ok(());
        }
        self.sync_to(seq)
    }

    /// Runs `f` (a pipelined batch of commands on this thread) and then makes every write
    /// it applied durable with one WAL sync; `Err` means nothing `f` wrote may be
    /// acknowledged.
    pub fn group_durable<R>(&self, f: impl FnOnce() -> R) -> std::result::Result<R, StorageError> {
        let (r, seq) = self.group_pending(f);
        if seq > 0 {
            self.sync_to(seq)?;
        }
        Ok(r)
    }

    /// Like [`Db::group_durable`] without the sync: runs `f` and returns the highest WAL
    /// sequence number it applied (0 if none, or if nested in another group, whose end
    /// syncs). Nothing `f` wrote may be acknowledged before [`Db::make_durable`] of it.
    pub fn group_pending<R>(&self, f: impl FnOnce() -> R) -> (R, u64) {
        if GROUP_SEQ.with(|g| g.get().is_some()) {
            // Nested: the outer group syncs.
            return (f(), 0);
        }
        GROUP_SEQ.with(|g| g.set(Some(0)));
        // Reset even if `f` panics, so the thread's later commands are not left unsynced.
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                GROUP_SEQ.with(|g| g.set(None));
            }
        }
        let reset = Reset;
        let r = f();
        let max = GROUP_SEQ.with(|g| g.get()).unwrap_or(0);
        drop(reset);
        (r, max)
    }

    /// Makes every write up to `seq` durable per the append-fsync policy (see `sync_to`).
    pub fn make_durable(&self, seq: u64) -> std::result::Result<(), StorageError> {
        self.sync_to(seq)
    }

    /// Makes every write a reader can see durable: a batch that only read may have read
    /// another connection's write whose WAL append is still pending (that batch yields
    /// before syncing), and must not be answered before it, as Redis writes its AOF before
    /// any reply of the event-loop turn. One atomic compare when nothing is pending.
    pub fn make_visible_durable(&self) -> std::result::Result<(), StorageError> {
        self.sync_to(self.inner.engine.visible_seq())
    }

    /// Waits until every write up to `seq` is durable per the append-fsync policy. Called on
    /// the async worker without `block_in_place`: the wait is one write(2) (plus one fsync
    /// under `always`) shared by every waiting client, and handing the worker off per
    /// command cost more than the wait itself (BENCHMARKS.md, "Group commit").
    fn sync_to(&self, seq: u64) -> std::result::Result<(), StorageError> {
        self.inner.engine.sync_to(seq).map_err(StorageError::Engine)
    }

    /// The state machine: applies one committed entry deterministically (same entries in the
    /// same order give the same state and replies on every replica) and returns its reply
    /// once the write is durable.
    pub fn apply_entry(&self, cmd: &WriteCommand) -> Reply {
        let (reply, seq) = self.apply_deferred(cmd);
        match seq.map(|s| self.sync_to(s)) {
            Some(Err(e)) => storage_error(&e),
            _ => reply,
        }
    }

    /// Applies `cmd` under the apply mutex without waiting for the WAL: returns the reply
    /// and, if it wrote, the sequence number to pass to `sync_to` before replying.
    fn apply_deferred(&self, cmd: &WriteCommand) -> (Reply, Option<u64>) {
        match self.apply_core(cmd, None, None) {
            Ok((reply, Written::Seq(seq))) => (reply, Some(seq)),
            Ok((reply, _)) => (reply, None),
            Err(e) => (storage_error(&e), None),
        }
    }

    /// The deterministic core of every apply: runs `cmd` against the current state, writes its
    /// effects (plus `extra`, a node-state record stored atomically with them) as one batch,
    /// and returns the reply and what was written. `Err` = the engine failed.
    ///
    /// With `sink`, the effects are appended to it instead of written: only for commands that
    /// read nothing ([`is_blind`]), so later commands' reads need not see them yet.
    pub(super) fn apply_core(
        &self,
        cmd: &WriteCommand,
        extra: Option<(Bytes, Bytes)>,
        sink: Option<&mut WriteBatch>,
    ) -> Result<(Reply, Written)> {
        let (mut replies, written) = self.apply_core_all(std::slice::from_ref(cmd), extra, sink)?;
        Ok((replies.pop().unwrap_or(Reply::Null), written))
    }

    /// [`Db::apply_core`] for several commands as one: each sees the earlier ones' effects,
    /// and all effects go into one batch, so readers see all of them or none (a
    /// transaction's writes, `MULTI`/`EXEC`). Time is the latest of the commands' times.
    pub(super) fn apply_core_all(
        &self,
        cmds: &[WriteCommand],
        extra: Option<(Bytes, Bytes)>,
        sink: Option<&mut WriteBatch>,
    ) -> Result<(Vec<Reply>, Written)> {
        let mut state = self.inner.apply.lock();
        let now = cmds
            .iter()
            .map(|c| c.now_ms)
            .max()
            .unwrap_or(0)
            .max(state.clock);
        let mut tx = Tx {
            db: self,
            now,
            // A run's commands write a record or two each, plus the apply state: grown
            // from empty the batch was reallocated ~5 times per run.
            batch: WriteBatch::with_capacity(2 * cmds.len() + 2),
            overlay: FastMap::default(),
            meta_at: FastMap::default(),
            subs: FastMap::default(),
            unindexed: Vec::with_capacity(cmds.len()),
            next_version: state.next_version,
            expired: 0,
            expiry_written: false,
            pop_ahead: super::list::pops(cmds),
            ahead: None,
        };
        let mut reply = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            if !super::list::keeps_ahead(&cmd.op) {
                tx.ahead = None;
            }
            reply.push(apply_op(&mut tx, &cmd.op)?);
        }
        tx.settle_metas();
        if tx.batch.is_empty() {
            return Ok((reply, Written::Nothing));
        }
        state.next_version = state.next_version.max(tx.next_version);
        let mut batch = std::mem::take(&mut tx.batch);
        // A pipeline's run or a transaction rewrites the same metadata once per command.
        batch.drop_shadowed();
        let persist = now > state.persisted_clock || state.next_version != state.persisted_version;
        let bound = now + CLOCK_SLACK_MS;
        if persist {
            let mut rec = BytesMut::with_capacity(16);
            rec.extend_from_slice(&bound.to_be_bytes());
            rec.extend_from_slice(&state.next_version.to_be_bytes());
            batch.put(encoding::system_key(APPLIED_STATE), rec.freeze());
        }
        if let Some((k, v)) = extra {
            batch.put(k, v);
        }
        self.note_written(&batch);
        let written = match sink {
            Some(sink) => {
                for op in batch.into_ops() {
                    match op {
                        BatchOp::Put(k, v) => sink.put(k, v),
                        BatchOp::Delete(k) => sink.delete(k),
                        BatchOp::DeleteRange(a, b) => sink.delete_range(a, b),
                    };
                }
                Written::Pending
            }
            None => {
                let seq = self.inner.engine.write_deferred(batch)?;
                self.inner.last_seq.fetch_max(seq, Ordering::Release);
                Written::Seq(seq)
            }
        };
        if tx.expiry_written {
            super::expire::note_expiry_written();
        }
        self.inner.expired.fetch_add(tx.expired, Ordering::Relaxed);
        if persist {
            state.persisted_clock = bound;
            state.persisted_version = state.next_version;
        }
        state.clock = now;
        self.inner.clock.store(now, Ordering::Release);
        Ok((reply, written))
    }
}

/// What [`Db::apply_core`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// Nothing (a failed condition, an error reply, a no-op).
    Nothing,
    /// One batch with this last sequence number.
    Seq(u64),
    /// Its effects went into the caller's sink batch.
    Pending,
}

/// True for commands whose effects don't depend on stored state (a plain `SET`, `MSET`): a
/// run of them can be applied into one engine batch.
pub(super) fn is_blind(op: &WriteOp) -> bool {
    match op {
        WriteOp::Set {
            cond, get, expire, ..
        } => *cond == SetCond::Always && !*get && *expire != ExpireSpec::Keep,
        WriteOp::MSet { .. } => true,
        _ => false,
    }
}

thread_local! {
    // Inside `Db::group_durable`: the highest sequence number applied so far (0 = none).
    static GROUP_SEQ: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

impl Db {
    /// Decodes and applies one log entry (the Raft state machine's entry point).
    pub fn apply_encoded(&self, entry: Bytes) -> std::result::Result<Reply, DecodeError> {
        Ok(self.apply_entry(&WriteCommand::decode(entry)?))
    }
}

/// Redis's reply while its AOF cannot be written (here: the disk is full); nothing applied.
pub const MISCONF_NO_SPACE: &str =
    "MISCONF Errors writing to the AOF file: No space left on device";

/// The reply for a storage failure.
pub fn storage_error(e: &StorageError) -> Reply {
    if let StorageError::Engine(pinnacle_lsm::Error::NoSpace { .. }) = e {
        return Reply::error(MISCONF_NO_SPACE);
    }
    Reply::error(format!("ERR {e}"))
}

fn apply_op(tx: &mut Tx<'_>, op: &WriteOp) -> Result<Reply> {
    let now = tx.now;
    if let WriteOp::TxRead { resp3, args } = op {
        tx.settle_metas();
        return Ok(tx.db.run_tx_read(&tx.batch, *resp3, args));
    }
    if op.opcode() >= super::hash::FIRST_OPCODE {
        return super::coll::apply_coll_op(tx, op);
    }
    Ok(match op {
        WriteOp::Set {
            key,
            value,
            cond,
            get,
            expire,
        } => {
            // The common plain SET needs nothing from the old record: skip the read.
            if *cond == SetCond::Always && !*get && *expire != ExpireSpec::Keep {
                let expire_at = match expire {
                    ExpireSpec::At(ms) => *ms,
                    _ => 0,
                };
                tx.put(key, Meta::string(value.clone(), expire_at));
                return Ok(Reply::ok());
            }
            let old = tx.get(key)?;
            let old_reply = if *get {
                match &old {
                    None => Reply::Null,
                    Some(m) if m.kind == KeyType::String => Reply::Bulk(m.value.clone()),
                    Some(_) => return Ok(wrongtype()),
                }
            } else {
                Reply::ok()
            };
            let found = old.is_some();
            if (*cond == SetCond::Nx && found) || (*cond == SetCond::Xx && !found) {
                return Ok(if *get { old_reply } else { Reply::Null });
            }
            let expire_at = match expire {
                ExpireSpec::Clear => 0,
                ExpireSpec::Keep => expire_of(&old),
                ExpireSpec::At(ms) => *ms,
            };
            tx.put(key, Meta::string(value.clone(), expire_at));
            old_reply
        }
        WriteOp::SetNx { key, value } => {
            if tx.get(key)?.is_some() {
                Reply::Integer(0)
            } else {
                tx.put(key, Meta::string(value.clone(), 0));
                Reply::Integer(1)
            }
        }
        WriteOp::GetDel { key } => match tx.get_string(key)? {
            Err(r) => r,
            Ok(None) => Reply::Null,
            Ok(Some(m)) => {
                tx.delete(key);
                Reply::Bulk(m.value)
            }
        },
        WriteOp::GetEx { key, expire } => match tx.get_string(key)? {
            Err(r) => r,
            Ok(None) => Reply::Null,
            Ok(Some(m)) => {
                let reply = Reply::Bulk(m.value.clone());
                match expire {
                    ExpireSpec::Keep => {}
                    ExpireSpec::Clear => {
                        if m.expire_at != 0 {
                            tx.put(key, Meta { expire_at: 0, ..m });
                        }
                    }
                    ExpireSpec::At(ms) => tx.put(
                        key,
                        Meta {
                            expire_at: *ms,
                            ..m
                        },
                    ),
                }
                reply
            }
        },
        WriteOp::MSet { pairs } => {
            for (k, v) in last_writes(pairs) {
                tx.put(k, Meta::string(v.clone(), 0));
            }
            Reply::ok()
        }
        WriteOp::MSetNx { pairs } => {
            for (k, _) in pairs {
                if tx.get(k)?.is_some() {
                    return Ok(Reply::Integer(0));
                }
            }
            for (k, v) in last_writes(pairs) {
                tx.put(k, Meta::string(v.clone(), 0));
            }
            Reply::Integer(1)
        }
        WriteOp::IncrBy { key, delta } => {
            let old = match tx.get_string(key)? {
                Err(r) => return Ok(r),
                Ok(old) => old,
            };
            let cur = match &old {
                None => 0,
                Some(m) => match num::parse_i64(&m.value) {
                    Some(v) => v,
                    None => return Ok(Reply::error(num::ERR_NOT_INTEGER)),
                },
            };
            let Some(new) = cur.checked_add(*delta) else {
                return Ok(Reply::error("ERR increment or decrement would overflow"));
            };
            let text = Bytes::from(new.to_string());
            tx.put(key, Meta::string(text, expire_of(&old)));
            Reply::Integer(new)
        }
        WriteOp::IncrByFloat { key, delta } => {
            let old = match tx.get_string(key)? {
                Err(r) => return Ok(r),
                Ok(old) => old,
            };
            let Some(incr) = num::LongDouble::parse(delta) else {
                return Ok(Reply::error(num::ERR_NOT_FLOAT));
            };
            let cur = match &old {
                None => num::LongDouble::zero(),
                Some(m) => match num::LongDouble::parse(&m.value) {
                    Some(v) => v,
                    None => return Ok(Reply::error(num::ERR_NOT_FLOAT)),
                },
            };
            let sum = cur.add(&incr);
            if !sum.is_finite() {
                return Ok(Reply::error("ERR increment would produce NaN or Infinity"));
            }
            let text = Bytes::from(sum.to_human_string());
            tx.put(
                key,
                Meta::string(text.clone(), expire_of(&old)).with_enc(StrEnc::NoInt),
            );
            Reply::Bulk(text)
        }
        WriteOp::Append { key, value } => {
            let old = match tx.get_string(key)? {
                Err(r) => return Ok(r),
                Ok(old) => old,
            };
            match old {
                None => {
                    tx.put(key, Meta::string(value.clone(), 0));
                    Reply::Integer(value.len() as i64)
                }
                Some(m) => {
                    let total = m.value.len() as u64 + value.len() as u64;
                    if total > MAX_STRING_LEN {
                        return Ok(too_long());
                    }
                    let mut buf = BytesMut::with_capacity(total as usize);
                    buf.extend_from_slice(&m.value);
                    buf.extend_from_slice(value);
                    tx.put(
                        key,
                        Meta::string(buf.freeze(), m.expire_at).with_enc(StrEnc::Raw),
                    );
                    Reply::Integer(total as i64)
                }
            }
        }
        WriteOp::SetRange { key, offset, value } => {
            let old = match tx.get_string(key)? {
                Err(r) => return Ok(r),
                Ok(old) => old,
            };
            let olen = old.as_ref().map_or(0, |m| m.value.len() as u64);
            if value.is_empty() {
                return Ok(Reply::Integer(olen as i64));
            }
            let Some(end) = offset.checked_add(value.len() as u64) else {
                return Ok(too_long());
            };
            if end > MAX_STRING_LEN {
                return Ok(too_long());
            }
            let new_len = end.max(olen) as usize;
            let mut buf = BytesMut::zeroed(new_len);
            if let Some(m) = &old {
                buf[..m.value.len()].copy_from_slice(&m.value);
            }
            buf[*offset as usize..end as usize].copy_from_slice(value);
            tx.put(
                key,
                Meta::string(buf.freeze(), expire_of(&old)).with_enc(StrEnc::Raw),
            );
            Reply::Integer(new_len as i64)
        }
        WriteOp::Del { keys } => {
            let mut n = 0;
            for k in keys {
                if tx.get(k)?.is_some() {
                    tx.delete(k);
                    n += 1;
                }
            }
            Reply::Integer(n)
        }
        WriteOp::Expire { key, at_ms, cond } => {
            let Some(m) = tx.get(key)? else {
                return Ok(Reply::Integer(0));
            };
            let current: i64 = if m.expire_at == 0 {
                -1
            } else {
                m.expire_at as i64
            };
            let when = *at_ms;
            let nx = *cond == ExpireCond::Nx;
            let xx = matches!(cond, ExpireCond::Xx | ExpireCond::XxGt | ExpireCond::XxLt);
            let gt = matches!(cond, ExpireCond::Gt | ExpireCond::XxGt);
            let lt = matches!(cond, ExpireCond::Lt | ExpireCond::XxLt);
            if (nx && current != -1)
                || (xx && current == -1)
                || (gt && (when <= current || current == -1))
                || (lt && current != -1 && when >= current)
            {
                return Ok(Reply::Integer(0));
            }
            if when <= now as i64 {
                tx.delete(key);
            } else {
                tx.put(
                    key,
                    Meta {
                        expire_at: when as u64,
                        ..m
                    },
                );
            }
            Reply::Integer(1)
        }
        WriteOp::Persist { key } => match tx.get(key)? {
            Some(m) if m.expire_at != 0 => {
                tx.put(key, Meta { expire_at: 0, ..m });
                Reply::Integer(1)
            }
            _ => Reply::Integer(0),
        },
        WriteOp::Rename { src, dst, nx } => {
            let Some(m) = tx.get(src)? else {
                return Ok(Reply::error("ERR no such key"));
            };
            if src == dst {
                return Ok(if *nx { Reply::Integer(0) } else { Reply::ok() });
            }
            if *nx && tx.get(dst)?.is_some() {
                return Ok(Reply::Integer(0));
            }
            tx.put_copy(src, dst, m)?;
            tx.delete(src);
            if *nx {
                Reply::Integer(1)
            } else {
                Reply::ok()
            }
        }
        WriteOp::Copy { src, dst, replace } => {
            let Some(m) = tx.get(src)? else {
                return Ok(Reply::Integer(0));
            };
            if tx.get(dst)?.is_some() && !*replace {
                return Ok(Reply::Integer(0));
            }
            tx.put_copy(src, dst, m)?;
            Reply::Integer(1)
        }
        WriteOp::Restore {
            key,
            payload,
            expire_at,
            replace,
        } => {
            let Some(value) = super::dump::decode_value(payload) else {
                return Ok(Reply::error("ERR Bad data format"));
            };
            let exists = tx.get(key)?.is_some();
            if exists && !*replace {
                return Ok(Reply::error("BUSYKEY Target key name already exists."));
            }
            if *expire_at != 0 && *expire_at <= now {
                if exists {
                    tx.delete(key);
                }
                return Ok(Reply::ok());
            }
            tx.restore_value(key, value, *expire_at);
            Reply::ok()
        }
        WriteOp::FlushAll => {
            tx.settle_metas();
            tx.batch
                .delete_range(encoding::keyspace_start(), encoding::keyspace_end());
            tx.overlay.clear();
            Reply::ok()
        }
        WriteOp::DelExpired { keys } => {
            // Its deletes bypass the overlay: earlier writes of these keys stay before them.
            tx.settle_metas();
            let mut n = 0;
            for k in keys {
                let mk = encoding::meta_key(k);
                if let Some(raw) = tx.db.inner.engine.get(&mk)? {
                    if matches!(encoding::raw_expire_at(&raw), Some(at) if at != 0 && at <= now) {
                        tx.batch.delete(mk);
                        tx.expired += 1;
                        n += 1;
                    }
                }
            }
            Reply::Integer(n)
        }
        _ => super::coll::apply_coll_op(tx, op)?,
    })
}

/// The pairs of an MSET whose key does not come again later in it: the last value wins, and
/// the earlier ones would be records shadowed inside the same batch (never visible, yet
/// logged, inserted and flushed).
fn last_writes(pairs: &[(Bytes, Bytes)]) -> impl Iterator<Item = &(Bytes, Bytes)> {
    let n = pairs.len();
    let keep: Vec<bool> = if n <= 16 {
        (0..n)
            .map(|i| !pairs[i + 1..].iter().any(|(k, _)| *k == pairs[i].0))
            .collect()
    } else {
        let mut seen = std::collections::HashSet::with_capacity(n);
        let mut keep = vec![false; n];
        for i in (0..n).rev() {
            keep[i] = seen.insert(&pairs[i].0);
        }
        keep
    };
    pairs.iter().zip(keep).filter_map(|(p, k)| k.then_some(p))
}

fn too_long() -> Reply {
    Reply::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
}
