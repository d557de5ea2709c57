#!/usr/bin/env bash
# redis-benchmark --cluster: a 3-node Pinnacle cluster (--shards 3) vs a 3-master Redis Cluster,
# same run, same machine (issue 5, BENCHMARKS.md "Cluster: redis-benchmark --cluster vs Redis Cluster").
#   - Redis Cluster: 3 redis-server --cluster-enabled yes --appendonly yes --appendfsync everysec
#     on 127.0.0.1:REDIS_PORT+1..3, joined with `redis-cli --cluster create ... --cluster-yes`;
#   - Pinnacle: 3 nodes (release binary, --shards 3, default fsync policy) on
#     127.0.0.1:PINNACLE_PORT+1..3 (bus +10000), waited on until every node answers
#     cluster_state:ok and CLUSTER NODES shows 3 masters owning slots (leaders spread);
#   - for -P 1 and -P 16, Pinnacle then Redis: redis-benchmark --cluster -t set,get -n N -c 50
#     --csv; prints rps and p50/p99 per side, the Pinnacle / Redis rps ratio, and any error line
#     redis-benchmark printed (e.g. CLUSTERDOWN) next to the row;
#   - stops every process it started by pid (also on Ctrl-C or failure).
# Environment: BENCH_N (default 100000), BENCH_CLIENTS (50), BENCH_ROUNDS (1: repeat the whole
# P1/P16 sequence), REDIS_PORT (base, default 30000), PINNACLE_PORT (base, default 31000),
# PINNACLE_BIN (skip the release build), BENCH_KEEP=1 (keep the data/log folder).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${BENCH_N:-100000}
CLIENTS=${BENCH_CLIENTS:-50}
ROUNDS=${BENCH_ROUNDS:-1}
REDIS_BASE=${REDIS_PORT:-30000}
PINN_BASE=${PINNACLE_PORT:-31000}
HOST=127.0.0.1

die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
for tool in redis-server redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install -y redis-server redis-tools)"
done
if [ -z "${PINNACLE_BIN:-}" ]; then
    cargo build --release -p pinnacle-server --bin pinnacle
    PINNACLE_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/pinnacle
fi
[ -x "$PINNACLE_BIN" ] || die "no pinnacle binary at $PINNACLE_BIN"

work=$(mktemp -d /tmp/pinnacle-bench-cluster.XXXXXX)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "data and logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cli() { redis-cli -h "$HOST" -p "$1" "${@:2}"; }

port_busy() { cli "$1" PING >/dev/null 2>&1; }

wait_ping() { # port pid what
    local tries=0
    until [ "$(cli "$1" PING 2>/dev/null)" = PONG ]; do
        kill -0 "$2" 2>/dev/null || die "$3 exited; see $work"
        tries=$((tries + 1))
        [ $tries -lt 300 ] || die "$3 does not answer PING; see $work"
        sleep 0.1
    done
}

masters_ok() { # port -> 0 when cluster_state:ok and 3 masters own slots
    cli "$1" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    [ "$(cli "$1" CLUSTER NODES 2>/dev/null | awk '$3 ~ /master/ && NF > 8' | wc -l)" -eq 3 ]
}

wait_cluster() { # what port...
    local what=$1 tries=0 p; shift
    for p in "$@"; do
        until masters_ok "$p"; do
            tries=$((tries + 1))
            [ $tries -lt 300 ] || { cli "$p" CLUSTER NODES >&2 || true; die "$what: no 3 masters after 30 s"; }
            sleep 0.1
        done
    done
}

redis_ports=() pinn_ports=()
for i in 1 2 3; do
    redis_ports+=($((REDIS_BASE + i)))
    pinn_ports+=($((PINN_BASE + i)))
done
for p in "${redis_ports[@]}" "${pinn_ports[@]}"; do
    port_busy "$p" && die "port $p is in use (set REDIS_PORT / PINNACLE_PORT)"
    port_busy $((p + 10000)) && die "port $((p + 10000)) is in use (set REDIS_PORT / PINNACLE_PORT)"
done

