//! COMMAND and its subcommands, answered from the static command table.

use crate::command::glob::glob_match;
use crate::command::table::{table, Entry, Table};
use crate::command::{Ctx, Handler};
use bytes::Bytes;
use pinnacle_resp::Reply;

/// Handlers of this family.
pub const HANDLERS: &[(&str, Handler)] = &[
    ("command", command),
    ("command|count", count),
    ("command|info", info),
    ("command|docs", docs),
    ("command|getkeys", getkeys),
    ("command|list", list),
];

fn command(_: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    let t = table();
    Reply::Array(t.top.iter().map(|&i| t.info_reply(&t.entries[i])).collect())
}

fn count(_: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    Reply::Integer(table().count() as i64)
}

fn info(_: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let t = table();
    if args.len() == 2 {
        return Reply::Array(t.top.iter().map(|&i| t.info_reply(&t.entries[i])).collect());
    }
    Reply::Array(
        args[2..]
            .iter()
            .map(|name| match t.get_full(name) {
                Some(e) => t.info_reply(e),
                None => Reply::Null,
            })
            .collect(),
    )
}

fn docs(_: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let t = table();
    let pair = |e: &Entry| {
        (
            Reply::Bulk(Bytes::from_static(e.spec.name.as_bytes())),
            t.docs_reply(e),
        )
    };
    if args.len() == 2 {
        return Reply::Map(t.top.iter().map(|&i| pair(&t.entries[i])).collect());
    }
    Reply::Map(
        args[2..]
            .iter()
            .filter_map(|n| t.get_full(n))
            .map(pair)
            .collect(),
    )
}

/// Resolves `args` (a command line) to its entry, descending into a container.
fn resolve<'a>(t: &'a Table, args: &[Bytes]) -> Option<&'a Entry> {
    let e = t.get(&args[0])?;
    if e.is_container() && args.len() >= 2 {
        return t.sub(e, &args[1]);
    }
    Some(e)
}

/// Key positions of the command line `line` as COMMAND GETKEYS computes them.
fn key_positions(line: &[Bytes]) -> Result<(&'static Entry, Vec<usize>), Reply> {
    let t = table();
    let Some(e) = resolve(t, line) else {
        return Err(Reply::error("ERR Invalid command specified"));
    };
    if e.spec.key_specs.is_empty() {
        return Err(Reply::error("ERR The command has no key arguments"));
    }
    let argc = line.len() as i64;
    if (e.spec.arity > 0 && e.spec.arity != argc) || argc < -e.spec.arity {
        return Err(Reply::error(
            "ERR Invalid number of arguments specified for command",
        ));
    }
    match e.spec.key_positions(line) {
        Some(p) if !p.is_empty() || e.spec.has_flag("no_mandatory_keys") => Ok((e, p)),
        _ => Err(Reply::error("ERR Invalid arguments specified for command")),
    }
}

fn getkeys(_: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match key_positions(&args[2..]) {
        Ok((_, pos)) => Reply::Array(
            pos.into_iter()
                .map(|p| Reply::Bulk(args[2 + p].clone()))
                .collect(),
        ),
        Err(r) => r,
    }
}

fn list(_: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    enum Filter {
        All,
        Module,
        AclCat(Vec<u8>),
        Pattern(Bytes),
    }
    let filter = match args.len() {
        2 => Filter::All,
        5 if args[2].eq_ignore_ascii_case(b"filterby") => {
            let kind = &args[3];
            if kind.eq_ignore_ascii_case(b"module") {
                Filter::Module
            } else if kind.eq_ignore_ascii_case(b"aclcat") {
                let mut cat = b"@".to_vec();
                cat.extend(args[4].to_ascii_lowercase());
                Filter::AclCat(cat)
            } else if kind.eq_ignore_ascii_case(b"pattern") {
                Filter::Pattern(args[4].clone())
            } else {
                return Reply::error("ERR syntax error");
            }
        }
        _ => return Reply::error("ERR syntax error"),
    };
    let t = table();
    let mut names = Vec::new();
    let mut consider = |e: &Entry| {
        let keep = match &filter {
            Filter::All => true,
            Filter::Module => false,
            Filter::AclCat(cat) => e
                .spec
                .acl_categories
                .iter()
                .any(|c| c.as_bytes() == &cat[..]),
            Filter::Pattern(p) => glob_match(p, e.spec.name.as_bytes(), true),
        };
        if keep {
            names.push(Reply::Bulk(Bytes::from_static(e.spec.name.as_bytes())));
        }
    };
    for &i in &t.top {
        let e = &t.entries[i];
        consider(e);
        for s in t.subcommands(e) {
            consider(s);
        }
    }
    Reply::Array(names)
}

#[cfg(test)]
mod tests {
    use crate::command::generated::REDIS_COMMANDS;
    use crate::command::table::table;
    use crate::command::testutil::TestNode;
    use pinnacle_resp::{Protocol, Reply};

