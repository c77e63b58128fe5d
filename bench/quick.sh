#!/usr/bin/env bash
# bench/quick.sh BUILD_DIR — `make bench-quick` (issue 18, point 5): a regression guard for the
# two hot paths, in under a minute. It measures what the code costs, not how fast the box is:
#   order     perkhubd CPU per durable card-code order (POST /v1/orders, quantity 1, wrk at
#             BQ_CONNS connections): the median of BQ_ROUNDS short runs on one daemon;
#   recharge  perkhubd CPU per recharge (order in, exchange out, callback in, the durable
#             commands): bench/supplier_io.sh's steady run against the simulator, small;
# and compares each with bench/baseline.json. MISS (exit 3) when either is more than
# BQ_TOLERANCE (0.15) over its baseline; PASS (exit 0) otherwise; 1 when something was wrong.
# BQ_UPDATE=1 writes this run's figures as the new baseline instead of judging them: do it on
# the machine the guard runs on, after a change meant to move the cost, and commit the file
# with the change that explains it. Writes bench/results/quick.json.
#
# Knobs (environment):
#   BQ_ROUNDS (3)  BQ_DURATION (5)  BQ_WARMUP (2)  BQ_CONNS (64)  BQ_THREADS (2)
#   BQ_CODES (1000000)  BQ_TOLERANCE (0.15)  BQ_UPDATE (0)  BQ_BASELINE (bench/baseline.json)
#   BQ_RECHARGE (1: 0 skips the recharge path)
set -euo pipefail

