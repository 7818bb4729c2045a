#!/usr/bin/env bash
# tests/container/run.sh: proves the container image works, end to end.
#
#   tests/container/run.sh            (as root; ctest runs it in CI)
#   DG_CONTAINER_TEST_IMAGE=TAG       (default deletion-gateway:test)
#
# 1. Makes sure a Docker engine runs (installs docker.io and debootstrap
#    and starts dockerd when missing) and that the base image
#    dg-bookworm-base exists: no image registry is reachable, so Debian 12
#    is bootstrapped once into a folder and imported, then kept.
# 2. Builds the image from the Dockerfile on that base.
# 3. Runs the simulator and the gateway the way docker-compose.yml does
#    (gateway in the simulator's network namespace on a user-defined
#    network, queue on a named volume, secrets from the environment).
# 4. From the host: a signed Extend webhook, a signed internal request and
#    a signed internal request for later; waits until the simulator has
#    received both immediate DELETEs.
#    The gateway's config is the compose one on port 8088, not the image's
#    8080, so the HEALTHCHECK is proved to probe where the config says.
# 5. Checks the gateway runs as non-root, the HEALTHCHECK turns healthy,
#    `docker stop` ends it with exit code 0, and a restart on the same
#    volume still has every queue row, the postponed deletion included.
# Prints the image size and the time taken. Never skips: a missing engine
# is an error.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BASE_IMAGE=dg-bookworm-base
# Another tag keeps runs from several checkouts apart.
IMAGE=${DG_CONTAINER_TEST_IMAGE:-deletion-gateway:test}
P=dgct-$$
WORK=$(mktemp -d /tmp/dg-container-test.XXXXXX)
T0=$(date +%s)

EXTEND_API_TOKEN=sim-ct-token
EXTEND_WEBHOOK_SECRET=wss_container_test_secret
DG_CRM_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
DG_AUDIT_KEY=container-test-audit-key
DG_ADMIN_TOKEN=container-test-admin-token

say() { echo "container-test: $*" >&2; }

cleanup() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        say "FAILED; container logs follow"
        for c in "$P-gw" "$P-sim"; do
            echo "----- $c" >&2
            docker logs --tail 60 "$c" >&2 2>&1 || true
        done
    fi
    docker rm -f "$P-gw" "$P-sim" >/dev/null 2>&1 || true
    docker network rm "$P-net" >/dev/null 2>&1 || true
    docker volume rm "$P-data" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

fail() {
    say "FAIL: $*"
    echo "0 passed, 1 failed"
    exit 1
}

# ---- 1. engine and base image ----

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    [ "$(id -u)" -eq 0 ] || fail "docker.io and debootstrap are missing and this is not root"
    say "installing docker.io and debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        docker.io debootstrap >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    say "starting dockerd (log in /tmp/dockerd.log)"
    # Detached from this script's output so ctest does not wait on it; it
    # stays up for later runs, which then find the base image cached.
    setsid dockerd >/tmp/dockerd.log 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        [ -S /var/run/docker.sock ] && docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || fail "dockerd did not start: $(tail -5 /tmp/dockerd.log)"
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "bootstrapping Debian 12 into $BASE_IMAGE (once; a few minutes)"
    root="$WORK/rootfs"
    debootstrap --variant=minbase bookworm "$root" >"$WORK/debootstrap.log" 2>&1 ||
        fail "debootstrap: $(tail -5 "$WORK/debootstrap.log")"
    # Like the official slim image: the same package sources as this
    # machine (updates and security included), no downloaded packages or
    # lists, no documentation installed by later apt-get runs.
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        rm -f "$root/etc/apt/sources.list"
        cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/"
    fi
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
    find "$root/usr/share/doc" -type f ! -name copyright -delete
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
fi

# ---- 2. the image ----

say "building $IMAGE"
build_log="$WORK/build.log"
# The classic builder: it needs no buildx plugin and reads the same file.
if ! DOCKER_BUILDKIT=0 docker build --build-arg BASE="$BASE_IMAGE" -t "$IMAGE" "$SRC" \
    >"$build_log" 2>&1; then
    tail -40 "$build_log" >&2
    fail "docker build"
fi
# The image this tag named before is now untagged: drop it, or every run
# leaves one behind.
docker image prune -f >/dev/null
T_BUILT=$(date +%s)

# ---- 3. simulator and gateway ----

certs="$WORK/certs"
"$SRC/certs/make-dev-certs.sh" "$certs" >/dev/null

