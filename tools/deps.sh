#!/usr/bin/env bash
# The one place that installs perkhub's system packages (Debian 12).
# Used by `make demo`, `make test` and `make bench`; idempotent and quiet when
# everything is present. Needs root (or sudo) only when something is missing.
# Extra package names as arguments are installed too (bench/run.sh: wrk).
# --format adds clang-format, which only the format check needs (tools/format.sh: make
# format, make format-check, .ci/run), and --fuzz clang with its libFuzzer runtime, which
# only the fuzz build needs (make build-fuzz, so make test and make fuzz): `make demo`
# does not pull LLVM in. --browser adds Debian's Chromium, its WebDriver and Python's
# Selenium, which only the ops page's browser test needs (tests/e2e/test_ops_page.py:
# make test, make test-fast): `make demo` does not pull a browser in.
set -euo pipefail

extra=()
for a in "$@"; do
    case "$a" in
    --format) extra+=(clang-format) ;;
    --fuzz) extra+=(clang libclang-rt-14-dev) ;; # libclang-rt-14-dev: libclang_rt.fuzzer
    --browser) extra+=(chromium chromium-driver python3-selenium) ;;
    *) extra+=("$a") ;;
    esac
done

pkgs=(build-essential cmake pkg-config curl ca-certificates openssl
      liblmdb-dev lmdb-utils libjansson-dev libyaml-dev libcurl4-openssl-dev
      libssl-dev libcriterion-dev libmicrohttpd-dev libgnutls28-dev
      libnats-dev nats-server
      python3 jq ${extra[@]+"${extra[@]}"})  # python3: the docs-examples test; jq: used by some examples
# libnats-dev: replication (core/repl, off unless configured); nats-server: its tests start three

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
