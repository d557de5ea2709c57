//! The command table and the request pipeline (lookup → auth → arity → route → execute).

pub mod blocking;
pub mod client;
pub mod extra;
pub mod generated;
pub mod glob;
pub mod route;
pub mod spec;
pub mod state;
pub mod table;

use bytes::Bytes;
use pinnacle_resp::Reply;
use std::time::SystemTime;

pub use client::{Client, ClientHandle, ReplyMode};
pub use route::Route;
pub use state::Server;
use table::{table, Entry};

/// What a handler sees: the server and the calling client.
pub struct Ctx<'a> {
    /// Shared server state.
    pub server: &'a Server,
    /// The calling connection's state.
    pub client: &'a mut Client,
}

impl Ctx<'_> {
    /// The keyspace the current command runs on: its slot's shard (the only one on a single
    /// node).
    pub fn db(&self) -> &crate::storage::Db {
        self.server.shard_db(self.client.shard)
    }
}

/// A command handler: `args[0]` is the command name as sent; arity was already checked.
pub type Handler = fn(&mut Ctx<'_>, &[Bytes]) -> Reply;

/// Runs one request through the pipeline and returns its reply. Connection-level effects
/// (close after reply, suppressed replies, protocol switch) are left on `ctx.client`.
pub fn call(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    call_found(ctx, args, find(args))
}

/// [`call`] with the request's table entry already looked up by [`find`]: the connection loop
/// looks it up once per request for its own decisions (a second lookup cost ~200
/// instructions per request).
pub fn call_found(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    found: Result<&'static Entry, Reply>,
) -> Reply {
    let queueing = ctx.client.multi.is_some();
    let reply = dispatch(ctx, args, found);
    if queueing && reply.is_error() && !ctx.client.ran_in_multi {
        // Refused before queueing (unknown, arity, auth, routing): EXEC will abort.
        if let Some(m) = ctx.client.multi.as_mut() {
            m.dirty = true;
        }
    }
    ctx.client.ran_in_multi = false;
    if let Reply::Error(msg) = &reply {
        ctx.server.stats.record_error(msg);
    }
    reply
}

/// The pipeline proper: lookup → arity → auth → route → execute.
fn dispatch(ctx: &mut Ctx<'_>, args: &[Bytes], found: Result<&'static Entry, Reply>) -> Reply {
    let Some(name) = args.first() else {
        return Reply::error("ERR empty command");
    };
    // Cross-protocol scripting guard: an HTTP request sent to the port is dropped silently.
    if name.eq_ignore_ascii_case(b"post") || name.eq_ignore_ascii_case(b"host:") {
        tracing::warn!("Possible SECURITY ATTACK detected. It looks like somebody is sending POST or Host: commands to Redis. Connection aborted.");
        ctx.client.close_silently = true;
        return Reply::Null;
    }
    let cmd = match found {
        Ok(cmd) => cmd,
        Err(reply) => return reply,
    };
    if !arity_ok(cmd.spec.arity, args.len()) {
        ctx.server.stats.reject(cmd.index);
        return Reply::error(format!(
            "ERR wrong number of arguments for '{}' command",
            cmd.spec.name
        ));
    }
    if !ctx.client.authenticated && !cmd.spec.has_flag("no_auth") && ctx.server.acl_auth_required()
    {
        ctx.server.stats.reject(cmd.index);
        return Reply::error("NOAUTH Authentication required.");
    }
    if let Err(denied) = ctx.server.acl.check(&ctx.client.user, cmd.spec, args) {
        ctx.server.stats.reject(cmd.index);
        return crate::commands::acl::denied(ctx, cmd.spec, args, denied);
    }
    // ASKING lasts for exactly one following command (the slot map will consult it).
    let asking = std::mem::take(&mut ctx.client.asking);
    let route = route::route(cmd, args);
    if let Some(err) = route.error() {
        ctx.server.stats.reject(cmd.index);
        return Reply::error(err);
    }
    if let Some(err) = cluster_refusal(ctx, cmd, args, &route, asking) {
        ctx.server.stats.reject(cmd.index);
        return err;
    }
    if let Some(err) = disk_refusal(ctx, cmd) {
        ctx.server.stats.reject(cmd.index);
        return err;
    }
    if let route::Route::Served { slot: Some(slot) } = route {
        // Heat telemetry for the PINN (relaxed atomics; keys sampled).
        let bytes = args.iter().map(Bytes::len).sum();
        crate::pinn::record(slot, cmd.spec.has_flag("write"), bytes);
        if let Some(spec::KeySpec {
            begin_search: spec::BeginSearch::Index(i),
            ..
        }) = cmd.spec.key_specs.first()
        {
            if let Some(key) = usize::try_from(*i).ok().and_then(|i| args.get(i)) {
                crate::pinn::record_key(key);
            }
        }
    }
    let handler = match crate::pubsub::gate(ctx, cmd.spec.name) {
        crate::pubsub::Gate::Run => cmd.handler,
        crate::pubsub::Gate::RunWith(h) => Some(h),
        crate::pubsub::Gate::Reject(err) => {
            ctx.server.stats.reject(cmd.index);
            return err;
        }
    };
    if let Some(m) = ctx.client.multi.as_mut() {
        if !matches!(
            cmd.spec.name,
            "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
        ) {
            m.queue.push(args.to_vec());
            return Reply::simple("QUEUED");
        }
        // Its own errors (nested MULTI, WATCH inside MULTI) don't abort the transaction.
        ctx.client.ran_in_multi = true;
    }
    execute(ctx, cmd, handler, args)
}

/// Redis's refusal while its AOF cannot be written (here: the disk is full): write commands,
/// an `EXEC` with queued writes, and `PING` answer `-MISCONF` up front, so a transaction is
/// refused whole (queued writes make `EXEC` abort) rather than half applied. Each check also
/// probes whether space returned. In Raft mode it runs after routing (a full follower still
/// redirects), counts the Raft logs as well as the keyspaces, and leaves `PING` alone (as a
/// Redis replica does; clients and peers use it to probe liveness).
fn disk_refusal(ctx: &mut Ctx<'_>, cmd: &Entry) -> Option<Reply> {
    let name = cmd.spec.name;
    let exec_writes = name == "exec"
        && ctx.client.multi.as_ref().is_some_and(|m| {
            m.queue
                .iter()
                .any(|a| lookup(a).is_ok_and(|c| c.spec.has_flag("write")))
        });
    let repl = ctx.server.replication.get();
    let ping = name == "ping" && repl.is_none();
    if !(cmd.spec.has_flag("write") || ping || exec_writes)
        || (ctx.server.dbs.iter().all(|d| d.has_space()) && !repl.is_some_and(|r| r.disk_full()))
    {
        return None;
    }
    let msg = crate::storage::apply::MISCONF_NO_SPACE;
    if exec_writes {
        ctx.client.multi = None;
        ctx.client.watched.clear();
        return Some(Reply::error(format!(
            "EXECABORT Transaction discarded because of: {msg}"
        )));
    }
    Some(Reply::error(msg))
}

/// Raft mode: picks the shard the command runs on and refuses what this node must not serve.
/// Keyed commands of a shard this node does not lead go to its leader (`MOVED`, or
/// `CLUSTERDOWN` with no leader) unless a `READONLY` connection reads; keyless commands run
/// on the home shard, and keyless writes are refused where it is not led (`READONLY`).
fn cluster_refusal(
    ctx: &mut Ctx<'_>,
    cmd: &Entry,
    args: &[Bytes],
    route: &route::Route,
    asking: bool,
) -> Option<Reply> {
    let repl = ctx.server.replication.get()?;
    if ctx.client.in_exec {
        // Queued in a transaction: EXEC was routed (shard, slot, guard) for all of it.
        return None;
    }
    ctx.client.guard = None;
    let slot = match route {
        route::Route::Served { slot } => *slot,
        _ => None,
    };
    let slot = match slot {
        None if cmd.spec.name == "exec" => match exec_slot(ctx) {
            Ok(slot) => slot,
            Err(reply) => return Some(reply),
        },
        other => other,
    };
    let write = cmd.spec.has_flag("write");
    ctx.client.routed_slot = slot;
    if slot.is_some() && !repl.map_ready() {
        // Just restarted: the slot map is still replaying.
        return Some(Reply::error("CLUSTERDOWN The cluster is down"));
    }
    if let Some(s) = slot {
        if let Some(outcome) = migration_route(ctx, cmd, args, s, asking) {
            return outcome;
        }
    }
    let shard = match slot {
        Some(s) => repl.shard_of(s),
        None => repl.home_shard(),
    };
    ctx.client.shard = shard;
    let sh = repl.shard(shard);
    // A read is served as leader only once its barrier passed (the connection runs it first).
    // A view that turned to leader after that check sends the client on as a follower would.
    if sh.is_leader() && !unverified_read(ctx, cmd, shard) {
        return None;
    }
    let refusal = match slot {
        // A node outside the shard's group (more nodes than replicas) holds no copy to read.
        Some(_) if write || !ctx.client.readonly || sh.outside_leader().is_some() => {
            Some(sh.redirect().error(slot))
        }
        None if write => Some(sh.redirect().error(None)),
        _ => None,
    };
    if refusal.is_some() && cmd.spec.name == "exec" {
        // Redis discards a transaction whose EXEC is redirected.
        ctx.client.multi = None;
        ctx.client.watched.clear();
    }
    refusal
}

/// Redis's rules for a slot being migrated (redis-wire §2.2, steps 3, 6 and 7): `None` when
/// the slot is not moving or this node leads neither end; `Some(None)` to serve (the shard
/// to use is set), `Some(Some(error))` for `ASK`/`TRYAGAIN`.
///
/// At the source, a write is not sent away for missing keys here: the applied state may lag
/// a write still in flight that creates them. It is proposed guarded with its keys and the
/// apply decides (see `storage::shard_ctl`); the connection turns that refusal into `ASK`.
fn migration_route(
    ctx: &mut Ctx<'_>,
    cmd: &Entry,
    args: &[Bytes],
    slot: u16,
    asking: bool,
) -> Option<Option<Reply>> {
    let repl = ctx.server.replication.get()?;
    let st = repl.meta_state();
    let m = st.migration_of(slot)?;
    let (from, to) = (repl.shard(m.from), repl.shard(m.to));
    let (mut keys, write) = if cmd.spec.name == "exec" {
        exec_keys(ctx)
    } else {
        let keys: Vec<Bytes> = match cmd.spec.key_positions(args) {
            Some(p) => p.iter().filter_map(|i| args.get(*i)).cloned().collect(),
            None => Vec::new(),
        };
        (keys, cmd.spec.has_flag("write"))
    };
    keys.sort();
    keys.dedup();
    let present = |shard: usize| {
        let db = ctx.server.shard_db(shard);
        let now = db.now_ms();
        keys.iter()
            .filter(|k| matches!(db.peek(k, now), Ok(Some(_))))
            .count()
    };
    let tryagain = || Reply::error(route::Route::TryAgain.error().unwrap_or_default());
    // ASKING first: a node leading both ends (after elections) must not ASK itself again.
    if to.is_leader() && (asking || cmd.spec.has_flag("asking")) {
        if unverified_read(ctx, cmd, m.to) {
            return Some(Some(tryagain()));
        }
        if keys.len() > 1 && present(m.to) < keys.len() {
            return Some(Some(tryagain()));
        }
        ctx.client.shard = m.to;
        return Some(None);
    }
    if from.is_leader() {
        if unverified_read(ctx, cmd, m.from) {
            return Some(Some(tryagain()));
        }
        let here = present(m.from);
        if here > 0 && here < keys.len() {
            return Some(Some(tryagain()));
        }
        // Queued in MULTI: nothing is written now, so the applied state may decide (EXEC is
        // guarded).
        let queueing = ctx.client.multi.is_some() && cmd.spec.name != "exec";
        // Once the fence is applied here, the slot's records here are final (later writes to
        // it are refused when applied): keys missing now never appear, so the applied state
        // may decide, as for a read.
        let fenced = here == 0
            && !keys.is_empty()
            && cmd.spec.name != "exec"
            && ctx.server.shard_db(m.from).is_fenced(slot);
        if write && !queueing && !fenced {
            ctx.client.shard = m.from;
            ctx.client.guard = Some(keys);
            return Some(None);
        }
        if here == keys.len() {
            ctx.client.shard = m.from;
            return Some(None);
        }
        let target = repl.leader_client_addr(m.to)?;
        let ask = route::redirect_text("ASK", slot, &target);
        return Some(Some(Reply::error(ask)));
    }
    None
}

/// True for a read to run now on `shard` whose read barrier this connection has not passed:
/// the local copy may lag a leader that was just elected, so it must not be served as the
/// leader's.
fn unverified_read(ctx: &Ctx<'_>, cmd: &Entry, shard: usize) -> bool {
    cmd.spec.has_flag("readonly")
        && !cmd.spec.has_flag("write")
        && ctx.client.multi.is_none()
        && !ctx.client.read_barrier_passed(shard)
}

/// Every key a transaction queued, and whether it queued a write.
fn exec_keys(ctx: &Ctx<'_>) -> (Vec<Bytes>, bool) {
    let (mut keys, mut write) = (Vec::new(), false);
    for args in ctx.client.multi.iter().flat_map(|m| m.queue.iter()) {
        let Ok(c) = lookup(args) else { continue };
        write |= c.spec.has_flag("write");
        if let Some(p) = c.spec.key_positions(args) {
            keys.extend(p.iter().filter_map(|i| args.get(*i)).cloned());
        }
    }
    (keys, write)
}

/// The one slot of every key a transaction queued (`None` if keyless); keys in several slots
/// discard it with `CROSSSLOT`, as Redis Cluster does: its writes become one Raft entry of one
/// shard.
fn exec_slot(ctx: &mut Ctx<'_>) -> Result<Option<u16>, Reply> {
    let Some(m) = ctx.client.multi.as_ref() else {
        return Ok(None);
    };
    let mut slot = None;
    for args in &m.queue {
        let Ok(c) = lookup(args) else { continue };
        if let route::Route::Served { slot: Some(s) } = route::route(c, args) {
            match slot {
                Some(p) if p != s => {
                    ctx.client.multi = None;
                    ctx.client.watched.clear();
                    return Err(Reply::error(
                        route::Route::CrossSlot.error().unwrap_or_default(),
                    ));
                }
                _ => slot = Some(s),
            }
        }
    }
    Ok(slot)
}

/// What a command does to the keyspace, for the replicated pipeline's ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Flagged `write`: on a Raft node, proposed.
    Write,
    /// Flagged `readonly`: on the leader, served after a read barrier.
    Read,
    /// Anything else (connection, server and unknown commands).
    Other,
}

