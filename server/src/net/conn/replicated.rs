//! The request loop of a Raft node.
//!
//! Writes of a pipelined batch are queued (see [`crate::storage::deferred`]) and proposed as
//! one Raft entry; their replies are spliced into the output where the commands were.
//! Anything but a write first waits for the queue, so a pipeline's later commands see its
//! earlier writes. The first read after a socket read waits for a read barrier on the leader:
//! every request in the buffer arrived before the barrier began, so one barrier covers them.

use super::{protocol_error, After, Io, BATCH_COMMANDS, OUT_FLUSH_AT, UNAUTH_OUTPUT_LIMIT};
use crate::command::{call, classify, Client, Ctx, Kind, Server};
use crate::replication::{ProposeFailure, Replication};
use crate::storage::deferred::{self, Combiner, DeferredWrite};
use crate::storage::shard_ctl;
use bytes::{Bytes, BytesMut};
use pinnacle_resp::{Protocol, Reply};

/// A command's writes waiting for their proposal.
struct Queued {
    /// One write, or an EXEC's several.
    writes: Vec<DeferredWrite>,
    /// How several writes' replies make the one reply.
    combine: Option<Combiner>,
    slot: Option<u16>,
    /// Keys its writes need present (a migrating slot's source; see `shard_ctl`).
    guard: Option<Vec<Bytes>>,
    /// The shard its writes are proposed to.
    shard: usize,
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
    io: &mut Io,
) -> After {
    let Io {
        decoder,
        buf,
        out,
        unauth_out,
        held,
    } = io;
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
        let shard = match slot {
            Some(s) => repl.shard_of(s),
            None => repl.home_shard(),
        };
        let sh = repl.shard(shard);
        if slot.is_some() && !sh.is_leader() && (kind == Kind::Write || !client.readonly) {
            // The cached view is up to 20 ms old (`watch`). Across a leader change two nodes
            // that each still pointed at the other sent clients back and forth, and redis-rs's
            // sync cluster client follows MOVED without pausing, then gives up. Re-read it
            // before this request is sent away. (Routing serves a read as leader only after
            // a barrier below, so a view that turns fresh here cannot skip one.)
            sh.refresh();
        }
        if kind == Kind::Read && !client.read_barrier_passed(shard) && sh.is_leader() {
            match sh.read_barrier().await {
                Ok(()) => client.pass_read_barrier(shard),
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
        // A read sent with ASKING to a migration's target is served from the target shard.
        let target = slot
            .filter(|_| kind == Kind::Read)
            .and_then(|s| repl.migration_target(s));
        if let Some(to) = target {
            let target = repl.shard(to);
            if !client.read_barrier_passed(to)
                && target.is_leader()
                && target.read_barrier().await.is_ok()
            {
                client.pass_read_barrier(to);
            }
        }
        // Held while a read is served from the source's copy of a slot being moved.
        let mut copy_read = None;
        if let Some(s) = slot.filter(|s| repl.is_copying(*s)) {
            // A migration is copying this slot. Keys missing here are answered at once
            // (`ASK`). A read of keys held here is served here until the flip is near (Redis:
            // the source serves the keys it has); a write's keys move ahead of the copy (then
            // `ASK`). Otherwise (inside MULTI, or if that fails) it waits for the copy and
            // routes again (`MOVED` after it).
            let keys = match client.multi {
                None => crate::command::request_keys(&args),
                Some(_) => None,
            };
            if repl.copy_must_wait(s, keys.as_deref()) {
                if kind == Kind::Read && keys.is_some() {
                    copy_read = repl.read_during_copy(s);
                }
                if copy_read.is_none() {
                    if let Err(a) = drain(server, repl, &mut queue, out).await {
                        return a;
                    }
                    let limit = std::time::Duration::from_secs(10);
                    // (A read gets here only when the flip is near: it waits for it.)
                    let pulled = match keys.as_deref() {
                        Some(k) if !k.is_empty() && kind != Kind::Read => {
                            repl.pull_keys(s, k, limit).await.is_ok()
                        }
                        _ => false,
                    };
                    if !pulled {
                        repl.wait_copied(s, limit).await;
                    }
                }
            }
        }
        let scope = deferred::begin();
        let reply = {
            let mut ctx = Ctx { server, client };
            call(&mut ctx, &args)
        };
        drop(copy_read);
        let writes = deferred::end();
        let combine = deferred::take_combiner();
        drop(scope);
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
                slot: client.routed_slot.or(slot),
                guard: client.guard.take(),
                shard: client.shard,
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

/// Proposes the queued writes, one entry per shard (shards in parallel), and splices their
/// replies into `out`. `Err` when an outcome is unknown: the connection must close without
/// answering that command or any after it.
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
    let mut shards: Vec<usize> = items.iter().map(|q| q.shard).collect();
    shards.sort_unstable();
    shards.dedup();
    let proposals = shards.iter().map(|&sh| {
        let cmds = items
            .iter()
            .filter(|q| q.shard == sh)
            .flat_map(|q| {
                // Tagged with the routed slot: a shard handing that slot over refuses it.
                q.writes.iter().map(move |w| match (q.slot, &q.guard) {
                    (Some(slot), Some(keys)) => shard_ctl::guarded(slot, keys, &w.cmd),
                    (Some(slot), None) => shard_ctl::tag(slot, &w.cmd),
                    (None, _) => w.cmd.clone(),
                })
            })
            .collect();
        repl.shard(sh).propose(cmds)
    });
    let results = join_all(proposals.collect()).await;
    let mut outcomes: Vec<Result<std::vec::IntoIter<Reply>, ProposeFailure>> =
        results.into_iter().map(|r| r.map(Vec::into_iter)).collect();
    let mut spliced = BytesMut::with_capacity(out.len() + 16 * items.len());
    let mut pos = 0;
    for q in items {
        spliced.extend_from_slice(&out[pos..q.at]);
        pos = q.at;
        let k = shards.binary_search(&q.shard).unwrap_or(0);
        let replies = match &mut outcomes[k] {
            Ok(replies) => replies,
            // Definitely not applied: each command (an EXEC as a whole) gets the redirect.
            Err(ProposeFailure::NotApplied(redirect)) => {
                if q.send {
                    redirect.error(q.slot).encode(q.protocol, &mut spliced);
                }
                continue;
            }
            Err(ProposeFailure::Unknown(why)) => {
                tracing::warn!("write outcome unknown ({why}); closing the client without a reply");
                *out = spliced;
                return Err(After::CloseAfterReply);
            }
        };
        let mut mapped = Vec::with_capacity(q.writes.len());
        let mut absent = None;
        for w in q.writes {
            let r = replies.next().unwrap_or(Reply::NullArray);
            if let Some(ask) = ask_for_absent(repl, &r) {
                // Its keys are missing at this source: the whole command goes to the target.
                absent.get_or_insert(ask);
                continue;
            }
            mapped.push(match w.map {
                Some(f) => f(r),
                None => r,
            });
        }
        let reply = match (absent, q.combine) {
            (Some(ask), _) => ask,
            (None, Some(c)) => c(mapped),
            // One write per command otherwise; should a handler make several, the last answers.
            (None, None) => mapped.pop().unwrap_or(Reply::NullArray),
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

/// The client's reply to a guarded write refused for missing keys (`shard_ctl::ABSENT`):
/// `ASK` to the slot's target, or `TRYAGAIN` if the migration is no longer known here.
fn ask_for_absent(repl: &Replication, r: &Reply) -> Option<Reply> {
    let Reply::Error(msg) = r else { return None };
    let slot: u16 = std::str::from_utf8(msg.strip_prefix(shard_ctl::ABSENT.as_bytes())?)
        .ok()?
        .parse()
        .ok()?;
    let target = repl
        .meta_state()
        .migration_of(slot)
        .and_then(|m| repl.leader_client_addr(m.to));
    Some(match target {
        Some(addr) => Reply::error(crate::command::route::redirect_text("ASK", slot, &addr)),
        None => Reply::error(shard_ctl::REFUSED),
    })
}

/// Runs every future to completion concurrently; results in input order.
async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, d) in futs.iter_mut().zip(done.iter_mut()) {
            if d.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *d = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}
