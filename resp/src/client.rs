//! Client side of the protocol for black-box tests (feature `client`): frame and decode the
//! replies a server sends, encode requests.
//!
//! Decoding is done by the `redis-protocol` crate, an implementation independent of our
//! encoder, so a test that decodes what Pinnacle sent also checks that it is well formed.

use bytes::{BufMut, BytesMut};
use redis_protocol::{resp2, resp3};

use crate::{Protocol, Reply};

/// A reply that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The bytes are not valid RESP (the decoder's own message).
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// Valid RESP3 that [`Reply`] cannot hold (attributes, streamed strings, a verbatim format
    /// other than `txt`/`mkd`).
    #[error("unsupported reply: {0}")]
    Unsupported(&'static str),
}

/// Length of the first complete reply frame at the front of `buf`, or `None` if it is not all
/// there yet. Use it to cut a raw byte stream into replies for byte-exact comparisons.
pub fn reply_frame_len(buf: &[u8], proto: Protocol) -> Result<Option<usize>, ClientError> {
    let found = match proto {
        Protocol::Resp2 => resp2::decode::decode_range(buf).map(|r| r.map(|(_, n)| n)),
        Protocol::Resp3 => resp3::decode::complete::decode_range(buf).map(|r| r.map(|(_, n)| n)),
    };
    found.map_err(|e| ClientError::Malformed(e.to_string()))
}

/// Decodes and removes the first complete reply at the front of `buf`; `None` if incomplete.
///
/// RESP2 cannot tell maps, sets, doubles and booleans from arrays, bulks and integers, and both
/// of its nulls (`$-1`, `*-1`) decode as [`Reply::Null`]; RESP3's `_` is [`Reply::Null`] too.
pub fn decode_reply(buf: &mut BytesMut, proto: Protocol) -> Result<Option<Reply>, ClientError> {
    let malformed =
        |e: redis_protocol::error::RedisProtocolError| ClientError::Malformed(e.to_string());
    match proto {
        Protocol::Resp2 => match resp2::decode::decode_bytes_mut(buf).map_err(malformed)? {
            Some((frame, _, _)) => Ok(Some(from_resp2(frame))),
            None => Ok(None),
        },
        Protocol::Resp3 => {
            match resp3::decode::complete::decode_bytes_mut(buf).map_err(malformed)? {
                Some((frame, _, _)) => from_resp3(frame).map(Some),
                None => Ok(None),
            }
        }
    }
}

/// Appends `args` as a multibulk request (`*N\r\n$len\r\narg\r\n...`).
pub fn encode_request<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    out.put_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        let a = a.as_ref();
        out.reserve(a.len() + 16);
        out.put_slice(format!("${}\r\n", a.len()).as_bytes());
        out.put_slice(a);
        out.put_slice(b"\r\n");
    }
}

fn from_resp2(frame: resp2::types::BytesFrame) -> Reply {
    use resp2::types::BytesFrame as F;
    match frame {
        F::SimpleString(s) => Reply::Simple(s),
        F::Error(e) => Reply::Error(e.into_inner()),
        F::Integer(n) => Reply::Integer(n),
        F::BulkString(b) => Reply::Bulk(b),
        F::Array(items) => Reply::Array(items.into_iter().map(from_resp2).collect()),
        F::Null => Reply::Null,
    }
}

fn from_resp3(frame: resp3::types::BytesFrame) -> Result<Reply, ClientError> {
    use resp3::types::{BytesFrame as F, Resp3Frame, VerbatimStringFormat};
    let list = |items: Vec<F>| {
        items
            .into_iter()
            .map(from_resp3)
            .collect::<Result<Vec<_>, _>>()
    };
    if frame.attributes().is_some_and(|a| !a.is_empty()) {
        return Err(ClientError::Unsupported("attributes"));
    }
    Ok(match frame {
        F::BlobString { data, .. } => Reply::Bulk(data),
        F::BlobError { data, .. } => Reply::Error(data),
        F::SimpleString { data, .. } => Reply::Simple(data),
        F::SimpleError { data, .. } => Reply::Error(data.into_inner()),
        F::Boolean { data, .. } => Reply::Boolean(data),
        F::Null => Reply::Null,
        F::Number { data, .. } => Reply::Integer(data),
        F::Double { data, .. } => Reply::Double(data),
        F::BigNumber { data, .. } => Reply::BigNumber(data),
        F::VerbatimString { data, format, .. } => Reply::Verbatim(
            match format {
                VerbatimStringFormat::Text => "txt",
                VerbatimStringFormat::Markdown => "mkd",
            },
            data,
        ),
        F::Array { data, .. } => Reply::Array(list(data)?),
        F::Push { data, .. } => Reply::Push(list(data)?),
        F::Set { data, .. } => Reply::Set(list(data.into_iter().collect())?),
        F::Map { data, .. } => Reply::Map(
            data.into_iter()
                .map(|(k, v)| Ok((from_resp3(k)?, from_resp3(v)?)))
                .collect::<Result<Vec<_>, ClientError>>()?,
        ),
        F::Hello { .. } => return Err(ClientError::Unsupported("HELLO frame")),
        F::ChunkedString(_) => return Err(ClientError::Unsupported("streamed string")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn decodes_what_we_encode_in_both_protocols() {
        let reply = Reply::Array(vec![
            Reply::ok(),
            Reply::Integer(-3),
            Reply::bulk("v"),
            Reply::Map(vec![(Reply::bulk("k"), Reply::Double(1.5))]),
            Reply::Set(vec![Reply::bulk("m")]),
            Reply::Boolean(true),
            Reply::Null,
            Reply::error("ERR x"),
            Reply::Verbatim("txt", Bytes::from_static(b"hi")),
        ]);
        let mut buf = BytesMut::from(&reply.to_bytes(Protocol::Resp3)[..]);
        buf.extend_from_slice(b"+PARTIAL");
        let n = reply_frame_len(&buf, Protocol::Resp3).ok().flatten();
        assert_eq!(n, Some(buf.len() - 8));
        let got = decode_reply(&mut buf, Protocol::Resp3).ok().flatten();
        assert_eq!(got, Some(reply.clone()));
        assert_eq!(decode_reply(&mut buf, Protocol::Resp3).ok().flatten(), None);

        let mut buf = BytesMut::from(&reply.to_bytes(Protocol::Resp2)[..]);
        let got = decode_reply(&mut buf, Protocol::Resp2).ok().flatten();
        let Some(Reply::Array(items)) = got else {
            panic!("expected an array, got {got:?}");
        };
        assert_eq!(
            items[3],
            Reply::Array(vec![Reply::bulk("k"), Reply::bulk("1.5")])
        );
        assert_eq!(items[5], Reply::Integer(1));
        assert!(buf.is_empty());
    }

    #[test]
    fn encode_request_round_trips_through_the_request_decoder() {
        let mut out = BytesMut::new();
        encode_request(&["SET", "k", ""], &mut out);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let args = crate::RequestDecoder::new()
            .decode(&mut out, true)
            .ok()
            .flatten();
        assert_eq!(args.map(|a| a.len()), Some(3));
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(reply_frame_len(b"?x\r\n", Protocol::Resp2).is_err());
        assert_eq!(
            reply_frame_len(b"$5\r\nab", Protocol::Resp2).ok().flatten(),
            None
        );
    }
}
