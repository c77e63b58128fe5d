#!/usr/bin/env bash
# bench/plugin_cpu.sh OLD_REWARDS_SO NEW_REWARDS_SO [BUILD_DIR] — the rewards plugin's CPU per
# recharge (request built, answer parsed, webhook verified), two builds of the plugin
# alternating in one process (bench/plugin_cpu.c, against BUILD_DIR's test kit: the core's
# host table). Prints each round and the medians' ratio new/old. Information only (no verdict):
# a same-run A/B for a change to the plugin, steadier than the whole recharge path's.
# Knobs: PC_ROUNDS (9), PC_ITERS (20000), PC_OPS (7: 1 build + 2 parse + 4 verify).
set -euo pipefail
OLD=${1:?usage: bench/plugin_cpu.sh OLD.so NEW.so [BUILD_DIR]}
NEW=${2:?usage: bench/plugin_cpu.sh OLD.so NEW.so [BUILD_DIR]}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${3:-$SRC/build}" && pwd)
fail() { echo "plugin_cpu: FAIL: $*" >&2; exit 1; }
[ -f "$BUILD/libperkhub_testkit.a" ] || fail "no $BUILD/libperkhub_testkit.a: build first"
TMP=$(mktemp -d /tmp/perkhub-plugin-cpu-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
# shellcheck disable=SC2046
gcc -O2 -std=c11 -Wall -Wextra -Werror -I "$SRC/sdk/include" -o "$TMP/plugin_cpu" \
    "$SRC/bench/plugin_cpu.c" "$BUILD/libperkhub_testkit.a" \
    $(pkg-config --libs lmdb jansson yaml-0.1 libmicrohttpd libcurl openssl) -ldl -lpthread -lm \
    || fail "cannot build bench/plugin_cpu.c"
"$TMP/plugin_cpu" "$(realpath "$OLD")" "$(realpath "$NEW")" "${PC_ROUNDS:-9}" "${PC_ITERS:-20000}" "${PC_OPS:-7}"
