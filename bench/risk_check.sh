#!/usr/bin/env bash
# bench/risk_check.sh BUILD_DIR — issue 15: what the risk engine's decision costs one order,
# in process (bench/risk_check.c against BUILD_DIR/libphcore.a): ns of CPU per ph_risk_check
# with 20 rules in force that all match and never fire, against no rules, same run,
# alternating rounds. PASS when the median added time is under RK_LIMIT_NS (1000) ns: half of
# the issue's 2 µs per order, which bench/risk_cpu.sh measures through HTTP. Also prints
# how long two rule changes take with every counter held, and the peak RSS. Writes
# bench/results/risk_check.json. Exit: 0 PASS, 3 MISS, 1 when something was wrong.
#   RK_CHECKS (200000 per round)  RK_ROUNDS (7)  RK_USERS (100000)  RK_LIMIT_NS (1000)
# RK_GROW=N instead: the worst single checks while a fresh engine grows to N end users, every
# check a new one (percentiles, max, checks over 0.1, 1 and 10 ms; bench/results/risk_grow.json).
# RK_PROBE=1: a second thread checks end users already there meanwhile (its wall time per check).
# Memory: ~2.5 KB per end user with the 20 rules at the peak (N=1000000: ~2.5 GB).
set -euo pipefail

BUILD=${1:?usage: bench/risk_check.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "risk_check: FAIL: $*" >&2; exit 1; }

TMP=$(mktemp -d /tmp/perkhub-risk-check-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

[ -f "$BUILD/libphcore.a" ] || fail "no $BUILD/libphcore.a: build first"
# shellcheck disable=SC2046
gcc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I "$SRC/core" -o "$TMP/risk_check" \
    "$SRC/bench/risk_check.c" "$BUILD/libphcore.a" \
    $(pkg-config --libs lmdb jansson yaml-0.1 libmicrohttpd libcurl openssl) -ldl -lpthread \
    || fail "cannot build bench/risk_check.c"
if [ -n "${RK_GROW:-}" ]; then
    "$TMP/risk_check" --grow "$RK_GROW" --probe "${RK_PROBE:-0}" | tee "$TMP/out.txt" || fail "risk_check --grow failed"
    mkdir -p "$SRC/bench/results"
    tail -n 1 "$TMP/out.txt" >"$SRC/bench/results/risk_grow.json"
    exit 0
fi
rc=0
"$TMP/risk_check" --checks "${RK_CHECKS:-200000}" --rounds "${RK_ROUNDS:-7}" \
    --users "${RK_USERS:-100000}" --limit-ns "${RK_LIMIT_NS:-1000}" | tee "$TMP/out.txt" || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 3 ] || fail "risk_check exited $rc"
mkdir -p "$SRC/bench/results"
tail -n 1 "$TMP/out.txt" >"$SRC/bench/results/risk_check.json"
exit "$rc"
