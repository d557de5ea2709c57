//! Server commands: TIME, SHUTDOWN, MONITOR, SLOWLOG, LATENCY LATEST, MEMORY USAGE, DEBUG,
//! FUNCTION FLUSH. INFO lives in `info.rs`.

use crate::command::{c_str, error_bytes, Ctx, Handler};
use bytes::Bytes;
use pinnacle_resp::Reply;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Handlers of this family.
pub const HANDLERS: &[(&str, Handler)] = &[
    ("time", time),
    ("shutdown", shutdown),
    ("monitor", monitor),
    ("slowlog|get", slowlog_get),
    ("slowlog|len", slowlog_len),
    ("slowlog|reset", slowlog_reset),
    ("latency|latest", latency_latest),
    ("memory|usage", memory_usage),
    ("debug", debug),
    ("function|flush", function_flush),
];

fn parse_i64(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn time(_: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(now.as_secs().to_string())),
        Reply::Bulk(Bytes::from(now.subsec_micros().to_string())),
    ])
}

fn shutdown(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    for a in &args[1..] {
        let ok = [&b"nosave"[..], b"save", b"now", b"force"]
            .iter()
            .any(|o| a.eq_ignore_ascii_case(o));
        if a.eq_ignore_ascii_case(b"abort") {
            return Reply::error("ERR No shutdown in progress.");
        }
        if !ok {
            return Reply::error("ERR syntax error");
        }
    }
    tracing::warn!("User requested shutdown...");
    ctx.server.request_shutdown();
    // Like Redis, a successful SHUTDOWN closes the connection without a reply.
    ctx.client.close_silently = true;
    Reply::ok()
}

fn monitor(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    if !ctx.client.monitor {
        let rx = ctx.server.add_monitor(ctx.client);
        ctx.client.monitor_rx = Some(rx);
    }
    Reply::ok()
}

fn slowlog_get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let count = if args.len() > 2 {
        match parse_i64(&args[2]) {
            Some(-1) => usize::MAX,
            Some(n) if n >= 0 => n as usize,
            _ => return Reply::error("ERR count should be greater than or equal to -1"),
        }
    } else {
        10
    };
    Reply::Array(
        ctx.server
            .slowlog
            .get(count)
            .into_iter()
            .map(|e| {
                Reply::Array(vec![
                    Reply::Integer(e.id as i64),
                    Reply::Integer(e.time as i64),
                    Reply::Integer(e.usec as i64),
                    Reply::Array(e.args.into_iter().map(Reply::Bulk).collect()),
                    Reply::Bulk(Bytes::from(e.addr)),
                    Reply::Bulk(e.name),
                ])
            })
            .collect(),
    )
}

fn slowlog_len(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    Reply::Integer(ctx.server.slowlog.len() as i64)
}

fn slowlog_reset(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    ctx.server.slowlog.reset();
    Reply::ok()
}

/// No latency events are recorded (`latency-monitor-threshold` 0 disables the monitor, as in
/// Redis's default), so the list is empty.
fn latency_latest(_: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    Reply::Array(vec![])
}

fn memory_usage(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut i = 3;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"samples") && i + 1 < args.len() {
            if parse_i64(&args[i + 1]).is_none() {
                return Reply::error("ERR value is not an integer or out of range");
            }
            i += 2;
        } else {
            return Reply::error("ERR syntax error");
        }
    }
    match ctx.db().memory_usage(&args[2]) {
        Ok(Some(n)) => Reply::Integer(n as i64),
        Ok(None) => Reply::Null,
        Err(e) => Reply::error(format!("ERR {e}")),
    }
}

fn debug(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = &args[1];
    if sub.eq_ignore_ascii_case(b"shardkeys") && args.len() == 2 {
        // Live keys in each shard keyspace this node holds on disk, whatever its role in the
        // shard (unlike DBSIZE, which answers for one shard): shows which replicas were dropped.
        let counts: Result<Vec<Reply>, _> = ctx
            .server
            .dbs
            .iter()
            .map(|db| db.dbsize().map(|n| Reply::Integer(n as i64)))
            .collect();
        return match counts {
            Ok(c) => Reply::Array(c),
            Err(e) => Reply::error(format!("ERR {e}")),
        };
    }
    if sub.eq_ignore_ascii_case(b"sleep") && args.len() == 3 {
        // Like Redis's strtod: garbage reads as 0.
        let secs: f64 = std::str::from_utf8(&args[2])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0.0);
        if secs > 0.0 && secs.is_finite() {
            // Redis blocks the whole server; we block only this connection, handing the
            // worker's other tasks to another thread.
            let nap = || std::thread::sleep(Duration::from_secs_f64(secs.min(3600.0)));
            match tokio::runtime::Handle::try_current() {
                Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(nap)
                }
                _ => nap(),
            }
        }
        return Reply::ok();
    }
    if sub.eq_ignore_ascii_case(b"log") && args.len() == 3 {
        tracing::warn!("DEBUG LOG: {}", String::from_utf8_lossy(&args[2]));
        return Reply::ok();
    }
    error_bytes(&[
        b"ERR unknown subcommand or wrong number of arguments for '",
        c_str(sub, 128),
        b"'. Try DEBUG HELP.",
    ])
}

