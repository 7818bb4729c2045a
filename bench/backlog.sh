#!/usr/bin/env bash
# backlog.sh: the gateway with a large backlog (SQLite). Loads N deletions
# through the API, as a retention sweep would (internal batches of 1,000
# items, signed, from several connections), with the dispatcher paused,
# then measures what an operator and an orchestrator see at that size:
#
#   - items/s of the load, and the RSS, WAL and database size sampled
#     during it (the WAL must stay bounded: checkpoints keep up);
#   - RSS against queued jobs (one point per step of the load);
#   - ctl show queue, ctl list queued --limit 1000, GET /metrics,
#     GET /admin/queue and GET /v1/deletions/{id} (each < 50 ms);
#   - start-up to /readyz 200 after a clean stop and after kill -9 (< 2 s);
#   - the cost of a claim at N queued against 1,000 queued (claim_probe;
#     within 1.5x);
#   - draining at a configured rate r against the simulator: the rate seen
#     there against r (within 5%), for each r in BENCH_BACKLOG_RATES.
#
# With BENCH_BACKLOG_PG_URL (a conninfo without dbname) the queue is one
# replica on PostgreSQL instead, in a database dg_backlog made afresh: the
# same steps, but the database's size (pg_database_size) in place of the
# file and WAL sizes, and the claim probe on PostgreSQL too.
#
# Environment (defaults): BENCH_BACKLOG_N (1000000), BENCH_BACKLOG_STEP
# (100000 items per load step), BENCH_BACKLOG_CONNS (8),
# BENCH_BACKLOG_RATES ("10 75"), BENCH_BACKLOG_DRAIN_SECONDS (20), and those
# of lib.sh. Output: BENCH lines in $work/backlog.txt, the RSS curve in
# $work/rss.tsv (queued jobs, RSS KB), $work named on the last line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
N="${BENCH_BACKLOG_N:-1000000}"
STEP="${BENCH_BACKLOG_STEP:-100000}"
CONNS="${BENCH_BACKLOG_CONNS:-8}"
RATES="${BENCH_BACKLOG_RATES:-10 75}"
DRAIN_SECONDS="${BENCH_BACKLOG_DRAIN_SECONDS:-20}"
ITEMS=1000

mkdir -p "$root/bench/out"
work="${BENCH_BACKLOG_WORK:-$(mktemp -d "$root/bench/out/backlog.XXXXXX")}"
mkdir -p "$work"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
# shellcheck source=bench/client.sh
. "$root/bench/client.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

PORT=$((PORT_BASE + 20))
ADMIN_PORT=$((PORT_BASE + 21))
out="$work/backlog.txt"
: >"$out"
gw="$root/$BUILD/deletion-gateway"
[ -n "${BENCH_NO_BUILD:-}" ] || { echo "bench: building into $BUILD (Release)" >&2; bench_build; }
sim_start
[ -n "$sim_pid" ] || { echo "bench: backlog.sh needs extend-sim for the drain" >&2; exit 1; }

say() { echo "bench: backlog: $*" >&2; }
record() { echo "BENCH $*" | tee -a "$out" >&2; }
probe() { python3 "$root/bench/probe.py" "$@"; }

PG_URL="${BENCH_BACKLOG_PG_URL:-}"
queue_json=""
if [ -n "$PG_URL" ]; then
    psql "$PG_URL dbname=postgres" -qc "DROP DATABASE IF EXISTS dg_backlog WITH (FORCE)" \
        -c "CREATE DATABASE dg_backlog" >/dev/null
    queue_json="{ \"backend\": \"postgres\", \"url\": \"$PG_URL dbname=dg_backlog\" }"
    record "backend=postgres"
fi

# config RATE: deletions to the simulator at RATE per second.
config() { client_config "$work" "$PORT" "$ADMIN_PORT" "$1" 16 "$queue_json"; }

