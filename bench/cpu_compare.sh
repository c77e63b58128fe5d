#!/usr/bin/env bash
# bench/cpu_compare.sh OLD_BUILD NEW_BUILD — what a change costs on the hot paths, as CPU
# of the perkhubd process per operation, old and new binaries measured in the SAME run,
# alternating, so that the noise of a shared machine falls on both alike.
#
# Each build gets its own perkhubd (bench/run.sh's configuration: loopback, default durable
# settings, an ephemeral port, its own temp data dir) and the same imported stock. Then
# CMP_ROUNDS rounds, each a wrk run of bench/order.lua (POST /v1/orders, quantity 1) against
# one daemon, then the other (the order swaps every round: old-new, new-old, ...). Around
# each run the daemon's utime+stime is read from /proc/PID/stat (all its threads); the
# difference divided by the orders wrk saw answered is the CPU per order. The store's stats
# must agree with wrk's count (plus the orders committed but left unanswered when wrk
# stopped, looked up one by one), as in run.sh. The same for lookups (bench/lookup.lua)
# when CMP_LOOKUPS=1. The daemon idle while the other is measured costs nothing here.
#
# Prints each run, then per build the median and the spread (min–max) of µs of perkhubd
# CPU per order (and per lookup), the ratio new/old of the medians, and a verdict: PASS
# when new <= CMP_LIMIT × old for orders (lookups: the same limit), MISS otherwise.
# Throughput, p99 latency and the writer's commands per durable commit (a busier disk
# batches more orders per commit, which lowers the CPU per order) are information only.
# Exit: 0 PASS, 3 MISS, 1 when something was wrong (a daemon, wrk, a count that disagrees).
#
# Knobs (environment):
#   CMP_ROUNDS (3)       runs per build and path (alternating)
#   CMP_DURATION (10)    seconds per wrk run
#   CMP_CONNS (64)       wrk connections;  CMP_THREADS (2) wrk threads
#   CMP_CODES (2000000)  codes imported into each daemon (must outlast the order rounds)
#   CMP_WARMUP (3)       seconds of unmeasured orders against each daemon before the rounds
#                        (the first run after an import pays for cold pages)
#   CMP_LOOKUPS (1)      0 skips the lookup rounds
#   CMP_LIMIT (1.10)     the ratio new/old that still passes
#   CMP_TOGETHER (0)     1: the order rounds load BOTH daemons at once (bench_cpu_together:
#                        one wrk each, the same seconds), so a shared box's moment falls on
#                        both; the CPU is each thread's exact run time; the user/sys columns
#                        then read 0 and commands per commit "-". Lookups stay alternating.
#   CMP_PERF_DIR (unset) when set: after the rounds, one more order run per build under
#                        `perf record -g` (not counted in the medians), its data kept in
#                        that dir as old.perf.data / new.perf.data with each build's flat
#                        profile (perf report --no-children) next to it; CMP_PERF_FREQ (499) Hz
set -euo pipefail

