//! Segment files: `magic` then records `len u32 | crc32c u32 | index u64 | body`, where the CRC
//! covers `len`, `index` and `body`. Segments are named by their first index and only the last one
//! is written to; a segment is fsynced before the next one is started, so only the last segment
//! can have a torn tail.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// File header: format name + version. A new on-disk format gets a new magic.
pub(crate) const SEG_MAGIC: &[u8; 8] = b"PNRLOG01";
const HDR: usize = 8;
const REC_HDR: usize = 16;

/// Why a log directory could not be opened.
#[derive(Debug, Error)]
pub enum RecoveryError {
    /// A record inside the synced part of the log is damaged.
    #[error("corrupt raft log {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The file system failed.
    #[error("raft log io: {0}")]
    Io(#[from] io::Error),
}

impl From<RecoveryError> for io::Error {
    fn from(e: RecoveryError) -> Self {
        match e {
            RecoveryError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}

/// Encodes one record.
pub(crate) fn encode_record(index: u64, body: &[u8], out: &mut Vec<u8>) {
    let len = (8 + body.len()) as u32;
    let mut crc = crc32c::crc32c(&len.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &index.to_le_bytes());
    crc = crc32c::crc32c_append(crc, body);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(body);
}

/// One segment file on disk.
pub(crate) struct Segment {
    pub(crate) first_index: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    /// Start offset of each record; record `i` holds `first_index + i`.
    pub(crate) offsets: Vec<u64>,
    /// Bytes of valid data (header + records).
    pub(crate) len: u64,
    /// Bytes from offset 0 whose space is allocated (see [`Segment::reserve`]).
    pub(crate) reserved: u64,
    /// False once the file system refused a reservation for a reason other than space.
    pub(crate) can_reserve: bool,
}

impl Segment {
    /// Index after the last record in this segment.
    pub(crate) fn end_index(&self) -> u64 {
        self.first_index + self.offsets.len() as u64
    }

    /// Creates a new empty segment whose first record will be `first_index`.
    pub(crate) fn create(dir: &Path, first_index: u64) -> io::Result<Segment> {
        let path = dir.join(segment_name(first_index));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        file.write_all_at(SEG_MAGIC, 0)?;
        Ok(Segment {
            first_index,
            path,
            file,
            offsets: Vec::new(),
            len: HDR as u64,
            reserved: HDR as u64,
            can_reserve: true,
        })
    }

    /// Appends encoded records (starting at `self.end_index()`); not synced.
    pub(crate) fn append(&mut self, bytes: &[u8], record_lens: &[usize]) -> io::Result<()> {
        self.file.write_all_at(bytes, self.len)?;
        let mut off = self.len;
        for l in record_lens {
            self.offsets.push(off);
            off += *l as u64;
        }
        self.len = off;
        Ok(())
    }

    /// Drops records with index >= `from` (not synced).
    pub(crate) fn truncate_from(&mut self, from: u64) -> io::Result<()> {
        let keep = from.saturating_sub(self.first_index) as usize;
        if keep < self.offsets.len() {
            self.len = self.offsets[keep];
            self.offsets.truncate(keep);
            self.file.set_len(self.len)?;
            // Truncation frees the blocks reserved past the new end too.
            self.reserved = self.len;
        }
        Ok(())
    }

    /// Makes sure the file can grow to `end` bytes without running out of space; the only
    /// error is "no space" (a file system that cannot reserve makes this a no-op, and its
    /// appends report ENOSPC themselves).
    pub(crate) fn reserve(&mut self, end: u64) -> io::Result<()> {
        if !self.can_reserve || end <= self.reserved {
            return Ok(());
        }
        match super::space::reserve(&self.file, self.reserved, end - self.reserved) {
            Ok(()) => {
                self.reserved = end;
                Ok(())
            }
            Err(e) if super::space::is_no_space(&e) => Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "raft log space reservation unavailable");
                self.can_reserve = false;
                Ok(())
            }
        }
    }
}

/// File name for a segment starting at `first_index`.
pub(crate) fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}.seg")
}

fn parse_name(name: &str) -> Option<u64> {
    name.strip_suffix(".seg")?.parse().ok()
}

/// Every record recovered from one segment: `(index, body)`.
pub(crate) type Records = Vec<(u64, Vec<u8>)>;

/// Opens every segment in `dir` in index order, validating checksums and continuity. A torn tail
/// of the last segment is cut off (the file is truncated to its last good record); damage
/// anywhere else is [`RecoveryError::Corrupt`].
pub(crate) fn recover(dir: &Path) -> Result<Vec<(Segment, Records)>, RecoveryError> {
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    for ent in fs::read_dir(dir)? {
        let ent = ent?;
        if let Some(first) = ent.file_name().to_str().and_then(parse_name) {
            names.push((first, ent.path()));
        }
    }
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    let n = names.len();
    for (i, (first, path)) in names.into_iter().enumerate() {
        let last = i + 1 == n;
        let data = fs::read(&path)?;
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        if data.len() < HDR || &data[..HDR] != SEG_MAGIC {
            if last && data.len() < HDR && SEG_MAGIC.starts_with(&data) {
                // Created but the header never reached the disk: an empty torn segment.
                drop(file);
                fs::remove_file(&path)?;
                continue;
            }
            return Err(RecoveryError::Corrupt {
                path,
                offset: 0,
                reason: "bad segment header".into(),
            });
        }
        let (records, offsets, good_len) = scan(&path, &data, first, last)?;
        if good_len < data.len() as u64 {
            tracing::warn!(
                "raft log {}: dropping torn tail of {} bytes at offset {good_len}",
                path.display(),
                data.len() as u64 - good_len
            );
            file.set_len(good_len)?;
            file.sync_all()?;
        }
        let seg = Segment {
            first_index: first,
            path,
            file,
            offsets,
            len: good_len,
            reserved: good_len,
            can_reserve: true,
        };
        out.push((seg, records));
    }
    Ok(out)
}

