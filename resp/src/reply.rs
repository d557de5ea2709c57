//! Semantic replies and their RESP2 / RESP3 wire forms.
//!
//! Handlers build a [`Reply`] (map, set, double, null, push, …); the connection's protocol
//! version picks the wire form, as Redis's `addReply*` functions do.

use bytes::{BufMut, Bytes, BytesMut};

use crate::double::format_double;

/// Protocol version negotiated by a connection (`HELLO 2|3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, the default for a new connection.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

/// A reply value, independent of the wire protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+OK`-style status line.
    Simple(Bytes),
    /// Error line; the text includes its code (`ERR ...`, `WRONGTYPE ...`) without the `-`.
    Error(Bytes),
    /// `:n`.
    Integer(i64),
    /// Bulk string.
    Bulk(Bytes),
    /// Missing value: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// Missing array: `*-1` in RESP2, `_` in RESP3.
    NullArray,
    /// Array of replies.
    Array(Vec<Reply>),
    /// Map: flat array of 2n in RESP2, `%n` in RESP3.
    Map(Vec<(Reply, Reply)>),
    /// Set: array in RESP2, `~n` in RESP3.
    Set(Vec<Reply>),
    /// Double: bulk string in RESP2, `,` in RESP3.
    Double(f64),
    /// Boolean: `:1`/`:0` in RESP2, `#t`/`#f` in RESP3.
    Boolean(bool),
    /// Verbatim string with a 3-byte format (`txt`, `mkd`): bulk in RESP2, `=` in RESP3.
    Verbatim(&'static str, Bytes),
    /// Big number: bulk in RESP2, `(` in RESP3.
    BigNumber(Bytes),
    /// Out-of-band push (pub/sub): array in RESP2, `>` in RESP3.
    Push(Vec<Reply>),
    /// Array of bulk strings already framed (LRANGE): the same wire form as an [`Reply::Array`]
    /// of [`Reply::Bulk`] in both protocols, built without a `Reply` and a refcount per element.
    BulkArray(BulkArray),
}

/// Bulk strings framed as `$len CRLF value CRLF` one after another, and their count.
#[derive(Clone, Debug, PartialEq)]
pub struct BulkArray {
    count: usize,
    wire: Bytes,
}

impl BulkArray {
    /// Starts an empty array with room for about `bytes` bytes of framed values.
    pub fn builder(bytes: usize) -> BulkArrayBuilder {
        BulkArrayBuilder {
            count: 0,
            wire: BytesMut::with_capacity(bytes),
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.count
    }
    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// The elements, sliced out of the framed buffer (for code that inspects a reply).
    pub fn items(&self) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(self.count);
        let mut at = 0;
        let w = &self.wire;
        // The buffer is only ever written by `BulkArrayBuilder::push`, so it is well framed.
        while at < w.len() {
            let mut n = 0usize;
            at += 1; // `$`
            while at < w.len() && w[at] != b'\r' {
                n = n * 10 + usize::from(w[at] - b'0');
                at += 1;
            }
            at += 2;
            let end = (at + n).min(w.len());
            out.push(w.slice(at..end));
            at = end + 2;
        }
        out
    }
}

/// Appends framed bulk strings; [`BulkArrayBuilder::finish`] makes the reply.
#[derive(Debug)]
pub struct BulkArrayBuilder {
    count: usize,
    wire: BytesMut,
}

impl BulkArrayBuilder {
    /// Appends one element.
    pub fn push(&mut self, b: &[u8]) {
        bulk(&mut self.wire, b);
        self.count += 1;
    }
    /// The finished reply.
    pub fn finish(self) -> Reply {
        Reply::BulkArray(BulkArray {
            count: self.count,
            wire: self.wire.freeze(),
        })
    }
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple(Bytes::from_static(b"OK"))
    }
    /// A status line.
    pub fn simple(s: &'static str) -> Reply {
        Reply::Simple(Bytes::from_static(s.as_bytes()))
    }
    /// An error reply; `msg` carries its own code (`"ERR syntax error"`).
    pub fn error(msg: impl Into<String>) -> Reply {
        Reply::Error(Bytes::from(msg.into()))
    }
    /// A bulk string.
    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }
    /// True for an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
    /// Appends the wire form of this reply for protocol `proto` to `out`.
    pub fn encode(&self, proto: Protocol, out: &mut BytesMut) {
        let resp3 = proto == Protocol::Resp3;
        match self {
            Reply::Simple(s) => line(out, b'+', s),
            Reply::Error(e) => line(out, b'-', e),
            Reply::Integer(n) => header(out, b':', *n),
            Reply::Bulk(b) => bulk(out, b),
            Reply::Null if resp3 => out.put_slice(b"_\r\n"),
            Reply::Null => out.put_slice(b"$-1\r\n"),
            Reply::NullArray if resp3 => out.put_slice(b"_\r\n"),
            Reply::NullArray => out.put_slice(b"*-1\r\n"),
            Reply::Array(items) => seq(out, b'*', items, proto),
            Reply::BulkArray(a) => {
                out.reserve(a.wire.len() + 24);
                header(out, b'*', a.count as i64);
                out.extend_from_slice(&a.wire);
            }
            Reply::Set(items) => seq(out, if resp3 { b'~' } else { b'*' }, items, proto),
            Reply::Push(items) => seq(out, if resp3 { b'>' } else { b'*' }, items, proto),
            Reply::Map(pairs) => {
                if resp3 {
                    header(out, b'%', pairs.len() as i64);
                } else {
                    header(out, b'*', 2 * pairs.len() as i64);
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Reply::Double(d) => {
                let text = format_double(*d);
                if resp3 {
                    line(out, b',', text.as_bytes());
                } else {
                    bulk(out, text.as_bytes());
                }
            }
            Reply::Boolean(b) if resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Reply::Boolean(b) => header(out, b':', i64::from(*b)),
            Reply::Verbatim(fmt, text) => {
                if resp3 {
                    header(out, b'=', (text.len() + 4) as i64);
                    out.put_slice(fmt.as_bytes());
                    out.put_u8(b':');
                    out.put_slice(text);
                    out.put_slice(b"\r\n");
                } else {
                    bulk(out, text);
                }
            }
            Reply::BigNumber(n) if resp3 => line(out, b'(', n),
            Reply::BigNumber(n) => bulk(out, n),
        }
    }
    /// The wire form as a fresh buffer (convenient in tests).
    pub fn to_bytes(&self, proto: Protocol) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(proto, &mut out);
        out.freeze()
    }
}

