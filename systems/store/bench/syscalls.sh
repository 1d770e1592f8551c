#!/usr/bin/env bash
# System calls, context switches and frames per command of a local Selfman cluster under
# `redis-benchmark`: counts that depend little on the machine's load, to compare two builds.
# Usage: systems/store/bench/syscalls.sh [NODES] [REQUESTS] [TEST] [CLIENTS] [PIPELINE]
#   (defaults: 4 20000 set 50 1; TEST is redis-benchmark's -t, one of set, get)
# Counts every thread of every node process with `perf stat` (tracepoints of the syscalls
# named below, and context switches) while `redis-benchmark -t TEST -n REQUESTS` runs
# against node 0, and the frames and bytes written from each node's /metrics; prints each
# count divided by REQUESTS. Needs perf, redis-benchmark and curl; root (or a low
# perf_event_paranoid) for the tracepoints. Every process it starts is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/../../.."
# the tools it calls, from Debian's packages when missing (as root)
missing=()
command -v perf >/dev/null || missing+=(linux-perf)
command -v bc >/dev/null || missing+=(bc)
command -v curl >/dev/null || missing+=(curl)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
[ ${#missing[@]} -eq 0 ] || { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; }
NODES=${1:-4}
N=${2:-20000}
TEST=${3:-set}
C=${4:-50}
P=${5:-1}
BASE=17600
BIN=${SELFMAN_BIN:-target/release/selfman}
[ -n "${SELFMAN_BIN:-}" ] || cargo build --release -q -p selfman-store --bin selfman
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
out=$(mktemp)
"$BIN" cluster --nodes "$NODES" --base-port "$BASE" --replicas 4 --http >"$out" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 600); do grep -q "cluster ready" "$out" && break; sleep 0.1; done
grep -q "cluster ready" "$out" || { cat "$out"; echo "the cluster did not start" >&2; exit 1; }
node_pids=$(sed -n 's/^node [0-9]*: .* pid \([0-9]*\)$/\1/p' "$out" | paste -sd,)
https=$(sed -n 's/^node [0-9]*: .* http \([0-9.:]*\) pid.*$/\1/p' "$out")
metric() { # name: the sum over every node
    local total=0 v
    for h in $https; do
        v=$(curl -s "http://$h/metrics" | awk -v m="$1" '$1 == m { printf "%d", $2 }')
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
sleep 1 # let the ring settle
events=context-switches
for s in sendto recvfrom write read writev epoll_wait epoll_pwait futex sched_yield; do
    events+=",syscalls:sys_enter_$s"
done
frames0=$(metric selfman_net_frames_out_total)
bytes0=$(metric selfman_net_bytes_out_total)
writes0=$(metric selfman_net_writes_total)
stat=$(mktemp)
perf stat -x, -e "$events" -p "$node_pids" -o "$stat" &
perf_pid=$!
sleep 0.3
start=$(date +%s.%N)
redis-benchmark -h 127.0.0.1 -p "$BASE" -t "$TEST" -n "$N" -c "$C" -P "$P" -r 100000 -q 2>/dev/null \
    | tr '\r' '\n' | grep -E "requests per second" | tail -1
end=$(date +%s.%N)
kill -INT "$perf_pid"
wait "$perf_pid" 2>/dev/null || true
frames=$(( $(metric selfman_net_frames_out_total) - frames0 ))
bytes=$(( $(metric selfman_net_bytes_out_total) - bytes0 ))
writes=$(( $(metric selfman_net_writes_total) - writes0 ))
echo "# $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $NODES nodes f=4, -t $TEST -n $N -c $C -P $P, $(echo "$end - $start" | bc) s under perf"
per() { awk -v a="$1" -v n="$N" 'BEGIN { printf "%.2f", a / n }'; }
line="per $TEST:"
while IFS=, read -r value _ event _; do
    [[ "$value" =~ ^[0-9]+$ ]] || continue
    line+=" ${event#syscalls:sys_enter_}=$(per "$value")"
done <"$stat"
echo "$line frames_out=$(per "$frames") transport_writes=$(per "$writes") bytes_out=$(per "$bytes")"