/// The [`Kind`] of `args` and the hash slot of its keys (`None` if keyless or invalid).
pub fn classify(args: &[Bytes]) -> (Kind, Option<u16>) {
    let Ok(cmd) = lookup(args) else {
        return (Kind::Other, None);
    };
    let kind = if cmd.spec.has_flag("write") {
        Kind::Write
    } else if cmd.spec.has_flag("readonly") {
        Kind::Read
    } else {
        Kind::Other
    };
    let slot = if arity_ok(cmd.spec.arity, args.len()) {
        match route::route(cmd, args) {
            route::Route::Served { slot } => slot,
            _ => None,
        }
    } else {
        None
    };
    (kind, slot)
}

/// The keys `args` names (`None` if it names none, is unknown or has the wrong arity).
pub fn request_keys(args: &[Bytes]) -> Option<Vec<Bytes>> {
    let cmd = lookup(args).ok()?;
    if !arity_ok(cmd.spec.arity, args.len()) {
        return None;
    }
    let keys: Vec<Bytes> = cmd
        .spec
        .key_positions(args)?
        .iter()
        .filter_map(|i| args.get(*i))
        .cloned()
        .collect();
    (!keys.is_empty()).then_some(keys)
}

/// The table entry of request `args` ([`lookup`], and an error for an empty request).
pub fn find(args: &[Bytes]) -> Result<&'static Entry, Reply> {
    if args.is_empty() {
        return Err(Reply::error("ERR empty command"));
    }
    lookup(args)
}

