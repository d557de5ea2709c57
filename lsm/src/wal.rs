//! The write-ahead log: one record per write batch, one segment file per memtable.
//!
//! Record: `u32 payload_len | u64 first_seq | u32 crc32c(len, seq) | u32 crc32c(payload) | payload`
//! (little endian). The header has its own checksum so a damaged length is detected instead of
//! being mistaken for a short tail. Recovery drops a bad tail (a crash mid-append) but fails
//! when a bad record is followed by a valid one (corruption in the middle).

use crate::batch::{BatchOp, WriteBatch};
use crate::coding::{get_bytes, get_u32, get_u64, get_varint, put_bytes, put_varint};
use crate::space::Reservation;
use crate::vfs::{Vfs, WritableFile};
use crate::{Error, Result};
use bytes::Bytes;
use std::path::{Path, PathBuf};

/// Bytes of a record's header (the record is this plus its payload).
pub(crate) const HEADER: usize = 20;
const TAG_DELETE: u8 = 0;
const TAG_PUT: u8 = 1;
const TAG_RANGE: u8 = 2;

/// The on-disk name of WAL segment `id`.
pub(crate) fn segment_name(id: u64) -> String {
    format!("{id:06}.wal")
}

/// Appends the payload encoding of `batch` to `buf`.
pub(crate) fn encode_batch(buf: &mut Vec<u8>, batch: &WriteBatch) {
    put_varint(buf, batch.len() as u64);
    for op in batch.ops() {
        match op {
            BatchOp::Put(k, v) => {
                buf.push(TAG_PUT);
                put_bytes(buf, k);
                put_bytes(buf, v);
            }
            BatchOp::Delete(k) => {
                buf.push(TAG_DELETE);
                put_bytes(buf, k);
            }
            BatchOp::DeleteRange(s, e) => {
                buf.push(TAG_RANGE);
                put_bytes(buf, s);
                put_bytes(buf, e);
            }
        }
    }
}

/// Decodes a batch payload (values are zero-copy slices of `data`).
pub(crate) fn decode_batch(data: &Bytes) -> Option<WriteBatch> {
    let mut p = 0;
    let n = get_varint(data, &mut p)?;
    let mut b = WriteBatch::new();
    let slice = |p: &mut usize| -> Option<Bytes> {
        let start = *p;
        let s = get_bytes(data, p)?;
        let off = *p - s.len();
        debug_assert!(off >= start);
        Some(data.slice(off..*p))
    };
    for _ in 0..n {
        let tag = *data.get(p)?;
        p += 1;
        match tag {
            TAG_PUT => {
                let k = slice(&mut p)?;
                let v = slice(&mut p)?;
                b.put(k, v);
            }
            TAG_DELETE => {
                let k = slice(&mut p)?;
                b.delete(k);
            }
            TAG_RANGE => {
                let s = slice(&mut p)?;
                let e = slice(&mut p)?;
                b.delete_range(s, e);
            }
            _ => return None,
        }
    }
    (p == data.len()).then_some(b)
}

/// Appends one framed record holding `payload` (a batch starting at `seq`) to `out`.
pub(crate) fn frame_record(out: &mut Vec<u8>, seq: u64, payload: &[u8]) -> Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| Error::InvalidArgument("write batch larger than 4 GiB".into()))?;
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let hcrc = crc32c::crc32c(&out[start..start + 12]);
    out.extend_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// An open WAL segment being appended to.
pub(crate) struct WalWriter {
    file: Box<dyn WritableFile>,
    path: PathBuf,
}

impl WalWriter {
    /// Creates segment `id` in `dir` and makes its directory entry durable.
    pub(crate) fn create(vfs: &dyn Vfs, dir: &Path, id: u64) -> Result<WalWriter> {
        let path = dir.join(segment_name(id));
        let file = vfs
            .create(&path)
            .map_err(|e| Error::io_or_no_space(&path, e))?;
        vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        Ok(WalWriter { file, path })
    }

    /// A writer that fails every call (only used while the engine is being opened).
    pub(crate) fn placeholder() -> WalWriter {
        WalWriter {
            file: Box::new(crate::vfs::NullFile),
            path: PathBuf::new(),
        }
    }

    /// A reservation handle for this segment's space (see [`crate::space`]), reserving
    /// `step` bytes at a time.
    pub(crate) fn reservation(&self, step: u64) -> Reservation {
        Reservation::for_file(&*self.file, step)
    }

    /// The segment's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends framed records.
    pub(crate) fn append(&mut self, data: &[u8]) -> Result<()> {
        self.file.append(data).map_err(|e| Error::io(&self.path, e))
    }

    /// Makes every appended record durable.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.file.sync().map_err(|e| Error::io(&self.path, e))
    }
}

