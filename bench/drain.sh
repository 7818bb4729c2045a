#!/usr/bin/env bash
# drain.sh: the dispatch benchmark, against the Extend simulator
# (extend-sim) with the rate limit off and 16 DELETEs in flight, the
# gateway side by side with the Node.js peer, rounds interleaved:
#
# 1. Drain: N deletions (BENCH_DRAIN_N, 20000) are queued, then the clock
#    runs until the simulator has received N DELETEs (GET /_sim/stats).
#    The gateway is preloaded with its dispatcher paused (ctl pause) and
#    the clock starts at ctl resume; the peer cannot pause, so its clock
#    starts with the first webhook (its ingest is much faster than its
#    dispatch, so that costs it little). If the gateway cannot pause, it is
#    measured like the peer, which only makes its result worse.
# 2. Accept-to-DELETE latency at a steady load: BENCH_LAT_RATE webhooks/s
#    (200) for BENCH_LAT_SECONDS (10), paced open loop by loadgen.py; for
#    each accepted webhook, the simulator's receive time of its DELETE
#    minus the time its 2xx answer arrived (both CLOCK_REALTIME; the
#    simulator stamps whole milliseconds, so +-0.5 ms, and a DELETE that
#    beats the answer to its client shows as slightly negative): p50, p99.
#
# Targets: drain >= 5x the peer's, p50 accept-to-DELETE < 5 ms.
# Environment: BENCH_ROUNDS (3), BENCH_DRAIN_TARGETS ("peer-memory
# peer-sqlite gateway"), BENCH_DRAIN_N, BENCH_LAT_RATE, BENCH_LAT_SECONDS,
# BENCH_DRAIN_IN_FLIGHT (16), BENCH_WORK (the scratch directory),
# BENCH_REPORT (bench/out/drain.md), and those of lib.sh. Output: stdout
# and BENCH_REPORT.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${BENCH_ROUNDS:-3}"
TARGETS="${BENCH_DRAIN_TARGETS:-peer-memory peer-sqlite gateway}"
N="${BENCH_DRAIN_N:-20000}"
LAT_RATE="${BENCH_LAT_RATE:-200}"
LAT_SECONDS="${BENCH_LAT_SECONDS:-10}"
INFLIGHT="${BENCH_DRAIN_IN_FLIGHT:-16}"

mkdir -p "$root/bench/out"
work="${BENCH_WORK:-$(mktemp -d "$root/bench/out/drain.XXXXXX")}"
mkdir -p "$work"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

echo "bench: building into $BUILD (Release)" >&2
[ -n "${BENCH_NO_BUILD:-}" ] || bench_build
case " $TARGETS " in *" peer-"*) "$root/bench/peer-setup.sh" ;; esac
sim_start
if [ -z "$sim_pid" ]; then
    echo "bench: drain.sh needs extend-sim (tools/extend-sim) and certs/make-dev-certs.sh" >&2
    exit 1
fi
ADMIN_PORT=$((PORT_BASE + 7))

gen() { # COUNT PREFIX PORT
    python3 "$root/bench/gen_webhooks.py" --secret "$EXTEND_WEBHOOK_SECRET" --count "$1" \
        --threads 4 --host "127.0.0.1:$3" --out "$2" 2>/dev/null
}
lg() { python3 "$root/bench/loadgen.py" "$@"; }

# The gateway's dispatcher can be paused through its admin listener: the
# drain config enables it on ADMIN_PORT.
gateway_admin_config() {
    python3 - "$1/gateway.json" "$ADMIN_PORT" <<'PY'
import json, sys
p, port = sys.argv[1], int(sys.argv[2])
c = json.load(open(p))
c["admin"] = {"address": "127.0.0.1", "port": port, "token": "env:DG_ADMIN_TOKEN"}
json.dump(c, open(p, "w"), indent=2)
PY
}
gateway_ctl() { # DIR VERB
    "$root/$BUILD/deletion-gateway" ctl -c "$1/gateway.json" "$2" >>"$1/ctl.log" 2>&1
}

