//! The keyspace as a Raft state machine: [`ApplyTarget`] for [`Db`].
//!
//! A proposal is a list of encoded `WriteCommand`s (one pipelined batch of one connection);
//! applying it returns the encoded list of their replies. Every write's LSM batch also records
//! its position `(log index, command)`, so after a crash the entries Raft replays (from the
//! last stored applied state) skip what is already in the LSM: the LSM's WAL is not fsynced
//! per apply, the Raft log is the durability point. Snapshots are a logical image of every
//! record taken at one engine snapshot.

use super::apply::{is_blind, Written};
use super::encoding::system_key;
use super::reply_codec::encode_list;
use super::write::WriteCommand;
use super::{shard_ctl, ApplyState, Db, StorageError, APPLIED_STATE};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use pinnacle_lsm::WriteBatch;
use pinnacle_raft::{ApplyError, ApplyTarget, Command};
use pinnacle_resp::Reply;
use std::io::{self, Read, Write};
use std::ops::Bound;
use std::sync::atomic::Ordering;

/// Raft's applied state (opaque, from pinnacle-raft).
const RAFT_META: &[u8] = b"raft-meta";
/// `(log index, command)` of the last applied write.
const RAFT_PROGRESS: &[u8] = b"raft-progress";
/// Present while a snapshot install is half done: the data is not a consistent state.
const RAFT_INSTALLING: &[u8] = b"raft-installing";

const PROPOSAL_V1: u8 = 1;
const IMAGE_V1: u8 = 1;
/// Records per engine batch while installing an image.
const INSTALL_BATCH_BYTES: usize = 4 << 20;

/// Encodes the commands of one proposal.
pub fn encode_proposal(cmds: &[Bytes]) -> Vec<u8> {
    let size: usize = cmds.iter().map(|c| c.len() + 4).sum();
    let mut out = Vec::with_capacity(size + 5);
    out.put_u8(PROPOSAL_V1);
    out.put_u32(cmds.len() as u32);
    for c in cmds {
        out.put_u32(c.len() as u32);
        out.put_slice(c);
    }
    out
}

fn decode_proposal(raw: &[u8]) -> Option<Vec<Bytes>> {
    let mut buf = raw;
    if buf.remaining() < 5 || buf.get_u8() != PROPOSAL_V1 {
        return None;
    }
    let n = buf.get_u32() as usize;
    let mut out = Vec::with_capacity(n.min(buf.remaining() / 4));
    for _ in 0..n {
        if buf.remaining() < 4 {
            return None;
        }
        let len = buf.get_u32() as usize;
        if buf.remaining() < len {
            return None;
        }
        out.push(Bytes::copy_from_slice(&buf[..len]));
        buf.advance(len);
    }
    buf.is_empty().then_some(out)
}

fn progress_record((index, cmd): (u64, u32)) -> Bytes {
    let mut b = BytesMut::with_capacity(12);
    b.put_u64(index);
    b.put_u32(cmd);
    b.freeze()
}

fn decode_progress(raw: &[u8]) -> Option<(u64, u32)> {
    let mut buf = raw;
    (raw.len() == 12).then(|| (buf.get_u64(), buf.get_u32()))
}

fn io_err(e: StorageError) -> io::Error {
    io::Error::other(e)
}

fn lsm_err(e: pinnacle_lsm::Error) -> io::Error {
    io::Error::other(e)
}

fn is_raft_record(k: &[u8]) -> bool {
    k == system_key(RAFT_META).as_ref() || k == system_key(RAFT_INSTALLING).as_ref()
}

impl Db {
    /// Turns this keyspace into a Raft replica: `apply` now defers writes (see
    /// [`super::deferred`]) and `background` proposes those made off a connection.
    pub fn enable_replication(&self, background: super::BackgroundProposer) -> super::Result<()> {
        let _ = self.inner.replicated.set(background);
        // A committed entry cannot be refused: on a full disk its apply waits for space
        // (the node refuses new writes meanwhile, see `command::disk_refusal`).
        self.inner.engine.wait_for_space(true);
        Ok(())
    }

