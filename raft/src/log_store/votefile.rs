//! The vote file: two fixed-size slots overwritten in place in turn, so that saving a vote costs
//! one `fdatasync` (a voter answers a vote request only after it, and the candidate waits for the
//! answer only so long). Replacing a file via a temp file and a rename, as [`super::metafile`]
//! does, needs two: the file's and the directory's.
//!
//! Slot layout (`SLOT` bytes, zero-padded): `magic | seq u64 | len u32 | crc32c u32 | body`, the
//! CRC over `seq | len | body`. Vote number `seq` goes to slot `seq % 2`, so a write torn by a
//! crash can only damage the slot being written; recovery takes the valid slot with the higher
//! `seq`, i.e. the previous vote when the newest one never finished (and was therefore never
//! granted). The file keeps its size after creation, so `fdatasync` needs no metadata flush.
//!
//! A `vote` file in the older single-record format ([`super::metafile`]) is read as before and
//! replaced by the slot format on the first save.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::metafile;
use super::VOTE;

/// Bytes per slot: one disk sector, so the two slots never share one.
const SLOT: usize = 512;
/// Slot header: magic, seq, len, crc.
const HEADER: usize = 8 + 8 + 4 + 4;
const MAGIC: &[u8; 8] = b"PNRVOTE2";
/// The older format's magic (see [`super::metafile`]).
const LEGACY_MAGIC: &[u8; 8] = b"PNRMETA1";

/// The open vote file of one log folder.
pub(crate) struct VoteFile {
    dir: PathBuf,
    /// `None` until the file exists in the slot format (absent, or still in the old format).
    file: Option<File>,
    /// The sequence number of the newest valid slot (0: none yet).
    seq: u64,
}

impl VoteFile {
    /// Opens the vote file in `dir` and returns it with the saved vote's bytes, if any.
    pub(crate) fn open(dir: &Path) -> io::Result<(VoteFile, Option<Vec<u8>>)> {
        let path = dir.join(VOTE);
        let mut vf = VoteFile {
            dir: dir.to_path_buf(),
            file: None,
            seq: 0,
        };
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((vf, None)),
            Err(e) => return Err(e),
        };
        if bytes.starts_with(LEGACY_MAGIC) {
            return Ok((vf, metafile::read(dir, VOTE)?));
        }
        let bad = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {why}", path.display()),
            )
        };
        if bytes.len() != 2 * SLOT {
            return Err(bad(format!("{} bytes, expected {}", bytes.len(), 2 * SLOT)));
        }
        let newest = bytes
            .chunks_exact(SLOT)
            .filter_map(parse_slot)
            .max_by_key(|(seq, _)| *seq);
        let Some((seq, body)) = newest else {
            return Err(bad("no valid vote slot".into()));
        };
        vf.seq = seq;
        vf.file = Some(OpenOptions::new().write(true).open(&path)?);
        Ok((vf, Some(body)))
    }

    /// Makes `body` the saved vote; it is durable when this returns.
    pub(crate) fn save(&mut self, body: &[u8]) -> io::Result<()> {
        if body.len() > SLOT - HEADER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("vote of {} bytes does not fit a slot", body.len()),
            ));
        }
        let seq = self.seq + 1;
        let slot = encode_slot(seq, body);
        let at = (seq % 2) as usize * SLOT;
        match &self.file {
            Some(f) => {
                f.write_all_at(&slot, at as u64)?;
                f.sync_data()?;
            }
            None => {
                // First save here (or the first after an upgrade): create the file whole and
                // rename it into place, so a crash leaves either the old file or the new one.
                let mut whole = vec![0u8; 2 * SLOT];
                whole[at..at + SLOT].copy_from_slice(&slot);
                let tmp = self.dir.join(format!("{VOTE}.tmp"));
                let dst = self.dir.join(VOTE);
                {
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(&tmp)?;
                    f.write_all(&whole)?;
                    f.sync_all()?;
                }
                fs::rename(&tmp, &dst)?;
                metafile::sync_dir(&self.dir)?;
                self.file = Some(OpenOptions::new().write(true).open(&dst)?);
            }
        }
        self.seq = seq;
        Ok(())
    }
}

