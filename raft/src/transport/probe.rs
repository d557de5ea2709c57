//! Raw cluster-bus frames an outsider could send, for the bus-security tests and tools: a
//! process that has not authenticated must get none of them decoded, let alone applied.
//! Also [`super::Transport::identify`]: which node answers at a bus address.

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

impl super::Transport {
    /// Asks the node whose bus is at `addr` (a bus address or `ip:port@cport`) for its id,
    /// over an authenticated connection: the hello names no node ([`NodeId::MAX`]), so the
    /// peer answers with its own id and hangs up instead of opening a session. Only a node
    /// that holds the cluster's secret or certificate can answer.
    pub async fn identify(&self, addr: &str) -> io::Result<NodeId> {
        let bus = crate::addr::bus_addr(addr);
        let mut stream = self.open(&bus).await?;
        let hello = Frame::Hello {
            from: self.id(),
            to: NodeId::MAX,
        };
        tokio::io::AsyncWriteExt::write_all(&mut stream, &hello.encode()?).await?;
        match super::frame::read_frame(&mut stream).await? {
            Some(Frame::HelloAck { id }) => Ok(id),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{bus} did not say who it is: {other:?}"),
            )),
        }
    }
}
