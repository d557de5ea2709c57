//! ACL CAT/DELUSER/DRYRUN/GENPASS/GETUSER/HELP/LIST/LOAD/LOG/SAVE/SETUSER/USERS/WHOAMI, and
//! the NOPERM replies and ACL LOG entries of the request pipeline's permission check.
//!
//! These commands change only this node's users: they are never proposed through Raft (ACLs
//! are node-local configuration, as in Redis Cluster).

use crate::acl::catalog::{catalog, category_bit, CATEGORIES};
use crate::acl::log::{Entry, Reason};
use crate::acl::user::{has_spaces, merge_selector_args, Selector};
use crate::acl::Denied;
use crate::command::spec::CommandSpec;
use crate::command::{c_str, error_bytes, Ctx, Handler, Server};
use bytes::Bytes;
use pinnacle_resp::Reply;

/// Handlers of this family.
pub const HANDLERS: &[(&str, Handler)] = &[
    ("acl|cat", cat),
    ("acl|deluser", deluser),
    ("acl|dryrun", dryrun),
    ("acl|genpass", genpass),
    ("acl|getuser", getuser),
    ("acl|help", help),
    ("acl|list", list),
    ("acl|load", load),
    ("acl|log", log),
    ("acl|save", save),
    ("acl|setuser", setuser),
    ("acl|users", users),
    ("acl|whoami", whoami),
];

fn bulk(s: impl Into<String>) -> Reply {
    Reply::Bulk(Bytes::from(s.into()))
}

/// Adds an ACL LOG entry for the calling client.
pub fn log_denial(ctx: &Ctx<'_>, reason: Reason, object: Vec<u8>, username: Vec<u8>) {
    let context = if ctx.client.multi.is_some() {
        "multi"
    } else {
        "toplevel"
    };
    let max = ctx
        .server
        .config
        .get_i64("acllog-max-len")
        .unwrap_or(128)
        .max(0) as usize;
    ctx.server.acl.log(
        Entry {
            count: 1,
            reason,
            context,
            object,
            username,
            ctime_ms: Server::unix_ms(),
            client_info: ctx.client.handle.info_line(),
        },
        max,
    );
}

/// The pipeline's reply to a refused request: logs it and returns Redis's NOPERM error.
pub fn denied(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes], d: Denied) -> Reply {
    let (reason, object) = match d {
        Denied::Command => (Reason::Command, spec.name.as_bytes().to_vec()),
        Denied::Key(i) => (
            Reason::Key,
            args.get(i).map(|a| a.to_vec()).unwrap_or_default(),
        ),
        Denied::Channel(i) => (
            Reason::Channel,
            args.get(i).map(|a| a.to_vec()).unwrap_or_default(),
        ),
    };
    let user = ctx.client.user.to_vec();
    log_denial(ctx, reason, object, user);
    Reply::error(d.error(spec.name))
}

/// Applies a `CONFIG SET requirepass` to the default user before it is shown or changed.
fn sync(ctx: &Ctx<'_>) {
    ctx.server
        .acl
        .sync_requirepass(ctx.server.config.requirepass());
}

fn setuser(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    sync(ctx);
    let name = &args[2];
    if has_spaces(name) {
        return Reply::error("ERR Usernames can't contain spaces or null characters");
    }
    let ops: Vec<&[u8]> = args[3..].iter().map(|a| &a[..]).collect();
    let rules = match merge_selector_args(&ops) {
        Ok(r) => r,
        Err(i) => {
            return error_bytes(&[
                b"ERR Unmatched parenthesis in acl selector starting at '",
                c_str(&args[3 + i], usize::MAX),
                b"'.",
            ]);
        }
    };
    match ctx.server.acl.set_user(name, &rules) {
        Ok(()) => Reply::ok(),
        Err((rule, e)) => error_bytes(&[
            b"ERR Error in ACL SETUSER modifier '",
            c_str(&rule, usize::MAX),
            b"': ",
            e.to_string().as_bytes(),
        ]),
    }
}

