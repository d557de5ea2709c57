//! `SimFs`: an in-memory [`Vfs`] that can lose power.
//!
//! It tracks, per file, the bytes written and the bytes made durable by `sync`, and per
//! directory which entries (creates, renames, removes, hard links) were made durable by
//! `sync_dir`. [`SimFs::crash`] models a power loss: every file falls back to its durable
//! bytes (with probability 0.5 part of its unsynced tail survives: a torn write, which keeps
//! all of the tail or a random prefix of it with equal odds)
//! and every directory falls back to its durable entries. Fault hooks fail the Nth sync or
//! append, cut the power after N mutating operations, or flip a byte of a stored file.
//!
//! Directories themselves are durable as soon as they are created (the engine never needs
//! more); only the entries inside them follow the sync rules.

use crate::vfs::{RandomAccessFile, Vfs, WritableFile};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The kinds of file-system operations that faults can target and that are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SimOp {
    /// `WritableFile::append`.
    Append,
    /// `WritableFile::sync`.
    Sync,
    /// `Vfs::create`.
    Create,
    /// `Vfs::rename`.
    Rename,
    /// `Vfs::remove`.
    Remove,
    /// `Vfs::hard_link`.
    HardLink,
    /// `Vfs::sync_dir`.
    SyncDir,
    /// `Vfs::create_dir_all`.
    CreateDir,
}

#[derive(Clone, Default)]
struct Inode {
    /// What a reader sees now.
    data: Vec<u8>,
    /// What survives a power loss.
    durable: Vec<u8>,
    /// `data` is no longer an extension of `durable` (the file was truncated by `create`).
    truncated: bool,
    /// Open handles, so unlinked-but-open files stay readable.
    handles: usize,
    /// Bytes from offset 0 whose space is reserved (`Allocator::allocate`).
    reserved: u64,
}

impl Inode {
    /// Space the file takes against [`SimFs::set_capacity`].
    fn footprint(&self) -> u64 {
        (self.data.len() as u64).max(self.reserved)
    }
}

#[derive(Clone)]
struct Fault {
    op: SimOp,
    /// Matching operations still to let through before the failing one.
    skip: u64,
    path_contains: Option<String>,
}

#[derive(Clone, Default)]
struct Inner {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    dirs: BTreeSet<PathBuf>,
    /// File path → inode, as the running process sees it.
    live: BTreeMap<PathBuf, u64>,
    /// File path → inode, as it would be found after a power loss.
    durable: BTreeMap<PathBuf, u64>,
    /// Bumped by every crash; handles from an older epoch belong to a dead process.
    epoch: u64,
    powered_off: bool,
    /// Mutating operations still allowed before the power goes out.
    power_budget: Option<u64>,
    faults: Vec<Fault>,
    counts: BTreeMap<SimOp, u64>,
    crashes: u64,
    /// The operation that found the power gone when a `power_cut_after` budget ran out.
    cut_at: Option<(SimOp, PathBuf)>,
    /// Disk size: appends beyond it write what fits and fail with "no space".
    capacity: Option<u64>,
}

/// A simulated file system for crash and fault-injection tests (cheap to clone; clones share state).
#[derive(Clone, Default)]
pub struct SimFs {
    inner: Arc<Mutex<Inner>>,
    /// Set on a per-process handle (see [`SimFs::process`]): the epoch it belongs to.
    pinned: Option<u64>,
}

fn norm(p: &Path) -> PathBuf {
    p.components().collect()
}

fn parent_of(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("simfs: {} not found", p.display()),
    )
}

fn dead() -> io::Error {
    io::Error::other("simfs: power lost (this process is dead)")
}

/// splitmix64: a tiny deterministic generator so crashes replay from their seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

impl Inner {
    fn dir_exists(&self, dir: &Path) -> bool {
        dir.as_os_str().is_empty() || dir == Path::new("/") || self.dirs.contains(dir)
    }

