//! Replays the committed corpus (seeds and crash reproducers) of the `raft_frame` fuzz target
//! through the same property and allocation bound, and checks the seeds are today's encoding.

#[path = "../../fuzz/src/alloc_cap.rs"]
mod alloc_cap;

use alloc_cap::{check_bounded, corpus_dir, replay, CapAlloc};
use pinnacle_raft::transport::frame::fuzzing::{alloc_bound, frame_stream, seed_frames};

#[global_allocator]
static ALLOC: CapAlloc = CapAlloc;

#[test]
fn raft_frame_corpus_holds() {
    let n = replay(env!("CARGO_MANIFEST_DIR"), "raft_frame", |data| {
        let bound = alloc_bound(data.len());
        check_bounded(data, bound, bound, frame_stream);
    });
    assert!(n >= 10, "only {n} corpus files");
}

/// The seeds are real frames: one file per frame kind, plus all of them as one stream.
/// `PINNACLE_FUZZ_WRITE_SEEDS=1` rewrites them after a wire-format change.
#[test]
fn seed_frames_are_committed() {
    let dir = corpus_dir(env!("CARGO_MANIFEST_DIR"), "raft_frame");
    let seeds = seed_frames();
    let stream: Vec<u8> = seeds.concat();
    let files = seeds
        .iter()
        .enumerate()
        .map(|(i, f)| (format!("seed-{i:02}"), f.clone()))
        .chain([("seed-stream".to_string(), stream)]);
    for (name, bytes) in files {
        let path = dir.join(&name);
        if std::env::var_os("PINNACLE_FUZZ_WRITE_SEEDS").is_some() {
            std::fs::write(&path, &bytes).expect("write seed");
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert_eq!(committed, bytes, "{} is stale", path.display());
        frame_stream(&bytes);
    }
}

/// A header declaring the largest frame, followed by a few bytes, must not reserve it.
#[test]
fn declared_length_is_not_allocated() {
    let mut data = (64u32 << 20).to_be_bytes().to_vec();
    data.extend_from_slice(&[1, 2, 0, 0, 0]);
    check_bounded(&data, 1 << 20, 1 << 20, frame_stream);
}
