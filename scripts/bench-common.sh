# Shared set-up of the single-node benchmark scripts (bench.sh, bench-suite.sh); sourced, not
# run. Checks the tools, builds the release binary unless PINNACLE_BIN is set, makes a work
# folder ($work, removed on exit) and kills every pid in $pids on exit. Defines free_port and
# wait_ready. $1: the work folder's name prefix.

for tool in redis-server redis-cli redis-benchmark python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "ERROR: $tool is missing (scripts/test.sh installs it)" >&2; exit 1; }
done

if [ -z "${PINNACLE_BIN:-}" ]; then
    cargo build --release -p pinnacle-server --bin pinnacle
    PINNACLE_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/pinnacle
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_ready() { # port
    for _ in $(seq 1 600); do
        [ "$(redis-cli -p "$1" PING 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    echo "ERROR: server on port $1 did not answer PING" >&2
    exit 1
}

start_pair() { # pinnacle flags...: starts pinnacle and redis-server (AOF everysec) on free ports
    p_port=$(free_port)
    r_port=$(free_port)
    while [ "$r_port" = "$p_port" ] || [ "$r_port" = 6379 ] || [ "$p_port" = 6379 ]; do
        p_port=$(free_port)
        r_port=$(free_port)
    done
    mkdir -p "$work/pinnacle" "$work/redis"
    "$PINNACLE_BIN" --port "$p_port" --bind 127.0.0.1 --dir "$work/pinnacle" "$@" \
        >"$work/pinnacle.log" 2>&1 &
    p_pid=$!
    pids+=("$p_pid")
    redis-server --port "$r_port" --bind 127.0.0.1 --dir "$work/redis" --save '' \
        --appendonly yes --appendfsync everysec --daemonize no >"$work/redis.log" 2>&1 &
    r_pid=$!
    pids+=("$r_pid")
    wait_ready "$p_port"
    wait_ready "$r_port"
}