    /// Parses the fixture's escaped bytes (`\r`, `\n`, `\\`, `\xNN`).
    fn unescape(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && i + 1 < b.len() {
                match b[i + 1] {
                    b'r' => out.push(b'\r'),
                    b'n' => out.push(b'\n'),
                    b'\\' => out.push(b'\\'),
                    b'x' => {
                        let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("hex");
                        out.push(u8::from_str_radix(hex, 16).expect("hex"));
                        i += 2;
                    }
                    other => panic!("bad escape {other}"),
                }
                i += 2;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    /// Every command and subcommand of redis-server 7.0.15: our static data encodes to the
    /// exact COMMAND INFO bytes the real server sent, in RESP2 and RESP3.
    #[test]
    fn static_table_matches_redis_command_info_bytes() {
        let fixture = include_str!("../command/fixtures/command_info.txt");
        let mut specs = std::collections::HashMap::new();
        for s in REDIS_COMMANDS {
            specs.insert(s.name, s);
            for sub in s.subcommands {
                specs.insert(sub.name, sub);
            }
        }
        let mut checked = 0;
        for line in fixture.lines() {
            let mut parts = line.split('\t');
            let (Some(name), Some(r2), Some(r3)) = (parts.next(), parts.next(), parts.next())
            else {
                panic!("bad fixture line");
            };
            let spec = specs
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing from table"));
            let reply = Reply::Array(vec![spec.info_reply_all_subs()]);
            assert_eq!(
                String::from_utf8_lossy(&reply.to_bytes(Protocol::Resp2)),
                String::from_utf8_lossy(&unescape(r2)),
                "RESP2 COMMAND INFO {name}"
            );
            assert_eq!(
                String::from_utf8_lossy(&reply.to_bytes(Protocol::Resp3)),
                String::from_utf8_lossy(&unescape(r3)),
                "RESP3 COMMAND INFO {name}"
            );
            checked += 1;
        }
        assert!(checked > 300, "only {checked} fixture entries");
    }

    #[test]
    fn every_handler_is_described() {
        // Building the table panics on a handler for a command Redis doesn't have.
        let t = table();
        assert!(t.get(b"ping").is_some());
        assert!(t.get(b"client").is_some_and(|c| c.is_container()));
    }

    #[test]
    fn command_info_for_registered_commands() {
        let mut n = TestNode::new();
        assert_eq!(
            n.run(&["COMMAND", "INFO", "ping"]),
            "*1\r\n*10\r\n$4\r\nping\r\n:-1\r\n*1\r\n+fast\r\n:0\r\n:0\r\n:0\r\n*2\r\n+@fast\r\n+@connection\r\n*2\r\n$25\r\nrequest_policy:all_shards\r\n$29\r\nresponse_policy:all_succeeded\r\n*0\r\n*0\r\n"
        );
        assert_eq!(n.run(&["COMMAND", "INFO", "nosuch"]), "*1\r\n$-1\r\n");
        let count = n.run(&["COMMAND", "COUNT"]);
        assert_eq!(count, format!(":{}\r\n", table().count()));
        let all = n.run(&["COMMAND"]);
        assert!(all.starts_with(&format!("*{}\r\n", table().count())));
        // A container lists only the subcommands we implement.
        let client = n.run(&["COMMAND", "INFO", "client"]);
        assert!(client.contains("client|list") && !client.contains("client|tracking"));
        n.resp3();
        assert!(n
            .run(&["COMMAND", "INFO", "ping"])
            .contains("~1\r\n+fast\r\n:0\r\n"));
    }

    #[test]
    fn getkeys_and_list() {
        let mut n = TestNode::new();
        assert_eq!(
            n.run(&["COMMAND", "GETKEYS", "cluster", "keyslot", "x"]),
            "-ERR The command has no key arguments\r\n"
        );
        assert_eq!(
            n.run(&["COMMAND", "GETKEYS", "nosuch", "x"]),
            "-ERR Invalid command specified\r\n"
        );
        assert_eq!(
            n.run(&["COMMAND", "GETKEYS", "get"]),
            "-ERR wrong number of arguments for 'command|getkeys' command\r\n"
        );
        if table().get(b"mset").is_some() {
            assert_eq!(
                n.run(&["COMMAND", "GETKEYS", "mset", "a", "1", "b", "2"]),
                "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
            );
            assert_eq!(
                n.run(&["COMMAND", "GETKEYS", "set", "a"]),
                "-ERR Invalid number of arguments specified for command\r\n"
            );
        }
        let l = n.run(&["COMMAND", "LIST", "FILTERBY", "PATTERN", "cl*"]);
        assert!(l.contains("$7\r\ncluster\r\n") && l.contains("$12\r\ncluster|info\r\n"));
        assert!(!l.contains("ping"));
        let l = n.run(&["COMMAND", "LIST", "FILTERBY", "ACLCAT", "connection"]);
        assert!(l.contains("$4\r\nping\r\n") && !l.contains("cluster|info"));
        assert_eq!(
            n.run(&["COMMAND", "LIST", "FILTERBY", "bogus", "x"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            n.run(&["COMMAND", "LIST", "FILTERBY", "MODULE", "x"]),
            "*0\r\n"
        );
        let docs = n.run(&["COMMAND", "DOCS", "ping"]);
        assert!(docs.starts_with("*2\r\n$4\r\nping\r\n*"), "{docs}");
        assert!(docs.contains("$7\r\nsummary\r\n$"));
        assert_eq!(n.run(&["COMMAND", "DOCS", "nosuch"]), "*0\r\n");
    }
}