OLD=${1:?usage: bench/cpu_compare.sh OLD_BUILD NEW_BUILD}
NEW=${2:?usage: bench/cpu_compare.sh OLD_BUILD NEW_BUILD}
OLD=$(cd "$OLD" && pwd)
NEW=$(cd "$NEW" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${CMP_ROUNDS:-3}
DURATION=${CMP_DURATION:-10}
CONNS=${CMP_CONNS:-64}
THREADS=${CMP_THREADS:-2}
CODES=${CMP_CODES:-2000000}
WARMUP=${CMP_WARMUP:-3}
LOOKUPS=${CMP_LOOKUPS:-1}
LIMIT=${CMP_LIMIT:-1.10}
PERF_DIR=${CMP_PERF_DIR:-}
TOGETHER=${CMP_TOGETHER:-0}

. "$SRC/bench/lib.sh"
bench_setup cpu_compare
for b in "$OLD" "$NEW"; do [ -x "$b/perkhubd" ] || fail "$b/perkhubd not found"; done
if [ -n "$PERF_DIR" ]; then
    command -v perf >/dev/null || fail "CMP_PERF_DIR is set but perf is not installed"
    mkdir -p "$PERF_DIR"
    rm -f "$PERF_DIR"/{old,new}.perf.data*
    PERF_DIR=$(cd "$PERF_DIR" && pwd)
fi
declare -A BUILD=([old]=$OLD [new]=$NEW)
# The configuration of bench/run.sh (without its bulk-order limit): bench/lib.sh.
start_daemon() { # label
    bench_start "${BUILD[$1]}" "$TMP/$1"
    PID[$1]=$BENCH_PID
    URL[$1]=$BENCH_URL
}

stat_orders() { jq -r '.orders' <<<"$1"; }
stat_codes() { jq -r '.codes' <<<"$1"; }
stat_writer() { jq -r '"\(.writer.commits) \(.writer.commands)"' <<<"$1"; }
minmax() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'; }

# Import as bench/run.sh does: BENCH-0000000001 .. in requests of at most 1,000,000 codes.
import_codes() { # label
    bench_import_codes "$1"
    [ "$(stat_codes "$(bench_stats "$1")")" = "$CODES" ] || fail "$1: the store does not hold $CODES codes"
}

for l in old new; do
    note "$l: starting ${BUILD[$l]}/perkhubd, importing $CODES codes"
    start_daemon "$l"
    import_codes "$l"
done

# One measured wrk run: label path round [perf] -> appends
# "label us user_us sys_us rps p99 commands_per_commit round" to $TMP/<path>.txt
# (with perf: to $TMP/perf.txt, and the run is recorded by perf)
measure() {
    local l=$1 path=$2 r=$3 p=${PID[$1]} u0 s0 u1 s1 j ok s issued0 orders0 late=0 id code c0 m0 c1 m1
    local perf=${4:-} perfpid="" txt=$TMP/$2.txt
    s=$(bench_stats "$l"); issued0=$(bench_stat_issued "$s"); orders0=$(stat_orders "$s")
    read -r c0 m0 <<<"$(stat_writer "$s")"
    local out=$TMP/$l-$path-$r
    if [ -n "$perf" ]; then
        txt=$TMP/perf.txt
        # bounded by its own sleep (a background job of a script ignores SIGINT)
        perf record -q -F "${CMP_PERF_FREQ:-499}" -g -p "$p" -o "$PERF_DIR/$l.perf.data" -- sleep $((DURATION + 1)) \
            >"$TMP/$l-perf.log" 2>&1 &
        perfpid=$!
        sleep 1 # perf attaches to every thread before the load starts
    fi
    read -r u0 s0 < <(bench_cpu_ticks "$p")
    if [ "$path" = orders ]; then
        BENCH_TOKEN=$MALL_TOKEN BENCH_SKU=$SKU BENCH_RUN="$l$r" BENCH_OUT="$out.json" \
            BENCH_UNANSWERED="$out-unanswered.txt" \
            timeout $((DURATION + 60)) wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" --timeout 10s \
            -s "$SRC/bench/order.lua" "${URL[$l]}" >"$out.out" 2>&1 \
            || { cat "$out.out" >&2; fail "$l: wrk failed (orders, round $r)"; }
    else
        BENCH_TOKEN=$MALL_TOKEN BENCH_TOTAL=$CODES BENCH_ISSUED=$issued0 BENCH_OUT="$out.json" \
            timeout $((DURATION + 60)) wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" --timeout 10s \
            -s "$SRC/bench/lookup.lua" "${URL[$l]}" >"$out.out" 2>&1 \
            || { cat "$out.out" >&2; fail "$l: wrk failed (lookups, round $r)"; }
    fi
    read -r u1 s1 < <(bench_cpu_ticks "$p")
    if [ -n "$perfpid" ]; then
        wait "$perfpid" || { cat "$TMP/$l-perf.log" >&2; fail "$l: perf record failed"; }
    fi
    [ -s "$out.json" ] || { cat "$out.out" >&2; fail "$l: wrk wrote no summary"; }
    j=$(cat "$out.json")
    ok=$(jq .ok <<<"$j")
    [ "$ok" -gt 0 ] || fail "$l $path round $r: no answer counted"
    # the counts, checked as bench/run.sh checks them
    s=$(bench_stats "$l")
    if [ "$path" = orders ]; then
        [ "$(jq '.non2xx == 0 and .unmatched == 0' <<<"$j")" = true ] \
            || fail "$l round $r: $(jq .non2xx <<<"$j") non-2xx, $(jq .unmatched <<<"$j") unmatched (out of stock? raise CMP_CODES)"
        while read -r id; do
            [ -n "$id" ] || continue
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
                "${URL[$l]}/v1/orders?client_order_id=$id" -H "Authorization: Bearer $MALL_TOKEN")
            case $code in 200) late=$((late + 1)) ;; 404) ;; *) fail "$l: order lookup $id returned $code" ;; esac
        done <"$out-unanswered.txt"
        s=$(bench_stats "$l")
        [ $(($(bench_stat_issued "$s") - issued0)) -eq $((ok + late)) ] \
            || fail "$l round $r: $(($(bench_stat_issued "$s") - issued0)) codes issued, wrk saw $ok 2xx (+$late unanswered)"
        [ $(($(stat_orders "$s") - orders0)) -eq $((ok + late)) ] || fail "$l round $r: order count disagrees"
    else
        [ "$(jq '.wrong == 0 and .non200 == 0 and .unmatched == 0 and .ok == .requests' <<<"$j")" = true ] \
            || fail "$l lookups round $r: $(jq -c '{wrong, non200, unmatched}' <<<"$j")"
        [ "$(bench_stat_issued "$s")" = "$issued0" ] && [ "$(stat_orders "$s")" = "$orders0" ] \
            || fail "$l lookups round $r: the store changed"
    fi
    # the late orders were worked for too, but are few (<= one per connection): wrk's count
    local n=$ok us uu su rps p99 batch=-
    read -r c1 m1 <<<"$(stat_writer "$s")"
    [ "$c1" = "$c0" ] || batch=$(bench_calc "($m1 - $m0) / ($c1 - $c0)")
    us=$(bench_calc "($u1 - $u0 + $s1 - $s0) * 1000000 / $HZ / $n")
    uu=$(bench_calc "($u1 - $u0) * 1000000 / $HZ / $n")
    su=$(bench_calc "($s1 - $s0) * 1000000 / $HZ / $n")
    rps=$(bench_calc "$ok / $(jq .duration_s <<<"$j")")
    p99=$(jq .latency_ms.p99 <<<"$j")
    echo "$l $us $uu $su $rps $p99 $batch $r" >>"$txt"
    note "  $path round $r $l: $us µs CPU/op (user $uu, sys $su), $ok ops, $rps/s, p99 $p99 ms, $batch commands/commit, load $(cut -d' ' -f1 /proc/loadavg)"
}

