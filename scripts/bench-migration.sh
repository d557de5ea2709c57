#!/usr/bin/env bash
# Live slot migration throughput and client latency (issue 5, BENCHMARKS.md "Cluster: slot
# migration"):
#   - 3 Pinnacle nodes (release binary, --shards 3) on 127.0.0.1:PINNACLE_PORT+1..3 (bus +10000),
#     waited on until cluster_state:ok and 3 masters own slots;
#   - loads BENCH_KEYS keys (BENCH_VALUE-byte values) spread evenly over BENCH_SLOTS slots at the
#     start of the first slot range, through its owner, with a pipelined python loader that re-sends what a leader change refused;
#   - quiet: redis-benchmark --cluster -t get,set -n BENCH_N -c BENCH_CLIENTS -r 100000 --csv,
#     BENCH_QUIET_RUNS times (p99 of each run);
#   - migration: the same benchmark in a loop in the background while
#     `PINN.MIGRATE <range> <shard led by another node> SYNC` runs; prints keys/s and MB/s from
#     PINN.MIGRATIONS (keys, bytes, duration_ms) and the wall time of the command, and the p99 of
#     every benchmark run that overlapped the migration;
#   - stops every process it started by pid (also on Ctrl-C or failure).
# BENCH_SERVER=redis runs the same steps on a real Redis Cluster as an anchor: 3 redis-server
# masters (--cluster-enabled yes, AOF everysec, no RDB) created by `redis-cli --cluster create`,
# the same keys in the same slots, the same benchmark, and the same range moved to another master
# by `redis-cli --cluster reshard ... --cluster-slots BENCH_SLOTS --cluster-pipeline BENCH_PIPELINE`
# (it takes the source's lowest slots, checked against the loaded range); its throughput is the
# range's keys and key+value bytes (counted before the move) over the reshard's wall time, the
# definition also printed for Pinnacle beside PINN.MIGRATIONS' record bytes (key + DUMP payload).
# Environment: BENCH_SERVER (pinnacle, default, or redis), BENCH_PIPELINE (keys per MIGRATE in
# redis mode, default 1000), BENCH_KEYS (default 1000000), BENCH_VALUE (100), BENCH_SLOTS (1000), BENCH_N
# (20000), BENCH_CLIENTS (20), BENCH_QUIET_RUNS (3), BENCH_PLANNER (pinn-planner, default off),
# PINNACLE_PORT (base, default 33700),
# PINNACLE_BIN (skip the release build), BENCH_KEEP=1 (keep the data/log folder), BENCH_MODE
# (cluster: the redis-benchmark --cluster load above, default; target / other: see bench_once).
# The servers inherit the environment, so PINNACLE_MIGRATE_INGEST_{KEYS,BYTES,IN_FLIGHT,PAUSE_US}
# set the copy's pacing (server/src/replication/migrate.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${BENCH_KEYS:-1000000}
VALUE=${BENCH_VALUE:-100}
SLOTS=${BENCH_SLOTS:-1000}
N=${BENCH_N:-20000}
CLIENTS=${BENCH_CLIENTS:-20}
QUIET_RUNS=${BENCH_QUIET_RUNS:-3}
MODE=${BENCH_MODE:-cluster}
SERVER=${BENCH_SERVER:-pinnacle}
PIPELINE=${BENCH_PIPELINE:-1000}
BASE=${PINNACLE_PORT:-33700}
HOST=127.0.0.1

die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
for tool in redis-cli redis-benchmark python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
done
case "$SERVER" in
pinnacle)
    if [ -z "${PINNACLE_BIN:-}" ]; then
        cargo build --release -p pinnacle-server --bin pinnacle
        PINNACLE_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/pinnacle
    fi
    [ -x "$PINNACLE_BIN" ] || die "no pinnacle binary at $PINNACLE_BIN"
    ;;
redis) command -v redis-server >/dev/null 2>&1 || die "redis-server is missing" ;;
*) die "BENCH_SERVER must be pinnacle or redis" ;;
esac