    /// Checks that the caller's process is alive, counts the operation and applies faults.
    fn begin(&mut self, op: SimOp, epoch: Option<u64>, path: &Path) -> io::Result<()> {
        if self.powered_off || epoch.is_some_and(|e| e != self.epoch) {
            return Err(dead());
        }
        if let Some(budget) = self.power_budget.as_mut() {
            if *budget == 0 {
                self.powered_off = true;
                self.cut_at = Some((op, path.to_path_buf()));
                return Err(dead());
            }
            *budget -= 1;
        }
        *self.counts.entry(op).or_default() += 1;
        let path_str = path.to_string_lossy();
        let hit = self.faults.iter().position(|f| {
            f.op == op
                && f.path_contains
                    .as_deref()
                    .is_none_or(|s| path_str.contains(s))
        });
        if let Some(i) = hit {
            if self.faults[i].skip == 0 {
                self.faults.remove(i);
                return Err(io::Error::other(format!(
                    "simfs: injected {op:?} failure on {}",
                    path.display()
                )));
            }
            self.faults[i].skip -= 1;
        }
        Ok(())
    }

    fn check_alive(&self, epoch: u64) -> io::Result<()> {
        if self.powered_off || epoch != self.epoch {
            Err(dead())
        } else {
            Ok(())
        }
    }

    /// Drops inodes no name and no handle refers to any more.
    fn collect(&mut self, ino: u64) {
        let named =
            self.live.values().any(|&i| i == ino) || self.durable.values().any(|&i| i == ino);
        if !named && self.inodes.get(&ino).is_some_and(|n| n.handles == 0) {
            self.inodes.remove(&ino);
        }
    }

    /// Bytes that can still be taken before the disk is full (`u64::MAX` if unlimited).
    fn free(&self) -> u64 {
        match self.capacity {
            None => u64::MAX,
            Some(cap) => cap.saturating_sub(self.inodes.values().map(Inode::footprint).sum()),
        }
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        self.live.get(path).copied().ok_or_else(|| not_found(path))
    }
}

impl SimFs {
    /// An empty file system (only the root directory exists).
    pub fn new() -> Self {
        Self::default()
    }

    /// An independent copy of the whole file system as it is now (files, durability state,
    /// power state), e.g. to damage one copy per test case. Handles opened before stay with
    /// the original.
    pub fn fork(&self) -> SimFs {
        let mut copy = self.inner.lock().clone();
        for node in copy.inodes.values_mut() {
            node.handles = 0;
        }
        // Handles of the original must not be mistaken for live ones in the copy.
        copy.epoch += 1;
        SimFs {
            inner: Arc::new(Mutex::new(copy)),
            pinned: None,
        }
    }

    /// A handle for one run of the engine: once [`SimFs::crash`] has run, every operation
    /// through it (and every file it opened) fails, so threads of the dead process that are
    /// still running cannot touch the rebooted file system.
    pub fn process(&self) -> SimFs {
        SimFs {
            inner: self.inner.clone(),
            pinned: Some(self.inner.lock().epoch),
        }
    }

