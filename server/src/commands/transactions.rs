//! MULTI EXEC DISCARD WATCH UNWATCH.
//!
//! MULTI makes the dispatcher queue requests (refusals at queueing time make EXEC answer
//! EXECABORT). EXEC runs them in order:
//! - on a single node, while the connection holds the server's exclusive gate, so no other
//!   request runs in between;
//! - on a Raft leader, its writes and its data reads are proposed together as one atomic
//!   item of one entry (applied as one batch on every replica, so no reader sees part of it;
//!   exactly once after a crash), and the array reply is assembled once that entry is applied.
//!   The reads run at apply time against the transaction's state so far
//!   ([`crate::storage::tx_read`]), so a read after a write sees it, as in Redis. A read-only
//!   transaction runs between two applies, so its reads see one state.
//!
//! WATCH remembers the version of each key's slot (and its expiry); EXEC aborts with a null
//! array if any slot was written since or a watched key has expired. Slot granularity means a
//! write to another key of the same slot also aborts, which is safe (EXEC may be retried).

use crate::command::client::{Client, ClientHandle, MultiState, Watched};
use crate::command::{call, Ctx, Handler, Server};
use crate::storage::deferred::{self, DeferredWrite};
use crate::storage::write::{WriteCommand, WriteOp};
use bytes::Bytes;
use pinnacle_resp::{Protocol, Reply};
use std::sync::Arc;

/// Handlers of this family.
pub const HANDLERS: &[(&str, Handler)] = &[
    ("multi", multi),
    ("exec", exec),
    ("discard", discard),
    ("watch", watch),
    ("unwatch", unwatch),
];

fn multi(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    if ctx.client.multi.is_some() {
        return Reply::error("ERR MULTI calls can not be nested");
    }
    ctx.client.multi = Some(MultiState::default());
    Reply::ok()
}

fn discard(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    if ctx.client.multi.take().is_none() {
        return Reply::error("ERR DISCARD without MULTI");
    }
    ctx.client.watched.clear();
    Reply::ok()
}

fn watch(ctx: &mut Ctx<'_>, a: &[Bytes]) -> Reply {
    if ctx.client.multi.is_some() {
        return Reply::error("ERR WATCH inside MULTI is not allowed");
    }
    let server = ctx.server;
    for key in &a[1..] {
        let db = server.shard_db(server.shard_of_key(key));
        let now = db.now_ms();
        if ctx.client.watched.iter().any(|w| w.key == *key) {
            continue;
        }
        let version = db.watch_version(key);
        let expire_at = match db.peek(key, now) {
            Ok(Some(m)) => m.expire_at,
            Ok(None) => 0,
            Err(e) => return super::strings::failed(e),
        };
        ctx.client.watched.push(Watched {
            key: key.clone(),
            version,
            expire_at,
        });
    }
    Reply::ok()
}

fn unwatch(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    ctx.client.watched.clear();
    Reply::ok()
}

/// True if a watched key may have changed (or expired) since WATCH.
fn watch_broken(ctx: &Ctx<'_>, watched: &[Watched]) -> bool {
    let server = ctx.server;
    watched.iter().any(|w| {
        let db = server.shard_db(server.shard_of_key(&w.key));
        db.watch_version(&w.key) != w.version || (w.expire_at != 0 && w.expire_at <= db.now_ms())
    })
}

fn exec(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    // Its queued commands run without routing of their own (see `cluster_refusal`).
    let was = std::mem::replace(&mut ctx.client.in_exec, true);
    let reply = exec_queued(ctx, args);
    ctx.client.in_exec = was;
    reply
}