    /// Loads the stored apply progress and fences. Runs when the Raft group opens
    /// ([`ApplyTarget::applied_meta`]), before it replays a single entry: Raft's own applied
    /// state is stored after an apply's data, so a restart can replay entries whose effects
    /// are already stored, and only the progress tells them apart. (Loaded later, as it once
    /// was, a replayed `RPUSH` was applied twice on a restarted node: replicas diverged.)
    fn load_apply_progress(&self) -> super::Result<()> {
        let mut progress = self.inner.raft_progress.lock();
        *progress = self
            .inner
            .engine
            .get(&system_key(RAFT_PROGRESS))?
            .and_then(|raw| decode_progress(&raw))
            .unwrap_or((0, 0));
        let fences = self.inner.engine.get(&shard_ctl::key())?;
        self.inner.fences.load(fences.as_deref());
        Ok(())
    }

    /// True if this shard refuses client writes to `slot` (it is handing it over or gave it
    /// away).
    pub fn is_fenced(&self, slot: u16) -> bool {
        self.inner.fences.fenced.contains(slot)
    }

    /// Every fenced slot.
    pub fn fenced_slots(&self) -> Vec<u16> {
        self.inner.fences.fenced.list()
    }

    /// True once [`Db::enable_replication`] ran.
    pub fn is_replicated(&self) -> bool {
        self.inner.replicated.get().is_some()
    }

    fn reload_apply_state(&self, state: &mut ApplyState) -> super::Result<()> {
        let raw = self.inner.engine.get(&system_key(APPLIED_STATE))?;
        *state = match raw {
            Some(raw) if raw.len() == 16 => ApplyState::new(
                u64::from_be_bytes(raw[0..8].try_into().unwrap_or([0; 8])),
                u64::from_be_bytes(raw[8..16].try_into().unwrap_or([0; 8])),
            ),
            Some(_) => return Err(StorageError::Corrupt("apply state")),
            None => ApplyState::new(0, 1),
        };
        self.inner.clock.store(state.clock, Ordering::Release);
        Ok(())
    }
}

/// Effects of blind writes not yet written, and the position of the last one.
#[derive(Default)]
struct Sink {
    batch: WriteBatch,
    pos: Option<(u64, u32)>,
}

impl Db {
    /// Writes the sink (with its progress record, and `meta` if given) as one batch.
    /// Applies the ingest items collected in `run` as one batch (each sees the earlier ones,
    /// one progress record for the last), putting their replies in place.
    fn flush_run(
        &self,
        run: &mut IngestRun,
        replies: &mut [Reply],
        progress: &mut (u64, u32),
        filled: &mut Vec<Bytes>,
    ) -> io::Result<()> {
        if run.cmds.is_empty() {
            return Ok(());
        }
        self.skip_pulled(run, replies)?;
        run.slots.clear();
        if run.cmds.is_empty() {
            run.at.clear();
            return Ok(());
        }
        let cmds = std::mem::take(&mut run.cmds);
        let extra = (system_key(RAFT_PROGRESS), progress_record(run.last));
        let (subs, written) = self
            .apply_core_all(&cmds, Some(extra), None)
            .map_err(io_err)?;
        if written != Written::Nothing {
            *progress = run.last;
            for c in &cmds {
                filled.extend_from_slice(c.op.filled_keys());
            }
        }
        for (at, r) in run.at.drain(..).zip(subs) {
            if let Some(slot) = replies.get_mut(at) {
                *slot = r;
            }
        }
        Ok(())
    }

    fn flush_sink(
        &self,
        sink: &mut Sink,
        progress: &mut (u64, u32),
        meta: Option<&[u8]>,
    ) -> io::Result<()> {
        let mut batch = std::mem::take(&mut sink.batch);
        let pos = sink.pos.take();
        if let Some(pos) = pos {
            batch.put(system_key(RAFT_PROGRESS), progress_record(pos));
        }
        if let Some(meta) = meta {
            batch.put(system_key(RAFT_META), Bytes::copy_from_slice(meta));
        }
        if batch.is_empty() {
            return Ok(());
        }
        let seq = self.inner.engine.write_deferred(batch).map_err(lsm_err)?;
        self.inner.last_seq.fetch_max(seq, Ordering::Release);
        if let Some(pos) = pos {
            *progress = pos;
        }
        Ok(())
    }
}

