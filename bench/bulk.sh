#!/usr/bin/env bash
# bulk.sh: bulk ingest. Internal erasure batches of 1,000 items, signed,
# sent by wrk from many connections at once to a gateway whose dispatcher
# is paused (ingest alone is measured), items/s durable (every 202 is an
# fsynced commit of its 1,000 rows and audit records), beside the storage
# limit that bench/queue_bench measures for the same batches without HTTP.
#
# Environment (defaults): BENCH_BULK_CONNS ("8 32"), BENCH_BULK_SECONDS (10),
# BENCH_BULK_ROUNDS (3), BENCH_BULK_ITEMS (1000), BENCH_PERF (set: perf
# record -g on the gateway in the last round, report in the scratch dir),
# and those of lib.sh. Output: BENCH lines on stdout and in
# $work/bulk.txt, $work named on the last line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
CONNS_LIST="${BENCH_BULK_CONNS:-8 32}"
SECONDS_RUN="${BENCH_BULK_SECONDS:-10}"
ROUNDS="${BENCH_BULK_ROUNDS:-3}"
ITEMS="${BENCH_BULK_ITEMS:-1000}"

mkdir -p "$root/bench/out"
work="${BENCH_BULK_WORK:-$(mktemp -d "$root/bench/out/bulk.XXXXXX")}"
mkdir -p "$work"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
# shellcheck source=bench/client.sh
. "$root/bench/client.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

PORT=$((PORT_BASE + 30))
ADMIN_PORT=$((PORT_BASE + 31))
out="$work/bulk.txt"
: >"$out"
gw="$root/$BUILD/deletion-gateway"
[ -n "${BENCH_NO_BUILD:-}" ] || { echo "bench: building into $BUILD (Release)" >&2; bench_build; }
sim_url="http://127.0.0.1:$((PORT_BASE + 32))" # closed: nothing is sent anyway
sim_ca=""
record() { echo "BENCH $*" | tee -a "$out" >&2; }

# The storage limit: the same batches straight into the queue (worker,
# audit records, group commit; no HTTP, no signature, no JSON).
for ((r = 1; r <= ROUNDS; r++)); do
    for c in $CONNS_LIST; do
        d=$(mktemp -d "$work/qb.XXXXXX")
        line=$("$root/$BUILD/queue_bench" $((c * 12)) "$d" "$c" "$ITEMS" | grep '^BENCH' | sed 's/^BENCH //')
        rm -rf "$d"
        record "what=queue_bench round=$r conns=$c $line"
    done
done

# The HTTP path, rounds interleaved with the storage limit's order.
for ((r = 1; r <= ROUNDS; r++)); do
    for c in $CONNS_LIST; do
        dir="$work/gw.r$r.c$c"
        mkdir -p "$dir"
        client_config "$dir" "$PORT" "$ADMIN_PORT" 0 4
        port_free "$PORT" || { echo "bench: port $PORT busy" >&2; exit 1; }
        "$gw" serve -c "$dir/gateway.json" >"$dir/log" 2>&1 &
        pid=$!
        bench_pids="$bench_pids $pid"
        wait_port "$PORT" 20 "$pid" || { tail -5 "$dir/log" >&2; exit 1; }
        "$gw" ctl -c "$dir/gateway.json" pause >/dev/null
        # Enough batches that none repeats (a repeat is a duplicate, not a
        # write): 120,000 items/s per round-second, the target and more.
        n=$((SECONDS_RUN * 120000 / ITEMS + 4 * c))
        python3 "$root/bench/gen_webhooks.py" --secret "$DG_BENCH_CLIENT_SECRET" --items "$ITEMS" \
            --count "$n" --threads 2 --host "127.0.0.1:$PORT" --out "$dir/req" 2>/dev/null
        perf_pid=""
        if [ -n "${BENCH_PERF:-}" ] && [ "$r" = "$ROUNDS" ] && command -v perf >/dev/null; then
            perf record -g -o "$dir/perf.data" -p "$pid" >/dev/null 2>&1 &
            perf_pid=$!
        fi
        t0=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
        wrk -t2 -c"$c" -d"${SECONDS_RUN}s" --timeout 30s --latency -s "$root/bench/webhooks.lua" \
            "http://127.0.0.1:$PORT/v1/deletions" -- "$dir/req" >"$dir/wrk.out" 2>&1 || true
        t1=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
        if [ -n "$perf_pid" ]; then
            kill -INT "$perf_pid" 2>/dev/null || true
            wait "$perf_pid" 2>/dev/null || true
            perf report -i "$dir/perf.data" --no-children --percent-limit 1.5 --stdio \
                >"$dir/perf.txt" 2>/dev/null || true
            perf report -i "$dir/perf.data" --no-children --sort comm,dso --stdio \
                >"$dir/perf.threads.txt" 2>/dev/null || true
        fi
        stop_pid "$pid"
        rm -f "$dir"/req.[0-9]*
        rows=$(sqlite3 "$dir/queue.db" "SELECT count(*) FROM deletions")
        [ -n "${BENCH_KEEP:-}" ] || rm -f "$dir"/queue.db* "$dir"/audit.jsonl*
        m="$dir/wrk.out"
        # Only first sends count: a repeat's 2xx replays a stored answer.
        ok=$(($(kv "$m" ok2xx) - $(kv "$m" repeats)))
        [ "$ok" -ge 0 ] || ok=0
        secs=$(python3 -c "print($(kv "$m" duration_us) / 1e6)")
        record "what=gateway round=$r conns=$c items_per_s=$(python3 -c "print(int($ok * $ITEMS / $secs))") batches_ok=$ok non2xx=$(kv "$m" non2xx) repeats=$(kv "$m" repeats) p50_us=$(kv "$m" p50_us) p99_us=$(kv "$m" p99_us) rows=$rows cpu_us_per_item=$(python3 -c "import os; print('%.1f' % (($t1 - $t0) / os.sysconf('SC_CLK_TCK') * 1e6 / max(1, $ok * $ITEMS)))")"
    done
done
echo "$work"
