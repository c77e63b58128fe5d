#!/usr/bin/env bash
# bench/http_proto.sh BUILD_DIR — issue 18, point 4: what the HTTP layer costs, and what another
# library would cost, measured in ONE run. Three servers answer bench/run.sh's HTTP ceiling
# request (POST /v1/orders, bearer token, JSON body, an unknown SKU: 422 unknown_sku, nothing
# written):
#   perkhubd    the daemon itself (libmicrohttpd 0.9.75, its whole request path);
#   proto-mhd   bench/http_proto/proto.c on libmicrohttpd as perkhubd runs it (epoll, a thread
#               pool), with only the route's own work (auth, parse, check, answer);
#   proto-h2o   the same handler on h2o's event loop (libh2o-evloop 2.2, Debian's), a loop per
#               thread on one SO_REUSEPORT port.
# HP_ROUNDS rounds, each a wrk run of HP_DURATION seconds (bench/order.lua, BENCH_EXPECT=422) on
# every server in turn (the order rotates every round so the machine's noise falls on all); the
# CPU of each server process (every thread, /proc) and of wrk around its runs, divided by the
# answers wrk counted. Every answer must be the 422 with the request's own X-Request-Id.
# Prints the median µs per request of each and the ratios: proto-mhd ÷ perkhubd is what
# perkhubd's own code adds over the library; proto-h2o ÷ proto-mhd is what the other library
# would save. Information for a decision, not a target: exits 0 unless something was wrong (1).
# Writes bench/results/http_proto.json.
#
# Knobs (environment): HP_ROUNDS (3)  HP_DURATION (8)  HP_CONNS (64)  HP_THREADS (2: wrk)
#   HP_SERVER_THREADS (2: the prototypes' threads; perkhubd keeps its default)
set -euo pipefail

BUILD=${1:?usage: bench/http_proto.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${HP_ROUNDS:-3}
DURATION=${HP_DURATION:-8}
CONNS=${HP_CONNS:-64}
THREADS=${HP_THREADS:-2}
SERVER_THREADS=${HP_SERVER_THREADS:-2}
SKU=bench.card
CEIL_SKU=bench.no-such-sku
MALL_TOKEN=bench-mall-token
OPS_TOKEN=bench-ops-token
OUT=$SRC/bench/results/http_proto.json

fail() { echo "http_proto: FAIL: $*" >&2; exit 1; }
note() { echo "http_proto: $*" >&2; }

[ -x "$BUILD/perkhubd" ] || fail "$BUILD/perkhubd not found (make build first)"
"$SRC/tools/deps.sh" wrk jq bc libh2o-evloop-dev

TMP=$(mktemp -d /tmp/perkhub-hproto-XXXXXX)
declare -A PID URL
cleanup() {
    local p
    for p in "${PID[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$SRC/bench/results"
. "$SRC/bench/lib.sh"

PROTO=$BUILD/bench_http_proto
# H2O_USE_LIBUV=0: the evloop flavour (the header otherwise expects libuv)
gcc -O2 -std=gnu11 -DH2O_USE_LIBUV=0 -Wall -Wextra -o "$PROTO" "$SRC/bench/http_proto/proto.c" \
    $(pkg-config --cflags --libs libh2o-evloop) -lmicrohttpd -ljansson -lssl -lcrypto -lpthread \
    || fail "could not build bench/http_proto/proto.c"

bench_start "$BUILD" "$TMP/perkhubd"
PID[perkhubd]=$BENCH_PID
URL[perkhubd]=$BENCH_URL
for lib in mhd h2o; do
    "$PROTO" --lib "$lib" --threads "$SERVER_THREADS" --port-file "$TMP/$lib.port" \
        --token-sha256 "$(bench_sha "$MALL_TOKEN")" >"$TMP/$lib.log" 2>&1 &
    PID[proto-$lib]=$!
    disown "${PID[proto-$lib]}" # killed at the end: no "Killed" notice from the shell
    for _ in $(seq 100); do [ -s "$TMP/$lib.port" ] && break; sleep 0.05; done
    [ -s "$TMP/$lib.port" ] || { cat "$TMP/$lib.log" >&2; fail "proto-$lib wrote no port"; }
    URL[proto-$lib]=http://127.0.0.1:$(cat "$TMP/$lib.port")
done
LABELS="perkhubd proto-mhd proto-h2o"

one_run() { # label run-name -> "µs-server µs-wrk answers/s p99"
    local l=$1 name=$2 d0 d1 w0 w1 j ok
    d0=$(bench_proc_cpu_us "${PID[$l]}")
    bench_children_cpu_us w0 "$TMP/times"
    BENCH_TOKEN=$MALL_TOKEN BENCH_SKU=$CEIL_SKU BENCH_RUN=$name BENCH_OUT="$TMP/$name.json" \
        BENCH_EXPECT=422 timeout $((DURATION + 60)) wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" \
        --timeout 10s -s "$SRC/bench/order.lua" "${URL[$l]}" >"$TMP/$name.out" 2>&1 \
        || { cat "$TMP/$name.out" >&2; fail "$l: wrk failed"; }
    d1=$(bench_proc_cpu_us "${PID[$l]}")
    bench_children_cpu_us w1 "$TMP/times"
    j=$(cat "$TMP/$name.json")
    ok=$(jq .ok <<<"$j")
    [ "$ok" -gt 0 ] || fail "$l: no 422 answer counted"
    [ "$(jq '.non2xx == 0 and .unmatched == 0' <<<"$j")" = true ] \
        || fail "$l: $(jq -c '{non2xx, unmatched}' <<<"$j") (every answer must be the 422 with its request id)"
    echo "$(bench_calc "($d1 - $d0) / $ok") $(bench_calc "($w1 - $w0) / $ok") $(bench_calc "$ok / $(jq .duration_s <<<"$j")") $(jq .latency_ms.p99 <<<"$j")"
}

note "warm-up: 2 s on each"
for l in $LABELS; do DURATION=2 one_run "$l" "w-$l" >/dev/null; done
: >"$TMP/runs.txt"
for r in $(seq "$ROUNDS"); do
    order=$LABELS
    case $((r % 3)) in
    2) order="proto-mhd proto-h2o perkhubd" ;;
    0) order="proto-h2o perkhubd proto-mhd" ;;
    esac
    for l in $order; do
        read -r us wus rps p99 <<<"$(one_run "$l" "$l-$r")"
        echo "$l $us $wus $rps $p99 $r" >>"$TMP/runs.txt"
        note "  round $r $l: $us µs CPU/request (wrk $wus), $rps answers/s, p99 $p99 ms, load $(cut -d' ' -f1 /proc/loadavg)"
    done
