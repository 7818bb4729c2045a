#!/usr/bin/env bash
# run.sh: the ingest benchmark. Measures, in one run and on loopback, the
# gateway side by side with an evhttp hello-world (the ceiling) and the
# Node.js peer (bench/out/peer, from peer-setup.sh) in QUEUE=memory and
# QUEUE=sqlite modes. Every request is a distinct, validly signed Extend
# webhook (gen_webhooks.py + webhooks.lua). Rounds interleave the targets
# (the order rotates each round); the report gives medians over rounds and
# ratios, checks the product's targets, and checks that every "accepted"
# answer of the durable targets is a row in their queue after they stop.
#
# Environment (defaults): BENCH_ROUNDS (3), BENCH_DURATION seconds (10),
# BENCH_WARMUP seconds (3), BENCH_THREADS (2), BENCH_CONNECTIONS (64),
# BENCH_TARGETS ("hello peer-memory peer-sqlite gateway"; add
# gateway-nofsync for the same gateway under eatmydata, its fsyncs made
# no-ops: not durable, a measure of what the disk costs),
# BENCH_INGEST_RATE deletions/s both gateways may send meanwhile (8, the
# product default; 0 = unlimited), BENCH_INGEST_IN_FLIGHT (4),
# BENCH_MAX_REQUESTS (1500000), BENCH_PORT_BASE (18080), BENCH_BUILD
# (build-bench), BENCH_LOAD_FRACTION (1: wrk flat out; 0.5: each
# connection paced so the target is offered half the rate its warm-up
# reached, webhooks_paced.lua), BENCH_WORK (the scratch directory; default
# a new bench/out/run.*), BENCH_REPORT (bench/out/ingest.md). Output: the
# table on stdout and in BENCH_REPORT; raw wrk output in the scratch dir.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${BENCH_ROUNDS:-3}"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-3}"
THREADS="${BENCH_THREADS:-2}"
CONNS="${BENCH_CONNECTIONS:-64}"
TARGETS="${BENCH_TARGETS:-hello peer-memory peer-sqlite gateway}"
RATE="${BENCH_INGEST_RATE:-8}"
INFLIGHT="${BENCH_INGEST_IN_FLIGHT:-4}"
MAXREQ="${BENCH_MAX_REQUESTS:-1500000}"

mkdir -p "$root/bench/out"
work="${BENCH_WORK:-$(mktemp -d "$root/bench/out/run.XXXXXX")}"
mkdir -p "$work"
FRACTION="${BENCH_LOAD_FRACTION:-1}"
REPORT="${BENCH_REPORT:-$root/bench/out/ingest.md}"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

for tool in wrk python3 sqlite3 cmake; do
    command -v "$tool" >/dev/null || { echo "bench: $tool missing (scripts/deps.sh bench)" >&2; exit 1; }
done
[ -n "${BENCH_NO_BUILD:-}" ] || { echo "bench: building into $BUILD (Release)" >&2; bench_build; }
case " $TARGETS " in *" peer-"*) "$root/bench/peer-setup.sh" ;; esac
sim_start
sink="a closed port"
[ -n "$sim_pid" ] && sink="extend-sim"
echo "bench: deletions go to $sim_url ($sink)" >&2

target_port() {
    case "$1" in
    hello) echo $((PORT_BASE + 0)) ;;
    peer-memory) echo $((PORT_BASE + 1)) ;;
    peer-sqlite) echo $((PORT_BASE + 2)) ;;
    gateway) echo $((PORT_BASE + 3)) ;;
    gateway-nofsync) echo $((PORT_BASE + 4)) ;;
    gateway-base) echo $((PORT_BASE + 5)) ;;
    gateway-pg) echo $((PORT_BASE + 6)) ;;
    esac
}

