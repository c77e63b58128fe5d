#!/usr/bin/env python3
"""test_webhook_receivers.py — the two receivers of docs/webhooks.md, exactly as written
there, against a live perkhubd (issue 13 item 7).

The receivers are cut out of docs/webhooks.md (the fenced block after each
`<!-- webhook-receiver: python|c -->` marker): the Python one runs with this
Python, the C one is compiled with cc against libmicrohttpd and OpenSSL. perkhubd runs
on loopback with the built-in sandbox supplier and one client, `mall`, with two
endpoints: `py` (one secret) to the Python receiver and `c` (two secrets, as while
rotating: the old one first) to the C receiver, which knows only the new secret.

Checks:
1. Recharges through the sandbox: every event of the mall's orders (as its own
   GET /v1/events shows them) reaches both receivers, each delivery verified by the
   receiver (it prints only verified ones), with the headers and body docs/webhooks.md
   describes: webhook-id stable and unique per event, `previous` continuous per order, the
   account masked, no codes, no supplier and no cost.
2. An independent check of a delivery's signature here with Python's hmac.
3. What a receiver must refuse, it refuses (401): the body changed by one byte, a wrong key,
   a timestamp ten minutes old; the same delivery, untouched and re-timestamped, is
   accepted (204).
Exit 77 (skipped) only when cc, libmicrohttpd's or OpenSSL's headers are missing, never
under CI.
"""
import base64
import hashlib
import hmac
import http.server as http_server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

SKIP = 77
MALL_TOKEN = "whr-mall-token"
OPS_TOKEN = "whr-ops-token"
WAIT_S = 60
failures = []


def env_path(name):
    v = os.environ.get(name)
    if not v:
        raise RuntimeError(f"{name} is not set (run through ctest)")
    return v


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}", flush=True)
    return cond


def receivers(doc):
    """{'python': code, 'c': code} from the marked fenced blocks of docs/webhooks.md."""
    out = {}
    for m in re.finditer(r"<!-- webhook-receiver: (\w+) -->\n```\w*\n(.*?)\n```", doc, re.S):
        out[m.group(1)] = m.group(2) + "\n"
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(argv, log_path, env=None, stdout=None):
    log = open(log_path, "ab")

    def die_with_parent():
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return subprocess.Popen(argv, stdout=stdout or log, stderr=log, env=env,
                            preexec_fn=die_with_parent)


def wait_for(fn, what, timeout=WAIT_S, every=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def http(url, method="GET", token=None, body=None, headers=None):
    req = urllib.request.Request(url, method=method,
                                 data=body.encode() if isinstance(body, str) else body)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError):
        return 0, b""


def sha256_hex(s):
    return hashlib.sha256(s.encode()).hexdigest()


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def new_secret():
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def key_of(secret):
    return base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()


