//! A counting global allocator for the fuzz properties: "memory follows the bytes received,
//! not the lengths they declare". While [`measure`] runs a closure it records, for its own
//! thread, the largest single allocation and the peak growth of live heap bytes, and refuses
//! (null, so the process aborts with "memory allocation of N bytes failed") any single request
//! above [`REFUSE`] so a declared 4 GiB length cannot take the machine down before the check.
//!
//! Used by the targets in `fuzz/` and, through `#[path]`, by the corpus-replay tests of each
//! crate (`*/tests/fuzz_corpus.rs`), so both check the same bounds.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Single allocations above this are refused while measuring.
pub const REFUSE: usize = 1 << 30;

/// The allocator; install it with `#[global_allocator]`.
pub struct CapAlloc;

// Counted per thread: only the measuring thread's allocations count, so tests replaying
// corpora in parallel (or the harness reading files meanwhile) don't show up in each other's
// figures. Const-initialised cells without destructors are safe to touch from the allocator.
thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}
// One measurement at a time (keeps the libFuzzer and test set-ups alike).
static MEASURING: Mutex<()> = Mutex::new(());

fn armed() -> bool {
    ARMED.try_with(Cell::get).unwrap_or(false)
}

fn note(size: usize) -> bool {
    if !armed() {
        return true;
    }
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    size <= REFUSE
}

fn grew(by: isize) {
    if !armed() {
        return;
    }
    let _ = LIVE.try_with(|live| {
        let now = live.get() + by;
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every call forwards to `System` with the caller's layout; the counters only observe.
unsafe impl GlobalAlloc for CapAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        grew(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && !note(new_size) {
            return std::ptr::null_mut();
        }
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            grew(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// What [`measure`] saw.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Largest single allocation or reallocation requested.
    pub largest: usize,
    /// Peak of live heap bytes above the level at the start.
    pub peak_growth: usize,
}

/// Runs `f`, recording the allocations this thread makes meanwhile.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Usage) {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    LARGEST.with(|l| l.set(0));
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            let _ = ARMED.try_with(|a| a.set(false));
        }
    }
    ARMED.with(|a| a.set(true));
    let disarm = Disarm;
    let r = f();
    drop(disarm);
    let usage = Usage {
        largest: LARGEST.with(Cell::get),
        peak_growth: PEAK.with(Cell::get).max(0) as usize,
    };
    (r, usage)
}

/// Runs `f` on `data` and panics if a single allocation exceeded `largest` or live memory grew
/// by more than `peak` bytes.
pub fn check_bounded(data: &[u8], largest: usize, peak: usize, f: impl FnOnce(&[u8])) {
    let ((), usage) = measure(|| f(data));
    assert!(
        usage.largest <= largest,
        "{} input bytes made a {}-byte allocation (bound {largest})",
        data.len(),
        usage.largest
    );
    assert!(
        usage.peak_growth <= peak,
        "{} input bytes grew the heap by {} bytes (bound {peak})",
        data.len(),
        usage.peak_growth
    );
}

/// The committed corpus directory of fuzz target `target` (`fuzz/corpus/<target>`), from a
/// crate directory one level below the repository root.
pub fn corpus_dir(crate_dir: &str, target: &str) -> PathBuf {
    Path::new(crate_dir)
        .join("..")
        .join("fuzz")
        .join("corpus")
        .join(target)
}

/// Runs `f` on every file of `target`'s committed corpus (seeds, minimised finds and crash
/// reproducers alike); panics naming the file that failed. Returns the number of files.
pub fn replay(crate_dir: &str, target: &str, mut f: impl FnMut(&[u8])) -> usize {
    let dir = corpus_dir(crate_dir, target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&data)));
        if let Err(e) = outcome {
            eprintln!("corpus file {} fails", path.display());
            std::panic::resume_unwind(e);
        }
    }
    files.len()
}
