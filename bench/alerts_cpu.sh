#!/usr/bin/env bash
# bench/alerts_cpu.sh BUILD_DIR — what the writer's derived checks cost an order (issue 12,
# "Alert and replenishment checks add under 1 µs of perkhubd CPU per order"): perkhubd CPU
# per order without rules and with AC_RULES products carrying rules (the ordered SKU among
# them), in the SAME run, alternating, so that the noise of a shared machine falls on both.
#
# Two perkhubd of the same build (bench/lib.sh's configuration), both with the bench SKU and
# AC_RULES - 1 more products; in `rules` each of them carries one rule of every kind in
# AC_KINDS (rule_<kind> below writes its YAML; a kind is one function: the
# replenish rules join as `rule_replenish`). The thresholds are far below the stock, so
# every order pays the whole check and none fires (the steady state). Each daemon gets
# AC_CODES codes. Then AC_ROUNDS rounds, each a wrk run of bench/order.lua against one
# daemon, then the other (the order swaps every round); around each run the daemon's
# utime+stime from /proc/PID/stat, divided by the orders wrk saw answered. The store must
# have issued as many codes as wrk saw answered (plus at most one per connection).
#
# Prints each run, the medians, the difference rules - plain (µs per order; also per round)
# and PASS when the median of the per-round differences is under AC_LIMIT_US (1.0), MISS
# otherwise; writes bench/results/alerts_cpu.json. Exit: 0 PASS, 3 MISS, 1 when something
# was wrong.
#
# Knobs (environment):
#   AC_RULES (100)  AC_KINDS ("low_stock"; "none": an A/A run, no rule on either side)  AC_ROUNDS (4)  AC_DURATION (10)  AC_CONNS (64)
#   AC_THREADS (2)  AC_CODES (1000000)  AC_WARMUP (3)  AC_LIMIT_US (1.0)
set -euo pipefail

