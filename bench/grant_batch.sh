#!/usr/bin/env bash
# bench/grant_batch.sh BUILD_DIR — issue 16 item 3: a welfare batch of GB_LINES (100,000)
# grants in one POST /v1/batches/grants, against GB_LIMIT_S (5) seconds. A perkhubd of its own
# (bench/lib.sh's durable defaults) with GB_LINES codes of the bench card in stock; the CSV
# has one line per employee (user_id, department, sku). Prints the time of the request (CSV
# upload, validation, 100,000 tokens, the one command, its durable commit, the answer with
# every token), then checks the answer (one line and one token per employee), the stock
# (every code reserved) and --check-store. PASS when the request took under GB_LIMIT_S s.
# Exit: 0 PASS, 3 MISS, 1 when something was wrong.
#   GB_LINES (100000)  GB_LIMIT_S (5)
set -euo pipefail

BUILD=${1:?usage: bench/grant_batch.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
LINES=${GB_LINES:-100000}
LIMIT=${GB_LIMIT_S:-5}
SKU=bench.card
MALL_TOKEN=bench-mall-token
OPS_TOKEN=bench-ops-token
CODES=$LINES

fail() { echo "grant_batch: FAIL: $*" >&2; exit 1; }
note() { echo "grant_batch: $*" >&2; }

[ -x "$BUILD/perkhubd" ] || fail "$BUILD/perkhubd not found"
"$SRC/tools/deps.sh" jq bc >/dev/null

TMP=$(mktemp -d /tmp/perkhub-grant-batch-XXXXXX)
declare -A URL
BENCH_PID=
cleanup() {
    if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
    fi
    [ -n "${GB_KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$SRC/bench/lib.sh"
bench_start "$BUILD" "$TMP/d"
URL[d]=$BENCH_URL
bench_import_codes d
note "$CODES codes in stock"

{
    echo "user_id,department,sku"
    seq 1 "$LINES" | awk -v sku="$SKU" '{ printf "emp-%07d,dept-%02d,%s\n", $1, $1 % 37, sku }'
} >"$TMP/batch.csv"

read -r u0 s0 < <(bench_cpu_ticks "$BENCH_PID")
if [ -n "${GB_PERF:-}" ]; then perf record --call-graph dwarf,16384 -F 2000 -o "$GB_PERF" -p "$BENCH_PID" 2>/dev/null & PERF=$!; fi
T0=$(date +%s.%N)
status=$(curl -s -o "$TMP/answer.csv" -w '%{http_code}' --max-time 120 -X POST \
    "$BENCH_URL/v1/batches/grants?batch_id=bench-1&ttl_s=2592000" \
    -H "Authorization: Bearer $MALL_TOKEN" -H 'Content-Type: text/csv' --data-binary @"$TMP/batch.csv")
T1=$(date +%s.%N)
read -r u1 s1 < <(bench_cpu_ticks "$BENCH_PID")
if [ -n "${GB_PERF:-}" ]; then kill -INT "$PERF"; wait "$PERF" || true; fi
HZ=$(getconf CLK_TCK)
cpu=$(bench_calc "($u1 + $s1 - $u0 - $s0) / $HZ")
[ "$status" = 201 ] || { head -c 500 "$TMP/answer.csv" >&2; fail "the batch answered $status"; }
secs=$(bench_calc "$T1 - $T0")

lines=$(($(wc -l <"$TMP/answer.csv") - 1))
tokens=$(grep -c ',pg_[A-Za-z0-9_-]\{43\}$' "$TMP/answer.csv" || true)
[ "$lines" = "$LINES" ] || fail "the answer has $lines lines, not $LINES"
[ "$tokens" = "$LINES" ] || fail "the answer has $tokens tokens, not $LINES"
reserved=$(curl -sf "$BENCH_URL/v1/stats" -H "Authorization: Bearer $OPS_TOKEN" |
    jq -r --arg s "$SKU" '[.skus[] | select(.sku == $s) | .reserved][0] // 0')
[ "$reserved" = "$LINES" ] || fail "$reserved codes reserved, not $LINES"
kill "$BENCH_PID"; wait "$BENCH_PID" 2>/dev/null || true; BENCH_PID=
"$BUILD/perkhubd" --check-store "$TMP/d/data" --key-file "$TMP/d/master.key" >"$TMP/check.out" 2>&1 ||
    { cat "$TMP/check.out" >&2; fail "--check-store after the batch"; }

verdict=PASS
[ "$(echo "$secs < $LIMIT" | bc)" = 1 ] || verdict=MISS
printf 'grant_batch: %d grants in one batch: %s s (limit %s s; perkhubd CPU %s s; load %s) %s\n' \
    "$LINES" "$secs" "$LIMIT" "$cpu" "$(cut -d' ' -f1 /proc/loadavg)" "$verdict"
[ "$verdict" = PASS ] || exit 3