impl Db {
    /// Checks a guarded write to `slot` (see [`shard_ctl`]): `None` if every key exists here
    /// (apply it), else its refusal. Marks the slot exporting first, persisted before the
    /// write's own batch (everything earlier in the log already recorded its progress, so a
    /// replay after a crash between the two starts at this entry and marks it again).
    fn guard(&self, slot: u16, keys: &[Bytes], body: &Bytes) -> Result<Option<Reply>, ApplyError> {
        if self.inner.fences.mark_exporting(slot) {
            let mut b = WriteBatch::new();
            b.put(shard_ctl::key(), self.inner.fences.image());
            let seq = self.inner.engine.write_deferred(b).map_err(lsm_err)?;
            self.inner.last_seq.fetch_max(seq, Ordering::Release);
        }
        let here = self.present(keys, body)?;
        Ok(if here == keys.len() {
            None
        } else if here == 0 {
            Some(Reply::error(format!("{}{slot}", shard_ctl::ABSENT)))
        } else {
            Some(Reply::error(shard_ctl::REFUSED))
        })
    }

    /// The refusal of a guarded write to a fenced slot: `ABSENT` (the client is sent to the
    /// target with `ASK`) if it names keys and none exists here, else `TRYAGAIN`. From the
    /// fence on, this shard's records of the slot are final (every later client write to it is
    /// refused), so a key missing now is not in the copy and never appears here: the target
    /// decides it. Nothing is written (unlike [`Db::guard`], the slot is not marked).
    fn fenced_refusal(&self, slot: u16, keys: &[Bytes], body: &Bytes) -> Result<Reply, ApplyError> {
        Ok(if !keys.is_empty() && self.present(keys, body)? == 0 {
            Reply::error(format!("{}{slot}", shard_ctl::ABSENT))
        } else {
            Reply::error(shard_ctl::REFUSED)
        })
    }

    /// How many of `keys` exist here, judged at the time the guarded write `body` will use.
    fn present(&self, keys: &[Bytes], body: &Bytes) -> Result<usize, ApplyError> {
        // The time the write itself will judge expiry by (see `apply_core_all`).
        let decoded = match shard_ctl::atomic_parts(body) {
            Some(parts) => parts
                .into_iter()
                .filter_map(|p| WriteCommand::decode(p).ok())
                .map(|c| c.now_ms)
                .max(),
            None => WriteCommand::decode(body.clone()).ok().map(|c| c.now_ms),
        };
        let now = decoded
            .unwrap_or(0)
            .max(self.inner.clock.load(Ordering::Acquire));
        let mut here = 0;
        for k in keys {
            if self.peek(k, now).map_err(io_err)?.is_some() {
                here += 1;
            }
        }
        Ok(here)
    }
}

/// Ingest items (a slot migration's copy: RESTORE without REPLACE) waiting to be applied
/// together: one engine batch per run instead of one per record.
#[derive(Default)]
struct IngestRun {
    cmds: Vec<WriteCommand>,
    /// Where each one's reply goes in the entry's reply list.
    at: Vec<usize>,
    /// The slot each one copies.
    slots: Vec<u16>,
    /// Position of the last one (stored as the progress with the batch).
    last: (u64, u32),
}