/// Finds the entry for `args`, resolving a container's subcommand; errors are Redis's texts.
pub(crate) fn lookup(args: &[Bytes]) -> Result<&'static Entry, Reply> {
    let t = table();
    let Some(cmd) = t.get(&args[0]) else {
        return Err(unknown_command(args));
    };
    if !cmd.is_container() || args.len() < 2 {
        // A bare container name fails the arity check with its own name.
        return Ok(cmd);
    }
    match t.sub(cmd, &args[1]) {
        Some(sub) => Ok(sub),
        None => {
            let mut parent = c_str(&args[0], usize::MAX).to_vec();
            parent.make_ascii_uppercase();
            Err(error_bytes(&[
                b"ERR unknown subcommand '",
                c_str(&args[1], 128),
                b"'. Try ",
                &parent,
                b" HELP.",
            ]))
        }
    }
}

/// Redis's text: `unknown command 'FOO', with args beginning with: 'a' 'b' `.
fn unknown_command(args: &[Bytes]) -> Reply {
    // Built like Redis's `sdscatprintf(args, "'%.*s' ", 128 - sdslen(args), arg)`.
    let mut list: Vec<u8> = Vec::new();
    for a in &args[1..] {
        if list.len() >= 128 {
            break;
        }
        let room = 128 - list.len();
        list.push(b'\'');
        list.extend_from_slice(c_str(a, room));
        list.extend_from_slice(b"' ");
    }
    error_bytes(&[
        b"ERR unknown command '",
        c_str(&args[0], 128),
        b"', with args beginning with: ",
        &list,
    ])
}

