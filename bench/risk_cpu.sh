#!/usr/bin/env bash
# bench/risk_cpu.sh BUILD_DIR — issue 15's bench: perkhubd CPU per order with 20 active risk
# rules against none, in the SAME run (alternating rounds, bench/lib.sh's bench_cpu_rounds, as
# bench/alerts_cpu.sh does), every order carrying an end_user on both sides (bench/order.lua's
# BENCH_END_USERS: a pool of RC_END_USERS people). The 20 rules cover every variable, scope
# and measure, one related rule and a few dry-run ones; all match every order and none fires
# (limits far above what a run brings a subject): the steady cost of evaluating and counting.
# PASS when the median of the per-round differences is under RC_LIMIT_US (2.0) µs per order
# AND the orders/s with rules are at least RC_RATIO (0.95) x without; writes
# bench/results/risk_cpu.json. Exit: 0 PASS, 3 MISS, 1 when something was wrong (an order
# refused, a rule that fired, or an order path that never asked the engine).
#
# Knobs (environment):
#   RC_ROUNDS (4)  RC_DURATION (10)  RC_CONNS (256)  RC_THREADS (2)  RC_CODES (1500000)
#   RC_WARMUP (3)  RC_END_USERS (100000)  RC_LIMIT_US (2.0)  RC_RATIO (0.95)
# Prints, per round in round order, the difference and each daemon's RSS after its run (the
# windows of 12 h never close here: a cost or a memory that grows round over round shows), and
# the minor page faults of each run per order.
#   RC_TOGETHER (0)  1: each round loads both daemons at once (bench/lib.sh's
#                    bench_cpu_together) instead of one after the other: what else the machine
#                    runs falls on both alike (a diagnosis on a busy machine; the issue's
#                    figure is the alternating one)
set -euo pipefail

BUILD=${1:?usage: bench/risk_cpu.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${RC_ROUNDS:-4}
DURATION=${RC_DURATION:-10}
CONNS=${RC_CONNS:-256}
THREADS=${RC_THREADS:-2}
CODES=${RC_CODES:-1500000}
WARMUP=${RC_WARMUP:-3}
END_USERS=${RC_END_USERS:-100000}
LIMIT=${RC_LIMIT_US:-2.0}
RATIO=${RC_RATIO:-0.95}

. "$SRC/bench/lib.sh"
bench_setup risk_cpu
[ -x "$BUILD/perkhubd" ] || fail "$BUILD/perkhubd not found"
export BENCH_END_USERS=$END_USERS

# The 20 rules: "id variable scope measure limit action mode" (scope "-": any order).
# Limits: far above what a run can bring one subject (an IP holds ten people, the client all).
RULES="
u.any user - orders 1000000 deny enforce
u.sku user sku=bench.card orders 1000000 review enforce
u.fen user brand=bench fen 100000000000 deny enforce
u.tag user tag=campaign=spring orders 1000000 review dry_run
ip.any ip - orders 10000000 review enforce
ip.brand ip brand=bench fen 100000000000 deny enforce
ip24.any ip24 - orders 10000000 review enforce
ip24.tag ip24 tag=campaign=spring orders 10000000 deny dry_run
dev.any device - orders 1000000 deny enforce
dev.sku device sku=bench.card fen 100000000000 review enforce
dev.tag device tag=campaign=spring orders 1000000 deny enforce
ph.any phone - orders 1000000 deny enforce
ph.fen phone - fen 100000000000 review enforce
ph.brand phone brand=bench orders 1000000 deny dry_run
cl.any client - orders 100000000 review enforce
cl.fen client sku=bench.card fen 100000000000000 deny enforce
cl.tag client tag=campaign=spring orders 100000000 deny dry_run
acc.any account - orders 1000000 deny enforce
u.allow user - orders 1000000 allow enforce
"
rule_json() { # id variable scope measure limit action mode
    local scope=null
    if [ "$3" != - ]; then scope=$(jq -cn --arg k "${3%%=*}" --arg v "${3#*=}" '{($k): $v}'); fi
    jq -cn --arg id "$1" --arg var "$2" --argjson scope "$scope" --arg m "$4" --argjson l "$5" \
        --arg a "$6" --arg mode "$7" \
        '{id: $id, variable: $var, measure: $m, limit: $l, window_s: 43200, action: $a,
          mode: $mode, priority: 100} + (if $scope then {scope: $scope} else {} end)'
}
put_rule() {
    local st
    st=$(curl -s -o "$TMP/rule.out" -w '%{http_code}' -X POST "${URL[rules]}/v1/risk/rules" \
        -H "Authorization: Bearer $OPS_TOKEN" -H 'Content-Type: application/json' -d "$1")
    [ "$st" = 201 ] || fail "rules: POST /v1/risk/rules returned $st: $(head -c 300 "$TMP/rule.out")"
}

for l in plain rules; do
    note "$l: starting $BUILD/perkhubd, importing $CODES codes"
    bench_start "$BUILD" "$TMP/$l"
    PID[$l]=$BENCH_PID
    URL[$l]=$BENCH_URL
    bench_import_codes "$l"
    note "$l: perkhubd pid ${PID[$l]}"
done
n=0
while read -r id var scope m lim a mode; do
    [ -n "$id" ] || continue
    put_rule "$(rule_json "$id" "$var" "$scope" "$m" "$lim" "$a" "$mode")"
    n=$((n + 1))