    /// Simulates a power loss and reboot: files fall back to their synced bytes (with
    /// probability 0.5 per file a random prefix of the unsynced tail survives), directory
    /// entries not made durable by `sync_dir` are reverted, handles opened before are dead,
    /// and pending faults are cleared. `seed` makes the tearing reproducible.
    pub fn crash(&self, seed: u64) {
        let mut g = self.inner.lock();
        let mut rng = Rng(seed);
        g.live = g.durable.clone();
        let keep: BTreeSet<u64> = g.durable.values().copied().collect();
        g.inodes.retain(|ino, _| keep.contains(ino));
        // Visit inodes in a stable order so the seed alone decides the outcome.
        let mut inos: Vec<u64> = g.inodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let Some(node) = g.inodes.get_mut(&ino) else {
                continue;
            };
            let mut survived = std::mem::take(&mut node.durable);
            if !node.truncated && node.data.len() > survived.len() && rng.below(2) == 1 {
                // Half of these torn writes keep the whole tail (the data reached the disk,
                // the fsync never returned), half a random prefix of it.
                let tail = &node.data[survived.len()..];
                let keep = if rng.below(2) == 0 {
                    tail.len()
                } else {
                    rng.below(tail.len() as u64 + 1) as usize
                };
                survived.extend_from_slice(&tail[..keep]);
            }
            node.data = survived.clone();
            node.durable = survived;
            node.truncated = false;
            node.handles = 0;
        }
        g.epoch += 1;
        g.powered_off = false;
        g.power_budget = None;
        g.cut_at = None;
        g.faults.clear();
        g.crashes += 1;
    }

    /// Limits the disk to `bytes` (every file's length or reserved space counts; `None`:
    /// unlimited). An append that does not fit writes what does and fails with
    /// `ErrorKind::StorageFull`, as write(2) on a full disk does; a reservation that does
    /// not fit fails whole; creating a file fails once not a byte is free.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.inner.lock().capacity = bytes;
    }

    /// Bytes taken by files (their length or reserved space, whichever is larger).
    pub fn used_bytes(&self) -> u64 {
        self.inner
            .lock()
            .inodes
            .values()
            .map(Inode::footprint)
            .sum()
    }

    /// Bytes still free under [`SimFs::set_capacity`] (`u64::MAX` if unlimited).
    pub fn free_bytes(&self) -> u64 {
        self.inner.lock().free()
    }

    /// Cuts the power now: every later operation fails until [`SimFs::crash`] reboots.
    pub fn power_cut(&self) {
        self.inner.lock().powered_off = true;
    }

    /// Lets `n` more mutating operations (appends, syncs, creates, renames, removes, links,
    /// directory syncs and creations) succeed, then cuts the power.
    pub fn power_cut_after(&self, n: u64) {
        self.inner.lock().power_budget = Some(n);
    }

    /// The operation (and its path) that the last `power_cut_after` budget stopped, if any;
    /// lets crash tests report where their crashes landed.
    pub fn power_cut_point(&self) -> Option<(SimOp, PathBuf)> {
        self.inner.lock().cut_at.clone()
    }

    /// True once the power went out (and before the next crash/reboot).
    pub fn is_powered_off(&self) -> bool {
        self.inner.lock().powered_off
    }

    /// Makes the `n`-th (1-based) future operation of kind `op` fail with an I/O error, once.
    pub fn fail_nth(&self, op: SimOp, n: u64) {
        self.push_fault(op, n, None);
    }

    /// Like [`SimFs::fail_nth`], counting only operations on paths containing `path_contains`.
    pub fn fail_nth_matching(&self, op: SimOp, n: u64, path_contains: &str) {
        self.push_fault(op, n, Some(path_contains.to_string()));
    }

    fn push_fault(&self, op: SimOp, n: u64, path_contains: Option<String>) {
        self.inner.lock().faults.push(Fault {
            op,
            skip: n.saturating_sub(1),
            path_contains,
        });
    }

    /// How many operations of kind `op` were attempted while the power was on.
    pub fn op_count(&self, op: SimOp) -> u64 {
        self.inner.lock().counts.get(&op).copied().unwrap_or(0)
    }

    /// All mutating operations attempted while the power was on.
    pub fn mutating_ops(&self) -> u64 {
        self.inner.lock().counts.values().sum()
    }

    /// Number of simulated crashes so far.
    pub fn crashes(&self) -> u64 {
        self.inner.lock().crashes
    }

    /// Inverts every bit of the byte at `offset` of `path`, in the live and the durable copy.
    pub fn flip_byte(&self, path: &Path, offset: u64) -> io::Result<()> {
        let path = norm(path);
        let mut g = self.inner.lock();
        let ino = g.inode_of(&path)?;
        let node = g.inodes.get_mut(&ino).ok_or_else(|| not_found(&path))?;
        let off = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let Some(b) = node.data.get_mut(off) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("simfs: offset {offset} beyond end of {}", path.display()),
            ));
        };
        *b = !*b;
        if let Some(d) = node.durable.get_mut(off) {
            *d = !*d;
        }
        Ok(())
    }

    /// Cuts `path` to `len` bytes (live and durable), e.g. to tear its last record by hand.
    pub fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let path = norm(path);
        let mut g = self.inner.lock();
        let ino = g.inode_of(&path)?;
        let node = g.inodes.get_mut(&ino).ok_or_else(|| not_found(&path))?;
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        node.data.truncate(len);
        node.durable.truncate(len);
        Ok(())
    }

    /// The current bytes of `path`, ignoring power state and faults.
    pub fn contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        let path = norm(path);
        let g = self.inner.lock();
        let ino = g.inode_of(&path)?;
        Ok(g.inodes
            .get(&ino)
            .map(|n| n.data.clone())
            .unwrap_or_default())
    }

    /// Bytes of `path` that would survive a crash (ignoring torn tails).
    pub fn durable_len(&self, path: &Path) -> io::Result<u64> {
        let path = norm(path);
        let g = self.inner.lock();
        let ino = g.inode_of(&path)?;
        Ok(g.inodes.get(&ino).map_or(0, |n| n.durable.len() as u64))
    }

    /// True when `path`'s directory entry would survive a crash.
    pub fn is_entry_durable(&self, path: &Path) -> bool {
        self.inner.lock().durable.contains_key(&norm(path))
    }

    /// Every file currently visible, with its length, sorted by path.
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        let g = self.inner.lock();
        g.live
            .iter()
            .map(|(p, ino)| {
                (
                    p.clone(),
                    g.inodes.get(ino).map_or(0, |n| n.data.len() as u64),
                )
            })
            .collect()
    }

    /// Total bytes of every visible file under `dir` (recursively).
    pub fn bytes_under(&self, dir: &Path) -> u64 {
        let dir = norm(dir);
        self.files()
            .into_iter()
            .filter(|(p, _)| p.starts_with(&dir))
            .map(|(_, len)| len)
            .sum()
    }
}