# Rows in a durable target's queue, read with the target stopped.
count_rows() {
    case "$1" in
    peer-sqlite) sqlite3 "$2/peer.db" "SELECT count(*) FROM jobs" ;;
    gateway | gateway-nofsync | gateway-base) sqlite3 "$2/queue.db" "${BENCH_GATEWAY_ROWS_SQL:-SELECT count(*) FROM deletions}" ;;
    gateway-pg) psql "$BENCH_PG_URL dbname=dg_bench" -Atc "SELECT count(*) FROM dg_deletions" ;;
    *) echo "-" ;;
    esac
}

# How many requests to generate so that none repeats: the measured rate
# times the duration, with half again as margin.
size_for() {
    local t=$1 secs=$2 est=${rate_est[$1]:-20000} n
    n=$(((est * secs * 3) / 2 + 2000 * THREADS))
    [ "$t" = hello ] && [ "$n" -gt 60000 ] && n=60000 # it ignores bodies
    [ "$n" -gt "$MAXREQ" ] && n=$MAXREQ
    echo "$n"
}

gen() { # COUNT PREFIX PORT
    python3 "$root/bench/gen_webhooks.py" --secret "$EXTEND_WEBHOOK_SECRET" --count "$1" \
        --threads "$THREADS" --host "127.0.0.1:$3" --out "$2" 2>/dev/null
}

wrk_run() { # PORT PREFIX SECONDS OUT [DELAY_MS]
    local script=webhooks.lua
    [ -n "${5:-}" ] && script=webhooks_paced.lua
    wrk -t"$THREADS" -c"$CONNS" -d"${3}s" --timeout 10s --latency -s "$root/bench/$script" \
        "http://127.0.0.1:$1/webhooks/extend" -- "$2" ${5:-} >"$4" 2>&1 || true
}

# The pause per connection that offers FRACTION of RATE (req/s) over
# CONNS connections, less the time an answer takes (P50_US).
pace_ms() { # RATE P50_US
    python3 -c 'import sys; f, r, p, c = map(float, sys.argv[1:5]); print(max(1, int(round(c * 1000.0 / max(1.0, f * r) - p / 1000.0))))' \
        "$FRACTION" "$1" "$2" "$CONNS"
}

# What a target spent during the measured run, from /proc: CPU time
# (all threads) and what it wrote, to tell a CPU-bound target from one
# that waits on the disk.
proc_snap() { # PID -> "ticks syscw write_bytes"
    local stat
    stat=$(sed 's/^.*) //' "/proc/$1/stat")
    echo "$(echo "$stat" | awk '{print $12 + $13}') $(awk '/^write_bytes|^syscw/ {print $2}' "/proc/$1/io" | tr '\n' ' ')"
}
proc_delta() { # SNAP0 SNAP1 DURATION_US REQUESTS ACCEPTED -> "cpu% KB/req writes/req cpu_s/10k"
    python3 -c 'import sys, os
a = [int(x) for x in sys.argv[1].split()]; b = [int(x) for x in sys.argv[2].split()]
us, n, acc = float(sys.argv[3]), max(1, int(sys.argv[4])), max(1, int(sys.argv[5]))
hz = os.sysconf("SC_CLK_TCK"); cpu = (b[0] - a[0]) / hz
print("%.0f %.1f %.1f %.3f" % (100.0 * cpu / (us / 1e6), (b[2] - a[2]) / 1024.0 / n, (b[1] - a[1]) / n,
                               cpu * 10000.0 / acc))' "$1" "$2" "$3" "$4" "$5"
}
# Peak RSS of a process (VmHWM), KB.
rss_peak() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

declare -A rate_est skipped
results="$work/results.tsv"
printf 'target\tround\trps\tp50_us\tp99_us\trequests\tok2xx\tnon2xx\taccepted\tduplicate\trepeats\terrors\taccepted_total\tunique_sent\trows\tcpu_pct\tkb_written_per_req\twrites_per_req\tcpu_s_per_10k\trss_peak_kb\tdelay_ms\n' >"$results"
read -r -a tlist <<<"$TARGETS"

