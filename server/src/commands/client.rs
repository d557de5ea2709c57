//! CLIENT subcommands: ID, SETNAME, GETNAME, LIST, INFO, KILL, SETINFO, REPLY, NO-EVICT.

use super::connection::valid_name;
use crate::command::{c_str, error_bytes, ClientHandle, Ctx, Handler, ReplyMode};
use bytes::Bytes;
use pinnacle_resp::Reply;
use std::sync::Arc;

/// Handlers of this family.
pub const HANDLERS: &[(&str, Handler)] = &[
    ("client|id", id),
    ("client|setname", setname),
    ("client|getname", getname),
    ("client|list", list),
    ("client|info", info),
    ("client|kill", kill),
    ("client|setinfo", setinfo),
    ("client|reply", reply),
    ("client|no-evict", no_evict),
];

fn id(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    Reply::Integer(ctx.client.id as i64)
}

fn setname(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if !valid_name(&args[2]) {
        return Reply::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        );
    }
    ctx.client.name = if args[2].is_empty() {
        None
    } else {
        Some(args[2].clone())
    };
    Reply::ok()
}

fn getname(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    match &ctx.client.name {
        Some(n) => Reply::Bulk(n.clone()),
        None => Reply::Null,
    }
}

/// Refreshes the caller's own CLIENT LIST fields so it sees its current command.
fn publish_self(ctx: &mut Ctx<'_>, cmd: &'static str) {
    ctx.client.last_cmd = cmd;
    ctx.client.publish(0, 0);
}

/// The client type a `TYPE` filter names, in Redis's spelling (`slave` is `replica`);
/// `Err` is Redis's error for an unknown one.
fn client_type(t: &[u8]) -> Result<&'static str, Reply> {
    for (name, kind) in [
        (&b"normal"[..], "normal"),
        (b"master", "master"),
        (b"replica", "replica"),
        (b"slave", "replica"),
        (b"pubsub", "pubsub"),
    ] {
        if t.eq_ignore_ascii_case(name) {
            return Ok(kind);
        }
    }
    Err(error_bytes(&[
        b"ERR Unknown client type '",
        c_str(t, usize::MAX),
        b"'",
    ]))
}

fn list(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut ids: Option<Vec<u64>> = None;
    let mut kind: Option<&'static str> = None;
    let mut i = 2;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"type") && i + 1 < args.len() {
            match client_type(&args[i + 1]) {
                Ok(k) => kind = Some(k),
                Err(e) => return e,
            }
            i += 2;
        } else if args[i].eq_ignore_ascii_case(b"id") && i + 1 < args.len() {
            let mut v = Vec::new();
            for a in &args[i + 1..] {
                match std::str::from_utf8(a)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                {
                    Some(n) => v.push(n as u64),
                    None => return Reply::error("ERR Invalid client ID"),
                }
            }
            ids = Some(v);
            i = args.len();
        } else {
            return Reply::error("ERR syntax error");
        }
    }
    publish_self(ctx, "client|list");
    let clients: Vec<Arc<ClientHandle>> = ctx.server.clients.lock().values().cloned().collect();
    let mut out = String::new();
    for c in clients {
        if ids.as_ref().is_some_and(|ids| !ids.contains(&c.id))
            || kind.is_some_and(|k| k != c.kind())
        {
            continue;
        }
        out.push_str(&c.info_line());
        out.push('\n');
    }
    Reply::Verbatim("txt", Bytes::from(out))
}

fn info(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    publish_self(ctx, "client|info");
    let mut line = ctx.client.handle.info_line();
    line.push('\n');
    Reply::Verbatim("txt", Bytes::from(line))
}

/// CLIENT KILL filters.
#[derive(Default)]
struct KillFilter {
    id: Option<u64>,
    addr: Option<Bytes>,
    laddr: Option<Bytes>,
    kind: Option<&'static str>,
    skipme: bool,
}

