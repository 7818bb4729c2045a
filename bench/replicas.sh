#!/usr/bin/env bash
# replicas.sh: the scale-out benchmark, in one run and on loopback.
#
# 1. Ingest: distinct, validly signed webhooks (gen_webhooks.py +
#    webhooks.lua) into 1, 2 and 3 gateway replicas sharing one PostgreSQL
#    queue, and into one SQLite node beside them. With N replicas, N wrk
#    processes run at once, one per replica, the connections split
#    between them; the figure is their sum. Every 2xx is durable
#    (synchronous_commit stays as the server has it: on). Rounds
#    interleave the targets (the order rotates); the table gives medians.
# 2. Drain: BENCH_DRAIN_N deletions queued through 3 replicas whose shared
#    limit is BENCH_DRAIN_RATE/s and BENCH_DRAIN_IN_FLIGHT at once, sent to
#    extend-sim; from its request log, the rate achieved (first to last
#    DELETE) over the configured one, which must stay within 5% below it,
#    and the busiest one-second window, which must never exceed it.
#
# PostgreSQL: BENCH_PG_URL (a conninfo without dbname; the database
# dg_bench is made afresh for each run), or else a throwaway server of
# its own (scripts/pg-test.sh) on BENCH_PG_PORT (55499) in /tmp.
#
# Environment (defaults): BENCH_ROUNDS (3), BENCH_DURATION seconds (10),
# BENCH_WARMUP seconds (3), BENCH_CONNECTIONS (64), BENCH_REPLICAS
# ("1 2 3"), BENCH_INGEST_RATE (8) and BENCH_INGEST_IN_FLIGHT (4): what
# the replicas may send meanwhile, BENCH_DRAIN_N (600), BENCH_DRAIN_RATE
# (40), BENCH_DRAIN_IN_FLIGHT (8), BENCH_DRAIN_ROUNDS (BENCH_ROUNDS),
# BENCH_GATEWAY_BIN (the binary to measure; default the one built into
# BENCH_BUILD), and those of lib.sh. Output: the table on stdout and in
# bench/out/replicas.md; raw output under bench/out/replicas.*/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${BENCH_ROUNDS:-3}"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-3}"
CONNS="${BENCH_CONNECTIONS:-64}"
REPLICAS="${BENCH_REPLICAS:-1 2 3}"
RATE="${BENCH_INGEST_RATE:-8}"
INFLIGHT="${BENCH_INGEST_IN_FLIGHT:-4}"
DRAIN_N="${BENCH_DRAIN_N:-600}"
DRAIN_RATE="${BENCH_DRAIN_RATE:-40}"
DRAIN_INFLIGHT="${BENCH_DRAIN_IN_FLIGHT:-8}"
DRAIN_ROUNDS="${BENCH_DRAIN_ROUNDS:-$ROUNDS}"
PG_PORT="${BENCH_PG_PORT:-55499}"

