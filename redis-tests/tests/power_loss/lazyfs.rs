//! A "lazy" FUSE file system for power-loss tests: every byte and directory entry lives in the
//! test process's memory, in two versions: what the processes see now, and what an `fsync`
//! (`fdatasync`) of the file or an `fsync` of the directory made durable. [`LazyFs::power_loss`]
//! throws the first away, as a machine losing power would lose its page cache.
//!
//! Why FUSE and not a test-build `Vfs` with a sidecar ledger of synced lengths: the FUSE layer
//! needs no change to the code under test and sees every file the server touches (Raft segments,
//! vote/committed/purged files, snapshot files, the LSM's WAL, SSTs and manifest, node-id), so a
//! missing fsync anywhere, even in a file nobody thought to route through a `Vfs`, is found. The
//! ledger approach would cover only the files routed through it and trusts the routing. The cost
//! (every I/O through a userspace daemon) is fine at test loads. It needs `/dev/fuse` and
//! `fusermount3` (Debian `fuse3`).
//!
//! Model (strict, like RocksDB's FaultInjectionTestFS and LazyFS's "clear cache"):
//! - file data survives only up to its last `fsync`/`fdatasync`; half the time a random
//!   prefix of unsynced bytes appended after the synced part survives too (the kernel may have
//!   written some pages back), never bytes past a hole;
//! - a created, renamed, linked or unlinked name survives only once its directory is fsynced;
//!   otherwise the directory's previous durable entries come back;
//! - relaxation: `mkdir` is durable at once (data directories are created once at start, and
//!   ext4 commits them within seconds; the servers never rely on new directories otherwise).
//!
//! Data is served with `direct_io` and zero attribute/entry TTLs, and the file system is
//! remounted around every power loss, so the kernel caches nothing that could outlive it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};

const TTL: Duration = Duration::ZERO;
const ROOT: u64 = 1;

#[derive(Default)]
struct Inode {
    dir: bool,
    perm: u16,
    /// What readers see now (files).
    data: Vec<u8>,
    /// What survives a power loss (files).
    synced: Vec<u8>,
    /// Lowest offset changed since the last sync (`data[..dirty_from] == synced[..dirty_from]`).
    dirty_from: usize,
    /// Current entries (directories).
    entries: BTreeMap<OsString, u64>,
    /// Entries as of the last directory fsync.
    durable: BTreeMap<OsString, u64>,
}

/// Counters for reports.
#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    /// File fsyncs served.
    pub fsyncs: u64,
    /// Directory fsyncs served.
    pub dir_fsyncs: u64,
    /// Unsynced bytes dropped by power losses.
    pub dropped_bytes: u64,
    /// Names reverted (not durable in their directory) by power losses.
    pub reverted_names: u64,
}

struct State {
    inodes: HashMap<u64, Inode>,
    next: u64,
    stats: Stats,
    rng: u64,
}

