#!/usr/bin/env bash
# bench/supplier_io.sh BUILD_DIR — issue 4 point 6: recharges in flight against the
# supplier simulator answering late; completion rate against the ideal
# (in-flight ÷ latency) and perkhubd's peak RSS. See bench/README.md, "Supplier I/O".
# Bounded in time; stops every process it started and removes its temp dir on exit.
#
# Knobs (environment):
#   SIO_INFLIGHT (10000)      orders of the burst and hold runs, outstanding target of the steady run
#   SIO_LATENCY_MS (200)      the simulators' answer delay for orders (burst, steady)
#   SIO_CONNS (256)           loadgen's keep-alive connections to perkhubd
#   SIO_DURATION (20)         seconds of the steady run; SIO_WARMUP (3) of them not measured
#   SIO_HOLD_LATENCY_MS (10000) answer delay of the hold run (all orders on the wire at once)
#   SIO_CEILING_DURATION (8)  seconds of the ceiling run (steady, answers at once; 2 s warm-up)
#   SIO_RUNS ("ceiling burst steady hold")  which runs, in that order
#   SIO_SIMS (1)              simulator instances, one supplier each (supsim takes --max-connections 20000)
#   SIO_MAX_IN_FLIGHT (12000) max_in_flight of each supplier (under supsim's connection limit)
#   SIO_SIM_NICE (0)          nice value of the simulators (10: they yield the CPU to perkhubd; see README)
#   SIO_HTTP_THREADS ("")     perkhubd http.threads (empty: the default)
#   SIO_SETTLE_S (60)         how long orders may take to become final after submission ends
#   SIO_PERF (0)              1: perf record -g perkhubd for 5 s of the steady run: top symbols in the
#                             JSON, the reports (by dso,sym and by thread) and perf.data beside it
#   SIO_LOADGEN_CFLAGS ("")   extra gcc flags for loadgen (e.g. "-g -fsanitize=address,undefined")
#   SIO_OUT (bench/results/supplier_io.json)
set -euo pipefail

