//! Differential test of the request decoder against a real redis-server 7.0.15.
//!
//! Random byte streams, built from valid, broken and garbage fragments, go both to our
//! `RequestDecoder` and over a socket to redis-server. After sending, the test half-closes the
//! socket and reads to EOF. Redis must then have answered one reply per command our decoder
//! found (PING and ECHO replies are checked byte for byte), plus, when our decoder reports a
//! protocol error, exactly that error's text as the last reply. Done once without a password
//! (authenticated) and once with `requirepass` and no AUTH (pre-authentication limits).
//!
//! Skipped, with a message, when `redis-server` is not installed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pinnacle_resp::{Protocol, Reply, RequestDecoder};

/// A redis-server child, stopped by pid when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(extra: &[&str]) -> Option<Server> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends `input`, half-closes, and returns everything redis sent until it closed.
    fn exchange(&self, input: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis-server");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        // A write can fail once redis has closed after a protocol error: that is fine.
        let _ = s.write_all(input);
        let _ = s.shutdown(Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Length of the RESP2 reply at the front of `b` (the replies redis sends here are simple).
fn frame_len(b: &[u8]) -> Option<usize> {
    let cr = b.windows(2).position(|w| w == b"\r\n")?;
    let n = || std::str::from_utf8(&b[1..cr]).ok()?.parse::<i64>().ok();
    match b.first()? {
        b'+' | b'-' | b':' => Some(cr + 2),
        b'$' => {
            let len = n()?;
            if len < 0 {
                return Some(cr + 2);
            }
            let end = cr + 2 + len as usize + 2;
            (end <= b.len()).then_some(end)
        }
        b'*' => {
            let count = n()?;
            let mut at = cr + 2;
            for _ in 0..count.max(0) {
                at += frame_len(&b[at..])?;
            }
            Some(at)
        }
        _ => None,
    }
}

fn frames(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let Some(n) = frame_len(b) else {
            panic!("unparseable reply bytes: {:?}", String::from_utf8_lossy(b));
        };
        out.push(b[..n].to_vec());
        b = &b[n..];
    }
    out
}

/// What our decoder makes of `input`: the commands, and the error if one stops the stream.
/// Input arrives in 16 KiB reads, as redis reads it (`PROTO_IOBUF_LEN`): whether a long inline
/// line is "too big" depends on what was buffered when it was looked at.
fn decode_all(input: &[u8], authenticated: bool) -> (Vec<Vec<Bytes>>, Option<Vec<u8>>) {
    let mut d = RequestDecoder::new();
    let mut buf = BytesMut::new();
    let mut cmds = Vec::new();
    for piece in input.chunks(pinnacle_resp::request::READ_CHUNK) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf, authenticated) {
                Ok(Some(args)) => cmds.push(args),
                Ok(None) => break,
                Err(e) => return (cmds, Some(e.to_reply().to_bytes(Protocol::Resp2).to_vec())),
            }
        }
    }
    (cmds, None)
}

/// xorshift64*: a fixed-seed generator so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn fragment(rng: &mut Rng) -> Vec<u8> {
    const FIXED: &[&[u8]] = &[
        b"*1\r\n$4\r\nPING\r\n",
        b"PING\r\n",
        b"PING\n",
        b"ECHO \"a b\\x41\\n\"\r\n",
        b"ECHO 'x\\'y'\r\n",
        b"ECHO ab\"c d\"\r\n",
        b"  \r\n",
        b"\n",
        b"*0\r\n",
        b"*-1\r\n",
        b"*abc\r\n",
        b"*01\r\n",
        b"*99999999999\r\n",
        b"$4\r\n",
        b"*1\r\n$-5\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\n+PING\r\n",
        b"*1\r\n$4\r\nPINGxx",
        b"*1\r\n$4\r\nPI\0G\r\n",
        b"*2\r\n$4\r\nECHO\r\n$3\r\nab",
        b"ECHO \"unterminated\r\n",
        b"ECHO \"ab\"cd\r\n",
        b"*11\r\n",
        b"*1\r\n$16385\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20000\r\n",
        b"\0",
        b"\r",
        b"*",
        b"$",
        b"\"",
    ];
    match rng.below(4) {
        0 => {
            // A valid ECHO with a random binary argument.
            let len = rng.below(20);
            let arg: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let mut v = format!("*2\r\n$4\r\nECHO\r\n${len}\r\n").into_bytes();
            v.extend_from_slice(&arg);
            v.extend_from_slice(b"\r\n");
            v
        }
        1 => (0..1 + rng.below(4)).map(|_| rng.next() as u8).collect(),
        _ => FIXED[rng.below(FIXED.len())].to_vec(),
    }
}

/// Returns (commands, whether the stream ended in a protocol error).
fn check(server: &Server, input: &[u8], authenticated: bool) -> (usize, bool) {
    let (cmds, error) = decode_all(input, authenticated);
    let got = frames(&server.exchange(input));
    let shown = String::from_utf8_lossy(input);
    let want_len = cmds.len() + usize::from(error.is_some());
    assert_eq!(
        got.len(),
        want_len,
        "reply count for {shown:?}: {got:?} vs commands {cmds:?}, error {error:?}"
    );
    for (cmd, reply) in cmds.iter().zip(&got) {
        let want = match (authenticated, cmd.as_slice()) {
            (false, _) => None, // NOAUTH; its text is the server's business
            (true, [name]) if name.eq_ignore_ascii_case(b"PING") => Some(Reply::simple("PONG")),
            (true, [name, arg]) if name.eq_ignore_ascii_case(b"ECHO") => {
                Some(Reply::Bulk(arg.clone()))
            }
            _ => None,
        };
        if let Some(want) = want {
            assert_eq!(
                reply,
                &want.to_bytes(Protocol::Resp2).to_vec(),
                "for {shown:?}"
            );
        }
    }
    let errored = error.is_some();
    if let Some(e) = error {
        assert_eq!(got.last(), Some(&e), "error for {shown:?}");
    }
    (cmds.len(), errored)
}

#[test]
fn decoder_agrees_with_redis_server() {
    let Some(open) = Server::start(&[]) else {
        eprintln!(
            "SKIPPED: redis-server not found or did not start (apt-get install redis-server)"
        );
        return;
    };
    let Some(locked) = Server::start(&["--requirepass", "secret"]) else {
        panic!("redis-server started once but not with --requirepass");
    };
    let big_inline = vec![b'a'; 64 * 1024 + 10];
    let mut big_count = b"*".to_vec();
    big_count.resize(70_001, b'1');
    let mut big_bulk_count = b"*1\r\n$".to_vec();
    big_bulk_count.resize(70_005, b'1');
    let mut long_inline = vec![b'b'; 80_000];
    long_inline.extend_from_slice(b" x\r\n");
    let mut too_long_inline = vec![b'b'; 100_000];
    too_long_inline.extend_from_slice(b" x\r\n");
    for fixed in [
        &big_inline,
        &big_count,
        &big_bulk_count,
        &long_inline,
        &too_long_inline,
    ] {
        check(&open, fixed, true);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut commands, mut errors) = (0, 0);
    for _ in 0..400 {
        let input: Vec<u8> = (0..1 + rng.below(6))
            .flat_map(|_| fragment(&mut rng))
            .collect();
        for (n, errored) in [check(&open, &input, true), check(&locked, &input, false)] {
            commands += n;
            errors += usize::from(errored);
        }
    }
    eprintln!("800 streams: {commands} commands, {errors} ended in a protocol error");
    assert!(
        commands > 400 && errors > 100,
        "the generator lost its variety"
    );
}
