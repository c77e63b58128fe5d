#!/usr/bin/env bash
# Runs the unit tests, and two end-to-end tests with perkhubd itself, under
# valgrind memcheck. Usage: tools/valgrind.sh BUILD_DIR (a build without sanitizers).
# Fails on any invalid access, uninitialised read or definite leak.
set -euo pipefail
build=${1:?usage: tools/valgrind.sh BUILD_DIR}
# --trace-children-skip: test_plugin_rules runs `nm` through popen (sh -c); those are
# binutils, not ours, and memcheck would make them exit 99.
vg=(valgrind --quiet --trace-children=yes --trace-children-skip='*/sh,*/nm' --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --track-origins=yes)
export PH_BUILD_DIR=$build PH_PLUGIN_DIR=$build/plugins PH_FIXTURE_PLUGIN_DIR=$build/fixture-plugins
export PH_PERKHUBD=$build/perkhubd PH_PERKCTL=$build/perkctl
# memcheck runs everything some 50 times slower: the I/O engine's scale tests then
# skip their overlap and duration figures (tests/unit/test_supplier_io.c)
export PH_SLOW_RUN=1
fail=0
# VALGRIND_TESTS (space-separated names, e.g. "unit_test_ledger plugin_test_gateway")
# runs only those. Criterion runs each test in a child that has already reported
# its result when memcheck checks for leaks at its exit, so a leak does not fail
# the test program: any memcheck report in the log ("==PID== ...") fails it.
for t in "$build"/tests/unit_test_* "$build"/plugins/*/plugin_test_* "$build"/plugin_test_*; do
    [ -x "$t" ] || continue
    if [ -n "${VALGRIND_TESTS:-}" ] && [[ " $VALGRIND_TESTS " != *" $(basename "$t") "* ]]; then
        continue
    fi
    log="$build/valgrind-$(basename "$t").log"
    echo "valgrind: $(basename "$t")"
    if ! "${vg[@]}" "$t" --jobs 1 >/dev/null 2>"$log" || grep -qE '^==[0-9]+== ' "$log"; then
        fail=1
        echo "valgrind: $(basename "$t") FAILED:"
        tail -n 40 "$log"
    fi
done
echo "valgrind: e2e smoke with perkhubd under valgrind"
PH_DAEMON_WRAPPER="${vg[*]}" "$build/tests/e2e_test_smoke" --jobs 1 || fail=1
# supplier orders: the I/O engine, fulfil's attempts and timers, callbacks of the
# writer and the I/O thread, a restart that resumes an attempt
echo "valgrind: e2e supplier edges with perkhubd under valgrind"
PH_DAEMON_WRAPPER="${vg[*]}" "$build/tests/e2e_test_supply_edges" --jobs 1 || fail=1
exit $fail
