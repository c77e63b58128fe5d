#!/usr/bin/env bash
# bench/webhooks.sh BUILD_DIR — issue 13's bench: what delivering webhooks costs, and what
# it does to orders. Two perkhubd of the same build (bench/lib.sh's configuration: loopback,
# durable defaults, one card SKU from stock): "on" with the mall's endpoint subscribed to
# order.* (a receiver of our own, bench/webhook_sink.c, answering 204 at once), "off"
# without. WH_ROUNDS rounds, each a WH_DURATION-second wrk run of orders (bench/order.lua; at
# this machine's rates well over 10,000 orders) on one daemon, then on the other (the order
# swaps every round, so the noise of a shared machine falls on both alike).
#
# Per round on "on": from the first order until the endpoint has nothing pending and its
# cursor has passed the last event, the deliveries received, deliveries per second, the lag
# of each delivery (receive time at the sink minus the event's commit time `at`, p50 and
# p99), and perkhubd's CPU (utime+stime from /proc/PID/stat, every thread) over that window.
# perkhubd CPU per delivered webhook = (CPU of "on" − CPU of "off" for the same number of
# orders) / deliveries: what the deliveries added. Orders per second on both, and perkhubd's
# CPU per order during wrk's run alone on both (what deliveries took while orders came: a
# figure the machine's other load moves less than orders per second).
#
# The delivery thread runs below the orders' priority (docs/webhooks.md, "At peak"): while
# wrk keeps the cores busy its deliveries wait and the lag grows; they catch up after the
# run, inside the round's window. So the lag reported is the burst's, and "caught up" says
# how long after wrk's last order the endpoint had everything.
#
# PASS when the median orders/s with webhooks on is at least WH_LIMIT (0.90) × without, and
# every event of the mall's orders was delivered exactly once per round; MISS otherwise. The
# per-round ratios' range is printed: on a shared machine one round's ratio can be off by
# ±30 %, which is why it is the median of interleaved rounds that counts.
# Writes bench/results/webhooks.json. Exit: 0 PASS, 3 MISS, 1 when something was wrong.
#
# Knobs (environment):
#   WH_DURATION (5)  WH_ROUNDS (5)  WH_CONNS (32)  WH_THREADS (2)  WH_LIMIT (0.90)
#   WH_WAIT_S (120): how long a round may take to deliver everything
set -euo pipefail

