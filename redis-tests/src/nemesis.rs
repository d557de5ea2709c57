//! A seeded nemesis for a [`Cluster`] (reliability.md §2, §6 T6/T7): process crashes, pauses,
//! bus partitions and link faults through the harness proxies, clock skew/rate on restart
//! (libfaketime), membership changes and slot migrations. The seed picks every fault, target
//! rule and duration, so a printed seed replays the same schedule (who the leader is at each
//! step is up to the cluster). Every step is logged with its time on the workload's clock.

use std::fmt::Write as _;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::frame::Value;
use crate::proxy::Mode;
use crate::rng::Rng;
use crate::Error;

/// libfaketime as Debian's `faketime` package installs it.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// How long the cluster may stay without an agreed leader (faults healed) before the nemesis
/// stops injecting.
const LEADERLESS_LIMIT: Duration = Duration::from_secs(20);
/// Slots a migration fault moves.
const MIGRATE_SLOTS: u16 = 64;

/// One kind of fault (names as in [`Fault::parse_list`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `kill-leader`: SIGKILL a leader, restart it after the hold.
    KillLeader,
    /// `kill-minority`: SIGKILL a random node (a minority of 3), restart it after the hold.
    KillMinority,
    /// `kill-all`: SIGKILL every node, restart all after the hold.
    KillAll,
    /// `pause-leader`: SIGSTOP a leader for 1–5 s.
    PauseLeader,
    /// `isolate-leader`: cut a leader's bus links.
    IsolateLeader,
    /// `isolate-minority`: cut a random follower's bus links.
    IsolateMinority,
    /// `bridge`: two nodes cannot talk, the third talks to both.
    Bridge,
    /// `loss`: every bus link loses 50 % of its chunks (the proxy closes the connection).
    Loss,
    /// `delay`: every bus link delays each chunk 50–200 ms.
    Delay,
    /// `clock`: restart a node under libfaketime with a ±5 s offset and a ×0.5/×2 rate, then
    /// restart it normally after the hold.
    Clock,
    /// `member`: CLUSTER FORGET a follower, wipe its data, re-add it with `--cluster-join` +
    /// CLUSTER MEET (single-shard clusters).
    Member,
    /// `migrate`: PINN.MIGRATE a slot range holding workload keys to another shard (with
    /// `--shards` > 1); it runs on while later faults strike.
    Migrate,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 12] = [
        Fault::KillLeader,
        Fault::KillMinority,
        Fault::KillAll,
        Fault::PauseLeader,
        Fault::IsolateLeader,
        Fault::IsolateMinority,
        Fault::Bridge,
        Fault::Loss,
        Fault::Delay,
        Fault::Clock,
        Fault::Member,
        Fault::Migrate,
    ];

    /// The fault's name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillMinority => "kill-minority",
            Fault::KillAll => "kill-all",
            Fault::PauseLeader => "pause-leader",
            Fault::IsolateLeader => "isolate-leader",
            Fault::IsolateMinority => "isolate-minority",
            Fault::Bridge => "bridge",
            Fault::Loss => "loss",
            Fault::Delay => "delay",
            Fault::Clock => "clock",
            Fault::Member => "member",
            Fault::Migrate => "migrate",
        }
    }

    /// Parses a comma-separated list of names (`all` = every fault).
    pub fn parse_list(spec: &str) -> Result<Vec<Fault>, String> {
        let mut out = Vec::new();
        for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name == "all" {
                out.extend(Fault::ALL);
                continue;
            }
            match Fault::ALL.iter().find(|f| f.name() == name) {
                Some(f) => out.push(*f),
                None => return Err(format!("unknown fault {name:?}")),
            }
        }
        Ok(out)
    }
}

/// One logged nemesis step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Nanoseconds since the nemesis's (and the workload's) start instant.
    pub t_ns: u64,
    /// What happened.
    pub what: String,
}

/// The nemesis; see the module docs.
pub struct Nemesis {
    rng: Rng,
    faults: Vec<Fault>,
    start: Instant,
    events: Vec<Event>,
    shards: usize,
    tags: Vec<String>,
    gap_ms: (u64, u64),
    clock_nodes: Vec<usize>,
    exits: Vec<String>,
    first: Vec<Fault>,
}

