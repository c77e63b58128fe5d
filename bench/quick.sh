#!/usr/bin/env bash
# bench/quick.sh BUILD_DIR — `make bench-quick` (issue 18, point 5): a regression guard for the
# two hot paths, in under a minute. It judges what the CODE costs, not how fast the box is at
# the moment: each figure is divided by a calibration measured in the same run, and those
# ratios are compared with the ratios stored in bench/baseline.json.
#   calib     the calibration: CPU per order of bench/http_proto/proto.c --lib mhd --durable —
#             the same request (POST /v1/orders, bearer token, JSON body parsed and checked) on
#             the same library as perkhubd (libmicrohttpd 0.9.75, epoll, suspend/resume), one
#             writer thread group-committing the writes of one issuance (bench/lmdb_issue.h,
#             durable LMDB commits), a JSON answer: the durable order with none of our code;
#   order     perkhubd CPU per durable card-code order (POST /v1/orders, quantity 1), the same
#             wrk at BQ_CONNS connections; BQ_ROUNDS rounds, each loading both servers AT ONCE
#             (one wrk each) for BQ_DURATION seconds; each round's perkhubd ÷ calib, the median
#             of the rounds;
#   recharge  perkhubd CPU per recharge (order in, exchange out, callback in, the durable
#             commands): bench/supplier_io.sh's steady run against the simulator, small; ÷ the
#             calibration's CPU per order over the same minutes (wrk on it in 2-second runs for
#             as long as the supplier run lasts).
# A busier or slower box raises perkhubd and the calibration alike (the same library, the same
# thread hand-offs and wake-ups, the same durable commits at a batch set by the same load), so
# the ratios hold where the absolute figures move by a quarter between two runs on this shared
# box; an extra cost in our order or recharge path moves the ratio. MISS (exit 3) when either
# ratio is more than BQ_TOLERANCE (0.15) over its baseline ratio; PASS (exit 0) otherwise; 1
# when something was wrong. The absolute µs and their change are printed as information.
# BQ_UPDATE=1 writes this run's figures as the new baseline instead of judging them: do it
# after a change meant to move the cost, and commit the file with the change that explains it.
# Writes bench/results/quick.json. CPU: every thread's exact run time (bench_cpu_ns).
#
# Knobs (environment):
#   BQ_ROUNDS (5)  BQ_DURATION (4)  BQ_WARMUP (2)  BQ_CONNS (64)  BQ_THREADS (2)
#   BQ_CODES (600000: perkhubd; the calibration server gets twice as many)  BQ_TOLERANCE (0.15)  BQ_UPDATE (0)
#   BQ_BASELINE (bench/baseline.json)  BQ_RECHARGE (1: 0 skips the recharge path)
set -euo pipefail

