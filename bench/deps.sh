#!/usr/bin/env bash
# Packages only `make bench` needs (the project's own go through tools/deps.sh).
# Same pattern: idempotent and quiet when everything is present; installs only
# what is missing, with apt-get (root or sudo).
set -euo pipefail

pkgs=(wrk)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "bench deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
