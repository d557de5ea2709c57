#!/usr/bin/env bash
# Single node vs redis-server: throughput, latency and memory (BENCHMARKS.md).
#   - builds pinnacle (release) and starts it (default appendfsync everysec) and a redis-server
#     (--appendonly yes --appendfsync everysec) on free loopback ports, data dirs under $TMPDIR;
#   - runs `redis-benchmark -t set,get,incr -c 50 -n 200000 -r 100000` at -P 1 and -P 16 against
#     both in the same run and prints rps, p50, p99 and the pinnacle/redis ratios;
#   - loads 1M keys of 100 bytes into each (redis-cli --pipe) and prints VmRSS and the ratio.
# Environment: BENCH_N (default 200000), BENCH_KEYS (default 1000000), BENCH_RUNS (default 1:
# with more, the run with the median rps is kept per line), PINNACLE_BIN (skip the build).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${BENCH_N:-200000}
KEYS=${BENCH_KEYS:-1000000}
RUNS=${BENCH_RUNS:-1}

# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh pinnacle-bench

start_pair --appendfsync everysec

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB RAM, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'); redis-server $(redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p'); pinnacle $PINNACLE_BIN"
echo "# command: redis-benchmark -h 127.0.0.1 -p PORT -t set,get,incr -c 50 -n $N -r 100000 -P {1,16} --csv"

# One redis-benchmark run -> lines "TEST rps p50 p99".
bench_once() { # port pipeline
    redis-benchmark -h 127.0.0.1 -p "$1" -t set,get,incr -c 50 -n "$N" -r 100000 -P "$2" --csv 2>/dev/null \
        | python3 -c '
import csv, sys
rows = list(csv.reader(sys.stdin))
head = rows[0]
for r in rows[1:]:
    d = dict(zip(head, r))
    print(d["test"], d["rps"], d["p50_latency_ms"], d["p99_latency_ms"])'
}

# Median (by rps) of RUNS runs per test.
bench() { # port pipeline
    for _ in $(seq 1 "$RUNS"); do bench_once "$1" "$2"; done \
        | sort -k1,1 -k2,2g \
        | awk -v runs="$RUNS" '{ n[$1]++; if (n[$1] == int((runs + 1) / 2)) print }'
}

results="$work/results"
: >"$results"
for P in 1 16; do
    # Alternate which server goes first so neither always gets the warmer machine.
    if [ "$P" = 1 ]; then order="pinnacle redis"; else order="redis pinnacle"; fi
    for who in $order; do
        port=$p_port; [ "$who" = redis ] && port=$r_port
        bench "$port" "$P" | sed "s/^/$who $P /" >>"$results"
    done
done

echo
echo "| test | -P | pinnacle rps | redis rps | rps ratio | pinnacle p50 ms | redis p50 ms | pinnacle p99 ms | redis p99 ms | p99 ratio |"
echo "|---|---|---|---|---|---|---|---|---|---|"
python3 - "$results" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    who, p, test, rps, p50, p99 = line.split()
    rows[(test, int(p), who)] = (float(rps), float(p50), float(p99))
for p in (1, 16):
    for test in ("SET", "GET", "INCR"):
        a, b = rows.get((test, p, "pinnacle")), rows.get((test, p, "redis"))
        if not a or not b:
            print(f"| {test} | {p} | missing | | | | | | | |")
            continue
        print(f"| {test} | {p} | {a[0]:.0f} | {b[0]:.0f} | {a[0]/b[0]:.2f} | {a[1]:.3f} | {b[1]:.3f} | {a[2]:.3f} | {b[2]:.3f} | {a[2]/b[2]:.2f} |")
EOF

# --- memory: 1M keys of 100 bytes -------------------------------------------------------------
echo
echo "# memory: FLUSHALL, then redis-cli --pipe of $KEYS x SET key:NNNNNNNNNN <100 bytes>"
python3 - "$KEYS" >"$work/load.resp" <<'EOF'
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
value = b"v" * 100
for i in range(n):
    key = b"key:%010d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(key), key, value))
EOF
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
declare -A before after
for who in pinnacle redis; do
    port=$p_port; pid=$p_pid
    [ "$who" = redis ] && { port=$r_port; pid=$r_pid; }
    redis-cli -p "$port" FLUSHALL >/dev/null
    sleep 1
    before[$who]=$(rss "$pid")
    redis-cli -p "$port" --pipe <"$work/load.resp" | tail -1
    n=$(redis-cli -p "$port" DBSIZE)
    [ "$n" = "$KEYS" ] || { echo "ERROR: $who DBSIZE $n after loading $KEYS keys" >&2; exit 1; }
    sleep 2
    after[$who]=$(rss "$pid")
done
echo
echo "| server | RSS before load (MiB) | RSS after $KEYS keys (MiB) | ratio pinnacle/redis |"
echo "|---|---|---|---|"
ratio=$(python3 -c "print(f'{${after[pinnacle]}/${after[redis]}:.2f}')")
for who in pinnacle redis; do
    r=""; [ "$who" = pinnacle ] && r=$ratio
    echo "| $who | $(( ${before[$who]} / 1024 )) | $(( ${after[$who]} / 1024 )) | $r |"
done
