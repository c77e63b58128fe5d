#!/usr/bin/env bash
# bench/run.sh BUILD_DIR — `make bench` (issue 4): every figure of the benchmark in one
# run, each next to its limit or its peers, as ratios, with a PASS/MISS per target.
#   perkhubd (one daemon, loopback, default durable settings):
#     import (the first request: 1,000,000 codes in ONE request, timed) + footprint there,
#     one bulk order of 100,000 codes (timed), durable issuance with wrk at 64 and 256
#     connections, each followed by the HTTP ceiling at the same connection count (the
#     same request for an unknown SKU: 422, nothing written), customer-service lookups
#     with wrk at 64 connections;
#   the machine's limit: lmdb_limit (raw LMDB, same writes, 512 issuances a commit);
#   the other parts when their scripts exist: bench/peers.sh (PostgreSQL, Redis) and
#   bench/supplier_io.sh (10,000 recharges in flight against the simulator);
#   last, bench/lookup_timing.sh: lookups of absent, in-stock and others' codes, median
#   difference (issue 10, defect 3).
# Correctness is asserted after every load run; the script exits non-zero only when
# something was wrong (never because a target was missed). See bench/README.md.
# Bounded in time; stops its daemon and removes its temp dir on exit, whatever happens.
#
# Knobs (environment):
#   BENCH_CODES (1600000)        codes for the issuance runs (wrk must not run out)
#   BENCH_BULK (100000)          quantity of the bulk order; imported on top of BENCH_CODES
#   BENCH_IMPORT_CODES (1000000) codes in the first, timed import request (the footprint
#                                is measured right after it)
#   BENCH_DURATION (10)          seconds per wrk run (issuance and lookups)
#   BENCH_WARMUP (3)             seconds of unmeasured orders before the issuance runs
#   BENCH_CONNS ("64 256")       issuance connection counts; the last one is judged
#   BENCH_THREADS (2)            load generator threads (issuance, ceiling, lookups)
#   BENCH_LOOKUP_CONNS (64)      lookup connections
#   BENCH_LOOKUP_ISSUED_SHARE (0.5)  share of lookups aimed at issued codes (others: in stock)
#   BENCH_LIMIT_CODES (= BENCH_CODES), BENCH_LIMIT_SECONDS (10)   lmdb_limit
#   BENCH_PEERS (1), BENCH_SUPPLIER_IO (1)   0 skips that part (its rows say "not run")
#   BENCH_REPORT_MONTH (1)       0 skips bench/report_month.sh (a month's report over
#                                BENCH_RM_ORDERS orders, 10 million: ~15 GB in /tmp, minutes)
#   BENCH_LOOKUP_TIMING (1)      0 skips bench/lookup_timing.sh (lookup time vs. code
#                                existence, issue 10; its own BENCH_LT_* knobs)
#   BENCH_TLS_CPU (1)            0 skips bench/tls_cpu.sh (CPU per order, HTTPS vs HTTP)
#   BENCH_EVENT_FEED (1)         0 skips bench/event_feed.sh (a mall's GET /v1/events over
#                                20,000 other clients' events; its own EF_* knobs)
#   BENCH_WEBHOOKS (1)           0 skips bench/webhooks.sh (orders/s with a webhook endpoint
#                                subscribed vs without, deliveries/s, lag, CPU per delivery)
#   BENCH_SYNC_CATALOG (1)       0 skips bench/sync_catalog.sh (a catalog sync of 10,000
#                                items in pages; its own SC_* knobs)
#   BENCH_ALERTS_WRITER (1)      0 skips bench/alerts_writer.sh (the same in the store's writer,
#                                without HTTP; alerts_cpu.sh prints its own A/A noise floor)
#   BENCH_ALERTS_CPU (1)         0 skips bench/alerts_cpu.sh (CPU per order with and without
#                                100 products carrying alert rules; its own AC_* knobs)
#   BENCH_RISK_CHECK (1)         0 skips bench/risk_check.sh (ns per risk check with 20 rules
#                                vs none, in process; its own RC_* knobs)
#   BENCH_RISK_CPU (1)           0 skips bench/risk_cpu.sh (perkhubd CPU per order with 20 risk
#                                rules vs none, end users on both sides; its own RC_* knobs)
#   BENCH_HTTP_PROTO (1)         0 skips bench/http_proto.sh (CPU per ceiling request: perkhubd, and
#                                the same route on libmicrohttpd and on h2o; its own HP_* knobs)
#   BENCH_ANALYTICS (1)          0 skips bench/analytics.sh (every GET /v1/analytics endpoint
#                                over a year at 10 million orders' aggregates; its own AN_*
#                                knobs; some 3 minutes)
#   BENCH_GRANT_BATCH (1)        0 skips bench/grant_batch.sh (100,000 grants in one welfare
#                                batch under 5 s; its own GB_* knobs)
#   BENCH_REPL (1)               0 skips bench/repl.sh (3 nats-server, a replicated leader and
#                                two standbys against a single node: orders/s, p99, CPU per
#                                order, standby lag, failover; its own RL_* knobs)
#   BENCH_SNAPSHOT (1)           0 skips bench/snapshot.sh (a snapshot's take and pull, and
#                                orders/s while snapshots are taken; its own SN_* knobs)
#   BENCH_PART_TIMEOUT (240)     seconds each of peers.sh / supplier_io.sh / tls_cpu.sh may take
#   BENCH_RESULTS (bench/results/latest.json)   where the JSON goes (the parts' own JSON
#                                stays in bench/results/)
set -euo pipefail

BUILD=${1:?usage: bench/run.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
CODES=${BENCH_CODES:-1600000}
BULK=${BENCH_BULK:-100000}
IMPORT_CODES=${BENCH_IMPORT_CODES:-1000000}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-3}
CONNS=${BENCH_CONNS:-"64 256"}
THREADS=${BENCH_THREADS:-2}
LOOKUP_CONNS=${BENCH_LOOKUP_CONNS:-64}
LOOKUP_SHARE=${BENCH_LOOKUP_ISSUED_SHARE:-0.5}
LIMIT_CODES=${BENCH_LIMIT_CODES:-$CODES}
LIMIT_SECONDS=${BENCH_LIMIT_SECONDS:-10}
RUN_PEERS=${BENCH_PEERS:-1}
RUN_SUPPLIER_IO=${BENCH_SUPPLIER_IO:-1}
RUN_LOOKUP_TIMING=${BENCH_LOOKUP_TIMING:-1}
PART_TIMEOUT=${BENCH_PART_TIMEOUT:-240}
TOTAL=$((CODES + BULK))
[ "$IMPORT_CODES" -le "$TOTAL" ] || IMPORT_CODES=$TOTAL
SKU=bench.card
MALL_TOKEN=bench-mall-token
OPS_TOKEN=bench-ops-token
PERKHUBD=$BUILD/perkhubd
RESULTS=$SRC/bench/results
OUT_JSON=${BENCH_RESULTS:-$RESULTS/latest.json}