BUILD=${1:?usage: bench/supplier_io.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
INFLIGHT=${SIO_INFLIGHT:-10000}
LATENCY=${SIO_LATENCY_MS:-200}
CONNS=${SIO_CONNS:-256}
DURATION=${SIO_DURATION:-20}
WARMUP=${SIO_WARMUP:-3}
HOLD_LATENCY=${SIO_HOLD_LATENCY_MS:-10000}
CEIL_DURATION=${SIO_CEILING_DURATION:-8}
RUNS=${SIO_RUNS:-"ceiling burst steady hold"}
NSIMS=${SIO_SIMS:-1}
MAX_IN_FLIGHT=${SIO_MAX_IN_FLIGHT:-12000}
HTTP_THREADS=${SIO_HTTP_THREADS:-}
SIM_NICE=${SIO_SIM_NICE:-0}
SETTLE=${SIO_SETTLE_S:-60}
PERF=${SIO_PERF:-0}
OUT=${SIO_OUT:-$SRC/bench/results/supplier_io.json}
RSS_LIMIT_KB=$((256 * 1024))
MALL_TOKEN=bench-mall-token
OPS_TOKEN=bench-ops-token
PERKHUBD=$BUILD/perkhubd
SUPSIM=$BUILD/tools/supsim/supsim
LOADGEN=$BUILD/bench_loadgen

fail() { echo "supplier_io: FAIL: $*" >&2; exit 1; }
note() { echo "supplier_io: $*" >&2; }

[ -x "$PERKHUBD" ] || fail "$PERKHUBD not found (make build first)"
[ -x "$SUPSIM" ] || fail "$SUPSIM not found (make build first)"
[ -f "$BUILD/plugins/rewards.so" ] || fail "$BUILD/plugins/rewards.so not found (make build first)"
"$SRC/tools/deps.sh" jq
[ "$PERF" = 1 ] && "$SRC/tools/deps.sh" linux-perf

mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp -d /tmp/perkhub-bench-XXXXXX)
PID=""
SIM_PIDS=()
PERF_PID=""
LG_PID=""
cleanup() {
    for p in $LG_PID $PERF_PID $PID "${SIM_PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -KILL "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every exchange in flight is a connection at each end: the simulators need far more
# descriptors than the usual 1024 (perkhubd raises its own soft limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] || [ "$NOFILE" -ge $((INFLIGHT + CONNS + 1024)) ] \
    || note "warning: ulimit -n is $NOFILE, low for $INFLIGHT in flight"

# shellcheck disable=SC2086 # SIO_LOADGEN_CFLAGS is a list of flags
gcc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra ${SIO_LOADGEN_CFLAGS:-} -o "$LOADGEN" "$SRC/bench/loadgen.c" \
    -lcurl -ljansson -lpthread || fail "could not build bench/loadgen.c"

wait_port_file() { # file pid what
    for _ in $(seq 300); do
        [ -s "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || fail "$3 exited at start (log: $(tail -5 "$4" 2>/dev/null))"
        sleep 0.1
    done
    fail "$3 wrote no port file in 30 s"
}

# ---- the simulators ---------------------------------------------------------------
declare -a SIM_PORTS
for i in $(seq 1 "$NSIMS"); do
    nice -n "$SIM_NICE" "$SUPSIM" --port 0 --port-file "$TMP/sim$i.port" --seed "$i" --balance 1000000000 >"$TMP/sim$i.log" 2>&1 &
    SIM_PIDS+=($!)
    wait_port_file "$TMP/sim$i.port" "$!" "supsim $i" "$TMP/sim$i.log"
    SIM_PORTS[i]=$(cat "$TMP/sim$i.port")
done
printf rw-key >"$TMP/rw.key"
printf rw-whsec >"$TMP/rw.whsec"
chmod 600 "$TMP/rw.key" "$TMP/rw.whsec" # perkhubd refuses secret files others may read
sim() { # i method path [body]
    curl -sf --max-time 30 -X "$2" "http://127.0.0.1:${SIM_PORTS[$1]}$3" ${4:+-d "$4"}
}
sims_prepare() { # latency_ms: reset orders and counts, every order answered that late
    for i in $(seq 1 "$NSIMS"); do
        sim "$i" DELETE /_sim/faults >/dev/null || fail "supsim $i: DELETE /_sim/faults"
        sim "$i" POST /_sim/reset >/dev/null || fail "supsim $i: reset"
        sim "$i" POST /_sim/faults \
            "{\"protocol\":\"*\",\"op\":\"order\",\"fault\":\"latency\",\"latency_ms\":$1,\"count\":-1}" \
            >/dev/null || fail "supsim $i: latency fault"
    done
}
# Why orders failed: their reasons, counted (every page of the ops order list).
failure_reasons() {
    local after=0 page
    while :; do
        page=$(curl -s --max-time 10 "$URL/v1/orders?after=$after&limit=1000" \
            -H "Authorization: Bearer $OPS_TOKEN") || return 0
        jq -r '.orders[] | select(.state == "failed") | .reason // "-"' <<<"$page" 2>/dev/null || true
        after=$(jq -r '.next_after // empty' <<<"$page" 2>/dev/null || true)
        [ -n "$after" ] || break
    done | sort | uniq -c | sed 's/^/  failed: /'
}

sims_truth() { # -> {"recharges_performed":..,"double_creates":..,...} summed over the simulators
    for i in $(seq 1 "$NSIMS"); do
        sim "$i" GET /_sim/truth | jq -c '.counts' || fail "supsim $i: truth"
    done | jq -sc 'reduce .[] as $c ({}; reduce ($c | keys[]) as $k (.; .[$k] += $c[$k]))'
}

# ---- perkhubd, fresh for each run (each run's VmHWM is its own) -------------------------
sha() { printf %s "$1" | sha256sum | cut -c1-64; }
write_config() { # dir
    {
        cat <<YAML
listen:
  address: 127.0.0.1
  port: 0
  port_file: $1/port
data_dir: $1/data
master_key_file: $1/master.key
master_key_create: true
plugin_dir: $BUILD/plugins
log:
  level: warn
clients:
  - name: mall
    token_sha256: $(sha "$MALL_TOKEN")
    scopes: [fulfill, support]
  - name: ops
    token_sha256: $(sha "$OPS_TOKEN")
    scopes: [ops]
YAML
        [ -z "$HTTP_THREADS" ] || printf 'http:\n  threads: %s\n' "$HTTP_THREADS"
        echo "suppliers:"
        for i in $(seq 1 "$NSIMS"); do
            cat <<YAML
  - id: rw$i
    plugin: rewards
    priority: 10
    max_in_flight: $MAX_IN_FLIGHT
    timeout_ms: 10000
    connect_timeout_ms: 10000
    breaker_failures: 1000000
    config:
      base_url: http://127.0.0.1:${SIM_PORTS[i]}/rewards
      api_key: file:$TMP/rw.key
      webhook_secret: file:$TMP/rw.whsec
YAML
        done
        echo "products:"
        for i in $(seq 1 "$NSIMS"); do
            cat <<YAML
  - sku: bench.topup.$i
    name: Bench top-up $i
    brand: sim
    category: telecom
    delivery: recharge
    face_value: "50.00"
    offers:
      - {supplier: rw$i, supplier_sku: U20001, cost: "49.00"}
YAML
        done
    } >"$1/perkhub.yaml"
}
start_daemon() { # dir
    mkdir -p "$1"
    write_config "$1"
    "$PERKHUBD" --check-config "$1/perkhub.yaml" >/dev/null || fail "generated config rejected"
    "$PERKHUBD" -c "$1/perkhub.yaml" >"$1/perkhubd.log" 2>&1 &
    PID=$!
    wait_port_file "$1/port" "$PID" perkhubd "$1/perkhubd.log"
    URL=http://127.0.0.1:$(cat "$1/port")
    for _ in $(seq 100); do
        curl -sf --max-time 5 "$URL/v1/health" >/dev/null && return 0
        sleep 0.1
    done
    fail "perkhubd not healthy"
}
stop_daemon() { # dir
    kill -TERM "$PID"
    for _ in $(seq 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$PID" 2>/dev/null && fail "perkhubd did not stop within 30 s of SIGTERM"
    wait "$PID" || fail "perkhubd exited with $? on SIGTERM"
    PID=""
    "$PERKHUBD" --check-store "$1/data" >"$1/check.out" 2>&1 \
        || { cat "$1/check.out" >&2; fail "perkhubd --check-store failed"; }
}

# top symbols of a perf.data (self %, whole process; the whole report is kept beside $OUT)
perf_top() { # perf.data name
    perf report -i "$1" --no-children -g none --sort pid,sym --percent-limit 0.2 --stdio 2>/dev/null \
        >"${OUT%.json}.$2.perf-threads.txt" || true
    perf report -i "$1" --no-children -g none --sort dso,sym --stdio 2>/dev/null >"${OUT%.json}.$2.perf.txt" || true
    cp "$1" "${OUT%.json}.$2.perf.data" 2>/dev/null || true
    awk '/^ +[0-9]/ && n++ < 30' "${OUT%.json}.$2.perf.txt" \
        | jq -Rsc 'split("\n") | map(select(length > 0) | capture("^ +(?<pct>[0-9.]+)% +(?<sym>.*)$"))'
}

# ---- one run --------------------------------------------------------------------------
SKUS=$(seq -s, -f 'bench.topup.%g' 1 "$NSIMS")
declare -A RESULT
run_one() { # name mode latency_ms [duration warmup]
    local name=$1 mode=$2 lat=$3 dir=$TMP/$1 dur=${4:-$DURATION} warm=${5:-$WARMUP}
    note "$name: $mode, latency ${lat} ms, $INFLIGHT $( [ "$mode" = steady ] && echo "outstanding for ${dur}s" || echo orders), $CONNS connections"
    sims_prepare "$lat"
    start_daemon "$dir"
    local cpu_args=(--cpu "perkhubd=$PID")
    for i in $(seq 1 "$NSIMS"); do cpu_args+=(--cpu "supsim$i=${SIM_PIDS[i-1]}"); done
    local args=(--url "$URL" --token "$MALL_TOKEN" --ops-token "$OPS_TOKEN" --skus "$SKUS"
        --prefix "$name" --mode "$mode" --conns "$CONNS" --latency-ms "$lat" --pid "$PID"
        --settle-s "$SETTLE" "${cpu_args[@]}")
    if [ "$mode" = steady ]; then
        args+=(--target "$INFLIGHT" --duration "$dur" --warmup "$warm")
    else
        args+=(--orders "$INFLIGHT")
    fi
    local perf_json=null
    if [ "$PERF" = 1 ] && [ "$name" = steady ]; then
        (sleep "$warm"; exec perf record -g -o "$dir/perf.data" -p "$PID" -- sleep 5) \
            >"$dir/perf.log" 2>&1 &
        PERF_PID=$!
    fi
    # in the background: a TERM to this script (bench/run.sh's timeout) is then handled at
    # once by the trap, which stops everything, instead of after the load generator ends
    # (loadgen bounds itself: fixed duration, 30 s per request, --settle-s for the rest)
    "$LOADGEN" "${args[@]}" >"$dir/loadgen.json" 2>"$dir/loadgen.err" &
    LG_PID=$!
    wait "$LG_PID" \
        || { cat "$dir/loadgen.err" >&2; head -c 2000 "$dir/loadgen.json" >&2; fail "$name: loadgen failed"; }
    LG_PID=""
    if [ -n "$PERF_PID" ]; then
        wait "$PERF_PID" || true
        PERF_PID=""
        perf_json=$(perf_top "$dir/perf.data" "$name")
    fi
    local j truth
    j=$(cat "$dir/loadgen.json")
    truth=$(sims_truth)
    # correctness: what the suppliers did is what perkhub says it did
    local acc ok failed stored perf_n dbl reqs
    acc=$(jq .accepted <<<"$j"); ok=$(jq .succeeded <<<"$j"); failed=$(jq .failed <<<"$j")
    stored=$(jq .orders_stored <<<"$j")
    perf_n=$(jq .recharges_performed <<<"$truth"); dbl=$(jq .double_creates <<<"$truth")
    reqs=$(jq .order_requests <<<"$truth")
    [ "$(jq .errors <<<"$j")" = 0 ] || fail "$name: $(jq .errors <<<"$j") orders not accepted ($(jq -r .first_error <<<"$j"))"
    [ "$(jq .settled <<<"$j")" = true ] || fail "$name: orders still not final ${SETTLE}s after submission ended"
    [ "$failed" = 0 ] || { failure_reasons >&2; fail "$name: $failed orders failed"; }
    [ "$ok" = "$acc" ] || fail "$name: $ok orders succeeded, $acc accepted"
    [ "$stored" = "$acc" ] || fail "$name: $stored orders stored, $acc accepted"
    [ "$perf_n" = "$ok" ] || fail "$name: the simulators performed $perf_n recharges, perkhub says $ok succeeded"
    [ "$dbl" = 0 ] || fail "$name: $dbl references created twice at the simulators"
    [ "$reqs" = "$acc" ] || fail "$name: $reqs order requests reached the simulators for $acc orders"
    [ "$mode" != burst ] || [ "$acc" = "$INFLIGHT" ] || fail "$name: $acc of $INFLIGHT orders accepted"
    local hwm
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$PID/status")
    stop_daemon "$dir"
    RESULT[$name]=$(jq -c --argjson truth "$truth" --argjson hwm "$hwm" --argjson perf "$perf_json" \
        --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
        '. + {simulators: $truth, vm_hwm_kb: $hwm, load_avg_at_end: $load} + (if $perf == null then {} else {perf_top_symbols: $perf} end)
         | (if .mode == "steady" then .window_completions else .accepted end) as $n
         | . + {cpu_us_per_order: (.cpu_window | to_entries
                | map(select((.value | type) == "object" and (.value | has("cpu_s"))))
                | map({(.key): (if $n > 0 then (.value.cpu_s / $n * 1e6 | round) else null end)}) | add)}' <<<"$j")
    note "  $acc accepted, $ok succeeded = $perf_n performed at the simulators, 0 double creates; store checked"
}

for r in $RUNS; do
    case $r in
    ceiling) run_one ceiling steady 0 "$CEIL_DURATION" 2 ;;
    burst) run_one burst burst "$LATENCY" ;;
    steady) run_one steady steady "$LATENCY" ;;
    hold) [ "$HOLD_LATENCY" -gt 0 ] && run_one hold burst "$HOLD_LATENCY" ;;
    *) fail "unknown run $r in SIO_RUNS" ;;
    esac
