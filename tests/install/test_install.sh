#!/usr/bin/env bash
# test_install.sh BUILD_DIR — `cmake --install` into a temporary DESTDIR (issue
# 14, item 7): the file list; the installed example config names the installed
# plugin directory and passes --check-config; the INSTALLED perkhubd, with the
# installed plugins, serves one order from the installed sandbox plugin and
# stops cleanly; the systemd unit parses (systemd-analyze verify, or a loud
# SKIP of that part when systemd-analyze is missing).
set -euo pipefail
build=${1:?usage: test_install.sh BUILD_DIR}
tmp=$(mktemp -d /tmp/perkhub-install-XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    [ -f "$tmp/run/perkhubd.log" ] && sed 's/^/  log: /' "$tmp/run/perkhubd.log" >&2
    exit 1
}

root=$tmp/root
DESTDIR=$root cmake --install "$build" >"$tmp/install.out" 2>&1 || {
    cat "$tmp/install.out" >&2
    fail "cmake --install"
}
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
[ -n "$prefix" ] || fail "no CMAKE_INSTALL_PREFIX in $build/CMakeCache.txt"
[ "$prefix" = /usr ] && etc=/etc || etc=$prefix/etc
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$build/CMakeCache.txt")
libdir=$prefix/${libdir:-lib}

# ---- the file list ----------------------------------------------------------
expected=$(printf '%s\n' \
    "$prefix/bin/perkctl" \
    "$prefix/sbin/perkhubd" \
    "$prefix/lib/perkhub/plugins/example.so" \
    "$prefix/lib/perkhub/plugins/manual.so" \
    "$prefix/lib/perkhub/plugins/gateway.so" \
    "$prefix/lib/perkhub/plugins/rewards.so" \
    "$prefix/lib/perkhub/plugins/sandbox.so" \
    "$etc/perkhub/perkhub.yaml.example" \
    "$prefix/lib/systemd/system/perkhubd.service" \
    "$prefix/lib/sysusers.d/perkhub.conf" \
    "$prefix/share/doc/perkhub/config.md" \
    "$prefix/share/doc/perkhub/operations.md" \
    "$prefix/share/doc/perkhub/perkhub.logrotate" \
    "$prefix/bin/perkhub-new-plugin" \
    "$prefix/include/perkhub/plugin.h" \
    "$prefix/include/perkhub/testkit.h" \
    "$libdir/libperkhub_testkit.a" \
    "$libdir/pkgconfig/perkhub-plugin.pc" \
    "$libdir/pkgconfig/perkhub-testkit.pc" | sort)
# the scaffold's template is plugins/example as it is: checked apart, by its main files
template=$prefix/share/perkhub/new-plugin
for f in example.c test_example.c example_suite.h fixtures/make_fixtures.py; do
    [ -f "$root$template/$f" ] || fail "the new-plugin template lacks $f"
done
actual=$(cd "$root" && find . -type f | sed 's|^\.||' | grep -v "^$template/" | sort)
if [ "$expected" != "$actual" ]; then
    diff <(echo "$expected") <(echo "$actual") >&2 || true
    fail "installed files differ from the expected list (- expected, + installed)"
fi
for x in "$prefix/bin/perkctl" "$prefix/sbin/perkhubd" "$prefix/bin/perkhub-new-plugin"; do
    [ -x "$root$x" ] || fail "$x is not executable"
done

# ---- the example config agrees with the install -------------------------------
example=$root$etc/perkhub/perkhub.yaml.example
grep -qx "plugin_dir: $prefix/lib/perkhub/plugins #.*" "$example" ||
    fail "the installed example config does not name $prefix/lib/perkhub/plugins"
[ "$(grep -c '^plugin_dir:' "$example")" = 1 ] || fail "the example config has not one plugin_dir"
# --check-config starts each supplier as a start would: in a DESTDIR the plugins
# are not yet where the example says and its secret files do not exist, so its
# suppliers may be named (they would run in state error, none is required); the
# YAML itself must pass, and nothing else may be wrong.
"$root$prefix/sbin/perkhubd" --check-config "$example" >"$tmp/check.out" 2>&1 || true
grep -q "would start with .* in state error\|: ok (" "$tmp/check.out" &&
    ! grep -v "^$example:[0-9]*:[0-9]*: suppliers\[[0-9]*\]\|would start with" "$tmp/check.out" |
    grep -q . || fail "--check-config on the installed example: $(cat "$tmp/check.out")"
