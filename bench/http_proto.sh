#!/usr/bin/env bash
# bench/http_proto.sh BUILD_DIR — issue 18, point 4: what the HTTP layer costs, and what another
# library would cost, measured in ONE run. Four servers answer bench/run.sh's HTTP ceiling
# request (POST /v1/orders, bearer token, JSON body, an unknown SKU: 422 unknown_sku, nothing
# written):
#   perkhubd    the daemon itself (libmicrohttpd 0.9.75, its whole request path);
#   proto-mhd   bench/http_proto/proto.c on libmicrohttpd as perkhubd runs it (epoll, a thread
#               pool), with only the route's own work (auth, parse, check, answer);
#   proto-h2o   the same handler on h2o's event loop (libh2o-evloop 2.2, Debian's), a loop per
#               thread on one SO_REUSEPORT port;
#   proto-raw   the same handler on a hand-written epoll loop per thread (no HTTP library: what
#               a server of our own would cost at best).
# HP_ROUNDS rounds, each a wrk run of HP_DURATION seconds (bench/order.lua, BENCH_EXPECT=422) on
# every server in turn (the order rotates every round so the machine's noise falls on all); the
# CPU of each server process (every thread, /proc) and of wrk around its runs, divided by the
# answers wrk counted. Every answer must be the 422 with the request's own X-Request-Id.
# Prints the median µs per request of each and the ratios: proto-mhd ÷ perkhubd is what
# perkhubd's own code adds over the library; proto-h2o ÷ proto-mhd is what the other library
# would save, proto-raw ÷ proto-mhd what no library at all would.
#
# The durable part (HP_DURABLE=1, the default): the same three orders the SKU the bench sells,
# each a durable issuance. perkhubd (the same daemon, HP_CODES codes imported), and proto.c
# --durable on each library: one writer thread group-committing to LMDB the writes of
# `lmdb_limit --full` (bench/lmdb_issue.h), the answer handed back by MHD_resume_connection per
# request (mhd), by h2o's multithread queue or the raw loop's own queue, one wake-up of a loop
# per batch (h2o, raw). Rounds as
# above (HP_DURABLE_ROUNDS of HP_DURABLE_DURATION s), every answer 2xx with its request id and
# the store holding as many new orders as wrk saw answered (at most one more per connection, in
# flight when wrk stopped). Per server: µs of CPU per order (every thread, /proc clock ticks;
# the prototypes' writer thread also apart), orders per durable commit (the writer's counters),
# orders/s, p99; then the raw LMDB loop at each server's batch (lmdb_limit --full --batch B), so
# each server's order reads against its own floor (its ceiling + the loop at its batch: issue 18's ratio); and, with perf (HP_PERF=1
# when perf is there), the system calls and context switches per order of each, one more run.
# Information for a decision, not a target: exits 0 unless something was wrong (1).
# Writes bench/results/http_proto.json.
#
# Knobs (environment): HP_ROUNDS (3)  HP_DURATION (8)  HP_CONNS (64)  HP_THREADS (2: wrk)
#   HP_SERVER_THREADS (2: the prototypes' threads; perkhubd keeps its default)
#   HP_DURABLE (1)  HP_DURABLE_ROUNDS (3)  HP_DURABLE_DURATION (5)  HP_CODES (800000 per server)
#   HP_INLOOP (0; 1 adds proto-h2o-inloop: proto --commit-in loop, each h2o loop committing the
#   orders of its own pass, no thread hand-off: the lower bound of the hand-off's cost)
#   HP_LOOP_SECONDS (3: each lmdb_limit run)  HP_PERF (1 when perf works; 0 skips)
#   HP_PERF_SECONDS (4)
set -euo pipefail

