#!/usr/bin/env bash
# A new node joining a loaded cluster (issue 18): NODES nodes (f = 4) started by this script are
# loaded with KEYS keys `fill:NNNNNNNN` (8-byte values; `kv-load redis-fill`, pipelined SETs),
# then one more node starts with --join and its operator endpoint (--http). The script polls the
# joiner's /api/replicas and /metrics (one curl each per poll; each poll's time is taken after
# its reads; polls were 30-300 ms apart on the loaded machine: that is the resolution, and
# the printed poll_ms is the longest gap between two polls) and the old nodes' /api/replicas, and reports, all from the
# joiner's start:
#   ready_ms     its readiness line (it is in the ring; its range may not be served yet)
#   owned_ms     the first poll at which it reports the range it owns (it is in the ring)
#   pending_ms   the first poll that shows a range it owns still being received (hand-over started)
#   last_item_ms the last poll at which selfman_repl_received_items_total had grown (data in)
#   serving_ms   the first poll with nothing pending and its owned range served with complete data
#   released_ms  the first poll at which no old node holds an outgoing range (hand-over acknowledged)
# handover_ms = serving_ms - owned_ms (the transfer, to within one poll); serve_gap_ms = serving_ms - last_item_ms (target: <= 1000);
# then `kv-load redis-check` reads 2,000 of the keys through the joiner's Redis port.
#   store-join nodes=N+1 keys=K received_items=R handover_ms=H serve_gap_ms=G target_ms=1000 met=...
# The joiner is host NODES with --position POSITION: an inner position of host NODES mod 4's
# sector (0 for NODES = 4), drawn from the position, the host and the ring port; with the
# default ports, 3 lands at 45.7 % of sector 0, so the joiner takes about 46 % of that sector's
# replicas (~457,000 of 1M keys) from node 0, the sector's anchor. (Position 5 would land at
# 0.004 %: a few items; the range taken is printed.)
# Usage: systems/store/bench/join.sh [KEYS] [NODES] [FILL_CLIENTS] [PIPELINE] [RUNS] [POSITION]
# Every node it starts is stopped by its PID on exit (SIGTERM, SIGKILL after 20 s); polls and
# readiness are bounded (120 s for the hand-over, 60 s per readiness line).
set -euo pipefail
cd "$(dirname "$0")/../../.."
KEYS=${1:-1000000}
NODES=${2:-4}
FC=${3:-8}
P=${4:-64}
RUNS=${5:-1}
POSITION=${6:-3}
BASE=${SELFMAN_BENCH_BASE:-17900}
for v in "$KEYS" "$NODES" "$FC" "$P" "$RUNS" "$POSITION"; do
    [[ $v =~ ^[0-9]+$ ]] || { echo "usage: $0 [KEYS] [NODES] [FILL_CLIENTS] [PIPELINE] [RUNS] [POSITION] (numbers)" >&2; exit 2; }
