#!/usr/bin/env bash
# PINN live evaluation (issue 6, "Evaluation 2"; BENCHMARKS.md "PINN: live 3-node hot-spot
# storm"): for each planner in PLANNERS (default: pinn reactive off), on a FRESH 3-node cluster
# (release binary, --shards 3, leaders spread one per node):
#   - every node: PINN.CONFIG SET planner <p>, threshold THRESHOLD (default 1.5), train yes,
#     train-min-ops TRAIN_MIN_OPS (default 200: the Python load generator cannot offer the
#     default 1000 ops/s per node on this machine, and without rounds there is no PINN model);
#   - scripts/pinn_storm.py: QUIET s of background GET/SET all over the ring (BG ops/s), then a
#     storm of INCRs on 16 hot keys in 16 slots of shard 1 ramping linearly 0 -> PEAK ops/s over
#     RAMP s while the background continues, then HOLD s at PEAK;
#   - collects PINN.MIGRATIONS from every node (merged by id) and PINN.STATS of the storm shard's
#     leader, stops the cluster;
# then scripts/pinn_bench_report.py prints the table (definitions of crossing, lead time and
# latency phases are in that file's docstring).
# Environment: PLANNERS, THRESHOLD, QUIET (20), RAMP (30), HOLD (20), BG (500), PEAK (300),
# BG_WORKERS (3), STORM_WORKERS (3), TRAIN_MIN_OPS (200), PINN_BENCH_PORT (base, default 7700),
# PINNACLE_BIN (default target/release/pinnacle; built if missing), BENCH_KEEP=1 (keep logs).
set -euo pipefail
cd "$(dirname "$0")/.."

PLANNERS=${PLANNERS:-"pinn reactive off"}
THRESHOLD=${THRESHOLD:-1.5}
QUIET=${QUIET:-20}
RAMP=${RAMP:-30}
HOLD=${HOLD:-20}
BG=${BG:-500}
PEAK=${PEAK:-300}
BG_WORKERS=${BG_WORKERS:-3}
STORM_WORKERS=${STORM_WORKERS:-3}
TRAIN_MIN_OPS=${TRAIN_MIN_OPS:-200}
BASE=${PINN_BENCH_PORT:-7700}
HOST=127.0.0.1
STORM_SHARD=1

die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
command -v redis-cli >/dev/null 2>&1 || die "redis-cli is missing (apt-get install -y redis-tools)"
python3 -c 'import redis' 2>/dev/null || die "redis-py is missing (pip install redis)"
if [ -z "${PINNACLE_BIN:-}" ]; then
    PINNACLE_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/pinnacle
    [ -x "$PINNACLE_BIN" ] || cargo build --release -p pinnacle-server --bin pinnacle
fi
[ -x "$PINNACLE_BIN" ] || die "no pinnacle binary at $PINNACLE_BIN"
export PINNACLE_BIN

work=$(mktemp -d /tmp/pinnacle-bench-pinn.XXXXXX)
current=""
cleanup() {
    if [ -n "$current" ]; then
        CLUSTER_DIR="$current" CLUSTER_PORT=$BASE scripts/cluster.sh stop >/dev/null 2>&1 || true
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "runs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cli() { redis-cli -h "$HOST" -p "$1" "${@:2}"; }

# Waits until every node says cluster_state:ok and the 3 shards have 3 distinct leaders.
wait_spread() {
    local tries=0
    while :; do
        local ok=1 p
        for p in $((BASE + 1)) $((BASE + 2)) $((BASE + 3)); do
            cli "$p" CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
        done
        if [ $ok = 1 ]; then
            local masters
            masters=$(cli $((BASE + 1)) CLUSTER NODES 2>/dev/null | awk '$3 ~ /master/ && NF >= 9 {print $2}' | sort -u | wc -l)
            [ "$masters" -ge 3 ] && return 0
        fi
        tries=$((tries + 1))
        [ $tries -lt 600 ] || die "leaders did not spread within 60 s; see $current"
        sleep 0.1
    done
}

runs=()
for planner in $PLANNERS; do
    run="$work/$planner"
    mkdir -p "$run"
    current="$run/cluster"
    echo "== planner $planner: fresh cluster in $current" >&2
    CLUSTER_DIR="$current" CLUSTER_PORT=$BASE scripts/cluster.sh start 3 >&2
    wait_spread
    for p in $((BASE + 1)) $((BASE + 2)) $((BASE + 3)); do
        for kv in "planner $planner" "threshold $THRESHOLD" "train yes" "train-min-ops $TRAIN_MIN_OPS"; do
            # shellcheck disable=SC2086
            [ "$(cli "$p" PINN.CONFIG SET $kv)" = OK ] || die "PINN.CONFIG SET $kv on :$p"
        done
    done
    echo "$planner" >"$run/planner"
    python3 scripts/pinn_storm.py "$HOST" $((BASE + 1)) "$STORM_SHARD" --quiet "$QUIET" \
        --ramp "$RAMP" --hold "$HOLD" --bg "$BG" --peak "$PEAK" --bg-workers "$BG_WORKERS" \
        --storm-workers "$STORM_WORKERS" --prefix "bench-$planner" >"$run/storm.json"
    # Every node lists every migration; the decision fields (model, predicted, observed) live on
    # the node that decided, so merge them by id.
    python3 - "$HOST" "$BASE" >"$run/migrations.json" <<'EOF'
import json, sys
import redis
host, base = sys.argv[1], int(sys.argv[2])
def as_map(v):
    return v if isinstance(v, dict) else dict(zip(v[::2], v[1::2]))
merged = {}
for i in (1, 2, 3):
    r = redis.Redis(host=host, port=base + i, decode_responses=True, protocol=2)
    for m in r.execute_command("PINN.MIGRATIONS", "COUNT", "1000"):
        m = as_map(m)
        cur = merged.setdefault(m["id"], {})
        for k, v in m.items():
            if v not in (None, "") and (k not in cur or cur[k] in (None, "")):
                cur[k] = v
print(json.dumps(sorted(merged.values(), key=lambda m: int(m["id"]))))
EOF
    leader=$(cli $((BASE + 1)) PINN.HEATMAP | tr -d '\r' | awk '/^addr$/ {getline; a[n++]=$0} END {print a['"$STORM_SHARD"']}')
    if [ -n "$leader" ]; then
        redis-cli -h "${leader%:*}" -p "${leader##*:}" PINN.STATS >"$run/stats.txt" 2>&1 || true
    else
        echo "no leader address for shard $STORM_SHARD" >"$run/stats.txt"
    fi
    CLUSTER_DIR="$current" CLUSTER_PORT=$BASE scripts/cluster.sh stop >&2
    current=""
    runs+=("$run")
done

echo "machine: $(nproc) cores, $(uname -sr); load average before the report: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "storm: shard $STORM_SHARD, quiet ${QUIET}s, ramp ${RAMP}s to ${PEAK} ops/s, hold ${HOLD}s; background ${BG} ops/s; threshold ${THRESHOLD}x mean"
python3 scripts/pinn_bench_report.py "$THRESHOLD" "${runs[@]}"
for r in "${runs[@]}"; do
    printf '\n%s PINN.STATS (storm shard leader): ' "$(cat "$r/planner")"
    tr '\n' ' ' <"$r/stats.txt" | cut -c1-1400
done
echo
