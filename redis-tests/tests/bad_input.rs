//! Bad and edge-case input (reliability.md §3 table, redis-wire.md §9): exact reply bytes and
//! whether the connection is closed afterwards, checked on the server under test AND on a real
//! redis-server 7.0.15 (so every expectation here is Redis's measured behaviour).

use std::time::{Duration, Instant};

use redis_tests::{show, Builder, Kind, Peek, RawConn, Server};

/// What the connection must look like after the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// The server closes the connection after the reply.
    Closed,
    /// The connection stays open, and a PING on it gets this reply.
    OpenThenPing(&'static [u8]),
    /// The connection stays open, waiting for more bytes of a partial request.
    OpenWaiting,
}

struct Case {
    name: &'static str,
    input: Vec<u8>,
    reply: Vec<u8>,
    after: After,
}

fn case(
    name: &'static str,
    input: impl AsRef<[u8]>,
    reply: impl AsRef<[u8]>,
    after: After,
) -> Case {
    Case {
        name,
        input: input.as_ref().to_vec(),
        reply: reply.as_ref().to_vec(),
        after,
    }
}

const PONG: After = After::OpenThenPing(b"+PONG\r\n");
const NOAUTH_PING: After = After::OpenThenPing(b"-NOAUTH Authentication required.\r\n");

/// How long to wait for "nothing more arrives" checks.
const QUIET: Duration = Duration::from_millis(300);

