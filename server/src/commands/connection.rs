//! Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET, READONLY, READWRITE,
//! ASKING.

use crate::command::{c_str, error_bytes, Ctx, Handler, ReplyMode};
use bytes::Bytes;
use pinnacle_resp::{Protocol, Reply};

/// Handlers of this family.
pub const HANDLERS: &[(&str, Handler)] = &[
    ("ping", ping),
    ("echo", echo),
    ("hello", hello),
    ("auth", auth),
    ("select", select),
    ("quit", quit),
    ("reset", reset),
    ("readonly", readonly),
    ("readwrite", readwrite),
    ("asking", asking),
];

/// The version we report to clients (HELLO, INFO): the Redis release we match.
pub const REDIS_VERSION: &str = "7.0.15";

fn ping(_: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match args.len() {
        1 => Reply::simple("PONG"),
        2 => Reply::Bulk(args[1].clone()),
        _ => Reply::error("ERR wrong number of arguments for 'ping' command"),
    }
}

fn echo(_: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Reply::Bulk(args[1].clone())
}

/// Authenticates the connection as `user` if `pass` opens it (Redis's `ACLAuthenticateUser`);
/// a failure goes to the ACL LOG with the command as sent (`AUTH`, `hello`) as its object.
fn authenticate(ctx: &mut Ctx<'_>, cmd: &[u8], user: &Bytes, pass: &[u8]) -> bool {
    ctx.server
        .acl
        .sync_requirepass(ctx.server.config.requirepass());
    if ctx.server.acl.check_credentials(user, pass) {
        ctx.client.authenticated = true;
        ctx.client.set_user(user.clone());
        true
    } else {
        crate::commands::acl::log_denial(
            ctx,
            crate::acl::log::Reason::Auth,
            cmd.to_vec(),
            user.to_vec(),
        );
        false
    }
}

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

fn auth(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (user, pass) = match args.len() {
        2 => {
            ctx.server
                .acl
                .sync_requirepass(ctx.server.config.requirepass());
            let nopass = ctx
                .server
                .acl
                .get_user(b"default")
                .is_some_and(|d| d.nopass);
            if nopass {
                return Reply::error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
            }
            (Bytes::from_static(b"default"), &args[1][..])
        }
        3 => (args[1].clone(), &args[2][..]),
        _ => return Reply::error("ERR syntax error"),
    };
    if authenticate(ctx, &args[0], &user, pass) {
        Reply::ok()
    } else {
        Reply::error(WRONGPASS)
    }
}

