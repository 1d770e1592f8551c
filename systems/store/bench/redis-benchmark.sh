#!/usr/bin/env bash
# redis-benchmark -t set,get against a local Selfman cluster and a single redis-server, in the
# same run, on this machine. Usage: systems/store/bench/redis-benchmark.sh [NODES] [REQUESTS]
# Needs redis-server and redis-benchmark (./test.sh installs them). Every process it starts is
# stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/../../.."
NODES=${1:-4}
N=${2:-20000}
BASE=17400
# SELFMAN_BIN=path runs another build of `selfman` (to compare two builds); default: build this one
BIN=${SELFMAN_BIN:-target/release/selfman}
[ -n "${SELFMAN_BIN:-}" ] || cargo build --release -q -p selfman-store --bin selfman
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
out=$(mktemp)
"$BIN" cluster --nodes "$NODES" --base-port "$BASE" --replicas 4 >"$out" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 600); do grep -q "cluster ready" "$out" && break; sleep 0.1; done
grep -q "cluster ready" "$out" || { cat "$out"; echo "the cluster did not start" >&2; exit 1; }
RPORT=$((BASE + 300))
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
run() { # label port extra-args...
    local label=$1 port=$2; shift 2
    redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -n "$N" -c 50 -r 100000 -q "$@" 2>/dev/null \
        | tr '\r' '\n' | grep -E "^(SET|GET): [0-9.]+ requests per second" | sed "s/^/$label /"
}
echo "# $(date -u +%FT%TZ), $(nproc) cores, -n $N -c 50 -r 100000"
run "selfman($NODES nodes,f=4)" "$BASE"
run "selfman($NODES nodes,f=4) -P16" "$BASE" -P 16
run "redis-server" "$RPORT"
run "redis-server -P16" "$RPORT" -P 16
