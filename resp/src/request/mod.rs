//! The request side: turns the bytes a client sent into commands (`Vec<Bytes>` of arguments).
//!
//! # Why a hand-written decoder and not `redis-protocol`
//!
//! The issue names `redis-protocol` 6 (`codec::Resp2`) for framing. For *requests* it does not
//! fit Redis 7.0.15's behaviour, which is the reference. Probed with `resp2::decode::decode`:
//! - it rejects inline commands: `PING\r\n` is `Invalid frame type` (typed in `nc`, sent by
//!   redis-benchmark's `PING_INLINE`);
//! - on a partial frame it returns `Ok(None)` and parses the frame again from its first byte on
//!   the next read. For one big value that costs little (the bulk length is checked first), but
//!   for a big array it is quadratic: an `MSET` of 100 000 pairs arriving in 16 KiB reads took
//!   0.3–0.9 s with it and 5–8 ms here (`benches/decode.rs`, several runs). Redis keeps the multibulk count, the
//!   arguments read so far and the pending bulk length across reads (`processMultibulkBuffer`),
//!   and so does this decoder;
//! - its errors are its own texts (`to_isize: Failed to parse as integer.`); Redis answers
//!   `-ERR Protocol error: invalid multibulk length` and closes;
//! - it accepts what Redis refuses: `*01`, `*+1`, `$04` (Redis's `string2ll` is strict),
//!   `*1\r\n+PING` (Redis: `expected '$', got '+'`), and it waits on `*99999999999` and
//!   `$536870913` where Redis refuses at once (no `INT_MAX` count, no `proto-max-bulk-len`, no
//!   pre-authentication limits of CVE-2021-32675); it returns `*0` as an empty array where
//!   Redis skips it, and refuses `*1\r\n$4\rxPING` where Redis (which ends a header at `\r`
//!   and skips one byte) runs PING.
//!
//! Its RESP2 decoding is also slower: a pipeline of `SET key <100 B>` decodes at 3.6–4.6 M
//! requests/s with it and 6.4–8.9 M here (same bench, one core of a loaded machine).
//!
//! So requests are decoded here, following `processInlineBuffer` / `processMultibulkBuffer` of
//! Redis 7.0.15 line by line; `redis-protocol` serves as the independent reply decoder in tests
//! (every [`Reply`](crate::Reply) we encode must decode with it) and behind
//! the `client` module (feature `client`) for the black-box tests.
//!
//! # Use from a connection loop
//!
//! ```
//! use bytes::BytesMut;
//! use pinnacle_resp::{RequestDecoder, is_cross_protocol_attack};
//!
//! let mut decoder = RequestDecoder::new();
//! let mut buf = BytesMut::new();
//! // loop { decoder.reserve_for_read(&mut buf); socket.read_buf(&mut buf).await?; ...
//! buf.extend_from_slice(b"*1\r\n$4\r\nPING\r\nECHO \"hello world\"\r\n*2\r\n$3\r\nGET");
//! let authenticated = true;
//! let mut commands = Vec::new();
//! loop {
//!     match decoder.decode(&mut buf, authenticated) {
//!         Ok(Some(args)) => {
//!             if is_cross_protocol_attack(&args) {
//!                 break; // close without a reply
//!             }
//!             // execute now, so that AUTH takes effect before the next request is decoded
//!             commands.push(args);
//!         }
//!         Ok(None) => break, // need more bytes: read again, keep `buf` as it is
//!         Err(e) => {
//!             // reply e.to_reply() after the replies already due, flush, close
//!             break;
//!         }
//!     }
//! }
//! assert_eq!(commands.len(), 2);
//! assert_eq!(&commands[1][1][..], b"hello world");
//! ```
//!
//! Argument `Bytes` are zero-copy slices of the read buffer: they keep that buffer's allocation
//! alive. Copy a value (`Bytes::copy_from_slice`) before storing it for long.

mod error;
mod inline;

use std::cell::Cell;

use bytes::{Buf, Bytes, BytesMut};

pub use error::ProtocolError;