BUILD=${1:?usage: bench/quick.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${BQ_ROUNDS:-3}
DURATION=${BQ_DURATION:-5}
WARMUP=${BQ_WARMUP:-2}
CONNS=${BQ_CONNS:-64}
THREADS=${BQ_THREADS:-2}
CODES=${BQ_CODES:-1000000}
TOLERANCE=${BQ_TOLERANCE:-0.15}
UPDATE=${BQ_UPDATE:-0}
BASELINE=${BQ_BASELINE:-$SRC/bench/baseline.json}
RECHARGE=${BQ_RECHARGE:-1}
OUT=$SRC/bench/results/quick.json

. "$SRC/bench/lib.sh"
bench_setup bench-quick
[ -x "$BUILD/perkhubd" ] || fail "$BUILD/perkhubd not found (make build first)"
T0=$(date +%s)
mkdir -p "$SRC/bench/results"

# ---- the order path: one daemon, BQ_ROUNDS runs, the median ----------------------------------
bench_start "$BUILD" "$TMP/order"
PID[order]=$BENCH_PID
URL[order]=$BENCH_URL
bench_import_codes order
note "order path: $CODES codes imported; ${WARMUP}s warm-up, $ROUNDS runs of ${DURATION}s at $CONNS connections"
bench_cpu_rounds order BQ_CODES
ORDER_US=$(awk '{ print $2 }' "$TMP/runs.txt" | bench_median)
ORDER_RUNS=$(awk '{ print $2 }' "$TMP/runs.txt" | paste -sd, -)
kill -TERM "${PID[order]}"
wait "${PID[order]}" || fail "perkhubd exited with $? on SIGTERM"
unset 'PID[order]'

# ---- the recharge path: bench/supplier_io.sh's steady run, small -------------------------------
RECHARGE_US=null
if [ "$RECHARGE" != 0 ]; then
    note "recharge path: bench/supplier_io.sh, one steady run (1,000 in flight, 20 ms answers, 8 s)"
    SIO_RUNS=steady SIO_INFLIGHT=1000 SIO_LATENCY_MS=20 SIO_DURATION=8 SIO_WARMUP=2 SIO_SETTLE_S=30 \
        SIO_OUT="$TMP/sio.json" "$SRC/bench/supplier_io.sh" "$BUILD" >"$TMP/sio.out" 2>&1 \
        || { tail -20 "$TMP/sio.out" >&2; fail "bench/supplier_io.sh failed"; }
    RECHARGE_US=$(jq '.runs.steady.cpu_us_per_order.perkhubd' "$TMP/sio.json")
    [[ $RECHARGE_US =~ ^[0-9.]+$ ]] || fail "no CPU per recharge in the supplier I/O run"
fi

# ---- judged against the baseline ------------------------------------------------------------
MACHINE=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
NOW=$(jq -n --argjson o "$ORDER_US" --argjson r "$RECHARGE_US" --arg m "$MACHINE" \
    --arg at "$(date -u +%FT%TZ)" --arg rev "$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --argjson conns "$CONNS" \
    '{order_cpu_us: $o, recharge_cpu_us: $r, machine: $m, at: $at, commit: $rev,
      settings: {order: "POST /v1/orders quantity 1, wrk \($conns) connections, median of the runs",
                 recharge: "bench/supplier_io.sh steady, 1,000 in flight, 20 ms answers"}}')
if [ "$UPDATE" = 1 ]; then
    jq . <<<"$NOW" >"$BASELINE"
    note "baseline written: $BASELINE (order $ORDER_US µs, recharge $RECHARGE_US µs)"
    jq -n --argjson now "$NOW" '{status: "baseline written", now: $now}' >"$OUT"
    exit 0
fi
[ -f "$BASELINE" ] || fail "no baseline at $BASELINE (BQ_UPDATE=1 writes one)"
BASE=$(cat "$BASELINE")
[ "$(jq -r .machine <<<"$BASE")" = "$MACHINE" ] \
    || note "the baseline was taken on another CPU ($(jq -r .machine <<<"$BASE")): its figures may not apply here"
verdict() { # now base -> "ratio PASS|MISS"
    if [ "$1" = null ] || [ "$2" = null ]; then echo "- not-run"; return; fi
    local r
    r=$(bench_calc "$1 / $2")
    if [ "$(echo "$r <= 1 + $TOLERANCE" | bc)" = 1 ]; then echo "$r PASS"; else echo "$r MISS"; fi
}
read -r o_ratio o_verdict <<<"$(verdict "$ORDER_US" "$(jq .order_cpu_us <<<"$BASE")")"
read -r r_ratio r_verdict <<<"$(verdict "$RECHARGE_US" "$(jq .recharge_cpu_us <<<"$BASE")")"
printf '\nperkhub bench-quick — perkhubd CPU per operation against bench/baseline.json (%s, commit %s)\n' \
    "$(jq -r .at <<<"$BASE")" "$(jq -r .commit <<<"$BASE")"
printf '%-10s %12s %12s %8s %10s %s\n' path "now µs" "baseline µs" ratio limit verdict
printf '%-10s %12s %12s %8s %10s %s\n' order "$ORDER_US" "$(jq .order_cpu_us <<<"$BASE")" "$o_ratio" "<= $(bench_calc "1 + $TOLERANCE")" "$o_verdict"
printf '%-10s %12s %12s %8s %10s %s\n' recharge "$RECHARGE_US" "$(jq .recharge_cpu_us <<<"$BASE")" "$r_ratio" "<= $(bench_calc "1 + $TOLERANCE")" "$r_verdict"
printf '(order runs: %s µs; %s s in all; load %s)\n' "$ORDER_RUNS" "$(($(date +%s) - T0))" "$(cut -d' ' -f1-3 /proc/loadavg)"
overall=PASS
[ "$o_verdict" != MISS ] && [ "$r_verdict" != MISS ] || overall=MISS
jq -n --argjson now "$NOW" --argjson base "$BASE" --arg o "$o_verdict" --arg r "$r_verdict" \
    --arg v "$overall" --argjson tol "$TOLERANCE" \
    '{now: $now, baseline: $base, tolerance: $tol, verdicts: {order: $o, recharge: $r}, verdict: $v}' >"$OUT"
echo "bench-quick: $overall"
[ "$overall" = PASS ] || exit 3
