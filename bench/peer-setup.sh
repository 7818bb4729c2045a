#!/usr/bin/env bash
# Prepares the Node.js peer the benchmarks compare against: copies
# /work/shared/peers/node-sdk-gateway (or $PEER_SRC) to bench/out/peer and
# installs its dependencies there. better-sqlite3 compiles from source
# (python3, make, g++; about 90 s), so a ready copy is kept between runs.
# Usage: bench/peer-setup.sh [--force]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="${PEER_SRC:-/work/shared/peers/node-sdk-gateway}"
dst="$here/out/peer"

if [ "${1:-}" != "--force" ] && [ -f "$dst/.ready" ] &&
    cmp -s "$src/server.js" "$dst/server.js" &&
    cmp -s "$src/package.json" "$dst/package.json"; then
    exit 0
fi
[ -f "$src/server.js" ] || { echo "peer-setup: no peer at $src (set PEER_SRC)" >&2; exit 1; }
for tool in node npm python3 make g++; do
    command -v "$tool" >/dev/null || { echo "peer-setup: $tool is missing (scripts/deps.sh bench)" >&2; exit 1; }
done

mkdir -p "$dst"
rm -f "$dst/.ready"
cp "$src/server.js" "$src/package.json" "$dst/"
[ -f "$src/package-lock.json" ] && cp "$src/package-lock.json" "$dst/"
echo "peer-setup: npm install in $dst (better-sqlite3 builds from source)" >&2
(cd "$dst" && npm install --no-audit --no-fund --loglevel=error >&2)
# better-sqlite3 is an optional dependency: a failed build would silently
# leave QUEUE=sqlite measuring nothing, so check it loads.
(cd "$dst" && node -e 'require("better-sqlite3"); require("extend-ai")') ||
    { echo "peer-setup: better-sqlite3 or extend-ai did not install" >&2; exit 1; }
touch "$dst/.ready"
