#!/usr/bin/env python3
"""Hot-key storm load generator for the PINN live benchmark (scripts/bench-pinn.sh).

Phases (wall clock, all driven by this script):
  quiet  QUIET s   background load only: GET/SET (50/50) on BG_KEYS keys spread over all slots
  ramp   RAMP s    background continues; a storm of INCRs on HOT_SLOTS hot keys, all in the
                   storm shard's slots, ramps linearly from 0 to PEAK ops/s
  hold   HOLD s    storm at PEAK ops/s

Every worker is its own process with its own redis-py RedisCluster (follows MOVED/ASK, retries
TRYAGAIN/CLUSTERDOWN). Each op's latency is the client-observed time of the call, redirects and
retries included. Rates are open-loop per worker: a worker that falls behind its schedule sends
as fast as it can until it catches up (so the offered load, not the server, sets the schedule).

Output: one JSON object on stdout:
  {"start": unix_s, "shards": [[lo, hi], ...] (the storm shard's slot ranges at start),
   "seconds": [{"t": unix_s, "bg": ops, "storm": ops, "storm_shard": ops on the storm shard's
                initial slots, "other_shard": [ops on each shard's initial slots],
                "bg_lat": [p50, p99] ms, "storm_lat": [p50, p99] ms}, ...],
   "phase_lat": {"quiet": {"bg_p50", "bg_p99", "n"}, "storm": {...}},
   "errors": n, "first_errors": [text], "incr_acked": n, "incr_final": n}
The last two check no acknowledged INCR was lost: the sum of the hot counters read back at the
end must be >= the INCRs acknowledged (more is possible only after an indeterminate reply).

Usage: pinn_storm.py HOST PORT SHARD_INDEX [--quiet 20] [--ramp 30] [--hold 20] [--bg 500]
                     [--peak 300] [--bg-workers 2] [--storm-workers 2] [--hot-slots 16]
"""
import argparse
import json
import multiprocessing as mp
import random
import sys
import time

from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisError
from redis.retry import Retry


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def key_slot(key):
    k = key.encode()
    o = k.find(b"{")
    if o >= 0:
        c = k.find(b"}", o + 1)
        if c > o + 1:
            k = k[o + 1:c]
    return crc16(k) % 16384


def connect(host, port):
    return RedisCluster(
        host=host,
        port=port,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), retries=30),
    )


def as_map(v):
    """A RESP3 map (dict) or a RESP2 flat key/value array as a dict."""
    return v if isinstance(v, dict) else dict(zip(v[::2], v[1::2]))


def shard_ranges(host, port):
    """Shard index -> slot ranges, from PINN.HEATMAP's shard list (index order)."""
    import redis

    r = redis.Redis(host=host, port=port, decode_responses=True)
    reply = r.execute_command("PINN.HEATMAP")
    top = as_map(reply)
    out = []
    for s in top["shards"]:
        f = as_map(s)
        ranges = []
        for part in f["slots"]:
            lo, _, hi = str(part).partition("-")
            ranges.append((int(lo), int(hi or lo)))
        out.append(ranges)
    return out


def in_ranges(slot, ranges):
    return any(lo <= slot <= hi for lo, hi in ranges)