// A record that parses and passes both checksums, starting at `pos`: its end offset.
fn valid_record_at(data: &[u8], pos: usize) -> Option<(usize, u64, usize)> {
    let hdr = data.get(pos..pos.checked_add(HEADER)?)?;
    if get_u32(hdr, 12)? != crc32c::crc32c(&hdr[..12]) {
        return None;
    }
    let len = get_u32(hdr, 0)? as usize;
    let seq = get_u64(hdr, 4)?;
    let end = (pos + HEADER).checked_add(len)?;
    let payload = data.get(pos + HEADER..end)?;
    if get_u32(hdr, 16)? != crc32c::crc32c(payload) {
        return None;
    }
    Some((end, seq, len))
}

/// Replays the segment at `path`, calling `apply(first_seq, batch)` per record in order.
///
/// Returns the offset where valid data ends. A damaged tail is ignored; a damaged record
/// followed by a valid one is `Error::Corruption` naming the file and offset.
pub(crate) fn replay(
    vfs: &dyn Vfs,
    path: &Path,
    mut apply: impl FnMut(u64, WriteBatch) -> Result<()>,
) -> Result<u64> {
    let data = Bytes::from(vfs.read_all(path).map_err(|e| Error::io(path, e))?);
    let mut pos = 0usize;
    while pos < data.len() {
        match valid_record_at(&data, pos) {
            Some((end, seq, _)) => {
                let payload = data.slice(pos + HEADER..end);
                let batch = decode_batch(&payload).ok_or_else(|| {
                    Error::corruption(path, pos as u64, "WAL record payload does not decode")
                })?;
                apply(seq, batch)?;
                pos = end;
            }
            None => {
                // Torn tail unless some valid record follows the damage.
                if (pos + 1..data.len().saturating_sub(HEADER - 1))
                    .any(|q| valid_record_at(&data, q).is_some())
                {
                    return Err(Error::corruption(
                        path,
                        pos as u64,
                        "damaged WAL record followed by valid records",
                    ));
                }
                tracing::warn!(path = %path.display(), offset = pos, "dropping torn WAL tail");
                break;
            }
        }
    }
    Ok(pos as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::RealFs;

    fn batch(i: u32) -> WriteBatch {
        let mut b = WriteBatch::new();
        b.put(format!("k{i:04}"), format!("v{i:04}"))
            .delete(format!("d{i:04}"))
            .delete_range("a", "b")
            .put(format!("e{i:04}"), "");
        b
    }

    fn write_segment(dir: &Path, n: u32) -> PathBuf {
        let mut w = WalWriter::create(&RealFs, dir, 7).unwrap();
        for i in 0..n {
            let mut payload = Vec::new();
            encode_batch(&mut payload, &batch(i));
            let mut rec = Vec::new();
            frame_record(&mut rec, u64::from(i) * 4 + 1, &payload).unwrap();
            w.append(&rec).unwrap();
        }
        w.sync().unwrap();
        dir.join(segment_name(7))
    }

    fn read(path: &Path) -> Result<Vec<(u64, WriteBatch)>> {
        let mut out = Vec::new();
        replay(&RealFs, path, |s, b| {
            out.push((s, b));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_segment(dir.path(), 20);
        let got = read(&p).unwrap();
        assert_eq!(got.len(), 20);
        for (i, (s, b)) in got.iter().enumerate() {
            assert_eq!(*s, i as u64 * 4 + 1);
            assert_eq!(*b, batch(i as u32));
        }
    }

    #[test]
    fn torn_tail_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_segment(dir.path(), 20);
        let data = std::fs::read(&p).unwrap();
        for cut in [data.len() - 1, data.len() - 10, data.len() - 30] {
            std::fs::write(&p, &data[..cut]).unwrap();
            assert_eq!(read(&p).unwrap().len(), 19);
        }
        // Garbage (not just a short write) in the last record is also a torn tail.
        let mut d = data.clone();
        let n = d.len();
        d[n - 3] ^= 0xff;
        std::fs::write(&p, &d).unwrap();
        assert_eq!(read(&p).unwrap().len(), 19);
        let mut d = data.clone();
        d.extend_from_slice(&[0u8; 100]);
        std::fs::write(&p, &d).unwrap();
        assert_eq!(read(&p).unwrap().len(), 20);
    }

    #[test]
    fn middle_corruption_fails_with_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_segment(dir.path(), 20);
        let mut data = std::fs::read(&p).unwrap();
        let rec_len = data.len() / 20;
        for at in [rec_len * 5 + 2, rec_len * 5 + 25] {
            let mut d = data.clone();
            d[at] ^= 0x01;
            std::fs::write(&p, &d).unwrap();
            match read(&p) {
                Err(Error::Corruption { offset, path, .. }) => {
                    assert_eq!(offset as usize, rec_len * 5);
                    assert_eq!(path, p);
                }
                other => panic!("expected corruption, got {:?}", other.map(|v| v.len())),
            }
        }
        data.truncate(0);
    }
}