done

med() { awk -v l="$1" -v c="$2" '$1 == l { print $c }' "$TMP/runs.txt" | bench_median; }
declare -A US WUS RPS
for l in $LABELS; do US[$l]=$(med "$l" 2); WUS[$l]=$(med "$l" 3); RPS[$l]=$(med "$l" 4); done
mhd_vs_perkhubd=$(bench_calc "${US[proto-mhd]} / ${US[perkhubd]}")
h2o_vs_mhd=$(bench_calc "${US[proto-h2o]} / ${US[proto-mhd]}")
h2o_vs_perkhubd=$(bench_calc "${US[proto-h2o]} / ${US[perkhubd]}")

printf '\nperkhub bench — the HTTP layer: CPU per ceiling request, %s connections, %s rounds of %s s (nproc %s)\n' \
    "$CONNS" "$ROUNDS" "$DURATION" "$(nproc)"
printf '%-10s %16s %14s %14s\n' server "µs/request" "wrk µs/req" "answers/s"
for l in $LABELS; do printf '%-10s %16s %14s %14s\n' "$l" "${US[$l]}" "${WUS[$l]}" "${RPS[$l]}"; done
printf 'proto-mhd ÷ perkhubd %s (the library with only the route'"'"'s work, against the daemon'"'"'s whole path)\n' "$mhd_vs_perkhubd"
printf 'proto-h2o ÷ proto-mhd %s (the other library, the same handler)\n' "$h2o_vs_mhd"
printf 'proto-h2o ÷ perkhubd  %s\n' "$h2o_vs_perkhubd"

jq -n --arg at "$(date -u +%FT%TZ)" --argjson conns "$CONNS" --argjson rounds "$ROUNDS" \
    --argjson duration "$DURATION" --argjson sthreads "$SERVER_THREADS" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --argjson runs "$(awk '{ printf "%s{\"server\":\"%s\",\"cpu_us_per_request\":%s,\"wrk_cpu_us_per_request\":%s,\"answers_per_s\":%s,\"p99_ms\":%s,\"round\":%s}", (NR > 1 ? "," : "["), $1, $2, $3, $4, $5, $6 } END { print "]" }' "$TMP/runs.txt")" \
    --argjson p "${US[perkhubd]}" --argjson m "${US[proto-mhd]}" --argjson h "${US[proto-h2o]}" \
    --argjson mp "$mhd_vs_perkhubd" --argjson hm "$h2o_vs_mhd" --argjson hp "$h2o_vs_perkhubd" \
    '{bench: "http_proto (issue 18 point 4)", at: $at, load_avg_at_end: $load,
      settings: {connections: $conns, rounds: $rounds, duration_s: $duration,
                 prototype_threads: $sthreads, request: "POST /v1/orders, unknown sku: 422"},
      median_cpu_us_per_request: {perkhubd: $p, "proto-mhd": $m, "proto-h2o": $h},
      ratios: {proto_mhd_vs_perkhubd: $mp, proto_h2o_vs_proto_mhd: $hm, proto_h2o_vs_perkhubd: $hp},
      runs: $runs}' >"$OUT"
echo "results: ${OUT#"$SRC"/}"