BUILD=${1:?usage: bench/http_proto.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${HP_ROUNDS:-3}
DURATION=${HP_DURATION:-8}
CONNS=${HP_CONNS:-64}
THREADS=${HP_THREADS:-2}
SERVER_THREADS=${HP_SERVER_THREADS:-2}
DURABLE=${HP_DURABLE:-1}
DROUNDS=${HP_DURABLE_ROUNDS:-3}
DDURATION=${HP_DURABLE_DURATION:-5}
CODES=${HP_CODES:-800000}
LOOP_SECONDS=${HP_LOOP_SECONDS:-3}
PERF=${HP_PERF:-1}
PERF_SECONDS=${HP_PERF_SECONDS:-4}
INLOOP=${HP_INLOOP:-0}
SKU=bench.card
CEIL_SKU=bench.no-such-sku
MALL_TOKEN=bench-mall-token
OPS_TOKEN=bench-ops-token
OUT=$SRC/bench/results/http_proto.json

. "$SRC/bench/lib.sh"
bench_setup http_proto wrk jq bc libh2o-evloop-dev
[ -x "$BUILD/perkhubd" ] || fail "$BUILD/perkhubd not found (make build first)"
mkdir -p "$SRC/bench/results"

bench_proto_build "$BUILD"
LOOP_BIN=$BUILD/bench_http_proto_loop
gcc -O2 -std=c11 -Wall -Wextra -o "$LOOP_BIN" "$SRC/bench/lmdb_limit.c" -llmdb \
    || fail "could not build bench/lmdb_limit.c"

bench_start "$BUILD" "$TMP/perkhubd"
PID[perkhubd]=$BENCH_PID
URL[perkhubd]=$BENCH_URL
# start_proto LABEL LIB [ARGS...]: proto.c on LIB, its port in URL[LABEL], its pid in PID[LABEL]
start_proto() { bench_proto_start "$1" "$2" "$SERVER_THREADS" --lifetime 1800 "${@:3}"; }
start_proto proto-mhd mhd
start_proto proto-h2o h2o
start_proto proto-raw raw
LABELS="perkhubd proto-mhd proto-h2o proto-raw"

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
    # the order rotates by one every round
    order=$(awk -v r="$r" '{ for (i = 0; i < NF; i++) printf "%s ", $(1 + (i + r - 1) % NF) }' <<<"$LABELS")
    for l in $order; do
        res=$(one_run "$l" "$l-$r") || exit 1 # a fail in $(...) ends only the subshell
        read -r us wus rps p99 <<<"$res"
        echo "$l $us $wus $rps $p99 $r $(cut -d' ' -f1 /proc/loadavg)" >>"$TMP/runs.txt"
        note "  round $r $l: $us µs CPU/request (wrk $wus), $rps answers/s, p99 $p99 ms, load $(cut -d' ' -f1 /proc/loadavg)"
    done
done

med() { awk -v l="$1" -v c="$2" '$1 == l { print $c }' "$TMP/runs.txt" | bench_median; }
declare -A US WUS RPS
for l in $LABELS; do US[$l]=$(med "$l" 2); WUS[$l]=$(med "$l" 3); RPS[$l]=$(med "$l" 4); done
mhd_vs_perkhubd=$(bench_calc "${US[proto-mhd]} / ${US[perkhubd]}")
h2o_vs_mhd=$(bench_calc "${US[proto-h2o]} / ${US[proto-mhd]}")
h2o_vs_perkhubd=$(bench_calc "${US[proto-h2o]} / ${US[perkhubd]}")
raw_vs_mhd=$(bench_calc "${US[proto-raw]} / ${US[proto-mhd]}")

printf '\nperkhub bench — the HTTP layer: CPU per ceiling request, %s connections, %s rounds of %s s (nproc %s)\n' \
    "$CONNS" "$ROUNDS" "$DURATION" "$(nproc)"
printf '%-10s %16s %14s %14s\n' server "µs/request" "wrk µs/req" "answers/s"
for l in $LABELS; do printf '%-10s %16s %14s %14s\n' "$l" "${US[$l]}" "${WUS[$l]}" "${RPS[$l]}"; done
printf 'proto-mhd ÷ perkhubd %s (the library with only the route'"'"'s work, against the daemon'"'"'s whole path)\n' "$mhd_vs_perkhubd"
printf 'proto-h2o ÷ proto-mhd %s (the other library, the same handler)\n' "$h2o_vs_mhd"
printf 'proto-h2o ÷ perkhubd  %s\n' "$h2o_vs_perkhubd"
printf 'proto-raw ÷ proto-mhd %s (a hand-written epoll HTTP/1.1 loop, the same handler)\n' "$raw_vs_mhd"

# ---- the durable order ------------------------------------------------------------------
DJSON=null
if [ "$DURABLE" = 1 ]; then
    note "durable: $CODES codes into perkhubd, the prototypes pre-fill theirs"
    bench_import_codes perkhubd
    start_proto proto-mhd-durable mhd --durable "$TMP/mhd-store" --codes "$CODES"
    start_proto proto-h2o-durable h2o --durable "$TMP/h2o-store" --codes "$CODES"
    start_proto proto-raw-durable raw --durable "$TMP/raw-store" --codes "$CODES"
    DLABELS="perkhubd proto-mhd-durable proto-h2o-durable proto-raw-durable"
    if [ "$INLOOP" = 1 ]; then
        start_proto proto-h2o-inloop h2o --durable "$TMP/inloop-store" --codes "$CODES" --commit-in loop
        DLABELS="$DLABELS proto-h2o-inloop"
    fi
    HZ=$(getconf CLK_TCK)

    # dstats LABEL -> "orders commits commands": the orders the store holds (perkhubd: codes of
    # SKU issued), the writer's durable commits and the commands they carried
    dstats() {
        local j
        if [ "$1" = perkhubd ]; then
            j=$(bench_stats perkhubd) || fail "perkhubd: /v1/stats failed"
            echo "$(bench_stat_issued "$j") $(jq -r '"\(.writer.commits) \(.writer.commands)"' <<<"$j")"
        else
            j=$(curl -sf --max-time 30 "${URL[$1]}/stats") || fail "$1: /stats failed"
            jq -r '"\(.orders) \(.commits) \(.commands)"' <<<"$j"
        fi
    }

    # writer_ticks PID: utime+stime (clock ticks) of PID's thread named proto-writer; "-" if none
    writer_ticks() {
        local t
        for t in /proc/"$1"/task/*; do
            [ "$(cat "$t/comm" 2>/dev/null)" = proto-writer ] || continue
            sed 's/.*) //' "$t/stat" | awk '{ print $12 + $13 }'
            return
        done
        echo -
    }

    # durable_run LABEL NAME SECONDS -> "µs/order orders/s p99 orders/commit answers writer-µs/order"
    # (the last "-" for perkhubd, whose writer thread has no name); checks every answer and the store
    durable_run() {
        local l=$1 name=$2 secs=$3 o0 c0 k0 o1 c1 k1 u0 s0 u1 s1 j ok n w0 w1 wus=-
        read -r o0 c0 k0 <<<"$(dstats "$l")"
        w0=$(writer_ticks "${PID[$l]}")
        read -r u0 s0 < <(bench_cpu_ticks "${PID[$l]}")
        bench_wrk_orders "$l" "$name" "$secs" "$TMP/$name"
        read -r u1 s1 < <(bench_cpu_ticks "${PID[$l]}")
        w1=$(writer_ticks "${PID[$l]}")
        read -r o1 c1 k1 <<<"$(dstats "$l")"
        j=$(cat "$TMP/$name.json")
        ok=$(jq .ok <<<"$j")
        [ "$ok" -gt 0 ] || fail "$l $name: no order answered"
        [ "$(jq '.non2xx == 0 and .unmatched == 0' <<<"$j")" = true ] ||
            fail "$l $name: $(jq -c '{non2xx, unmatched}' <<<"$j") (every answer 2xx with its request id; out of stock? raise HP_CODES)"
        n=$((o1 - o0))
        [ "$n" -ge "$ok" ] && [ "$n" -le $((ok + CONNS)) ] ||
            fail "$l $name: the store holds $n new orders, wrk saw $ok answered"
        [ $((c1 - c0)) -gt 0 ] || fail "$l $name: no durable commit counted"
        [ "$w0" = - ] || [ "$w1" = - ] || wus=$(bench_calc "($w1 - $w0) * 1000000 / $HZ / $ok")
        echo "$(bench_calc "($u1 - $u0 + $s1 - $s0) * 1000000 / $HZ / $ok") $(bench_calc "$ok / $(jq .duration_s <<<"$j")") $(jq .latency_ms.p99 <<<"$j") $(bench_calc "($k1 - $k0) / ($c1 - $c0)") $ok $wus"
    }

    note "durable warm-up: 2 s on each"
    for l in $DLABELS; do durable_run "$l" "dw-$l" 2 >/dev/null; done
    : >"$TMP/druns.txt"
    for r in $(seq "$DROUNDS"); do
        # the order rotates by one every round
        order=$(awk -v r="$r" '{ for (i = 0; i < NF; i++) printf "%s ", $(1 + (i + r - 1) % NF) }' <<<"$DLABELS")
        for l in $order; do
            res=$(durable_run "$l" "d$r-$l" "$DDURATION") || exit 1
            read -r us rps p99 batch ok wus <<<"$res"
            load=$(cut -d' ' -f1 /proc/loadavg)
            echo "$l $us $rps $p99 $batch $r $load $wus" >>"$TMP/druns.txt"
            note "  round $r $l: $us µs CPU/order (writer thread $wus), $ok orders, $rps/s, p99 $p99 ms, $batch orders/commit, load $load"
        done
    done
    dmed() { awk -v l="$1" -v c="$2" '$1 == l { print $c }' "$TMP/druns.txt" | bench_median; }
    declare -A DUS DRPS DP99 DBATCH LOOP FLOOR CEIL DWUS
    CEIL[perkhubd]=${US[perkhubd]}
    CEIL[proto-mhd-durable]=${US[proto-mhd]}
    CEIL[proto-h2o-durable]=${US[proto-h2o]}
    CEIL[proto-h2o-inloop]=${US[proto-h2o]}
    CEIL[proto-raw-durable]=${US[proto-raw]}
    for l in $DLABELS; do
        DUS[$l]=$(dmed "$l" 2); DRPS[$l]=$(dmed "$l" 3); DP99[$l]=$(dmed "$l" 4); DBATCH[$l]=$(dmed "$l" 5)
        DWUS[$l]=-
        [ "$(awk -v l="$l" '$1 == l { print $8; exit }' "$TMP/druns.txt")" = - ] || DWUS[$l]=$(dmed "$l" 8)
    done

    # the raw loop at each server's batch: the floor's LMDB half for that server
    for l in $DLABELS; do
        b=$(printf '%.0f' "${DBATCH[$l]}")
        [ "$b" -ge 1 ] || b=1
        rm -rf "$TMP/loop"
        LOOP[$l]=$("$LOOP_BIN" "$TMP/loop" --full --batch "$b" --seconds "$LOOP_SECONDS" --codes 300000 |
            jq .cpu_us_per_issuance) || fail "lmdb_limit failed"
        FLOOR[$l]=$(bench_calc "${CEIL[$l]} + ${LOOP[$l]}")
        note "  loop at $b a commit (as $l): ${LOOP[$l]} µs CPU/issuance, load $(cut -d' ' -f1 /proc/loadavg)"
    done
    rm -rf "$TMP/loop"

    # system calls and context switches per order: one more run per server under perf stat
    EVENTS="raw_syscalls:sys_enter,context-switches,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_futex"
    declare -A SC
    if [ "$PERF" = 1 ] && command -v perf >/dev/null &&
        perf stat -x, -e raw_syscalls:sys_enter -o /dev/null -- true 2>/dev/null; then
        for l in $DLABELS; do
            perf stat -x, -e "$EVENTS" -p "${PID[$l]}" -o "$TMP/perf-$l.csv" -- sleep $((PERF_SECONDS + 1)) &
            pp=$!
            sleep 0.5
            res=$(durable_run "$l" "dp-$l" "$PERF_SECONDS") || exit 1
            read -r _ _ _ _ ok _ <<<"$res"
            wait "$pp" || fail "perf stat failed on $l"
            SC[$l]=$(awk -F, -v n="$ok" '$3 ~ /:|context/ { e = $3; sub(/.*sys_enter_?/, "", e); if (e == "") e = "all"; printf "%s%s=%.2f", (k++ ? " " : ""), e, $1 / n }' "$TMP/perf-$l.csv")
            note "  per order on $l (perf stat, one ${PERF_SECONDS} s run): ${SC[$l]}"
        done
    else
        note "perf stat unavailable or HP_PERF=0: no system call counts"
    fi

    # the ratios of the medians, and the median of each round's ratio (the runs of one round
    # meet about the same moment of a shared machine)
    h2o_vs_mhd_d=$(bench_calc "${DUS[proto-h2o-durable]} / ${DUS[proto-mhd-durable]}")
    mhd_vs_perkhubd_d=$(bench_calc "${DUS[proto-mhd-durable]} / ${DUS[perkhubd]}")
    h2o_vs_perkhubd_d=$(bench_calc "${DUS[proto-h2o-durable]} / ${DUS[perkhubd]}")
    round_ratio() { # A B -> the median over the rounds of A's µs/order ÷ B's, 3 decimals
        awk -v a="$1" -v b="$2" '$1 == a { x[$6] = $2 } $1 == b { y[$6] = $2 }
            END { for (r in x) if (y[r] > 0) printf "%.3f\n", x[r] / y[r] }' "$TMP/druns.txt" | bench_median
    }
    h2o_vs_mhd_r=$(round_ratio proto-h2o-durable proto-mhd-durable)
    mhd_vs_perkhubd_r=$(round_ratio proto-mhd-durable perkhubd)
    h2o_vs_perkhubd_r=$(round_ratio proto-h2o-durable perkhubd)
    printf '\nperkhub bench — the durable order: CPU per order, %s connections, %s rounds of %s s, load %s at the end\n' \
        "$CONNS" "$DROUNDS" "$DDURATION" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%-18s %9s %8s %13s %9s %8s %8s %8s %8s %7s\n' server "µs/order" "writer" "orders/commit" \
        "orders/s" "p99 ms" "ceiling" "loop@B" "floor" "÷floor"
    for l in $DLABELS; do
        printf '%-18s %9s %8s %13s %9s %8s %8s %8s %8s %7s\n' "$l" "${DUS[$l]}" "${DWUS[$l]}" "${DBATCH[$l]}" \
            "${DRPS[$l]}" "${DP99[$l]}" "${CEIL[$l]}" "${LOOP[$l]}" "${FLOOR[$l]}" \
            "$(bench_calc "${DUS[$l]} / ${FLOOR[$l]}")"
    done
    echo "(writer: the CPU of the prototype's writer thread per order, part of µs/order)"
    for l in $DLABELS; do
        printf '%-18s durable path (order - ceiling - loop@B): %s µs\n' "$l" \
            "$(bench_calc "${DUS[$l]} - ${CEIL[$l]} - ${LOOP[$l]}")"
    done
    printf 'proto-h2o-durable ÷ proto-mhd-durable %s, per round %s (the hand-off by message queue against suspend/resume)\n' \
        "$h2o_vs_mhd_d" "$h2o_vs_mhd_r"
    printf 'proto-mhd-durable ÷ perkhubd          %s, per round %s (the library and the writer only, against the daemon)\n' \
        "$mhd_vs_perkhubd_d" "$mhd_vs_perkhubd_r"
    printf 'proto-h2o-durable ÷ perkhubd          %s, per round %s\n' "$h2o_vs_perkhubd_d" "$h2o_vs_perkhubd_r"
    printf 'proto-raw-durable ÷ proto-mhd-durable %s, per round %s (a hand-written loop, answers by queue)\n' \
        "$(bench_calc "${DUS[proto-raw-durable]} / ${DUS[proto-mhd-durable]}")" \
        "$(round_ratio proto-raw-durable proto-mhd-durable)"
    [ "$INLOOP" != 1 ] || printf 'proto-h2o-inloop ÷ proto-h2o-durable  %s, per round %s (no hand-off at all: the loop commits)\n' \
        "$(bench_calc "${DUS[proto-h2o-inloop]} / ${DUS[proto-h2o-durable]}")" \
        "$(round_ratio proto-h2o-inloop proto-h2o-durable)"
    for l in $DLABELS; do [ -z "${SC[$l]:-}" ] || printf 'per order, %-18s %s\n' "$l" "${SC[$l]}"; done

    DJSON=$(
        for l in $DLABELS; do
            jq -n --arg l "$l" --argjson us "${DUS[$l]}" --argjson rps "${DRPS[$l]}" --argjson p99 "${DP99[$l]}" \
                --argjson b "${DBATCH[$l]}" --argjson ceil "${CEIL[$l]}" --argjson loop "${LOOP[$l]}" \
                --argjson floor "${FLOOR[$l]}" --arg sc "${SC[$l]:-}" --arg wus "${DWUS[$l]}" \
                '{($l): {cpu_us_per_order: $us,
                         writer_thread_cpu_us_per_order: (if $wus == "-" then null else ($wus | tonumber) end), orders_per_s: $rps, p99_ms: $p99, orders_per_commit: $b,
                         ceiling_us: $ceil, lmdb_loop_us_at_batch: $loop, floor_us: $floor,
                         ratio_to_floor: (($us / $floor) * 1000 | round / 1000),
                         per_order_perf: ($sc | if . == "" then null else
                            (split(" ") | map(split("=") | {(.[0]): (.[1] | tonumber)}) | add) end)}}'
        done | jq -s --argjson hm "$h2o_vs_mhd_d" --argjson mp "$mhd_vs_perkhubd_d" --argjson hp "$h2o_vs_perkhubd_d" \
            --argjson hmr "$h2o_vs_mhd_r" --argjson mpr "$mhd_vs_perkhubd_r" --argjson hpr "$h2o_vs_perkhubd_r" \
            --argjson rounds "$DROUNDS" --argjson duration "$DDURATION" --argjson codes "$CODES" \
            --argjson runs "$(awk '{ printf "%s{\"server\":\"%s\",\"cpu_us_per_order\":%s,\"orders_per_s\":%s,\"p99_ms\":%s,\"orders_per_commit\":%s,\"round\":%s,\"load1\":%s,\"writer_us\":%s}", (NR > 1 ? "," : "["), $1, $2, $3, $4, $5, $6, $7, ($8 == "-" ? "null" : $8) } END { print "]" }' "$TMP/druns.txt")" \
            '{settings: {rounds: $rounds, duration_s: $duration, codes: $codes,
                         request: "POST /v1/orders, bench.card, quantity 1: 201, one durable issuance"},
              median: add,
              ratios: {proto_h2o_vs_proto_mhd: $hm, proto_mhd_vs_perkhubd: $mp, proto_h2o_vs_perkhubd: $hp},
              ratios_median_of_rounds: {proto_h2o_vs_proto_mhd: $hmr, proto_mhd_vs_perkhubd: $mpr,
                                        proto_h2o_vs_perkhubd: $hpr},
              runs: $runs}'
    )
fi

jq -n --arg at "$(date -u +%FT%TZ)" --argjson conns "$CONNS" --argjson rounds "$ROUNDS" \
    --argjson duration "$DURATION" --argjson sthreads "$SERVER_THREADS" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --argjson runs "$(awk '{ printf "%s{\"server\":\"%s\",\"cpu_us_per_request\":%s,\"wrk_cpu_us_per_request\":%s,\"answers_per_s\":%s,\"p99_ms\":%s,\"round\":%s,\"load1\":%s}", (NR > 1 ? "," : "["), $1, $2, $3, $4, $5, $6, $7 } END { print "]" }' "$TMP/runs.txt")" \
    --argjson p "${US[perkhubd]}" --argjson m "${US[proto-mhd]}" --argjson h "${US[proto-h2o]}" --argjson rw "${US[proto-raw]}" \
    --argjson mp "$mhd_vs_perkhubd" --argjson hm "$h2o_vs_mhd" --argjson hp "$h2o_vs_perkhubd" \
    --argjson durable "$DJSON" \
    '{bench: "http_proto (issue 18 point 4)", at: $at, load_avg_at_end: $load,
      settings: {connections: $conns, rounds: $rounds, duration_s: $duration,
                 prototype_threads: $sthreads, request: "POST /v1/orders, unknown sku: 422"},
      median_cpu_us_per_request: {perkhubd: $p, "proto-mhd": $m, "proto-h2o": $h, "proto-raw": $rw},
      ratios: {proto_mhd_vs_perkhubd: $mp, proto_h2o_vs_proto_mhd: $hm, proto_h2o_vs_perkhubd: $hp},
      runs: $runs, durable: $durable}' >"$OUT"
echo "results: ${OUT#"$SRC"/}"