mkdir -p "$root/bench/out"
work="$(mktemp -d "$root/bench/out/replicas.XXXXXX")"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
own_pg=""
cleanup() {
    bench_cleanup
    if [ -n "$own_pg" ]; then
        "$root/scripts/pg-test.sh" stop "$own_pg" || true
        rm -rf "$own_pg"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in wrk python3 psql cmake curl; do
    command -v "$tool" >/dev/null || { echo "bench: $tool missing (scripts/deps.sh bench)" >&2; exit 1; }
done
echo "bench: building into $BUILD (Release)" >&2
bench_build
BIN="${BENCH_GATEWAY_BIN:-$root/$BUILD/deletion-gateway}"
sim_start
[ -n "$sim_pid" ] || { echo "bench: replicas.sh needs extend-sim and certs/make-dev-certs.sh" >&2; exit 1; }
if [ -z "${BENCH_PG_URL:-}" ]; then
    # In /tmp: the server runs as the postgres user, who may not enter
    # the checkout.
    own_pg="$(mktemp -d /tmp/dg-bench-pg.XXXXXX)"
    chmod 755 "$own_pg"
    "$root/scripts/pg-test.sh" start "$own_pg" "$PG_PORT" >&2
    BENCH_PG_URL="host=127.0.0.1 port=$PG_PORT user=postgres"
fi
PG_DB_URL="$BENCH_PG_URL dbname=dg_bench"

pg_fresh() {
    psql "$BENCH_PG_URL dbname=postgres" -qc "DROP DATABASE IF EXISTS dg_bench WITH (FORCE)" \
        -c "CREATE DATABASE dg_bench" >/dev/null 2>&1
}

# replicas_start N DIR RATE IN_FLIGHT: N replicas on the fresh dg_bench
# (pg) or one SQLite node (N = 0); sets pids[] and ports[].
replicas_start() {
    local n=$1 dir=$2 rate=$3 inflight=$4 i queue
    pids=()
    ports=()
    [ "$n" -gt 0 ] && pg_fresh
    for ((i = 0; i < (n > 0 ? n : 1); i++)); do
        local d="$dir/node$i" port=$((PORT_BASE + 10 + i))
        mkdir -p "$d"
        queue="{ \"path\": \"$d/queue.db\" }"
        [ "$n" -gt 0 ] && queue="{ \"backend\": \"postgres\", \"url\": \"$PG_DB_URL\", \"replica_id\": \"r$i\" }"
        gateway_config "$d" "$port" "$rate" "$inflight" "$queue"
        port_free "$port" || { echo "bench: port $port busy" >&2; return 1; }
        # In its own directory: its receipt key (var/) is made there.
        (cd "$d" && mkdir -p var && exec "$BIN" serve -c "$d/gateway.json") >"$d/log" 2>&1 &
        pids+=($!)
        ports+=("$port")
        bench_pids="$bench_pids $!"
    done
    for ((i = 0; i < ${#pids[@]}; i++)); do
        wait_port "${ports[$i]}" 30 "${pids[$i]}" || { echo "bench: replica $i did not start:" >&2; tail -5 "$dir/node$i/log" >&2; return 1; }
    done
}

replicas_stop() {
    local p
    for p in "${pids[@]}"; do stop_pid "$p"; done
}

# wrk_all PREFIX SECONDS COUNT_PER_NODE: one wrk per node at once, the
# connections split; prints "rps accepted non2xx errors".
wrk_all() {
    local prefix=$1 secs=$2 count=$3 n=${#ports[@]} i c p
    c=$((CONNS / n > 0 ? CONNS / n : 1))
    for ((i = 0; i < n; i++)); do
        python3 "$root/bench/gen_webhooks.py" --secret "$EXTEND_WEBHOOK_SECRET" --count "$count" \
            --threads 1 --host "127.0.0.1:${ports[$i]}" --out "$prefix.n$i" 2>/dev/null
    done
    local -a w=()
    for ((i = 0; i < n; i++)); do
        wrk -t1 -c"$c" -d"${secs}s" --timeout 10s -s "$root/bench/webhooks.lua" \
            "http://127.0.0.1:${ports[$i]}/webhooks/extend" -- "$prefix.n$i" >"$prefix.n$i.out" 2>&1 &
        w+=($!)
    done
    for p in "${w[@]}"; do wait "$p" || true; done
    rm -f "$prefix".n[0-9].[0-9]*
    local rps=0 acc=0 bad=0 err=0 f
    for ((i = 0; i < n; i++)); do
        f="$prefix.n$i.out"
        grep -q '^BENCH ' "$f" || { echo "bench: wrk failed: $(tail -2 "$f")" >&2; echo "0 0 0 1"; return; }
        rps=$(python3 -c "print($rps + $(kv "$f" rps))")
        acc=$((acc + $(kv "$f" accepted)))
        bad=$((bad + $(kv "$f" non2xx)))
        err=$((err + $(kv "$f" err_connect) + $(kv "$f" err_read) + $(kv "$f" err_timeout)))
    done
    echo "$rps $acc $bad $err"
}

count_rows() { # N DIR
    if [ "$1" -gt 0 ]; then
        psql "$PG_DB_URL" -Atc "SELECT count(*) FROM dg_deletions"
    else
        sqlite3 "$2/node0/queue.db" "SELECT count(*) FROM deletions" 2>/dev/null || echo "?"
    fi
}

results="$work/results.tsv"
printf 'kind\ttarget\tround\tvalue\tdetail\n' >"$results"
targets=(sqlite)
for n in $REPLICAS; do targets+=("pg$n"); done
declare -A est

# ---- 1. ingest ----
for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#targets[@]}; k++)); do
        t=${targets[$(((k + r - 1) % ${#targets[@]}))]}
        n=0
        [ "$t" != sqlite ] && n=${t#pg}
        dir="$work/$t.r$r"
        replicas_start "$n" "$dir" "$RATE" "$INFLIGHT" || { replicas_stop; continue; }
        nodes=${#ports[@]}
        # Sized so that no event repeats: the last rate seen, times 1.5.
        per=$(((${est[$t]:-4000} * (WARMUP + DURATION) * 3) / 2 / nodes + 2000))
        read -r _ _ _ _ < <(wrk_all "$dir/warm" "$WARMUP" $((per * WARMUP / (WARMUP + DURATION) + 1000)))
        read -r rps acc bad err < <(wrk_all "$dir/load" "$DURATION" "$per")
        replicas_stop
        rows=$(count_rows "$n" "$dir")
        est[$t]=${rps%.*}
        printf 'ingest\t%s\t%d\t%s\taccepted=%s non2xx=%s errors=%s rows=%s\n' "$t" "$r" "$rps" "$acc" "$bad" "$err" "$rows" >>"$results"
        printf 'bench: round %d %-6s %9s req/s  non2xx %s  rows %s\n' "$r" "$t" "$rps" "$bad" "$rows" >&2
        [ -n "${BENCH_KEEP:-}" ] || rm -f "$dir"/node*/queue.db* "$dir"/node*/audit.jsonl*
    done
done

# ---- 2. drain under the shared limit ----
for ((r = 1; r <= DRAIN_ROUNDS; r++)); do
    dir="$work/drain.r$r"
    sim_reset
    replicas_start 3 "$dir" "$DRAIN_RATE" "$DRAIN_INFLIGHT" || { replicas_stop; continue; }
    per=$((DRAIN_N / 3))
    senders=()
    for ((i = 0; i < 3; i++)); do
        python3 "$root/bench/gen_webhooks.py" --secret "$EXTEND_WEBHOOK_SECRET" --count "$per" \
            --threads 1 --host "127.0.0.1:${ports[$i]}" --out "$dir/req.n$i" 2>/dev/null
        python3 "$root/bench/loadgen.py" send "$dir/req.n$i" --port "${ports[$i]}" --conns 8 >"$dir/send.n$i" &
        senders+=($!)
    done
    for p in "${senders[@]}"; do wait "$p" || true; done
    accepted=0
    for ((i = 0; i < 3; i++)); do accepted=$((accepted + $(kv "$dir/send.n$i" accepted))); done
    python3 "$root/bench/loadgen.py" wait-sim "$sim_url" --ca "$sim_ca" --deletes "$accepted" \
        --timeout $((accepted / DRAIN_RATE * 3 + 60)) >"$dir/wait" || true
    python3 "$root/bench/loadgen.py" rate-sim "$sim_url" --ca "$sim_ca" --rate "$DRAIN_RATE" >"$dir/rate" || true
    curl -sf --cacert "$sim_ca" "$sim_url/_sim/stats" >"$dir/stats" || true
    # What the shared limiter granted, by the moments it granted them for
    # (its row keeps the last minute): arrivals can only crowd a second
    # beyond it when a process stalls (dg_upstream_sent_late_total).
    granted=$(psql "$PG_DB_URL" -Atc "SELECT unnest(grants) FROM dg_limiter" | python3 -c '
import sys
t = sorted(int(x) for x in sys.stdin.read().split()); j = w = 0
for i in range(len(t)):
    while t[i] - t[j] >= 1000: j += 1
    w = max(w, i - j + 1)
print(w)')
    replicas_stop
    maxc=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["max_concurrent"])' "$dir/stats" 2>/dev/null || echo "?")
    printf 'drain\tpg3\t%d\t%s\tdeletes=%s accepted=%s rate=%s max_per_second=%s max_granted=%s max_concurrent=%s\n' "$r" \
        "$(kv "$dir/rate" ratio)" "$(kv "$dir/rate" deletes)" "$accepted" "$(kv "$dir/rate" rate)" \
        "$(kv "$dir/rate" max_per_second)" "$granted" "$maxc" >>"$results"
    printf 'bench: drain round %d: %s/s of %s/s, busiest second %s granted, %s arrived, max in flight %s of %s\n' \
        "$r" "$(kv "$dir/rate" rate)" "$DRAIN_RATE" "$granted" "$(kv "$dir/rate" max_per_second)" "$maxc" \
        "$DRAIN_INFLIGHT" >&2
    rm -f "$dir"/req.n*
done

python3 - "$results" "$root/bench/out/replicas.md" "$DRAIN_RATE" "$DRAIN_INFLIGHT" \
    "rounds=$ROUNDS duration=${DURATION}s warmup=${WARMUP}s, $CONNS connections split over the replicas, deletions meanwhile at ${RATE}/s; drain: $DRAIN_N deletions, 3 replicas, limit ${DRAIN_RATE}/s and $DRAIN_INFLIGHT in flight, $DRAIN_ROUNDS rounds; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
out, rate, inflight, meta = sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ing = {}
for kind, t, r, v, d in rows:
    if kind == "ingest":
        ing.setdefault(t, []).append((float(v), d))
med = {t: statistics.median(v for v, _ in xs) for t, xs in ing.items()}
lines = ["| target | ingest, req/s (median) | rounds | vs SQLite node | vs 1 replica | checks (last round) |",
         "|---|---:|---:|---:|---:|---|"]
names = {"sqlite": "SQLite, 1 node"}
order = ["sqlite"] + sorted((t for t in med if t != "sqlite"), key=lambda t: int(t[2:]))
for t in order:
    name = names.get(t, "PostgreSQL, %s replica%s" % (t[2:], "" if t == "pg1" else "s"))
    vs_sq = "%.2f" % (med[t] / med["sqlite"]) if med.get("sqlite") else "-"
    vs_1 = "%.2f" % (med[t] / med["pg1"]) if t != "sqlite" and med.get("pg1") else "-"
    lines.append("| %s | %.0f | %s | %s | %s | %s |" % (
        name, med[t], " ".join("%.0f" % v for v, _ in ing[t]), vs_sq, vs_1, ing[t][-1][1]))
dr = [(float(v) if v not in ("", "?") else 0.0, d) for kind, t, r, v, d in rows if kind == "drain"]
ok = True
if dr:
    lines += ["", "| drain, 3 replicas | achieved / configured (median) | rounds | busiest second granted | busiest second arrived | max in flight |",
              "|---|---:|---:|---:|---:|---:|"]
    kv = [dict(x.split("=", 1) for x in d.split()) for _, d in dr]
    busiest = max(int(k.get("max_per_second") or 0) for k in kv)
    granted = max(int(k.get("max_granted") or 0) for k in kv)
    maxc = max(int(k["max_concurrent"]) if k.get("max_concurrent", "?").isdigit() else 0 for k in kv)
    ratio = statistics.median(v for v, _ in dr)
    lines.append("| limit %g/s, %d in flight | %.3f | %s | %d | %d | %d |" % (
        rate, inflight, ratio, " ".join("%.3f" % v for v, _ in dr), granted, busiest, maxc))
    checks = [("shared limit achieved within 5%, not above it", 0.95 <= ratio <= 1.0),
              ("never more granted than the limit in any second", granted <= rate),
              ("never more than max_in_flight at once", maxc <= inflight)]
else:
    checks = []
if med.get("pg1") and med.get("sqlite"):
    checks.insert(0, ("1 replica on PostgreSQL >= half the SQLite node", med["pg1"] >= med["sqlite"] / 2))
lines += [""] + ["- %s: %s" % (c, "PASS" if v else "FAIL") for c, v in checks]
lines += ["", meta]
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
sys.stdout.write(text)
sys.exit(0 if all(v for _, v in checks) else 1)
PY
