#!/usr/bin/env bash
# Three gateway replicas on one PostgreSQL queue, on this machine, against
# the bundled Extend simulator: what a deployment behind a load balancer
# looks like, without Docker.
#
#   scripts/run-replicas.sh [BUILD]        (after `make build certs`; Ctrl-C stops all)
#
# A throwaway PostgreSQL 15 (scripts/pg-test.sh) listens on 127.0.0.1:55440;
# replica i listens on 127.0.0.1:818i (admin 819i), keeps its audit log in
# var/replicas/ri/ and shares the account's limits (8 DELETEs/s, 4 in flight)
# with the other two. Secrets as `make run` makes them (var/dev-secrets.env).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
pg_dir=/tmp/dg-replicas-pg
pg_port=55440
# shellcheck source=scripts/dev-secrets.sh
. scripts/dev-secrets.sh
mkdir -p var/replicas
export EXTEND_API_TOKEN=sk_dev_simulator

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    scripts/pg-test.sh stop "$pg_dir" || true
}
trap cleanup EXIT INT TERM

scripts/pg-test.sh start "$pg_dir" "$pg_port"
url=$(scripts/pg-test.sh url "$pg_dir" "$pg_port")
"$build/extend-sim" --port 9443 --cert certs/dev/server.pem --key certs/dev/server.key \
    --token "$EXTEND_API_TOKEN" --log var/replicas/extend-sim.jsonl > var/replicas/extend-sim.out 2>&1 &
pids+=($!)
for i in 1 2 3; do
    mkdir -p "var/replicas/r$i"
    python3 - "$i" "$url" > "var/replicas/r$i/gateway.json" <<'PY'
import json, sys
i, url = sys.argv[1], sys.argv[2]
cfg = json.load(open("config/dev.json"))
cfg["listen"]["port"] = 8180 + int(i)
cfg["admin"]["port"] = 8190 + int(i)
cfg["queue"] = {"backend": "postgres", "url": url, "replica_id": "r" + i}
cfg["audit"]["path"] = "var/replicas/r%s/audit.jsonl" % i
cfg["extend"]["max_in_flight"] = 4
json.dump(cfg, sys.stdout, indent=2)
PY
    "$build/deletion-gateway" serve -c "var/replicas/r$i/gateway.json" \
        > "var/replicas/r$i/gateway.log" 2>&1 &
    pids+=($!)
done
sleep 1
cat <<MSG
Three replicas: http://127.0.0.1:8181, :8182, :8183 (admin :8191-:8193), one PostgreSQL queue
($url), deleting at the simulator (https://127.0.0.1:9443). Logs in var/replicas/.
Send to any of them, e.g. $build/deletion-gateway ctl -c var/replicas/r2/gateway.json show queue
Ctrl-C stops everything.
MSG
wait