done

# ---- verdicts, table, JSON ---------------------------------------------------------------
verdict() { [ "$(jq -n "$1")" = true ] && echo PASS || echo MISS; }
get() { jq -r "$2" <<<"${RESULT[$1]}"; }
fmt() { printf '%.*f' "$2" "$1"; }
printf '\nperkhub bench — supplier I/O: recharges against %s simulator(s) answering late (%s, nproc %s)\n' \
    "$NSIMS" "$(uname -r)" "$(nproc)"
printf '%-7s %7s %8s %9s %9s %9s %11s %10s %7s %8s %9s %8s %s\n' run "lat ms" orders "in-flight" "outstand" \
    "intake/s" "complete/s" "ideal/s" ratio "RSS MB" "HWM MB" "anon MB" verdict
VERDICTS='{}'
for name in ceiling burst steady hold; do
    [ -n "${RESULT[$name]:-}" ] || continue
    hwm=$(get "$name" .vm_hwm_kb)
    anon=$(echo "$(get "$name" '.peak_rss_anon_kb // 0') / 1024" | bc -l)
    if [ "$name" = ceiling ]; then
        printf '%-7s %7s %8s %9.0f %9.0f %9.0f %11.0f %10s %7s %8.1f %9.1f %8.1f %s\n' ceiling 0 "$(get ceiling .accepted)" \
            "$(get ceiling .mean_in_flight)" "$(get ceiling .mean_outstanding)" "$(get ceiling .intake_per_s)" \
            "$(get ceiling .completion_per_s)" - - "$(echo "$(get ceiling .peak_rss_kb) / 1024" | bc -l)" \
            "$(echo "$hwm / 1024" | bc -l)" "$anon" "(answers at once: the path's ceiling)"
        continue
    fi
    if [ "$name" = steady ]; then
        ratio=$(get steady .ratio_target); ideal=$(get steady .ideal_target_per_s)
        inflight=$(fmt "$(get steady .mean_in_flight)" 0); outst=$(fmt "$(get steady .mean_outstanding)" 0)
        orders=$(get steady .accepted)
    else
        ratio=$(get "$name" .ratio); ideal=$(get "$name" .ideal_per_s)
        inflight=$(get "$name" .peak_in_flight); outst=$(get "$name" .peak_outstanding)
        orders=$(get "$name" .accepted)
    fi
    v_ratio=$(verdict "$ratio >= 0.90"); v_rss=$(verdict "$(get "$name" '.peak_rss_anon_kb // .vm_hwm_kb') < $RSS_LIMIT_KB")
    VERDICTS=$(jq -c --arg n "$name" --arg r "$v_ratio" --arg m "$v_rss" '. + {($n): {ratio: $r, rss: $m}}' <<<"$VERDICTS")
    printf '%-7s %7s %8s %9s %9s %9.0f %11.0f %10.0f %7.3f %8.1f %9.1f %8.1f ratio %s, RSS %s\n' "$name" \
        "$(get "$name" .latency_ms)" "$orders" "$inflight" "$outst" "$(get "$name" .intake_per_s)" \
        "$(get "$name" .completion_per_s)" "$ideal" "$ratio" "$(echo "$(get "$name" .peak_rss_kb) / 1024" | bc -l)" \
        "$(echo "$hwm / 1024" | bc -l)" "$anon" "$v_ratio" "$v_rss"
