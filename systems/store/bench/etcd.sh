#!/usr/bin/env bash
# Writes per second: a 4-node Selfman cluster (f = 4) under `redis-benchmark -t set` and a
# 3-member etcd 3.4 cluster on 127.0.0.1 under `kv-load etcd-put` (benches/peers/kv-load), the
# same number of concurrent clients doing the same writes (random keys of 100,000, 3-byte
# values), alternating RUNS times in one run. Prints every raw line and one ratio line per run.
# Usage: systems/store/bench/etcd.sh [CLIENTS] [REQUESTS] [RUNS]
# Installs Debian's etcd-server (apt, as root) and redis-tools if missing; every process it
# starts is stopped by its PID on exit, and the etcd data directories are removed.
set -euo pipefail
cd "$(dirname "$0")/../../.."
C=${1:-50}
N=${2:-20000}
RUNS=${3:-3}
BASE=17500
if ! command -v etcd >/dev/null || ! command -v redis-benchmark >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "etcd-server and redis-tools are needed (apt, as root)" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server redis-tools >/dev/null
fi
cargo build --release -q -p selfman-store --bin selfman
# The load client lives in the peers' own workspace; it builds into this checkout's target/.
CARGO_TARGET_DIR="$PWD/target" cargo build --release -q --manifest-path benches/peers/Cargo.toml -p kv-load
pids=()
data=$(mktemp -d)
cleanup() {
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
out="$data/cluster.out"
target/release/selfman cluster --nodes 4 --base-port "$BASE" --replicas 4 >"$out" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 600); do grep -q "cluster ready" "$out" && break; sleep 0.1; done
grep -q "cluster ready" "$out" || { cat "$out"; echo "the cluster did not start" >&2; exit 1; }
# Three etcd members on 127.0.0.1: client ports E+0..2, peer ports E+10..12.
E=$((BASE + 400))
cluster=""
for i in 0 1 2; do cluster+="${cluster:+,}m$i=http://127.0.0.1:$((E + 10 + i))"; done
endpoints=""
for i in 0 1 2; do
    etcd --name "m$i" --data-dir "$data/m$i" \
        --listen-client-urls "http://127.0.0.1:$((E + i))" \
        --advertise-client-urls "http://127.0.0.1:$((E + i))" \
        --listen-peer-urls "http://127.0.0.1:$((E + 10 + i))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((E + 10 + i))" \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --initial-cluster-token selfman-bench --log-level error >"$data/m$i.log" 2>&1 &
    pids+=($!)
    endpoints+="${endpoints:+,}http://127.0.0.1:$((E + i))"
done
for _ in $(seq 1 200); do
    curl -sf "http://127.0.0.1:$E/health" 2>/dev/null | grep -q '"health":"true"' && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$E/health" | grep -q '"health":"true"' \
    || { tail "$data"/m*.log; echo "etcd did not become healthy" >&2; exit 1; }
echo "# $(date -u +%FT%TZ), $(nproc) cores, $C clients, $N writes per run, etcd $(etcd --version | head -1 | awk '{print $3}')"
for r in $(seq 1 "$RUNS"); do
    s=$(redis-benchmark -h 127.0.0.1 -p "$BASE" -t set -n "$N" -c "$C" -r 100000 -q 2>/dev/null \
        | tr '\r' '\n' | grep -E "^SET: [0-9.]+ requests per second" | tail -1)
    echo "selfman(4 nodes,f=4) $s"
    e=$(target/release/kv-load etcd-put --endpoints "$endpoints" --clients "$C" --requests "$N" --keys 100000)
    echo "etcd(3 members) $e"
    sv=$(echo "$s" | awk '{print $2}')
    ev=$(echo "$e" | sed -E 's/.*ops_per_s=([0-9.]+).*/\1/')
    awk -v s="$sv" -v e="$ev" -v r="$r" 'BEGIN { printf "ratio run %d selfman/etcd writes: %.2fx\n", r, s / e }'
done