struct SimWritable {
    fs: Arc<Mutex<Inner>>,
    path: PathBuf,
    ino: u64,
    epoch: u64,
    len: u64,
}

impl WritableFile for SimWritable {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut g = self.fs.lock();
        g.begin(SimOp::Append, Some(self.epoch), &self.path)?;
        let free = g.free();
        let node = g
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| not_found(&self.path))?;
        // Room: the reserved space past the end, then the free space.
        let room = node
            .reserved
            .saturating_sub(node.data.len() as u64)
            .saturating_add(free);
        let fits = usize::try_from(room).map_or(data.len(), |r| r.min(data.len()));
        node.data.extend_from_slice(&data[..fits]);
        self.len += fits as u64;
        if fits < data.len() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("simfs: no space left for {}", self.path.display()),
            ));
        }
        Ok(())
    }

    fn allocator(&self) -> Option<Box<dyn crate::vfs::Allocator>> {
        Some(Box::new(SimAllocator {
            fs: self.fs.clone(),
            path: self.path.clone(),
            ino: self.ino,
            epoch: self.epoch,
        }))
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut g = self.fs.lock();
        g.begin(SimOp::Sync, Some(self.epoch), &self.path)?;
        let node = g
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| not_found(&self.path))?;
        if node.truncated || node.durable.len() > node.data.len() {
            node.durable = node.data.clone();
        } else {
            let from = node.durable.len();
            let tail = node.data[from..].to_vec();
            node.durable.extend_from_slice(&tail);
        }
        node.truncated = false;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

struct SimAllocator {
    fs: Arc<Mutex<Inner>>,
    path: PathBuf,
    ino: u64,
    epoch: u64,
}

impl crate::vfs::Allocator for SimAllocator {
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut g = self.fs.lock();
        g.check_alive(self.epoch)?;
        let free = g.free();
        let node = g
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| not_found(&self.path))?;
        let want = offset.saturating_add(len).max(node.reserved);
        if want.saturating_sub(node.footprint()) > free {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("simfs: no space to reserve for {}", self.path.display()),
            ));
        }
        node.reserved = want;
        Ok(())
    }
}

impl Drop for SimWritable {
    fn drop(&mut self) {
        release(&self.fs, self.ino, self.epoch);
    }
}

fn release(fs: &Mutex<Inner>, ino: u64, epoch: u64) {
    let mut g = fs.lock();
    if g.epoch != epoch {
        return;
    }
    if let Some(node) = g.inodes.get_mut(&ino) {
        node.handles = node.handles.saturating_sub(1);
    }
    g.collect(ino);
}

struct SimReadable {
    fs: Arc<Mutex<Inner>>,
    path: PathBuf,
    ino: u64,
    epoch: u64,
    len: u64,
}

impl RandomAccessFile for SimReadable {
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let g = self.fs.lock();
        g.check_alive(self.epoch)?;
        let node = g
            .inodes
            .get(&self.ino)
            .ok_or_else(|| not_found(&self.path))?;
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start.checked_add(len).ok_or(io::ErrorKind::UnexpectedEof)?;
        node.data
            .get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("simfs: read past end of {}", self.path.display()),
                )
            })
    }

    fn len(&self) -> u64 {
        self.len
    }
}

impl Drop for SimReadable {
    fn drop(&mut self) {
        release(&self.fs, self.ino, self.epoch);
    }
}