/// `PROTO_INLINE_MAX_SIZE`: an inline request or a `*N` / `$N` header line longer than this
/// without its terminator is a protocol error.
pub const PROTO_INLINE_MAX_SIZE: usize = 64 * 1024;
/// Default `proto-max-bulk-len` (512 MiB).
pub const DEFAULT_PROTO_MAX_BULK_LEN: u64 = 512 * 1024 * 1024;
/// Smallest `proto-max-bulk-len` Redis accepts in `CONFIG SET` (1 MiB).
pub const MIN_PROTO_MAX_BULK_LEN: u64 = 1024 * 1024;
/// Most array elements a client may send before it has authenticated.
pub const UNAUTHENTICATED_MAX_MULTIBULK_LEN: i64 = 10;
/// Largest bulk a client may send before it has authenticated.
pub const UNAUTHENTICATED_MAX_BULK_LEN: i64 = 16384;
/// Default `client-query-buffer-limit` (1 GiB): the server closes a client, without a reply,
/// whose unparsed input grows beyond it (compare it with the read buffer's `len()`).
pub const DEFAULT_CLIENT_QUERY_BUFFER_LIMIT: usize = 1024 * 1024 * 1024;
/// Spare capacity to offer a socket read when nothing larger is known to be coming
/// (Redis's `PROTO_IOBUF_LEN`).
pub const READ_CHUNK: usize = 16 * 1024;

/// Incremental decoder of client requests (multibulk and inline), one per connection.
///
/// It keeps the request in progress across calls, so every byte is examined a bounded number of
/// times however the input is split. Feed it the same buffer, appended to by the caller only.
#[derive(Debug)]
pub struct RequestDecoder {
    max_bulk_len: u64,
    /// Arguments of the multibulk request in progress.
    args: Vec<Bytes>,
    /// Total length of `args`.
    args_bytes: usize,
    /// Elements of the multibulk request still to read; 0 when no multibulk is in progress.
    remaining: usize,
    /// Declared length of the bulk being read, once its `$N` header is consumed.
    bulk_len: Option<usize>,
    /// Prefix of the buffer already searched for the current line's terminator.
    scanned: usize,
    /// Set when `reserve_for_read` moved the pending bulk into a buffer of its own (nothing
    /// consumed in front of it), which may then grow in place (realloc) until the bulk is done.
    own_bulk_buffer: Cell<bool>,
}

impl Default for RequestDecoder {
    fn default() -> Self {
        RequestDecoder::new()
    }
}

impl RequestDecoder {
    /// A decoder with the default `proto-max-bulk-len` (512 MiB).
    pub fn new() -> RequestDecoder {
        RequestDecoder::with_max_bulk_len(DEFAULT_PROTO_MAX_BULK_LEN)
    }

    /// A decoder with the given `proto-max-bulk-len`.
    pub fn with_max_bulk_len(max_bulk_len: u64) -> RequestDecoder {
        RequestDecoder {
            max_bulk_len,
            args: Vec::new(),
            args_bytes: 0,
            remaining: 0,
            bulk_len: None,
            scanned: 0,
            own_bulk_buffer: Cell::new(false),
        }
    }

    /// Changes `proto-max-bulk-len` (`CONFIG SET`); applies from the next `$N` header.
    pub fn set_max_bulk_len(&mut self, max_bulk_len: u64) {
        self.max_bulk_len = max_bulk_len;
    }

    /// The `proto-max-bulk-len` in force.
    pub fn max_bulk_len(&self) -> u64 {
        self.max_bulk_len
    }