def sign(secret, wid, ts, body):
    mac = hmac.new(key_of(secret), f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def config(d, py_port, c_port):
    return f"""listen:
  address: 127.0.0.1
  port: 0
  port_file: {d}/port
data_dir: {d}/data
map_size_mb: 64
master_key_file: {d}/master.key
master_key_create: true
plugin_dir: {env_path("PH_PLUGIN_DIR")}
log:
  level: info
clients:
  - name: mall
    token_sha256: {sha256_hex(MALL_TOKEN)}
    scopes: [fulfill, support]
    webhooks:
      - id: py
        url: http://127.0.0.1:{py_port}/hooks
        secrets: [file:{d}/py.whsec]
        events: ["order.*"]
      - id: c
        url: http://127.0.0.1:{c_port}/hooks
        secrets: [file:{d}/old.whsec, file:{d}/new.whsec]
        events: ["order.*"]
  - name: ops
    token_sha256: {sha256_hex(OPS_TOKEN)}
    scopes: [ops]
suppliers:
  - id: sbx
    plugin: sandbox
    priority: 5
products:
  - sku: w.recharge
    name: Webhook recharge
    brand: sim
    category: video
    delivery: recharge
    face_value: "50.00"
    offers:
      - {{supplier: sbx, supplier_sku: sandbox.recharge, cost: "49.00"}}
"""


def read_lines(path):
    """The verified deliveries a receiver printed: [(webhook-id, body bytes)]."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            if b" " in line:
                wid, body = line.split(b" ", 1)
                out.append((wid.decode(), body))
    return out


def check_deliveries(name, got, events, secret_note):
    """got: [(id, body)]; events: the mall's own events by seq."""
    seen, last_of_order = {}, {}
    for wid, body in got:
        b = json.loads(body)
        d = b.get("data", {})
        ev = d.get("event", {})
        seq = d.get("seq")
        check(b.get("type") == ev.get("type"), f"{name}: type is the event's type ({wid})")
        check(isinstance(seq, int) and seq == ev.get("seq"), f"{name}: data.seq is the event's")
        if seq in seen:
            check(seen[seq] == wid, f"{name}: a repeat of seq {seq} has the same webhook-id")
            continue
        seen[seq] = wid
        order = d.get("order") or {}
        oid = ev.get("order_id")
        check(order.get("id") == oid, f"{name}: data.order is the event's order (seq {seq})")
        check("codes" not in order, f"{name}: no codes in a delivery (seq {seq})")
        text = body.decode()
        check("13800000001" not in text, f"{name}: the account is masked (seq {seq})")
        for word in ('"supplier":', '"cost', '"unit_cost"', '"batch'):  # keys, not values
            check(word not in text, f"{name}: no {word} member in a delivery (seq {seq})")
        check(d.get("previous") == last_of_order.get(oid),
              f"{name}: previous of seq {seq} is {last_of_order.get(oid)}, got {d.get('previous')}")
        last_of_order[oid] = seq
    check(sorted(seen) == sorted(events),
          f"{name}: delivered seqs {sorted(seen)} are the mall's events {sorted(events)}")
    check(len(set(seen.values())) == len(seen), f"{name}: one webhook-id per event")
    print(f"{name}: {len(seen)} events delivered and verified ({secret_note})", flush=True)


def main():
    src = env_path("PH_SOURCE_DIR")
    doc = open(os.path.join(src, "docs/webhooks.md")).read()
    code = receivers(doc)
    if not check(set(code) == {"python", "c"}, "docs/webhooks.md has a python and a c receiver"):
        return 1
    tmp = tempfile.mkdtemp(prefix="perkhub-whr-")
    procs = []
    try:
        write(f"{tmp}/receiver.py", code["python"], 0o644)
        write(f"{tmp}/receiver.c", code["c"], 0o644)
        cc = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-o", f"{tmp}/receiver",
                             f"{tmp}/receiver.c", "-lmicrohttpd", "-lcrypto"],
                            capture_output=True, text=True)
        if cc.returncode != 0:
            if not os.environ.get("CI") and ("microhttpd.h" in cc.stderr or "openssl" in cc.stderr
                                             or shutil.which("cc") is None):
                print(f"SKIP: cannot build the C receiver: {cc.stderr[:300]}")
                return SKIP
            check(False, f"the C receiver of docs/webhooks.md builds: {cc.stderr[:2000]}")
            return 1
        secrets = {"py": new_secret(), "old": new_secret(), "new": new_secret()}
        for k, v in secrets.items():
            write(f"{tmp}/{k}.whsec", v + "\n")
        py_port, c_port = free_port(), free_port()
        env = dict(os.environ)
        py = spawn([sys.executable, f"{tmp}/receiver.py", str(py_port)], f"{tmp}/py.log",
                   dict(env, WEBHOOK_SECRET=secrets["py"]), open(f"{tmp}/py.out", "wb"))
        cr = spawn([f"{tmp}/receiver", str(c_port)], f"{tmp}/c.log",
                   dict(env, WEBHOOK_SECRET=secrets["new"]), open(f"{tmp}/c.out", "wb"))
        procs += [py, cr]
        write(f"{tmp}/perkhub.yaml", config(tmp, py_port, c_port))
        daemon = spawn([env_path("PH_PERKHUBD"), "-c", f"{tmp}/perkhub.yaml"],
                       f"{tmp}/perkhubd.log")
        procs.append(daemon)
        port = int(wait_for(lambda: os.path.exists(f"{tmp}/port") and
                            open(f"{tmp}/port").read().strip(), "perkhubd's port"))
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http(base + "/v1/health")[0] == 200, "perkhubd's health")
        for p, name in ((py_port, "python"), (c_port, "c")):
            wait_for(lambda p=p: http(f"http://127.0.0.1:{p}/hooks", "POST", body="{}")[0] == 401,
                     f"the {name} receiver (refusing an unsigned POST)")

        # 1. orders, then every event of the mall's orders at both receivers
        for i in range(5):
            st, body = http(base + "/v1/orders", "POST", MALL_TOKEN, json.dumps(
                {"client_order_id": f"whr-{i}", "sku": "w.recharge", "account": "13800000001"}))
            check(st in (201, 202), f"order {i}: {st} {body[:200]!r}")

        def mall_events():
            st, body = http(base + "/v1/events?after=0&limit=1000", token=MALL_TOKEN)
            evs = json.loads(body)["events"] if st == 200 else []
            return {e["seq"]: e for e in evs}

        def all_final():
            evs = mall_events()
            done = {e["order_id"] for e in evs.values()
                    if e["type"] in ("order.succeeded", "order.failed")}
            return len(done) == 5 and evs

        events = wait_for(all_final, "the five orders final")
        for name in ("py", "c"):
            wait_for(lambda name=name: {json.loads(b)["data"]["seq"]
                                        for _, b in read_lines(f"{tmp}/{name}.out")}
                     >= set(events), f"every event at the {name} receiver")
        check_deliveries("python receiver (one secret)", read_lines(f"{tmp}/py.out"), events,
                         "one secret")
        check_deliveries("C receiver (new of two secrets)", read_lines(f"{tmp}/c.out"), events,
                         "the second of two secrets")

        # 2. an independent check of what perkhub signed, and 3. the refusals
        wid, body = read_lines(f"{tmp}/py.out")[0]
        for name, p, secret in (("python", py_port, secrets["py"]),
                                ("c", c_port, secrets["new"])):
            url = f"http://127.0.0.1:{p}/hooks"

            def post(b, ts, key_secret=secret, sig=None):
                return http(url, "POST", body=b, headers={
                    "webhook-id": wid, "webhook-timestamp": str(ts),
                    "webhook-signature": sig or sign(key_secret, wid, ts, b)})[0]

            now = int(time.time())
            tampered = bytearray(body)
            tampered[len(tampered) // 2] ^= 0x01
            good = sign(secret, wid, now, body)
            check(post(body, now) == 204, f"{name}: a correctly signed delivery is accepted")
            check(post(bytes(tampered), now, sig=good) == 401,
                  f"{name}: a body changed by one byte is refused")
            check(post(body, now, key_secret=new_secret()) == 401,
                  f"{name}: a signature with another key is refused")
            check(post(body, now - 600) == 401, f"{name}: a ten-minute-old timestamp is refused")
            check(post(body, now, sig="v1,AAAA " + good) == 204,
                  f"{name}: one good signature among several is enough")
        # perkhub's own signature, checked here with hmac: the endpoint's attempts are
        # stored with their ids; the receivers verified every one, so re-derive one from
        # a fresh capture: a tiny receiver of our own
        cap_port = free_port()
        captured = []

        class Cap(http_server.BaseHTTPRequestHandler):
            def do_POST(self):
                b = self.rfile.read(int(self.headers.get("content-length", 0)))
                captured.append((dict(self.headers), b))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        srv = http_server.HTTPServer(("127.0.0.1", cap_port), Cap)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        with open(f"{tmp}/perkhub.yaml") as f:
            conf = f.read()
        conf = conf.replace(f"http://127.0.0.1:{py_port}/hooks",
                            f"http://127.0.0.1:{cap_port}/hooks")
        write(f"{tmp}/perkhub.yaml", conf)
        daemon.send_signal(signal.SIGHUP)
        st, body = http(base + "/v1/orders", "POST", MALL_TOKEN, json.dumps(
            {"client_order_id": "whr-cap", "sku": "w.recharge", "account": "13800000001"}))
        check(st in (201, 202), f"the capture order: {st}")
        wait_for(lambda: captured, "a delivery at the capturing receiver after SIGHUP")
        h, b = captured[0]
        h = {k.lower(): v for k, v in h.items()}
        want = sign(secrets["py"], h["webhook-id"], h["webhook-timestamp"], b)
        check(want in h["webhook-signature"].split(),
              "Python's hmac computes the signature perkhub sent")
        srv.shutdown()
        daemon.send_signal(signal.SIGTERM)
        check(daemon.wait(timeout=60) == 0, "perkhubd exits 0 on SIGTERM")
        if failures:
            raise AssertionError(f"{len(failures)} failure(s)")
        print("PASS", flush=True)
        return 0
    except Exception:
        traceback.print_exc()
        for name in ("perkhubd.log", "py.log", "c.log"):
            p = os.path.join(tmp, name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    print(f"---- {name} (end) ----\n{f.read()[-4000:]}")
        return 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
