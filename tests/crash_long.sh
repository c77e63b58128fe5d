#!/bin/sh
# crash_long.sh BUILD_DIR [CYCLES] — the crash test (tests/e2e/test_crash.c) for many
# kill -9 cycles: perkhubd is killed at random moments while clients order and import,
# restarted on the same data, and checked after every restart (docs/design.md rule 1).
#
# Builds nothing: BUILD_DIR must already hold perkhubd, perkctl, the plugins, the
# supplier simulator (tools/supsim, which plays the recharge supplier) and
# tests/e2e_test_crash (cmake --build BUILD_DIR). CYCLES defaults to 500; `make soak`
# runs 1,000 on the release build. At the end it prints the figures: cycles, restarts,
# time, orders, imports and recharges done (and how those in flight at a kill resolved),
# store checks, and the lost, changed, doubled and partial counts the checks found (a run
# that finds one fails at that cycle instead, saying which and where).
# The whole output is kept in BUILD_DIR/crash_long.log.
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
for f in "$build/perkhubd" "$build/perkctl" "$build/tools/supsim/supsim" "$test_bin"; do
    [ -x "$f" ] || { echo "$0: $f is missing; build first: cmake --build $build" >&2; exit 2; }
done
[ -d "$build/plugins" ] || { echo "$0: $build/plugins is missing; build first" >&2; exit 2; }

src=$(cd "$(dirname "$0")/.." && pwd)
log=$build/crash_long.log
echo "crash_long: $cycles kill -9 cycles with $build/perkhubd (full output: $log)"
start=$(date +%s)
status=0
# The test's output goes to the log and, progress lines (every 50 kills) and failures
# included, to the terminal.
{
    PH_CRASH_CYCLES=$cycles \
    PH_BUILD_DIR=$build \
    PH_SOURCE_DIR=$src \
    PH_PLUGIN_DIR=$build/plugins \
    PH_PERKHUBD=$build/perkhubd \
    PH_PERKCTL=$build/perkctl \
    PH_SUPSIM=$build/tools/supsim/supsim \
        "$test_bin" --jobs 1 --verbose 2>&1 || echo "crash_long-status: $?"
} | tee "$log"
rc=$(sed -n 's/^crash_long-status: //p' "$log" | tail -1)
[ -z "$rc" ] || status=$rc
secs=$(($(date +%s) - start))

# The figures: what was done, and what the checks found lost, doubled or half-done.
fig=$(sed -n 's/.*crash-figures: //p' "$log" | tail -1)
if [ -n "$fig" ] && [ $status -eq 0 ]; then
    get() { printf '%s\n' "$fig" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    c=$(get cycles)
    echo "crash_long: figures (seed $(get seed))"
    printf '  %-34s %s\n' \
        "kill -9 cycles" "$c (+$(get startup_kills) more during start-up)" \
        "restarts" "$(get restarts), each followed by --check-store and the checks" \
        "time" "$(get seconds) s ($(awk -v c="$c" -v s="$(get seconds)" 'BEGIN { printf "%.2f", s / c }') s per cycle)" \
        "orders stored" "$(get orders) ($(get orders_acked_under_load) acknowledged under load)" \
        "order retries replayed under load" "$(get retries_replayed)" \
        "orders in flight at a kill" "$(get in_flight_done) had been done, $(get in_flight_new) done on re-send, $(get in_flight_out_of_stock) out of stock" \
        "order re-reads (codes compared)" "$(get orders_verified)" \
        "imports acknowledged under load" "$(get imports_acked) (+$(get topups) top-ups between cycles)" \
        "imports in flight at a kill" "$(get imports_in_flight): $(get imports_were_stored) had been stored whole, $(get imports_stored_on_resend) stored on re-send" \
        "codes imported / issued" "$(get codes_imported) / $(get codes_issued)" \
        "store checks passed" "$(get store_checks)" \
        "lost or changed orders" "$(get lost_orders) / $(get changed_orders)" \
        "codes issued twice" "$(get doubled_codes)" \
        "partial imports" "$(get partial_imports)" \
        "recharges ordered" "$(get recharges) ($(get recharges_in_flight) in flight at a kill, re-sent)" \
        "recharges settled" "$(get recharges_succeeded) succeeded, $(get recharges_failed) failed; the supplier performed $(get recharges_performed)" \
        "recharges sent twice / lost" "$(get recharges_doubled) / $(get recharges_lost)"
else
    last=$(grep -E '^crash: [0-9]+/[0-9]+ kills' "$log" | tail -1)
    echo "crash_long: no figures; last progress: ${last:-none (before kill 50)}"
fi
echo "crash_long: $([ $status -eq 0 ] && echo passed || echo FAILED) after $secs s"
exit $status
