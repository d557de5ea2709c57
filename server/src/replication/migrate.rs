//! Live slot migration from shard A to shard B while clients keep working.
//!
//! 1. `begin_migration` prepares B (drops leftovers of earlier attempts in those slots and
//!    accepts them again), then records the migration in the metadata group. From then on
//!    routing follows Redis (§2.2 of redis-wire.md): A serves keys it has, answers `ASK` for
//!    keys it lacks and `TRYAGAIN` for a mix; B serves `ASKING` requests.
//! 2. The leader of A drives it ([`drive`]), a small group of slots at a time: fence them in A's log
//!    (tagged client writes to it are refused from that entry on; on this node requests
//!    for keys it lacks get `ASK` at once, reads of keys it holds are served until the flip,
//!    and writes to them pull those keys to B first: [`super::copying`]), read the slot
//!    after a read barrier, ingest its records into B (`RESTORE` without `REPLACE`: never
//!    overwrites what clients wrote at B after `ASK`), seal the slot at B (later ingests are refused, so a deposed driver can't
//!    overwrite writes made after the flip), flip ownership in the metadata group (epoch + 1),
//!    then drop the slot from A (the fence stays: A refuses stale-routed writes to it).
//! 3. Every step is idempotent. A driver that fails (leader change, timeout) stops; the
//!    migration stays `running` and whichever node leads A resumes it from the metadata.
//!    There is no abort once begun: writes made at B through `ASK` must not be lost.

use super::copying::CopyGuard;
use super::meta::{MetaCmd, MigState};
use super::Replication;
use crate::storage::shard_ctl::{self, Control};
use crate::storage::{self, dump, reply_codec, WriteCommand, WriteOp};
use bytes::Bytes;
use pinnacle_resp::Reply;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long one migration step retries (leader elections included) before the driver stops.
const STEP_DEADLINE: Duration = Duration::from_secs(30);
/// How often the driver looks for migrations to run or resume.
const DRIVE_EVERY: Duration = Duration::from_millis(200);
/// A group of slots moved together holds at most this many slots, or about this many keys.
/// (8192 keys of ~120 B fill one ingest proposal of ~1 MB. Each Raft entry is appended, fsynced,
/// shipped and applied on three replicas; with 2048-key entries a migration under client load
/// took about twice as long: BENCHMARKS.md, session 10.)
const GROUP_SLOTS: usize = 256;
const GROUP_KEYS: u64 = 8192;
/// Groups moving at once (one group's read overlaps another's copy and control steps).
const GROUP_WINDOW: usize = 2;
/// Records per ingest proposal, and their byte budget (kept: a lagging follower may get many
/// entries in one AppendEntries frame, at most 64 MiB).
const INGEST_KEYS: usize = 8192;
const INGEST_BYTES: usize = 2 << 20;
/// Ingest proposals in flight at once (they commute: distinct keys, no overwrite).
const INGEST_IN_FLIGHT: usize = 4;

/// The copy's pacing: records and bytes per ingest proposal, proposals in flight, and a pause
/// after each proposal is sent (client writes to the target interleave with the copy's
/// entries). Defaults above; `PINNACLE_MIGRATE_INGEST_{KEYS,BYTES,IN_FLIGHT,PAUSE_US}` override
/// them for benchmarks (read once).
#[derive(Clone, Copy, Debug)]
struct IngestPace {
    keys: usize,
    bytes: usize,
    in_flight: usize,
    pause: Duration,
}

/// The pacing in force: the defaults, overridden by the environment (read once).
fn ingest_pace() -> IngestPace {
    static PACE: std::sync::OnceLock<IngestPace> = std::sync::OnceLock::new();
    *PACE.get_or_init(|| {
        let pace = IngestPace::from_env(|name| std::env::var(name).ok());
        tracing::info!("migration ingest pace: {pace:?}");
        pace
    })
}

