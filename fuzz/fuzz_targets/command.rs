//! Command parsing and dispatch on one in-process node (see
//! `pinnacle_fuzz::command::dispatch`).
#![no_main]

use pinnacle_fuzz::alloc_cap::{measure, CapAlloc};

#[global_allocator]
static ALLOC: CapAlloc = CapAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Only the allocator's refusal of single allocations above 1 GiB applies here: commands
    // may legitimately allocate what their arguments ask for (within Redis's limits).
    measure(|| pinnacle_fuzz::command::dispatch(data));
});
