//! The request loop of a Raft node.
//!
//! Writes of a pipelined batch are queued (see [`crate::storage::deferred`]) and proposed as
//! one Raft entry; their replies are spliced into the output where the commands were.
//! Anything but a write first waits for the queue, so a pipeline's later commands see its
//! earlier writes. The first read after a socket read waits for a read barrier on the leader:
//! every request in the buffer arrived before the barrier began, so one barrier covers them.

use super::{protocol_error, After, BATCH_COMMANDS, OUT_FLUSH_AT, UNAUTH_OUTPUT_LIMIT};
use crate::command::{call, classify, Client, Ctx, Kind, Server};
use crate::replication::{ProposeFailure, Replication};
use crate::storage::deferred::{self, Combiner, DeferredWrite};
use bytes::{Bytes, BytesMut};
use pinnacle_resp::{Protocol, Reply, RequestDecoder};

/// Per-connection state that outlives one batch.
#[derive(Default)]
pub(super) struct ReadState {
    /// A read barrier completed since the last socket read.
    pub(super) barrier_done: bool,
}

/// A command's writes waiting for their proposal.
struct Queued {
    /// One write, or an EXEC's several.
    writes: Vec<DeferredWrite>,
    /// How several writes' replies make the one reply.
    combine: Option<Combiner>,
    slot: Option<u16>,
    /// Where its reply goes in the output buffer.
    at: usize,
    /// False under `CLIENT REPLY OFF|SKIP`.
    send: bool,
    protocol: Protocol,
}

/// Runs requests from `buf` like the single-node batch, proposing writes through Raft.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_batch(
    server: &Server,
    repl: &Replication,
    client: &mut Client,
    decoder: &mut RequestDecoder,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    unauth_out: &mut usize,
    rs: &mut ReadState,
    held: &mut Option<Vec<Bytes>>,
) -> After {
    let mut queue: Vec<Queued> = Vec::new();
    let mut after = After::More;
    for _ in 0..BATCH_COMMANDS {
        if out.len() >= OUT_FLUSH_AT {
            break;
        }
        let next = match held.take() {
            Some(args) => Ok(Some(args)),
            None => decoder.decode(buf, client.authenticated),
        };
        let args: Vec<Bytes> = match next {
            Ok(Some(a)) => a,
            Ok(None) => {
                after = After::NeedInput;
                break;
            }
            Err(e) => {
                if let Err(a) = drain(server, repl, &mut queue, out).await {
                    return a;
                }
                if let Reply::Error(msg) = e.to_reply() {
                    server.stats.record_error(&msg);
                }
                protocol_error(client, e, out);
                return After::CloseAfterReply;
            }
        };
        let (kind, slot) = classify(&args);
        if kind != Kind::Write && !queue.is_empty() {
            if let Err(a) = drain(server, repl, &mut queue, out).await {
                return a;
            }
        }
        if kind == Kind::Read && !rs.barrier_done && repl.is_leader() {
            match repl.read_barrier().await {
                Ok(()) => rs.barrier_done = true,
                Err(redirect) => {
                    // Leadership is in doubt: keyed reads go elsewhere, keyless ones are
                    // served locally as on a follower.
                    if slot.is_some() && !client.readonly {
                        if client.take_reply_allowed() {
                            redirect.error(slot).encode(client.protocol, out);
                        }
                        continue;
                    }
                }
            }
        }
        deferred::begin();
        let reply = {
            let mut ctx = Ctx { server, client };
            call(&mut ctx, &args)
        };
        let writes = deferred::end();
        let combine = deferred::take_combiner();
        client.rerun_deadline = None;
        if client.close_silently {
            return After::CloseNow;
        }
        if client.blocked.is_some() {
            // Its wake-up may need the writes queued before it.
            if let Err(a) = drain(server, repl, &mut queue, out).await {
                return a;
            }
            return After::Block(args);
        }
        crate::pubsub::flush_own(client, out);
        let send = client.take_reply_allowed();
        if writes.is_empty() {
            if send {
                let before = out.len();
                reply.encode(client.protocol, out);
                if !client.authenticated {
                    *unauth_out += out.len() - before;
                    if *unauth_out > UNAUTH_OUTPUT_LIMIT {
                        return After::CloseNow;
                    }
                }
            }
        } else {
            queue.push(Queued {
                writes,
                combine,
                slot,
                at: out.len(),
                send,
                protocol: client.protocol,
            });
        }
        if client.close_after_reply {
            after = After::CloseAfterReply;
            break;
        }
    }
    if let Err(a) = drain(server, repl, &mut queue, out).await {
        return a;
    }
    after
}

/// Proposes the queued writes as one entry and splices their replies into `out`. `Err` when
/// the outcome is unknown: the connection must close without answering them.
async fn drain(
    server: &Server,
    repl: &Replication,
    queue: &mut Vec<Queued>,
    out: &mut BytesMut,
) -> Result<(), After> {
    if queue.is_empty() {
        return Ok(());
    }
    let items = std::mem::take(queue);
    let cmds = items
        .iter()
        .flat_map(|q| q.writes.iter().map(|w| w.cmd.clone()))
        .collect();
    let mut replies = match repl.propose(cmds).await {
        Ok(replies) => replies.into_iter(),
        Err(ProposeFailure::NotApplied(redirect)) => {
            // Definitely not applied: each command (an EXEC as a whole) gets the redirect.
            let mut spliced = BytesMut::with_capacity(out.len());
            let mut pos = 0;
            for q in items {
                spliced.extend_from_slice(&out[pos..q.at]);
                pos = q.at;
                if q.send {
                    redirect.error(q.slot).encode(q.protocol, &mut spliced);
                }
            }
            spliced.extend_from_slice(&out[pos..]);
            *out = spliced;
            return Ok(());
        }
        Err(ProposeFailure::Unknown(why)) => {
            tracing::warn!("write outcome unknown ({why}); closing the client without a reply");
            out.truncate(items[0].at);
            return Err(After::CloseAfterReply);
        }
    };
    let mut spliced = BytesMut::with_capacity(out.len() + 16 * items.len());
    let mut pos = 0;
    for q in items {
        spliced.extend_from_slice(&out[pos..q.at]);
        pos = q.at;
        let mut mapped = Vec::with_capacity(q.writes.len());
        for w in q.writes {
            let r = replies.next().unwrap_or(Reply::NullArray);
            mapped.push(match w.map {
                Some(f) => f(r),
                None => r,
            });
        }
        let reply = match q.combine {
            Some(c) => c(mapped),
            // One write per command otherwise; should a handler make several, the last answers.
            None => mapped.pop().unwrap_or(Reply::NullArray),
        };
        if let Reply::Error(msg) = &reply {
            server.stats.record_error(msg);
        }
        if q.send {
            reply.encode(q.protocol, &mut spliced);
        }
    }
    spliced.extend_from_slice(&out[pos..]);
    *out = spliced;
    Ok(())
}
