//! The seam between Raft and the data: the server implements [`ApplyTarget`] on its LSM.

use std::io::{self, Read, Write};

use parking_lot::Mutex;

/// One committed command handed to [`ApplyTarget::apply`].
#[derive(Debug, Clone, Copy)]
pub struct Command<'a> {
    /// The log index: unique and increasing, usable as a version number.
    pub index: u64,
    /// The opaque payload that was proposed.
    pub payload: &'a [u8],
}

/// Error from an [`ApplyTarget`]; it stops the group (the state machine can't skip an entry).
pub type ApplyError = io::Error;

/// A replicated state machine the Raft layer drives. Implementations must be deterministic:
/// the same commands in the same order give the same data and replies on every replica.
///
/// `meta` is Raft's own applied state (last applied log id and membership), opaque here. An
/// implementation stores it atomically with the data the same call produced, so a restart
/// resumes exactly after the last applied entry and Raft replays the log from there.
pub trait ApplyTarget: Send + Sync + 'static {
    /// Applies `cmds` in order, stores `meta` in the same atomic write, and returns one reply per
    /// command. `cmds` may be empty (blank or membership entries only still advance `meta`).
    /// Need not fsync: the Raft log is the durability point.
    fn apply(&self, cmds: &[Command<'_>], meta: &[u8]) -> Result<Vec<Vec<u8>>, ApplyError>;

    /// The `meta` stored by the last `apply` or `install`, `None` for empty data.
    fn applied_meta(&self) -> Result<Option<Vec<u8>>, ApplyError>;

    /// Writes a consistent image of all data into `out` and returns the `meta` it corresponds
    /// to (the image reflects exactly the entries up to that meta).
    fn snapshot(&self, out: &mut dyn Write) -> Result<Vec<u8>, ApplyError>;

    /// Replaces all data with the image read from `input` and stores `meta`, atomically: a crash
    /// during install leaves either the old data or the new.
    fn install(&self, input: &mut dyn Read, meta: &[u8]) -> Result<(), ApplyError>;

    /// Drops all data and the stored `meta`, durably: afterwards `applied_meta` is `None`, as
    /// for a replica that never applied anything ([`crate::RaftNode::reset_group`]). Targets
    /// that are never reset may keep this default, which refuses.
    fn clear(&self) -> Result<(), ApplyError> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this state machine cannot be cleared",
        ))
    }

    /// How long to hold each apply before running it (test builds: a failpoint), awaited
    /// without blocking a runtime thread.
    fn apply_delay(&self) -> Option<std::time::Duration> {
        None
    }
}

/// An in-memory [`ApplyTarget`] that records every command it applied; replies are
/// `index:payload`. Used by this crate's tests and as the reference for implementers.
#[derive(Default)]
pub struct MemTarget {
    state: Mutex<MemState>,
}

#[derive(Default, Clone)]
struct MemState {
    applied: Vec<(u64, Vec<u8>)>,
    meta: Option<Vec<u8>>,
}

impl MemTarget {
    /// Every `(index, payload)` applied so far, in order.
    pub fn applied(&self) -> Vec<(u64, Vec<u8>)> {
        self.state.lock().applied.clone()
    }
}

impl ApplyTarget for MemTarget {
    fn apply(&self, cmds: &[Command<'_>], meta: &[u8]) -> Result<Vec<Vec<u8>>, ApplyError> {
        let mut st = self.state.lock();
        let mut replies = Vec::with_capacity(cmds.len());
        for c in cmds {
            st.applied.push((c.index, c.payload.to_vec()));
            let mut r = format!("{}:", c.index).into_bytes();
            r.extend_from_slice(c.payload);
            replies.push(r);
        }
        st.meta = Some(meta.to_vec());
        Ok(replies)
    }

    fn applied_meta(&self) -> Result<Option<Vec<u8>>, ApplyError> {
        Ok(self.state.lock().meta.clone())
    }

    fn snapshot(&self, out: &mut dyn Write) -> Result<Vec<u8>, ApplyError> {
        let st = self.state.lock().clone();
        let body = bincode::serialize(&st.applied).map_err(io::Error::other)?;
        out.write_all(&body)?;
        Ok(st.meta.unwrap_or_default())
    }

    fn install(&self, input: &mut dyn Read, meta: &[u8]) -> Result<(), ApplyError> {
        let mut body = Vec::new();
        input.read_to_end(&mut body)?;
        let applied: Vec<(u64, Vec<u8>)> = bincode::deserialize(&body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        *self.state.lock() = MemState {
            applied,
            meta: Some(meta.to_vec()),
        };
        Ok(())
    }

    fn clear(&self) -> Result<(), ApplyError> {
        *self.state.lock() = MemState::default();
        Ok(())
    }
}