work=$(mktemp -d /tmp/pinnacle-bench-migration.XXXXXX)
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

ports=()
for i in 1 2 3; do ports+=($((BASE + i))); done
for p in "${ports[@]}"; do
    cli "$p" PING >/dev/null 2>&1 && die "port $p is in use (set PINNACLE_PORT)"
    cli $((p + 10000)) PING >/dev/null 2>&1 && die "port $((p + 10000)) is in use (set PINNACLE_PORT)"
done

start_pinnacle() {
    echo "==> Pinnacle cluster on ${ports[*]} ($PINNACLE_BIN, --shards 3)"
    local peers="" i p
    for i in 1 2 3; do peers+="${peers:+,}$i@$HOST:$((BASE + i))@$((BASE + i + 10000))"; done
    # The PINN planner would move the loaded (hot) slots by itself; BENCH_PLANNER=pinn keeps it.
    printf 'pinn-planner %s\n' "${BENCH_PLANNER:-off}" >"$work/pinnacle.conf"
    for i in 1 2 3; do
        p=$((BASE + i))
        mkdir -p "$work/node$i"
        "$PINNACLE_BIN" --node-id "$i" --bind "$HOST" --port "$p" --cluster-port $((p + 10000)) \
            --cluster-peers "$peers" --shards 3 --dir "$work/node$i" --config "$work/pinnacle.conf" \
            >"$work/node$i.log" 2>&1 </dev/null &
        pids+=($!)
    done
    for i in 1 2 3; do wait_ping $((BASE + i)) "${pids[$((i - 1))]}" "pinnacle node $i"; done
}

# ---- Redis Cluster (BENCH_SERVER=redis): the anchor, the same steps on redis-server 7 ----
start_redis() {
    echo "==> Redis Cluster on ${ports[*]} ($(redis-server --version | cut -d' ' -f3), 3 masters, AOF everysec)"
    local i p
    for i in 1 2 3; do
        p=$((BASE + i))
        mkdir -p "$work/node$i"
        redis-server --bind "$HOST" --port "$p" --cluster-enabled yes \
            --cluster-config-file "$work/node$i/nodes.conf" --dir "$work/node$i" \
            --appendonly yes --appendfsync everysec --save '' --daemonize no \
            --logfile "$work/node$i.log" </dev/null >/dev/null 2>&1 &
        pids+=($!)
    done
    for i in 1 2 3; do wait_ping $((BASE + i)) "${pids[$((i - 1))]}" "redis-server $i"; done
    redis-cli --cluster create "${ports[@]/#/$HOST:}" --cluster-replicas 0 --cluster-yes \
        >"$work/create.log" 2>&1 || { tail -5 "$work/create.log" >&2; die "redis-cli --cluster create failed"; }
}

# Moves slots first_start..last from src_port's node to tgt_port's with redis-cli's reshard (sets
# m1), which takes the source's lowest slots first; its log must name exactly the loaded range.
reshard_redis() {
    local src_id tgt_id moved
    src_id=$(cli "$src_port" CLUSTER MYID) tgt_id=$(cli "$tgt_port" CLUSTER MYID)
    redis-cli --cluster reshard "$HOST:$src_port" --cluster-from "$src_id" --cluster-to "$tgt_id" \
        --cluster-slots "$SLOTS" --cluster-yes --cluster-pipeline "$PIPELINE" \
        >"$work/reshard.log" 2>&1 || { tail -5 "$work/reshard.log" >&2; die "redis-cli --cluster reshard failed"; }
    m1=$(date +%s.%N)
    moved=$(sed -n "s/^Moving slot \([0-9]*\) from $HOST:$src_port to .*/\1/p" "$work/reshard.log" | sort -n | uniq |
        awk 'NR == 1 {lo = $1} {hi = $1; n++} END {print lo "-" hi, n}')
    [ "$moved" = "$first_start-$last $SLOTS" ] || die "reshard moved slots $moved, not $first_start-$last ($SLOTS)"
}
report_redis() {
    local p
    echo "    reshard of slots $first_start-$last ($SLOTS): wall time ${wall} s (redis-cli's start-up and cluster check included)"
    echo "    keys in slots $first_start-$last now, at the target: $(range_keys "$tgt_port" | cut -d' ' -f1) (before: $before_keys); at the source: $(range_keys "$src_port" | cut -d' ' -f1)"
    for p in "${ports[@]}"; do echo "    port $p DBSIZE $(cli "$p" DBSIZE)"; done
}
# ---- end of the Redis-specific part ----

