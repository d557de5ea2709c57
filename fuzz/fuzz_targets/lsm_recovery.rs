//! The LSM opened on arbitrary WAL / SSTable / manifest files (see
//! `pinnacle_fuzz::lsm_recovery::recover`).
#![no_main]

use pinnacle_fuzz::alloc_cap::{check_bounded, CapAlloc};
use pinnacle_fuzz::lsm_recovery::{alloc_bound, peak_bound, recover};

#[global_allocator]
static ALLOC: CapAlloc = CapAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check_bounded(
        data,
        alloc_bound(data.len()),
        peak_bound(data.len()),
        recover,
    );
});
