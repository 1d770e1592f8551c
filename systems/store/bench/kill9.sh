#!/usr/bin/env bash
# Kill -9 of one of 5 nodes under load (issue 18): a 5-node Selfman cluster (f = 4) started by
# this script, CLIENTS closed-loop clients each SETting keys of its own that are never written
# twice (`kv-load redis-acked`, benches/peers/kv-load), one node (node 3, not the join point)
# killed with SIGKILL KILL_AT_MS into the load. kv-load counts acknowledged SETs per 100 ms,
# then reads every acknowledged key back from the surviving nodes. Per run it prints kv-load's
# line, its per-100-ms timeline, and one house-format line:
#   store-kill9 nodes=5 clients=C before_ops_s=X dip_ops_s=Y recovered_ms=Z acked=A lost=L target_ms=2000 met=...
# before = mean rate over the 2 s before the kill; dip = lowest 500 ms window after it;
# recovered = from the kill to the end of the last 500 ms window below 80 % of before ("none":
# the load ended below it); met = recovered <= 2000 ms and no acknowledged key lost or unread.
# Usage: systems/store/bench/kill9.sh [CLIENTS] [DURATION_MS] [KILL_AT_MS] [RUNS]
# Every node it starts is stopped by its PID on exit (SIGTERM, SIGKILL after 20 s); every run
# is bounded (kv-load by `timeout`, readiness by 60 s).
set -euo pipefail
cd "$(dirname "$0")/../../.."
C=${1:-20}
D=${2:-16000}
K=${3:-4000}
RUNS=${4:-1}
NODES=5
VICTIM=3
BASE=${SELFMAN_BENCH_BASE:-17800}
# f; SELFMAN_BENCH_REPLICAS=1 is the deliberately unsafe setting that shows the check catches
# lost writes (the killed node held the only copy of its keys).
F=${SELFMAN_BENCH_REPLICAS:-4}
[[ $F =~ ^[0-9]+$ && $C =~ ^[0-9]+$ && $D =~ ^[0-9]+$ && $K =~ ^[0-9]+$ && $RUNS =~ ^[0-9]+$ ]] ||
    { echo "usage: $0 [CLIENTS] [DURATION_MS] [KILL_AT_MS] [RUNS] (numbers)" >&2; exit 2; }
. systems/store/bench/nodes.sh   # (the working directory is the repository root)
# start_node I: node I on redis BASE+I, ring BASE+100+I, host I; waits for its readiness line.
start_node() {
    local i=$1 pos=0
    (( i >= F )) && pos=$((1 + i))
    local args=(node --listen "127.0.0.1:$((BASE + 100 + i))" --redis "127.0.0.1:$((BASE + i))"
        --host-id "$i" --replicas "$F" --position "$pos")
    (( i > 0 )) && args+=(--join "127.0.0.1:$((BASE + 100))")
    target/release/selfman "${args[@]}" >"$dir/node$i.out" 2>"$dir/node$i.err" </dev/null &
    pids[i]=$!
    for _ in $(seq 1 600); do grep -q '^ready' "$dir/node$i.out" && return 0; sleep 0.1; done
    echo "node $i did not become ready; its stderr:" >&2; tail -5 "$dir/node$i.err" >&2; exit 1
}
addrs=""
for i in $(seq 0 $((NODES - 1))); do addrs+="${addrs:+,}127.0.0.1:$((BASE + i))"; done
echo "# $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $NODES nodes f=$F, $C clients, ${D} ms, SIGKILL of node $VICTIM at ${K} ms, $RUNS run(s)"
for run in $(seq 1 "$RUNS"); do
    for i in $(seq 0 $((NODES - 1))); do start_node "$i"; done
    sleep 2 # let the ring settle and the replicas be placed
    line=$(timeout $((D / 1000 + 120)) target/release/kv-load redis-acked --addr "$addrs" \
        --clients "$C" --duration-ms "$D" --kill-pid "${pids[VICTIM]}" --kill-at-ms "$K")
    echo "$line"
    get() { grep -o "$1=[^ ]*" <<<"$line" | head -1 | cut -d= -f2; }
    rec=$(get recovered_ms)
    met=false
    if [[ $(get lost) == 0 && $(get unread) == 0 && $rec != none ]] && (( rec <= 2000 )); then met=true; fi
    echo "store-kill9 nodes=$NODES f=$F clients=$C before_ops_s=$(get before_ops_s) dip_ops_s=$(get dip_ops_s) recovered_ms=$rec acked=$(get acked) unknown=$(get unknown) errors=$(get errors) lost=$(get lost) unread=$(get unread) target_ms=2000 met=$met run=$run"
    stop_all
done