/// Outcome of reading one record at an offset.
enum Rec {
    Ok {
        index: u64,
        body: Vec<u8>,
        next: usize,
    },
    /// Not enough bytes, a zero header or a bad checksum.
    Bad(String),
}

fn read_record(data: &[u8], off: usize) -> Rec {
    if data.len() - off < REC_HDR {
        return Rec::Bad("truncated record header".into());
    }
    let len = u32::from_le_bytes(data[off..off + 4].try_into().unwrap_or([0; 4])) as usize;
    let crc = u32::from_le_bytes(data[off + 4..off + 8].try_into().unwrap_or([0; 4]));
    if len < 8 {
        return Rec::Bad(format!("bad record length {len}"));
    }
    let end = off + 8 + len;
    if end > data.len() {
        return Rec::Bad("truncated record".into());
    }
    let mut c = crc32c::crc32c(&data[off..off + 4]);
    c = crc32c::crc32c_append(c, &data[off + 8..end]);
    if c != crc {
        return Rec::Bad("checksum mismatch".into());
    }
    let index = u64::from_le_bytes(data[off + 8..off + 16].try_into().unwrap_or([0; 8]));
    Rec::Ok {
        index,
        body: data[off + 16..end].to_vec(),
        next: end,
    }
}

type Scanned = (Records, Vec<u64>, u64);

fn scan(path: &Path, data: &[u8], first: u64, last: bool) -> Result<Scanned, RecoveryError> {
    let mut records = Vec::new();
    let mut offsets = Vec::new();
    let mut off = HDR;
    let mut expect = first;
    while off < data.len() {
        match read_record(data, off) {
            Rec::Ok { index, body, next } => {
                if index != expect {
                    if last && !any_valid_after(data, next) {
                        // A stale record behind a torn write: still the tail.
                        break;
                    }
                    return Err(RecoveryError::Corrupt {
                        path: path.to_path_buf(),
                        offset: off as u64,
                        reason: format!("expected index {expect}, found {index}"),
                    });
                }
                records.push((index, body));
                offsets.push(off as u64);
                expect += 1;
                off = next;
            }
            Rec::Bad(reason) => {
                // Only the unsynced end of the last segment may be damaged. If a valid record
                // follows the damage, synced data was hit: that is corruption, not a torn write.
                let next = record_end(data, off);
                let valid_after = next.is_some_and(|n| any_valid_after(data, n));
                if last && !valid_after {
                    break;
                }
                return Err(RecoveryError::Corrupt {
                    path: path.to_path_buf(),
                    offset: off as u64,
                    reason,
                });
            }
        }
    }
    Ok((records, offsets, off as u64))
}

/// Where the record at `off` would end according to its (unverified) length field.
fn record_end(data: &[u8], off: usize) -> Option<usize> {
    if data.len() - off < REC_HDR {
        return None;
    }
    let len = u32::from_le_bytes(data[off..off + 4].try_into().ok()?) as usize;
    let end = off.checked_add(8)?.checked_add(len)?;
    (len >= 8 && end <= data.len()).then_some(end)
}

fn any_valid_after(data: &[u8], off: usize) -> bool {
    off < data.len() && matches!(read_record(data, off), Rec::Ok { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_seg(dir: &Path, first: u64, n: u64) -> PathBuf {
        let mut seg = Segment::create(dir, first).unwrap();
        for i in first..first + n {
            let mut buf = Vec::new();
            encode_record(i, format!("entry-{i}").as_bytes(), &mut buf);
            let l = buf.len();
            seg.append(&buf, &[l]).unwrap();
        }
        seg.file.sync_all().unwrap();
        seg.path.clone()
    }

    #[test]
    fn torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_seg(dir.path(), 5, 10);
        let full = fs::metadata(&p).unwrap().len();
        // Cut the last record in half.
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(full - 5).unwrap();
        let segs = recover(dir.path()).unwrap();
        assert_eq!(segs.len(), 1);
        let (seg, recs) = &segs[0];
        assert_eq!(recs.len(), 9);
        assert_eq!(recs.last().unwrap().0, 13);
        assert_eq!(seg.end_index(), 14);
        assert_eq!(fs::metadata(&p).unwrap().len(), seg.len);
    }

    #[test]
    fn garbage_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_seg(dir.path(), 0, 3);
        let len = fs::metadata(&p).unwrap().len();
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[0xAB; 40], len).unwrap();
        let segs = recover(dir.path()).unwrap();
        assert_eq!(segs[0].1.len(), 3);
    }

    #[test]
    fn mid_log_corruption_names_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_seg(dir.path(), 0, 10);
        // Flip a body byte of record 2; records 3.. stay valid.
        let segs = recover(dir.path()).unwrap();
        let off2 = segs[0].0.offsets[2];
        drop(segs);
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(b"X", off2 + 17).unwrap();
        let err = recover(dir.path()).err().expect("must fail");
        let msg = err.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("offset {off2}")), "{msg}");
    }

    #[test]
    fn damage_in_an_older_segment_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p0 = write_seg(dir.path(), 0, 4);
        write_seg(dir.path(), 4, 4);
        let len = fs::metadata(&p0).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&p0)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let err = recover(dir.path()).err().expect("must fail");
        assert!(err.to_string().contains(&p0.display().to_string()), "{err}");
    }
}
