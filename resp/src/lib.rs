//! `pinnacle-resp`: the Redis protocol for Pinnacle.
//!
//! - Requests: [`RequestDecoder`] turns a connection's read buffer into commands (multibulk and
//!   inline, pipelined, incremental, with Redis 7.0.15's limits and exact
//!   [`ProtocolError`] texts); [`is_cross_protocol_attack`] is the `POST`/`Host:` guard.
//! - Replies: handlers build a [`Reply`]; [`Reply::encode`] writes it as RESP2 or RESP3 by the
//!   connection's [`Protocol`]. Doubles use [`format_double`] (Redis 7.0's `%.17g`).
//! - Feature `client`: [`client`] frames and decodes replies for black-box tests.

mod double;
mod reply;
pub mod request;

#[cfg(feature = "client")]
pub mod client;

#[doc(hidden)]
pub mod fuzzing;

pub use double::format_double;
pub use reply::{BulkArray, BulkArrayBuilder, Protocol, Reply};
pub use request::{is_cross_protocol_attack, ProtocolError, RequestDecoder};