impl ApplyTarget for Db {
    fn apply(&self, cmds: &[Command<'_>], meta: &[u8]) -> Result<Vec<Vec<u8>>, ApplyError> {
        // Held for the whole call: a snapshot sees the state after a whole call, matching meta.
        let mut progress = self.inner.raft_progress.lock();
        fail::fail_point!("server::apply::before_batch");
        let mut out = Vec::with_capacity(cmds.len());
        // Runs of blind writes (plain SET/MSET) share one engine batch.
        let mut sink = Sink::default();
        // Keys filled by this call's writes, announced once everything is written.
        let mut filled: Vec<Bytes> = Vec::new();
        // Consecutive records of a migration's copy, applied as one batch.
        let mut run = IngestRun::default();
        for c in cmds {
            let Some(list) = decode_proposal(c.payload) else {
                // Deterministic on every replica; the proposer sees a count mismatch.
                out.push(encode_list(&[]));
                continue;
            };
            let mut replies = Vec::with_capacity(list.len());
            for (j, raw) in list.into_iter().enumerate() {
                let pos = (c.index, j as u32);
                if pos <= *progress {
                    // Already in the LSM (replay after a restart); nobody waits for this reply.
                    replies.push(Reply::Null);
                    continue;
                }
                let item = shard_ctl::decode(&raw);
                if !matches!(item, shard_ctl::Item::Ingest { pulled: false, .. }) {
                    // Anything else sees the copied records first.
                    self.flush_run(&mut run, &mut replies, &mut progress, &mut filled)?;
                }
                let body_at = match item {
                    shard_ctl::Item::Ingest { slot, .. }
                        if self.inner.fences.sealed.contains(slot) =>
                    {
                        replies.push(Reply::error("ERR slot sealed: the copy is complete"));
                        continue;
                    }
                    shard_ctl::Item::Ingest { slot, pulled } => {
                        match WriteCommand::decode(raw.slice(3..)) {
                            Err(e) => replies.push(Reply::error(format!(
                                "ERR undecodable replicated command: {e}"
                            ))),
                            Ok(cmd) if pulled => {
                                // It may read what the sink holds: write that first.
                                self.flush_sink(&mut sink, &mut progress, None)?;
                                let reply =
                                    self.apply_pulled(slot, &cmd, pos, &mut progress, &mut filled)?;
                                replies.push(reply);
                            }
                            Ok(cmd) => {
                                if run.cmds.is_empty() {
                                    // The copy reads (RESTORE skips present keys).
                                    self.flush_sink(&mut sink, &mut progress, None)?;
                                }
                                run.cmds.push(cmd);
                                run.at.push(replies.len());
                                run.slots.push(slot);
                                run.last = pos;
                                replies.push(Reply::Null);
                            }
                        }
                        continue;
                    }
                    shard_ctl::Item::Write(Some(slot))
                        if self.inner.fences.fenced.contains(slot)
                            || self.inner.fences.exporting.contains(slot) =>
                    {
                        // Refused: the slot is moving or moved away, or its migration is not
                        // yet known where this was routed (nothing written).
                        replies.push(Reply::error(shard_ctl::REFUSED));
                        continue;
                    }
                    shard_ctl::Item::Guarded {
                        slot,
                        keys,
                        body_at,
                    } => {
                        // Its keys' presence must count the writes before it in this call.
                        self.flush_sink(&mut sink, &mut progress, None)?;
                        if self.inner.fences.fenced.contains(slot) {
                            replies.push(self.fenced_refusal(
                                slot,
                                &keys,
                                &raw.slice(body_at..),
                            )?);
                            continue;
                        }
                        match self.guard(slot, &keys, &raw.slice(body_at..))? {
                            None => body_at,
                            Some(refusal) => {
                                replies.push(refusal);
                                continue;
                            }
                        }
                    }
                    shard_ctl::Item::Write(Some(_)) => 3,
                    shard_ctl::Item::Write(None) => 0,
                    shard_ctl::Item::Control(ctl) => {
                        self.flush_sink(&mut sink, &mut progress, None)?;
                        self.inner.fences.apply(&ctl);
                        let mut b = WriteBatch::new();
                        if let shard_ctl::Control::Drop(slots) = &ctl {
                            for &s in slots {
                                b.delete_range(
                                    Bytes::copy_from_slice(&s.to_be_bytes()),
                                    Bytes::copy_from_slice(&(s + 1).to_be_bytes()),
                                );
                            }
                            // WATCHes of anything may now be stale.
                            self.inner.flushes.fetch_add(1, Ordering::AcqRel);
                        }
                        pull::clear_guards(&mut b, &ctl);
                        b.put(shard_ctl::key(), self.inner.fences.image());
                        b.put(system_key(RAFT_PROGRESS), progress_record(pos));
                        let seq = self.inner.engine.write_deferred(b).map_err(lsm_err)?;
                        self.inner.last_seq.fetch_max(seq, Ordering::Release);
                        *progress = pos;
                        replies.push(Reply::ok());
                        continue;
                    }
                    shard_ctl::Item::Bad => {
                        replies.push(Reply::error("ERR undecodable shard control entry"));
                        continue;
                    }
                };
                let raw = if body_at == 0 {
                    raw
                } else {
                    raw.slice(body_at..)
                };
                if let Some(parts) = shard_ctl::atomic_parts(&raw) {
                    // A transaction: one batch, so readers see all of it or none.
                    self.flush_sink(&mut sink, &mut progress, None)?;
                    let cmds: Result<Vec<WriteCommand>, _> =
                        parts.into_iter().map(WriteCommand::decode).collect();
                    let reply = match cmds {
                        Err(e) => Reply::error(format!("ERR undecodable replicated command: {e}")),
                        Ok(cmds) => {
                            let extra = (system_key(RAFT_PROGRESS), progress_record(pos));
                            let (subs, written) = self
                                .apply_core_all(&cmds, Some(extra), None)
                                .map_err(io_err)?;
                            if written != Written::Nothing {
                                *progress = pos;
                                for c in &cmds {
                                    filled.extend_from_slice(c.op.filled_keys());
                                }
                            }
                            Reply::Array(subs)
                        }
                    };
                    replies.push(reply);
                    continue;
                }
                let reply = match WriteCommand::decode(raw) {
                    Err(e) => Reply::error(format!("ERR undecodable replicated command: {e}")),
                    Ok(cmd) if is_blind(&cmd.op) => {
                        let (reply, written) = self
                            .apply_core(&cmd, None, Some(&mut sink.batch))
                            .map_err(io_err)?;
                        if written == Written::Pending {
                            sink.pos = Some(pos);
                        }
                        reply
                    }
                    Ok(cmd) => {
                        // It may read what the sink holds: write that first.
                        self.flush_sink(&mut sink, &mut progress, None)?;
                        let extra = (system_key(RAFT_PROGRESS), progress_record(pos));
                        let (reply, written) =
                            self.apply_core(&cmd, Some(extra), None).map_err(io_err)?;
                        if written != Written::Nothing {
                            *progress = pos;
                            filled.extend_from_slice(cmd.op.filled_keys());
                        }
                        reply
                    }
                };
                replies.push(reply);
            }
            self.flush_run(&mut run, &mut replies, &mut progress, &mut filled)?;
            out.push(encode_list(&replies));
        }
        fail::fail_point!("server::apply::before_applied_state");
        self.flush_sink(&mut sink, &mut progress, Some(meta))?;
        fail::fail_point!("server::apply::after_applied_state");
        drop(progress);
        if !filled.is_empty() {
            if let Some(l) = self.inner.write_listener.get() {
                l(&filled);
            }
        }
        Ok(out)
    }

    /// `FAILPOINTS=server::apply::delay=return(<ms>)` holds every apply of this node's shards
    /// (redis-tests/tests/migration_race.rs).
    fn apply_delay(&self) -> Option<std::time::Duration> {
        #[cfg(feature = "failpoints")]
        let delay = fail::eval("server::apply::delay", |arg| {
            arg.and_then(|ms| ms.parse::<u64>().ok())
        })
        .flatten()
        .map(std::time::Duration::from_millis);
        #[cfg(not(feature = "failpoints"))]
        let delay = None;
        delay
    }

    fn applied_meta(&self) -> Result<Option<Vec<u8>>, ApplyError> {
        self.load_apply_progress().map_err(io_err)?;
        let e = &self.inner.engine;
        if e.get(&system_key(RAFT_INSTALLING))
            .map_err(lsm_err)?
            .is_some()
        {
            // A crash interrupted an install: the data is no state at all.
            return Ok(None);
        }
        Ok(e.get(&system_key(RAFT_META))
            .map_err(lsm_err)?
            .map(|b| b.to_vec()))
    }

    fn snapshot(&self, out: &mut dyn Write) -> Result<Vec<u8>, ApplyError> {
        let e = &self.inner.engine;
        let (snap, meta, seq) = {
            let _calls = self.inner.raft_progress.lock();
            let meta = e.get(&system_key(RAFT_META)).map_err(lsm_err)?;
            (
                e.snapshot(),
                meta,
                self.inner.last_seq.load(Ordering::Acquire),
            )
        };
        // Raft purges its log behind a snapshot: what the image holds must survive a crash.
        if seq > 0 {
            e.sync_to(seq).map_err(lsm_err)?;
        }
        out.write_all(&[IMAGE_V1])?;
        let iter = e
            .scan((Bound::Unbounded, Bound::Unbounded), Some(&snap))
            .map_err(lsm_err)?;
        let mut head = [0u8; 8];
        for item in iter {
            let (k, v) = item.map_err(lsm_err)?;
            if is_raft_record(&k) {
                continue;
            }
            head[..4].copy_from_slice(&(k.len() as u32).to_be_bytes());
            head[4..].copy_from_slice(&(v.len() as u32).to_be_bytes());
            out.write_all(&head)?;
            out.write_all(&k)?;
            out.write_all(&v)?;
        }
        out.write_all(&u32::MAX.to_be_bytes())?;
        Ok(meta.map(|m| m.to_vec()).unwrap_or_default())
    }

    fn install(&self, input: &mut dyn Read, meta: &[u8]) -> Result<(), ApplyError> {
        let e = &self.inner.engine;
        let mut progress = self.inner.raft_progress.lock();
        let mut state = self.inner.apply.lock();
        let mut version = [0u8; 1];
        input.read_exact(&mut version)?;
        if version[0] != IMAGE_V1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown snapshot image version {}", version[0]),
            ));
        }
        // 1. Mark the data as mid-install and clear it, durably.
        self.wipe(true)?;
        fail::fail_point!("server::install::mid");
        // 2. Load the image.
        let mut batch = WriteBatch::new();
        let mut bytes = 0usize;
        loop {
            let mut klen = [0u8; 4];
            input.read_exact(&mut klen)?;
            let klen = u32::from_be_bytes(klen);
            if klen == u32::MAX {
                break;
            }
            let mut vlen = [0u8; 4];
            input.read_exact(&mut vlen)?;
            let vlen = u32::from_be_bytes(vlen) as usize;
            let mut k = vec![0u8; klen as usize];
            input.read_exact(&mut k)?;
            let mut v = vec![0u8; vlen];
            input.read_exact(&mut v)?;
            if is_raft_record(&k) {
                continue;
            }
            bytes += k.len() + v.len();
            batch.put(k, v);
            if bytes >= INSTALL_BATCH_BYTES {
                e.write_deferred(std::mem::take(&mut batch))
                    .map_err(lsm_err)?;
                bytes = 0;
            }
        }
        // 3. Store Raft's state and clear the mark in the last batch, durably.
        batch.put(system_key(RAFT_META), Bytes::copy_from_slice(meta));
        batch.delete(system_key(RAFT_INSTALLING));
        let seq = e.write_deferred(batch).map_err(lsm_err)?;
        e.sync_to(seq).map_err(lsm_err)?;
        self.inner.last_seq.fetch_max(seq, Ordering::Release);
        self.reload_after_wipe(&mut state, &mut progress)
    }

    fn clear(&self) -> Result<(), ApplyError> {
        let mut progress = self.inner.raft_progress.lock();
        let mut state = self.inner.apply.lock();
        self.wipe(false)?;
        self.reload_after_wipe(&mut state, &mut progress)
    }
}

