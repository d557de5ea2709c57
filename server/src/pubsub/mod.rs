//! Pub/sub: who listens to which channel, pattern or shard channel, and delivery of
//! published messages into each subscriber's bounded [`Outbox`].
//!
//! One mutex guards the registry so every subscriber sees messages in one global order and a
//! subscription's confirmation is queued before any message it lets through, as in Redis.
//! PUBLISH only queues already-encoded frames under it; sockets are written by each
//! connection's own task.

mod outbox;
pub mod relay;

pub use outbox::{Limits, Outbox};

use crate::command::glob::glob_match;
use crate::command::{Client, Ctx};
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use pinnacle_resp::{Protocol, Reply};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// The three subscription namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// SUBSCRIBE / PUBLISH.
    Channel,
    /// PSUBSCRIBE.
    Pattern,
    /// SSUBSCRIBE / SPUBLISH.
    Shard,
}

impl Kind {
    fn subscribe_word(self) -> &'static [u8] {
        match self {
            Kind::Channel => b"subscribe",
            Kind::Pattern => b"psubscribe",
            Kind::Shard => b"ssubscribe",
        }
    }

    fn unsubscribe_word(self) -> &'static [u8] {
        match self {
            Kind::Channel => b"unsubscribe",
            Kind::Pattern => b"punsubscribe",
            Kind::Shard => b"sunsubscribe",
        }
    }
}

/// A connection's subscriptions and its outbox (kept once created, so frames queued just
/// before the last unsubscribe are still delivered).
pub struct ClientSubs {
    /// Where this client's push frames wait.
    pub outbox: Arc<Outbox>,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    shard: HashSet<Bytes>,
}

impl ClientSubs {
    fn set(&mut self, kind: Kind) -> &mut HashSet<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }

    /// The count Redis reports in a confirmation: channels + patterns, or shard channels.
    fn count(&self, kind: Kind) -> i64 {
        match kind {
            Kind::Channel | Kind::Pattern => (self.channels.len() + self.patterns.len()) as i64,
            Kind::Shard => self.shard.len() as i64,
        }
    }

    /// (channels, patterns, shard channels) subscribed.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.channels.len(), self.patterns.len(), self.shard.len())
    }

    /// True while subscribed to anything (Redis's `CLIENT_PUBSUB` flag).
    pub fn active(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard.is_empty())
    }
}

type Subscribers = HashMap<u64, Arc<Outbox>>;

#[derive(Default)]
struct Registry {
    channels: HashMap<Bytes, Subscribers>,
    patterns: HashMap<Bytes, Subscribers>,
    shard: HashMap<Bytes, Subscribers>,
}

impl Registry {
    fn map(&mut self, kind: Kind) -> &mut HashMap<Bytes, Subscribers> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }

    fn remove(&mut self, kind: Kind, name: &Bytes, id: u64) {
        let map = self.map(kind);
        if let Some(subs) = map.get_mut(name) {
            subs.remove(&id);
            if subs.is_empty() {
                map.remove(name);
            }
        }
    }
}

/// The server's pub/sub registry.
#[derive(Default)]
pub struct PubSub {
    registry: Mutex<Registry>,
    /// The last `client-output-buffer-limit` text seen and its parsed pubsub class.
    limits: Mutex<(String, Limits)>,
    /// Raft mode: forwards PUBLISH to the other nodes (set once at start).
    relay: std::sync::OnceLock<Arc<relay::Relay>>,
}

/// A push frame of bulk strings (or a null in place of `None`) followed by an integer.
fn frame(parts: &[Option<&[u8]>], count: Option<i64>, resp3: bool) -> Bytes {
    let mut items: Vec<Reply> = parts
        .iter()
        .map(|p| match p {
            Some(b) => Reply::Bulk(Bytes::copy_from_slice(b)),
            None => Reply::Null,
        })
        .collect();
    if let Some(n) = count {
        items.push(Reply::Integer(n));
    }
    let mut out = BytesMut::new();
    let proto = if resp3 {
        Protocol::Resp3
    } else {
        Protocol::Resp2
    };
    Reply::Push(items).encode(proto, &mut out);
    out.freeze()
}

/// A message frame encoded lazily, once per protocol, and shared by every receiver.
struct Encoded<'a> {
    parts: [Option<&'a [u8]>; 4],
    len: usize,
    cache: [Option<Bytes>; 2],
}

