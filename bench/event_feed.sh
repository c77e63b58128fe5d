#!/usr/bin/env bash
# bench/event_feed.sh BUILD_DIR — issue 13 item 5: what a mall's GET /v1/events costs when
# the log is full of other clients' events. A demo perkhubd of its own (tools/demo.sh in a
# temporary directory, the embedded default), EF_ORDERS orders (default 20,000) placed by
# othermall from stock, one by mall; then each token catches up from 0 with limit=1000
# until `more` is false. Prints events, pages and the slowest and median page per token;
# PASS when mall's slowest page (each examines up to 10,000 events) is under EF_LIMIT_MS
# (default 50) and mall got exactly its one event, MISS otherwise.
# Exit: 0 PASS, 3 MISS, 1 when something was wrong.
#   EF_ORDERS (20000)  EF_LIMIT_MS (50)
set -euo pipefail

BUILD=${1:?usage: bench/event_feed.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/perkhub-event-feed-XXXXXX)
cleanup() {
    if [ -s "$TMP/var/perkhubd.pid" ]; then kill "$(cat "$TMP/var/perkhubd.pid")" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$TMP/tools"
cp "$SRC/tools/demo.sh" "$TMP/tools/"
ln -s "$BUILD" "$TMP/build"
(cd "$TMP" && PORT=0 bash tools/demo.sh >demo.out 2>&1) || { cat "$TMP/demo.out" >&2; exit 1; }

cd "$TMP" && python3 - "${EF_ORDERS:-20000}" "${EF_LIMIT_MS:-50}" <<'PY'
import http.client, json, sys, time

orders, limit_ms = int(sys.argv[1]), float(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", int(open("var/perkhubd.port").read()))


def req(method, path, token, body=None, ctype="application/json"):
    h = {"Authorization": "Bearer " + token}
    if body is not None:
        h["Content-Type"] = ctype
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    return r.status, r.read()


csv = "code\n" + "".join("FEED-BENCH-%07d\n" % i for i in range(orders + 1))
st, body = req("POST", "/v1/batches?supplier=sandbox&sku=netease.music.1m&unit_cost=10.00",
               "demo-ops-token", csv, "text/csv")
assert st == 201, body
t = time.time()
for i in range(orders):
    st, body = req("POST", "/v1/orders", "demo-othermall-token",
                   json.dumps({"client_order_id": "B-%d" % i, "sku": "netease.music.1m"}))
    assert st == 201, body
print("event_feed: %d othermall orders placed in %.1f s" % (orders, time.time() - t))
st, body = req("POST", "/v1/orders", "demo-mall-token",
               json.dumps({"client_order_id": "M-1", "sku": "netease.music.1m"}))
assert st == 201, body

slowest = {}
got = {}
for token in ("demo-mall-token", "demo-othermall-token", "demo-ops-token"):
    after, pages, n, lat = 0, 0, 0, []
    while True:
        t0 = time.time()
        st, body = req("GET", "/v1/events?after=%d&limit=1000" % after, token)
        lat.append((time.time() - t0) * 1000)
        assert st == 200, body
        j = json.loads(body)
        pages, n, after = pages + 1, n + len(j["events"]), j["next_after"]
        if not j["more"]:
            break
    lat.sort()
    slowest[token], got[token] = lat[-1], n
    print("event_feed: %-22s %6d events in %3d pages, slowest page %6.1f ms, median %6.1f ms"
          % (token, n, pages, lat[-1], lat[len(lat) // 2]))
ok = slowest["demo-mall-token"] < limit_ms and got["demo-mall-token"] == 1
print("event_feed: %s: a mall's slowest page %.1f ms (limit %.0f ms), its events %d (want 1)"
      % ("PASS" if ok else "MISS", slowest["demo-mall-token"], limit_ms, got["demo-mall-token"]))
sys.exit(0 if ok else 3)
PY
