//! One client connection: read, decode every complete request (pipelining), run each through
//! the pipeline, and write all replies of the batch at once.

use super::{ClientStream, NetOptions};
use crate::command::{call_found, Client, Ctx, Server};
use bytes::{Bytes, BytesMut};
use pinnacle_resp::{ProtocolError, Reply, RequestDecoder};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::time::Instant;

mod replicated;
mod run;

/// Replies are written out once this much is buffered, even mid-batch, so a long pipeline
/// doesn't build an unbounded output buffer.
const OUT_FLUSH_AT: usize = 64 * 1024;

/// A read-only batch whose replies are at most this long is held back while the other ready
/// connections run theirs, so that all are written in one burst.
const YIELD_MAX_REPLY: usize = 8 * 1024;

/// Requests run before the task yields to the others sharing its worker thread: a client that
/// pipelines thousands of commands per read must not hold up everyone else's replies.
const BATCH_COMMANDS: usize = 512;

/// Unsent reply bytes an unauthenticated client may accumulate before it is dropped: Redis's
/// 16 KiB reply buffer plus the 1 KiB its CVE-2025-21605 fix allows unauthenticated clients in
/// the reply list. A flood of pre-auth requests whose errors are never read costs us ~17 KiB.
const UNAUTH_OUTPUT_LIMIT: usize = 16 * 1024 + 1024;

/// What the batch decided about the connection.
enum After {
    /// Every complete request was run; read more.
    NeedInput,
    /// The output buffer filled up or the batch budget ran out; write, yield, run the rest.
    More,
    /// Write what is buffered, then close.
    CloseAfterReply,
    /// Close at once, without writing.
    CloseNow,
    /// This request blocked (BLPOP on empty lists): wait, then run it again.
    Block(Vec<Bytes>),
}

/// One connection's request and reply buffers, handed to each batch as one.
struct Io {
    /// Splits `buf` into requests.
    decoder: RequestDecoder,
    /// Bytes read and not yet decoded.
    buf: BytesMut,
    /// Replies not yet written.
    out: BytesMut,
    /// Reply bytes produced for an unauthenticated client since the last read (none sent yet).
    unauth_out: usize,
    /// A blocked request to run again.
    held: Option<Vec<Bytes>>,
}

