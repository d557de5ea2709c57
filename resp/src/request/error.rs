//! Protocol errors with Redis 7.0.15's exact reply texts.

use bytes::{BufMut, Bytes, BytesMut};

use crate::Reply;

/// A request the server must answer with an error and then close the connection on (Redis sets
/// `CLIENT_CLOSE_AFTER_REPLY`; the rest of the pipeline is dropped).
///
/// `Display` is the reply text without the leading `-` (`ERR Protocol error: ...`). Prefer
/// [`ProtocolError::to_reply`] for the wire: it is byte-exact even when
/// [`ProtocolError::ExpectedDollar`] carries a non-ASCII byte, which `Display` cannot show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// `*N` with N not a strict integer (Redis `string2ll`) or N > `INT_MAX`.
    #[error("ERR Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// An element header in a multibulk request that does not start with `$`.
    #[error("ERR Protocol error: expected '$', got '{}'", shown(*.0))]
    ExpectedDollar(u8),
    /// `$N` with N not a strict integer, negative, or above `proto-max-bulk-len`.
    #[error("ERR Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// More than 64 KiB of inline request without a newline.
    #[error("ERR Protocol error: too big inline request")]
    TooBigInlineRequest,
    /// More than 64 KiB of `*N` header without a `\r`.
    #[error("ERR Protocol error: too big mbulk count string")]
    TooBigMbulkCountString,
    /// More than 64 KiB of `$N` header without a `\r`.
    #[error("ERR Protocol error: too big bulk count string")]
    TooBigBulkCountString,
    /// An inline request whose quotes do not close (or a closing quote not followed by a blank).
    #[error("ERR Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// `*N` with N > 10 from a client that has not authenticated yet (CVE-2021-32675 guard).
    #[error("ERR Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// `$N` with N > 16384 from a client that has not authenticated yet.
    #[error("ERR Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
}

impl ProtocolError {
    /// The exact error reply Redis sends before closing (`-<text>\r\n` once encoded).
    pub fn to_reply(&self) -> Reply {
        match self {
            ProtocolError::ExpectedDollar(b) => {
                let mut text = BytesMut::with_capacity(48);
                text.put_slice(b"ERR Protocol error: expected '$', got '");
                // addReplyErrorFormat maps CR and LF to spaces so the reply stays one line.
                text.put_u8(if matches!(b, b'\r' | b'\n') { b' ' } else { *b });
                text.put_u8(b'\'');
                Reply::Error(text.freeze())
            }
            other => Reply::Error(Bytes::from(other.to_string())),
        }
    }
}

/// How `Display` shows the unexpected byte: CR/LF as a space (as Redis does), others as the
/// Latin-1 character.
fn shown(b: u8) -> char {
    if matches!(b, b'\r' | b'\n') {
        ' '
    } else {
        char::from(b)
    }
}

impl From<ProtocolError> for Reply {
    fn from(e: ProtocolError) -> Reply {
        e.to_reply()
    }
}
