#!/usr/bin/env bash
# bench/recon_match.sh BUILD_DIR — a supplier's statement matched against a big
# store: ph_store_recon_prepare reads the lines' attempts and the period's
# (supply_att), not every attempt. Builds bench/recon_match.c against the store
# library (BUILD_DIR/libphcore.a), stores BENCH_RECON_ATTEMPTS orders of one
# attempt each through the store's writer, then matches one day's statement of
# one supplier and prints the prepare and RECON times with PASS/MISS against
# BENCH_RECON_LIMIT_MS; exits non-zero only when a line is not matched or a
# success is reported unbilled (or the tool fails). ~1.5 KB of /tmp per attempt.
# Not part of make test nor make bench.
# Grow BENCH_RECON_DAYS with BENCH_RECON_ATTEMPTS to keep the statement's day the same size.
#   BENCH_RECON_ATTEMPTS (1000000), BENCH_RECON_SUPPLIERS (4), BENCH_RECON_DAYS (30),
#   BENCH_RECON_LINES (200000, at most), BENCH_RECON_ROUNDS (3), BENCH_RECON_LIMIT_MS (250)
set -euo pipefail

BUILD=${1:?usage: bench/recon_match.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "recon_match: FAIL: $*" >&2; exit 1; }

TMP=$(mktemp -d /tmp/perkhub-recon-match-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

[ -f "$BUILD/libphcore.a" ] || fail "no $BUILD/libphcore.a: build first"
# shellcheck disable=SC2046
gcc -O2 -std=c11 -Wall -Wextra -Werror -I "$SRC/core" -o "$TMP/recon_match" \
    "$SRC/bench/recon_match.c" "$BUILD/libphcore.a" \
    $(pkg-config --libs lmdb jansson yaml-0.1 libmicrohttpd libcurl openssl) -ldl -lpthread \
    || fail "cannot build bench/recon_match.c"
"$TMP/recon_match" "$TMP/store" --attempts "${BENCH_RECON_ATTEMPTS:-1000000}" \
    --suppliers "${BENCH_RECON_SUPPLIERS:-4}" --days "${BENCH_RECON_DAYS:-30}" --lines "${BENCH_RECON_LINES:-200000}" \
    --rounds "${BENCH_RECON_ROUNDS:-3}" --limit-ms "${BENCH_RECON_LIMIT_MS:-250}" \
    | tee "$TMP/out.txt"
mkdir -p "$SRC/bench/results"
tail -n 1 "$TMP/out.txt" >"$SRC/bench/results/recon_match.json"
