//! Command implementations, one module per family. Each module exports
//! `pub const HANDLERS: &[(&str, Handler)]` keyed by the lower-case command name
//! (`"object|encoding"` for subcommands); the command table is built from these.

pub mod acl;
pub mod blocking;
pub mod client;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod hashes;
pub mod info;
pub mod introspection;
pub mod keys;
pub mod lists;
pub mod pinn;
pub mod pubsub;
pub mod server;
pub mod sets;
pub mod streams;
pub mod strings;
pub mod transactions;
pub mod zset_algebra;
pub mod zsets;

use crate::command::Handler;

/// Every family's handlers; the command table registers exactly these.
pub const ALL: &[&[(&str, Handler)]] = &[
    connection::HANDLERS,
    acl::HANDLERS,
    client::HANDLERS,
    cluster::HANDLERS,
    config::HANDLERS,
    info::HANDLERS,
    introspection::HANDLERS,
    server::HANDLERS,
    strings::HANDLERS,
    keys::HANDLERS,
    hashes::HANDLERS,
    sets::HANDLERS,
    lists::HANDLERS,
    blocking::HANDLERS,
    transactions::HANDLERS,
    zsets::HANDLERS,
    zset_algebra::HANDLERS,
    streams::HANDLERS,
    pubsub::HANDLERS,
    pinn::HANDLERS,
];