done <<<"$RULES"
# and a related rule: no order is ever blocked here, so it never fires
put_rule '{"id":"rel.blocked","kind":"related","variables":["device","ip","account"],"window_s":86400,"action":"review"}'
n=$((n + 1))
[ "$n" = 20 ] || fail "the bench defines $n rules, not 20"
metric() { curl -sf "${URL[$1]}/metrics" -H "Authorization: Bearer $OPS_TOKEN" | awk -v m="$2" '$1 == m { print $2 }'; }
[ "$(metric rules perkhub_risk_rules)" = 20 ] || fail "rules: the engine holds $(metric rules perkhub_risk_rules) rules"

declare -A RSS FLT
minflt() { sed 's/.*) //' "/proc/${PID[$1]}/stat" | awk '{ print $8 }'; }
for l in plain rules; do FLT[$l]=$(minflt "$l"); done
rss_note() { # label round: the daemon's resident set after its run (MB), its faults per order
    local f ok
    RSS[$1,$2]=$(awk '$1 == "VmRSS:" { printf "%.0f", $2 / 1024 }' "/proc/${PID[$1]}/status")
    f=$(minflt "$1")
    ok=$(jq .ok "$TMP/$1-$2.json")
    FLT[$1,$2]=$(bench_calc "($f - ${FLT[$1]}) / $ok")
    FLT[$1]=$f
}
if [ "${RC_TOGETHER:-0}" = 1 ]; then
    BENCH_RUN_HOOK=rss_note bench_cpu_together "plain rules" RC_CODES
else
    BENCH_RUN_HOOK=rss_note bench_cpu_rounds "plain rules" RC_CODES
fi

checks=$(metric rules perkhub_risk_checks_total)
[ "${checks:-0}" -gt 0 ] ||
    fail "rules: perkhub_risk_checks_total is ${checks:-absent}: the order path does not ask the risk engine (is issue 15's order path merged?)"
for a in review deny; do
    v=$(curl -sf "${URL[rules]}/metrics" -H "Authorization: Bearer $OPS_TOKEN" |
        awk -v a="$a" '$1 == "perkhub_risk_decisions_total{action=\"" a "\"}" { print $2 }')
    [ "${v:-0}" = 0 ] || fail "rules: $v orders decided $a: a rule fired, the bench is not the steady state"
done

col() { awk -v l="$1" -v c="$2" '$1 == l { print $c }' "$TMP/runs.txt"; }
declare -A MED RPS
for l in plain rules; do
    MED[$l]=$(col "$l" 2 | bench_median)
    RPS[$l]=$(col "$l" 3 | bench_median)
done
diffs=$(awk '{ v[$5, $1] = $2 } END { for (k in v) { split(k, a, SUBSEP); if (a[2] == "rules") printf "%.3f\n", v[k] - v[a[1], "plain"] } }' \
    "$TMP/runs.txt" | sort -g)
diff=$(bench_median <<<"$diffs")
ratio=$(bench_calc "${RPS[rules]} / ${RPS[plain]}")
verdict=PASS
[ "$(echo "$diff < $LIMIT" | bc)" = 1 ] || verdict=MISS
[ "$(echo "$ratio >= $RATIO" | bc)" = 1 ] || verdict=MISS
printf '\nperkhubd CPU per order, %s rounds of %ss at %s connections; end users from a pool of %s\n' \
    "$ROUNDS" "$DURATION" "$CONNS" "$END_USERS"
printf '  none      median %s µs (runs: %s), %s orders/s\n' "${MED[plain]}" "$(col plain 2 | tr '\n' ' ')" "${RPS[plain]}"
printf '  20 rules  median %s µs (runs: %s), %s orders/s\n' "${MED[rules]}" "$(col rules 2 | tr '\n' ' ')" "${RPS[rules]}"
for r in $(seq "$ROUNDS"); do
    printf '  round %s: none %s µs, 20 rules %s µs, added %s µs; RSS none %s MB, 20 rules %s MB; minor faults per order none %s, 20 rules %s\n' "$r" \
        "$(awk -v r="$r" '$1 == "plain" && $5 == r { print $2 }' "$TMP/runs.txt")" \
        "$(awk -v r="$r" '$1 == "rules" && $5 == r { print $2 }' "$TMP/runs.txt")" \
        "$(awk -v r="$r" '$5 == r { v[$1] = $2 } END { printf "%.3f", v["rules"] - v["plain"] }' "$TMP/runs.txt")" \
        "${RSS[plain,$r]}" "${RSS[rules,$r]}" "${FLT[plain,$r]}" "${FLT[rules,$r]}"
done
printf 'risk_cpu: 20 rules - none %s µs per order (median of rounds; limit %s), orders/s ratio %s (limit %s): %s   (per round: %s)\n' \
    "$diff" "$LIMIT" "$ratio" "$RATIO" "$verdict" "$(tr '\n' ' ' <<<"$diffs")"

mkdir -p "$SRC/bench/results"
jq -n --argjson plain "${MED[plain]}" --argjson rules "${MED[rules]}" --argjson diff "$diff" \
    --argjson limit "$LIMIT" --argjson ratio "$ratio" --argjson rlimit "$RATIO" \
    --argjson rps_plain "${RPS[plain]}" --argjson rps_rules "${RPS[rules]}" \
    --arg verdict "$verdict" --argjson rounds "$ROUNDS" --argjson conns "$CONNS" \
    '{us_cpu_per_order: {none: $plain, rules20: $rules}, difference_us: $diff, limit_us: $limit,
      orders_per_s: {none: $rps_plain, rules20: $rps_rules}, ratio: $ratio, ratio_limit: $rlimit,
      verdict: $verdict, rounds: $rounds, connections: $conns}' >"$SRC/bench/results/risk_cpu.json"
[ "$verdict" = PASS ] || exit 3
