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

/// Free bytes of the filesystem holding `p` (0 if df fails).
pub fn fs_free(p: &Path) -> u64 {
    let Ok(out) = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(p)
        .output()
    else {
        return 0;
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// Takes all but `leave` free bytes of the filesystem holding `dir` with a file `name` in
/// it (delete it to give the space back); returns its path. Retried with a fresh `df` and
/// 16 KiB less each time when the node took space between the two (or, with `leave` 0,
/// when tmpfs cannot hand out its very last pages).
pub fn fill(dir: &Path, name: &str, leave: u64) -> Result<PathBuf, String> {
    let path = dir.join(name);
    let mut last = String::new();
    for slack in 0..20u64 {
        let len = fs_free(dir)
            .saturating_sub(leave + slack * (16 << 10))
            .max(4096);
        let st = Command::new("fallocate")
            .args(["-l", &len.to_string()])
            .arg(&path)
            .status()
            .map_err(|e| e.to_string())?;
        if st.success() {
            return Ok(path);
        }
        last = format!("fallocate -l {len} {} failed: {st}", path.display());
        let _ = std::fs::remove_file(&path);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(last)
}