impl IngestPace {
    /// The defaults, with each `PINNACLE_MIGRATE_INGEST_*` value `get` returns that parses (and,
    /// but for the pause, is above 0) in their place. The byte budget stays at most 16 MiB: a
    /// lagging follower's AppendEntries frame (several entries) must stay under 64 MiB.
    fn from_env(get: impl Fn(&str) -> Option<String>) -> Self {
        let num = |name: &str| get(name).and_then(|v| v.trim().parse::<u64>().ok());
        let positive = |name: &str, default: usize| {
            num(name)
                .filter(|v| *v > 0)
                .map_or(default, |v| usize::try_from(v).unwrap_or(default))
        };
        IngestPace {
            keys: positive("PINNACLE_MIGRATE_INGEST_KEYS", INGEST_KEYS),
            bytes: positive("PINNACLE_MIGRATE_INGEST_BYTES", INGEST_BYTES).min(INGEST_BYTES * 8),
            in_flight: positive("PINNACLE_MIGRATE_INGEST_IN_FLIGHT", INGEST_IN_FLIGHT),
            pause: Duration::from_micros(num("PINNACLE_MIGRATE_INGEST_PAUSE_US").unwrap_or(0)),
        }
    }
}

impl Replication {
    /// The shard `slot` is being migrated to, if it is moving.
    pub fn migration_target(&self, slot: u16) -> Option<usize> {
        self.meta_state().migration_of(slot).map(|m| m.to)
    }

    /// Starts moving `slots` (inclusive ranges) to shard `to`; returns the migration id.
    pub async fn begin_migration(
        &self,
        slots: Vec<(u16, u16)>,
        to: usize,
        planner: &str,
    ) -> Result<u64, String> {
        if to >= self.shards.len() {
            return Err(format!("ERR no shard {to}"));
        }
        let list: Vec<u16> = slots.iter().flat_map(|&(a, b)| a..=b).collect();
        if list.is_empty() || list.iter().any(|s| *s >= storage::slot::SLOTS) {
            return Err("ERR Invalid slot".into());
        }
        let st = self.meta_state();
        let from = st.map.owner(list[0]);
        if let Some(s) = list.iter().find(|s| st.map.owner(**s) != from) {
            return Err(format!(
                "ERR slot {s} is not owned by shard {from} like slot {}",
                list[0]
            ));
        }
        if from == to {
            return Err(format!("ERR shard {to} already owns slot {}", list[0]));
        }
        if let Some(s) = list.iter().find(|s| st.migrating.contains_key(s)) {
            return Err(format!("ERR slot {s} is already migrating"));
        }
        // The target starts clean: no records of an earlier, unfinished attempt, no fences.
        self.propose_items(
            to,
            vec![
                Control::Drop(list.clone()).encode(),
                Control::Accept(list).encode(),
            ],
        )
        .await?;
        let cmd = MetaCmd::Begin {
            slots,
            to,
            planner: planner.to_string(),
            now_ms: storage::wall_ms(),
        };
        // Not idempotent: an unknown outcome is reported, never retried.
        let raw = self
            .meta
            .propose_anywhere(cmd.encode())
            .await
            .map_err(|e| format!("ERR migration not started: {e}"))?;
        let reply = String::from_utf8_lossy(&raw).into_owned();
        match reply.strip_prefix('+').map(str::parse::<u64>) {
            Some(Ok(id)) => Ok(id),
            _ => Err(reply.trim_start_matches('-').to_string()),
        }
    }

