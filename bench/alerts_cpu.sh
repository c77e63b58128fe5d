#!/usr/bin/env bash
# bench/alerts_cpu.sh BUILD_DIR — what the writer's derived checks cost an order (issue 12,
# "Alert and replenishment checks add under 1 µs of perkhubd CPU per order"): perkhubd CPU
# per order without rules and with AC_RULES products carrying rules (the ordered SKU among
# them), in the SAME run, with an A/A control beside it that shows how far the same
# comparison moves when nothing differs.
#
# Three perkhubd of the same build (bench/lib.sh's configuration), each with the bench SKU
# and AC_RULES - 1 more products: `plain` and `control` without rules, `rules` with one rule
# of every kind in AC_KINDS on each product (rule_<kind> below writes its YAML; a kind is one
# function: the replenish rules join as `rule_replenish`). The thresholds are far below the
# stock, so every order pays the whole check and none fires (the steady state). Each daemon
# gets AC_CODES codes and AC_HTTP_THREADS HTTP threads (1: with a pool, how wrk's connections
# happen to spread over its threads moves the CPU per order by several µs from one run to the
# next, which no rule causes). Then AC_ROUNDS rounds, each a wrk run of bench/order.lua
# against all three AT ONCE (bench_cpu_together: the load of a shared machine falls on all
# three alike); the CPU of every daemon thread (schedstat, in ns) around each, divided by the
# orders wrk saw answered. The store must have issued as many codes as wrk saw answered (plus
# at most one per connection).
#
# Prints each run, the medians, per round the differences rules - plain (the figure) and
# control - plain (the noise floor: the same difference between two identical daemons), their
# medians, and PASS when the median of rules - plain is under AC_LIMIT_US (1.0), MISS
# otherwise; writes bench/results/alerts_cpu.json. Exit: 0 PASS, 3 MISS, 1 when something
# was wrong. bench/alerts_writer.sh measures the check alone, in the store's writer.
#
# Knobs (environment):
#   AC_RULES (100)  AC_KINDS ("low_stock"; "none": no rule anywhere, an A/A/A run)
#   AC_ROUNDS (10)  AC_DURATION (8)  AC_CONNS (32 per daemon)  AC_THREADS (1 wrk thread per
#   daemon)  AC_HTTP_THREADS (1)  AC_CODES (1000000 per daemon)  AC_WARMUP (3)  AC_LIMIT_US (1.0)
set -euo pipefail

