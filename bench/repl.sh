#!/usr/bin/env bash
# bench/repl.sh BUILD_DIR — what replication costs and gives (issue 19, docs/replication.md), in
# ONE run on this box: three nats-server (a JetStream cluster, the stream R3), a replicated leader
# with two standbys, and a single node of the same build, all on loopback.
#
#   1. orders/s and p99 of card orders (bench/order.lua through wrk) on the single node and on
#      the replicated leader, RL_ROUNDS alternating rounds of RL_DURATION seconds (the noise of a
#      shared machine falls on both), with each daemon's CPU per order;
#   2. standby lag: in the middle of a leader's round, how many batches each standby is behind
#      the leader (GET /v1/health applied_seq of each: the leader's is its store's), and after
#      the round how long until both have applied everything; and the JetStream API requests
#      per second the three servers answered over the rounds (/jsz api.total: the standbys'
#      reads, the lease's reads, stream info);
#   3. failover time: the leader killed with SIGKILL, until a standby says it leads.
#
# Prints each figure, then PASS when the replicated leader keeps at least RL_MIN_RATIO of the
# single node's orders/s (0.30: each batch waits for a round trip to the stream leader and its
# replication to a second server) and the take-over took at most RL_MAX_FAILOVER_MS (twice the
# lease TTL), MISS otherwise; writes bench/results/repl.json. Exit: 0 PASS, 3 MISS, 1 when
# something was wrong.
#
# Knobs: RL_ROUNDS (3) RL_DURATION (10) RL_CONNS (64) RL_THREADS (2) RL_CODES (300000)
#        RL_WARMUP (2) RL_TTL_MS (2000) RL_MIN_RATIO (0.30) RL_MAX_FAILOVER_MS (2 x TTL)
set -euo pipefail

