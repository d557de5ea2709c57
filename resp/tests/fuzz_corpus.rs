//! Replays the committed corpora (seeds and crash reproducers) of the `resp_oneshot` and
//! `resp_split` fuzz targets through the same properties and allocation bounds.

#[path = "../../fuzz/src/alloc_cap.rs"]
mod alloc_cap;

use alloc_cap::{check_bounded, replay, CapAlloc};
use pinnacle_resp::fuzzing::{alloc_bound, peak_bound, request_oneshot, request_split};

#[global_allocator]
static ALLOC: CapAlloc = CapAlloc;

#[test]
fn resp_oneshot_corpus_holds() {
    let n = replay(env!("CARGO_MANIFEST_DIR"), "resp_oneshot", |data| {
        check_bounded(
            data,
            alloc_bound(data.len()),
            peak_bound(data.len()),
            request_oneshot,
        );
    });
    assert!(n >= 10, "only {n} corpus files");
}

#[test]
fn resp_split_corpus_holds() {
    let n = replay(env!("CARGO_MANIFEST_DIR"), "resp_split", |data| {
        check_bounded(
            data,
            alloc_bound(data.len()),
            2 * peak_bound(data.len()),
            request_split,
        );
    });
    assert!(n >= 10, "only {n} corpus files");
}
