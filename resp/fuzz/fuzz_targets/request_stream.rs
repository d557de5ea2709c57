//! The request decoder on arbitrary bytes: no panic, split-anywhere equivalence, bounded
//! buffer growth (see `pinnacle_resp::fuzzing::request_stream`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pinnacle_resp::fuzzing::request_stream(data);
});