BUILD=${1:?usage: bench/repl.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${RL_ROUNDS:-3}
DURATION=${RL_DURATION:-10}
CONNS=${RL_CONNS:-64}
THREADS=${RL_THREADS:-2}
CODES=${RL_CODES:-300000}
WARMUP=${RL_WARMUP:-2}
TTL=${RL_TTL_MS:-2000}
MIN_RATIO=${RL_MIN_RATIO:-0.30}
MAX_FAILOVER=${RL_MAX_FAILOVER_MS:-$((2 * TTL))}

SKU=bench.card
MALL_TOKEN=bench-mall-token
OPS_TOKEN=bench-ops-token
HZ=$(getconf CLK_TCK)

fail() { echo "repl: FAIL: $*" >&2; exit 1; }
note() { echo "repl: $*" >&2; }

[ -x "$BUILD/perkhubd" ] || fail "$BUILD/perkhubd not found"
"$SRC/tools/deps.sh" wrk jq bc

TMP=$(mktemp -d /tmp/perkhub-repl-XXXXXX)
declare -A PID URL
MORE_PIDS=""
cleanup() {
    local p
    for p in "${PID[@]}" $MORE_PIDS; do
        if kill -0 "$p" 2>/dev/null; then
            kill -KILL "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$SRC/bench/lib.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
now_ms() { date +%s%3N; }

# ---- the NATS cluster ----
declare -a NPORT NCLUSTER NHTTP
for i in 0 1 2; do NPORT[i]=$(free_port); NCLUSTER[i]=$(free_port); NHTTP[i]=$(free_port); done
routes=$(for i in 0 1 2; do printf 'nats-route://127.0.0.1:%s,' "${NCLUSTER[i]}"; done)
routes=${routes%,}
for i in 0 1 2; do
    mkdir -p "$TMP/nats$i"
    cat >"$TMP/nats$i/n.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:${NPORT[i]}
http: 127.0.0.1:${NHTTP[i]}
max_payload: 8MB
jetstream { store_dir: "$TMP/nats$i/js" }
cluster { name: bench, listen: 127.0.0.1:${NCLUSTER[i]}, routes: [${routes//,/, }] }
CONF
    nats-server -c "$TMP/nats$i/n.conf" >"$TMP/nats$i/log" 2>&1 &
    MORE_PIDS="$MORE_PIDS $!"
done
for _ in $(seq 300); do
    ok=0
    for i in 0 1 2; do curl -sf "http://127.0.0.1:${NHTTP[i]}/healthz" >/dev/null && ok=$((ok + 1)); done
    [ "$ok" = 3 ] && break
    sleep 0.1
done
[ "$ok" = 3 ] || fail "the NATS cluster did not become ready"
URLS="[nats://127.0.0.1:${NPORT[0]}, nats://127.0.0.1:${NPORT[1]}, nats://127.0.0.1:${NPORT[2]}]"

repl_yaml() { # NODE_ID
    printf 'replication:\n  enabled: true\n  node_id: %s\n  urls: %s\n  lease_ttl_ms: %s\n  advertise_url: http://127.0.0.1/%s\n' \
        "$1" "$URLS" "$TTL" "$1"
}
role() { curl -sf --max-time 2 "${URL[$1]}/v1/health" | jq -r '.replication.role // empty' 2>/dev/null || true; }
applied() { curl -sf --max-time 2 "${URL[$1]}/v1/health" | jq '.replication.applied_seq'; }
# batches the standby is behind the leader's store (the leader's own word: its repl_seq)
lag() { local a b; a=$(applied lead); b=$(applied "$1"); echo $((a - b)); }

# ---- the daemons: a single node, a leader, two standbys ----
bench_start "$BUILD" "$TMP/single"
PID[single]=$BENCH_PID URL[single]=$BENCH_URL
bench_start "$BUILD" "$TMP/lead" "$(repl_yaml lead)"
PID[lead]=$BENCH_PID URL[lead]=$BENCH_URL
for _ in $(seq 100); do [ "$(role lead)" = leader ] && break; sleep 0.1; done
[ "$(role lead)" = leader ] || fail "the first replicated node did not lead"
for s in sb1 sb2; do
    mkdir -p "$TMP/$s" && cp -p "$TMP/lead/master.key" "$TMP/$s/master.key"
    bench_start "$BUILD" "$TMP/$s" "$(repl_yaml "$s")"
    PID[$s]=$BENCH_PID URL[$s]=$BENCH_URL
    [ "$(role "$s")" = standby ] || fail "$s is not a standby"
done
# In requests of 50,000 codes, as a client would send them (a batch over max_payload would travel
# in parts: docs/replication.md, "Large batches").
import_chunked() {
    local l=$1 next=1 n out
    while [ "$next" -le "$CODES" ]; do
        n=$((CODES - next + 1)); [ "$n" -le 50000 ] || n=50000
        { echo code; seq "$next" $((next + n - 1)) | awk '{printf "BENCH-%010d\n", $1}'; } >"$TMP/codes.csv"
        out=$(curl -s -o "$TMP/import.out" -w '%{http_code}' --max-time 600 -X POST \
            "${URL[$l]}/v1/batches?supplier=acme&sku=$SKU&unit_cost=19.80&note=bench" \
            -H "Authorization: Bearer $OPS_TOKEN" -H 'Content-Type: text/csv' --data-binary @"$TMP/codes.csv")
        [ "$out" = 201 ] || { head -c 500 "$TMP/import.out" >&2; fail "$l: import returned $out"; }
        next=$((next + n))
    done
    rm -f "$TMP/codes.csv"
}
note "importing $CODES codes into the single node and the leader"
import_chunked single
import_chunked lead

# ---- 1 and 2: throughput, with the standbys' lag sampled in the middle of the leader's runs ----
lag_sampler() {
    sleep $((DURATION / 2))
    echo "$(lag sb1) $(lag sb2)" >>"$TMP/lag.txt"
}
lag_hook() { # after each run: how long the standbys take to apply everything
    [ "$1" = lead ] || return 0
    local t0 t1 want
    t0=$(now_ms)
    want=$(applied lead)
    for _ in $(seq 3000); do
        [ "$(applied sb1)" -ge "$want" ] && [ "$(applied sb2)" -ge "$want" ] && break
        sleep 0.01
    done
    t1=$(now_ms)
    echo $((t1 - t0)) >>"$TMP/drain.txt"
}
BENCH_RUN_HOOK=lag_hook
: >"$TMP/lag.txt"
: >"$TMP/drain.txt"
# a sample in the middle of each measured leader run: bench_wrk_orders wrapped
orig_wrk=$(declare -f bench_wrk_orders)
eval "orig_${orig_wrk}"
bench_wrk_orders() {
    local sampler=""
    if [ "$1" = lead ] && [[ "$2" != w* ]]; then
        lag_sampler &
        sampler=$!
    fi
    orig_bench_wrk_orders "$@"
    [ -z "$sampler" ] || wait "$sampler" 2>/dev/null || true
}
# JetStream API requests the three servers answered so far
jsapi() {
    local i n=0 a
    for i in 0 1 2; do
        a=$(curl -sf "http://127.0.0.1:${NHTTP[i]}/jsz" | jq '.api.total // 0')
        n=$((n + ${a:-0}))
    done
    echo "$n"
}
api0=$(jsapi) t_api0=$(now_ms)
bench_cpu_rounds "single lead" RL_CODES
api1=$(jsapi) t_api1=$(now_ms)
api_rate=$(bench_calc "($api1 - $api0) * 1000 / ($t_api1 - $t_api0)")

med() { awk -v l="$1" -v c="$2" '$1 == l { print $c }' "$TMP/runs.txt" | bench_median; }
rps_single=$(med single 3) rps_lead=$(med lead 3)
p99_single=$(med single 4) p99_lead=$(med lead 4)
us_single=$(med single 2) us_lead=$(med lead 2)
ratio=$(bench_calc "$rps_lead / $rps_single")
lag_mid=$(tr ' ' '\n' <"$TMP/lag.txt" | grep -v '^$' | sort -n | tail -1)
drain=$(bench_median <"$TMP/drain.txt")
note "single node: $rps_single orders/s, p99 $p99_single ms, $us_single µs CPU/order"
note "replicated:  $rps_lead orders/s, p99 $p99_lead ms, $us_lead µs CPU/order (leader only)"
note "ratio replicated/single: $ratio"
note "standby lag in the middle of a run: at most ${lag_mid:-?} batches; applied everything ${drain} ms after a run (median)"
note "JetStream API requests over the rounds: $api_rate per second (all three servers)"

# ---- 3: failover ----
t0=$(now_ms)
kill -KILL "${PID[lead]}"
wait "${PID[lead]}" 2>/dev/null || true
new=""
for _ in $(seq 2000); do
    for s in sb1 sb2; do [ "$(role "$s")" = leader ] && new=$s; done
    [ -n "$new" ] && break
    sleep 0.01
done
t1=$(now_ms)
[ -n "$new" ] || fail "no standby took over"
failover=$((t1 - t0))
note "failover: $new leads $failover ms after the leader was killed (lease TTL $TTL ms)"

mkdir -p "$SRC/bench/results"
verdict=PASS
[ "$(bench_calc "$ratio >= $MIN_RATIO")" = 1 ] || verdict=MISS
[ "$failover" -le "$MAX_FAILOVER" ] || verdict=MISS
jq -n --arg v "$verdict" --argjson rs "$rps_single" --argjson rl "$rps_lead" \
    --argjson ps "$p99_single" --argjson pl "$p99_lead" --argjson r "$ratio" \
    --argjson f "$failover" --argjson d "${drain:-0}" --argjson lm "${lag_mid:-0}" \
    --argjson api "$api_rate" \
    '{verdict: $v, single: {orders_per_s: $rs, p99_ms: $ps}, replicated: {orders_per_s: $rl, p99_ms: $pl},
      ratio: $r, failover_ms: $f, standby_drain_ms: $d, standby_lag_batches_mid_run: $lm,
      jetstream_api_per_s: $api}' \
    >"$SRC/bench/results/repl.json"
echo "repl: $verdict (ratio $ratio, need >= $MIN_RATIO; failover $failover ms, need <= $MAX_FAILOVER)"
[ "$verdict" = PASS ] || exit 3
