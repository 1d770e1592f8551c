#!/usr/bin/env bash
# Runs every cargo-fuzz target of the project for a bounded time each and prints what each run
# did (executions, and any crash with its input file). Not part of CI's budget:
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 600        # 10 minutes per target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); uses the stable toolchain through
# RUSTC_BOOTSTRAP=1, which cargo-fuzz's sanitizer flags require.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2; exit 2; }

# project directory : target
targets=(
    "framework/net/fuzz:frame_decoder"
    "framework/net/fuzz:secure_link"
    "systems/store/fuzz:resp_decoder"
)
status=0
for t in "${targets[@]}"; do
    dir="${t%%:*}"; name="${t##*:}"
    log="$(mktemp)"
    echo "=== $name ($dir), ${secs} s"
    if (cd "$dir" && RUSTC_BOOTSTRAP=1 cargo fuzz run "$name" -- -max_total_time="$secs" >"$log" 2>&1); then
        # libFuzzer's last status line: "#N DONE cov: ... exec/s: ..." or "Done N runs in S second(s)"
        grep -E "^#[0-9]+.*DONE|^Done [0-9]+ runs" "$log" | tail -n 2
    else
        status=1
        echo "FAILED: $name" >&2
        grep -E "panicked|SUMMARY|Test unit written|artifact" "$log" | head -n 20 >&2
    fi
    rm -f "$log"
done
exit "$status"