BUILD=${1:?usage: bench/alerts_cpu.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
RULES=${AC_RULES:-100}
KINDS=${AC_KINDS:-low_stock}
ROUNDS=${AC_ROUNDS:-4}
DURATION=${AC_DURATION:-10}
CONNS=${AC_CONNS:-64}
THREADS=${AC_THREADS:-2}
CODES=${AC_CODES:-1000000}
WARMUP=${AC_WARMUP:-3}
LIMIT=${AC_LIMIT_US:-1.0}
SKU=bench.card
MALL_TOKEN=bench-mall-token
OPS_TOKEN=bench-ops-token
HZ=$(getconf CLK_TCK)

fail() { echo "alerts_cpu: FAIL: $*" >&2; exit 1; }
note() { echo "alerts_cpu: $*" >&2; }

[ -x "$BUILD/perkhubd" ] || fail "$BUILD/perkhubd not found"
"$SRC/tools/deps.sh" wrk jq bc

TMP=$(mktemp -d /tmp/perkhub-alertscpu-XXXXXX)
declare -A PID URL
cleanup() {
    local p
    for p in "${PID[@]}"; do
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

# ---- the rules: one function per kind, its YAML keys for one product (indented four) ----
rule_low_stock() { printf '    low_stock: {below: 10, margin: 5}\n    min_validity_days: 1\n'; }
# AC_KINDS=none: two identical daemons, an A/A run that shows the noise of the machine
rule_none() { :; }

products_yaml() { # with_rules: the bench SKU's rule lines, then RULES - 1 more products
    local k i kinds=""
    [ "$1" = 1 ] && kinds=$KINDS
    for k in $kinds; do "rule_$k"; done
    for i in $(seq 2 "$RULES"); do
        printf '  - sku: bench.rule%d\n    name: Rule %d\n    brand: bench\n    category: video\n' "$i" "$i"
        printf '    delivery: card_code\n    face_value: "30.00"\n'
        for k in $kinds; do "rule_$k"; done
    done
}
for k in $KINDS; do declare -F "rule_$k" >/dev/null || fail "no rule_$k in bench/alerts_cpu.sh"; done



for l in plain rules; do
    note "$l: starting $BUILD/perkhubd, importing $CODES codes"
    if [ "$l" = rules ]; then BENCH_PRODUCTS_YAML=$(products_yaml 1); else BENCH_PRODUCTS_YAML=$(products_yaml 0); fi
    export BENCH_PRODUCTS_YAML
    bench_start "$BUILD" "$TMP/$l"
    PID[$l]=$BENCH_PID
    URL[$l]=$BENCH_URL
    bench_import_codes "$l"
done
# both catalogs hold RULES products; the rules daemon's products judged at its start (the
# other products have no stock: their stock.low and stock.out are open from then on)
for l in plain rules; do
    n=$(curl -sf "${URL[$l]}/v1/products" -H "Authorization: Bearer $OPS_TOKEN" | jq '.products | length')
    [ "$n" = "$RULES" ] || fail "$l: $n products, wanted $RULES"
done
alerts_now() { curl -sf "${URL[rules]}/v1/alerts?state=all&limit=1000" -H "Authorization: Bearer $OPS_TOKEN" | jq '.alerts | length'; }
alerts0=$(alerts_now)
[ "$KINDS" = none ] || [ "$alerts0" -ge $((RULES - 1)) ] ||
    fail "rules: $alerts0 alerts at start, the rules are not judged"

bench_cpu_rounds "plain rules" AC_CODES
# no alert fired during the rounds: the steady state was measured
[ "$(alerts_now)" = "$alerts0" ] || fail "rules: alerts fired during the bench"

col() { awk -v l="$1" -v c="$2" '$1 == l { print $c }' "$TMP/runs.txt"; }
declare -A MED RPS
for l in plain rules; do
    MED[$l]=$(col "$l" 2 | bench_median)
    RPS[$l]=$(col "$l" 3 | bench_median)
done
diffs=$(awk '{ v[$5, $1] = $2 } END { for (k in v) { split(k, a, SUBSEP); if (a[2] == "rules") printf "%.3f\n", v[k] - v[a[1], "plain"] } }' \
    "$TMP/runs.txt" | sort -g)
diff=$(bench_median <<<"$diffs")
verdict=PASS
[ "$(echo "$diff < $LIMIT" | bc)" = 1 ] || verdict=MISS
printf '\nperkhubd CPU per order, %s rounds of %ss at %s connections; %s products with rules (%s)\n' \
    "$ROUNDS" "$DURATION" "$CONNS" "$RULES" "$KINDS"
printf '  plain  median %s µs (runs: %s), %s orders/s\n' "${MED[plain]}" "$(col plain 2 | tr '\n' ' ')" "${RPS[plain]}"
printf '  rules  median %s µs (runs: %s), %s orders/s\n' "${MED[rules]}" "$(col rules 2 | tr '\n' ' ')" "${RPS[rules]}"
printf 'alerts_cpu: rules - plain %s µs per order (median of rounds; limit %s): %s   (per round: %s)\n' \
    "$diff" "$LIMIT" "$verdict" "$(tr '\n' ' ' <<<"$diffs")"

mkdir -p "$SRC/bench/results"
jq -n --argjson plain "${MED[plain]}" --argjson rules "${MED[rules]}" --argjson diff "$diff" \
    --argjson limit "$LIMIT" --arg verdict "$verdict" --argjson rounds "$ROUNDS" \
    --argjson nrules "$RULES" --arg kinds "$KINDS" \
    '{us_cpu_per_order: {plain: $plain, rules: $rules}, difference_us: $diff, limit_us: $limit,
      verdict: $verdict, rounds: $rounds, products_with_rules: $nrules, kinds: $kinds}' \
    >"$SRC/bench/results/alerts_cpu.json"
[ "$verdict" = PASS ] || exit 3