impl Vfs for SimFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let path = norm(path);
        let mut g = self.inner.lock();
        g.begin(SimOp::Create, self.pinned, &path)?;
        let epoch = g.epoch;
        if !g.dir_exists(&parent_of(&path)) {
            return Err(not_found(&parent_of(&path)));
        }
        if g.dirs.contains(&path) {
            return Err(io::Error::other(format!(
                "simfs: {} is a directory",
                path.display()
            )));
        }
        if g.free() == 0 && !g.live.contains_key(&path) {
            // Not a byte left: no room for a new directory entry either.
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("simfs: no space to create {}", path.display()),
            ));
        }
        let ino = match g.live.get(&path) {
            // Like O_TRUNC: the same inode (and its hard links) is emptied.
            Some(&ino) => {
                let node = g.inodes.entry(ino).or_default();
                node.data.clear();
                node.reserved = 0;
                node.truncated = true;
                ino
            }
            None => {
                g.next_ino += 1;
                let ino = g.next_ino;
                g.inodes.insert(ino, Inode::default());
                g.live.insert(path.clone(), ino);
                ino
            }
        };
        if let Some(node) = g.inodes.get_mut(&ino) {
            node.handles += 1;
        }
        Ok(Box::new(SimWritable {
            fs: self.inner.clone(),
            path,
            ino,
            epoch,
            len: 0,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        let path = norm(path);
        let mut g = self.inner.lock();
        let epoch = self.pinned.unwrap_or(g.epoch);
        g.check_alive(epoch)?;
        let ino = g.inode_of(&path)?;
        let node = g.inodes.get_mut(&ino).ok_or_else(|| not_found(&path))?;
        node.handles += 1;
        let len = node.data.len() as u64;
        Ok(Arc::new(SimReadable {
            fs: self.inner.clone(),
            path,
            ino,
            epoch,
            len,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (norm(from), norm(to));
        let mut g = self.inner.lock();
        g.begin(SimOp::Rename, self.pinned, &to)?;
        let ino = g.inode_of(&from)?;
        if !g.dir_exists(&parent_of(&to)) {
            return Err(not_found(&parent_of(&to)));
        }
        g.live.remove(&from);
        if let Some(old) = g.live.insert(to, ino) {
            g.collect(old);
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let path = norm(path);
        let mut g = self.inner.lock();
        g.begin(SimOp::Remove, self.pinned, &path)?;
        let ino = g.live.remove(&path).ok_or_else(|| not_found(&path))?;
        g.collect(ino);
        Ok(())
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (norm(from), norm(to));
        let mut g = self.inner.lock();
        g.begin(SimOp::HardLink, self.pinned, &to)?;
        let ino = g.inode_of(&from)?;
        if !g.dir_exists(&parent_of(&to)) {
            return Err(not_found(&parent_of(&to)));
        }
        if g.live.contains_key(&to) || g.dirs.contains(&to) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("simfs: {} exists", to.display()),
            ));
        }
        g.live.insert(to, ino);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let dir = norm(dir);
        let g = self.inner.lock();
        let epoch = self.pinned.unwrap_or(g.epoch);
        g.check_alive(epoch)?;
        if !g.dir_exists(&dir) {
            return Err(not_found(&dir));
        }
        let files = g.live.keys();
        let subdirs = g.dirs.iter();
        Ok(files
            .chain(subdirs)
            .filter(|p| p.parent() == Some(dir.as_path()))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let dir = norm(dir);
        let mut g = self.inner.lock();
        g.begin(SimOp::CreateDir, self.pinned, &dir)?;
        if g.live.contains_key(&dir) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("simfs: {} is a file", dir.display()),
            ));
        }
        for anc in dir.ancestors() {
            if !anc.as_os_str().is_empty() && anc != Path::new("/") {
                g.dirs.insert(anc.to_path_buf());
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = norm(dir);
        let mut g = self.inner.lock();
        g.begin(SimOp::SyncDir, self.pinned, &dir)?;
        if !g.dir_exists(&dir) {
            return Err(not_found(&dir));
        }
        let in_dir = |p: &PathBuf| parent_of(p) == dir;
        let dropped: Vec<u64> = g
            .durable
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(_, &i)| i)
            .collect();
        g.durable.retain(|p, _| !in_dir(p));
        let now: Vec<(PathBuf, u64)> = g
            .live
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        g.durable.extend(now);
        for ino in dropped {
            g.collect(ino);
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let path = norm(path);
        let g = self.inner.lock();
        g.live.contains_key(&path) || g.dir_exists(&path)
    }
}
