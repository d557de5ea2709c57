//! Black-box test harness for pinnacle: start real `pinnacle` and reference
//! `redis-server` processes on free ports, talk to them over raw sockets, and
//! compare reply bytes. The tests themselves live in `tests/`, one file per family.

pub mod cluster;
pub mod diffgen;
pub mod frame;
pub mod http;
pub mod nemesis;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod rng;
pub mod tmpfs;
pub mod tools;
pub mod transcript;

pub use frame::{encode_command, show, Value};
pub use process::{Builder, Kind, Server};
pub use raw::{Peek, RawConn};

/// Harness errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Socket or file I/O failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Nothing (or not enough) arrived in time.
    #[error("timeout: {0}")]
    Timeout(String),
    /// The server closed the connection before a complete reply.
    #[error("closed: {0}")]
    Closed(String),
    /// The bytes were not valid RESP.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A server process could not be started.
    #[error("start: {0}")]
    Start(String),
    /// An external tool is not installed.
    #[error("missing tool: {0}")]
    ToolMissing(String),
    /// A cluster broke a safety property (e.g. two leaders in one term).
    #[error("safety: {0}")]
    Safety(String),
}
