#!/usr/bin/env bash
# make demo [PORT=8090]: start perkhubd on the embedded default (data under var/,
# demo tokens, sample products), import a generated sample batch of card codes
# once, and print a first curl flow. The daemon keeps running in the background.
#
# The embedded default is written to var/perkhub.yaml (with listen.port = PORT,
# default 8080; 0 = any free port) and perkhubd runs on that file, so
# `kill -HUP $(cat var/perkhubd.pid)` reloads it after an edit. The file is
# rewritten at every make demo.
#
# "Running" means: the perkhubd started here is alive, holds var/perkhubd.pid
# (perkhubd writes its pid there only once its listener is bound) and answers
# /v1/health on the port it wrote to var/perkhubd.port. Anything else already on
# the port makes perkhubd fail to bind, and this script says so.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
port=${PORT:-8080}
bin="$build/perkhubd"
ctl="$build/perkctl"
pidf=var/perkhubd.pid
portf=var/perkhubd.port
log=var/perkhubd.log

case $port in
'' | *[!0-9]*)
    echo "demo: PORT must be a port number (0 = any free port), got '$port'" >&2
    exit 2
    ;;
esac
mkdir -p var

# A previous demo still running: stop it through the pid file it holds, and
# only if that pid is a perkhubd (a stale file may name a reused pid).
if [ -s "$pidf" ]; then
    old=$(cat "$pidf")
    if [ "$(cat "/proc/$old/comm" 2>/dev/null)" = perkhubd ]; then
        echo "demo: stopping the previous perkhubd (pid $old)"
        kill -TERM "$old" 2>/dev/null || true
        for _ in $(seq 1 350); do
            kill -0 "$old" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$old" 2>/dev/null; then
            echo "demo: the previous perkhubd (pid $old) did not stop within 35 s" >&2
            exit 1
        fi
    fi
fi

{
    echo "# Written by make demo (tools/demo.sh) from perkhubd --print-default-config,"
    echo "# with listen.port = $port: rewritten at every make demo."
    "$bin" --print-default-config |
        sed -e "s|^  port: 8080\$|  port: $port\n  port_file: $portf|" \
            -e "s|^plugin_dir: build/plugins\$|plugin_dir: $build/plugins|"
} >var/perkhub.yaml
if ! grep -qx "  port_file: $portf" var/perkhub.yaml; then
    echo "demo: could not set listen.port in var/perkhub.yaml (has the embedded default changed" >&2
    echo "      its listen: block? tools/demo.sh rewrites the line '  port: 8080')" >&2
    exit 1
fi

logstart=$(($(stat -c %s "$log" 2>/dev/null || echo 0) + 1))
rm -f "$portf"
"$bin" -c var/perkhub.yaml >>"$log" 2>&1 &
pid=$!

url=
for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" || true
        echo "demo: perkhubd did not start; $log says:" >&2
        tail -c "+$logstart" "$log" | tail -n 20 >&2
        if tail -c "+$logstart" "$log" | grep -q "cannot listen"; then
            echo "demo: port $port is taken by another process. Stop it, or run the demo on" >&2
            echo "      another port: make demo PORT=8090 (PORT=0 takes any free port)" >&2
        elif tail -c "+$logstart" "$log" | grep -q "schema version"; then
            echo "demo: var/data was written by an older perkhubd; it holds only demo data," >&2
            echo "      so remove it (rm -rf var/data) and run make demo again" >&2
        fi
        exit 1
    fi
    if [ "$(cat "$pidf" 2>/dev/null)" = "$pid" ] && [ -s "$portf" ]; then
        u="http://127.0.0.1:$(cat "$portf")"
        if curl -fs "$u/v1/health" >/dev/null 2>&1; then
            url=$u
            break
        fi
    fi
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "demo: perkhubd (pid $pid) did not answer within 30 s; see $log" >&2
    exit 1
fi

export PERKHUB_URL=$url PERKHUB_TOKEN=demo-ops-token
imported=$(curl -fs -H "Authorization: Bearer demo-ops-token" "$url/v1/stats" |
    sed -n 's/.*"sku":"iqiyi.gold.1m","imported":\([0-9]*\).*/\1/p')
if [ "${imported:-0}" -eq 0 ]; then
    # 1,000 random codes in the shape iQiyi cards use; kept only inside perkhub (sealed).
    openssl rand -hex 6000 | fold -w 12 | tr 'a-f' 'A-F' |
        awk 'BEGIN { print "code,card_no,expires_at" }
             { printf "IQY-%s-%s-%s,%s,2027-12-31\n", substr($0,1,4), substr($0,5,4), substr($0,9,4), "88" NR + 1000000 }' \
            >var/sample-codes.csv
    "$ctl" import var/sample-codes.csv --supplier sandbox --sku iqiyi.gold.1m --cost 19.80 \
        --note "demo sample batch"
    rm -f var/sample-codes.csv
fi

cat <<EOT

perkhubd is running on $url (pid $pid, log $log, data var/data, config var/perkhub.yaml).
Demo tokens (loopback only: refused from any other address): demo-mall-token
(fulfill+support), demo-othermall-token (fulfill+support), demo-ops-token (ops).

1. Place a first order (run it twice: the second answer is the same order, not a second one):
   curl -s -X POST $url/v1/orders -H 'Authorization: Bearer demo-mall-token' \\
        -d '{"client_order_id":"demo-1","sku":"iqiyi.gold.1m","quantity":1}'

2. Ask what happened to the code you received (it goes in the body, never in the URL):
   curl -s -X POST $url/v1/codes/lookup -H 'Authorization: Bearer demo-mall-token' \\
        -d '{"code":"<the code from step 1>"}'

3. A direct recharge (直充) through the built-in sandbox supplier (docs/sandbox.md lists its
   magic accounts: 13800000003 times out, stays "unknown" and is settled by an order query):
   curl -s -X POST $url/v1/orders -H 'Authorization: Bearer demo-mall-token' \\
        -d '{"client_order_id":"demo-t1","sku":"mobile.topup.50","account":"13800000001","wait":5}'
   curl -s -X POST $url/v1/orders -H 'Authorization: Bearer demo-mall-token' \\
        -d '{"client_order_id":"demo-t3","sku":"mobile.topup.50","account":"13800000003"}'
   curl -s '$url/v1/orders?client_order_id=demo-t3' -H 'Authorization: Bearer demo-mall-token'

4. Or by order, and the ops view:
   curl -s -X POST $url/v1/codes/lookup -H 'Authorization: Bearer demo-mall-token' -d '{"client_order_id":"demo-1"}'
   PERKHUB_URL=$url PERKHUB_TOKEN=demo-ops-token $ctl status
   PERKHUB_URL=$url PERKHUB_TOKEN=demo-ops-token $ctl events

5. Watch it all in a browser: open $url/ops and connect with demo-ops-token.

Reload after editing var/perkhub.yaml: kill -HUP \$(cat $pidf)
Stop it with:                          kill \$(cat $pidf)
EOT
