#!/usr/bin/env python3
"""test_ops_page.py — the ops page (GET /ops) in a real browser, against a real
perkhubd and the supplier simulator, both started here on loopback ports.

1. Data: a rewards supplier played by tools/supsim and the built-in sandbox;
   card codes imported; orders that succeed (local stock, a recharge), fail (a
   suspended account, a product out of stock upstream) and one left unknown
   (the simulator takes the order and answers 502, then every order query
   answers 500 until the end).
2. Over HTTP, without a browser: the page is web/ops.html byte for byte, its
   Content-Security-Policy admits exactly the page's own script and style by
   their SHA-256 and nothing inline besides, with nosniff, no-store, no frames,
   no referrer; GET /v1/stats/orders answers what the orders list says and
   refuses bad parameters and the wrong scopes.
3. In headless Chromium (Debian's chromium + chromium-driver, python3-selenium):
   type the ops token, wait for the tables and check them against the API —
   supplier rows (state, breaker, in flight, balance), stock per SKU with the
   low-stock marks, today's orders by outcome and the top SKUs, the unknown
   order, the newest event, and the sections whose endpoints this perkhubd
   lacks shown as "not available" (or filled, once it has them); that the
   token is in no storage (local, session, cookies, IndexedDB, caches), the
   URL, the DOM or the daemon's log; that the console shows no CSP violation
   (and, as a control, that it does show one the test provokes); a refused
   token is said so. Saves a screenshot as <build>/test-artifacts/ops_page.png.
4. Replicated (one nats-server with JetStream, two perkhubd, started here):
   each node's page says its role in the header and in "This node" (the
   standby names the leader and how many batches it applied of the stream's);
   the leader stops, and the standby's open page comes to say it leads.
   Screenshot: ops_page_standby.png.

Step 3 is skipped (exit 77, ctest's SKIP_RETURN_CODE) only when Chromium, its
driver or Selenium is not installed (tools/deps.sh --browser installs them),
and never when CI is set: there a missing browser fails the test. PH_CHROMIUM
and PH_CHROMEDRIVER name another browser and driver (default: chromium and
chromedriver on PATH, or in /usr/bin).

Chromium is started without the sanitizer variables of the ASan and TSan trees
(ASAN_OPTIONS, LD_PRELOAD, ...): they are meant for perkhubd, which keeps them.
perkhubd must exit 0 on SIGTERM (a leak or race report makes it fail).
"""
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

try:
    import selenium  # noqa: F401
    HAVE_SELENIUM = True
except ImportError:
    # Debian's python3-selenium belongs to Debian's python3; another python3 may
    # come first on PATH (pyenv and the like)
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != \
            os.path.realpath("/usr/bin/python3") and not os.environ.get("PH_OPS_REEXEC"):
        os.environ["PH_OPS_REEXEC"] = "1"
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    HAVE_SELENIUM = False

SKIP = 77
MALL_TOKEN = "ops-page-mall-token"
OPS_TOKEN = "ops-page-ops-token-3f9c1e"  # searched for in storage, DOM and logs
WAIT_S = 60
SANITIZER_ENV = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS", "MSAN_OPTIONS",
                 "LD_PRELOAD")

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL: " + msg, flush=True)
    return cond


def env_path(name):
    v = os.environ.get(name)
    if not v:
        sys.exit(f"{name} is not set (run this test through ctest)")
    return v


# ---- processes -------------------------------------------------------------------