"$root$prefix/sbin/perkhubd" --describe-plugin sandbox --plugin-dir "$root$prefix/lib/perkhub/plugins" \
    >/dev/null || fail "the installed sandbox plugin does not load"

# ---- the installed daemon serves an order -------------------------------------
mkdir -p "$tmp/run"
token=install-test-token
sha=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
cat >"$tmp/run/perkhub.yaml" <<YAML
listen:
  address: 127.0.0.1
  port: 0
  port_file: $tmp/run/port
data_dir: $tmp/run/data
map_size_mb: 16
master_key_file: $tmp/run/master.key
master_key_create: true
plugin_dir: $root$prefix/lib/perkhub/plugins
pid_file: $tmp/run/perkhubd.pid
log:
  level: info
  format: json
  file: $tmp/run/json.log
clients:
  - name: mall
    token_sha256: $sha
    scopes: [fulfill, support]
suppliers:
  - id: sbx
    plugin: sandbox
products:
  - sku: inst.card
    name: Install test card
    brand: testbrand
    category: video
    delivery: card_code
    face_value: "30.00"
    offers:
      - {supplier: sbx, supplier_sku: sandbox.card, cost: "28.00"}
YAML
"$root$prefix/sbin/perkhubd" -c "$tmp/run/perkhub.yaml" 2>"$tmp/run/perkhubd.log" &
pid=$!
for _ in $(seq 1 500); do
    [ -s "$tmp/run/port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "the installed perkhubd exited at start"
    sleep 0.02 # polling for the port file, not an assertion
done
[ -s "$tmp/run/port" ] || fail "the installed perkhubd did not listen within 10 s"
port=$(cat "$tmp/run/port")
body=$(curl -sS -o - -w '\n%{http_code}' -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' \
    -d '{"client_order_id":"INSTALL-1","sku":"inst.card","quantity":1,"wait":10}' \
    "http://127.0.0.1:$port/v1/orders")
status=${body##*$'\n'}
json=${body%$'\n'*}
[ "$status" = 201 ] || fail "POST /v1/orders answered $status: $json"
state=$(printf %s "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["order"]["state"])')
[ "$state" = succeeded ] || fail "the order is $state: $json"
[ "$(cat "$tmp/run/perkhubd.pid")" = "$pid" ] || fail "pid_file does not hold the daemon's pid"
kill -TERM "$pid"
wait "$pid" || fail "the installed perkhubd exited with $? on SIGTERM"
pid=
[ ! -e "$tmp/run/perkhubd.pid" ] || fail "pid_file left behind after a clean stop"
python3 - "$tmp/run/json.log" <<'PY' || fail "log.file is not JSON lines"
import json, sys
events = [json.loads(l)["event"] for l in open(sys.argv[1])]
assert "daemon.started" in events and "order.created" in events, events
PY
"$root$prefix/sbin/perkhubd" --check-store "$tmp/run/data" --key-file "$tmp/run/master.key" \
    >"$tmp/check-store.out" 2>&1 || fail "--check-store: $(cat "$tmp/check-store.out")"

# ---- the unit parses -------------------------------------------------------------
unit=$root$prefix/lib/systemd/system/perkhubd.service
grep -qx "ExecStart=$prefix/sbin/perkhubd -c $etc/perkhub/perkhub.yaml" "$unit" ||
    fail "the unit does not start the installed perkhubd with the installed config dir"
if command -v systemd-analyze >/dev/null; then
    # verify checks that ExecStart exists: the same unit with the DESTDIR paths
    mkdir -p "$tmp/verify"
    sed "s|=$prefix/sbin/|=$root$prefix/sbin/|" "$unit" >"$tmp/verify/perkhubd.service"
    out=$(systemd-analyze verify "$tmp/verify/perkhubd.service" 2>&1) || fail "systemd-analyze verify: $out"
    # it exits 0 on unknown keys and bad values, and only says so
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
    echo "unit: systemd-analyze verify clean"
else
    echo "SKIP (loud): systemd-analyze is not installed; the unit file was NOT verified" >&2
fi
echo "PASS: install tree, installed daemon served an order, unit parses"
