//! Pub/sub commands: (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PUBLISH, SPUBLISH and PUBSUB. This
//! node owns every slot, so shard channels are node-local; routing already refuses
//! SSUBSCRIBE/SUNSUBSCRIBE channels in different slots with CROSSSLOT.

use crate::command::{c_str, error_bytes, Ctx, Handler};
use crate::pubsub::Kind;
use bytes::Bytes;
use pinnacle_resp::Reply;

/// Handlers of this family.
pub const HANDLERS: &[(&str, Handler)] = &[
    ("subscribe", subscribe),
    ("unsubscribe", unsubscribe),
    ("psubscribe", psubscribe),
    ("punsubscribe", punsubscribe),
    ("ssubscribe", ssubscribe),
    ("sunsubscribe", sunsubscribe),
    ("publish", publish),
    ("spublish", spublish),
    ("pinn.publishlocal", publish_local),
    ("pubsub|channels", pubsub_channels),
    ("pubsub|numsub", pubsub_numsub),
    ("pubsub|numpat", pubsub_numpat),
    ("pubsub|shardchannels", pubsub_shardchannels),
    ("pubsub|shardnumsub", pubsub_shardnumsub),
    ("pubsub|help", pubsub_help),
];

/// The confirmations were queued as push frames; the command itself has no other reply.
fn pushed(ctx: &mut Ctx<'_>) -> Reply {
    ctx.client.reply_pushed = true;
    Reply::Null
}

fn subscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    ctx.server
        .pubsub
        .subscribe(ctx.client, Kind::Channel, &args[1..]);
    pushed(ctx)
}

fn psubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    ctx.server
        .pubsub
        .subscribe(ctx.client, Kind::Pattern, &args[1..]);
    pushed(ctx)
}

fn ssubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    ctx.server
        .pubsub
        .subscribe(ctx.client, Kind::Shard, &args[1..]);
    pushed(ctx)
}

fn unsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    ctx.server
        .pubsub
        .unsubscribe(ctx.client, Kind::Channel, &args[1..]);
    pushed(ctx)
}

fn punsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    ctx.server
        .pubsub
        .unsubscribe(ctx.client, Kind::Pattern, &args[1..]);
    pushed(ctx)
}

fn sunsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    ctx.server
        .pubsub
        .unsubscribe(ctx.client, Kind::Shard, &args[1..]);
    pushed(ctx)
}

fn publish(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let n = ctx
        .server
        .pubsub
        .publish(ctx.server, Kind::Channel, &args[1], &args[2]);
    Reply::Integer(n)
}

/// `PINN.PUBLISHLOCAL channel message`: what another node relays of a PUBLISH (see
/// [`crate::pubsub::relay`]); delivered here only.
fn publish_local(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let n = ctx
        .server
        .pubsub
        .deliver(ctx.server, Kind::Channel, &args[1], &args[2]);
    Reply::Integer(n)
}

fn spublish(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let n = ctx
        .server
        .pubsub
        .publish(ctx.server, Kind::Shard, &args[1], &args[2]);
    Reply::Integer(n)
}

/// PING in RESP2 subscribed mode: `["pong", <message or "">]`, as Redis answers there.
pub fn ping_subscribed(_: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match args.len() {
        1 | 2 => Reply::Array(vec![
            Reply::Bulk(Bytes::from_static(b"pong")),
            Reply::Bulk(args.get(1).cloned().unwrap_or_default()),
        ]),
        _ => Reply::error("ERR wrong number of arguments for 'ping' command"),
    }
}

/// `ERR unknown subcommand or wrong number of arguments for '<sub>'. Try PUBSUB HELP.`
fn bad_subcommand(args: &[Bytes]) -> Reply {
    error_bytes(&[
        b"ERR unknown subcommand or wrong number of arguments for '",
        c_str(&args[1], 128),
        b"'. Try PUBSUB HELP.",
    ])
}

fn list(kind: Kind, ctx: &Ctx<'_>, args: &[Bytes]) -> Reply {
    if args.len() > 3 {
        return bad_subcommand(args);
    }
    let pattern = args.get(2).map(|p| &p[..]);
    let names = ctx.server.pubsub.channels(kind, pattern);
    Reply::Array(names.into_iter().map(Reply::Bulk).collect())
}

fn numsub(kind: Kind, ctx: &Ctx<'_>, args: &[Bytes]) -> Reply {
    let counts = ctx.server.pubsub.numsub(kind, &args[2..]);
    // A flat array in both protocols, as Redis 7.0 sends it.
    let mut items = Vec::with_capacity(counts.len() * 2);
    for (c, n) in counts {
        items.push(Reply::Bulk(c));
        items.push(Reply::Integer(n));
    }
    Reply::Array(items)
}

fn pubsub_channels(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    list(Kind::Channel, ctx, args)
}

fn pubsub_shardchannels(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    list(Kind::Shard, ctx, args)
}

fn pubsub_numsub(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    numsub(Kind::Channel, ctx, args)
}

fn pubsub_shardnumsub(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    numsub(Kind::Shard, ctx, args)
}

fn pubsub_numpat(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    Reply::Integer(ctx.server.pubsub.numpat())
}

fn pubsub_help(_: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    const LINES: &[&str] = &[
        "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CHANNELS [<pattern>]",
        "    Return the currently active channels matching a <pattern> (default: '*').",
        "NUMPAT",
        "    Return number of subscriptions to patterns.",
        "NUMSUB [<channel> ...]",
        "    Return the number of subscribers for the specified channels, excluding",
        "    pattern subscriptions(default: no channels).",
        "SHARDCHANNELS [<pattern>]",
        "    Return the currently active shard level channels matching a <pattern> (default: '*').",
        "SHARDNUMSUB [<shardchannel> ...]",
        "    Return the number of subscribers for the specified shard level channel(s)",
        "HELP",
        "    Prints this help.",
    ];
    Reply::Array(
        LINES
            .iter()
            .map(|l| Reply::Simple(Bytes::from_static(l.as_bytes())))
            .collect(),
    )
}