for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#tlist[@]}; k++)); do
        t=${tlist[$(((k + r - 1) % ${#tlist[@]}))]}
        [ -n "${skipped[$t]:-}" ] && continue
        port=$(target_port "$t")
        dir="$work/$t.r$r"
        mkdir -p "$dir"
        if ! target_start "$t" "$port" "$dir" "$RATE" "$INFLIGHT"; then
            echo "bench: $t is not available, skipped" >&2
            skipped[$t]=1
            continue
        fi
        # Warm up (JIT, caches, SQLite pages), and learn the rate to size
        # the measured run's request set.
        gen "$(size_for "$t" "$WARMUP")" "$dir/warm" "$port"
        wrk_run "$port" "$dir/warm" "$WARMUP" "$dir/warm.out"
        est=$(kv "$dir/warm.out" rps)
        rate_est[$t]=${est%.*}
        rm -f "$dir"/warm.[0-9]*
        gen "$(size_for "$t" "$DURATION")" "$dir/load" "$port"
        delay=""
        [ "$FRACTION" = 1 ] || delay=$(pace_ms "${est:-1000}" "$(kv "$dir/warm.out" p50_us)")
        s0=$(proc_snap "$target_pid")
        wrk_run "$port" "$dir/load" "$DURATION" "$dir/load.out" $delay
        s1=$(proc_snap "$target_pid")
        rss=$(rss_peak "$target_pid")
        rm -f "$dir"/load.[0-9]*
        stop_pid "$target_pid"
        m="$dir/load.out"
        if ! grep -q '^BENCH ' "$m"; then
            echo "bench: $t round $r: wrk failed:" >&2
            tail -5 "$m" >&2
            continue
        fi
        acc_total=$(($(kv "$dir/warm.out" accepted) + $(kv "$m" accepted)))
        uniq=$(($(kv "$dir/warm.out" sent) - $(kv "$dir/warm.out" repeats) + $(kv "$m" sent) - $(kv "$m" repeats)))
        rows=$(count_rows "$t" "$dir" 2>/dev/null || echo "?")
        # The databases and audit logs have been counted; they are large.
        [ -n "${BENCH_KEEP:-}" ] || rm -f "$dir"/*.db "$dir"/*.db-* "$dir"/audit.jsonl*
        errs=$(($(kv "$m" err_connect) + $(kv "$m" err_read) + $(kv "$m" err_write) + $(kv "$m" err_timeout)))
        rate_est[$t]=$(kv "$m" rps | cut -d. -f1)
        read -r cpu_pct kb_req syscw_req cpu10k < <(proc_delta "$s0" "$s1" "$(kv "$m" duration_us)" "$(kv "$m" requests)" "$(kv "$m" ok2xx)")
        printf '%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" \
            "$(kv "$m" rps)" "$(kv "$m" p50_us)" "$(kv "$m" p99_us)" "$(kv "$m" requests)" \
            "$(kv "$m" ok2xx)" "$(kv "$m" non2xx)" "$(kv "$m" accepted)" "$(kv "$m" duplicate)" \
            "$(kv "$m" repeats)" "$errs" "$acc_total" "$uniq" "$rows" "$cpu_pct" "$kb_req" "$syscw_req" \
            "$cpu10k" "$rss" "${delay:-0}" >>"$results"
        printf 'bench: round %d %-12s %9s req/s  p50 %6s us  p99 %6s us  rows %s\n' "$r" "$t" \
            "$(kv "$m" rps)" "$(kv "$m" p50_us)" "$(kv "$m" p99_us)" "$rows" >&2
        sleep 1
    done
done

load="flat out"
[ "$FRACTION" = 1 ] || load="paced to $FRACTION of each target's warm-up rate"
python3 "$root/bench/report.py" "$results" --out "$REPORT" \
    --meta "rounds=$ROUNDS duration=${DURATION}s warmup=${WARMUP}s wrk -t$THREADS -c$CONNS $load, deletions meanwhile at ${RATE}/s (max in flight $INFLIGHT) to $sink" \
    ${skipped[gateway]:+--note "gateway: not available in this build (no serve command)"} \
    $([ "$FRACTION" = 1 ] || echo --partial)
