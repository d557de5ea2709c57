//! Replays the committed corpus (seeds and crash reproducers) of the `lsm_recovery` fuzz target
//! through the same property and allocation bounds: opening the engine on arbitrary WAL /
//! SSTable / manifest bytes returns `Ok` or an error, never panics or allocates by a declared
//! length.

#[path = "../../fuzz/src/alloc_cap.rs"]
mod alloc_cap;
#[path = "../../fuzz/src/lsm_recovery.rs"]
mod lsm_recovery;

use alloc_cap::{check_bounded, corpus_dir, replay, CapAlloc};
use lsm_recovery::{alloc_bound, peak_bound, recover, seed_dirs};

#[global_allocator]
static ALLOC: CapAlloc = CapAlloc;

fn check(data: &[u8]) {
    check_bounded(
        data,
        alloc_bound(data.len()),
        peak_bound(data.len()),
        recover,
    );
}

#[test]
fn lsm_recovery_corpus_holds() {
    let n = replay(env!("CARGO_MANIFEST_DIR"), "lsm_recovery", check);
    assert!(n >= 4, "only {n} corpus files");
}

/// Real engine directories recover within the bounds. `PINNACLE_FUZZ_WRITE_SEEDS=1` writes
/// them into the corpus (after an on-disk format change).
#[test]
fn seed_directories_recover() {
    let dir = corpus_dir(env!("CARGO_MANIFEST_DIR"), "lsm_recovery");
    for (i, seed) in seed_dirs().iter().enumerate() {
        if std::env::var_os("PINNACLE_FUZZ_WRITE_SEEDS").is_some() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).expect("write seed");
        }
        check(seed);
    }
}