fail() { echo "bench: FAIL: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ -x "$PERKHUBD" ] || fail "$PERKHUBD not found (make build first)"
"$SRC/tools/deps.sh" wrk jq lmdb-utils

TMP=$(mktemp -d /tmp/perkhub-bench-XXXXXX)
PID=""
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -KILL "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$TMP/parts" "$RESULTS"
touch "$TMP/started" # the parts' JSON counts only when written after this
T_START=$(date +%s)

# ---- the machine's limit (built here, in the build dir) ---------------------------
LIMIT_BIN=$BUILD/bench_lmdb_limit
gcc -O2 -std=c11 -Wall -Wextra -o "$LIMIT_BIN" "$SRC/bench/lmdb_limit.c" -llmdb \
    || fail "could not build bench/lmdb_limit.c"

# ---- perkhubd on a temp dir --------------------------------------------------------
. "$SRC/bench/lib.sh"
limits=""
[ "$BULK" -le 100000 ] || limits=$'limits:\n  max_order_quantity: '"$BULK"
bench_start "$BUILD" "$TMP" "$limits"
PID=$BENCH_PID
URL=$BENCH_URL

# stats: "issued" of $SKU, the store's order count, the writer's commits and commands
stats() { curl -sf --max-time 30 "$URL/v1/stats" -H "Authorization: Bearer $OPS_TOKEN"; }
stat_issued() { jq -r --arg s "$SKU" '[.skus[] | select(.sku == $s) | .issued][0] // 0' <<<"$1"; }
stat_orders() { jq -r '.orders' <<<"$1"; }
stat_codes() { jq -r '.codes' <<<"$1"; }
stat_writer() { jq -r '"\(.writer.commits) \(.writer.commands)"' <<<"$1"; }
check_store() {
    "$PERKHUBD" --check-store "$TMP/data" >"$TMP/check.out" 2>&1 \
        || { cat "$TMP/check.out" >&2; fail "perkhubd --check-store failed ($1)"; }
}
# cpu_begin / cpu_end NAME: perkhubd's CPU and this shell's children's (the load generator
# run in between, in the foreground) over a window, into DCPU[NAME] and WCPU[NAME] (µs).
cpu_begin() { CPU_D0=$(bench_proc_cpu_us "$PID"); bench_children_cpu_us CPU_W0 "$TMP/times"; }
cpu_end() {
    local w1
    DCPU[$1]=$(($(bench_proc_cpu_us "$PID") - CPU_D0))
    bench_children_cpu_us w1 "$TMP/times"
    WCPU[$1]=$((w1 - CPU_W0))
}
# per_op US OPS: µs per operation, one decimal ("null" without operations)
per_op() { if [ "$2" -gt 0 ]; then echo "scale=1; $1 / $2" | bc | sed 's/^\./0./'; else echo null; fi; }
ratio() { echo "scale=3; $1 / $2" | bc | sed 's/^\./0./; s/^-\./-0./'; }
secs_since() { echo "$(date +%s.%N) - $1" | bc | sed 's/^\./0./'; }

# ---- footprint: the daemon's memory and the store's bytes per stored code -----------------
# RSS from /proc (RssFile is mostly LMDB's map, RssAnon the heap); LMDB pages from
# mdb_stat: "pages used" is the high-water mark of the file, minus the free list is what
# the data really occupies.
footprint() { # label codes_stored -> $TMP/parts/footprint-<label>.json
    local st used free psize file
    st=/proc/$PID/status
    kb() { awk -v k="$1:" '$1 == k { print $2 }' "$st"; }
    mdb_stat -ef "$TMP/data" >"$TMP/mdbstat.out" 2>&1 || { cat "$TMP/mdbstat.out" >&2; fail "mdb_stat failed"; }
    psize=$(awk '/Page size:/ { print $3 }' "$TMP/mdbstat.out")
    used=$(awk '/Number of pages used:/ { print $5 }' "$TMP/mdbstat.out")
    free=$(awk '/Free pages:/ { print $3 }' "$TMP/mdbstat.out")
    mdb_stat -a "$TMP/data" >"$TMP/mdbstat-a.out" 2>&1 || fail "mdb_stat -a failed"
    file=$(stat -c %s "$TMP/data/data.mdb")
    jq -n --arg at "$1" --argjson codes "$2" --argjson rss "$(kb VmRSS)" --argjson hwm "$(kb VmHWM)" \
        --argjson anon "$(kb RssAnon)" --argjson filerss "$(kb RssFile)" --argjson file "$file" \
        --argjson psize "$psize" --argjson used "$used" --argjson free "$free" \
        --argjson dbs "$(awk '/^Status of / { name = $3 }
                           /Branch pages:|Leaf pages:|Overflow pages:/ { pages[name] += $3 }
                           END { printf "{"; s = ""; for (n in pages) { printf "%s\"%s\":%d", s, n, pages[n]; s = "," } printf "}" }' \
                         "$TMP/mdbstat-a.out")" \
        '{at: $at, codes_stored: $codes,
          rss_kb: $rss, rss_peak_kb: $hwm, rss_anon_kb: $anon, rss_file_kb: $filerss,
          data_mdb_bytes: $file, page_size: $psize, pages_used: $used, pages_free: $free,
          pages_per_db: $dbs,
          bytes_per_code_file: (($file / $codes) * 10 | round / 10),
          bytes_per_code_live: ((($used - $free) * $psize / $codes) * 10 | round / 10)}' \
        >"$TMP/parts/footprint-$1.json"
}

# ---- import: the first request alone (≤ 1,000,000 codes, timed), then the rest --------------
import_codes() { # first count -> "seconds"; codes BENCH-<first> .. in one request
    { echo code; seq "$1" $(($1 + $2 - 1)) | awk '{printf "BENCH-%010d\n", $1}'; } >"$TMP/codes.csv"
    local out
    out=$(curl -s -o "$TMP/import.out" -w '%{http_code} %{time_total}' --max-time 600 -X POST \
        "$URL/v1/batches?supplier=acme&sku=$SKU&unit_cost=19.80&note=bench" \
        -H "Authorization: Bearer $OPS_TOKEN" -H 'Content-Type: text/csv' --data-binary @"$TMP/codes.csv")
    [ "${out% *}" = 201 ] || { head -c 500 "$TMP/import.out" >&2; fail "import returned ${out% *}"; }
    [ "$(jq -r .batch.count "$TMP/import.out")" = "$2" ] || fail "import: batch count is not $2"
    rm -f "$TMP/codes.csv"
    echo "${out#* }"
}
note "importing $IMPORT_CODES codes in one request"
import_s=$(import_codes 1 "$IMPORT_CODES")
[ "$(stat_codes "$(stats)")" = "$IMPORT_CODES" ] || fail "import: the store does not hold $IMPORT_CODES codes"
footprint import "$IMPORT_CODES"
note "  ${import_s}s; footprint at $IMPORT_CODES codes taken; importing the other $((TOTAL - IMPORT_CODES))"
t0=$(date +%s.%N)
next=$((IMPORT_CODES + 1))
while [ "$next" -le "$TOTAL" ]; do
    n=$((TOTAL - next + 1)); [ "$n" -le 1000000 ] || n=1000000
    import_codes "$next" "$n" >/dev/null
    next=$((next + n))
done
rest_s=$(secs_since "$t0")
[ "$(stat_codes "$(stats)")" = "$TOTAL" ] || fail "import: the store does not hold $TOTAL codes"
check_store "after import"

# ---- bulk: one order for $BULK codes -----------------------------------------------------
note "bulk order: $BULK codes"
s=$(stats); b_issued=$(stat_issued "$s"); b_orders=$(stat_orders "$s")
out=$(curl -s -o "$TMP/bulk.json" -w '%{http_code} %{time_total} %{size_download}' --max-time 120 \
    -X POST "$URL/v1/orders" -H "Authorization: Bearer $MALL_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"client_order_id\":\"bulk-1\",\"sku\":\"$SKU\",\"quantity\":$BULK}")
read -r bulk_status bulk_s bulk_bytes <<<"$out"
[ "$bulk_status" = 201 ] || { head -c 500 "$TMP/bulk.json" >&2; fail "bulk order returned $bulk_status"; }
# the answer holds $BULK distinct codes of ours, all issued; the store agrees
read -r b_state b_n b_distinct b_good < <(jq -r '[.order.state, (.order.codes | length),
    ([.order.codes[].code] | unique | length),
    ([.order.codes[] | select(.state == "issued" and (.code | test("^BENCH-[0-9]{10}$")))] | length)]
    | @tsv' "$TMP/bulk.json")
[ "$b_state" = succeeded ] || fail "bulk order: state $b_state"
[ "$b_n" = "$BULK" ] || fail "bulk order: $b_n codes in the answer, $BULK ordered"
[ "$b_distinct" = "$BULK" ] || fail "bulk order: only $b_distinct distinct codes among $BULK"
[ "$b_good" = "$BULK" ] || fail "bulk order: $((BULK - b_good)) codes not issued or not ours"
s=$(stats)
[ $(($(stat_issued "$s") - b_issued)) -eq "$BULK" ] || fail "bulk order: the store issued $(($(stat_issued "$s") - b_issued)) codes"
[ $(($(stat_orders "$s") - b_orders)) -eq 1 ] || fail "bulk order: $(($(stat_orders "$s") - b_orders)) orders stored"
rm -f "$TMP/bulk.json"
check_store "after the bulk order"
note "  ${bulk_s}s, $b_distinct distinct codes, $bulk_bytes bytes; the store agrees"

# ---- wrk: issuance at each concurrency -----------------------------------------------------
declare -A RPS P50 P99 OK NON2XX LATE COMMITS BATCH
s=$(stats)
prev_issued=$(stat_issued "$s"); prev_orders=$(stat_orders "$s")
read -r prev_commits prev_commands <<<"$(stat_writer "$s")"

# The HTTP ceiling at the same connection count, right after each issuance run (so
# both see the same machine): the same request through the same path (POST
# /v1/orders, bearer token, body read and parsed, fields checked, a JSON answer with
# X-Request-Id) for a SKU the catalog does not have, so it stops at 422 unknown_sku
# before the writer: no durable commit, no suspend/resume. issuance ÷ this is how
# close the durable order comes to what the HTTP stack alone does on this box.
CEIL_SKU=bench.no-such-sku

# One order load run: conns sku expect(0 = any 2xx) run-prefix name -> $TMP/<name>.json
# (the fields bench/order.lua writes) and $TMP/<name>-unanswered.txt. wrk stops at
# once, leaving up to one request per connection unanswered (looked up afterwards).
# The CPU of perkhubd and of wrk over the run goes to DCPU[name] and WCPU[name] (µs).
declare -A DCPU WCPU
order_load() {
    local c=$1 sku=$2 expect=$3 run=$4 name=$5 rc=0
    cpu_begin
    BENCH_TOKEN=$MALL_TOKEN BENCH_SKU=$sku BENCH_RUN=$run BENCH_OUT="$TMP/$name.json" \
        BENCH_UNANSWERED="$TMP/$name-unanswered.txt" \
        BENCH_EXPECT=$([ "$expect" = 0 ] || echo "$expect") \
        timeout $((DURATION + 60)) wrk -t "$THREADS" -c "$c" -d "${DURATION}s" --timeout 10s \
        -s "$SRC/bench/order.lua" "$URL" >"$TMP/$name.out" 2>&1 || rc=$?
    cpu_end "$name"
    return "$rc"
}

http_ceiling() { # conns
    local c=$1 j s
    note "wrk: HTTP ceiling, $c connections (POST /v1/orders, unknown sku: 422, nothing written)"
    order_load "$c" "$CEIL_SKU" 422 "h$c" "ceil-$c" \
        || { cat "$TMP/ceil-$c.out" >&2; fail "wrk failed (HTTP ceiling, $c connections)"; }
    [ -s "$TMP/ceil-$c.json" ] || { cat "$TMP/ceil-$c.out" >&2; fail "wrk wrote no summary (HTTP ceiling)"; }
    j=$(cat "$TMP/ceil-$c.json")
    [ "$(jq '.non2xx == 0 and .unmatched == 0 and .ok > 0' <<<"$j")" = true ] \
        || fail "HTTP ceiling, $c conns: $(jq .non2xx <<<"$j") answers not 422, $(jq .unmatched <<<"$j") without their X-Request-Id"
    s=$(stats)
    [ "$(stat_issued "$s")" = "$prev_issued" ] && [ "$(stat_orders "$s")" = "$prev_orders" ] \
        || fail "HTTP ceiling, $c conns: the store changed (it must write nothing)"
    CEIL_RPS[$c]=$(echo "scale=1; $(jq .ok <<<"$j") / $(jq .duration_s <<<"$j")" | bc)
    CEIL_CPU[$c]=$(per_op "${DCPU[ceil-$c]}" "$(jq .ok <<<"$j")")
    CEIL_WCPU[$c]=$(per_op "${WCPU[ceil-$c]}" "$(jq .ok <<<"$j")")
    note "  ${CEIL_RPS[$c]} answers/s, every one 422; p50 $(jq .latency_ms.p50 <<<"$j") ms, p99 $(jq .latency_ms.p99 <<<"$j") ms; CPU per request: perkhubd ${CEIL_CPU[$c]} µs, wrk ${CEIL_WCPU[$c]} µs"
}

declare -A CEIL_RPS CEIL_CPU CEIL_WCPU ORDER_CPU ORDER_WCPU
# A warm-up run, not measured: the first orders after the import and the bulk order meet cold
# pages and the allocator's first growth (a 64-connection run read 63.8 µs per order first and
# ~40 after one). bench_cpu_rounds and cpu_compare warm up the same way.
if [ "$WARMUP" -gt 0 ]; then
    note "wrk: warm-up, ${WARMUP}s at ${CONNS%% *} connections (not measured)"
    measured=$DURATION
    DURATION=$WARMUP
    order_load "${CONNS%% *}" "$SKU" 0 warm wrk-warm \
        || { cat "$TMP/wrk-warm.out" >&2; fail "wrk failed (warm-up)"; }
    DURATION=$measured
    sleep 1 # the requests wrk left in flight commit (or not) before the counts are read
    s=$(stats)
    prev_issued=$(stat_issued "$s"); prev_orders=$(stat_orders "$s")
    read -r prev_commits prev_commands <<<"$(stat_writer "$s")"
fi
for c in $CONNS; do
    note "wrk: $c connections, $THREADS threads, ${DURATION}s"
    order_load "$c" "$SKU" 0 "c$c" "wrk-$c" \
        || { cat "$TMP/wrk-$c.out" >&2; fail "wrk failed at $c connections"; }
    [ -s "$TMP/wrk-$c.json" ] || { cat "$TMP/wrk-$c.out" >&2; fail "wrk wrote no summary"; }
    j=$(cat "$TMP/wrk-$c.json")
    OK[$c]=$(jq .ok <<<"$j"); NON2XX[$c]=$(jq .non2xx <<<"$j")
    RPS[$c]=$(echo "scale=1; ${OK[$c]} / $(jq .duration_s <<<"$j")" | bc)
    P50[$c]=$(jq .latency_ms.p50 <<<"$j"); P99[$c]=$(jq .latency_ms.p99 <<<"$j")
    # Correctness: the codes issued during the run are exactly the 2xx responses plus
    # those requests the daemon committed but wrk stopped before reading (asked one by one).
    [ "$(jq .unmatched <<<"$j")" = 0 ] || fail "$c conns: responses without their X-Request-Id"
    nun=$(wc -l <"$TMP/wrk-$c-unanswered.txt")
    [ "$nun" -le $((2 * c)) ] || fail "$c conns: $nun requests unanswered (more than two per connection)"
    [ "${NON2XX[$c]}" = 0 ] || fail "$c conns: ${NON2XX[$c]} non-2xx responses (out of stock? raise BENCH_CODES); wrk said: $(tail -3 "$TMP/wrk-$c.out")"
    late=0
    while read -r id; do
        [ -n "$id" ] || continue
        r=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
            "$URL/v1/orders?client_order_id=$id" -H "Authorization: Bearer $MALL_TOKEN")
        case $r in 200) late=$((late + 1)) ;; 404) ;; *) fail "order lookup $id returned $r" ;; esac
    done <"$TMP/wrk-$c-unanswered.txt"
    s=$(stats); issued=$(stat_issued "$s"); orders=$(stat_orders "$s")
    d_issued=$((issued - prev_issued)); d_orders=$((orders - prev_orders))
    [ "$d_issued" -eq $((OK[$c] + late)) ] \
        || fail "$c conns: $d_issued codes issued, wrk saw ${OK[$c]} 2xx (+$late committed, never answered)"
    [ "$d_orders" -eq "$d_issued" ] || fail "$c conns: $d_orders orders stored for $d_issued codes"
    LATE[$c]=$late
    ORDER_CPU[$c]=$(per_op "${DCPU[wrk-$c]}" "$d_orders")
    ORDER_WCPU[$c]=$(per_op "${WCPU[wrk-$c]}" "$d_orders")
    read -r commits commands <<<"$(stat_writer "$s")"
    COMMITS[$c]=$((commits - prev_commits))
    BATCH[$c]=$(echo "scale=1; ($commands - $prev_commands) / ${COMMITS[$c]}" | bc | sed "s/^\./0./")
    prev_commits=$commits; prev_commands=$commands
    note "  ${OK[$c]} 2xx, ${NON2XX[$c]} non-2xx, $late committed unanswered (looked up); stats agree; ${COMMITS[$c]} durable commits, ${BATCH[$c]} commands each; p50 ${P50[$c]} ms, p99 ${P99[$c]} ms; CPU per order: perkhubd ${ORDER_CPU[$c]} µs, wrk ${ORDER_WCPU[$c]} µs"
    check_store "after wrk at $c connections"
    prev_issued=$issued; prev_orders=$orders
    http_ceiling "$c"
