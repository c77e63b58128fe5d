#!/usr/bin/env bash
# bench/analytics.sh BUILD_DIR — issue 16 item 4: every GET /v1/analytics endpoint answers in
# under 50 ms at 10 million orders. Builds bench/analytics.c against the store library
# (BUILD_DIR/libphcore.a), which writes AN_ORDERS orders' and AN_GRANTS grants' worth of
# aggregates with the store's own aggregate code (store_agg_order, store_agg_grant: what the
# writer runs for every order write and grant transition) over AN_DAYS days, then times each
# endpoint over the whole range through the daemon's real handlers (ph_http_serve_offline, no
# socket). Prints the time to write the aggregates, each endpoint's slowest answer, PASS/MISS;
# writes bench/results/analytics.json. Exit: 0 PASS, 3 MISS, 1 when an answer was wrong.
# Needs about 1 minute of CPU per 10 million orders and some 100 MB in /tmp.
#   AN_ORDERS (10000000) AN_GRANTS (1000000) AN_USERS (300000) AN_DAYS (365, at most 366)
#   AN_CLIENTS (8) AN_SKUS (100, at most 100) AN_ROUNDS (5) AN_LIMIT_MS (50)
set -euo pipefail

BUILD=${1:?usage: bench/analytics.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "analytics: FAIL: $*" >&2; exit 1; }

TMP=$(mktemp -d /tmp/perkhub-analytics-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

[ -f "$BUILD/libphcore.a" ] || fail "no $BUILD/libphcore.a: build first"
PLUGINS=${PH_PLUGIN_DIR:-$BUILD/plugins}
[ -d "$PLUGINS" ] || fail "no plugin directory $PLUGINS"
# shellcheck disable=SC2046
gcc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I "$SRC/core" -o "$TMP/analytics" \
    "$SRC/bench/analytics.c" "$BUILD/libphcore.a" \
    $(pkg-config --libs lmdb jansson yaml-0.1 libmicrohttpd libcurl openssl gnutls) -ldl -lpthread -lm \
    || fail "cannot build bench/analytics.c"
rc=0
"$TMP/analytics" "$TMP/run" "$PLUGINS" --orders "${AN_ORDERS:-10000000}" \
    --grants "${AN_GRANTS:-1000000}" --users "${AN_USERS:-300000}" --days "${AN_DAYS:-365}" \
    --clients "${AN_CLIENTS:-8}" --skus "${AN_SKUS:-100}" --rounds "${AN_ROUNDS:-5}" \
    --limit-ms "${AN_LIMIT_MS:-50}" | tee "$TMP/out.txt" || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 3 ] || fail "analytics exited $rc"
mkdir -p "$SRC/bench/results"
tail -n 1 "$TMP/out.txt" >"$SRC/bench/results/analytics.json"
exit "$rc"
