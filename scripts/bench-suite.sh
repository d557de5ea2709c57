#!/usr/bin/env bash
# Data types: the full redis-benchmark default suite vs redis-server (BENCHMARKS.md, issue 7).
#   - builds pinnacle (release) and starts it with default settings and a redis-server
#     (--appendonly yes --appendfsync everysec --save '') on free loopback ports (never 6379),
#     data dirs under $TMPDIR;
#   - runs the whole default suite (no -t): `redis-benchmark -c 50 -n N --csv` at -P 1 and -P 16
#     against both in the same run, alternating which server goes first on every pass;
#   - prints one markdown table per -P: rps of each, pinnacle/redis ratio, p50 of each.
# Environment: BENCH_N (default 100000), BENCH_RUNS (default 1: with more, the run with the median
# rps is kept per test), BENCH_PIPELINES (default "1 16"), PINNACLE_BIN (skip the build),
# PINNACLE_ARGS (extra pinnacle flags, e.g. "--config f.conf"; default none: default settings),
# BENCH_TESTS (redis-benchmark -t list, e.g. "mset,lrange"; default none: the whole suite).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${BENCH_N:-100000}
RUNS=${BENCH_RUNS:-1}
PIPELINES=${BENCH_PIPELINES:-1 16}
tests_flag=()
[ -n "${BENCH_TESTS:-}" ] && tests_flag=(-t "$BENCH_TESTS")

# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh pinnacle-bench-suite

# shellcheck disable=SC2086 # PINNACLE_ARGS is a list of flags
start_pair ${PINNACLE_ARGS:-}
echo "# pinnacle pid $p_pid port $p_port; redis-server pid $r_pid port $r_port"

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB RAM, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'); redis-server $(redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p'); pinnacle $PINNACLE_BIN ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "# pinnacle flags: ${PINNACLE_ARGS:-(defaults)}"
echo "# command: redis-benchmark -h 127.0.0.1 -p PORT -c 50 -n $N -P {${PIPELINES// /,}} --csv ${tests_flag[*]:-} (runs: $RUNS)"

results="$work/results.csv"
: >"$results"
pass=0
for run in $(seq 1 "$RUNS"); do
    for P in $PIPELINES; do
        # Alternate which server goes first on every pass so neither always gets the warmer machine.
        if [ $((pass % 2)) = 0 ]; then order="pinnacle redis"; else order="redis pinnacle"; fi
        pass=$((pass + 1))
        for who in $order; do
            port=$p_port; [ "$who" = redis ] && port=$r_port
            redis-cli -p "$port" FLUSHALL >/dev/null
            out="$work/$who-$P-$run.csv"
            redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n "$N" -P "$P" --csv "${tests_flag[@]}" >"$out" 2>"$work/err"
            # redis-benchmark prints error replies ("Error from server: ...") on stderr.
            if ! [ -s "$out" ] || [ -s "$work/err" ]; then
                echo "ERROR: redis-benchmark against $who (-P $P) failed or got error replies:" >&2
                head -20 "$work/err" >&2
                exit 1
            fi
            python3 - "$who" "$P" "$run" "$out" >>"$results" <<'EOF'
import csv, sys
who, p, run, path = sys.argv[1:]
rows = list(csv.reader(open(path)))
head = rows[0]
w = csv.writer(sys.stdout)
for r in rows[1:]:
    d = dict(zip(head, r))
    w.writerow([who, p, run, d["test"], d["rps"], d.get("p50_latency_ms", "")])
EOF
            echo "# load after $who -P $P run $run: $(cut -d' ' -f1-3 /proc/loadavg)"
        done
    done
done
for who in pinnacle redis; do
    pid=$p_pid; [ "$who" = redis ] && pid=$r_pid
    kill -0 "$pid" 2>/dev/null || { echo "ERROR: $who exited during the run" >&2; exit 1; }
done

python3 - "$results" <<'EOF'
import csv, sys
from collections import defaultdict
runs = defaultdict(list)  # (p, test, who) -> [(rps, p50)]
order = []
for who, p, run, test, rps, p50 in csv.reader(open(sys.argv[1])):
    if (p, test) not in order:
        order.append((p, test))
    runs[(p, test, who)].append((float(rps), float(p50) if p50 else None))

def median(xs):
    xs = sorted(xs, key=lambda x: x[0])
    return xs[(len(xs) - 1) // 2]

def ms(x):
    return "" if x is None else f"{x:.3f}"

for p in sorted({p for p, _ in order}, key=int):
    print()
    print(f"-P {p}:")
    print()
    print("| test | pinnacle rps | redis rps | ratio | pinnacle p50 ms | redis p50 ms |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for q, test in order:
        if q != p:
            continue
        a, b = runs.get((p, test, "pinnacle")), runs.get((p, test, "redis"))
        if not a or not b:
            print(f"| {test} | missing | | | | |")
            continue
        a, b = median(a), median(b)
        ratio = a[0] / b[0]
        ratios.append((ratio, test))
        print(f"| {test} | {a[0]:.0f} | {b[0]:.0f} | {ratio:.2f} | {ms(a[1])} | {ms(b[1])} |")
    ratios.sort()
    print()
    print("slowest three (by ratio): " + ", ".join(f"{t} {r:.2f}" for r, t in ratios[:3]))
EOF
