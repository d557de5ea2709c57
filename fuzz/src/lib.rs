//! Shared pieces of the fuzz targets: the counting allocator that checks memory is bounded by
//! the bytes received. The properties themselves live beside the code they test
//! (`pinnacle_resp::fuzzing`, `pinnacle_lsm::fuzzing`, `pinnacle_raft::transport::frame::fuzzing`,
//! `pinnacle_server::fuzzing`) so each crate's `cargo test` replays the committed corpus.

pub mod alloc_cap;