/// A `+`/`-`/`,`/`(` line. CR and LF inside become spaces (as Redis's `addReplyErrorFormat`
/// does), so no reply text can break the framing.
fn line(out: &mut BytesMut, tag: u8, s: &[u8]) {
    out.reserve(s.len() + 3);
    out.put_u8(tag);
    // Most lines are short (`OK`, `PONG`, `QUEUED`): a plain loop beats `memchr2`'s set-up
    // (~150 instructions per call).
    let clean = if s.len() <= 32 {
        !s.iter().any(|&b| b == b'\r' || b == b'\n')
    } else {
        memchr::memchr2(b'\r', b'\n', s).is_none()
    };
    if clean {
        out.put_slice(s);
    } else {
        out.extend(
            s.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    }
    out.put_slice(b"\r\n");
}

/// `tag`, the decimal `n` and CRLF, appended with one copy.
fn header(out: &mut BytesMut, tag: u8, n: i64) {
    let mut buf = [0u8; 24];
    let start = header_into(&mut buf, tag, n);
    out.extend_from_slice(&buf[start..]);
}

/// Writes `tag`, the decimal `n` and CRLF at the end of `buf` (right to left, so no digit
/// count is needed first); returns where they start. `i64::MIN` takes 22 of the 24 bytes.
#[inline]
fn header_into(buf: &mut [u8; 24], tag: u8, n: i64) -> usize {
    buf[22] = b'\r';
    buf[23] = b'\n';
    let mut i = 22;
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    i -= 1;
    buf[i] = tag;
    i
}

/// Values up to this many bytes are framed in a stack buffer and appended with one copy: an
/// LRANGE reply is hundreds of short bulks, and one `put_slice` per piece (five per element,
/// each a call with its own capacity check and `memcpy`) was most of its encoding cost.
const SMALL_BULK: usize = 64;

fn bulk(out: &mut BytesMut, b: &[u8]) {
    let n = b.len();
    if n > SMALL_BULK {
        out.reserve(n + 24);
        header(out, b'$', n as i64);
        out.extend_from_slice(b);
        out.extend_from_slice(b"\r\n");
        return;
    }
    // `$`, at most two digits (n <= 64), CRLF, the value, CRLF.
    let mut buf = [0u8; SMALL_BULK + 7];
    buf[0] = b'$';
    let mut i = if n >= 10 {
        buf[1] = b'0' + (n / 10) as u8;
        buf[2] = b'0' + (n % 10) as u8;
        3
    } else {
        buf[1] = b'0' + n as u8;
        2
    };
    buf[i] = b'\r';
    buf[i + 1] = b'\n';
    i += 2;
    buf[i..i + n].copy_from_slice(b);
    i += n;
    buf[i] = b'\r';
    buf[i + 1] = b'\n';
    out.extend_from_slice(&buf[..i + 2]);
}

fn seq(out: &mut BytesMut, tag: u8, items: &[Reply], proto: Protocol) {
    header(out, tag, items.len() as i64);
    for item in items {
        item.encode(proto, out);
    }
}

#[cfg(test)]
mod oracle_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn both(r: &Reply) -> (Vec<u8>, Vec<u8>) {
        (
            r.to_bytes(Protocol::Resp2).to_vec(),
            r.to_bytes(Protocol::Resp3).to_vec(),
        )
    }

    #[test]
    fn bulk_and_integer_framing_at_every_length_boundary() {
        // Short bulks take the stack-buffer path, longer ones the piecewise one: both must
        // frame exactly as `$len CRLF value CRLF`, whatever the byte values.
        for n in 0..=300usize {
            let v: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
            let mut want = format!("${n}\r\n").into_bytes();
            want.extend_from_slice(&v);
            want.extend_from_slice(b"\r\n");
            let (r2, r3) = both(&Reply::Bulk(Bytes::from(v)));
            assert_eq!((&r2, &r3), (&want, &want), "bulk of {n} bytes");
        }
        let ints = [
            0,
            1,
            -1,
            9,
            10,
            -10,
            99,
            100,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ];
        for n in ints.into_iter().chain((-1000..1000).map(|i| i * 37)) {
            let want = format!(":{n}\r\n").into_bytes();
            assert_eq!(Reply::Integer(n).to_bytes(Protocol::Resp2).to_vec(), want);
        }
    }

    #[test]
    fn every_variant_in_both_protocols() {
        let cases: Vec<(Reply, &[u8], &[u8])> = vec![
            (Reply::ok(), b"+OK\r\n", b"+OK\r\n"),
            (Reply::error("ERR x"), b"-ERR x\r\n", b"-ERR x\r\n"),
            (
                Reply::Integer(i64::MIN),
                b":-9223372036854775808\r\n",
                b":-9223372036854775808\r\n",
            ),
            (Reply::Integer(0), b":0\r\n", b":0\r\n"),
            (Reply::bulk(""), b"$0\r\n\r\n", b"$0\r\n\r\n"),
            (Reply::NullArray, b"*-1\r\n", b"_\r\n"),
            (Reply::Array(vec![]), b"*0\r\n", b"*0\r\n"),
            (Reply::Map(vec![]), b"*0\r\n", b"%0\r\n"),
            (
                Reply::Set(vec![Reply::simple("a")]),
                b"*1\r\n+a\r\n",
                b"~1\r\n+a\r\n",
            ),
            (
                Reply::Push(vec![Reply::Integer(1)]),
                b"*1\r\n:1\r\n",
                b">1\r\n:1\r\n",
            ),
            (Reply::Boolean(true), b":1\r\n", b"#t\r\n"),
            (Reply::Boolean(false), b":0\r\n", b"#f\r\n"),
            (
                Reply::Double(0.1),
                b"$19\r\n0.10000000000000001\r\n",
                b",0.10000000000000001\r\n",
            ),
            (
                Reply::Double(f64::NEG_INFINITY),
                b"$4\r\n-inf\r\n",
                b",-inf\r\n",
            ),
            (
                Reply::Verbatim("txt", Bytes::from_static(b"a:b")),
                b"$3\r\na:b\r\n",
                b"=7\r\ntxt:a:b\r\n",
            ),
            (
                Reply::BigNumber(Bytes::from_static(b"123")),
                b"$3\r\n123\r\n",
                b"(123\r\n",
            ),
        ];
        for (r, resp2, resp3) in cases {
            assert_eq!(both(&r), (resp2.to_vec(), resp3.to_vec()), "{r:?}");
        }
    }

    #[test]
    fn bulk_array_is_an_array_of_bulks_on_the_wire() {
        for n in [0usize, 1, 2, 9, 10, 64, 65, 300] {
            let vals: Vec<Bytes> = (0..n)
                .map(|i| Bytes::from(vec![b'\r'; (i * 13) % 150]))
                .collect();
            let mut b = BulkArray::builder(16);
            for v in &vals {
                b.push(v);
            }
            let r = b.finish();
            let Reply::BulkArray(a) = &r else {
                panic!("{r:?}")
            };
            assert_eq!((a.len(), a.items()), (n, vals.clone()));
            let plain = Reply::Array(vals.into_iter().map(Reply::Bulk).collect());
            assert_eq!(both(&r), both(&plain), "{n} elements");
        }
    }

    #[test]
    fn line_replies_cannot_break_framing() {
        let (r2, r3) = both(&Reply::error("ERR bad\r\nthing\n"));
        assert_eq!(r2, b"-ERR bad  thing \r\n");
        assert_eq!(r3, r2);
        assert_eq!(both(&Reply::simple("a\rb")).0, b"+a b\r\n");
    }

    #[test]
    fn map_is_flat_in_resp2_and_tagged_in_resp3() {
        let r = Reply::Map(vec![(Reply::bulk("a"), Reply::Integer(1))]);
        assert_eq!(&r.to_bytes(Protocol::Resp2)[..], b"*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(&r.to_bytes(Protocol::Resp3)[..], b"%1\r\n$1\r\na\r\n:1\r\n");
    }

    #[test]
    fn nulls_and_doubles() {
        assert_eq!(&Reply::Null.to_bytes(Protocol::Resp2)[..], b"$-1\r\n");
        assert_eq!(&Reply::NullArray.to_bytes(Protocol::Resp2)[..], b"*-1\r\n");
        assert_eq!(&Reply::Null.to_bytes(Protocol::Resp3)[..], b"_\r\n");
        assert_eq!(
            &Reply::Double(1.5).to_bytes(Protocol::Resp3)[..],
            b",1.5\r\n"
        );
        assert_eq!(
            &Reply::Double(2.0).to_bytes(Protocol::Resp2)[..],
            b"$1\r\n2\r\n"
        );
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(0.1), "0.10000000000000001");
        assert_eq!(format_double(1e-7), "9.9999999999999995e-08");
    }
}