fn deluser(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if args[2..].iter().any(|a| &a[..] == b"default") {
        return Reply::error("ERR The 'default' user cannot be removed");
    }
    let mut deleted = 0;
    for name in &args[2..] {
        if ctx.server.acl.del_user(name) {
            deleted += 1;
            kill_clients_of(ctx, &[name.to_vec()]);
        }
    }
    Reply::Integer(deleted)
}

/// Closes every connection authenticated as one of `names` (after this reply, for the
/// caller's own), as Redis does when a user is deleted or replaced.
fn kill_clients_of(ctx: &mut Ctx<'_>, names: &[Vec<u8>]) {
    let handles: Vec<_> = ctx.server.clients.lock().values().cloned().collect();
    for h in handles {
        let user = h.user.lock().clone();
        if names.iter().any(|n| n[..] == user[..]) {
            if h.id == ctx.client.id {
                ctx.client.close_after_reply = true;
            } else {
                h.kill();
            }
        }
    }
    if names.iter().any(|n| n[..] == ctx.client.user[..]) {
        ctx.client.set_user(Bytes::from_static(b"default"));
        ctx.client.authenticated = false;
    }
}

fn selector_fields(s: &Selector) -> Vec<(Reply, Reply)> {
    vec![
        (bulk("commands"), bulk(s.describe_commands())),
        (bulk("keys"), bulk(s.describe_keys())),
        (bulk("channels"), bulk(s.describe_channels())),
    ]
}

fn getuser(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    sync(ctx);
    let Some(u) = ctx.server.acl.get_user(&args[2]) else {
        return Reply::Null;
    };
    let mut m = vec![
        (
            bulk("flags"),
            Reply::Set(u.flags().into_iter().map(bulk).collect()),
        ),
        (
            bulk("passwords"),
            Reply::Array(u.passwords.iter().map(|p| bulk(p.clone())).collect()),
        ),
    ];
    m.extend(selector_fields(&u.selectors[0]));
    m.push((
        bulk("selectors"),
        Reply::Array(
            u.selectors[1..]
                .iter()
                .map(|s| Reply::Map(selector_fields(s)))
                .collect(),
        ),
    ));
    Reply::Map(m)
}

fn list(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    sync(ctx);
    Reply::Array(
        ctx.server
            .acl
            .users()
            .iter()
            .map(|u| {
                let mut line = b"user ".to_vec();
                line.extend_from_slice(&u.name);
                line.push(b' ');
                line.extend_from_slice(u.describe().as_bytes());
                Reply::Bulk(Bytes::from(line))
            })
            .collect(),
    )
}

fn users(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    Reply::Array(
        ctx.server
            .acl
            .users()
            .into_iter()
            .map(|u| Reply::Bulk(Bytes::from(u.name)))
            .collect(),
    )
}

fn whoami(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    Reply::Bulk(ctx.client.user.clone())
}

const NO_FILE: &str = "ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";

fn load(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    if ctx.server.acl.file().is_none() {
        return Reply::error(NO_FILE);
    }
    match ctx.server.acl.load_file() {
        Ok(replaced) => {
            kill_clients_of(ctx, &replaced);
            Reply::ok()
        }
        Err(e) => error_bytes(&[b"ERR ", e.as_bytes()]),
    }
}

fn save(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    sync(ctx);
    let Some(path) = ctx.server.acl.file() else {
        return Reply::error(NO_FILE);
    };
    match crate::acl::file::save(path, &ctx.server.acl.users()) {
        Ok(()) => Reply::ok(),
        Err(e) => {
            tracing::warn!("ACL SAVE to {}: {e}", path.display());
            Reply::error("ERR There was an error trying to save the ACLs. Please check the server logs for more information")
        }
    }
}