/// Serves one connection (plain TCP or TLS) until it closes, is killed, or idles out.
pub async fn run<S: ClientStream>(
    server: Arc<Server>,
    sock: S,
    peer: String,
    local: String,
    opts: NetOptions,
) {
    if crate::acl::protected_mode_denies(&server, &peer) {
        server
            .stats
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        let mut sock = sock;
        let _ = sock.write_all(crate::acl::PROTECTED_MODE_DENIED).await;
        return;
    }
    let mut client = server.register_client(peer, local);
    let (mut rd, mut wr) = sock.into_halves();
    let mut io = Io {
        decoder: RequestDecoder::with_max_bulk_len(server.config.proto_max_bulk_len()),
        buf: BytesMut::with_capacity(16 * 1024),
        out: BytesMut::with_capacity(16 * 1024),
        unauth_out: 0,
        held: None,
    };
    let mut monitor: Option<broadcast::Receiver<Bytes>> = None;
    // Pub/sub frames published to this client (and confirmations not yet written).
    let mut outbox: Option<Arc<crate::pubsub::Outbox>> = None;
    let mut last_active = Instant::now();
    // A blocked request's wake-up registration.
    let mut registration: Option<crate::command::blocking::Registration> = None;
    loop {
        io.decoder.reserve_for_read(&mut io.buf);
        let idle = server.config.timeout();
        // Redis never times out a MONITOR or a subscriber.
        let deadline = (idle > 0 && monitor.is_none() && !client.subscribed())
            .then(|| last_active + Duration::from_secs(idle));
        let read = tokio::select! {
            r = rd.read_buf(&mut io.buf) => r,
            _ = client.handle.killed() => break,
            line = next_monitor_line(&mut monitor) => {
                if let Some(line) = line {
                    if !write_or_killed(&mut wr, &line, &client).await {
                        break;
                    }
                }
                continue;
            }
            _ = next_push(&outbox) => {
                if let Some(ob) = &outbox {
                    io.out.clear();
                    ob.drain_into(&mut io.out, OUT_FLUSH_AT);
                    if !io.out.is_empty() {
                        server
                            .stats
                            .net_output_bytes
                            .fetch_add(io.out.len() as u64, Ordering::Relaxed);
                        if !write_or_killed(&mut wr, &io.out, &client).await {
                            break;
                        }
                        io.out.clear();
                    }
                }
                continue;
            }
            _ = sleep_until(deadline) => {
                tracing::debug!("closing idle client id={}", client.id);
                break;
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                server
                    .stats
                    .net_input_bytes
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        last_active = Instant::now();
        client.handle.touch();
        // Requests read from now on need a new read barrier.
        client.new_input();
        // Replies produced for an unauthenticated client since this read (none sent yet).
        io.unauth_out = 0;
        // CONFIG SET proto-max-bulk-len applies from the next bulk header on.
        io.decoder
            .set_max_bulk_len(server.config.proto_max_bulk_len());
        let limit = server.config.query_buffer_limit();
        if io.buf.len() + io.decoder.pending_args_bytes() > limit {
            tracing::warn!(
                "closing client id={} that exceeded the query buffer limit",
                client.id
            );
            break;
        }
        // Run every complete request in the buffer, writing replies out in bounded chunks.
        let after = loop {
            let after = if let Some(repl) = server.replication.get() {
                replicated::run_batch(&server, repl, &mut client, &mut io).await
            } else if opts.blocking_commands {
                tokio::task::block_in_place(|| run_batch(&server, &mut client, &mut io))
            } else {
                let start = io.out.len();
                let (after, seq) = server
                    .db
                    .group_pending(|| run_commands(&server, &mut client, &mut io));
                if seq == 0 {
                    // Small replies wait for the other connections ready on this worker to run
                    // their batches, as writes do below: they then leave in a burst, as Redis
                    // writes them all at the end of its event-loop turn, and the client is
                    // woken once per burst instead of once per connection (GET at -P 16: 1.26x
                    // GET/s, 0.73 vs 0.92 us of server CPU per request). Large replies go out
                    // at once: there the client's parsing is the bottleneck, and holding them
                    // back left it idle while the server built everyone's (LRANGE 0 599 at
                    // -P 16 fell to 0.8x).
                    if io.out.len() - start <= YIELD_MAX_REPLY {
                        tokio::task::yield_now().await;
                    }
                    if let Err(e) = server.db.make_visible_durable() {
                        // Nothing this batch wrote is at stake; its reads are answered as
                        // before (a stopped engine refuses the writes themselves).
                        tracing::warn!(client = client.id, error = %e, "WAL sync before a read-only reply failed");
                    }
                    after
                } else {
                    // Let the other connections ready on this worker run their batches first:
                    // the first of them to sync appends every one's records with one write(2),
                    // as Redis appends its AOF once per event-loop turn (one write per batch
                    // was a file write per request at -P 1).
                    tokio::task::yield_now().await;
                    match server.db.make_durable(seq) {
                        Ok(()) => after,
                        Err(e) => {
                            // Never acknowledge writes that may be lost.
                            tracing::error!(client = client.id, error = %e, "WAL sync failed; closing client");
                            io.out.truncate(start);
                            After::CloseNow
                        }
                    }
                }
            };
            if let After::CloseNow = after {
                break after;
            }
            if !io.out.is_empty() {
                // What CLIENT LIST shows (a SUBSCRIBE's `pubsub` type, a new name) is visible
                // to other connections once the reply is, as in Redis.
                client.publish(io.buf.len(), 0);
                server
                    .stats
                    .net_output_bytes
                    .fetch_add(io.out.len() as u64, Ordering::Relaxed);
                if !write_or_killed(&mut wr, &io.out, &client).await {
                    break After::CloseNow;
                }
                io.out.clear();
            }
            if let After::Block(args) = after {
                match wait_unblocked(
                    &server,
                    &mut client,
                    &mut rd,
                    &mut io.buf,
                    &mut registration,
                    args,
                )
                .await
                {
                    Unblocked::Retry(args) => io.held = Some(args),
                    Unblocked::TimedOut(reply) => {
                        if client.take_reply_allowed() {
                            reply.encode(client.protocol, &mut io.out);
                        }
                    }
                    Unblocked::Close => break After::CloseNow,
                }
                continue;
            }
            registration = None;
            if !matches!(after, After::More) {
                break after;
            }
            // Let other connections run before serving the rest of this one's pipeline.
            tokio::task::yield_now().await;
        };
        match after {
            After::CloseNow | After::CloseAfterReply => break,
            After::NeedInput | After::More | After::Block(_) => {}
        }
        if let Some(rx) = client.monitor_rx.take() {
            monitor = Some(rx);
        } else if !client.monitor {
            // RESET ended MONITOR mode.
            monitor = None;
        }
        if outbox.is_none() {
            outbox = client.pubsub.as_ref().map(|s| s.outbox.clone());
        }
        client.publish(io.buf.len(), 0);
    }
    let _ = wr.shutdown().await;
    server.unregister_client(&client);
}

/// Writes `data`; false if the write failed or the client was killed while the peer wasn't
/// reading (so CLIENT KILL and SHUTDOWN also end connections stuck on a full socket).
async fn write_or_killed<W: AsyncWrite + Unpin>(wr: &mut W, data: &[u8], client: &Client) -> bool {
    tokio::select! {
        r = wr.write_all(data) => r.is_ok(),
        _ = client.handle.killed() => false,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn next_push(outbox: &Option<Arc<crate::pubsub::Outbox>>) {
    match outbox {
        Some(ob) => ob.ready().await,
        None => std::future::pending().await,
    }
}

async fn next_monitor_line(rx: &mut Option<broadcast::Receiver<Bytes>>) -> Option<Bytes> {
    let Some(r) = rx else {
        return std::future::pending().await;
    };
    match r.recv().await {
        Ok(line) => Some(line),
        // A monitor that can't keep up loses lines rather than slowing the server.
        Err(broadcast::error::RecvError::Lagged(_)) => None,
        Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
    }
}

/// Decodes and runs requests from `buf` until it holds no complete request, the output
/// buffer is large, or the connection must close; the batch's writes are made durable with
/// one WAL sync before any of its replies can be sent.
fn run_batch(server: &Server, client: &mut Client, io: &mut Io) -> After {
    let start = io.out.len();
    match server.db.group_durable(|| run_commands(server, client, io)) {
        Ok(after) => after,
        Err(e) => {
            // Never acknowledge writes that may be lost: drop this batch's replies and close.
            tracing::error!(client = client.id, error = %e, "WAL sync failed; closing client");
            io.out.truncate(start);
            After::CloseNow
        }
    }
}

fn run_commands(server: &Server, client: &mut Client, io: &mut Io) -> After {
    let mut run = run::Run::default();
    let after = run_commands_in(server, client, io, &mut run);
    // Queued writes were accepted: they are applied even if the connection closes now.
    run.drain(server, &mut io.out);
    after
}

fn run_commands_in(server: &Server, client: &mut Client, io: &mut Io, run: &mut run::Run) -> After {
    let Io {
        decoder,
        buf,
        out,
        unauth_out,
        held,
    } = io;
    for _ in 0..BATCH_COMMANDS {
        if out.len() >= OUT_FLUSH_AT {
            return After::More;
        }
        let next = match held.take() {
            Some(args) => Ok(Some(args)),
            None => decoder.decode(buf, client.authenticated),
        };
        match next {
            Ok(Some(args)) => {
                // Looked up once: the run, the gate and the pipeline all need the entry.
                let found = crate::command::find(&args);
                let entry = found.as_ref().ok().copied();
                let queue = run::joins(client, entry);
                if !queue {
                    // It may read what the run wrote.
                    run.drain(server, out);
                }
                let (reply, writes) = {
                    // EXEC runs alone; everything else shares the gate.
                    let is_exec = entry.is_some_and(|e| e.spec.name == "exec");
                    let _gate = if is_exec {
                        Gate::Exclusive(server.exec_gate.write())
                    } else {
                        Gate::Shared(server.exec_gate.read())
                    };
                    let mut ctx = Ctx { server, client };
                    let scope = queue.then(crate::storage::run::begin);
                    let reply = call_found(&mut ctx, &args, found);
                    let writes = if queue {
                        crate::storage::run::end()
                    } else {
                        Vec::new()
                    };
                    drop(scope);
                    (reply, writes)
                };
                client.rerun_deadline = None;
                if client.close_silently {
                    return After::CloseNow;
                }
                if client.blocked.is_some() {
                    return After::Block(args);
                }
                if !writes.is_empty() {
                    run.queue(writes, entry, client, server, out);
                    continue;
                }
                // Replies stay in order: the queued writes' replies come first.
                run.drain(server, out);
                // Push frames queued so far (its own confirmations, messages) precede the reply.
                crate::pubsub::flush_own(client, out);
                if client.take_reply_allowed() {
                    let before = out.len();
                    reply.encode(client.protocol, out);
                    if !client.authenticated {
                        *unauth_out += out.len() - before;
                        if *unauth_out > UNAUTH_OUTPUT_LIMIT {
                            tracing::debug!(
                                "closing unauthenticated client id={} over its output limit",
                                client.id
                            );
                            return After::CloseNow;
                        }
                    }
                }
                if client.close_after_reply {
                    return After::CloseAfterReply;
                }
            }
            Ok(None) => return After::NeedInput,
            Err(e) => {
                // The queued writes came first: their replies precede the error.
                run.drain(server, out);
                if let Reply::Error(msg) = e.to_reply() {
                    server.stats.record_error(&msg);
                }
                protocol_error(client, e, out);
                return After::CloseAfterReply;
            }
        }
    }
    After::More
}

/// The single-node transaction gate held while one request runs.
enum Gate<'a> {
    Shared(#[allow(dead_code)] parking_lot::RwLockReadGuard<'a, ()>),
    Exclusive(#[allow(dead_code)] parking_lot::RwLockWriteGuard<'a, ()>),
}

/// How a blocked request's wait ended.
enum Unblocked {
    /// A key was filled (or the node must re-check its role): run the request again.
    Retry(Vec<Bytes>),
    /// The deadline passed: send this reply.
    TimedOut(Reply),
    /// Killed, or the client went away.
    Close,
}

/// How often a blocked request is re-run without a wake-up, so a Raft node that lost
/// leadership answers `MOVED` and a missed wake-up costs at most this long.
const BLOCK_RECHECK: Duration = Duration::from_millis(250);

/// Waits for a blocked request. The first call only registers for wake-ups and asks for an
/// immediate retry, so a write between the request's check and the registration is not missed.
async fn wait_unblocked<R: AsyncRead + Unpin>(
    server: &Server,
    client: &mut Client,
    rd: &mut R,
    buf: &mut BytesMut,
    registration: &mut Option<crate::command::blocking::Registration>,
    args: Vec<Bytes>,
) -> Unblocked {
    let Some(spec) = client.blocked.take() else {
        return Unblocked::Retry(args);
    };
    let args = spec.rerun.clone().unwrap_or(args);
    client.rerun_deadline = Some(spec.deadline);
    // A different request blocked (the previous one completed in the same batch).
    if registration
        .as_ref()
        .is_some_and(|r| r.keys() != spec.keys.as_slice())
    {
        *registration = None;
    }
    let Some(reg) = registration.as_mut() else {
        *registration = Some(server.waiters.register(&spec.keys));
        return Unblocked::Retry(args);
    };
    if spec.deadline.is_some_and(|d| d <= Instant::now()) {
        client.rerun_deadline = None;
        *registration = None;
        return Unblocked::TimedOut(spec.timeout_reply);
    }
    let limit = server.config.query_buffer_limit();
    loop {
        tokio::select! {
            _ = reg.wait() => break,
            _ = tokio::time::sleep(BLOCK_RECHECK) => break,
            _ = sleep_until(spec.deadline) => {
                client.rerun_deadline = None;
                *registration = None;
                return Unblocked::TimedOut(spec.timeout_reply);
            }
            _ = client.handle.killed() => return Unblocked::Close,
            // Keep reading (as Redis does) so a client that went away is noticed.
            r = rd.read_buf(buf) => match r {
                Ok(0) | Err(_) => return Unblocked::Close,
                Ok(n) => {
                    server.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    if buf.len() > limit {
                        return Unblocked::Close;
                    }
                }
            },
        }
    }
    // Still registered: the retry keeps this client's place in the queues.
    Unblocked::Retry(args)
}

fn protocol_error(client: &Client, e: ProtocolError, out: &mut BytesMut) {
    tracing::debug!("protocol error from client id={}: {e}", client.id);
    let reply: Reply = e.to_reply();
    reply.encode(client.protocol, out);
}
