//! In-process command tests: run argv through the real pipeline and look at the reply bytes.

use super::state::NodeIds;
use super::{call, Client, Ctx, Server};
use crate::config::{Config, Settings};
use bytes::Bytes;
use pinnacle_resp::Protocol;
use std::sync::Arc;

/// A server with an in-memory keyspace and one connected client.
pub struct TestNode {
    /// The server.
    pub server: Arc<Server>,
    /// The client commands run as.
    pub client: Client,
}

impl Default for TestNode {
    fn default() -> Self {
        TestNode::new()
    }
}

impl TestNode {
    /// A node with default configuration.
    pub fn new() -> TestNode {
        TestNode::with_config(&[])
    }

    /// A node with `name value` settings applied (e.g. `requirepass`).
    pub fn with_config(values: &[(&str, &str)]) -> TestNode {
        let settings = Settings {
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            config_file: None,
        };
        let config = Config::new(&settings).expect("test config is valid");
        let server = Arc::new(Server::new(
            crate::storage::Db::in_memory(),
            config,
            NodeIds {
                node_id: "0123456789abcdef0123456789abcdef01234567".into(),
                shard_id: "89abcdef0123456789abcdef0123456789abcdef".into(),
            },
        ));
        let client = server.register_client("127.0.0.1:5000".into(), "127.0.0.1:6379".into());
        TestNode { server, client }
    }

    /// A second client on the same server.
    pub fn other_client(&self) -> Client {
        self.server
            .register_client("127.0.0.1:5001".into(), "127.0.0.1:6379".into())
    }

    /// Runs `args` and returns the reply bytes in the client's protocol (as a lossy string),
    /// or "" if the reply is suppressed.
    pub fn run(&mut self, args: &[&str]) -> String {
        let (bytes, _) = self.run_raw(args);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Runs `args` as `client`.
    pub fn run_as(&self, client: &mut Client, args: &[&str]) -> String {
        let argv: Vec<Bytes> = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let mut ctx = Ctx {
            server: &self.server,
            client,
        };
        let reply = call(&mut ctx, &argv);
        let mut out = bytes::BytesMut::new();
        if ctx.client.take_reply_allowed() {
            reply.encode(ctx.client.protocol, &mut out);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Runs `args`; returns the reply bytes and whether the connection would close.
    pub fn run_raw(&mut self, args: &[&str]) -> (Vec<u8>, bool) {
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.run_raw_bytes(&argv)
    }

    /// Runs binary `args`; returns the reply bytes and whether the connection would close.
    pub fn run_raw_bytes(&mut self, args: &[&[u8]]) -> (Vec<u8>, bool) {
        let argv: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        let mut ctx = Ctx {
            server: &self.server,
            client: &mut self.client,
        };
        let reply = call(&mut ctx, &argv);
        let mut out = bytes::BytesMut::new();
        if ctx.client.close_silently {
            return (vec![], true);
        }
        if ctx.client.take_reply_allowed() {
            reply.encode(ctx.client.protocol, &mut out);
        }
        (out.to_vec(), ctx.client.close_after_reply)
    }

    /// Switches the client to RESP3 without going through HELLO.
    pub fn resp3(&mut self) {
        self.client.protocol = Protocol::Resp3;
    }
}
