# lib.sh: shared by bench/run.sh and bench/drain.sh: building, starting and
# stopping the targets (hello, the Node.js peer, the gateway, the Extend
# simulator) on loopback, by process id, and reading "key=value" lines.
# Sourced, not run. Expects $root (the repository) and $work (a scratch dir).

BUILD="${BENCH_BUILD:-build-bench}"
PORT_BASE="${BENCH_PORT_BASE:-18080}"
export EXTEND_WEBHOOK_SECRET="${EXTEND_WEBHOOK_SECRET:-wss_bench_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
export EXTEND_API_TOKEN="${EXTEND_API_TOKEN:-sk_bench_token}"
export DG_AUDIT_KEY="${DG_AUDIT_KEY:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
export DG_ADMIN_TOKEN="${DG_ADMIN_TOKEN:-adm_bench_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d " \n")}"

bench_pids=""

bench_cleanup() {
    local p
    for p in $bench_pids; do
        kill "$p" 2>/dev/null || true
    done
    for p in $bench_pids; do
        wait "$p" 2>/dev/null || true
    done
    bench_pids=""
}

bench_build() {
    cmake -S "$root" -B "$root/$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$root/$BUILD" -j "${BENCH_JOBS:-2}" >/dev/null
}

# wait_port PORT SECONDS PID: 0 once something accepts on 127.0.0.1:PORT,
# 1 on time-out or when PID has died.
wait_port() {
    local port=$1 limit=$(($2 * 10)) pid=$3 i
    for ((i = 0; i < limit; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# stop_pid PID: SIGTERM, then up to 15 s for it to exit, then SIGKILL.
stop_pid() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    bench_pids=$(echo " $bench_pids " | sed "s/ $pid / /")
}

# kv FILE KEY: the value of KEY in the last "BENCH ..." line of FILE.
kv() {
    grep '^BENCH ' "$1" | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# The Extend simulator, when it is built, with development certificates
# (BENCH_SIM_BIN and BENCH_CERTS_SCRIPT override where they are found).
# Sets sim_url, sim_ca, sim_pid; without it, sim_url is a closed loopback
# port (deletions then fail to connect, which both gateways survive).
sim_start() {
    local port=$((PORT_BASE + 9))
    sim_pid=""
    sim_ca=""
    sim_url="https://127.0.0.1:$port"
    local bin="${BENCH_SIM_BIN:-$root/$BUILD/extend-sim}"
    local mkcerts="${BENCH_CERTS_SCRIPT:-$root/certs/make-dev-certs.sh}"
    if [ -x "$bin" ] && [ -x "$mkcerts" ]; then
        mkdir -p "$work/certs"
        "$mkcerts" "$work/certs" >/dev/null 2>&1
        port_free "$port" || { echo "bench: port $port busy" >&2; return 1; }
        "$bin" --port "$port" --cert "$work/certs/server.pem" \
            --key "$work/certs/server.key" --token "$EXTEND_API_TOKEN" \
            >"$work/sim.log" 2>&1 &
        sim_pid=$!
        bench_pids="$bench_pids $sim_pid"
        wait_port "$port" 10 "$sim_pid" || { echo "bench: extend-sim did not start" >&2; cat "$work/sim.log" >&2; return 1; }
        sim_ca="$work/certs/ca.pem"
    fi
}

# gateway_config DIR PORT RATE MAX_IN_FLIGHT [QUEUE_JSON]: writes
# DIR/gateway.json; the queue is DIR/queue.db unless QUEUE_JSON says.
gateway_config() {
    local dir=$1 port=$2 rate=$3 inflight=$4 ca=null
    local queue=${5:-"{ \"path\": \"$dir/queue.db\" }"}
    [ -n "$sim_ca" ] && ca="\"$sim_ca\""
    cat >"$dir/gateway.json" <<JSON
{
  "listen":   { "address": "127.0.0.1", "port": $port },
  "admin":    { "port": 0 },
  "extend":   { "base_url": "$sim_url", "ca_file": $ca, "token": "env:EXTEND_API_TOKEN",
                "rate_per_second": $rate, "max_in_flight": $inflight },
  "webhooks": { "signing_secrets": ["env:EXTEND_WEBHOOK_SECRET"] },
  "queue":    $queue,
  "audit":    { "path": "$dir/audit.jsonl", "key": "env:DG_AUDIT_KEY" }
}
JSON
}

# target_start NAME PORT DIR RATE MAX_IN_FLIGHT: starts one target in the
# background, sets target_pid, waits until it listens. NAME is hello,
# peer-memory, peer-sqlite, gateway, gateway-nofsync (the gateway under
# eatmydata, which turns fsync and fdatasync into no-ops: not durable, only
# to measure what durability costs), gateway-base (the binary at
# BENCH_BASE_BIN, an earlier build, to compare a change in one run) or
# gateway-pg (one replica on PostgreSQL: BENCH_PG_URL, a conninfo whose
# database dg_bench is made afresh each time). Its output goes to DIR/log.
target_start() {
    local name=$1 port=$2 dir=$3 rate=$4 inflight=$5
    mkdir -p "$dir"
    port_free "$port" || { echo "bench: port $port busy" >&2; return 1; }
    case "$name" in
    hello)
        "$root/$BUILD/hello" --port "$port" >"$dir/log" 2>&1 &
        ;;
    peer-memory | peer-sqlite)
        (cd "$root/bench/out/peer" &&
            exec env PORT="$port" QUEUE="${name#peer-}" QUEUE_PATH="$dir/peer.db" \
                EXTEND_BASE_URL="$sim_url" NODE_EXTRA_CA_CERTS="${sim_ca:-/dev/null}" \
                RATE_PER_SECOND="$rate" MAX_IN_FLIGHT="$inflight" \
                node server.js) >"$dir/log" 2>&1 &
        ;;
    gateway | gateway-nofsync | gateway-base)
        local -a wrap=()
        local bin="$root/$BUILD/deletion-gateway"
        if [ "$name" = gateway-nofsync ]; then
            command -v eatmydata >/dev/null || { echo "bench: eatmydata missing (scripts/deps.sh bench)" >&2; return 1; }
            wrap=(eatmydata)
        fi
        if [ "$name" = gateway-base ]; then
            [ -x "${BENCH_BASE_BIN:-}" ] || { echo "bench: gateway-base needs BENCH_BASE_BIN" >&2; return 1; }
            bin=$BENCH_BASE_BIN
        fi
        gateway_config "$dir" "$port" "$rate" "$inflight"
        "${wrap[@]}" "$bin" serve -c "$dir/gateway.json" >"$dir/log" 2>&1 &
        ;;
    gateway-pg)
        [ -n "${BENCH_PG_URL:-}" ] || { echo "bench: gateway-pg needs BENCH_PG_URL" >&2; return 1; }
        psql "$BENCH_PG_URL" -qc "DROP DATABASE IF EXISTS dg_bench WITH (FORCE)" -c "CREATE DATABASE dg_bench" >/dev/null
        gateway_config "$dir" "$port" "$rate" "$inflight" \
            "{ \"backend\": \"postgres\", \"url\": \"$BENCH_PG_URL dbname=dg_bench\" }"
        "$root/$BUILD/deletion-gateway" serve -c "$dir/gateway.json" >"$dir/log" 2>&1 &
        ;;
    *)
        echo "bench: unknown target $name" >&2
        return 1
        ;;
    esac
    target_pid=$!
    bench_pids="$bench_pids $target_pid"
    if ! wait_port "$port" 20 "$target_pid"; then
        echo "bench: $name did not start; its log:" >&2
        tail -5 "$dir/log" >&2
        stop_pid "$target_pid"
        return 1
    fi
}

# sim_reset: forget the simulator's counters and request log between runs.
sim_reset() {
    curl -sf --cacert "$sim_ca" -X POST "$sim_url/_sim/reset" >/dev/null
}
