#!/usr/bin/env bash
# bench/lookup_timing.sh BUILD_DIR — issue 10, defect 3: does the time of a code
# lookup say whether the code exists or whose it is? Starts its own perkhubd
# (bench/lib.sh), imports BENCH_LT_CODES codes, lets a second client (`other`)
# take BENCH_LT_ISSUED of them in orders of 4, then has bench/lookup_timing.c
# look up, as the mall (which may see none of them), BENCH_LT_PROBES codes of
# each kind — never imported, in stock, issued to `other`, the last two drawn
# at random (fixed seed) from all such codes, so that no kind is a run of
# neighbouring records that share cache lines — BENCH_LT_ROUNDS
# times, interleaved in random order on one keep-alive connection. Prints the
# median per kind and their differences, PASS when every difference is under
# 1 us (bench/README.md). Exits non-zero only when something is wrong (an answer
# that differs between the kinds, a failed request), never for a MISS.
#   BENCH_LT_CODES (20000), BENCH_LT_ISSUED (2000), BENCH_LT_PROBES (1000),
#   BENCH_LT_ROUNDS (10), BENCH_LT_LIMIT_NS (1000)
set -euo pipefail

BUILD=${1:?usage: bench/lookup_timing.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
CODES=${BENCH_LT_CODES:-20000}
ISSUED=${BENCH_LT_ISSUED:-2000}
PROBES=${BENCH_LT_PROBES:-1000}
ROUNDS=${BENCH_LT_ROUNDS:-10}
SKU=bench.card
MALL_TOKEN=bench-mall-token
OPS_TOKEN=bench-ops-token
OTHER_TOKEN=bench-other-token

fail() { echo "lookup_timing: FAIL: $*" >&2; exit 1; }
note() { echo "lookup_timing: $*" >&2; }
[ $((ISSUED + PROBES)) -le "$CODES" ] || fail "BENCH_LT_CODES must hold the issued codes and the probes in stock"
[ "$PROBES" -le "$ISSUED" ] || fail "BENCH_LT_PROBES must not exceed BENCH_LT_ISSUED"
[ $((ISSUED % 4)) = 0 ] || fail "BENCH_LT_ISSUED must be a multiple of 4 (orders of 4)"
# shellcheck source=bench/lib.sh
. "$SRC/bench/lib.sh"

TMP=$(mktemp -d /tmp/perkhub-lookup-timing-XXXXXX)
BENCH_PID=""
cleanup() {
    if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

gcc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o "$TMP/lookup_timing" \
    "$SRC/bench/lookup_timing.c" || fail "cannot build bench/lookup_timing.c"
bench_start "$BUILD" "$TMP/d"
URL=$BENCH_URL
PORT=${URL##*:}

code_no() { printf 'LT-%08d' "$1"; }
{ echo code; seq 1 "$CODES" | awk '{printf "LT-%08d\n", $1}'; } >"$TMP/codes.csv"
st=$(curl -s -o "$TMP/import.json" -w '%{http_code}' --max-time 120 -X POST \
    "$URL/v1/batches?supplier=acme&sku=$SKU&unit_cost=19.80&note=timing" \
    -H "Authorization: Bearer $OPS_TOKEN" -H 'Content-Type: text/csv' --data-binary @"$TMP/codes.csv")
[ "$st" = 201 ] || fail "import returned $st: $(head -c 300 "$TMP/import.json")"
note "imported $CODES codes; other client ordering $ISSUED of them"
: >"$TMP/issued.txt"
for i in $(seq 1 $((ISSUED / 4))); do
    curl -sf --max-time 10 -X POST "$URL/v1/orders" -H "Authorization: Bearer $OTHER_TOKEN" \
        -H 'Content-Type: application/json' \
        -d "{\"client_order_id\":\"lt-$i\",\"sku\":\"$SKU\",\"quantity\":4}" |
        jq -r '.order.codes[].code' >>"$TMP/issued.txt" || fail "order lt-$i failed"
done
[ "$(wc -l <"$TMP/issued.txt")" -ge "$PROBES" ] || fail "the orders issued too few codes"
# the probes: issued codes (from the orders' answers), codes still in stock (all
# but the first ISSUED imported: stock goes out first in, first out), codes
# never imported; a fixed random draw of each
seeded() { openssl enc -aes-128-ctr -pass pass:lookup-timing -nosalt </dev/zero 2>/dev/null; }
{
    shuf -n "$PROBES" --random-source=<(seeded) "$TMP/issued.txt" | sed 's/^/2 /'
    seq $((ISSUED + 1)) "$CODES" | shuf -n "$PROBES" --random-source=<(seeded) |
        while read -r n; do echo "1 $(code_no "$n")"; done
    seq $((CODES + 1)) $((CODES + PROBES)) | while read -r n; do echo "0 $(code_no "$n")"; done
} >"$TMP/probes.txt"
# the kinds are what they claim to be, seen by ops
probe() { curl -sf --max-time 10 -X POST "$URL/v1/codes/lookup" -H "Authorization: Bearer $OPS_TOKEN" \
    -H 'Content-Type: application/json' -d "{\"code\":\"$1\"}" | jq -r '.results[0].diagnosis'; }
[ "$(probe "$(head -n1 "$TMP/issued.txt")")" = issued ] || fail "an issued probe is not issued"
[ "$(probe "$(code_no $((ISSUED + 1)))")" = available ] || fail "a stock probe is not in stock"
[ "$(probe "$(code_no $((CODES + 1)))")" = not_found ] || fail "an absent probe exists"
note "$((3 * PROBES)) probes x $ROUNDS rounds, interleaved, one connection, as a client that sees none"
LIMIT_NS=${BENCH_LT_LIMIT_NS:-1000} "$TMP/lookup_timing" "$PORT" "$MALL_TOKEN" "$ROUNDS" \
    <"$TMP/probes.txt"