start() { # TARGET DIR -> target_pid, port
    port=$((PORT_BASE + 4))
    if [ "$1" = gateway ] || [ "$1" = gateway-base ]; then
        local bin="$root/$BUILD/deletion-gateway"
        [ "$1" = gateway-base ] && bin=${BENCH_BASE_BIN:?gateway-base needs BENCH_BASE_BIN}
        # Write the config first so that the admin listener is in it.
        mkdir -p "$2"
        gateway_config "$2" "$port" 0 "$INFLIGHT"
        gateway_admin_config "$2"
        port_free "$port" || return 1
        "$bin" serve -c "$2/gateway.json" >"$2/log" 2>&1 &
        target_pid=$!
        bench_pids="$bench_pids $target_pid"
        wait_port "$port" 20 "$target_pid" || { tail -5 "$2/log" >&2; stop_pid "$target_pid"; return 1; }
    else
        target_start "$1" "$port" "$2" 0 "$INFLIGHT"
    fi
}

results="$work/results.tsv"
printf 'target\tround\tdrain_rate\tdrain_seconds\tpaused\tlat_p50_ms\tlat_p99_ms\tsend_p50_ms\tmatched\tmissing\tsim_max_concurrent\tsim_connections\n' >"$results"
read -r -a tlist <<<"$TARGETS"
declare -A skipped