case "$SERVER" in
pinnacle) start_pinnacle ;;
redis) start_redis ;;
esac
tries=0
for p in "${ports[@]}"; do
    until masters_ok "$p"; do
        tries=$((tries + 1))
        [ $tries -lt 300 ] || die "no 3 masters after 30 s"
        sleep 0.1
    done
done

# The first range of CLUSTER SLOTS and its master, once two reads 1 s apart agree (leaders may
# still be spreading); the target is a shard another node leads.
first_range() { cli "${ports[0]}" CLUSTER SLOTS | awk 'NR==1{s=$1} NR==2{e=$1} NR==4{p=$1; print s, e, p; exit}'; }
prev="" cur=$(first_range) tries=0
until [ "$cur" = "$prev" ]; do
    tries=$((tries + 1))
    [ $tries -lt 30 ] || die "CLUSTER SLOTS keeps changing"
    sleep 1
    prev=$cur cur=$(first_range)
done
read -r first_start first_end src_port <<<"$cur"
last=$((first_start + SLOTS - 1))
[ "$last" -le "$first_end" ] || die "range $first_start-$first_end is smaller than $SLOTS slots"
echo "==> loading $KEYS keys x ${VALUE} B into slots $first_start-$last (through port $src_port)"
t0=$(date +%s.%N)
python3 - "$KEYS" "$VALUE" "$first_start" "$last" "$HOST" "$src_port" >"$work/load.log" 2>&1 <<'EOF' \
    || { tail -5 "$work/load.log" >&2; die "load failed"; }
# Pipelined SETs in batches of 5000; replies other than +OK (MOVED after a leader change,
# CLUSTERDOWN during an election, TRYAGAIN) are re-sent to the node MOVED names.
import socket, sys, time
keys, size, lo, hi = (int(a) for a in sys.argv[1:5])
host, port = sys.argv[5], int(sys.argv[6])
def crc16(b):
    crc = 0
    for x in b:
        crc ^= x << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc
tags, n = {}, 0
while len(tags) < hi - lo + 1:
    t = "t%d" % n
    s = crc16(t.encode()) % 16384
    if lo <= s <= hi and s not in tags:
        tags[s] = t
    n += 1
order = [tags[s] for s in sorted(tags)]
value = b"v" * size
conns = {}
def conn(p):
    if p not in conns:
        c = socket.create_connection((host, p))
        conns[p] = (c, c.makefile("rb"))
    return conns[p]
retries = 0
pending = [("k%d{%s}" % (i, order[i % len(order)])).encode() for i in range(keys)]
i = 0
while i < len(pending):
    batch = pending[i:i + 5000]
    i += len(batch)
    while batch:
        c, f = conn(port)
        c.sendall(b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(value), value) for k in batch))
        again = []
        for k in batch:
            line = f.readline()
            if line != b"+OK\r\n":
                again.append(k)
                if line.startswith(b"-MOVED"):
                    port = int(line.split()[2].rsplit(b":", 1)[1])
        if again:
            retries += len(again)
            time.sleep(0.2)
        batch = again
print("loaded %d keys (%d re-sent after MOVED/CLUSTERDOWN)" % (keys, retries))
EOF
t1=$(date +%s.%N)
echo "    $(cat "$work/load.log") in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s; DBSIZE on the owner: $(cli "$(first_range | awk '{print $3}')" DBSIZE)"

# Leaders may have moved during the load: find the range's owner and its shard again.
prev="" cur=$(first_range) tries=0
until [ "$cur" = "$prev" ]; do
    tries=$((tries + 1))
    [ $tries -lt 30 ] || die "CLUSTER SLOTS keeps changing"
    sleep 1
    prev=$cur cur=$(first_range)
