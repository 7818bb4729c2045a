#!/usr/bin/env bash
# `make run`: the gateway on 127.0.0.1:8080 with its SQLite queue in var/.
# Without EXTEND_API_TOKEN it also starts the bundled Extend simulator on
# 127.0.0.1:9443 and deletes there; with it, it deletes at api.extend.ai
# (config/dev-extend.json). Development secrets are made once, at random,
# into var/dev-secrets.env (mode 0600) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
# shellcheck source=scripts/dev-secrets.sh
. scripts/dev-secrets.sh

config=config/dev.json
sim_pid=""
if [ -z "${EXTEND_API_TOKEN:-}" ]; then
    export EXTEND_API_TOKEN=sk_dev_simulator
    "$build/extend-sim" --port 9443 --cert certs/dev/server.pem --key certs/dev/server.key \
        --token "$EXTEND_API_TOKEN" --log var/extend-sim.jsonl > var/extend-sim.out 2>&1 &
    sim_pid=$!
    trap '[ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 50); do grep -q listening var/extend-sim.out 2>/dev/null && break; sleep 0.1; done
    upstream="the Extend simulator (https://127.0.0.1:9443, requests logged to var/extend-sim.jsonl)"
else
    config=config/dev-extend.json
    upstream="api.extend.ai (real deletions!)"
fi

cat <<MSG
deletion-gateway: http://127.0.0.1:8080, admin http://127.0.0.1:8081, deleting at $upstream.
Secrets: var/dev-secrets.env. In another shell, scripts/demo.sh sends a signed webhook
and a signed erasure request; \`$build/deletion-gateway ctl -c $config show queue\` shows the queue.
MSG
"$build/deletion-gateway" serve -c "$config"