impl<'a> Encoded<'a> {
    fn new(parts: &[&'a [u8]]) -> Encoded<'a> {
        let mut p = [None; 4];
        for (slot, part) in p.iter_mut().zip(parts) {
            *slot = Some(*part);
        }
        Encoded {
            parts: p,
            len: parts.len(),
            cache: [None, None],
        }
    }

    fn get(&mut self, resp3: bool) -> Bytes {
        let i = resp3 as usize;
        if let Some(b) = &self.cache[i] {
            return b.clone();
        }
        let b = frame(&self.parts[..self.len], None, resp3);
        self.cache[i] = Some(b.clone());
        b
    }
}

impl PubSub {
    /// The client's subscription state, created on first use.
    fn subs(client: &mut Client) -> &mut ClientSubs {
        let resp3 = client.protocol == Protocol::Resp3;
        let handle = client.handle.clone();
        client.pubsub.get_or_insert_with(|| {
            Box::new(ClientSubs {
                outbox: Arc::new(Outbox::new(handle, resp3)),
                channels: HashSet::new(),
                patterns: HashSet::new(),
                shard: HashSet::new(),
            })
        })
    }

    /// (P|S)SUBSCRIBE: subscribes and queues one confirmation per name.
    pub fn subscribe(&self, client: &mut Client, kind: Kind, names: &[Bytes]) {
        let subs = Self::subs(client);
        let resp3 = subs.outbox.resp3();
        let mut reg = self.registry.lock();
        for name in names {
            if subs.set(kind).insert(name.clone()) {
                reg.map(kind)
                    .entry(name.clone())
                    .or_default()
                    .insert(subs.outbox.id, subs.outbox.clone());
            }
            let f = frame(
                &[Some(kind.subscribe_word()), Some(name)],
                Some(subs.count(kind)),
                resp3,
            );
            subs.outbox.push_own(f);
        }
    }

    /// (P|S)UNSUBSCRIBE: `names` empty means all of that kind; queues one confirmation per
    /// name, or a single one with a null name when there was nothing to leave.
    pub fn unsubscribe(&self, client: &mut Client, kind: Kind, names: &[Bytes]) {
        let subs = Self::subs(client);
        let resp3 = subs.outbox.resp3();
        let all: Vec<Bytes>;
        let names = if names.is_empty() {
            all = subs.set(kind).iter().cloned().collect();
            &all[..]
        } else {
            names
        };
        let mut reg = self.registry.lock();
        if names.is_empty() {
            let f = frame(
                &[Some(kind.unsubscribe_word()), None],
                Some(subs.count(kind)),
                resp3,
            );
            subs.outbox.push_own(f);
            return;
        }
        for name in names {
            if subs.set(kind).remove(name) {
                reg.remove(kind, name, subs.outbox.id);
            }
            let f = frame(
                &[Some(kind.unsubscribe_word()), Some(name)],
                Some(subs.count(kind)),
                resp3,
            );
            subs.outbox.push_own(f);
        }
    }

    /// Leaves everything without confirmations (RESET, disconnect).
    pub fn unsubscribe_all(&self, client: &mut Client) {
        let Some(subs) = client.pubsub.as_deref_mut() else {
            return;
        };
        self.remove_all(subs);
    }

    fn remove_all(&self, subs: &mut ClientSubs) {
        let id = subs.outbox.id;
        let mut reg = self.registry.lock();
        for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
            for name in subs.set(kind).drain() {
                reg.remove(kind, &name, id);
            }
        }
    }

    /// Removes a closing connection from the registry.
    pub fn remove_client(&self, client: &Client) {
        let Some(subs) = client.pubsub.as_deref() else {
            return;
        };
        let id = subs.outbox.id;
        let mut reg = self.registry.lock();
        for (kind, set) in [
            (Kind::Channel, &subs.channels),
            (Kind::Pattern, &subs.patterns),
            (Kind::Shard, &subs.shard),
        ] {
            for name in set {
                reg.remove(kind, name, id);
            }
        }
    }

    /// The pubsub output limits, re-parsed only when the setting's text changed.
    fn limits(&self, server: &crate::command::Server) -> Limits {
        let text = server
            .config
            .get("client-output-buffer-limit")
            .unwrap_or_default();
        let mut cache = self.limits.lock();
        if cache.0 != text || cache.0.is_empty() {
            cache.1 = Limits::parse(&text);
            cache.0 = text;
        }
        cache.1
    }

    /// PUBLISH (`Kind::Channel`) or SPUBLISH (`Kind::Shard`): queues the message for every
    /// subscriber here (and, for PUBLISH, every matching pattern) and, for PUBLISH in a
    /// cluster, forwards it to every other node; returns how many received it here (as Redis
    /// Cluster counts).
    pub fn publish(
        &self,
        server: &crate::command::Server,
        kind: Kind,
        channel: &[u8],
        payload: &[u8],
    ) -> i64 {
        if kind == Kind::Channel {
            if let Some(relay) = self.relay.get() {
                relay.forward(channel, payload);
            }
        }
        self.deliver(server, kind, channel, payload)
    }

    /// Starts forwarding PUBLISH to the nodes `peers` names (Raft mode; once).
    pub fn start_relay(&self, peers: relay::PeerList, password: relay::Password) {
        let r = Arc::new(relay::Relay::default());
        if self.relay.set(r.clone()).is_ok() {
            r.start(peers, password);
        }
    }

    /// The PUBLISH relay, if this node forwards to others.
    pub fn relay(&self) -> Option<&relay::Relay> {
        self.relay.get().map(|r| &**r)
    }

    /// [`PubSub::publish`] for this node's subscribers only (a message another node relayed).
    pub fn deliver(
        &self,
        server: &crate::command::Server,
        kind: Kind,
        channel: &[u8],
        payload: &[u8],
    ) -> i64 {
        // Looked up on the first receiver: PUBLISH to nobody costs one hash lookup.
        let mut limits: Option<(Limits, Instant)> = None;
        let mut limits = || *limits.get_or_insert_with(|| (self.limits(server), Instant::now()));
        let word: &[u8] = if kind == Kind::Shard {
            b"smessage"
        } else {
            b"message"
        };
        let mut msg = Encoded::new(&[word, channel, payload]);
        let mut receivers = 0i64;
        let reg = self.registry.lock();
        let map = if kind == Kind::Shard {
            &reg.shard
        } else {
            &reg.channels
        };
        if let Some(subs) = map.get(channel) {
            for ob in subs.values() {
                let (l, now) = limits();
                ob.push(msg.get(ob.resp3()), l, now);
                receivers += 1;
            }
        }
        if kind == Kind::Channel {
            for (pattern, subs) in &reg.patterns {
                if !glob_match(pattern, channel, false) {
                    continue;
                }
                let mut pmsg = Encoded::new(&[b"pmessage", pattern, channel, payload]);
                for ob in subs.values() {
                    let (l, now) = limits();
                    ob.push(pmsg.get(ob.resp3()), l, now);
                    receivers += 1;
                }
            }
        }
        receivers
    }

    /// Active channels (or shard channels) matching `pattern` (all when `None`).
    pub fn channels(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let mut reg = self.registry.lock();
        reg.map(kind)
            .keys()
            .filter(|c| match pattern {
                Some(p) => glob_match(p, c, false),
                None => true,
            })
            .cloned()
            .collect()
    }

    /// Subscriber count of each channel (or shard channel); patterns are not counted.
    pub fn numsub(&self, kind: Kind, channels: &[Bytes]) -> Vec<(Bytes, i64)> {
        let mut reg = self.registry.lock();
        let map = reg.map(kind);
        channels
            .iter()
            .map(|c| (c.clone(), map.get(c).map_or(0, |s| s.len() as i64)))
            .collect()
    }

    /// Number of distinct patterns with a subscriber (PUBSUB NUMPAT, INFO pubsub_patterns).
    pub fn numpat(&self) -> i64 {
        self.registry.lock().patterns.len() as i64
    }

    /// Number of channels with a subscriber (INFO pubsub_channels).
    pub fn channel_count(&self) -> i64 {
        self.registry.lock().channels.len() as i64
    }

    /// Number of shard channels with a subscriber (INFO pubsubshard_channels).
    pub fn shard_channel_count(&self) -> i64 {
        self.registry.lock().shard.len() as i64
    }
}

/// Writes the caller's queued push frames into `out`, ahead of the reply being encoded. Called
/// by the connection loop after each command, so a client's own PUBLISH delivers to itself
/// before the PUBLISH reply, as in Redis. Everything queued goes (the queue is bounded by the
/// output limit), so no reply can overtake a frame queued before it.
pub fn flush_own(client: &Client, out: &mut BytesMut) {
    if let Some(subs) = &client.pubsub {
        subs.outbox.set_resp3(client.protocol == Protocol::Resp3);
        subs.outbox.drain_into(out, usize::MAX);
    }
}

/// What the subscribed-mode rules decide about a command (checked after routing, as Redis's
/// `processCommand` does).
pub enum Gate {
    /// Run the command's handler.
    Run,
    /// Run this handler instead (PING in RESP2 subscribed mode).
    RunWith(crate::command::Handler),
    /// Refuse with this error.
    Reject(Reply),
}

/// Applies the RESP2 subscribed-mode rules to command `name` (its full name, `client|list`)
/// and makes RESET leave every subscription.
pub fn gate(ctx: &mut Ctx<'_>, name: &str) -> Gate {
    let Some(subs) = ctx.client.pubsub.as_deref_mut() else {
        return Gate::Run;
    };
    if name == "reset" {
        ctx.server.pubsub.remove_all(subs);
        return Gate::Run;
    }
    if !subs.active() || ctx.client.protocol != Protocol::Resp2 {
        return Gate::Run;
    }
    match name {
        "ping" => Gate::RunWith(crate::commands::pubsub::ping_subscribed),
        "subscribe" | "ssubscribe" | "psubscribe" | "unsubscribe" | "sunsubscribe"
        | "punsubscribe" | "quit" | "reset" => Gate::Run,
        _ => Gate::Reject(crate::command::error_bytes(&[
            b"ERR Can't execute '",
            name.as_bytes(),
            b"': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
        ])),
    }
}

#[cfg(test)]
mod tests;
