#!/usr/bin/env bash
# bench/tls_cpu.sh BUILD_DIR — what TLS on the listener costs an order (issue 14 item 5):
# perkhubd CPU per order over HTTPS and over plain HTTP, in the SAME run, alternating, so
# that the noise of a shared machine falls on both alike.
#
# Two perkhubd of the same build (bench/lib.sh's configuration: loopback, durable
# defaults), one with listen.tls (a throwaway CA and a P-256 server certificate made with
# the openssl command line, as a deployment would), one without, each with TC_CODES codes.
# Then TC_ROUNDS rounds, each a wrk run of bench/order.lua (POST /v1/orders, quantity 1,
# kept-alive connections: wrk speaks TLS with OpenSSL) against one daemon, then the other
# (the order swaps every round). Around each run the daemon's utime+stime is read from
# /proc/PID/stat (every thread: the TLS records are encrypted and decrypted on
# libmicrohttpd's pool threads); divided by the orders wrk saw answered, that is the CPU per
# order. Every answer must be 2xx and the store must have issued as many codes as wrk saw
# answered (plus at most one per connection in flight when wrk stopped).
#
# Prints each run, the medians, the ratio https/http and PASS when it is at most TC_LIMIT
# (1.30: TLS costs at most 30 % more CPU per order on kept-alive connections), MISS
# otherwise; writes bench/results/tls_cpu.json. Exit: 0 PASS, 3 MISS, 1 when something was
# wrong.
#
# Knobs (environment):
#   TC_ROUNDS (3)  TC_DURATION (10)  TC_CONNS (64)  TC_THREADS (2)  TC_CODES (1000000)
#   TC_WARMUP (3)  TC_LIMIT (1.30)
set -euo pipefail

BUILD=${1:?usage: bench/tls_cpu.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${TC_ROUNDS:-3}
DURATION=${TC_DURATION:-10}
CONNS=${TC_CONNS:-64}
THREADS=${TC_THREADS:-2}
CODES=${TC_CODES:-1000000}
WARMUP=${TC_WARMUP:-3}
LIMIT=${TC_LIMIT:-1.30}

. "$SRC/bench/lib.sh"
bench_setup tls_cpu wrk jq bc openssl
[ -x "$BUILD/perkhubd" ] || fail "$BUILD/perkhubd not found"

# The certificates, as docs/operations.md makes them.
mkdir -p "$TMP/tls"
(
    cd "$TMP/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -out ca.crt -days 2 -subj /CN=perkhub-bench-ca
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
        -out server.csr -subj /CN=localhost
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
        -days 2 -extfile server.ext
    chmod 600 server.key
) >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log" >&2; fail "openssl could not make the certificates"; }

CURL_TLS=(--cacert "$TMP/tls/ca.crt")


for l in http https; do
    note "$l: starting $BUILD/perkhubd, importing $CODES codes"
    if [ "$l" = https ]; then BENCH_TLS_DIR=$TMP/tls; else BENCH_TLS_DIR=; fi
    bench_start "$BUILD" "$TMP/$l"
    PID[$l]=$BENCH_PID
    URL[$l]=$BENCH_URL
    bench_import_codes "$l"
done
case ${URL[https]} in https://*) ;; *) fail "the TLS daemon's URL is not https: ${URL[https]}" ;; esac
# the TLS port speaks only TLS
if curl -s -o /dev/null --max-time 5 "http://${URL[https]#https://}/v1/health"; then
    fail "plain HTTP got an answer from the TLS port"
fi

bench_cpu_rounds "http https" TC_CODES

col() { awk -v l="$1" -v c="$2" '$1 == l { print $c }' "$TMP/runs.txt"; }
declare -A MED RPS
for l in http https; do
    MED[$l]=$(col "$l" 2 | bench_median)
    RPS[$l]=$(col "$l" 3 | bench_median)
done
ratio=$(bench_calc "${MED[https]} / ${MED[http]}")
paired=$(awk '{ v[$5, $1] = $2 } END { for (k in v) { split(k, a, SUBSEP); if (a[2] == "https") printf "%.3f\n", v[k] / v[a[1], "http"] } }' \
    "$TMP/runs.txt" | sort -g | tr '\n' ' ')
verdict=PASS
[ "$(echo "$ratio <= $LIMIT" | bc)" = 1 ] || verdict=MISS
printf '\nperkhubd CPU per order, %s rounds of %ss at %s kept-alive connections\n' "$ROUNDS" "$DURATION" "$CONNS"
printf '  http   median %s µs (runs: %s), %s orders/s\n' "${MED[http]}" "$(col http 2 | tr '\n' ' ')" "${RPS[http]}"
printf '  https  median %s µs (runs: %s), %s orders/s\n' "${MED[https]}" "$(col https 2 | tr '\n' ' ')" "${RPS[https]}"
printf 'tls_cpu: https/http %s (limit %s): %s   (per round, sorted: %s)\n' "$ratio" "$LIMIT" "$verdict" "$paired"

mkdir -p "$SRC/bench/results"
jq -n --argjson http "${MED[http]}" --argjson https "${MED[https]}" --argjson ratio "$ratio" \
    --argjson limit "$LIMIT" --arg verdict "$verdict" --argjson rounds "$ROUNDS" \
    --argjson conns "$CONNS" --argjson duration "$DURATION" \
    --argjson rps_http "${RPS[http]}" --argjson rps_https "${RPS[https]}" \
    '{us_cpu_per_order: {http: $http, https: $https}, orders_per_s: {http: $rps_http, https: $rps_https},
      ratio: $ratio, limit: $limit, verdict: $verdict, rounds: $rounds, connections: $conns,
      duration_s: $duration}' >"$SRC/bench/results/tls_cpu.json"
[ "$verdict" = PASS ] || exit 3
