//! Dropping this node's replica of a group it was removed from ([`crate::RaftNode::reset_group`]).
//!
//! What goes: the log (segments, committed id, purge point), the snapshots, and the target's
//! data with its applied state. What stays: the vote file, so this node never votes twice in a
//! term it already voted in, and `Group::initialize` never forms the group again here (a
//! nonzero vote counts as initialized). A leader that adds the node back catches it up from
//! the start of its log or with a snapshot, never on top of stale state.
//!
//! Crash safety: a durable mark (`reset`, "pending") is written before anything is deleted and
//! set to "done" only after the target was cleared; `open_group` finishes a pending reset
//! before it reads the log. So a crash half-way never leaves a log with holes, nor a log whose
//! entries' effects were deleted, nor data the log no longer accounts for. The "done" mark
//! stays: it tells `open_group` this node's past acknowledgements in the group are forgotten,
//! so the group grants votes only once a leader has added the node back (like a `joining`
//! node), and a stale candidate cannot win with the vote of a replica that lost its entries.

use std::io;
use std::path::Path;

use crate::apply::ApplyTarget;
use crate::log_store::{metafile, sync_dir, VOTE};

/// The mark file in the group's folder.
const MARK: &str = "reset";
const PENDING: u8 = 0;
const DONE: u8 = 1;

/// Finishes an interrupted reset of the group in `dir` (before its log is opened); true if the
/// group was ever reset on this node.
pub(crate) fn recover<A: ApplyTarget>(dir: &Path, target: &A) -> io::Result<bool> {
    let Some(mark) = metafile::read(dir, MARK)? else {
        return Ok(false);
    };
    if mark.first() != Some(&DONE) {
        tracing::warn!("finishing the interrupted reset of {}", dir.display());
        wipe(dir, target)?;
        metafile::write(dir, MARK, &[DONE], true)?;
    }
    Ok(true)
}

/// Drops the replica of the stopped group in `dir` (see the module docs for the order).
pub(crate) fn reset<A: ApplyTarget>(dir: &Path, target: &A) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    metafile::write(dir, MARK, &[PENDING], true)?;
    wipe(dir, target)?;
    metafile::write(dir, MARK, &[DONE], true)
}

/// Deletes everything but the vote, then the target's data; each step can be repeated.
fn wipe<A: ApplyTarget>(dir: &Path, target: &A) -> io::Result<()> {
    for sub in ["log", "snapshots"] {
        let d = dir.join(sub);
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for ent in entries {
            let ent = ent?;
            if sub == "log" && ent.file_name() == VOTE {
                continue;
            }
            let path = ent.path();
            if ent.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        sync_dir(&d)?;
    }
    target.clear()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{Command, MemTarget};

    #[test]
    fn a_pending_reset_is_finished_and_the_vote_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::create_dir_all(dir.path().join("snapshots")).unwrap();
        metafile::write(&log, VOTE, b"v", true).unwrap();
        std::fs::write(log.join("00000001.seg"), b"entries").unwrap();
        std::fs::write(dir.path().join("snapshots/1.snap"), b"image").unwrap();
        let t = MemTarget::default();
        t.apply(
            &[Command {
                index: 1,
                payload: b"x",
            }],
            b"m",
        )
        .unwrap();

        // Never reset: nothing happens.
        assert!(!recover(dir.path(), &t).unwrap());
        assert_eq!(t.applied().len(), 1);

        // A crash right after the mark: the next open finishes the job.
        metafile::write(dir.path(), MARK, &[PENDING], true).unwrap();
        assert!(recover(dir.path(), &t).unwrap());
        assert!(t.applied().is_empty());
        assert_eq!(t.applied_meta().unwrap(), None);
        let left: Vec<_> = std::fs::read_dir(&log)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(VOTE)]);
        assert_eq!(
            metafile::read(&log, VOTE).unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("snapshots"))
                .unwrap()
                .count(),
            0
        );

        // Done: later opens keep new data (the group caught up again).
        t.apply(
            &[Command {
                index: 1,
                payload: b"y",
            }],
            b"m",
        )
        .unwrap();
        assert!(recover(dir.path(), &t).unwrap());
        assert_eq!(t.applied().len(), 1);
    }
}
