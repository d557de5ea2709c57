//! Pipelined replication: the leader sends a stream's AppendEntries without waiting for each
//! answer, and the follower feeds them, in order, to `Raft::stream_append`, which lets the log
//! flushes of consecutive requests overlap. Order on the wire comes from one connection and
//! from the transport calling `GroupService::handle` in arrival order. A reordering (a
//! connection switch mid-stream) only costs a conflict and a restarted stream, never safety:
//! Raft checks every request's previous log id.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, RPCError};
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use openraft::RPCTypes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::apply::ApplyTarget;
use crate::network::rpc_error;
use crate::transport::frame::{RpcRequest, RpcResponse};
use crate::transport::{HandlerFuture, PendingCall, Transport};
use crate::types::{GroupId, NodeId, Raft, TypeConfig};

/// How many appends may be in flight per stream.
const DEPTH: usize = 64;

/// The least time a stream waits for its next answer before it gives up. openraft asks for
/// `heartbeat_interval` (50 ms, so 37.5 ms soft) per answer, but a follower answers an append
/// only after its log flush, and one fsync on a loaded disk takes longer than that: each such
/// timeout restarted replication (re-sending everything in flight) and, measured with
/// `redis-benchmark --cluster` on a busy machine, left writes at a few thousand per second.
/// A lost connection still fails the stream at once (`CallError::Closed`); commits need only a
/// majority, so one slow follower never holds them up while its stream waits.
const MIN_ANSWER_WAIT: Duration = Duration::from_millis(500);

static STREAM_SEQ: AtomicU64 = AtomicU64::new(1);

type Item = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// Client side: sends `input` to `target` pipelined and yields the answers in order; ends at
/// the first error or conflict.
pub(crate) fn open<'s, S>(
    transport: Transport,
    target: NodeId,
    addr: String,
    group: GroupId,
    input: S,
    ttl: Duration,
) -> BoxFuture<'s, Result<BoxStream<'s, Item>, RPCError<TypeConfig>>>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    let ttl = ttl.max(MIN_ANSWER_WAIT);
    Box::pin(async move {
        let stream = STREAM_SEQ.fetch_add(1, Ordering::Relaxed);
        let (ptx, prx) = mpsc::channel::<Result<PendingCall, RPCError<TypeConfig>>>(DEPTH);
        let me = transport.id();
        let rt = transport.runtime().clone();
        rt.spawn(async move {
            let mut input = input;
            while let Some(req) = input.next().await {
                let res = transport
                    .start_call(
                        target,
                        &addr,
                        group,
                        RpcRequest::StreamAppend { stream, req },
                        ttl,
                    )
                    .await
                    .map_err(|e| rpc_error(e, me, target, ttl, RPCTypes::AppendEntries));
                let failed = res.is_err();
                // Fails once the consumer is gone: stop sending.
                if ptx.send(res).await.is_err() || failed {
                    break;
                }
            }
            // Let the follower drop its side at once (best effort, answer not awaited).
            let _ = transport
                .start_call(target, &addr, group, RpcRequest::StreamEnd { stream }, ttl)
                .await;
        });
        let out = futures_util::stream::unfold(Some(prx), move |state| async move {
            let mut prx = state?;
            let res = match prx.recv().await? {
                Err(e) => Err(e),
                Ok(call) => match call.wait().await {
                    Ok(RpcResponse::StreamAppend(r)) => Ok(r),
                    Ok(other) => Err(RPCError::Network(NetworkError::from_string(format!(
                        "append stream to node {target} ended: {other:?}"
                    )))),
                    Err(e) => Err(rpc_error(e, me, target, ttl, RPCTypes::AppendEntries)),
                },
            };
            let go_on = matches!(res, Ok(Ok(_)));
            Some((res, go_on.then_some(prx)))
        });
        Ok(Box::pin(out) as BoxStream<'s, Item>)
    })
}

type Queued = (
    AppendEntriesRequest<TypeConfig>,
    oneshot::Sender<RpcResponse>,
);

struct Session {
    stream: u64,
    tx: mpsc::UnboundedSender<Queued>,
}