BUILD=${1:?usage: bench/alerts_cpu.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
RULES=${AC_RULES:-100}
KINDS=${AC_KINDS:-low_stock}
ROUNDS=${AC_ROUNDS:-12}
DURATION=${AC_DURATION:-7}
CONNS=${AC_CONNS:-32}
THREADS=${AC_THREADS:-1}
HTTP_THREADS=${AC_HTTP_THREADS:-1}
CODES=${AC_CODES:-1000000}
WARMUP=${AC_WARMUP:-3}
LIMIT=${AC_LIMIT_US:-1.0}

. "$SRC/bench/lib.sh"
bench_setup alerts_cpu
[ -x "$BUILD/perkhubd" ] || fail "$BUILD/perkhubd not found"

# ---- the rules: one function per kind, its YAML keys for one product (indented four) ----
rule_low_stock() { printf '    low_stock: {below: 10, margin: 5}\n    min_validity_days: 1\n'; }
# AC_KINDS=none: no rule on any of the three, an A/A/A run (the control is in every run)
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



# ---- three daemons, three roles that rotate ----
# Each daemon has a config with the rules (perkhub.yaml, what it starts on, so that the
# rules' first judgement happens at start) and one without (plain.yaml); a role is a config.
DAEMONS="d1 d2 d3"
ROLES=(rules plain control)
for l in $DAEMONS; do
    note "$l: starting $BUILD/perkhubd, importing $CODES codes"
    extra=$(printf 'http:\n  threads: %s' "$HTTP_THREADS")
    BENCH_PRODUCTS_YAML=$(products_yaml 0) bench_config "$BUILD" "$TMP/$l" "$extra"
    mv "$TMP/$l/perkhub.yaml" "$TMP/$l/plain.yaml"
    BENCH_PRODUCTS_YAML=$(products_yaml 1) bench_start "$BUILD" "$TMP/$l" "$extra"
    cp "$TMP/$l/perkhub.yaml" "$TMP/$l/rules.yaml"
    "$BUILD/perkhubd" --check-config "$TMP/$l/plain.yaml" >/dev/null || fail "$l: plain.yaml rejected"
    PID[$l]=$BENCH_PID
    URL[$l]=$BENCH_URL
    bench_import_codes "$l"
done
for l in $DAEMONS; do
    n=$(curl -sf "${URL[$l]}/v1/products" -H "Authorization: Bearer $OPS_TOKEN" | jq '.products | length')
    [ "$n" = "$RULES" ] || fail "$l: $n products, wanted $RULES"
done
# the products judged at start (all but the bench SKU have no stock: their stock.low and
# stock.out are open from then on, and stay fired through every reload)
alerts_now() {
    local l n=0
    for l in $DAEMONS; do
        n=$((n + $(curl -sf "${URL[$l]}/v1/alerts?state=all&limit=1000" -H "Authorization: Bearer $OPS_TOKEN" | jq '.alerts | length')))
    done
    echo "$n"
}
alerts0=$(alerts_now)
[ "$KINDS" = none ] || [ "$alerts0" -ge $((3 * (RULES - 1))) ] ||
    fail "$alerts0 alerts at start, the rules are not judged"

# set_roles ROUND: daemon i takes ROLES[(i + ROUND) % 3], so that over three rounds every
# daemon is rules, plain and control once (whatever makes one daemon dearer than another, a
# heap's layout or a core's neighbour, falls on every role alike); reloads (SIGHUP) the ones
# whose config changes and waits for each reload's audit record (written in the commit of the
# catalog, so the writer judges by the new rules from then on). AC_KINDS=none: nothing to
# reload.
declare -A ROLE
reloads() {
    curl -sf "${URL[$1]}/v1/audit?action=config.reload&limit=1000" -H "Authorization: Bearer $OPS_TOKEN" |
        jq '.audit | length'
}
set_roles() {
    local r=$1 i=0 l role want n0
    for l in $DAEMONS; do
        role=${ROLES[$(((i + r) % 3))]}
        i=$((i + 1))
        echo "$r $l $role" >>"$TMP/roles.txt"
        want=plain
        [ "$role" = rules ] && want=rules
        if [ "$KINDS" != none ] && [ "${ROLE[$l]:-rules}" != "$want" ]; then
            n0=$(reloads "$l")
            cp "$TMP/$l/$want.yaml" "$TMP/$l/perkhub.yaml"
            kill -HUP "${PID[$l]}"
            for _ in $(seq 100); do
                [ "$(reloads "$l")" -gt "$n0" ] && break
                sleep 0.1
            done
            [ "$(reloads "$l")" -gt "$n0" ] ||
                { tail -n 5 "$TMP/$l/perkhubd.log" >&2; fail "$l: no reload to $want recorded in 10 s"; }
            curl -sf "${URL[$l]}/v1/audit?action=config.reload&limit=1000" -H "Authorization: Bearer $OPS_TOKEN" |
                jq -e --arg s "$SKU" '.audit[-1].what.products.changed | index($s)' >/dev/null ||
                fail "$l: the reload to $want did not change $SKU"
        fi
        ROLE[$l]=$want
    done
}
: >"$TMP/roles.txt"
BENCH_ROUND_HOOK=set_roles bench_cpu_together "$DAEMONS" AC_CODES
# no alert fired during the rounds: the steady state was measured
[ "$(alerts_now)" = "$alerts0" ] || fail "alerts fired during the bench"

# runs.txt: daemon µs orders/s p99 round -> role µs orders/s p99 round
awk 'NR == FNR { role[$1, $2] = $3; next } { $1 = role[$5, $1]; print }' \
    "$TMP/roles.txt" "$TMP/runs.txt" >"$TMP/byrole.txt"
col() { awk -v l="$1" -v c="$2" '$1 == l { print $c }' "$TMP/byrole.txt"; }
# per round: ROLE's µs per order less plain's, sorted
diffs() {
    awk -v l="$1" '{ v[$5, $1] = $2 } END { for (k in v) { split(k, a, SUBSEP); if (a[2] == l) printf "%.3f\n", v[k] - v[a[1], "plain"] } }' \
        "$TMP/byrole.txt" | sort -g
}
declare -A MED RPS
for l in plain control rules; do
    MED[$l]=$(col "$l" 2 | bench_median)
    RPS[$l]=$(col "$l" 3 | bench_median)
done
rdiffs=$(diffs rules)
cdiffs=$(diffs control)
diff=$(bench_median <<<"$rdiffs")
cdiff=$(bench_median <<<"$cdiffs")
verdict=PASS
[ "$(echo "$diff < $LIMIT" | bc)" = 1 ] || verdict=MISS
printf '\nperkhubd CPU per order, %s rounds of %ss, three daemons at once (%s connections each), roles rotating; %s products with rules (%s)\n' \
    "$ROUNDS" "$DURATION" "$CONNS" "$RULES" "$KINDS"
for l in plain control rules; do
    printf '  %-8s median %s µs (runs: %s), %s orders/s\n' "$l" "${MED[$l]}" "$(col "$l" 2 | tr '\n' ' ')" "${RPS[$l]}"
done
printf '  noise floor: control - plain (two daemons without rules) median %s µs   (per round: %s)\n' \
    "$cdiff" "$(tr '\n' ' ' <<<"$cdiffs")"
printf 'alerts_cpu: rules - plain %s µs per order (median of rounds; limit %s): %s   (per round: %s)\n' \
    "$diff" "$LIMIT" "$verdict" "$(tr '\n' ' ' <<<"$rdiffs")"

mkdir -p "$SRC/bench/results"
jq -n --argjson plain "${MED[plain]}" --argjson rules "${MED[rules]}" --argjson diff "$diff" \
    --argjson control "${MED[control]}" --argjson cdiff "$cdiff" \
    --argjson limit "$LIMIT" --arg verdict "$verdict" --argjson rounds "$ROUNDS" \
    --argjson nrules "$RULES" --arg kinds "$KINDS" \
    '{us_cpu_per_order: {plain: $plain, control: $control, rules: $rules}, difference_us: $diff,
      control_difference_us: $cdiff, limit_us: $limit,
      verdict: $verdict, rounds: $rounds, products_with_rules: $nrules, kinds: $kinds}' \
    >"$SRC/bench/results/alerts_cpu.json"
[ "$verdict" = PASS ] || exit 3
