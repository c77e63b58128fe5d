# bench/lib.sh — what the bench scripts share: the perkhubd they measure, one
# configuration and one way to start it (bench/run.sh, bench/cpu_compare.sh).
# Sourced, not run. The caller sets SKU, MALL_TOKEN and OPS_TOKEN (and may set
# OTHER_TOKEN: a second fulfil+support client, `other`) and defines fail MESSAGE
# (which exits) — or calls bench_setup, which does all of that.

bench_sha() { printf %s "$1" | sha256sum | cut -c1-64; }

# bench_setup NAME [TOOL...]: the frame of a script that starts daemons of its own. Defines
# fail MESSAGE (exits 1) and note MESSAGE, both on stderr and prefixed with NAME; sets SKU,
# MALL_TOKEN, OPS_TOKEN and HZ unless the caller did; installs TOOL... (tools/deps.sh: wrk, jq,
# bc by default); makes the temp dir TMP; declares the maps PID (label -> daemon pid) and URL;
# and, on exit whatever happens, kills every pid in PID and in BENCH_MORE_PIDS (a space-separated
# list the script may extend: a sink, a simulator) and removes TMP. INT and TERM exit 130.
bench_setup() {
    BENCH_NAME=$1
    shift
    fail() { echo "$BENCH_NAME: FAIL: $*" >&2; exit 1; }
    note() { echo "$BENCH_NAME: $*" >&2; }
    SKU=${SKU:-bench.card}
    MALL_TOKEN=${MALL_TOKEN:-bench-mall-token}
    OPS_TOKEN=${OPS_TOKEN:-bench-ops-token}
    HZ=$(getconf CLK_TCK)
    [ $# -gt 0 ] || set -- wrk jq bc
    "$SRC/tools/deps.sh" "$@"
    TMP=$(mktemp -d "/tmp/perkhub-$BENCH_NAME-XXXXXX")
    declare -gA PID URL
    BENCH_MORE_PIDS=
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# What bench_setup's EXIT trap runs: every daemon killed and reaped, TMP removed.
bench_cleanup() {
    local p
    for p in "${PID[@]}" $BENCH_MORE_PIDS; do
        if kill -0 "$p" 2>/dev/null; then
            kill -KILL "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}

# bench_proto_build BUILD: bench/http_proto/proto.c (the HTTP prototypes: http_proto.sh's servers,
# quick.sh's calibration) built as BUILD/bench_http_proto when absent or older than its sources;
# sets BENCH_PROTO. Needs libh2o-evloop-dev (the caller's deps).
bench_proto_build() {
    BENCH_PROTO=$1/bench_http_proto
    if [ ! -x "$BENCH_PROTO" ] || [ "$SRC/bench/http_proto/proto.c" -nt "$BENCH_PROTO" ] ||
        [ "$SRC/bench/lmdb_issue.h" -nt "$BENCH_PROTO" ]; then
        # H2O_USE_LIBUV=0: the evloop flavour (the header otherwise expects libuv)
        # shellcheck disable=SC2046 # pkg-config prints a list of flags
        gcc -O2 -std=gnu11 -DH2O_USE_LIBUV=0 -Wall -Wextra -o "$BENCH_PROTO" \
            "$SRC/bench/http_proto/proto.c" $(pkg-config --cflags --libs libh2o-evloop) \
            -lmicrohttpd -ljansson -lssl -lcrypto -llmdb -lpthread ||
            fail "could not build bench/http_proto/proto.c"
    fi
}

# bench_proto_start LABEL LIB THREADS [ARG...]: starts BENCH_PROTO (bench_proto_build) on LIB
# with THREADS threads, MALL_TOKEN's hash and ARG... (e.g. --durable DIR --codes N --lifetime S),
# log TMP/LABEL.log; waits for its port; sets PID[LABEL] and URL[LABEL] (killed at the end with
# the rest of PID).
bench_proto_start() {
    local l=$1 lib=$2 threads=$3
    shift 3
    "$BENCH_PROTO" --lib "$lib" --threads "$threads" --port-file "$TMP/$l.port" \
        --token-sha256 "$(bench_sha "$MALL_TOKEN")" "$@" >"$TMP/$l.log" 2>&1 &
    PID[$l]=$!
    disown "${PID[$l]}" # killed at the end: no "Killed" notice from the shell
    for _ in $(seq 600); do
        [ -s "$TMP/$l.port" ] && break
        kill -0 "${PID[$l]}" 2>/dev/null || break
        sleep 0.05
    done
    [ -s "$TMP/$l.port" ] || { cat "$TMP/$l.log" >&2; fail "$l wrote no port"; }
    URL[$l]=http://127.0.0.1:$(cat "$TMP/$l.port")
}

# bench_start BUILD DIR [EXTRA_YAML]: writes DIR/perkhub.yaml (loopback, an
# ephemeral port, durable defaults, the manual supplier, one card SKU; EXTRA_YAML
# is added at the top level, e.g. a limits: section; BENCH_MALL_YAML, when set, is added
# under the mall client, e.g. its webhooks: list), checks it, starts
# BUILD/perkhubd on it (log DIR/perkhubd.log) and waits for it to answer.
# BENCH_PRODUCTS_YAML (optional) follows the card SKU's lines: more keys of it (indented
# four) and more products (bench/alerts_cpu.sh's rules).
# Sets BENCH_PID and BENCH_URL. With BENCH_TLS_DIR set (a directory holding server.crt,
# server.key and ca.crt: bench/tls_cpu.sh), the listener speaks TLS and BENCH_URL is https.
bench_start() {
    local build=$1 dir=$2 scheme=http cacert=()
    if [ -n "${BENCH_TLS_DIR:-}" ]; then scheme=https; cacert=(--cacert "$BENCH_TLS_DIR/ca.crt"); fi
    bench_config "$@"
    "$build/perkhubd" --check-config "$dir/perkhub.yaml" >/dev/null ||
        fail "$dir: generated config rejected"
    "$build/perkhubd" -c "$dir/perkhub.yaml" >"$dir/perkhubd.log" 2>&1 &
    BENCH_PID=$!
    for _ in $(seq 300); do
        [ -s "$dir/port" ] && break
        kill -0 "$BENCH_PID" 2>/dev/null ||
            { cat "$dir/perkhubd.log" >&2; fail "$dir: perkhubd exited at start"; }
        sleep 0.1
    done
    [ -s "$dir/port" ] || fail "$dir: perkhubd wrote no port file in 30 s"
    BENCH_URL=$scheme://127.0.0.1:$(cat "$dir/port")
    curl -sf --max-time 5 ${cacert[@]+"${cacert[@]}"} "$BENCH_URL/v1/health" >/dev/null ||
        fail "$dir: perkhubd not healthy"
}

# bench_config BUILD DIR [EXTRA_YAML]: only the writing of DIR/perkhub.yaml of bench_start
# (bench/alerts_cpu.sh writes a second one for a reload).
bench_config() {
    local build=$1 dir=$2 extra=${3:-} tls=${BENCH_TLS_DIR:-}
    mkdir -p "$dir"
    cat >"$dir/perkhub.yaml" <<YAML
listen:
  address: 127.0.0.1
  port: 0
  port_file: $dir/port
$(if [ -n "$tls" ]; then printf '  tls:\n    cert: %s\n    key: %s\n' "$tls/server.crt" "$tls/server.key"; fi)
data_dir: $dir/data
master_key_file: $dir/master.key
master_key_create: true
plugin_dir: $build/plugins
log:
  level: warn
$extra
clients:
  - name: mall
    token_sha256: $(bench_sha "$MALL_TOKEN")
    scopes: [fulfill, support]
${BENCH_MALL_YAML:-}
  - name: ops
    token_sha256: $(bench_sha "$OPS_TOKEN")
    scopes: [ops]
$(if [ -n "${OTHER_TOKEN:-}" ]; then
        printf '  - name: other\n    token_sha256: %s\n    scopes: [fulfill, support]\n' \
            "$(bench_sha "$OTHER_TOKEN")"
    fi)
suppliers:
  - id: acme
    plugin: manual
    priority: 10
products:
  - sku: $SKU
    name: Bench card
    brand: bench
    category: video
    delivery: card_code
    face_value: "30.00"
    offers:
      - {supplier: acme, supplier_sku: B-1, cost: "19.80"}
${BENCH_PRODUCTS_YAML:-}
YAML
}

# ---- what the CPU-per-operation scripts share (tls_cpu, cpu_compare, alerts_cpu, webhooks) ----
# They keep their daemons' base URLs in the associative array URL (label -> URL) and may set
# CURL_TLS (curl's --cacert for an HTTPS daemon).

# bench_import_codes LABEL: CODES codes BENCH-<n> of SKU into URL[LABEL], in requests of at most
# a million (TMP holds the CSV meanwhile).
bench_import_codes() {
    local l=$1 next=1 n out
    while [ "$next" -le "$CODES" ]; do
        n=$((CODES - next + 1)); [ "$n" -le 1000000 ] || n=1000000
        { echo code; seq "$next" $((next + n - 1)) | awk '{printf "BENCH-%010d\n", $1}'; } >"$TMP/codes.csv"
        out=$(curl -s ${CURL_TLS[@]+"${CURL_TLS[@]}"} -o "$TMP/import.out" -w '%{http_code}' \
            --max-time 600 -X POST \
            "${URL[$l]}/v1/batches?supplier=acme&sku=$SKU&unit_cost=19.80&note=bench" \
            -H "Authorization: Bearer $OPS_TOKEN" -H 'Content-Type: text/csv' --data-binary @"$TMP/codes.csv")
        [ "$out" = 201 ] || { head -c 500 "$TMP/import.out" >&2; fail "$l: import returned $out"; }
        next=$((next + n))
    done
    rm -f "$TMP/codes.csv"
}
# bench_stats LABEL: GET /v1/stats of URL[LABEL] (ops)
bench_stats() { curl -sf --max-time 30 ${CURL_TLS[@]+"${CURL_TLS[@]}"} "${URL[$1]}/v1/stats" -H "Authorization: Bearer $OPS_TOKEN"; }
# bench_stat_issued STATS_JSON: the codes of SKU issued so far
bench_stat_issued() { jq -r --arg s "$SKU" '[.skus[] | select(.sku == $s) | .issued][0] // 0' <<<"$1"; }
# bench_cpu_ticks PID: "utime stime" of every thread of PID, in clock ticks
bench_cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'; }
# bench_proc_cpu_us PID...: the user+system CPU the processes have used so far, in µs: every
# thread of each (utime+stime of /proc/PID/stat) plus what the children it has reaped used
# (cutime+cstime: a postmaster's backends, counted once they exit and are waited for). A PID
# that is gone counts 0. Clock ticks: 10 ms each, so a window should hold seconds of CPU.
bench_proc_cpu_us() {
    local p t=0 hz
    hz=$(getconf CLK_TCK)
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        t=$((t + $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }' || echo 0)))
    done
    echo $((t * 1000000 / hz))
}
# bench_children_cpu_us VAR FILE: sets VAR to the user+system CPU, in µs, of every child (and
# their waited-for descendants) this shell has waited for so far: the `times` builtin, run in
# this shell with FILE as scratch space (in a $(...) it would report the subshell's children).
# A load generator's CPU is the difference around its run.
bench_children_cpu_us() {
    times >"$2"
    printf -v "$1" %s "$(awk 'function s(x) { sub(/s$/, "", x); split(x, a, "m"); return a[1] * 60 + a[2] }
        NR == 2 { printf "%d", (s($1) + s($2)) * 1000000 }' "$2")"
}
# bench_median: the median of the numbers on stdin, one per line
bench_median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# bench_calc EXPR: bc with 3 decimals, a leading 0 kept
bench_calc() { echo "scale=3; $1" | bc | sed 's/^\./0./; s/^-\./-0./'; }

# bench_wrk_orders LABEL RUN SECONDS OUT: wrk ordering SKU (quantity 1, bench/order.lua) at
# URL[LABEL] for SECONDS with THREADS threads and CONNS connections; its summary in OUT.json.
bench_wrk_orders() {
    BENCH_TOKEN=$MALL_TOKEN BENCH_SKU=$SKU BENCH_RUN="$2" BENCH_OUT="$4.json" \
        timeout $(($3 + 60)) wrk -t "$THREADS" -c "$CONNS" -d "${3}s" --timeout 10s \
        -s "$SRC/bench/order.lua" "${URL[$1]}" >"$4.out" 2>&1 \
        || { cat "$4.out" >&2; fail "$1: wrk failed ($2)"; }
}

# bench_cpu_rounds "A B" CODES_KNOB: WARMUP seconds of orders on each daemon, then ROUNDS
# rounds of a DURATION-second run on A then B (B then A every other round, so a shared
# machine's noise falls on both), the daemon's CPU (PID[label]) around each. Every answer must
# be 2xx and the store must have issued as many codes as wrk saw answered (plus at most one per
# connection in flight when it stopped; CODES_KNOB names the knob to raise when out of stock).
# Appends "label µs-per-order orders/s p99-ms round" to $TMP/runs.txt, one line a run.
# BENCH_RUN_HOOK, when set, names a function called with the label and the round's number
# after each run, outside the measured window (bench/risk_cpu.sh reads each daemon's RSS there).
bench_cpu_rounds() {
    local labels=$1 knob=$2 l r order p issued0 issued u0 s0 u1 s1 j ok us rps p99
    if [ "$WARMUP" -gt 0 ]; then
        for l in $labels; do bench_wrk_orders "$l" "w$l" "$WARMUP" "$TMP/$l-warmup"; done
    fi
    : >"$TMP/runs.txt"
    for r in $(seq "$ROUNDS"); do
        order=$labels
        [ $((r % 2)) = 1 ] || order=$(tr ' ' '\n' <<<"$labels" | tac | tr '\n' ' ')
        for l in $order; do
            p=${PID[$l]}
            issued0=$(bench_stat_issued "$(bench_stats "$l")")
            read -r u0 s0 < <(bench_cpu_ticks "$p")
            bench_wrk_orders "$l" "$l$r" "$DURATION" "$TMP/$l-$r"
            read -r u1 s1 < <(bench_cpu_ticks "$p")
            j=$(cat "$TMP/$l-$r.json")
            ok=$(jq .ok <<<"$j")
            [ "$ok" -gt 0 ] || fail "$l round $r: no answer counted"
            [ "$(jq '.non2xx == 0 and .unmatched == 0' <<<"$j")" = true ] \
                || fail "$l round $r: $(jq -c '{non2xx, unmatched}' <<<"$j") (out of stock? raise $knob)"
            issued=$(($(bench_stat_issued "$(bench_stats "$l")") - issued0))
            [ "$issued" -ge "$ok" ] && [ "$issued" -le $((ok + CONNS)) ] \
                || fail "$l round $r: $issued codes issued, wrk saw $ok answered"
            us=$(bench_calc "($u1 - $u0 + $s1 - $s0) * 1000000 / $HZ / $ok")
            rps=$(bench_calc "$ok / $(jq .duration_s <<<"$j")")
            p99=$(jq .latency_ms.p99 <<<"$j")
            echo "$l $us $rps $p99 $r" >>"$TMP/runs.txt"
            note "  round $r $l: $us µs CPU/order, $ok orders, $rps/s, p99 $p99 ms, load $(cut -d' ' -f1 /proc/loadavg)"
            [ -z "${BENCH_RUN_HOOK:-}" ] || "$BENCH_RUN_HOOK" "$l" "$r"
        done
    done
}

# bench_cpu_ns PID: the CPU time of PID's threads so far in ns (the sum of their
# sum_exec_runtime, /proc/PID/task/*/schedstat: exact, where /proc/PID/stat counts clock ticks),
# then the thread ids, sorted, joined by commas. A thread that ends between two readings takes
# its time with it: the caller compares the ids.
bench_cpu_ns() {
    local t ids="" ns=0 v
    for t in /proc/"$1"/task/*; do
        read -r v _ <"$t/schedstat" 2>/dev/null || continue
        ns=$((ns + v))
        ids="$ids ${t##*/}"
    done
    echo "$ns $(tr ' ' '\n' <<<"$ids" | sort -n | paste -sd, -)"
}

# bench_cpu_together "A B ..." CODES_KNOB: like bench_cpu_rounds, but every round loads all the
# daemons AT ONCE (one wrk each, THREADS threads and CONNS connections apiece, for DURATION
# seconds), so whatever else the machine runs during a round falls on all of them alike, where
# runs one after the other each meet their own moment. The CPU of each (bench_cpu_ns: every
# thread, to the nanosecond) is read before all the runs start and after all have ended;
# the checks and the lines appended to $TMP/runs.txt are bench_cpu_rounds'. BENCH_ROUND_HOOK,
# when set, names a function called with the round's number before each round (outside the
# measured window: bench/alerts_cpu.sh gives its daemons their roles there).
bench_cpu_together() {
    local labels=$1 knob=$2 l r j ok us rps p99 issued p cpu1 ids1
    local -a wp
    local -A issued0 cpu0 ids0 cpu
    if [ "$WARMUP" -gt 0 ]; then
        wp=()
        for l in $labels; do bench_wrk_orders "$l" "w$l" "$WARMUP" "$TMP/$l-warmup" & wp+=($!); done
        for p in "${wp[@]}"; do wait "$p" || fail "a warm-up run failed"; done
    fi
    : >"$TMP/runs.txt"
    for r in $(seq "$ROUNDS"); do
        [ -z "${BENCH_ROUND_HOOK:-}" ] || "$BENCH_ROUND_HOOK" "$r"
        for l in $labels; do issued0[$l]=$(bench_stat_issued "$(bench_stats "$l")"); done
        for l in $labels; do read -r "cpu0[$l]" "ids0[$l]" < <(bench_cpu_ns "${PID[$l]}"); done
        wp=()
        for l in $labels; do bench_wrk_orders "$l" "$l$r" "$DURATION" "$TMP/$l-$r" & wp+=($!); done
        for p in "${wp[@]}"; do wait "$p" || fail "round $r: a wrk run failed"; done
        for l in $labels; do
            read -r cpu1 ids1 < <(bench_cpu_ns "${PID[$l]}")
            [ "$ids1" = "${ids0[$l]}" ] ||
                fail "$l round $r: its threads changed during the run (${ids0[$l]} -> $ids1): the CPU of one that ended is lost"
            cpu[$l]=$((cpu1 - cpu0[$l]))
        done
        for l in $labels; do
            j=$(cat "$TMP/$l-$r.json")
            ok=$(jq .ok <<<"$j")
            [ "$ok" -gt 0 ] || fail "$l round $r: no answer counted"
            [ "$(jq '.non2xx == 0 and .unmatched == 0' <<<"$j")" = true ] \
                || fail "$l round $r: $(jq -c '{non2xx, unmatched}' <<<"$j") (out of stock? raise $knob)"
            issued=$(($(bench_stat_issued "$(bench_stats "$l")") - issued0[$l]))
            [ "$issued" -ge "$ok" ] && [ "$issued" -le $((ok + CONNS)) ] \
                || fail "$l round $r: $issued codes issued, wrk saw $ok answered"
            us=$(bench_calc "${cpu[$l]} / 1000 / $ok")
            rps=$(bench_calc "$ok / $(jq .duration_s <<<"$j")")
            p99=$(jq .latency_ms.p99 <<<"$j")
            echo "$l $us $rps $p99 $r" >>"$TMP/runs.txt"
            note "  round $r $l: $us µs CPU/order, $ok orders, $rps/s, p99 $p99 ms, load $(cut -d' ' -f1 /proc/loadavg)"
            [ -z "${BENCH_RUN_HOOK:-}" ] || "$BENCH_RUN_HOOK" "$l" "$r"
        done
    done
}
