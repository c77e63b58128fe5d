#!/usr/bin/env bash
# bench/sync_catalog.sh BUILD_DIR — issue 12's sync bench: a catalog sync of a
# 10,000-item catalog (SC_ITEMS extra items at the simulator, plus its own three),
# served by the gateway protocol in pages of 500 (21 exchanges), with SC_PRODUCTS
# configured products whose offers name catalog items (each compared and stored by
# the writer). Three runs through POST /v1/suppliers/gw/sync, each timed from the
# request to the job's end as GET /v1/suppliers shows it: the first (every offer
# state new), the same catalog again (no change), and one after a price moved at
# the simulator (one offer event). perkhubd's CPU per run comes
# from /proc/<pid>/stat (utime + stime), so the simulator's own work is not counted.
# PASS when every run ends ok within SC_LIMIT_S seconds (default 2) and uses under
# SC_CPU_LIMIT_S of perkhubd CPU (default 1), MISS otherwise.
# Exit: 0 PASS, 3 MISS, 1 when something was wrong.
#   SC_ITEMS (10000)  SC_PRODUCTS (1000)  SC_LIMIT_S (2)  SC_CPU_LIMIT_S (1)
set -euo pipefail

BUILD=${1:?usage: bench/sync_catalog.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
ITEMS=${SC_ITEMS:-10000}
PRODUCTS=${SC_PRODUCTS:-1000}
PERKHUBD=$BUILD/perkhubd
SUPSIM=$BUILD/tools/supsim/supsim
OPS_TOKEN=bench-ops-token

fail() { echo "sync_catalog: FAIL: $*" >&2; exit 1; }
[ -x "$PERKHUBD" ] || fail "$PERKHUBD not found (make build first)"
[ -x "$SUPSIM" ] || fail "$SUPSIM not found (make build first)"
[ "$PRODUCTS" -le "$ITEMS" ] || fail "SC_PRODUCTS must not exceed SC_ITEMS"

TMP=$(mktemp -d /tmp/perkhub-sync-bench-XXXXXX)
PID=""
SIM_PID=""
cleanup() {
    for p in $PID $SIM_PID; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_file() { # file pid what log
    for _ in $(seq 300); do
        [ -s "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || fail "$3 exited at start: $(tail -5 "$4" 2>/dev/null)"
        sleep 0.1
    done
    fail "$3 wrote no port file in 30 s"
}

"$SUPSIM" --port 0 --port-file "$TMP/sim.port" >"$TMP/sim.log" 2>&1 &
SIM_PID=$!
wait_file "$TMP/sim.port" "$SIM_PID" supsim "$TMP/sim.log"
SIM_PORT=$(cat "$TMP/sim.port")
printf gw-secret >"$TMP/gw.secret"
chmod 600 "$TMP/gw.secret"

sha() { printf %s "$1" | sha256sum | cut -c1-64; }
{
    cat <<YAML
listen:
  address: 127.0.0.1
  port: 0
  port_file: $TMP/port
data_dir: $TMP/data
master_key_file: $TMP/master.key
master_key_create: true
plugin_dir: $BUILD/plugins
log:
  level: warn
clients:
  - name: ops
    token_sha256: $(sha "$OPS_TOKEN")
    scopes: [ops]
suppliers:
  - id: gw
    plugin: gateway
    timeout_ms: 10000
    config:
      gateway_url: http://127.0.0.1:$SIM_PORT/gateway
      app_key: gw-app
      app_secret: file:$TMP/gw.secret
products:
  - sku: sc.card
    name: Sync bench card
    brand: sim
    category: video
    delivery: card_code
    face_value: "30.00"
    offers:
      - {supplier: gw, supplier_sku: "10001", cost: "28.50", max_cost: "30.00"}
YAML
    for i in $(seq 1 "$PRODUCTS"); do
        printf '  - {sku: sc.p%05d, name: P, brand: sim, category: c, delivery: card_code, face_value: "10.00", offers: [{supplier: gw, supplier_sku: "E%05d", cost: "9.50"}]}\n' "$i" "$i"
    done
} >"$TMP/perkhub.yaml"

"$PERKHUBD" -c "$TMP/perkhub.yaml" >"$TMP/perkhubd.log" 2>&1 &
PID=$!
wait_file "$TMP/port" "$PID" perkhubd "$TMP/perkhubd.log"

python3 - "$(cat "$TMP/port")" "$SIM_PORT" "$PID" "$ITEMS" "$PRODUCTS" "${SC_LIMIT_S:-2}" \
    "${SC_CPU_LIMIT_S:-1}" "$OPS_TOKEN" <<'PY'
import http.client, json, os, sys, time

port, sim_port, pid, items, products = (int(a) for a in sys.argv[1:6])
limit_s, cpu_limit_s, token = float(sys.argv[6]), float(sys.argv[7]), sys.argv[8]
tick = os.sysconf("SC_CLK_TCK")


def req(p, method, path, body=None, auth=True):
    c = http.client.HTTPConnection("127.0.0.1", p, timeout=60)
    h = {"Content-Type": "application/json"}
    if auth:
        h["Authorization"] = "Bearer " + token
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    out = r.status, r.read()
    c.close()
    return out


def cpu():  # perkhubd's utime + stime, seconds
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick


def catalog_job():
    st, body = req(port, "GET", "/v1/suppliers")
    assert st == 200, body
    for s in json.loads(body)["suppliers"]:
        if s["id"] == "gw":
            return s["sync"]["catalog"]
    raise SystemExit("no supplier gw")


def run(name):
    before = catalog_job().get("last_at")
    c0, t0 = cpu(), time.time()
    st, body = req(port, "POST", "/v1/suppliers/gw/sync", '{"what":"catalog"}')
    assert st == 202, body
    while True:
        j = catalog_job()
        if j.get("last_at") and j["last_at"] != before and not j["running"]:
            break
        if time.time() - t0 > 120:
            raise SystemExit("sync_catalog: the sync did not end in 120 s")
        time.sleep(0.01)  # polling the job's state, not an assertion
    secs, c = time.time() - t0, cpu() - c0
    ok = j["last_ok"] is True
    print("sync_catalog: %-9s %s in %.3f s, perkhubd CPU %.3f s: %s"
          % (name, "ok" if ok else "FAILED", secs, c, j.get("outcome") or j.get("error")))
    return ok, secs, c


st, body = req(sim_port, "POST", "/_sim/catalog", json.dumps({"extra_items": items}), auth=False)
assert st == 200, body
results = [run("first"), run("unchanged")]
st, body = req(sim_port, "POST", "/_sim/catalog", '{"product_id":"10001","price":2900}', auth=False)
assert st == 200, body
results.append(run("changed"))
ok = all(r[0] and r[1] < limit_s and r[2] < cpu_limit_s for r in results)
worst_s, worst_cpu = max(r[1] for r in results), max(r[2] for r in results)
print("sync_catalog: %s: %d items (%d offers compared), slowest run %.3f s (limit %.1f s), "
      "most perkhubd CPU %.3f s (limit %.1f s)"
      % ("PASS" if ok else "MISS", items + 3, products + 1, worst_s, limit_s, worst_cpu,
         cpu_limit_s))
sys.exit(0 if ok else 3)
PY
