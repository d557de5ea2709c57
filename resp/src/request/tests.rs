//! Decoder tests. Expected behaviour was taken from redis-server 7.0.15 over a raw socket.

use super::*;
use proptest::prelude::*;

/// What the server's connection loop sees for some input: commands, then how it ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    commands: Vec<Vec<Vec<u8>>>,
    error: Option<ProtocolError>,
}

/// Feeds `input` in pieces of the given sizes (the last size repeats), decoding after each
/// read like a connection loop does.
fn run(input: &[u8], chunk: usize, authenticated: bool) -> Outcome {
    run_with(RequestDecoder::new(), input, chunk, authenticated)
}

fn run_with(mut d: RequestDecoder, input: &[u8], chunk: usize, authenticated: bool) -> Outcome {
    let mut buf = BytesMut::new();
    let mut out = Outcome {
        commands: Vec::new(),
        error: None,
    };
    for piece in input.chunks(chunk.max(1)) {
        d.reserve_for_read(&mut buf);
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf, authenticated) {
                Ok(Some(args)) => {
                    assert!(!args.is_empty());
                    out.commands.push(args.iter().map(|a| a.to_vec()).collect());
                }
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
    }
    out
}

fn cmds(list: &[&[&[u8]]]) -> Vec<Vec<Vec<u8>>> {
    list.iter()
        .map(|c| c.iter().map(|a| a.to_vec()).collect())
        .collect()
}

fn err(input: &[u8], authenticated: bool) -> Option<ProtocolError> {
    run(input, input.len(), authenticated).error
}

fn reply_text(e: ProtocolError) -> Vec<u8> {
    match e.to_reply() {
        crate::Reply::Error(b) => b.to_vec(),
        other => panic!("not an error reply: {other:?}"),
    }
}

#[test]
fn multibulk_and_inline_pipeline() {
    let input = b"*1\r\n$4\r\nPING\r\nPING\n  ECHO \"hello world\"\r\n\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*0\r\n*-1\r\nQUIT\r\n";
    let want = cmds(&[
        &[b"PING"],
        &[b"PING"],
        &[b"ECHO", b"hello world"],
        &[b"SET", b"k", b""],
        &[b"QUIT"],
    ]);
    assert_eq!(run(input, input.len(), true).commands, want);
    assert_eq!(run(input, 1, true).commands, want);
}

