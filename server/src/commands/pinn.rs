//! PINN.* commands: the heatmap, forecasts, trainer statistics, manual training, the `pinn-*`
//! settings, and slot migrations (through the Raft layer's slot mover).
//!
//! Replies are maps (flat arrays in RESP2) with fixed keys; heats are operations per second,
//! rounded to 3 decimals; slot ranges are `"first-last"` strings.

use crate::command::glob::glob_match;
use crate::command::{Ctx, Handler};
use crate::pinn::heatmap::{render, shard_row};
use crate::pinn::planner::range_heat;
use crate::pinn::settings::PARAMS;
use crate::pinn::{self, MigrationRecord, MoveTarget, Settings, ShardInfo};
use bytes::Bytes;
use pinnacle_pinn::RoundReport;
use pinnacle_resp::Reply;
use std::time::Duration;

/// Handlers of this family.
pub const HANDLERS: &[(&str, Handler)] = &[
    ("pinn.heatmap", heatmap),
    ("pinn.predict", predict),
    ("pinn.stats", stats),
    ("pinn.train", train),
    ("pinn.config", config),
    ("pinn.migrate", migrate),
    ("pinn.migrations", migrations),
    ("pinn.heat", heat),
];

/// Longest forecast horizon a command accepts, seconds.
const MAX_HORIZON: u64 = 600;
/// Most heatmap buckets.
const MAX_BUCKETS: usize = 1024;
/// How long `PINN.MIGRATE ... SYNC` waits.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

fn s(v: &str) -> Reply {
    Reply::bulk(Bytes::copy_from_slice(v.as_bytes()))
}

fn dbl(v: f64) -> Reply {
    Reply::Double((v * 1000.0).round() / 1000.0)
}

fn int(v: u64) -> Reply {
    Reply::Integer(v.min(i64::MAX as u64) as i64)
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Reply) -> Reply {
    v.map_or(Reply::Null, f)
}

fn map(pairs: Vec<(&str, Reply)>) -> Reply {
    Reply::Map(pairs.into_iter().map(|(k, v)| (s(k), v)).collect())
}

