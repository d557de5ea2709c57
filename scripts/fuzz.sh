#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after another, each for a fixed time, and merges
# what they find into the committed corpus (fuzz/corpus/<target>, minimised with -merge=1).
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# Default: 300 s for every target (resp_oneshot resp_split command lsm_recovery raft_frame).
# Crash, timeout and OOM inputs land in fuzz/artifacts/<target>/; copy each into the corpus
# dir as regress-<what> once fixed, so `cargo test` replays it. Environment:
#   FUZZ_SANITIZER  cargo-fuzz sanitizer (default none: the code is safe Rust and the
#                   properties are assertions; use address for unsafe code)
#   FUZZ_JOBS       parallel libFuzzer jobs per target (default 1)
# Stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags.
set -euo pipefail

cd "$(dirname "$0")/.."
secs=${1:-300}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(resp_oneshot resp_split command lsm_recovery raft_frame)
fi
sanitizer=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-1}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd fuzz
cargo fuzz build -s "$sanitizer" -a
parallel=()
if [ "$jobs" -gt 1 ]; then
    parallel=(-jobs="$jobs" -workers="$jobs")
fi
status=0
for t in "${targets[@]}"; do
    corpus=corpus/$t
    scratch=$(mktemp -d)
    mkdir -p "$corpus" "artifacts/$t"
    echo "== $t: ${secs}s" >&2
    # New inputs go to a scratch dir; the committed corpus only gets the minimised merge.
    if ! cargo fuzz run -s "$sanitizer" -a "$t" "$scratch" "$corpus" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=2 "${parallel[@]}" \
        -print_final_stats=1 2> >(tee "artifacts/$t/last-run.log" >&2); then
        echo "== $t: FAILED (see fuzz/artifacts/$t)" >&2
        status=1
    fi
    cargo fuzz run -s "$sanitizer" -a "$t" "$corpus" "$scratch" -- -merge=1 \
        -rss_limit_mb=2048 -timeout=2 2>/dev/null || true
    rm -rf "$scratch"
    grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|cov:" \
        "artifacts/$t/last-run.log" | tail -3 >&2 || true
done
exit $status
