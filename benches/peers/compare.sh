#!/usr/bin/env bash
# Compare Selfman's benchmark binary against the Kompact and actix peers.
#
# Builds benches/peers (this workspace) and `selfman-bench` (main workspace),
# then for pingpong pairs in {1,8} x window in {1,500} runs selfman, kompact
# and actix alternately RUNS times each, takes the median msgs_per_s per
# framework and prints one `ratio ...` line per (configuration, peer).
# Then does the same for the components benchmark (elapsed_ms and
# bytes_per_component). Finally runs net-pingpong (two processes over
# loopback TCP) for pairs in {1,8} x window in {1,500}, selfman and kompact
# alternately (actix has no networking peer), and prints one
# `ratio net-pingpong ...` line per configuration plus, for window 1, one
# `ratio net-pingpong-rtt ...` line with the round-trip-time medians.
#
# Environment:
#   ROUND_TRIPS    round trips per pair; unset, each configuration gets enough
#                  for runs of at least ~0.5 s here: pairs=1 window=1 2000000,
#                  pairs=1 window=500 20000000, pairs=8 window=1 1000000,
#                  pairs=8 window=500 5000000
#   RUNS           runs per framework/config   (default 3)
#   COUNT          components to create        (default 1000000)
#   NET_ROUND_TRIPS round trips per pair for net-pingpong (default 200000)
#   THREADS        if set, passed as --threads T to every pingpong/components
#                  run; otherwise each binary uses its default (= #cores)
#   RUN_TIMEOUT    seconds per benchmark invocation (default 300)
#   BUILD_TIMEOUT  seconds per cargo build       (default 1800)
#   SKIP_BUILD=1   do not build, use existing binaries
#   PEERS          peers to run beside selfman (default "kompact actix"; net-pingpong
#                  runs kompact only)
#   SECTIONS       which parts to run (default "pingpong components net-pingpong")
#   SELFMAN_BIN    override path of the selfman binary
#                  (default <repo>/target/release/selfman-bench)
#
# stdout: only the `ratio ...` lines. stderr: progress and every raw result
# line. Exit status is non-zero if any build or run failed (its values are
# then reported as NA). Exception: if selfman-bench does not know the
# net-pingpong subcommand yet (a probe run fails with "unknown ..."), its
# net-pingpong values are NA and that alone does not fail the script.

set -u
set -o pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

ROUND_TRIPS="${ROUND_TRIPS:-}"
SECTIONS="${SECTIONS:-pingpong components net-pingpong}"
PEERS="${PEERS:-kompact actix}"
RUNS="${RUNS:-3}"
COUNT="${COUNT:-1000000}"
NET_ROUND_TRIPS="${NET_ROUND_TRIPS:-200000}"
RUN_TIMEOUT="${RUN_TIMEOUT:-300}"
BUILD_TIMEOUT="${BUILD_TIMEOUT:-1800}"
THREADS="${THREADS:-}"

SELFMAN="${SELFMAN_BIN:-$REPO_ROOT/target/release/selfman-bench}"
KOMPACT="$SCRIPT_DIR/target/release/kompact-peer"
ACTIX="$SCRIPT_DIR/target/release/actix-peer"

FAILED=0

log() { echo "compare.sh: $*" >&2; }

# round_trips PAIRS WINDOW: ROUND_TRIPS if set, else a count giving runs of at
# least ~0.5 s on this machine (a window-500 run of 10^6 round trips lasts ~50 ms,
# mostly the start-up placement of the components)
round_trips() {
    if [ -n "$ROUND_TRIPS" ]; then echo "$ROUND_TRIPS"; return; fi
    case "$1/$2" in
        1/1) echo 2000000 ;;
        1/500) echo 20000000 ;;
        8/1) echo 1000000 ;;
        *) echo 5000000 ;;
    esac
}
section() { [[ " $SECTIONS " == *" $1 "* ]]; }

for v in COUNT NET_ROUND_TRIPS; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]]; then
        log "$v must be a non-negative integer (got '${!v}')"
        exit 2
    fi