fn ranges(r: &[(u16, u16)]) -> Reply {
    Reply::Array(r.iter().map(|(a, b)| s(&format!("{a}-{b}"))).collect())
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Runs `f`, which blocks, without stalling the tokio worker it is called on.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Parses `HORIZON s` / `BUCKETS n` / `TEXT` options from `args`.
struct Opts {
    horizon: Option<u64>,
    buckets: Option<usize>,
    text: bool,
}

fn options(args: &[Bytes], allow: &[&str]) -> Result<Opts, Reply> {
    let mut o = Opts {
        horizon: None,
        buckets: None,
        text: false,
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let allowed = |w: &str| allow.contains(&w) && a.eq_ignore_ascii_case(w.as_bytes());
        if allowed("TEXT") {
            o.text = true;
            i += 1;
            continue;
        }
        let value = args
            .get(i + 1)
            .ok_or_else(|| Reply::error("ERR syntax error"))?;
        if allowed("HORIZON") {
            match parse_u64(value).filter(|h| (1..=MAX_HORIZON).contains(h)) {
                Some(h) => o.horizon = Some(h),
                None => {
                    return Err(Reply::error(format!(
                        "ERR HORIZON must be an integer between 1 and {MAX_HORIZON}"
                    )))
                }
            }
        } else if allowed("BUCKETS") {
            match parse_u64(value).filter(|n| (1..=MAX_BUCKETS as u64).contains(n)) {
                Some(n) => o.buckets = Some(n as usize),
                None => {
                    return Err(Reply::error(format!(
                        "ERR BUCKETS must be an integer between 1 and {MAX_BUCKETS}"
                    )))
                }
            }
        } else {
            return Err(Reply::error("ERR syntax error"));
        }
        i += 2;
    }
    Ok(o)
}

fn shard_fields(sh: &ShardInfo) -> Vec<(&'static str, Reply)> {
    vec![
        ("index", int(sh.index as u64)),
        ("id", s(&sh.id)),
        ("node", opt(sh.leader_node.as_deref(), s)),
        ("addr", opt(sh.leader_addr.as_deref(), s)),
        ("local", Reply::Boolean(sh.local_leader)),
        ("slots", ranges(&sh.slots)),
    ]
}

/// `PINN.HEATMAP [HORIZON s] [BUCKETS n] [TEXT]`
fn heatmap(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let o = match options(&args[1..], &["HORIZON", "BUCKETS", "TEXT"]) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let svc = pinn::service();
    let settings = svc.settings();
    let horizon = o.horizon.unwrap_or(settings.horizon);
    let n = o.buckets.unwrap_or(settings.buckets);
    let snap = svc.snapshot(horizon);
    let shards = pinn::shards(ctx.server);
    let rows: Vec<_> = shards
        .iter()
        .map(|sh| shard_row(sh, &snap.observed, snap.predicted(), n))
        .collect();
    let text = Reply::Array(
        render(&shards, &rows, horizon, snap.selected.as_deref())
            .iter()
            .map(|l| s(l))
            .collect(),
    );
    if o.text {
        return text;
    }
    let shard_replies = shards
        .iter()
        .zip(&rows)
        .map(|(sh, row)| {
            let mut f = shard_fields(sh);
            f.push(("observed", dbl(row.observed.iter().sum())));
            f.push((
                "predicted",
                opt(row.predicted.as_ref(), |p| dbl(p.iter().sum())),
            ));
            f.push((
                "observed_buckets",
                Reply::Array(row.observed.iter().map(|&v| dbl(v)).collect()),
            ));
            f.push((
                "predicted_buckets",
                opt(row.predicted.as_ref(), |p| {
                    Reply::Array(p.iter().map(|&v| dbl(v)).collect())
                }),
            ));
            map(f)
        })
        .collect();
    map(vec![
        ("text", text),
        ("time", int(snap.t)),
        ("horizon", int(horizon)),
        ("buckets", int(n as u64)),
        ("model", opt(snap.selected.as_deref(), s)),
        ("shards", Reply::Array(shard_replies)),
    ])
}

/// `PINN.PREDICT <shard | SLOT n> [HORIZON s]`
fn predict(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let shards = pinn::shards(ctx.server);
    let (label, slots, rest) = if args[1].eq_ignore_ascii_case(b"SLOT") {
        let Some(slot) = args
            .get(2)
            .and_then(|a| parse_u64(a))
            .filter(|&n| n < pinnacle_pinn::SLOTS as u64)
        else {
            return Reply::error("ERR Invalid or out of range slot");
        };
        let slot = slot as u16;
        (
            format!("slot {slot}"),
            vec![(slot, slot)],
            &args[3.min(args.len())..],
        )
    } else {
        let Some(sh) =
            parse_u64(&args[1]).and_then(|i| shards.iter().find(|s| s.index as u64 == i))
        else {
            return Reply::error(format!(
                "ERR Invalid shard index (this cluster has {} shards)",
                shards.len()
            ));
        };
        (format!("shard {}", sh.index), sh.slots.clone(), &args[2..])
    };
    let o = match options(rest, &["HORIZON"]) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let svc = pinn::service();
    let horizon = o.horizon.unwrap_or(svc.settings().horizon);
    let snap = svc.snapshot(horizon);
    let predicted = snap.predicted().map(|p| range_heat(&slots, p));
    let models = snap
        .models
        .iter()
        .map(|(m, p)| (s(m), dbl(range_heat(&slots, p))))
        .collect();
    map(vec![
        ("target", s(&label)),
        ("slots", ranges(&slots)),
        ("time", int(snap.t)),
        ("horizon", int(horizon)),
        ("observed", dbl(range_heat(&slots, &snap.observed))),
        ("model", opt(snap.selected.as_deref(), s)),
        ("predicted", opt(predicted, dbl)),
        ("models", Reply::Map(models)),
    ])
}

fn round_reply(r: &RoundReport) -> Reply {
    map(vec![
        ("round", int(r.round)),
        ("steps", int(r.steps as u64)),
        ("total_steps", int(r.total_steps)),
        (
            "loss",
            map(vec![
                ("data", dbl(r.terms.data as f64)),
                ("pde", dbl(r.terms.pde as f64)),
                ("bc", dbl(r.terms.bc as f64)),
                ("ic", dbl(r.terms.ic as f64)),
                ("total", dbl(r.terms.total as f64)),
            ]),
        ),
        ("first_loss", dbl(r.first_loss as f64)),
        // The PDE's velocity units (v = a + b·u); (0, 1) unless learn_velocity is on.
        ("velocity_a", dbl(r.velocity[0] as f64)),
        ("velocity_b", dbl(r.velocity[1] as f64)),
        ("train_ms", dbl(r.duration.as_secs_f64() * 1e3)),
        ("ms_per_step", dbl(r.ms_per_step)),
        ("accepted", Reply::Boolean(r.accepted)),
        ("rejected_because", opt(r.rejected_because.as_deref(), s)),
    ])
}

fn stats_reply() -> Reply {
    let svc = pinn::service();
    let settings = svc.settings();
    let (rounds, accepted, rejected) = svc.rounds();
    let pinn::Scores {
        models: scores,
        best,
        forward_us,
    } = svc.scores();
    let (rows, t) = svc.window_info();
    let avg_ms = (!rounds.is_empty()).then(|| {
        rounds
            .iter()
            .map(|r| r.duration.as_secs_f64() * 1e3)
            .sum::<f64>()
            / rounds.len() as f64
    });
    let persistence = scores
        .iter()
        .find(|(m, _, _)| m == "persistence")
        .map(|x| x.1);
    let errors = scores
        .iter()
        .map(|(m, e, n)| {
            let ratio = persistence.filter(|p| *p > 0.0).map(|p| e / p);
            (
                s(m),
                map(vec![
                    ("mse", dbl(*e)),
                    ("vs_persistence", opt(ratio, dbl)),
                    ("scored", int(*n)),
                ]),
            )
        })
        .collect();
    let hot = svc
        .hot_keys(10)
        .into_iter()
        .map(|h| Reply::Array(vec![Reply::bulk(h.key), int(h.count)]))
        .collect();
    map(vec![
        ("enabled", Reply::Boolean(settings.enabled)),
        (
            "training",
            Reply::Boolean(settings.enabled && settings.train),
        ),
        ("planner", s(settings.planner.name())),
        ("time", int(t)),
        ("window_rows", int(rows as u64)),
        ("buckets", int(settings.buckets as u64)),
        ("rounds", int(accepted + rejected)),
        ("accepted", int(accepted)),
        ("rejected", int(rejected)),
        ("last_round", opt(rounds.last(), round_reply)),
        ("train_ms_avg", opt(avg_ms, dbl)),
        ("forward_us", opt(forward_us, dbl)),
        ("best_model", opt(best.as_deref(), s)),
        ("forecast_error", Reply::Map(errors)),
        ("decisions", int(svc.decisions().len() as u64)),
        ("cooling_slots", int(svc.cooling_slots() as u64)),
        // Seconds with a shard's heat missing or stale, where the planner decided nothing.
        ("planner_skipped", int(svc.planner_skipped())),
        ("hot_keys", Reply::Array(hot)),
    ])
}

/// `PINN.STATS`
fn stats(_: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    stats_reply()
}

/// `PINN.TRAIN`: one round now on the current window; replies with PINN.STATS.
fn train(_: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    let svc = pinn::service();
    if !svc.settings().enabled {
        return Reply::error("ERR PINN is disabled; PINN.CONFIG SET enabled yes");
    }
    match blocking(|| svc.train_now()) {
        Ok(_) => stats_reply(),
        Err(e) => Reply::error(format!("ERR PINN training failed: {e}")),
    }
}

/// The full `pinn-*` name of a PINN.CONFIG name (either form accepted).
fn full_name(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    PARAMS
        .iter()
        .copied()
        .find(|p| *p == lower || p.strip_prefix("pinn-") == Some(lower.as_str()))
}

/// `PINN.CONFIG GET pattern [pattern ...]` | `PINN.CONFIG SET name value [name value ...]`
fn config(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = &args[1];
    if sub.eq_ignore_ascii_case(b"GET") {
        let mut out = Vec::new();
        for p in PARAMS {
            let short = p.trim_start_matches("pinn-");
            let hit = args[2..].iter().any(|pat| {
                glob_match(pat, short.as_bytes(), true) || glob_match(pat, p.as_bytes(), true)
            });
            if hit {
                if let Some(v) = ctx.server.config.get(p) {
                    out.push((s(short), s(&v)));
                }
            }
        }
        return Reply::Map(out);
    }
    if !sub.eq_ignore_ascii_case(b"SET") {
        return Reply::error(format!(
            "ERR unknown subcommand '{}'. Try PINN.CONFIG GET or PINN.CONFIG SET.",
            String::from_utf8_lossy(sub)
        ));
    }
    if args.len() < 4 || !(args.len() - 2).is_multiple_of(2) {
        return Reply::error("ERR wrong number of arguments for 'pinn.config|set' command");
    }
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for kv in args[2..].chunks(2) {
        let name = String::from_utf8_lossy(&kv[0]);
        let Some(full) = full_name(&name) else {
            return Reply::error(format!("ERR Unknown PINN option '{name}'"));
        };
        pairs.push((full, String::from_utf8_lossy(&kv[1]).into_owned()));
    }
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match ctx.server.config.set_many(&borrowed) {
        Ok(()) => {
            pinn::service().apply(Settings::from_config(&ctx.server.config));
            Reply::ok()
        }
        Err(e) => Reply::error(e),
    }
}

fn parse_slot_range(b: &[u8]) -> Option<(u16, u16)> {
    let text = std::str::from_utf8(b).ok()?;
    let (a, z) = match text.split_once('-') {
        Some((a, z)) => (a.parse::<u16>().ok()?, z.parse::<u16>().ok()?),
        None => {
            let a = text.parse::<u16>().ok()?;
            (a, a)
        }
    };
    (a <= z && (z as usize) < pinnacle_pinn::SLOTS).then_some((a, z))
}

fn migration_reply(m: &MigrationRecord, decisions: &[pinn::Decision]) -> Reply {
    let d = decisions.iter().find(|d| d.migration == Some(m.id));
    let predicted = d.and_then(|d| {
        d.predictions
            .iter()
            .find(|(model, _)| *model == d.model)
            .map(|p| p.1)
            .or((d.model == "observed").then_some(d.observed_now))
    });
    map(vec![
        ("id", int(m.id)),
        ("state", s(&m.state)),
        ("slots", ranges(&m.slots)),
        ("from", int(m.from as u64)),
        ("to", int(m.to as u64)),
        ("keys", int(m.keys)),
        ("bytes", int(m.bytes)),
        ("started_ms", int(m.started_ms)),
        ("duration_ms", opt(m.duration_ms, int)),
        ("planner", s(&m.planner)),
        ("error", opt(m.error.as_deref(), s)),
        ("model", opt(d.map(|d| d.model.as_str()), s)),
        ("predicted", opt(predicted, dbl)),
        ("observed_at_decision", opt(d.map(|d| d.observed_now), dbl)),
        ("observed_later", opt(d.and_then(|d| d.observed_later), dbl)),
    ])
}

fn no_mover() -> Reply {
    Reply::error("ERR This node runs without Raft; start it with --cluster-peers")
}

/// `PINN.MIGRATE <slot | first-last> <shard-index | node-id> [SYNC]`
fn migrate(_: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let Some(range) = parse_slot_range(&args[1]) else {
        return Reply::error("ERR Invalid or out of range slot");
    };
    let target = &args[2];
    let to = if target.len() == 40 && target.iter().all(u8::is_ascii_hexdigit) {
        MoveTarget::Node(String::from_utf8_lossy(target).to_ascii_lowercase())
    } else if let Some(i) = parse_u64(target) {
        MoveTarget::Shard(i as usize)
    } else {
        return Reply::error("ERR Invalid shard index or node id");
    };
    let sync = match args.get(3) {
        None => false,
        Some(a) if a.eq_ignore_ascii_case(b"SYNC") && args.len() == 4 => true,
        Some(_) => return Reply::error("ERR syntax error"),
    };
    let Some(mover) = pinn::mover() else {
        return no_mover();
    };
    let id = match mover.start(vec![range], to, "manual") {
        Ok(id) => id,
        Err(e) if e.starts_with("ERR ") => return Reply::error(e),
        Err(e) => return Reply::error(format!("ERR {e}")),
    };
    if !sync {
        return int(id);
    }
    match blocking(|| mover.wait(id, SYNC_TIMEOUT)) {
        Ok(rec) => migration_reply(&rec, &[]),
        Err(e) => Reply::error(format!("ERR migration {id}: {e}")),
    }
}

/// `PINN.MIGRATIONS [COUNT n]`: newest first (default 16; COUNT 0 lists all).
fn migrations(_: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let count = match &args[1..] {
        [] => 16,
        [k, v] if k.eq_ignore_ascii_case(b"COUNT") => match parse_u64(v) {
            Some(0) => usize::MAX,
            Some(n) => n as usize,
            None => return Reply::error("ERR value is out of range, must be positive"),
        },
        _ => return Reply::error("ERR syntax error"),
    };
    let records = pinn::mover().map(|m| m.migrations()).unwrap_or_default();
    let decisions = pinn::service().decisions();
    Reply::Array(
        records
            .iter()
            .rev()
            .take(count)
            .map(|m| migration_reply(m, &decisions))
            .collect(),
    )
}

/// `PINN.HEAT`: this node's per-slot operation counts of the last second, as
/// `"<second> <slot>:<ops> ..."` (the other shard leaders pull it once a second).
fn heat(_: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    Reply::bulk(Bytes::from(pinn::service().export()))
}

#[cfg(test)]
#[path = "pinn_tests.rs"]
mod tests;
