#!/usr/bin/env bash
# bench/run.sh BUILD_DIR — first slice of `make bench` (issue 4): durable issuance
# over HTTP (perkhubd + wrk on loopback) against the machine's limit (lmdb_limit).
# See bench/README.md for what each figure means. Bounded in time; stops its daemon
# and removes its temp dir on exit, whatever happens.
#
# Knobs (environment): BENCH_CODES (1600000), BENCH_DURATION (10, seconds per wrk run),
# BENCH_CONNS ("64 256"), BENCH_THREADS (2), BENCH_LIMIT_CODES (= BENCH_CODES),
# BENCH_LIMIT_SECONDS (10).
set -euo pipefail

BUILD=${1:?usage: bench/run.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
CODES=${BENCH_CODES:-1600000}
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNS:-"64 256"}
THREADS=${BENCH_THREADS:-2}
LIMIT_CODES=${BENCH_LIMIT_CODES:-$CODES}
LIMIT_SECONDS=${BENCH_LIMIT_SECONDS:-10}
SKU=bench.card
MALL_TOKEN=bench-mall-token
OPS_TOKEN=bench-ops-token
PERKHUBD=$BUILD/perkhubd

fail() { echo "bench: FAIL: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ -x "$PERKHUBD" ] || fail "$PERKHUBD not found (make build first)"
"$SRC/tools/deps.sh" wrk

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

# ---- the machine's limit (built here, in the build dir) ---------------------------
LIMIT_BIN=$BUILD/bench_lmdb_limit
gcc -O2 -std=c11 -Wall -Wextra -o "$LIMIT_BIN" "$SRC/bench/lmdb_limit.c" -llmdb \
    || fail "could not build bench/lmdb_limit.c"

# ---- perkhubd on a temp dir --------------------------------------------------------
sha() { printf %s "$1" | sha256sum | cut -c1-64; }
cat > "$TMP/perkhub.yaml" <<YAML
listen:
  address: 127.0.0.1
  port: 0
  port_file: $TMP/port
data_dir: $TMP/data
master_key_file: $TMP/master.key
master_key_create: true
plugin_dir: $BUILD/plugins
log:
  level: warn
clients:
  - name: mall
    token_sha256: $(sha "$MALL_TOKEN")
    scopes: [fulfill, support]
  - name: ops
    token_sha256: $(sha "$OPS_TOKEN")
    scopes: [ops]
suppliers:
  - id: acme
    plugin: example
    priority: 10
products:
  - sku: $SKU
    name: Bench card
    brand: bench
    category: video
    delivery: card_code
    face_value: "30.00"
    offers:
      - {supplier: acme, supplier_sku: B-1, cost: "19.80"}
YAML
"$PERKHUBD" --check-config "$TMP/perkhub.yaml" >/dev/null || fail "generated config rejected"
"$PERKHUBD" -c "$TMP/perkhub.yaml" >"$TMP/perkhubd.log" 2>&1 &
PID=$!
for _ in $(seq 300); do
    [ -s "$TMP/port" ] && break
    kill -0 "$PID" 2>/dev/null || { cat "$TMP/perkhubd.log" >&2; fail "perkhubd exited at start"; }
    sleep 0.1
done
[ -s "$TMP/port" ] || fail "perkhubd wrote no port file in 30 s"
PORT=$(cat "$TMP/port")
URL=http://127.0.0.1:$PORT
curl -sf --max-time 5 "$URL/v1/health" >/dev/null || fail "perkhubd not healthy"

# stats: "issued" of $SKU and the store's order count
stats() { curl -sf --max-time 30 "$URL/v1/stats" -H "Authorization: Bearer $OPS_TOKEN"; }
stat_issued() { grep -o "\"sku\":\"$SKU\"[^}]*" <<<"$1" | grep -o '"issued":[0-9]*' | cut -d: -f2; }
stat_orders() { grep -o '"orders":[0-9]*' <<<"$1" | cut -d: -f2; }
stat_writer() { grep -o "\"writer\":{\"commits\":[0-9]*,\"commands\":[0-9]*" <<<"$1" | grep -o "[0-9]*" | tr "\n" " "; }
check_store() {
    "$PERKHUBD" --check-store "$TMP/data" >"$TMP/check.out" 2>&1 \
        || { cat "$TMP/check.out" >&2; fail "perkhubd --check-store failed ($1)"; }
}

# ---- import the stock: POST /v1/batches, at most 1,000,000 codes a request ---------
note "importing $CODES codes"
t0=$(date +%s.%N)
left=$CODES; next=1
while [ "$left" -gt 0 ]; do
    n=$(( left < 1000000 ? left : 1000000 ))
    { echo code; seq "$next" $((next + n - 1)) | awk '{printf "BENCH-%010d\n", $1}'; } > "$TMP/codes.csv"
    code=$(curl -s -o "$TMP/import.out" -w '%{http_code}' --max-time 600 -X POST \
        "$URL/v1/batches?supplier=acme&sku=$SKU&unit_cost=19.80&note=bench" \
        -H "Authorization: Bearer $OPS_TOKEN" -H 'Content-Type: text/csv' --data-binary @"$TMP/codes.csv")
    [ "$code" = 201 ] || { head -c 500 "$TMP/import.out" >&2; fail "import returned $code"; }
    left=$((left - n)); next=$((next + n))
done
rm -f "$TMP/codes.csv"
import_s=$(echo "$(date +%s.%N) - $t0" | bc | sed "s/^\./0./")
check_store "after import"

# ---- wrk at each concurrency -----------------------------------------------------------
declare -A RPS P50 P99 OK NON2XX LATE COMMITS BATCH
s=$(stats)
prev_issued=$(stat_issued "$s"); prev_orders=$(stat_orders "$s")
read -r prev_commits prev_commands <<<"$(stat_writer "$s")"
for c in $CONNS; do
    note "wrk: $c connections, $THREADS threads, ${DURATION}s"
    BENCH_TOKEN=$MALL_TOKEN BENCH_SKU=$SKU BENCH_RUN="c$c" BENCH_OUT="$TMP/wrk-$c.json" \
        BENCH_UNANSWERED="$TMP/unanswered-$c.txt" \
        timeout $((DURATION + 60)) wrk -t "$THREADS" -c "$c" -d "${DURATION}s" --timeout 10s \
        -s "$SRC/bench/order.lua" "$URL" >"$TMP/wrk-$c.out" 2>&1 \
        || { cat "$TMP/wrk-$c.out" >&2; fail "wrk failed at $c connections"; }
    [ -s "$TMP/wrk-$c.json" ] || { cat "$TMP/wrk-$c.out" >&2; fail "wrk wrote no summary"; }
    j=$(cat "$TMP/wrk-$c.json")
    field() { grep -o "\"$1\":[0-9.]*" <<<"$j" | head -1 | cut -d: -f2; }
    OK[$c]=$(field ok); NON2XX[$c]=$(field non2xx)
    RPS[$c]=$(echo "scale=1; ${OK[$c]} / $(field duration_s)" | bc)
    P50[$c]=$(grep -o '"p50":[0-9.]*' <<<"$j" | cut -d: -f2)
    P99[$c]=$(grep -o '"p99":[0-9.]*' <<<"$j" | cut -d: -f2)
    # Correctness: the codes issued during the run are exactly the 2xx responses plus
    # those requests the daemon committed but wrk stopped before reading (asked one by one).
    [ "$(field unmatched)" = 0 ] || fail "$c conns: responses without their X-Request-Id"
    nun=$(wc -l < "$TMP/unanswered-$c.txt")
    [ "$nun" -le $((2 * c)) ] || fail "$c conns: $nun requests unanswered (more than two per connection)"
    [ "${NON2XX[$c]}" = 0 ] || fail "$c conns: ${NON2XX[$c]} non-2xx responses (out of stock? raise BENCH_CODES); wrk said: $(tail -3 "$TMP/wrk-$c.out")"
    late=0
    while read -r id; do
        [ -n "$id" ] || continue
        r=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
            "$URL/v1/orders?client_order_id=$id" -H "Authorization: Bearer $MALL_TOKEN")
        case $r in 200) late=$((late + 1)) ;; 404) ;; *) fail "order lookup $id returned $r" ;; esac
    done < "$TMP/unanswered-$c.txt"
    s=$(stats); issued=$(stat_issued "$s"); orders=$(stat_orders "$s")
    d_issued=$((issued - prev_issued)); d_orders=$((orders - prev_orders))
    [ "$d_issued" -eq $((OK[$c] + late)) ] \
        || fail "$c conns: $d_issued codes issued, wrk saw ${OK[$c]} 2xx (+$late committed after wrk stopped)"
    [ "$d_orders" -eq "$d_issued" ] || fail "$c conns: $d_orders orders stored for $d_issued codes"
    LATE[$c]=$late
    read -r commits commands <<<"$(stat_writer "$s")"
    COMMITS[$c]=$((commits - prev_commits))
    BATCH[$c]=$(echo "scale=1; ($commands - $prev_commands) / ${COMMITS[$c]}" | bc | sed "s/^\./0./")
    prev_commits=$commits; prev_commands=$commands
    note "  ${OK[$c]} 2xx, ${NON2XX[$c]} non-2xx, $late answered after wrk stopped; stats agree; ${COMMITS[$c]} durable commits, ${BATCH[$c]} commands each"
    check_store "after wrk at $c connections"
    prev_issued=$issued; prev_orders=$orders