done
read -r _ _ src_port <<<"$cur"
src_shard="" tgt_shard="" tgt_port=""
if [ "$SERVER" = redis ]; then
    # No shards: the source is the range's master, the target the next master.
    for p in "${ports[@]}"; do
        if [ "$p" != "$src_port" ] && [ -z "$tgt_port" ]; then tgt_port=$p; fi
    done
else
    for p in "${ports[@]}"; do
        led=$(cli "$p" INFO replication | tr -d '\r' | sed -n 's/^shard\([0-9]*\):.*state=Leader.*/\1/p' | head -1)
        if [ "$p" = "$src_port" ]; then src_shard=$led; elif [ -z "$tgt_shard" ]; then tgt_shard=$led tgt_port=$p; fi
    done
    if [ -z "$src_shard" ] || [ -z "$tgt_shard" ]; then die "could not find the source/target shard leaders"; fi
fi
p99_of() { # csv output -> "set_p99 get_p99 errors"
    local out
    out=$(printf '%s\n' "$1" | tr '\r' '\n')
    local s g e
    s=$(printf '%s\n' "$out" | grep '^"SET",' | tail -1 | awk -F'","' '{print $7}')
    g=$(printf '%s\n' "$out" | grep '^"GET",' | tail -1 | awk -F'","' '{print $7}')
    e=$(printf '%s\n' "$out" | grep -c -E 'Error|WARNING' || true)
    echo "${s:-?} ${g:-?} $e"
}
# BENCH_MODE=target|other: the load is SET then GET of keys with one hash tag, sent straight
# (no --cluster, so no redirects and no CLUSTER SLOTS refetches) to the target shard's leader
# (its Raft log carries the copy) or to the leader of the third shard (no copy in its log: what
# the migration costs a bystander through the shared CPU).
probe_port="" probe_tag=""
case "$MODE" in
cluster) ;;
target) probe_port=$tgt_port ;;
other)
    for p in "${ports[@]}"; do
        if [ "$SERVER" = redis ]; then
            if [ "$p" != "$src_port" ] && [ "$p" != "$tgt_port" ]; then probe_port=$p; fi
            continue
        fi
        for led in $(cli "$p" INFO replication | tr -d '\r' | sed -n 's/^shard\([0-9]*\):.*state=Leader.*/\1/p'); do
            if [ "$led" != "$src_shard" ] && [ "$led" != "$tgt_shard" ]; then probe_port=$p; fi
        done
    done
    [ -n "$probe_port" ] || die "no leader of the third shard"
    ;;
*) die "BENCH_MODE must be cluster, target or other" ;;
esac
if [ -n "$probe_port" ]; then
    for n in $(seq 0 500); do
        if [ "$(cli "$probe_port" SET "k:{p$n}:probe" x 2>&1)" = OK ]; then probe_tag="p$n"; break; fi
    done
    [ -n "$probe_tag" ] || die "no hash tag served by port $probe_port"
    echo "==> $MODE mode: SET/GET k:{$probe_tag}:* straight to port $probe_port (slot $(cli "$probe_port" CLUSTER KEYSLOT "{$probe_tag}"))"
fi
bench_once() {
    if [ -z "$probe_port" ]; then
        redis-benchmark --cluster -h "$HOST" -p "${ports[0]}" -t set,get -n "$N" -c "$CLIENTS" -r 100000 --csv 2>&1 || true
        return
    fi
    local c
    for c in SET GET; do
        if [ $c = SET ]; then set -- SET "k:{$probe_tag}:__rand_int__" xxx; else set -- GET "k:{$probe_tag}:__rand_int__"; fi
        redis-benchmark -h "$HOST" -p "$probe_port" -n "$N" -c "$CLIENTS" -r 100000 --csv "$@" 2>&1 |
            sed "s/^\"$c [^\"]*\"/\"$c\"/" || true
    done
}