done
if [ -n "$ROUND_TRIPS" ] && ! [[ "$ROUND_TRIPS" =~ ^[0-9]+$ ]]; then
    log "ROUND_TRIPS must be a non-negative integer (got '$ROUND_TRIPS')"
    exit 2
fi
for v in RUNS RUN_TIMEOUT BUILD_TIMEOUT; do
    if ! [[ "${!v}" =~ ^[1-9][0-9]*$ ]]; then
        log "$v must be a positive integer (got '${!v}')"
        exit 2
    fi
done
if [ -n "$THREADS" ] && ! [[ "$THREADS" =~ ^[1-9][0-9]*$ ]]; then
    log "THREADS must be a positive integer (got '$THREADS')"
    exit 2
fi
THREAD_ARGS=()
if [ -n "$THREADS" ]; then
    THREAD_ARGS=(--threads "$THREADS")
fi

# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    # Binaries are expected under each workspace's own target/ directory.
    log "building peers in $SCRIPT_DIR"
    if ! (cd "$SCRIPT_DIR" && env -u CARGO_TARGET_DIR timeout -k 10 "$BUILD_TIMEOUT" cargo build --release >&2); then
        log "peer build failed"
        exit 1
    fi
    log "building selfman-bench in $REPO_ROOT"
    if ! (cd "$REPO_ROOT" && env -u CARGO_TARGET_DIR timeout -k 10 "$BUILD_TIMEOUT" cargo build --release -p selfman-bench >&2); then
        log "selfman-bench build failed"
        exit 1
    fi
fi
NEEDED=("$SELFMAN")
[[ " $PEERS " == *" kompact "* ]] && NEEDED+=("$KOMPACT")
[[ " $PEERS " == *" actix "* ]] && NEEDED+=("$ACTIX")
for b in "${NEEDED[@]}"; do
    if [ ! -x "$b" ]; then
        log "missing binary $b"
        exit 1
    fi
done

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# run_bench NAME KIND ARGS... : runs one bounded benchmark invocation and
# prints its result line (the line whose first word is KIND) on stdout.
# Returns non-zero if the run failed, timed out or printed no result line.
run_bench() {
    local name="$1" kind="$2"
    shift 2
    local bin out rc line
    case "$name" in
        selfman) bin="$SELFMAN" ;;
        kompact) bin="$KOMPACT" ;;
        actix) bin="$ACTIX" ;;
    esac
    out="$(timeout -k 10 "$RUN_TIMEOUT" "$bin" "$kind" "$@")"
    rc=$?
    line="$(printf '%s\n' "$out" | awk -v k="$kind" '$1 == k { print; exit }')"
    if [ $rc -ne 0 ] || [ -z "$line" ]; then
        log "FAILED ($name, rc=$rc): $bin $kind $*"
        [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/    /' >&2
        return 1
    fi
    log "  $name: $line"
    printf '%s\n' "$line"
}

# kv KEY LINE : value of KEY=value in LINE (exact key match).
kv() {
    printf '%s\n' "$2" | awk -v k="$1" '{
        for (i = 1; i <= NF; i++) {
            n = index($i, "=")
            if (n > 0 && substr($i, 1, n - 1) == k) { print substr($i, n + 1); exit }
        }
    }'
}

