//! The file-system seam: every byte the engine stores goes through a [`Vfs`].
//!
//! [`RealFs`] is the operating system. Tests use a simulated file system that tracks which
//! bytes and directory entries were made durable, so a "power loss" can drop or tear what
//! was not fsynced (see `SimFs` in this module's tests and in `tests/`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file opened for appending; nothing is durable until [`WritableFile::sync`] returns.
pub trait WritableFile: Send {
    /// Appends `data` at the end of the file.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes every appended byte durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Bytes appended so far (the file's length).
    fn len(&self) -> u64;
    /// True when nothing was appended.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A handle that reserves disk space for this file ahead of its appends, so running out
    /// of space shows up before a write instead of in the middle of one. `None` when the
    /// file system cannot reserve (appends may then fail with "no space" at any point).
    fn allocator(&self) -> Option<Box<dyn Allocator>> {
        None
    }
}

/// Reserves disk space for a file without changing its length (`fallocate` with
/// `FALLOC_FL_KEEP_SIZE`); appends into reserved space do not run out of space.
pub trait Allocator: Send {
    /// Reserves the byte range `[offset, offset + len)` of the file.
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()>;
}

/// A file opened for positional reads.
pub trait RandomAccessFile: Send + Sync {
    /// Reads exactly `len` bytes at `offset`; a short file is an `UnexpectedEof` error.
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// The file's length in bytes.
    fn len(&self) -> u64;
    /// True for an empty file.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The operations the engine needs from a file system.
pub trait Vfs: Send + Sync {
    /// Creates (or truncates) `path` for appending. The new directory entry is durable only
    /// after [`Vfs::sync_dir`] on the parent.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens `path` for positional reads.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>>;
    /// Reads a whole file.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open(path)?;
        f.read_at(0, f.len() as usize)
    }
    /// Atomically renames `from` to `to` (durable after `sync_dir`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Hard-links `from` to `to` (used by checkpoints).
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names of the entries of `dir` (file names only, unsorted).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// True if `path` exists.
    fn exists(&self, path: &Path) -> bool;
}

/// The real operating-system file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

struct RealWritable {
    file: std::fs::File,
    len: u64,
}

impl WritableFile for RealWritable {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        use std::io::Write;
        self.file.write_all(data)?;
        self.len += data.len() as u64;
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn allocator(&self) -> Option<Box<dyn Allocator>> {
        let file = self.file.try_clone().ok()?;
        Some(Box::new(RealAllocator { file }))
    }
}

struct RealAllocator {
    file: std::fs::File,
}

impl Allocator for RealAllocator {
    #[cfg(target_os = "linux")]
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let off = libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let len = libc::off_t::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        loop {
            // SAFETY: the descriptor is owned by `self.file` and open for the whole call.
            let r = unsafe {
                libc::fallocate(self.file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, off, len)
            };
            if r == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    fn allocate(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

struct RealReadable {
    file: std::fs::File,
    len: u64,
}

impl RandomAccessFile for RealReadable {
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::os::fd::AsRawFd;
        // Read straight into the vector's spare capacity: zeroing it first (`vec![0; len]`)
        // was ~5 % of a worker serving point reads that miss the block cache.
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        while buf.len() < len {
            let done = buf.len();
            let at = offset
                .checked_add(done as u64)
                .and_then(|o| libc::off_t::try_from(o).ok())
                .ok_or(io::ErrorKind::InvalidInput)?;
            let spare = &mut buf.spare_capacity_mut()[..len - done];
            // SAFETY: pread writes at most `spare.len()` bytes into `spare`, which is allocated
            // and owned by `buf`; the descriptor is owned by `self.file` for the whole call.
            let n = unsafe {
                libc::pread(
                    self.file.as_raw_fd(),
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    at,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            // SAFETY: pread initialised bytes `done .. done + n` (n <= spare.len()).
            unsafe { buf.set_len(done + n as usize) };
        }
        Ok(buf)
    }
    fn len(&self) -> u64 {
        self.len
    }
}

impl Vfs for RealFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(RealWritable { file, len: 0 }))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Arc::new(RealReadable { file, len }))
    }
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            out.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// Joins a file name onto a directory (small helper used across modules).
pub fn file_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// A writable file that refuses every write; stands in for a real file while the engine
/// is being assembled during open.
pub(crate) struct NullFile;

impl WritableFile for NullFile {
    fn append(&mut self, _data: &[u8]) -> io::Result<()> {
        Err(io::Error::other("placeholder file"))
    }
    fn sync(&mut self) -> io::Result<()> {
        Err(io::Error::other("placeholder file"))
    }
    fn len(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_at_returns_exactly_the_range_or_an_eof_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let f = RealFs.open(&path).expect("open");
        assert_eq!(f.read_at(0, 0).expect("empty"), Vec::<u8>::new());
        assert_eq!(f.read_at(123, 4096).expect("middle"), data[123..123 + 4096]);
        assert_eq!(f.read_at(9_990, 10).expect("tail"), data[9_990..]);
        let past = f.read_at(9_995, 10).expect_err("past the end");
        assert_eq!(past.kind(), io::ErrorKind::UnexpectedEof);
        assert!(f.read_at(u64::MAX - 1, 4).is_err());
    }
}