# The compose config on another port than the image's default: a probe
# that ignored the mounted config would find nothing on 8080.
GW_INNER_PORT=8088
python3 - "$SRC/config/gateway.compose.json" "$WORK/gateway.json" "$GW_INNER_PORT" <<'PYEOF'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["listen"]["port"] = int(sys.argv[3])
json.dump(cfg, open(sys.argv[2], "w"), indent=2)
PYEOF
chmod 0644 "$WORK/gateway.json"

docker network create "$P-net" >/dev/null
docker volume create "$P-data" >/dev/null

# The simulator owns the network namespace; the gateway joins it and
# reaches "Extend" at https://localhost:8443, the development certificate's
# name. Both ports are published on loopback only.
docker run -d --name "$P-sim" --network "$P-net" --user 0:0 --no-healthcheck \
    -p "127.0.0.1::$GW_INNER_PORT" -p 127.0.0.1::8443 \
    -v "$certs/server.pem:/certs/server.pem:ro" -v "$certs/server.key:/certs/server.key:ro" \
    --entrypoint extend-sim "$IMAGE" \
    --address 0.0.0.0 --port 8443 --cert /certs/server.pem --key /certs/server.key \
    --token "$EXTEND_API_TOKEN" \
    >/dev/null

start_gateway() {
    # The image's own HEALTHCHECK command, polled faster to keep this short.
    docker run -d --name "$P-gw" --network "container:$P-sim" \
        --health-interval 2s --health-start-period 2s \
        -v "$P-data:/var/lib/deletion-gateway" \
        -v "$WORK/gateway.json:/etc/deletion-gateway/gateway.json:ro" \
        -v "$certs/ca.pem:/etc/deletion-gateway/extend-ca.pem:ro" \
        -e EXTEND_API_TOKEN="$EXTEND_API_TOKEN" -e EXTEND_WEBHOOK_SECRET="$EXTEND_WEBHOOK_SECRET" \
        -e DG_CRM_SECRET="$DG_CRM_SECRET" -e DG_AUDIT_KEY="$DG_AUDIT_KEY" \
        -e DG_ADMIN_TOKEN="$DG_ADMIN_TOKEN" \
        "$IMAGE" >/dev/null
}
start_gateway

GW_PORT=$(docker port "$P-sim" "$GW_INNER_PORT/tcp" | head -1 | sed 's/.*://')
SIM_PORT=$(docker port "$P-sim" 8443/tcp | head -1 | sed 's/.*://')

wait_healthy() {
    local status=""
    for _ in $(seq 1 60); do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$P-gw" 2>/dev/null || true)
        [ "$status" = healthy ] && return 0
        [ "$(docker inspect -f '{{.State.Running}}' "$P-gw")" = true ] || break
        sleep 1
    done
    fail "gateway health is '$status', not healthy"
}

# Signs with the image's own `deletion-gateway sign`: what the host sends
# is exactly what an operator would produce with the shipped binary.
sign() {
    docker run --rm -i --no-healthcheck "$IMAGE" sign "$@"
}

# ---- 4. requests from the host ----

now=$(date +%s)
later=$(date -u -d "@$((now + 86400))" +%Y-%m-%dT%H:%M:%SZ)
printf '{"eventId":"evt_ct_%s","eventType":"extract_run.processed","payload":{"object":"extract_run","id":"exr_ct_webhook_%s","status":"PROCESSED"}}' \
    "$$" "$$" >"$WORK/webhook.json"
printf '{"resource":"extract_run","id":"exr_ct_internal_%s","reason":"container test"}' \
    "$$" >"$WORK/internal.json"
printf '{"resource":"extract_run","id":"exr_ct_later_%s","reason":"container test, postponed","not_before":"%s"}' \
    "$$" "$later" >"$WORK/later.json"
sign extend --secret "$EXTEND_WEBHOOK_SECRET" <"$WORK/webhook.json" >"$WORK/webhook.hdr" ||
    fail "sign extend"
sign internal --secret "$DG_CRM_SECRET" --id "msg_ct_now_$$" <"$WORK/internal.json" \
    >"$WORK/internal.hdr" || fail "sign internal"
sign internal --secret "$DG_CRM_SECRET" --id "msg_ct_later_$$" <"$WORK/later.json" \
    >"$WORK/later.hdr" || fail "sign internal"

export GW_PORT SIM_PORT WORK
export CA="$certs/ca.pem" PID=$$
python3 - <<'PYEOF' || fail "requests through the gateway"
import json, os, ssl, sys, time, urllib.request, urllib.error

work, gw, sim = os.environ["WORK"], os.environ["GW_PORT"], os.environ["SIM_PORT"]
pid = os.environ["PID"]

def headers(path):
    h = {"Content-Type": "application/json"}
    for line in open(path):
        if ":" in line:
            k, v = line.split(":", 1)
            h[k.strip()] = v.strip()
    return h

