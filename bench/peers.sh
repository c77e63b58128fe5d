#!/usr/bin/env bash
# bench/peers.sh BUILD_DIR — issue 4 point 3: what a mall team would build instead of
# perkhub, measured on this machine with the same workload (one card code per order, unique
# client order ids, durable), so bench/run.sh's orders/s can be set against it.
#
#   PostgreSQL 15, private cluster (initdb in a temp dir, a free loopback port, defaults:
#   synchronous_commit on, fsync on), pgbench -M prepared -c 64 -j 2 -T SECONDS, one
#   transaction per issuance (pick a code FOR UPDATE SKIP LOCKED, insert the order, mark the
#   code issued), in two forms: naive (primary key only) and tuned (partial index on the
#   available codes). Redis 7, private redis-server (a free loopback port), appendonly yes with
#   appendfsync always and then everysec, one EVALSHA of bench/peers/redis_issue.lua per
#   issuance, driven by bench/peers/redis_load.c (hiredis, 64 connections, no pipelining).
#
# Correctness is asserted after every run (counts in the database against the load
# generator's successes, no code issued twice, Redis reloads its AOF after a kill -9 with
# nothing lost) and the run fails loudly otherwise. See bench/README.md, "Peers".
#
# Knobs (environment): PEERS_SECONDS (20, per load run), PEERS_CODES (1000000, codes
# pre-filled for each PostgreSQL run), PEERS_REDIS_CODES (4000000, codes pre-filled for each
# Redis run: Redis issues faster, an empty list fails the run), PEERS_CLIENTS (64),
# PEERS_THREADS (2, pgbench -j and redis_load threads), PEERS_ONLY ("postgres redis", the
# peers to run), PEERS_TRANSPORT (tcp: 127.0.0.1 as perkhubd is measured; unix: Unix sockets
# in the temp dir, which spare the peers the TCP loopback cost), PEERS_OUT
# (bench/results/peers.json).
set -euo pipefail

BUILD=${1:?usage: bench/peers.sh BUILD_DIR}
mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
PEERS=$SRC/bench/peers
SECS=${PEERS_SECONDS:-20}
CODES=${PEERS_CODES:-1000000}
REDIS_CODES=${PEERS_REDIS_CODES:-4000000}
CLIENTS=${PEERS_CLIENTS:-64}
THREADS=${PEERS_THREADS:-2}
ONLY=${PEERS_ONLY:-"postgres redis"}
TRANSPORT=${PEERS_TRANSPORT:-tcp}
OUT=${PEERS_OUT:-$SRC/bench/results/peers.json}
SKU=peer.card
PGBIN=/usr/lib/postgresql/15/bin

fail() { echo "peers: FAIL: $*" >&2; exit 1; }
note() { echo "peers: [${SECONDS}s] $*" >&2; }
case $TRANSPORT in tcp | unix) ;; *) fail "PEERS_TRANSPORT must be tcp or unix" ;; esac

"$SRC/tools/deps.sh" postgresql-15 postgresql-client-15 redis-server redis-tools libhiredis-dev

