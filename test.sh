#!/usr/bin/env bash
# The README's test command: brings the client tools the store's tests use (installing what is
# missing — apt as root for redis-server/redis-tools and chromium, a Python venv with redis-py), then runs
# every test of the workspace, as root (the ring's partition test creates network namespaces).
# No client test skips: a missing tool fails it, saying how to get it. Usage: ./test.sh [cargo test arguments, e.g. -p selfman-store]
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null \
    || ! command -v redis-benchmark >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: redis-server/redis-tools are missing; run as root, or install them with" \
             "'apt-get install -y redis-server redis-tools'" >&2
        exit 1
    fi
    apt-get update && apt-get install -y redis-server redis-tools
fi

# headless Chromium for the dashboard's browser test (systems/ops/tests/ops.rs)
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: chromium is missing; run as root, or install it with" \
             "'apt-get install -y chromium' (or set SELFMAN_NO_BROWSER=1 to skip that test)" >&2
        exit 1
    fi
    apt-get update && apt-get install -y chromium
fi

# iproute2's `ip` for the ring's partition run (systems/ring-cluster/tests/cluster.rs puts node
# processes into two network namespaces, which needs root)
if ! command -v ip >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: the partition test needs root and iproute2 ('apt-get install -y iproute2')" >&2
        exit 1
    fi
    apt-get update && apt-get install -y iproute2
fi

VENV="$PWD/.venv-clients"
if ! "$VENV/bin/python" -c "import redis" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet 'redis>=4,<6'
fi
export SELFMAN_PYTHON="$VENV/bin/python"

if [ "$#" -eq 0 ]; then
    cargo test --workspace
else
    cargo test "$@"
fi