done

# ---- wrk: customer-service lookups ------------------------------------------------------------
# Stock goes out first-in first-out, so BENCH-1 .. BENCH-<issued> now belong to the mall's
# orders and the rest is in stock. Checked at the boundary first (as the mall's support
# scope and as ops, who also sees codes in stock), since lookup.lua relies on it.
lookup() { # token code -> diagnosis
    curl -sf --max-time 10 -X POST "$URL/v1/codes/lookup" -H "Authorization: Bearer $1" \
        -H 'Content-Type: application/json' -d "{\"code\":\"$2\"}" | jq -r '.results[0].diagnosis'
}
code_no() { printf 'BENCH-%010d' "$1"; }
s=$(stats); ISSUED=$(stat_issued "$s"); l_orders=$(stat_orders "$s")
[ "$ISSUED" -lt "$TOTAL" ] || fail "lookups: no code left in stock to look up"
for probe in "$MALL_TOKEN 1 issued" "$MALL_TOKEN $ISSUED issued" "$OPS_TOKEN $ISSUED issued" \
    "$MALL_TOKEN $((ISSUED + 1)) not_found" "$OPS_TOKEN $((ISSUED + 1)) available" \
    "$MALL_TOKEN $TOTAL not_found" "$OPS_TOKEN $TOTAL available"; do
    read -r tok n want <<<"$probe"
    got=$(lookup "$tok" "$(code_no "$n")")
    [ "$got" = "$want" ] || fail "lookups: code #$n is '$got', expected '$want' (stock not first-in first-out?)"