fn kill(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let clients: Vec<Arc<ClientHandle>> = ctx.server.clients.lock().values().cloned().collect();
    if args.len() == 3 {
        // Old form: CLIENT KILL addr:port.
        return match clients.iter().find(|c| c.addr.as_bytes() == &args[2][..]) {
            Some(c) => {
                c.kill();
                Reply::ok()
            }
            None => Reply::error("ERR No such client"),
        };
    }
    let mut f = KillFilter {
        skipme: true,
        ..Default::default()
    };
    let mut i = 2;
    while i < args.len() {
        if i + 1 >= args.len() {
            return Reply::error("ERR syntax error");
        }
        let (opt, val) = (&args[i], &args[i + 1]);
        if opt.eq_ignore_ascii_case(b"id") {
            match std::str::from_utf8(val)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            {
                Some(n) if n > 0 => f.id = Some(n as u64),
                _ => return Reply::error("ERR client-id should be greater than 0"),
            }
        } else if opt.eq_ignore_ascii_case(b"type") {
            match client_type(val) {
                Ok(k) => f.kind = Some(k),
                Err(e) => return e,
            }
        } else if opt.eq_ignore_ascii_case(b"addr") {
            f.addr = Some(val.clone());
        } else if opt.eq_ignore_ascii_case(b"laddr") {
            f.laddr = Some(val.clone());
        } else if opt.eq_ignore_ascii_case(b"user") {
            if &val[..] != b"default" {
                return error_bytes(&[b"ERR No such user '", c_str(val, usize::MAX), b"'"]);
            }
        } else if opt.eq_ignore_ascii_case(b"skipme") {
            if val.eq_ignore_ascii_case(b"yes") {
                f.skipme = true;
            } else if val.eq_ignore_ascii_case(b"no") {
                f.skipme = false;
            } else {
                return Reply::error("ERR syntax error");
            }
        } else {
            return Reply::error("ERR syntax error");
        }
        i += 2;
    }
    let mut killed = 0;
    for c in clients {
        let skip = (f.skipme && c.id == ctx.client.id)
            || f.id.is_some_and(|id| id != c.id)
            || f.addr.as_ref().is_some_and(|a| &a[..] != c.addr.as_bytes())
            || f.laddr
                .as_ref()
                .is_some_and(|a| &a[..] != c.laddr.as_bytes())
            || f.kind.is_some_and(|k| k != c.kind());
        if !skip {
            if c.id == ctx.client.id {
                ctx.client.close_after_reply = true;
            } else {
                c.kill();
            }
            killed += 1;
        }
    }
    Reply::Integer(killed)
}

fn setinfo(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (attr, val) = (&args[2], &args[3]);
    let is_name = attr.eq_ignore_ascii_case(b"lib-name");
    if !is_name && !attr.eq_ignore_ascii_case(b"lib-ver") {
        return error_bytes(&[b"ERR Unrecognized option '", c_str(attr, usize::MAX), b"'"]);
    }
    if !valid_name(val) {
        return error_bytes(&[
            b"ERR ",
            c_str(attr, usize::MAX),
            b" cannot contain spaces, newlines or special characters.",
        ]);
    }
    let v = if val.is_empty() {
        None
    } else {
        Some(val.clone())
    };
    if is_name {
        ctx.client.lib_name = v;
    } else {
        ctx.client.lib_ver = v;
    }
    Reply::ok()
}

fn reply(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mode = &args[2];
    if mode.eq_ignore_ascii_case(b"on") {
        ctx.client.reply_mode = ReplyMode::On;
        Reply::ok()
    } else if mode.eq_ignore_ascii_case(b"off") {
        ctx.client.reply_mode = ReplyMode::Off;
        Reply::ok()
    } else if mode.eq_ignore_ascii_case(b"skip") {
        if ctx.client.reply_mode != ReplyMode::Off {
            ctx.client.reply_mode = ReplyMode::SkipNext;
        }
        Reply::ok()
    } else {
        Reply::error("ERR syntax error")
    }
}

fn no_evict(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if args[2].eq_ignore_ascii_case(b"on") {
        ctx.client.no_evict = true;
    } else if args[2].eq_ignore_ascii_case(b"off") {
        ctx.client.no_evict = false;
    } else {
        return Reply::error("ERR syntax error");
    }
    Reply::ok()
}

#[cfg(test)]
mod tests {
    use crate::command::testutil::TestNode;

