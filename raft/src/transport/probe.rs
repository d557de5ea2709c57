//! Raw cluster-bus frames an outsider could send, for the bus-security tests and tools: a
//! process that has not authenticated must get none of them decoded, let alone applied.

use std::io;

use openraft::raft::AppendEntriesRequest;

use super::frame::{Frame, RpcRequest};
use crate::types::{GroupId, NodeId, Vote};

/// `HELLO` claiming to be node `from`, then an empty AppendEntries for each of `groups` from a
/// forged leader `from` with a committed vote in `term`. A node that accepted these would
/// adopt `term` and report `from` as its leader.
pub fn forged_heartbeats(
    from: NodeId,
    to: NodeId,
    groups: &[GroupId],
    term: u64,
) -> io::Result<Vec<u8>> {
    let mut out = Frame::Hello { from, to }.encode()?;
    for (i, &group) in groups.iter().enumerate() {
        let req = AppendEntriesRequest {
            vote: Vote::new_committed(term, from),
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        };
        out.extend(
            Frame::Request {
                id: i as u64 + 1,
                group,
                sent_ms: crate::clock::own_wall_ms(),
                body: RpcRequest::Append(req),
            }
            .encode()?,
        );
    }
    Ok(out)
}
