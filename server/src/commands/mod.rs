//! Command implementations, one module per family. Each module exports
//! `pub const HANDLERS: &[(&str, Handler)]` keyed by the lower-case command name
//! (`"object|encoding"` for subcommands); the command table is built from these.

pub mod keys;
pub mod strings;
