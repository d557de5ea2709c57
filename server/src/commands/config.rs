//! CONFIG GET / SET / RESETSTAT.

use crate::command::{Ctx, Handler};
use bytes::Bytes;
use pinnacle_resp::Reply;

/// Handlers of this family.
pub const HANDLERS: &[(&str, Handler)] = &[
    ("config|get", get),
    ("config|set", set),
    ("config|resetstat", resetstat),
];

fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let patterns: Vec<&[u8]> = args[2..].iter().map(|a| &a[..]).collect();
    let pairs = ctx.server.config.get_matching(&patterns);
    Reply::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Reply::Bulk(Bytes::from(k)), Reply::Bulk(Bytes::from(v))))
            .collect(),
    )
}

fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if !(args.len() - 2).is_multiple_of(2) {
        return Reply::error("ERR wrong number of arguments for 'config|set' command");
    }
    let owned: Vec<(String, String)> = args[2..]
        .chunks(2)
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv[0]).into_owned(),
                String::from_utf8_lossy(&kv[1]).into_owned(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match ctx.server.config.set_many(&pairs) {
        Ok(()) => {
            if pairs
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("appendfsync"))
            {
                // The WAL's sync policy is fixed when the engine opens.
                tracing::warn!(
                    "CONFIG SET appendfsync is stored; it takes effect at the next start"
                );
            }
            // Apply the parameters that take effect at once.
            if let Some(n) = ctx.server.config.get_i64("slowlog-max-len") {
                ctx.server.slowlog.set_max_len(n.max(0) as usize);
            }
            Reply::ok()
        }
        Err(e) => Reply::error(e),
    }
}

fn resetstat(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    ctx.server.stats.reset();
    ctx.server.slowlog.reset();
    Reply::ok()
}

#[cfg(test)]
mod tests {
    use crate::command::testutil::TestNode;

    #[test]
    fn get_forms() {
        let mut n = TestNode::new();
        assert_eq!(
            n.run(&["CONFIG", "GET", "save"]),
            "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
        );
        assert_eq!(
            n.run(&["CONFIG", "GET", "appendonly"]),
            "*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n"
        );
        assert_eq!(n.run(&["CONFIG", "GET", "nosuch"]), "*0\r\n");
        n.resp3();
        assert_eq!(n.run(&["CONFIG", "GET", "nosuch"]), "%0\r\n");
        assert_eq!(
            n.run(&["CONFIG", "GET", "maxclients"]),
            "%1\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n"
        );
        let r = n.run(&["CONFIG", "GET", "slowlog-*"]);
        assert!(r.starts_with("%2\r\n"), "{r}");
        assert_eq!(
            n.run(&["CONFIG", "GET"]),
            "-ERR wrong number of arguments for 'config|get' command\r\n"
        );
    }

    #[test]
    fn set_then_get() {
        let mut n = TestNode::new();
        assert_eq!(
            n.run(&["CONFIG", "SET", "list-max-ziplist-size", "-1"]),
            "+OK\r\n"
        );
        assert_eq!(
            n.run(&["CONFIG", "GET", "list-max-ziplist-size"]),
            "*2\r\n$21\r\nlist-max-ziplist-size\r\n$2\r\n-1\r\n"
        );
        assert_eq!(
            n.run(&["CONFIG", "SET", "zset-max-ziplist-entries", "5", "hz", "20"]),
            "+OK\r\n"
        );
        assert_eq!(
            n.run(&["CONFIG", "GET", "hz"]),
            "*2\r\n$2\r\nhz\r\n$2\r\n20\r\n"
        );
        assert_eq!(
            n.run(&["CONFIG", "SET", "timeout"]),
            "-ERR wrong number of arguments for 'config|set' command\r\n"
        );
        assert_eq!(
            n.run(&["CONFIG", "SET", "timeout", "1", "hz"]),
            "-ERR wrong number of arguments for 'config|set' command\r\n"
        );
        assert_eq!(
            n.run(&["CONFIG", "SET", "cluster-enabled", "no"]),
            "-ERR CONFIG SET failed (possibly related to argument 'cluster-enabled') - can't set immutable config\r\n"
        );
        assert_eq!(n.run(&["CONFIG", "RESETSTAT"]), "+OK\r\n");
    }
}