done
note "wrk: lookups, $LOOKUP_CONNS connections, ${DURATION}s ($ISSUED of $TOTAL codes issued)"
cpu_begin
BENCH_TOKEN=$MALL_TOKEN BENCH_TOTAL=$TOTAL BENCH_ISSUED=$ISSUED BENCH_ISSUED_SHARE=$LOOKUP_SHARE \
    BENCH_OUT="$TMP/lookup.json" \
    timeout $((DURATION + 60)) wrk -t "$THREADS" -c "$LOOKUP_CONNS" -d "${DURATION}s" --timeout 10s \
    -s "$SRC/bench/lookup.lua" "$URL" >"$TMP/lookup.out" 2>&1 \
    || { cat "$TMP/lookup.out" >&2; fail "wrk failed (lookups)"; }
cpu_end lookup
[ -s "$TMP/lookup.json" ] || { cat "$TMP/lookup.out" >&2; fail "wrk wrote no lookup summary"; }
lj=$(cat "$TMP/lookup.json")
for k in wrong non200 unmatched; do
    [ "$(jq ".$k" <<<"$lj")" = 0 ] || fail "lookups: $(jq ".$k" <<<"$lj") $k responses; wrk said: $(tail -3 "$TMP/lookup.out")"
done
[ "$(jq '.ok == .requests and .ok > 0' <<<"$lj")" = true ] || fail "lookups: not every response was checked"
s=$(stats)
if [ "$(stat_issued "$s")" != "$ISSUED" ] || [ "$(stat_orders "$s")" != "$l_orders" ]; then
    fail "lookups changed the store (issued $(stat_issued "$s") vs $ISSUED)"
fi
LOOKUP_RPS=$(echo "scale=1; $(jq .ok <<<"$lj") / $(jq .duration_s <<<"$lj")" | bc)
LOOKUP_P50=$(jq .latency_ms.p50 <<<"$lj"); LOOKUP_P99=$(jq .latency_ms.p99 <<<"$lj")
LOOKUP_CPU=$(per_op "${DCPU[lookup]}" "$(jq .ok <<<"$lj")")
LOOKUP_WCPU=$(per_op "${WCPU[lookup]}" "$(jq .ok <<<"$lj")")
note "  $(jq .ok <<<"$lj") lookups, every one 200 with the right diagnosis ($(jq .checked.issued <<<"$lj") issued, $(jq .checked.not_found <<<"$lj") in stock); p50 $LOOKUP_P50 ms, p99 $LOOKUP_P99 ms; CPU per lookup: perkhubd $LOOKUP_CPU µs, wrk $LOOKUP_WCPU µs"

footprint end "$TOTAL"

