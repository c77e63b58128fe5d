#!/usr/bin/env bash
# bench/alerts_writer.sh BUILD_DIR — issue 12: what the alert checks cost an order where they
# run, the store's writer (bench/alerts_writer.c, against BUILD_DIR/libphcore.a): CPU per stock
# order with and without 100 products carrying low_stock and min_validity_days rules, same
# run, alternating. PASS when the median difference is under AW_LIMIT_US (1.0) µs per order.
# bench/alerts_cpu.sh measures the same through HTTP, with an A/A control that shows its noise
# floor. Writes bench/results/alerts_writer.json. Exit: 0 PASS, 3 MISS, 1 when
# something was wrong.
#   AW_ORDERS (100000 per round)  AW_ROUNDS (5)  AW_PRODUCTS (100)  AW_LIMIT_US (1.0)
set -euo pipefail

BUILD=${1:?usage: bench/alerts_writer.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "alerts_writer: FAIL: $*" >&2; exit 1; }

TMP=$(mktemp -d /tmp/perkhub-alerts-writer-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

[ -f "$BUILD/libphcore.a" ] || fail "no $BUILD/libphcore.a: build first"
# shellcheck disable=SC2046
gcc -O2 -std=c11 -Wall -Wextra -Werror -I "$SRC/core" -o "$TMP/alerts_writer" \
    "$SRC/bench/alerts_writer.c" "$BUILD/libphcore.a" \
    $(pkg-config --libs lmdb jansson yaml-0.1 libmicrohttpd libcurl openssl) -ldl -lpthread \
    || fail "cannot build bench/alerts_writer.c"
rc=0
"$TMP/alerts_writer" "$TMP/stores" --orders "${AW_ORDERS:-100000}" --rounds "${AW_ROUNDS:-5}" \
    --products "${AW_PRODUCTS:-100}" --limit-us "${AW_LIMIT_US:-1.0}" | tee "$TMP/out.txt" || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 3 ] || fail "alerts_writer exited $rc"
mkdir -p "$SRC/bench/results"
tail -n 1 "$TMP/out.txt" >"$SRC/bench/results/alerts_writer.json"
exit "$rc"