fn function_flush(_: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    // No scripting yet, so there is nothing to flush; the modes are still validated.
    if args.len() > 3 {
        return Reply::error(
            "ERR unknown subcommand or wrong number of arguments for 'FLUSH'. Try FUNCTION HELP.",
        );
    }
    if args.len() == 3
        && !args[2].eq_ignore_ascii_case(b"sync")
        && !args[2].eq_ignore_ascii_case(b"async")
    {
        return Reply::error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option");
    }
    Reply::ok()
}

#[cfg(test)]
mod tests {
    use crate::command::testutil::TestNode;

    #[test]
    fn time_and_function_flush() {
        let mut n = TestNode::new();
        let t = n.run(&["TIME"]);
        assert!(t.starts_with("*2\r\n$10\r\n"), "{t}");
        assert_eq!(
            n.run(&["TIME", "x"]),
            "-ERR wrong number of arguments for 'time' command\r\n"
        );
        assert_eq!(n.run(&["FUNCTION", "FLUSH"]), "+OK\r\n");
        assert_eq!(n.run(&["FUNCTION", "FLUSH", "SYNC"]), "+OK\r\n");
        assert_eq!(
            n.run(&["FUNCTION", "FLUSH", "ASYNC", "x"]),
            "-ERR unknown subcommand or wrong number of arguments for 'FLUSH'. Try FUNCTION HELP.\r\n"
        );
        assert_eq!(
            n.run(&["FUNCTION", "FLUSH", "bad"]),
            "-ERR FUNCTION FLUSH only supports SYNC|ASYNC option\r\n"
        );
    }

    #[test]
    fn slowlog_records_when_threshold_is_zero() {
        let mut n = TestNode::new();
        assert_eq!(n.run(&["SLOWLOG", "LEN"]), ":0\r\n");
        assert_eq!(n.run(&["SLOWLOG", "GET"]), "*0\r\n");
        assert_eq!(
            n.run(&["SLOWLOG", "GET", "-2"]),
            "-ERR count should be greater than or equal to -1\r\n"
        );
        assert_eq!(
            n.run(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
            "+OK\r\n"
        );
        assert_eq!(n.run(&["PING"]), "+PONG\r\n");
        let g = n.run(&["SLOWLOG", "GET", "1"]);
        assert!(g.starts_with("*1\r\n*6\r\n:"), "{g}");
        assert!(
            g.contains("*1\r\n$4\r\nPING\r\n$14\r\n127.0.0.1:5000\r\n$0\r\n\r\n"),
            "{g}"
        );
        assert_eq!(n.run(&["SLOWLOG", "RESET"]), "+OK\r\n");
        // SLOWLOG RESET itself ran after the reset and was slower than 0 µs.
        assert_eq!(
            n.run(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]),
            "+OK\r\n"
        );
        assert_eq!(n.run(&["SLOWLOG", "LEN"]), ":1\r\n");
        assert_eq!(n.run(&["SLOWLOG", "RESET"]), "+OK\r\n");
        assert_eq!(n.run(&["SLOWLOG", "LEN"]), ":0\r\n");
    }

    #[test]
    fn latency_memory_debug() {
        let mut n = TestNode::new();
        assert_eq!(n.run(&["LATENCY", "LATEST"]), "*0\r\n");
        assert_eq!(n.run(&["MEMORY", "USAGE", "nokey"]), "$-1\r\n");
        assert_eq!(
            n.run(&["MEMORY", "USAGE", "nokey", "SAMPLES", "x"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            n.run(&["MEMORY", "USAGE", "nokey", "bar"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(n.run(&["DEBUG", "SLEEP", "0"]), "+OK\r\n");
        assert_eq!(n.run(&["DEBUG", "LOG", "hello"]), "+OK\r\n");
        assert_eq!(
            n.run(&["DEBUG", "FOO"]),
            "-ERR unknown subcommand or wrong number of arguments for 'FOO'. Try DEBUG HELP.\r\n"
        );
        if crate::command::table::table().get(b"set").is_some() {
            assert_eq!(n.run(&["SET", "k", "v"]), "+OK\r\n");
            assert!(n.run(&["MEMORY", "USAGE", "k"]).starts_with(':'));
        }
    }

    #[test]
    fn shutdown_signals_the_process() {
        let mut n = TestNode::new();
        assert_eq!(
            n.run(&["SHUTDOWN", "ABORT"]),
            "-ERR No shutdown in progress.\r\n"
        );
        assert_eq!(n.run(&["SHUTDOWN", "bogus"]), "-ERR syntax error\r\n");
        let (out, close) = n.run_raw(&["SHUTDOWN", "NOSAVE"]);
        assert!(out.is_empty() && close);
        assert!(n.server.shutting_down());
    }

    #[test]
    fn monitor_sees_other_clients() {
        let mut n = TestNode::new();
        assert_eq!(n.run(&["MONITOR"]), "+OK\r\n");
        let mut rx = n.client.monitor_rx.take().expect("monitor feed");
        let mut other = n.other_client();
        n.run_as(&mut other, &["ECHO", "a b\"c"]);
        let line = rx.try_recv().expect("a fed line");
        let s = String::from_utf8_lossy(&line);
        assert!(
            s.starts_with('+') && s.ends_with(" [0 127.0.0.1:5001] \"ECHO\" \"a b\\\"c\"\r\n"),
            "{s}"
        );
        assert_eq!(n.run(&["RESET"]), "+RESET\r\n");
        assert!(!n.server.monitors_active());
    }
}
