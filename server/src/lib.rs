//! `pinnacle-server`: the Pinnacle node — configuration, the network front end, the command
//! table and request pipeline, every command, and the keyspace on the LSM. The `pinnacle`
//! binary (`main.rs`) wires these together.
//!
//! A request's path:
//! 1. [`net`]: one tokio task per connection reads into a buffer, decodes every complete
//!    request with `pinnacle_resp::RequestDecoder` (pipelining), runs each through
//!    [`command::call`], encodes the replies in the connection's protocol into one buffer and
//!    writes it once per batch.
//! 2. [`command`]: the pipeline — lookup in the static table (generated from redis-server
//!    7.0.15's `COMMAND INFO`/`COMMAND DOCS` by `scripts/gen-command-table.py`), arity, auth,
//!    routing by hash slot ([`command::route`]), then the handler, with INFO commandstats,
//!    the slow log and MONITOR around it.
//! 3. [`commands`]: one module per command family, each exporting `HANDLERS`; only commands
//!    with a handler are registered.
//! 4. [`storage`]: the keyspace on the LSM (reads, and logical write commands through
//!    `Db::apply`).

pub mod acl;
pub mod command;
pub mod commands;
pub mod config;
pub mod http;
pub mod metrics;
pub mod net;
pub mod pinn;
pub mod pubsub;
pub mod replication;
pub mod storage;
