#!/usr/bin/env python3
"""Summarises one scripts/bench-pinn.sh run per planner (used by that script).

Usage: pinn_bench_report.py THRESHOLD RUN_DIR [RUN_DIR ...]
Each RUN_DIR holds storm.json (scripts/pinn_storm.py's output), migrations.json (PINN.MIGRATIONS
of every node, merged by id) and planner (its name).

Definitions (all times are wall-clock seconds on this machine; server and client share it):
  crossing  the first second s of the storm in which the storm shard's OFFERED load (INCR/GET/SET
            the load generator completed on keys of the slots that shard owned when the run
            started, counted client-side, so it does not depend on any migration) exceeds
            THRESHOLD x the mean offered load per shard, and does so again in s+1 and s+2
            (three seconds in a row, so one noisy second does not count). This is when the
            shard would cross the planner's threshold without any rebalancing.
  first     started_ms of the first migration made by the planner (planner field `pinn` or
            `reactive`) FROM the storm shard at or after the ramp's start.
  lead      crossing - first, seconds (positive: the planner moved before the shard crossed).
  p99       client-observed latency of background ops (GET/SET on keys all over the ring) in
            the quiet phase vs the storm phase (ramp + hold), and of the storm's INCRs.
  migrations  every migration made by a planner during the run (any shard), and how many of
            them started during the quiet phase (nothing there is hot: false positives).
"""
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def summarise(threshold, run):
    storm = load(os.path.join(run, "storm.json"))
    migs = load(os.path.join(run, "migrations.json"))
    planner = open(os.path.join(run, "planner")).read().strip()
    k = storm["storm_shard"]
    n = len(storm["shards"])
    ramp = storm["ramp_start"]
    rows = [r for r in storm["seconds"] if r["t"] >= int(ramp)]
    hot = []
    for r in rows:
        total = sum(r["shard_ops"])
        mean = total / n if n else 0
        hot.append((r["t"], total > 0 and r["shard_ops"][k] > threshold * mean))
    crossing = None
    for i in range(len(hot) - 2):
        if hot[i][1] and hot[i + 1][1] and hot[i + 2][1]:
            crossing = hot[i][0]
            break
    made = [m for m in migs if m.get("planner") in ("pinn", "reactive")]
    quiet_false = [m for m in made if int(m["started_ms"]) / 1000.0 < ramp]
    ours = sorted(
        (m for m in made
         if int(m["from"]) == k and int(m["started_ms"]) / 1000.0 >= ramp),
        key=lambda m: int(m["started_ms"]),
    )
    first = int(ours[0]["started_ms"]) / 1000.0 if ours else None
    lead = (crossing - first) if (crossing is not None and first is not None) else None
    ph = storm["phase_lat"]
    storm_rows = [r for r in storm["seconds"] if r["t"] >= int(ramp)]
    peak_storm = max((r["storm"] for r in storm_rows), default=0)
    bg = [r["bg"] for r in storm["seconds"]]
    return {
        "planner": planner,
        "crossing_after_ramp_s": None if crossing is None else round(crossing - ramp, 1),
        "first_migration_after_ramp_s": None if first is None else round(first - ramp, 1),
        "lead_s": None if lead is None else round(lead, 1),
        "first_model": ours[0].get("model") if ours else None,
        "first_predicted": ours[0].get("predicted") if ours else None,
        "first_observed": ours[0].get("observed_at_decision") if ours else None,
        "migrations": len(made),
        "migrations_quiet": len(quiet_false),
        "migrations_from_storm_shard": len(ours),
        "failed": sum(1 for m in made if m.get("state") != "done"),
        "bg_p99_quiet_ms": ph["quiet"]["bg_p99"],
        "bg_p99_storm_ms": ph["storm"]["bg_p99"],
        "bg_p99_ratio": (round(ph["storm"]["bg_p99"] / ph["quiet"]["bg_p99"], 2)
                         if ph["quiet"]["bg_p99"] and ph["storm"]["bg_p99"] else None),
        "storm_p99_ms": ph["storm"]["storm_p99"],
        "bg_ops_s": round(sum(bg) / max(1, len(bg))),
        "storm_peak_ops_s": peak_storm,
        "errors": storm["errors"],
        "first_errors": storm.get("first_errors", []),
        "incr_acked": storm["incr_acked"],
        "incr_final": storm["incr_final"],
    }


def main():
    threshold = float(sys.argv[1])
    out = [summarise(threshold, r) for r in sys.argv[2:]]
    cols = [
        ("planner", "planner"),
        ("crossing_after_ramp_s", "crossing(s)"),
        ("first_migration_after_ramp_s", "1st move(s)"),
        ("lead_s", "lead(s)"),
        ("migrations", "moves"),
        ("migrations_quiet", "quiet moves"),
        ("bg_p99_quiet_ms", "bg p99 quiet"),
        ("bg_p99_storm_ms", "bg p99 storm"),
        ("bg_p99_ratio", "ratio"),
        ("storm_p99_ms", "INCR p99"),
        ("bg_ops_s", "bg ops/s"),
        ("storm_peak_ops_s", "storm peak"),
        ("errors", "errors"),
    ]
    print("| " + " | ".join(c[1] for c in cols) + " |")
    print("|" + "---|" * len(cols))
    for r in out:
        print("| " + " | ".join("-" if r[c[0]] is None else str(r[c[0]]) for c in cols) + " |")
    print()
    for r in out:
        lost = r["incr_final"] < r["incr_acked"]
        print("%s: first move by model=%s predicted=%s observed=%s; acked INCRs %d, final %d%s"
              % (r["planner"], r["first_model"], r["first_predicted"], r["first_observed"],
                 r["incr_acked"], r["incr_final"], "  ** ACKED WRITES LOST **" if lost else ""))
        if r["first_errors"]:
            print("  client errors: %s" % "; ".join(r["first_errors"]))
    print()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