# median VALUES... : median of integers (mean of the two middle ones for an
# even count), or NA if any value is NA or none given.
median() {
    if [ $# -eq 0 ]; then echo NA; return; fi
    local v
    for v in "$@"; do
        if ! [[ "$v" =~ ^-?[0-9]+$ ]]; then echo NA; return; fi
    done
    printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END {
        if (NR % 2) printf "%d\n", a[(NR + 1) / 2];
        else printf "%d\n", (a[NR / 2] + a[NR / 2 + 1]) / 2;
    }'
}

# fmedian VALUES... : like median, but for decimal numbers (e.g. 12.5);
# prints the median with one decimal, or NA.
fmedian() {
    if [ $# -eq 0 ]; then echo NA; return; fi
    local v
    for v in "$@"; do
        if ! [[ "$v" =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then echo NA; return; fi
    done
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
        if (NR % 2) printf "%.1f\n", a[(NR + 1) / 2];
        else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2;
    }'
}

# fratio A B : A/B with two decimals for decimal numbers, NA if not computable.
fratio() {
    if [[ "$1" =~ ^-?[0-9]+(\.[0-9]+)?$ ]] && [[ "$2" =~ ^-?[0-9]+(\.[0-9]+)?$ ]] &&
        awk -v b="$2" 'BEGIN { exit !(b != 0) }'; then
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a / b }'
    else
        echo NA
    fi
}

# ratio A B : A/B with two decimals, NA if not computable.
ratio() {
    if [[ "$1" =~ ^-?[0-9]+$ ]] && [[ "$2" =~ ^-?[0-9]+$ ]] && [ "$2" -ne 0 ]; then
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a / b }'
    else
        echo NA
    fi
}

# ---------------------------------------------------------------------------
# pingpong
# ---------------------------------------------------------------------------
# shellcheck disable=SC2206
FRAMEWORKS=(selfman $PEERS)

# minimum VALUES... : the smallest integer, or NA if any value is NA or none given.
minimum() {
    if [ $# -eq 0 ]; then echo NA; return; fi
    local v
    for v in "$@"; do
        if ! [[ "$v" =~ ^-?[0-9]+$ ]]; then echo NA; return; fi
    done
    printf '%s\n' "$@" | sort -n | head -1
}

for pairs in 1 8; do
    section pingpong || break
    for window in 1 500; do
        rts="$(round_trips "$pairs" "$window")"
        log "pingpong pairs=$pairs window=$window round_trips=$rts runs=$RUNS"
        declare -A vals=([selfman]="" [kompact]="" [actix]="")
        for ((r = 1; r <= RUNS; r++)); do
            for fw in "${FRAMEWORKS[@]}"; do
                if line="$(run_bench "$fw" pingpong --pairs "$pairs" --window "$window" \
                    --round-trips "$rts" "${THREAD_ARGS[@]}")"; then
                    v="$(kv msgs_per_s "$line")"
                    [ -n "$v" ] || v=NA
                else
                    v=NA
                    FAILED=1
                fi
                vals[$fw]+="$v "
            done
        done
        # shellcheck disable=SC2086
        s="$(median ${vals[selfman]})"
        # shellcheck disable=SC2086
        slow="$(minimum ${vals[selfman]})"
        for peer in $PEERS; do
            # shellcheck disable=SC2086
            p="$(median ${vals[$peer]})"
            echo "ratio pingpong pairs=$pairs window=$window selfman_msgs_per_s=$s ${peer}_msgs_per_s=$p ratio=$(ratio "$s" "$p") selfman_slowest=$slow slowest_ratio=$(ratio "$slow" "$p")"
        done
        unset vals
    done
done

# ---------------------------------------------------------------------------
# components
# ---------------------------------------------------------------------------
if section components; then
log "components count=$COUNT runs=$RUNS"
declare -A ms=([selfman]="" [kompact]="" [actix]="")
declare -A bytes=([selfman]="" [kompact]="" [actix]="")
for ((r = 1; r <= RUNS; r++)); do
    for fw in "${FRAMEWORKS[@]}"; do
        if line="$(run_bench "$fw" components --count "$COUNT" "${THREAD_ARGS[@]}")"; then
            e="$(kv elapsed_ms "$line")"
            b="$(kv bytes_per_component "$line")"
            [ -n "$e" ] || e=NA
            [ -n "$b" ] || b=NA
        else
            e=NA
            b=NA
            FAILED=1
        fi
        ms[$fw]+="$e "
        bytes[$fw]+="$b "
    done
done
# shellcheck disable=SC2086
s_ms="$(median ${ms[selfman]})"
# shellcheck disable=SC2086
s_b="$(median ${bytes[selfman]})"
for peer in $PEERS; do
    # shellcheck disable=SC2086
    p_ms="$(median ${ms[$peer]})"
    # shellcheck disable=SC2086
    p_b="$(median ${bytes[$peer]})"
    echo "ratio components count=$COUNT selfman_elapsed_ms=$s_ms ${peer}_elapsed_ms=$p_ms elapsed_ratio=$(ratio "$s_ms" "$p_ms") selfman_bytes_per_component=$s_b ${peer}_bytes_per_component=$p_b bytes_ratio=$(ratio "$s_b" "$p_b")"
done
fi

# ---------------------------------------------------------------------------
# net-pingpong (two OS processes over loopback TCP; selfman vs kompact)
# ---------------------------------------------------------------------------
if section net-pingpong; then
# Probe whether selfman-bench has net-pingpong at all. An "unknown ..."
# complaint means it does not (yet): report NA without failing. Any other
# probe failure is left to the real runs below (which then count as failed).
NET_FRAMEWORKS=(selfman kompact)
probe_err="$(timeout -k 5 60 "$SELFMAN" net-pingpong --pairs 1 --window 1 --round-trips 10 2>&1 >/dev/null)"
probe_rc=$?
if [ $probe_rc -ne 0 ] && printf '%s\n' "$probe_err" | grep -qi unknown; then
    log "selfman-bench has no net-pingpong (probe: $(printf '%s' "$probe_err" | head -n 1)); its values are NA"
    NET_FRAMEWORKS=(kompact)
fi

for pairs in 1 8; do
    for window in 1 500; do
        log "net-pingpong pairs=$pairs window=$window round_trips=$NET_ROUND_TRIPS runs=$RUNS"
        declare -A vals=([selfman]="" [kompact]="")
        declare -A p50s=([selfman]="" [kompact]="")
        declare -A p99s=([selfman]="" [kompact]="")
        for ((r = 1; r <= RUNS; r++)); do
            for fw in "${NET_FRAMEWORKS[@]}"; do
                if line="$(run_bench "$fw" net-pingpong --pairs "$pairs" --window "$window" \
                    --round-trips "$NET_ROUND_TRIPS" "${THREAD_ARGS[@]}")"; then
                    v="$(kv msgs_per_s "$line")"
                    a="$(kv rtt_us_p50 "$line")"
                    b="$(kv rtt_us_p99 "$line")"
                    [ -n "$v" ] || v=NA
                    [ -n "$a" ] || a=NA
                    [ -n "$b" ] || b=NA
                else
                    v=NA
                    a=NA
                    b=NA
                    FAILED=1
                fi
                vals[$fw]+="$v "
                p50s[$fw]+="$a "
                p99s[$fw]+="$b "
            done
        done
        # shellcheck disable=SC2086
        s="$(median ${vals[selfman]})"
        # shellcheck disable=SC2086
        k="$(median ${vals[kompact]})"
        echo "ratio net-pingpong pairs=$pairs window=$window selfman_msgs_per_s=$s kompact_msgs_per_s=$k selfman/kompact=$(ratio "$s" "$k")"
        if [ "$window" -eq 1 ]; then
            # shellcheck disable=SC2086
            s50="$(fmedian ${p50s[selfman]})"
            # shellcheck disable=SC2086
            k50="$(fmedian ${p50s[kompact]})"
            # shellcheck disable=SC2086
            s99="$(fmedian ${p99s[selfman]})"
            # shellcheck disable=SC2086
            k99="$(fmedian ${p99s[kompact]})"
            echo "ratio net-pingpong-rtt pairs=$pairs window=$window selfman_rtt_us_p50=$s50 kompact_rtt_us_p50=$k50 p50_selfman/kompact=$(fratio "$s50" "$k50") selfman_rtt_us_p99=$s99 kompact_rtt_us_p99=$k99 p99_selfman/kompact=$(fratio "$s99" "$k99")"
        fi
        unset vals p50s p99s
    done
done
fi

if [ "$FAILED" -ne 0 ]; then
    log "some runs failed (reported as NA)"
    exit 1
fi
exit 0
