//! Wire format of the cluster bus.
//!
//! Every frame is `len u32 BE | version u8 | kind u8 | rest`, `len` counting the bytes after
//! itself. Kinds: `HELLO` (`from u64 | to u64`), `HELLO_ACK` (`id u64`), `REQUEST`
//! (`request id u64 | group u64 | sent_ms i64 | bincode(RpcRequest)`), `RESPONSE` (`request id
//! u64 | sent_ms i64 | bincode(RpcResponse)`); integers big-endian. `sent_ms` is the sender's
//! wall clock (see [`crate::clock`]). The enums below are encoded by variant position:
//! append new variants at the end, never reorder (a test freezes the tags).

use std::io;

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::types::{GroupId, NodeId, TypeConfig, Vote};

/// Protocol version carried by every frame.
pub const VERSION: u8 = 2;
/// `sent_ms` of a frame from a node that does not send it (version 1).
pub(crate) const NO_TIME: i64 = i64::MIN;
/// Largest frame accepted (snapshot chunks are 1 MiB, append batches are bounded by openraft).
pub const MAX_FRAME: usize = 64 << 20;

pub(crate) const HELLO: u8 = 0;
pub(crate) const HELLO_ACK: u8 = 1;
pub(crate) const REQUEST: u8 = 2;
pub(crate) const RESPONSE: u8 = 3;

/// A Raft RPC addressed to one group.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    /// AppendEntries (also heartbeats).
    Append(AppendEntriesRequest<TypeConfig>),
    /// RequestVote.
    Vote(VoteRequest<TypeConfig>),
    /// Pre-vote (asks without changing the term).
    PreVote(VoteRequest<TypeConfig>),
    /// One piece of a snapshot file; the receiver installs it after the `last` piece.
    SnapshotChunk {
        /// The sending leader's vote.
        vote: Vote,
        /// Identifies one transfer from this sender.
        transfer: u64,
        /// Byte offset of `data` in the file.
        offset: u64,
        /// File bytes.
        data: Vec<u8>,
        /// This is the final piece.
        last: bool,
    },
    /// Leader transfer notification.
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// One AppendEntries of a pipelined replication stream; the receiver feeds a stream's
    /// requests to Raft in order and answers each with [`RpcResponse::StreamAppend`].
    StreamAppend {
        /// Identifies the sender's stream; a new id from the same peer replaces the old stream.
        stream: u64,
        /// The request.
        req: AppendEntriesRequest<TypeConfig>,
    },
    /// The sender closed stream `stream`.
    StreamEnd {
        /// The stream id.
        stream: u64,
    },
    /// A proposal forwarded to the leader by a member that does not lead the group.
    Propose(Vec<u8>),
    /// An application request (opaque bytes) for the service registered under
    /// [`super::APP_GROUP`]: node-to-node calls that need the bus's authentication.
    App(Vec<u8>),
}

/// The outcome of a forwarded [`RpcRequest::Propose`].
#[derive(Debug, Serialize, Deserialize)]
pub enum ProposeOutcome {
    /// Applied; what applying it returned.
    Applied(Vec<u8>),
    /// The receiver does not lead the group: not appended.
    NotLeader,
    /// May or may not be committed.
    Indeterminate(String),
}

/// The answer to an [`RpcRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    /// AppendEntries answer.
    Append(AppendEntriesResponse<TypeConfig>),
    /// Vote or pre-vote answer.
    Vote(VoteResponse<TypeConfig>),
    /// A non-final snapshot piece was stored.
    SnapshotAck,
    /// The snapshot was installed (or refused by vote).
    Snapshot(SnapshotResponse<TypeConfig>),
    /// Leader transfer answer.
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    /// The receiver failed to handle the request.
    Error(String),
    /// The receiver does not run this group.
    NoGroup,
    /// Outcome of one pipelined append (flushed up to a log id, or conflict / higher vote).
    StreamAppend(StreamAppendResult<TypeConfig>),
    /// Outcome of a forwarded proposal.
    Proposed(ProposeOutcome),
    /// The application service's answer to [`RpcRequest::App`]: bytes, or an error text.
    App(Result<Vec<u8>, String>),
}