fn cat(_: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match args.len() {
        2 => Reply::Array(CATEGORIES.iter().map(|c| bulk(*c)).collect()),
        3 => match category_bit(&args[2]) {
            Some(bit) => Reply::Array(catalog().in_category(bit).into_iter().map(bulk).collect()),
            None => error_bytes(&[b"ERR Unknown category '", c_str(&args[2], 128), b"'"]),
        },
        _ => subcommand_syntax_error(&args[1]),
    }
}

fn subcommand_syntax_error(sub: &[u8]) -> Reply {
    error_bytes(&[
        b"ERR unknown subcommand or wrong number of arguments for '",
        c_str(sub, 128),
        b"'. Try ACL HELP.",
    ])
}

fn parse_long(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn genpass(_: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let bits = match args.len() {
        2 => 256,
        3 => match parse_long(&args[2]) {
            Some(b) => b,
            None => return Reply::error("ERR value is not an integer or out of range"),
        },
        _ => return subcommand_syntax_error(&args[1]),
    };
    if bits <= 0 || bits > 4096 {
        return Reply::error("ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096");
    }
    let chars = ((bits + 3) / 4) as usize;
    let mut hex = String::new();
    while hex.len() < chars {
        hex.push_str(&crate::command::state::random_hex40());
    }
    hex.truncate(chars);
    bulk(hex)
}

fn log(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut count = 10i64;
    match args.len() {
        2 => {}
        3 => {
            if args[2].eq_ignore_ascii_case(b"reset") {
                ctx.server.acl.log_reset();
                return Reply::ok();
            }
            match parse_long(&args[2]) {
                Some(n) => count = n.max(0),
                None => return Reply::error("ERR value is not an integer or out of range"),
            }
        }
        _ => return subcommand_syntax_error(&args[1]),
    }
    let now = Server::unix_ms();
    Reply::Array(
        ctx.server
            .acl
            .log_entries(count as usize)
            .into_iter()
            .map(|e| {
                let age = now.saturating_sub(e.ctime_ms) as f64 / 1000.0;
                Reply::Map(vec![
                    (bulk("count"), Reply::Integer(e.count as i64)),
                    (bulk("reason"), bulk(e.reason_name())),
                    (bulk("context"), bulk(e.context)),
                    (bulk("object"), Reply::Bulk(Bytes::from(e.object))),
                    (bulk("username"), Reply::Bulk(Bytes::from(e.username))),
                    (bulk("age-seconds"), Reply::Double(age)),
                    (bulk("client-info"), bulk(e.client_info)),
                ])
            })
            .collect(),
    )
}

/// Redis's `lookupCommand` over the full command set: a container with a second argument
/// resolves to that subcommand.
fn lookup_spec(args: &[Bytes]) -> Option<&'static CommandSpec> {
    let cat = catalog();
    let id = cat.lookup(&args[0])?;
    if cat.cmds[id].subs.is_empty() || args.len() == 1 {
        return Some(cat.cmds[id].spec);
    }
    let mut full = args[0].to_vec();
    full.push(b'|');
    full.extend_from_slice(&args[1]);
    let sid = cat.lookup(&full)?;
    (cat.cmds[sid].parent == Some(id)).then_some(cat.cmds[sid].spec)
}

fn dryrun(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    sync(ctx);
    if ctx.server.acl.get_user(&args[2]).is_none() {
        return error_bytes(&[b"ERR User '", c_str(&args[2], usize::MAX), b"' not found"]);
    }
    let cmd_args = &args[3..];
    let Some(spec) = lookup_spec(cmd_args) else {
        return error_bytes(&[
            b"ERR Command '",
            c_str(&args[3], usize::MAX),
            b"' not found",
        ]);
    };
    let argc = cmd_args.len() as i64;
    if (spec.arity > 0 && spec.arity != argc) || argc < -spec.arity {
        return Reply::error(format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        ));
    }
    match ctx.server.acl.check(&args[2], spec, cmd_args) {
        Ok(()) => Reply::ok(),
        Err(Denied::Command) => bulk(format!(
            "This user has no permissions to run the '{}' command",
            spec.name
        )),
        Err(Denied::Key(i)) => {
            let mut m = b"This user has no permissions to access the '".to_vec();
            m.extend_from_slice(&cmd_args[i]);
            m.extend_from_slice(b"' key");
            Reply::Bulk(Bytes::from(m))
        }
        Err(Denied::Channel(i)) => {
            let mut m = b"This user has no permissions to access the '".to_vec();
            m.extend_from_slice(&cmd_args[i]);
            m.extend_from_slice(b"' channel");
            Reply::Bulk(Bytes::from(m))
        }
    }
}