echo "==> Redis Cluster on ${redis_ports[*]} ($(redis-server --version | awk '{print $3}'))"
for p in "${redis_ports[@]}"; do
    mkdir -p "$work/redis/$p"
    redis-server --port "$p" --bind "$HOST" --dir "$work/redis/$p" \
        --cluster-enabled yes --cluster-config-file nodes.conf \
        --appendonly yes --appendfsync everysec --save '' \
        >"$work/redis/$p.log" 2>&1 </dev/null &
    pids+=($!)
    wait_ping "$p" $! "redis-server $p"
done
create=()
for p in "${redis_ports[@]}"; do create+=("$HOST:$p"); done
redis-cli --cluster create "${create[@]}" --cluster-yes >"$work/redis/create.log" 2>&1 \
    || die "redis-cli --cluster create failed; see $work/redis/create.log"
wait_cluster "Redis Cluster" "${redis_ports[@]}"

echo "==> Pinnacle cluster on ${pinn_ports[*]} ($PINNACLE_BIN, --shards 3)"
peers=""
for i in 1 2 3; do peers+="${peers:+,}$i@$HOST:$((PINN_BASE + i))@$((PINN_BASE + i + 10000))"; done
for i in 1 2 3; do
    p=$((PINN_BASE + i))
    mkdir -p "$work/pinnacle/node$i"
    "$PINNACLE_BIN" --node-id "$i" --bind "$HOST" --port "$p" --cluster-port $((p + 10000)) \
        --cluster-peers "$peers" --shards 3 --dir "$work/pinnacle/node$i" \
        >"$work/pinnacle/node$i.log" 2>&1 </dev/null &
    pids+=($!)
done
for i in 1 2 3; do wait_ping $((PINN_BASE + i)) "${pids[$((i + 2))]}" "pinnacle node $i"; done
wait_cluster "Pinnacle" "${pinn_ports[@]}"

declare -A rps p50 p99 errs
bench() { # name port P round
    local out
    out=$(redis-benchmark --cluster -h "$HOST" -p "$2" -t set,get -n "$N" -c "$CLIENTS" -P "$3" --csv 2>&1) || true
    out=$(printf '%s\n' "$out" | tr '\r' '\n')
    local t line
    for t in SET GET; do
        line=$(printf '%s\n' "$out" | grep "^\"$t\"," | tail -1 || true)
        local k="$1/$t/$3/$4"
        rps[$k]=$(printf '%s' "$line" | awk -F'","' '{print $2}')
        p50[$k]=$(printf '%s' "$line" | awk -F'","' '{print $5}')
        p99[$k]=$(printf '%s' "$line" | awk -F'","' '{print $7}')
        rps[$k]=${rps[$k]:-0}
    done
    errs["$1/$3/$4"]=$(printf '%s\n' "$out" | grep -c -E 'Error|WARNING' || true)
    if [ "${errs["$1/$3/$4"]}" != 0 ]; then
        printf '%s\n' "$out" | grep -E 'Error|WARNING' | sort | uniq -c | sed "s/^/   [$1 -P $3] /" >&2
    fi
}

echo "==> redis-benchmark --cluster -t set,get -n $N -c $CLIENTS (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
for r in $(seq 1 "$ROUNDS"); do
    for P in 1 16; do
        bench pinnacle "${pinn_ports[0]}" "$P" "$r"
        bench redis "${redis_ports[0]}" "$P" "$r"
    done
done

printf '\n%-5s %-4s %-6s %-34s %-34s %s\n' test -P round "pinnacle rps (p50/p99 ms)" "redis rps (p50/p99 ms)" "ratio"
for r in $(seq 1 "$ROUNDS"); do
    for P in 1 16; do
        for t in SET GET; do
            pk="pinnacle/$t/$P/$r" rk="redis/$t/$P/$r"
            ratio=$(awk -v a="${rps[$pk]}" -v b="${rps[$rk]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
            note=""
            [ "${errs["pinnacle/$P/$r"]}" = 0 ] || note+=" (pinnacle: ${errs["pinnacle/$P/$r"]} error lines)"
            [ "${errs["redis/$P/$r"]}" = 0 ] || note+=" (redis: ${errs["redis/$P/$r"]} error lines)"
            printf '%-5s %-4s %-6s %-34s %-34s %s%s\n' "$t" "$P" "$r" \
                "${rps[$pk]} (${p50[$pk]}/${p99[$pk]})" "${rps[$rk]} (${p50[$rk]}/${p99[$rk]})" "$ratio" "$note"
        done
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
