//! `pinnacle-resp`: RESP2/RESP3 framing for Pinnacle.

mod reply;

pub use reply::{format_double, Protocol, Reply};
