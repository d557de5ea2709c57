//! The request decoder on a stream split at arbitrary points must agree with the one-shot
//! decode (see `pinnacle_resp::fuzzing::request_split`).
#![no_main]

use pinnacle_fuzz::alloc_cap::{check_bounded, CapAlloc};
use pinnacle_resp::fuzzing::{alloc_bound, peak_bound, request_split};

#[global_allocator]
static ALLOC: CapAlloc = CapAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Two decodes of the whole stream are alive at once.
    check_bounded(
        data,
        alloc_bound(data.len()),
        2 * peak_bound(data.len()),
        request_split,
    );
});