BUILD=${1:?usage: bench/webhooks.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${WH_DURATION:-5}
ROUNDS=${WH_ROUNDS:-5}
CONNS=${WH_CONNS:-32}
THREADS=${WH_THREADS:-2}
LIMIT=${WH_LIMIT:-0.90}
WAIT_S=${WH_WAIT_S:-120}
CODES=$((DURATION * 30000 * (ROUNDS + 1) + 20000)) # above this machine's order rate (5,000 to 22,000 orders/s seen)

. "$SRC/bench/lib.sh"
bench_setup webhooks wrk jq bc openssl
[ -x "$BUILD/perkhubd" ] || fail "$BUILD/perkhubd not found"

cc -O2 -o "$TMP/sink" "$SRC/bench/webhook_sink.c" -lmicrohttpd -lpthread ||
    fail "cannot build bench/webhook_sink.c (libmicrohttpd-dev)"
"$TMP/sink" "$TMP/sink.port" >"$TMP/deliveries.txt" 2>"$TMP/sink.log" &
SINK_PID=$!
BENCH_MORE_PIDS="$BENCH_MORE_PIDS $SINK_PID"
for _ in $(seq 100); do [ -s "$TMP/sink.port" ] && break; sleep 0.05; done
[ -s "$TMP/sink.port" ] || fail "the sink wrote no port"
SINK_PORT=$(cat "$TMP/sink.port")

umask 077
echo "whsec_$(openssl rand -base64 32)" >"$TMP/whsec"
umask 022

ops() { curl -sf --max-time 30 "${URL[$1]}$2" -H "Authorization: Bearer $OPS_TOKEN"; }
last_event() { ops "$1" /v1/stats | jq -r '.last_event // 0'; }
cpu_ticks() { bench_cpu_ticks "$1" | awk '{ print $1 + $2 }'; }
now_ms() { date +%s%3N; }

for l in on off; do
    if [ "$l" = on ]; then
        BENCH_MALL_YAML=$(printf '    webhooks:\n      - id: bench\n        url: http://127.0.0.1:%s/hooks\n        secrets: [file:%s]\n        events: ["order.*"]\n' "$SINK_PORT" "$TMP/whsec")
    else
        BENCH_MALL_YAML=
    fi
    note "$l: starting $BUILD/perkhubd, importing $CODES codes"
    bench_start "$BUILD" "$TMP/$l"
    PID[$l]=$BENCH_PID
    URL[$l]=$BENCH_URL
    bench_import_codes "$l"
done
ops on /v1/webhooks | jq -e '.endpoints[] | select(.id == "bench")' >/dev/null ||
    fail "the 'on' daemon lists no endpoint 'bench' at GET /v1/webhooks"

# Every event up to seq `upto` handed to the endpoint and nothing pending.
drained() { # upto
    ops on /v1/webhooks | jq -e --argjson u "$1" \
        '.endpoints[] | select(.id == "bench") | .cursor >= $u and .pending == 0' >/dev/null
}

wrk_orders() { # label run-id out
    BENCH_TOKEN=$MALL_TOKEN BENCH_SKU=$SKU BENCH_RUN="$2" BENCH_OUT="$3.json" \
        timeout $((DURATION + 60)) wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" --timeout 10s \
        -s "$SRC/bench/order.lua" "${URL[$1]}" >"$3.out" 2>&1 \
        || { cat "$3.out" >&2; fail "$1: wrk failed ($2)"; }
}

# one run on label l: appends "label round orders rps cpu_ticks deliveries window_ms" to
# $TMP/runs.txt (when round is not 0) and, for "on", leaves this run's sink lines in
# $TMP/$run.lines
one_run() { # label round
    local l=$1 round=$2 run=$1$2 p=${PID[$1]} c0 c1 cw t0 t1 tw ok rps lines0 lines1 upto
    lines0=$(wc -l <"$TMP/deliveries.txt")
    c0=$(cpu_ticks "$p")
    t0=$(now_ms)
    wrk_orders "$l" "$run" "$TMP/$run"
    tw=$(now_ms)
    cw=$(cpu_ticks "$p")
    ok=$(jq .ok "$TMP/$run.json")
    [ "$ok" -gt 0 ] || fail "$run: no order answered"
    [ "$(jq '.non2xx == 0 and .unmatched == 0' "$TMP/$run.json")" = true ] ||
        fail "$run: $(jq -c '{non2xx, unmatched}' "$TMP/$run.json")"
    rps=$(jq .rps "$TMP/$run.json")
    if [ "$l" = on ]; then
        upto=$(last_event on)
        local end=$(( $(date +%s) + WAIT_S ))
        until drained "$upto"; do
            [ "$(date +%s)" -lt "$end" ] || fail "$run: not every event delivered within $WAIT_S s"
            sleep 0.05
        done
    fi
    t1=$(now_ms)
    c1=$(cpu_ticks "$p")
    kill -0 "$SINK_PID" || fail "the sink died"
    lines1=$(wc -l <"$TMP/deliveries.txt")
    if [ "$l" = on ]; then sed -n "$((lines0 + 1)),${lines1}p" "$TMP/deliveries.txt" >"$TMP/$run.lines"; fi
    [ "$round" = 0 ] || echo "$l $round $ok $rps $((c1 - c0)) $((lines1 - lines0)) $((t1 - t0)) $((t1 - tw)) $((cw - c0))" >>"$TMP/runs.txt"
    note "  $run: $ok orders at $rps/s; $((lines1 - lines0)) deliveries in $((t1 - t0)) ms; CPU $(bench_calc "($c1 - $c0) * 1000000 / $HZ / $ok") µs/order; load $(cut -d' ' -f1 /proc/loadavg)"
}

note "warm-up: ${DURATION} s of orders on each"
: >"$TMP/runs.txt"
for l in on off; do one_run "$l" 0; done
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="on off"; else order="off on"; fi
    for l in $order; do one_run "$l" "$r"; done
done

# The deliveries of each "on" round: exactly one per event of its orders (the warm-up's
# stragglers excluded by id), the lag per delivery, the deliveries per second.
mkdir -p "$SRC/bench/results"
python3 - "$TMP" "$ROUNDS" "$HZ" "$LIMIT" "$SRC/bench/results/webhooks.json" <<'PY'
import datetime, json, statistics, sys

tmp, rounds, hz, limit, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
runs = {}
for line in open(f"{tmp}/runs.txt"):
    l, r, ok, rps, ticks, dels, win, after, burst = line.split()
    runs[(l, int(r))] = dict(orders=int(ok), rps=float(rps), cpu_s=int(ticks) / hz,
                             deliveries=int(dels), window_ms=int(win), after_ms=int(after),
                             burst_cpu_s=int(burst) / hz)


def at_ms(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


problems, per_round = [], []
for r in range(1, rounds + 1):
    on, off = runs[("on", r)], runs[("off", r)]
    ids, lags, orders = set(), [], set()
    for line in open(f"{tmp}/on{r}.lines"):
        recv, wid, body = line.rstrip("\n").split(" ", 2)
        b = json.loads(body)
        ev = b["data"]["event"]
        if wid in ids:
            problems.append(f"round {r}: delivery {wid} received twice")
        ids.add(wid)
        lags.append(int(recv) - at_ms(ev["at"]))
        if b["data"].get("order") and "codes" in b["data"]["order"]:
            problems.append(f"round {r}: a delivery carries codes")
        orders.add(ev.get("client_order_id", ""))
    mine = [o for o in orders if o.startswith(f"on{r}-")]
    if len(mine) < on["orders"]:
        problems.append(f"round {r}: deliveries for {len(mine)} orders, {on['orders']} answered")
    lags.sort()
    q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))] if lags else float("nan")
    extra_cpu = on["cpu_s"] - off["cpu_s"] * on["orders"] / off["orders"]
    per_round.append(dict(
        round=r, orders_on=on["orders"], orders_off=off["orders"], rps_on=on["rps"],
        rps_off=off["rps"], ratio=on["rps"] / off["rps"], deliveries=len(ids),
        delivered_per_s=len(ids) / (on["window_ms"] / 1000), lag_p50_ms=q(0.50),
        lag_p99_ms=q(0.99), cpu_us_per_order_on=on["cpu_s"] * 1e6 / on["orders"],
        cpu_us_per_order_off=off["cpu_s"] * 1e6 / off["orders"],
        cpu_us_per_delivery=extra_cpu * 1e6 / max(1, len(ids)), caught_up_ms=on["after_ms"],
        burst_us_per_order_on=on["burst_cpu_s"] * 1e6 / on["orders"],
        burst_us_per_order_off=off["burst_cpu_s"] * 1e6 / off["orders"]))
    x = per_round[-1]
    print(f"webhooks: round {r}: {x['deliveries']} deliveries, {x['delivered_per_s']:.0f}/s, "
          f"lag p50 {x['lag_p50_ms']:.0f} ms p99 {x['lag_p99_ms']:.0f} ms, caught up "
          f"{x['caught_up_ms']:.0f} ms after the last order, "
          f"{x['cpu_us_per_delivery']:.1f} µs perkhubd CPU per delivery; orders/s "
          f"{x['rps_on']:.0f} on / {x['rps_off']:.0f} off = {x['ratio']:.3f}")

