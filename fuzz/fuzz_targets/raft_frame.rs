//! The cluster-bus frame reader and decoder on an arbitrary byte stream (see
//! `pinnacle_raft::transport::frame::fuzzing::frame_stream`).
#![no_main]

use pinnacle_fuzz::alloc_cap::{check_bounded, CapAlloc};
use pinnacle_raft::transport::frame::fuzzing::{alloc_bound, frame_stream};

#[global_allocator]
static ALLOC: CapAlloc = CapAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let bound = alloc_bound(data.len());
    check_bounded(data, bound, bound, frame_stream);
});
