#!/usr/bin/env bash
# Static checks of the project's C sources: clang-format (.clang-format,
# applied everywhere), clang-tidy (checks in .clang-tidy, every finding an
# error) and cppcheck, which reads the build's compile_commands.json or
# the sources directly. A finding fails the run.
# Usage: scripts/lint.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: scripts/lint.sh BUILD_DIR}
[ -f "$build/compile_commands.json" ] || { echo "lint: no $build/compile_commands.json (configure first)" >&2; exit 2; }

# Formatting first: cheap, and a diff is the clearest finding.
unformatted=""
for f in "$root"/gateway/*.[ch] "$root"/tools/extend-sim/*.[ch] "$root"/tests/check.h \
    "$root"/tests/unit/*.c "$root"/tests/integration/*.c "$root"/bench/*.c; do
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || unformatted="$unformatted ${f#"$root"/}"
done
if [ -n "$unformatted" ]; then
    echo "lint: not formatted (clang-format -i):$unformatted" >&2
    exit 1
fi

# Sources of the daemon, the tools and the tests; not the fuzz drivers,
# which build with clang's own flags.
run-clang-tidy -quiet -p "$build" "^$root/(gateway|tools|bench|tests/unit|tests/integration)/.*\.c$" \
    >"$build/clang-tidy.log" 2>&1 || true
if sed "s/\x1b\[[0-9;]*m//g" "$build/clang-tidy.log" | grep -E "(warning|error): "; then
    echo "lint: clang-tidy found the above (full log: $build/clang-tidy.log)" >&2
    exit 1
fi

# cppcheck runs without the system include path (slow, and noisy about
# glibc); the few system macros the sources use come from two files.
srcs=()
for d in gateway tools bench tests/unit tests/integration; do
    [ -d "$root/$d" ] && srcs+=("$root/$d")
done
cppcheck --enable=warning,performance,portability --inline-suppr --quiet --std=c11 \
    -I "$root/gateway" --suppress=missingIncludeSystem -i "$root/tests/fuzz" -i "$root/bench/out" \
    --include=/usr/include/x86_64-linux-gnu/sys/queue.h \
    --include="$root/scripts/cppcheck-macros.h" --error-exitcode=1 "${srcs[@]}"