fn exec_queued(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    let Some(m) = ctx.client.multi.take() else {
        return Reply::error("ERR EXEC without MULTI");
    };
    let watched = std::mem::take(&mut ctx.client.watched);
    if m.dirty {
        return Reply::error("EXECABORT Transaction discarded because of previous errors.");
    }
    if watch_broken(ctx, &watched) {
        return Reply::NullArray;
    }
    if !deferred::collecting() {
        // Single node: the connection holds the exclusive gate; writes apply in place.
        let replies = m.queue.iter().map(|args| run_one(ctx, args)).collect();
        return Reply::Array(replies);
    }
    let read_only = m
        .queue
        .iter()
        .all(|args| crate::command::lookup(args).is_ok_and(|c| !c.spec.has_flag("write")));
    if read_only {
        // Raft, reads only: run them between two applies of every local shard (in index
        // order, as nothing else takes more than one), so they see one state.
        let dbs: Vec<_> = ctx.server.dbs.clone();
        let _held: Vec<_> = dbs.iter().map(|d| d.hold_applies()).collect();
        let replies = m.queue.iter().map(|args| run_one(ctx, args)).collect();
        return Reply::Array(replies);
    }
    // Raft: collect every write into this command's proposal; reads answer now.
    enum Part {
        Now(Reply),
        Write,
        /// A write whose reply is not shown (a command making several writes answers with
        /// its last one).
        Hidden,
    }
    let mut parts = Vec::with_capacity(m.queue.len());
    let resp3 = ctx.client.protocol == Protocol::Resp3;
    for args in &m.queue {
        if reads_data(args) {
            // Runs when the entry is applied, after the writes queued before it.
            let read = WriteCommand {
                now_ms: ctx.db().now_ms(),
                op: WriteOp::TxRead {
                    resp3,
                    args: args.clone(),
                },
            };
            if deferred::push(DeferredWrite {
                cmd: read.encode(),
                map: None,
            })
            .is_ok()
            {
                parts.push(Part::Write);
                continue;
            }
        }
        let before = deferred::len();
        let r = run_one(ctx, args);
        let added = deferred::len() - before;
        if added == 0 {
            parts.push(Part::Now(r));
        } else {
            for _ in 1..added {
                parts.push(Part::Hidden);
            }
            parts.push(Part::Write);
        }
    }
    if parts.iter().all(|p| matches!(p, Part::Now(_))) {
        return Reply::Array(
            parts
                .into_iter()
                .filter_map(|p| match p {
                    Part::Now(r) => Some(r),
                    _ => None,
                })
                .collect(),
        );
    }
    // The writes go as one atomic item: applied in one batch on every replica, so no reader
    // sees part of the transaction.
    let writes = deferred::take();
    if let Err(w) = deferred::push(deferred::atomic(writes)) {
        drop(w);
        return Reply::error("ERR EXEC could not queue its writes");
    }
    deferred::set_combiner(Box::new(move |replies: Vec<Reply>| {
        let replies = match replies.into_iter().next() {
            Some(Reply::Array(subs)) => subs,
            // Refused as a whole (TRYAGAIN during a slot move, MOVED, CLUSTERDOWN).
            Some(other) => return other,
            None => Vec::new(),
        };
        let mut replies = replies.into_iter();
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            match p {
                Part::Now(r) => out.push(r),
                Part::Write => out.push(replies.next().unwrap_or(Reply::NullArray)),
                Part::Hidden => {
                    replies.next();
                }
            }
        }
        Reply::Array(out)
    }));
    // Placeholder; the connection answers with the combined reply.
    Reply::NullArray
}

/// True for a command that reads the keyspace and writes nothing (`readonly` flag): in a
/// transaction with writes on a Raft node it runs at apply time.
fn reads_data(args: &[Bytes]) -> bool {
    crate::command::lookup(args)
        .is_ok_and(|c| c.spec.has_flag("readonly") && !c.spec.has_flag("write"))
}

/// Lets every keyspace of `server` run transaction reads at apply time (Raft mode).
pub fn install_tx_reader(server: &Arc<Server>) {
    for (shard, db) in server.dbs.iter().enumerate() {
        let weak = Arc::downgrade(server);
        db.set_tx_reader(Box::new(move |_db, resp3, args| match weak.upgrade() {
            Some(server) => read_at_apply(&server, shard, resp3, args),
            None => Reply::error("ERR server shutting down"),
        }));
    }
}

/// Runs a transaction's read `args` on `shard` while its entry is applied: the handler alone
/// (access, arity and routing were checked when it was queued), as a client of that protocol.
fn read_at_apply(server: &Server, shard: usize, resp3: bool, args: &[Bytes]) -> Reply {
    let cmd = match crate::command::lookup(args) {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    let Some(handler) = cmd.handler else {
        return Reply::error("ERR unknown command");
    };
    let handle = Arc::new(ClientHandle::new(0, String::new(), String::new()));
    let mut client = Client::new(handle, true);
    client.protocol = if resp3 {
        Protocol::Resp3
    } else {
        Protocol::Resp2
    };
    client.shard = shard;
    let mut ctx = Ctx {
        server,
        client: &mut client,
    };
    let r = handler(&mut ctx, args);
    match ctx.client.blocked.take() {
        Some(spec) => spec.timeout_reply,
        None => r,
    }
}

/// Runs one queued request inside EXEC: blocking commands don't block (Redis runs them as
/// their non-blocking form and answers the timeout reply at once).
fn run_one(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let r = call(ctx, args);
    match ctx.client.blocked.take() {
        Some(spec) => spec.timeout_reply,
        None => r,
    }
}