def call(method, url, body=None, hdrs=None, ctx=None):
    req = urllib.request.Request(url, data=body, method=method, headers=hdrs or {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()

# The gateway may still be opening its queue.
for _ in range(60):
    try:
        if call("GET", f"http://127.0.0.1:{gw}/healthz")[0] == 200:
            break
    except OSError:
        pass
    time.sleep(0.5)
else:
    sys.exit("gateway /healthz never answered 200")

sent = {}
for name, path in (("webhook", "/webhooks/extend"), ("internal", "/v1/deletions"),
                   ("later", "/v1/deletions")):
    body = open(f"{work}/{name}.json", "rb").read()
    status, text = call("POST", f"http://127.0.0.1:{gw}{path}", body, headers(f"{work}/{name}.hdr"))
    print(f"container-test: POST {path} ({name}) -> {status} {text.strip()}", file=sys.stderr)
    if status not in (200, 202):
        sys.exit(f"{name}: expected 200/202, got {status}")
    sent[name] = json.loads(text)
json.dump(sent, open(f"{work}/answers.json", "w"))

ctx = ssl.create_default_context(cafile=os.environ["CA"])
want = {f"/extract_runs/exr_ct_webhook_{pid}", f"/extract_runs/exr_ct_internal_{pid}"}
seen = set()
deadline = time.time() + 60
while time.time() < deadline:
    status, text = call("GET", f"https://localhost:{sim}/_sim/requests", ctx=ctx)
    if status == 200:
        seen = {r.get("path") for r in json.loads(text)}
        if want <= seen:
            break
    time.sleep(0.5)
else:
    sys.exit(f"simulator never received {sorted(want - seen)}; got {sorted(seen)}")
if f"/extract_runs/exr_ct_later_{pid}" in seen:
    sys.exit("the postponed deletion was sent before its not_before")
print("container-test: simulator received both DELETEs", file=sys.stderr)
PYEOF

# ---- 5. user, health, stop, restart ----

uid=$(docker exec "$P-gw" id -u)
[ "$uid" != 0 ] || fail "the gateway runs as root"
say "gateway runs as uid $uid"

wait_healthy
say "HEALTHCHECK reports healthy"

# Row counts of every table in the queue database, read on the host from
# the volume while the gateway is stopped.
queue_rows() {
    local db
    db="$(docker volume inspect -f '{{.Mountpoint}}' "$P-data")/queue.db"
    python3 - "$db" <<'PYEOF'
import sqlite3, sys
con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
counts = []
for t in tables:
    n = con.execute('SELECT count(*) FROM "%s"' % t).fetchone()[0]
    counts.append("%s=%d" % (t, n))
print(" ".join(counts))
PYEOF
}

stop_gateway() {
    docker stop -t 30 "$P-gw" >/dev/null
    code=$(docker inspect -f '{{.State.ExitCode}}' "$P-gw")
    [ "$code" = 0 ] || fail "gateway exited with $code on SIGTERM, not 0"
}

stop_gateway
say "docker stop: exit code 0"
before=$(queue_rows)
say "queue rows after stop: $before"
grep -q '[1-9]' <<<"$before" || fail "the queue database has no rows at all"

docker rm "$P-gw" >/dev/null
start_gateway
wait_healthy
stop_gateway
after=$(queue_rows)
say "queue rows after restart: $after"
python3 - "$before" "$after" <<'PYEOF' || fail "queue rows lost across a restart: '$before' -> '$after'"
import sys
before = dict(kv.split("=") for kv in sys.argv[1].split())
after = dict(kv.split("=") for kv in sys.argv[2].split())
sys.exit(0 if all(int(after.get(t, -1)) >= int(n) for t, n in before.items()) else 1)
PYEOF
db="$(docker volume inspect -f '{{.Mountpoint}}' "$P-data")/queue.db"
python3 - "$db" "exr_ct_later_$$" <<'PYEOF' || fail "the postponed deletion is not in the queue after the restart"
import sqlite3, sys
con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
    cols = [r[1] for r in con.execute(f'PRAGMA table_info("{t}")')]
    for c in cols:
        if con.execute(f'SELECT 1 FROM "{t}" WHERE CAST("{c}" AS TEXT) = ?', (sys.argv[2],)).fetchone():
            sys.exit(0)
sys.exit(1)
PYEOF

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
T1=$(date +%s)
say "image $IMAGE: $size bytes ($((size / 1048576)) MiB)"
say "took $((T1 - T0)) s ($((T_BUILT - T0)) s engine, base and build; $((T1 - T_BUILT)) s containers)"
echo "1 passed, 0 failed"