BUILD=${1:?usage: bench/quick.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${BQ_ROUNDS:-5}
DURATION=${BQ_DURATION:-4}
WARMUP=${BQ_WARMUP:-2}
CONNS=${BQ_CONNS:-64}
THREADS=${BQ_THREADS:-2}
CODES=${BQ_CODES:-600000}
TOLERANCE=${BQ_TOLERANCE:-0.15}
UPDATE=${BQ_UPDATE:-0}
BASELINE=${BQ_BASELINE:-$SRC/bench/baseline.json}
RECHARGE=${BQ_RECHARGE:-1}
OUT=$SRC/bench/results/quick.json

. "$SRC/bench/lib.sh"
bench_setup bench-quick wrk jq bc libh2o-evloop-dev
[ -x "$BUILD/perkhubd" ] || fail "$BUILD/perkhubd not found (make build first)"
T0=$(date +%s)
mkdir -p "$SRC/bench/results"

# the calibration server, built beside perkhubd when its source is newer
bench_proto_build "$BUILD"

# ---- the order path and its calibration: two servers, BQ_ROUNDS rounds -----------------------
bench_start "$BUILD" "$TMP/order"
PID[order]=$BENCH_PID
URL[order]=$BENCH_URL
bench_import_codes order
bench_proto_start calib mhd 2 --lifetime 600 --durable "$TMP/calib-store" --codes $((2 * CODES))
note "$CODES codes in each server; ${WARMUP}s warm-up, $ROUNDS rounds of ${DURATION}s, both servers at once, $CONNS connections each"

# orders_of LABEL -> "orders commits commands": the orders the server's store holds (perkhubd:
# the codes of SKU issued), its writer's durable commits and the commands they carried
orders_of() {
    local j
    if [ "$1" = order ]; then
        j=$(bench_stats order) || fail "perkhubd: /v1/stats failed"
        echo "$(bench_stat_issued "$j") $(jq -r '"\(.writer.commits) \(.writer.commands)"' <<<"$j")"
    else
        j=$(curl -sf --max-time 30 "${URL[calib]}/stats") || fail "the calibration server: /stats failed"
        jq -r '"\(.orders) \(.commits) \(.commands)"' <<<"$j"
    fi
}

# quick_round ROUND SECONDS: one wrk run of orders on EACH server AT ONCE (whatever else the box
# runs meanwhile falls on both alike), each server's CPU over the same window; per server every
# answer 2xx with its request id, and its store holding what wrk saw answered (plus at most one
# per connection left in flight). Appends "label µs-per-order orders commands-per-commit" per
# server to $TMP/runs.txt.
quick_round() {
    local r=$1 secs=$2 l j ok n p
    local -A o0 c0 k0 o1 c1 k1 cpu0 ids0 cpu1 ids1
    local -a wp=()
    for l in order calib; do read -r "o0[$l]" "c0[$l]" "k0[$l]" <<<"$(orders_of "$l")"; done
    for l in order calib; do read -r "cpu0[$l]" "ids0[$l]" < <(bench_cpu_ns "${PID[$l]}"); done
    for l in order calib; do bench_wrk_orders "$l" "$l$r" "$secs" "$TMP/$l-$r" & wp+=($!); done
    for p in "${wp[@]}"; do wait "$p" || fail "round $r: a wrk run failed"; done
    for l in order calib; do read -r "cpu1[$l]" "ids1[$l]" < <(bench_cpu_ns "${PID[$l]}"); done
    for l in order calib; do
        read -r "o1[$l]" "c1[$l]" "k1[$l]" <<<"$(orders_of "$l")"
        [ "${ids1[$l]}" = "${ids0[$l]}" ] || fail "$l round $r: the server's threads changed during the run"
        j=$(cat "$TMP/$l-$r.json")
        ok=$(jq .ok <<<"$j")
        [ "$ok" -gt 0 ] || fail "$l round $r: no order answered"
        [ "$(jq '.non2xx == 0 and .unmatched == 0' <<<"$j")" = true ] \
            || fail "$l round $r: $(jq -c '{non2xx, unmatched}' <<<"$j") (out of stock? raise BQ_CODES)"
        n=$((o1[$l] - o0[$l]))
        [ "$n" -ge "$ok" ] && [ "$n" -le $((ok + CONNS)) ] || fail "$l round $r: $n orders stored, wrk saw $ok answered"
        [ "${c1[$l]}" -gt "${c0[$l]}" ] || fail "$l round $r: no durable commit counted"
        echo "$l $(bench_calc "(${cpu1[$l]} - ${cpu0[$l]}) / 1000 / $ok") $ok $(bench_calc "(${k1[$l]} - ${k0[$l]}) / (${c1[$l]} - ${c0[$l]})")" >>"$TMP/runs.txt"
    done
}

: >"$TMP/runs.txt"
[ "$WARMUP" -gt 0 ] && quick_round w "$WARMUP"
: >"$TMP/runs.txt"
: >"$TMP/rounds.txt"
for r in $(seq "$ROUNDS"); do
    quick_round "$r" "$DURATION"
    declare -A US=() BATCH=()
    while read -r l us _ batch; do US[$l]=$us; BATCH[$l]=$batch; done < <(tail -2 "$TMP/runs.txt")
    ratio=$(bench_calc "${US[order]} / ${US[calib]}")
    echo "${US[order]} ${US[calib]} $ratio ${BATCH[order]} ${BATCH[calib]}" >>"$TMP/rounds.txt"
    note "  round $r: perkhubd ${US[order]} µs (${BATCH[order]} a commit), calibration ${US[calib]} µs (${BATCH[calib]} a commit) CPU/order: ratio $ratio (load $(cut -d' ' -f1 /proc/loadavg))"
done
col() { awk -v c="$1" '{ print $c }' "$TMP/rounds.txt"; }
ORDER_US=$(col 1 | bench_median)
CALIB_US=$(col 2 | bench_median)
ORDER_RATIO=$(col 3 | bench_median)
ORDER_RUNS=$(col 3 | paste -sd, -)
kill -TERM "${PID[order]}"
wait "${PID[order]}" || fail "perkhubd exited with $? on SIGTERM"
unset 'PID[order]'

# ---- the recharge path: bench/supplier_io.sh's steady run, small -------------------------------
RECHARGE_US=null
RECHARGE_RATIO=null
RCALIB_US=null
if [ "$RECHARGE" != 0 ]; then
    note "recharge path: bench/supplier_io.sh, one steady run (1,000 in flight, 20 ms answers, 8 s)"
    SIO_RUNS=steady SIO_INFLIGHT=1000 SIO_LATENCY_MS=20 SIO_DURATION=8 SIO_WARMUP=2 SIO_SETTLE_S=30 \
        SIO_OUT="$TMP/sio.json" "$SRC/bench/supplier_io.sh" "$BUILD" >"$TMP/sio.out" 2>&1 &
    sio=$!
    # the calibration's CPU per order over the same window, in 2-second wrk runs
    read -r o0 _ < <(orders_of calib)
    read -r cpu0 ids0 < <(bench_cpu_ns "${PID[calib]}")
    n=0 ok=0
    while kill -0 "$sio" 2>/dev/null; do
        n=$((n + 1))
        bench_wrk_orders calib "rc$n" 2 "$TMP/rc-$n"
        [ "$(jq '.non2xx == 0 and .unmatched == 0' "$TMP/rc-$n.json")" = true ] \
            || fail "calibration during the recharge run: $(jq -c '{non2xx, unmatched}' "$TMP/rc-$n.json")"
        ok=$((ok + $(jq .ok "$TMP/rc-$n.json")))
    done
    read -r cpu1 ids1 < <(bench_cpu_ns "${PID[calib]}")
    read -r o1 _ < <(orders_of calib)
    wait "$sio" || { tail -20 "$TMP/sio.out" >&2; fail "bench/supplier_io.sh failed"; }
    [ "$ids1" = "$ids0" ] || fail "the calibration server's threads changed during the recharge run"
    [ "$ok" -gt 0 ] && [ $((o1 - o0)) -ge "$ok" ] && [ $((o1 - o0)) -le $((ok + n * CONNS)) ] \
        || fail "calibration during the recharge run: $((o1 - o0)) orders stored, wrk saw $ok answered"
    RCALIB_US=$(bench_calc "($cpu1 - $cpu0) / 1000 / $ok")
    RECHARGE_US=$(jq '.runs.steady.cpu_us_per_order.perkhubd' "$TMP/sio.json")
    [[ $RECHARGE_US =~ ^[0-9.]+$ ]] || fail "no CPU per recharge in the supplier I/O run"
    RECHARGE_RATIO=$(bench_calc "$RECHARGE_US / $RCALIB_US")
    note "  $RECHARGE_US µs CPU per recharge; the calibration meanwhile $RCALIB_US µs per order ($n runs): ratio $RECHARGE_RATIO"
fi

# ---- judged against the baseline ------------------------------------------------------------
MACHINE=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
NOW=$(jq -n --argjson o "$ORDER_US" --argjson r "$RECHARGE_US" --argjson c "$CALIB_US" --argjson rc "$RCALIB_US" \
    --argjson ord "$ORDER_RATIO" --argjson rch "$RECHARGE_RATIO" --arg m "$MACHINE" \
    --arg at "$(date -u +%FT%TZ)" --arg rev "$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --argjson conns "$CONNS" \
    '{format: 2, order_vs_calib: $ord, recharge_vs_calib: $rch,
      calib_cpu_us: $c, order_cpu_us: $o, recharge_cpu_us: $r, recharge_calib_cpu_us: $rc,
      machine: $m, at: $at, commit: $rev, load: $load,
      settings: {calib: "bench/http_proto/proto.c --lib mhd --durable: POST /v1/orders quantity 1, wrk \($conns) connections",
                 order: "perkhubd, the same wrk; order_vs_calib: the median of the rounds (perkhubd ÷ calib, same round)",
                 recharge: "bench/supplier_io.sh steady, 1,000 in flight, 20 ms answers; recharge_vs_calib: ÷ the calibration'"'"'s CPU per order over the same window"}}')
if [ "$UPDATE" = 1 ]; then
    jq . <<<"$NOW" >"$BASELINE"
    note "baseline written: $BASELINE (order ÷ calibration $ORDER_RATIO, recharge ÷ calibration $RECHARGE_RATIO; calibration $CALIB_US µs)"
    jq -n --argjson now "$NOW" '{status: "baseline written", now: $now}' >"$OUT"
    exit 0
fi
[ -f "$BASELINE" ] || fail "no baseline at $BASELINE (BQ_UPDATE=1 writes one)"
BASE=$(cat "$BASELINE")
[ "$(jq -r '.format // 1' <<<"$BASE")" = 2 ] \
    || fail "$BASELINE holds absolute figures only (format 1): retake it with BQ_UPDATE=1 (make bench-baseline)"
verdict() { # now base -> "ratio PASS|MISS"
    if [ "$1" = null ] || [ "$2" = null ]; then echo "- not-run"; return; fi
    local r
    r=$(bench_calc "$1 / $2")
    if [ "$(echo "$r <= 1 + $TOLERANCE" | bc)" = 1 ]; then echo "$r PASS"; else echo "$r MISS"; fi
}
info() { if [ "$1" = null ] || [ "$2" = null ]; then echo -; else bench_calc "$1 / $2"; fi; }
b() { jq -r ".$1" <<<"$BASE"; }
read -r o_change o_verdict <<<"$(verdict "$ORDER_RATIO" "$(b order_vs_calib)")"
read -r r_change r_verdict <<<"$(verdict "$RECHARGE_RATIO" "$(b recharge_vs_calib)")"
LIMIT=$(bench_calc "1 + $TOLERANCE")
printf '\nperkhub bench-quick — perkhubd CPU per operation ÷ the calibration'"'"'s in the same run (ratio), against bench/baseline.json (%s, commit %s)\n' \
    "$(b at)" "$(b commit)"
printf '%-10s %11s %11s %8s %8s %s\n' path "now ratio" "base ratio" change limit verdict
printf '%-10s %11s %11s %8s %8s %s\n' order "$ORDER_RATIO" "$(b order_vs_calib)" "$o_change" "<= $LIMIT" "$o_verdict"
printf '%-10s %11s %11s %8s %8s %s\n' recharge "$RECHARGE_RATIO" "$(b recharge_vs_calib)" "$r_change" "<= $LIMIT" "$r_verdict"
printf 'information, absolute µs now / baseline (the box moves these): calibration %s / %s (%s), order %s / %s (%s), recharge %s / %s (%s)\n' \
    "$CALIB_US" "$(b calib_cpu_us)" "$(info "$CALIB_US" "$(b calib_cpu_us)")" \
    "$ORDER_US" "$(b order_cpu_us)" "$(info "$ORDER_US" "$(b order_cpu_us)")" \
    "$RECHARGE_US" "$(b recharge_cpu_us)" "$(info "$RECHARGE_US" "$(b recharge_cpu_us)")"
printf '(order ÷ calibration per round: %s; %s s in all; load %s)\n' "$ORDER_RUNS" "$(($(date +%s) - T0))" "$(cut -d' ' -f1-3 /proc/loadavg)"
overall=PASS
[ "$o_verdict" != MISS ] && [ "$r_verdict" != MISS ] || overall=MISS
jq -n --argjson now "$NOW" --argjson base "$BASE" --arg o "$o_verdict" --arg r "$r_verdict" \
    --arg v "$overall" --argjson tol "$TOLERANCE" \
    '{now: $now, baseline: $base, tolerance: $tol, verdicts: {order: $o, recharge: $r}, verdict: $v}' >"$OUT"
echo "bench-quick: $overall"
[ "$overall" = PASS ] || exit 3
