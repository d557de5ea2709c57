//! Keys a migration copies ahead of their slot's scan, for a client waiting on them (see
//! [`shard_ctl::pulled`]): the target remembers them until the slot is sealed, and skips the
//! scan's (older) copy of each.

use super::{io_err, lsm_err, progress_record, IngestRun, RAFT_PROGRESS};
use crate::storage::apply::Written;
use crate::storage::encoding::system_key;
use crate::storage::shard_ctl::{self, Control};
use crate::storage::write::{WriteCommand, WriteOp};
use crate::storage::Db;
use bytes::Bytes;
use pinnacle_lsm::WriteBatch;
use pinnacle_resp::Reply;
use std::collections::HashSet;
use std::io;
use std::ops::Bound;
use std::sync::atomic::Ordering;

/// What a copy of a key that is already here answers (`RESTORE` without `REPLACE`).
const BUSY: &str = "BUSYKEY Target key name already exists.";

impl Db {
    /// Applies a pulled copy (`RESTORE` without `REPLACE`) of a key of `slot` at position
    /// `pos`, after recording the key as pulled.
    pub(super) fn apply_pulled(
        &self,
        slot: u16,
        cmd: &WriteCommand,
        pos: (u64, u32),
        progress: &mut (u64, u32),
        filled: &mut Vec<Bytes>,
    ) -> io::Result<Reply> {
        if let WriteOp::Restore { key, .. } = &cmd.op {
            // Its own batch, before the copy: a replay after a crash between the two
            // rewrites it and finds the key (or not) as the first run did.
            let mut b = WriteBatch::new();
            b.put(shard_ctl::pull_guard(slot, key), Bytes::from_static(b"1"));
            let seq = self.inner.engine.write_deferred(b).map_err(lsm_err)?;
            self.inner.last_seq.fetch_max(seq, Ordering::Release);
        }
        let extra = (system_key(RAFT_PROGRESS), progress_record(pos));
        let (reply, written) = self.apply_core(cmd, Some(extra), None).map_err(io_err)?;
        if written != Written::Nothing {
            *progress = pos;
            filled.extend_from_slice(cmd.op.filled_keys());
        }
        Ok(reply)
    }

    /// Removes from `run` (a scan's copies) the keys pulled ahead of it, answering each as a
    /// key already here: the pulled copy is as new, and the client may have changed or
    /// deleted the key here since.
    pub(super) fn skip_pulled(&self, run: &mut IngestRun, replies: &mut [Reply]) -> io::Result<()> {
        let mut slots = run.slots.clone();
        slots.sort_unstable();
        slots.dedup();
        let mut pulled: HashSet<(u16, Bytes)> = HashSet::new();
        for slot in slots {
            let (start, end, len) = shard_ctl::pull_guards_of(slot);
            let iter = self
                .inner
                .engine
                .scan((Bound::Included(start), Bound::Excluded(end)), None)
                .map_err(lsm_err)?;
            for item in iter {
                let (k, _) = item.map_err(lsm_err)?;
                pulled.insert((slot, k.slice(len..)));
            }
        }
        if pulled.is_empty() {
            return Ok(());
        }
        let mut keep = IngestRun {
            last: run.last,
            ..IngestRun::default()
        };
        let all = run
            .cmds
            .drain(..)
            .zip(run.at.drain(..))
            .zip(run.slots.drain(..));
        for ((cmd, at), slot) in all {
            let skip = match &cmd.op {
                WriteOp::Restore { key, .. } => pulled.contains(&(slot, key.clone())),
                _ => false,
            };
            if skip {
                if let Some(r) = replies.get_mut(at) {
                    *r = Reply::error(BUSY);
                }
            } else {
                keep.cmds.push(cmd);
                keep.at.push(at);
                keep.slots.push(slot);
            }
        }
        *run = keep;
        Ok(())
    }
}