    #[test]
    fn names_and_ids() {
        let mut n = TestNode::new();
        assert_eq!(n.run(&["CLIENT", "ID"]), format!(":{}\r\n", n.client.id));
        assert_eq!(n.run(&["CLIENT", "GETNAME"]), "$-1\r\n");
        assert_eq!(
            n.run(&["CLIENT", "SETNAME", "a b"]),
            "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
        );
        assert_eq!(n.run(&["CLIENT", "SETNAME", "app"]), "+OK\r\n");
        assert_eq!(n.run(&["client", "getname"]), "$3\r\napp\r\n");
        n.resp3();
        assert_eq!(n.run(&["CLIENT", "SETNAME", ""]), "+OK\r\n");
        assert_eq!(n.run(&["CLIENT", "GETNAME"]), "_\r\n");
    }

    #[test]
    fn setinfo_rules() {
        let mut n = TestNode::new();
        assert_eq!(
            n.run(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]),
            "+OK\r\n"
        );
        assert_eq!(n.run(&["CLIENT", "SETINFO", "lib-ver", "8.1.0"]), "+OK\r\n");
        assert_eq!(
            n.run(&["CLIENT", "SETINFO", "foo", "x"]),
            "-ERR Unrecognized option 'foo'\r\n"
        );
        assert_eq!(
            n.run(&["CLIENT", "SETINFO", "LIB-NAME", "a b"]),
            "-ERR LIB-NAME cannot contain spaces, newlines or special characters.\r\n"
        );
        let info = n.run(&["CLIENT", "INFO"]);
        assert!(info.contains("lib-name=redis-py lib-ver=8.1.0"), "{info}");
    }

    #[test]
    fn list_info_and_kill() {
        let mut n = TestNode::new();
        let mut other = n.other_client();
        let list = n.run(&["CLIENT", "LIST"]);
        assert_eq!(list.matches(" addr=").count(), 2, "{list}");
        assert!(list.contains("cmd=client|list"));
        n.resp3();
        assert!(n.run(&["CLIENT", "INFO"]).starts_with("="));
        assert_eq!(n.run(&["CLIENT", "LIST", "foo"]), "-ERR syntax error\r\n");
        assert_eq!(
            n.run(&["CLIENT", "LIST", "ID", "5", "x"]),
            "-ERR Invalid client ID\r\n"
        );
        // Any integer is accepted as an id; one that matches no client lists nothing.
        assert_eq!(n.run(&["CLIENT", "LIST", "ID", "0"]), "=4\r\ntxt:\r\n");
        assert_eq!(
            n.run(&["CLIENT", "KILL", "1.2.3.4:5"]),
            "-ERR No such client\r\n"
        );
        assert_eq!(
            n.run(&["CLIENT", "KILL", "ID", "x"]),
            "-ERR client-id should be greater than 0\r\n"
        );
        assert_eq!(
            n.run(&["CLIENT", "KILL", "TYPE", "bogus"]),
            "-ERR Unknown client type 'bogus'\r\n"
        );
        let id = other.id.to_string();
        assert_eq!(n.run(&["CLIENT", "KILL", "ID", &id]), ":1\r\n");
        assert!(other.handle.is_killed());
        assert_eq!(n.run_as(&mut other, &["PING"]), "+PONG\r\n");
    }

    #[test]
    fn reply_modes() {
        let mut n = TestNode::new();
        assert_eq!(n.run(&["CLIENT", "REPLY", "OFF"]), "");
        assert_eq!(n.run(&["PING"]), "");
        assert_eq!(n.run(&["CLIENT", "REPLY", "ON"]), "+OK\r\n");
        assert_eq!(n.run(&["CLIENT", "REPLY", "SKIP"]), "");
        assert_eq!(n.run(&["PING"]), "");
        assert_eq!(n.run(&["PING"]), "+PONG\r\n");
        assert_eq!(n.run(&["CLIENT", "REPLY", "bad"]), "-ERR syntax error\r\n");
        assert_eq!(n.run(&["CLIENT", "NO-EVICT", "on"]), "+OK\r\n");
        assert_eq!(
            n.run(&["CLIENT", "NO-EVICT", "maybe"]),
            "-ERR syntax error\r\n"
        );
    }
}