def wait_port(path, proc, what, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with open(path) as f:
                p = f.read().strip()
            if p and int(p) > 0:
                return int(p)
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not write its port within {timeout} s")


def spawn(argv, log_path, env=None):
    log = open(log_path, "ab")
    # killed with this process, whatever ends it (a ctest timeout included)
    def die_with_parent():
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    return subprocess.Popen(argv, stdout=log, stderr=log, env=env, preexec_fn=die_with_parent)


def stop(proc, what, log_path):
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc else None
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    if not check(rc == 0, f"{what} exited {rc} on SIGTERM (see below)"):
        with open(log_path, errors="replace") as f:
            print(f.read()[-6000:])
    return rc


# ---- HTTP --------------------------------------------------------------------------


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body
        try:
            self.json = json.loads(body)
        except ValueError:
            self.json = None


def http(port, method, path, token=None, body=None, ctype="application/json"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=body.encode() if isinstance(body, str) else body)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if body is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return Resp(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Resp(e.code, e.headers, e.read())


def get_json(port, path, token=OPS_TOKEN, status=200):
    r = http(port, "GET", path, token)
    if r.status != status or r.json is None:
        raise AssertionError(f"GET {path}: {r.status} {r.body[:300]!r}")
    return r.json


def order(port, body):
    r = http(port, "POST", "/v1/orders", MALL_TOKEN, json.dumps(body))
    if r.status not in (200, 201, 202) or not r.json:
        raise AssertionError(f"POST /v1/orders {body}: {r.status} {r.body[:300]!r}")
    return r.json["order"]


def sim(port, method, path, body=None):
    r = http(port, method, path, None, json.dumps(body) if body is not None else None)
    if r.status not in (200, 201):
        raise AssertionError(f"supsim {method} {path}: {r.status} {r.body!r}")
    return r.json


def wait_for(fn, what, timeout=WAIT_S, every=0.2):
    """Polls fn() until it returns a true value; raises naming what on timeout."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def all_orders(port):
    out, after = [], 0
    while True:
        page = get_json(port, f"/v1/orders?after={after}&limit=1000")
        out += page["orders"]
        if page["next_after"] is None:
            return out
        after = page["next_after"]


# ---- the world: supsim, perkhubd, orders -----------------------------------------------


def sha256_hex(s):
    return hashlib.sha256(s.encode()).hexdigest()


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def config_text(d, sim_port):
    write(f"{d}/rw.key", "rw-key")
    write(f"{d}/rw.whsec", "rw-whsec")
    return f"""listen:
  address: 127.0.0.1
  port: 0
  port_file: {d}/port
data_dir: {d}/data
map_size_mb: 16
master_key_file: {d}/master.key
master_key_create: true
plugin_dir: {env_path("PH_PLUGIN_DIR")}
log:
  level: info
clients:
  - name: mall
    token_sha256: {sha256_hex(MALL_TOKEN)}
    scopes: [fulfill, support]
  - name: ops
    token_sha256: {sha256_hex(OPS_TOKEN)}
    scopes: [ops]
suppliers:
  - id: sup
    plugin: rewards
    priority: 10
    timeout_ms: 1500
    connect_timeout_ms: 1000
    query_max_delay_ms: 500
    breaker_failures: 1000000
    config:
      base_url: http://127.0.0.1:{sim_port}/rewards
      api_key: file:{d}/rw.key
      webhook_secret: file:{d}/rw.whsec
  - id: sbx
    plugin: sandbox
    priority: 5
products:
  - sku: p.card
    name: Page card
    brand: sim
    category: video
    delivery: card_code
    face_value: "30.00"
  - sku: p.empty
    name: Empty card
    brand: sim
    category: video
    delivery: card_code
    face_value: "15.00"
  - sku: p.out
    name: Sold out upstream
    brand: sim
    category: video
    delivery: card_code
    face_value: "30.00"
    offers:
      - {{supplier: sup, supplier_sku: U10002, cost: "28.00"}}
  - sku: p.topup
    name: Page top-up
    brand: telco
    category: telecom
    delivery: recharge
    face_value: "50.00"
    offers:
      - {{supplier: sup, supplier_sku: U20001, cost: "49.00"}}
"""


def settle(port, placed, name, want):
    oid = placed[name]["id"]
    wait_for(lambda: get_json(port, f"/v1/orders/{oid}")["order"]["state"] == want,
             f"order {name} ({oid}) to be {want}")


def make_orders(port, sim_port):
    csv = "code\n" + "".join(f"OPS-PAGE-{i:04d}\n" for i in range(12))
    r = http(port, "POST", "/v1/batches?supplier=sup&sku=p.card&unit_cost=19.80", OPS_TOKEN, csv,
             "text/csv")
    if r.status != 201:
        raise AssertionError(f"import: {r.status} {r.body!r}")
    placed = {}
    placed["card"] = order(port, {"client_order_id": "C-1", "sku": "p.card", "quantity": 2})
    placed["topup_ok"] = order(port, {"client_order_id": "T-OK", "sku": "p.topup",
                                      "account": "13800000001", "wait": 10})
    placed["topup_failed"] = order(port, {"client_order_id": "T-FAIL", "sku": "p.topup",
                                          "account": "13900000002", "wait": 10})
    placed["card_out"] = order(port, {"client_order_id": "C-OUT", "sku": "p.out", "quantity": 1})
    # every order final before the faults (a slow tree answers later)
    for name, want in (("card", "succeeded"), ("topup_ok", "succeeded"),
                       ("topup_failed", "failed"), ("card_out", "failed")):
        settle(port, placed, name, want)
    # the supplier takes the order and its answer is lost; every query fails
    # from then on, so the order stays unknown while the page is looked at
    sim(sim_port, "POST", "/_sim/faults",
        {"protocol": "rewards", "op": "order", "fault": "http_502_after", "count": 1})
    sim(sim_port, "POST", "/_sim/faults",
        {"protocol": "rewards", "op": "query", "fault": "http_500", "count": -1})
    placed["topup_unknown"] = order(port, {"client_order_id": "T-UNK", "sku": "p.topup",
                                           "account": "13800000005"})
    settle(port, placed, "topup_unknown", "unknown")
    return placed


# ---- step 2: HTTP only ------------------------------------------------------------------


def inline(html, tag):
    found = re.findall(rf"<{tag}>(.*?)</{tag}>".encode(), html, re.S)
    check(len(found) == 1, f"the page has exactly one <{tag}> (found {len(found)})")
    return found[0] if found else b""


def csp_hash(text):
    return "'sha256-" + base64.b64encode(hashlib.sha256(text).digest()).decode() + "'"


def check_http(port, source_dir):
    r = http(port, "GET", "/ops")
    check(r.status == 200, f"GET /ops: {r.status}")
    with open(os.path.join(source_dir, "web", "ops.html"), "rb") as f:
        check(r.body == f.read(), "GET /ops serves web/ops.html byte for byte")
    h = r.headers
    check(h.get("Content-Type") == "text/html; charset=utf-8", f"Content-Type {h.get('Content-Type')}")
    check(h.get("X-Content-Type-Options") == "nosniff", "X-Content-Type-Options: nosniff")
    check(h.get("Cache-Control") == "no-store", "Cache-Control: no-store")
    check(h.get("X-Frame-Options") == "DENY", "X-Frame-Options: DENY")
    check(h.get("Referrer-Policy") == "no-referrer", "Referrer-Policy: no-referrer")
    csp = h.get("Content-Security-Policy") or ""
    directives = {}
    for part in csp.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    script, style = inline(r.body, "script"), inline(r.body, "style")
    want = {
        "default-src": ["'none'"], "script-src": [csp_hash(script)], "style-src": [csp_hash(style)],
        "connect-src": ["'self'"], "img-src": ["'none'"], "base-uri": ["'none'"],
        "form-action": ["'none'"], "frame-ancestors": ["'none'"],
        "require-trusted-types-for": ["'script'"], "trusted-types": ["'none'"],
    }
    check(directives == want, f"Content-Security-Policy is exactly {want}, got {directives}")
    check("unsafe" not in csp, "no 'unsafe-*' in the policy")
    # nothing is loaded from anywhere: no src or href attribute at all
    check(not re.search(rb"\s(src|href)\s*=", r.body), "the page loads no resource")
    check(http(port, "POST", "/ops", None, "").status == 405, "POST /ops is 405")
    check(http(port, "GET", "/ops?x=1").status == 400, "GET /ops refuses query parameters")


def tally(orders, since_iso):
    """What GET /v1/stats/orders must say, computed from the orders list."""
    t = {"orders": 0, "by_state": {"held": 0, "processing": 0, "unknown": 0, "succeeded": 0,
                                   "failed": 0},
         "skus": {}}
    for o in orders:
        if o["created_at"] < since_iso:  # both RFC 3339 UTC with milliseconds
            continue
        t["orders"] += 1
        t["by_state"][o["state"]] += 1
        s = t["skus"].setdefault(o["sku"], {"sku": o["sku"], "orders": 0, "quantity": 0,
                                           "held": 0, "processing": 0, "unknown": 0,
                                           "succeeded": 0, "failed": 0})
        s["orders"] += 1
        s["quantity"] += o["quantity"]
        s[o["state"]] += 1
    t["top"] = sorted(t["skus"].values(), key=lambda s: (-s["orders"], s["sku"]))
    return t


def check_order_stats(port, placed):
    orders = all_orders(port)
    first = min(o["created_at"] for o in orders)
    since = first[:11] + "00:00:00.000Z"  # that UTC day's start
    s = get_json(port, "/v1/stats/orders?since=" + since + "&top=2")
    t = tally(orders, since)
    check(s["since"] == since, f"stats since {s['since']} != {since}")
    check(s["complete"] is True, "stats complete")
    check(s["orders"] == t["orders"] == 5, f"stats orders {s['orders']}, list {t['orders']}, placed 5")
    check(s["by_state"] == t["by_state"], f"stats by_state {s['by_state']} != {t['by_state']}")
    check(t["by_state"] == {"held": 0, "processing": 0, "unknown": 1, "succeeded": 2, "failed": 2},
          f"the orders placed: {t['by_state']}")
    check(s["top_skus"] == t["top"][:2], f"top 2 {s['top_skus']} != {t['top'][:2]}")
    check(s["skus"] == len(t["skus"]), "distinct SKUs")
    unk = placed["topup_unknown"]["id"]
    check([o["id"] for o in s["open"]["orders"]] == [unk], f"open orders {s['open']}")
    check(s["open"]["unknown"] == 1 and s["open"]["processing"] == 0, f"open counts {s['open']}")
    stats = get_json(port, "/v1/stats")
    check(s["last_event"] == stats["last_event"], "last_event agrees with /v1/stats")
    # a moment after every order: nothing counted
    later = get_json(port, "/v1/stats/orders?since=2999-01-01T00:00:00Z")
    check(later["orders"] == 0 and later["top_skus"] == [], f"since the future: {later}")
    for q, field in (("since=2026-12-06", "since"), ("since=yesterday", "since"), ("top=0", "top"),
                     ("top=101", "top"), ("state=failed", "unknown parameter")):
        r = http(port, "GET", "/v1/stats/orders?" + q, OPS_TOKEN)
        check(r.status == 400 and r.json and field in r.json["message"],
              f"?{q}: 400 naming {field}, got {r.status} {r.body[:200]!r}")
    check(http(port, "GET", "/v1/stats/orders").status == 401, "stats without a token: 401")
    check(http(port, "GET", "/v1/stats/orders", MALL_TOKEN).status == 403, "stats as mall: 403")


# ---- step 3: the browser ----------------------------------------------------------------


def find_program(env_name, name):
    """$env_name when set (another Chromium, say), else name on PATH or in /usr/bin."""
    given = os.environ.get(env_name)
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK)
                                  else None)


def browser_missing():
    """Why the browser part cannot run here, or None."""
    missing = []
    if not find_program("PH_CHROMIUM", "chromium"):
        missing.append("chromium")
    if not find_program("PH_CHROMEDRIVER", "chromedriver"):
        missing.append("chromium-driver")
    if not HAVE_SELENIUM:
        missing.append("python3-selenium")
    return ", ".join(missing) or None


def start_browser(tmp):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = find_program("PH_CHROMIUM", "chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,2400", "--no-first-run", "--disable-extensions",
              "--disable-background-networking", f"--user-data-dir={tmp}/chromium"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    env = {k: v for k, v in os.environ.items() if k not in SANITIZER_ENV}
    service = Service(find_program("PH_CHROMEDRIVER", "chromedriver"), env=env,
                      log_path=f"{tmp}/chromedriver.log")
    return webdriver.Chrome(service=service, options=opts)


def table(driver, tid):
    """A table's rows as {key: {col: text}}, and the keys in order."""
    rows = driver.execute_script("""
        const out = [];
        for (const tr of document.getElementById(arguments[0]).tBodies[0].rows) {
          const cells = {};
          for (const td of tr.cells) if (td.dataset.col) cells[td.dataset.col] = td.textContent;
          out.push([tr.dataset.key || null, cells, tr.className]);
        }
        return out;""", tid)
    return rows


def section_state(driver, tid):
    return driver.execute_script(
        "const p = document.getElementById(arguments[0] + '-status');"
        "return [p.dataset.state, p.textContent];", tid)


def compare_page(driver, port):
    """Differences between the page and the API now; [] when they agree."""
    diffs = []
    # suppliers
    sups = get_json(port, "/v1/suppliers")["suppliers"]
    rows = table(driver, "suppliers")
    if [r[0] for r in rows] != [s["id"] for s in sups]:
        return [f"supplier rows {[r[0] for r in rows]} != {[s['id'] for s in sups]}"]
    for (key, cells, _), s in zip(rows, sups):
        if cells.get("state") != s["state"] or cells.get("breaker") != s["health"]["breaker"]:
            diffs.append(f"supplier {key}: {cells} vs {s}")
        if not cells.get("in_flight", "").isdigit():
            diffs.append(f"supplier {key}: in flight {cells.get('in_flight')!r}")
        bal = http(port, "GET", f"/v1/suppliers/{key}/balance", OPS_TOKEN)
        want = bal.json["balance"] if bal.status == 200 else None
        if want is not None and cells.get("balance") != want:
            diffs.append(f"supplier {key}: balance {cells.get('balance')!r} != {want!r}")
    # stock, with the low marks at the page's default threshold (10)
    prods = get_json(port, "/v1/products")["products"]
    rows = table(driver, "stock")
    if [r[0] for r in rows] != [p["sku"] for p in prods]:
        return diffs + [f"stock rows {[r[0] for r in rows]} != {[p['sku'] for p in prods]}"]
    for (key, cells, cls), p in zip(rows, prods):
        avail = p["stock"]["available"]
        if avail is not None and cells.get("available") != str(avail):
            diffs.append(f"stock {key}: {cells.get('available')!r} != {avail}")
        low = avail is not None and avail < 10
        if (cells.get("low") == "LOW") != low or (cls == "low") != low:
            diffs.append(f"stock {key}: low mark {cells.get('low')!r}/{cls!r} with {avail}")
    # today's orders, as the orders list has them since the page's own midnight
    since = driver.execute_script("return document.getElementById('outcomes').dataset.since")
    if not since:
        return diffs + ["the orders section has no since"]
    t = tally(all_orders(port), since)
    got = {k: c.get("orders") for k, c, _ in table(driver, "outcomes")}
    want = {k: str(v) for k, v in t["by_state"].items()}
    want["total"] = str(t["orders"])
    if got != want:
        diffs.append(f"outcomes {got} != {want}")
    top = [(k, c.get("orders"), c.get("quantity")) for k, c, _ in table(driver, "top-skus")]
    want_top = [(s["sku"], str(s["orders"]), str(s["quantity"])) for s in t["top"][:10]]
    if top != want_top:
        diffs.append(f"top SKUs {top} != {want_top}")
    # unknown and processing orders
    pending = [o["id"] for o in all_orders(port) if o["state"] in ("unknown", "processing")]
    open_rows = [r[0] for r in table(driver, "open-orders")]
    if open_rows != [str(i) for i in pending]:
        diffs.append(f"open orders {open_rows} != {pending}")
    # the event tail: its first row is the newest event
    last = get_json(port, "/v1/stats")["last_event"]
    ev = table(driver, "events")
    if not ev or ev[0][0] != str(last):
        diffs.append(f"newest event row {ev[0][0] if ev else None} != {last}")
    # the sections of later versions: "not available" until their endpoint exists
    for tid, path in (("stuck", "/v1/orders?stuck=true"),
                      ("discrepancies", "/v1/discrepancies?status=open"),
                      ("alerts", "/v1/alerts?status=open"),
                      ("webhooks", "/v1/webhooks/deliveries?status=failed")):
        r = http(port, "GET", path, OPS_TOKEN)
        served = not (r.status in (404, 405) or (r.status == 400 and r.json and
                                                 "unknown parameter" in r.json["message"]))
        state = section_state(driver, tid)
        if state[0] != ("ok" if served else "na"):
            diffs.append(f"section {tid}: {state} while {path} answers {r.status}")
    return diffs + compare_node(driver, port) + compare_analytics(driver, port)


def compare_node(driver, port, leader_url=None):
    """The "This node" panel and the header's role badge against GET /v1/health."""
    h = get_json(port, "/v1/health", token=None)
    rep = h.get("replication")
    badge = driver.execute_script("const b = document.getElementById('node-role');"
                                  "return [b.dataset.role, b.textContent];")
    rows = {k: c.get("value") for k, c, _ in table(driver, "node")}
    want_role = rep["role"] if rep else "single"
    diffs = []
    if badge[0] != want_role:
        diffs.append(f"role badge {badge} while /v1/health says {want_role}")
    if rows.get("version") != h["version"] or rows.get("store") != "writable":
        diffs.append(f"node rows {rows} vs health {h}")
    if not rep:
        if rows.get("role") != "single node (no replication)" or "leader" in rows:
            diffs.append(f"a single node's panel: {rows}")
        return diffs
    if rows.get("role") != rep["role"]:
        diffs.append(f"role row {rows.get('role')!r} != {rep['role']!r}")
    if rep["role"] == "standby" and rows.get("leader") != leader_url:
        diffs.append(f"leader row {rows.get('leader')!r} != {leader_url!r}")
    if rep["role"] == "leader" and rows.get("leader") not in ("this node", leader_url):
        diffs.append(f"a leader's leader row {rows.get('leader')!r}")
    age = rows.get("data age")
    if rep["role"] == "leader" and age is not None:
        diffs.append(f"a leader shows a data age {age!r}")
    if rep["role"] == "standby" and not (age and re.match(r"^(unknown|\d+ ms)( \(malls are sent "
                                                          r"to the leader past \d+ ms\))?$", age)):
        diffs.append(f"the standby's data age row {age!r}")
    for row, key in (("applied batch", "applied_seq"), ("stream's last batch", "stream_last_seq")):
        if rows.get(row) != str(rep[key]):
            diffs.append(f"{row} {rows.get(row)!r} != {rep[key]}")
    return diffs


def compare_analytics(driver, port):
    """The analytics panel against GET /v1/analytics/* for the panel's own days."""
    diffs = []
    if section_state(driver, "analytics")[0] != "ok":
        return [f"analytics: {section_state(driver, 'analytics')}"]
    rng = driver.execute_script("const p = document.getElementById('sec-analytics');"
                                "return [p.dataset.from, p.dataset.to];")
    q = f"&from={rng[0]}&to={rng[1]}"
    top = get_json(port, "/v1/analytics/top?period=range&n=10&by=orders" + q)["periods"]
    want = [(x["sku"], str(x["orders"]), str(x["units"])) for x in (top[0]["top"] if top else [])]
    got = [(k, c.get("orders"), c.get("units")) for k, c, _ in table(driver, "an-top")]
    if got != want or not want:
        diffs.append(f"analytics top {got} != {want}")
    hours = get_json(port, "/v1/analytics/hours?" + q[1:])["hours"]
    got = [(k, c.get("orders")) for k, c, _ in table(driver, "an-hours")]
    if got != [(str(h["hour"]), str(h["orders"])) for h in hours]:
        diffs.append(f"analytics hours {got} != {hours}")
    claims = get_json(port, "/v1/analytics/claims?by=tag" + q)["rows"]
    got = [k for k, _, cls in table(driver, "an-claims") if cls != "empty"]
    if got != [x["tag"] for x in claims]:
        diffs.append(f"analytics claims {got} != {claims}")
    return diffs


def check_analytics_http(port, placed):
    """The analytics figures of the orders placed here, and their refusals."""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    j = get_json(port, f"/v1/analytics/top?period=range&from={today}&to={today}&n=10")
    top = {x["sku"]: x["orders"] for x in j["periods"][0]["top"]} if j["periods"] else {}
    want = {}
    for o in all_orders(port):
        if o["state"] == "succeeded" and o["created_at"].startswith(today):
            want[o["sku"]] = want.get(o["sku"], 0) + 1
    check(top == want, f"analytics top today {top} == the succeeded orders {want}")
    h = get_json(port, f"/v1/analytics/hours?from={today}&to={today}")
    check(h["total"] == len([o for o in all_orders(port) if o["created_at"].startswith(today)]),
          f"analytics hours total {h['total']} == today's orders")
    r = http(port, "GET", "/v1/analytics/co?a=p.card&b=p.topup", MALL_TOKEN)
    check(r.status == 403, f"co-redemption is ops only: {r.status}")
    r = http(port, "GET", "/v1/analytics/top?period=year", OPS_TOKEN)
    check(r.status == 400 and "period" in r.json["message"], f"a bad period: {r.status}")


def csp_messages(entries):
    return [e["message"] for e in entries
            if "Content Security Policy" in e["message"] or "Refused to" in e["message"]
            or "TrustedHTML" in e["message"] or "TrustedScript" in e["message"]]


def check_browser(port, build_dir, tmp):
    from selenium.common.exceptions import JavascriptException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    driver = start_browser(tmp)
    try:
        logs = []
        driver.get(f"http://127.0.0.1:{port}/ops")
        check(driver.title == "perkhub ops", f"title {driver.title!r}")
        # a refused token is said so, and nothing is shown
        driver.find_element(By.ID, "token").send_keys("not-a-token")
        driver.find_element(By.ID, "connect").click()
        wait_for(lambda: "refused" in driver.find_element(By.ID, "status").text,
                 "the page to say the token was refused", timeout=20)
        check("401" in driver.find_element(By.ID, "status").text, "the refusal says 401")
        driver.find_element(By.ID, "token").send_keys(MALL_TOKEN)
        driver.find_element(By.ID, "connect").click()
        wait_for(lambda: "403" in driver.find_element(By.ID, "status").text,
                 "the page to refuse a token without the ops scope", timeout=20)
        # the ops token
        Select(driver.find_element(By.ID, "interval")).select_by_value("2")
        driver.find_element(By.ID, "token").send_keys(OPS_TOKEN)
        driver.find_element(By.ID, "connect").click()
        wait_for(lambda: driver.execute_script("return Number(document.body.dataset.refreshes"
                                               " || 0)") >= 1, "the first refresh")
        diffs = []

        def agrees():
            nonlocal diffs
            diffs = compare_page(driver, port)
            return not diffs
        try:
            wait_for(agrees, "the page to agree with the API", every=0.5)
        except AssertionError:
            for d in diffs:
                check(False, "page vs API: " + d)
        # the token is nowhere but in the script's memory
        kept = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const out = {local: JSON.stringify(localStorage), localn: localStorage.length,
                         session: JSON.stringify(sessionStorage), sessionn: sessionStorage.length,
                         cookie: document.cookie, url: location.href,
                         dom: document.documentElement.outerHTML,
                         inputs: Array.from(document.querySelectorAll('input'), (i) => i.value)};
            const idb = indexedDB.databases ? indexedDB.databases() : Promise.resolve([]);
            const cs = window.caches ? caches.keys() : Promise.resolve([]);
            Promise.all([idb, cs]).then(([d, c]) => { out.idb = d; out.caches = c; done(out); },
                                        (e) => { out.error = String(e); done(out); });""")
        check("error" not in kept, f"storage inspection failed: {kept.get('error')}")
        check(kept["localn"] == 0 and kept["sessionn"] == 0,
              f"nothing in local or session storage: {kept['local']} {kept['session']}")
        check(kept["cookie"] == "", f"no cookie: {kept['cookie']!r}")
        check(kept.get("idb") == [] and kept.get("caches") == [],
              f"no IndexedDB database, no cache: {kept.get('idb')} {kept.get('caches')}")
        for where in ("local", "session", "cookie", "url", "dom"):
            check(OPS_TOKEN not in kept[where], f"the token is not in {where}")
        check(all(OPS_TOKEN not in v for v in kept["inputs"]), "the token field was cleared")
        # no CSP violation while loading and refreshing
        logs += driver.get_log("browser")
        seen = csp_messages(logs)
        check(seen == [], f"{len(seen)} CSP violation(s) in the console, the first: {seen[:2]}")
        banner = driver.find_element(By.ID, "csp").get_attribute("class")
        check(banner != "on", "the page's own CSP violation banner is off")
        # co-redemption: two products, counted on demand (no grants here: zero)
        Select(driver.find_element(By.ID, "an-a")).select_by_value("p.card")
        Select(driver.find_element(By.ID, "an-b")).select_by_value("p.topup")
        driver.find_element(By.ID, "an-co-go").click()
        wait_for(lambda: driver.find_element(By.ID, "an-co").get_attribute("data-state") != "idle",
                 "the co-redemption answer", timeout=20)
        co = driver.find_element(By.ID, "an-co")
        check(co.get_attribute("data-state") == "ok" and co.get_attribute("data-a-then-b") == "0",
              f"co-redemption shown: {co.get_attribute('data-state')} {co.text!r}")
        os.makedirs(os.path.join(build_dir, "test-artifacts"), exist_ok=True)
        shot = os.path.join(build_dir, "test-artifacts", "ops_page.png")
        check(driver.save_screenshot(shot), f"screenshot saved to {shot}")
        print(f"screenshot: {shot}", flush=True)
        # the analytics panel on its own
        shot = os.path.join(build_dir, "test-artifacts", "ops_page_analytics.png")
        check(driver.find_element(By.ID, "sec-analytics").screenshot(shot),
              f"screenshot saved to {shot}")
        print(f"screenshot: {shot}", flush=True)
        # the control: what the policy refuses is refused, and seen
        try:
            driver.execute_script("const s = document.createElement('script');"
                                  "s.textContent = 'window.injected = 1';"
                                  "document.body.appendChild(s);")
        except JavascriptException:
            pass  # Trusted Types refuse the assignment itself
        driver.execute_script("const i = document.createElement('img');"
                              "i.src = '/nothing.png'; document.body.appendChild(i);")
        wait_for(lambda: driver.find_element(By.ID, "csp").get_attribute("class") == "on",
                 "the page to see the provoked violation", timeout=20)
        check(driver.execute_script("return window.injected") is None,
              "an injected inline script did not run")
        logs += driver.get_log("browser")
        check(any("img-src" in m for m in csp_messages(logs)),
              "the console shows the provoked img-src violation (the detector works)")
        # forgetting the token stops the refreshes
        driver.find_element(By.ID, "forget").click()
        check("forgotten" in driver.find_element(By.ID, "status").text, "Forget token says so")
    finally:
        driver.quit()


# ---- step 4: two nodes replicated through one nats-server ------------------------------------

NATS_SERVER = "/usr/sbin/nats-server"


def free_port():
    import socket
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def nats_ready(mon_port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{mon_port}/healthz", timeout=2) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


def node_config(d, sim_port, name, port, nats_port):
    """config_text on a fixed port, with replication through one server (R1)."""
    text = config_text(d, sim_port).replace("  port: 0\n", f"  port: {port}\n", 1)
    return text + f"""replication:
  enabled: true
  node_id: {name}
  urls: [nats://127.0.0.1:{nats_port}]
  advertise_url: http://127.0.0.1:{port}
  replicas: 1
  lease_ttl_ms: 2000
"""


def wait_role(port, role):
    def has():
        r = http(port, "GET", "/v1/health")
        return r.status == 200 and r.json and (r.json.get("replication") or {}).get("role") == role
    wait_for(has, f"the node on port {port} to be the {role}")


def check_replicated(build_dir, sim_port, tmp):
    """A leader and a standby: each page says which it is, the standby names the
    leader and how far it applied the stream; the leader stops, and the
    standby's page, still open, says it leads."""
    from selenium.webdriver.common.by import By
    procs = []
    try:
        nats_port = free_port()
        os.makedirs(f"{tmp}/nats", exist_ok=True)
        mon_port = free_port()
        nats = spawn([NATS_SERVER, "-a", "127.0.0.1", "-p", str(nats_port), "-m", str(mon_port),
                      "-js", "-sd", f"{tmp}/nats"], f"{tmp}/nats.log")
        procs.append((nats, "nats-server", f"{tmp}/nats.log"))
        # a node with a new store refuses to start while no NATS server answers
        # (docs/replication.md): wait until this one's JetStream is ready
        wait_for(lambda: nats.poll() is None and nats_ready(mon_port),
                 "nats-server's /healthz (JetStream ready)", timeout=30)
        ports, urls = [], []
        for i, name in enumerate(("hub-a", "hub-b")):
            d = f"{tmp}/{name}"
            os.makedirs(d)
            ports.append(free_port())
            urls.append(f"http://127.0.0.1:{ports[i]}")
            write(f"{d}/perkhub.yaml", node_config(d, sim_port, name, ports[i], nats_port))
            if i == 1:  # the standby holds the leader's key file (docs/replication.md)
                shutil.copy(f"{tmp}/hub-a/master.key", f"{d}/master.key")
                os.chmod(f"{d}/master.key", 0o600)
            proc = spawn([env_path("PH_PERKHUBD"), "-c", f"{d}/perkhub.yaml"], f"{d}/perkhubd.log")
            procs.append((proc, f"perkhubd {name}", f"{d}/perkhubd.log"))
            wait_port(f"{d}/port", proc, f"perkhubd {name}", timeout=60)
            wait_role(ports[i], "leader" if i == 0 else "standby")
        lead, standby = ports
        # something to apply: the leader writes, the standby follows
        r = http(lead, "POST", "/v1/batches?supplier=sup&sku=p.card&unit_cost=19.80", OPS_TOKEN,
                 "code\nREPL-PAGE-1\nREPL-PAGE-2\n", "text/csv")
        check(r.status == 201, f"import on the leader: {r.status} {r.body[:200]!r}")
        order(lead, {"client_order_id": "R-1", "sku": "p.card", "quantity": 1})
        wait_for(lambda: (lambda h: h["applied_seq"] == h["stream_last_seq"] > 0)(
            get_json(standby, "/v1/health", token=None)["replication"]),
            "the standby to apply the leader's batches")
        os.makedirs(f"{tmp}/repl-browser")
        driver = start_browser(f"{tmp}/repl-browser")
        try:
            for port, role in ((standby, "standby"), (lead, "leader")):
                driver.get(f"http://127.0.0.1:{port}/ops")
                driver.find_element(By.ID, "token").send_keys(OPS_TOKEN)
                driver.find_element(By.ID, "connect").click()
                wait_for(lambda: driver.execute_script(
                    "return Number(document.body.dataset.refreshes || 0)") >= 1,
                    f"the {role}'s page to refresh")
                diffs = []

                def agrees():
                    nonlocal diffs
                    diffs = compare_node(driver, port, urls[0])
                    return not diffs
                try:
                    wait_for(agrees, f"the {role}'s node panel to agree with its health",
                             every=0.5)
                except AssertionError:
                    for d in diffs:
                        check(False, f"{role} page: {d}")
                text = driver.find_element(By.ID, "node-status").text
                if role == "standby":
                    check(urls[0] in text and "behind" in text,
                          f"the standby's panel says where writes go: {text!r}")
                    shot = os.path.join(build_dir, "test-artifacts", "ops_page_standby.png")
                    os.makedirs(os.path.dirname(shot), exist_ok=True)
                    check(driver.save_screenshot(shot), f"screenshot saved to {shot}")
                    print(f"screenshot: {shot}", flush=True)
            # the standby's page stays open while the leader stops: it hands the
            # lease on, and the page's next refreshes say this node leads now
            driver.get(f"http://127.0.0.1:{standby}/ops")
            driver.find_element(By.ID, "token").send_keys(OPS_TOKEN)
            driver.find_element(By.ID, "connect").click()
            from selenium.webdriver.support.ui import Select
            Select(driver.find_element(By.ID, "interval")).select_by_value("2")
            wait_for(lambda: driver.find_element(By.ID, "node-role").get_attribute("data-role")
                     == "standby", "the standby's badge")
            stop(procs[1][0], "perkhubd hub-a", procs[1][2])
            wait_for(lambda: driver.find_element(By.ID, "node-role").get_attribute("data-role")
                     == "leader", "the page of the former standby to say it leads")
            check(driver.find_element(By.ID, "node-role").text == "leader",
                  f"the badge reads {driver.find_element(By.ID, 'node-role').text!r}")
            try:
                wait_for(lambda: compare_node(driver, standby, urls[1]) == [],
                         "the new leader's node panel to agree with its health", every=0.5)
            except AssertionError:
                for d in compare_node(driver, standby, urls[1]):
                    check(False, f"new leader page: {d}")
        finally:
            driver.quit()
    except Exception:
        for _, what, log in procs:  # main() prints the first daemon's log only
            with open(log, errors="replace") as f:
                print(f"---- {what}'s log (end) ----\n{f.read()[-3000:]}")
        raise
    finally:
        for proc, what, log in reversed(procs):
            if proc.poll() is not None:
                continue
            if what == "nats-server":  # its exit status on a signal is not ours to judge
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=30)
            else:
                stop(proc, what, log)


# ---- main ----------------------------------------------------------------------------------


def main():
    build_dir = env_path("PH_BUILD_DIR")
    source_dir = env_path("PH_SOURCE_DIR")
    tmp = tempfile.mkdtemp(prefix="perkhub-ops-page-")
    simp = daemon = None
    try:
        simp = spawn([env_path("PH_SUPSIM"), "--port", "0", "--port-file", f"{tmp}/sim.port",
                      "--seed", "42", "--complete-ms", "0"], f"{tmp}/supsim.log")
        sim_port = wait_port(f"{tmp}/sim.port", simp, "supsim")
        write(f"{tmp}/perkhub.yaml", config_text(tmp, sim_port))
        daemon = spawn([env_path("PH_PERKHUBD"), "-c", f"{tmp}/perkhub.yaml"],
                       f"{tmp}/perkhubd.log")
        port = wait_port(f"{tmp}/port", daemon, "perkhubd", timeout=60)
        wait_for(lambda: http(port, "GET", "/v1/health").status == 200, "perkhubd's health")
        placed = make_orders(port, sim_port)
        check_http(port, source_dir)
        check_order_stats(port, placed)
        check_analytics_http(port, placed)
        missing = browser_missing()
        if missing:
            if os.environ.get("CI"):
                check(False, f"CI is set and the browser test cannot run: {missing} not "
                      "installed (tools/deps.sh --browser installs them)")
            else:
                print(f"SKIP: the browser part of this test needs {missing} (install with "
                      "tools/deps.sh --browser); the HTTP checks above ran", flush=True)
        else:
            check_browser(port, build_dir, tmp)
            if os.path.exists(NATS_SERVER) or os.environ.get("CI"):
                check_replicated(build_dir, sim_port, tmp)
            else:
                print(f"SKIP: the replicated part needs {NATS_SERVER} (tools/deps.sh)",
                      flush=True)
        stop(daemon, "perkhubd", f"{tmp}/perkhubd.log")
        with open(f"{tmp}/perkhubd.log", errors="replace") as f:
            check(OPS_TOKEN not in f.read(), "the ops token is not in perkhubd's log")
        stop(simp, "supsim", f"{tmp}/supsim.log")
        if failures:
            raise AssertionError(f"{len(failures)} failure(s)")
        if missing and not os.environ.get("CI"):
            return SKIP
        print("PASS", flush=True)
        return 0
    except Exception:
        traceback.print_exc()
        for name in ("perkhubd.log", "supsim.log", "chromedriver.log"):
            p = os.path.join(tmp, name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    print(f"---- {name} (end) ----\n{f.read()[-4000:]}")
        return 1
    finally:
        for p in (daemon, simp):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