/// Read until `n` bytes arrived, the peer closed, or the timeout passed.
fn read_n(c: &mut RawConn, n: usize, timeout: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, false);
        }
        match c.peek(left) {
            Ok(Peek::Data(d)) => got.extend_from_slice(&d),
            Ok(Peek::Closed) => return (got, true),
            Ok(Peek::Nothing) => return (got, false),
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

/// Run one case on a fresh connection; `Err` describes the mismatch.
fn run_case(server: &Server, case: &Case) -> Result<(), String> {
    let mut c = server.conn().map_err(|e| format!("connect: {e}"))?;
    // The server may close before reading everything (too-big requests): that is fine.
    c.send_lossy(&case.input);
    let fail = |what: String| {
        Err(format!(
            "[{}] {}: input {}\n    {what}",
            server.kind().name(),
            case.name,
            show(&case.input)
        ))
    };
    match case.after {
        After::Closed => {
            let (got, eof) = c
                .read_until_close(Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            if got != case.reply || !eof {
                return fail(format!(
                    "expected {} then close; got {} ({})",
                    show(&case.reply),
                    show(&got),
                    if eof { "closed" } else { "still open" }
                ));
            }
        }
        After::OpenThenPing(_) | After::OpenWaiting => {
            let (got, eof) = read_n(&mut c, case.reply.len(), Duration::from_secs(5));
            let (extra, eof2) = if eof {
                (Vec::new(), true)
            } else {
                read_n(&mut c, 1, QUIET)
            };
            if got != case.reply || eof || eof2 || !extra.is_empty() {
                return fail(format!(
                    "expected {} and open; got {}{} ({})",
                    show(&case.reply),
                    show(&got),
                    show(&extra),
                    if eof || eof2 { "closed" } else { "open" }
                ));
            }
            if let After::OpenThenPing(expect) = case.after {
                let r = c.call(&["PING"]).map_err(|e| {
                    format!("[{}] {}: PING after: {e}", server.kind().name(), case.name)
                })?;
                if r != expect {
                    return fail(format!(
                        "PING afterwards: expected {} got {}",
                        show(expect),
                        show(&r)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Run every case on the server under test and on a reference redis-server, reporting all mismatches.
fn run_all(cases: &[Case], build: impl Fn(Builder) -> Builder) {
    let subject = build(Builder::subject())
        .start()
        .expect("start server under test");
    let reference = build(Builder::redis_cluster())
        .start()
        .expect("start redis-server");
    let mut failures = Vec::new();
    for server in [&reference, &subject] {
        for c in cases {
            if let Err(e) = run_case(server, c) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn protocol_errors_and_edge_cases() {
    if !redis_tests::tools::available("protocol_errors_and_edge_cases", &["redis-server"]) {
        return;
    }
    let big_inline = vec![b'a'; 70_000];
    let mut big_mbulk = b"*".to_vec();
    big_mbulk.extend(std::iter::repeat_n(b'1', 70_000));
    let mut big_bulk = b"*1\r\n$".to_vec();
    big_bulk.extend(std::iter::repeat_n(b'1', 70_000));
    let cases = vec![
        case("multibulk too long", "*99999999999\r\n", "-ERR Protocol error: invalid multibulk length\r\n", After::Closed),
        case("multibulk > INT_MAX", "*2147483648\r\n", "-ERR Protocol error: invalid multibulk length\r\n", After::Closed),
        case("multibulk not a number", "*abc\r\n", "-ERR Protocol error: invalid multibulk length\r\n", After::Closed),
        case("bulk length not a number", "*1\r\n$x\r\n", "-ERR Protocol error: invalid bulk length\r\n", After::Closed),
        case("bulk length negative", "*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length\r\n", After::Closed),
        case("bulk length -1", "*1\r\n$-1\r\n", "-ERR Protocol error: invalid bulk length\r\n", After::Closed),
        case("bulk > proto-max-bulk-len", "*1\r\n$536870913\r\n", "-ERR Protocol error: invalid bulk length\r\n", After::Closed),
        case("bulk == proto-max-bulk-len waits", "*1\r\n$536870912\r\n", "", After::OpenWaiting),
        case("simple string in multibulk", "*1\r\n+PING\r\n", "-ERR Protocol error: expected '$', got '+'\r\n", After::Closed),
        case("integer in multibulk", "*3\r\n:1\r\n", "-ERR Protocol error: expected '$', got ':'\r\n", After::Closed),
        case("inline > 64 KiB", big_inline, "-ERR Protocol error: too big inline request\r\n", After::Closed),
        case("mbulk count > 64 KiB", big_mbulk, "-ERR Protocol error: too big mbulk count string\r\n", After::Closed),
        case("bulk count > 64 KiB", big_bulk, "-ERR Protocol error: too big bulk count string\r\n", After::Closed),
        case("unbalanced double quote", "SET \"a b\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n", After::Closed),
        case("unbalanced single quote", "SET 'a\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n", After::Closed),
        case("quote followed by text", "SET \"a\"b c\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n", After::Closed),
        case("error drops the rest of the pipeline", "PING\r\n*1\r\n+x\r\nPING\r\n", "+PONG\r\n-ERR Protocol error: expected '$', got '+'\r\n", After::Closed),
        case("huge multibulk count waits", "*1048577\r\n", "", After::OpenWaiting),
        case("INT_MAX multibulk count waits", "*2147483647\r\n", "", After::OpenWaiting),
        case("partial bulk waits", "*2\r\n$4\r\nECHO\r\n$3\r\nab", "", After::OpenWaiting),
        case("unknown inline command", "!foo\r\n", "-ERR unknown command '!foo', with args beginning with: \r\n", PONG),
        case("unknown command with args", "*3\r\n$3\r\nFOO\r\n$3\r\nbar\r\n$3\r\nbaz\r\n", "-ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' \r\n", PONG),
        case("empty command name", "*1\r\n$0\r\n\r\n", "-ERR unknown command '', with args beginning with: \r\n", PONG),
        case("wrong arity", "*1\r\n$3\r\nGET\r\n", "-ERR wrong number of arguments for 'get' command\r\n", PONG),
        case("GET / HTTP/1.1 is just a GET", "GET / HTTP/1.1\r\n", "-ERR wrong number of arguments for 'get' command\r\n", PONG),
        case("*-1 ignored", "*-1\r\nPING\r\n", "+PONG\r\n", PONG),
        case("*0 ignored", "*0\r\nPING\r\n", "+PONG\r\n", PONG),
        case("CRLF after bulk not validated", "*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n", "+PONG\r\n+PONG\r\n", PONG),
        case("inline with bare LF", "PING\n", "+PONG\r\n", PONG),
        case("empty inline lines ignored", "\r\n\n   \r\nPING\r\n", "+PONG\r\n", PONG),
        case("inline quoting and hex escapes", "ECHO \"hello world\"\r\nECHO \"\\x41\\x42\"\r\n", "$11\r\nhello world\r\n$2\r\nAB\r\n", PONG),
        case("bulk outside multibulk is inline", "$3\r\nfoo\r\n", "-ERR unknown command '$3', with args beginning with: \r\n-ERR unknown command 'foo', with args beginning with: \r\n", PONG),
        case("empty key", "*2\r\n$3\r\nGET\r\n$0\r\n\r\n", "$-1\r\n", PONG),
        case("POST is closed without reply", "POST / HTTP/1.1\r\nHost: x\r\n\r\n", "", After::Closed),
        case("Host: is closed without reply", "Host: x\r\n", "", After::Closed),
        case("QUIT replies then closes", "QUIT\r\nPING\r\n", "+OK\r\n", After::Closed),
    ];
    run_all(&cases, |b| b);
}

#[test]
fn auth_limits_before_authentication() {
    if !redis_tests::tools::available("auth_limits_before_authentication", &["redis-server"]) {
        return;
    }
    let mut big_bulk_pre_auth = b"*1\r\n$16385\r\n".to_vec();
    big_bulk_pre_auth.extend(std::iter::repeat_n(b'x', 100));
    let cases = vec![
        case("11 elements before AUTH", "*11\r\n", "-ERR Protocol error: unauthenticated multibulk length\r\n", After::Closed),
        case("16385-byte bulk before AUTH", big_bulk_pre_auth, "-ERR Protocol error: unauthenticated bulk length\r\n", After::Closed),
        case("10 elements before AUTH are fine", "*10\r\n", "", After::OpenWaiting),
        case("command before AUTH", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "-NOAUTH Authentication required.\r\n", NOAUTH_PING),
        case("wrong password", "*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n", "-WRONGPASS invalid username-password pair or user is disabled.\r\n", NOAUTH_PING),
        case("right password", "*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n", "+OK\r\n", PONG),
        case("right password, default user", "AUTH default secret\r\n", "+OK\r\n", PONG),
        case("big bulk after AUTH is fine", "AUTH secret\r\n*2\r\n$4\r\nECHO\r\n$16385\r\n", "+OK\r\n", After::OpenWaiting),
        case("HELLO without AUTH", "HELLO 3\r\n", "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n", NOAUTH_PING),
        case("HELLO with bad AUTH", "HELLO 2 AUTH default nope\r\n", "-WRONGPASS invalid username-password pair or user is disabled.\r\n", NOAUTH_PING),
    ];
    run_all(&cases, |b| b.requirepass("secret"));
}

#[test]
fn auth_without_password_configured() {
    if !redis_tests::tools::available("auth_without_password_configured", &["redis-server"]) {
        return;
    }
    let cases = vec![case(
        "AUTH with no password set",
        "AUTH x\r\n",
        "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n",
        PONG,
    )];
    run_all(&cases, |b| b);
}

/// The (max+1)-th connection gets `-ERR max number of clients reached` and is closed.
#[test]
fn maxclients() {
    if !redis_tests::tools::available("maxclients", &["redis-server"]) {
        return;
    }
    const MAX: usize = 20;
    for builder in [Builder::redis(), Builder::subject()] {
        let server = builder
            .maxclients(MAX as u32)
            .start()
            .expect("start server");
        let name = server.kind().name();
        // The readiness probe's connection may still be counted for a moment.
        std::thread::sleep(Duration::from_millis(200));
        let mut conns = Vec::new();
        for i in 0..MAX {
            let mut c = server.conn().expect("connect");
            let r = c
                .call(&["PING"])
                .unwrap_or_else(|e| panic!("[{name}] conn {i}: {e}"));
            assert_eq!(r, b"+PONG\r\n", "[{name}] conn {i}");
            conns.push(c);
        }
        let mut extra = server.conn().expect("connect the extra client");
        let (got, eof) = extra
            .read_until_close(Duration::from_secs(5))
            .expect("read");
        // Redis in cluster mode words it differently; pinnacle uses the standalone text (§3 table).
        let expect: &[u8] = if server.kind() == Kind::RedisCluster {
            b"-ERR max number of clients + cluster connections reached\r\n"
        } else {
            b"-ERR max number of clients reached\r\n"
        };
        assert_eq!(show(&got), show(expect), "[{name}]");
        assert!(eof, "[{name}] the extra connection must be closed");
        // Closing one makes room again.
        drop(conns.pop());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut c = server.conn().expect("connect");
            match c.call(&["PING"]) {
                Ok(r) if r == b"+PONG\r\n" => break,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "[{name}] no room after a close: {other:?}"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// `--timeout 1` closes idle clients (without a reply); busy ones stay.
#[test]
fn idle_timeout() {
    if !redis_tests::tools::available("idle_timeout", &["redis-server"]) {
        return;
    }
    for builder in [Builder::redis_cluster(), Builder::subject()] {
        let server = builder.timeout(1).start().expect("start server");
        let name = server.kind().name();
        let mut idle = server.conn().expect("connect");
        assert_eq!(idle.call(&["PING"]).expect("PING"), b"+PONG\r\n");
        let mut busy = server.conn().expect("connect");
        let start = Instant::now();
        let mut closed_after = None;
        while start.elapsed() < Duration::from_secs(6) {
            assert_eq!(
                busy.call(&["PING"]).expect("busy PING"),
                b"+PONG\r\n",
                "[{name}]"
            );
            match idle.peek(Duration::from_millis(200)).expect("peek") {
                Peek::Closed => {
                    closed_after = Some(start.elapsed());
                    break;
                }
                Peek::Data(d) => panic!("[{name}] idle client got data {}", show(&d)),
                Peek::Nothing => {}
            }
        }
        let after = closed_after.unwrap_or_else(|| panic!("[{name}] idle client never closed"));
        assert!(
            after >= Duration::from_millis(900),
            "[{name}] closed too early: {after:?}"
        );
    }
}