echo "==> quiet ($MODE load): redis-benchmark -t set,get -n $N -c $CLIENTS -r 100000 (x$QUIET_RUNS)"
quiet=()
for r in $(seq 1 "$QUIET_RUNS"); do
    q=$(p99_of "$(bench_once)")
    quiet+=("$q")
    echo "    run $r: p99 SET/GET ms, error lines: $q"
done

# Keys in the range now (the loaded ones plus what the quiet runs wrote there: redis-benchmark
# --cluster 7.0 puts all of a node's keys into one slot, the node's first, here slot
# $first_start), and the fullest slot.
range_keys() { # port -> "total fullest-slot count"
    seq "$first_start" "$last" | sed 's/^/CLUSTER COUNTKEYSINSLOT /' | cli "$1" |
        awk -v s="$first_start" '{t += $1; if ($1 > m) {m = $1; ms = s + NR - 1}} END {print t, ms, m}'
}
read -r before_keys full_slot full_keys <<<"$(range_keys "$src_port")"
echo "==> keys in slots $first_start-$last before migrating: $before_keys (fullest: slot $full_slot, $full_keys keys)"
# The same byte count for both servers: the sum of key and value lengths in the range (Pinnacle's
# record counts key + DUMP payload, which Redis does not report for a reshard).
kv_bytes() { # port -> "keys bytes" of slots first_start..last
    python3 - "$HOST" "$1" "$first_start" "$last" <<'EOF'
import socket, sys
host, port, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.create_connection((host, port))
f = s.makefile("rb")
def cmd(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
def reply():
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b":":
        return int(rest)
    if kind == b"$":
        return f.read(int(rest) + 2)[:-2]
    if kind == b"*":
        return [reply() for _ in range(int(rest))]
    sys.exit("error reply: %r" % line)
keys = total = 0
for slot in range(lo, hi + 1):
    s.sendall(cmd(b"CLUSTER", b"COUNTKEYSINSLOT", b"%d" % slot))
    n = reply()
    if n == 0:
        continue
    s.sendall(cmd(b"CLUSTER", b"GETKEYSINSLOT", b"%d" % slot, b"%d" % n))
    names = reply()
    for i in range(0, len(names), 5000):
        part = names[i:i + 5000]
        s.sendall(b"".join(cmd(b"STRLEN", k) for k in part))
        for k in part:
            total += len(k) + reply()
        keys += len(part)
print(keys, total)
EOF
}
read -r kv_keys kv_total <<<"$(kv_bytes "$src_port")"
echo "    key+value bytes in the range: $kv_total ($kv_keys keys)"
if [ "$SERVER" = redis ]; then
    echo "==> migrating $first_start-$last: port $src_port -> port $tgt_port (redis-cli --cluster reshard, pipeline $PIPELINE), with the benchmark looping"
else
    echo "==> migrating $first_start-$last: shard $src_shard -> shard $tgt_shard (port $tgt_port), with the benchmark looping"
fi
: >"$work/during.txt"
(
    while [ ! -f "$work/done" ]; do
        t=$(date +%s.%N)
        out=$(bench_once)
        # Start and end of each run: only those overlapping the move are reported as "during".
        printf '%s %s %s\n' "$t" "$(date +%s.%N)" "$(p99_of "$out")" >>"$work/during.txt"
        printf '%s\n' "$out" | grep -E 'Error|WARNING' | sort | uniq -c >>"$work/during-errors.txt" || true
    done
) &
bench_pid=$!
pids+=("$bench_pid")
sleep 1
# PINN.MIGRATE ... SYNC; sets id and m1 (the end of the move).
migrate_pinnacle() {
    local reply
    reply=$(cli "$src_port" PINN.MIGRATE "$first_start-$last" "$tgt_shard" SYNC 2>&1 | tr '\n' ' ')
    m1=$(date +%s.%N)
    id=$(printf '%s' "$reply" | awk '{for (i = 1; i < NF; i++) if ($i == "id") {print $(i + 1); exit}}')
    if [ -z "$id" ]; then
        # SYNC may answer before the local metadata copy shows the migration (reported as a server
        # bug): take the id from the error and poll.
        id=$(printf '%s' "$reply" | sed -n 's/.*migration \([0-9]*\).*/\1/p')
        [ -n "$id" ] || die "PINN.MIGRATE: $reply"
        echo "    SYNC answered: $reply-- polling PINN.MIGRATIONS"
        until cli "$src_port" PINN.MIGRATIONS | tr '\n' ' ' | grep -q "id $id state done"; do sleep 0.05; done
        m1=$(date +%s.%N)
    fi
}
# The migration's PINN.MIGRATIONS record (keys, bytes = key + DUMP payload, duration_ms).
report_pinnacle() {
    local rec keys bytes dur state p led
    rec=$(cli "$src_port" PINN.MIGRATIONS | tr '\n' ' ' | grep -o "id $id state [a-z]* .*" | head -1)
    field() { printf '%s' "$rec" | awk -v f="$1" '{for (i = 1; i < NF; i++) if ($i == f) {print $(i + 1); exit}}'; }
    keys=$(field keys) bytes=$(field bytes) dur=$(field duration_ms) state=$(field state)
    echo "    migration $id: state $state, keys $keys, bytes $bytes, duration_ms $dur (PINN.MIGRATE wall time ${wall} s)"
    echo "    keys in slots $first_start-$last now, at the target: $(range_keys "$tgt_port" | cut -d' ' -f1) (before: $before_keys)"
    awk -v k="$keys" -v b="$bytes" -v d="$dur" 'BEGIN{ if (d > 0) printf "    throughput: %.0f keys/s, %.1f MB/s (bytes / duration_ms)\n", k / (d / 1000), b / 1e6 / (d / 1000) }'
    # Requests the source held until their slot's copy ended, and keys it copied ahead of the copy
    # for a waiting write (0 on binaries without those counters).
    info_num() { cli "$src_port" INFO replication | tr -d '\r' | sed -n "s/^$1://p"; }
    echo "    source: requests that waited for a copy $(info_num migration_copy_waits), keys pulled ahead $(info_num migration_key_pulls)"
    for p in "${ports[@]}"; do
        led=$(cli "$p" INFO replication | tr -d '\r' | sed -n 's/^shard\([0-9]*\):.*state=Leader.*/\1/p' | tr '\n' ' ')
        echo "    port $p leads shard(s) ${led:-none}; DBSIZE (keys of the first shard it leads) $(cli "$p" DBSIZE)"
    done
}
m0=$(date +%s.%N) id=""
case "$SERVER" in
pinnacle) migrate_pinnacle ;;
redis) reshard_redis ;;
esac
touch "$work/done"
wait "$bench_pid" || true
wall=$(awk -v a="$m0" -v b="$m1" 'BEGIN{printf "%.2f", b-a}')
case "$SERVER" in
pinnacle) report_pinnacle ;;
redis) report_redis ;;
esac
# Both servers: the range's keys and key+value bytes counted before the move over its wall time.
awk -v k="$kv_keys" -v b="$kv_total" -v w="$wall" 'BEGIN{ if (w > 0) printf "    throughput (same definition for both servers): %.0f keys/s, %.1f MB/s (key+value bytes before the move / wall time)\n", k / w, b / 1e6 / w }'
echo "==> p99 (ms) SET GET error-lines: quiet runs: ${quiet[*]// /\/}"
# Runs of the loop that overlapped the move (set/get/error-lines), and how many ran before it began.
during=$(awk -v a="$m0" -v b="$m1" '$1 < b && $2 > a {printf "%s/%s/%s ", $3, $4, $5}' "$work/during.txt")
outside=$(awk -v a="$m0" -v b="$m1" '!($1 < b && $2 > a)' "$work/during.txt" | wc -l)
echo "                                  runs during the migration: $during($outside run(s) of the loop outside it)"
if [ -s "$work/during-errors.txt" ]; then echo "    error lines of all the loop's runs (per run: third figure above):"; sed 's/^/      /' "$work/during-errors.txt"; fi
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
