#!/usr/bin/env bash
# all.sh: `make bench`. Every benchmark in one run, then bench/RESULTS.md
# and the plots in bench/plots/ (results.py, gnuplot):
#
#   1. ingest at full load (wrk flat out, 64 connections) and at half load
#      (each connection paced to half its target's warm-up rate): gateway,
#      Node SDK peer (memory and SQLite queue), evhttp hello-world; CPU per
#      10,000 accepted requests and peak RSS per target        run.sh
#   2. throughput against connections (1, 4, 16, 64, 256)        run.sh
#   3. drain and accept-to-DELETE latency against extend-sim     drain.sh
#   4. the backlog: N queued through the API, RSS against queued
#      jobs, operator reads, start-up, claims, drain at a rate   backlog.sh
#   5. bulk ingest beside the storage limit                      bulk.sh
#
# Every step interleaves its targets in rounds and reports medians.
# BENCH_QUICK=1 makes every step short (one round, seconds, 100,000 queued)
# to check the whole chain in a few minutes; its figures are not the
# ones to quote. BENCH_STEPS ("ingest half connections drain backlog
# bulk") picks steps. Other knobs are each script's own. Output:
# bench/RESULTS.md, bench/plots/*.png, raw data in bench/out/all.*/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
STEPS="${BENCH_STEPS:-ingest half connections drain backlog bulk}"
QUICK="${BENCH_QUICK:-}"
mkdir -p "$root/bench/out"
work="$(mktemp -d "$root/bench/out/all.XXXXXX")"
BUILD="${BENCH_BUILD:-build-bench}"
start=$(date +%s)

step() { echo "bench: [$(($(date +%s) - start)) s] $*" >&2; }
if [ -n "$QUICK" ]; then
    rounds=1 dur=4 warm=2 sweep_dur=3 drain_n=3000 lat_s=5 backlog_n=100000 backlog_drain=10
    bulk_s=5 bulk_conns=16
else
    rounds=3 dur=10 warm=3 sweep_dur=6 drain_n=20000 lat_s=10 backlog_n=1000000 backlog_drain=30
    bulk_s=10 bulk_conns="8 32"
fi
targets="${BENCH_TARGETS:-hello peer-memory peer-sqlite gateway}"
command -v node >/dev/null || targets=$(echo " $targets " | sed 's/ peer-[a-z]*//g')

step "building into $BUILD (Release)"
cmake -S "$root" -B "$root/$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/$BUILD" -j "${BENCH_JOBS:-2}" >/dev/null
export BENCH_NO_BUILD=1
case " $targets " in *" peer-"*) "$root/bench/peer-setup.sh" ;; esac
# run.sh and drain.sh build and set up the peer themselves: both are quick
# once done, so they are left to.

# A step that fails is reported and the rest still run; all.sh exits 1.
# run.sh and drain.sh also exit 1 when one of their own checks is missed
# (their tables say which): with the table written, that is not a failure.
failed=""
missed=""
run_step() { # NAME TABLE COMMAND...
    local name=$1 table=$2
    shift 2
    step "$name"
    if ! "$@"; then
        if [ -s "$table" ]; then
            missed="$missed $name,"
            step "$name: done, a check of its own missed (see its table)"
        else
            failed="$failed $name,"
            step "$name: failed (its figures may be partial)"
        fi
    fi
}

for s in $STEPS; do
    case "$s" in
    ingest)
        run_step "ingest, full load" "$work/ingest-full.md" env BENCH_ROUNDS=$rounds BENCH_DURATION=$dur BENCH_WARMUP=$warm \
            BENCH_TARGETS="$targets" BENCH_WORK="$work/ingest-full" BENCH_REPORT="$work/ingest-full.md" \
            "$root/bench/run.sh" >/dev/null
        ;;
    half)
        run_step "ingest, half load" "$work/ingest-half.md" env BENCH_ROUNDS=$rounds BENCH_DURATION=$dur BENCH_WARMUP=$warm \
            BENCH_TARGETS="$targets" BENCH_LOAD_FRACTION=0.5 BENCH_WORK="$work/ingest-half" \
            BENCH_REPORT="$work/ingest-half.md" "$root/bench/run.sh" >/dev/null
        ;;
    connections)
        for c in 1 4 16 64 256; do
            # wrk needs a connection per thread at least.
            threads=2
            [ "$c" -lt 2 ] && threads=1
            run_step "throughput at $c connection(s)" "$work/conns-$c.md" env BENCH_ROUNDS=$rounds BENCH_DURATION=$sweep_dur \
                BENCH_WARMUP=$warm BENCH_TARGETS="$targets" BENCH_CONNECTIONS=$c BENCH_THREADS=$threads \
                BENCH_WORK="$work/conns-$c" BENCH_REPORT="$work/conns-$c.md" "$root/bench/run.sh" >/dev/null
        done
        ;;
    drain)
        run_step "drain and accept-to-DELETE latency" "$work/drain.md" env BENCH_ROUNDS=$rounds BENCH_DRAIN_N=$drain_n \
            BENCH_LAT_SECONDS=$lat_s BENCH_DRAIN_TARGETS="$(echo "$targets" | sed 's/hello//')" \
            BENCH_WORK="$work/drain" BENCH_REPORT="$work/drain.md" "$root/bench/drain.sh" >/dev/null
        ;;
    backlog)
        run_step "backlog of $backlog_n" "" env BENCH_BACKLOG_N=$backlog_n BENCH_BACKLOG_WORK="$work/backlog" \
            BENCH_BACKLOG_DRAIN_SECONDS=$backlog_drain "$root/bench/backlog.sh" >/dev/null
        ;;
    bulk)
        run_step "bulk ingest" "" env BENCH_BULK_ROUNDS=$rounds BENCH_BULK_SECONDS=$bulk_s \
            BENCH_BULK_CONNS="$bulk_conns" BENCH_BULK_WORK="$work/bulk" "$root/bench/bulk.sh" >/dev/null
        ;;
    *) echo "bench: unknown step $s" >&2 ;;
    esac
done

step "writing bench/RESULTS.md and bench/plots/"
python3 "$root/bench/results.py" "$work" --out "$root/bench/RESULTS.md" --plots "$root/bench/plots" \
    ${QUICK:+--quick} ${failed:+--failed "${failed%,}"} ${missed:+--missed "${missed%,}"}
step "done: bench/RESULTS.md (raw data in $work)"
[ -z "$failed" ] || { echo "bench: failed steps:${failed%,}" >&2; exit 1; }
