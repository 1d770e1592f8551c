#!/usr/bin/env bash
# MULTI/EXEC transactions per second on a local Selfman cluster (f = 4): each transaction is
# `MULTI; GET a; GET b; SET a v; SET b v; EXEC` on two distinct random keys of KEYS (two reads,
# two writes: one distributed Paxos-commit transaction), CLIENTS closed-loop clients spread
# over the nodes (`kv-load redis-tx`, benches/peers/kv-load); p50/p99 latency of a transaction.
# Usage: systems/store/bench/multi-exec.sh [NODES] [CLIENTS] [TRANSACTIONS] [KEYS]
# Every process it starts is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/../../.."
NODES=${1:-4}
C=${2:-50}
T=${3:-10000}
KEYS=${4:-100000}
BASE=17450
cargo build --release -q -p selfman-store --bin selfman
CARGO_TARGET_DIR="$PWD/target" cargo build --release -q --manifest-path benches/peers/Cargo.toml -p kv-load
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
out=$(mktemp)
target/release/selfman cluster --nodes "$NODES" --base-port "$BASE" --replicas 4 >"$out" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 600); do grep -q "cluster ready" "$out" && break; sleep 0.1; done
grep -q "cluster ready" "$out" || { cat "$out"; echo "the cluster did not start" >&2; exit 1; }
addrs=""
for i in $(seq 0 $((NODES - 1))); do addrs+="${addrs:+,}127.0.0.1:$((BASE + i))"; done
echo "# $(date -u +%FT%TZ), $(nproc) cores, $NODES nodes f=4, $C clients, $T transactions, $KEYS keys"
echo "selfman($NODES nodes,f=4) $(target/release/kv-load redis-tx --addr "$addrs" --clients "$C" --transactions "$T" --keys "$KEYS")"