TMP=$(mktemp -d /tmp/perkhub-bench-XXXXXX)
PGDATA_DIR=""
RPID=""
CHILD=""
cleanup() {
    [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null || true
    if [ -n "$RPID" ] && kill -0 "$RPID" 2>/dev/null; then
        kill -KILL "$RPID" 2>/dev/null || true
        wait "$RPID" 2>/dev/null || true
    fi
    if [ -n "$PGDATA_DIR" ] && [ -f "$PGDATA_DIR/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -t 30 stop >/dev/null 2>&1 ||
            kill -KILL "$(head -1 "$PGDATA_DIR/postmaster.pid")" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_bounded SECS CMD...: runs CMD in the background and waits for it, so a TERM (run.sh's
# timeout) reaches the trap at once instead of after the load run; killed after SECS.
run_bounded() {
    local limit=$1 rc=0
    shift
    timeout "$limit" "$@" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

# PostgreSQL refuses to run as root: as root, the server side runs as the postgres user
# the Debian package creates; the clients (psql, pgbench) connect over the private socket.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
# free_port: a loopback port below the kernel's ephemeral range (where the load generators'
# own connections live) that no socket uses now. A race with another process is possible:
# the servers' starts below retry on another port.
free_port() {
    local low p
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    for _ in $(seq 100); do
        p=$((10000 + RANDOM % (low - 10000)))
        if command -v ss >/dev/null; then
            [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] && { echo "$p"; return 0; }
        elif ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    fail "no free loopback port found"
}
. "$SRC/bench/lib.sh" # bench_proc_cpu_us, bench_children_cpu_us

# CPU per issuance of each server, over the load run (issue 18): redis-server's threads and
# whatever it reaped (an AOF rewrite's child); PostgreSQL's postmaster with every process of
# the cluster (the backends are reaped by the postmaster when pgbench disconnects, so their
# CPU arrives in its children's times). The load generator's CPU comes from this shell's
# waited-for children (run_bounded waits for it).
pg_cpu() { # -> µs of the whole cluster so far
    local pm
    pm=$(head -1 "$PGDATA_DIR/postmaster.pid")
    # shellcheck disable=SC2046
    bench_proc_cpu_us "$pm" $(pgrep -P "$pm")
}
pg_children() { pgrep -c -P "$(head -1 "$PGDATA_DIR/postmaster.pid")" || true; }
# us_per OPS US: µs per operation, two decimals
us_per() { if [ "$1" -gt 0 ]; then echo "scale=2; $2 / $1" | bc | sed 's/^\./0./'; else echo null; fi; }

# Load average now; the JSON keeps it at start and end (the machine is shared).
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD_START=$(loadavg)

# ---- the Redis load generator (built here, in the build dir) -------------------------
REDIS_LOAD=$BUILD/bench_redis_load
gcc -O2 -std=c11 -Wall -Wextra -o "$REDIS_LOAD" "$PEERS/redis_load.c" -lhiredis -lpthread ||
    fail "could not build bench/peers/redis_load.c"

# pct FILE P: the P-th percentile (0..1) of the sorted numbers in FILE (nearest rank).
pct() { awk -v p="$2" '{ v[NR] = $1 } END { i = int(p * (NR - 1) + 0.5) + 1; print (NR ? v[i] : 0) }' "$1"; }
# json_array: one number a line on stdin -> [a,b,c]
json_array() { paste -sd, - | sed 's/^/[/; s/$/]/'; }
declare -A R # results: R[peer.field]

# ======================================================================================
# PostgreSQL 15
# ======================================================================================
pg_start() {
    chmod 711 "$TMP"
    mkdir -p "$TMP/pg"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$TMP/pg"
    PGDATA_DIR=$TMP/pg/data
    as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -U bench --auth=trust -E UTF8 --no-locale \
        >"$TMP/pg/initdb.log" 2>&1 || { cat "$TMP/pg/initdb.log" >&2; fail "initdb failed"; }
    # Defaults kept (synchronous_commit on, fsync on, shared_buffers 128MB). Its Unix socket
    # lives in the temp dir; with tcp it also listens on a free port of 127.0.0.1 only.
    local port=5432 listen="''" try
    for try in 1 2 3 4 5; do
        if [ "$TRANSPORT" = tcp ]; then port=$(free_port); listen=127.0.0.1; fi
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -w -t 60 -l "$TMP/pg/server.log" \
            -o "-p $port -k $TMP/pg -c listen_addresses=$listen" start >/dev/null && break
        [ "$try" = 5 ] && { cat "$TMP/pg/server.log" >&2; fail "PostgreSQL did not start"; }
        note "PostgreSQL did not start on port $port, trying another"
    done
    PGARGS=(-h "$TMP/pg" -p "$port" -U bench)
    [ "$TRANSPORT" = tcp ] && PGARGS=(-h 127.0.0.1 -p "$port" -U bench)
    return 0
}

psql_q() { psql "${PGARGS[@]}" -X -q -v ON_ERROR_STOP=1 "$@"; }

# pg_pick SCRIPT: the script's pick statement, as a statement to PREPARE (sku is $1), so the
# plan checked is the plan of the SQL the run sends.
pg_pick() {
    awk '/^SELECT id AS code_id/ { f = 1 } f { print } f && /\\gset/ { exit }' "$1" |
        sed 's/\\gset//; s/:sku/$1/g'
}

# pg_plan DB SCRIPT MODE: the scan node of the script's pick statement (custom|generic plan).
pg_plan() {
    local pick
    pick=$(pg_pick "$2")
    psql_q -At -d "$1" <<SQL | grep -o 'Index Scan using [a-z_]*\|Seq Scan' | head -1
SET plan_cache_mode = force_$3_plan;
PREPARE pick(text) AS $pick;
EXPLAIN EXECUTE pick('$SKU');
SQL
}

# pg_probe DB SCRIPT: "<buffers> <ms>": the shared buffers one pick touches and its execution
# time, from EXPLAIN (ANALYZE, BUFFERS) of the script's pick at rest (rolled back). Taken
# before and after the run, it shows the cost of a pick growing as issued rows pile up,
# whatever the noise of the machine.
pg_probe() {
    local pick
    pick=$(pg_pick "$2")
    psql_q -At -d "$1" <<SQL | awk '
        /Buffers: shared/ && !seen {
            seen = 1
            if (match($0, /hit=[0-9]+/)) n += substr($0, RSTART + 4, RLENGTH - 4)
            if (match($0, /read=[0-9]+/)) n += substr($0, RSTART + 5, RLENGTH - 5)
        }
        /Execution Time/ { t = $3 }
        END { print n + 0, (t == "" ? 0 : t) }'
BEGIN;
SET LOCAL plan_cache_mode = force_generic_plan;
PREPARE pick(text) AS $pick;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE pick('$SKU');
ROLLBACK;
SQL
}

# pg_run FORM: schema, fill, plan check, pgbench, then the counts asserted.
pg_run() {
    local form=$1 db=$1 script=$PEERS/pg_issue_$1.pgb
    note "postgres $form: filling $CODES codes"
    psql_q -d postgres -c "CREATE DATABASE $db"
    psql_q -d "$db" -f "$PEERS/pg_schema_$form.sql"
    psql_q -d "$db" -v codes="$CODES" -v sku="$SKU" -f "$PEERS/pg_fill.sql"
    local plan_c plan_g
    plan_c=$(pg_plan "$db" "$script" custom)
    plan_g=$(pg_plan "$db" "$script" generic)
    if [ "$form" = tuned ]; then
        [ "$plan_c" = "Index Scan using codes_available" ] && [ "$plan_g" = "$plan_c" ] ||
            fail "tuned pick does not use codes_available (custom: $plan_c, generic: $plan_g)"
    fi
    R[pg_$form.probe_before]=$(pg_probe "$db" "$script")
    note "postgres $form: pgbench -c $CLIENTS -j $THREADS -T $SECS (pick: $plan_g)"
    local log=$TMP/pglog-$form c0 n0 w0 w1
    n0=$(pg_children)
    c0=$(pg_cpu)
    bench_children_cpu_us w0 "$TMP/times"
    run_bounded $((SECS + 120)) pgbench "${PGARGS[@]}" -n -M prepared -c "$CLIENTS" -j "$THREADS" \
        -T "$SECS" --progress=1 -D sku="$SKU" -D n=0 -l --log-prefix="$log" -f "$script" "$db" \
        >"$TMP/pgbench-$form.out" 2>"$TMP/pgbench-$form.err" ||
        { tail -5 "$TMP/pgbench-$form.err" >&2; fail "pgbench failed ($form; out of stock? raise PEERS_CODES)"; }
    bench_children_cpu_us w1 "$TMP/times"
    # the backends exit once pgbench has gone; their CPU counts when the postmaster reaps them
    for _ in $(seq 100); do [ "$(pg_children)" -le "$n0" ] && break; sleep 0.1; done
    R[pg_$form.cpu_server]=$(($(pg_cpu) - c0))
    R[pg_$form.cpu_load]=$((w1 - w0))
    pg_account "$form" "$db" "$log"
    R[pg_$form.probe_after]=$(pg_probe "$db" "$script")
    R[pg_$form.plan]=$plan_g
}

# pg_account FORM DB LOGPREFIX: pgbench's figures, and the database's counts checked.
pg_account() {
    local form=$1 db=$2 log=$3 out=$TMP/pgbench-$1.out
    local processed failed tps nlog
    processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$out")
    [ -n "$processed" ] && [ -n "$tps" ] || { cat "$out" >&2; fail "$form: no pgbench summary"; }
    [ "${failed:-0}" = 0 ] || fail "$form: $failed failed transactions"
    cat "$log".* >"$log.all"
    nlog=$(wc -l <"$log.all")
    [ "$nlog" -eq "$processed" ] || fail "$form: pgbench logged $nlog transactions, summary says $processed"
    # Per client: orders in the table vs transactions pgbench saw commit. A client cut off
    # by -T after sending COMMIT may have committed one pgbench never counted (late).
    local late
    late=$(psql_q -At -F' ' -d "$db" -c \
        "SELECT split_part(client_order_id, '-', 1), count(*) FROM orders GROUP BY 1" |
        awk 'NR == FNR { seen[$1] = $2; next } { db[$1] = $2 }
             END { late = 0
                   for (c in db) { d = db[c] - seen[c]; if (d < 0 || d > 1) { print "bad " c " " d; exit } late += d }
                   for (c in seen) if (!(c in db)) { print "bad " c " missing"; exit }
                   print late }' \
            <(awk '{ n[$1]++ } END { for (c in n) print c, n[c] }' "$log.all") -)
    [[ $late =~ ^[0-9]+$ ]] || fail "$form: orders per client disagree with pgbench's log ($late)"
    local issued orders twice wrong orphan
    IFS='|' read -r issued orders twice wrong orphan < <(psql_q -At -d "$db" -f "$PEERS/pg_check.sql")
    [ "$orders" -eq $((processed + late)) ] ||
        fail "$form: $orders orders stored, pgbench committed $processed (+$late late)"
    [ "$issued" -eq "$orders" ] || fail "$form: $issued codes issued for $orders orders"
    [ "$twice" -eq 0 ] || fail "$form: $twice codes issued twice"
    [ "$wrong" -eq 0 ] || fail "$form: $wrong orders whose code is not marked issued to them"
    [ "$orphan" -eq 0 ] || fail "$form: $orphan issued codes without their order"
    note "  $processed committed (+$late late), $orders orders = $issued codes issued, none twice"
    awk '{ print $3 / 1000 }' "$log.all" | sort -n >"$log.lat"
    local prog
    prog=$(sed -n 's/^progress: [0-9.]* s, \([0-9.]*\) tps.*/\1/p' "$TMP/pgbench-$form.err")
    R[pg_$form.tps]=$tps
    R[pg_$form.committed]=$processed
    R[pg_$form.late]=$late
    R[pg_$form.p50]=$(pct "$log.lat" 0.50)
    R[pg_$form.p99]=$(pct "$log.lat" 0.99)
    R[pg_$form.intervals]=$(json_array <<<"$prog")
    R[pg_$form.first]=$(head -1 <<<"$prog")
    R[pg_$form.last]=$(tail -1 <<<"$prog")
}

pg_settings() {
    psql_q -At -d postgres -F'=' -c "SELECT name, current_setting(name) FROM pg_settings WHERE name IN
        ('synchronous_commit','fsync','wal_sync_method','full_page_writes','shared_buffers',
         'max_connections','autovacuum','server_version') ORDER BY name" |
        awk -F= '{ printf("%s\"%s\":\"%s\"", (NR > 1 ? "," : ""), $1, $2) }'
}

if [[ " $ONLY " == *" postgres "* ]]; then
    pg_start
    R[pg.settings]=$(pg_settings)
    for form in naive tuned; do pg_run "$form"; done
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -t 60 stop >/dev/null || fail "PostgreSQL did not stop"
    PGDATA_DIR=""
fi

# ======================================================================================
# Redis 7
# ======================================================================================
rcli() { redis-cli "${RCLI[@]}" "$@"; }

# redis_start DIR FSYNC: starts redis-server on DIR/redis.conf; 1 if it exited at start.
redis_start() {
    local dir=$1 fsync=$2
    "$(command -v redis-server)" "$dir/redis.conf" >"$dir/server.log" 2>&1 &
    RPID=$!
    for _ in $(seq 600); do
        [ "$(rcli ping 2>/dev/null)" = PONG ] && return 0
        if ! kill -0 "$RPID" 2>/dev/null; then
            wait "$RPID" 2>/dev/null || true
            RPID=""
            return 1
        fi
        sleep 0.1
    done
    fail "redis-server ($fsync) not answering after 60 s"
}

# redis_conf DIR FSYNC: writes DIR/redis.conf on a new port (tcp) and sets RSERVER, RCLI.
# Loopback only (tcp: a free port of 127.0.0.1; unix: no TCP port, a socket in the temp
# dir). The AOF is the only persistence (save "": no RDB snapshot forks during a run);
# everything else is Redis's default, AOF rewrite included.
redis_conf() {
    local dir=$1 fsync=$2 port=0
    RSERVER=$dir/redis.sock
    RCLI=(-s "$RSERVER")
    if [ "$TRANSPORT" = tcp ]; then
        port=$(free_port)
        RSERVER=$port
        RCLI=(-h 127.0.0.1 -p "$port")
    fi
    cat >"$dir/redis.conf" <<CONF
bind 127.0.0.1
port $port
unixsocket $dir/redis.sock
unixsocketperm 700
dir $dir
daemonize no
appendonly yes
appendfsync $fsync
save ""
CONF
}

redis_run() {
    local fsync=$1 dir=$TMP/redis-$1
    mkdir -p "$dir"
    local try
    for try in 1 2 3 4 5; do
        redis_conf "$dir" "$fsync"
        redis_start "$dir" "$fsync" && break
        [ "$try" = 5 ] && { cat "$dir/server.log" >&2; fail "redis-server ($fsync) did not start"; }
        note "redis-server did not start (port ${RSERVER}), trying another"
    done
    note "redis $fsync: filling $REDIS_CODES codes"
    "$REDIS_LOAD" fill "$RSERVER" "stock:$SKU" "$REDIS_CODES" || fail "redis fill failed"
    local sha before after hlen
    sha=$(rcli SCRIPT LOAD "$(cat "$PEERS/redis_issue.lua")")
    before=$(rcli LLEN "stock:$SKU")
    [ "$before" -eq "$REDIS_CODES" ] || fail "redis $fsync: $before codes in stock after fill"
    note "redis $fsync: redis_load $CLIENTS connections, $THREADS threads, ${SECS}s"
    local j c0 w0 w1
    c0=$(bench_proc_cpu_us "$RPID")
    bench_children_cpu_us w0 "$TMP/times"
    run_bounded $((SECS + 60)) "$REDIS_LOAD" load "$RSERVER" "stock:$SKU" "orders:$SKU" "$sha" \
        "$SECS" "$CLIENTS" "$THREADS" "r$fsync" "$dir/codes.client" >"$dir/load.json" ||
        fail "redis_load failed ($fsync)"
    R[redis_$fsync.cpu_server]=$(($(bench_proc_cpu_us "$RPID") - c0))
    bench_children_cpu_us w1 "$TMP/times"
    R[redis_$fsync.cpu_load]=$((w1 - w0))
    j=$(cat "$dir/load.json")
    field() { grep -o "\"$1\":[0-9.]*" <<<"$j" | head -1 | cut -d: -f2; }
    local ok errors unanswered
    ok=$(field ok); errors=$(field errors); unanswered=$(field unanswered)
    [ "$errors" = 0 ] || fail "redis $fsync: $errors error replies (out_of_stock? raise PEERS_REDIS_CODES)"
    [ "$unanswered" = 0 ] || fail "redis $fsync: $unanswered requests unanswered 10 s after the run"
    after=$(rcli LLEN "stock:$SKU")
    hlen=$(rcli HLEN "orders:$SKU")
    [ $((before - after)) -eq "$ok" ] || fail "redis $fsync: stock fell by $((before - after)), $ok issuances answered"
    [ "$hlen" -eq "$ok" ] || fail "redis $fsync: $hlen orders stored, $ok issuances answered"
    # The codes the clients received: as many as answers, none twice, exactly the server's.
    sort "$dir/codes.client" >"$dir/codes.client.sorted"
    [ "$(wc -l <"$dir/codes.client.sorted")" -eq "$ok" ] || fail "redis $fsync: client kept a wrong number of codes"
    [ -z "$(uniq -d "$dir/codes.client.sorted" | head -1)" ] || fail "redis $fsync: a code was issued twice"
    rcli --raw HVALS "orders:$SKU" | sort >"$dir/codes.server.sorted"
    cmp -s "$dir/codes.client.sorted" "$dir/codes.server.sorted" ||
        fail "redis $fsync: the orders hash does not hold the codes the clients received"
    # Durability of what was acknowledged, as far as a process crash goes: kill -9, restart
    # from the AOF, same stock and orders.
    kill -KILL "$RPID"; wait "$RPID" 2>/dev/null || true; RPID=""
    redis_start "$dir" "$fsync" || { cat "$dir/server.log" >&2; fail "redis-server ($fsync) did not restart"; }
    [ "$(rcli LLEN "stock:$SKU")" -eq "$after" ] && [ "$(rcli HLEN "orders:$SKU")" -eq "$hlen" ] ||
        fail "redis $fsync: after kill -9 and AOF reload the counts changed"
    note "  $ok answered = $hlen orders = stock fell by $((before - after)), none twice; same after kill -9 + AOF reload"
    R[redis_$fsync.ops]=$(field ops_per_s)
    R[redis_$fsync.ok]=$ok
    R[redis_$fsync.p50]=$(field p50_ms)
    R[redis_$fsync.p99]=$(field p99_ms)
    R[redis_$fsync.seconds]=$(field seconds)
    R[redis_$fsync.intervals]=$(grep -o '"per_second":\[[0-9,]*\]' <<<"$j" | cut -d: -f2)
    R[redis_$fsync.aof_bytes]=$(du -sb "$dir/appendonlydir" | cut -f1)
    rcli SHUTDOWN >/dev/null 2>&1 || true
    wait "$RPID" 2>/dev/null || true
    RPID=""
    rm -f "$dir"/codes.*
}

if [[ " $ONLY " == *" redis "* ]]; then
    R[redis.version]=$(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)
    for fsync in always everysec; do redis_run "$fsync"; done
fi

# ======================================================================================
# table and JSON
# ======================================================================================
LOAD_END=$(loadavg)
printf '\nperkhub bench — peers: durable issuance as a mall team would build it (%s, nproc %s)\n' \
    "$(uname -r)" "$(nproc)"
printf '%-10s %-22s %12s %9s %9s %16s %22s  %s\n' peer setting "issuances/s" "p50 ms" "p99 ms" \
    "CPU µs srv/load" "1st/last interval /s" "one pick before/after: buffers, ms"
if [ -n "${R[pg_naive.tps]:-}" ]; then
    for form in naive tuned; do
        read -r b0 t0 <<<"${R[pg_$form.probe_before]}"
        read -r b1 t1 <<<"${R[pg_$form.probe_after]}"
        printf '%-10s %-22s %12.1f %9.3f %9.3f %16s %22s  %s\n' postgres "$form, sync_commit on" \
            "${R[pg_$form.tps]}" "${R[pg_$form.p50]}" "${R[pg_$form.p99]}" \
            "$(us_per "${R[pg_$form.committed]}" "${R[pg_$form.cpu_server]}")/$(us_per "${R[pg_$form.committed]}" "${R[pg_$form.cpu_load]}")" \
            "${R[pg_$form.first]} / ${R[pg_$form.last]}" "$b0 / $b1, $t0 / $t1"
    done
fi
if [ -n "${R[redis_always.ops]:-}" ]; then
    for fsync in always everysec; do
        iv=${R[redis_$fsync.intervals]}
        first=$(tr -d '[]' <<<"$iv" | cut -d, -f1); last=$(tr -d '[]' <<<"$iv" | awk -F, '{ print $NF }')
        printf '%-10s %-22s %12.1f %9.3f %9.3f %16s %22s\n' redis "appendfsync $fsync" \
            "${R[redis_$fsync.ops]}" "${R[redis_$fsync.p50]}" "${R[redis_$fsync.p99]}" \
            "$(us_per "${R[redis_$fsync.ok]}" "${R[redis_$fsync.cpu_server]}")/$(us_per "${R[redis_$fsync.ok]}" "${R[redis_$fsync.cpu_load]}")" \
            "$first / $last"
    done
fi
printf '(%s clients, %s s per run, %s; load average %s at start, %s at end)\n' "$CLIENTS" "$SECS" "$TRANSPORT" \
    "$LOAD_START" "$LOAD_END"

pg_json() {
    local f=$1
    printf '{"tps":%s,"first_interval_tps":%s,"last_interval_tps":%s,"interval_tps":%s,' \
        "${R[pg_$f.tps]}" "${R[pg_$f.first]}" "${R[pg_$f.last]}" "${R[pg_$f.intervals]}"
    printf '"p50_ms":%s,"p99_ms":%s,"committed":%s,"late_commits":%s,"clients":%s,"threads":%s,' \
        "${R[pg_$f.p50]}" "${R[pg_$f.p99]}" "${R[pg_$f.committed]}" "${R[pg_$f.late]}" "$CLIENTS" "$THREADS"
    printf '"cpu_us_per_op":{"postgres":%s,"pgbench":%s},' \
        "$(us_per "${R[pg_$f.committed]}" "${R[pg_$f.cpu_server]}")" "$(us_per "${R[pg_$f.committed]}" "${R[pg_$f.cpu_load]}")"
    printf '"seconds":%s,"codes":%s,"synchronous_commit":"on","schema":"bench/peers/pg_schema_%s.sql",' \
        "$SECS" "$CODES" "$f"
    printf '"pick_buffers_before":%s,"pick_ms_before":%s,"pick_buffers_after":%s,"pick_ms_after":%s,' \
        "${R[pg_$f.probe_before]% *}" "${R[pg_$f.probe_before]#* }" "${R[pg_$f.probe_after]% *}" "${R[pg_$f.probe_after]#* }"
    printf '"script":"bench/peers/pg_issue_%s.pgb","pick_plan":"%s","transport":"%s",' "$f" "${R[pg_$f.plan]}" "$TRANSPORT"
    printf '"pgbench":"-M prepared -c %s -j %s -T %s --progress=1 -l","settings":{%s}}' \
        "$CLIENTS" "$THREADS" "$SECS" "${R[pg.settings]}"
}
redis_json() {
    local f=$1
    printf '{"ops_per_s":%s,"interval_ops":%s,"p50_ms":%s,"p99_ms":%s,"ok":%s,"seconds":%s,' \
        "${R[redis_$f.ops]}" "${R[redis_$f.intervals]}" "${R[redis_$f.p50]}" "${R[redis_$f.p99]}" \
        "${R[redis_$f.ok]}" "${R[redis_$f.seconds]}"
    printf '"cpu_us_per_op":{"redis_server":%s,"redis_load":%s},' \
        "$(us_per "${R[redis_$f.ok]}" "${R[redis_$f.cpu_server]}")" "$(us_per "${R[redis_$f.ok]}" "${R[redis_$f.cpu_load]}")"
    printf '"clients":%s,"threads":%s,"pipelining":false,"codes":%s,"appendonly":"yes","appendfsync":"%s",' \
        "$CLIENTS" "$THREADS" "$REDIS_CODES" "$f"
    printf '"aof_bytes_after":%s,"version":"%s","script":"bench/peers/redis_issue.lua",' \
        "${R[redis_$f.aof_bytes]}" "${R[redis.version]}"
    printf '"load_generator":"bench/peers/redis_load.c (hiredis)","transport":"%s"}' "$TRANSPORT"
}
mkdir -p "$(dirname "$OUT")"
{
    printf '{"slice":"peers","at":"%s","sku":"%s","quantity":1,' "$(date -u +%FT%TZ)" "$SKU"
    if [ -n "${R[pg_naive.tps]:-}" ]; then
        printf '"postgres_naive":%s,"postgres_tuned":%s,' "$(pg_json naive)" "$(pg_json tuned)"
    fi
    if [ -n "${R[redis_always.ops]:-}" ]; then
        printf '"redis_always":%s,"redis_everysec":%s,' "$(redis_json always)" "$(redis_json everysec)"
    fi
    printf '"machine":{"nproc":%s,"kernel":"%s","tmp_fs":"%s","load_avg_at_start":"%s","load_avg_at_end":"%s"}}\n' \
        "$(nproc)" "$(uname -r)" "$(stat -f -c %T /tmp)" "$LOAD_START" "$LOAD_END"
} >"$OUT"
echo "results: ${OUT#"$SRC"/}"