done

# ---- stop perkhubd (SIGTERM, then the store is checked once more at rest) ---------------
kill -TERM "$PID"
for _ in $(seq 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PID" 2>/dev/null && fail "perkhubd did not stop within 30 s of SIGTERM"
wait "$PID" || fail "perkhubd exited with $? on SIGTERM"
PID=""
check_store "after shutdown"
store_bytes=$(stat -c %s "$TMP/data/data.mdb")

# ---- the limit -------------------------------------------------------------------------
note "lmdb_limit: $LIMIT_CODES codes, up to ${LIMIT_SECONDS}s per mode"
limit_min=$("$LIMIT_BIN" "$TMP/limit-min" --codes "$LIMIT_CODES" --seconds "$LIMIT_SECONDS" --minimal)
limit_full=$("$LIMIT_BIN" "$TMP/limit-full" --codes "$LIMIT_CODES" --seconds "$LIMIT_SECONDS" --full)
lim() { grep -o '"issuances_per_s":[0-9]*' <<<"$1" | cut -d: -f2; }
LIMIT=$(lim "$limit_min"); LIMIT_FULL=$(lim "$limit_full")

# ---- table, verdict, results ---------------------------------------------------------------
last=${CONNS##* }
ratio() { echo "scale=3; $1 / $2" | bc | sed 's/^\./0./'; }
verdict=MISS
r_last=$(ratio "${RPS[$last]}" "$LIMIT")
if [ "$(echo "$r_last >= 0.40 && ${P99[$last]} < 10" | bc)" = 1 ]; then verdict=PASS; fi

printf '\nperkhub bench — durable issuance over HTTP vs the machine limit (%s, nproc %s)\n' \
    "$(uname -r)" "$(nproc)"
printf "%-12s %12s %10s %10s %8s %10s %10s %14s\n" conns "orders/s" "p50 ms" "p99 ms" non2xx commits "cmds/commit" "ratio/limit"
for c in $CONNS; do
    printf "%-12s %12s %10s %10s %8s %10s %10s %14s\n" "$c" "${RPS[$c]}" "${P50[$c]}" "${P99[$c]}" \
        "${NON2XX[$c]}" "${COMMITS[$c]}" "${BATCH[$c]}" "$(ratio "${RPS[$c]}" "$LIMIT")"
done
printf '%-12s %12s   (lmdb_limit, 4 writes/issuance, 512/commit)\n' limit "$LIMIT"
printf '%-12s %12s   (lmdb_limit --full, + order_ref + client_orders)\n' limit-full "$LIMIT_FULL"
printf '\ngoal: ratio >= 0.40 at %s connections with p99 < 10 ms: %s (ratio %s, p99 %s ms)\n' \
    "$last" "$verdict" "$r_last" "${P99[$last]}"

mkdir -p "$SRC/bench/results"
{
    printf '{"slice":"issuance-http-vs-lmdb-limit","at":"%s",' "$(date -u +%FT%TZ)"
    printf '"machine":{"nproc":%s,"kernel":"%s","load_avg_at_end":"%s"},' \
        "$(nproc)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '"settings":{"codes_imported":%s,"import_seconds":%s,"duration_s":%s,"wrk_threads":%s,' \
        "$CODES" "$import_s" "$DURATION" "$THREADS"
    printf '"sku":"%s","quantity":1,"durable":true,"store_bytes_after":%s},' "$SKU" "$store_bytes"
    printf '"runs":['
    sep=""
    for c in $CONNS; do
        printf '%s{"connections":%s,"orders_per_s":%s,"late_commits":%s,"durable_commits":%s,"commands_per_commit":%s,"ratio":%s,"wrk":%s}' \
            "$sep" "$c" "${RPS[$c]}" "${LATE[$c]}" "${COMMITS[$c]}" "${BATCH[$c]}" "$(ratio "${RPS[$c]}" "$LIMIT")" \
            "$(cat "$TMP/wrk-$c.json")"
        sep=","
    done
    printf '],"limit":%s,"limit_full":%s,' "$limit_min" "$limit_full"
    printf '"goal":{"connections":%s,"min_ratio":0.40,"max_p99_ms":10,"ratio":%s,"p99_ms":%s,"verdict":"%s"}}\n' \
        "$last" "$r_last" "${P99[$last]}" "$verdict"
} > "$SRC/bench/results/latest.json"
echo "results: bench/results/latest.json"
