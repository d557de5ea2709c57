//! Properties checked by the fuzz targets in `fuzz/` (`resp_oneshot`, `resp_split`) and, on
//! their committed corpora, by `resp/tests/fuzz_corpus.rs`. Each function panics when a
//! property fails.
//!
//! Input format shared by both targets: the first byte is a mode (bit 0 set: the connection
//! has not authenticated yet; the other bits seed the split points), the rest is the stream.

use bytes::{Bytes, BytesMut};

use crate::request::READ_CHUNK;
use crate::{Protocol, ProtocolError, RequestDecoder};

/// Outcome of decoding a whole stream: the commands, then the error that ended it, if any.
type Outcome = (Vec<Vec<Vec<u8>>>, Option<ProtocolError>);

/// Largest single allocation allowed while decoding `len` input bytes: the read buffer (what
/// arrived, plus a read chunk of headroom) or one request's argument vector (a 32-byte handle
/// per argument, each at least two bytes of input, doubled by growth) — never a length or
/// count the stream merely declares.
pub fn alloc_bound(len: usize) -> usize {
    32 * len + 4 * READ_CHUNK
}

/// Growth of live heap bytes allowed while decoding `len` input bytes: the buffer and every
/// decoded argument, with the per-argument handles of the decoder and of the property's
/// copies (linear in what arrived, whatever the headers declare).
pub fn peak_bound(len: usize) -> usize {
    128 * len + 4 * READ_CHUNK
}

fn check_error(e: &ProtocolError) {
    // The error's reply must be one well-formed RESP line.
    let wire = e.to_reply().to_bytes(Protocol::Resp2);
    assert!(wire.starts_with(b"-ERR Protocol error: ") && wire.ends_with(b"\r\n"));
    assert_eq!(memchr::memchr(b'\n', &wire), Some(wire.len() - 1));
}

/// Decodes `input` delivered in pieces of the lengths `sizes` yields (cycled as needed).
fn decode(input: &[u8], mut sizes: impl FnMut() -> usize, authenticated: bool) -> Outcome {
    let mut d = RequestDecoder::new();
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    let mut received = 0;
    let mut rest = input;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(sizes().clamp(1, rest.len()));
        rest = tail;
        d.reserve_for_read(&mut buf);
        // Capacity follows what arrived (geometric growth), never what a header declares.
        let bound = 2 * received + 2 * READ_CHUNK;
        assert!(
            buf.capacity() <= bound,
            "capacity {} after {received} bytes",
            buf.capacity()
        );
        buf.extend_from_slice(piece);
        received += piece.len();
        loop {
            match d.decode(&mut buf, authenticated) {
                Ok(Some(args)) => {
                    assert!(!args.is_empty(), "a command has a name");
                    commands.push(args.iter().map(|a| a.to_vec()).collect());
                }
                Ok(None) => break,
                Err(e) => {
                    check_error(&e);
                    return (commands, Some(e));
                }
            }
        }
    }
    (commands, None)
}

/// The decoder on the whole stream at once: no panic, every command has a name, a protocol
/// error has a one-line reply, and the commands re-encoded as multibulk decode to themselves.
pub fn request_oneshot(data: &[u8]) {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let authenticated = mode & 1 == 0;
    let (commands, _) = decode(input, || input.len(), authenticated);
    // Re-encode what was accepted: an authenticated decoder must give the same commands back.
    let mut wire = Vec::new();
    for args in &commands {
        wire.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            wire.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            wire.extend_from_slice(a);
            wire.extend_from_slice(b"\r\n");
        }
    }
    let mut d = RequestDecoder::new();
    let mut buf = BytesMut::from(&wire[..]);
    for args in &commands {
        let got: Vec<Bytes> = d
            .decode(&mut buf, true)
            .expect("re-encoded commands decode")
            .expect("re-encoded command is complete");
        assert_eq!(&got, args, "re-encoded command differs");
    }
    assert!(buf.is_empty(), "re-encoded stream fully consumed");
}

/// Piece lengths for [`request_split`]: a xorshift stream seeded by the mode byte, mixing
/// single bytes, short reads and reads larger than [`READ_CHUNK`].
fn split_sizes(mode: u8) -> impl FnMut() -> usize {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(mode >> 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let max = [1, 2, 7, 64, 1000, 3 * READ_CHUNK][(x >> 59) as usize % 6];
        1 + (x >> 8) as usize % max
    }
}

/// Arbitrary bytes split at pseudo-random points (seeded by the mode byte), and in reads of a
/// fixed size (also from the mode byte), decode to the same commands and error as the whole
/// stream at once; the read buffer's capacity follows what arrived.
pub fn request_split(data: &[u8]) {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let authenticated = mode & 1 == 0;
    let whole = decode(input, || input.len(), authenticated);
    let random = decode(input, split_sizes(mode), authenticated);
    same_outcome(&whole, &random, "pseudo-random reads");
    let chunk = 1 + usize::from(mode >> 1) * 7;
    let fixed = decode(input, || chunk, authenticated);
    same_outcome(&whole, &fixed, &format!("{chunk}-byte reads"));
}

fn same_outcome(whole: &Outcome, pieces: &Outcome, how: &str) {
    // Whether a line is "too big" depends on what was buffered when it was looked at (64 KiB
    // without a terminator), in Redis too: only then may the outcomes differ, and the side that
    // stopped early must have decoded a prefix of the other's commands.
    let too_big = |o: &Outcome| {
        use ProtocolError::*;
        matches!(
            o.1,
            Some(TooBigInlineRequest | TooBigMbulkCountString | TooBigBulkCountString)
        )
    };
    if too_big(pieces) && pieces != whole {
        assert!(
            whole.0.starts_with(&pieces.0),
            "{how} decoded other commands"
        );
    } else if too_big(whole) && pieces != whole {
        assert!(
            pieces.0.starts_with(&whole.0),
            "{how} decoded other commands"
        );
    } else {
        assert_eq!(pieces, whole, "decoding in {how} differs");
    }
}