fn help(_: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    const LINES: &[&str] = &[
        "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CAT [<category>]",
        "    List all commands that belong to <category>, or all command categories",
        "    when no category is specified.",
        "DELUSER <username> [<username> ...]",
        "    Delete a list of users.",
        "DRYRUN <username> <command> [<arg> ...]",
        "    Returns whether the user can execute the given command without executing the command.",
        "GETUSER <username>",
        "    Get the user's details.",
        "GENPASS [<bits>]",
        "    Generate a secure 256-bit user password. The optional `bits` argument can",
        "    be used to specify a different size.",
        "LIST",
        "    Show users details in config file format.",
        "LOAD",
        "    Reload users from the ACL file.",
        "LOG [<count> | RESET]",
        "    Show the ACL log entries.",
        "SAVE",
        "    Save the current config to the ACL file.",
        "SETUSER <username> <attribute> [<attribute> ...]",
        "    Create or modify a user with the specified attributes.",
        "USERS",
        "    List all the registered usernames.",
        "WHOAMI",
        "    Return the current connection username.",
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

#[cfg(test)]
mod tests {
    use crate::command::testutil::TestNode;

    #[test]
    fn setuser_auth_and_noperm() {
        let mut n = TestNode::new();
        assert_eq!(
            n.run(&["ACL", "SETUSER", "u", "on", ">pw", "+get", "~k*"]),
            "+OK\r\n"
        );
        assert_eq!(
            n.run(&["AUTH", "u", "bad"]),
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        );
        assert_eq!(n.run(&["AUTH", "u", "pw"]), "+OK\r\n");
        assert_eq!(
            n.run(&["ACL", "WHOAMI"]),
            "-NOPERM this user has no permissions to run the 'acl|whoami' command\r\n"
        );
        assert_eq!(n.run(&["GET", "k1"]), "$-1\r\n");
        assert_eq!(
            n.run(&["GET", "x"]),
            "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
        );
        assert_eq!(
            n.run(&["SET", "k1", "v"]),
            "-NOPERM this user has no permissions to run the 'set' command\r\n"
        );
        assert_eq!(n.run(&["AUTH", "default", "x"]), "+OK\r\n");
        let log = n.run(&["ACL", "LOG"]);
        assert!(log.starts_with("*4\r\n"), "{log}");
        assert!(log.contains("$6\r\nreason\r\n$7\r\ncommand\r\n"), "{log}");
        assert_eq!(
            n.run(&["ACL", "SETUSER", "u", "+nosuch"]),
            "-ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL\r\n"
        );
        assert_eq!(n.run(&["ACL", "DELUSER", "u", "v"]), ":1\r\n");
        assert_eq!(
            n.run(&["ACL", "DELUSER", "default"]),
            "-ERR The 'default' user cannot be removed\r\n"
        );
        assert_eq!(n.run(&["ACL", "USERS"]), "*1\r\n$7\r\ndefault\r\n");
        assert_eq!(
            n.run(&["ACL", "SETUSER", "w", "on", "(+get"]),
            "-ERR Unmatched parenthesis in acl selector starting at '(+get'.\r\n"
        );
        assert_eq!(n.run(&["ACL", "GENPASS", "5"]).len(), "$2\r\nab\r\n".len());
    }
}
