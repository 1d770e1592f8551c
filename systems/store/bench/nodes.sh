# Sourced by the store benchmarks that start their own node processes (kill9.sh, join.sh):
# builds the node program and the load client, and keeps every node's PID in `pids` so that
# `stop_all` (run on exit) ends each one — SIGTERM, then SIGKILL after 20 s. Node output goes
# to files in `$dir`, removed on exit.
nice cargo build --release -q -p selfman-store --bin selfman
CARGO_TARGET_DIR="$PWD/target" nice cargo build --release -q --manifest-path benches/peers/Cargo.toml -p kv-load
dir=$(mktemp -d)
pids=()
stop_all() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    pids=()
}
trap 'stop_all; rm -rf "$dir"' EXIT
# need_curl: install curl (Debian's package, as root) when it is missing.
need_curl() {
    command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
}
