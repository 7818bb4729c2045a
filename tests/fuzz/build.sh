#!/bin/sh
# build.sh: builds the libFuzzer targets against the gateway's own sources
# (instrumented) and runs each for a while: every parser of outside input.
#
#   tests/fuzz/build.sh [SECONDS]      (default 60 per target)
#
#   fuzz_webhook          webhook bodies and both verifiers
#   fuzz_erasure          internal erasure bodies
#   fuzz_json_outline     the strict JSON outline (duplicate keys, depth)
#   fuzz_http_framing     request heads and chunked bodies on raw bytes
#   fuzz_config           the config file, through validation and `check`
#   fuzz_signatures       both signature header sets; sign/verify round trip
#   fuzz_upstream_answer  Extend's headers (Retry-After, X-RateLimit-Reset)
#                         and error bodies, and the retry delay from them
#
# Each target's executions are printed at its end (-print_final_stats).#
# Needs clang-14 and libclang-rt-14-dev. Binaries and corpora go to
# build-fuzz/ at the top of the tree; a crash leaves its input there too
# (crash-*), and the script exits non-zero.
set -eu

seconds=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${DG_FUZZ_DIR:-$top/build-fuzz}
cc=${CC:-clang-14}

mkdir -p "$out"
flags="-std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DDG_VERSION=\"fuzz\" -I$top/gateway"
libs="$(pkg-config --cflags --libs jansson libcrypto libcurl libevent) -lm"
core="$top/gateway/verify.c $top/gateway/webhook.c $top/gateway/erasure.c $top/gateway/json_body.c
      $top/gateway/resource.c $top/gateway/util.c $top/gateway/http_framing.c
      $top/gateway/config.c $top/gateway/config_schema.c $top/gateway/config_secret.c
      $top/gateway/base_url.c $top/gateway/hmac.c $top/gateway/retry.c $top/gateway/upstream.c
      $top/gateway/log.c"

status=0
for target in fuzz_webhook fuzz_erasure fuzz_json_outline fuzz_http_framing fuzz_config \
    fuzz_signatures fuzz_upstream_answer; do
    # shellcheck disable=SC2086
    $cc $flags -o "$out/$target" "$here/$target.c" $core $libs
    mkdir -p "$out/corpus_$target"
    echo "== $target: ${seconds}s"
    # New inputs go to the first corpus directory; the seeds stay as they are.
    (cd "$out" && "./$target" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
        -dict="$here/json.dict" -print_final_stats=1 \
        "corpus_$target" "$here/seeds/$target") || status=1
done
exit $status