# ---- stop perkhubd (SIGTERM, then the store is checked once more at rest) ---------------
kill -TERM "$PID"
for _ in $(seq 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PID" 2>/dev/null && fail "perkhubd did not stop within 30 s of SIGTERM"
wait "$PID" || fail "perkhubd exited with $? on SIGTERM"
PID=""
check_store "after shutdown"
store_bytes=$(stat -c %s "$TMP/data/data.mdb")
rm -rf "$TMP/data"

# ---- the limit -------------------------------------------------------------------------
note "lmdb_limit: $LIMIT_CODES codes, up to ${LIMIT_SECONDS}s per mode"
# with the CPU of each loop per issuance (user + system: the kernel's share of a durable commit
# counts, as it does for perkhubd): the floor's second half
limit_run() { # mode -> lmdb_limit's JSON line (cpu_us_per_issuance: its loop alone)
    "$LIMIT_BIN" "$TMP/limit-$1" --codes "$LIMIT_CODES" --seconds "$LIMIT_SECONDS" "--$1"
    rm -rf "$TMP/limit-$1"
}
limit_min=$(limit_run minimal)
limit_full=$(limit_run full)
# The denominator: the minimal loop's rate, unless the full loop (a superset of its writes)
# went faster — then the minimal run was disturbed (fsync stalls from another process on
# a shared disk) and the full loop's rate is the better lower bound of the limit.
LIMIT=$(jq .issuances_per_s <<<"$limit_min"); LIMIT_FROM=minimal
if [ "$(jq .issuances_per_s <<<"$limit_full")" -gt "$LIMIT" ]; then
    LIMIT=$(jq .issuances_per_s <<<"$limit_full"); LIMIT_FROM=full
    note "  the minimal limit run was slower than the full one: disturbed; the full one is the limit"
fi
note "  limit $(jq .issuances_per_s <<<"$limit_min")/s ($(jq .cpu_us_per_issuance <<<"$limit_min") µs CPU each), limit-full $(jq .issuances_per_s <<<"$limit_full")/s ($(jq .cpu_us_per_issuance <<<"$limit_full") µs)"
# The floor's LMDB half at the batch the daemon formed. A durable commit's cost (the page
# writes and the flush) is paid once per commit, so the raw loop's CPU per issuance depends on
# how many issuances share a commit: 512 a commit needs 512 orders in flight, which 64
# connections cannot give. The loop that does the daemon's writes (full) at the commands per
# commit the daemon reached at the compared connection count is the floor's durable write;
# the 512-a-commit figure stays as information.
VS_CONNS=$(tr ' ' '\n' <<<"$CONNS" | grep -qx 64 && echo 64 || tr ' ' '\n' <<<"$CONNS" | tail -1)
VS_BATCH=$(printf '%.0f' "${BATCH[$VS_CONNS]}")
[ "$VS_BATCH" -ge 1 ] || VS_BATCH=1
limit_batch=$("$LIMIT_BIN" "$TMP/limit-batch" --codes "$LIMIT_CODES" --seconds "$LIMIT_SECONDS" --full --batch "$VS_BATCH")
rm -rf "$TMP/limit-batch"
note "  limit-full at the daemon's batch ($VS_BATCH a commit, as at $VS_CONNS connections): $(jq .issuances_per_s <<<"$limit_batch")/s, $(jq .cpu_us_per_issuance <<<"$limit_batch") µs CPU each"

# ---- the other parts: their own scripts, their own JSON ----------------------------------
# A part's JSON counts only if written during this run; a part that fails (a correctness
# failure of its own) fails the bench, after the table is printed.
PART_FAILED=""
run_part() { # name knob
    local script=$SRC/bench/$1.sh json=$RESULTS/$1.json rc=0 why
    if [ "$2" = 0 ]; then
        echo '{"status":"not run","why":"skipped (knob)"}' >"$TMP/parts/$1.json"
    elif [ ! -x "$script" ]; then
        echo '{"status":"not run","why":"no executable bench/'"$1"'.sh"}' >"$TMP/parts/$1.json"
    else
        note "running bench/$1.sh (up to ${PART_TIMEOUT}s)"
        timeout --kill-after=10 "$PART_TIMEOUT" "$script" "$BUILD" || rc=$?
        if [ "$rc" != 0 ]; then
            PART_FAILED="$PART_FAILED $1(exit $rc)"
            why="exit $rc"
            [ "$rc" != 124 ] && [ "$rc" != 137 ] || why="timed out after ${PART_TIMEOUT}s"
            jq -n --argjson rc "$rc" --arg why "$why" '{status: "failed", exit: $rc, why: $why}' \
                >"$TMP/parts/$1.json"
        elif [ ! -f "$json" ] || [ ! "$json" -nt "$TMP/started" ] || ! jq -e . "$json" >/dev/null 2>&1; then
            PART_FAILED="$PART_FAILED $1(no-json)"
            echo '{"status":"failed","why":"no JSON written"}' >"$TMP/parts/$1.json"
        else
            jq '{status: "ran"} + . + {status: "ran"}' "$json" >"$TMP/parts/$1.json"
        fi
    fi
}
run_part peers "$RUN_PEERS"
run_part supplier_io "$RUN_SUPPLIER_IO"

# ---- one table, the verdicts, the JSON -----------------------------------------------------
for c in $CONNS; do
    jq -c --argjson c "$c" --argjson rps "${RPS[$c]}" --argjson late "${LATE[$c]}" \
        --argjson commits "${COMMITS[$c]}" --argjson batch "${BATCH[$c]}" --argjson limit "$LIMIT" \
        --argjson ceil "${CEIL_RPS[$c]}" --argjson dcpu "${ORDER_CPU[$c]}" --argjson wcpu "${ORDER_WCPU[$c]}" \
        --argjson ccpu "${CEIL_CPU[$c]}" \
        '{connections: $c, orders_per_s: $rps, late_commits: $late, durable_commits: $commits,
          cpu_us_per_order: {perkhubd: $dcpu, wrk: $wcpu}, http_ceiling_cpu_us_per_request: $ccpu,
          commands_per_commit: $batch, ratio_to_limit: (($rps / $limit) * 1000 | round / 1000),
          http_ceiling_per_s: $ceil, ratio_to_http_ceiling: (($rps / $ceil) * 1000 | round / 1000),
          wrk: .}' \
        "$TMP/wrk-$c.json"
done | jq -s . >"$TMP/parts/runs.json"
for c in $CONNS; do
    jq -c --argjson c "$c" --argjson rps "${CEIL_RPS[$c]}" --argjson dcpu "${CEIL_CPU[$c]}" \
        --argjson wcpu "${CEIL_WCPU[$c]}" \
        '{connections: $c, answers_per_s: $rps, p50_ms: .latency_ms.p50, p99_ms: .latency_ms.p99,
          cpu_us_per_request: {perkhubd: $dcpu, wrk: $wcpu}, wrk: .}' \
        "$TMP/ceil-$c.json"
done | jq -s --arg sku "$CEIL_SKU" --argjson threads "$THREADS" --argjson duration "$DURATION" \
    --arg loadgen "wrk + bench/order.lua (BENCH_EXPECT=422)" \
    '{request: "POST /v1/orders {client_order_id, sku: \($sku), quantity: 1}, bearer token of the fulfill client",
      answer: "422 unknown_sku", writes: "none (stops before the writer: no commit, no suspend/resume)",
      why: "the same route, authentication, body parse and field checks as an order, minus the durable write",
      threads: $threads, duration_s: $duration, load_generator: $loadgen,
      runs: .}' >"$TMP/parts/ceiling.json"