impl Db {
    /// Deletes every key and Raft record in one durable batch (a range delete, not a loop
    /// over keys); `installing` marks the data as no state until an install completes.
    fn wipe(&self, installing: bool) -> Result<(), ApplyError> {
        let e = &self.inner.engine;
        let mut b = WriteBatch::new();
        b.delete_range(Bytes::from_static(&[0x00]), Bytes::from_static(&[0xFF]));
        for name in [APPLIED_STATE, RAFT_PROGRESS, RAFT_META, shard_ctl::FENCES] {
            b.delete(system_key(name));
        }
        if installing {
            b.put(system_key(RAFT_INSTALLING), Bytes::from_static(b"1"));
        } else {
            b.delete(system_key(RAFT_INSTALLING));
        }
        let seq = e.write_deferred(b).map_err(lsm_err)?;
        e.sync_to(seq).map_err(lsm_err)?;
        self.inner.last_seq.fetch_max(seq, Ordering::Release);
        Ok(())
    }

    /// Re-reads the in-memory apply state, fences and progress after the data was replaced.
    fn reload_after_wipe(
        &self,
        state: &mut ApplyState,
        progress: &mut (u64, u32),
    ) -> Result<(), ApplyError> {
        let e = &self.inner.engine;
        self.reload_apply_state(state).map_err(io_err)?;
        let fences = e.get(&shard_ctl::key()).map_err(lsm_err)?;
        self.inner.fences.load(fences.as_deref());
        // Every key may have changed: WATCHes abort.
        self.inner.flushes.fetch_add(1, Ordering::AcqRel);
        *progress = e
            .get(&system_key(RAFT_PROGRESS))
            .map_err(lsm_err)?
            .and_then(|raw| decode_progress(&raw))
            .unwrap_or((0, 0));
        Ok(())
    }
}

#[cfg(test)]
mod tests;

mod pull;