med = lambda k: statistics.median(x[k] for x in per_round)
ratio = med("ratio")
verdict = "PASS" if ratio >= limit and not problems else "MISS"
for p in problems:
    print(f"webhooks: {p}")
print(f"webhooks: median of {rounds}: {med('delivered_per_s'):.0f} deliveries/s, lag p50 "
      f"{med('lag_p50_ms'):.0f} ms p99 {med('lag_p99_ms'):.0f} ms (caught up "
      f"{med('caught_up_ms'):.0f} ms after the last order), "
      f"{med('cpu_us_per_delivery'):.1f} µs perkhubd CPU per delivered webhook "
      f"({med('cpu_us_per_order_on'):.1f} µs/order on, {med('cpu_us_per_order_off'):.1f} off)")
print(f"webhooks: during the orders (wrk's run only) perkhubd used "
      f"{med('burst_us_per_order_on'):.1f} µs CPU per order on, {med('burst_us_per_order_off'):.1f} "
      f"off: what deliveries took from orders while they came")
ratios = sorted(x["ratio"] for x in per_round)
print(f"webhooks: per-round ratios {' '.join(f'{v:.3f}' for v in ratios)} (range "
      f"{ratios[0]:.3f}..{ratios[-1]:.3f}: the machine's noise)")
print(f"webhooks: orders/s with webhooks / without = {ratio:.3f} (limit {limit}) {verdict}")
json.dump(dict(rounds=per_round, ratio=ratio, ratio_min=ratios[0], ratio_max=ratios[-1],
               limit=limit, verdict=verdict, problems=problems,
               delivered_per_s=med("delivered_per_s"), lag_p50_ms=med("lag_p50_ms"),
               lag_p99_ms=med("lag_p99_ms"), cpu_us_per_delivery=med("cpu_us_per_delivery")),
          open(out, "w"), indent=1)
sys.exit(0 if verdict == "PASS" else 3)
PY