/// True if every byte is a printable, non-space ASCII character (Redis's name/info rule).
pub fn valid_name(b: &[u8]) -> bool {
    b.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

fn hello(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut proto = None;
    let mut i = 1;
    if args.len() > 1 {
        let v: i64 = match std::str::from_utf8(&args[1])
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(v) => v,
            None => return Reply::error("ERR Protocol version is not an integer or out of range"),
        };
        if !(2..=3).contains(&v) {
            return Reply::error("NOPROTO unsupported protocol version");
        }
        proto = Some(if v == 3 {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        });
        i = 2;
    }
    let mut creds = None;
    let mut name = None;
    while i < args.len() {
        let more = args.len() - i - 1;
        if args[i].eq_ignore_ascii_case(b"auth") && more >= 2 {
            creds = Some((args[i + 1].clone(), args[i + 2].clone()));
            i += 3;
        } else if args[i].eq_ignore_ascii_case(b"setname") && more >= 1 {
            // Redis validates the name while parsing, before authenticating.
            if !valid_name(&args[i + 1]) {
                return Reply::error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            name = Some(args[i + 1].clone());
            i += 2;
        } else {
            return error_bytes(&[
                b"ERR Syntax error in HELLO option '",
                c_str(&args[i], usize::MAX),
                b"'",
            ]);
        }
    }
    if let Some((user, pass)) = creds {
        if !authenticate(ctx, &args[0], &user, &pass) {
            return Reply::error(WRONGPASS);
        }
    }
    if !ctx.client.authenticated {
        // redis-server 7.0.15's exact text (redis-wire.md §7.1 quotes a later version with `<proto>`).
        return Reply::error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(n) = name {
        ctx.client.name = if n.is_empty() { None } else { Some(n) };
    }
    if let Some(p) = proto {
        ctx.client.protocol = p;
    }
    let proto_num = if ctx.client.protocol == Protocol::Resp3 {
        3
    } else {
        2
    };
    let b = |s: &'static str| Reply::Bulk(Bytes::from_static(s.as_bytes()));
    Reply::Map(vec![
        (b("server"), b("redis")),
        (b("version"), b(REDIS_VERSION)),
        (b("proto"), Reply::Integer(proto_num)),
        (b("id"), Reply::Integer(ctx.client.id as i64)),
        (b("mode"), b("cluster")),
        (b("role"), b("master")),
        (b("modules"), Reply::Array(vec![])),
    ])
}

fn select(_: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    {
        None => Reply::error("ERR value is not an integer or out of range"),
        Some(0) => Reply::ok(),
        Some(_) => Reply::error("ERR SELECT is not allowed in cluster mode"),
    }
}

fn quit(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    ctx.client.close_after_reply = true;
    Reply::ok()
}

fn reset(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    ctx.server.remove_monitor(ctx.client);
    let c = &mut *ctx.client;
    c.protocol = Protocol::Resp2;
    c.name = None;
    c.reply_mode = ReplyMode::On;
    c.readonly = false;
    c.asking = false;
    c.no_evict = false;
    c.set_user(Bytes::from_static(b"default"));
    c.authenticated = !ctx.server.acl_auth_required();
    Reply::simple("RESET")
}

fn readonly(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    ctx.client.readonly = true;
    Reply::ok()
}

fn readwrite(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    ctx.client.readonly = false;
    Reply::ok()
}

fn asking(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    ctx.client.asking = true;
    Reply::ok()
}

#[cfg(test)]
mod tests {
    use crate::command::testutil::TestNode;

    #[test]
    fn ping_and_echo() {
        let mut n = TestNode::new();
        assert_eq!(n.run(&["PING"]), "+PONG\r\n");
        assert_eq!(n.run(&["ping", "hi"]), "$2\r\nhi\r\n");
        assert_eq!(n.run(&["ECHO", "hello world"]), "$11\r\nhello world\r\n");
        assert_eq!(
            n.run(&["ECHO"]),
            "-ERR wrong number of arguments for 'echo' command\r\n"
        );
    }

    #[test]
    fn hello_replies_in_the_new_protocol() {
        let mut n = TestNode::new();
        let id = n.client.id;
        assert_eq!(
            n.run(&["HELLO", "3"]),
            format!("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:{id}\r\n$4\r\nmode\r\n$7\r\ncluster\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n")
        );
        assert!(n.run(&["HELLO"]).starts_with("%7\r\n"));
        assert!(n.run(&["HELLO", "2"]).starts_with("*14\r\n$6\r\nserver"));
        assert_eq!(
            n.run(&["HELLO", "4"]),
            "-NOPROTO unsupported protocol version\r\n"
        );
        assert_eq!(
            n.run(&["HELLO", "x"]),
            "-ERR Protocol version is not an integer or out of range\r\n"
        );
        assert_eq!(
            n.run(&["HELLO", "3", "FOO"]),
            "-ERR Syntax error in HELLO option 'FOO'\r\n"
        );
        assert!(n
            .run(&["HELLO", "2", "SETNAME", "conn1"])
            .starts_with("*14"));
        assert_eq!(n.run(&["CLIENT", "GETNAME"]), "$5\r\nconn1\r\n");
    }

    #[test]
    fn auth_with_and_without_password() {
        let mut n = TestNode::new();
        assert_eq!(
            n.run(&["AUTH", "x"]),
            "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"
        );
        let mut n = TestNode::with_config(&[("requirepass", "secret")]);
        assert_eq!(n.run(&["PING"]), "-NOAUTH Authentication required.\r\n");
        assert_eq!(
            n.run(&["HELLO", "3"]),
            "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n"
        );
        assert_eq!(
            n.run(&["AUTH", "nope"]),
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        );
        assert_eq!(n.run(&["AUTH", "secret"]), "+OK\r\n");
        assert_eq!(n.run(&["PING"]), "+PONG\r\n");
        assert_eq!(n.run(&["RESET"]), "+RESET\r\n");
        assert_eq!(n.run(&["PING"]), "-NOAUTH Authentication required.\r\n");
        assert!(n
            .run(&["HELLO", "3", "AUTH", "default", "secret"])
            .starts_with("%7"));
        assert_eq!(n.run(&["AUTH", "a", "b", "c"]), "-ERR syntax error\r\n");
    }

    #[test]
    fn select_quit_and_cluster_flags() {
        let mut n = TestNode::new();
        assert_eq!(n.run(&["SELECT", "0"]), "+OK\r\n");
        assert_eq!(
            n.run(&["SELECT", "1"]),
            "-ERR SELECT is not allowed in cluster mode\r\n"
        );
        assert_eq!(
            n.run(&["SELECT", "x"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(n.run(&["READONLY"]), "+OK\r\n");
        assert_eq!(n.run(&["READWRITE"]), "+OK\r\n");
        assert_eq!(n.run(&["ASKING"]), "+OK\r\n");
        assert_eq!(n.run_raw(&["QUIT"]), (b"+OK\r\n".to_vec(), true));
    }
}