    /// Proposes shard items (all idempotent), retrying through leader changes.
    pub(super) async fn propose_items(
        &self,
        shard: usize,
        items: Vec<Bytes>,
    ) -> Result<Vec<Reply>, String> {
        let payload = storage::raft_target_proposal(&items);
        let deadline = Instant::now() + STEP_DEADLINE;
        loop {
            let s = &self.shards[shard];
            // Outside the target's group (more nodes than replicas), its leader is the one
            // published in the metadata.
            let res = match s.outside_leader() {
                Some((leader, at)) => s.group().propose_to(leader, &at, payload.clone()).await,
                None => s.group().propose_anywhere(payload.clone()).await,
            };
            match res {
                Ok(raw) => {
                    return reply_codec::decode_list(raw)
                        .ok_or_else(|| "ERR malformed shard reply".to_string())
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("ERR shard {shard}: {e}"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Proposes an idempotent metadata change, retrying through leader changes.
    async fn propose_meta(&self, cmd: MetaCmd) -> Result<String, String> {
        let payload = cmd.encode();
        let deadline = Instant::now() + STEP_DEADLINE;
        loop {
            match self.meta.propose_anywhere(payload.clone()).await {
                Ok(raw) => return Ok(String::from_utf8_lossy(&raw).into_owned()),
                Err(e) if Instant::now() >= deadline => return Err(format!("ERR metadata: {e}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Waits until the metadata shows migration `id` finished (or `limit` passes).
    pub async fn wait_migration(&self, id: u64, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            // The id is the metadata log index that began it: this node may not have
            // applied that far yet (the proposal may have been forwarded to the leader).
            let applied = self
                .meta
                .metrics()
                .last_applied
                .as_ref()
                .map_or(0, |l| l.index);
            if applied < id && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            match self.meta_state().migrations.get(&id) {
                None => return Err(format!("ERR no migration {id}")),
                Some(m) if m.state == MigState::Done => return Ok(()),
                Some(_) if Instant::now() >= deadline => {
                    return Err(format!("ERR migration {id} is still running"))
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

/// Starts (or resumes) every running migration whose source shard this node leads.
pub(super) async fn drive(repl: Weak<Replication>) {
    let mut tick = tokio::time::interval(DRIVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(r) = repl.upgrade() else { return };
        let st = r.meta_state();
        for m in st.migrations.values() {
            if m.state != MigState::Running || !r.shards[m.from].is_leader() {
                continue;
            }
            if !r.migrations.driving.lock().insert(m.id) {
                continue;
            }
            let (r2, id) = (r.clone(), m.id);
            tokio::spawn(async move {
                match run(&r2, id).await {
                    Ok(()) => tracing::info!("migration {id} finished"),
                    Err(e) => tracing::warn!("migration {id} paused ({e}); it will resume"),
                }
                r2.migrations.driving.lock().remove(&id);
            });
        }
    }
}

/// Moves every slot of migration `id` still to move, then marks it finished.
async fn run(r: &Arc<Replication>, id: u64) -> Result<(), String> {
    let st = r.meta_state();
    let m = st
        .migrations
        .get(&id)
        .cloned()
        .ok_or_else(|| format!("no migration {id}"))?;
    let (a, b) = (m.from, m.to);
    tracing::info!(
        "migration {id}: shard {a} → {b}, slots {:?} ({})",
        m.slots,
        m.planner
    );
    // Slots flipped by an earlier driver: make sure the source dropped them.
    let flipped: Vec<u16> = m
        .slot_list()
        .into_iter()
        .filter(|s| st.migrating.get(s) != Some(&id))
        .collect();
    if !flipped.is_empty() {
        r.propose_items(a, vec![Control::Drop(flipped).encode()])
            .await?;
    }
    let todo: Vec<u16> = m
        .slot_list()
        .into_iter()
        .filter(|s| r.meta_state().migrating.get(s) == Some(&id))
        .collect();
    // Slots move in small groups: one fence/flip round trip for many near-empty slots, while
    // a group's writers wait no longer than a copy of about GROUP_KEYS keys. Up to
    // GROUP_WINDOW groups move at once: one group's read of the source overlaps the other's
    // copy and Raft round trips (fence, seal, flip, drop). Groups are disjoint sets of slots
    // and every step is per slot (the flip too), so they commute; a failed group fails the
    // driver, and dropping the window aborts the others like a driver that stopped there
    // (every step is idempotent and a resumed driver redoes what is left).
    let db = r.shards[a].group().target().clone();
    let mut window = tokio::task::JoinSet::new();
    let mut group = Vec::new();
    let mut group_keys = 0u64;
    for (i, slot) in todo.iter().enumerate() {
        group.push(*slot);
        group_keys += db.count_keys_in_slot(*slot).map_err(|e| e.to_string())?;
        let last = i + 1 == todo.len();
        if last || group.len() >= GROUP_SLOTS || group_keys >= GROUP_KEYS {
            if window.len() >= GROUP_WINDOW {
                join_one(&mut window).await?;
            }
            if !r.shards[a].is_leader() {
                return Err("this node no longer leads the source shard".into());
            }
            let (r2, slots) = (r.clone(), std::mem::take(&mut group));
            window.spawn(async move { move_slots(&r2, id, &slots, a, b).await });
            group_keys = 0;
        }
    }
    while !window.is_empty() {
        join_one(&mut window).await?;
    }
    let reply = r
        .propose_meta(MetaCmd::Finish {
            id,
            now_ms: storage::wall_ms(),
        })
        .await?;
    if reply.starts_with('-') {
        return Err(reply);
    }
    Ok(())
}

/// Moves `slots` from shard `a` to shard `b`.
async fn move_slots(
    r: &Arc<Replication>,
    id: u64,
    slots: &[u16],
    a: usize,
    b: usize,
) -> Result<(), String> {
    let started = Instant::now();
    let guards: Vec<CopyGuard<'_>> = slots
        .iter()
        .map(|s| CopyGuard::new(&r.migrations, *s))
        .collect();
    r.propose_items(a, vec![Control::Fence(slots.to_vec()).encode()])
        .await?;
    fail::fail_point!("migrate::after_fence");
    // Everything written to the slots before the fence is now readable here.
    r.shards[a]
        .read_barrier()
        .await
        .map_err(|_| "lost the source shard's leadership".to_string())?;
    // Waiting requests may now pull their keys ahead of the scan.
    r.migrations.ready_for_pulls(slots, b);
    let db = r.shards[a].group().target().clone();
    let now = db.now_ms();
    let (mut moved, mut bytes) = (0u64, 0u64);
    let mut items = Vec::new();
    let mut batch_bytes = 0usize;
    let mut inflight = tokio::task::JoinSet::new();
    let pace = ingest_pace();
    for &slot in slots {
        // One scan of the slot's records per chunk (the slot is fenced: nothing changes it
        // between chunks).
        let mut after: Option<Bytes> = None;
        loop {
            // The scan and the encoding are CPU work of a few ms per chunk: on a blocking
            // thread, so that the runtime's workers keep serving clients meanwhile.
            let (db2, from) = (db.clone(), after.take());
            let (max_keys, max_bytes) = (pace.keys, pace.bytes);
            let chunk = tokio::task::spawn_blocking(move || {
                let chunk = db2
                    .dump_slot_chunk(slot, from.as_ref(), max_keys, max_bytes)
                    .map_err(|e| e.to_string())?;
                let last = chunk.last().map(|(k, _, _)| k.clone());
                let encoded: Vec<(Bytes, usize)> = chunk
                    .into_iter()
                    .map(|(key, meta, value)| {
                        let (cmd, size) = restore(key, meta.expire_at, &value, now);
                        (shard_ctl::ingest(slot, &cmd), size)
                    })
                    .collect();
                Ok::<_, String>((last, encoded))
            })
            .await
            .map_err(|e| format!("slot copy task failed: {e}"))??;
            let (Some(last), encoded) = chunk else {
                break;
            };
            after = Some(last);
            for (item, size) in encoded {
                items.push(item);
                moved += 1;
                bytes += size as u64;
                batch_bytes += size;
                if items.len() >= pace.keys || batch_bytes >= pace.bytes {
                    if inflight.len() >= pace.in_flight {
                        join_one(&mut inflight).await?;
                    }
                    let (r2, batch) = (r.clone(), std::mem::take(&mut items));
                    inflight.spawn(async move { ingest(&r2, b, batch).await });
                    batch_bytes = 0;
                    if !pace.pause.is_zero() {
                        tokio::time::sleep(pace.pause).await;
                    }
                }
            }
        }
    }
    if !items.is_empty() {
        let r2 = r.clone();
        inflight.spawn(async move { ingest(&r2, b, items).await });
    }
    while !inflight.is_empty() {
        join_one(&mut inflight).await?;
    }
    let copied = started.elapsed();
    r.propose_items(b, vec![Control::Seal(slots.to_vec()).encode()])
        .await?;
    // No read is served from the source's copy once the flip may have committed.
    r.migrations.end_reads(slots).await;
    let (k, n) = r.migrations.take_pulled(slots);
    moved += k;
    bytes += n;
    fail::fail_point!("migrate::after_seal");
    let reply = r
        .propose_meta(MetaCmd::Flip {
            id,
            slots: slots.to_vec(),
            keys: moved,
            bytes,
        })
        .await?;
    if reply.starts_with('-') {
        return Err(reply);
    }
    fail::fail_point!("migrate::after_flip");
    // Writers waiting on this node re-route once it sees the new owner (then: MOVED).
    let deadline = Instant::now() + STEP_DEADLINE;
    while slots.iter().any(|s| r.shard_of(*s) != b) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop(guards);
    if let Some(f) = r.on_moved.get() {
        f(slots);
    }
    fail::fail_point!("migrate::before_drop");
    r.propose_items(a, vec![Control::Drop(slots.to_vec()).encode()])
        .await?;
    tracing::debug!(
        "migration {id}: {} slots, {moved} keys, {bytes} B moved in {:?} (copy {copied:?})",
        slots.len(),
        started.elapsed()
    );
    Ok(())
}

/// The copy of one record at the target: `RESTORE` without `REPLACE` (never overwrites what a
/// client wrote there through `ASK`), and the bytes of key and value it moves.
pub(super) fn restore(key: Bytes, expire_at: u64, value: &dump::Value, now: u64) -> (Bytes, usize) {
    let payload = dump::encode_value(value);
    let size = key.len() + payload.len();
    let cmd = WriteCommand {
        now_ms: now,
        op: WriteOp::Restore {
            key,
            payload,
            expire_at,
            replace: false,
        },
    }
    .encode();
    (cmd, size)
}

/// Waits for one task (an ingest, or a group's move) in flight; its failure (or panic) fails
/// the step.
async fn join_one(set: &mut tokio::task::JoinSet<Result<(), String>>) -> Result<(), String> {
    match set.join_next().await {
        Some(Ok(res)) => res,
        Some(Err(e)) => Err(format!("ingest task failed: {e}")),
        None => Ok(()),
    }
}

/// What a sealed target answers an ingest (see `storage::shard_ctl`).
const SEALED: &str = "ERR slot sealed";

/// Copies one batch into shard `b`; a key already there (`BUSYKEY`: written through `ASK`)
/// keeps its newer value.
async fn ingest(r: &Replication, b: usize, items: Vec<Bytes>) -> Result<(), String> {
    ingest_created(r, b, items).await.map(|_| ())
}

/// [`ingest`], telling which items created their key at the target.
pub(super) async fn ingest_created(
    r: &Replication,
    b: usize,
    items: Vec<Bytes>,
) -> Result<Vec<bool>, String> {
    let replies = r.propose_items(b, items).await?;
    fail::fail_point!("migrate::mid_ingest");
    let mut created = Vec::with_capacity(replies.len());
    for rep in replies {
        if let Reply::Error(e) = &rep {
            // BUSYKEY: written at the target through ASK (newer), or pulled ahead of the
            // scan. Sealed: an earlier driver finished this slot's copy before it stopped
            // (the source is fenced, so that copy is complete and current).
            if !e.starts_with(b"BUSYKEY") && !e.starts_with(SEALED.as_bytes()) {
                return Err(String::from_utf8_lossy(e).into_owned());
            }
        }
        created.push(!matches!(rep, Reply::Error(_)));
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_pace_defaults_and_overrides() {
        let d = IngestPace::from_env(|_| None);
        assert_eq!(
            (d.keys, d.bytes, d.in_flight, d.pause),
            (INGEST_KEYS, INGEST_BYTES, INGEST_IN_FLIGHT, Duration::ZERO)
        );
        let p = IngestPace::from_env(|name| {
            Some(
                match name {
                    "PINNACLE_MIGRATE_INGEST_KEYS" => " 1024",
                    "PINNACLE_MIGRATE_INGEST_BYTES" => "999999999999",
                    "PINNACLE_MIGRATE_INGEST_IN_FLIGHT" => "0",
                    _ => "250",
                }
                .to_string(),
            )
        });
        // 0 in flight would never send: the default stays; the byte budget is capped.
        assert_eq!(
            (p.keys, p.bytes, p.in_flight, p.pause),
            (
                1024,
                INGEST_BYTES * 8,
                INGEST_IN_FLIGHT,
                Duration::from_micros(250)
            )
        );
        let bad = IngestPace::from_env(|_| Some("lots".to_string()));
        assert_eq!((bad.keys, bad.in_flight), (INGEST_KEYS, INGEST_IN_FLIGHT));
    }
}
