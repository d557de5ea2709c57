//! Per-connection state, and the shared handle other connections see (CLIENT LIST/KILL).

use bytes::Bytes;
use parking_lot::Mutex;
use pinnacle_resp::Protocol;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

/// A transaction being queued (MULTI ... EXEC).
#[derive(Debug, Default)]
pub struct MultiState {
    /// The queued requests.
    pub queue: Vec<Vec<Bytes>>,
    /// A request was refused while queueing: EXEC answers EXECABORT.
    pub dirty: bool,
}

/// A WATCHed key: the slot version and expiry seen by WATCH.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The key.
    pub key: Bytes,
    /// `Db::watch_version` at WATCH time.
    pub version: (u64, u64),
    /// The key's expiry then (0 = none or absent): expiring later also invalidates.
    pub expire_at: u64,
}

/// `CLIENT REPLY` mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReplyMode {
    /// Replies are sent.
    #[default]
    On,
    /// Replies are dropped until `CLIENT REPLY ON`.
    Off,
    /// The reply of the next command is dropped (set by `CLIENT REPLY SKIP`).
    SkipNext,
    /// The reply of the current command is dropped.
    Skip,
}

/// Per-connection state, owned by the connection's task.
pub struct Client {
    /// Unique, increasing client id.
    pub id: u64,
    /// What other connections can see and signal.
    pub handle: Arc<ClientHandle>,
    /// Negotiated protocol (`HELLO`).
    pub protocol: Protocol,
    /// False until AUTH succeeds when a password is required.
    pub authenticated: bool,
    /// The ACL user this connection runs as (`default` until AUTH).
    pub user: Bytes,
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-NAME`.
    pub lib_name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-VER`.
    pub lib_ver: Option<Bytes>,
    /// `CLIENT REPLY`.
    pub reply_mode: ReplyMode,
    /// `READONLY` was sent.
    pub readonly: bool,
    /// `ASKING` was sent (one-shot).
    pub asking: bool,
    /// Index of the shard whose keyspace the current command runs on (set by routing; always 0
    /// on a single node).
    pub shard: usize,
    /// The slot the current command was routed for (an EXEC: its transaction's), in Raft mode.
    pub routed_slot: Option<u16>,
    /// The keys the current command's writes need present at the source of a migrating slot
    /// (see `storage::shard_ctl`), set by routing.
    pub guard: Option<Vec<Bytes>>,
    /// EXEC is running its queued commands: they were routed as one with it.
    pub in_exec: bool,
    /// `CLIENT NO-EVICT on`.
    pub no_evict: bool,
    /// The connection is a MONITOR.
    pub monitor: bool,
    /// Send the pending replies, then close.
    pub close_after_reply: bool,
    /// Close at once without replying (HTTP guard).
    pub close_silently: bool,
    /// Full name of the last command run (`client|list`).
    pub last_cmd: &'static str,
    /// The MONITOR feed, taken by the connection loop once MONITOR is sent.
    pub monitor_rx: Option<tokio::sync::broadcast::Receiver<Bytes>>,
    /// Pub/sub subscriptions and the outbox of push frames (created on first use).
    pub pubsub: Option<Box<crate::pubsub::ClientSubs>>,
    /// Inside MULTI: the queued requests, and whether one was refused (EXECABORT).
    pub multi: Option<MultiState>,
    /// WATCHed keys with what their slot looked like when watched.
    pub watched: Vec<Watched>,
    /// The current request ran (rather than being refused) while in MULTI.
    pub ran_in_multi: bool,
    /// Set by a blocking command that found every key empty: the connection waits.
    pub blocked: Option<super::blocking::BlockSpec>,
    /// Set by the connection when it runs a blocked command again: the deadline it started
    /// with (its timeout counts from the first attempt, not from each retry).
    pub rerun_deadline: Option<Option<tokio::time::Instant>>,
    /// The command's reply went out as push frames (SUBSCRIBE): send nothing else.
    pub reply_pushed: bool,
    /// Shards (bit per index) whose read barrier passed since the connection last read its
    /// socket: only then may a read be served from the local copy as the shard's leader.
    read_barriers: u128,
}

