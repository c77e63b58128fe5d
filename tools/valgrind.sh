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
for t in "$build"/tests/unit_test_* "$build"/plugins/*/plugin_test_* "$build"/plugin_test_*; do
    [ -x "$t" ] || continue
    echo "valgrind: $(basename "$t")"
    "${vg[@]}" "$t" --jobs 1 >/dev/null 2>"$build/valgrind-$(basename "$t").log" ||
        { fail=1; echo "valgrind: $(basename "$t") FAILED:"; tail -n 40 "$build/valgrind-$(basename "$t").log"; }
done
echo "valgrind: e2e smoke with perkhubd under valgrind"
PH_DAEMON_WRAPPER="${vg[*]}" "$build/tests/e2e_test_smoke" --jobs 1 || fail=1
# supplier orders: the I/O engine, fulfil's attempts and timers, callbacks of the
# writer and the I/O thread, a restart that resumes an attempt
echo "valgrind: e2e supplier edges with perkhubd under valgrind"
PH_DAEMON_WRAPPER="${vg[*]}" "$build/tests/e2e_test_supply_edges" --jobs 1 || fail=1
exit $fail