# start: the gateway in the background (gw_pid, gw_started: Unix seconds).
start() {
    port_free "$PORT" || { echo "bench: port $PORT busy" >&2; return 1; }
    gw_started=$(date +%s.%N)
    echo "bench: backlog: start at $gw_started" >>"$work/log"
    "$gw" serve -c "$work/gateway.json" >>"$work/log" 2>&1 &
    gw_pid=$!
    bench_pids="$bench_pids $gw_pid"
}
ctl() { "$gw" ctl -c "$work/gateway.json" "$@"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
queued() { ctl --json show queue | python3 -c 'import json,sys; print(json.load(sys.stdin)["deletions"]["queued"])'; }

# 1. Load N through the API, paused, sampling RSS and the WAL.
config 0
start
probe readyz "$PORT" --since "$gw_started" >/dev/null
ctl pause >/dev/null
probe sample "$gw_pid" "$work/queue.db" --out "$work/samples" --every 0.2 &
sampler=$!
printf 'queued\trss_kb\n0\t%s\n' "$(rss_kb "$gw_pid")" >"$work/rss.tsv"
loaded=0 load_secs=0
while [ "$loaded" -lt "$N" ]; do
    n=$((N - loaded < STEP ? N - loaded : STEP))
    batches=$(((n + ITEMS - 1) / ITEMS))
    # Generated right before it is sent: the timestamps must be fresh.
    python3 "$root/bench/gen_webhooks.py" --secret "$DG_BENCH_CLIENT_SECRET" --items "$ITEMS" \
        --count "$batches" --threads "$CONNS" --host "127.0.0.1:$PORT" --out "$work/load" 2>/dev/null
    python3 "$root/bench/loadgen.py" send "$work/load" --port "$PORT" --conns "$CONNS" >"$work/load.send"
    rm -f "$work"/load.[0-9]*
    ok=$(kv "$work/load.send" ok2xx)
    [ "$ok" = "$batches" ] || { say "only $ok of $batches batches accepted"; exit 1; }
    loaded=$((loaded + batches * ITEMS))
    secs=$(kv "$work/load.send" seconds)
    load_secs=$(python3 -c "print($load_secs + $secs)")
    printf '%s\t%s\n' "$loaded" "$(rss_kb "$gw_pid")" >>"$work/rss.tsv"
    say "$loaded queued, $(python3 -c "print(int($batches * $ITEMS / $secs))") items/s this step, RSS $(rss_kb "$gw_pid") KB, WAL $(stat -c %s "$work/queue.db-wal" 2>/dev/null || echo 0) bytes"
done
record "load_items=$loaded load_seconds=$load_secs load_items_per_s=$(python3 -c "print(int($loaded / $load_secs))")"
[ "$(queued)" = "$loaded" ] || { say "queue holds $(queued), not $loaded"; exit 1; }

# 2. What an operator and a scraper see at that size.
sleep 2 # the checkpointer's catch-up is not part of a read's time
record "rss_kb_at_n=$(rss_kb "$gw_pid")"
did=$(ctl --json list queued --limit 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["deletions"][0]["id"])')
auth="Authorization: Bearer $DG_ADMIN_TOKEN"
lat() { record "$(probe latency "$@" | sed 's/^BENCH //')"; }
lat show_queue -- "$gw" ctl -c "$work/gateway.json" show queue
lat list_queued_1000 -- "$gw" ctl -c "$work/gateway.json" list queued --limit 1000
lat list_dead_1000 -- "$gw" ctl -c "$work/gateway.json" list dead --limit 1000
lat admin_list_queued_1000 -- GET "$ADMIN_PORT" "/admin/deletions?state=queued&limit=1000" "$auth"
lat admin_queue -- GET "$ADMIN_PORT" /admin/queue "$auth"
lat metrics -- GET "$PORT" /metrics
record "$(probe latency --secret "$DG_BENCH_CLIENT_SECRET" deletion_get -- GET "$PORT" "/v1/deletions/$did" | sed 's/^BENCH //')"

# 3. Start-up to /readyz 200, after a clean stop and after kill -9.
stop_pid "$gw_pid"
wait "$sampler" 2>/dev/null || true # it ends with the process
record "$(sed 's/^BENCH //; s/rss_kb/load_peak_rss_kb/; s/wal_bytes/load_peak_wal_bytes/; s/db_bytes/load_db_bytes/' "$work/samples.max")"
[ -z "$PG_URL" ] || record "pg_database_bytes=$(psql "$PG_URL dbname=dg_backlog" -Atc "SELECT pg_database_size(current_database())")"
start
record "readyz_after_clean_stop_s=$(probe readyz "$PORT" --since "$gw_started" | sed -n 's/.*seconds=//p')"
kill -9 "$gw_pid"
wait "$gw_pid" 2>/dev/null || true
start
record "readyz_after_kill9_s=$(probe readyz "$PORT" --since "$gw_started" | sed -n 's/.*seconds=//p')"
stop_pid "$gw_pid"

# 4. A claim at N queued against one at 1,000 queued. On PostgreSQL the
# small queue is a second database, and the wall time is what compares
# (the claim runs in the server, not in claim_probe).
say "claims at $loaded and at 1000 queued"
if [ -z "$PG_URL" ]; then
    big=$("$root/$BUILD/claim_probe" "$work/queue.db" 200 | sed 's/^BENCH //')
    small_dir=$(mktemp -d "$work/small.XXXXXX")
    small=$("$root/$BUILD/claim_probe" "$small_dir/queue.db" 200 1000 | sed 's/^BENCH //')
    rm -rf "$small_dir"
else
    big=$(CLAIM_PROBE_PG_URL="$PG_URL dbname=dg_backlog" "$root/$BUILD/claim_probe" - 200 |
        sed 's/^BENCH //')
    psql "$PG_URL dbname=postgres" -qc "DROP DATABASE IF EXISTS dg_claim_small WITH (FORCE)" \
        -c "CREATE DATABASE dg_claim_small" >/dev/null
    small=$(CLAIM_PROBE_PG_URL="$PG_URL dbname=dg_claim_small" "$root/$BUILD/claim_probe" - 200 1000 |
        sed 's/^BENCH //')
    psql "$PG_URL dbname=postgres" -qc "DROP DATABASE dg_claim_small WITH (FORCE)" >/dev/null
fi
record "$(echo "$big" | sed 's/\([a-z_0-9]*\)=/claim_at_n_\1=/g')"
record "$(echo "$small" | sed 's/\([a-z_0-9]*\)=/claim_at_1k_\1=/g')"

# 5. Draining at a configured rate r, from the backlog, paused at start.
for r in $RATES; do
    config "$r"
    start
    probe readyz "$PORT" --since "$gw_started" >/dev/null
    sim_reset
    ctl resume >/dev/null
    sleep 2 # the first second's burst is the limiter's allowance, not its rate
    d0=$(curl -sf --cacert "$sim_ca" "$sim_url/_sim/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["deletes"])')
    t0=$(date +%s.%N)
    sleep "$DRAIN_SECONDS"
    d1=$(curl -sf --cacert "$sim_ca" "$sim_url/_sim/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["deletes"])')
    t1=$(date +%s.%N)
    ctl pause >/dev/null
    stop_pid "$gw_pid"
    record "drain_rate_configured=$r drain_rate_measured=$(python3 -c "print('%.2f' % (($d1 - $d0) / ($t1 - $t0)))")"
done

[ -n "${BENCH_KEEP:-}" ] || rm -f "$work"/queue.db* "$work"/audit.jsonl*
echo "$work"