impl Nemesis {
    /// A nemesis drawing from `faults` with `seed`; times are logged relative to `start`.
    pub fn new(seed: u64, faults: Vec<Fault>, start: Instant) -> Nemesis {
        Nemesis {
            rng: Rng::new(seed ^ 0x6e65_6d65_7369_7300),
            faults,
            start,
            events: Vec::new(),
            shards: 1,
            tags: Vec::new(),
            gap_ms: (500, 2000),
            clock_nodes: Vec::new(),
            exits: Vec::new(),
            first: Vec::new(),
        }
    }

    /// The cluster's `--shards` (migrations need more than one; membership changes one).
    pub fn shards(mut self, n: usize) -> Nemesis {
        self.shards = n;
        self
    }

    /// Hash tags the workload uses: migrations move the slots around them.
    pub fn tags(mut self, tags: Vec<String>) -> Nemesis {
        self.tags = tags;
        self
    }

    /// Quiet time between two faults, in ms (uniform in `lo..=hi`).
    pub fn gap_ms(mut self, lo: u64, hi: u64) -> Nemesis {
        self.gap_ms = (lo, hi.max(lo));
        self
    }

    /// Faults injected first, in this order, before the random draws take over (so a short
    /// run surely exercises them).
    pub fn first(mut self, faults: Vec<Fault>) -> Nemesis {
        self.first = faults;
        self
    }