fn encode_slot(seq: u64, body: &[u8]) -> Vec<u8> {
    let mut s = vec![0u8; SLOT];
    s[..8].copy_from_slice(MAGIC);
    s[8..16].copy_from_slice(&seq.to_le_bytes());
    s[16..20].copy_from_slice(&(body.len() as u32).to_le_bytes());
    s[HEADER..HEADER + body.len()].copy_from_slice(body);
    let crc = slot_crc(&s[8..20], body);
    s[20..24].copy_from_slice(&crc.to_le_bytes());
    s
}

fn slot_crc(seq_len: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(seq_len), body)
}

/// `(seq, body)` of a valid slot; `None` for a never-written, torn or damaged one.
fn parse_slot(s: &[u8]) -> Option<(u64, Vec<u8>)> {
    if s.len() != SLOT || &s[..8] != MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(s[8..16].try_into().ok()?);
    let len = u32::from_le_bytes(s[16..20].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(s[20..24].try_into().ok()?);
    let body = s.get(HEADER..HEADER + len)?;
    (slot_crc(&s[8..20], body) == crc).then(|| (seq, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reopen(dir: &Path) -> Option<Vec<u8>> {
        VoteFile::open(dir).unwrap().1
    }

    #[test]
    fn saves_alternate_slots_and_the_newest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (mut vf, none) = VoteFile::open(dir.path()).unwrap();
        assert!(none.is_none());
        vf.save(b"one").unwrap();
        assert_eq!(reopen(dir.path()).unwrap(), b"one");
        vf.save(b"two").unwrap();
        vf.save(b"three").unwrap();
        assert_eq!(reopen(dir.path()).unwrap(), b"three");
        let (mut again, v) = VoteFile::open(dir.path()).unwrap();
        assert_eq!(v.unwrap(), b"three");
        again.save(b"four").unwrap();
        assert_eq!(reopen(dir.path()).unwrap(), b"four");
        assert!(!dir.path().join("vote.tmp").exists());
    }

    #[test]
    fn a_torn_newest_slot_falls_back_to_the_previous_vote() {
        let dir = tempfile::tempdir().unwrap();
        let (mut vf, _) = VoteFile::open(dir.path()).unwrap();
        vf.save(b"old").unwrap(); // seq 1, slot 1
        vf.save(b"new").unwrap(); // seq 2, slot 0
        let p = dir.path().join(VOTE);
        let mut bytes = fs::read(&p).unwrap();
        bytes[HEADER] ^= 0xff; // tear slot 0's body
        fs::write(&p, &bytes).unwrap();
        assert_eq!(reopen(dir.path()).unwrap(), b"old");
        bytes[SLOT + HEADER] ^= 0xff; // and slot 1's: nothing valid is left
        fs::write(&p, &bytes).unwrap();
        let err = VoteFile::open(dir.path()).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn the_older_format_is_read_and_replaced_on_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        metafile::write(dir.path(), VOTE, b"legacy", true).unwrap();
        let (mut vf, v) = VoteFile::open(dir.path()).unwrap();
        assert_eq!(v.unwrap(), b"legacy");
        vf.save(b"next").unwrap();
        assert_eq!(reopen(dir.path()).unwrap(), b"next");
        assert_eq!(fs::read(dir.path().join(VOTE)).unwrap().len(), 2 * SLOT);
    }

    #[test]
    fn an_oversized_vote_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut vf, _) = VoteFile::open(dir.path()).unwrap();
        assert!(vf.save(&[7u8; SLOT]).is_err());
        assert!(reopen(dir.path()).is_none());
    }
}
