//! `pinnacle-server`: the Pinnacle node — configuration, the network front end, the command
//! table and request pipeline, every command, and the keyspace on the LSM. The `pinnacle`
//! binary (`main.rs`) wires these together.

pub mod command;
pub mod commands;
pub mod config;
pub mod net;
pub mod storage;
