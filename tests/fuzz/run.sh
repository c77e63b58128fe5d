#!/usr/bin/env bash
# tests/fuzz/run.sh — runs the libFuzzer harnesses of a PH_FUZZ build (tests/fuzz/README.md).
#
#   tests/fuzz/run.sh --short BUILD_DIR [NAME...]   make test: each harness replays its
#       committed corpus (tests/fuzz/corpus/NAME, every file once: the regression set),
#       then fuzzes for FUZZ_TEST_SECONDS (default 15) starting from it
#   tests/fuzz/run.sh --long BUILD_DIR [NAME...]    make fuzz: each harness fuzzes for
#       FUZZ_SECONDS (default 300) on a copy of its corpus kept in BUILD_DIR/fuzz/work/NAME
#       (it grows from one run to the next; the committed corpus is never written)
#
# NAME is a harness without its fuzz_ prefix (csv, config, ...); none means every one
# built. FUZZ_JOBS harnesses run at a time (default: the number of cores). New inputs
# never go to the committed corpus; a crash, leak, timeout or broken invariant leaves its
# reproducer in BUILD_DIR/fuzz/artifacts/NAME/ and fails the run, naming the file and the
# command that replays it. A harness's libFuzzer dictionary, tests/fuzz/NAME.dict, is used
# when it exists. Exit status: 0 when every harness passed, 1 otherwise, 2 on misuse.
set -euo pipefail

usage() {
    echo "usage: tests/fuzz/run.sh --short|--long BUILD_DIR [NAME...]" >&2
    exit 2
}
[ $# -ge 2 ] || usage
mode=$1
shift
case $mode in --short | --long) ;; *) usage ;; esac
build=$(cd "$1" 2>/dev/null && pwd) || {
    echo "run.sh: no such build directory: $1" >&2
    exit 2
}
shift
src=$(cd "$(dirname "$0")/../.." && pwd)
bindir=$build/tests/fuzz

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in "$src"/tests/fuzz/fuzz_*.c; do
        n=$(basename "$f" .c)
        names+=("${n#fuzz_}")
    done
fi
for n in "${names[@]}"; do
    [ -x "$bindir/fuzz_$n" ] || {
        echo "run.sh: $bindir/fuzz_$n is missing; build first (make build-fuzz)" >&2
        exit 2
    }
done

if [ "$mode" = --short ]; then
    seconds=${FUZZ_TEST_SECONDS:-15}
else
    seconds=${FUZZ_SECONDS:-300}
fi
jobs=${FUZZ_JOBS:-$(nproc)}
case "$seconds$jobs" in *[!0-9]*) echo "run.sh: FUZZ_*SECONDS and FUZZ_JOBS are numbers" >&2; exit 2 ;; esac

# What a harness that starts the daemon in process (fuzz_http) may need, as ctest gives it.
export PH_BUILD_DIR=$build PH_SOURCE_DIR=$src PH_PLUGIN_DIR=$build/plugins
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

out=$build/fuzz
mkdir -p "$out/logs"

# One harness; its whole report goes to $out/logs/NAME.log, one summary line to stdout.
run_one() {
    local n=$1 bin=$bindir/fuzz_$1 corpus=$src/tests/fuzz/corpus/$1
    local art=$out/artifacts/$n log=$out/logs/$n.log work
    local opts=(-artifact_prefix="$art/" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1)
    [ -f "$src/tests/fuzz/$n.dict" ] && opts+=(-dict="$src/tests/fuzz/$n.dict")
    rm -rf "$art"
    mkdir -p "$art" "$corpus"
    : >"$log"
    local seeds=("$corpus"/*)
    if [ "$mode" = --short ] && [ -e "${seeds[0]}" ]; then
        # the regression set: every committed input once, each on its own
        if ! "$bin" "${opts[@]}" "${seeds[@]}" >>"$log" 2>&1; then
            report_fail "$n" "$log" "$art" "a committed corpus input fails"
            return 1
        fi
    fi
    if [ "$mode" = --short ]; then
        work=$(mktemp -d "$out/work-$n.XXXXXX")
    else
        work=$out/work/$n
        mkdir -p "$work"
    fi
    local rc=0
    "$bin" "${opts[@]}" -max_total_time="$seconds" "$work" "$corpus" >>"$log" 2>&1 || rc=$?
    local runs cov
    runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' "$log" | tail -1)
    if [ $rc -ne 0 ]; then
        [ "$mode" = --short ] && rm -rf "$work"
        report_fail "$n" "$log" "$art" "fuzzing found a failure"
        return 1
    fi
    echo "fuzz: PASS $n: ${runs:-?} runs in ${seconds} s, coverage ${cov:-?}, corpus $(ls "$corpus" | wc -l) committed$([ "$mode" = --long ] && echo ", $(ls "$work" | wc -l) in $work")"
    [ "$mode" = --short ] && rm -rf "$work"
    return 0
}

report_fail() {
    local n=$1 log=$2 art=$3 what=$4 repro
    repro=$(ls -t "$art" 2>/dev/null | head -1)
    [ -z "$repro" ] || repro=$art/$repro
    # a committed input replayed on its own leaves no artifact: it is its own reproducer
    [ -n "$repro" ] || repro=$(sed -n 's/^Running: //p' "$log" | tail -1)
    echo "fuzz: FAIL $n: $what" >&2
    grep -m3 -E 'fuzz invariant broken|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY' "$log" | sed 's/^/fuzz:   /' >&2 || true
    if [ -n "$repro" ]; then
        echo "fuzz:   reproducer: $repro" >&2
        echo "fuzz:   replay: $bindir/fuzz_$n $repro" >&2
    fi
    echo "fuzz:   full report: $log" >&2
}

echo "fuzz: ${#names[@]} harnesses, $seconds s each, $jobs at a time ($mode)"
start=$(date +%s)
failed=0
pids=()
for n in "${names[@]}"; do
    while [ ${#pids[@]} -ge "$jobs" ]; do
        wait "${pids[0]}" || failed=$((failed + 1))
        pids=("${pids[@]:1}")
    done
    run_one "$n" &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p" || failed=$((failed + 1))
done
echo "fuzz: $((${#names[@]} - failed)) of ${#names[@]} harnesses passed in $(($(date +%s) - start)) s"
[ $failed -eq 0 ]
