//! Replays the committed corpus (seeds and crash reproducers) of the `command` fuzz target:
//! each file's requests run through the command pipeline of one in-process node; no panic, and
//! every reply encodes to well-formed RESP2 and RESP3.

#[path = "../../fuzz/src/alloc_cap.rs"]
mod alloc_cap;
#[path = "../../fuzz/src/command.rs"]
mod command;

use alloc_cap::{measure, replay, CapAlloc};

#[global_allocator]
static ALLOC: CapAlloc = CapAlloc;

#[test]
fn command_corpus_holds() {
    let n = replay(env!("CARGO_MANIFEST_DIR"), "command", |data| {
        measure(|| command::dispatch(data));
    });
    let _ = std::fs::remove_dir_all(command::data_dir());
    assert!(n >= 10, "only {n} corpus files");
}

#[test]
fn frame_checker_rejects_broken_replies() {
    assert_eq!(command::frame_len(b"*2\r\n$1\r\na\r\n:1\r\n"), Some(15));
    assert_eq!(command::frame_len(b"%1\r\n+k\r\n_\r\n"), Some(11));
    assert_eq!(command::frame_len(b"*2\r\n$1\r\na\r\n"), None);
    assert_eq!(command::frame_len(b"$3\r\nab\r\n"), None);
    assert_eq!(command::frame_len(b"+a\nb\r\n"), None);
}
