#!/bin/sh
# run.sh: one end-to-end run with every gateway process under valgrind
# (memcheck): the ingest tests and the HTTP abuse tests (framing,
# pipelining, refusals, the connection cap), which exercise the
# connection filter, the queue and the audit log. Fails on any memcheck
# error or a definite/indirect leak in any process that exited normally.
#
#   tests/valgrind/run.sh BUILD_DIR
set -eu

build=${1:?usage: run.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
command -v valgrind >/dev/null || { echo "valgrind: not installed (scripts/deps.sh test)"; exit 1; }

work=$(mktemp -d /tmp/dg-valgrind-XXXXXX)
trap 'rm -rf "$work"' EXIT
# The e2e harness runs $DG_BUILD_DIR/deletion-gateway: put valgrind there.
cat > "$work/deletion-gateway" <<WRAP
#!/bin/sh
exec valgrind --quiet --error-exitcode=99 --leak-check=full \\
    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \\
    --log-file="$work/vg.%p.log" "$build/deletion-gateway" "\$@"
WRAP
chmod +x "$work/deletion-gateway"
ln -s "$build/extend-sim" "$work/extend-sim"

# Every step runs tens of times slower under memcheck: so do the time-outs.
export DG_BUILD_DIR="$work" DG_SOURCE_DIR="$top" DG_START_TIMEOUT=90 DG_TEST_TIMEOUT_SCALE=5
status=0
python3 "$top/tests/e2e/test_ingest.py" test_signed_webhook_is_queued_with_run_and_file \
    test_bad_input_gets_stable_json_errors_and_queues_nothing || status=1
python3 "$top/tests/e2e/test_http_abuse.py" test_each_framing_rule_is_refused_in_json_and_nothing_after_it_runs \
    test_pipelined_requests_are_answered_in_order_and_a_bad_one_ends_the_connection \
    test_oversized_heads_urls_bodies_and_expect_get_json_errors \
    test_connection_cap_sheds_the_slowest_unfinished_request || status=1

logs=$(ls "$work"/vg.*.log 2>/dev/null | wc -l)
if [ "$logs" -eq 0 ]; then
    echo "valgrind: no process ran under valgrind"
    exit 1
fi
# Only the gateway's own processes log here (extend-sim is not wrapped);
# a log with content is an error report.
bad=0
for f in "$work"/vg.*.log; do
    if [ -s "$f" ]; then
        echo "---- $f"
        cat "$f"
        bad=1
    fi
done
echo "valgrind: $logs gateway processes checked, $([ $bad -eq 0 ] && echo "no errors, no leaks" || echo "ERRORS")"
[ $bad -eq 0 ] || status=1
exit $status
