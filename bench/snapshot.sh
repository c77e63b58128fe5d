#!/usr/bin/env bash
# bench/snapshot.sh BUILD_DIR — what a snapshot costs (docs/replication.md, "Snapshots"): one
# perkhubd on loopback with SN_CODES card codes and the orders of a warm-up, then
#
#   1. the time of `perkctl snapshot take` (the compacting copy, fsync, rename) and the
#      snapshot's size against data.mdb's;
#   2. orders/s (bench/order.lua through wrk) for SN_DURATION seconds without a snapshot, then
#      the same while snapshots are taken one after another: what a copy running beside the
#      writer costs it;
#   3. the time of `perkctl snapshot pull` (GET /v1/snapshots/latest, streamed) into a new
#      data_dir, and a second daemon started on it answering the same stock counts.
#
# Prints each figure, then PASS when a take took at most SN_MAX_TAKE_S and orders/s during
# takes kept at least SN_MIN_RATIO of the rate without, MISS otherwise. Exit: 0 PASS, 3 MISS,
# 1 when something was wrong.
#
# Knobs: SN_CODES (300000) SN_DURATION (6) SN_CONNS (32) SN_THREADS (2) SN_MAX_TAKE_S (10)
#        SN_MIN_RATIO (0.5)
set -euo pipefail

BUILD=${1:?usage: bench/snapshot.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
CODES=${SN_CODES:-300000}
DURATION=${SN_DURATION:-6}
CONNS=${SN_CONNS:-32}
THREADS=${SN_THREADS:-2}
MAX_TAKE=${SN_MAX_TAKE_S:-10}
MIN_RATIO=${SN_MIN_RATIO:-0.5}
. "$SRC/bench/lib.sh"
bench_setup snapshot
[ -x "$BUILD/perkhubd" ] && [ -x "$BUILD/perkctl" ] || fail "$BUILD/perkhubd or perkctl not found"

SNAPS=$'snapshots:\n  every_s: 0\n  keep: 2'
bench_start "$BUILD" "$TMP/a" "$SNAPS"
PID[a]=$BENCH_PID
URL[a]=$BENCH_URL
note "importing $CODES codes"
bench_import_codes a
bench_wrk_orders a warm 2 "$TMP/warm"

pk() { PERKHUB_URL=${URL[$1]} PERKHUB_TOKEN=$OPS_TOKEN "$BUILD/perkctl" "${@:2}"; }
now_ms() { date +%s%3N; }

t0=$(now_ms)
out=$(pk a snapshot take) || fail "snapshot take failed"
take_ms=$(($(now_ms) - t0))
snap_bytes=$(PERKHUB_URL=${URL[a]} PERKHUB_TOKEN=$OPS_TOKEN "$BUILD/perkctl" --json snapshot list |
    jq -r '.snapshots[0].bytes')
mdb_bytes=$(stat -c %s "$TMP/a/data/data.mdb")
note "take: $out"

rps() { jq -r '.rps // empty' "$1.json" 2>/dev/null || true; }
bench_wrk_orders a alone "$DURATION" "$TMP/alone"
rps_alone=$(rps "$TMP/alone")
(
    end=$(($(date +%s) + DURATION))
    while [ "$(date +%s)" -lt "$end" ]; do pk a snapshot take >/dev/null || exit 1; done
) &
TAKER=$!
BENCH_MORE_PIDS="$BENCH_MORE_PIDS $TAKER"
bench_wrk_orders a during "$DURATION" "$TMP/during"
wait "$TAKER" || fail "a snapshot taken under load failed"
rps_during=$(rps "$TMP/during")
[ -n "$rps_alone" ] && [ -n "$rps_during" ] || fail "no orders/s in wrk's summary"

t0=$(now_ms)
pk a snapshot pull --out "$TMP/b/data" >/dev/null || fail "snapshot pull failed"
pull_ms=$(($(now_ms) - t0))
cp -p "$TMP/a/master.key" "$TMP/b/master.key"
bench_start "$BUILD" "$TMP/b" "$SNAPS"
PID[b]=$BENCH_PID
URL[b]=$BENCH_URL
avail() { bench_stats "$1" | jq -r --arg s "$SKU" '[.skus[] | select(.sku == $s) | .available][0]'; }
# the copy is the store at its take: at least as much stock as the source has now, which
# took orders after it
[ "$(avail b)" -ge "$(avail a)" ] || fail "the pulled copy holds less stock than the source"

ratio=$(bench_calc "$rps_during / $rps_alone")
echo "snapshot: data.mdb $mdb_bytes bytes, snapshot $snap_bytes bytes (compacted), take ${take_ms} ms, pull ${pull_ms} ms"
echo "snapshot: orders/s alone $rps_alone, during back-to-back takes $rps_during (ratio $ratio)"
if [ "$take_ms" -le $((MAX_TAKE * 1000)) ] && [ "$(bench_calc "$ratio >= $MIN_RATIO")" = 1 ]; then
    echo "snapshot: PASS (take <= ${MAX_TAKE} s, ratio >= $MIN_RATIO)"
    exit 0
fi
echo "snapshot: MISS (take <= ${MAX_TAKE} s, ratio >= $MIN_RATIO wanted)"
exit 3
