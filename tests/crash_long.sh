#!/bin/sh
# crash_long.sh BUILD_DIR [CYCLES] — the crash test (tests/e2e/test_crash.c) for many
# kill -9 cycles: perkhubd is killed at random moments while clients order and import,
# restarted on the same data, and checked after every restart (docs/design.md rule 1).
#
# Builds nothing: BUILD_DIR must already hold perkhubd, the plugins and
# tests/e2e_test_crash (cmake --build BUILD_DIR). CYCLES defaults to 500.
# PH_CRASH_SEED, if set, repeats an earlier run (each run prints its seed).
# A release build (no sanitizers) runs the most cycles per minute; an ASan build
# also catches memory errors during recovery.
set -eu

usage() {
    echo "usage: $0 BUILD_DIR [CYCLES]" >&2
    exit 2
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
build=$(cd "$1" 2>/dev/null && pwd) || { echo "$0: no such directory: $1" >&2; exit 2; }
cycles=${2:-500}
case $cycles in
'' | *[!0-9]*) echo "$0: CYCLES must be a positive number, not '$cycles'" >&2; exit 2 ;;
esac
[ "$cycles" -gt 0 ] || usage

test_bin=$build/tests/e2e_test_crash
for f in "$build/perkhubd" "$build/perkctl" "$test_bin"; do
    [ -x "$f" ] || { echo "$0: $f is missing; build first: cmake --build $build" >&2; exit 2; }
done
[ -d "$build/plugins" ] || { echo "$0: $build/plugins is missing; build first" >&2; exit 2; }

src=$(cd "$(dirname "$0")/.." && pwd)
echo "crash_long: $cycles kill -9 cycles with $build/perkhubd"
start=$(date +%s)
status=0
PH_CRASH_CYCLES=$cycles \
PH_BUILD_DIR=$build \
PH_SOURCE_DIR=$src \
PH_PLUGIN_DIR=$build/plugins \
PH_PERKHUBD=$build/perkhubd \
PH_PERKCTL=$build/perkctl \
    "$test_bin" --jobs 1 --verbose || status=$?
echo "crash_long: $([ $status -eq 0 ] && echo passed || echo FAILED) after $(($(date +%s) - start)) s"
exit $status