    /// The log so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The log as text lines (`<ms> <what>`).
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        for e in &self.events {
            let _ = writeln!(s, "{:>12.3} ms  {}", e.t_ns as f64 / 1e6, e.what);
        }
        s
    }

    /// The log as JSON lines (`{"process":"nemesis","type":"info","f":..,"value":..}`).
    pub fn log_json_lines(&self) -> String {
        let mut s = String::new();
        for e in &self.events {
            let what = e.what.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                s,
                "{{\"process\":\"nemesis\",\"type\":\"info\",\"f\":\"nemesis\",\"value\":\"{what}\",\"t_mono_ns\":{}}}",
                e.t_ns
            );
        }
        s
    }

    /// Logs `what` now (also to stderr, so a hanging run shows where it is).
    pub fn note(&mut self, what: impl Into<String>) {
        let t_ns = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let what = what.into();
        eprintln!("[nemesis {:>9.3} s] {what}", t_ns as f64 / 1e9);
        self.events.push(Event { t_ns, what });
    }

    /// Injects faults one after another until `until`, each healed before the next. Returns
    /// early (Ok) when the cluster stays leaderless for too long with every fault healed.
    pub fn run(&mut self, c: &mut Cluster, until: Instant) -> Result<(), Error> {
        let mut led_at = Instant::now();
        while Instant::now() < until {
            let gap = self.gap_ms.0 + self.rng.below(self.gap_ms.1 - self.gap_ms.0 + 1);
            thread::sleep(Duration::from_millis(gap));
            if Instant::now() >= until || self.faults.is_empty() {
                break;
            }
            let drawn = *self.rng.pick(&self.faults);
            let fault = if self.first.is_empty() {
                drawn
            } else {
                self.first.remove(0)
            };
            // Drawn whatever the fault, so the schedule does not depend on the cluster.
            let hold = Duration::from_millis(1000 + self.rng.below(3000));
            let pick = self.rng.next_u64();
            if leaders(c).is_empty() {
                if led_at.elapsed() > LEADERLESS_LIMIT {
                    self.note(format!(
                        "no leader for {LEADERLESS_LIMIT:?} with every fault healed: stopping"
                    ));
                    return Ok(());
                }
                continue;
            }
            led_at = Instant::now();
            self.apply(c, fault, hold, pick)?;
        }
        Ok(())
    }

    /// Records nodes that exited although nobody killed them (a crash: the run fails).
    pub fn check_exits(&mut self, c: &mut Cluster) {
        for i in c.ids() {
            if c.has_exited(i) {
                let tail = c.log_tail(i, 1500);
                self.note(format!("node{i} EXITED on its own"));
                self.exits
                    .push(format!("node{i} exited on its own; log tail:\n{tail}"));
                // Reap it so the next check does not report it again; the run fails anyway.
                let _ = c.kill9(i);
            }
        }
    }

    /// Unexpected exits seen so far (checked before every fault and by `heal_all`).
    pub fn exits(&self) -> &[String] {
        &self.exits
    }

    /// Injects one fault (held for `hold`, then healed); `pick` chooses among targets.
    pub fn apply(
        &mut self,
        c: &mut Cluster,
        fault: Fault,
        hold: Duration,
        pick: u64,
    ) -> Result<(), Error> {
        self.check_exits(c);
        let ids = c.ids();
        let leads = leaders(c);
        let leader = if leads.is_empty() {
            ids[(pick % ids.len() as u64) as usize]
        } else {
            leads[(pick % leads.len() as u64) as usize]
        };
        let any = ids[((pick >> 8) % ids.len() as u64) as usize];
        let others: Vec<usize> = ids.iter().copied().filter(|&i| i != leader).collect();
        let follower = others
            .get(((pick >> 16) % others.len().max(1) as u64) as usize)
            .copied()
            .unwrap_or(any);
        match fault {
            Fault::KillLeader | Fault::KillMinority => {
                let v = if fault == Fault::KillLeader {
                    leader
                } else {
                    any
                };
                self.note(format!("{}: SIGKILL node{v} for {hold:?}", fault.name()));
                c.kill9(v)?;
                thread::sleep(hold);
                c.restart(v)?;
                self.note(format!("restarted node{v}"));
            }
            Fault::KillAll => {
                self.note(format!("kill-all: SIGKILL every node for {hold:?}"));
                c.kill_all()?;
                thread::sleep(hold);
                c.restart_stopped()?;
                self.note("restarted every node");
            }
            Fault::PauseLeader => {
                let hold = Duration::from_millis(1000 + (pick >> 24) % 4000);
                self.note(format!("pause-leader: SIGSTOP node{leader} for {hold:?}"));
                c.sigstop(leader)?;
                thread::sleep(hold);
                c.sigcont(leader)?;
                self.note(format!("SIGCONT node{leader}"));
            }
            Fault::IsolateLeader | Fault::IsolateMinority => {
                let v = if fault == Fault::IsolateLeader {
                    leader
                } else {
                    follower
                };
                self.note(format!("{}: isolate node{v} for {hold:?}", fault.name()));
                c.isolate(v)?;
                thread::sleep(hold);
                c.heal()?;
                self.note("healed");
            }
            Fault::Bridge => {
                // `leader` is the bridge: the two others cannot reach each other.
                if others.len() >= 2 {
                    let (a, b) = (others[0], others[1]);
                    self.note(format!(
                        "bridge: cut node{a} <-> node{b}, node{leader} reaches both, for {hold:?}"
                    ));
                    c.partition(&[a], &[b])?;
                    thread::sleep(hold);
                    c.heal()?;
                    self.note("healed");
                }
            }
            Fault::Loss | Fault::Delay => {
                let mode = if fault == Fault::Loss {
                    Mode::Loss(0.5)
                } else {
                    Mode::Delay(Duration::from_millis(50 + (pick >> 24) % 150))
                };
                self.note(format!(
                    "{}: every bus link {mode:?} for {hold:?}",
                    fault.name()
                ));
                for &a in &ids {
                    for &b in &ids {
                        if a != b {
                            c.set_link(a, b, mode)?;
                        }
                    }
                }
                thread::sleep(hold);
                c.heal()?;
                self.note("healed");
            }
            Fault::Clock => self.clock(c, any, hold, pick)?,
            Fault::Member => self.member(c, leader, follower)?,
            Fault::Migrate => self.migrate(c, pick)?,
        }
        Ok(())
    }

    fn clock(&mut self, c: &mut Cluster, v: usize, hold: Duration, pick: u64) -> Result<(), Error> {
        if !Path::new(LIBFAKETIME).exists() {
            if strict() {
                return Err(Error::ToolMissing(format!(
                    "{LIBFAKETIME} (apt-get install faketime)"
                )));
            }
            self.note("clock: SKIPPED, libfaketime is not installed (apt-get install faketime)");
            return Ok(());
        }
        let skew = ((pick >> 24) % 11) as i64 - 5;
        let rate = if (pick >> 32) & 1 == 0 { "0.5" } else { "2" };
        let spec = format!("{skew:+}s x{rate}");
        self.note(format!(
            "clock: restart node{v} with FAKETIME=\"{spec}\" for {hold:?}"
        ));
        c.restart_with_env(
            v,
            vec![
                ("LD_PRELOAD".into(), LIBFAKETIME.into()),
                ("FAKETIME".into(), spec),
            ],
        )?;
        self.clock_nodes.push(v);
        thread::sleep(hold);
        c.restart_with_env(v, Vec::new())?;
        self.clock_nodes.retain(|&n| n != v);
        self.note(format!("clock: node{v} restarted with the real clock"));
        Ok(())
    }

    fn member(&mut self, c: &mut Cluster, leader: usize, f: usize) -> Result<(), Error> {
        if self.shards != 1 {
            self.note("member: SKIPPED (CLUSTER MEET joins the shards one node leads; run with --shards 1)");
            return Ok(());
        }
        let Some(l) = c.current_leader() else {
            self.note("member: SKIPPED, no agreed leader");
            return Ok(());
        };
        let f = if f == l { leader } else { f };
        if f == l {
            return Ok(());
        }
        if self.forget(c, f, l)? {
            self.wait_left(c, f)?;
            self.rejoin_wiped(c, f)?;
        }
        Ok(())
    }

    /// `CLUSTER FORGET <f>` sent to node `via` (a leader refuses to forget itself, as Redis
    /// does; any other node forwards it, and a leader it names hands its groups over first).
    /// Sent again for 20 s while the answer says "try again" (e.g. it was forwarded to a
    /// metadata leader that a partition had just cut off). Ok(false) when the node answered
    /// another error (logged).
    pub fn forget(&mut self, c: &Cluster, f: usize, via: usize) -> Result<bool, Error> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.note(format!("member: CLUSTER FORGET node{f} via node{via}"));
            let r = c.call(via, &["CLUSTER", "FORGET", &f.to_string()])?;
            self.note(format!("member: FORGET node{f} -> {}", show(&r)));
            if !show(&r).ends_with("try again") || Instant::now() > deadline {
                return Ok(!r.is_error());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (20 s) until node `f` has left the shard and then the metadata group (FORGET's
    /// last step), as the agreed leader shows: only then may its data be wiped and its id reused.
    pub fn wait_left(&mut self, c: &Cluster, f: usize) -> Result<(), Error> {
        wait(Duration::from_secs(20), || {
            c.current_leader()
                .filter(|&l| l != f)
                .and_then(|l| c.info(l).ok())
                .is_some_and(|i| {
                    !i.fields.contains_key(&format!("raft_peer{f}"))
                        && i.fields
                            .get("raft_meta_members")
                            .is_some_and(|m| !m.split(',').any(|id| id == f.to_string()))
                })
        })
        .map_err(|_| Error::Timeout(format!("node{f} still a member 20 s after FORGET")))?;
        self.note(format!("member: node{f} removed"));
        Ok(())
    }

    /// Restarts the forgotten node `f` wiped with `--cluster-join`, `CLUSTER MEET`s it through
    /// the leader and waits (30 s) until it is a voter again.
    pub fn rejoin_wiped(&mut self, c: &mut Cluster, f: usize) -> Result<(), Error> {
        self.note(format!(
            "member: restarting node{f} wiped with --cluster-join"
        ));
        c.restart_wiped_joining(f)?;
        let meet = [
            "CLUSTER".to_string(),
            "MEET".into(),
            c.ip(f).to_string(),
            c.port(f).to_string(),
            c.announced_bus_port(f).to_string(),
        ];
        let r = wait_value(Duration::from_secs(20), || {
            let l = c.current_leader()?;
            c.call(l, &meet).ok().filter(|v| !v.is_error())
        })
        .map_err(|_| Error::Timeout(format!("CLUSTER MEET of node{f} refused for 20 s")))?;
        self.note(format!("member: MEET node{f} -> {}", show(&r)));
        wait(Duration::from_secs(30), || {
            c.current_leader()
                .and_then(|l| c.info(l).ok())
                .and_then(|i| i.fields.get(&format!("raft_peer{f}")).cloned())
                .is_some_and(|p| p.ends_with("voter=yes"))
        })
        .map_err(|_| Error::Timeout(format!("node{f} not a voter 30 s after MEET")))?;
        self.note(format!("member: node{f} is a voter again"));
        Ok(())
    }

    fn migrate(&mut self, c: &mut Cluster, pick: u64) -> Result<(), Error> {
        if self.shards < 2 || self.tags.is_empty() {
            self.note("migrate: SKIPPED (needs --shards > 1 and workload tags)");
            return Ok(());
        }
        let tag = self.tags[(pick % self.tags.len() as u64) as usize].clone();
        let slot = match call_retry(c, &["CLUSTER", "KEYSLOT", &tag], Duration::from_secs(5))? {
            Value::Int(n) => n as u16,
            other => return Err(Error::Protocol(format!("CLUSTER KEYSLOT: {other:?}"))),
        };
        let first = slot.saturating_sub((pick >> 16) as u16 % MIGRATE_SLOTS);
        let last = (first + MIGRATE_SLOTS - 1).min(16383);
        let range = format!("{first}-{last}");
        // Any shard but the owner: try them in a seeded order.
        for k in 0..self.shards as u64 {
            let to = ((pick >> 32) + k) % self.shards as u64;
            let r = call_retry(
                c,
                &["PINN.MIGRATE", &range, &to.to_string()],
                Duration::from_secs(20),
            )?;
            self.note(format!(
                "migrate: PINN.MIGRATE {range} {to} (tag {tag} is slot {slot}) -> {}",
                show(&r)
            ));
            if !matches!(&r, Value::Error(e) if e.windows(11).any(|w| w == b"already own")) {
                break;
            }
        }
        Ok(())
    }

    /// Undoes every fault still in effect: links healed, paused nodes resumed, nodes under
    /// libfaketime restarted normally, stopped nodes started.
    pub fn heal_all(&mut self, c: &mut Cluster) -> Result<(), Error> {
        self.check_exits(c);
        let _ = c.heal();
        for i in c.ids() {
            if c.pid(i).is_some() && !c.is_live(i) {
                c.sigcont(i)?;
            }
        }
        for i in std::mem::take(&mut self.clock_nodes) {
            c.restart_with_env(i, Vec::new())?;
        }
        c.restart_stopped()?;
        self.note("heal-all");
        Ok(())
    }

    /// Waits until no migration is running (`PINN.MIGRATIONS`), for multi-shard clusters.
    pub fn wait_migrations(&mut self, c: &Cluster, timeout: Duration) -> Result<(), Error> {
        if self.shards < 2 {
            return Ok(());
        }
        let mut last = String::new();
        let r = wait(timeout, || {
            let Some(i) = c.live().first().copied() else {
                return false;
            };
            match c.call(i, &["PINN.MIGRATIONS"]) {
                Ok(v) => {
                    last = show(&v);
                    v.as_list().is_some() && !last.contains("running")
                }
                Err(_) => false,
            }
        });
        self.note(format!("migrations: {last}"));
        r.map_err(|_| {
            Error::Timeout(format!(
                "migrations still running after {timeout:?}: {last}"
            ))
        })
    }
}

/// Nodes that say they lead a group (the single group's leader, or shard leaders).
pub fn leaders(c: &Cluster) -> Vec<usize> {
    let mut out = Vec::new();
    for i in c.live() {
        let Ok(info) = c.info(i) else { continue };
        let shard_leader = info
            .fields
            .iter()
            .any(|(k, v)| k.starts_with("shard") && v.split(',').any(|f| f == "state=Leader"));
        if info.is_leader() || shard_leader {
            out.push(i);
        }
    }
    out
}

/// True under `REDIS_TESTS_STRICT=1` (CI): a missing tool fails instead of skipping.
pub fn strict() -> bool {
    std::env::var(crate::tools::STRICT_ENV).is_ok_and(|v| v == "1")
}

fn wait_value<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T, ()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(());
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn wait(timeout: Duration, mut f: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            return Err(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Sends `args` through the leader-following client until a reply (any) arrives.
fn call_retry<A: AsRef<[u8]>>(c: &Cluster, args: &[A], timeout: Duration) -> Result<Value, Error> {
    let mut client = c.client().retry_for(timeout);
    match client.call(args) {
        crate::cluster::Outcome::Reply(v) => Ok(v),
        crate::cluster::Outcome::Indeterminate(e) | crate::cluster::Outcome::Unavailable(e) => {
            Err(Error::Timeout(e))
        }
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Simple(b) | Value::Bulk(b) | Value::Error(b) | Value::Verbatim(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        Value::Int(n) => n.to_string(),
        Value::Null => "nil".into(),
        Value::Array(items) | Value::Set(items) | Value::Push(items) => {
            let parts: Vec<String> = items.iter().map(show).collect();
            format!("[{}]", parts.join(" "))
        }
        other => format!("{other:?}"),
    }
}