done
if [ -n "${RESULT[steady]:-}" ]; then
    printf '        steady at the in-flight level it sustained: %.0f/s of ideal %.0f/s (mean in_flight %.0f / %s ms): ratio %.3f\n' \
        "$(get steady .completion_per_s)" "$(get steady .ideal_sustained_per_s)" "$(get steady .mean_in_flight)" \
        "$LATENCY" "$(get steady .ratio_sustained)"
    if [ -n "${RESULT[ceiling]:-}" ]; then
        printf '        steady ÷ ceiling (same path, answers at once): %.3f\n' \
            "$(jq -n "$(get steady .completion_per_s) / $(get ceiling .completion_per_s)")"
    fi
fi
for name in ceiling steady; do
    [ -n "${RESULT[$name]:-}" ] || continue
    printf '        %s: CPU per order (us): %s; load average after it %s\n' "$name" \
        "$(get "$name" '.cpu_us_per_order | to_entries | map("\(.key) \(.value)") | join(", ")')" \
        "$(get "$name" .load_avg_at_end)"
done
printf '  in-flight: burst/hold = peak of health.in_flight summed over the suppliers (sampled every 10 ms), the ideal\n'
printf '  divides it by the latency; steady = its mean over the window, the ideal divides the target (%s) by the latency.\n' "$INFLIGHT"
printf '  goal: completion >= 0.90 x ideal at %s in flight, peak RSS of the daemon'"'"'s own memory (RssAnon) < 256 MB\n' "$INFLIGHT"
printf '  anon MB: peak RssAnon, the judged RSS; VmRSS/VmHWM also count LMDB'"'"'s mapped, reclaimable file pages, which grow with the recharges stored (run length x rate), not with those in flight\n'