#[test]
fn binary_safe_bulks_and_unchecked_trailer() {
    // `$4\r\nPINGxx` is accepted: the two bytes after the data are skipped unchecked.
    let o = run(b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPI\0G\r\n", 64, true);
    assert_eq!(o.commands, cmds(&[&[b"PING"], &[b"PI\0G"]]));
    assert_eq!(o.error, None);
}

#[test]
fn header_lines_end_at_cr_and_skip_one_byte() {
    // redis 7.0.15: `PING\r\n*1\r\n$4\r\nPING\rx*1\r$4\r\n...` -> +PONG +PONG, then the header
    // `*1\r` swallows `$` and `4` is seen where a `$` was expected.
    let o = run(b"PING\r\n*1\r\n$4\r\nPING\rx*1\r$4\r\nPING\r\n", 100, true);
    assert_eq!(o.commands, cmds(&[&[b"PING"], &[b"PING"]]));
    assert_eq!(o.error, Some(ProtocolError::ExpectedDollar(b'4')));
    // Any byte may follow the `\r` of a header (redis 7.0.15 answers +PONG to both).
    let o = run(b"*1\r\n$4\rxPING\r\n*1\rx$4\r\nPING\r\n", 100, true);
    assert_eq!(o.commands, cmds(&[&[b"PING"], &[b"PING"]]));
    assert_eq!(o.error, None);
}

#[test]
fn bad_input_table() {
    use ProtocolError::*;
    let big = |prefix: &[u8], n: usize, fill: u8| {
        let mut v = prefix.to_vec();
        v.resize(prefix.len() + n, fill);
        v
    };
    let cases: Vec<(Vec<u8>, bool, Option<ProtocolError>)> = vec![
        (
            b"*99999999999\r\n".to_vec(),
            true,
            Some(InvalidMultibulkLength),
        ),
        (
            b"*2147483648\r\n".to_vec(),
            true,
            Some(InvalidMultibulkLength),
        ),
        (b"*abc\r\n".to_vec(), true, Some(InvalidMultibulkLength)),
        (b"*\r\n".to_vec(), true, Some(InvalidMultibulkLength)),
        (b"*-0\r\n".to_vec(), true, Some(InvalidMultibulkLength)),
        (b"*01\r\n".to_vec(), true, Some(InvalidMultibulkLength)),
        (b"*+1\r\n".to_vec(), true, Some(InvalidMultibulkLength)),
        (b"*1\r\n$x\r\n".to_vec(), true, Some(InvalidBulkLength)),
        (b"*1\r\n$-5\r\n".to_vec(), true, Some(InvalidBulkLength)),
        (b"*1\r\n$-0\r\n".to_vec(), true, Some(InvalidBulkLength)),
        (
            b"*1\r\n$536870913\r\n".to_vec(),
            true,
            Some(InvalidBulkLength),
        ),
        (
            b"*1\r\n+PING\r\n".to_vec(),
            true,
            Some(ExpectedDollar(b'+')),
        ),
        (b"*1\r\n\r\n".to_vec(), true, Some(ExpectedDollar(b'\r'))),
        (
            big(b"", PROTO_INLINE_MAX_SIZE + 1, b'a'),
            true,
            Some(TooBigInlineRequest),
        ),
        (big(b"*", 70_000, b'1'), true, Some(TooBigMbulkCountString)),
        (
            big(b"*1\r\n$", 70_000, b'1'),
            true,
            Some(TooBigBulkCountString),
        ),
        (b"SET \"a b\r\n".to_vec(), true, Some(UnbalancedQuotes)),
        (b"ECHO \"ab\"cd\r\n".to_vec(), true, Some(UnbalancedQuotes)),
        (
            b"*11\r\n".to_vec(),
            false,
            Some(UnauthenticatedMultibulkLength),
        ),
        (
            b"*1\r\n$16385\r\n".to_vec(),
            false,
            Some(UnauthenticatedBulkLength),
        ),
        // Accepted (or still waiting) without error:
        (b"*1048577\r\n".to_vec(), true, None),
        (b"*2147483647\r\n".to_vec(), true, None),
        (b"*10\r\n".to_vec(), false, None),
        (b"*1\r\n$16384\r\n".to_vec(), false, None),
        (b"*11\r\n".to_vec(), true, None),
        (b"*1\r\n$536870912\r\n".to_vec(), true, None),
        (big(b"", PROTO_INLINE_MAX_SIZE, b'a'), true, None),
        (big(b"*", PROTO_INLINE_MAX_SIZE - 1, b'1'), true, None),
        // strchr stops at NUL: the newline after it is never seen, so redis waits.
        (b"PI\0NG\r\n".to_vec(), true, None),
    ];
    for (input, authenticated, want) in cases {
        let shown = String::from_utf8_lossy(&input[..input.len().min(24)]).into_owned();
        assert_eq!(err(&input, authenticated), want, "input {shown:?}");
        assert_eq!(
            run(&input, 7, authenticated).error,
            want,
            "input {shown:?} in pieces"
        );
    }
}

#[test]
fn ignored_and_negative_counts() {
    let o = run(
        b"*0\r\n*-1\r\n*-99999999999999\r\n*1\r\n$4\r\nPING\r\n",
        3,
        false,
    );
    assert_eq!(o.commands, cmds(&[&[b"PING"]]));
    assert_eq!(o.error, None);
}

#[test]
fn error_texts_are_redis_texts() {
    use ProtocolError::*;
    let want: &[(ProtocolError, &[u8])] = &[
        (
            InvalidMultibulkLength,
            b"ERR Protocol error: invalid multibulk length",
        ),
        (
            ExpectedDollar(b'+'),
            b"ERR Protocol error: expected '$', got '+'",
        ),
        (
            ExpectedDollar(b'\r'),
            b"ERR Protocol error: expected '$', got ' '",
        ),
        (
            ExpectedDollar(b'\n'),
            b"ERR Protocol error: expected '$', got ' '",
        ),
        (
            ExpectedDollar(0x80),
            b"ERR Protocol error: expected '$', got '\x80'",
        ),
        (
            InvalidBulkLength,
            b"ERR Protocol error: invalid bulk length",
        ),
        (
            TooBigInlineRequest,
            b"ERR Protocol error: too big inline request",
        ),
        (
            TooBigMbulkCountString,
            b"ERR Protocol error: too big mbulk count string",
        ),
        (
            TooBigBulkCountString,
            b"ERR Protocol error: too big bulk count string",
        ),
        (
            UnbalancedQuotes,
            b"ERR Protocol error: unbalanced quotes in request",
        ),
        (
            UnauthenticatedMultibulkLength,
            b"ERR Protocol error: unauthenticated multibulk length",
        ),
        (
            UnauthenticatedBulkLength,
            b"ERR Protocol error: unauthenticated bulk length",
        ),
    ];
    for (e, text) in want {
        assert_eq!(reply_text(*e), *text);
        if text.is_ascii() {
            assert_eq!(e.to_string().as_bytes(), *text);
        }
    }
    assert_eq!(
        &crate::Reply::from(ProtocolError::ExpectedDollar(b'+')).to_bytes(crate::Protocol::Resp2)[..],
        b"-ERR Protocol error: expected '$', got '+'\r\n"
    );
}

#[test]
fn errors_follow_the_commands_before_them() {
    let o = run(
        b"PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n$-1\r\nPING\r\n",
        5,
        true,
    );
    assert_eq!(o.commands, cmds(&[&[b"PING"], &[b"PING"]]));
    assert_eq!(o.error, Some(ProtocolError::InvalidBulkLength));
}

#[test]
fn proto_max_bulk_len_is_configurable() {
    let d = RequestDecoder::with_max_bulk_len(MIN_PROTO_MAX_BULK_LEN);
    let o = run_with(d, b"*1\r\n$1048577\r\n", 100, true);
    assert_eq!(o.error, Some(ProtocolError::InvalidBulkLength));
    let mut d = RequestDecoder::new();
    d.set_max_bulk_len(4);
    assert_eq!(d.max_bulk_len(), 4);
    let o = run_with(d, b"*2\r\n$4\r\nPING\r\n$5\r\n", 100, true);
    assert_eq!(o.error, Some(ProtocolError::InvalidBulkLength));
}

#[test]
fn cross_protocol_guard() {
    let yes = |s: &[&[u8]]| {
        is_cross_protocol_attack(
            &s.iter()
                .map(|a| Bytes::copy_from_slice(a))
                .collect::<Vec<_>>(),
        )
    };
    assert!(yes(&[b"POST", b"/", b"HTTP/1.1"]));
    assert!(yes(&[b"post"]));
    assert!(yes(&[b"Host:", b"example.com"]));
    assert!(yes(&[b"HOST:"]));
    assert!(!yes(&[b"Host"]));
    assert!(!yes(&[b"GET", b"POST"]));
    assert!(!yes(&[]));
    let o = run(b"POST / HTTP/1.1\r\nHost: localhost\r\n", 64, false);
    assert!(o.commands.iter().all(|c| is_cross_protocol_attack(
        &c.iter()
            .map(|a| Bytes::copy_from_slice(a))
            .collect::<Vec<_>>()
    )));
}

#[test]
fn string2ll_is_strict() {
    assert_eq!(string2ll(b"0"), Some(0));
    assert_eq!(string2ll(b"-1"), Some(-1));
    assert_eq!(string2ll(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [
        &b""[..],
        b"-",
        b"-0",
        b"00",
        b"01",
        b"+1",
        b" 1",
        b"1 ",
        b"1a",
        b"9223372036854775808",
        b"-9223372036854775809",
        b"000000000000000000001",
    ] {
        assert_eq!(string2ll(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn declared_huge_bulk_costs_what_arrived() {
    let mut d = RequestDecoder::new();
    let mut buf = BytesMut::new();
    d.reserve_for_read(&mut buf);
    buf.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870000\r\n");
    buf.extend_from_slice(&[b'x'; 100]);
    assert_eq!(d.decode(&mut buf, true), Ok(None));
    for _ in 0..8 {
        d.reserve_for_read(&mut buf);
    }
    assert_eq!(d.bulk_bytes_missing(&buf), Some(536_870_002 - 100));
    assert!(d.read_hint(&buf) <= READ_CHUNK);
    assert!(
        buf.capacity() < 4 * READ_CHUNK,
        "capacity {}",
        buf.capacity()
    );
    assert_eq!(d.pending_args_bytes(), 4);
    assert!(!d.is_idle());
    // An unauthenticated huge multibulk count allocates nothing by its count either.
    let mut d = RequestDecoder::new();
    let mut buf = BytesMut::from(&b"*2147483647\r\n$1\r\n"[..]);
    assert_eq!(d.decode(&mut buf, true), Ok(None));
    assert!(d.args.capacity() <= 4);
}

#[test]
fn large_bulk_in_small_reads_is_linear_and_bounded() {
    // 64 MiB in 16 KiB reads: 4096 reads. A decoder that rescans would scan ~128 GiB.
    const LEN: usize = 64 << 20;
    let mut d = RequestDecoder::new();
    let mut buf = BytesMut::new();
    buf.extend_from_slice(format!("*2\r\n$3\r\nSET\r\n${LEN}\r\n").as_bytes());
    let piece = vec![b'v'; READ_CHUNK];
    let mut sent = 0;
    let mut max_cap = 0;
    let mut got = None;
    let mut calls = 0;
    while sent < LEN + 2 {
        d.reserve_for_read(&mut buf);
        // Capacity is bounded by what arrived, not by the 64 MiB declared.
        let received = sent + 24;
        assert!(
            buf.capacity() <= 2 * received + 2 * READ_CHUNK,
            "capacity {} after {received}",
            buf.capacity()
        );
        max_cap = max_cap.max(buf.capacity());
        let n = piece.len().min(LEN + 2 - sent);
        buf.extend_from_slice(&piece[..n]);
        sent += n;
        calls += 1;
        if let Some(args) = d.decode(&mut buf, true).ok().flatten() {
            got = Some(args);
        }
    }
    let args = got.unwrap_or_default();
    assert_eq!(args.len(), 2);
    assert_eq!(args[1].len(), LEN);
    assert!(calls >= LEN / READ_CHUNK);
    assert!(
        max_cap <= 2 * (LEN + 2) + 2 * READ_CHUNK,
        "capacity {max_cap}"
    );
    assert!(d.is_idle());
}

#[test]
fn byte_by_byte_input_reallocates_rarely() {
    // 200 KB of pipelined requests and long lines, one byte per read: the buffer may only grow
    // after READ_CHUNK bytes have arrived since the last growth (no copy per byte).
    let mut input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nabc\r\n".repeat(2000);
    input.extend(std::iter::repeat_n(b'1', 60_000));
    input.extend_from_slice(b"\r\n");
    let mut d = RequestDecoder::new();
    let mut buf = BytesMut::new();
    let mut growths = 0;
    for &b in &input {
        let spare = buf.capacity() - buf.len();
        d.reserve_for_read(&mut buf);
        if buf.capacity() - buf.len() > spare {
            growths += 1;
        }
        buf.extend_from_slice(&[b]);
        while let Ok(Some(_)) = d.decode(&mut buf, true) {}
    }
    assert!(
        growths <= input.len() / READ_CHUNK + 1,
        "{growths} growths for {} bytes",
        input.len()
    );
}

#[test]
fn header_arriving_byte_by_byte_is_not_rescanned() {
    // A 60 KiB inline line fed one byte at a time: `scanned` keeps each search short.
    let mut d = RequestDecoder::new();
    let mut buf = BytesMut::new();
    for _ in 0..60_000 {
        buf.extend_from_slice(b"a");
        assert_eq!(d.decode(&mut buf, true), Ok(None));
        assert_eq!(d.scanned, buf.len());
    }
    buf.extend_from_slice(b" b\r\n");
    let args = d.decode(&mut buf, true).ok().flatten().unwrap_or_default();
    assert_eq!(args.len(), 2);
    assert_eq!(args[0].len(), 60_000);
}

#[test]
fn multibulk_args_are_zero_copy() {
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"[..]);
    let base = buf.as_ptr() as usize;
    let args = RequestDecoder::new()
        .decode(&mut buf, true)
        .ok()
        .flatten()
        .unwrap_or_default();
    assert_eq!(args[1].as_ptr() as usize, base + 17);
    assert!(buf.is_empty());
}

/// Encodes a command as a multibulk request.
fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

fn arb_stream() -> impl Strategy<Value = Vec<u8>> {
    let arg = prop::collection::vec(any::<u8>(), 0..40);
    let multi = prop::collection::vec(arg, 1..6).prop_map(|a| multibulk(&a));
    let inline =
        prop::collection::vec("[a-zA-Z0-9]{1,8}|\"[a-z \\\\\"]{0,6}\"|'[a-z ]{0,6}'", 0..4)
            .prop_map(|words| format!("{}\r\n", words.join(" ")).into_bytes());
    let ignored = prop_oneof![
        Just(b"*0\r\n".to_vec()),
        Just(b"*-1\r\n".to_vec()),
        Just(b"\n".to_vec())
    ];
    prop::collection::vec(prop_oneof![4 => multi, 2 => inline, 1 => ignored], 1..8)
        .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn split_at_every_boundary_decodes_the_same(input in arb_stream()) {
        let whole = run(&input, input.len(), true);
        for cut in 0..=input.len() {
            let mut d = RequestDecoder::new();
            let mut buf = BytesMut::new();
            let mut commands = Vec::new();
            let mut error = None;
            'outer: for part in [&input[..cut], &input[cut..]] {
                buf.extend_from_slice(part);
                loop {
                    match d.decode(&mut buf, true) {
                        Ok(Some(args)) => commands.push(args.iter().map(|a| a.to_vec()).collect::<Vec<_>>()),
                        Ok(None) => break,
                        Err(e) => { error = Some(e); break 'outer; }
                    }
                }
            }
            prop_assert_eq!(&Outcome { commands, error }, &whole, "cut at {}", cut);
        }
        prop_assert_eq!(&run(&input, 1, true), &whole);
    }

    #[test]
    fn multibulk_round_trips(cmds in prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..12), 1..10), chunk in 1usize..64) {
        let input: Vec<u8> = cmds.iter().flat_map(|c| multibulk(c)).collect();
        let o = run(&input, chunk, true);
        prop_assert_eq!(o.error, None);
        prop_assert_eq!(o.commands, cmds);
    }

    #[test]
    fn garbage_never_panics(input in prop::collection::vec(prop_oneof![any::<u8>(), Just(b'*'), Just(b'$'), Just(b'\r'), Just(b'\n'), Just(b'"'), Just(b'1')], 0..300), chunk in 1usize..40, auth in any::<bool>()) {
        let o = run(&input, chunk, auth);
        prop_assert_eq!(o, run(&input, input.len(), auth));
    }

    #[test]
    fn garbage_after_valid_header_never_panics(n in 0i64..20, tail in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut input = format!("*{n}\r\n").into_bytes();
        input.extend_from_slice(&tail);
        let _ = run(&input, 3, false);
    }
}

proptest! {
    #[test]
    fn fuzz_property_holds_on_random_streams(mode in any::<u8>(), input in arb_stream(), garbage in prop::collection::vec(any::<u8>(), 0..40)) {
        let mut data = vec![mode];
        data.extend_from_slice(&input);
        data.extend_from_slice(&garbage);
        crate::fuzzing::request_oneshot(&data);
        crate::fuzzing::request_split(&data);
    }
}
