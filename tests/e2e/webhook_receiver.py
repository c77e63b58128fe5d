#!/usr/bin/env python3
"""webhook_receiver.py - a mall's webhook receiver for tests/e2e/test_webhooks.c.

An independent implementation (Python's standard library only): every request's
Standard Webhooks signature is verified with hmac against each configured
secret (all of them must have signed: two secrets while rotating), `previous`
is checked against the last delivery accepted for the same order, and what
arrived is appended as one JSON line per request to --out:

  {"id", "seq", "previous", "type", "order_id", "status": answered,
   "sig_ok": bool, "sigs": n, "continuity_ok": bool, "has_codes": bool}

Modes (--mode, or POST /_mode {"mode": ...} while running):
  ok            answer 204
  fail:N        answer 503 to the next N requests, then ok
  sleep:N:S     sleep S seconds (past perkhubd's timeout) for the next N, then ok
  gone          answer 410
It writes its port to --port-file once listening. Stopped by SIGTERM.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def key_of(secret):
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode()


class State:
    def __init__(self, mode, keys, out):
        self.lock = threading.Lock()
        self.mode = mode
        self.keys = keys
        self.out = out
        self.last_ok = {}  # order id -> seq of the last delivery answered 2xx

    def next_action(self):
        with self.lock:
            m = self.mode
            if m.startswith("fail:"):
                n = int(m.split(":")[1])
                self.mode = "fail:%d" % (n - 1) if n > 1 else "ok"
                return ("fail", 0)
            if m.startswith("sleep:"):
                _, n, s = m.split(":")
                n = int(n)
                self.mode = "sleep:%d:%s" % (n - 1, s) if n > 1 else "ok"
                return ("sleep", float(s))
            return (m, 0)


def make_handler(st):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def answer(self, code):
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            if self.path == "/_mode":
                with st.lock:
                    st.mode = json.loads(body)["mode"]
                return self.answer(200)
            wid = self.headers.get("webhook-id", "")
            ts = self.headers.get("webhook-timestamp", "")
            sigs = self.headers.get("webhook-signature", "").split(" ")
            signed = (wid + "." + ts + ".").encode() + body
            got = set(s[3:] for s in sigs if s.startswith("v1,"))
            sig_ok = bool(st.keys) and all(
                base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode() in got
                for k in st.keys)
            try:
                doc = json.loads(body)
                data = doc["data"]
            except Exception:
                doc, data = {}, {}
            order = data.get("order") or {}
            order_id = order.get("id") if isinstance(order, dict) else None
            action, secs = st.next_action()
            status = 204
            if not sig_ok:
                status = 401
            elif action == "fail":
                status = 503
            elif action == "gone":
                status = 410
            elif action == "sleep":
                time.sleep(secs)
            rec = {"id": wid, "seq": data.get("seq"), "previous": data.get("previous"),
                   "type": doc.get("type"), "order_id": order_id, "status": status,
                   "sig_ok": sig_ok, "sigs": len(got),
                   "has_codes": "codes" in json.dumps(order),
                   "account": order.get("account") if isinstance(order, dict) else None}
            with st.lock:
                cont = True
                if status < 300 and order_id is not None:
                    last = st.last_ok.get(order_id)
                    prev = data.get("previous")
                    seq = data.get("seq")
                    # seqs grow per order: one at or below the last accepted is a
                    # duplicate (at least once), anything newer must follow it
                    dup = last is not None and seq is not None and seq <= last
                    if not dup and prev != last:
                        cont = False
                    if not dup:
                        st.last_ok[order_id] = seq
                rec["continuity_ok"] = cont
                with open(st.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            try:
                self.answer(status)
            except OSError:
                pass  # perkhubd gave up waiting (the sleep mode)

    return H


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--secret", action="append", default=[])
    ap.add_argument("--mode", default="ok")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    st = State(a.mode, [key_of(s) for s in a.secret], a.out)
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(st))
    srv.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, a.port_file)
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