jq -n --arg at "$(date -u +%FT%TZ)" --arg uname "$(uname -srmo)" --argjson nproc "$(nproc)" \
    --arg cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --argjson secs "$(($(date +%s) - T_START))" \
    --argjson codes "$CODES" --argjson bulk "$BULK" --argjson total "$TOTAL" \
    --argjson import_codes "$IMPORT_CODES" --argjson import_s "$import_s" --argjson rest_s "$rest_s" \
    --argjson duration "$DURATION" --argjson threads "$THREADS" --arg sku "$SKU" \
    --arg loadgen "wrk + bench/order.lua" \
    --argjson store_bytes "$store_bytes" \
    --slurpfile runs "$TMP/parts/runs.json" --slurpfile ceiling "$TMP/parts/ceiling.json" --argjson limit "$limit_min" --argjson limit_full "$limit_full" \
    --argjson limit_batch "$limit_batch" \
    --argjson limit_used "$LIMIT" --arg limit_from "$LIMIT_FROM" \
    --argjson lconns "$LOOKUP_CONNS" --argjson lshare "$LOOKUP_SHARE" --argjson issued "$ISSUED" \
    --argjson lrps "$LOOKUP_RPS" --slurpfile lwrk "$TMP/lookup.json" \
    --argjson lcpu "$LOOKUP_CPU" --argjson lwcpu "$LOOKUP_WCPU" \
    --argjson bulk_s "$bulk_s" --argjson bulk_bytes "$bulk_bytes" \
    --slurpfile fp_import "$TMP/parts/footprint-import.json" --slurpfile fp_end "$TMP/parts/footprint-end.json" \
    --slurpfile peers "$TMP/parts/peers.json" --slurpfile sio "$TMP/parts/supplier_io.json" '
    def r3: . * 1000 | round / 1000;
    {bench: "perkhub make bench (issue 4)", at: $at, wall_seconds: $secs,
     machine: {uname: $uname, nproc: $nproc, cpu: $cpu, load_avg_at_end: $load},
     settings: {durable: true, sku: $sku, codes_for_issuance: $codes, bulk_quantity: $bulk,
                codes_imported: $total, wrk_duration_s: $duration, wrk_threads: $threads,
                issuance_load_generator: $loadgen,
                lookup_connections: $lconns, lookup_issued_share: $lshare},
     issuance: {runs: $runs[0], http_ceiling: $ceiling[0], limit: $limit, limit_full: $limit_full, limit_at_batch: $limit_batch,
                limit_used: {issuances_per_s: $limit_used, from: $limit_from},
                store_bytes_after: $store_bytes},
     lookups: {connections: $lconns, lookups_per_s: $lrps, p50_ms: $lwrk[0].latency_ms.p50,
               cpu_us_per_lookup: {perkhubd: $lcpu, wrk: $lwcpu},
               p99_ms: $lwrk[0].latency_ms.p99, codes_issued: $issued, codes_total: $total,
               issued_share: $lshare, wrk: $lwrk[0]},
     bulk: {import: {codes: $import_codes, requests: 1, seconds: $import_s,
                     codes_per_s: ($import_codes / $import_s | round),
                     rest: {codes: ($total - $import_codes), seconds: $rest_s}},
            order: {quantity: $bulk, seconds: $bulk_s, codes_per_s: ($bulk / $bulk_s | round),
                    response_bytes: $bulk_bytes}},
     footprint: {at_import: $fp_import[0], at_end: $fp_end[0]},
     peers: $peers[0], supplier_io: $sio[0]}' >"$TMP/latest.json"