    /// Decodes the next complete request at the front of `buf` and removes its bytes.
    ///
    /// - `Ok(Some(args))`: a command with at least one argument. Empty inline lines and `*0` /
    ///   `*-N` arrays are skipped without a result, as Redis does.
    /// - `Ok(None)`: `buf` holds no complete request; the decoder keeps what it has parsed of a
    ///   partial one (and `buf` keeps the rest). Read more bytes into the same buffer and call
    ///   again.
    /// - `Err(e)`: Redis would reply `e.to_reply()` and close the connection. The decoder is
    ///   reset and what is left in `buf` is of no further use.
    ///
    /// `authenticated` is false while the connection still has to `AUTH`: it then enforces
    /// the pre-authentication limits. Call once per request and execute it before decoding the
    /// next one, so an `AUTH` in a pipeline lifts the limits for the requests after it.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let result = self.decode_inner(buf, authenticated);
        if result.is_err() {
            self.reset();
        }
        result
    }

    /// Forgets any partial request (for example after the buffer was discarded).
    pub fn reset(&mut self) {
        self.args = Vec::new();
        self.args_bytes = 0;
        self.remaining = 0;
        self.bulk_len = None;
        self.scanned = 0;
        self.own_bulk_buffer.set(false);
    }

    /// True when no multibulk request is in progress (a partial `*N` header or inline line may
    /// still wait in the buffer).
    pub fn is_idle(&self) -> bool {
        self.remaining == 0
    }

    /// Bytes of the arguments already decoded for the request in progress (they no longer
    /// count in the read buffer's `len()`).
    pub fn pending_args_bytes(&self) -> usize {
        self.args_bytes
    }

    /// Bytes still missing from `buf` before the bulk being read (data and its trailing two
    /// bytes) is complete; `None` when no bulk length is pending.
    pub fn bulk_bytes_missing(&self, buf: &BytesMut) -> Option<usize> {
        self.bulk_len
            .map(|len| len.saturating_add(2).saturating_sub(buf.len()))
    }

    /// Spare capacity the next read into `buf` should have.
    ///
    /// [`READ_CHUNK`] normally. While a large bulk is arriving it is what is still missing, but
    /// at most the bytes already buffered: the buffer grows geometrically with what has
    /// *arrived* (linear total copying), never with what a header merely *declares*.
    pub fn read_hint(&self, buf: &BytesMut) -> usize {
        match self.bulk_bytes_missing(buf) {
            Some(missing) if missing > READ_CHUNK => missing.min(buf.len().max(READ_CHUNK)),
            _ => READ_CHUNK,
        }
    }

    /// Makes room in `buf` for the next read. Nothing happens while it has [`READ_CHUNK`] spare
    /// bytes; otherwise it gets [`read_hint`](Self::read_hint) + [`READ_CHUNK`] spare bytes, by
    /// reclaiming consumed space when the allocation is no longer shared, else in a fresh buffer
    /// (the unconsumed bytes are copied). So capacity stays below twice what arrived plus
    /// 2 × [`READ_CHUNK`], at least [`READ_CHUNK`] bytes arrive between two reallocations, and a
    /// large bulk is copied O(1) times per byte overall.
    pub fn reserve_for_read(&self, buf: &mut BytesMut) {
        if buf.capacity() - buf.len() >= READ_CHUNK {
            return;
        }
        let want = self.read_hint(buf) + READ_CHUNK;
        if buf.try_reclaim(want) {
            return;
        }
        if self.own_bulk_buffer.get() {
            // Only the bulk is in this allocation: `reserve` doubles it, in place if it can.
            buf.reserve(want);
            return;
        }
        // Not `reserve` here: it may double an allocation that still holds consumed requests.
        let mut fresh = BytesMut::with_capacity(buf.len() + want);
        fresh.extend_from_slice(buf);
        *buf = fresh;
        self.own_bulk_buffer.set(self.bulk_len.is_some());
    }

    fn decode_inner(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if self.remaining == 0 {
                let Some(&first) = buf.first() else {
                    return Ok(None);
                };
                if first != b'*' {
                    match self.inline(buf)? {
                        Some(args) if args.is_empty() => continue,
                        other => return Ok(other),
                    }
                }
                let Some(cr) = self.header_end(buf, ProtocolError::TooBigMbulkCountString)? else {
                    return Ok(None);
                };
                let n = string2ll(&buf[1..cr])
                    .filter(|&n| n <= i64::from(i32::MAX))
                    .ok_or(ProtocolError::InvalidMultibulkLength)?;
                if n > UNAUTHENTICATED_MAX_MULTIBULK_LEN && !authenticated {
                    return Err(ProtocolError::UnauthenticatedMultibulkLength);
                }
                self.consume(buf, cr + 2);
                if n <= 0 {
                    continue;
                }
                let n = n as usize; // 1..=i32::MAX
                self.remaining = n;
                // Grow with the data, not with the declared count: an element takes >= 6 bytes.
                self.args = Vec::with_capacity(n.min(1024).min(buf.len() / 6 + 1));
            }
            return self.multibulk_body(buf, authenticated);
        }
    }

    /// Reads the elements of the multibulk request in progress.
    fn multibulk_body(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        while self.remaining > 0 {
            let len = match self.bulk_len {
                Some(len) => len,
                None => {
                    let Some(cr) = self.header_end(buf, ProtocolError::TooBigBulkCountString)?
                    else {
                        return Ok(None);
                    };
                    if buf[0] != b'$' {
                        return Err(ProtocolError::ExpectedDollar(buf[0]));
                    }
                    let n = string2ll(&buf[1..cr])
                        .filter(|&n| n >= 0 && n.unsigned_abs() <= self.max_bulk_len)
                        .ok_or(ProtocolError::InvalidBulkLength)?;
                    if n > UNAUTHENTICATED_MAX_BULK_LEN && !authenticated {
                        return Err(ProtocolError::UnauthenticatedBulkLength);
                    }
                    let len = usize::try_from(n).map_err(|_| ProtocolError::InvalidBulkLength)?;
                    self.consume(buf, cr + 2);
                    self.bulk_len = Some(len);
                    len
                }
            };
            // The two bytes after the data are skipped unchecked, like Redis does.
            if buf.len() < len.saturating_add(2) {
                return Ok(None);
            }
            self.args.push(buf.split_to(len).freeze());
            buf.advance(2);
            self.args_bytes += len;
            self.bulk_len = None;
            self.own_bulk_buffer.set(false);
            self.remaining -= 1;
        }
        self.args_bytes = 0;
        Ok(Some(std::mem::take(&mut self.args)))
    }

    /// An inline request: `Some(args)` (possibly empty for a blank line) once its newline is in.
    fn inline(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let Some(nl) = self.find(buf, b'\n') else {
            if buf.len() > PROTO_INLINE_MAX_SIZE {
                return Err(ProtocolError::TooBigInlineRequest);
            }
            return Ok(None);
        };
        let line_len = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let line = buf.split_to(nl + 1).freeze().slice(..line_len);
        self.scanned = 0;
        inline::split_args(&line)
            .map(Some)
            .ok_or(ProtocolError::UnbalancedQuotes)
    }

    /// Index of the `\r` ending the `*N` / `$N` header at the front of `buf`, once the byte
    /// after it has arrived too (Redis does not check that it is `\n`).
    fn header_end(
        &mut self,
        buf: &BytesMut,
        too_big: ProtocolError,
    ) -> Result<Option<usize>, ProtocolError> {
        match self.find(buf, b'\r') {
            None if buf.len() > PROTO_INLINE_MAX_SIZE => Err(too_big),
            Some(cr) if cr + 2 <= buf.len() => Ok(Some(cr)),
            _ => Ok(None),
        }
    }

    /// `strchr(buf, byte)`: the first `byte` before any NUL, remembering how far it looked so a
    /// line arriving in small pieces is not scanned again from its start.
    fn find(&mut self, buf: &[u8], byte: u8) -> Option<usize> {
        let from = self.scanned.min(buf.len());
        // A header (`*3`, `$5`) ends within a few bytes: look at those directly, since
        // `memchr2`'s set-up cost more than the search (~100 instructions per call, four calls
        // per pipelined request).
        let near = buf.len().min(from + 8);
        for (i, &b) in buf[from..near].iter().enumerate() {
            if b == byte || b == 0 {
                self.scanned = from + i;
                return (b == byte).then_some(from + i);
            }
        }
        let from = near;
        match memchr::memchr2(byte, 0, &buf[from..]) {
            Some(i) => {
                self.scanned = from + i;
                (buf[from + i] == byte).then_some(from + i)
            }
            None => {
                self.scanned = buf.len();
                None
            }
        }
    }

    fn consume(&mut self, buf: &mut BytesMut, n: usize) {
        buf.advance(n);
        self.scanned = 0;
    }
}

/// True when the command name is `POST` or `Host:` (any case): Redis then closes the
/// connection without a reply, taking the client for an HTTP request (cross-protocol attack).
pub fn is_cross_protocol_attack(args: &[Bytes]) -> bool {
    args.first().is_some_and(|name| {
        name.eq_ignore_ascii_case(b"post") || name.eq_ignore_ascii_case(b"host:")
    })
}

/// Redis's `string2ll`: a strict base-10 `i64` (no sign `+`, no leading zeros, no `-0`, no
/// blanks, fewer than 21 bytes).
pub fn string2ll(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() >= 21 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

#[cfg(test)]
mod tests;