/// What C's `%.<max>s` prints of `b`: the bytes before the first NUL, at most `max` of them.
pub fn c_str(b: &[u8], max: usize) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len()).min(max);
    &b[..end]
}

/// An error reply from raw parts, as Redis's `addReplyErrorFormat` builds it: byte-exact, with
/// CR and LF turned into spaces so the reply stays one line.
pub fn error_bytes(parts: &[&[u8]]) -> Reply {
    let mut msg: Vec<u8> = parts.concat();
    for b in msg.iter_mut() {
        if *b == b'\r' || *b == b'\n' {
            *b = b' ';
        }
    }
    Reply::Error(Bytes::from(msg))
}

fn arity_ok(arity: i64, argc: usize) -> bool {
    let argc = argc as i64;
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// Runs the handler, timing it for INFO commandstats and the slow log, and feeds MONITOR.
fn execute(
    ctx: &mut Ctx<'_>,
    cmd: &'static Entry,
    handler: Option<Handler>,
    args: &[Bytes],
) -> Reply {
    let Some(handler) = handler else {
        // Containers always have subcommands; arity rejects a bare container name first.
        return Reply::error("ERR unknown command");
    };
    if ctx.server.monitors_active()
        && !cmd.spec.has_flag("admin")
        && !cmd.spec.has_flag("skip_monitor")
    {
        ctx.server.feed_monitors(ctx.client, args);
    }
    // One clock reading serves the command's duration and its time (see `storage::wall_ms`).
    // A wall clock stepped back mid-command counts as a zero duration.
    let start = SystemTime::now();
    let reply = {
        let _time = crate::storage::CommandTime::enter(start);
        handler(ctx, args)
    };
    let elapsed = start.elapsed().unwrap_or_default();
    let usec = elapsed.as_micros() as u64;
    ctx.server.stats.record(cmd.index, usec, reply.is_error());
    if ctx.server.config.latency_tracking() {
        // One relaxed add into the command's histogram (INFO latencystats, /metrics).
        ctx.server
            .stats
            .latency
            .record(cmd.index, elapsed.as_nanos() as u64);
    }
    ctx.client.last_cmd = cmd.spec.name;
    let threshold = ctx.server.config.slowlog_slower_than();
    if threshold >= 0 && usec as i64 >= threshold && !cmd.spec.has_flag("skip_slowlog") {
        ctx.server.slowlog.push(args, usec, ctx.client);
    }
    reply
}

#[cfg(test)]
pub mod testutil;

#[cfg(test)]
mod tests {
    use super::testutil::TestNode;

    #[test]
    fn unknown_command_text_matches_redis() {
        let mut n = TestNode::new();
        assert_eq!(
            n.run(&["FOO", "a", "b"]),
            "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n"
        );
        assert_eq!(
            n.run(&["!foo"]),
            "-ERR unknown command '!foo', with args beginning with: \r\n"
        );
    }

    #[test]
    fn unknown_command_text_is_byte_exact() {
        let mut n = TestNode::new();
        // Non-UTF-8 bytes are echoed as they are, a NUL ends an argument (C's %s), CR/LF
        // become spaces, and the argument list stops once it reaches 128 bytes.
        let (out, _) = n.run_raw_bytes(&[b"FOO", b"\xd1\xff", b"a\x00b", b"x\r\ny"]);
        assert_eq!(
            out,
            b"-ERR unknown command 'FOO', with args beginning with: '\xd1\xff' 'a' 'x  y' \r\n"
        );
        let long = vec![b'z'; 200];
        let (out, _) = n.run_raw_bytes(&[b"FOO", &long, b"more"]);
        let expect = format!(
            "-ERR unknown command 'FOO', with args beginning with: '{}' \r\n",
            "z".repeat(128)
        );
        assert_eq!(out, expect.as_bytes());
    }

    #[test]
    fn arity_and_subcommand_errors() {
        let mut n = TestNode::new();
        assert_eq!(
            n.run(&["PING", "a", "b"]),
            "-ERR wrong number of arguments for 'ping' command\r\n"
        );
        assert_eq!(
            n.run(&["CLUSTER", "KEYSLOT"]),
            "-ERR wrong number of arguments for 'cluster|keyslot' command\r\n"
        );
        assert_eq!(
            n.run(&["CLIENT"]),
            "-ERR wrong number of arguments for 'client' command\r\n"
        );
        assert_eq!(
            n.run(&["client", "maint_notifications", "on"]),
            "-ERR unknown subcommand 'maint_notifications'. Try CLIENT HELP.\r\n"
        );
        assert_eq!(
            n.run(&["CLIENT", "TRACKING", "on"]),
            "-ERR unknown subcommand 'TRACKING'. Try CLIENT HELP.\r\n"
        );
    }

    #[test]
    fn crossslot_is_refused_before_running() {
        let mut n = TestNode::new();
        if super::table::table().get(b"mset").is_none() {
            return; // MSET lands with the strings module.
        }
        assert_eq!(
            n.run(&["MSET", "a", "1", "b", "2"]),
            "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
        );
    }

    #[test]
    fn post_closes_without_reply() {
        let mut n = TestNode::new();
        let (_, close) = n.run_raw(&["POST", "/", "HTTP/1.1"]);
        assert!(close);
    }
}
