//! The request decoder on a whole stream at once (see `pinnacle_resp::fuzzing::request_oneshot`).
#![no_main]

use pinnacle_fuzz::alloc_cap::{check_bounded, CapAlloc};
use pinnacle_resp::fuzzing::{alloc_bound, peak_bound, request_oneshot};

#[global_allocator]
static ALLOC: CapAlloc = CapAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check_bounded(
        data,
        alloc_bound(data.len()),
        peak_bound(data.len()),
        request_oneshot,
    );
});