/// The part of a client other connections read (CLIENT LIST) or signal (CLIENT KILL).
pub struct ClientHandle {
    /// Client id.
    pub id: u64,
    /// Peer address `ip:port`.
    pub addr: String,
    /// Local address `ip:port`.
    pub laddr: String,
    /// Connection time.
    pub created: Instant,
    /// Fields that change as the client runs commands.
    pub live: Mutex<LiveInfo>,
    /// Milliseconds since `created` of the last command (idle time without locking).
    last_active_ms: AtomicU64,
    killed: AtomicBool,
    kill_notify: Notify,
    /// The ACL user (CLIENT LIST `user=`; ACL DELUSER finds its connections by it).
    pub user: Mutex<Bytes>,
}

/// Client fields shown by `CLIENT LIST`, refreshed after every command.
#[derive(Clone, Default)]
pub struct LiveInfo {
    /// Connection name.
    pub name: Option<Bytes>,
    /// Library name.
    pub lib_name: Option<Bytes>,
    /// Library version.
    pub lib_ver: Option<Bytes>,
    /// Last command's full name.
    pub last_cmd: &'static str,
    /// 2 or 3.
    pub resp: u8,
    /// MONITOR mode (flag `O`).
    pub monitor: bool,
    /// READONLY mode (flag `r`).
    pub readonly: bool,
    /// CLIENT NO-EVICT on (flag `e`).
    pub no_evict: bool,
    /// Bytes waiting in the query buffer.
    pub qbuf: usize,
    /// Bytes waiting in the output buffer.
    pub omem: usize,
    /// Subscribed channels, patterns and shard channels (`sub=`, `psub=`, `ssub=`).
    pub subs: (usize, usize, usize),
}

impl ClientHandle {
    /// A handle for a new connection.
    pub fn new(id: u64, addr: String, laddr: String) -> ClientHandle {
        ClientHandle {
            id,
            addr,
            laddr,
            created: Instant::now(),
            live: Mutex::new(LiveInfo {
                resp: 2,
                ..Default::default()
            }),
            last_active_ms: AtomicU64::new(0),
            killed: AtomicBool::new(false),
            kill_notify: Notify::new(),
            user: Mutex::new(Bytes::from_static(b"default")),
        }
    }

    /// Asks the connection to close (CLIENT KILL, SHUTDOWN).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill_notify.notify_one();
    }

    /// True once `kill` was called.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Resolves when the client is killed.
    pub async fn killed(&self) {
        if self.is_killed() {
            return;
        }
        self.kill_notify.notified().await;
    }

    /// Notes activity now.
    pub fn touch(&self) {
        let ms = self.created.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// Seconds since the last command.
    pub fn idle_secs(&self) -> u64 {
        let now = self.created.elapsed().as_millis() as u64;
        now.saturating_sub(self.last_active_ms.load(Ordering::Relaxed)) / 1000
    }

    /// Seconds since the connection opened.
    pub fn age_secs(&self) -> u64 {
        self.created.elapsed().as_secs()
    }

    /// The `CLIENT LIST` / `CLIENT INFO` line (without the trailing newline).
    /// Redis's client type name: `pubsub` while subscribed to anything, else `normal`
    /// (this server has no replication clients).
    pub fn kind(&self) -> &'static str {
        if self.live.lock().subs != (0, 0, 0) {
            "pubsub"
        } else {
            "normal"
        }
    }

    pub fn info_line(&self) -> String {
        let live = self.live.lock().clone();
        let s = |b: &Option<Bytes>| {
            b.as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let cmd = if live.last_cmd.is_empty() {
            "NULL"
        } else {
            live.last_cmd
        };
        let mut flags = String::new();
        for (on, letter) in [
            (live.monitor, 'O'),
            (live.subs != (0, 0, 0), 'P'),
            (live.readonly, 'r'),
            (live.no_evict, 'e'),
        ] {
            if on {
                flags.push(letter);
            }
        }
        if flags.is_empty() {
            flags.push('N');
        }
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db=0 sub={} psub={} ssub={} multi=-1 qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=0 obl=0 oll=0 omem={} tot-mem=0 events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            s(&live.name),
            self.age_secs(),
            self.idle_secs(),
            flags,
            live.subs.0,
            live.subs.1,
            live.subs.2,
            live.qbuf,
            live.omem,
            cmd,
            String::from_utf8_lossy(&self.user.lock()),
            live.resp,
            s(&live.lib_name),
            s(&live.lib_ver),
        )
    }
}

