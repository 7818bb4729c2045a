#!/usr/bin/env bash
# Installs the Debian 12 packages the build, the tests and `make run` need,
# only those missing, so a fresh machine (as root) needs nothing else.
# Usage: scripts/deps.sh [build|test|bench|container|fuzz]...   (default: test)
set -euo pipefail

build_pkgs="build-essential cmake pkg-config libevent-dev libssl-dev libjansson-dev
  libsqlite3-dev libcurl4-openssl-dev libpq-dev openssl ca-certificates python3"
test_pkgs="$build_pkgs python3 python3-jsonschema python3-yaml curl sqlite3 prometheus docker.io debootstrap
  postgresql-15 valgrind mandoc clang-tidy cppcheck"
bench_pkgs="$test_pkgs wrk hyperfine nodejs npm python3-setuptools eatmydata gnuplot-nox linux-perf"
container_pkgs="$test_pkgs docker.io debootstrap"
fuzz_pkgs="$build_pkgs clang-14 libclang-rt-14-dev"

want=""
[ $# -eq 0 ] && set -- test
for kind in "$@"; do
    case "$kind" in
    build) want="$want $build_pkgs" ;;
    test) want="$want $test_pkgs" ;;
    bench) want="$want $bench_pkgs" ;;
    container) want="$want $container_pkgs" ;;
    fuzz) want="$want $fuzz_pkgs" ;;
    *) echo "deps.sh: unknown kind '$kind'" >&2; exit 2 ;;
    esac
done

missing=""
for p in $want; do
    # NodeSource's nodejs ships its own npm and conflicts with Debian's.
    [ "$p" = npm ] && command -v npm >/dev/null && continue
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing packages:$missing (run as root, or install them)" >&2
    exit 1
fi
echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