/// Live streams kept per sending peer. A leader runs one replication stream per follower, but
/// openraft's heartbeat worker sends each heartbeat as a stream of its own, so a follower sees
/// a short-lived second stream every heartbeat interval; older streams (ended without a
/// `StreamEnd`, e.g. by a lost connection) are dropped first once this many are open.
const STREAMS_PER_PEER: usize = 4;

/// Follower side: each live stream of each sending peer, fed to `Raft::stream_append`.
pub(crate) struct Sessions<A: ApplyTarget> {
    raft: Raft<A>,
    /// Per peer, its streams oldest first.
    map: Mutex<HashMap<NodeId, VecDeque<Session>>>,
}

impl<A: ApplyTarget> Sessions<A> {
    pub(crate) fn new(raft: Raft<A>) -> Self {
        Sessions {
            raft,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Queues `req` (call in arrival order); the future answers it once Raft has.
    ///
    /// A new stream id opens a session beside the peer's others rather than replacing them:
    /// replacing the replication stream at every heartbeat (the old behaviour) split one
    /// stream's requests over two concurrent `stream_append` calls, which could reorder them,
    /// answer a conflict and make the leader restart replication every 50 ms under load.
    pub(crate) fn push(
        &self,
        from: NodeId,
        stream: u64,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> HandlerFuture {
        let (reply, wait) = oneshot::channel();
        {
            let mut map = self.map.lock();
            let streams = map.entry(from).or_default();
            streams.retain(|s| !s.tx.is_closed());
            let pos = match streams.iter().position(|s| s.stream == stream) {
                Some(pos) => pos,
                None => {
                    if streams.len() >= STREAMS_PER_PEER {
                        streams.pop_front();
                    }
                    streams.push_back(Session {
                        stream,
                        tx: self.spawn(),
                    });
                    streams.len() - 1
                }
            };
            if let Some(s) = streams.get(pos) {
                if let Err(mpsc::error::SendError((_, reply))) = s.tx.send((req, reply)) {
                    let _ = reply.send(RpcResponse::Error("append stream ended".into()));
                }
            }
        }
        Box::pin(async move {
            wait.await
                .unwrap_or_else(|_| RpcResponse::Error("append stream ended".into()))
        })
    }

    /// Drops `from`'s stream `stream` (requests already queued on it are still answered).
    pub(crate) fn end(&self, from: NodeId, stream: u64) {
        let mut map = self.map.lock();
        if let Some(streams) = map.get_mut(&from) {
            streams.retain(|s| s.stream != stream);
            if streams.is_empty() {
                map.remove(&from);
            }
        }
    }

    /// How many streams `from` has open here.
    #[cfg(test)]
    pub(crate) fn open_streams(&self, from: NodeId) -> usize {
        self.map.lock().get(&from).map_or(0, VecDeque::len)
    }

    fn spawn(&self) -> mpsc::UnboundedSender<Queued> {
        let (tx, rx) = mpsc::unbounded_channel::<Queued>();
        // Answers wait here in the order Raft takes the requests (and answers them).
        let fifo: Arc<Mutex<VecDeque<oneshot::Sender<RpcResponse>>>> = Arc::default();
        let fifo_in = fifo.clone();
        let input =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|q| (q, rx)) },
            )
            .map(move |(req, reply)| {
                fifo_in.lock().push_back(reply);
                req
            });
        let raft = self.raft.clone();
        tokio::spawn(async move {
            let out = raft.stream_append(input);
            futures_util::pin_mut!(out);
            while let Some(item) = out.next().await {
                let (resp, stop) = match item {
                    Ok(Ok(r)) => (RpcResponse::StreamAppend(Ok(r)), false),
                    Ok(Err(e)) => (RpcResponse::StreamAppend(Err(e)), true),
                    Err(fatal) => (RpcResponse::Error(fatal.to_string()), true),
                };
                let reply = fifo.lock().pop_front();
                if let Some(reply) = reply {
                    let _ = reply.send(resp);
                }
                if stop {
                    break;
                }
            }
            // Requests still queued are answered "stream ended" when their senders drop.
        });
        tx
    }
}
