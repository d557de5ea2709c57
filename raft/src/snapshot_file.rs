//! Snapshot files: `magic | data | meta | meta_len u32 | crc32c u32`, the CRC covering all bytes
//! before it. The meta sits at the end because the target reports it after writing the data.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::types::SnapshotMeta;

const MAGIC: &[u8; 8] = b"PNRSNAP1";

/// A complete, checksummed snapshot file; the `SnapshotData` openraft moves around.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    /// Where the file is.
    pub path: PathBuf,
}

struct CrcWriter<W: Write> {
    inner: W,
    crc: u32,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn bad(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("snapshot {}: {why}", path.display()),
    )
}

impl SnapshotFile {
    /// Writes a new snapshot at `path` (fsynced): `data` writes the image and returns the meta
    /// bytes it corresponds to, `meta` turns those into the snapshot's [`SnapshotMeta`].
    pub(crate) fn create(
        path: &Path,
        data: impl FnOnce(&mut dyn Write) -> io::Result<Vec<u8>>,
        meta: impl FnOnce(&[u8]) -> io::Result<SnapshotMeta>,
    ) -> io::Result<(SnapshotFile, SnapshotMeta)> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let mut w = CrcWriter {
            inner: BufWriter::new(file),
            crc: 0,
        };
        w.write_all(MAGIC)?;
        let raw = data(&mut w)?;
        let m = meta(&raw)?;
        let mb = bincode::serialize(&m).map_err(io::Error::other)?;
        w.write_all(&mb)?;
        w.write_all(&(mb.len() as u32).to_le_bytes())?;
        let crc = w.crc;
        let mut inner = w.inner.into_inner().map_err(|e| e.into_error())?;
        inner.write_all(&crc.to_le_bytes())?;
        inner.sync_all()?;
        Ok((
            SnapshotFile {
                path: path.to_path_buf(),
            },
            m,
        ))
    }

    /// Verifies the checksum and returns the meta and the byte range of the data.
    pub fn verify(&self) -> io::Result<(SnapshotMeta, u64, u64)> {
        let p = &self.path;
        let mut f = File::open(p)?;
        let len = f.metadata()?.len();
        if len < 16 {
            return Err(bad(p, "too short"));
        }
        let mut crc = 0u32;
        let mut buf = vec![0u8; 1 << 16];
        let mut left = len - 4;
        let mut head = [0u8; 8];
        let mut first = true;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            f.read_exact(&mut buf[..n])?;
            if first {
                head.copy_from_slice(&buf[..8]);
                first = false;
            }
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            left -= n as u64;
        }
        let mut tail = [0u8; 4];
        f.read_exact(&mut tail)?;
        if &head != MAGIC {
            return Err(bad(p, "bad header"));
        }
        if u32::from_le_bytes(tail) != crc {
            return Err(bad(p, "checksum mismatch"));
        }
        let mut ml = [0u8; 4];
        f.seek(SeekFrom::Start(len - 8))?;
        f.read_exact(&mut ml)?;
        let meta_len = u32::from_le_bytes(ml) as u64;
        if meta_len + 16 > len {
            return Err(bad(p, "bad meta length"));
        }
        let meta_start = len - 8 - meta_len;
        let mut mb = vec![0u8; meta_len as usize];
        f.seek(SeekFrom::Start(meta_start))?;
        f.read_exact(&mut mb)?;
        let meta: SnapshotMeta = bincode::deserialize(&mb).map_err(|e| bad(p, &e.to_string()))?;
        Ok((meta, 8, meta_start))
    }

    /// Opens the data part for reading (after verifying the checksum).
    pub(crate) fn data_reader(&self) -> io::Result<(SnapshotMeta, impl Read)> {
        let (meta, start, end) = self.verify()?;
        let mut f = File::open(&self.path)?;
        f.seek(SeekFrom::Start(start))?;
        Ok((meta, io::BufReader::new(f.take(end - start))))
    }

    /// Size in bytes.
    pub fn len(&self) -> io::Result<u64> {
        Ok(fs::metadata(&self.path)?.len())
    }

    /// True if the file is empty (never for a valid snapshot).
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}