impl Client {
    /// True if a read barrier of `shard` passed since the last socket read.
    pub fn read_barrier_passed(&self, shard: usize) -> bool {
        shard < 128 && self.read_barriers & (1 << shard) != 0
    }

    /// Records that a read barrier of `shard` passed.
    pub fn pass_read_barrier(&mut self, shard: usize) {
        if shard < 128 {
            self.read_barriers |= 1 << shard;
        }
    }

    /// Requests read from the socket from now on need new read barriers.
    pub fn new_input(&mut self) {
        self.read_barriers = 0;
    }

    /// Runs this connection as ACL user `name` from now on.
    pub fn set_user(&mut self, name: Bytes) {
        *self.handle.user.lock() = name.clone();
        self.user = name;
    }

    /// A new client; `authenticated` is false when a password is required.
    pub fn new(handle: Arc<ClientHandle>, authenticated: bool) -> Client {
        Client {
            id: handle.id,
            handle,
            protocol: Protocol::Resp2,
            authenticated,
            user: Bytes::from_static(b"default"),
            name: None,
            lib_name: None,
            lib_ver: None,
            reply_mode: ReplyMode::On,
            readonly: false,
            asking: false,
            shard: 0,
            routed_slot: None,
            guard: None,
            in_exec: false,
            no_evict: false,
            monitor: false,
            close_after_reply: false,
            close_silently: false,
            last_cmd: "",
            monitor_rx: None,
            pubsub: None,
            multi: None,
            watched: Vec::new(),
            ran_in_multi: false,
            blocked: None,
            rerun_deadline: None,
            reply_pushed: false,
            read_barriers: 0,
        }
    }

    /// Publishes the fields CLIENT LIST shows; called after each batch of commands.
    pub fn publish(&self, qbuf: usize, omem: usize) {
        let mut live = self.handle.live.lock();
        // Clones of `Bytes` are reference-count bumps; this runs once per batch.
        live.name.clone_from(&self.name);
        live.lib_name.clone_from(&self.lib_name);
        live.lib_ver.clone_from(&self.lib_ver);
        live.last_cmd = self.last_cmd;
        live.resp = if self.protocol == Protocol::Resp3 {
            3
        } else {
            2
        };
        live.monitor = self.monitor;
        live.readonly = self.readonly;
        live.no_evict = self.no_evict;
        live.qbuf = qbuf;
        live.omem = omem;
        live.subs = self.pubsub.as_ref().map_or((0, 0, 0), |s| s.counts());
        if let Some(s) = &self.pubsub {
            live.omem += s.outbox.pending_bytes();
        }
    }

    /// Whether this command's reply is sent, advancing `CLIENT REPLY SKIP` state.
    pub fn take_reply_allowed(&mut self) -> bool {
        let pushed = std::mem::take(&mut self.reply_pushed);
        let allowed = match self.reply_mode {
            ReplyMode::On => true,
            ReplyMode::Off => false,
            ReplyMode::Skip => {
                self.reply_mode = ReplyMode::On;
                false
            }
            // SKIP itself gets no reply either; the next command's reply is skipped.
            ReplyMode::SkipNext => {
                self.reply_mode = ReplyMode::Skip;
                false
            }
        };
        allowed && !pushed
    }

    /// True while subscribed to any channel, pattern or shard channel.
    pub fn subscribed(&self) -> bool {
        self.pubsub.as_ref().is_some_and(|s| s.active())
    }
}
