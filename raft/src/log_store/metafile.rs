//! Small atomically replaced files (vote, committed, purged): `magic | len | crc32c | body`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"PNRMETA1";

/// Encodes `body` with the header and checksum.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Replaces `dir/name` with `body` via a temp file and rename. With `durable`, the temp file and
/// the directory are fsynced so the new content survives power loss before this returns.
pub(crate) fn write(dir: &Path, name: &str, body: &[u8], durable: bool) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&frame(body))?;
        if durable {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, &dst)?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads `dir/name`: `Ok(None)` if absent, an `InvalidData` error naming the file if damaged.
pub(crate) fn read(dir: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    let mut buf = Vec::new();
    match File::open(&path) {
        Ok(mut f) => f.read_to_end(&mut buf)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", path.display()),
        )
    };
    if buf.len() < 16 || &buf[..8] != MAGIC {
        return Err(bad("bad header"));
    }
    let len = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    let crc = u32::from_le_bytes([buf[12], buf[13], buf[14], buf[15]]);
    let body = &buf[16..];
    if body.len() != len {
        return Err(bad("length mismatch"));
    }
    if crc32c::crc32c(body) != crc {
        return Err(bad("checksum mismatch"));
    }
    Ok(Some(body.to_vec()))
}

/// fsyncs a directory so created, renamed or deleted entries in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path(), "vote").unwrap().is_none());
        write(dir.path(), "vote", b"hello", true).unwrap();
        assert_eq!(read(dir.path(), "vote").unwrap().unwrap(), b"hello");
        let p = dir.path().join("vote");
        let mut bytes = fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&p, bytes).unwrap();
        let err = read(dir.path(), "vote").unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