/// A decoded frame.
#[derive(Debug)]
pub(crate) enum Frame {
    Hello {
        from: NodeId,
        to: NodeId,
    },
    HelloAck {
        id: NodeId,
    },
    Request {
        id: u64,
        group: GroupId,
        sent_ms: i64,
        body: RpcRequest,
    },
    Response {
        id: u64,
        sent_ms: i64,
        body: RpcResponse,
    },
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn put_header(out: &mut Vec<u8>, kind: u8) {
    out.extend_from_slice(&[0, 0, 0, 0, VERSION, kind]);
}

fn finish(mut out: Vec<u8>) -> io::Result<Vec<u8>> {
    let len = out.len() - 4;
    if len > MAX_FRAME {
        return Err(invalid(format!("frame of {len} bytes exceeds the limit")));
    }
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

impl Frame {
    /// Encodes to wire bytes.
    pub(crate) fn encode(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(64);
        match self {
            Frame::Hello { from, to } => {
                put_header(&mut out, HELLO);
                out.extend_from_slice(&from.to_be_bytes());
                out.extend_from_slice(&to.to_be_bytes());
            }
            Frame::HelloAck { id } => {
                put_header(&mut out, HELLO_ACK);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Frame::Request {
                id,
                group,
                sent_ms,
                body,
            } => {
                put_header(&mut out, REQUEST);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&group.to_be_bytes());
                out.extend_from_slice(&sent_ms.to_be_bytes());
                bincode::serialize_into(&mut out, body).map_err(|e| invalid(e.to_string()))?;
            }
            Frame::Response { id, sent_ms, body } => {
                put_header(&mut out, RESPONSE);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&sent_ms.to_be_bytes());
                bincode::serialize_into(&mut out, body).map_err(|e| invalid(e.to_string()))?;
            }
        }
        finish(out)
    }

    /// Decodes the bytes after the length prefix.
    pub(crate) fn decode(buf: &[u8]) -> io::Result<Frame> {
        if buf.len() < 2 {
            return Err(invalid("short frame"));
        }
        if buf[0] != VERSION && buf[0] != 1 {
            return Err(invalid(format!(
                "unsupported cluster-bus version {}",
                buf[0]
            )));
        }
        let rest = &buf[2..];
        // Version 1 had no send time: the body starts 8 bytes earlier.
        let t = usize::from(buf[0] != 1) * 8;
        let u64_at = |i: usize| -> io::Result<u64> {
            rest.get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| invalid("short frame"))
        };
        match buf[1] {
            HELLO => Ok(Frame::Hello {
                from: u64_at(0)?,
                to: u64_at(8)?,
            }),
            HELLO_ACK => Ok(Frame::HelloAck { id: u64_at(0)? }),
            REQUEST => {
                let body = bincode::deserialize(rest.get(16 + t..).unwrap_or_default())
                    .map_err(|e| invalid(e.to_string()))?;
                Ok(Frame::Request {
                    id: u64_at(0)?,
                    group: u64_at(8)?,
                    sent_ms: if t == 0 { NO_TIME } else { u64_at(16)? as i64 },
                    body,
                })
            }
            RESPONSE => {
                let body = bincode::deserialize(rest.get(8 + t..).unwrap_or_default())
                    .map_err(|e| invalid(e.to_string()))?;
                Ok(Frame::Response {
                    id: u64_at(0)?,
                    sent_ms: if t == 0 { NO_TIME } else { u64_at(8)? as i64 },
                    body,
                })
            }
            k => Err(invalid(format!("unknown frame kind {k}"))),
        }
    }
}

/// Reads one frame; `Ok(None)` on a clean end of stream.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(invalid(format!("frame of {len} bytes exceeds the limit")));
    }
    // Grow with what arrives, not with what the header declares: a peer announcing 64 MiB and
    // sending nothing must not cost 64 MiB.
    let mut buf = Vec::with_capacity(len.min(INITIAL_READ));
    r.take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame cut short: {} of {len} bytes", buf.len()),
        ));
    }
    Frame::decode(&buf).map(Some)
}

/// Capacity reserved up front for a frame body; larger bodies grow as their bytes arrive.
const INITIAL_READ: usize = 64 << 10;

/// Fuzz property of the `raft_frame` target (`fuzz/`), replayed on its committed corpus by
/// `raft/tests/fuzz_corpus.rs`.
#[doc(hidden)]
pub mod fuzzing {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

    use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
    use openraft::type_config::alias::{CommittedLeaderIdOf, LeaderIdOf};
    use openraft::vote::RaftLeaderId;
    use openraft::EntryPayload;

