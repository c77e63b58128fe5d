#!/usr/bin/env bash
# make demo: start perkhubd on the embedded default (data under var/, demo tokens,
# sample products), import a generated sample batch of card codes once, and print
# a first curl flow. The daemon keeps running in the background.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin="$build/perkhubd"
ctl="$build/perkctl"
url=http://127.0.0.1:8080
mkdir -p var

if [ -f var/perkhubd.pid ] && kill -0 "$(cat var/perkhubd.pid)" 2>/dev/null; then
    echo "demo: stopping the previous perkhubd (pid $(cat var/perkhubd.pid))"
    kill "$(cat var/perkhubd.pid)"
    while kill -0 "$(cat var/perkhubd.pid)" 2>/dev/null; do sleep 0.1; done
fi

"$bin" >>var/perkhubd.log 2>&1 &
echo $! > var/perkhubd.pid
for _ in $(seq 1 100); do
    curl -fs "$url/v1/health" >/dev/null 2>&1 && break
    if ! kill -0 "$(cat var/perkhubd.pid)" 2>/dev/null; then
        echo "demo: perkhubd did not start; var/perkhubd.log says:" >&2
        tail -n 20 var/perkhubd.log >&2
        if tail -n 5 var/perkhubd.log | grep -q "schema version"; then
            echo "demo: var/data was written by an older perkhubd; it holds only demo data," >&2
            echo "      so remove it (rm -rf var/data) and run make demo again" >&2
        fi
        exit 1
    fi
    sleep 0.1
done

export PERKHUB_URL=$url PERKHUB_TOKEN=demo-ops-token
stock=$(curl -fs -H "Authorization: Bearer demo-ops-token" "$url/v1/products/iqiyi.gold.1m" |
        sed -n 's/.*"available":\([0-9]*\).*/\1/p')
if [ "${stock:-0}" -eq 0 ]; then
    # 1,000 random codes in the shape iQiyi cards use; kept only inside perkhub (sealed).
    openssl rand -hex 6000 | fold -w 12 | tr 'a-f' 'A-F' |
        awk 'BEGIN { print "code,card_no,expires_at" }
             { printf "IQY-%s-%s-%s,%s,2027-12-31\n", substr($0,1,4), substr($0,5,4), substr($0,9,4), "88" NR + 1000000 }' \
        > var/sample-codes.csv
    "$ctl" import var/sample-codes.csv --supplier sandbox --sku iqiyi.gold.1m --cost 19.80 \
        --note "demo sample batch"
    rm -f var/sample-codes.csv
fi

cat <<EOT

perkhubd is running on $url (pid $(cat var/perkhubd.pid), log var/perkhubd.log, data var/data).
Demo tokens (loopback only): demo-mall-token (fulfill+support), demo-ops-token (ops).

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
   curl -s $url/v1/orders?client_order_id=demo-t3 -H 'Authorization: Bearer demo-mall-token'

4. Or by order, and the ops view:
   curl -s -X POST $url/v1/codes/lookup -H 'Authorization: Bearer demo-mall-token' -d '{"client_order_id":"demo-1"}'
   PERKHUB_TOKEN=demo-ops-token $ctl status
   PERKHUB_TOKEN=demo-ops-token $ctl events

Stop it with: kill \$(cat var/perkhubd.pid)
EOT
