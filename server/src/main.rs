//! `pinnacle`: a Redis-protocol-compatible server.

mod command;
mod commands;
mod storage;

fn main() {}
