//! Properties checked by the fuzz targets in `resp/fuzz` and, on the committed corpus, by
//! `cargo test`. Each function panics when a property fails.

use bytes::BytesMut;

use crate::request::READ_CHUNK;
use crate::{Protocol, RequestDecoder};

/// Outcome of decoding a whole stream: the commands, then the error that ended it, if any.
type Outcome = (Vec<Vec<Vec<u8>>>, Option<crate::ProtocolError>);

fn decode(input: &[u8], chunk: usize, authenticated: bool, check_memory: bool) -> Outcome {
    let mut d = RequestDecoder::new();
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    let mut received = 0;
    for piece in input.chunks(chunk.max(1)) {
        d.reserve_for_read(&mut buf);
        if check_memory {
            // Capacity follows what arrived (geometric growth), never what a header declares.
            let bound = 2 * received + 2 * READ_CHUNK;
            assert!(
                buf.capacity() <= bound,
                "capacity {} after {received} bytes",
                buf.capacity()
            );
        }
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
                    // The error's reply must be one well-formed RESP line.
                    let wire = e.to_reply().to_bytes(Protocol::Resp2);
                    assert!(wire.starts_with(b"-ERR Protocol error: ") && wire.ends_with(b"\r\n"));
                    assert_eq!(memchr::memchr(b'\n', &wire), Some(wire.len() - 1));
                    return (commands, Some(e));
                }
            }
        }
    }
    (commands, None)
}

/// Arbitrary bytes never panic the request decoder; any split of the stream decodes to the
/// same commands and error as the whole; the read buffer's capacity follows what arrived.
///
/// The first byte picks the pre-authentication mode and the read size; the rest is the stream.
pub fn request_stream(data: &[u8]) {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let authenticated = mode & 1 == 0;
    let chunk = 1 + usize::from(mode >> 1) * 7;
    let whole = decode(input, input.len(), authenticated, false);
    let pieces = decode(input, chunk, authenticated, true);
    // Whether a line is "too big" depends on what was buffered when it was looked at (64 KiB
    // without a terminator), in Redis too: only then may the outcomes differ, and the side that
    // stopped early must have decoded a prefix of the other's commands.
    let too_big = |o: &Outcome| {
        use crate::ProtocolError::*;
        matches!(
            o.1,
            Some(TooBigInlineRequest | TooBigMbulkCountString | TooBigBulkCountString)
        )
    };
    if too_big(&pieces) && pieces != whole {
        assert!(
            whole.0.starts_with(&pieces.0),
            "{chunk}-byte reads decoded other commands"
        );
    } else if too_big(&whole) && pieces != whole {
        assert!(
            pieces.0.starts_with(&whole.0),
            "{chunk}-byte reads decoded other commands"
        );
    } else {
        assert_eq!(pieces, whole, "decoding in {chunk}-byte reads differs");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays the committed fuzz corpus (and any crash reproducers saved beside it).
    #[test]
    fn committed_corpus_holds() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request_stream");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir)
            .expect("resp/fuzz/corpus/request_stream exists")
            .flatten()
        {
            let data = std::fs::read(entry.path()).expect("corpus file is readable");
            request_stream(&data);
            n += 1;
        }
        assert!(n >= 10, "only {n} corpus files in {}", dir.display());
    }
}