def worker(kind, idx, args, keys, schedule, out_q):
    """Sends ops on `keys` at the per-second rate `schedule(t - start)`; reports per second."""
    rng = random.Random(idx * 7919 + (1 if kind == "storm" else 0))
    try:
        rc = connect(args.host, args.port)
    except RedisError as e:
        out_q.put(("error", kind, str(e)))
        return
    start = args.start
    end = start + args.quiet + args.ramp + args.hold
    sent = 0.0
    per_sec = {}
    acked = {}
    errors = 0
    first_errors = []
    while True:
        now = time.time()
        if now >= end:
            break
        if now < start:
            time.sleep(min(0.05, start - now))
            continue
        # Ops due by now: integral of the rate schedule.
        due = schedule(now - start)
        if sent >= due:
            time.sleep(0.002)
            continue
        key = keys[rng.randrange(len(keys))]
        t0 = time.perf_counter()
        try:
            if kind == "storm":
                rc.incr(key)
                acked[key] = acked.get(key, 0) + 1
            elif rng.random() < 0.5:
                rc.set(key, "v")
            else:
                rc.get(key)
        except RedisError as e:
            errors += 1
            if len(first_errors) < 3:
                first_errors.append("%s %s: %s" % (kind, key, e))
        lat = (time.perf_counter() - t0) * 1000.0
        sent += 1
        sec = int(now)
        slot = key_slot(key)
        ent = per_sec.setdefault(sec, {"n": 0, "lat": [], "slots": {}})
        ent["n"] += 1
        ent["lat"].append(lat)
        ent["slots"][slot] = ent["slots"].get(slot, 0) + 1
    out_q.put(("done", kind, per_sec, acked, errors, first_errors))


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))], 3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("shard", type=int)
    ap.add_argument("--quiet", type=float, default=20)
    ap.add_argument("--ramp", type=float, default=30)
    ap.add_argument("--hold", type=float, default=20)
    ap.add_argument("--bg", type=float, default=500, help="background ops/s (total)")
    ap.add_argument("--peak", type=float, default=300, help="storm ops/s at peak (total)")
    ap.add_argument("--bg-workers", type=int, default=2)
    ap.add_argument("--storm-workers", type=int, default=2)
    ap.add_argument("--hot-slots", type=int, default=16)
    ap.add_argument("--prefix", default="pinnstorm")
    args = ap.parse_args()

    shards = shard_ranges(args.host, args.port)
    storm_ranges = shards[args.shard]
    # Hot keys: one per slot, HOT_SLOTS distinct slots of the storm shard.
    hot, seen, n = [], set(), 0
    while len(hot) < args.hot_slots:
        k = "%s:hot:{h%d}" % (args.prefix, n)
        s = key_slot(k)
        if in_ranges(s, storm_ranges) and s not in seen:
            seen.add(s)
            hot.append(k)
        n += 1
    bg_keys = ["%s:bg:%d" % (args.prefix, i) for i in range(10000)]
    for k in hot:
        connect(args.host, args.port).delete(k)

    args.start = time.time() + 2.0
    q, r, p = args.quiet, args.ramp, args.peak
    bg_rate = args.bg / args.bg_workers
    storm_w = max(1, args.storm_workers)

    def bg_sched(t):
        return bg_rate * t

    def storm_sched(t):
        # Integral of rate(t) = 0 (t < q), p*(t-q)/r (ramp), p (hold); per worker.
        if t <= q:
            return 0.0
        if t <= q + r:
            return p / storm_w * (t - q) ** 2 / (2 * r)
        return p / storm_w * (r / 2 + (t - q - r))

    out_q = mp.Queue()
    procs = []
    for i in range(args.bg_workers):
        procs.append(mp.Process(target=worker, args=("bg", i, args, bg_keys, bg_sched, out_q)))
    for i in range(args.storm_workers):
        procs.append(mp.Process(target=worker, args=("storm", i, args, hot, storm_sched, out_q)))
    for pr in procs:
        pr.start()
    results = [out_q.get() for _ in procs]
    for pr in procs:
        pr.join()

    seconds = {}
    errors = 0
    error_texts = []
    acked = {}
    for res in results:
        if res[0] == "error":
            print("worker failed to connect: %s" % res[2], file=sys.stderr)
            errors += 1
            continue
        _, kind, per_sec, ack, errs, firsts = res
        errors += errs
        error_texts.extend(firsts)
        for k, v in ack.items():
            acked[k] = acked.get(k, 0) + v
        for sec, ent in per_sec.items():
            s = seconds.setdefault(sec, {"bg": 0, "storm": 0, "bg_l": [], "storm_l": [],
                                         "shard": [0] * len(shards)})
            s[kind] += ent["n"]
            s[kind + "_l"].extend(ent["lat"])
            for slot, c in ent["slots"].items():
                for i, rg in enumerate(shards):
                    if in_ranges(slot, rg):
                        s["shard"][i] += c
    rows = []
    quiet_l, storm_l, storm_ops_l = [], [], []
    ramp_start = int(args.start + q)
    for sec in sorted(seconds):
        s = seconds[sec]
        rows.append({
            "t": sec,
            "bg": s["bg"],
            "storm": s["storm"],
            "shard_ops": s["shard"],
            "bg_lat": [pct(s["bg_l"], 50), pct(s["bg_l"], 99)],
            "storm_lat": [pct(s["storm_l"], 50), pct(s["storm_l"], 99)],
        })
        if sec < ramp_start:
            quiet_l.extend(s["bg_l"])
        else:
            storm_l.extend(s["bg_l"])
            storm_ops_l.extend(s["storm_l"])
    rc = connect(args.host, args.port)
    final = 0
    for k in hot:
        v = rc.get(k)
        final += int(v or 0)
    out = {
        "start": args.start,
        "ramp_start": args.start + q,
        "storm_shard": args.shard,
        "shards": shards,
        "hot_keys": hot,
        "seconds": rows,
        "phase_lat": {
            "quiet": {"bg_p50": pct(quiet_l, 50), "bg_p99": pct(quiet_l, 99), "n": len(quiet_l)},
            "storm": {"bg_p50": pct(storm_l, 50), "bg_p99": pct(storm_l, 99), "n": len(storm_l),
                      "storm_p50": pct(storm_ops_l, 50), "storm_p99": pct(storm_ops_l, 99),
                      "storm_n": len(storm_ops_l)},
        },
        "errors": errors,
        "first_errors": error_texts[:5],
        "incr_acked": sum(acked.values()),
        "incr_final": final,
    }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    mp.set_start_method("fork")
    main()