done
(( NODES >= 1 && NODES <= 90 )) || { echo "NODES: 1..90" >&2; exit 2; }
. systems/store/bench/nodes.sh   # (the working directory is the repository root)
need_curl
now_ms() { date +%s%3N; }
# start_node I [POSITION]: node I on redis BASE+I, ring BASE+100+I, http BASE+200+I, host I;
# without POSITION it waits for the readiness line (the joiner's is watched by the poll loop).
start_node() {
    local i=$1 pos=${2:-0}
    (( i >= 4 && pos == 0 )) && pos=$((1 + i))
    local args=(node --listen "127.0.0.1:$((BASE + 100 + i))" --redis "127.0.0.1:$((BASE + i))"
        --http "127.0.0.1:$((BASE + 200 + i))" --host-id "$i" --replicas 4 --position "$pos")
    (( i > 0 )) && args+=(--join "127.0.0.1:$((BASE + 100))")
    target/release/selfman "${args[@]}" >"$dir/node$i.out" 2>"$dir/node$i.err" </dev/null &
    pids[i]=$!
    [[ -n ${2:-} ]] && return 0
    for _ in $(seq 1 600); do grep -q '^ready' "$dir/node$i.out" && return 0; sleep 0.1; done
    echo "node $i did not become ready; its stderr:" >&2; tail -5 "$dir/node$i.err" >&2; exit 1
}
replicas() { curl -sf --max-time 2 "http://127.0.0.1:$((BASE + 200 + $1))/api/replicas" || echo '{}'; }
addrs=""
for i in $(seq 0 $((NODES - 1))); do addrs+="${addrs:+,}127.0.0.1:$((BASE + i))"; done
echo "# $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $NODES nodes f=4 + 1 joining, $KEYS keys, fill $FC clients x pipeline $P, $RUNS run(s)"
for run in $(seq 1 "$RUNS"); do
    for i in $(seq 0 $((NODES - 1))); do start_node "$i"; done
    sleep 2
    timeout 3600 target/release/kv-load redis-fill --addr "$addrs" --clients "$FC" --keys "$KEYS" --pipeline "$P"
    sleep 2 # let in-flight commits reach every replica
    j=$NODES
    t0=$(now_ms)
    start_node "$j" "$POSITION"
    ready= owned= pending= last_item= serving= released= items_prev=-1 prev_t=$t0 poll_ms=0
    deadline=$((t0 + 120000))
    while (( $(now_ms) < deadline )); do
        kill -0 "${pids[j]}" 2>/dev/null || { echo "the joiner exited:" >&2; tail -5 "$dir/node$j.err" >&2; exit 1; }
        r=$(replicas "$j")
        got=$(curl -sf --max-time 2 "http://127.0.0.1:$((BASE + 200 + j))/metrics" |
            awk '$1 == "selfman_repl_received_items_total" { print $2 }' || true)
        t=$(now_ms) # after the reads: what they saw held at some time before t
        (( t - prev_t > poll_ms )) && poll_ms=$((t - prev_t))
        prev_t=$t
        [[ -z $ready ]] && grep -q '^ready' "$dir/node$j.out" && ready=$((t - t0))
        got=${got:-0}
        if [[ $got != "$items_prev" ]]; then items_prev=$got; (( got > 0 )) && last_item=$((t - t0)); fi
        [[ -z $owned ]] && jq -e '.owned != null' <<<"$r" >/dev/null && owned=$((t - t0))
        np=$(jq '(.pending // []) | length' <<<"$r")
        [[ -z $pending ]] && (( np > 0 )) && pending=$((t - t0))
        if [[ -z $serving && -n $ready ]] &&
            jq -e '.owned as $o | $o != null and ((.pending // []) | length) == 0
                and ((.serving // []) | map(select(. == $o)) | length) > 0' <<<"$r" >/dev/null; then
            serving=$((t - t0))
        fi
        if [[ -n $serving && -z $released ]]; then
            out=0
            for i in $(seq 0 $((NODES - 1))); do
                out=$((out + $(replicas "$i" | jq '(.outgoing // []) | length')))
            done
            (( out == 0 )) && released=$(( $(now_ms) - t0 ))
        fi
        [[ -n $serving && -n $released ]] && break
        sleep 0.02
    done
    [[ -n $serving ]] || { echo "the joiner did not serve its range within 120 s" >&2; exit 1; }
    sleep 1 # the counter's last growth, if any, lands after serving: read it once more
    got=$(curl -sf --max-time 2 "http://127.0.0.1:$((BASE + 200 + j))/metrics" |
        awk '$1 == "selfman_repl_received_items_total" { print $2 }')
    (( got != items_prev )) && echo "# received items grew after serving: $items_prev -> $got"
    last_item=${last_item:-$serving}
    handover=$((serving - owned))
    gap=$((serving - last_item))
    check=$(target/release/kv-load redis-check --addr "127.0.0.1:$((BASE + j))" --keys "$KEYS" --sample 2000) ||
        { echo "$check"; echo "reads through the joiner failed" >&2; exit 1; }
    echo "$check"
    echo "# joiner: $(replicas "$j" | jq -c '{owned, serving, pending, outgoing, items}')"
    met=false
    (( gap <= 1000 )) && met=true
    echo "store-join nodes=$((NODES + 1)) keys=$KEYS received_items=$got ready_ms=$ready owned_ms=$owned pending_ms=${pending:-none} last_item_ms=$last_item serving_ms=$serving released_ms=${released:-none} handover_ms=$handover serve_gap_ms=$gap poll_ms=$poll_ms target_ms=1000 met=$met run=$run"
    stop_all
done