for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#tlist[@]}; k++)); do
        t=${tlist[$(((k + r - 1) % ${#tlist[@]}))]}
        [ -n "${skipped[$t]:-}" ] && continue
        dir="$work/$t.r$r"
        mkdir -p "$dir"

        # 1. Drain N.
        sim_reset
        if ! start "$t" "$dir/drain"; then
            echo "bench: $t is not available, skipped" >&2
            skipped[$t]=1
            continue
        fi
        gen "$N" "$dir/drain.req" "$port"
        paused=no
        if [ "${t%-base}" = gateway ] && gateway_ctl "$dir/drain" pause; then
            paused=yes
            lg send "$dir/drain.req" --port "$port" --conns 16 >"$dir/drain.send"
            since=$(date +%s.%N)
            gateway_ctl "$dir/drain" resume
        else
            lg send "$dir/drain.req" --port "$port" --conns 16 >"$dir/drain.send"
            since=$(kv "$dir/drain.send" start)
        fi
        accepted=$(kv "$dir/drain.send" accepted)
        lg wait-sim "$sim_url" --ca "$sim_ca" --deletes "$accepted" --since "$since" \
            --timeout 600 >"$dir/drain.wait" || true
        # Whether the target kept its TLS connections: a handshake per few
        # DELETEs is a usual reason for a slow drain.
        curl -sf --cacert "$sim_ca" "$sim_url/_sim/stats" >"$dir/drain.stats" || true
        stop_pid "$target_pid"
        rm -f "$dir"/drain.req.*
        [ "$accepted" = "$N" ] || echo "bench: $t accepted $accepted of $N webhooks" >&2

        # 2. Accept-to-DELETE latency at a steady rate.
        sim_reset
        start "$t" "$dir/lat" || { echo "bench: $t did not restart" >&2; continue; }
        gen $((LAT_RATE * LAT_SECONDS)) "$dir/lat.req" "$port"
        lg send "$dir/lat.req" --port "$port" --conns 16 --rate "$LAT_RATE" \
            --log "$dir/lat.log" >"$dir/lat.send"
        lg wait-sim "$sim_url" --ca "$sim_ca" --deletes "$(kv "$dir/lat.send" accepted)" \
            --timeout 60 >"$dir/lat.wait" || true
        lg latency "$sim_url" --ca "$sim_ca" --log "$dir/lat.log" >"$dir/lat.out" || true
        stop_pid "$target_pid"
        rm -f "$dir"/lat.req.*

        [ -n "${BENCH_KEEP:-}" ] || rm -f "$dir"/*/*.db "$dir"/*/*.db-* "$dir"/*/audit.jsonl*
        printf '%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" \
            "$(kv "$dir/drain.wait" rate)" "$(kv "$dir/drain.wait" seconds)" "$paused" \
            "$(kv "$dir/lat.out" accept_p50_ms)" "$(kv "$dir/lat.out" accept_p99_ms)" \
            "$(kv "$dir/lat.out" send_p50_ms)" "$(kv "$dir/lat.out" matched)" \
            "$(kv "$dir/lat.out" missing)" \
            "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["max_concurrent"], d["connections_opened"], sep="\t")' "$dir/drain.stats" 2>/dev/null || printf -- '-\t-')" >>"$results"
        printf 'bench: round %d %-12s drain %s/s  accept-to-DELETE p50 %s ms p99 %s ms\n' "$r" "$t" \
            "$(kv "$dir/drain.wait" rate)" "$(kv "$dir/lat.out" accept_p50_ms)" \
            "$(kv "$dir/lat.out" accept_p99_ms)" >&2
    done
done

python3 - "$results" "${BENCH_REPORT:-$root/bench/out/drain.md}" \
    "rounds=$ROUNDS N=$N in flight $INFLIGHT, rate limit off; latency at $LAT_RATE/s for ${LAT_SECONDS}s" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {}
for r in rows:
    by.setdefault(r["target"], []).append(r)
def med(t, k):
    xs = []
    for r in by.get(t, []):
        try:
            xs.append(float(r[k]))
        except ValueError:
            pass
    return statistics.median(xs) if xs else float("nan")
out = ["## Drain and accept-to-DELETE latency (extend-sim, loopback TLS)\n", sys.argv[3] + ".\n",
       "| target | drain DELETEs/s (median) | vs peer memory | vs peer sqlite | accept-to-DELETE p50 | p99 | TLS connections opened | rounds |",
       "|---|---:|---:|---:|---:|---:|---:|---:|"]
for t in ("gateway", "gateway-base", "peer-memory", "peer-sqlite"):
    if t not in by:
        continue
    d = med(t, "drain_rate")
    rel = lambda b: "%.2fx" % (d / med(b, "drain_rate")) if b in by and med(b, "drain_rate") > 0 else "-"
    out.append("| %s | %.0f | %s | %s | %.2f ms | %.2f ms | %.0f | %d |" % (
        t, d, rel("peer-memory"), rel("peer-sqlite"), med(t, "lat_p50_ms"), med(t, "lat_p99_ms"),
        med(t, "sim_connections"), len(by[t])))
out.append("")
checks = []
if "gateway" in by:
    g = med("gateway", "drain_rate")
    for b in ("peer-memory", "peer-sqlite"):
        if b in by and med(b, "drain_rate") > 0:
            x = g / med(b, "drain_rate")
            checks.append(("gateway drain >= 5x %s" % b, x >= 5, "%.2fx" % x))
    p = med("gateway", "lat_p50_ms")
    checks.append(("gateway p50 accept-to-DELETE < 5 ms", p < 5, "%.2f ms" % p))
    miss = sum(int(r["missing"] or 0) for r in by["gateway"])
    checks.append(("gateway: every accepted webhook's DELETE seen", miss == 0, "%d missing" % miss))
    if any(r["paused"] != "yes" for r in by["gateway"]):
        out.append("Note: the gateway could not be paused; its drain clock includes ingest.\n")
if checks:
    out += ["| check | result | measured |", "|---|---|---|"]
    out += ["| %s | %s | %s |" % (n, "PASS" if ok else "FAIL", v) for n, ok, v in checks]
text = "\n".join(out)
print(text)
open(sys.argv[2], "w").write(text + "\n")
sys.exit(1 if any(not ok for _, ok, _ in checks) else 0)
PY
