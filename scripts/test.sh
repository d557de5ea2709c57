#!/usr/bin/env bash
# Pinnacle's test command (README, CI via .ci/run). Idempotent; exits non-zero on any failure.
#   1. checks for what the black-box tests need: redis-server, redis-cli, redis-benchmark
#      (Debian: redis-server + redis-tools), python3 with the `redis` module (>= 5, RESP3) and
#      node + npm (ioredis cluster test);
#      installs what is missing (apt-get when root, pip) or says exactly what is missing;
#   2. builds the `pinnacle` binary;
#   3. runs `cargo test --workspace` with REDIS_TESTS_STRICT=1, so no black-box test may skip.
# Environment: PINNACLE_TEST_PROFILE=release|debug (default release: the latency and hostile-client
# tests are only meaningful on an optimised build; debug skips a release compile), CARGO_TEST_ARGS (extra args
# after `--`, e.g. a filter).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo "$@"
    else return 1
    fi
}

apt_updated=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    if [ "$apt_updated" = 0 ]; then
        as_root apt-get update -qq || return 1
        apt_updated=1
    fi
    # policy-rc.d-less containers may try to start the packaged redis on 6379; harmless here.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- 1. external tools -------------------------------------------------------------------
missing=()
for tool in redis-server redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "missing ${missing[*]}: installing redis-server redis-tools with apt-get"
    apt_install redis-server redis-tools || true
    still=()
    for tool in "${missing[@]}"; do command -v "$tool" >/dev/null 2>&1 || still+=("$tool"); done
    [ "${#still[@]}" -eq 0 ] || die "missing ${still[*]} and could not install them (need root + apt). Install with: apt-get install -y redis-server redis-tools"
fi
redis_version=$(redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')
say "redis-server $redis_version ($(command -v redis-server))"
case "$redis_version" in
    7.0.*) ;;
    *) printf 'WARNING: the differential and COMMAND INFO tests were written against redis-server 7.0.15; %s may differ\n' "$redis_version" >&2 ;;
esac

command -v python3 >/dev/null 2>&1 || { say "python3 missing: installing"; apt_install python3 python3-pip || die "python3 is missing (apt-get install -y python3 python3-pip)"; }
py_redis_ok() { python3 -c 'import sys, redis; sys.exit(0 if int(redis.__version__.split(".")[0]) >= 5 else 1)' 2>/dev/null; }
if ! py_redis_ok; then
    say "python3 module redis (>= 5) missing: pip install redis"
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip || true
    python3 -m pip install --quiet --upgrade redis 2>/dev/null \
        || python3 -m pip install --quiet --upgrade --break-system-packages redis 2>/dev/null \
        || true
    py_redis_ok || die "python3 module 'redis' >= 5 is missing and pip could not install it (python3 -m pip install redis)"
fi
say "python3 redis $(python3 -c 'import redis; print(redis.__version__)')"

# strace (redis-tests/tests/disk_faults.rs: fsync EIO / slow fsync injection) and libfaketime
# (redis-tests/tests/nemesis.rs: clock skew and rate on restart).
if ! command -v strace >/dev/null 2>&1 || [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then
    say "strace/faketime missing: installing with apt-get"
    apt_install strace faketime || true
    command -v strace >/dev/null 2>&1 || die "strace is missing (apt-get install -y strace); the disk-fault tests need it"
fi

# node + npm for redis-tests/tests/cluster_clients.rs (ioredis `Cluster`): the test itself runs
# `npm ci` against redis-tests/tests/js/package-lock.json into target/tmp/cluster-clients-js on
# first use, so only the two tools are needed here (idempotent: installed only when missing).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "node/npm missing: installing nodejs npm with apt-get"
    apt_install nodejs npm || true
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
        || die "node and npm are missing (apt-get install -y nodejs npm); the ioredis cluster test needs them"
fi
say "node $(node --version), npm $(npm --version 2>/dev/null)"

# chromium for redis-tests/tests/dashboard.rs (headless render + screenshot of the PINN dashboard).
if ! command -v chromium >/dev/null 2>&1; then
    say "chromium missing: installing chromium with apt-get"
    apt_install chromium || true
    command -v chromium >/dev/null 2>&1 \
        || die "chromium is missing (apt-get install -y chromium); the dashboard test needs it"
fi
say "$(chromium --version 2>/dev/null | head -1)"

# fusermount3 for redis-tests/tests/power_loss.rs (an in-memory FUSE file system that drops
# un-fsynced data; needs /dev/fuse too).
if ! command -v fusermount3 >/dev/null 2>&1; then
    say "fusermount3 missing: installing fuse3 with apt-get"
    apt_install fuse3 || true
    command -v fusermount3 >/dev/null 2>&1 \
        || die "fusermount3 is missing (apt-get install -y fuse3); the power-loss test needs it"
fi

# --- 2. build the server -------------------------------------------------------------------
# Incremental state is 2 GB of a clean run's target dir and buys nothing on a fresh clone (CI):
# off unless the caller set it.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
# A clean run needs about 4 GB under the target dir (measured: see BENCHMARKS.md's CI section);
# say what is free so a full disk is diagnosed at once.
# (A CARGO_TARGET_DIR that does not exist yet is measured at its nearest existing parent.)
free_at=${CARGO_TARGET_DIR:-$PWD}
while [ ! -e "$free_at" ] && [ "$free_at" != / ]; do free_at=$(dirname "$free_at"); done
say "disk free for the target dir: $(df -h "$free_at" 2>/dev/null | awk 'NR==2 {print $4}')"
profile=${PINNACLE_TEST_PROFILE:-release}
# First the failpoint build for redis-tests/tests/failpoints.rs, copied aside: in the same target
# dir only the pinnacle crates compile twice, and the normal build below re-links
# target/<profile>/pinnacle without failpoints.
fp_dir=${CARGO_TARGET_DIR:-$PWD/target}/failpoints/release
if [ "$profile" = release ]; then
    cargo build --release -p pinnacle-server --bin pinnacle --features failpoints
else
    cargo build -p pinnacle-server --bin pinnacle --features failpoints
fi
mkdir -p "$fp_dir"
cp "${CARGO_TARGET_DIR:-$PWD/target}/$profile/pinnacle" "$fp_dir/pinnacle.tmp"
mv "$fp_dir/pinnacle.tmp" "$fp_dir/pinnacle"
export PINNACLE_FAILPOINTS_BIN="$fp_dir/pinnacle"
if [ "$profile" = release ]; then
    cargo build --release -p pinnacle-server --bin pinnacle
else
    cargo build -p pinnacle-server --bin pinnacle
fi
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
export PINNACLE_BIN="$target_dir/$profile/pinnacle"
[ -x "$PINNACLE_BIN" ] || die "build did not produce $PINNACLE_BIN"
say "testing $PINNACLE_BIN"

# --- 3. every test ---------------------------------------------------------------------------
export REDIS_TESTS_STRICT=1
start=$(date +%s)
# shellcheck disable=SC2086
cargo test --workspace --no-fail-fast -- ${CARGO_TEST_ARGS:-}
say "all tests passed in $(( $(date +%s) - start )) s"