impl State {
    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let n = self.inodes.get(&ino)?;
        let size = if n.dir { 4096 } else { n.data.len() as u64 };
        let now = SystemTime::now();
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind: if n.dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: n.perm,
            nlink: if n.dir { 2 } else { 1 },
            uid: unsafe { libc::geteuid() },
            gid: unsafe { libc::getegid() },
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn new_inode(&mut self, dir: bool, perm: u16) -> u64 {
        let ino = self.next;
        self.next += 1;
        self.inodes.insert(
            ino,
            Inode {
                dir,
                perm,
                ..Inode::default()
            },
        );
        ino
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut Inode, Errno> {
        match self.inodes.get_mut(&ino) {
            Some(n) if n.dir => Ok(n),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut Inode, Errno> {
        match self.inodes.get_mut(&ino) {
            Some(n) if !n.dir => Ok(n),
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: deterministic per seed.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn power_loss(&mut self) {
        let inos: Vec<u64> = self.inodes.keys().copied().collect();
        for ino in inos {
            let keep_torn = self.next_rand().is_multiple_of(2);
            let r = self.next_rand();
            let Some(n) = self.inodes.get_mut(&ino) else {
                continue;
            };
            if n.dir {
                let reverted = n
                    .entries
                    .iter()
                    .filter(|(k, v)| n.durable.get(*k) != Some(*v))
                    .count()
                    + n.durable
                        .keys()
                        .filter(|k| !n.entries.contains_key(*k))
                        .count();
                self.stats.reverted_names += reverted as u64;
                n.entries = n.durable.clone();
                continue;
            }
            let mut kept = n.synced.clone();
            // Appended-only unsynced bytes may partly have reached the disk.
            if keep_torn && n.dirty_from >= kept.len() && n.data.len() > kept.len() {
                let extra = (r % (n.data.len() - kept.len()) as u64) as usize;
                let start = kept.len();
                kept.extend_from_slice(&n.data[start..start + extra]);
            }
            self.stats.dropped_bytes += n.data.len().abs_diff(kept.len()) as u64;
            n.data = kept;
            n.dirty_from = n.data.len();
        }
        // Forget what no durable name reaches any more.
        let mut live = std::collections::HashSet::new();
        let mut stack = vec![ROOT];
        while let Some(i) = stack.pop() {
            if !live.insert(i) {
                continue;
            }
            if let Some(n) = self.inodes.get(&i) {
                stack.extend(n.entries.values().copied());
            }
        }
        self.inodes.retain(|i, _| live.contains(i));
    }
}

/// Handle on the file system's state; cheap to clone.
#[derive(Clone)]
pub struct LazyFs {
    state: Arc<Mutex<State>>,
}

struct Fs(Arc<Mutex<State>>);

impl Fs {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A mounted [`LazyFs`]; unmounts on drop.
pub struct Mounted {
    session: Option<BackgroundSession>,
    at: PathBuf,
    fs: LazyFs,
}

impl LazyFs {
    /// An empty file system; `seed` drives torn-tail choices.
    pub fn new(seed: u64) -> LazyFs {
        let mut st = State {
            inodes: HashMap::new(),
            next: ROOT,
            stats: Stats::default(),
            rng: seed | 1,
        };
        st.new_inode(true, 0o755);
        LazyFs {
            state: Arc::new(Mutex::new(st)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mounts the file system at `at` (an existing empty directory).
    pub fn mount(&self, at: &Path) -> std::io::Result<Mounted> {
        Ok(Mounted {
            session: Some(self.session(at)?),
            at: at.to_path_buf(),
            fs: self.clone(),
        })
    }

    fn session(&self, at: &Path) -> std::io::Result<BackgroundSession> {
        let mut cfg = Config::default();
        cfg.mount_options = vec![
            MountOption::FSName("pinnacle-lazyfs".into()),
            MountOption::DefaultPermissions,
        ];
        fuser::spawn_mount(Fs(self.state.clone()), at, &cfg)
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.lock().stats
    }
}

impl Mounted {
    /// Simulates a power loss: unmounts (every process using the file system must be dead),
    /// drops everything not durable, mounts again.
    pub fn power_loss(&mut self) -> std::io::Result<()> {
        if let Some(s) = self.session.take() {
            s.umount_and_join()?;
        }
        self.fs.lock().power_loss();
        self.session = Some(self.fs.session(&self.at)?);
        Ok(())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}

fn name_ok(name: &OsStr) -> OsString {
    name.to_os_string()
}

impl fuser::Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let st = self.lock();
        let found = st
            .inodes
            .get(&parent.0)
            .and_then(|p| p.entries.get(name))
            .and_then(|i| st.attr(*i));
        match found {
            Some(a) => reply.entry(&TTL, &a, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut st = self.lock();
        let Some(n) = st.inodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(m) = mode {
            n.perm = (m & 0o7777) as u16;
        }
        if let Some(size) = size {
            if n.dir {
                return reply.error(Errno::EISDIR);
            }
            let size = size as usize;
            n.data.resize(size, 0);
            n.dirty_from = n.dirty_from.min(size);
        }
        match st.attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut st = self.lock();
        match st.dir_mut(parent.0) {
            Ok(p) if p.entries.contains_key(name) => return reply.error(Errno::EEXIST),
            Ok(_) => {}
            Err(e) => return reply.error(e),
        }
        let ino = st.new_inode(true, (mode & 0o7777) as u16);
        if let Ok(p) = st.dir_mut(parent.0) {
            // Durable at once: see the module docs.
            p.entries.insert(name_ok(name), ino);
            p.durable.insert(name_ok(name), ino);
        }
        match st.attr(ino) {
            Some(a) => reply.entry(&TTL, &a, Generation(0)),
            None => reply.error(Errno::EIO),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.lock();
        let ino = match st.dir_mut(parent.0) {
            Ok(p) => p.entries.get(name).copied(),
            Err(e) => return reply.error(e),
        };
        let Some(ino) = ino else {
            return reply.error(Errno::ENOENT);
        };
        if st.inodes.get(&ino).is_some_and(|n| n.dir) {
            return reply.error(Errno::EISDIR);
        }
        if let Ok(p) = st.dir_mut(parent.0) {
            p.entries.remove(name);
        }
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.lock();
        let ino = match st.dir_mut(parent.0) {
            Ok(p) => p.entries.get(name).copied(),
            Err(e) => return reply.error(e),
        };
        let Some(ino) = ino else {
            return reply.error(Errno::ENOENT);
        };
        match st.inodes.get(&ino) {
            Some(n) if !n.dir => return reply.error(Errno::ENOTDIR),
            Some(n) if !n.entries.is_empty() => return reply.error(Errno::ENOTEMPTY),
            _ => {}
        }
        if let Ok(p) = st.dir_mut(parent.0) {
            p.entries.remove(name);
            // Symmetric with mkdir: directory removal is durable at once.
            p.durable.remove(name);
        }
        reply.ok();
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut st = self.lock();
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return reply.error(Errno::EINVAL);
        }
        let ino = match st.dir_mut(parent.0) {
            Ok(p) => p.entries.get(name).copied(),
            Err(e) => return reply.error(e),
        };
        let Some(ino) = ino else {
            return reply.error(Errno::ENOENT);
        };
        let existing = match st.dir_mut(newparent.0) {
            Ok(p) => p.entries.get(newname).copied(),
            Err(e) => return reply.error(e),
        };
        if let Some(old) = existing {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return reply.error(Errno::EEXIST);
            }
            let old_dir = st.inodes.get(&old).is_some_and(|n| n.dir);
            let new_dir = st.inodes.get(&ino).is_some_and(|n| n.dir);
            if old_dir != new_dir {
                return reply.error(if old_dir {
                    Errno::EISDIR
                } else {
                    Errno::ENOTDIR
                });
            }
            if old_dir && st.inodes.get(&old).is_some_and(|n| !n.entries.is_empty()) {
                return reply.error(Errno::ENOTEMPTY);
            }
        }
        if let Ok(p) = st.dir_mut(parent.0) {
            p.entries.remove(name);
        }
        if let Ok(p) = st.dir_mut(newparent.0) {
            p.entries.insert(name_ok(newname), ino);
        }
        reply.ok();
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut st = self.lock();
        if !st.inodes.contains_key(&ino.0) {
            return reply.error(Errno::ENOENT);
        }
        match st.dir_mut(newparent.0) {
            Ok(p) if p.entries.contains_key(newname) => return reply.error(Errno::EEXIST),
            Ok(p) => {
                p.entries.insert(name_ok(newname), ino.0);
            }
            Err(e) => return reply.error(e),
        }
        match st.attr(ino.0) {
            Some(a) => reply.entry(&TTL, &a, Generation(0)),
            None => reply.error(Errno::EIO),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.lock().inodes.contains_key(&ino.0) {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut st = self.lock();
        match st.file_mut(ino.0) {
            Ok(n) => {
                let start = (offset as usize).min(n.data.len());
                let end = (start + size as usize).min(n.data.len());
                reply.data(&n.data[start..end]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut st = self.lock();
        match st.file_mut(ino.0) {
            Ok(n) => {
                let off = offset as usize;
                let end = off + data.len();
                if n.data.len() < end {
                    n.data.resize(end, 0);
                }
                n.data[off..end].copy_from_slice(data);
                n.dirty_from = n.dirty_from.min(off);
                reply.written(data.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = self.lock();
        st.stats.fsyncs += 1;
        match st.file_mut(ino.0) {
            Ok(n) => {
                let from = n.dirty_from.min(n.synced.len());
                n.synced.truncate(from);
                n.synced.extend_from_slice(&n.data[from..]);
                n.dirty_from = n.data.len();
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let st = self.lock();
        let Some(n) = st.inodes.get(&ino.0).filter(|n| n.dir) else {
            return reply.error(Errno::ENOTDIR);
        };
        let mut all: Vec<(u64, FileType, OsString)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        for (name, i) in &n.entries {
            let kind = match st.inodes.get(i) {
                Some(c) if c.dir => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((*i, kind, name.clone()));
        }
        for (k, (i, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(i), (k + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = self.lock();
        st.stats.dir_fsyncs += 1;
        match st.dir_mut(ino.0) {
            Ok(n) => {
                n.durable = n.entries.clone();
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut st = self.lock();
        let existing = match st.dir_mut(parent.0) {
            Ok(p) => p.entries.get(name).copied(),
            Err(e) => return reply.error(e),
        };
        let ino = match existing {
            Some(i) => i,
            None => {
                let i = st.new_inode(false, (mode & 0o7777) as u16);
                if let Ok(p) = st.dir_mut(parent.0) {
                    p.entries.insert(name_ok(name), i);
                }
                i
            }
        };
        match st.attr(ino) {
            Some(a) => reply.created(
                &TTL,
                &a,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            None => reply.error(Errno::EIO),
        }
    }
}