# The verdicts and the table, from the JSON. The parts are read by what their keys say
# (postgres tuned "tps", redis always "ops_per_s", supplier I/O "ratio" and peak RSS).
# Issue 18: the verdicts are about what the code costs (CPU per operation of perkhubd against
# Redis's Lua issuance and against the floor measured in this run: the HTTP ceiling's CPU per
# request plus the raw LMDB loop's per issuance; CPU per recharge), which does not depend on
# who else shares the two cores; the throughput ratios of issue 4 stay as information.
jq '
    def num(re; leaves): [paths(numbers) as $p
        | select(($p[:-1] | map(tostring) | join(".")) | test(re; "i"))
        | select(($p[-1] | tostring) as $l | leaves | index($l) != null)
        | {n: ($p | length), v: getpath($p)}] | sort_by(.n) | first | .v;
    def crit(name; v; op; t): {figure: name, value: v, op: op, threshold: t,
        verdict: (if v == "n/a" then "n/a" elif v == null then "not run"
                  elif (op == ">=" and v >= t) or (op == "<" and v < t) or (op == "<=" and v <= t)
                  then "PASS" else "MISS" end)};
    def target(id; name; cs): {id: id, name: name, criteria: cs,
        verdict: ([cs[].verdict] | if any(. == "not run") then "not run" elif any(. == "n/a") then "n/a"
                  elif all(. == "PASS") then "PASS" else "MISS" end)};
    def q(a; b): if a == null or b == null or b == 0 then null else a / b | . * 1000 | round / 1000 end;
    .issuance.runs as $runs | ($runs | last) as $last
    | .peers.status as $pstat | .supplier_io.status as $sstat
    | (.peers | if .status == "ran" then . else null end) as $peers
    | (.supplier_io | if .status == "ran" then . else null end) as $sio
    | ($peers | if . then num("(postgres|pg).*tuned|tuned"; ["tps"]) else null end) as $pg
    | ($peers | if . then num("(postgres|pg).*naive|naive"; ["tps"]) else null end) as $pg_naive
    | ($peers | if . then num("redis.*everysec|everysec"; ["ops_per_s"]) else null end) as $redis_es
    | ($peers | if . then num("redis.*always|always"; ["ops_per_s"]) else null end) as $redis
    | ($peers | if . then num("postgres|pg"; ["clients"]) else null end) as $peer_clients
    | ([$runs[] | select(.connections == ($peer_clients // 64))] | first // $last) as $vs
    | ($sio | if . then (.settings.in_flight_target // 10000) != 10000 else false end) as $sio_small
    | ($sio | if . then (.runs.steady.ratio_target // .runs.burst.ratio
                         // num(""; ["ratio_target", "ratio"])) else null end
       | if . != null and $sio_small then "n/a" else . end) as $sio_ratio
    | ($sio | if . then ([.runs[]? | .peak_rss_anon_kb // empty] | max
                         // num(""; ["peak_rss_anon_kb"]))
                        | if . then . / 1024 | . * 10 | round / 10 else null end
                        | if . != null and $sio_small then "n/a" else . end
              else null end) as $sio_rss
    | ($sio | if . then ([.runs[]? | .vm_hwm_kb // empty] | max)
                        | if . then . / 1024 | . * 10 | round / 10 else null end
              else null end) as $sio_hwm
    | ($sio | if . then .runs.steady.cpu_us_per_order.perkhubd else null end
       | if . != null and $sio_small then "n/a" else . end) as $recharge_cpu
    | ($vs.cpu_us_per_order.perkhubd) as $order_cpu
    | ($vs.http_ceiling_cpu_us_per_request) as $ceil_cpu
    | (.issuance.limit_at_batch.cpu_us_per_issuance) as $lmdb_cpu
    | (.issuance.limit_full.cpu_us_per_issuance) as $lmdb_512_cpu
    | (if $ceil_cpu != null and $lmdb_cpu != null then $ceil_cpu + $lmdb_cpu | . * 10 | round / 10 else null end) as $floor
    | (if $ceil_cpu != null and $lmdb_512_cpu != null then $ceil_cpu + $lmdb_512_cpu | . * 10 | round / 10 else null end) as $floor_512
    | ($peers | if . then .redis_always.cpu_us_per_op.redis_server else null end) as $redis_cpu
    | .comparisons = {orders_per_s: $vs.orders_per_s, at_connections: $vs.connections,
                      postgres_tuned_tps: $pg, redis_always_ops_per_s: $redis,
                      postgres_naive_tps: $pg_naive, redis_everysec_ops_per_s: $redis_es,
                      vs_postgres_naive: (if $pg_naive then $vs.orders_per_s / $pg_naive | . * 100 | round / 100 else null end),
                      vs_redis_everysec: (if $redis_es then $vs.orders_per_s / $redis_es | . * 100 | round / 100 else null end),
                      vs_postgres_tuned: (if $pg then $vs.orders_per_s / $pg | . * 100 | round / 100 else null end),
                      vs_redis_always: (if $redis then $vs.orders_per_s / $redis | . * 100 | round / 100 else null end)}
    | .cpu = {at_connections: $vs.connections,
              durable_order_us: {perkhubd: $order_cpu, wrk: $vs.cpu_us_per_order.wrk},
              floor_us: $floor, http_ceiling_us: $ceil_cpu, lmdb_loop_us: $lmdb_cpu,
              lmdb_loop_batch: .issuance.limit_at_batch.batch,
              order_vs_floor: q($order_cpu; $floor),
              floor_512_us: $floor_512, lmdb_loop_512_us: $lmdb_512_cpu,
              order_vs_floor_512: q($order_cpu; $floor_512),
              redis_always_lua_us: $redis_cpu,
              redis_always_load_generator_us: ($peers | if . then .redis_always.cpu_us_per_op.redis_load else null end),
              order_vs_redis: q($order_cpu; $redis_cpu),
              postgres_tuned_us: ($peers | if . then .postgres_tuned.cpu_us_per_op.postgres else null end),
              recharge_us: $recharge_cpu,
              recharge_supsim_us: ($sio | if . then .runs.steady.cpu_us_per_order.supsim1 else null end),
              lookup_us: .lookups.cpu_us_per_lookup}
    | .targets = [
        target(1; "CPU per durable order, perkhubd, \($vs.connections) connections";
               [crit("÷ redis-server per Lua issuance (always)"; .cpu.order_vs_redis; "<="; 1),
                crit("÷ the floor (HTTP ceiling + LMDB loop at the same batch)"; .cpu.order_vs_floor; "<="; 1.3)]),
        (target(2; "CPU per recharge, perkhubd, 10,000 in flight";
               [crit("µs per recharge"; $recharge_cpu; "<="; 80)])
         | if $sstat == "failed" then .verdict = "failed" else . end),
        target(3; "issuance latency at \($last.connections) connections";
               [crit("p99 ms"; $last.wrk.latency_ms.p99; "<"; 10)]),
        target(4; "lookups over HTTP"; [crit("lookups/s"; .lookups.lookups_per_s; ">="; 50000)]),
        target(5; "bulk";
               [crit("import of 1,000,000 codes, s"; (if .bulk.import.codes == 1000000
                     then .bulk.import.seconds else "n/a" end); "<"; 15),
                crit("order of 100,000 codes, s"; (if .bulk.order.quantity == 100000
                     then .bulk.order.seconds else "n/a" end); "<"; 2)]),
        (target(6; "supplier I/O at 10,000 in flight";
               [crit("peak RSS MB (RssAnon: own memory, without LMDB file pages)"; $sio_rss; "<"; 256)])
        | .vm_hwm_mb = $sio_hwm | .completion_ratio = $sio_ratio
        | if $sstat == "failed" then .verdict = "failed" else . end)]' "$TMP/latest.json" >"$OUT_JSON"

# rows: figure, value, compared with, ratio, target, verdict (from the JSON; separated by
# US, not tabs, which `read` would merge when a cell is empty)
jq -r '
    def f(n): if n == null then "-" elif (n | type) == "number" then
        (if n >= 1000 then n | round | tostring elif n >= 100 then (n * 10 | round / 10 | tostring)
         else (n * 1000 | round / 1000 | tostring) end) else n end;
    def r(n): if n == null then "-" elif (n | type) != "number" then n
              else (n * 1000 | round / 1000 | tostring) end;
    def v(t; i): t[i - 1].criteria;
    . as $j | .targets as $t | .issuance.limit_used.issuances_per_s as $lim | .comparisons as $c
    | .cpu as $cpu
    | ($j.peers.status // "not run") as $ps | ($j.supplier_io.status // "not run") as $ss
    | ( ["figure", "value", "compared with", "ratio", "target", "verdict"],
        ["CPU µs/order, perkhubd (\($cpu.at_connections) conns)", f($cpu.durable_order_us.perkhubd),
         "redis-server µs/Lua issuance \(f($cpu.redis_always_lua_us))", r($cpu.order_vs_redis), "<= 1", v($t; 1)[0].verdict],
        ["", "", "floor \(f($cpu.floor_us)) = ceiling \(f($cpu.http_ceiling_us)) + LMDB \(f($cpu.lmdb_loop_us)) (\($cpu.lmdb_loop_batch)/commit)",
         r($cpu.order_vs_floor), "<= 1.3", v($t; 1)[1].verdict],
        ["", "", "info: floor at 512/commit \(f($cpu.floor_512_us)) (LMDB \(f($cpu.lmdb_loop_512_us)))",
         r($cpu.order_vs_floor_512), "", ""],
        ["CPU µs/recharge, perkhubd", f($cpu.recharge_us), "supsim \(f($cpu.recharge_supsim_us)) µs", "", "<= 80", v($t; 2)[0].verdict],
        (.issuance.runs[] | . as $run
         | ["issuance orders/s, \(.connections) conns", f(.orders_per_s), "limit \(f($lim))/s",
            r(.ratio_to_limit), "", ""],
           ["  p50 / p99 ms", "\(f(.wrk.latency_ms.p50)) / \(f(.wrk.latency_ms.p99))",
            "\(.commands_per_commit) orders/commit", "",
            (if $run == ($j.issuance.runs | last) then "p99 < 10" else "" end),
            (if $run == ($j.issuance.runs | last) then v($t; 3)[0].verdict else "" end)],
           ["  CPU µs/order perkhubd, wrk", "\(f(.cpu_us_per_order.perkhubd)), \(f(.cpu_us_per_order.wrk))",
            "ceiling: \(f(.http_ceiling_cpu_us_per_request)) µs/request", "", "", ""],
           ["  HTTP ceiling answers/s", f(.http_ceiling_per_s), "orders/s / it (422, no write)",
            r(.ratio_to_http_ceiling), "", ""]),
        ["limit (4 writes, 512/commit)", f(.issuance.limit.issuances_per_s), "the limit used: \(.issuance.limit_used.from); \(f(.issuance.limit.cpu_us_per_issuance)) µs CPU each", "", "", ""],
        ["limit-full (+ 2 indexes)", f(.issuance.limit_full.issuances_per_s), "limit; \(f(.issuance.limit_full.cpu_us_per_issuance)) µs CPU each", r(.issuance.limit_full.issuances_per_s / .issuance.limit.issuances_per_s), "", ""],
        (if $ps == "ran" then
           ["postgres naive tps", f($c.postgres_naive_tps),
            "orders/s / it" + ($j.peers.postgres_naive | if .first_interval_tps then
              " (1st s \(f(.first_interval_tps)), last \(f(.last_interval_tps)))" else "" end),
            r($c.vs_postgres_naive), "", ""],
           ["postgres tuned tps", f($c.postgres_tuned_tps), "orders/s / it (\($c.at_connections) conns); \(f($cpu.postgres_tuned_us)) µs CPU each", r($c.vs_postgres_tuned), "", ""],
           ["redis always ops/s", f($c.redis_always_ops_per_s), "orders/s / it; load gen \(f($cpu.redis_always_load_generator_us)) µs", r($c.vs_redis_always), "", ""],
           ["redis everysec ops/s", f($c.redis_everysec_ops_per_s), "orders/s / it", r($c.vs_redis_everysec), "", ""]
         else ["peers (postgres, redis)", $ps, ($j.peers.why // "exit \($j.peers.exit // "?")"), "", "", ""] end),
        ["lookups/s, \(.lookups.connections) conns", f(.lookups.lookups_per_s), "target 50000/s", r(.lookups.lookups_per_s / 50000), ">= 50000/s", v($t; 4)[0].verdict],
        ["  p50 / p99 ms", "\(f(.lookups.p50_ms)) / \(f(.lookups.p99_ms))", "CPU µs/lookup perkhubd \(f(.lookups.cpu_us_per_lookup.perkhubd)), wrk \(f(.lookups.cpu_us_per_lookup.wrk))", "", "", ""],
        ["import \(.bulk.import.codes) codes, 1 request, s", f(.bulk.import.seconds), "\(f(.bulk.import.codes_per_s)) codes/s", r(.bulk.import.seconds / 15), "< 15 s", v($t; 5)[0].verdict],
        ["bulk order \(.bulk.order.quantity) codes, s", f(.bulk.order.seconds), "\(f(.bulk.order.codes_per_s)) codes/s", r(.bulk.order.seconds / 2), "< 2 s", v($t; 5)[1].verdict],
        (if $ss == "ran" then
           ["supplier I/O rate / ideal", r($t[5].completion_ratio), ($j.supplier_io | "\(if .runs.steady.ratio_target then "steady run, " else "" end)\(.settings.in_flight_target // "?") in flight, \(.settings.latency_ms // "?") ms"), r($t[5].completion_ratio), "", ""],
           ["supplier I/O peak RSS MB (anon)", f(v($t; 6)[0].value),
            ($j.supplier_io.runs // {} | to_entries | map(select(.value | type == "object"))
             | max_by(.value.peak_rss_anon_kb // 0)
             | if . then "RssAnon, highest in the \(.key) run; VmHWM \(f($t[5].vm_hwm_mb)) with LMDB file pages" else "" end), (v($t; 6)[0].value | if type == "number" then r(. / 256) else "-" end), "< 256 MB", v($t; 6)[0].verdict]
         else ["supplier I/O", $ss, ($j.supplier_io.why // "exit \($j.supplier_io.exit // "?")"), "", "", $t[5].verdict] end),
        (.footprint.at_import | ["RSS MB at \(.codes_stored) codes (peak)", "\(f(.rss_kb / 1024)) (\(f(.rss_peak_kb / 1024)))", "anon \(f(.rss_anon_kb / 1024)), file \(f(.rss_file_kb / 1024))", "", "", ""],
                                ["LMDB bytes/code (file, live)", "\(f(.bytes_per_code_file)), \(f(.bytes_per_code_live))", "\(.pages_used - .pages_free) live pages of \(.page_size) B", "", "", ""]),
        (.footprint.at_end | ["RSS MB at the end (peak)", "\(f(.rss_kb / 1024)) (\(f(.rss_peak_kb / 1024)))", "anon \(f(.rss_anon_kb / 1024)), file \(f(.rss_file_kb / 1024)); \(.codes_stored) codes", "", "", ""]),
        ["targets", ([$t[] | "(\(.id)) \(.verdict)"] | join("  ")), "", "", "", ""]
      ) | map(tostring) | join("\u001f")' "$OUT_JSON" >"$TMP/table.txt"

printf '\nperkhub bench — %s, nproc %s, load %s\n' "$(uname -srm)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
while IFS=$'\x1f' read -r a b c d e f; do
    printf '%-36s %-18s %-38s %-7s %-11s %s\n' "$a" "$b" "$c" "$d" "$e" "$f"
done <"$TMP/table.txt"
echo "results: ${OUT_JSON#"$SRC"/} ($(($(date +%s) - T_START)) s)"

# ---- the parts with a daemon (or a store) of their own --------------------------------------
# part KNOB SCRIPT TIMEOUT MISS_OK: runs bench/SCRIPT unless $KNOB is 0; each prints its own
# figures and PASS/MISS line. Exit 3 is a MISS, not a failure, where MISS_OK is 1 (the parts
# from issue 11 on; the two older ones fail on it).
part() {
    local knob=$1 script=$2 limit=$3 miss_ok=$4 rc=0
    [ "${!knob:-1}" != 0 ] || return 0
    echo
    timeout --kill-after=10 "$limit" "$SRC/bench/$script" "$BUILD" || rc=$?
    [ "$rc" = 0 ] || { [ "$miss_ok" = 1 ] && [ "$rc" = 3 ]; } || PART_FAILED="$PART_FAILED ${script%.sh}(exit $rc)"
}
part BENCH_LOOKUP_TIMING lookup_timing.sh "$PART_TIMEOUT" 0     # issue 10: lookup time vs. existence
part BENCH_REPORT_MONTH report_month.sh "${BENCH_RM_TIMEOUT:-1800}" 0  # issue 11: a month's report
part BENCH_TLS_CPU tls_cpu.sh "$PART_TIMEOUT" 1                  # issue 14: HTTPS vs HTTP CPU/order
part BENCH_EVENT_FEED event_feed.sh "$PART_TIMEOUT" 1            # issue 13: a mall's event feed
part BENCH_WEBHOOKS webhooks.sh "$((PART_TIMEOUT * 3))" 1        # issue 13: orders/s with webhooks
part BENCH_SYNC_CATALOG sync_catalog.sh "$PART_TIMEOUT" 1        # issue 12: a 10,000-item catalog
part BENCH_ALERTS_WRITER alerts_writer.sh "$PART_TIMEOUT" 1      # issue 12: alert checks, writer
part BENCH_ALERTS_CPU alerts_cpu.sh "$PART_TIMEOUT" 1            # issue 12: the same over HTTP
part BENCH_RISK_CHECK risk_check.sh "$PART_TIMEOUT" 1          # issue 15: the risk engine per check
part BENCH_RISK_CPU risk_cpu.sh "$((PART_TIMEOUT * 2))" 1       # issue 15: perkhubd CPU/order, 20 rules
part BENCH_HTTP_PROTO http_proto.sh "$PART_TIMEOUT" 1           # issue 18: the HTTP layer, MHD vs h2o
part BENCH_ANALYTICS analytics.sh "${BENCH_AN_TIMEOUT:-900}" 1    # issue 16: analytics at 10M orders
part BENCH_GRANT_BATCH grant_batch.sh "$PART_TIMEOUT" 1        # issue 16: 100,000 grants in one batch
part BENCH_REPL repl.sh "$((PART_TIMEOUT * 2))" 1              # issue 19: replicated vs single, lag, failover
part BENCH_SNAPSHOT snapshot.sh "$PART_TIMEOUT" 1             # issue 19: a snapshot's take, pull and cost
[ -z "$PART_FAILED" ] || fail "parts failed:$PART_FAILED"