    use super::{Frame, ProposeOutcome, RpcRequest, RpcResponse};
    use crate::types::{Entry, LogId, Payload, TypeConfig, Vote};

    /// Largest single allocation, and heap growth, allowed while reading `len` bytes of
    /// frames: what arrived, plus serde's cautious preallocation (at most 1 MiB per sequence
    /// being decoded), never a declared frame or vector length.
    pub fn alloc_bound(len: usize) -> usize {
        4 * len + (2 << 20)
    }

    /// Reads frames from `data` as a connection would, until the end or the first error: never
    /// panics, and every decoded frame re-encodes to bytes that decode and re-encode to
    /// themselves.
    pub fn frame_stream(data: &[u8]) {
        let mut r = data;
        while let Ok(Some(frame)) = ready(super::read_frame(&mut r)) {
            let Ok(wire) = frame.encode() else { continue };
            let again = Frame::decode(&wire[4..]).expect("a re-encoded frame decodes");
            let wire2 = again.encode().expect("a decoded frame re-encodes");
            assert_eq!(wire, wire2, "re-encoding is not stable for {frame:?}");
        }
    }

    /// Polls a future that cannot pend (it reads from memory) to completion.
    fn ready<F: Future>(f: F) -> F::Output {
        fn clone(_: *const ()) -> RawWaker {
            RawWaker::new(std::ptr::null(), &VTABLE)
        }
        fn noop(_: *const ()) {}
        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
        // SAFETY: the vtable's functions ignore the (null) data pointer.
        let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
        let mut cx = Context::from_waker(&waker);
        match pin!(f).poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("a read from memory pended"),
        }
    }

    fn log_id(term: u64, index: u64) -> LogId {
        let c: CommittedLeaderIdOf<TypeConfig> =
            LeaderIdOf::<TypeConfig>::new(term, 1).to_committed();
        LogId::new(c, index)
    }

    /// Real frames of every kind, as seeds for the corpus.
    pub fn seed_frames() -> Vec<Vec<u8>> {
        let entries: Vec<Entry> = (1..4)
            .map(|i| Entry {
                log_id: log_id(2, i),
                payload: EntryPayload::Normal(Payload(
                    format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n{i}\r\n").into_bytes(),
                )),
            })
            .collect();
        let append = AppendEntriesRequest {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(log_id(1, 0)),
            entries,
            leader_commit: Some(log_id(2, 1)),
        };
        let heartbeat = AppendEntriesRequest {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(log_id(2, 3)),
            entries: Vec::new(),
            leader_commit: Some(log_id(2, 3)),
        };
        let vote = VoteRequest {
            vote: Vote::new(3, 2),
            last_log_id: Some(log_id(2, 3)),
            leadership_transfer: false,
        };
        let frames = vec![
            Frame::Hello { from: 1, to: 2 },
            Frame::HelloAck { id: 2 },
            Frame::Request {
                id: 1,
                group: 0,
                sent_ms: 1_765_000_000_000 + 1,
                body: RpcRequest::Append(append),
            },
            Frame::Request {
                id: 2,
                group: 3,
                sent_ms: 1_765_000_000_000 + 2,
                body: RpcRequest::StreamAppend {
                    stream: 9,
                    req: heartbeat,
                },
            },
            Frame::Request {
                id: 3,
                group: 0,
                sent_ms: 1_765_000_000_000 + 3,
                body: RpcRequest::Vote(vote.clone()),
            },
            Frame::Request {
                id: 4,
                group: 0,
                sent_ms: 1_765_000_000_000 + 4,
                body: RpcRequest::PreVote(vote),
            },
            Frame::Request {
                id: 5,
                group: 1,
                sent_ms: 1_765_000_000_000 + 5,
                body: RpcRequest::SnapshotChunk {
                    vote: Vote::new_committed(2, 1),
                    transfer: 7,
                    offset: 0,
                    data: b"snapshot bytes".to_vec(),
                    last: true,
                },
            },
            Frame::Request {
                id: 6,
                group: 1,
                sent_ms: 1_765_000_000_000 + 6,
                body: RpcRequest::StreamEnd { stream: 9 },
            },
            Frame::Request {
                id: 7,
                group: 2,
                sent_ms: 1_765_000_000_000 + 7,
                body: RpcRequest::Propose(b"*1\r\n$4\r\nPING\r\n".to_vec()),
            },
            Frame::Response {
                id: 1,
                sent_ms: -1,
                body: RpcResponse::Append(AppendEntriesResponse::Success),
            },
            Frame::Response {
                id: 2,
                sent_ms: -2,
                body: RpcResponse::Append(AppendEntriesResponse::HigherVote(Vote::new(4, 3))),
            },
            Frame::Response {
                id: 3,
                sent_ms: -3,
                body: RpcResponse::SnapshotAck,
            },
            Frame::Response {
                id: 4,
                sent_ms: -4,
                body: RpcResponse::Error("no such group".into()),
            },
            Frame::Response {
                id: 5,
                sent_ms: -5,
                body: RpcResponse::NoGroup,
            },
            Frame::Response {
                id: 6,
                sent_ms: -6,
                body: RpcResponse::StreamAppend(Ok(Some(log_id(2, 3)))),
            },
            Frame::Response {
                id: 7,
                sent_ms: -7,
                body: RpcResponse::Proposed(ProposeOutcome::Applied(b"+OK\r\n".to_vec())),
            },
            Frame::Response {
                id: 8,
                sent_ms: -8,
                body: RpcResponse::Proposed(ProposeOutcome::NotLeader),
            },
            Frame::Request {
                id: 8,
                group: u64::MAX,
                sent_ms: 1_765_000_000_000 + 8,
                body: RpcRequest::App(b"meet\n127.0.0.1\n7004\n17004".to_vec()),
            },
            Frame::Response {
                id: 9,
                sent_ms: -9,
                body: RpcResponse::App(Err("ERR try again".into())),
            },
        ];
        frames
            .iter()
            .map(|f| f.encode().expect("seed frame encodes"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_tags_and_round_trip() {
        // Variant positions are the wire tags: changing them breaks mixed-version clusters.
        let ack = bincode::serialize(&RpcResponse::SnapshotAck).unwrap();
        assert_eq!(ack, 2u32.to_le_bytes());
        let nog = bincode::serialize(&RpcResponse::NoGroup).unwrap();
        assert_eq!(nog, 6u32.to_le_bytes());
        let chunk = RpcRequest::SnapshotChunk {
            vote: Vote::new(1, 2),
            transfer: 7,
            offset: 0,
            data: vec![1],
            last: true,
        };
        assert_eq!(
            &bincode::serialize(&chunk).unwrap()[..4],
            &3u32.to_le_bytes()
        );
        assert_eq!((HELLO, HELLO_ACK, REQUEST, RESPONSE), (0, 1, 2, 3));
        let end = bincode::serialize(&RpcRequest::StreamEnd { stream: 1 }).unwrap();
        assert_eq!(&end[..4], &6u32.to_le_bytes());
        let sa = bincode::serialize(&RpcResponse::StreamAppend(Ok(None))).unwrap();
        assert_eq!(&sa[..4], &7u32.to_le_bytes());
        let app = bincode::serialize(&RpcRequest::App(vec![1])).unwrap();
        assert_eq!(&app[..4], &8u32.to_le_bytes());
        let app = bincode::serialize(&RpcResponse::App(Ok(vec![1]))).unwrap();
        assert_eq!(&app[..4], &9u32.to_le_bytes());

        let f = Frame::Request {
            id: 9,
            group: 4,
            sent_ms: 123,
            body: chunk,
        };
        let bytes = f.encode().unwrap();
        assert_eq!(
            u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize,
            bytes.len() - 4
        );
        match Frame::decode(&bytes[4..]).unwrap() {
            Frame::Request {
                id: 9,
                group: 4,
                sent_ms: 123,
                body:
                    RpcRequest::SnapshotChunk {
                        transfer: 7,
                        last: true,
                        ..
                    },
            } => {}
            other => panic!("{other:?}"),
        }
        // A version 1 frame (no send time) from an older node still decodes.
        let mut v1 = bytes[..4 + 2 + 16].to_vec();
        v1[4] = 1;
        v1.extend_from_slice(&bytes[4 + 2 + 24..]);
        match Frame::decode(&v1[4..]).unwrap() {
            Frame::Request {
                id: 9,
                sent_ms: NO_TIME,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        let mut bad = bytes.clone();
        bad[4] = 99;
        assert!(Frame::decode(&bad[4..])
            .unwrap_err()
            .to_string()
            .contains("version"));
    }
}
