//! The fuzz targets' shared pieces: the counting allocator that checks memory is bounded by the
//! bytes received, and the properties of the targets whose code under test is reachable through
//! public APIs (`lsm_recovery`, `command`). The RESP and Raft-frame properties live beside their
//! code (`pinnacle_resp::fuzzing`, `pinnacle_raft::transport::frame::fuzzing`). Every crate's
//! `tests/fuzz_corpus.rs` replays the committed corpus through the same functions.

pub mod alloc_cap;
#[cfg(feature = "command")]
pub mod command;
pub mod lsm_recovery;
