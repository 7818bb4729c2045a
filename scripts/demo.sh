#!/usr/bin/env bash
# With `make run` going in another shell: sends one signed Extend webhook
# and one signed internal erasure request, then shows the queue.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
set -a
# shellcheck disable=SC1091
. var/dev-secrets.env
set +a

# send URL BODY SIGN-ARGS...: signs BODY with `deletion-gateway sign` and posts it.
send() {
    local url=$1 body=$2 line
    local -a headers=()
    shift 2
    while IFS= read -r line; do headers+=(-H "$line"); done \
        < <(printf %s "$body" | "$build/deletion-gateway" sign "$@")
    curl -sS "$url" -H 'content-type: application/json' "${headers[@]}" --data-binary "$body"
}

n=$(date +%s)
send http://127.0.0.1:8080/webhooks/extend \
    "{\"eventId\":\"evt_demo$n\",\"eventType\":\"extract_run.processed\",\"payload\":{\"object\":\"extract_run\",\"id\":\"exr_demo$n\",\"status\":\"PROCESSED\"}}" \
    extend --secret env:EXTEND_WEBHOOK_SECRET
send http://127.0.0.1:8080/v1/deletions \
    "{\"resource\":\"file\",\"id\":\"file_demo$n\",\"reason\":\"demo erasure\"}" \
    internal --secret env:DG_CRM_SECRET
sleep 1
"$build/deletion-gateway" ctl -c config/dev.json show queue
