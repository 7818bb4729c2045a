# client.sh: sourced after lib.sh by the scripts that send internal
# erasure batches (backlog.sh, bulk.sh): a gateway config with one
# internal client ("bench", DG_BENCH_CLIENT_SECRET) and the admin listener.

export DG_BENCH_CLIENT_SECRET="${DG_BENCH_CLIENT_SECRET:-whsec_$(head -c 32 /dev/urandom | base64 | tr -d '\n')}"

# client_config DIR PORT ADMIN_PORT RATE MAX_IN_FLIGHT [QUEUE_JSON]:
# DIR/gateway.json (QUEUE_JSON as gateway_config takes it).
client_config() {
    gateway_config "$1" "$2" "$4" "$5" ${6:+"$6"}
    python3 - "$1/gateway.json" "$3" <<'PY'
import json, sys
p, port = sys.argv[1], int(sys.argv[2])
c = json.load(open(p))
c["admin"] = {"address": "127.0.0.1", "port": port, "token": "env:DG_ADMIN_TOKEN"}
c["clients"] = [{"id": "bench", "secrets": ["env:DG_BENCH_CLIENT_SECRET"]}]
json.dump(c, open(p, "w"), indent=2)
PY
}