mkdir -p "$(dirname "$OUT")"
runs_json=$(for n in ceiling burst steady hold; do
    if [ -n "${RESULT[$n]:-}" ]; then jq -c --arg n "$n" '{($n): .}' <<<"${RESULT[$n]}"; fi
done | jq -sc 'add // {}')
jq -n --argjson runs "$runs_json" --argjson verdicts "$VERDICTS" \
    --arg at "$(date -u +%FT%TZ)" --arg kernel "$(uname -r)" --argjson nproc "$(nproc)" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --argjson inflight "$INFLIGHT" --argjson latency "$LATENCY" --argjson conns "$CONNS" \
    --argjson duration "$DURATION" --argjson warmup "$WARMUP" --argjson hold "$HOLD_LATENCY" --argjson ceil "$CEIL_DURATION" \
    --argjson sims "$NSIMS" --argjson simnice "$SIM_NICE" --argjson mif "$MAX_IN_FLIGHT" --arg threads "${HTTP_THREADS:-default (4)}" \
    --argjson settle "$SETTLE" \
    '{slice: "supplier-io", at: $at,
      machine: {nproc: $nproc, kernel: $kernel, load_avg_at_end: $load},
      settings: {in_flight_target: $inflight, latency_ms: $latency, hold_latency_ms: $hold, ceiling_duration_s: $ceil,
                 connections: $conns, steady_duration_s: $duration, steady_warmup_s: $warmup,
                 simulators: $sims, simulator_nice: $simnice, suppliers: $sims, max_in_flight_per_supplier: $mif,
                 http_threads: $threads, settle_s: $settle, durable: true,
                 plugin: "rewards", supplier_sku: "U20001", account: "fixed test account"},
      definitions: {
        burst: "ratio = completion_per_s / ideal_per_s; completion_per_s = orders / (first submission -> last order.succeeded commit); ideal_per_s = peak_in_flight (sum of GET /v1/suppliers health.in_flight, sampled every 10 ms) / latency",
        steady: "closed loop: a new order whenever submitted - finished exchanges < target; ratio_target = completion_per_s / (target / latency) (the verdict); ratio_sustained = completion_per_s / (mean_in_flight / latency); completion_per_s counts orders whose order.succeeded commit falls in [warmup, duration]",
        hold: "burst with answers after hold_latency_ms: all orders on the wire together, for the RSS at the full in-flight level",
        ceiling: "steady closed loop with answers at once (latency 0) for ceiling_duration_s: what the whole path (HTTP intake, two durable commands, exchange, callback) completes per second when nothing is held on the wire; ideal and ratios do not apply",
        rss: "vm_hwm_kb = perkhubd VmHWM at the end of the run (fresh daemon per run), shown; peak_rss_kb = largest VmRSS sampled every 100 ms; peak_rss_anon_kb = largest RssAnon (heap and stacks, without LMDB file pages) sampled likewise, the judged figure"},
      goal: {min_ratio: 0.90, max_rss_mb: 256, verdicts: $verdicts},
      runs: $runs}' >"$OUT"
echo "results: ${OUT#"$SRC"/}"
