#!/usr/bin/env bash
# Run a local N-node pinnacle Raft cluster in the background (like Redis's utils/create-cluster).
#
#   scripts/cluster.sh start [N]   start N nodes (default 3) on ports 7001.. (bus 17001..)
#   scripts/cluster.sh status      role / leader / term / commit / applied of every node
#   scripts/cluster.sh logs N [-f] last lines of node N's log (-f: follow)
#   scripts/cluster.sh stop        stop every node (by pid: TERM, then KILL after 5 s)
#   scripts/cluster.sh clean       stop, then delete the data folder
#
# Environment: CLUSTER_DIR (default ./cluster-data: node<i>/ data, node<i>.log, node<i>.pid),
# CLUSTER_BIND (default 127.0.0.1), CLUSTER_PORT (base, default 7000: node i gets base+i),
# CLUSTER_ARGS (extra flags for every node), PINNACLE_BIN (default target/release/pinnacle,
# built if missing), LOG_LINES (default 100).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${CLUSTER_DIR:-./cluster-data}"
BIND="${CLUSTER_BIND:-127.0.0.1}"
BASE="${CLUSTER_PORT:-7000}"
BIN="${PINNACLE_BIN:-$ROOT/target/release/pinnacle}"

die() { echo "cluster.sh: $*" >&2; exit 1; }

node_count() {
    [[ -f "$DIR/nodes" ]] || die "no cluster in $DIR (run: $0 start)"
    cat "$DIR/nodes"
}

pid_of() { # node -> pid if that process is alive
    local f="$DIR/node$1.pid"
    [[ -f "$f" ]] || return 1
    local pid
    pid="$(cat "$f")"
    kill -0 "$pid" 2>/dev/null || return 1
    # A killed node whose parent (init here) has not reaped it yet is a zombie: down.
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]] || return 1
    echo "$pid"
}

cli() { # port args...
    local port="$1"; shift
    redis-cli -h "$BIND" -p "$port" "$@"
}

info_field() { # text field -> value
    printf '%s\n' "$1" | tr -d '\r' | sed -n "s/^$2://p"
}

start() {
    local n="${1:-3}"
    [[ "$n" =~ ^[0-9]+$ && "$n" -ge 1 ]] || die "bad node count: $n"
    command -v redis-cli >/dev/null || die "redis-cli not found (apt-get install redis-tools)"
    if [[ -f "$DIR/nodes" ]]; then
        for i in $(seq 1 "$(cat "$DIR/nodes")"); do
            if pid_of "$i" >/dev/null; then die "node $i is already running (stop first)"; fi
        done
    fi
    if [[ ! -x "$BIN" ]]; then
        echo "building $BIN ..."
        (cd "$ROOT" && cargo build --release -p pinnacle-server --bin pinnacle)
    fi
    mkdir -p "$DIR"
    DIR="$(cd "$DIR" && pwd)"
    echo "$n" > "$DIR/nodes"
    local peers="" i
    for i in $(seq 1 "$n"); do
        peers+="${peers:+,}$i@$BIND:$((BASE + i))@$((BASE + i + 10000))"
    done
    for i in $(seq 1 "$n"); do
        mkdir -p "$DIR/node$i"
        # shellcheck disable=SC2086 # CLUSTER_ARGS is a list of flags
        nohup "$BIN" --node-id "$i" --bind "$BIND" --port "$((BASE + i))" \
            --cluster-port "$((BASE + i + 10000))" --cluster-peers "$peers" \
            --dir "$DIR/node$i" ${CLUSTER_ARGS:-} >>"$DIR/node$i.log" 2>&1 </dev/null &
        echo $! > "$DIR/node$i.pid"
        echo "node $i: pid $! port $((BASE + i)) bus $((BASE + i + 10000)) log $DIR/node$i.log"
    done
    for i in $(seq 1 "$n"); do
        local tries=0
        until [[ "$(cli "$((BASE + i))" PING 2>/dev/null)" == "PONG" ]]; do
            pid_of "$i" >/dev/null || die "node $i exited; see $DIR/node$i.log"
            tries=$((tries + 1))
            [[ $tries -lt 300 ]] || die "node $i does not answer PING; see $DIR/node$i.log"
            sleep 0.1
        done
    done
    local tries=0
    # Every shard has a leader (the shards' leaders then spread over the nodes within ~2 s).
    until cli "$((BASE + 1))" CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok'; do
        tries=$((tries + 1))
        [[ $tries -lt 100 ]] || { status; die "not every shard has a leader after 10 s"; }
        sleep 0.1
    done
    status
}

status() {
    local n i
    n="$(node_count)"
    printf '%-5s %-8s %-16s %-7s %-7s %-6s %-10s %-10s %s\n' \
        node pid addr role leader term commit applied leads-shards
    for i in $(seq 1 "$n"); do
        local port=$((BASE + i)) pid info
        pid="$(pid_of "$i" || echo -)"
        if [[ "$pid" == "-" ]]; then
            printf '%-5s %-8s %-16s %s\n' "$i" - "$BIND:$port" down
            continue
        fi
        if ! info="$(timeout 2 redis-cli -h "$BIND" -p "$port" INFO replication 2>/dev/null)" \
            || [[ -z "$info" ]]; then
            printf '%-5s %-8s %-16s %s\n' "$i" "$pid" "$BIND:$port" unreachable
            continue
        fi
        # role/leader/term/commit/applied are shard 0's; the last column lists every shard
        # this node leads (from the shardN: lines of INFO replication).
        local leads
        leads="$(printf '%s\n' "$info" | tr -d '\r' | sed -n 's/^shard\([0-9]*\):.*state=Leader.*/\1/p' | paste -sd, -)"
        printf '%-5s %-8s %-16s %-7s %-7s %-6s %-10s %-10s %s\n' "$i" "$pid" "$BIND:$port" \
            "$(info_field "$info" role)" "$(info_field "$info" raft_leader_id)" \
            "$(info_field "$info" raft_term)" "$(info_field "$info" raft_commit_index)" \
            "$(info_field "$info" raft_applied_index)" "${leads:--}"
    done
}

logs() {
    local i="${1:-}"
    [[ "$i" =~ ^[0-9]+$ ]] || die "usage: $0 logs N [-f]"
    local f="$DIR/node$i.log"
    [[ -f "$f" ]] || die "no log $f"
    if [[ "${2:-}" == "-f" ]]; then
        tail -n "${LOG_LINES:-100}" -f "$f"
    else
        tail -n "${LOG_LINES:-100}" "$f"
    fi
}

stop() {
    local n i pid
    n="$(node_count)"
    local -a running=()
    for i in $(seq 1 "$n"); do
        if pid="$(pid_of "$i")"; then
            kill -TERM "$pid" 2>/dev/null || true
            # A SIGSTOPped node must run again to act on TERM.
            kill -CONT "$pid" 2>/dev/null || true
            running+=("$i:$pid")
        fi
    done
    for entry in "${running[@]}"; do
        i="${entry%%:*}" pid="${entry#*:}"
        local t=0
        while pid_of "$i" >/dev/null && [[ $t -lt 50 ]]; do sleep 0.1; t=$((t + 1)); done
        if pid_of "$i" >/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
        echo "node $i (pid $pid) stopped"
    done
    for i in $(seq 1 "$n"); do rm -f "$DIR/node$i.pid"; done
}

case "${1:-}" in
    start) start "${2:-3}" ;;
    status) status ;;
    logs) logs "${2:-}" "${3:-}" ;;
    stop) stop ;;
    clean)
        if [[ -f "$DIR/nodes" ]]; then stop; fi
        rm -rf "$DIR"
        ;;
    *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
