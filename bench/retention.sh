#!/usr/bin/env bash
# retention.sh: a soak with retention set short. Traffic goes on at a
# steady rate (signed internal batches in, DELETEs out to extend-sim at the
# same rate), and every interval the queue file is measured: its size, the
# pages in use (page_count - freelist_count) and the deletions it holds.
# Two runs, one after the other: retention off (everything kept), then
# retention at KEEP seconds, so the two growths compare in one invocation.
#
# Submission keys are remembered for queue.idempotency_ttl_seconds (an
# hour at the least), so with retention on the file still grows by the
# submissions (each keeps its answer, the deletion ids) until the first
# hour is past; the rows of deletions, jobs and attempts are what
# retention bounds, and pruned pages are reused rather than added.
#
# Environment (defaults): BENCH_RETENTION_SECONDS (180: each run's length),
# BENCH_RETENTION_KEEP (30: seconds a finished deletion is kept),
# BENCH_RETENTION_RATE (150 deletions/s in and out; pruning takes at most
# 200 jobs/s), BENCH_RETENTION_EVERY (10: seconds per interval), and those
# of lib.sh. Output: BENCH lines on stdout and in $work/retention.txt, the
# series in $work/retention.tsv, $work named on the last line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
RUN_SECONDS="${BENCH_RETENTION_SECONDS:-180}"
KEEP="${BENCH_RETENTION_KEEP:-30}"
RATE="${BENCH_RETENTION_RATE:-150}"
EVERY="${BENCH_RETENTION_EVERY:-10}"
ITEMS=100

mkdir -p "$root/bench/out"
work="${BENCH_RETENTION_WORK:-$(mktemp -d "$root/bench/out/retention.XXXXXX")}"
mkdir -p "$work"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
# shellcheck source=bench/client.sh
. "$root/bench/client.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

PORT=$((PORT_BASE + 40))
ADMIN_PORT=$((PORT_BASE + 41))
out="$work/retention.txt"
: >"$out"
gw="$root/$BUILD/deletion-gateway"
[ -n "${BENCH_NO_BUILD:-}" ] || { echo "bench: building into $BUILD (Release)" >&2; bench_build; }
sim_start
[ -n "$sim_pid" ] || { echo "bench: retention.sh needs extend-sim for the drain" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "bench: retention.sh needs sqlite3 (scripts/deps.sh bench)" >&2; exit 1; }

say() { echo "bench: retention: $*" >&2; }
record() { echo "BENCH $*" | tee -a "$out" >&2; }
printf 'mode\tseconds\tfile_bytes\tused_bytes\tdeletions\tpruned\n' >"$work/retention.tsv"

# run MODE DAYS: one soak, retention_days DAYS (0 = kept for ever).
run() {
    local mode=$1 days=$2 dir="$work/$1" t0 now elapsed batches first_used="" used=0
    local file=0 pages free dels=0 pruned
    mkdir -p "$dir"
    client_config "$dir" "$PORT" "$ADMIN_PORT" "$RATE" 8 \
        "{ \"path\": \"$dir/queue.db\", \"retention_days\": $days, \"idempotency_ttl_seconds\": 3600 }"
    port_free "$PORT" || { echo "bench: port $PORT busy" >&2; exit 1; }
    "$gw" serve -c "$dir/gateway.json" >"$dir/log" 2>&1 &
    local pid=$!
    bench_pids="$bench_pids $pid"
    wait_port "$PORT" 20 "$pid" || { tail -5 "$dir/log" >&2; exit 1; }
    batches=$((RATE * EVERY / ITEMS))
    t0=$(date +%s)
    while :; do
        now=$(date +%s)
        elapsed=$((now - t0))
        [ "$elapsed" -lt "$RUN_SECONDS" ] || break
        # One interval's deletions, generated right before they are sent
        # (the timestamps must be fresh), then the rest of the interval.
        python3 "$root/bench/gen_webhooks.py" --secret "$DG_BENCH_CLIENT_SECRET" --items "$ITEMS" \
            --count "$batches" --threads 2 --host "127.0.0.1:$PORT" --out "$dir/load" 2>/dev/null
        python3 "$root/bench/loadgen.py" send "$dir/load" --port "$PORT" --conns 2 >"$dir/load.send"
        rm -f "$dir"/load.[0-9]*
        [ "$(kv "$dir/load.send" ok2xx)" = "$batches" ] || { say "$mode: a batch was refused"; exit 1; }
        sleep "$(python3 -c "print(max(0, $t0 + $elapsed + $EVERY - $(date +%s.%N)))")"
        file=$(stat -c %s "$dir/queue.db")
        read -r pages free dels < <(sqlite3 -separator ' ' "file:$dir/queue.db?mode=ro" \
            "SELECT (SELECT page_count FROM pragma_page_count), (SELECT freelist_count FROM pragma_freelist_count), (SELECT count(*) FROM deletions)")
        used=$(((pages - free) * 1024))
        pruned=$(curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^dg_queue_pruned_total/ {print $2}')
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$((elapsed + EVERY))" "$file" "$used" "$dels" "${pruned:-0}" >>"$work/retention.tsv"
        say "$mode: $((elapsed + EVERY)) s, file $file bytes, in use $used, $dels deletions held, ${pruned:-0} pruned"
        [ -n "$first_used" ] || [ "$((elapsed + EVERY))" -lt "$((KEEP * 2))" ] || first_used=$used
    done
    stop_pid "$pid"
    record "mode=$mode seconds=$RUN_SECONDS keep_s=$KEEP rate=$RATE used_bytes_after_2x_keep=${first_used:-0} used_bytes_end=$used deletions_held_end=$dels pruned=${pruned:-0} file_bytes_end=$file"
    [ -n "${BENCH_KEEP:-}" ] || rm -f "$dir"/queue.db* "$dir"/audit.jsonl*
}

run kept 0
run retained "$(python3 -c "print($KEEP / 86400)")"
echo "$work"
