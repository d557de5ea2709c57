//! A small tmpfs as a node's data directory: a real full disk (ENOSPC) for the disk-fault
//! tests (reliability.md T10). Needs root and mount(8); [`can_mount`] says so and skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools;

/// A tmpfs mounted on a folder, unmounted on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: `16m`) on `dir`, creating it.
    pub fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err(format!("mount tmpfs on {} failed: {st}", dir.display()));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// True if this process may mount a tmpfs (root and mount(8)); otherwise prints why `test`
/// is skipped (or panics with `REDIS_TESTS_STRICT=1`).
pub fn can_mount(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && tools::which("mount").is_some() {
        return true;
    }
    let msg = format!("SKIP {test}: needs root and mount(8) for a tmpfs");
    if std::env::var(tools::STRICT_ENV).is_ok_and(|v| v == "1") {
        panic!("{msg} (and {}=1)", tools::STRICT_ENV);
    }
    eprintln!("{msg}");
    false
}

/// Free bytes of the filesystem holding `p` for an unprivileged writer (0 if statvfs fails).
pub fn fs_free(p: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs only writes into the zeroed struct we pass; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    st.f_bavail as u64 * st.f_frsize as u64
}

/// Takes all but about `leave` free bytes of the filesystem holding `dir` with a file `name`
/// in it (delete it to give the space back); returns its path.
///
/// The node under test keeps writing meanwhile, so one `fallocate` of "free − leave" races
/// with it (CI saw 20 such attempts fail in a row). Instead the file grows: first all but a
/// few MiB, then top-ups of what is left, each sized from a fresh statvfs and halved when
/// the node took the space first. Space the node takes counts as filled.
pub fn fill(dir: &Path, name: &str, leave: u64) -> Result<PathBuf, String> {
    use std::os::fd::AsRawFd;
    const MARGIN: u64 = 4 << 20;
    const CLOSE_ENOUGH: u64 = 64 << 10;
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    let mut len: u64 = 0;
    let grow = |want: u64, len: &mut u64| -> bool {
        // SAFETY: plain fallocate(2) on a file we own; the range is within i64.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, *len as i64, want as i64) };
        if rc == 0 {
            *len += want;
        }
        rc == 0
    };
    let bulk = fs_free(dir).saturating_sub(leave + MARGIN);
    if bulk > 0 {
        // If the node raced us even for the bulk, the top-ups below take what they can.
        let _ = grow(bulk, &mut len);
    }
    let mut last_fail = 0u64;
    for _ in 0..400 {
        let free = fs_free(dir);
        if free <= leave + CLOSE_ENOUGH {
            return Ok(path);
        }
        let mut want = free - leave;
        if last_fail > 0 {
            want = want.min(last_fail / 2).max(4096);
        }
        if grow(want, &mut len) {
            last_fail = 0;
        } else {
            last_fail = want;
            if want <= 4096 {
                // tmpfs may refuse its very last pages: as full as it gets.
                return Ok(path);
            }
        }
    }
    let free = fs_free(dir);
    if free <= leave + (1 << 20) {
        return Ok(path);
    }
    let _ = std::fs::remove_file(&path);
    Err(format!(
        "could not fill {}: {free} bytes still free after 400 top-ups (wanted {leave})",
        dir.display()
    ))
}
