#!/usr/bin/env bash
# bench/report_month.sh BUILD_DIR — issue 11 item 7: a month's report over
# BENCH_RM_ORDERS orders (default 10,000,000) answers in under 100 ms.
# Builds bench/report_month.c against the store library (BUILD_DIR/libphcore.a),
# which stores the orders through the store's writer (every order booked by the
# ledger as perkhubd books it), then times ph_store_report for the month by day,
# supplier, client and SKU. Prints the build time, CPU per order, each
# grouping's slowest answer and PASS/MISS; exits non-zero only when the report's
# totals differ from what was stored (or the tool fails). Needs some 1.5 KB of
# disk per order in /tmp (15 GB for 10 million) and a few minutes.
#   BENCH_RM_ORDERS (10000000), BENCH_RM_SUPPLIERS (4), BENCH_RM_CLIENTS (8),
#   BENCH_RM_SKUS (40), BENCH_RM_ROUNDS (5), BENCH_RM_LIMIT_MS (100)
set -euo pipefail

BUILD=${1:?usage: bench/report_month.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "report_month: FAIL: $*" >&2; exit 1; }

TMP=$(mktemp -d /tmp/perkhub-report-month-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

[ -f "$BUILD/libphcore.a" ] || fail "no $BUILD/libphcore.a: build first"
# shellcheck disable=SC2046
gcc -O2 -std=c11 -Wall -Wextra -Werror -I "$SRC/core" -o "$TMP/report_month" \
    "$SRC/bench/report_month.c" "$BUILD/libphcore.a" \
    $(pkg-config --libs lmdb jansson yaml-0.1 libmicrohttpd libcurl openssl) -ldl -lpthread \
    || fail "cannot build bench/report_month.c"
"$TMP/report_month" "$TMP/store" --orders "${BENCH_RM_ORDERS:-10000000}" \
    --suppliers "${BENCH_RM_SUPPLIERS:-4}" --clients "${BENCH_RM_CLIENTS:-8}" \
    --skus "${BENCH_RM_SKUS:-40}" --rounds "${BENCH_RM_ROUNDS:-5}" \
    --limit-ms "${BENCH_RM_LIMIT_MS:-100}" | tee "$TMP/out.txt"
mkdir -p "$SRC/bench/results"
tail -n 1 "$TMP/out.txt" >"$SRC/bench/results/report_month.json"
