#!/usr/bin/env bash
# The cost of an open dashboard and metrics scrapes on transaction throughput (issue 19's
# target: under 2 %), measured A/B in one run on one cluster.
#
# A local cluster of NODES nodes (f = 4), every node with its operator endpoint
# (`selfman cluster --http`: node i serves HTTP on BASE + 200 + i). ROUNDS rounds, each two
# phases of the same MULTI/EXEC load (`kv-load redis-tx`: MULTI; GET a; GET b; SET a; SET b;
# EXEC, C closed-loop clients, T transactions), in the order off, on (odd rounds) or on, off
# (even rounds, so that a drift over the run cancels):
#   off: nothing polls the endpoints;
#   on:  a poller fetches, every second and from every node, /metrics, /api/node, /api/peers,
#        /api/ring, /api/components and /api/net: more than one open dashboard asks (it polls
#        /api/ring of every node, the tree and counters of one node, the peers every 10 s) plus
#        a Prometheus scrape per second.
# The store's counters themselves (a few relaxed atomic adds and one clock read per job) run in
# both phases; they are not switchable.
# Prints every phase with the CPU time the node processes spent per 1000 transactions (from
# /proc/PID/stat: less sensitive to other load on the machine than throughput), then the
# medians and on/off. The poller's own CPU (curl) is not in the nodes' figure. Last, with the
# load stopped, the nodes' CPU per poll cycle (all paths of all nodes) from 50 cycles back to
# back against 10 s of idling: a figure that hardly depends on the machine's load.
# Usage: systems/store/bench/ops-ab.sh [NODES] [CLIENTS] [TRANSACTIONS] [ROUNDS]
# Every process it starts is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/../../.."
NODES=${1:-4}
C=${2:-50}
T=${3:-30000}
ROUNDS=${4:-4}
KEYS=100000
BASE=17550
cargo build --release -q -p selfman-store --bin selfman
CARGO_TARGET_DIR="$PWD/target" cargo build --release -q --manifest-path benches/peers/Cargo.toml -p kv-load
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
pids=()
poller=""
cleanup() {
  [ -n "$poller" ] && kill "$poller" 2>/dev/null || true
  # TERM: a background job of a non-interactive shell ignores INT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
out=$(mktemp)
target/release/selfman cluster --nodes "$NODES" --base-port "$BASE" --replicas 4 --http >"$out" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 600); do grep -q "cluster ready" "$out" && break; sleep 0.1; done
grep -q "cluster ready" "$out" || { cat "$out"; echo "the cluster did not start" >&2; exit 1; }
nodepids=$(sed -n 's/^node [0-9]*: .* pid \([0-9]*\)$/\1/p' "$out")
ticks() { local t=0 p; for p in $nodepids; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
hz=$(getconf CLK_TCK)
addrs=""
urls=()
for i in $(seq 0 $((NODES - 1))); do
  addrs+="${addrs:+,}127.0.0.1:$((BASE + i))"
  for p in metrics api/node api/peers api/ring api/components api/net; do
    urls+=("http://127.0.0.1:$((BASE + 200 + i))/$p")
  done
done
# every URL answers before we measure
for u in "${urls[@]}"; do curl -sf -o /dev/null "$u" || { echo "$u does not answer" >&2; exit 1; }; done
poll() {
  # one curl per second for all URLs (keep-alive per host), not a process per request
  while true; do curl -s "${urls[@]}" >/dev/null || true; sleep 1; done
}
load() { target/release/kv-load redis-tx --addr "$addrs" --clients "$C" --transactions "$T" --keys "$KEYS"; }
rate() { sed -n 's/.*tx_per_s=\([0-9]*\).*/\1/p'; }
echo "# $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $NODES nodes f=4, $C clients, $T transactions per phase, $ROUNDS rounds"
offs=()
ons=()
cpu_offs=()
cpu_ons=()
phase() {
  local line r t0 t1 cpu
  if [ "$1" = on ]; then poll & poller=$!; fi
  t0=$(ticks)
  line=$(load)
  t1=$(ticks)
  if [ "$1" = on ]; then kill "$poller"; wait "$poller" 2>/dev/null || true; poller=""; fi
  r=$(echo "$line" | rate)
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v t="$T" 'BEGIN {printf "%.1f", d * 1000 / hz / t * 1000}')
  echo "round $2 $1: $line nodes_cpu_ms_per_1000_tx=$cpu"
  if [ "$1" = on ]; then ons+=("$r"); cpu_ons+=("$cpu"); else offs+=("$r"); cpu_offs+=("$cpu"); fi
}
load >/dev/null # warm-up
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then phase off "$r"; phase on "$r"; else phase on "$r"; phase off "$r"; fi
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
moff=$(median "${offs[@]}")
mon=$(median "${ons[@]}")
echo "median tx/s: off $moff, on $mon, on/off $(awk -v a="$mon" -v b="$moff" 'BEGIN {printf "%.3f", a / b}')"
coff=$(median "${cpu_offs[@]}")
con=$(median "${cpu_ons[@]}")
echo "median node CPU ms per 1000 tx: off $coff, on $con, on/off $(awk -v a="$con" -v b="$coff" 'BEGIN {printf "%.3f", a / b}')"
# the nodes' CPU per poll cycle, the load stopped
t0=$(ticks); sleep 10; idle=$(( $(ticks) - t0 ))
s0=$(date +%s.%N); t0=$(ticks)
for _ in $(seq 1 50); do curl -s "${urls[@]}" >/dev/null; done
busy=$(( $(ticks) - t0 )); s1=$(date +%s.%N)
awk -v b="$busy" -v i="$idle" -v w0="$s0" -v w1="$s1" -v hz="$hz" -v n="$NODES" 'BEGIN {
  w = w1 - w0; per = (b - i * w / 10) * 1000 / hz / 50;
  printf "poll cycle (%d paths x %d nodes): nodes CPU %.1f ms per cycle (idle %.1f ms/s; 50 cycles in %.1f s)\n", 6, n, per, i * 100 / hz, w }'