# warm-up: the same orders, not measured (their orders count in the stats, not in a round)
for l in old new; do
    [ "$WARMUP" -gt 0 ] || break
    BENCH_TOKEN=$MALL_TOKEN BENCH_SKU=$SKU BENCH_RUN="w$l" \
        timeout $((WARMUP + 60)) wrk -t "$THREADS" -c "$CONNS" -d "${WARMUP}s" --timeout 10s \
        -s "$SRC/bench/order.lua" "${URL[$l]}" >"$TMP/$l-warmup.out" 2>&1 \
        || { cat "$TMP/$l-warmup.out" >&2; fail "$l: wrk failed (warm-up)"; }
done

paths=orders
[ "$LOOKUPS" = 0 ] || paths="orders lookups"
for path in $paths; do
    if [ "$path" = orders ] && [ "$TOGETHER" = 1 ]; then
        # both daemons loaded at once each round (bench/lib.sh): "label us rps p99 round" lines,
        # the CPU exact per thread; user/sys and commands per commit are not split there
        note "orders: $ROUNDS rounds, ${DURATION}s at $CONNS connections each, both builds at once"
        WARMUP=0 bench_cpu_together "old new" CMP_CODES
        awk '{ print $1, $2, 0, 0, $3, $4, "-", $5 }' "$TMP/runs.txt" >"$TMP/orders.txt"
        continue
    fi
    note "$path: $ROUNDS rounds per build, ${DURATION}s at $CONNS connections, alternating"
    for r in $(seq "$ROUNDS"); do
        if [ $((r % 2)) = 1 ]; then order="old new"; else order="new old"; fi
        for l in $order; do measure "$l" "$path" "$r"; done
    done
done

if [ -n "$PERF_DIR" ]; then
    note "perf: one more order run per build, recorded (not in the medians)"
    for l in old new; do
        measure "$l" orders perf perf
        perf report -i "$PERF_DIR/$l.perf.data" --no-children -g none --sort dso,sym --percent-limit 0.3 \
            --stdio 2>/dev/null >"$PERF_DIR/$l.report.txt" || true
    done
    note "perf: $PERF_DIR/{old,new}.report.txt (µs per order of those runs: $(awk '{ printf "%s %s  ", $1, $2 }' "$TMP/perf.txt"))"
fi

verdict=PASS
printf '\n%-8s %-4s %10s %15s %8s %8s %9s %8s %10s\n' path build "µs/op med" "µs/op min-max" user sys "ops/s" "p99 ms" "cmd/commit"
for path in $paths; do
    declare -A MED
    for l in old new; do
        col() { awk -v l="$l" -v c="$1" '$1 == l { print $c }' "$TMP/$path.txt"; }
        MED[$l]=$(col 2 | bench_median)
        printf '%-8s %-4s %10s %15s %8.2f %8.2f %9.0f %8.2f %10s\n' "$path" "$l" "${MED[$l]}" "$(col 2 | minmax)" \
            "$(col 3 | bench_median)" "$(col 4 | bench_median)" "$(col 5 | bench_median)" "$(col 6 | bench_median)" \
            "$([ "$path" = orders ] && col 7 | bench_median || echo -)"
    done
    ratio=$(bench_calc "${MED[new]} / ${MED[old]}")
    # the same round's two runs saw the same machine: their ratios, as a cross-check
    paired=$(awk '{ v[$8, $1] = $2 } END { for (k in v) { split(k, a, SUBSEP); if (a[2] == "new") print v[k] / v[a[1], "old"] } }' \
        "$TMP/$path.txt" | sort -g | tr '\n' ' ')
    v=PASS
    [ "$(echo "$ratio <= $LIMIT" | bc)" = 1 ] || { v=MISS; verdict=MISS; }
    printf '%-8s new/old %s (limit %s): %s   (per round, sorted: %s)\n' "$path" "$ratio" "$LIMIT" "$v" "$paired"
done
echo "cpu_compare: $verdict (old ${BUILD[old]}, new ${BUILD[new]}, $ROUNDS rounds, ${DURATION}s, $CONNS conns, $HZ ticks/s)"
[ "$verdict" = PASS ] || exit 3