/// Adds to `b` the removal of the pull records of the slots `ctl` seals, accepts or drops:
/// after a seal no copy reaches the slot, and accepting or dropping starts it afresh.
pub(super) fn clear_guards(b: &mut WriteBatch, ctl: &Control) {
    let slots = match ctl {
        Control::Seal(s) | Control::Accept(s) | Control::Drop(s) => s,
        Control::Fence(_) => return,
    };
    for &slot in slots {
        let (start, end, _) = shard_ctl::pull_guards_of(slot);
        b.delete_range(start, end);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode_proposal, ApplyTarget, Command};
    use super::*;
    use crate::storage::reply_codec::decode_list;
    use crate::storage::slot::key_slot;
    use pinnacle_lsm::SyncPolicy;

    fn cmd(op: WriteOp) -> Bytes {
        WriteCommand { now_ms: 1_000, op }.encode()
    }

    /// A migration's copy of `key` = `value`: the scan's, or pulled ahead of it.
    fn copy(key: &str, value: &str, pulled: bool) -> Bytes {
        let key = Bytes::copy_from_slice(key.as_bytes());
        let slot = key_slot(&key);
        let payload = crate::storage::dump::encode_value(&crate::storage::dump::Value::String(
            Bytes::copy_from_slice(value.as_bytes()),
        ));
        let c = cmd(WriteOp::Restore {
            key,
            payload,
            expire_at: 0,
            replace: false,
        });
        if pulled {
            shard_ctl::pulled(slot, &c)
        } else {
            shard_ctl::ingest(slot, &c)
        }
    }

    fn apply(db: &Db, index: u64, items: &[Bytes]) -> Vec<Reply> {
        let p = encode_proposal(items);
        let out = ApplyTarget::apply(db, &[Command { index, payload: &p }], b"m").expect("apply");
        decode_list(out[0].clone()).expect("replies")
    }

    fn value(db: &Db, key: &str) -> Option<Bytes> {
        db.get(key.as_bytes(), 2_000).expect("get").map(|m| m.value)
    }

    fn guards(db: &Db, slot: u16) -> usize {
        let (start, end, _) = shard_ctl::pull_guards_of(slot);
        db.inner
            .engine
            .scan((Bound::Included(start), Bound::Excluded(end)), None)
            .expect("scan")
            .count()
    }

    /// The hazard pulls bring: the scan read `k` before it was pulled and deleted at the
    /// source; the client then deleted it at the target. The scan's late copy must not bring
    /// it back, while its other keys still land. Sealing forgets the pulls.
    #[test]
    fn the_scans_copy_of_a_pulled_key_is_skipped_until_the_seal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path(), SyncPolicy::Never).expect("open");
        let slot = key_slot(b"{t}");
        assert_eq!(
            apply(&db, 1, &[copy("{t}k", "v1", true)]),
            vec![Reply::ok()]
        );
        assert_eq!(value(&db, "{t}k").as_deref(), Some(&b"v1"[..]));
        let del = cmd(WriteOp::Del {
            keys: vec![Bytes::from_static(b"{t}k")],
        });
        assert_eq!(apply(&db, 2, &[del]), vec![Reply::Integer(1)]);
        let r = apply(
            &db,
            3,
            &[
                copy("{t}j", "vj", false),
                copy("{t}k", "v0", false),
                copy("{t}l", "vl", false),
            ],
        );
        assert_eq!(r[0], Reply::ok(), "{r:?}");
        assert_eq!(r[1], Reply::error(BUSY), "{r:?}");
        assert_eq!(r[2], Reply::ok(), "{r:?}");
        assert_eq!(value(&db, "{t}k"), None);
        assert_eq!(value(&db, "{t}l").as_deref(), Some(&b"vl"[..]));
        // A pulled copy of a key already here changes nothing but is remembered too.
        let r = apply(&db, 4, &[copy("{t}j", "older", true)]);
        assert!(r[0].is_error(), "{r:?}");
        assert_eq!(value(&db, "{t}j").as_deref(), Some(&b"vj"[..]));
        assert_eq!(guards(&db, slot), 2);
        assert_eq!(guards(&db, slot + 1), 0);
        let r = apply(&db, 5, &[Control::Seal(vec![slot]).encode()]);
        assert_eq!(r, vec![Reply::ok()]);
        assert_eq!(guards(&db, slot), 0);
    }
}
