//! A single node's write runs (see [`crate::storage::run`]): consecutive plain writes of a
//! pipelined batch are queued and applied as one before anything else of the batch runs.

use crate::command::table::Entry;
use crate::command::{Client, Server};
use crate::storage::run::RunWrite;
use crate::storage::Db;
use bytes::BytesMut;
use pinnacle_resp::{Protocol, Reply};
use std::sync::OnceLock;

/// Commands whose handlers read nothing and build exactly one write (so their queued reply
/// is the command's reply) and whose apply reads only through the `Tx` (metadata and single
/// sub-keys, which see the run's earlier writes): what redis-benchmark's write tests send, and
/// their neighbours. Not ZPOPMIN/ZPOPMAX or SPOP: they scan stored state, which would miss a
/// ZADD/SADD earlier in the same run.
const JOIN: &[&str] = &[
    "set",
    "setnx",
    "getset",
    "append",
    "mset",
    "incr",
    "decr",
    "incrby",
    "decrby",
    "lpush",
    "rpush",
    "lpushx",
    "rpushx",
    "lpop",
    "rpop",
    "lmove",
    "rpoplpush",
    "hset",
    "hmset",
    "hsetnx",
    "hdel",
    "hincrby",
    "sadd",
    "srem",
    "zadd",
    "zincrby",
    "zrem",
];

/// True if the request from `client` whose table entry is `cmd` may join the run. Clients
/// with subscriptions (push frames interleave with replies), in a transaction or not yet
/// authenticated (their output is counted per reply) run every command on its own.
pub(super) fn joins(client: &Client, cmd: Option<&Entry>) -> bool {
    client.authenticated
        && client.pubsub.is_none()
        && client.multi.is_none()
        && cmd.is_some_and(|e| joining().get(e.index).copied().unwrap_or(false))
}

/// [`JOIN`] by table index (comparing each request's name with the list cost ~400
/// instructions for a command that is not on it).
fn joining() -> &'static [bool] {
    static JOINING: OnceLock<Vec<bool>> = OnceLock::new();
    JOINING.get_or_init(|| {
        let entries = &crate::command::table::table().entries;
        entries
            .iter()
            .map(|e| JOIN.contains(&e.spec.name))
            .collect()
    })
}

/// Most commands in one run: their replies reach the output buffer only when the run is
/// applied, so the batch's output-size check (`OUT_FLUSH_AT`) sees them at most this late.
const MAX_RUN: usize = 64;

/// One queued command: its write and how its reply is sent.
struct Queued {
    /// False under `CLIENT REPLY OFF|SKIP`.
    send: bool,
    protocol: Protocol,
    /// The command's stats slot should it fail (its failure is counted when the run's
    /// replies are known).
    stat: Option<usize>,
}

/// The writes queued so far in this batch.
#[derive(Default)]
pub(super) struct Run {
    writes: Vec<RunWrite>,
    cmds: Vec<Queued>,
}

impl Run {
    /// Queues the write(s) of one command (only its last write's reply is its reply); a run
    /// that reached [`MAX_RUN`] commands is applied at once.
    pub(super) fn queue(
        &mut self,
        mut writes: Vec<RunWrite>,
        cmd: Option<&Entry>,
        client: &mut Client,
        server: &Server,
        out: &mut BytesMut,
    ) {
        let send = client.take_reply_allowed();
        let n = writes.len();
        self.writes.append(&mut writes);
        crate::storage::run::recycle(writes);
        // Commands that joined build exactly one write; should one build several, the
        // earlier replies are dropped in `drain`.
        for i in 0..n {
            self.cmds.push(Queued {
                send: send && i + 1 == n,
                protocol: client.protocol,
                stat: cmd.filter(|_| i + 1 == n).map(|e| e.index),
            });
        }
        if self.cmds.len() >= MAX_RUN {
            self.drain(server, out);
        }
    }

    /// Applies the queued writes and appends their replies to `out`, in order.
    pub(super) fn drain(&mut self, server: &Server, out: &mut BytesMut) {
        if self.writes.is_empty() {
            return;
        }
        let replies = {
            // Writes share the transaction gate with every other command (EXEC runs alone).
            let _gate = server.exec_gate.read();
            Db::apply_run(std::mem::take(&mut self.writes))
        };
        for (reply, q) in replies.into_iter().zip(self.cmds.drain(..)) {
            if let Reply::Error(msg) = &reply {
                server.stats.record_error(msg);
                // `execute` counted the call before the reply existed: count it failed now.
                if let Some(index) = q.stat {
                    server.stats.mark_failed(index);
                }
            }
            if q.send {
                reply.encode(q.protocol, out);
            }
        }
    }
}
